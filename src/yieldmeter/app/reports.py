"""Report views over the Workspace services (``ws.reports``).

Every surface that shows more than one measure at a time (dashboard pages,
role reports, the REST views) asks this service for :class:`Section` s: the
figures, charts and tables that answer one question. It calls ``ws.spend``,
``ws.value``, ``ws.routing``, ``ws.finops``; a service that is not installed
(or lacks the method) gives a section marked ``unavailable`` with the reason,
never an error page. The value engine's sections live in
:mod:`yieldmeter.app.sections` (inherited); the ones only some roles ask for in
:mod:`yieldmeter.app.role_sections`.

Filters: ``period`` (``2025``, ``2025-Q1``, ``2025-03``, ``2025-03-05`` or
``START..END`` with END exclusive, the rule of ``report spend``), and teams,
workflows, models. Spend figures honour all four; value measures (funnel,
yields, coverage, benchmarks, waste) are defined per workflow and honour the
period and the workflow (one workflow; with several, all are shown).

Privacy: per-person views need ``people=True``; team rows below
``privacy.min_group_size`` distinct people are dropped here, so every
surface (API, dashboard, report) gets the same rows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ibis

from yieldmeter.app.sections import NotAvailable, ValueSections, _unit_of, _usd
from yieldmeter.metrics.period import Window
from yieldmeter.metrics.spend import Filters
from yieldmeter.reports.model import Chart, Column, Kpi, Section, TableData, fmt, rows_of

if TYPE_CHECKING:
    from yieldmeter.reports.model import Report

ROLES = ("board", "cfo", "cio", "coo", "finops", "product")
#: The routing columns shown first (the JSON API has them all).
ROUTING_COLUMNS: dict[str, tuple[str, ...]] = {
    "recommendations": (
        "workflow",
        "task_type",
        "tier",
        "incumbent",
        "model",
        "current_success_rate",
        "current_cost_per_success",
        "monthly_saving",
        "monthly_saving_low",
        "monthly_saving_high",
        "monthly_success_change",
        "reason",
    ),
    "experiments": (
        "workflow",
        "task_type",
        "tier",
        "incumbent",
        "experiment_model",
        "experiment_share",
        "experiment_units",
        "experiment_days",
        "potential_monthly_saving",
        "reason",
    ),
    "insufficient": ("workflow", "task_type", "tier", "incumbent", "n", "reason"),
    "frontier": (
        "tier_label",
        "model",
        "units",
        "success_rate",
        "success_low",
        "success_high",
        "cost_per_success",
        "on_frontier",
        "note",
    ),
}
FAMILIES = ("workflow", "revenue", "risk", "capacity")


class UnknownWorkUnit(LookupError):
    pass


@dataclass(frozen=True)
class ReportFilters:
    """What a person narrowed the view to."""

    period: str | None = None
    teams: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, period: str | None = None, team: Any = (), workflow: Any = (), model: Any = ()
    ) -> ReportFilters:
        """From raw values (a string, a list, or None each); a bad period raises ValueError."""

        def tup(v: Any) -> tuple[str, ...]:
            if not v:
                return ()
            items = [v] if isinstance(v, str) else list(v)
            return tuple(sorted({s.strip() for s in items if s and s.strip()}))

        f = cls((period or "").strip() or None, tup(team), tup(workflow), tup(model))
        f.bounds()  # validate now, so a bad period is a 400, not a 500
        return f

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        from yieldmeter.app.periods import period_bounds

        return period_bounds(self.period)

    def spend(self) -> Filters:
        start, end = self.bounds()
        return Filters(start, end, self.teams, self.workflows, self.models)

    def window(self) -> Window:
        start, end = self.bounds()
        return Window(start, end, self.period or "all")

    @property
    def workflow(self) -> str | None:
        """The one workflow value measures are narrowed to (None: all)."""
        return self.workflows[0] if len(self.workflows) == 1 else None

    @property
    def label(self) -> str:
        parts = [self.period or "all time"]
        for name, vals in (("team", self.teams), ("workflow", self.workflows), ("model", self.models)):
            if vals:
                parts.append(f"{name} {', '.join(vals)}")
        return "; ".join(parts)

    def key(self) -> tuple[Any, ...]:
        return (self.period, self.teams, self.workflows, self.models)


@dataclass
class WorkUnitView:
    work_unit: dict[str, Any]
    facts: dict[str, Any]
    score: dict[str, Any]
    calls: list[dict[str, Any]]
    signals: list[dict[str, Any]]
    effort: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    why: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class ReportService(ValueSections):
    """Sections of figures for the dashboard, the role reports and the REST views."""

    # -- spend ---------------------------------------------------------------------------------
    def cost_lines(self) -> Any:
        """Fully loaded cost lines, materialised once by the value service when it is installed."""
        try:
            return self.service("value", "cost_lines")()
        except NotAvailable:
            return self.ws.cost_lines()

    def spend(self, by: list[str], f: ReportFilters) -> Any:
        """Same figures as ``ws.spend`` (one definition: metrics.spend), over the cached cost lines."""
        from yieldmeter.metrics.spend import spend

        return spend(self.cost_lines(), by, f.spend()).to_pyarrow()

    def totals(self, f: ReportFilters) -> dict[str, Any]:
        rows = rows_of(self.spend([], f))
        return rows[0] if rows else {}

    def spend_by(self, f: ReportFilters, by: list[str]) -> list[dict[str, Any]]:
        return rows_of(self.spend(by, f))

    def trend(self, f: ReportFilters) -> Chart:
        """Model-only and fully loaded cost per day (per week beyond ~3 months)."""
        start, end = f.bounds()
        grain = "day"
        if start is None or end is None or (end - start).days > 92:
            first = self.spend_by(f, ["month"])
            grain = "week" if len(first) > 3 else "day"
        rows = sorted(self.spend_by(f, [grain]), key=lambda r: r[grain] or "")
        return Chart(
            "line",
            f"Spend per {grain}",
            [str(r[grain])[:10] for r in rows],
            series={
                "model cost": [r["model_cost"] for r in rows],
                "fully loaded cost": [r["fully_loaded_cost"] for r in rows],
            },
        )

    def options(self) -> dict[str, list[str]]:
        """The teams, workflows and models the data holds (for filter pickers)."""
        lines = self.cost_lines()
        out = {}
        for col in ("team", "workflow", "model"):
            vals = lines.select(col).distinct().to_pyarrow().column(col).to_pylist()
            out[col] = sorted(v for v in vals if v)
        return out

    def spend_section(self, f: ReportFilters) -> Section:
        t = self.totals(f)
        flc, model = t.get("fully_loaded_cost") or 0.0, t.get("model_cost") or 0.0
        by_wf = self.spend_by(f, ["workflow"])
        s = Section(
            "spend",
            "AI spend",
            "What did AI cost, counting platform and people, not only tokens?",
            kpis=[
                Kpi("Fully loaded cost", flc, "usd"),
                Kpi(
                    "Model cost (tokens only)",
                    model,
                    "usd",
                    note=f"{fmt(model / flc, 'share')} of fully loaded" if flc else "",
                ),
                Kpi("Allocated platform cost", t.get("allocated_cost"), "usd"),
                Kpi("Human effort cost", t.get("effort_cost"), "usd"),
                Kpi("Calls", t.get("calls"), "count"),
                Kpi(
                    "Unpriced calls",
                    t.get("unpriced_calls"),
                    "count",
                    note="counted, never silently zero" if t.get("unpriced_calls") else "",
                ),
            ],
            charts=[
                self.trend(f),
                Chart(
                    "stacked",
                    "Fully loaded cost by workflow",
                    [r["workflow"] or "(no workflow)" for r in by_wf[:12]],
                    series={
                        "model": [r["model_cost"] for r in by_wf[:12]],
                        "allocated": [r["allocated_cost"] for r in by_wf[:12]],
                        "effort": [r["effort_cost"] for r in by_wf[:12]],
                    },
                ),
            ],
        )
        return s

    def spend_table(self, f: ReportFilters, by: str, limit: int = 15) -> TableData:
        rows = self.spend_by(f, [by])[:limit]
        for r in rows:
            r[by] = r[by] if r[by] is not None else f"(no {by})"
        return TableData(
            [
                Column(by, by.replace("_", " ")),
                Column("calls", "calls", "count"),
                _usd("model_cost", "model cost"),
                _usd("allocated_cost", "allocated"),
                _usd("effort_cost", "effort"),
                _usd("fully_loaded_cost", "fully loaded"),
                Column("unpriced_calls", "unpriced calls", "count"),
            ],
            rows,
        )

    def model_mix(self, f: ReportFilters) -> Section:
        rows = self.spend_by(f, ["model"])
        total = sum(r["model_cost"] or 0.0 for r in rows) or 1.0
        for r in rows:
            r["share_of_model_cost"] = (r["model_cost"] or 0.0) / total
        return Section(
            "model_mix",
            "Model mix",
            "Which models does the money go to?",
            charts=[
                Chart(
                    "bar",
                    "Model cost by model",
                    [r["model"] or "(none)" for r in rows[:12]],
                    [r["model_cost"] for r in rows[:12]],
                )
            ],
            tables=[
                TableData(
                    [
                        Column("model", "model"),
                        Column("calls", "calls", "count"),
                        _usd("model_cost", "model cost"),
                        Column("share_of_model_cost", "share", "share"),
                        Column("unpriced_calls", "unpriced calls", "count"),
                    ],
                    rows[:20],
                )
            ],
        )

    def unpriced_section(self) -> Section:
        rows = rows_of(self.ws.unpriced())
        notes = (
            [
                "Add a price override (prices: in yieldmeter.yaml) for each model below; until then "
                "its calls cost $0 in model cost and are counted here."
            ]
            if rows
            else []
        )
        return Section(
            "unpriced",
            "Unpriced models",
            "Which calls have no price, so their cost is unknown?",
            kpis=[
                Kpi("Unpriced models", len(rows), "count"),
                Kpi("Unpriced calls", sum(r["calls"] or 0 for r in rows), "count"),
            ],
            tables=[
                TableData(
                    [
                        Column("provider", "provider"),
                        Column("model", "model"),
                        Column("calls", "calls", "count"),
                        Column("input_tokens", "input tokens", "count"),
                        Column("output_tokens", "output tokens", "count"),
                    ],
                    rows,
                )
            ],
            notes=notes,
        )

    # -- routing, budgets, decisions -------------------------------------------------------------
    def routing_section(self, f: ReportFilters) -> Section:
        """Recommendations (statistically clear switches), experiments, and segments too thin to route."""

        def build() -> Section:
            start, end = f.bounds()
            recs = rows_of(self.service("routing", "recommendations")(start, end))
            exps = rows_of(self.service("routing", "experiments")(start, end))
            thin = rows_of(self.service("routing", "insufficient")(start, end))
            totals = self.service("routing", "totals")(start, end) or {}
            frontier = rows_of(self.service("routing", "frontier")(start, end))
            if f.workflows:
                recs, exps, thin = (
                    [r for r in rows if r.get("workflow") in f.workflows] for rows in (recs, exps, thin)
                )

            def cols(rows: list[dict[str, Any]], prefer: tuple[str, ...] = ()) -> list[Column]:
                keys = [k for k in (rows[0] if rows else {}) if not isinstance(rows[0][k], dict | list)]
                if rows and any(k in rows[0] for k in prefer):
                    keys = [k for k in prefer if k in rows[0]]  # the columns a person reads first
                return [
                    Column(k, k.replace("_", " "), "text" if isinstance(rows[0][k], str) else _unit_of(k))
                    for k in keys
                ]

            kpis = [
                Kpi(k.replace("_", " ").capitalize(), v, _unit_of(k))
                for k, v in totals.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            ][:6]
            return Section(
                "routing",
                "Routing suggestions",
                "Which workloads should run on which model, and what would it save at the same quality?",
                kpis=kpis,
                tables=[
                    TableData(
                        cols(recs, ROUTING_COLUMNS["recommendations"]),
                        recs,
                        caption="Recommended switches (the difference is clear)",
                    ),
                    TableData(
                        cols(exps, ROUTING_COLUMNS["experiments"]),
                        exps,
                        caption="Experiments that would settle it",
                    ),
                    TableData(
                        cols(thin, ROUTING_COLUMNS["insufficient"]),
                        thin,
                        caption="Too little data to route (not routed)",
                    ),
                    TableData(
                        cols(frontier, ROUTING_COLUMNS["frontier"]),
                        frontier,
                        caption="Cost-quality frontier per value tier",
                    ),
                ],
            )

        return self.guarded("routing", "Routing suggestions", build)

    def budgets_section(self, f: ReportFilters) -> Section:
        def build() -> Section:
            rows = rows_of(self.service("finops", "budgets")())
            rows.sort(key=lambda r: -(r.get("used") or 0.0))
            alerts: list[dict[str, Any]] = []
            with contextlib.suppress(NotAvailable):
                alerts = rows_of(self.service("finops", "alerts")("firing", 50))
            over = [r for r in rows if (r.get("used") or 0) >= (r.get("hard_threshold") or 1.0)]
            return Section(
                "budgets",
                "Budgets",
                "Are we inside our budgets, and when does each run out?",
                kpis=[
                    Kpi("Budgets", len(rows), "count"),
                    Kpi("Over the hard threshold", len(over), "count"),
                    Kpi("Alerts firing", len(alerts), "count"),
                ],
                charts=[
                    Chart(
                        "bar",
                        "Budget used (share of amount)",
                        [f"{r['scope_kind']}: {r['scope']} ({r['period']})" for r in rows[:12]],
                        [r.get("used") for r in rows[:12]],
                        unit="share",
                    )
                ],
                tables=[
                    TableData(
                        [
                            Column("scope_kind", "scope"),
                            Column("scope", "name"),
                            Column("period", "period"),
                            Column("basis", "basis"),
                            _usd("amount", "budget"),
                            _usd("spent", "spent"),
                            Column("used", "used", "share"),
                            _usd("projected", "projected"),
                            Column("run_out_day", "runs out"),
                            Column("state", "state"),
                        ],
                        rows,
                    ),
                    TableData(
                        [
                            Column("severity", "severity"),
                            Column("kind", "kind"),
                            Column("scope", "scope"),
                            Column("message", "message"),
                            Column("first_seen", "since"),
                        ],
                        alerts,
                        caption="Alerts firing",
                    ),
                ],
            )

        return self.guarded("budgets", "Budgets", build)

    def decisions(self, f: ReportFilters | None = None) -> list[dict[str, Any]]:
        d = self.tables().decisions
        if f is not None:
            d = f.window().filter(d, "date")
        return rows_of(d.order_by([ibis.desc("date"), "decision_id"]).to_pyarrow())

    def decisions_section(self, f: ReportFilters) -> Section:
        rows = self.decisions(f)
        return Section(
            "decisions",
            "Decision register",
            "Which decisions changed because of the evidence?",
            kpis=[Kpi("Decisions recorded", len(rows), "count")],
            tables=[
                TableData(
                    [
                        Column("date", "date"),
                        Column("subject", "subject"),
                        Column("change", "change"),
                        Column("rationale", "rationale"),
                        Column("evidence", "evidence"),
                    ],
                    rows,
                )
            ],
            notes=[]
            if rows
            else ["No decision recorded yet: POST /api/v1/decisions or ingest a decisions file."],
        )

    # -- a work unit -------------------------------------------------------------------------------
    def work_unit(self, work_unit_id: str) -> WorkUnitView:
        """Everything known about one work unit: its calls, signals, effort, score and why."""
        t = self.tables()
        wu = rows_of(t.work_units.filter(t.work_units.work_unit_id == work_unit_id).to_pyarrow())
        if not wu:
            raise UnknownWorkUnit(f"no work unit {work_unit_id!r}")
        pc_ = self.priced_calls()
        calls = rows_of(
            pc_.filter(pc_.work_unit_id == work_unit_id)
            .select(
                "call_id",
                "ts",
                "provider",
                "model",
                "operation",
                "input_tokens",
                "output_tokens",
                "duration_ms",
                "status",
                "model_cost",
                "priced",
            )
            .order_by("ts")
            .to_pyarrow()
        )
        signals = rows_of(
            t.signals.filter(t.signals.work_unit_id == work_unit_id)
            .select("signal_id", "ts", "kind", "value", "actor", "source")
            .order_by("ts")
            .to_pyarrow()
        )
        effort = rows_of(
            t.effort.filter(t.effort.work_unit_id == work_unit_id)
            .select("effort_id", "ts", "person", "kind", "minutes")
            .order_by("ts")
            .to_pyarrow()
        )
        outcomes = rows_of(t.outcomes.filter(t.outcomes.work_unit_id == work_unit_id).to_pyarrow())
        facts: dict[str, Any] = {}
        score: dict[str, Any] = {}
        why: list[str] = []
        try:
            facts_t = self.service("value", "facts")()
            got = rows_of(facts_t.filter(facts_t.work_unit_id == work_unit_id).to_pyarrow())
            facts = got[0] if got else {}
        except NotAvailable:
            pass
        if t.scores is not None:
            got = rows_of(t.scores.filter(t.scores.work_unit_id == work_unit_id).to_pyarrow())
            score = got[0] if got else {}
        if score:
            why.append(
                f"score {score.get('score', 0):.0f}/100 ({score.get('confidence_level')} confidence)"
                + (f"; moved most by {score['top_signals']}" if score.get("top_signals") else "")
            )
        if facts:
            checks = [
                ("accepted", "accepted"),
                ("meets_quality", "met the quality threshold"),
                ("meets_latency", "met the latency SLO"),
                ("meets_risk", "met the risk requirement"),
            ]
            if facts.get("tracks_actions"):
                checks.append(("acted", "led to a decision or action"))
            for key, text in checks:
                why.append(("yes: " if facts.get(key) else "no: ") + text)
            why.append("successful outcome" if facts.get("successful") else "not a successful outcome")
        return WorkUnitView(wu[0], facts, score, calls, signals, effort, outcomes, why)

    # -- role reports --------------------------------------------------------------------------------
    def role(self, role: str, f: ReportFilters | None = None) -> Report:
        """The report for ``role`` (one of :data:`ROLES`)."""
        from yieldmeter.reports.roles import build_report

        if role not in ROLES:
            raise ValueError(f"no report for role {role!r}; choose from {', '.join(ROLES)}")
        return build_report(self, role, f or ReportFilters())

    def now(self) -> str:
        return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
