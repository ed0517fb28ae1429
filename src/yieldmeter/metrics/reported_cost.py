"""Reported cost: a source's own cost of each call beside yieldmeter's price (reconciliation).

LiteLLM's ``spend``, Langfuse's ``cost_details`` and ``gen_ai.usage.cost`` land
in ``calls.reported_cost``; yieldmeter prices the same calls from its catalog
(:func:`yieldmeter.metrics.cost.priced_calls`). Neither figure is preferred:
both are shown, with their difference. Over the calls that carry a reported
cost, per group of :data:`BY`::

    calls                 = sum(request_count)
    reported_cost         = sum(reported_cost)                  every call of the group
    priced_calls          = calls with a price in the catalog
    unpriced_calls        = calls without one (their reported cost is counted above,
                            and nothing is compared for them)
    reported_priced_cost  = sum(reported_cost) over the priced calls
    priced_cost           = sum(model_cost) over the priced calls
                            (null when no call of the group is priced: unknown, never $0)
    difference            = reported_priced_cost - priced_cost
                            (positive: the source counts more than yieldmeter prices)
    difference_share      = difference / reported_priced_cost

Only like is compared with like: the difference is taken over the calls both
sides cost. Calls without a reported cost are left out (the spend report
covers them).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from yieldmeter.errors import InputError
from yieldmeter.metrics.cost import priced_calls
from yieldmeter.metrics.period import utc_day
from yieldmeter.metrics.spend import Filters
from yieldmeter.metrics.tables import Tables

#: What the comparison can be grouped by.
BY = ("model", "team", "day", "provider", "source", "workflow")


def reported_cost(t: Tables, by: str = "model", filters: Filters | None = None) -> ir.Table:
    """Reported against priced cost per ``by`` (one of :data:`BY`), largest reported cost first.

    ``filters`` restrict the calls by time (``ts`` in [start, end)), team, workflow and model.
    """
    if by not in BY:
        raise InputError(f"cannot compare reported cost by {by!r}; choose from {', '.join(BY)}", field="by")
    pc = priced_calls(t)
    c = pc.filter(pc.reported_cost.notnull())
    if filters is not None:
        c = filters.apply(c, time_col="ts")
    key = utc_day(c.ts) if by == "day" else c[by]
    priced = c.priced
    zero = ibis.literal(0.0)
    out = c.group_by(**{by: key}).aggregate(
        calls=c.request_count.sum(),
        reported_cost=c.reported_cost.sum(),
        priced_calls=ibis.ifelse(priced, c.request_count, 0).sum(),
        unpriced_calls=ibis.ifelse(priced, 0, c.request_count).sum(),
        reported_priced_cost=ibis.ifelse(priced, c.reported_cost, zero).sum(),
        # null when no call of the group is priced: the sum of nothing known is unknown
        priced_cost=ibis.ifelse(priced, c.model_cost, ibis.null("float64")).sum(),
    )
    difference = out.reported_priced_cost - out.priced_cost
    out = out.mutate(
        reported_priced_cost=ibis.ifelse(
            out.priced_calls > 0, out.reported_priced_cost, ibis.null("float64")
        ),
        difference=difference,
        difference_share=ibis.ifelse(
            out.reported_priced_cost != 0, difference / out.reported_priced_cost, ibis.null("float64")
        ),
    )
    return out.order_by([out.reported_cost.desc(), out[by]])
