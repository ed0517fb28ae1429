"""A cost item that names its team stays with that team's work units.

By hand: workflow ``ops`` on 2026-10-01, team ``core`` runs unit u1 (one call, 1M input tokens
of model m at $1 per million: $1) and team ``edge`` runs unit u2 (the same: $1). A $10 GPU node
tagged team ``core`` (FOCUS Tags, as the simulator's billing writes) is core's cost: u1 carries
$10 of allocated cost, u2 none. A $4 gateway item that names no one is shared pro rata on model
cost: $2 each. Before, units took the uplift of their workflow and day, (10 + 4) / 2 = $7 per
dollar of model cost, so u2 carried $7 of core's node and edge's waste exceeded its spend.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.value_data import build_workspace

CONFIG = """\
workflows:
  - workflow: ops
privacy:
  min_group_size: 1
prices:
  - model: m
    provider: p
    input: 1.0
    output: 2.0
"""
DAY = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    units = [
        {"work_unit_id": u, "workflow": "ops", "team": team, "started_at": DAY}
        for u, team in (("u1", "core"), ("u2", "edge"))
    ]
    calls = [
        {"call_id": f"{u}-1", "ts": DAY + timedelta(hours=9), "work_unit_id": u, "workflow": "ops",
         "team": team, "provider": "p", "model": "m", "input_tokens": 1_000_000, "output_tokens": 0}
        for u, team in (("u1", "core"), ("u2", "edge"))
    ]  # fmt: skip
    items = [
        {"item_id": "gpu", "period_start": DAY, "period_end": DAY + timedelta(days=1), "amount": 10.0,
         "team": "core", "category": "compute"},
        {"item_id": "gateway", "period_start": DAY, "period_end": DAY + timedelta(days=1), "amount": 4.0,
         "category": "platform"},
    ]  # fmt: skip
    w = build_workspace(
        tmp_path_factory.mktemp("alloc"), {"work_units": units, "calls": calls, "cost_items": items}, CONFIG
    )
    yield w
    w.close()


def test_a_unit_carries_its_own_teams_items_and_its_share_of_the_shared_ones(ws: Any) -> None:
    facts = {r["work_unit_id"]: r for r in ws.value.facts().to_pyarrow().to_pylist()}
    assert facts["u1"]["allocated_cost"] == pytest.approx(10.0 + 2.0)
    assert facts["u2"]["allocated_cost"] == pytest.approx(2.0)
    # the units' costs add up to each team's spend
    spend = {r["team"]: r["fully_loaded_cost"] for r in ws.spend(["team"]).to_pylist()}
    assert spend == {"core": pytest.approx(13.0), "edge": pytest.approx(3.0)}
    assert facts["u2"]["model_cost"] + facts["u2"]["allocated_cost"] == pytest.approx(spend["edge"])


def test_the_spend_table_says_how_many_rows_it_leaves_out(tmp_path_factory: pytest.TempPathFactory) -> None:
    """17 teams, team-k spending $k (one call of k million input tokens at $1 per million): the
    table shows 15 and says the other two, team-1 and team-2, spent $3."""
    from yieldmeter.app.reports import ReportFilters

    calls = [
        {"call_id": f"c{k}", "ts": DAY, "team": f"team-{k}", "provider": "p", "model": "m",
         "input_tokens": k * 1_000_000, "output_tokens": 0}
        for k in range(1, 18)
    ]  # fmt: skip
    w = build_workspace(tmp_path_factory.mktemp("teams"), {"calls": calls}, CONFIG)
    try:
        table = w.reports.spend_table(ReportFilters(), "team")
    finally:
        w.close()
    assert [r["team"] for r in table.rows] == [f"team-{k}" for k in range(17, 2, -1)]
    assert "The 15 largest of 17 by fully loaded cost; the other 2 spent $3.00" in table.caption
