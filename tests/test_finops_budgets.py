"""Budgets and alerts on small hand-made data; every figure is computed by hand in the comments.

Costs: see tests/finops_data.py (m-small: 1 USD per million input tokens, so
``call(ts, 3.0)`` is a 3.00 USD call).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.finops_data import call, ingest, make_workspace, utc
from yieldmeter.config import ConfigError
from yieldmeter.finops.settings import alert_settings, chargeback_settings
from yieldmeter.finops.windows import BadPeriod, budget_window, next_months


def _budget(ws, kind="team", scope="alpha", period="month", amount=10.0, **kw):
    return ws.finops.add_budget(kind, scope, period, amount, **kw)


def _row(ws, budget_id, now):
    rows = {r["budget_id"]: r for r in ws.finops.budgets(now).to_pylist()}
    return rows[budget_id]


@pytest.fixture()
def month_data(tmp_path: Path):
    def build(extra: str = ""):
        ws = make_workspace(tmp_path / "ws", extra)
        ingest(
            ws,
            "calls",
            [
                call(utc(2026, 10, 31, 23, 30), 5.0),  # October in UTC, November in Paris (UTC+1)
                call(utc(2026, 11, 1, 0, 30), 3.0),
                call(utc(2026, 11, 10, 12), 4.0),
                call(utc(2026, 11, 10, 12), 100.0, team="beta"),  # another team: never in alpha's budget
            ],
        )
        return ws

    return build


def test_calendar_month_budget_in_utc(month_data):
    ws = month_data()
    bid = _budget(ws)
    now = utc(2026, 11, 15, 12)
    r = _row(ws, bid, now)
    # November (UTC) holds 3 + 4 = 7 USD of alpha's spend; 7 / 10 = 0.7 < soft 0.8.
    assert r["spent"] == pytest.approx(7.0)
    assert r["used"] == pytest.approx(0.7)
    assert r["state"] == "ok"
    # 14.5 days elapsed: run rate 7 / 14.5 per day; 15.5 days left: 7 + 15.5 x 7/14.5 = 7 x 30/14.5.
    assert r["run_rate_per_day"] == pytest.approx(7 / 14.5)
    assert r["projected"] == pytest.approx(7 * 30 / 14.5)
    # 3 USD left at 7/14.5 per day: 6.21 days after Nov 15 12:00 -> Nov 21.
    assert r["run_out_day"] == "2026-11-21"


def test_calendar_month_budget_in_a_time_zone(month_data):
    ws = month_data("alerts:\n  evaluate_on_ingest: false\n  timezone: Europe/Paris\n")
    bid = _budget(ws)
    r = _row(ws, bid, utc(2026, 11, 15, 12))
    # A Paris November starts at 2026-10-31 23:00 UTC: the 23:30 UTC call counts: 5 + 3 + 4 = 12.
    assert r["window_start"] == utc(2026, 10, 31, 23)
    assert r["spent"] == pytest.approx(12.0)
    assert r["state"] == "hard"
    assert r["run_out_day"] == "2026-11-15"  # already spent


def test_rolling_window_crosses_the_month_boundary(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    ingest(
        ws,
        "calls",
        [
            call(utc(2026, 11, 26, 11), 1.0),  # before the 7-day window [Nov 26 12:00, Dec 3 12:00)
            call(utc(2026, 11, 27, 10), 2.0),
            call(utc(2026, 11, 30, 10), 3.0),
            call(utc(2026, 12, 2, 10), 4.0),
            call(utc(2026, 12, 4, 10), 50.0),  # after now: not spent yet
        ],
    )
    rolling = _budget(ws, period="rolling:7d")
    month = _budget(ws, period="month")
    now = utc(2026, 12, 3, 12)
    assert _row(ws, rolling, now)["spent"] == pytest.approx(2 + 3 + 4)
    assert _row(ws, month, now)["spent"] == pytest.approx(4.0)
    assert _row(ws, rolling, now)["projected"] == pytest.approx(9.0)  # a rolling window moves with now


def test_fully_loaded_basis_counts_platform_cost_and_effort(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws", "labour_rates:\n  default: 60\n")
    ingest(ws, "calls", [call(utc(2026, 11, 3, 9), 2.0, work_unit_id="u1")])
    ingest(
        ws,
        "effort",
        [
            {
                "effort_id": "e1",
                "work_unit_id": "u1",
                "ts": utc(2026, 11, 3, 10),
                "person": "p",
                "kind": "review",
                "minutes": 30.0,
            }
        ],
    )
    ingest(
        ws,
        "cost_items",
        [
            {
                "item_id": "gpu",
                "period_start": utc(2026, 11, 1),
                "period_end": utc(2026, 12, 1),
                "amount": 6.0,
                "category": "platform",
                "team": "alpha",
            }
        ],
    )
    model = _budget(ws, period="month", amount=100.0)
    full = _budget(ws, period="quarter", amount=100.0, basis="fully_loaded_cost")
    now = utc(2026, 11, 20)
    # model cost 2; fully loaded 2 + 6 (the GPU item lands pro rata on alpha's only priced day)
    # + 30 min x 60/h = 38.
    assert _row(ws, model, now)["spent"] == pytest.approx(2.0)
    assert _row(ws, full, now)["spent"] == pytest.approx(38.0)


def test_alerts_fire_once_per_breach_escalate_and_resolve(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    ingest(ws, "calls", [call(utc(2026, 11, 10, 9), 9.0)])
    bid = _budget(ws, period="rolling:7d", amount=10.0)
    fo = ws.finops
    t1 = utc(2026, 11, 12)
    # 9 / 10 = 0.9: soft (0.8) breached, hard (1.0) not.
    ev = fo.evaluate_alerts(t1)
    assert [(e.event, e.alert["kind"], e.alert["severity"]) for e in ev] == [("fired", "budget", "soft")]
    assert fo.evaluate_alerts(t1 + timedelta(hours=1)) == []  # still breached: no second notification
    assert fo.budget_status(bid, t1)["hard_breached"] is False
    # Late-arriving data: a call from Nov 11 is ingested after the first evaluation; 9 + 2 = 11 -> hard.
    # The same alert escalates (one alert per budget breach, not a second one beside it).
    ingest(ws, "calls", [call(utc(2026, 11, 11, 9), 2.0)])
    t2 = t1 + timedelta(hours=2)
    ev = fo.evaluate_alerts(t2)
    assert [(e.event, e.alert["severity"]) for e in ev] == [("escalated", "hard")]
    firing = fo.alerts("firing").to_pylist()
    assert [(a["kind"], a["severity"], a["threshold"]) for a in firing] == [("budget", "hard", 1.0)]
    first = firing[0]["alert_id"]
    assert "hard stop" in firing[0]["message"]
    status = fo.budget_status(bid, t2)
    assert (status["hard_breached"], status["state"], status["used"]) == (True, "hard", pytest.approx(1.1))
    assert [r["scope"] for r in fo.hard_stops(t2).to_pylist()] == ["alpha"]
    # Nov 18 10:00: the window [Nov 11 10:00, Nov 18 10:00) holds nothing: resolved.
    ev = fo.evaluate_alerts(utc(2026, 11, 18, 10))
    assert [(e.event, e.alert["severity"]) for e in ev] == [("resolved", "hard")]
    assert fo.alerts("firing").num_rows == 0 and fo.hard_stops(utc(2026, 11, 18, 10)).num_rows == 0
    # A new breach of the same budget is a new alert.
    ingest(ws, "calls", [call(utc(2026, 11, 19, 9), 8.5)])
    ev = fo.evaluate_alerts(utc(2026, 11, 19, 12))
    assert [(e.event, e.alert["severity"]) for e in ev] == [("fired", "soft")]
    assert ev[0].alert["alert_id"] != first
    assert fo.alerts(None).num_rows == 2
    log_rows = fo.deliveries().to_pylist()
    assert all(r["channel"] == "log" and r["ok"] for r in log_rows) and len(log_rows) == 4
    # back in time: refused, the state and the deliveries as they were (an evaluation as of Nov 12
    # alternated with a current one resolved and fired every alert again, to every channel)
    with pytest.raises(ValueError, match="last evaluated as of 2026-11-19T12:00:00"):
        fo.evaluate_alerts(t1)
    assert fo.alerts(None).num_rows == 2 and len(fo.deliveries().to_pylist()) == 4
    # nor ahead of the clock: a state set in the future would refuse every evaluation until then
    with pytest.raises(ValueError, match="now or a time already past"):
        fo.evaluate_alerts(datetime.now(UTC) + timedelta(days=1))


def test_hard_alert_de_escalates_when_a_rolling_window_sheds_spend(tmp_path: Path):
    """Rolling 7 days, budget 10: 3.00 on Nov 1 and 8.50 on Nov 5 -> 115% (hard) on Nov 6;
    on Nov 8 12:00 the window starts Nov 1 12:00, past the first call: 85%, soft again."""
    ws = make_workspace(tmp_path / "ws")
    ingest(ws, "calls", [call(utc(2026, 11, 1, 9), 3.0), call(utc(2026, 11, 5, 9), 8.5)])
    bid = _budget(ws, period="rolling:7d", amount=10.0)
    assert [(e.event, e.alert["severity"]) for e in ws.finops.evaluate_alerts(utc(2026, 11, 6))] == [
        ("fired", "hard")
    ]
    ev = ws.finops.evaluate_alerts(utc(2026, 11, 8, 12))
    assert [(e.event, e.alert["severity"]) for e in ev] == [("de-escalated", "soft")]
    assert ws.finops.budget_status(bid, utc(2026, 11, 8, 12))["hard_breached"] is False


def test_soft_deliveries_muted_hard_ones_always_delivered(tmp_path: Path, caplog):
    """soft_channels: [] keeps soft alerts on the dashboard only; the escalation to hard is logged."""
    ws = make_workspace(
        tmp_path / "ws", "alerts:\n  evaluate_on_ingest: false\n  channels: [log]\n  soft_channels: []\n"
    )
    ingest(ws, "calls", [call(utc(2026, 11, 10, 9), 9.0)])
    _budget(ws, period="month", amount=10.0)
    with caplog.at_level("INFO", logger="yieldmeter.alerts"):
        ws.finops.evaluate_alerts(utc(2026, 11, 12))  # 90%: soft, muted
        assert ws.finops.deliveries().num_rows == 0 and ws.finops.alerts().num_rows == 1
        ingest(ws, "calls", [call(utc(2026, 11, 12, 9), 2.0)])
        ev = ws.finops.evaluate_alerts(utc(2026, 11, 13))  # 110%: hard, delivered
    assert [(e.event, e.alert["severity"]) for e in ev] == [("escalated", "hard")]
    rows = ws.finops.deliveries().to_pylist()
    assert [(r["event"], r["channel"], r["ok"]) for r in rows] == [("escalated", "log", True)]
    assert [r.getMessage()[:20] for r in caplog.records] == ["alert escalated [har"]


def test_budget_status_endpoint_for_a_gateway(tmp_path: Path):
    from starlette.testclient import TestClient

    from yieldmeter.server.app import create_app

    ws = make_workspace(tmp_path / "ws")
    ingest(ws, "calls", [call(utc(2026, 11, 10, 9), 12.0)])
    bid = _budget(ws, period="month", amount=10.0)
    ws.close()
    with TestClient(create_app(tmp_path / "ws")) as c:
        r = c.get(f"/api/v1/finops/budgets/{bid}/status", params={"at": "2026-11-12T00:00:00Z"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert (doc["hard_breached"], doc["scope"], doc["used"]) == (True, "alpha", pytest.approx(1.2))
        assert doc["window_end"].startswith("2026-12-01")  # when the stop lifts
        stops = c.get("/api/v1/finops/hard-stops", params={"at": "2026-11-12T00:00:00Z"}).json()
        assert [(s["scope_kind"], s["scope"]) for s in stops] == [("team", "alpha")]
        # December: a new window, nothing spent, no stop
        r = c.get(f"/api/v1/finops/budgets/{bid}/status", params={"at": "2026-12-02T00:00:00Z"})
        assert r.json()["hard_breached"] is False
        assert c.get("/api/v1/finops/budgets/nope/status").status_code == 404
        listed = c.get("/api/v1/finops/budgets", params={"at": "2026-11-12T00:00:00Z"}).json()
        assert listed[0]["hard_breached"] is True


def test_unpriced_share_rule(tmp_path: Path):
    ws = make_workspace(
        tmp_path / "ws",
        "alerts:\n  evaluate_on_ingest: false\n"
        "  rules:\n    - kind: unpriced_share_above\n      limit: 0.25\n      window_days: 7\n",
    )
    ingest(
        ws,
        "calls",
        [
            call(utc(2026, 11, 10), 1.0),
            call(utc(2026, 11, 10), 1.0),
            call(utc(2026, 11, 10), 1.0, model="mystery-model-9000"),
        ],
    )
    # 1 unpriced call of 3 = 33% > 25%.
    b = [x for x in ws.finops.breaches(utc(2026, 11, 12)) if x.kind == "unpriced_share_above"]
    assert len(b) == 1 and b[0].value == pytest.approx(1 / 3) and b[0].scope == "(all)"


def test_initiative_budget_from_config(tmp_path: Path):
    ws = make_workspace(
        tmp_path / "ws", "initiatives:\n  - initiative: ops\n    budget: 20\n    workflows: [triage]\n"
    )
    ingest(ws, "calls", [call(utc(2026, 3, 1), 5.0), call(utc(2026, 9, 1), 11.0, workflow="other")])
    r = next(x for x in ws.finops.budgets(utc(2026, 10, 1)).to_pylist() if x["scope_kind"] == "initiative")
    # Only triage belongs to the initiative: 5 of 20 for the year.
    assert (r["scope"], r["period"], r["spent"], r["used"]) == ("ops", "year", 5.0, 0.25)
    # the same scope and period set since: one budget, the new one (it had two rows of one id)
    ws.finops.add_budget("initiative", "ops", "year", 50.0, basis="fully_loaded_cost")
    rows = [x for x in ws.finops.budgets(utc(2026, 10, 1)).to_pylist() if x["scope_kind"] == "initiative"]
    assert [(x["scope"], x["amount"], x["used"]) for x in rows] == [("ops", 50.0, 0.1)]  # 5 / 50
    [ops] = [r for r in ws.finops.initiatives().to_pylist() if r["initiative"] == "ops"]
    assert ops["budget"] == 50.0  # the initiatives roll-up reads the same budget


def test_windows_and_errors_name_the_key():
    w = budget_window("quarter", utc(2026, 11, 15), tz=__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert w.start == utc(2026, 10, 1, 4) and w.end == utc(2027, 1, 1, 5)  # EDT then EST
    assert [m[0] for m in next_months(utc(2026, 11, 15), __import__("datetime").UTC)] == [
        "rest of 2026-11",
        "2026-12",
        "2027-01",
        "2027-02",
    ]
    with pytest.raises(BadPeriod, match="rolling:Nd"):
        budget_window("fortnight", utc(2026, 1, 1))
    with pytest.raises(ConfigError, match=r"alerts\.webhook\.url"):
        alert_settings({"webhook": {"url": "ftp://x"}})
    with pytest.raises(ConfigError, match=r"alerts\.rules\.0\.kind"):
        alert_settings({"rules": [{"kind": "vibes", "limit": 1}]})
    with pytest.raises(ConfigError, match=r"alerts\.timezone"):
        alert_settings({"timezone": "Mars/Olympus"})
    with pytest.raises(ConfigError, match="add up to 1"):
        chargeback_settings({"shared": {"a": 0.5, "b": 0.4}})


def test_unit_economics_rules(tmp_path: Path):
    """Hand-computed on the value engine's own measures.

    triage: two work units, 10 + 4 = 14 USD, no acceptance signal -> no successful outcome
    (cost per success unbounded); one outcome of 50 USD x 0.5 attribution = 25 benefit on 14
    USD -> workflow yield 25 / 14 = 1.79 < 3; triage has no owner -> coverage 0 < 0.6.
    """
    ws = make_workspace(
        tmp_path / "ws",
        "workflows:\n  - workflow: triage\n    value_dimension: cycle_time\n"
        "alerts:\n  evaluate_on_ingest: false\n  rules:\n"
        "    - {kind: cost_per_successful_outcome_above, limit: 5, window_days: 30}\n"
        "    - {kind: yield_below, limit: 3, window_days: 30}\n"
        "    - {kind: attribution_coverage_below, limit: 0.6, window_days: 30}\n",
    )
    ingest(
        ws,
        "calls",
        [call(utc(2026, 11, 3), 10.0, work_unit_id="u1"), call(utc(2026, 11, 4), 4.0, work_unit_id="u2")],
    )
    ingest(
        ws,
        "outcomes",
        [{"outcome_id": "o1", "workflow": "triage", "period_start": utc(2026, 11, 1),
          "period_end": utc(2026, 11, 8), "metric": "claims routed", "monetary_value": 50.0,
          "value_dimension": "cycle_time",
          "attribution_share": 0.5, "evidence_level": "baseline_comparison"}],
    )  # fmt: skip
    got = {b.kind: b for b in ws.finops.breaches(utc(2026, 11, 10))}
    cpso = got["cost_per_successful_outcome_above"]
    assert cpso.scope == "triage" and cpso.value == float("inf") and "no successful outcome" in cpso.message
    assert got["yield_below"].value == pytest.approx(25 / 14)
    assert got["attribution_coverage_below"].value == pytest.approx(0.0)
    assert "owner 0%" in got["attribution_coverage_below"].message
    ev = ws.finops.evaluate_alerts(utc(2026, 11, 10))
    assert sorted(e.alert["kind"] for e in ev) == sorted(got)


def test_unit_economics_alert_resolves_when_the_breach_ends(tmp_path: Path):
    """triage: 10 + 4 = 14 USD over two work units, limit 8 USD per successful outcome.

    No success yet: cost per success is unbounded, the alert fires. Then both units are accepted and
    acted on (late signals): 2 successful outcomes, 14 / 2 = 7 USD <= 8: the breach ends, it resolves.
    """
    ws = make_workspace(
        tmp_path / "ws",
        "workflows:\n  - workflow: triage\n    value_dimension: cycle_time\n"
        "alerts:\n  evaluate_on_ingest: false\n  rules:\n"
        "    - {kind: cost_per_successful_outcome_above, limit: 8, window_days: 30}\n",
    )
    ingest(
        ws,
        "calls",
        [call(utc(2026, 11, 3), 10.0, work_unit_id="u1"), call(utc(2026, 11, 4), 4.0, work_unit_id="u2")],
    )
    ingest(ws, "work_units", [{"work_unit_id": u, "workflow": "triage", "started_at": utc(2026, 11, 3 + i)}
                              for i, u in enumerate(("u1", "u2"))])  # fmt: skip
    ev = ws.finops.evaluate_alerts(utc(2026, 11, 10))
    assert [(e.event, e.alert["kind"], e.alert["value"]) for e in ev] == [
        ("fired", "cost_per_successful_outcome_above", float("inf"))
    ]
    assert ws.finops.evaluate_alerts(utc(2026, 11, 10, 1)) == []  # still unbounded: no second notice
    signals = [{"signal_id": f"s-{u}-{k}", "work_unit_id": u, "ts": utc(2026, 11, 11), "kind": k}
               for u in ("u1", "u2") for k in ("accepted", "action_taken")]  # fmt: skip
    ingest(ws, "signals", signals)
    ev = ws.finops.evaluate_alerts(utc(2026, 11, 12))
    assert [(e.event, e.alert["kind"]) for e in ev] == [("resolved", "cost_per_successful_outcome_above")]
    assert ws.finops.alerts("firing").num_rows == 0
    [funnel] = ws.value.funnel().to_pylist()
    assert funnel["cost_per_successful_outcome"] == pytest.approx(7.0)


def test_a_cost_per_success_over_unpriced_calls_says_it_is_a_lower_bound() -> None:
    """triage over two months: March 12 USD, every call priced; April every call unpriced (model
    and fully loaded cost unknown), 8 USD of effort known. 2 successful outcomes, limit 5 USD: the
    known cost is 12 + 8 = 20 USD, 10 USD a success, fired as "at least" (April's model cost is
    not in it). The same with April priced reads 10.00 USD, no "at least"."""
    import pyarrow as pa

    from yieldmeter.finops.rules import _cpso
    from yieldmeter.finops.settings import UnitRule
    from yieldmeter.metrics.period import Window

    march = {"workflow": "triage", "month": "2025-03", "calls": 3, "unpriced_calls": 0}
    march |= {"model_cost": 12.0, "allocated_cost": 0.0, "effort_cost": 0.0, "fully_loaded_cost": 12.0}
    april = {"workflow": "triage", "month": "2025-04", "calls": 2, "unpriced_calls": 2}
    april |= {"model_cost": None, "allocated_cost": 0.0, "effort_cost": 8.0, "fully_loaded_cost": None}

    class Months:  # the value service's funnel, by month
        def __init__(self, rows: list[dict[str, object]]) -> None:
            self.rows = rows

        def funnel(self, workflow: object, window: object) -> pa.Table:
            return pa.Table.from_pylist([{**r, "successful_outcomes": 1} for r in self.rows])

    rule = UnitRule(kind="cost_per_successful_outcome_above", limit=5)
    [breach] = _cpso(rule, Months([march, april]), Window(label="last 30 days"))
    assert breach.value == pytest.approx(10.0) and breach.details["fully_loaded_cost"] == pytest.approx(20.0)
    assert "is at least 10.00 USD" in breach.message
    priced = {**april, "unpriced_calls": 0, "model_cost": 0.0, "fully_loaded_cost": 8.0}
    [breach] = _cpso(rule, Months([march, priced]), Window(label="last 30 days"))
    assert "is 10.00 USD" in breach.message


def test_a_tiny_run_rate_has_no_run_out_day_and_no_overflow() -> None:
    """$1e-12 spent in a day against $1,000: run-out is ~1e15 days away, beyond the window."""
    from datetime import UTC, datetime

    from yieldmeter.finops.budgets import Budget, budget_window, status_row

    now = datetime(2025, 3, 2, tzinfo=UTC)
    b = Budget(budget_id="b", scope_kind="org", scope="default", period="month", amount=1000.0)
    row = status_row(b, budget_window("month", now), 1e-12)
    assert row["run_out_day"] is None and row["state"] == "ok"


def test_alert_rules_after_an_ingest_read_the_new_data(tmp_path: Path) -> None:
    """The workspace's value service is refreshed by each ingest (it kept the first ingest's
    materialised facts, so rules evaluated on ingest saw stale figures): $10, then $10 + $4."""
    ws = make_workspace(
        tmp_path / "ws",
        "alerts:\n  ingest_min_interval_s: 0\n  rules:\n"
        "    - {kind: cost_per_successful_outcome_above, limit: 5, window_days: 30}\n",
    )
    ingest(ws, "calls", [call(utc(2026, 11, 3), 10.0, work_unit_id="u1")])
    assert sum(r["fully_loaded_cost"] for r in ws.value.funnel().to_pylist()) == pytest.approx(10.0)
    ingest(ws, "calls", [call(utc(2026, 11, 4), 4.0, work_unit_id="u2")])
    assert sum(r["fully_loaded_cost"] for r in ws.value.funnel().to_pylist()) == pytest.approx(14.0)
    [breach] = ws.finops.breaches(utc(2026, 11, 10))
    assert breach.details["fully_loaded_cost"] == pytest.approx(14.0)


def test_a_budget_on_a_person_is_per_person_data(tmp_path: Path):
    """A budget scoped to one user shows that person's spend: without the per-person privilege
    (``people`` false) its status, hard stop and alert are left out, and asking for it by id is
    refused. eve spends 12.00 USD in November against a 10.00 budget (hard: 120%); the team
    budget of alpha (eve and bob, 13.00 of 100.00) is shown to everyone. A budget on solo, a team
    of one (below privacy.min_group_size 2), is its one person's spend (4.00 of 3.00, hard) and is
    treated alike."""
    from yieldmeter.app.finops_sections import alerts_section
    from yieldmeter.app.reports import ReportFilters
    from yieldmeter.app.value import PrivacyError

    ws = make_workspace(tmp_path / "ws", "privacy:\n  min_group_size: 2\n")
    ingest(
        ws,
        "calls",
        [
            call(utc(2026, 11, 10, 9), 12.0, user_id="eve"),
            call(utc(2026, 11, 10, 9), 1.0, user_id="bob"),
            call(utc(2026, 11, 10, 9), 4.0, user_id="sam", team="solo"),
        ],
    )
    eve = _budget(ws, kind="user", scope="eve", amount=10.0)
    team = _budget(ws, amount=100.0)
    solo = _budget(ws, scope="solo", amount=3.0)
    now = utc(2026, 11, 12)
    ws.finops.evaluate_alerts(now)

    def scopes(rows):
        return {(r["scope_kind"], r["scope"]) for r in rows}

    everyone = {("user", "eve"), ("team", "alpha"), ("team", "solo")}
    assert scopes(ws.finops.budgets(now).to_pylist()) == everyone
    assert scopes(ws.finops.budgets(now, people=False).to_pylist()) == {("team", "alpha")}
    assert scopes(ws.finops.hard_stops(now).to_pylist()) == {("user", "eve"), ("team", "solo")}
    assert ws.finops.hard_stops(now, people=False).num_rows == 0
    assert scopes(ws.finops.alerts(None).to_pylist()) == {("user", "eve"), ("team", "solo")}
    assert ws.finops.alerts(None, people=False).num_rows == 0
    assert ws.finops.budget_status(eve, now)["spent"] == pytest.approx(12.0)
    with pytest.raises(PrivacyError, match="set on a person"):
        ws.finops.budget_status(eve, now, people=False)
    with pytest.raises(PrivacyError, match="min_group_size"):
        ws.finops.budget_status(solo, now, people=False)
    with pytest.raises(PrivacyError):
        ws.finops.burn_down(eve, now, people=False)
    assert ws.finops.budget_status(team, now, people=False)["spent"] == pytest.approx(13.0)
    assert ws.finops.person_budgets() == 2
    # the Budgets and Alerts sections (dashboard pages, cfo and finops reports) say what they leave out
    reader, privileged = ReportFilters(period="2026-11"), ReportFilters(period="2026-11", people=True)
    budgets = ws.reports.budgets_section(reader)
    assert {r["scope"] for r in budgets.tables[0].rows} == {"alpha"} and budgets.tables[1].rows == []
    assert any("set on a person" in n for n in budgets.notes), budgets.notes
    assert {r["scope"] for r in ws.reports.budgets_section(privileged).tables[0].rows} == {
        "alpha",
        "eve",
        "solo",
    }
    assert alerts_section(ws.reports, reader).tables[0].rows == []
    assert {a["scope"] for a in alerts_section(ws.reports, privileged).tables[0].rows} == {"eve", "solo"}
    for role in ("cfo", "finops"):
        shown = json.dumps(render_json(ws.reports.role(role, reader)))
        assert '"eve"' not in shown and "solo" not in shown, role


def render_json(report):
    from yieldmeter.reports.render import render

    return json.loads(render(report, "json"))


def test_every_budget_write_is_checked_and_a_broken_stored_budget_says_so(tmp_path: Path):
    """One check for every budget write: ``Month`` is the month budget (same id, period stored
    lower-case), ``fortnight`` is refused naming the field, and nothing is written. A budget stored
    around the check (here straight into the store) is not the request's fault: every read raises
    BrokenBudget, naming the budget and how to replace it."""
    import pyarrow as pa

    from yieldmeter.finops.budgets import BadBudget, BrokenBudget, check_budget_rows
    from yieldmeter.ingest.conform import conform

    ws = make_workspace(tmp_path / "ws")
    month = _budget(ws, kind="Team", period=" Month ")
    assert month == _budget(ws, period="month", amount=20.0)
    [row] = ws.finops.budgets(utc(2026, 11, 12)).to_pylist()
    assert (row["scope_kind"], row["period"], row["amount"]) == ("team", "month", 20.0)
    for bad, field in (
        ({"period": "fortnight"}, "period"),
        ({"kind": "galaxy"}, "scope_kind"),
        ({"basis": "vibes"}, "basis"),
        ({"amount": "lots"}, "amount"),
        ({"soft_threshold": 1.5}, "soft_threshold"),
    ):
        with pytest.raises(BadBudget, match=field) as info:
            _budget(ws, **bad)
        assert info.value.field == field
    assert ws.store.count("budgets") == 1
    with pytest.raises(BadBudget, match="budget 2: period 'fortnight'"):
        check_budget_rows([{"period": "month"}, {"scope_kind": "team", "period": "fortnight"}])
    assert check_budget_rows({"period": "Rolling:7D"}) == [{"period": "rolling:7d"}]

    broken = {
        "budget_id": "b-broken",
        "scope_kind": "team",
        "scope": "alpha",
        "period": "fortnight",
        "amount": 5.0,
    }
    # conform refuses it (see the next test): written as it would be by an older version
    good = conform("budgets", pa.Table.from_pylist([{**broken, "period": "month"}]), source="test").rows
    stored = good.set_column(good.column_names.index("period"), "period", pa.array(["fortnight"]))
    ws.store.write("budgets", stored)
    with pytest.raises(BrokenBudget, match=r"b-broken.*fortnight.*same budget_id"):
        ws.finops.budgets(utc(2026, 11, 12))


def test_a_budgets_file_is_checked_like_every_budget_write(tmp_path: Path):
    """Rows of a budgets file go through the same check: ``Month`` lands as the month budget (the
    id the command gives it, so adding it again updates it), a weekly period and a soft threshold
    above the hard one are quarantined with their reasons, and the budgets stay readable."""
    ws = make_workspace(tmp_path / "ws")
    path = tmp_path / "in" / "budgets.csv"
    path.parent.mkdir()
    path.write_text(
        "scope_kind,scope,period,amount,soft_threshold,hard_threshold\n"
        "Team,alpha,Month,50,0.8,1.0\n"
        "team,beta,weekly,50,0.8,1.0\n"
        "team,gamma,month,50,0.9,0.5\n",
        encoding="utf-8",
    )
    ws.ingest_paths([path])
    [row] = ws.finops.budgets(utc(2026, 11, 12)).to_pylist()
    assert (row["scope_kind"], row["scope"], row["period"], row["amount"]) == ("team", "alpha", "month", 50.0)
    assert _budget(ws, amount=60.0) == row["budget_id"]  # one budget, however it was written
    assert ws.store.count("budgets") == 1
    reasons = {
        r["position"]: r["reason"]
        for r in ws.store.read_table("quarantine").to_pylist()
        if r["table_name"] == "budgets"
    }
    assert set(reasons) == {2, 3}
    assert "period 'weekly'" in reasons[2]
    assert "soft_threshold 0.9 is above hard_threshold 0.5" in reasons[3]
