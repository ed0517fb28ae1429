"""Showback and chargeback: fully loaded cost allocated to teams and cost centres.

The period's spend events are cut into charges: one per UTC day x team x
workflow x provider x model x cost part (model cost, allocated platform cost,
effort). Then

- **direct**: a charge that names a team goes to that team whole (ratio 1);
- **shared**: a charge with no team is split over the teams with direct cost in
  the period, by ``chargeback.shared`` in ``yieldmeter.yaml``:

  * ``proportional`` (default): team share = the team's direct fully loaded
    cost / all teams' direct fully loaded cost, over the whole period;
  * ``even``: 1 / number of teams;
  * a rule ``{team: share}`` (shares add up to 1): those shares.

  When no team has direct cost, a shared charge stays ``(unallocated)`` — shown,
  never dropped. The ratios of one charge always add up to 1, so the allocated
  amounts add up to the period's fully loaded cost exactly.

Each team maps to its cost centre (``chargeback.cost_centres``; else the team's
own name).
"""

from __future__ import annotations

from datetime import datetime

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from yieldmeter.finops.settings import ChargebackSettings

UNALLOCATED = "(unallocated)"
PARTS = ("model_cost", "allocated_cost", "effort_cost")
CHARGE_KEYS = ("day", "team", "workflow", "provider", "model", "cost_part")


def charges(ev: ir.Table, start: datetime | None, end: datetime | None) -> ir.Table:
    """Charges of the period: day x team x workflow x provider x model x cost part with amount."""
    if start is not None:
        ev = ev.filter(ev.ts >= ibis.literal(start))
    if end is not None:
        ev = ev.filter(ev.ts < ibis.literal(end))
    ev = ev.mutate(day=ev.ts.truncate("D"))
    parts = []
    for part in PARTS:
        p = ev.filter(ev[part] != 0)
        parts.append(
            p.group_by(
                day=p.day,
                team=p.team,
                workflow=p.workflow,
                provider=p.provider,
                model=p.model,
                cost_part=ibis.literal(part),
            ).aggregate(
                # allocated and effort events carry no calls or tokens (0): these sums are the calls'
                amount=p[part].sum(),
                calls=p.calls.sum(),
                tokens=p.tokens.sum(),
            )
        )
    return ibis.union(*parts)


def _weights(direct: ir.Table, settings: ChargebackSettings) -> ir.Table:
    """team, ratio, basis (the team's direct cost) of shared cost."""
    per_team = direct.group_by("team").aggregate(basis=direct.amount.sum())
    rule = settings.shared
    if isinstance(rule, dict):
        fixed = ibis.memtable(
            {"w_team": list(rule), "ratio": [float(v) for v in rule.values()]},
            schema={"w_team": "string", "ratio": "float64"},
        )
        j = fixed.left_join(per_team, fixed.w_team == per_team.team)
        return j.select(
            team=j.w_team, ratio=j.ratio, basis=j.basis.fill_null(0.0), method=ibis.literal("fixed")
        )
    if rule == "even":
        n = per_team.count()
        return per_team.select("team", ratio=1.0 / n.as_scalar(), basis="basis", method=ibis.literal("even"))
    total = per_team.basis.sum().as_scalar()
    return per_team.select(
        "team", ratio=per_team.basis / total, basis="basis", method=ibis.literal("proportional")
    )


def allocate(
    ev: ir.Table, settings: ChargebackSettings, start: datetime | None = None, end: datetime | None = None
) -> pa.Table:
    """One row per charge and recipient team: amount, origin amount, ratio and method (see module doc)."""
    ch = charges(ev, start, end)
    keys = [ch.day.strftime("%Y-%m-%d"), *[ch[k].fill_null("") for k in CHARGE_KEYS[1:]]]
    ch = ch.mutate(charge_id=ibis.literal("|").join(keys))
    direct = ch.filter(ch.team.notnull())
    shared = ch.filter(ch.team.isnull())
    w = _weights(direct.filter(direct.amount > 0), settings)
    d_rows = direct.mutate(
        origin_amount=direct.amount,
        ratio=ibis.literal(1.0),
        method=ibis.literal("direct"),
        basis=ibis.null("float64"),
    )
    s = shared.drop("team").cross_join(w)
    s_rows = s.mutate(origin_amount=s.amount, amount=s.amount * s.ratio)
    cols = [
        *CHARGE_KEYS,
        "charge_id",
        "amount",
        "origin_amount",
        "ratio",
        "method",
        "basis",
        "calls",
        "tokens",
    ]
    parts = [d_rows.select(cols)]
    if w.count().to_pyarrow().as_py():
        parts.append(s_rows.select(cols))
    else:  # no team to take shared cost: it stays visible as unallocated
        parts.append(
            shared.mutate(
                team=ibis.literal(UNALLOCATED),
                origin_amount=shared.amount,
                ratio=ibis.literal(1.0),
                method=ibis.literal("unallocated"),
                basis=ibis.null("float64"),
            ).select(cols)
        )
    out = ibis.union(*parts).order_by(["day", "charge_id", "team"]).to_pyarrow()
    centres = [settings.cost_centres.get(t, t) if t else UNALLOCATED for t in out.column("team").to_pylist()]
    return out.append_column("cost_centre", pa.array(centres, pa.string()))


def showback(alloc: pa.Table) -> pa.Table:
    """Per cost centre and team: direct, shared and total fully loaded cost, and the share of the total."""
    t = ibis.memtable(alloc)
    direct = t.method == "direct"
    g = t.group_by(["cost_centre", "team"]).aggregate(
        direct_cost=t.amount.sum(where=direct).fill_null(0.0),
        shared_cost=t.amount.sum(where=~direct).fill_null(0.0),
        model_cost=t.amount.sum(where=t.cost_part == "model_cost").fill_null(0.0),
        allocated_cost=t.amount.sum(where=t.cost_part == "allocated_cost").fill_null(0.0),
        effort_cost=t.amount.sum(where=t.cost_part == "effort_cost").fill_null(0.0),
        total_cost=t.amount.sum(),
    )
    g = g.mutate(share=g.total_cost / g.total_cost.sum().as_scalar())
    return g.order_by([ibis.desc("total_cost"), "cost_centre", "team"]).to_pyarrow()
