"""Golden figures of the value reports, computed by hand on the organisation of
:func:`tests.value_data.golden_rows` (a real DuckDB workspace; fixed scores).

The hand computation, once:

- claims model cost = c1..c6: 1 + 1 + 12 x 0.10 + 1 + 1 + 1 = $6.20 (m costs $1 / 1M input tokens);
  the $5 platform item is spread pro rata on model cost (all on claims);
  effort = 30 min x $60/h = $30; fully loaded = 6.20 + 5 + 30 = $41.20.
- per unit allocated cost = $5 x cost / 6.20: $0.806452 per $1 call, $0.967742 for c3.
- calls: 1+1+12+1+1+1 = 17; units 6; accepted (accepted, saved, copied) c1 c2 c4 c5 c6 = 5;
  acted c1 c4 c5 c6 = 4; successful: c1 (accepted by a person: risk high ok), c5 (reviewed 30 min)
  = 2; c4 breaks the 5 s SLO; c6 has no human acceptance or review (risk high); c2 did not act.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.value_data import GOLDEN_CONFIG, build_workspace, golden_rows, golden_scores
from yieldmeter.app.reports import ReportFilters

APPROX = {"rel": 1e-6, "abs": 1e-9}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    path: Path = tmp_path_factory.mktemp("golden")
    w = build_workspace(path, golden_rows(), GOLDEN_CONFIG, golden_scores())
    yield w
    w.close()


def _row(table: Any, **match: Any) -> dict[str, Any]:
    rows = [r for r in table.to_pylist() if all(r.get(k) == v for k, v in match.items())]
    assert len(rows) == 1, (match, table.to_pylist())
    return rows[0]


def test_funnel_counts_and_stage_costs(ws: Any) -> None:
    r = _row(ws.value.funnel(), workflow="claims", month="2026-10")
    assert (r["calls"], r["work_units"], r["accepted_outputs"], r["actions"], r["successful_outcomes"]) == (
        17,
        6,
        5,
        4,
        2,
    )
    assert r["fully_loaded_cost"] == pytest.approx(41.2, **APPROX)
    assert r["model_cost"] == pytest.approx(6.2, **APPROX)
    assert r["allocated_cost"] == pytest.approx(5.0, **APPROX)
    assert r["effort_cost"] == pytest.approx(30.0, **APPROX)
    assert r["cost_per_call"] == pytest.approx(41.2 / 17, **APPROX)
    assert r["cost_per_work_unit"] == pytest.approx(41.2 / 6, **APPROX)
    assert r["cost_per_accepted_output"] == pytest.approx(41.2 / 5, **APPROX)
    assert r["cost_per_action"] == pytest.approx(41.2 / 4, **APPROX)
    assert r["cost_per_successful_outcome"] == pytest.approx(20.6, **APPROX)
    # value = workflow benefit $50 + redeployed capacity $20; not the $1000 of capacity not redeployed
    assert r["value"] == pytest.approx(70.0, **APPROX)
    assert r["value_per_success"] == pytest.approx(35.0, **APPROX)
    # expected value = 4 x (0.9 + 0.8 + 0.1 + 0.85 + 0.6 + 0.9) = 16.6
    assert r["expected_value"] == pytest.approx(16.6, **APPROX)
    assert r["success_basis"] == "action"


def test_funnel_without_action_signals_judges_on_acceptance(ws: Any) -> None:
    r = _row(ws.value.funnel(workflow="fraud"), workflow="fraud")
    assert r["actions"] is None and r["success_basis"] == "acceptance"
    assert r["cost_per_work_unit"] == pytest.approx(2.0, **APPROX)
    # fraud records no outcome: no value measured (it read as a value of $0 and "$0" per success)
    assert r["value"] is None and r["value_per_success"] is None
    [section_row] = [x for x in ws.reports.funnel_rows(ReportFilters()) if x["workflow"] == "fraud"]
    assert section_row["value"] is None and section_row["value_per_success"] is None
    [claims] = [x for x in ws.reports.funnel_rows(ReportFilters()) if x["workflow"] == "claims"]
    assert claims["value"] == pytest.approx(70.0, **APPROX)  # the months with an outcome add up


def test_unit_costs_reconcile_with_cost_lines(ws: Any) -> None:
    f = {r["work_unit_id"]: r for r in ws.value.facts().to_pyarrow().to_pylist()}
    assert f["c1"]["allocated_cost"] == pytest.approx(5 / 6.2, **APPROX)
    assert f["c3"]["fully_loaded_cost"] == pytest.approx(1.2 + 5 * 1.2 / 6.2, **APPROX)
    assert f["c5"]["fully_loaded_cost"] == pytest.approx(1 + 5 / 6.2 + 30, **APPROX)
    claims = sum(r["fully_loaded_cost"] for r in f.values() if r["workflow"] == "claims")
    assert claims == pytest.approx(41.2, **APPROX)
    assert [u for u, r in sorted(f.items()) if r["successful"]] == ["c1", "c5"]
    assert not f["c4"]["meets_latency"] and not f["c6"]["meets_risk"]


def test_yields_with_bands_and_evidence(ws: Any) -> None:
    rep = ws.value.yields()
    wf = _row(rep.yields, workflow="claims", family="workflow")
    # $100 x 0.5 attribution = $50 over $41.20; baseline comparison band +-25%: 37.5 .. 62.5
    assert wf["benefit"] == pytest.approx(50.0, **APPROX)
    assert wf["yield"] == pytest.approx(50 / 41.2, **APPROX)
    assert wf["yield_low"] == pytest.approx(37.5 / 41.2, **APPROX)
    assert wf["yield_high"] == pytest.approx(62.5 / 41.2, **APPROX)
    assert wf["evidence_mix"] == "baseline_comparison 100%"
    cap = _row(rep.yields, workflow="claims", family="capacity")
    # only the redeployed $20 counts; anecdote band +-100%
    assert cap["benefit"] == pytest.approx(20.0, **APPROX)
    assert cap["capacity_not_redeployed"] == 1
    assert (cap["yield_low"], cap["yield_high"]) == pytest.approx((0.0, 40 / 41.2), **APPROX)
    total = _row(rep.yields, workflow="(all)", family="workflow")
    assert total["fully_loaded_cost"] == pytest.approx(43.7, **APPROX)  # 41.20 + fraud 2 + unassigned 0.50
    assert not any(r["family"] == "strategic" for r in rep.yields.to_pylist())
    st = _row(rep.strategic, workflow="claims")
    # (4 x 4 + 1 x 1) / (4 + 1) = 3.4; confidence 5 / (5 + 4)
    assert st["strategic_score"] == pytest.approx(3.4, **APPROX)
    assert st["confidence"] == pytest.approx(5 / 9, **APPROX)
    # interval: sum w^2 (v - m)^2 = 16 x 0.6^2 + 1 x 2.4^2 = 11.52; se = sqrt(11.52) / 5 = 0.678823;
    # 3.4 -/+ 1.645 x 0.678823 = 2.283336 .. 4.516664
    half = 1.645 * 11.52**0.5 / 5
    assert (st["strategic_low"], st["strategic_high"]) == pytest.approx((3.4 - half, 3.4 + half), **APPROX)
    row = next(r for r in rep.rows() if r["family"] == "strategic")
    assert row["strategic_low"] == pytest.approx(3.4 - half, **APPROX)
    assert sorted(rep.strategic_evidence.column("outcome_id").to_pylist()) == ["o4", "o5"]
    assert any("not redeployed" in n for n in rep.notes)


def test_coverage_parts_and_largest_uncovered(ws: Any) -> None:
    rep = ws.value.coverage()
    total = rep.total
    assert total["spend"] == pytest.approx(43.7, **APPROX)
    assert total["coverage"] == pytest.approx(41.2 / 43.7, **APPROX)
    assert total["share_with_baseline"] == pytest.approx(41.2 / 43.7, **APPROX)
    assert total["share_with_owner"] == pytest.approx(43.2 / 43.7, **APPROX)  # fraud has an owner
    assert total["share_with_evidence"] == pytest.approx(41.2 / 43.7, **APPROX)
    top = rep.largest_uncovered.to_pylist()
    assert [(r["workflow"], r["missing"]) for r in top] == [
        ("fraud", "baseline, evidence"),
        ("(unassigned)", "baseline, owner, evidence"),
    ]
    assert top[0]["spend"] == pytest.approx(2.0, **APPROX)


def test_waste_categories_and_spend_at_stake(ws: Any) -> None:
    w = ws.value.waste()
    # c3 (12 calls, no signal) is not a loop: the accepted claims make 1 call each (median 1, MAD 0),
    # so a loop needs max(20, 1 + 10 x 0) = 20 calls; it is an output nobody used
    assert not any(r["category"] == "expensive_loop" for r in w.to_pylist())
    unused = _row(w, workflow="claims", category="unused_output")
    assert unused["examples"] == "c3"
    assert unused["spend_at_stake"] == pytest.approx(1.2 + 5 * 1.2 / 6.2, **APPROX)
    rework = _row(w, workflow="claims", category="rework")
    # 30 min reviewed vs a 10 min baseline: 20 excess minutes x $60/h
    assert rework["spend_at_stake"] == pytest.approx(20.0, **APPROX)
    unresolved = _row(w, workflow="claims", category="accepted_not_resolved")
    assert unresolved["examples"] == "c5"
    assert unresolved["spend_at_stake"] == pytest.approx(1 + 5 / 6.2 + 30, **APPROX)
    total = _row(w, workflow="claims", category="total")
    # c5 counted once (its rework is inside its fully loaded cost)
    assert total["work_units"] == 2
    assert total["spend_at_stake"] == pytest.approx(1.2 + 5 * 1.2 / 6.2 + 1 + 5 / 6.2 + 30, **APPROX)
    assert _row(w, workflow="fraud", category="unused_output")["spend_at_stake"] == pytest.approx(2.0)


def _waste_facts(ids: list[str], **columns: Any) -> Any:
    """Unit facts with the columns waste reads, for ``ids``: a closed, unscored unit in workflow "w"
    with one priced call, no signal, no effort, no baseline and a cost of 1, except where ``columns``
    says."""
    import ibis
    import pyarrow as pa

    n = len(ids)
    table = {
        "workflow": ["w"] * n,
        "work_unit_id": ids,
        "calls": [1] * n,
        "unpriced_calls": [0] * n,
        "accepted": [False] * n,
        "acted": [False] * n,
        "n_positive": [0] * n,
        "status": ["completed"] * n,
        "p_value": pa.nulls(n, pa.float64()),
        "effort_minutes": [0.0] * n,
        "baseline_minutes": pa.nulls(n, pa.float64()),
        "effort_cost": [0.0] * n,
        "n_recontact_after_accept": [0] * n,
        "fully_loaded_cost": [1.0] * n,
    }
    return ibis.memtable(pa.table({**table, **columns}))


def test_loop_threshold_from_the_workflow_own_calls() -> None:
    """Loops judged against the workflow's accepted units, by hand.

    Workflow a: accepted units with 2, 3, 3, 4, 10 calls: median 3, absolute deviations
    1, 0, 0, 1, 7 -> MAD 1, threshold max(20, 3 + 10 x 1) = 20. Unaccepted units: 19 calls (below),
    20 calls (a loop), 45 calls but acted on (not a loop). Workflow b: nothing accepted, so all its
    units are the reference: 30, 40, 50, 200 calls: median 45, deviations 15, 5, 5, 155 -> MAD 10,
    threshold 45 + 100 = 145: only the 200-call unit is a loop.
    """
    from yieldmeter.metrics.waste import loop_thresholds, waste_units

    rows = [("a", f"ok{i}", c, True, True) for i, c in enumerate((2, 3, 3, 4, 10))]
    rows += [("a", "x19", 19, False, False), ("a", "x20", 20, False, False), ("a", "acted", 45, False, True)]
    rows += [("b", f"b{c}", c, False, False) for c in (30, 40, 50, 200)]
    facts = _waste_facts(
        [r[1] for r in rows],
        workflow=[r[0] for r in rows],
        calls=[r[2] for r in rows],
        accepted=[r[3] for r in rows],
        acted=[r[4] for r in rows],
        n_positive=[1 if r[3] else 0 for r in rows],
    )
    t = {r["loop_workflow"]: r for r in loop_thresholds(facts).to_pyarrow().to_pylist()}
    assert (t["a"]["loop_median_calls"], t["a"]["loop_mad_calls"], t["a"]["loop_min_calls"]) == (3, 1, 20)
    assert (t["b"]["loop_median_calls"], t["b"]["loop_mad_calls"], t["b"]["loop_min_calls"]) == (45, 10, 145)
    flags = waste_units(facts).to_pyarrow().to_pylist()
    assert sorted(r["work_unit_id"] for r in flags if r["expensive_loop"]) == ["b200", "x20"]


def test_silence_is_unused_only_when_the_odds_say_so() -> None:
    """Four units with no sign of use (not accepted, no positive signal, not a loop, closed):
    unscored and p 0.3 are unused outputs; p 0.5 and p 0.9 are not (the value model gives them
    even odds or better of having delivered without a trace); an open unit never is."""
    import pyarrow as pa

    from yieldmeter.metrics.waste import waste_units

    ids = ["none", "p30", "p50", "p90", "open"]
    facts = _waste_facts(
        ids,
        status=["completed"] * 4 + ["open"],
        p_value=pa.array([None, 0.3, 0.5, 0.9, 0.1], pa.float64()),
        fully_loaded_cost=[2.0] * len(ids),
    )
    flags = {r["work_unit_id"]: r for r in waste_units(facts).to_pyarrow().to_pylist()}
    assert [i for i in ids if flags[i]["unused_output"]] == ["none", "p30"]
    assert flags["p30"]["stake_unused_output"] == 2.0 and flags["p90"]["stake_unused_output"] == 0.0


def test_waste_examples_are_the_largest_stakes_ties_by_id() -> None:
    """Five unused outputs (no signal, unscored) costing 1, 5, 3, 5, 2: the three examples are the
    largest stakes first, the two at 5 in id order (u2 before u4), then the 3 (u3); the count and
    the stake cover all five (1 + 5 + 3 + 5 + 2 = 16), as does the total row."""
    from yieldmeter.metrics.waste import waste

    facts = _waste_facts(["u4", "u1", "u3", "u2", "u5"], fully_loaded_cost=[5.0, 1.0, 3.0, 5.0, 2.0])
    rows = {r["category"]: r for r in waste(facts).to_pyarrow().to_pylist()}
    assert sorted(rows) == ["total", "unused_output"]
    for row in rows.values():
        assert row["examples"] == "u2, u4, u3"
        assert (row["work_units"], row["spend_at_stake"], row["share_of_spend"]) == (5, 16.0, 1.0)


def test_waste_of_unpriced_units_is_unknown_but_rework_is_effort() -> None:
    """A stake made only of units whose every call is unpriced is unknown; rework's is effort.

    Workflow "w": two unused outputs whose calls are all unpriced (cost 0 + effort 3 each: a
    remainder) and a unit reworked (30 minutes against a baseline of 10, effort cost 6: at stake
    6 x 20 / 30 = 4, known). Its total holds the unused outputs: unknown. Workflow "x": only
    that reworked unit: rework and total are 4, known, but its share is not (its spend is
    unknown). Workflow "m": one unused output unpriced, and a priced unit accepted: the stake is
    the unpriced one's alone, unknown, though the workflow has priced calls. Workflow "v": the
    two outputs with one of two calls priced each: a lower bound, 3 + 3 = 6 of a cost of 6."""
    from yieldmeter.metrics.waste import waste

    facts = _waste_facts(
        ["w1", "w2", "w3", "x1", "m1", "m2", "v1", "v2"],
        workflow=["w", "w", "w", "x", "m", "m", "v", "v"],
        calls=[1, 1, 1, 1, 1, 1, 2, 2],
        unpriced_calls=[1, 1, 1, 1, 1, 0, 1, 1],
        accepted=[False, False, True, True, False, True, False, False],
        effort_minutes=[0.0, 0.0, 30.0, 30.0, 0.0, 0.0, 0.0, 0.0],
        baseline_minutes=[None, None, 10.0, 10.0, None, None, None, None],
        effort_cost=[3.0, 3.0, 6.0, 6.0, 3.0, 0.0, 3.0, 3.0],
        fully_loaded_cost=[3.0, 3.0, 6.0, 6.0, 3.0, 5.0, 3.0, 3.0],
    )
    rows = {(r["workflow"], r["category"]): r for r in waste(facts).to_pyarrow().to_pylist()}
    stake = {k: r["spend_at_stake"] for k, r in rows.items()}
    assert stake[("w", "unused_output")] is None and stake[("w", "total")] is None
    assert rows[("w", "unused_output")]["share_of_spend"] is None
    assert stake[("w", "rework")] == pytest.approx(4.0)
    assert stake[("x", "rework")] == pytest.approx(4.0) and stake[("x", "total")] == pytest.approx(4.0)
    assert rows[("x", "total")]["share_of_spend"] is None
    assert stake[("m", "unused_output")] is None and rows[("m", "unused_output")]["share_of_spend"] is None
    assert stake[("v", "unused_output")] == pytest.approx(6.0)
    assert rows[("v", "unused_output")]["share_of_spend"] == pytest.approx(1.0)


def test_value_per_token_inside_a_workflow(ws: Any) -> None:
    r = _row(ws.value.value_per_token("claims"), workflow="claims", model="m")
    # 16.6 expected dollars over 6.2M tokens
    assert r["value_per_token"] == pytest.approx(16.6 / 6.2e6, **APPROX)
    assert r["value_per_token_low"] <= r["value_per_token"] <= r["value_per_token_high"]


def test_value_per_token_across_workflows_is_refused_unless_normalised(ws: Any) -> None:
    from yieldmeter.metrics.value import CrossWorkflowComparison

    with pytest.raises(CrossWorkflowComparison, match="only comparable inside one workflow"):
        ws.value.value_per_token()
    rows = ws.value.value_per_token(by="team", normalise=True).to_pylist()
    # min_group_size 2: risk (eve alone) is hidden here as in the benchmarks
    assert {r["team"]: r["people"] for r in rows} == {"east": 2, "west": 2}
    assert all(0.0 <= r["mean_percentile"] <= 1.0 for r in rows)


def test_value_per_token_by_team_hides_small_teams(ws: Any) -> None:
    every = set()
    for wf in ("claims", "fraud"):
        rows = ws.value.value_per_token(wf, by="team").to_pylist()
        assert all(r["people"] >= 2 for r in rows)
        every |= {r["team"] for r in rows}
    assert "risk" not in every and every <= {"east", "west"}
    models = ws.value.value_per_token("claims", by="model")  # not a group of people: nothing hidden
    assert "people" not in models.column_names


def test_benchmarks_privacy(ws: Any) -> None:
    from yieldmeter.app.value import PrivacyError

    with pytest.raises(PrivacyError, match="--people"):
        ws.value.benchmarks(by="user")
    rep = ws.value.benchmarks(by="team")
    # min_group_size 2: east (ann, bob) and west (cy, dee) are shown; risk (eve) is hidden
    assert sorted(rep.rows.column("subject").to_pylist()) == ["east", "west"]
    assert rep.hidden_groups == 1
    people = ws.value.benchmarks(by="user", people=True).rows
    assert "eve" in people.column("subject").to_pylist()
    # one order on every surface and run: equal estimates (shrunk to one mean) by subject
    rows = [(r["workflow"], -r["value_per_token"], r["subject"]) for r in people.to_pylist()]
    assert rows == sorted(rows)


def test_benchmark_team_raw_figures(ws: Any) -> None:
    east = _row(ws.value.benchmarks("claims", by="team").rows, subject="east")
    # east: c1, c2, c3 -> 3 units, 3.2M tokens, 4 x (0.9 + 0.8 + 0.1) = 7.2 expected dollars, 1 success
    assert east["n"] == 3 and east["successes"] == 1
    assert east["value_per_token_raw"] == pytest.approx(7.2 / 3.2e6, **APPROX)
    assert east["success_rate_raw"] == pytest.approx(1 / 3, **APPROX)
    lo, hi = east["success_rate_low"], east["success_rate_high"]
    assert lo <= east["success_rate"] <= hi


def test_patterns_rank_by_lift(ws: Any) -> None:
    p = ws.value.patterns("claims").to_pylist()
    it = {r["segment"]: r for r in p if r["dimension"] == "iterations"}
    # c3 is the only unit with 11+ calls: its value per token is 0.4 / 1.2M, the workflow's 16.6 / 6.2M
    assert it["11+"]["value_per_token_raw"] == pytest.approx(0.4 / 1.2e6, **APPROX)
    assert it["11+"]["workflow_value_per_token"] == pytest.approx(16.6 / 6.2e6, **APPROX)
    lifts = [r["lift"] for r in p if r["lift"] is not None]
    assert lifts == sorted(lifts, reverse=True)
    assert {r["dimension"] for r in p} == {
        "model",
        "session_length",
        "iterations",
        "prompt_size",
        "tool_use",
        "time_to_first_acceptance",
    }


def test_period_filter(ws: Any) -> None:
    assert ws.value.funnel(period="2026-09").num_rows == 0
    assert ws.value.funnel(period="2026-10").num_rows == 3
    with pytest.raises(ValueError, match="period"):
        ws.value.funnel(period="last tuesday")


def test_pattern_segments_follow_the_period_and_workflow(ws: Any) -> None:
    """Segments are kept for the last period and workflow asked for, never reused for another."""

    def figures(t: Any, workflow: str | None = None) -> dict[tuple[str, str, str, int], float]:
        # units per segment exactly, value up to the order of float additions
        rows = [r for r in t.to_pylist() if workflow is None or r["workflow"] == workflow]
        return {(r["workflow"], r["dimension"], r["segment"], r["n"]): r["value"] for r in rows}

    claims = figures(ws.value.patterns("claims"))
    assert figures(ws.value.patterns("claims")) == pytest.approx(claims)
    assert ws.value.patterns("claims", period="2026-09").num_rows == 0
    every = ws.value.patterns()
    assert {r["workflow"] for r in every.to_pylist()} > {"claims"}
    assert figures(every, "claims") == pytest.approx(claims)
    assert figures(ws.value.patterns("claims")) == pytest.approx(claims)
