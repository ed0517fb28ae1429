"""An outcome's benefit accrues over its period: a report window counts the part inside it.

The organisation, by hand: workflow ``ops`` (owner, baseline) makes one call a day from
2026-10-01 to 2026-10-07, each 1M input tokens of model m at $1 per million: $1 a day, $7 in
all. Its outcomes:

- ``week``: $700 of throughput over ``[2026-10-01, 2026-10-08)``, observational: $100 a day;
- ``spill``: $280 over ``[2026-09-29, 2026-10-06)``, 7 days of which 5 lie in October: $40 a day,
  $200 in October, $80 in September;
- ``moment``: $50 with no end, on 2026-10-03 at noon: a moment, whole in any window holding it;
- ``score``: a strategic score of 4 over the first week (no dollars; evidence only).

So in one day, 2026-10-03: benefit 100 + 40 + 50 = $190 against $1 (yield 190); on
2026-10-06: $100 against $1 (``spill`` ended at its start); in October: 700 + 200 + 50 = $950
against $7. Before, outcomes were counted only in the window holding their start: 2026-10-03
had $50, 2026-10-06 had no benefit and no evidence (coverage 0), October lost ``spill``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.value_data import build_workspace

CONFIG = """\
workflows:
  - workflow: ops
    owner: head-of-ops
    baseline_minutes: 10
    value_dimension: throughput
prices:
  - model: m
    provider: p
    input: 1.0
    output: 2.0
"""
OCT1 = datetime(2026, 10, 1, tzinfo=UTC)


def _rows() -> dict[str, list[dict[str, Any]]]:
    calls = [
        {
            "call_id": f"c{d}",
            "ts": OCT1 + timedelta(days=d, hours=9),
            "workflow": "ops",
            "provider": "p",
            "model": "m",
            "input_tokens": 1_000_000,
            "output_tokens": 0,
        }
        for d in range(7)
    ]
    outcome = {"workflow": "ops", "evidence_level": "observational", "baseline_value": 10.0}
    outcomes = [
        {**outcome, "outcome_id": "week", "period_start": OCT1, "period_end": OCT1 + timedelta(days=7),
         "monetary_value": 700.0, "observed_value": 6.0},
        {**outcome, "outcome_id": "spill", "period_start": OCT1 - timedelta(days=2),
         "period_end": OCT1 + timedelta(days=5), "monetary_value": 280.0, "observed_value": 7.0},
        {**outcome, "outcome_id": "moment", "period_start": OCT1 + timedelta(days=2, hours=12),
         "monetary_value": 50.0, "observed_value": 8.0},
        {"outcome_id": "score", "workflow": "ops", "value_dimension": "strategic", "observed_value": 4.0,
         "evidence_level": "controlled_experiment", "period_start": OCT1,
         "period_end": OCT1 + timedelta(days=7)},
    ]  # fmt: skip
    return {"calls": calls, "outcomes": outcomes}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    path: Path = tmp_path_factory.mktemp("periods")
    w = build_workspace(path, _rows(), CONFIG)
    yield w
    w.close()


def _yield(ws: Any, period: str | None) -> dict[str, Any]:
    [row] = [r for r in ws.value.yields("ops", period).yields.to_pylist() if r["workflow"] == "ops"]
    return row


@pytest.mark.parametrize(
    ("period", "benefit", "cost"),
    [
        ("2026-10-03", 190.0, 1.0),
        ("2026-10-06", 100.0, 1.0),
        ("2026-10", 950.0, 7.0),
        ("2026-09", 80.0, None),
    ],
)
def test_a_window_counts_the_part_of_each_outcome_inside_it(
    ws: Any, period: str, benefit: float, cost: float | None
) -> None:
    row = _yield(ws, period)
    assert row["benefit"] == pytest.approx(benefit)
    # September: benefit, but no spend to set it against (no cost, no yield)
    assert row["fully_loaded_cost"] == (None if cost is None else pytest.approx(cost))
    assert row["yield"] == (None if cost is None else pytest.approx(benefit / cost))


def test_all_time_counts_every_outcome_whole(ws: Any) -> None:
    assert _yield(ws, None)["benefit"] == pytest.approx(700 + 280 + 50)


def test_evidence_and_strategic_scores_count_in_every_window_their_period_overlaps(ws: Any) -> None:
    for period in ("2026-10-03", "2026-10-06"):
        cov = {r["workflow"]: r for r in ws.value.coverage(None, period).by_workflow.to_pylist()}
        assert cov["ops"]["coverage"] == pytest.approx(1.0), period
        strategic = ws.value.yields("ops", period).strategic.to_pylist()
        assert [(r["workflow"], r["strategic_score"]) for r in strategic] == [("ops", 4.0)], period
    # the day after every period ended: no outcome, no evidence
    assert ws.value.yields("ops", "2026-10-09").strategic.num_rows == 0


def test_the_funnel_shares_each_outcome_over_the_months_it_spans(ws: Any) -> None:
    """A month of the funnel reads the same in a report of that month, of a quarter, or of all
    time: ``spill`` is $80 in September and $200 in October in each."""
    october = {"2026-10": pytest.approx(950.0)}
    assert {r["month"]: r["value"] for r in ws.value.funnel("ops", "2026-10").to_pylist()} == october
    both = {"2026-09": pytest.approx(80.0), **october}
    for period in (None, "2026-09..2026-12", "2026-Q4"):
        rows = ws.value.funnel("ops", period).to_pylist()
        months = {r["month"]: r["value"] for r in rows if r["value"]}
        expected = both if period != "2026-Q4" else october  # Q4 starts in October
        assert months == expected, period
