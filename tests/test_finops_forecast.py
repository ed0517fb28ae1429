"""Forecasts and burn-down on a series whose future is known: 2.00 USD every day.

AutoETS on a constant series forecasts the constant with (near) zero spread, so
every figure can be computed by hand. Accuracy on noisy, seasonal spend is
measured by the backtest in benchmarks/bench_finops.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
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


# -- short histories, long horizons, time zones -------------------------------------------------------


def _adopting_team(days: int, seed: int) -> list[float]:
    """A team that adopted the tool over its first three weeks (30% of its use rising to 100%), then held:
    2,000 USD a weekday and 200 a weekend day at full use, 8% day-to-day noise."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(days):
        day = START_SHORT + timedelta(days=d)
        base = 200.0 if day.weekday() >= 5 else 2000.0
        out.append(base * min(1.0, 0.3 + 0.7 * d / 21) * float(np.exp(rng.normal(0, 0.08))))
    return out


START_SHORT = utc(2026, 10, 1)


def test_three_months_ahead_from_five_weeks_of_history(tmp_path: Path):
    """35 days of an adopting team: every month ahead stays near its steady level, bands stay bounded.

    Hand figure: at full use a month holds about 21.7 weekdays and 8.7 weekend days, so about
    21.7 x 2,000 + 8.7 x 200 = 45,200 USD (December, with 23 weekdays: 47,600; February, 20: 41,600).
    The old model (AutoETS free to pick an undamped trend on five weeks) read the adoption ramp as
    growth for ever and forecast 108k, 139k and 166k USD for December to February.
    """
    ws = make_workspace(tmp_path / "ws")
    spend = _adopting_team(35, seed=0)
    ingest(ws, "calls", [call(START_SHORT + timedelta(days=d, hours=12), usd, team="delivery")
                         for d, usd in enumerate(spend)])  # fmt: skip
    now = START_SHORT + timedelta(days=35, hours=1)  # 2026-11-05
    rows = {r["period"]: r for r in ws.finops.forecast("team", now).to_pylist()}
    assert list(rows) == ["rest of 2026-11", "2026-12", "2027-01", "2027-02"]
    for label, expected in (("2026-12", 47_600), ("2027-01", 45_200), ("2027-02", 41_600)):
        r = rows[label]
        assert r["total"] == pytest.approx(expected, rel=0.12), (label, r["total"])
        assert r["lo_80"] <= r["total"] <= r["hi_80"] < 4 * r["total"], (label, r)
        assert r["model"] == "AutoETS level, weekly season" and r["history_days"] == 35
    # weekly season kept: December (23 weekdays) costs more than February (20 weekdays)
    assert rows["2026-12"]["total"] > rows["2027-02"]["total"]


def test_a_spiky_short_series_gets_bounded_intervals():
    """A 1,200 USD bill on the first day then 38 USD a day (a platform team): no 1e13 upper bound."""
    from yieldmeter.finops.forecast import SD_CAP, fit_forecast, total_interval

    y = np.array([1200.0] + [38.0] * 34)
    f = fit_forecast({"platform": y}, 120, utc(2026, 11, 5))["platform"]
    recent = y[-28:]
    assert f["sd"].max() <= SD_CAP * max(recent.std(), 0.05 * recent.mean()) + 1e-9
    mean, lo, hi = total_interval(f, 0, 120, 95)
    assert mean == pytest.approx(120 * 38.0, rel=0.25) and hi < 3 * mean and lo >= 0


def test_a_new_series_is_not_fit_on_the_zeros_before_it():
    """180 days of a team that spent $5 on its last 2 days only: under 3 days of history, so no
    forecast (it was fit as 180 days, and a weekly damped trend promised $858 for the next month)."""
    from yieldmeter.finops.forecast import fit_forecast

    y = np.zeros(180)
    y[-2:] = 2.5
    assert "new" not in fit_forecast({"new": y}, 30, utc(2026, 11, 5))
    three = y.copy()
    three[-3] = 2.5  # three days: the mean of them, flat
    f = fit_forecast({"new": three}, 30, utc(2026, 11, 5))["new"]
    assert f["model"] == "mean of 3 days" and f["mean"] == pytest.approx(np.full(30, 2.5))


def test_spend_that_stopped_keeps_a_band_of_its_history_width():
    """Eight weeks of ~$20 a day, then 28 days of nothing, and a fit that still forecasts $14 a
    day (a slow level): its sd is bounded by 3 x the history's spread, not by the zero spread of
    the last 28 days (which made an interval of $437 - $437)."""
    from yieldmeter.finops.forecast import SD_CAP, _guard

    rng = np.random.default_rng(3)
    y = np.concatenate([20 + rng.normal(0, 4, 56), np.zeros(28)])
    g = _guard({"mean": np.full(30, 14.0), "sd": np.full(30, 5.0)}, y)
    assert SD_CAP * y.std() > 5.0 and np.all(g["sd"] == 5.0)
    # 80% band: mean +- Z[80] x sd = 2 x 1.2816 x 5 = 12.8 wide (14 - 6.4 > 0: nothing clipped)
    assert g["hi-80"] - g["lo-80"] == pytest.approx(np.full(30, 2 * 1.2816 * 5.0), rel=1e-3)


def test_cost_per_success_forecast_follows_the_recent_ratio():
    """An adopting workflow at 471 USD per success: next month's cost per success is its recent ratio.

    Cost as in the test above, successes drawn as Poisson(cost / 471) per day. Hand figures: cpso =
    the last 28 days' cost / their successes; successes forecast = cost forecast / cpso; the 80% band
    is cpso x exp(-/+ 1.2816 / sqrt(successes in those 28 days)). The old forecast (successes fitted
    as a series of their own, both with free trends) gave 1,227 USD per success here.
    """
    import ibis

    from yieldmeter.finops.forecast import cpso_forecast

    rng = np.random.default_rng(100)
    cost = _adopting_team(35, seed=0)
    rows: dict[str, list] = {"started_at": [], "workflow": [], "fully_loaded_cost": [], "successful": []}
    succ_per_day = []
    for d, usd in enumerate(cost):
        n_units, succ = 20, int(rng.poisson(usd / 471.0))
        succ_per_day.append(min(succ, n_units))
        for u in range(n_units):
            rows["started_at"].append(START_SHORT + timedelta(days=d, hours=9, minutes=u))
            rows["workflow"].append("software-delivery")
            rows["fully_loaded_cost"].append(usd / n_units)
            rows["successful"].append(u < succ)
    facts = ibis.memtable(rows, schema={"started_at": "timestamp('UTC')", "workflow": "string",
                                        "fully_loaded_cost": "float64", "successful": "boolean"})  # fmt: skip
    r = cpso_forecast(facts, START_SHORT + timedelta(days=35, hours=1)).to_pylist()[0]
    c28, s28 = sum(cost[-28:]), sum(succ_per_day[-28:])
    assert (r["period"], r["rate_days"]) == ("2026-12", 28)
    assert r["cpso"] == pytest.approx(c28 / s28, rel=1e-9) == r["last_28d_cpso"]
    assert 380 < r["cpso"] < 560  # the true 471, give or take the noise of ~110 successes
    assert r["successes"] == pytest.approx(r["cost"] / r["cpso"], rel=1e-9)
    spread = np.exp(1.2816 / np.sqrt(s28))
    assert (r["cpso_lo_80"], r["cpso_hi_80"]) == (
        pytest.approx(r["cpso"] / spread),
        pytest.approx(r["cpso"] * spread),
    )
    assert r["cost"] == pytest.approx(47_600, rel=0.12)  # December at full use (hand figure above)


def test_burn_down_counts_local_days_like_the_budget_status(tmp_path: Path):
    """New York: 50 USD at 22:00 on 31 October local time (02:00 UTC on 1 November) is October's.

    The November budget's status counts 3 USD (the call on 2 November); the burn-down's last actual day
    must show the same 3, not 53 (which it showed when it snapped the window to the UTC day).
    """
    ws = make_workspace(
        tmp_path / "ws", "alerts:\n  timezone: America/New_York\n  evaluate_on_ingest: false\n"
    )
    ingest(ws, "calls", [call(utc(2026, 11, 1, 2), 50.0), call(utc(2026, 11, 2, 15), 3.0)])
    bid = ws.finops.add_budget("team", "alpha", "month", 100.0)
    now = utc(2026, 11, 3, 12)
    status = next(r for r in ws.finops.budgets(now).to_pylist() if r["budget_id"] == bid)
    assert status["spent"] == pytest.approx(3.0)
    bd = ws.finops.burn_down(bid, now)
    actual = [d for d in bd["days"] if d["actual"] is not None]
    assert [d["day"] for d in actual] == ["2026-11-01", "2026-11-02"]  # local days up to today (3 Nov)
    assert actual[-1]["actual"] == pytest.approx(status["spent"])
    assert bd["days"][-1]["day"] == "2026-11-30"


def test_unpriced_calls_are_counted_not_forecast_as_zero_and_small_teams_merge(tmp_path: Path):
    """privacy.min_group_size 2; one call a day at 10:00 from Sep 10 to Oct 20 (41 days) per person:

    - alpha: two people (a1, a2), 1.00 USD each a day: 2.00 a day, November 60.00;
    - beta: one person, 1.00 USD a day and one unpriced call (model m-unknown, no price) a day;
    - gamma: one person, only unpriced calls.

    Gamma has no cost at all, only calls with no price: its cost is unknown, so no forecast (not a
    forecast of 0.00) and 41 unpriced calls counted. Beta's November is 30 x 1.00 = 30.00, with its 41
    unpriced calls counted beside it. Without the per-person privilege, beta and gamma (one person
    each, two together) would be forecast as one "(other teams)" row: beta's 30.00 and 82 unpriced
    calls. Its cost would be beta's person's alone (gamma's cost is unknown), so it is left out.
    An October budget on gamma has spent 0.00 of known cost and 20 unpriced calls (Oct 1-20); the
    Budgets section shows its spend as unpriced, never $0.
    """
    from yieldmeter.app.reports import ReportFilters

    ws = make_workspace(tmp_path / "ws", "privacy:\n  min_group_size: 2\n")
    start = utc(2026, 9, 10, 10)
    people = [("alpha", "a1", "m-small"), ("alpha", "a2", "m-small"), ("beta", "b1", "m-small")]
    people += [("beta", "b1", "m-unknown"), ("gamma", "g1", "m-unknown")]
    rows = [
        call(start + timedelta(days=d), 1.0, team=team, user_id=user, model=model)
        for d in range(41)
        for team, user, model in people
    ]
    ingest(ws, "calls", rows)

    def november(people: bool) -> dict[str, dict[str, object]]:
        got = ws.finops.forecast("team", NOW, people=people).to_pylist()
        return {str(r["key"]): r for r in got if r["period"] == "2026-11"}

    every = november(True)
    assert set(every) == {"alpha", "beta", "gamma"}
    gamma = every["gamma"]
    assert gamma["total"] is None and gamma["actual"] is None and gamma["forecast"] is None
    assert gamma["model"] == "none: every call unpriced (cost unknown)" and gamma["unpriced_calls"] == 41
    assert every["beta"]["total"] == pytest.approx(30.0, rel=1e-3) and every["beta"]["unpriced_calls"] == 41
    assert every["alpha"]["total"] == pytest.approx(60.0, rel=1e-3) and every["alpha"]["unpriced_calls"] == 0
    merged = november(False)
    assert set(merged) == {"alpha"}
    assert merged["alpha"] == every["alpha"]

    bid = ws.finops.add_budget("team", "gamma", "month", 10.0)
    status = ws.finops.budget_status(bid, NOW)
    assert (status["spent"], status["unpriced_calls"], status["state"]) == (0.0, 20, "ok")
    beta = ws.finops.budget_status(ws.finops.add_budget("team", "beta", "month", 100.0), NOW)
    assert beta["spent"] == pytest.approx(20.0) and beta["unpriced_calls"] == 20

    # the sections: a period that has ended is shown as of its end (Oct 31)
    october = ReportFilters(period="2026-10", people=True)
    section = ws.reports.budgets_section(october)
    shown = {r["scope"]: r for r in section.tables[0].rows}
    assert shown["gamma"]["spent"] == "unpriced" and shown["gamma"]["unpriced_calls"] == 20
    assert shown["beta"]["spent"] == pytest.approx(20.0)
    assert any("have no price" in n for n in section.notes), section.notes
    from yieldmeter.app.finops_sections import forecast_section

    fc = forecast_section(ws.reports, october)
    table = {r["key"]: r for r in fc.tables[0].rows}
    assert table["gamma"]["total"] == "unpriced" and table["gamma"]["unpriced_calls"] == 41
    assert any("gamma: every call unpriced" in n for n in fc.notes), fc.notes
    hidden = forecast_section(ws.reports, ReportFilters(period="2026-10"))
    assert {r["key"] for r in hidden.tables[0].rows} == {"alpha"}
    assert "hidden" in hidden.tables[0].caption
    # a filter the forecast's parts cannot honour is said (scope was empty while the headline,
    # chart and team table ignored a workflow, and cost per success a team)
    assert fc.scope == ""
    by_workflow = forecast_section(
        ws.reports, ReportFilters(period="2026-10", workflows=("triage",), people=True)
    )
    assert (
        by_workflow.scope
        == "the spend forecast (headline, chart, teams) is per team, not filtered by workflow"
    )
    by_team = forecast_section(ws.reports, ReportFilters(period="2026-10", teams=("alpha",), people=True))
    assert by_team.scope == "cost per success is per workflow, not filtered by team"
    assert {r["key"] for r in by_team.tables[0].rows} == {"alpha"}
