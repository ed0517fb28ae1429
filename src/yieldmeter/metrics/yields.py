"""Yields: benefit / fully loaded cost, one per family, and the strategic score.

Families, by the outcome's value dimension (else its workflow's):

=========== ======================================== =========================================
family      value dimensions                          benefit counted
=========== ======================================== =========================================
workflow    throughput, quality, cycle_time,          measured workflow benefit
            resilience
revenue     revenue, margin                           incremental contribution margin (an
                                                      outcome's monetary_value must be margin,
                                                      not top line)
risk        loss_avoided                              expected loss avoided
capacity    capacity                                  only outcomes with ``redeployed`` true:
                                                      hours saved that nobody used are no benefit
strategic   strategic                                 never dollars: a 0-5 score, see below
=========== ======================================== =========================================

- benefit of an outcome = monetary_value x attribution_share (share clipped to [0, 1]);
  an outcome without monetary_value adds nothing and is counted in ``outcomes_without_value``.
- an outcome's benefit accrues evenly over its period ``[period_start, period_end)``: a window
  counts the outcomes whose period overlaps it, each for the part of its period inside the
  window (a week's $700 is $100 in one of its days); an outcome with no end is a moment at its
  start. Its ``month`` is the month its period starts in, or the window's first month;
  :func:`monthly_benefit` shares its part over the months it spans (the funnel's value).
- yield = sum(benefit) / fully loaded cost of the same workflows and period (null where every
  call of them is unpriced: the cost is unknown, never $0 or a remainder).
- interval: each outcome's benefit b is widened by its evidence level's uncertainty u
  (controlled_experiment 0.10, baseline_comparison 0.25, observational 0.50, anecdote 1.00):
  low = sum(b - u|b|), high = sum(b + u|b|); yield_low/high divide those by the same cost.
  This is a judgement band on how far the evidence can be trusted, not a sampling interval.
- evidence mix: the share of |benefit| at each evidence level.
- strategic score = sum(w_e x clip(observed_value, 0, 5)) / sum(w_e) over strategic outcomes with an
  observed value, with evidence weights w_e anecdote 1, observational 2, baseline_comparison 3,
  controlled_experiment 4; its confidence = sum(w_e) / (sum(w_e) + 4).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from yieldmeter.metrics.cost import known_cost
from yieldmeter.metrics.period import UNASSIGNED, Window, elapsed_seconds, month_of, months_between
from yieldmeter.metrics.tables import Tables
from yieldmeter.schema import EvidenceLevel

FAMILY_OF_DIMENSION: dict[str, str] = {
    "throughput": "workflow",
    "quality": "workflow",
    "cycle_time": "workflow",
    "resilience": "workflow",
    "revenue": "revenue",
    "margin": "revenue",
    "loss_avoided": "risk",
    "capacity": "capacity",
    "strategic": "strategic",
}
MONETARY_FAMILIES: tuple[str, ...] = ("workflow", "revenue", "risk", "capacity")
EVIDENCE_UNCERTAINTY: dict[str, float] = {
    "controlled_experiment": 0.10,
    "baseline_comparison": 0.25,
    "observational": 0.50,
    "anecdote": 1.00,
}
STRATEGIC_WEIGHT: dict[str, float] = {
    "anecdote": 1.0,
    "observational": 2.0,
    "baseline_comparison": 3.0,
    "controlled_experiment": 4.0,
}
LEVELS: tuple[str, ...] = tuple(level.value for level in EvidenceLevel)


def _lookup(col: ir.StringValue, mapping: dict[str, object], default: object) -> ir.Value:
    return ibis.cases(*((col == k, v) for k, v in mapping.items()), else_=default)


def outcome_benefits(t: Tables, window: Window | None = None) -> ir.Table:
    """One row per outcome: workflow, month, family, benefit (USD or null) and whether it counts.

    ``counted`` is false for strategic outcomes, capacity outcomes not redeployed,
    and outcomes without a monetary value; ``excluded_reason`` says which.
    """
    o = t.outcomes
    w = window if window is not None else Window()
    o = w.overlapping(o, "period_start", "period_end")
    o = o.mutate(
        b_in_window=w.share(o, "period_start", "period_end"),
        b_from=w.first_day(o.period_start),
        b_to=w.last_day(o, "period_start", "period_end"),
    )
    wf = t.workflows.select(b_workflow="workflow", wf_dimension="value_dimension")
    j = o.left_join(wf, o.workflow == wf.b_workflow)
    dimension = ibis.coalesce(j.value_dimension, j.wf_dimension)
    family = _lookup(dimension, FAMILY_OF_DIMENSION, "workflow")
    share = ibis.greatest(ibis.least(j.attribution_share.fill_null(1.0), 1.0), 0.0)
    benefit = j.monetary_value * share * j.b_in_window
    level = j.evidence_level.fill_null("observational")
    u = _lookup(level, EVIDENCE_UNCERTAINTY, 0.5).cast("float64")
    reason = ibis.cases(
        (family == "strategic", "strategic outcomes are scored, never counted in dollars"),
        ((family == "capacity") & ~j.redeployed.fill_null(False), "capacity not redeployed"),
        (j.monetary_value.isnull(), "no monetary value"),
        else_=ibis.null("string"),
    )
    return j.select(
        "outcome_id",
        "work_unit_id",
        "evidence_ref",
        "benefit_owner",
        "observed_value",
        "baseline_value",
        workflow=j.workflow.fill_null(UNASSIGNED),
        month=month_of(j.b_from),
        part_start=j.b_from,
        part_end=j.b_to,
        family=family,
        evidence_level=level,
        benefit=ibis.ifelse(reason.isnull(), benefit, ibis.null("float64")),
        uncertainty=u,
        counted=reason.isnull(),
        excluded_reason=reason,
    )


def monthly_benefit(b: ir.Table) -> ir.Table:
    """Per workflow and calendar month: the benefit of :func:`outcome_benefits` rows, each shared
    over the months its part inside the window ``[part_start, part_end)`` spans, by time (a
    moment counts in its month). So a month reads the same whether the report is of that month
    or of a quarter holding it."""
    span = b.aggregate(
        first=b.part_start.min(), last=ibis.greatest(b.part_end.max(), b.part_start.max())
    ).to_pyarrow()
    first, last = span.column("first")[0].as_py(), span.column("last")[0].as_py()
    if first is None:
        return b.group_by("workflow", "month").aggregate(value=b.benefit.sum())
    months = months_between(first, last or first)
    ts = pa.timestamp("us", tz="UTC")
    m = ibis.memtable(
        pa.table(
            {
                "m_label": pa.array([label for label, _, _ in months], pa.string()),
                "m_start": pa.array([start for _, start, _ in months], ts),
                "m_end": pa.array([end for _, _, end in months], ts),
            }
        )
    )
    j = b.cross_join(m)
    j = j.filter(
        ibis.ifelse(
            j.part_end.isnull(),  # a moment: its month
            (j.part_start >= j.m_start) & (j.part_start < j.m_end),
            (j.part_start < j.m_end) & (j.part_end > j.m_start),
        )
    )
    part = elapsed_seconds(ibis.greatest(j.part_start, j.m_start), ibis.least(j.part_end, j.m_end))
    share = ibis.ifelse(j.part_end.isnull(), 1.0, part / elapsed_seconds(j.part_start, j.part_end))
    # null where no outcome of the month is monetary (strategic, capacity not redeployed): no value
    return j.group_by("workflow", month=j.m_label).aggregate(value=(j.benefit * share).sum())


def workflow_costs(lines: ir.Table, window: Window | None = None, *, by_month: bool = False) -> ir.Table:
    """Fully loaded cost (and its parts) per workflow (and month) from cost_lines."""
    if window is not None:
        lines = window.filter(lines, "day")
    keys = {"workflow": lines.workflow.fill_null(UNASSIGNED)}
    if by_month:
        keys["month"] = month_of(lines.day)
    return lines.group_by(**keys).aggregate(
        calls=lines.calls.sum(),
        unpriced_calls=lines.unpriced_calls.sum(),
        tokens=(lines.input_tokens + lines.output_tokens).sum(),
        model_cost=lines.model_cost.sum(),
        allocated_cost=lines.allocated_cost.sum(),
        effort_cost=lines.effort_cost.sum(),
        fully_loaded_cost=lines.fully_loaded_cost.sum(),
    )


def yields(t: Tables, lines: ir.Table, window: Window | None = None, workflow: str | None = None) -> ir.Table:
    """Per workflow and family: benefit, its band, fully loaded cost, yield and the evidence mix.

    yield = sum(benefit) / fully_loaded_cost; rows for every monetary family a workflow has
    outcomes in, plus an ``(all)`` workflow row per family over every workflow's cost.
    """
    b = outcome_benefits(t, window).filter(lambda r: r.family != "strategic")
    raw = workflow_costs(lines, window)
    if workflow is not None:
        b = b.filter(b.workflow == workflow)
        raw = raw.filter(raw.workflow == workflow)
    # a cost whose every call is unpriced is unknown (known_cost), and so is the yield on it
    cost = raw.mutate(fully_loaded_cost=known_cost(raw.fully_loaded_cost, raw.calls, raw.unpriced_calls))
    ben = b.benefit.fill_null(0.0)
    spread = b.uncertainty * ben.abs()
    aggs = dict(
        outcomes=b.count(),
        outcomes_counted=b.counted.sum().cast("int64"),
        outcomes_without_value=(b.excluded_reason == "no monetary value")
        .fill_null(False)
        .sum()
        .cast("int64"),
        capacity_not_redeployed=(b.excluded_reason == "capacity not redeployed")
        .fill_null(False)
        .sum()
        .cast("int64"),
        benefit=ben.sum(),
        benefit_low=(ben - spread).sum(),
        benefit_high=(ben + spread).sum(),
        **{f"benefit_{lv}": ben.abs().sum(where=b.evidence_level == lv).fill_null(0.0) for lv in LEVELS},
    )
    per_wf = b.group_by("workflow", "family").aggregate(**aggs)
    total_cost = raw.aggregate(
        fully_loaded_cost=known_cost(raw.fully_loaded_cost.sum(), raw.calls.sum(), raw.unpriced_calls.sum())
    )
    all_rows = b.group_by("family").aggregate(**aggs).mutate(workflow=ibis.literal("(all)"))
    all_rows = all_rows.cross_join(total_cost)
    per_wf = per_wf.left_join(cost.select("workflow", "fully_loaded_cost"), "workflow")
    cols = ["workflow", "family", *aggs, "fully_loaded_cost"]
    out = ibis.union(per_wf.select(cols), all_rows.select(cols))
    flc = out.fully_loaded_cost
    ok = flc > 0
    abs_total = sum((out[f"benefit_{lv}"] for lv in LEVELS), ibis.literal(0.0))
    return (
        out.mutate(
            **{
                "yield": ibis.ifelse(ok, out.benefit / flc, ibis.null("float64")),
                "yield_low": ibis.ifelse(ok, out.benefit_low / flc, ibis.null("float64")),
                "yield_high": ibis.ifelse(ok, out.benefit_high / flc, ibis.null("float64")),
            },
            **{
                f"share_{lv}": ibis.ifelse(
                    abs_total > 0, out[f"benefit_{lv}"] / abs_total, ibis.null("float64")
                )
                for lv in LEVELS
            },
        )
        .drop(*[f"benefit_{lv}" for lv in LEVELS])
        .order_by(["workflow", "family"])
    )


def strategic(t: Tables, window: Window | None = None, workflow: str | None = None) -> ir.Table:
    """Per workflow: the evidence-weighted strategic score (0-5), its interval, confidence and
    evidence count.

    score m = sum(w_e x v_e) / sum(w_e), v_e = clip(observed, 0, 5);
    confidence = sum(w_e) / (sum(w_e) + 4);
    90% interval = clip(m -/+ 1.645 x se, 0, 5), se = sqrt(sum(w_e^2 (v_e - m)^2)) / sum(w_e)
    (the standard error of a weighted mean); with one item of evidence nothing is known of the
    spread, and the interval is the whole scale, 0-5.
    """
    o = t.outcomes
    if window is not None:
        o = window.overlapping(o, "period_start", "period_end")
    wf = t.workflows.select(s_workflow="workflow", wf_dimension="value_dimension")
    j = o.left_join(wf, o.workflow == wf.s_workflow)
    j = j.filter(
        (ibis.coalesce(j.value_dimension, j.wf_dimension) == "strategic") & j.observed_value.notnull()
    )
    if workflow is not None:
        j = j.filter(j.workflow == workflow)
    w = _lookup(j.evidence_level.fill_null("observational"), STRATEGIC_WEIGHT, 2.0).cast("float64")
    val = ibis.greatest(ibis.least(j.observed_value, 5.0), 0.0)
    g = j.group_by(workflow=j.workflow.fill_null(UNASSIGNED)).aggregate(
        evidence_items=j.count(),
        weight=w.sum(),
        weighted=(w * val).sum(),
        w2=(w * w).sum(),
        w2v=(w * w * val).sum(),
        w2v2=(w * w * val * val).sum(),
    )
    m = g.weighted / g.weight
    # sum(w^2 (v - m)^2) expanded into the sums above (floored at 0 against rounding)
    spread = ibis.greatest(g.w2v2 - 2.0 * m * g.w2v + m * m * g.w2, 0.0)
    half = 1.645 * spread.sqrt() / g.weight
    one = g.evidence_items < 2
    return g.select(
        "workflow",
        "evidence_items",
        strategic_score=m,
        strategic_low=ibis.ifelse(one, 0.0, ibis.greatest(m - half, 0.0)),
        strategic_high=ibis.ifelse(one, 5.0, ibis.least(m + half, 5.0)),
        confidence=g.weight / (g.weight + 4.0),
    ).order_by("workflow")


def strategic_evidence(t: Tables, window: Window | None = None, workflow: str | None = None) -> ir.Table:
    """The evidence list behind the strategic scores: one row per strategic outcome."""
    b = outcome_benefits(t, window)
    b = b.filter(b.family == "strategic")
    if workflow is not None:
        b = b.filter(b.workflow == workflow)
    return b.select(
        "workflow", "outcome_id", "month", "evidence_level", "evidence_ref", "observed_value", "benefit_owner"
    ).order_by(["workflow", "outcome_id"])
