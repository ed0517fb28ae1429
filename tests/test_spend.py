"""Fully loaded cost on the example dataset, every figure worked by hand.

Model cost (genai-prices list prices, USD per million tokens):
  risk    4 x gpt-4o-mini (1,200 in x 0.15 + 150 out x 0.60)          = 4 x 0.000270 = 0.00108
  support 4 x claude-3-5-haiku (2,000 in x 0.80 + 400 out x 4.00)      = 4 x 0.0032   = 0.0128
  finance 3 x gpt-4o (6,000 uncached x 2.50 + 4,000 cached x 1.25
                      + 1,000 out x 10.00)                              = 3 x 0.03     = 0.09
  comms   2 x acme-summariser: not in the catalog -> unpriced, never $0 of cost claimed
  total priced model cost 0.10388

Effort (minutes / 60 x workflow labour rate):
  support (40/h): 3 + 6 + 3 = 12 min -> 8.00;  finance (90/h): 20 min -> 30.00;
  risk (70/h): 2 + 4 = 6 min -> 7.00

Cost items:
  ci-1 $50 licence named for team support -> direct: all 50 stay with support
  ci-2 $20 platform, no scope -> pro rata by model cost over the month:
       support 20 x 0.0128/0.10388, finance 20 x 0.09/0.10388, risk 20 x 0.00108/0.10388
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yieldmeter.app.workspace import Workspace
from yieldmeter.metrics.spend import DIMENSIONS, Filters

TOTAL = 0.10388
EXPECTED = {
    "support": {"model_cost": 0.0128, "effort_cost": 8.0, "allocated_cost": 50 + 20 * 0.0128 / TOTAL},
    "finance": {"model_cost": 0.09, "effort_cost": 30.0, "allocated_cost": 20 * 0.09 / TOTAL},
    "risk": {"model_cost": 0.00108, "effort_cost": 7.0, "allocated_cost": 20 * 0.00108 / TOTAL},
}


def test_spend_by_team_matches_hand_figures(example_workspace: Path) -> None:
    with Workspace.open(example_workspace) as ws:
        rows = {r["team"]: r for r in ws.spend(["team"]).to_pylist()}
    assert set(rows) == {*EXPECTED, "comms"}
    for team, exp in EXPECTED.items():
        for k, v in exp.items():
            assert rows[team][k] == pytest.approx(v, abs=1e-9), (team, k)
        assert rows[team]["fully_loaded_cost"] == pytest.approx(sum(exp.values()), abs=1e-9)
    assert rows["support"]["calls"] == 4
    # comms: two calls to a model no price matches: the cost is unknown (null), never $0
    comms = rows["comms"]
    assert (comms["calls"], comms["unpriced_calls"]) == (2, 2)
    assert comms["model_cost"] is None and comms["fully_loaded_cost"] is None
    assert (comms["allocated_cost"], comms["effort_cost"]) == (0.0, 0.0)
    # and it sorts after every known cost
    assert list(rows)[-1] == "comms"
    # a dimension named twice (`--by team,team`, `?by=team,team`) is grouped by once
    with Workspace.open(example_workspace) as ws:
        once, twice = ws.spend(["team"]), ws.spend(["team", "team"])
    assert twice.column_names == once.column_names  # one team column
    assert twice.select(["team", "calls"]).to_pylist() == once.select(["team", "calls"]).to_pylist()


def test_totals_are_additive_across_every_dimension(example_workspace: Path) -> None:
    with Workspace.open(example_workspace) as ws:
        total = ws.spend([]).to_pylist()[0]
        assert total["fully_loaded_cost"] == pytest.approx(0.10388 + 45.0 + 70.0, abs=1e-9)
        for dim in DIMENSIONS:
            parts = ws.spend([dim]).to_pylist()
            for measure in ("model_cost", "allocated_cost", "effort_cost", "fully_loaded_cost", "calls"):
                # a group of unpriced calls only has a null cost: it adds nothing known
                got = sum(p[measure] or 0 for p in parts)
                assert got == pytest.approx(total[measure], abs=1e-9), (dim, measure)


def test_filters_restrict_the_period_and_scope(example_workspace: Path) -> None:
    from datetime import UTC, datetime

    with Workspace.open(example_workspace) as ws:
        # 2025-03-03 only: fr-1, fr-2 (risk) and sup-1, sup-2 (support)
        day = Filters(start=datetime(2025, 3, 3, tzinfo=UTC), end=datetime(2025, 3, 4, tzinfo=UTC))
        rows = {r["team"]: r["calls"] for r in ws.spend(["team"], day).to_pylist() if r["calls"]}
        assert rows == {"risk": 2, "support": 2}
        only = ws.spend(["model"], Filters(teams=("finance",))).to_pylist()
        assert [r["model"] for r in only if r["calls"]] == ["gpt-4o"]
        # the total over a period with nothing in it: one row, every figure 0 (nothing spent)
        none = Filters(start=datetime(2024, 1, 1, tzinfo=UTC), end=datetime(2024, 2, 1, tzinfo=UTC))
        [total] = ws.spend([], none).to_pylist()
        assert set(total.values()) == {0} and total["calls"] == 0


def test_allocation_rule_is_recorded(example_workspace: Path) -> None:
    from yieldmeter.metrics.spend import allocation

    with Workspace.open(example_workspace) as ws:
        alloc = allocation(ws.tables()).to_pyarrow().to_pylist()
    by_item: dict[str, float] = {}
    rules: dict[str, set[str]] = {}
    for r in alloc:
        by_item[r["item_id"]] = by_item.get(r["item_id"], 0.0) + r["allocated_cost"]
        rules.setdefault(r["item_id"], set()).add(r["allocation_rule"])
    assert by_item == pytest.approx({"ci-1": 50.0, "ci-2": 20.0})
    # the licence names its team: direct; the platform item names nobody: shared pro rata
    assert rules == {"ci-1": {"direct"}, "ci-2": {"pro_rata"}}
    assert {r["team"] for r in alloc if r["item_id"] == "ci-1"} == {"support"}


def test_item_without_calls_in_scope_is_allocated_directly(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text(
        "item_id,period_start,period_end,amount,category,team\n"
        "gpu,2025-01-01T00:00:00Z,2025-02-01T00:00:00Z,900,gpu,ml-platform\n"
    )
    with Workspace.init(tmp_path) as ws:
        ws.ingest_paths([tmp_path / "items.csv"])
        rows = ws.spend(["team"]).to_pylist()
    assert rows == [
        {
            "team": "ml-platform",
            "calls": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "model_cost": 0.0,
            "unpriced_calls": 0,
            "allocated_cost": 900.0,
            "effort_cost": 0.0,
            "fully_loaded_cost": 900.0,
        }
    ]


@pytest.fixture(scope="module")
def shared_examples(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    import shutil

    from tests.conftest import EXAMPLES

    d = tmp_path_factory.mktemp("examples")
    shutil.copy(EXAMPLES / "yieldmeter.yaml", d / "yieldmeter.yaml")
    ws = Workspace.open(d, create=True)
    ws.ingest_paths([EXAMPLES / "data"])
    return ws


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dims=st.lists(st.sampled_from(DIMENSIONS), min_size=1, max_size=3, unique=True))
def test_any_grouping_partitions_the_total(shared_examples: Workspace, dims: list[str]) -> None:
    total = shared_examples.spend([]).to_pylist()[0]["fully_loaded_cost"]
    parts = shared_examples.spend(dims).to_pylist()
    assert sum(p["fully_loaded_cost"] or 0 for p in parts) == pytest.approx(total, abs=1e-9)
    assert json.dumps(parts, default=str)  # serialisable rows keyed by names


@pytest.mark.parametrize("grain", [("day", "team", "workflow", "app"), ("day", "team", "workflow", "model")])
def test_a_coarser_grain_gives_the_same_sums(shared_examples: Workspace, grain: tuple[str, ...]) -> None:
    """Cost lines at a coarser grain (the value reports read day x team x workflow x app) add up
    to the full grain's figures on every one of their own dimensions: an item's pro rata share of
    a coarse cell is the sum of its fine cells' shares (ci-1 is scoped to a team, ci-2 to none)."""
    from yieldmeter.metrics.spend import MEASURES, cost_lines, spend

    t, rates = shared_examples.tables(), shared_examples.config.labour_rates
    full, coarse = cost_lines(t, rates), cost_lines(t, rates, grain)
    assert coarse.columns == (*grain, *MEASURES, "fully_loaded_cost")
    for by in ([], ["workflow"], ["team", "day"], list(grain)):
        want = {tuple(r[k] for k in by): r for r in spend(full, by).to_pyarrow().to_pylist()}
        got = {tuple(r[k] for k in by): r for r in spend(coarse, by).to_pyarrow().to_pylist()}
        assert got.keys() == want.keys(), by
        for key, row in want.items():
            for m in (*MEASURES, "fully_loaded_cost"):
                assert got[key][m] == pytest.approx(row[m], abs=1e-9), (by, key, m)


def test_a_grain_must_hold_the_cost_item_scope(shared_examples: Workspace) -> None:
    from yieldmeter.metrics.spend import cost_lines

    with pytest.raises(ValueError, match="day, team, workflow"):
        cost_lines(shared_examples.tables(), shared_examples.config.labour_rates, ("day", "workflow"))


def test_utc_day_and_second_of_day_from_the_epoch() -> None:
    """The epoch route (DuckDB's epoch_us) gives what the calendar route gives, before 1970 too."""
    import math
    from datetime import UTC, datetime

    import ibis
    import pyarrow as pa

    from yieldmeter.metrics.period import utc_day, utc_second_of_day

    stamps = [
        datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
        datetime(2025, 3, 4, 0, 0, 0, tzinfo=UTC),
        datetime(2025, 3, 4, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        None,
    ]
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    t = con.create_table("stamps", pa.table({"ts": pa.array(stamps, pa.timestamp("us", tz="UTC"))}))
    expr = t.select(
        day=utc_day(t.ts),
        calendar_day=t.ts.truncate("D"),
        sod=utc_second_of_day(t.ts),
        calendar_sod=t.ts.epoch_seconds() % 86_400,
    )
    assert "EPOCH_US" in ibis.to_sql(expr)
    rows = con.raw_sql(ibis.to_sql(expr)).fetchall()
    for day, calendar_day, sod, calendar_sod in rows:
        assert day == calendar_day
        if calendar_sod is not None:
            # whole seconds, compared only with whole-second window bounds: the same comparisons
            assert sod == math.floor(calendar_sod) or (calendar_sod < 0 and sod < 0)
    assert [r[2] for r in rows] == [18367, 0, 86_399, -1, None]
