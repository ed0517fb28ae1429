"""Spend events: every cost with the time it happened, for budgets, alerts and forecasts.

One row per priced call, per allocated cost item share and per effort entry::

    ts, team, workflow, initiative, user_id, app, environment, provider, model, work_unit_id,
    calls, tokens, unpriced_calls, model_cost, allocated_cost, effort_cost, fully_loaded_cost,
    allocation, origin_id, origin_amount

- model cost carries the call's own timestamp, so a budget in a time zone cuts
  at the right instant;
- allocated cost (platform, GPUs, licences: :func:`yieldmeter.metrics.spend.allocation`)
  and effort (:func:`yieldmeter.metrics.spend.effort_lines`) exist only per UTC
  day, and are placed at 00:00 UTC of their day;
- ``initiative`` is the workflow's initiative: the ``initiatives:`` list of
  ``yieldmeter.yaml`` first, else the workflow's own ``initiative`` key;
- ``allocation`` says how a cost item's share reached its team, for chargeback:
  ``direct`` when the item names its team (and on every call and effort row),
  ``pro_rata`` when the item names no team and was spread over the calls of its
  scope in proportion to their model cost (an item with no scope, or one that
  names only a workflow; :func:`yieldmeter.metrics.spend.allocation`), so its
  amount reached each team by that team's model cost;
  ``origin_id``/``origin_amount`` are the cost item's id and whole amount (null
  on calls and effort);
- fully loaded cost = model cost + allocated cost + effort cost, exactly as in
  :func:`yieldmeter.metrics.spend.cost_lines` (provider token bills,
  :data:`~yieldmeter.metrics.spend.RECONCILIATION_CATEGORIES`, are never added).

Budgets scope by these columns: team, workflow, user (``user_id``), model,
provider, initiative, or org (everything).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from yieldmeter.config import Config
from yieldmeter.errors import InputError
from yieldmeter.metrics.cost import priced_calls
from yieldmeter.metrics.spend import allocation, call_lines, effort_lines
from yieldmeter.metrics.tables import Tables

SCOPE_COLUMNS: dict[str, str | None] = {
    "team": "team",
    "workflow": "workflow",
    "user": "user_id",
    "model": "model",
    "provider": "provider",
    "initiative": "initiative",
    "org": None,
}
BASES = ("model_cost", "fully_loaded_cost")
DIMS = ("team", "workflow", "user_id", "app", "environment", "provider", "model")


def initiative_map(t: Tables, config: Config) -> ir.Table:
    """workflow -> initiative: the ``initiatives:`` list wins over a workflow's own key."""
    declared = {w: i.initiative for i in config.initiatives for w in i.workflows}
    listed = ibis.memtable(
        {"im_workflow": list(declared), "im_initiative": list(declared.values())},
        schema={"im_workflow": "string", "im_initiative": "string"},
    )
    wf = t.workflows.select(wf_workflow=t.workflows.workflow, wf_initiative=t.workflows.initiative)
    j = wf.outer_join(listed, wf.wf_workflow == listed.im_workflow)
    return j.select(
        map_workflow=ibis.coalesce(j.im_workflow, j.wf_workflow),
        map_initiative=ibis.coalesce(j.im_initiative, j.wf_initiative),
    ).filter(lambda x: x.map_initiative.notnull())


def spend_events(t: Tables, config: Config) -> ir.Table:
    """The spend events of the workspace (see the module docstring)."""
    pc = priced_calls(t)
    i64, f64 = ibis.literal(0, "int64"), ibis.literal(0.0)
    calls = pc.select(
        ts=pc.ts,
        **{d: pc[d] for d in DIMS},
        work_unit_id=pc.work_unit_id,
        calls=pc.request_count,
        tokens=pc.input_tokens + pc.output_tokens,
        unpriced_calls=ibis.ifelse(pc.priced, 0, pc.request_count).cast("int64"),
        model_cost=pc.model_cost.fill_null(0.0),
        allocated_cost=f64,
        effort_cost=f64,
        allocation=ibis.literal("direct"),
        origin_id=ibis.null("string"),
        origin_amount=ibis.null("float64"),
    )
    alloc = allocation(t, call_lines(t))
    items = t.cost_items.select(
        o_item=t.cost_items.item_id, o_team=t.cost_items.team, o_amount=t.cost_items.amount
    )
    alloc = alloc.left_join(items, alloc.item_id == items.o_item)
    alloc_ev = alloc.select(
        ts=alloc.day.cast(pc.ts.type()),
        **{d: alloc[d] for d in DIMS},
        work_unit_id=ibis.null("string"),
        calls=i64,
        tokens=i64,
        unpriced_calls=i64,
        model_cost=f64,
        allocated_cost=alloc.allocated_cost,
        effort_cost=f64,
        # spread over calls (a cell with a model) by an item that names no team: pro rata to teams;
        # an item placed whole on its scope (no priced calls there) has no model and is not spread
        allocation=ibis.ifelse(alloc.o_team.isnull() & alloc.model.notnull(), "pro_rata", "direct"),
        origin_id=alloc.item_id,
        origin_amount=alloc.o_amount.cast("float64"),
    )
    eff = effort_lines(t, config.labour_rates)
    eff_ev = eff.select(
        ts=eff.day.cast(pc.ts.type()),
        **{d: eff[d] for d in DIMS},
        work_unit_id=ibis.null("string"),
        calls=i64,
        tokens=i64,
        unpriced_calls=i64,
        model_cost=f64,
        allocated_cost=f64,
        effort_cost=eff.effort_cost,
        allocation=ibis.literal("direct"),
        origin_id=ibis.null("string"),
        origin_amount=ibis.null("float64"),
    )
    parts = [p.select(calls.columns) for p in (calls, alloc_ev, eff_ev)]
    ev = ibis.union(*parts)
    im = initiative_map(t, config)
    ev = ev.left_join(im, ev.workflow == im.map_workflow)
    ev = ev.select(*[ev[c] for c in calls.columns], initiative=ev.map_initiative)
    return ev.mutate(fully_loaded_cost=ev.model_cost + ev.allocated_cost + ev.effort_cost)


def scope_filter(ev: ir.Table, scope_kind: str, scope: str) -> ir.Table:
    """Events of one budget scope; a ValueError names the scope kinds there are."""
    if scope_kind not in SCOPE_COLUMNS:
        raise InputError(
            f"scope kind {scope_kind!r} is not one of {', '.join(SCOPE_COLUMNS)}", field="scope_kind"
        )
    col = SCOPE_COLUMNS[scope_kind]
    return ev if col is None else ev.filter(ev[col] == scope)
