"""Attribution coverage: the share of AI spend connected to measured outcomes.

Spend is fully loaded cost (cost_lines) in the period. A dollar of spend is
*covered* when the workflow it served has all three of:

- a **baseline**: the catalog declares ``baseline_cost`` or ``baseline_minutes``, or an outcome
  of the workflow in the period has a ``baseline_value``;
- an **owner**: the catalog declares an ``owner``, or an outcome names a ``benefit_owner``;
- **evidence of change**: an outcome of the workflow in the period, at evidence level
  observational or stronger (an anecdote is not evidence of change), with a monetary value or
  an observed value that differs from its baseline.

An outcome is in the period when its own period ``[period_start, period_end)`` overlaps it (an
outcome with no end is a moment at its start), as in the yields.

Spend with no workflow has none of the three. Spend whose every call is unpriced is unknown
(null, as in :func:`yieldmeter.metrics.spend.spend`), never $0, and so are its shares.

    coverage       = covered spend / total spend
    share_<part>   = spend whose workflow has <part> / total spend   (each >= coverage)
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from yieldmeter.metrics.cost import known_cost
from yieldmeter.metrics.period import UNASSIGNED, Window
from yieldmeter.metrics.tables import Tables


def workflow_parts(t: Tables, window: Window | None = None) -> ir.Table:
    """Per catalogued or outcome-bearing workflow: has_baseline, has_owner, has_evidence."""
    o = t.outcomes
    if window is not None:
        o = window.overlapping(o, "period_start", "period_end")
    changed = (o.evidence_level.fill_null("observational") != "anecdote") & (
        o.monetary_value.notnull()
        | (o.observed_value.notnull() & o.baseline_value.notnull() & (o.observed_value != o.baseline_value))
    )
    og = (
        o.filter(o.workflow.notnull())
        .group_by(p_workflow=o.workflow)
        .aggregate(
            o_baseline=o.baseline_value.notnull().any(),
            o_owner=o.benefit_owner.notnull().any(),
            o_evidence=changed.any(),
        )
    )
    wf = t.workflows.select(
        c_workflow="workflow",
        c_baseline=t.workflows.baseline_cost.notnull() | t.workflows.baseline_minutes.notnull(),
        c_owner=t.workflows.owner.notnull(),
    )
    j = wf.outer_join(og, wf.c_workflow == og.p_workflow)
    return j.select(
        workflow=ibis.coalesce(j.c_workflow, j.p_workflow),
        has_baseline=j.c_baseline.fill_null(False) | j.o_baseline.fill_null(False),
        has_owner=j.c_owner.fill_null(False) | j.o_owner.fill_null(False),
        has_evidence=j.o_evidence.fill_null(False),
    )


def _missing(
    has_baseline: ir.BooleanValue, has_owner: ir.BooleanValue, has_evidence: ir.BooleanValue
) -> ir.Value:
    parts = [
        ibis.ifelse(has_baseline, "", "baseline "),
        ibis.ifelse(has_owner, "", "owner "),
        ibis.ifelse(has_evidence, "", "evidence"),
    ]
    s = parts[0].concat(parts[1], parts[2]).strip()
    return ibis.ifelse(s == "", ibis.null("string"), s.replace(" ", ", "))


def covered_spend(t: Tables, lines: ir.Table, window: Window | None = None) -> ir.Table:
    """Spend per workflow, team and app with the three parts and ``covered``."""
    if window is not None:
        lines = window.filter(lines, "day")
    s = lines.group_by(workflow=lines.workflow, team=lines.team, app=lines.app).aggregate(
        spend=lines.fully_loaded_cost.sum(),
        calls=lines.calls.sum(),
        unpriced_calls=lines.unpriced_calls.sum(),
    )
    parts = workflow_parts(t, window).rename(part_workflow="workflow")
    j = s.left_join(parts, s.workflow == parts.part_workflow)
    hb, ho, he = (
        j.has_baseline.fill_null(False),
        j.has_owner.fill_null(False),
        j.has_evidence.fill_null(False),
    )
    return j.select(
        workflow=j.workflow.fill_null(UNASSIGNED),
        team=j.team,
        app=j.app,
        spend=j.spend,
        calls=j.calls,
        unpriced_calls=j.unpriced_calls,
        has_baseline=hb,
        has_owner=ho,
        has_evidence=he,
        covered=hb & ho & he,
        missing=_missing(hb, ho, he),
    )


def coverage(
    t: Tables, lines: ir.Table, window: Window | None = None, workflow: str | None = None
) -> ir.Table:
    """Per workflow plus an ``(all)`` row: spend, covered spend, the three part shares and coverage."""
    cs = covered_spend(t, lines, window)
    if workflow is not None:
        cs = cs.filter(cs.workflow == workflow)

    def agg(g: ir.Table) -> dict[str, ir.Value]:
        def part(where: ir.BooleanValue | None = None) -> ir.Value:
            # unknown where every call of that spend is unpriced (known_cost), never $0
            return known_cost(
                g.spend.sum(where=where).fill_null(0.0),
                g.calls.sum(where=where),
                g.unpriced_calls.sum(where=where),
            )

        return dict(
            spend=part(),
            spend_with_baseline=part(g.has_baseline),
            spend_with_owner=part(g.has_owner),
            spend_with_evidence=part(g.has_evidence),
            covered_spend=part(g.covered),
        )

    per = cs.group_by("workflow").aggregate(**agg(cs), missing=cs.missing.max())
    total = cs.aggregate(**agg(cs)).mutate(workflow=ibis.literal("(all)"), missing=ibis.null("string"))
    out = ibis.union(per, total.select(per.columns))

    def share(col: ir.NumericValue) -> ir.FloatingValue:
        return ibis.ifelse(out.spend > 0, col / out.spend, ibis.null("float64"))

    return out.mutate(
        share_with_baseline=share(out.spend_with_baseline),
        share_with_owner=share(out.spend_with_owner),
        share_with_evidence=share(out.spend_with_evidence),
        coverage=share(out.covered_spend),
        uncovered_spend=out.spend - out.covered_spend,
    ).order_by([(out.workflow == "(all)").desc(), ibis.desc("uncovered_spend"), "workflow"])


def uncovered_spend(t: Tables, lines: ir.Table, window: Window | None = None) -> ir.Table:
    """:func:`covered_spend`'s rows that are not covered and have spend: known (> 0), or unknown
    (null: every call unpriced)."""
    cs = covered_spend(t, lines, window)
    cs = cs.mutate(spend=known_cost(cs.spend, cs.calls, cs.unpriced_calls))
    return cs.filter(~cs.covered & ((cs.spend > 0) | cs.spend.isnull()))


def largest_uncovered(t: Tables, lines: ir.Table, window: Window | None = None, limit: int = 10) -> ir.Table:
    """The largest uncovered spend by workflow, team and app, with what each lacks; a spend whose
    every call is unpriced is unknown (null, listed after the known ones), never $0."""
    cs = uncovered_spend(t, lines, window)
    return (
        cs.select("workflow", "team", "app", "spend", "missing")
        .order_by([cs.spend.desc(nulls_first=False), "workflow", "team", "app"])
        .limit(limit)
    )
