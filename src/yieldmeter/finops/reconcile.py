"""Reconciliation: imported provider bills against yieldmeter's own metering.

A provider bill for tokens is a cost item of a category in
:data:`~yieldmeter.metrics.spend.RECONCILIATION_CATEGORIES` (the FOCUS
importer files AI token SKUs as ``ai_tokens``). Per month (UTC, by the
bill's period start and the call's time) and model:

- ``billed``   = sum of the bill items' amounts, ``billed_tokens`` their quantity
- ``metered``  = sum of the priced calls' model cost, ``metered_tokens`` their tokens,
  ``unpriced_calls`` the calls that could not be priced (they explain a gap)
- ``difference`` = billed - metered, ``difference_share`` = difference / billed

Models are matched on the catalog model each side resolves to (else the model
as written), case-insensitively and without a ``provider/`` prefix: a call's
through ``model_map``, a bill line's through the same resolver (``aliases``), so
a bill naming a dated snapshot (``gpt-4o-mini-2024-07-18``) meets the calls of
that model. Only months
that hold a bill are compared; a model on one side only is shown with the
other side at 0 — a difference is shown, never hidden. A ``(total)`` row per
month adds everything up.
"""

from __future__ import annotations

from datetime import datetime

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from yieldmeter.metrics.cost import priced_calls
from yieldmeter.metrics.spend import RECONCILIATION_CATEGORIES
from yieldmeter.metrics.tables import Tables

MATCH_TOLERANCE = 0.01


def _key(model: ir.StringValue) -> ir.StringValue:
    """The model id compared: lower case, without a ``provider/`` prefix."""
    return model.fill_null("(no model)").lower().re_replace(r"^.*/", "")


def bill_items(t: Tables, start: datetime | None = None, end: datetime | None = None) -> ir.Table:
    """The cost items that are provider bills for tokens, of the period (by their start)."""
    items = t.cost_items.filter(t.cost_items.category.isin(RECONCILIATION_CATEGORIES))
    if start is not None:
        items = items.filter(items.period_start >= ibis.literal(start))
    if end is not None:
        items = items.filter(items.period_start < ibis.literal(end))
    return items


def reconcile(
    t: Tables, start: datetime | None = None, end: datetime | None = None, aliases: pa.Table | None = None
) -> pa.Table:
    """Bills against metering per month and model (see the module docstring).

    ``aliases``: (``provider``, ``model``, ``price_model``), the catalog model each bill line's
    provider ('' when absent) and model resolve to.
    """
    items = bill_items(t, start, end)
    if aliases is not None and aliases.num_rows:
        a = ibis.memtable(aliases.rename_columns(["a_provider", "a_model", "a_price_model"]))
        items = items.left_join(
            a, [items.provider.fill_null("") == a.a_provider, items.model.fill_null("") == a.a_model]
        )
        items = items.mutate(bill_model=ibis.coalesce(items.a_price_model, items.model))
    else:
        items = items.mutate(bill_model=items.model)
    token_qty = ibis.ifelse(items.unit.fill_null("").contains("token"), items.quantity.fill_null(0.0), 0.0)
    bills = items.group_by(b_month=items.period_start.truncate("M"), b_key=_key(items.bill_model)).aggregate(
        billed=items.amount.sum(),
        billed_tokens=token_qty.sum(),
        bill_provider=items.provider.max(),
        bill_items=items.count(),
    )
    months = bills.select(m_month=bills.b_month).distinct()
    pc = priced_calls(t)
    pc = pc.mutate(c_month=pc.ts.truncate("M"))
    pc = pc.join(months, pc.c_month == months.m_month)
    metered = pc.group_by(c_month=pc.c_month, c_key=_key(ibis.coalesce(pc.price_model, pc.model))).aggregate(
        metered=pc.model_cost.sum().fill_null(0.0),
        metered_tokens=(pc.input_tokens + pc.output_tokens).sum().cast("float64"),
        calls=pc.request_count.sum(),
        unpriced_calls=ibis.ifelse(pc.priced, 0, pc.request_count).sum(),
        call_provider=pc.provider.max(),
    )
    j = bills.outer_join(metered, [bills.b_month == metered.c_month, bills.b_key == metered.c_key])
    rows = j.select(
        month=ibis.coalesce(j.b_month, j.c_month).strftime("%Y-%m"),
        model=ibis.coalesce(j.b_key, j.c_key),
        provider=ibis.coalesce(j.bill_provider, j.call_provider),
        billed=j.billed.fill_null(0.0),
        metered=j.metered.fill_null(0.0),
        billed_tokens=j.billed_tokens.fill_null(0.0),
        metered_tokens=j.metered_tokens.fill_null(0.0),
        calls=j.calls.fill_null(0),
        unpriced_calls=j.unpriced_calls.fill_null(0),
    )
    total = (
        rows.group_by("month")
        .aggregate(
            billed=rows.billed.sum(),
            metered=rows.metered.sum(),
            billed_tokens=rows.billed_tokens.sum(),
            metered_tokens=rows.metered_tokens.sum(),
            calls=rows.calls.sum(),
            unpriced_calls=rows.unpriced_calls.sum(),
        )
        .mutate(model=ibis.literal("(total)"), provider=ibis.null("string"))
    )
    out = ibis.union(rows, total.select(rows.columns))
    diff = out.billed - out.metered
    out = out.mutate(
        difference=diff,
        difference_share=ibis.ifelse(out.billed != 0, diff / out.billed, ibis.null("float64")),
        status=ibis.cases(
            ((out.billed == 0) & (out.metered > 0), "metered only: no bill line"),
            ((out.metered == 0) & (out.billed > 0), "billed only: no calls metered"),
            (diff.abs() <= MATCH_TOLERANCE * out.billed.abs(), "matched"),
            (diff > 0, "bill above metering"),
            else_="bill below metering",
        ),
    )
    return out.order_by(
        ["month", (out.model == "(total)").cast("int8"), ibis.desc("billed"), "model"]
    ).to_pyarrow()
