"""The conversion chain per workflow and month, with the cost at every stage.

    calls -> work units -> accepted outputs -> decisions/actions -> successful outcomes -> value

Stages (see :mod:`yieldmeter.metrics.units` for the per-unit definitions):

- ``calls``: requests of the workflow's calls in the month (cost_lines);
- ``work_units``: units of the workflow started in the month;
- ``accepted_outputs``: of those, units with an acceptance signal;
- ``actions``: accepted units followed by a decision/action signal or a linked outcome
  (null when the workflow records no decision or action at all: then success is judged
  on acceptance and ``success_basis`` says so);
- ``successful_outcomes``: units that are ``successful`` (quality threshold, risk class and
  latency SLO met, and acted where actions are recorded);
- ``value``: measured benefit of the workflow's outcomes in the month (see
  :mod:`yieldmeter.metrics.yields`: monetary families, attribution share applied); null
  when the workflow has no monetary outcome in the month (none recorded, or strategic ones,
  never in dollars): no value measured, not a value of $0;
  ``expected_value``: sum of the units' p_value x unit_value (the value each score rests on:
  :mod:`yieldmeter.scoring.unit_value`).

Rates: ``work_units_per_call`` = work_units / calls, ``acceptance_rate`` = accepted / work_units,
``action_rate`` = actions / accepted, ``success_rate`` = successful / (actions, else accepted),
``value_per_success`` = value / successful.

Cost at each stage = the workflow's fully loaded cost in the month / the count at that stage
(``cost_per_call``, ``cost_per_work_unit``, ``cost_per_accepted_output``, ``cost_per_action``,
``cost_per_successful_outcome``). The fully loaded cost includes calls and effort of the workflow
that are not linked to a work unit, so every dollar of the workflow's spend is carried by its
outcomes. ``unpriced_calls`` counts the calls no price was found for: their model cost is
unknown, not $0, so when every call of a row is unpriced its ``model_cost``,
``fully_loaded_cost`` and costs per stage are null (as :func:`yieldmeter.metrics.spend.spend`
leaves such a row's cost null, :func:`yieldmeter.metrics.cost.known_cost`); ``allocated_cost``
and ``effort_cost`` keep what is known.
"""

from __future__ import annotations

from typing import Any

import ibis
import ibis.expr.types as ir

from yieldmeter.metrics.cost import known_cost
from yieldmeter.metrics.period import UNASSIGNED, Window, month_of, utc_day
from yieldmeter.metrics.tables import Tables
from yieldmeter.metrics.yields import monthly_benefit, outcome_benefits, workflow_costs


def _div(a: ir.NumericValue, b: ir.NumericValue) -> ir.FloatingValue:
    return ibis.ifelse(b > 0, a.cast("float64") / b.cast("float64"), ibis.null("float64"))


def unit_stages(facts: ir.Table, window: Window | None = None) -> ir.Table:
    """Per workflow and month: the counts at each unit stage and the expected value."""
    if window is not None:
        facts = window.filter(facts, "started_at")
    f = facts
    # per day first, then per month: the month's label is then formatted for a few hundred rows,
    # not for every unit (strftime on 1M units was 0.23 s; every measure here adds up across days)
    d = f.group_by(workflow=f.workflow.fill_null(UNASSIGNED), day=utc_day(f.started_at)).aggregate(
        work_units=f.count(),
        accepted_outputs=f.accepted.sum().cast("int64"),
        acted_outputs=(f.accepted & f.acted).sum().cast("int64"),
        successful_outcomes=f.successful.sum().cast("int64"),
        tracks_actions=f.tracks_actions.any(),
        expected_value=f.expected_value.sum(),
        unit_tokens=f.tokens.sum(),
    )
    return d.group_by("workflow", month=month_of(d.day)).aggregate(
        work_units=d.work_units.sum(),
        accepted_outputs=d.accepted_outputs.sum(),
        acted_outputs=d.acted_outputs.sum(),
        successful_outcomes=d.successful_outcomes.sum(),
        tracks_actions=d.tracks_actions.any(),
        expected_value=d.expected_value.sum(),
        unit_tokens=d.unit_tokens.sum(),
    )


def funnel(
    t: Tables, facts: ir.Table, lines: ir.Table, window: Window | None = None, workflow: str | None = None
) -> ir.Table:
    """One row per workflow and month: stage counts, rates, value and the cost per unit at each stage."""
    cost = workflow_costs(lines, window, by_month=True)
    units = unit_stages(facts, window)
    value = monthly_benefit(outcome_benefits(t, window))
    if workflow is not None:
        cost = cost.filter(cost.workflow == workflow)
        units = units.filter(units.workflow == workflow)
        value = value.filter(value.workflow == workflow)
    keys = ibis.union(
        cost.select("workflow", "month"),
        units.select("workflow", "month"),
        value.select("workflow", "month"),
        distinct=True,
    )
    j = keys.left_join(cost, ["workflow", "month"]).left_join(units, ["workflow", "month"])
    j = j.left_join(value, ["workflow", "month"])
    z = ibis.literal(0, "int64")
    calls, unpriced = j.calls.fill_null(z), j.unpriced_calls.fill_null(z)
    tracks = j.tracks_actions.fill_null(False)
    accepted = j.accepted_outputs.fill_null(z)
    actions = ibis.ifelse(tracks, j.acted_outputs.fill_null(z), ibis.null("int64"))
    base = j.select(
        "workflow",
        "month",
        calls=calls,
        unpriced_calls=unpriced,
        work_units=j.work_units.fill_null(z),
        accepted_outputs=accepted,
        actions=actions,
        successful_outcomes=j.successful_outcomes.fill_null(z),
        value=j.value,
        expected_value=j.expected_value,
        model_cost=known_cost(j.model_cost.fill_null(0.0), calls, unpriced),
        allocated_cost=j.allocated_cost.fill_null(0.0),
        effort_cost=j.effort_cost.fill_null(0.0),
        fully_loaded_cost=known_cost(j.fully_loaded_cost.fill_null(0.0), calls, unpriced),
        success_basis=ibis.ifelse(tracks, "action", "acceptance"),
    )
    flc = base.fully_loaded_cost
    return base.mutate(
        work_units_per_call=_div(base.work_units, base.calls),
        acceptance_rate=_div(base.accepted_outputs, base.work_units),
        action_rate=_div(base.actions, base.accepted_outputs),
        success_rate=_div(base.successful_outcomes, ibis.coalesce(base.actions, base.accepted_outputs)),
        value_per_success=_div(base.value, base.successful_outcomes),
        cost_per_call=_div(flc, base.calls),
        cost_per_work_unit=_div(flc, base.work_units),
        cost_per_accepted_output=_div(flc, base.accepted_outputs),
        cost_per_action=_div(flc, base.actions),
        cost_per_successful_outcome=_div(flc, base.successful_outcomes),
    ).order_by(["workflow", "month"])


def with_known_cost(row: dict[str, Any]) -> dict[str, Any]:
    """A funnel row whose every call is unpriced (model and fully loaded cost null) with what is
    known of its cost instead: model cost 0 and the allocated cost and effort, so rows can be
    added up (whose cost is unknown again where no call of theirs was priced)."""
    if row.get("fully_loaded_cost") is not None:
        return row
    known = (row.get("allocated_cost") or 0.0) + (row.get("effort_cost") or 0.0)
    return {**row, "model_cost": 0.0, "fully_loaded_cost": known}
