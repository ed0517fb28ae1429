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
workflows, models. Spend honours all four, and so do the value measures defined
per work unit or cost line (funnel, coverage, benchmarks, patterns, waste): unit
facts and cost lines carry a team and a model. A section that cannot honour a
filter says which and why in its ``scope`` (yields and measured value: outcomes
name a workflow, not a team or model; the decision register; routing by team),
so a page never mixes figures of two scopes silently.

Privacy (enforced here, so the API, the dashboard and the reports agree): per-person
views need ``people``; for a viewer without it, spend grouped by team merges teams
with fewer than ``privacy.min_group_size`` people into one ``(other teams)`` row
(:class:`~yieldmeter.app.spend_sections.TeamPrivacy`), a team filter naming such a team is refused
(:meth:`ReportService.check_privacy`), and benchmark rows of small teams are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import ibis

from yieldmeter.app.sections import (
    NotAvailable,
    _unit_of,
    _usd,
    cost_unknown,
    not_filtered,
    show_unknown_cost,
)
from yieldmeter.app.spend_sections import SpendSections
from yieldmeter.errors import InputError, UnknownName
from yieldmeter.metrics.period import Window
from yieldmeter.metrics.spend import Filters
from yieldmeter.reports.model import UNPRICED, Chart, Column, Kpi, Section, TableData, rows_of

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
#: the routing totals a report shows, in this order (the rest are in the JSON)
ROUTING_KPIS = (
    "switches",
    "monthly_saving",
    "monthly_success_change",
    "experiments",
    "potential_monthly_saving_in_experiments",
    "not_testable",
    "potential_monthly_saving_not_testable",
    "insufficient_data",
)
#: why routing figures are not filtered by team
ROUTING_TEAMS = "routing compares models per workflow and task type, over every team's work units"
#: Routing columns that are costs: unknown ("unpriced") for a model with no price.
ROUTING_COSTS = (
    "current_cost_per_unit",
    "current_cost_per_success",
    "cost_per_unit",
    "cost_per_success",
    "cost_per_success_low",
    "cost_per_success_high",
)
#: Routing column labels that differ from the column name (success is per work unit there).
ROUTING_LABELS = {
    "current_success_rate": "success per work unit (now)",
    "success_rate": "success per work unit",
    "success_low": "low",
    "success_high": "high",
    "current_cost_per_success": "cost / success (now)",
}
FAMILIES = ("workflow", "revenue", "risk", "capacity")


class UnknownWorkUnit(UnknownName):
    pass


@dataclass(frozen=True)
class ReportFilters:
    """What a person narrowed the view to, and whether they may see people (``people``:
    per-person data and teams below ``privacy.min_group_size``)."""

    period: str | None = None
    teams: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    people: bool = False

    @classmethod
    def of(
        cls,
        period: str | None = None,
        team: Any = (),
        workflow: Any = (),
        model: Any = (),
        *,
        people: bool = False,
    ) -> ReportFilters:
        """From raw values (a string, a list, or None each); a bad period raises ValueError."""

        def tup(v: Any) -> tuple[str, ...]:
            if not v:
                return ()
            items = [v] if isinstance(v, str) else list(v)
            return tuple(sorted({s.strip() for s in items if s and s.strip()}))

        f = cls((period or "").strip() or None, tup(team), tup(workflow), tup(model), people)
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
        return (self.period, self.teams, self.workflows, self.models, self.people)


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


class ReportService(SpendSections):
    """Sections of figures for the dashboard, the role reports and the REST views."""

    # -- routing, budgets, decisions -------------------------------------------------------------
    def routing_section(self, f: ReportFilters) -> Section:
        """Recommendations (statistically clear switches), experiments, and segments too thin to route."""

        def build() -> Section:
            start, end = f.bounds()
            recs = rows_of(self.service("routing", "recommendations")(start, end))
            exps = rows_of(self.service("routing", "experiments")(start, end))
            thin = rows_of(self.service("routing", "insufficient")(start, end))
            totals = (
                self.service("routing", "totals")(start, end, workflows=f.workflows, models=f.models) or {}
            )
            frontier = rows_of(self.service("routing", "frontier")(start, end))
            if f.workflows:
                recs, exps, thin = (
                    [r for r in rows if r.get("workflow") in f.workflows] for rows in (recs, exps, thin)
                )
            if f.models:  # the workloads now on those models, and those models on the frontier
                recs, exps, thin = (
                    [r for r in rows if r.get("incumbent") in f.models] for rows in (recs, exps, thin)
                )
                frontier = [r for r in frontier if r.get("model") in f.models]
            unpriced = {
                r["model"]
                for r in self.spend_by(replace(f, teams=()), ["model"])
                if r["model"] and cost_unknown(r["calls"], r["unpriced_calls"])
            }
            recs, exps, thin = (
                [show_unknown_cost(r, ROUTING_COSTS, known=r.get("incumbent") not in unpriced) for r in rows]
                for rows in (recs, exps, thin)
            )
            frontier = [
                show_unknown_cost(r, ROUTING_COSTS, known=r.get("model") not in unpriced) for r in frontier
            ]

            def cols(rows: list[dict[str, Any]], prefer: tuple[str, ...] = ()) -> list[Column]:
                keys = [k for k in (rows[0] if rows else {}) if not isinstance(rows[0][k], dict | list)]
                if rows and any(k in rows[0] for k in prefer):
                    keys = [k for k in prefer if k in rows[0]]  # the columns a person reads first
                return [
                    Column(
                        k,
                        ROUTING_LABELS.get(k, k.replace("_", " ")),
                        _unit_of(k) if k in ROUTING_COSTS or not isinstance(rows[0][k], str) else "text",
                    )
                    for k in keys
                ]

            kpis = [
                Kpi(
                    k.replace("_", " ").capitalize(),
                    totals[k],
                    _unit_of(k),
                    low=totals.get(f"{k}_low"),  # the switches' saving has its 95% interval
                    high=totals.get(f"{k}_high"),
                )
                for k in ROUTING_KPIS
                if isinstance(totals.get(k), int | float) and not isinstance(totals.get(k), bool)
            ]
            labels = [f"{r.get('tier_label') or r.get('tier')} · {r['model']}" for r in frontier[:12]]
            frontier_note = (
                "The frontier pools every workflow of a value tier: a workflow filter leaves it whole."
                if f.workflows
                else ""
            )
            return Section(
                "routing",
                "Routing suggestions",
                "Which workloads should run on which model, and what would it save at the same quality?",
                kpis=kpis,
                charts=[
                    Chart(
                        "interval",
                        "Success per work unit by value tier and model (95% interval)",
                        labels,
                        [r.get("success_rate") for r in frontier[:12]],
                        lows=[r.get("success_low") for r in frontier[:12]],
                        highs=[r.get("success_high") for r in frontier[:12]],
                        unit="share",
                    ),
                    Chart(
                        "bar",
                        "Fully loaded cost per successful outcome by value tier and model",
                        labels,
                        [r.get("cost_per_success") for r in frontier[:12]],
                    ),
                ],
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
                notes=[
                    "Success per work unit: work units that met the workflow's quality, risk and latency "
                    "requirements and reached an outcome / work units (the conversion chain's success per "
                    "action divides by actions instead)."
                ],
                scope=" ".join(
                    note for note in (not_filtered(f, ("team",), ROUTING_TEAMS), frontier_note) if note
                ),
            )

        return self.guarded("routing", "Routing suggestions", build)

    def budgets_section(self, f: ReportFilters) -> Section:
        """Budgets and the alerts firing. A team, workflow or model filter keeps the budgets set on
        those scopes; a period that has ended gives each budget's status as of its end. Without
        ``people``, budgets on a person and their alerts are left out (a note says how many); a
        budget whose scope had only unpriced calls reads "unpriced", never $0 spent.

        Alert state is the workspace store's: where the engine declares it a gap (a lake), the
        budgets are shown without their alerts, and a note says why."""
        from yieldmeter.app.finops_sections import person_budgets_note
        from yieldmeter.lake.engines import EngineGap

        def build() -> Section:
            _, end = f.bounds()
            now = datetime.now(UTC)
            at = end - timedelta(microseconds=1) if end is not None and end <= now else None
            rows = rows_of(self.service("finops", "budgets")(at, people=f.people))
            alerts: list[dict[str, Any]] = []
            notes = person_budgets_note(self, f)
            try:
                alerts = rows_of(self.service("finops", "alerts")("firing", 50, people=f.people))
            except NotAvailable:
                pass
            except EngineGap as exc:  # budgets run on a lake; the alert state does not
                notes.append(f"Alerts are not shown: {exc.reason}")
            wanted = {"team": f.teams, "workflow": f.workflows, "model": f.models}
            if any(wanted.values()):
                rows = [r for r in rows if r.get("scope") in wanted.get(r.get("scope_kind") or "", ())]
                names = {v for vals in wanted.values() for v in vals}
                alerts = [a for a in alerts if any(n in str(a.get("scope") or "") for n in names)]
                notes.append(
                    "Only budgets set on the team, workflow or model filtered are shown; "
                    "organisation-wide budgets and other scopes are not."
                )
            if at is not None:
                notes.append(f"Status as of {at:%Y-%m-%d %H:%M} UTC, the end of the period.")
            rows.sort(key=lambda r: -(r.get("used") or 0.0))
            over = [r for r in rows if (r.get("used") or 0) >= (r.get("hard_threshold") or 1.0)]
            unpriced = [r for r in rows if r.get("unpriced_calls")]
            if unpriced:
                notes.append(
                    f"{sum(r['unpriced_calls'] for r in unpriced):,} calls in the scopes of "
                    f"{len(unpriced)} budget{'s' if len(unpriced) > 1 else ''} have no price: their cost "
                    "is unknown and not in spent, so those budgets may be further along than shown "
                    "(add a price override; see Unpriced models)."
                )
            # every call in scope unpriced and nothing else spent: unknown, not $0
            shown = [
                show_unknown_cost(
                    r,
                    ("spent", "used", "projected"),
                    known=not (r.get("unpriced_calls") and not r.get("spent")),
                )
                for r in rows
            ]
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
                        [f"{r['scope_kind']}: {r['scope']} ({r['period']})" for r in shown[:12]],
                        [r.get("used") for r in shown[:12]],
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
                            Column("unpriced_calls", "unpriced calls", "count"),
                        ],
                        shown,
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
                notes=notes,
            )

        return self.guarded("budgets", "Budgets", build)

    def no_data_sections(self) -> list[Section]:
        """On a workspace that holds nothing yet, a section saying how to give it data (empty
        sections alone read as if the filters were to blame); none once it holds anything."""
        t = self.tables()
        if any(
            int(getattr(t, name).count().to_pyarrow().as_py())
            for name in ("calls", "work_units", "cost_items")
        ):
            return []
        return [
            Section(
                "no_data",
                "No data yet",
                "This workspace holds no calls, work units or costs yet.",
                notes=[
                    "Import files with `yieldmeter ingest FILES` (OTLP JSON, LiteLLM, Langfuse, OpenAI and "
                    "Anthropic usage, FOCUS billing, CSV tables).",
                    "Point an OpenTelemetry exporter or Collector at /v1/traces, or the Langfuse SDK at "
                    "this server (docs/telemetry.md).",
                    "Or see a simulated organisation first: `yieldmeter demo`.",
                ],
            )
        ]

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
            else [
                "No decision recorded yet. The register lists decisions about AI itself taken on this "
                "evidence (scale a workflow, switch a model, stop one): POST /api/v1/decisions or ingest "
                "a decisions file. Business decisions an AI answer informed are strategic outcomes "
                "(see Yields)."
            ],
            scope=not_filtered(
                f,
                ("team", "workflow", "model"),
                "a decision names a subject and a date, not a team, workflow or model; the period applies",
                figures="The register is",
            ),
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
        for c in calls:  # an unpriced call's cost is unknown, never $0
            if not c.get("priced"):
                c["model_cost"] = UNPRICED
        if facts and cost_unknown(facts.get("calls"), facts.get("unpriced_calls")):
            facts = {**facts, "model_cost": UNPRICED, "fully_loaded_cost": UNPRICED}
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
            raise InputError(f"no report for role {role!r}; choose from {', '.join(ROLES)}")
        f = f or ReportFilters()
        self.check_privacy(f)
        return build_report(self, role, f)

    def now(self) -> str:
        return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
