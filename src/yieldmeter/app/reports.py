"""Report views over the Workspace services (``ws.reports``).

Every surface that shows more than one measure at a time (dashboard pages,
role reports, the REST views) asks this service for :class:`Section` s: the
figures, charts and tables that answer one question. It calls ``ws.spend``,
``ws.value``, ``ws.routing``, ``ws.finops``; a service that is not installed
(or lacks the method) gives a section marked ``unavailable`` with the reason,
never an error page.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import ibis

from yieldmeter.metrics.period import Window
from yieldmeter.metrics.spend import Filters
from yieldmeter.reports.model import Chart, Column, Kpi, Section, TableData, rows_of

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.reports.model import Report

ROLES = ("board", "cfo", "cio", "coo", "finops", "product")
FAMILIES = ("workflow", "revenue", "risk", "capacity")


class NotAvailable(Exception):
    """A service or method that later work installs is not there yet."""


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


def _unit_of(key: str) -> Any:
    """A column's unit guessed from its name (for tables of services that return plain rows)."""
    k = key.lower()
    if "rate" in k or "share" in k or k.endswith("_pct"):
        return "share"
    if "cost" in k or "saving" in k or "usd" in k or "spend" in k:
        return "usd"
    if k in ("n", "units", "work_units", "calls") or k.startswith("n_"):
        return "count"
    return "number"


def _usd(key: str, label: str) -> Column:
    return Column(key, label, "usd")


class ReportService:
    """Sections of figures for the dashboard, the role reports and the REST views."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    # -- plumbing ------------------------------------------------------------------------------
    def service(self, name: str, method: str) -> Callable[..., Any]:
        """``ws.<name>.<method>``, or :class:`NotAvailable` when that work has not landed."""
        try:
            svc = getattr(self.ws, name)
        except ModuleNotFoundError:
            raise NotAvailable(f"the {name} service is not available yet") from None
        fn = getattr(svc, method, None)
        if fn is None:
            raise NotAvailable(f"{name}.{method} is not available yet")
        return fn  # type: ignore[no-any-return]

    def tables(self) -> Any:
        """The canonical tables (bound once by the value service when it is installed)."""
        try:
            return self.service("value", "tables")()
        except NotAvailable:
            return self.ws.tables()

    def priced_calls(self) -> Any:
        from yieldmeter.metrics.cost import priced_calls

        return priced_calls(self.tables())

    def guarded(self, key: str, title: str, build: Callable[[], Section]) -> Section:
        try:
            return build()
        except NotAvailable as exc:
            return Section(key, title, unavailable=str(exc))

    def refresh(self) -> None:
        """Forget cached intermediate results (after new data landed)."""
        value = self.ws.__dict__.get("value")
        if value is not None:
            value.invalidate()

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
                    note=f"{model / flc:.0%} of fully loaded" if flc else "",
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

    # -- value ---------------------------------------------------------------------------------
    def coverage(self, f: ReportFilters) -> Any:
        return self.service("value", "coverage")(f.workflow, f.window())

    def coverage_section(self, f: ReportFilters) -> Section:
        def build() -> Section:
            rep = self.coverage(f)
            t = rep.total
            parts = ["share_with_baseline", "share_with_owner", "share_with_evidence"]
            names = ["a baseline", "an owner", "evidence of change"]
            unc = rows_of(rep.largest_uncovered)
            return Section(
                "coverage",
                "Attribution coverage",
                "What share of AI spend is connected to measured outcomes?",
                kpis=[
                    Kpi(
                        "Spend connected to measured outcomes",
                        t.get("coverage"),
                        "share",
                        note="spend whose workflow has a baseline, an owner and evidence of change",
                    ),
                    *[Kpi(f"... with {n}", t.get(p), "share") for p, n in zip(parts, names, strict=True)],
                    Kpi("Uncovered spend", t.get("uncovered_spend"), "usd"),
                ],
                charts=[
                    Chart(
                        "bar",
                        "Share of spend with each part of the evidence",
                        ["covered (all three)", *[f"with {n}" for n in names]],
                        [t.get("coverage"), *[t.get(p) for p in parts]],
                        unit="share",
                    )
                ],
                tables=[
                    TableData(
                        [
                            Column("workflow", "workflow"),
                            Column("team", "team"),
                            Column("app", "app"),
                            _usd("spend", "spend"),
                            Column("missing", "missing"),
                        ],
                        unc,
                        caption="Largest uncovered spend",
                    )
                ],
            )

        return self.guarded("coverage", "Attribution coverage", build)

    def yields(self, f: ReportFilters) -> Any:
        return self.service("value", "yields")(f.workflow, f.window())

    def yields_section(self, f: ReportFilters) -> Section:
        def build() -> Section:
            rep = self.yields(f)
            rows = rows_of(rep.yields)
            overall = [r for r in rows if r["workflow"] == "(all)"] or rows
            per_wf = [r for r in rows if r["workflow"] != "(all)"]
            strategic = rows_of(rep.strategic)
            kpis = [
                Kpi(
                    f"{r['family'].capitalize()} yield",
                    r["yield"],
                    "ratio",
                    low=r["yield_low"],
                    high=r["yield_high"],
                    note=r.get("evidence_mix") or "",
                )
                for r in overall
            ]
            kpis += [
                Kpi(
                    f"Strategic score ({r['workflow']})",
                    r["strategic_score"],
                    "number",
                    note=f"0-5, confidence {r['confidence']:.0%}; never dollars",
                )
                for r in strategic
                if r.get("strategic_score") is not None
            ]
            shown = per_wf or overall
            return Section(
                "yields",
                "Yields",
                "What did each dollar of fully loaded cost return, and how sure are we?",
                kpis=kpis,
                charts=[
                    Chart(
                        "interval",
                        "Yield by workflow and family (band: evidence uncertainty)",
                        [f"{r['workflow']} · {r['family']}" for r in shown],
                        [r["yield"] for r in shown],
                        lows=[r["yield_low"] for r in shown],
                        highs=[r["yield_high"] for r in shown],
                        unit="ratio",
                        reference=1.0,
                        reference_label="break-even 1x",
                    )
                ],
                tables=[
                    TableData(
                        [
                            Column("workflow", "workflow"),
                            Column("family", "family"),
                            _usd("benefit", "benefit"),
                            _usd("fully_loaded_cost", "fully loaded cost"),
                            Column("yield", "yield", "ratio"),
                            Column("yield_low", "low", "ratio"),
                            Column("yield_high", "high", "ratio"),
                            Column("evidence_mix", "evidence"),
                        ],
                        shown,
                    )
                ],
                notes=list(rep.notes),
            )

        return self.guarded("yields", "Yields", build)

    def funnel_rows(self, f: ReportFilters) -> list[dict[str, Any]]:
        """The conversion chain per workflow over the whole period (months summed, rates recomputed)."""
        rows = rows_of(self.service("value", "funnel")(f.workflow, f.window()))
        if f.workflows:
            rows = [r for r in rows if r["workflow"] in f.workflows]
        counts = ("calls", "work_units", "accepted_outputs", "actions", "successful_outcomes")
        money = ("value", "model_cost", "allocated_cost", "effort_cost", "fully_loaded_cost")
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            acc = out.setdefault(
                r["workflow"],
                {
                    "workflow": r["workflow"],
                    "months": 0,
                    "success_basis": r["success_basis"],
                    **{k: 0 for k in counts},
                    **{k: 0.0 for k in money},
                    "expected_value": 0.0,
                },
            )
            acc["months"] += 1
            for k in (*counts, *money, "expected_value"):
                if r.get(k) is None:
                    if k == "actions":
                        acc["actions"] = None
                    continue
                if acc.get(k) is not None:
                    acc[k] += r[k]
        for acc in out.values():
            flc = acc["fully_loaded_cost"]
            for k, per in (
                ("calls", "cost_per_call"),
                ("work_units", "cost_per_work_unit"),
                ("accepted_outputs", "cost_per_accepted_output"),
                ("actions", "cost_per_action"),
                ("successful_outcomes", "cost_per_successful_outcome"),
            ):
                n = acc.get(k)
                acc[per] = flc / n if n else None
            wu, acc_o, act, succ = (
                acc["work_units"],
                acc["accepted_outputs"],
                acc["actions"],
                acc["successful_outcomes"],
            )
            acc["acceptance_rate"] = acc_o / wu if wu else None
            acc["success_rate"] = (
                succ / (act if act is not None else acc_o) if (act if act is not None else acc_o) else None
            )
            acc["value_per_success"] = acc["value"] / succ if succ else None
        return sorted(out.values(), key=lambda r: -r["fully_loaded_cost"])

    def funnel_section(self, f: ReportFilters) -> Section:
        def build() -> Section:
            rows = self.funnel_rows(f)
            charts = []
            for r in rows[:8]:
                charts.append(
                    Chart(
                        "funnel",
                        f"{r['workflow']}: conversion chain ({r['success_basis']} basis)",
                        [
                            "calls",
                            "work units",
                            "accepted outputs",
                            "decisions/actions",
                            "successful outcomes",
                        ],
                        [
                            r["calls"],
                            r["work_units"],
                            r["accepted_outputs"],
                            r["actions"],
                            r["successful_outcomes"],
                        ],
                        costs=[
                            r["cost_per_call"],
                            r["cost_per_work_unit"],
                            r["cost_per_accepted_output"],
                            r["cost_per_action"],
                            r["cost_per_successful_outcome"],
                        ],
                        unit="count",
                    )
                )
            return Section(
                "funnel",
                "Conversion chain",
                "How many calls became work, accepted outputs, actions and successful outcomes; "
                "what did each stage cost?",
                charts=charts,
                tables=[
                    TableData(
                        [
                            Column("workflow", "workflow", link="/funnel?workflow={value}"),
                            Column("work_units", "work units", "count"),
                            Column("acceptance_rate", "accepted", "share"),
                            Column("success_rate", "success rate", "share"),
                            _usd("cost_per_accepted_output", "cost / accepted output"),
                            _usd("cost_per_successful_outcome", "cost / successful outcome"),
                            _usd("value", "measured value"),
                            _usd("fully_loaded_cost", "fully loaded"),
                        ],
                        rows,
                    )
                ],
            )

        return self.guarded("funnel", "Conversion chain", build)

    def benchmarks_section(self, f: ReportFilters, by: str = "team", *, people: bool = False) -> Section:
        """Benchmarks by team (groups below the minimum size hidden) or by user (``people`` only)."""
        from yieldmeter.app.value import PrivacyError

        def build() -> Section:
            try:
                rep = self.service("value", "benchmarks")(f.workflow, f.window(), by, people=people)
            except PrivacyError as exc:
                return Section("benchmarks", "Benchmarks", unavailable=str(exc))
            rows = rows_of(rep.rows)
            if by == "team" and f.teams:
                rows = [r for r in rows if r["subject"] in f.teams]
            if by == "team":  # defence in depth: never show a small group, whatever the service did
                minimum = self.ws.config.privacy.min_group_size
                rows = [r for r in rows if (r.get("people") or 0) >= minimum]
            charts = []
            for wf in dict.fromkeys(r["workflow"] for r in rows):
                sub = [r for r in rows if r["workflow"] == wf][:15]
                charts.append(
                    Chart(
                        "interval",
                        f"{wf}: value per token by {by} (95% interval, shrunk)",
                        [str(r["subject"]) for r in sub],
                        [r["value_per_token"] for r in sub],
                        lows=[r["value_per_token_low"] for r in sub],
                        highs=[r["value_per_token_high"] for r in sub],
                        unit="number",
                        reference=sub[0]["workflow_value_per_token"] if sub else None,
                        reference_label="workflow mean",
                    )
                )
            return Section(
                "benchmarks",
                f"Benchmarks by {by}",
                "Inside each workflow, who gets most value per token? (to learn from, not to rank people)",
                charts=charts,
                tables=[
                    TableData(
                        [
                            Column("workflow", "workflow"),
                            Column("subject", by),
                            Column("n", "work units", "count"),
                            Column("value_per_token", "value / token", "number"),
                            Column("value_per_token_low", "low", "number"),
                            Column("value_per_token_high", "high", "number"),
                            Column("success_rate", "success rate", "share"),
                            _usd("cost_per_success", "cost / success"),
                        ],
                        rows,
                    )
                ],
                notes=list(rep.notes),
            )

        return self.guarded("benchmarks", "Benchmarks", build)

    def patterns_section(self, f: ReportFilters, limit: int = 20) -> Section:
        def build() -> Section:
            rows = rows_of(self.service("value", "patterns")(f.workflow, f.window()))[:limit]
            return Section(
                "patterns",
                "Patterns",
                "Which ways of working deliver the most value per token?",
                tables=[
                    TableData(
                        [
                            Column("workflow", "workflow"),
                            Column("dimension", "pattern"),
                            Column("segment", "segment"),
                            Column("n", "work units", "count"),
                            Column("lift", "vs workflow mean", "ratio"),
                            Column("lift_low", "low", "ratio"),
                            Column("lift_high", "high", "ratio"),
                            _usd("cost_per_success", "cost / success"),
                        ],
                        rows,
                    )
                ],
            )

        return self.guarded("patterns", "Patterns", build)

    def waste_section(self, f: ReportFilters) -> Section:
        def build() -> Section:
            rows = rows_of(self.service("value", "waste")(f.workflow, f.window()))
            if f.workflows:
                rows = [r for r in rows if r["workflow"] in f.workflows]
            totals = [r for r in rows if r["category"] == "total"]
            detail = [r for r in rows if r["category"] != "total"]
            by_cat: dict[str, float] = {}
            for r in detail:
                by_cat[r["category"]] = by_cat.get(r["category"], 0.0) + (r["spend_at_stake"] or 0.0)
            for r in detail:
                r["example_ids"] = [e.strip() for e in (r.get("examples") or "").split(",") if e.strip()]
            return Section(
                "waste",
                "Waste",
                "Which spend bought nothing, and where is it?",
                kpis=[Kpi("Spend at stake", sum(r["spend_at_stake"] or 0.0 for r in totals), "usd")],
                charts=[Chart("bar", "Spend at stake by kind of waste", list(by_cat), list(by_cat.values()))],
                tables=[
                    TableData(
                        [
                            Column("workflow", "workflow"),
                            Column("category", "kind"),
                            Column("work_units", "work units", "count"),
                            _usd("spend_at_stake", "at stake"),
                            Column("share_of_spend", "share of spend", "share"),
                            Column("examples", "examples"),
                        ],
                        detail,
                    )
                ],
            )

        return self.guarded("waste", "Waste", build)

    # -- routing, budgets, decisions -------------------------------------------------------------
    def routing_section(self, f: ReportFilters) -> Section:
        """Recommendations (statistically clear switches), experiments, and segments too thin to route."""

        def build() -> Section:
            start, end = f.bounds()
            recs = rows_of(self.service("routing", "recommendations")(start, end))
            exps = rows_of(self.service("routing", "experiments")(start, end))
            thin = rows_of(self.service("routing", "insufficient")(start, end))
            totals = self.service("routing", "totals")(start, end) or {}
            if f.workflows:
                recs, exps, thin = (
                    [r for r in rows if r.get("workflow") in f.workflows] for rows in (recs, exps, thin)
                )

            def cols(rows: list[dict[str, Any]]) -> list[Column]:
                keys = [k for k in (rows[0] if rows else {}) if not isinstance(rows[0][k], dict | list)]
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
                    TableData(cols(recs), recs, caption="Recommended switches (the difference is clear)"),
                    TableData(cols(exps), exps, caption="Experiments that would settle it"),
                    TableData(cols(thin), thin, caption="Too little data to route (not routed)"),
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
