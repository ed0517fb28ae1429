"""Segment evidence (Ibis on DuckDB) and the decision rules, on small tables worked out by hand."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from tests.routing_data import units_table, workflows_table
from yieldmeter.routing.recommend import Action, RoutingSettings, Tier, decide_segment
from yieldmeter.routing.report import analyse
from yieldmeter.routing.segments import segment_model_stats
from yieldmeter.routing.sim import START


def test_segment_model_stats_by_hand() -> None:
    # one model, 10 units: latency 100..1000 ms, cost 1..10 USD, the first 8 successful
    rows = [
        {"workflow": "w", "model": "a", "cost": i, "ok": i <= 8, "latency_ms": 100.0 * i, "ev": 2.0}
        for i in range(1, 11)
    ]
    wf = workflows_table([{"workflow": "w", "risk_class": "low", "latency_slo_ms": 900.0, "unit_value": 2.5}])
    out = segment_model_stats(units_table(rows), wf).to_pyarrow().to_pylist()
    assert len(out) == 1
    r = out[0]
    assert (r["n"], r["successes"]) == (10, 8)
    assert r["cost_sum"] == 55.0  # 1 + ... + 10
    assert r["cost_sq_sum"] == 385.0  # 1 + 4 + ... + 100
    assert r["cost_success_sum"] == 36.0  # 1 + ... + 8
    assert r["ev_sum"] == 20.0 and r["ev_units"] == 10
    # nearest rank: p50 = 5th smallest, p95 = ceil(9.5) = 10th, p99 = ceil(9.9) = 10th
    assert (r["latency_p50_ms"], r["latency_p95_ms"], r["latency_p99_ms"]) == (500.0, 1000.0, 1000.0)
    # p50 interval ranks: 5 -/+ 1.96 sqrt(2.5) = 5 -/+ 3.099 -> floor 1 and ceil(8.099) + 1 = 10
    assert (r["latency_p50_low_ms"], r["latency_p50_high_ms"]) == (100.0, 1000.0)
    # p95 interval ranks: 9.5 -/+ 1.96 sqrt(0.475) = 9.5 -/+ 1.351 -> floor 8 and min(12, 10)
    assert (r["latency_p95_low_ms"], r["latency_p95_high_ms"]) == (800.0, 1000.0)
    assert r["risk_class"] == "low" and r["latency_slo_ms"] == 900.0 and r["unit_value"] == 2.5


def row(model: str, n: int, s: int, c: float, **kw: Any) -> dict[str, Any]:
    """A segment x model statistics row with every unit costing ``c`` (so the variance is p's alone)."""
    base = {
        "workflow": "w",
        "task_type": "t",
        "model": model,
        "n": n,
        "successes": s,
        "cost_sum": n * c,
        "cost_sq_sum": n * c * c,
        "cost_success_sum": s * c,
        "ev_sum": n * 10.0,
        "ev_units": n,
        "unpriced_units": 0,
        "latency_p95_ms": 1000.0,
        "risk_class": "medium",
        "latency_slo_ms": None,
        "unit_value": 12.0,
    }
    base.update(kw)
    return base


S = RoutingSettings()


def test_clear_switch_with_projection_by_hand() -> None:
    # a: 1000 units, 800 successes, 1.00 USD each; b: 1000 units, 800 successes, 0.20 USD each.
    # mean expected value 10 USD -> routine (margin 5 points).
    # non-inferiority: SE = sqrt(2 * 0.16 / 1000) = 0.017889, z = 0.05 / 0.017889 = 2.795 -> p = 0.0026
    d = decide_segment([row("a", 1000, 800, 1.0), row("b", 1000, 800, 0.2)], period_days=30, settings=S)
    assert d.tier is Tier.ROUTINE
    assert d.action is Action.SWITCH and d.model == "b" and d.incumbent == "a"
    assert d.p_non_inferior == pytest.approx(0.002595, abs=1e-5)
    assert d.p_cheaper is not None and d.p_cheaper < 1e-6
    # 2000 units over 30 days -> 2000 a month; cost per unit now (1000 + 200) / 2000 = 0.60
    # saving = 2000 * (0.60 - 0.20) = 800 USD a month; success change = 2000 * (0.8 - 0.8) = 0
    assert d.monthly_units == pytest.approx(2000)
    assert d.monthly_saving == pytest.approx(800.0)
    assert d.monthly_saving_low == pytest.approx(800.0)  # constant costs: no uncertainty in b's cost
    assert d.monthly_success_change == pytest.approx(0.0)
    assert d.current_cost_per_success == pytest.approx(1200 / 1600)


def test_high_stakes_never_moves_to_a_significantly_worse_model() -> None:
    # b: 760/1000 vs a: 800/1000. Pooled p = 0.78, SE = sqrt(0.78*0.22*0.002) = 0.018526,
    # z = 0.04 / 0.018526 = 2.159 -> p = 0.0154 < 0.05: significantly lower.
    rows = [row("a", 1000, 800, 1.0, risk_class="high"), row("b", 1000, 760, 0.2, risk_class="high")]
    d = decide_segment(rows, period_days=30, settings=S)
    assert d.tier is Tier.HIGH_STAKES
    assert d.action is Action.KEEP and d.model == "a" and d.experiment is None
    assert "b has a significantly lower success rate (p = 0.015)" in d.reason
    # The same evidence in a low-value tier (margin 10 points) is a clear switch:
    # z = (-0.04 + 0.10) / sqrt(0.16/1000 + 0.1824/1000) = 0.06 / 0.018504 = 3.243 -> p = 0.0006
    low = [
        row("a", 1000, 800, 1.0, risk_class="low", ev_sum=300.0),
        row("b", 1000, 760, 0.2, risk_class="low", ev_sum=300.0),
    ]
    d_low = decide_segment(low, period_days=30, settings=S)
    assert d_low.tier is Tier.LOW_VALUE
    assert d_low.action is Action.SWITCH and d_low.model == "b"
    # 2000 units a month; success change = 2000 * (0.76 - 0.78) = -40 successful outcomes a month
    assert d_low.monthly_success_change == pytest.approx(-40.0)


def test_too_little_data_is_listed_not_routed() -> None:
    d = decide_segment([row("a", 12, 10, 1.0), row("b", 8, 8, 0.1)], period_days=30, settings=S)
    assert d.action is Action.INSUFFICIENT_DATA
    assert d.model == "a" and "too little data" in d.reason and "20 work units" in d.reason
    assert d.monthly_saving == 0.0


def test_promising_but_unclear_becomes_an_experiment() -> None:
    # b has 10 units only: too few to test, but cheaper, so the output is an experiment sized from
    # the segment's own volume: 3010 units in 30 days = 100.33 a day. b is assumed as good as a
    # (p = 0.8). Per share s the non-inferiority part needs
    #   N = 6.182557 * (0.16/(1-s) + 0.16/s) / 0.05^2:  s=0.05 -> 8327 (83 days), 0.10 -> 4397 (44 days),
    #   s=0.20 -> 2474 (25 days: the first within 28 days);
    # the cost part is tiny (gap 1.25 - 0.25 = 1 USD per success), so N = 2474 at a 20% share.
    d = decide_segment([row("a", 3000, 2400, 1.0), row("b", 10, 8, 0.2)], period_days=30, settings=S)
    assert d.action is Action.EXPERIMENT and d.model == "a"
    e = d.experiment
    assert e is not None and e.model == "b"
    assert (e.traffic_share, e.units_needed, e.days) == (0.20, 2474, 25)
    assert e.candidate_units == math.ceil(2474 * 0.2)
    assert e.decides_within_max_days
    assert d.monthly_saving == 0.0 and d.potential_monthly_saving > 0


def test_latency_slo_and_unpriced_models_are_not_switch_targets() -> None:
    rows = [
        row("a", 1000, 800, 1.0, latency_slo_ms=2000.0),
        row("slow", 1000, 800, 0.1, latency_slo_ms=2000.0, latency_p95_ms=2500.0),
        row("unpriced", 1000, 800, 0.0, latency_slo_ms=2000.0, unpriced_units=1000),
    ]
    d = decide_segment(rows, period_days=30, settings=S)
    assert d.action is Action.KEEP
    notes = {m.model: m.note for m in d.models}
    assert "above the SLO" in notes["slow"] and "unpriced" in notes["unpriced"]


def test_analyse_end_to_end_on_ibis_units() -> None:
    # Two segments over a 30-day period: one with a clear switch (600 units each at p = 0.8:
    # non-inferiority z = 0.05 / sqrt(2 * 0.16 / 600) = 2.165, p = 0.015), one too small.
    units = []
    for i in range(1200):
        ts = START + timedelta(days=30 * i / 1200)
        units.append(
            {
                "workflow": "w",
                "task_type": "big",
                "model": "a" if i % 2 else "b",
                "started_at": ts,
                "cost": 1.0 if i % 2 else 0.1,
                "ok": i % 5 != 0,
                "latency_ms": 1000.0,
                "ev": 5.0,
            }
        )
    for _ in range(10):
        units.append(
            {"workflow": "w", "task_type": "small", "model": "a", "cost": 1.0, "ok": True, "ev": 5.0}
        )
    wf = workflows_table([{"workflow": "w", "risk_class": "medium", "unit_value": 6.0}])
    report = analyse(units_table(units), wf, S)
    by_task = {d.task_type: d for d in report.decisions}
    assert by_task["small"].action is Action.INSUFFICIENT_DATA
    assert by_task["big"].action is Action.SWITCH and by_task["big"].model == "b"
    assert report.totals()["switches"] == 1 and report.totals()["insufficient_data"] == 1
    # one tier here, so its totals are the report's
    by_tier = report.totals()["by_tier"]
    assert set(by_tier) == {"routine"}
    assert by_tier["routine"] == {k: v for k, v in report.totals().items() if k != "by_tier"}
    # the evidence per model carries latency with its interval (every unit took 1,000 ms)
    big = [r for r in report.model_rows() if r["task_type"] == "big"]
    assert {(r["model"], r["latency_p95_ms"], r["latency_p95_low_ms"]) for r in big} == {
        ("a", 1000.0, 1000.0),
        ("b", 1000.0, 1000.0),
    }
    tiers = {r["tier"] for r in report.frontier}
    assert tiers == {"routine"}
    # pooled over the tier, a has 490/610 = 0.803 (the small segment's 10 successes) and b 480/600 =
    # 0.800 at a tenth of the cost: both are on the frontier (a is a little better, b far cheaper)
    assert {r["model"]: r["on_frontier"] for r in report.frontier} == {"a": True, "b": True}
