"""FinOps sections for the dashboard pages and the role reports: alerts, forecast, anomalies,
chargeback by team and initiatives.

Each is a function of the :class:`~yieldmeter.app.reports.ReportService` and the filters that
calls ``ws.finops`` (:class:`~yieldmeter.app.finops.FinOpsService`) and lays the rows out; no
figure is computed here. A team, workflow or model filter keeps the rows of that scope and says
so in the section's ``scope``; a period that has ended is evaluated as of its end.

Privacy: the filters' ``people`` goes to the service, which leaves out budgets on a person and
their alerts, and merges teams below ``privacy.min_group_size`` (forecast, anomalies,
chargeback); the sections say so in a note. Unpriced calls are counted, never shown as $0.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from yieldmeter.app.sections import NotAvailable, show_unknown_cost
from yieldmeter.reports.model import Chart, Column, Kpi, Section, TableData, rows_of

if TYPE_CHECKING:
    from yieldmeter.app.reports import ReportFilters, ReportService

EXAMPLES = 3


def _at(f: ReportFilters) -> datetime | None:
    """The end of a period that has ended (the moment to evaluate as of), else None (now)."""
    _, end = f.bounds()
    return end - timedelta(microseconds=1) if end is not None and end <= datetime.now(UTC) else None


def _as_of(at: datetime | None) -> list[str]:
    return [f"As of {at:%Y-%m-%d %H:%M} UTC, the end of the period."] if at is not None else []


def _filtered(rows: list[dict[str, Any]], f: ReportFilters, keys: dict[str, str]) -> list[dict[str, Any]]:
    """Rows whose ``keys[dim]`` column is one of the filter's values, for each filtered dimension."""
    wanted = {"team": f.teams, "workflow": f.workflows, "model": f.models}
    for dim, col in keys.items():
        if wanted.get(dim):
            rows = [r for r in rows if r.get(col) in wanted[dim]]
    return rows


def _unhonoured(f: ReportFilters, honoured: set[str]) -> str:
    asked = {"team": f.teams, "workflow": f.workflows, "model": f.models}
    left = [d for d, v in asked.items() if v and d not in honoured]
    return f"not filtered by {', '.join(left)}: this measure has no such dimension" if left else ""


def person_budgets_note(svc: ReportService, f: ReportFilters) -> list[str]:
    """The note saying budgets on a person are left out, for a viewer without ``people``."""
    if f.people:
        return []
    n = 0
    with contextlib.suppress(NotAvailable):
        n = svc.service("finops", "person_budgets")()
    if not n:
        return []
    return [
        f"{n} budget{'s' if n > 1 else ''} set on a person (scope user) or on a team with fewer people "
        f"than privacy.min_group_size, and {'their' if n > 1 else 'its'} alerts, are not shown: "
        "per-person spend needs the people privilege."
    ]


def alerts_section(svc: ReportService, f: ReportFilters) -> Section:
    """Alerts firing and recently resolved, hard ones first, with failed deliveries counted."""
    alerts = rows_of(svc.service("finops", "alerts")(None, 200, people=f.people))
    failed: list[dict[str, Any]] = []
    with contextlib.suppress(NotAvailable):
        failed = [d for d in rows_of(svc.service("finops", "deliveries")(200)) if not d.get("ok")]
    names = {v for vals in (f.teams, f.workflows, f.models) for v in vals}
    if names:
        alerts = [a for a in alerts if str(a.get("scope") or "") in names]
    firing = [a for a in alerts if a.get("status") == "firing"]
    firing.sort(key=lambda a: (a.get("severity") != "hard", str(a.get("first_seen") or "")))
    resolved = [a for a in alerts if a.get("status") == "resolved"][:20]
    cols = [
        Column("severity", "severity"),
        Column("kind", "rule"),
        Column("scope_kind", "scope"),
        Column("scope", "name"),
        Column("message", "what"),
        Column("first_seen", "since"),
    ]
    return Section(
        "alerts",
        "Alerts",
        "Which budgets and unit-economics rules are breached now, and which are hard stops?",
        kpis=[
            Kpi("Firing", len(firing), "count"),
            Kpi("Hard (stop)", sum(a.get("severity") == "hard" for a in firing), "count"),
            Kpi("Failed deliveries", len(failed), "count", note="webhook or email attempts that failed"),
        ],
        tables=[
            TableData(cols, firing, caption="Firing"),
            TableData([*cols, Column("resolved_at", "resolved")], resolved, caption="Recently resolved"),
        ],
        notes=[
            "A hard alert is a hard stop: GET /api/v1/finops/hard-stops lists the scopes a gateway "
            "should refuse; soft alerts notify only.",
            *person_budgets_note(svc, f),
        ],
        scope="only alerts on the team, workflow or model filtered" if names else "",
    )


def _forecast_unknown(r: dict[str, Any]) -> bool:
    """A forecast row whose cost is unknown: no cost at all, only calls with no price (not one
    with too little history to forecast: its spend so far is known)."""
    return r.get("actual") is None and bool(r.get("unpriced_calls"))  # spend_forecast leaves it unset


def _at_least_actual(r: dict[str, Any], key: str) -> float:
    """``key`` (total or a band) of a forecast row; a row with no forecast (under 3 days of
    history) still has its spend so far."""
    v = r.get(key)
    return float(v) if v is not None else float(r.get("actual") or 0.0)


def forecast_section(svc: ReportService, f: ReportFilters) -> Section:
    """Spend per team for the rest of this month and the next three, with 80% intervals, and next
    month's cost per successful outcome per workflow."""
    at = _at(f)
    rows = _filtered(
        rows_of(svc.service("finops", "forecast")("team", at, people=f.people)), f, {"team": "key"}
    )
    privacy = svc.service("finops", "forecast_privacy")(at, people=f.people).note()
    cpso: list[dict[str, Any]] = []
    with contextlib.suppress(NotAvailable, ImportError):
        cpso = _filtered(rows_of(svc.service("finops", "forecast_cpso")(at)), f, {"workflow": "workflow"})
    periods = list(dict.fromkeys(r["period"] for r in rows))
    totals = [sum(_at_least_actual(r, "total") for r in rows if r["period"] == p) for p in periods]
    lows = [sum(_at_least_actual(r, "lo_80") for r in rows if r["period"] == p) for p in periods]
    highs = [sum(_at_least_actual(r, "hi_80") for r in rows if r["period"] == p) for p in periods]
    next_month = [r for r in rows if periods[1:2] and r["period"] == periods[1]]
    next_month.sort(key=lambda r: -(r.get("total") or 0.0))
    shown = [
        show_unknown_cost(r, ("actual", "total", "lo_80", "hi_80"), known=not _forecast_unknown(r))
        for r in next_month[:25]
    ]
    unpriced = {r["key"]: r.get("unpriced_calls") or 0 for r in rows if r.get("unpriced_calls")}
    unknown = sorted({r["key"] for r in rows if _forecast_unknown(r)})
    return Section(
        "forecast",
        "Forecast",
        "What will AI cost for the rest of this month and the next three, and per successful outcome?",
        kpis=[
            Kpi(f"Forecast {periods[0]}" if periods else "Forecast", totals[0] if totals else None, "usd"),
            Kpi(
                f"Forecast {periods[1]}" if len(periods) > 1 else "Next month",
                totals[1] if len(totals) > 1 else None,
                "usd",
                low=lows[1] if len(lows) > 1 else None,
                high=highs[1] if len(highs) > 1 else None,
            ),
        ],
        charts=[
            Chart(
                "interval",
                "Spend per period (sum of teams; 80% bands add up, so the sum's band is wider than exact)",
                periods,
                totals,
                lows=lows,
                highs=highs,
            )
        ]
        if periods
        else [],
        tables=[
            TableData(
                [
                    Column("key", "team"),
                    Column("period", "period"),
                    Column("actual", "so far", "usd"),
                    Column("total", "forecast total", "usd"),
                    Column("lo_80", "80% low", "usd"),
                    Column("hi_80", "80% high", "usd"),
                    Column("history_days", "days of history", "count"),
                    Column("unpriced_calls", "unpriced calls", "count"),
                    Column("model", "model"),
                ],
                shown,
                caption=" ".join(
                    [f"By team, {periods[1]}." if len(periods) > 1 else "By team.", privacy]
                ).strip(),
            ),
            TableData(
                [
                    Column("workflow", "workflow"),
                    Column("period", "period"),
                    Column("cpso", "cost per success", "usd"),
                    Column("cpso_lo_80", "80% low", "usd"),
                    Column("cpso_hi_80", "80% high", "usd"),
                    Column("last_28d_cpso", "last 28 days", "usd"),
                    Column("cost", "cost", "usd"),
                    Column("successes", "successes", "count"),
                ],
                cpso,
                caption="Cost per successful outcome, next month",
            ),
        ],
        notes=[
            *_as_of(at),
            "Model per series: a level with the weekly pattern under 8 weeks of history, else the better "
            "of a level and a damped trend (docs/finops.md: Forecasts; backtest in "
            "benchmarks/results/finops.json).",
            *(
                [
                    f"{sum(unpriced.values()):,} calls ({', '.join(sorted(unpriced))}) have no price: their "
                    "cost is unknown and not in these forecasts (see Unpriced models)."
                ]
                if unpriced
                else []
            ),
            *(
                [f"{', '.join(unknown)}: every call unpriced, so no forecast (unknown, not $0)."]
                if unknown
                else []
            ),
            *([privacy] if privacy else []),
        ],
        scope=_forecast_scope(f),
    )


def _forecast_scope(f: ReportFilters) -> str:
    """What the forecast's parts leave unfiltered: the spend forecast is per team (so the headline,
    the chart and the team table narrow by team only), cost per success per workflow."""
    parts = []
    if f.workflows or f.models:
        by = ", ".join(d for d, v in (("workflow", f.workflows), ("model", f.models)) if v)
        parts.append(f"the spend forecast (headline, chart, teams) is per team, not filtered by {by}")
    if f.teams or f.models:
        by = ", ".join(d for d, v in (("team", f.teams), ("model", f.models)) if v)
        parts.append(f"cost per success is per workflow, not filtered by {by}")
    return "; ".join(parts)


def anomalies_section(svc: ReportService, f: ReportFilters, days: int = 14) -> Section:
    """Spend and token spikes, runaway agents and model-mix changes, largest spend at stake first,
    each with example work units to open."""
    at = _at(f)
    rows = rows_of(svc.service("finops", "anomalies")(at, days=days, people=f.people))
    privacy = svc.service("finops", "anomaly_privacy")(at, days=days, people=f.people).note()
    names = {v for vals in (f.teams, f.workflows, f.models) for v in vals}
    if names:
        rows = [r for r in rows if any(n == r.get("key") or str(r.get("key", "")).startswith(f"{n} /")
                                       for n in names)]  # fmt: skip
    for r in rows:  # "examples" + "example_ids": the tables link each id to its work unit page
        r["example_ids"] = list(r.get("example_work_units") or [])[:EXAMPLES]
        r["examples"] = ", ".join(r["example_ids"])
    at_stake = sum(max(r.get("spend_at_stake") or 0.0, 0.0) for r in rows)
    kinds = ("spend_spike", "token_spike", "runaway_agent", "model_mix_change")
    return Section(
        "anomalies",
        "Anomalies",
        f"What moved out of line in the last {days} days, and what is at stake?",
        kpis=[
            Kpi("Anomalies", len(rows), "count"),
            Kpi("Spend at stake", at_stake, "usd", note="excess over the expected cost"),
            Kpi("Runaway agents", sum(r["kind"] == "runaway_agent" for r in rows), "count"),
        ],
        charts=[
            Chart(
                "bar",
                "Spend at stake by kind",
                list(kinds),
                [sum(r.get("spend_at_stake") or 0.0 for r in rows if r["kind"] == k) for k in kinds],
            )
        ],
        tables=[
            TableData(
                [
                    Column("kind", "kind"),
                    Column("dimension", "dimension"),
                    Column("key", "name"),
                    Column("day", "day"),
                    Column("value", "value", "number"),
                    Column("baseline", "expected", "number"),
                    Column("spend_at_stake", "at stake", "usd"),
                    Column("examples", "example work units"),
                    Column("message", "what"),
                ],
                rows[:50],
            )
        ],
        notes=[*_as_of(at), *([f"Team spikes: {privacy}"] if privacy else [])],
        scope="only anomalies of the team, workflow or model filtered" if names else "",
    )


def showback_section(svc: ReportService, f: ReportFilters) -> Section:
    """Fully loaded cost per cost centre and team: what the team caused (direct) and its share of
    shared cost (allocated by rule), for the period."""
    period = _period_text(f)
    rows = _filtered(rows_of(svc.service("finops", "showback")(period, people=f.people)), f, {"team": "team"})
    unpriced = svc.service("finops", "unpriced_by_team")(period)
    if f.teams:
        unpriced = {t: n for t, n in unpriced.items() if t in f.teams}
    uncharged = sum(unpriced.values()) - sum(r.get("unpriced_calls") or 0 for r in rows)
    total = sum(r.get("total_cost") or 0.0 for r in rows)
    shared = sum(r.get("shared_cost") or 0.0 for r in rows)
    top = rows[:12]
    return Section(
        "chargeback",
        "Chargeback by team",
        "What does each team owe for AI this period, direct and shared?",
        kpis=[
            Kpi("Allocated", total, "usd"),
            Kpi(
                "Of it shared",
                shared / total if total else None,
                "share",
                note="platform cost and cost with no team, split by rule",
            ),
        ],
        charts=[
            Chart(
                "stacked",
                "Direct and shared cost per team",
                [str(r["team"]) for r in top],
                series={
                    "direct": [r.get("direct_cost") for r in top],
                    "shared": [r.get("shared_cost") for r in top],
                },
            )
        ]
        if top
        else [],
        tables=[
            TableData(
                [
                    Column("cost_centre", "cost centre"),
                    Column("team", "team"),
                    Column("direct_cost", "direct", "usd"),
                    Column("shared_cost", "shared", "usd"),
                    Column("model_cost", "model", "usd"),
                    Column("unpriced_calls", "unpriced calls", "count"),
                    Column("allocated_cost", "platform", "usd"),
                    Column("effort_cost", "effort", "usd"),
                    Column("total_cost", "total", "usd"),
                    Column("share", "share", "share"),
                ],
                rows,
            )
        ],
        notes=[
            "Model cost charges calls with a list price; unpriced calls are counted beside it.",
            *(
                [
                    f"{uncharged:,} more calls without a list price are in no row above (teams with "
                    "nothing to charge, a shared team's pool, or teams too small to show): see "
                    "Unpriced models."
                ]
                if uncharged > 0
                else []
            ),
            "The FOCUS export (yieldmeter export focus) carries each split with its rule in the "
            "Allocated* columns, for the FinOps tool of record.",
        ],
        scope=_unhonoured(f, {"team"}),
    )


def initiatives_section(svc: ReportService, f: ReportFilters) -> Section:
    """Spend, benefit, yield and budget used per initiative (the portfolio a board funds)."""
    rows = rows_of(svc.service("finops", "initiatives")(_period_text(f)))
    problems: list[dict[str, Any]] = []
    with contextlib.suppress(NotAvailable):
        problems = svc.service("finops", "undeclared_initiatives")()
    return Section(
        "initiatives",
        "Initiatives",
        "What do the initiatives we fund cost, what do they return, and are they inside budget?",
        charts=[
            Chart(
                "bar",
                "Budget used this period",
                [r["initiative"] for r in rows if r.get("budget_used")],
                [r["budget_used"] for r in rows if r.get("budget_used")],
                unit="share",
            )
        ],
        tables=[
            TableData(
                [
                    Column("initiative", "initiative"),
                    Column("owner", "owner"),
                    Column("fully_loaded_cost", "fully loaded", "usd"),
                    Column("benefit", "benefit", "usd"),
                    Column("yield", "yield", "number"),
                    Column("attribution_coverage", "coverage", "share"),
                    Column("period_budget", "budget (period)", "usd"),
                    Column("budget_used", "used", "share"),
                    Column("decisions", "decisions", "count"),
                ],
                rows,
            )
        ],
        notes=[p["problem"] for p in problems],
        scope=_unhonoured(f, set()),
    )


def _period_text(f: ReportFilters) -> str | None:
    """The filters' period as the FinOps service's period text (START..END, END exclusive)."""
    start, end = f.bounds()
    if start is None and end is None:
        return None
    return (
        f"{start:%Y-%m-%d}..{end:%Y-%m-%d}"
        if start and end
        else (
            f"{start:%Y-%m-%d}.." if start else f"..{end:%Y-%m-%d}"  # type: ignore[union-attr]
        )
    )
