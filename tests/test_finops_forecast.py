"""Forecasts and burn-down on a series whose future is known: 2.00 USD every day.

AutoETS on a constant series forecasts the constant with (near) zero spread, so
every figure can be computed by hand. Accuracy on noisy, seasonal spend is
measured by the backtest in benchmarks/bench_finops.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.finops_data import call, ingest, make_workspace, utc

NOW = utc(2026, 10, 20, 12)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    root: Path = tmp_path_factory.mktemp("forecast") / "ws"
    ws = make_workspace(root)
    start = utc(2026, 9, 10, 10)
    rows = [call(start + timedelta(days=d), 2.0, work_unit_id=f"u{d}") for d in range(41)]  # Sep 10 .. Oct 20
    ingest(ws, "calls", rows)
    yield ws
    ws.close()


def test_spend_forecast_for_the_rest_of_the_month_and_three_more(ws):
    rows = {r["period"]: r for r in ws.finops.forecast("team", NOW).to_pylist()}
    assert list(rows) == ["rest of 2026-10", "2026-11", "2026-12", "2027-01"]
    rest = rows["rest of 2026-10"]
    # Actual before today: Oct 1..19 = 19 x 2 = 38; forecast Oct 20..31 = 12 x 2 = 24 -> 62.
    assert rest["actual"] == pytest.approx(38.0)
    assert rest["forecast"] == pytest.approx(24.0, rel=1e-3)
    assert rest["total"] == pytest.approx(62.0, rel=1e-3)
    assert rows["2026-11"]["total"] == pytest.approx(60.0, rel=1e-3)  # 30 days x 2
    assert rows["2027-01"]["total"] == pytest.approx(62.0, rel=1e-3)  # 31 days x 2
    for r in rows.values():
        assert r["lo_95"] <= r["lo_80"] <= r["total"] <= r["hi_80"] <= r["hi_95"]
        assert r["hi_95"] - r["lo_95"] < 0.01 * r["total"]  # no noise, (almost) no spread
    assert rest["history_days"] == 40  # complete days before today


def test_burn_down_projects_the_run_out_day(ws):
    bid = ws.finops.add_budget("team", "alpha", "month", 50.0)
    bd = ws.finops.burn_down(bid, NOW)
    # 38 spent by Oct 19; +2 a day from Oct 20: 40, 42, 44, 46, 48, 50 -> reaches 50 on Oct 25.
    assert bd["run_out_day"] == "2026-10-25"
    assert bd["earliest_run_out_day"] <= bd["run_out_day"]
    assert bd["days"][0] == {"day": "2026-10-01", "actual": 2.0, "forecast": None}
    assert bd["projected_total"] == pytest.approx(62.0, rel=1e-3)
    assert bd["days"][-1]["day"] == "2026-10-31"


def test_forecast_errors_are_for_people(ws):
    with pytest.raises(ValueError, match="choose from team, workflow"):
        ws.finops.forecast("colour", NOW)
    with pytest.raises(KeyError, match="budgets list"):
        ws.finops.burn_down("no-such-budget", NOW)
