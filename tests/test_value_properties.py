"""Invariants of the value measures on random small organisations (hypothesis, real DuckDB)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.value_data import make_tables, ts
from yieldmeter.config import LabourRates
from yieldmeter.metrics.cost import priced_calls
from yieldmeter.metrics.coverage import coverage
from yieldmeter.metrics.funnel import funnel
from yieldmeter.metrics.spend import cost_lines
from yieldmeter.metrics.tables import Tables
from yieldmeter.metrics.units import unit_facts
from yieldmeter.metrics.yields import LEVELS, yields
from yieldmeter.scoring.features import COUNTED_SIGNALS, design_matrix
from yieldmeter.scoring.model import fit_map, prior_model
from yieldmeter.scoring.priors import FEATURES, POSITIVE_SIGNALS

SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORKFLOWS = ("a", "b", "c")
TEAMS = ("t1", "t2", "t3")
KINDS = ("accepted", "copied", "action_taken", "rejected", "recontact", "continued")
LEVEL = st.sampled_from(LEVELS)


@st.composite
def organisations(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    n_units = draw(st.integers(1, 12))
    units, calls, signals, effort = [], [], [], []
    for i in range(n_units):
        wf = draw(st.sampled_from(WORKFLOWS))
        units.append(
            {
                "work_unit_id": f"u{i}",
                "workflow": wf,
                "team": draw(st.sampled_from(TEAMS)),
                "user_id": f"p{draw(st.integers(0, 4))}",
                "started_at": ts(i),
            }
        )
        for j in range(draw(st.integers(0, 4))):
            calls.append(
                {
                    "call_id": f"u{i}-{j}",
                    "ts": ts(i, days=draw(st.integers(0, 2))),
                    "work_unit_id": f"u{i}",
                    "workflow": wf,
                    "provider": "p",
                    "model": "m",
                    "team": units[-1]["team"],
                    "input_tokens": draw(st.integers(0, 5000)),
                    "output_tokens": draw(st.integers(0, 900)),
                    "duration_ms": float(draw(st.integers(10, 9000))),
                }
            )
        for k in draw(st.lists(st.sampled_from(KINDS), max_size=3)):
            signals.append(
                {"signal_id": f"u{i}-{k}-{len(signals)}", "work_unit_id": f"u{i}", "ts": ts(i + 1), "kind": k}
            )
        if draw(st.booleans()):
            effort.append(
                {
                    "effort_id": f"e{i}",
                    "work_unit_id": f"u{i}",
                    "ts": ts(i),
                    "minutes": float(draw(st.integers(1, 90))),
                }
            )
    for j in range(draw(st.integers(0, 2))):  # calls nobody linked to a workflow
        calls.append({"call_id": f"x{j}", "ts": ts(j), "provider": "p", "model": "m", "input_tokens": 1000})
    workflows = [
        {
            "workflow": w,
            "unit_value": float(draw(st.integers(0, 50))),
            "owner": draw(st.sampled_from([None, "o"])),
            "baseline_minutes": draw(st.sampled_from([None, 5.0])),
            "quality_threshold": float(draw(st.integers(0, 100))),
            "latency_slo_ms": draw(st.sampled_from([None, 4000.0])),
            "risk_class": draw(st.sampled_from(["low", "high", "critical"])),
            "labour_rate": 60.0,
        }
        for w in WORKFLOWS
    ]
    outcomes = [
        {
            "outcome_id": f"o{j}",
            "workflow": draw(st.sampled_from(WORKFLOWS)),
            "period_start": ts(),
            "value_dimension": draw(st.sampled_from(["cycle_time", "revenue", "loss_avoided", "capacity"])),
            "monetary_value": draw(st.sampled_from([None, 10.0, 250.0, -5.0])),
            "attribution_share": draw(st.sampled_from([0.0, 0.3, 1.0, 1.5])),
            "evidence_level": draw(LEVEL),
            "redeployed": draw(st.booleans()),
            "benefit_owner": draw(st.sampled_from([None, "x"])),
        }
        for j in range(draw(st.integers(0, 4)))
    ]
    items = (
        [{"item_id": "i", "period_start": ts(days=-1), "period_end": ts(days=20), "amount": 3.0}]
        if draw(st.booleans())
        else []
    )
    prices = [
        {
            "price_id": "pm",
            "provider": "p",
            "model": "m",
            "valid_from": ts(days=-100),
            "valid_to": ts(days=100),
            "input": 1.0,
            "output": 2.0,
            "source": "test",
        }
    ]
    return {
        "work_units": units,
        "calls": calls,
        "signals": signals,
        "effort": effort,
        "workflows": workflows,
        "outcomes": outcomes,
        "cost_items": items,
        "prices": prices,
    }


def _tables(data: dict[str, list[dict[str, Any]]]) -> Tables:
    con, _ = make_tables(data)
    con.raw_sql("INSERT INTO model_map VALUES ('p', 'm', 'p', 'm', 'catalog')")
    return Tables.from_backend(con)


def _scores(t: Tables) -> Any:
    import ibis

    from yieldmeter.scoring.engine import score_tables

    return ibis.memtable(score_tables(t).scores)


@SETTINGS
@given(organisations())
def test_value_measures_hold_their_invariants(data: dict[str, list[dict[str, Any]]]) -> None:
    """One random organisation per example (a fresh DuckDB each), every invariant checked on it."""
    t = _tables(data)
    rates = LabourRates()
    lines = cost_lines(t, rates)
    facts_expr = unit_facts(t, priced_calls(t), lines, rates, _scores(t))
    check_costs_additive(t, lines, facts_expr.to_pyarrow().to_pandas(), len(data["work_units"]))
    check_funnel(funnel(t, facts_expr, lines).to_pyarrow().to_pylist(), lines)
    check_coverage(coverage(t, lines).to_pyarrow().to_pylist())
    check_yields(yields(t, lines).to_pyarrow().to_pylist())


def check_costs_additive(t: Tables, lines: Any, facts: Any, n_units: int) -> None:
    """Unit costs add up across any partition and reconcile with the priced calls and effort lines."""
    assert len(facts) == n_units  # no join fan-out
    linked = priced_calls(t).filter(lambda c: c.work_unit_id.notnull()).to_pyarrow().to_pandas()
    assert np.isclose(facts.model_cost.sum(), linked.model_cost.fillna(0).sum())
    cl = lines.to_pyarrow().to_pandas()
    assert np.isclose(facts.effort_cost.sum(), cl.effort_cost.sum())
    assert (facts.fully_loaded_cost >= 0).all()
    assert np.allclose(facts.fully_loaded_cost, facts.model_cost + facts.allocated_cost + facts.effort_cost)
    total = facts.fully_loaded_cost.sum()
    for dim in ("team", "workflow", "user_id", "model"):
        assert np.isclose(facts.groupby(facts[dim].fillna("-")).fully_loaded_cost.sum().sum(), total)
    # units never carry more allocated cost than was allocated
    assert facts.allocated_cost.sum() <= cl.allocated_cost.sum() + 1e-9


def check_funnel(rows: list[dict[str, Any]], lines: Any) -> None:
    """Rates are shares, each stage is a subset of the one before, costs add up to the cost lines."""
    for r in rows:
        for k in ("acceptance_rate", "action_rate", "success_rate"):
            assert r[k] is None or 0.0 <= r[k] <= 1.0, (k, r)
        assert r["accepted_outputs"] <= r["work_units"]
        assert r["actions"] is None or r["actions"] <= r["accepted_outputs"]
        assert r["successful_outcomes"] <= (
            r["actions"] if r["actions"] is not None else r["accepted_outputs"]
        )
    total = sum(r["fully_loaded_cost"] for r in rows)
    assert np.isclose(total, lines.to_pyarrow().to_pandas().fully_loaded_cost.sum())


def check_coverage(rows: list[dict[str, Any]]) -> None:
    """Shares in [0, 1]; each of the three parts covers at least as much spend as all three together."""
    for r in rows:
        if not r["spend"]:
            assert r["coverage"] is None
            continue
        for k in ("share_with_baseline", "share_with_owner", "share_with_evidence", "coverage"):
            assert -1e-12 <= r[k] <= 1 + 1e-12, (k, r)
        parts = (r["share_with_baseline"], r["share_with_owner"], r["share_with_evidence"])
        assert min(parts) >= r["coverage"] - 1e-12


def check_yields(rows: list[dict[str, Any]]) -> None:
    """The evidence mix is a distribution; the band contains the point estimate."""
    for r in rows:
        shares = [r[f"share_{lv}"] for lv in LEVELS]
        if any(s is not None for s in shares):
            assert all(0 <= s <= 1 for s in shares) and np.isclose(sum(shares), 1.0)
        assert r["benefit_low"] <= r["benefit"] + 1e-9 <= r["benefit_high"] + 2e-9
        assert r["capacity_not_redeployed"] <= r["outcomes"]


def _counts_table(counts: list[dict[str, int]]) -> pa.Table:
    cols: dict[str, list[Any]] = {
        f"n_{k}": [c.get(k, 0) for c in counts] for k in (*COUNTED_SIGNALS, "rated")
    }
    cols.update(
        {
            "rating": [None] * len(counts),
            "n_calls": [c.get("calls", 1) for c in counts],
            "n_tokens": [1000] * len(counts),
            "n_errors": [0] * len(counts),
            "n_over_slo": [0] * len(counts),
            "effort_minutes": [0.0] * len(counts),
        }
    )
    return pa.table(cols)


@settings(max_examples=60, deadline=None)
@given(
    base=st.fixed_dictionaries({k: st.integers(0, 3) for k in COUNTED_SIGNALS}),
    extra=st.sampled_from([k for k in POSITIVE_SIGNALS if k in COUNTED_SIGNALS]),
    seed=st.integers(0, 1000),
)
def test_scores_are_monotone_in_positive_signals(base: dict[str, int], extra: str, seed: int) -> None:
    more = {**base, extra: base[extra] + 1}
    x = design_matrix(_counts_table([base, more]))
    rng = np.random.default_rng(seed)
    xs = (rng.random((40, len(FEATURES))) < 0.3).astype(float)
    calibrated = fit_map(xs, rng.random(40) < 0.5, name="global")
    for model in (prior_model(), calibrated):
        p = model.predict(x)
        assert p[1] >= p[0] - 1e-12
