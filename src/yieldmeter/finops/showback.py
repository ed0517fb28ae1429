"""Showback and chargeback: fully loaded cost allocated to teams and cost centres.

The period's spend events are cut into charges: one per UTC day x team x
workflow x provider x model x cost part (model cost, allocated platform cost,
effort), and per cost item when a share of the item reaches teams by a rule.
Each charge goes to teams by one of these methods (``method``):

- ``direct``: a charge that names a team goes to that team whole (ratio 1): its
  calls, its effort, and the cost items that name the team;
- ``pro_rata``: the share of a cost item that names no team (a shared platform
  item, or one that names only a workflow) which the spend module spread over
  the calls of the item's scope in proportion to their model cost
  (:func:`yieldmeter.metrics.spend.allocation`). Its ratio is the share of the
  item the team's calls took: ``amount / item amount``; its basis is the model
  cost of those calls (USD). The ratios of one item add up to 1 over the rows
  of the item's whole period;
- ``proportional``, ``even``, ``fixed``: a charge with no team at all (calls
  with no team, or an item share placed on a scope that has no team), and the
  cost of the teams in ``chargeback.shared_teams`` (a platform team that runs
  the gateway and observability for everyone), is split
  over the teams with cost in the period, by ``chargeback.shared`` in
  ``yieldmeter.yaml``:

  * ``proportional`` (default): team share = the cost the team carries before
    this split / all teams' such cost, over the whole period;
  * ``even``: 1 / number of teams;
  * a rule ``{team: share}`` (shares add up to 1): those shares (``fixed``).

  A cost item share with no team split this way is ``pro_rata+proportional``
  (or ``+even``, ``+fixed``): its ratio to the item is the product of both.

When no team has cost, a charge with no team stays ``(unallocated)`` — shown,
never dropped. Every row names its origin (``origin_id``: the charge itself, or
``cost_item:<id>``) and ``origin_amount``; the ratios of one origin add up to 1,
so the allocated amounts add up to the period's fully loaded cost exactly.

Each team maps to its cost centre (``chargeback.cost_centres``; else the team's
own name).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from yieldmeter.finops.settings import ChargebackSettings

UNALLOCATED = "(unallocated)"
PARTS = ("model_cost", "allocated_cost", "effort_cost")
CHARGE_KEYS = ("day", "team", "workflow", "provider", "model", "cost_part")
#: the methods whose rows are a split of an origin charge (FOCUS Allocated* columns)
SPLIT_METHODS = ("pro_rata", "proportional", "even", "fixed")
OUT_COLUMNS = (
    *CHARGE_KEYS,
    "charge_id",
    "amount",
    "origin_id",
    "origin_amount",
    "ratio",
    "method",
    "basis",
    "basis_unit",
    "calls",
    "tokens",
)


def is_split(method: str) -> bool:
    """True for a row that is one team's part of a split origin charge."""
    return any(part in SPLIT_METHODS for part in method.split("+"))


def charges(
    ev: ir.Table, start: datetime | None, end: datetime | None, shared_teams: Sequence[str] = ()
) -> ir.Table:
    """Charges of the period: the keys, ``allocation``, ``item`` (its cost item), amount, calls, tokens.

    ``pool`` is the shared team that carried a charge (``chargeback.shared_teams``); such a charge
    has no team here, so it is split like cost with no team.
    """
    if shared_teams:
        pooled = ev.team.isin(list(shared_teams))
        ev = ev.mutate(pool=ibis.ifelse(pooled, ev.team, ibis.null("string")))
        ev = ev.mutate(team=ibis.ifelse(pooled, ibis.null("string"), ev.team))
    else:
        ev = ev.mutate(pool=ibis.null("string"))
    if start is not None:
        ev = ev.filter(ev.ts >= ibis.literal(start))
    if end is not None:
        ev = ev.filter(ev.ts < ibis.literal(end))
    # A cost item's share stays apart (per item) when it reached its team by a rule, or has no team
    # yet and is split below: its origin is the item. Everything else merges into the day's charge.
    keep_item = (ev.allocation == "pro_rata") | ev.team.isnull()
    ev = ev.mutate(day=ev.ts.truncate("D"), item=ibis.ifelse(keep_item, ev.origin_id, ibis.null("string")))
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
                allocation=p.allocation,
                item=p.item,
                pool=p.pool,
            ).aggregate(
                # allocated and effort events carry no calls or tokens (0): these sums are the calls'
                amount=p[part].sum(),
                item_amount=p.origin_amount.max(),
                calls=p.calls.sum(),
                tokens=p.tokens.sum(),
            )
        )
    return ibis.union(*parts)


def _weights(teamed: ir.Table, settings: ChargebackSettings) -> ir.Table:
    """team, ratio, basis, basis_unit and method of a split of cost with no team."""
    per_team = teamed.group_by("team").aggregate(basis=teamed.amount.sum())
    rule = settings.shared
    if isinstance(rule, dict):
        fixed = ibis.memtable(
            {"w_team": list(rule), "ratio": [float(v) for v in rule.values()]},
            schema={"w_team": "string", "ratio": "float64"},
        )
        return fixed.select(
            team=fixed.w_team,
            ratio=fixed.ratio,
            basis=ibis.null("float64"),
            basis_unit=ibis.null("string"),
            method=ibis.literal("fixed"),
        )
    if rule == "even":
        n = per_team.count()
        return per_team.select(
            "team",
            ratio=1.0 / n.as_scalar(),
            basis=ibis.literal(1.0),
            basis_unit=ibis.literal("Teams"),
            method=ibis.literal("even"),
        )
    total = per_team.basis.sum().as_scalar()
    return per_team.select(
        "team",
        ratio=per_team.basis / total,
        basis="basis",
        basis_unit=ibis.literal("USD"),
        method=ibis.literal("proportional"),
    )


def allocate(
    ev: ir.Table, settings: ChargebackSettings, start: datetime | None = None, end: datetime | None = None
) -> pa.Table:
    """One row per charge and recipient team, with origin, ratio, method and basis (see module doc).

    ``calls`` and ``tokens`` are the row's part of its charge's (a split row gets its ratio's share),
    so they add up over the rows of a charge like the amounts do.
    """
    ch = charges(ev, start, end, settings.shared_teams)
    # a pooled team's charge is named by that team (its id keeps the team it came from)
    named = [
        ch[k].fill_null(ch.pool.fill_null("")) if k == "team" else ch[k].fill_null("")
        for k in CHARGE_KEYS[1:]
    ]
    keys = [ch.day.strftime("%Y-%m-%d"), *named, ch.item.fill_null("")]
    ch = ch.mutate(charge_id=ibis.literal("|").join(keys))
    ch = ch.mutate(
        origin_id=ibis.ifelse(ch.item.notnull(), "cost_item:" + ch.item.fill_null(""), ch.charge_id),
        origin_amount=ibis.ifelse(ch.item.notnull(), ch.item_amount, ch.amount),
        calls=ch.calls.cast("float64"),
        tokens=ch.tokens.cast("float64"),
    )
    teamed = ch.filter(ch.team.notnull())
    shared = ch.filter(ch.team.isnull())
    # the model cost that a pro rata share was proportional to: its cells' model cost
    cell = ("team", "workflow", "provider", "model")
    mc = teamed.filter(teamed.cost_part == "model_cost")
    mc = mc.group_by(mc_day=mc.day, **{f"mc_{k}": mc[k].fill_null("") for k in cell}).aggregate(
        mc_cost=mc.amount.sum()
    )
    pro = teamed.filter(teamed.allocation == "pro_rata")
    on = [pro.day == mc.mc_day, *[pro[k].fill_null("") == mc[f"mc_{k}"] for k in cell]]
    pro = pro.left_join(mc, on)
    pro_rows = pro.mutate(
        ratio=pro.amount / pro.origin_amount,
        method=ibis.literal("pro_rata"),
        basis=pro.mc_cost,
        basis_unit=ibis.literal("USD"),
    )
    d = teamed.filter(teamed.allocation != "pro_rata")
    d_rows = d.mutate(
        ratio=ibis.literal(1.0),
        method=ibis.literal("direct"),
        basis=ibis.null("float64"),
        basis_unit=ibis.null("string"),
    )
    w = _weights(teamed.filter(teamed.amount > 0), settings)
    s = shared.drop("team").cross_join(w)
    s_rows = s.mutate(
        ratio=s.amount / s.origin_amount * s.ratio,
        amount=s.amount * s.ratio,
        calls=s.calls * s.ratio,
        tokens=s.tokens * s.ratio,
        method=ibis.ifelse(s.allocation == "pro_rata", "pro_rata+" + s.method, s.method),
    )
    parts = [d_rows.select(OUT_COLUMNS), pro_rows.select(OUT_COLUMNS)]
    if w.count().to_pyarrow().as_py():
        parts.append(s_rows.select(OUT_COLUMNS))
    else:  # no team to take cost with no team: it stays visible as unallocated
        parts.append(
            shared.mutate(
                team=ibis.literal(UNALLOCATED),
                ratio=shared.amount / shared.origin_amount,
                method=ibis.literal("unallocated"),
                basis=ibis.null("float64"),
                basis_unit=ibis.null("string"),
            ).select(OUT_COLUMNS)
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
