"""Sections of the value measures, and the plumbing every section builder shares.

:class:`ValueSections` turns the value service's reports (coverage, yields, the
conversion chain, benchmarks, patterns, waste) into :class:`Section` s;
:class:`~yieldmeter.app.reports.ReportService` inherits it. A service that is not
installed, or lacks a method, raises :class:`NotAvailable`, which
:meth:`SectionsBase.guarded` turns into a section marked unavailable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from yieldmeter.metrics.funnel import with_known_cost
from yieldmeter.metrics.period import UNASSIGNED
from yieldmeter.reports.model import UNPRICED, Chart, Column, Kpi, Section, TableData, fmt, rows_of

if TYPE_CHECKING:
    from yieldmeter.app.reports import ReportFilters
    from yieldmeter.app.workspace import Workspace


class NotAvailable(Exception):
    """A service or method that later work installs is not there yet."""


def _unit_of(key: str) -> Any:
    """A column's unit guessed from its name (for tables of services that return plain rows)."""
    k = key.lower()
    if "rate" in k or "share" in k or k.endswith("_pct") or k.startswith("success_"):
        return "share"
    if "cost" in k or "saving" in k or "usd" in k or "spend" in k:
        return "usd"
    if k in ("n", "units", "work_units", "calls") or k.startswith("n_") or k.endswith("_units"):
        return "count"
    return "number"


def _usd(key: str, label: str) -> Column:
    return Column(key, label, "usd")


class SectionsBase:
    """What every section builder needs: the workspace and guarded access to its services."""

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
        """``build()``, or a section marked unavailable: a service not installed, or a capability the
        workspace's engine declares unsupported (:data:`yieldmeter.lake.engines.UNSUPPORTED`)."""
        from yieldmeter.lake.engines import EngineGap

        try:
            return build()
        except NotAvailable as exc:
            return Section(key, title, unavailable=str(exc))
        except EngineGap as exc:
            return Section(key, title, unavailable=f"unavailable on this engine ({exc.engine}): {exc.reason}")

    def refresh(self) -> None:
        """Forget cached intermediate results (after new data landed)."""
        value = self.ws.__dict__.get("value")
        if value is not None:
            value.invalidate()


class ValueSections(SectionsBase):
    """Sections of the value engine's measures.

    Every value measure is asked for the filters' whole scope (period, workflows, teams,
    models; see :mod:`yieldmeter.app.value`); a measure that cannot honour one says so in its
    section's ``scope``, so a page never mixes figures of two scopes silently.
    """

    def spend_by(self, f: ReportFilters, by: list[str]) -> list[dict[str, Any]]:
        raise NotImplementedError  # ReportService: spend grouped by ``by``

    def scoped(self, f: ReportFilters) -> dict[str, Any]:
        """The keyword arguments that narrow a value measure to the filters."""
        return {"workflows": f.workflows, "teams": f.teams, "models": f.models}

    def costs_unknown(self, f: ReportFilters) -> tuple[set[str], dict[str, int]]:
        """Workflows whose every call in scope is unpriced (their cost is unknown), and the
        unpriced calls of the workflows priced only in part (their cost is a lower bound)."""
        unknown: set[str] = set()
        partial: dict[str, int] = {}
        for r in self.spend_by(f, ["workflow"]):
            calls, unpriced = r.get("calls") or 0, r.get("unpriced_calls") or 0
            name = r["workflow"] if r["workflow"] is not None else UNASSIGNED
            if cost_unknown(calls, unpriced):
                unknown.add(name)
            elif unpriced:
                partial[name] = unpriced
        return unknown, partial

    # -- value ---------------------------------------------------------------------------------
    def coverage(self, f: ReportFilters) -> Any:
        return self.service("value", "coverage")(f.workflow, f.window(), **self.scoped(f), people=f.people)

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
                notes=list(getattr(rep, "notes", [])),
            )

        return self.guarded("coverage", "Attribution coverage", build)

    def yields(self, f: ReportFilters) -> Any:
        # yields honour the period and workflows only: one computation serves every team and
        # model filter of the same period (kept until the data changes, see ReportService.refresh)
        # (the value service's materialised cost lines are made anew when new data lands: a memo
        # of older lines is not used)
        lines = self.service("value", "lines")()
        memo: dict[Any, Any] = self.__dict__.setdefault("_yields", {})
        key = (f.period, f.workflows)
        hit = memo.get(key)
        if hit is None or hit[0] is not lines:
            if len(memo) >= 64:
                memo.clear()
            hit = memo[key] = (
                lines,
                self.service("value", "yields")(f.workflow, f.window(), workflows=f.workflows),
            )
        return hit[1]

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
                    note=_overall_yield_note(r),
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
                scope=not_filtered(
                    f,
                    ("team", "model"),
                    "benefit comes from outcomes, which name a workflow but no team or model, so "
                    "yields are per workflow, over each workflow's whole cost",
                ),
            )

        return self.guarded("yields", "Yields", build)

    def funnel_rows(self, f: ReportFilters) -> list[dict[str, Any]]:
        """The conversion chain per workflow over the whole period (months summed, rates recomputed).

        ``value`` adds up the months with a monetary outcome: None when none has one (no value
        measured, not $0), and under a team or model filter (outcomes are per workflow), as
        ``value_per_success``. ``unpriced_calls`` counts the workflow's calls with no price;
        ``cost_known`` is false when every call is unpriced (its cost figures are then unknown).
        """
        rows = rows_of(self.service("value", "funnel")(f.workflow, f.window(), **self.scoped(f)))
        if f.workflows:
            rows = [r for r in rows if r["workflow"] in f.workflows]
        counts = (
            "calls",
            "unpriced_calls",
            "work_units",
            "accepted_outputs",
            "actions",
            "successful_outcomes",
        )
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
                    "value": None,  # until a month has a monetary outcome
                    "expected_value": 0.0,
                },
            )
            acc["months"] += 1
            r = with_known_cost(r)
            for k in (*counts, *money, "expected_value"):
                if r.get(k) is None:
                    if k == "actions":  # not recorded
                        acc[k] = None
                    continue
                if k == "value":
                    acc[k] = (acc[k] or 0.0) + r[k]
                elif acc.get(k) is not None:
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
            # two different rates: per step of the chain, and per unit (what routing compares)
            acc["success_rate"] = (
                succ / (act if act is not None else acc_o) if (act if act is not None else acc_o) else None
            )
            acc["success_per_unit"] = succ / wu if wu else None
            acc["value_per_success"] = acc["value"] / succ if succ and acc["value"] is not None else None
            acc["cost_known"] = not cost_unknown(acc["calls"], acc["unpriced_calls"])
        return sorted(out.values(), key=lambda r: -r["fully_loaded_cost"])

    def funnel_section(self, f: ReportFilters, *, lead_with_outcomes: bool = False) -> Section:
        """The chain per workflow. ``lead_with_outcomes`` (the product report): the first chart is the
        cost per accepted output and per successful outcome, and the funnels omit the cost per call."""

        def build() -> Section:
            rows = self.funnel_rows(f)
            shown = [show_unknown_cost(r, FUNNEL_COSTS) for r in rows]
            charts = []
            if lead_with_outcomes:
                charts.append(
                    Chart(
                        "grouped",
                        "Cost per accepted output and per successful outcome, by workflow",
                        [r["workflow"] for r in shown[:12]],
                        series={
                            "per accepted output": [r["cost_per_accepted_output"] for r in shown[:12]],
                            "per successful outcome": [r["cost_per_successful_outcome"] for r in shown[:12]],
                        },
                    )
                )
            for r in shown[:8]:
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
                            None if lead_with_outcomes else r["cost_per_call"],
                            r["cost_per_work_unit"],
                            r["cost_per_accepted_output"],
                            r["cost_per_action"],
                            r["cost_per_successful_outcome"],
                        ],
                        unit="count",
                    )
                )
            notes = [
                "success per action: successful outcomes / work units that led to a decision or action "
                "(per accepted output where the workflow records no action); success per work unit: "
                "successful outcomes / work units, the rate routing compares."
            ]
            notes += unpriced_notes(rows)
            value_scope = ""
            if f.teams or f.models:
                value_scope = not_filtered(
                    f,
                    ("team", "model"),
                    "it comes from outcomes, which name a workflow but no team or model, so it is not "
                    "shown here (see Yields); calls, work units and cost are those of the filter",
                    figures="Measured value is",
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
                            Column("success_rate", "success per action", "share"),
                            Column("success_per_unit", "success per work unit", "share"),
                            _usd("cost_per_accepted_output", "cost / accepted output"),
                            _usd("cost_per_successful_outcome", "cost / successful outcome"),
                            _usd("value", "measured value"),
                            _usd("fully_loaded_cost", "fully loaded"),
                        ],
                        shown,
                    )
                ],
                notes=notes,
                scope=value_scope,
            )

        return self.guarded("funnel", "Conversion chain", build)

    def benchmarks_section(self, f: ReportFilters, by: str = "team", *, people: bool = False) -> Section:
        """Benchmarks by team (groups below the minimum size hidden) or by user (``people`` only)."""
        from yieldmeter.app.value import PrivacyError

        def build() -> Section:
            try:
                rep = self.service("value", "benchmarks")(
                    f.workflow, f.window(), by, people=people, **self.scoped(f)
                )
            except PrivacyError as exc:
                return Section("benchmarks", "Benchmarks", unavailable=exc.detail("the people permission"))
            rows = rows_of(rep.rows)
            if by == "team":  # defence in depth: never show a small group, whatever the service did
                minimum = self.ws.config.privacy.min_group_size
                rows = [r for r in rows if (r.get("people") or 0) >= minimum]
            unknown, _ = self.costs_unknown(f) if rows else (set(), {})
            rows = [
                show_unknown_cost(r, ("cost_per_success",), known=r["workflow"] not in unknown) for r in rows
            ]
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
                            Column("success_rate", "success per work unit", "share"),
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
            rows = rows_of(self.service("value", "patterns")(f.workflow, f.window(), **self.scoped(f)))[
                :limit
            ]
            unknown, _ = self.costs_unknown(f) if rows else (set(), {})
            rows = [
                show_unknown_cost(r, ("cost_per_success",), known=r["workflow"] not in unknown) for r in rows
            ]
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
            rows = rows_of(self.service("value", "waste")(f.workflow, f.window(), **self.scoped(f)))
            if f.workflows:
                rows = [r for r in rows if r["workflow"] in f.workflows]
            partial = self.costs_unknown(f)[1] if rows else {}
            totals = [r for r in rows if r["category"] == "total"]
            detail = [r for r in rows if r["category"] != "total"]

            # the measure leaves a stake null where it is the cost of units whose every call is
            # unpriced (rework is costed from effort: known)
            def known(r: dict[str, Any]) -> bool:
                return r["spend_at_stake"] is not None

            by_cat: dict[str, float | str] = {}
            for r in detail:
                if known(r):
                    prev = by_cat.get(r["category"], 0.0)
                    by_cat[r["category"]] = (prev if isinstance(prev, float) else 0.0) + (
                        r["spend_at_stake"] or 0.0
                    )
                else:
                    by_cat.setdefault(r["category"], 0.0)
            for r in detail:
                r["example_ids"] = [e.strip() for e in (r.get("examples") or "").split(",") if e.strip()]
            shown = [
                show_unknown_cost(r, ("spend_at_stake", "share_of_spend"), known=known(r)) for r in detail
            ]
            left_out = sorted({r["workflow"] for r in totals if not known(r)})
            notes = []
            if left_out:
                notes.append(
                    f"Spend at stake leaves out {', '.join(left_out)}: every call of its wasted units is "
                    "unpriced, so their cost is unknown (add a price to count it)."
                )
            notes += [
                f"Cost in {wf} counts only priced calls: {n} of its calls are unpriced (a lower bound)."
                for wf, n in sorted(partial.items())
                if any(r["workflow"] == wf for r in totals)
            ]
            return Section(
                "waste",
                "Waste",
                "Which spend bought nothing, and where is it?",
                kpis=[
                    Kpi(
                        "Spend at stake",
                        sum(r["spend_at_stake"] or 0.0 for r in totals if known(r)),
                        "usd",
                        note=f"priced spend only; {', '.join(left_out)} unpriced" if left_out else "",
                    )
                ],
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
                        shown,
                    )
                ],
                notes=notes,
            )

        return self.guarded("waste", "Waste", build)


def _overall_yield_note(r: dict[str, Any]) -> str:
    """What a headline yield divides: the ``(all)`` row sets one family's benefit against the
    cost of all the spend in scope, not only its own workflows' (those are in the table)."""
    if r["workflow"] != "(all)":
        return r.get("evidence_mix") or ""
    what = (
        f"{fmt(r.get('benefit'), 'usd')} of {r['family']} benefit over all AI spend in scope "
        f"({fmt(r.get('fully_loaded_cost'), 'usd')}), not only its workflows' (per workflow below)"
    )
    return f"{what}; {r['evidence_mix']}" if r.get("evidence_mix") else what


#: The cost figures of a funnel row, unknown when every call of its workflow is unpriced.
FUNNEL_COSTS = (
    "model_cost",
    "fully_loaded_cost",
    "cost_per_call",
    "cost_per_work_unit",
    "cost_per_accepted_output",
    "cost_per_action",
    "cost_per_successful_outcome",
)


def cost_unknown(calls: int | None, unpriced_calls: int | None) -> bool:
    """True when there were calls and every one is unpriced: the model cost is unknown, not $0."""
    return bool(calls) and (unpriced_calls or 0) >= (calls or 0)


def show_unknown_cost(
    row: dict[str, Any], keys: tuple[str, ...], *, known: bool | None = None
) -> dict[str, Any]:
    """A copy of ``row`` to show, with the cost figures ``keys`` reading :data:`UNPRICED` when the
    cost is unknown (``known`` false; by default the row's own ``cost_known``)."""
    known = row.get("cost_known", True) if known is None else known
    if known:
        return dict(row)
    return {**row, **{k: UNPRICED for k in keys if k in row}}


def unpriced_notes(rows: list[dict[str, Any]]) -> list[str]:
    """Notes for rows whose cost is unknown or a lower bound (``cost_known``, ``unpriced_calls``)."""
    out = []
    unknown = [r["workflow"] for r in rows if not r.get("cost_known", True)]
    if unknown:
        out.append(
            f"Every call of {', '.join(unknown)} is unpriced: its cost reads 'unpriced' (unknown, never "
            "$0) until its model has a price (prices: in yieldmeter.yaml)."
        )
    out += [
        f"Cost of {r['workflow']} counts only priced calls: {r['unpriced_calls']} of its calls are "
        "unpriced (a lower bound)."
        for r in rows
        if r.get("cost_known", True) and r.get("unpriced_calls")
    ]
    return out


def not_filtered(
    f: ReportFilters, dimensions: tuple[str, ...], why: str, *, figures: str = "These figures are"
) -> str:
    """The section's scope note when ``f`` narrows by one of ``dimensions`` the section cannot honour."""
    asked = [
        d for d in dimensions if getattr(f, {"team": "teams", "model": "models", "workflow": "workflows"}[d])
    ]
    if not asked:
        return ""
    return f"{figures} not filtered by {' or '.join(asked)}: {why}."
