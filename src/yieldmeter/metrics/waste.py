"""Waste: spend that bought nothing, with the spend at stake and example work units.

Categories, per work unit (facts of :mod:`yieldmeter.metrics.units`):

- ``expensive_loop``: not accepted, and calls >= 10 or tokens >= 4 x the workflow's mean tokens
  per unit; at stake: the unit's fully loaded cost.
- ``unused_output``: not accepted, no positive signal at all, not a loop, not still open;
  at stake: the unit's fully loaded cost.
- ``rework``: human effort minutes above the workflow's no-AI ``baseline_minutes``; at stake:
  the excess minutes at the unit's own labour rate,
  effort_cost x (minutes - baseline) / minutes.
- ``accepted_not_resolved``: accepted, then a ``recontact`` within the workflow's
  ``recontact_window_days`` of the first acceptance; at stake: the unit's fully loaded cost.

Loops and unused outputs are never accepted, accepted_not_resolved always is, so those three
are disjoint; rework can overlap them. ``total`` counts a unit once: its fully loaded cost when
it is in one of the three, else its rework excess. ``share_of_spend`` divides by the fully
loaded cost of the workflow's work units in the period.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from yieldmeter.metrics.period import UNASSIGNED, Window

LOOP_CALLS = 10
LOOP_TOKEN_FACTOR = 4.0
EXAMPLES = 3
CATEGORIES: tuple[str, ...] = ("expensive_loop", "unused_output", "rework", "accepted_not_resolved")


def waste_units(facts: ir.Table, window: Window | None = None) -> ir.Table:
    """Per work unit: the four flags and the spend at stake in each."""
    f = window.filter(facts, "started_at") if window is not None else facts
    f = f.mutate(workflow=f.workflow.fill_null(UNASSIGNED))
    means = f.group_by(mean_workflow=f.workflow).aggregate(mean_tokens=f.tokens.mean())
    f = f.join(means, f.workflow == means.mean_workflow)
    mean_tokens = f.mean_tokens
    loop = ~f.accepted & (
        (f.calls >= LOOP_CALLS) | (f.tokens.cast("float64") >= LOOP_TOKEN_FACTOR * mean_tokens)
    )
    unused = ~f.accepted & (f.n_positive == 0) & ~loop & (f.status.fill_null("completed") != "open")
    excess = f.effort_minutes - f.baseline_minutes
    rework = f.baseline_minutes.notnull() & (excess > 0)
    rework_stake = ibis.ifelse(rework, f.effort_cost * excess / f.effort_minutes, 0.0)
    unresolved = f.accepted & (f.n_recontact_after_accept > 0)
    whole = loop | unused | unresolved
    return f.select(
        "work_unit_id",
        "workflow",
        "fully_loaded_cost",
        expensive_loop=loop,
        unused_output=unused,
        rework=rework,
        accepted_not_resolved=unresolved,
        stake_expensive_loop=ibis.ifelse(loop, f.fully_loaded_cost, 0.0),
        stake_unused_output=ibis.ifelse(unused, f.fully_loaded_cost, 0.0),
        stake_rework=rework_stake,
        stake_accepted_not_resolved=ibis.ifelse(unresolved, f.fully_loaded_cost, 0.0),
        stake_total=ibis.ifelse(whole, f.fully_loaded_cost, rework_stake),
        any_waste=whole | rework,
    )


def waste(facts: ir.Table, window: Window | None = None, workflow: str | None = None) -> ir.Table:
    """Per workflow and category (plus ``total``): units, spend at stake, share of spend, examples."""
    w = waste_units(facts, window)
    if workflow is not None:
        w = w.filter(w.workflow == workflow)
    spend = w.group_by("workflow").aggregate(unit_spend=w.fully_loaded_cost.sum())
    parts = []
    for cat, flag, stake in [
        *((c, w[c], w[f"stake_{c}"]) for c in CATEGORIES),
        ("total", w.any_waste, w.stake_total),
    ]:
        flagged = w.filter(flag).mutate(stake=stake)
        # the largest stakes first, ties broken by id so the examples are stable
        rank = ibis.row_number().over(
            group_by=flagged.workflow, order_by=[flagged.stake.desc(), flagged.work_unit_id]
        )
        flagged = flagged.mutate(rank=rank)
        parts.append(
            flagged.group_by("workflow").aggregate(
                category=ibis.literal(cat),
                work_units=flagged.count(),
                spend_at_stake=flagged.stake.sum(),
                examples=flagged.work_unit_id.group_concat(
                    ", ", where=flagged.rank < EXAMPLES, order_by=flagged.rank
                ),
            )
        )
    out = ibis.union(*parts).left_join(spend, "workflow")
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
    order = ibis.cases(*((out.category == c, i) for i, c in enumerate((*CATEGORIES, "total"))), else_=99)
    return out.order_by([out.workflow, order])
