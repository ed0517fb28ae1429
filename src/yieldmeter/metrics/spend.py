"""Fully loaded cost, additive over every dimension of the data model.

    fully loaded cost = model cost
                      + allocated cost items (platform, GPUs, licences)
                      + human effort (minutes / 60 x labour rate)

:func:`cost_lines` gives the three parts at one grain — day x team x workflow
x user_id x app x environment x provider x model x service_tier — so any report is a
``group_by`` and a ``sum`` of it, and the parts add up across any partition.

Allocation of a cost item (rule recorded in ``allocation_rule``):

* ``direct``: the item names a team and/or workflow; the whole amount stays in
  that scope. At the grain it is placed on the scope's calls of the item's
  period in proportion to their model cost, or on the scope itself (the first
  day of the period) when it had no priced calls then.
* ``pro_rata``: the item names no scope; the amount is shared by every call of
  the item's period in proportion to its model cost.

A spend row whose every call is unpriced has a null model cost and a null fully
loaded cost (its ``unpriced_calls`` say how many): an unknown cost is never $0.

Labour rate for effort: the person's rate, else the workflow's, else the
team's, else the default (``labour_rates`` in ``yieldmeter.yaml``).

A coarser grain (any subset of :data:`GRAIN` holding :data:`SCOPE`, the keys a
cost item is scoped by) gives the same sums over its own dimensions: a cell's
pro rata share is its model cost times the items' amount per dollar, so the
shares of the fine cells inside a coarse cell add up to the coarse cell's share.
The value reports read :data:`VALUE_GRAIN`: about 15,000 cells on the 10M-call
benchmark, where the full grain has 1.5M (one per user, model and day).

Cost items of the categories in :data:`RECONCILIATION_CATEGORIES` are a
provider's bill for the very tokens the calls already price; they are kept for
reconciliation and never added to fully loaded cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import ibis
import ibis.expr.types as ir

from yieldmeter.config import LabourRates
from yieldmeter.errors import InputError
from yieldmeter.metrics.cost import known_cost, priced_calls
from yieldmeter.metrics.period import utc_day
from yieldmeter.metrics.tables import Tables

GRAIN = ("day", "team", "workflow", "user_id", "app", "environment", "provider", "model", "service_tier")
#: the keys a cost item's scope is defined on: every grain holds them
SCOPE = ("day", "team", "workflow")
#: what the value reports group cost by (coverage: workflow, team, app; funnel and uplift: day)
VALUE_GRAIN = ("day", "team", "workflow", "app")
_GRAIN_TYPES = {g: "string" for g in GRAIN if g != "day"}
MEASURES = (
    "calls",
    "input_tokens",
    "output_tokens",
    "model_cost",
    "unpriced_calls",
    "allocated_cost",
    "effort_cost",
)
RECONCILIATION_CATEGORIES = ("ai_tokens",)
#: Dimensions a spend report can group by: the grain plus coarser time buckets.
DIMENSIONS = (*GRAIN, "week", "month")


@dataclass(frozen=True)
class Filters:
    """Restrict a report to a period [start, end) and to some teams, workflows, models."""

    start: datetime | None = None
    end: datetime | None = None
    teams: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    def apply(self, lines: ir.Table, time_col: str = "day") -> ir.Table:
        if self.start is not None:
            lines = lines.filter(lines[time_col] >= ibis.literal(self.start))
        if self.end is not None:
            lines = lines.filter(lines[time_col] < ibis.literal(self.end))
        if self.teams and "team" in lines.columns:
            lines = lines.filter(lines.team.isin(self.teams))
        if self.workflows and "workflow" in lines.columns:
            lines = lines.filter(lines.workflow.isin(self.workflows))
        if self.models and "model" in lines.columns:
            lines = lines.filter(lines.model.isin(self.models))
        return lines


def _typed_nulls(**types: str) -> dict[str, ir.Value]:
    return {name: ibis.null(t) for name, t in types.items()}


def _check_grain(grain: Sequence[str]) -> tuple[str, ...]:
    grain = tuple(grain)
    if not set(SCOPE) <= set(grain) or not set(grain) <= set(GRAIN):
        raise ValueError(f"a cost grain holds {', '.join(SCOPE)} and only dimensions of {', '.join(GRAIN)}")
    return grain


def call_lines(t: Tables, grain: Sequence[str] = GRAIN) -> ir.Table:
    """Model cost and volume per grain cell."""
    grain = _check_grain(grain)
    pc = priced_calls(t)
    keys = {g: (utc_day(pc.ts) if g == "day" else pc[g]) for g in grain}
    return pc.group_by(**keys).aggregate(
        calls=pc.request_count.sum(),
        input_tokens=pc.input_tokens.sum(),
        output_tokens=pc.output_tokens.sum(),
        model_cost=pc.model_cost.sum().fill_null(0.0),
        unpriced_calls=ibis.ifelse(pc.priced, 0, pc.request_count).sum(),
    )


def allocation(t: Tables, calls: ir.Table | None = None, grain: Sequence[str] = GRAIN) -> ir.Table:
    """Each cost item's share per grain cell, with the rule used (one row per item x cell).

    ``calls`` is :func:`call_lines` at the same ``grain``.
    """
    grain = _check_grain(grain)
    calls = calls if calls is not None else call_lines(t, grain)
    items = t.cost_items.filter(~t.cost_items.category.fill_null("").isin(RECONCILIATION_CATEGORIES))
    scoped = items.join(
        calls,
        [
            calls.day >= items.period_start.truncate("D"),
            calls.day < items.period_end,
            items.team.isnull() | (items.team == calls.team),
            items.workflow.isnull() | (items.workflow == calls.workflow),
            calls.model_cost > 0,
        ],
    ).select(
        item_id=items.item_id,
        amount=items.amount,
        cell_cost=calls.model_cost,
        scoped=items.team.notnull() | items.workflow.notnull(),
        **{g: calls[g] for g in grain},
    )
    total = scoped.cell_cost.sum().over(group_by=scoped.item_id)
    pro_rata = scoped.select(
        item_id=scoped.item_id,
        **{g: scoped[g] for g in grain},
        allocated_cost=scoped.amount * scoped.cell_cost / total,
        # an item that names its team or workflow stays there (spread over that scope's cells
        # only to place it at the grain): direct; one that names nobody is shared: pro rata
        allocation_rule=ibis.ifelse(scoped.scoped, "direct", "pro_rata"),
    )
    allocated_ids = pro_rata.select("item_id").distinct()
    unallocated = items.filter(~items.item_id.isin(allocated_ids.item_id))
    direct_keys = {
        "day": unallocated.period_start.truncate("D"),
        "team": unallocated.team,
        "workflow": unallocated.workflow,
    }
    direct = unallocated.select(
        item_id=unallocated.item_id,
        **{g: direct_keys[g] if g in direct_keys else ibis.null(_GRAIN_TYPES[g]) for g in grain},
        allocated_cost=unallocated.amount,
        allocation_rule=ibis.literal("direct"),
    )
    return pro_rata.union(direct)


def effort_lines(t: Tables, rates: LabourRates, grain: Sequence[str] = GRAIN) -> ir.Table:
    """Human effort costed at the labour rate, on its work unit's team, workflow and user."""
    grain = _check_grain(grain)
    e, wu, wf = t.effort, t.work_units, t.workflows
    j = e.left_join(wu, e.work_unit_id == wu.work_unit_id).left_join(wf, wu.workflow == wf.workflow)
    team_rates = ibis.memtable(
        {"rate_team": list(rates.teams), "team_rate": [float(v) for v in rates.teams.values()]},
        schema={"rate_team": "string", "team_rate": "float64"},
    )
    people_rates = ibis.memtable(
        {"rate_person": list(rates.people), "person_rate": [float(v) for v in rates.people.values()]},
        schema={"rate_person": "string", "person_rate": "float64"},
    )
    j = j.select(
        day=utc_day(j.ts),
        team=j.team,
        workflow=j.workflow,
        user_id=j.user_id,
        person=j.person,
        minutes=j.minutes,
        wf_rate=j.labour_rate,
    )
    j = j.left_join(team_rates, j.team == team_rates.rate_team)
    j = j.left_join(people_rates, j.person == people_rates.rate_person)
    rate = ibis.coalesce(j.person_rate, j.wf_rate, j.team_rate, ibis.literal(float(rates.default)))
    keys = [g for g in ("day", "team", "workflow", "user_id") if g in grain]
    return (
        j.group_by(keys)
        .aggregate(effort_cost=(j.minutes / 60.0 * rate).sum())
        .mutate(**_typed_nulls(**{g: _GRAIN_TYPES[g] for g in grain if g not in keys}))
    )


def cost_lines(t: Tables, rates: LabourRates, grain: Sequence[str] = GRAIN) -> ir.Table:
    """The three parts of fully loaded cost at the grain, plus ``fully_loaded_cost``."""
    grain = _check_grain(grain)
    calls = call_lines(t, grain)
    zero_i = ibis.literal(0, "int64")
    zero_f = ibis.literal(0.0)
    parts = [
        calls.mutate(allocated_cost=zero_f, effort_cost=zero_f),
    ]
    alloc = allocation(t, calls, grain)
    alloc_g = alloc.group_by(list(grain)).aggregate(allocated_cost=alloc.allocated_cost.sum())
    effort = effort_lines(t, rates, grain)
    for extra, cost_col in ((alloc_g, "allocated_cost"), (effort, "effort_cost")):
        other = "effort_cost" if cost_col == "allocated_cost" else "allocated_cost"
        parts.append(
            extra.select(
                *grain,
                calls=zero_i,
                input_tokens=zero_i,
                output_tokens=zero_i,
                model_cost=zero_f,
                unpriced_calls=zero_i,
                **{cost_col: extra[cost_col], other: zero_f},
            )
        )
    cols = [*grain, *MEASURES]
    lines = ibis.union(*[p.select(cols) for p in parts])
    return lines.mutate(fully_loaded_cost=lines.model_cost + lines.allocated_cost + lines.effort_cost)


def spend(lines: ir.Table, by: Sequence[str], filters: Filters | None = None) -> ir.Table:
    """Spend grouped by ``by`` (any of :data:`DIMENSIONS`; one named twice counts once), largest
    fully loaded cost first."""
    by = list(dict.fromkeys(by))
    unknown = [b for b in by if b not in DIMENSIONS]
    if unknown:
        raise InputError(
            f"cannot group spend by {', '.join(unknown)}; choose from {', '.join(DIMENSIONS)}", field="by"
        )
    if filters is not None:
        lines = filters.apply(lines)
    lines = lines.mutate(week=lines.day.truncate("W"), month=lines.day.truncate("M"))
    agg = {m: lines[m].sum() for m in MEASURES}
    agg["fully_loaded_cost"] = lines.fully_loaded_cost.sum()
    if by:
        out = lines.group_by(list(by)).aggregate(**agg)
    else:  # one total row, also over no lines at all: nothing spent is 0, not null
        out = lines.aggregate(**agg)
        out = out.mutate(**{m: out[m].fill_null(0) for m in agg})
    # a group whose every call is unpriced has no known model cost: null, never $0
    out = out.mutate(
        model_cost=known_cost(out.model_cost, out.calls, out.unpriced_calls),
        fully_loaded_cost=known_cost(out.fully_loaded_cost, out.calls, out.unpriced_calls),
    )
    if by:
        return out.order_by([out.fully_loaded_cost.desc(nulls_first=False), *by])
    return out
