"""Sections only some roles ask for: call mapping (CIO), outcomes against baselines (COO),
benefit owners and a production-scale scenario (CFO).

Each is a function of the :class:`~yieldmeter.app.reports.ReportService` and the filters,
built on Ibis expressions over the canonical tables and the value service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ibis

from yieldmeter.app.sections import not_filtered, show_unknown_cost, unpriced_notes
from yieldmeter.reports.model import UNPRICED, Chart, Column, Kpi, Section, TableData, rows_of

if TYPE_CHECKING:
    from yieldmeter.app.reports import ReportFilters, ReportService

#: The production-scale scenario multiplies the period's volume by this factor.
SCALE_FACTOR = 10


def mapping_section(svc: ReportService, f: ReportFilters) -> Section:
    """Share of calls (and of model cost) mapped to a work unit, and to a workflow, per app.

    mapped_to_work_units = calls with a work_unit_id / calls; mapped_to_workflows likewise.
    """
    pc = svc.priced_calls()
    start, end = f.bounds()
    if start is not None:
        pc = pc.filter(pc.ts >= ibis.literal(start))
    if end is not None:
        pc = pc.filter(pc.ts < ibis.literal(end))
    for col, vals in (("team", f.teams), ("workflow", f.workflows), ("model", f.models)):
        if vals:
            pc = pc.filter(pc[col].isin(vals))
    n = pc.request_count
    wu = pc.work_unit_id.notnull()
    wf = pc.workflow.notnull()
    agg = dict(
        calls=n.sum(),
        calls_with_work_unit=ibis.ifelse(wu, n, 0).sum(),
        calls_with_workflow=ibis.ifelse(wf, n, 0).sum(),
        model_cost=pc.model_cost.sum(),
        model_cost_with_workflow=ibis.ifelse(wf, pc.model_cost, 0.0).sum(),
    )
    total = rows_of(pc.aggregate(**agg).to_pyarrow())[0]
    by_app = rows_of(
        pc.group_by(app=pc.app.fill_null("(no app)"))
        .aggregate(**agg)
        .order_by([ibis.desc("calls"), "app"])  # ties by name: the same 15 apps on every engine
        .limit(15)
        .to_pyarrow()
    )

    def share(a: Any, b: Any) -> float | None:
        return (a or 0) / b if b else None

    for r in [total, *by_app]:
        r["share_with_work_unit"] = share(r["calls_with_work_unit"], r["calls"])
        r["share_with_workflow"] = share(r["calls_with_workflow"], r["calls"])
        r["share_of_cost_with_workflow"] = share(r["model_cost_with_workflow"], r["model_cost"])
    return Section(
        "mapping",
        "Calls mapped to work and workflows",
        "What share of AI calls can we tie to a unit of work and to a workflow with an owner?",
        kpis=[
            Kpi("Calls mapped to work units", total["share_with_work_unit"], "share"),
            Kpi("Calls mapped to workflows", total["share_with_workflow"], "share"),
            Kpi("Model cost mapped to workflows", total["share_of_cost_with_workflow"], "share"),
        ],
        charts=[
            Chart(
                "bar",
                "Share of calls mapped to a workflow, by app",
                [r["app"] for r in by_app],
                [r["share_with_workflow"] for r in by_app],
                unit="share",
            )
        ],
        tables=[
            TableData(
                [
                    Column("app", "app"),
                    Column("calls", "calls", "count"),
                    Column("share_with_work_unit", "with work unit", "share"),
                    Column("share_with_workflow", "with workflow", "share"),
                    Column("model_cost", "model cost", "usd"),
                ],
                by_app,
            )
        ],
    )


def outcomes_section(svc: ReportService, f: ReportFilters) -> Section:
    """Operating outcomes against their baselines: change = observed - baseline, and
    change_pct = (observed - baseline) / |baseline|, signed (a fall is negative)."""
    o = svc.tables().outcomes
    o = f.window().overlapping(o, "period_start", "period_end")
    if f.workflows:
        o = o.filter(o.workflow.isin(f.workflows))
    rows = rows_of(o.order_by(["workflow", "period_start"]).to_pyarrow())
    for r in rows:
        b, v = r.get("baseline_value"), r.get("observed_value")
        r["change"] = v - b if b is not None and v is not None else None
        r["change_pct"] = (v - b) / abs(b) if b and v is not None else None
    with_base = [r for r in rows if r["change"] is not None]
    return Section(
        "outcomes",
        "Outcomes against baselines",
        "Did the operating metrics move against their no-AI baselines?",
        kpis=[
            Kpi("Outcomes measured", len(rows), "count"),
            Kpi("... with a baseline", len(with_base), "count"),
        ],
        charts=[
            Chart(
                "bar",
                "Change against baseline (observed vs baseline; a fall is negative)",
                [f"{r['workflow']}: {r['metric']}" for r in with_base],
                [r["change_pct"] for r in with_base],
                unit="share",
            )
        ],
        tables=[
            TableData(
                [
                    Column("workflow", "workflow"),
                    Column("metric", "metric"),
                    Column("baseline_value", "baseline", "number"),
                    Column("observed_value", "observed", "number"),
                    Column("change_pct", "change", "share"),
                    Column("unit", "unit"),
                    Column("evidence_level", "evidence"),
                    Column("benefit_owner", "owner"),
                ],
                rows,
            )
        ],
        notes=[
            "Change is signed: negative when the metric fell below its baseline, which is the "
            "improvement for losses, minutes and costs, and a decline for revenue or volume."
        ]
        if with_base
        else [],
        scope=not_filtered(
            f, ("team", "model"), "an outcome is measured per workflow, not per team or model"
        ),
    )


def owners_section(svc: ReportService, f: ReportFilters) -> Section:
    """Named benefit owners: per workflow, the owner in the catalog and on its outcomes, with benefit."""
    w = f.window()
    o = w.overlapping(svc.tables().outcomes, "period_start", "period_end")
    if f.workflows:
        o = o.filter(o.workflow.isin(f.workflows))
    share = o.attribution_share.fill_null(1.0).clip(0.0, 1.0) * w.share(o, "period_start", "period_end")
    g = o.group_by(workflow=o.workflow, benefit_owner=o.benefit_owner).aggregate(
        outcomes=o.count(),
        benefit=(o.monetary_value * share).sum().fill_null(0.0),
        strongest_evidence=o.evidence_level.max(),
    )
    rows = rows_of(g.order_by([ibis.desc("benefit"), "workflow"]).to_pyarrow())
    catalog = {
        w.workflow: w.owner for w in svc.ws.config.workflows if not f.workflows or w.workflow in f.workflows
    }
    seen = {r["workflow"] for r in rows}
    for r in rows:
        r["catalog_owner"] = catalog.get(r["workflow"])
    for wf, owner in catalog.items():
        if wf not in seen:
            rows.append(
                {
                    "workflow": wf,
                    "benefit_owner": None,
                    "catalog_owner": owner,
                    "outcomes": 0,
                    "benefit": 0.0,
                    "strongest_evidence": None,
                }
            )
    missing = [r["workflow"] for r in rows if not (r["benefit_owner"] or r["catalog_owner"])]
    return Section(
        "owners",
        "Named benefit owners",
        "Who answers for each benefit?",
        tables=[
            TableData(
                [
                    Column("workflow", "workflow"),
                    Column("benefit_owner", "benefit owner (outcomes)"),
                    Column("catalog_owner", "workflow owner"),
                    Column("outcomes", "outcomes", "count"),
                    Column("benefit", "attributed benefit", "usd"),
                    Column("strongest_evidence", "evidence"),
                ],
                rows,
            )
        ],
        notes=[f"No owner named for: {', '.join(missing)}"] if missing else [],
        scope=not_filtered(
            f, ("team", "model"), "benefit comes from outcomes, which name a workflow, not a team or model"
        ),
    )


def scenario_section(svc: ReportService, f: ReportFilters) -> Section:
    """Production scale: the period's volume x :data:`SCALE_FACTOR`.

    Per workflow: cost_now = model + effort + allocated cost; cost_scaled = (model + effort) x
    SCALE_FACTOR + allocated (platform cost held fixed: capacity already paid for); successful
    outcomes x SCALE_FACTOR; benefit_scaled = measured value x SCALE_FACTOR; yield_scaled =
    benefit_scaled / cost_scaled. A workflow whose every call is unpriced has an unknown cost:
    its cost figures read "unpriced" and the totals leave it out, saying so.
    """
    rows = svc.funnel_rows(f)
    out = []
    for r in rows:
        succ = r["successful_outcomes"] or 0
        variable = (r["model_cost"] or 0.0) + (r["effort_cost"] or 0.0)
        fixed = r["allocated_cost"] or 0.0
        cost_now = variable + fixed
        cost_scaled = variable * SCALE_FACTOR + fixed
        value = r["value"]
        benefit_scaled = value * SCALE_FACTOR if value is not None else None
        out.append(
            {
                "workflow": r["workflow"],
                "cost_known": r["cost_known"],
                "unpriced_calls": r["unpriced_calls"],
                "successful_outcomes": succ * SCALE_FACTOR,
                "fully_loaded_cost_now": cost_now,
                "fully_loaded_cost_scaled": cost_scaled,
                "cost_per_successful_outcome_scaled": cost_scaled / (succ * SCALE_FACTOR) if succ else None,
                "benefit_scaled": benefit_scaled,
                "yield_scaled": benefit_scaled / cost_scaled
                if cost_scaled and benefit_scaled is not None
                else None,
            }
        )
    known = [r for r in out if r["cost_known"]]
    costs = ("fully_loaded_cost_now", "fully_loaded_cost_scaled", "cost_per_successful_outcome_scaled")
    shown = [show_unknown_cost(r, (*costs, "yield_scaled")) for r in out]
    benefit = [r["benefit_scaled"] for r in out if r["benefit_scaled"] is not None]
    left_out = [r["workflow"] for r in out if not r["cost_known"]]
    return Section(
        "scenario",
        f"Production-scale scenario ({SCALE_FACTOR}x today's volume)",
        "What would it cost, and return, at production scale?",
        kpis=[
            Kpi(
                f"Fully loaded cost at {SCALE_FACTOR}x",
                sum(r["fully_loaded_cost_scaled"] for r in known) if known or not out else UNPRICED,
                "usd",
                note=f"leaves out {', '.join(left_out)} (unpriced)" if left_out else "",
            ),
            Kpi(
                f"Measured benefit at {SCALE_FACTOR}x",
                sum(benefit) if benefit or not out else None,
                "usd",
            ),
        ],
        tables=[
            TableData(
                [
                    Column("workflow", "workflow"),
                    Column("successful_outcomes", "successful outcomes", "count"),
                    Column("fully_loaded_cost_now", "cost now", "usd"),
                    Column("fully_loaded_cost_scaled", "cost at scale", "usd"),
                    Column("cost_per_successful_outcome_scaled", "cost / success at scale", "usd"),
                    Column("yield_scaled", "yield at scale", "ratio"),
                ],
                shown,
            )
        ],
        notes=[
            "Model and human effort cost scale with volume at today's cost per successful outcome; "
            "allocated platform cost is held fixed; benefit scales with successful outcomes at the measured "
            "value per success. Strategic value is not scaled.",
            *unpriced_notes(rows),
        ],
        scope=not_filtered(
            f,
            ("team", "model"),
            "measured benefit comes from outcomes, which name a workflow, not a team or model, so it "
            "is not scaled here; the cost is that of the filter",
            figures="Benefit and yield at scale are",
        ),
    )
