"""Waste: spend that bought nothing, with the spend at stake and example work units.

Categories, per work unit (facts of :mod:`yieldmeter.metrics.units`):

- ``expensive_loop``: nothing accepted or acted on, and calls far out in the workflow's own
  distribution: calls >= max(20, median + 10 x MAD of the calls per unit of the workflow's
  accepted units in the period); at stake: the unit's fully loaded cost. The reference is the
  workflow's accepted units (all its units when none was accepted): runs that worked show what
  a unit of that workflow needs, and failed runs and loops do not widen it.
- ``unused_output``: not accepted, no positive signal at all, not a loop, not still open, and
  the value model gives it less than even odds of having delivered (``p_value`` <
  :data:`UNUSED_MAX_P`, or no score); at stake: the unit's fully loaded cost.
- ``rework``: human effort minutes above the workflow's no-AI ``baseline_minutes``; at stake:
  the excess minutes at the unit's own labour rate,
  effort_cost x (minutes - baseline) / minutes.
- ``accepted_not_resolved``: accepted, then a ``recontact`` within the workflow's
  ``recontact_window_days`` of the first acceptance; at stake: the unit's fully loaded cost.

Loops and unused outputs are never accepted, accepted_not_resolved always is, so those three
are disjoint; rework can overlap them. ``total`` counts a unit once: its fully loaded cost when
it is in one of the three, else its rework excess. ``share_of_spend`` divides by the fully
loaded cost of the workflow's work units in the period.

A stake made only of units whose every call is unpriced is unknown (never $0,
:func:`yieldmeter.metrics.cost.known_cost`), but rework's (costed from effort); so is its
share of spend, and the share of a workflow whose every call is unpriced.
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from yieldmeter.metrics.cost import known_cost
from yieldmeter.metrics.period import UNASSIGNED, Window

#: A loop makes at least this many calls, whatever its workflow's distribution.
LOOP_MIN_CALLS = 20
#: ... and more than the median plus this many median absolute deviations of calls per unit.
LOOP_MAD_FACTOR = 10
EXAMPLES = 3
#: An output with no sign of use is counted unused only when the value model gives it less than
#: even odds of having delivered: in a workflow whose outputs are mostly used without a trace
#: (a support draft sent as it was), silence is not evidence of non-use.
UNUSED_MAX_P = 0.5
CATEGORIES: tuple[str, ...] = ("expensive_loop", "unused_output", "rework", "accepted_not_resolved")


@ibis.udf.agg.builtin(name="min_by")
def _smallest_n(  # type: ignore[empty-body]
    arg: str, key: dt.Struct({"neg_stake": "float64", "work_unit_id": "string"}), n: int
) -> dt.Array(dt.string):
    """DuckDB's ``min_by(arg, key, n)``: the ``arg`` of the ``n`` smallest ``key``, smallest first."""


def loop_thresholds(facts: ir.Table) -> ir.Table:
    """Per workflow (``loop_workflow``): the calls per unit from which an unaccepted unit is a loop.

    ``loop_min_calls = max(LOOP_MIN_CALLS, median + LOOP_MAD_FACTOR x MAD)`` of the calls per
    unit of the workflow's accepted units in ``facts`` (all its units when none was accepted),
    with the median and MAD (median absolute deviation from that median) exact (interpolated
    between the two middle values), so every engine draws the same line. Also ``loop_median_calls``
    and ``loop_mad_calls``, the figures behind it.
    """
    f = facts
    stats = f.group_by(s_workflow=f.workflow).aggregate(
        med_acc=f.calls.median(where=f.accepted), med_all=f.calls.median()
    )
    j = f.join(stats, f.workflow == stats.s_workflow)
    med = ibis.coalesce(j.med_acc, j.med_all)
    j = j.mutate(dev=(j.calls.cast("float64") - med).abs(), med=med)
    spread = j.group_by(loop_workflow=j.workflow).aggregate(
        loop_median_calls=j.med.max(),
        mad_acc=j.dev.median(where=j.accepted),
        mad_all=j.dev.median(),
    )
    # the median came from the accepted units exactly when some exist, and so do the deviations
    mad = ibis.coalesce(spread.mad_acc, spread.mad_all)
    return spread.select(
        "loop_workflow",
        "loop_median_calls",
        loop_mad_calls=mad,
        loop_min_calls=ibis.greatest(
            ibis.literal(float(LOOP_MIN_CALLS)), spread.loop_median_calls + LOOP_MAD_FACTOR * mad
        ),
    )


def waste_units(facts: ir.Table, window: Window | None = None) -> ir.Table:
    """Per work unit: the four flags and the spend at stake in each."""
    f = window.filter(facts, "started_at") if window is not None else facts
    f = f.mutate(workflow=f.workflow.fill_null(UNASSIGNED))
    lt = loop_thresholds(f)
    f = f.join(lt, f.workflow == lt.loop_workflow).drop("loop_workflow")
    loop = ~f.accepted & ~f.acted & (f.calls >= f.loop_min_calls)
    unused = (
        ~f.accepted
        & (f.n_positive == 0)
        & ~loop
        & (f.status.fill_null("completed") != "open")
        & (f.p_value.isnull() | (f.p_value < UNUSED_MAX_P))
    )
    excess = f.effort_minutes - f.baseline_minutes
    rework = f.baseline_minutes.notnull() & (excess > 0)
    rework_stake = ibis.ifelse(rework, f.effort_cost * excess / f.effort_minutes, 0.0)
    unresolved = f.accepted & (f.n_recontact_after_accept > 0)
    whole = loop | unused | unresolved
    return f.select(
        "work_unit_id",
        "workflow",
        "fully_loaded_cost",
        "calls",
        "unpriced_calls",
        expensive_loop=loop,
        unused_output=unused,
        rework=rework,
        accepted_not_resolved=unresolved,
        stake_expensive_loop=ibis.ifelse(loop, f.fully_loaded_cost, 0.0),
        stake_unused_output=ibis.ifelse(unused, f.fully_loaded_cost, 0.0),
        stake_rework=rework_stake,
        stake_accepted_not_resolved=ibis.ifelse(unresolved, f.fully_loaded_cost, 0.0),
        stake_total=ibis.ifelse(whole, f.fully_loaded_cost, rework_stake),
        whole_unit=whole,  # at stake in total: the unit's whole cost (else its rework, effort)
        any_waste=whole | rework,
    )


def waste(
    facts: ir.Table,
    window: Window | None = None,
    workflow: str | None = None,
    *,
    keep: ir.Table | None = None,
) -> ir.Table:
    """Per workflow and category (plus ``total``): units, spend at stake, share of spend, examples.

    ``keep`` (a table with a ``work_unit_id`` column) reports only those units, e.g. one team's;
    loop thresholds are still drawn from every unit of the workflow in ``facts``, and
    ``share_of_spend`` divides by the kept units' cost.
    """
    w = waste_units(facts, window)
    if workflow is not None:
        w = w.filter(w.workflow == workflow)
    if keep is not None:
        w = w.filter(w.work_unit_id.isin(keep.work_unit_id))
    cats = (*CATEGORIES, "total")
    flags = {**{c: w[c] for c in CATEGORIES}, "total": w.any_waste}
    stakes = {**{c: w[f"stake_{c}"] for c in CATEGORIES}, "total": w.stake_total}
    # the calls behind a stake that is the unit's whole cost (rework's is effort: known), so a
    # stake made only of units whose every call is unpriced is unknown (known_cost), never $0
    z = ibis.literal(0, "int64")
    whole = {
        **{c: ibis.literal(True) for c in CATEGORIES},
        "rework": ibis.literal(False),
        "total": w.whole_unit,
    }
    # one row per unit and category it is in: each unit's categories unnested from one array, so
    # the units (and the loop thresholds they were judged by) are computed once; a union of one
    # filter per category has Ibis inline them into every branch
    entry = ibis.array(
        [
            ibis.struct(
                {
                    "category": c,
                    "flagged": flags[c],
                    "stake": stakes[c],
                    "calls": ibis.ifelse(whole[c], w.calls, z),
                    "unpriced_calls": ibis.ifelse(whole[c], w.unpriced_calls, z),
                }
            )
            for c in cats
        ]
    ).unnest()
    rows = w.select("workflow", "work_unit_id", entry=entry)
    rows = rows.filter(rows.entry.flagged)
    flagged = rows.select(
        "workflow",
        "work_unit_id",
        category=rows.entry.category,
        stake=rows.entry.stake,
        calls=rows.entry.calls,
        unpriced_calls=rows.entry.unpriced_calls,
    )
    # the examples: the largest stakes first, ties broken by id so they are stable; a top-n aggregate,
    # not a ranking window (which sorts every flagged unit: 1 s of the 1.3 s on 1M units)
    order_key = ibis.struct(
        {"neg_stake": -flagged.stake.fill_null(float("-inf")), "work_unit_id": flagged.work_unit_id}
    )
    per_category = flagged.group_by(["workflow", "category"]).aggregate(
        work_units=flagged.count(),
        spend_at_stake=known_cost(flagged.stake.sum(), flagged.calls.sum(), flagged.unpriced_calls.sum()),
        examples=_smallest_n(flagged.work_unit_id, order_key, EXAMPLES).join(", "),
    )
    spend = w.group_by("workflow").aggregate(
        unit_spend=known_cost(w.fully_loaded_cost.sum(), w.calls.sum(), w.unpriced_calls.sum())
    )
    out = per_category.left_join(spend, "workflow")
    out = out.select(
        "workflow",
        "category",
        "work_units",
        "spend_at_stake",
        share_of_spend=ibis.ifelse(
            out.unit_spend > 0, out.spend_at_stake / out.unit_spend, ibis.null("float64")
        ),
        examples=out.examples,
    )
    order = ibis.cases(*((out.category == c, i) for i, c in enumerate(cats)), else_=99)
    return out.order_by([out.workflow, order])
