"""Alert rules: which budgets and unit economics are breached now.

Budgets (from :func:`.budgets.budget_status`): a budget whose ``used`` is at or
above its soft threshold is a ``budget`` breach of severity soft; at or above
its hard threshold the same breach has severity hard, so the budget's one alert
escalates (:mod:`.alerts`) instead of a second alert firing beside it. A hard
breach is a hard stop: the budget status says ``hard_breached`` and
``GET /api/v1/finops/budgets/{id}/status`` answers it to a gateway.

Unit economics, over the last ``window_days`` (``alerts.rules`` in
``yieldmeter.yaml``), per workflow or for one workflow:

- ``cost_per_successful_outcome_above``: fully loaded cost / successful outcomes
  (the value engine's funnel) above ``limit``; a workflow with cost and no
  successful outcome is in breach (cost per success is unbounded);
- ``yield_below``: a monetary yield (benefit / fully loaded cost) below ``limit``;
- ``attribution_coverage_below``: the share of spend linked to a baseline, an
  owner and evidence below ``limit`` (the ``(all)`` row when no workflow is named);
- ``unpriced_share_above``: unpriced calls / calls above ``limit``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import ibis.expr.types as ir
import pyarrow as pa

from yieldmeter.finops.alerts import Breach
from yieldmeter.finops.settings import UnitRule
from yieldmeter.metrics.funnel import with_known_cost
from yieldmeter.metrics.period import Window


def budget_breaches(status: pa.Table) -> list[Breach]:
    out = []
    for r in status.to_pylist():
        if r["used"] < r["soft_threshold"] and r["used"] < r["hard_threshold"]:
            continue
        level = "hard" if r["used"] >= r["hard_threshold"] else "soft"
        threshold = r[f"{level}_threshold"]
        stop = "; hard stop: calls in this scope should be refused" if level == "hard" else ""
        out.append(
            Breach(
                rule_key=f"budget:{r['budget_id']}",
                kind="budget",
                severity=level,
                scope_kind=r["scope_kind"],
                scope=r["scope"],
                value=r["used"],
                threshold=threshold,
                message=(
                    f"{r['scope_kind']} {r['scope']} has used {r['used']:.0%} of its {r['period']} "
                    f"budget ({r['spent']:,.2f} of {r['amount']:,.2f} USD {r['basis']}; "
                    f"{level} threshold {threshold:.0%}{stop})"
                ),
                details={
                    k: r[k]
                    for k in (
                        "budget_id",
                        "period",
                        "basis",
                        "amount",
                        "spent",
                        "window_start",
                        "window_end",
                        "projected",
                        "run_out_day",
                        "soft_threshold",
                        "hard_threshold",
                        "hard_breached",
                    )
                },
            )
        )
    return out


def _key(rule: UnitRule, scope: str) -> str:
    return f"{rule.kind}:{rule.family or '*'}:{scope}:{rule.limit:g}:{rule.window_days}d"


def _breach(rule: UnitRule, scope: str, value: float, message: str, **details: Any) -> Breach:
    return Breach(
        rule_key=_key(rule, scope),
        kind=rule.kind,
        severity=rule.severity,
        scope_kind="workflow" if scope != "(all)" else "org",
        scope=scope,
        value=value,
        threshold=rule.limit,
        message=message,
        details={"window_days": rule.window_days, **details},
    )


def unit_breaches(rule: UnitRule, value_service: Any, events: ir.Table, now: datetime) -> list[Breach]:
    """Breaches of one unit-economics rule over ``[now - window_days, now)``."""
    window = Window(now - timedelta(days=rule.window_days), now, f"last {rule.window_days} days")
    if rule.kind == "unpriced_share_above":
        return _unpriced(rule, events, window)
    if rule.kind == "cost_per_successful_outcome_above":
        return _cpso(rule, value_service, window)
    if rule.kind == "yield_below":
        return _yield(rule, value_service, window)
    return _coverage(rule, value_service, window)


def _unpriced(rule: UnitRule, ev: ir.Table, w: Window) -> list[Breach]:
    ev = w.filter(ev, "ts")
    if rule.workflow:
        ev = ev.filter(ev.workflow == rule.workflow)
    r = ev.aggregate(calls=ev.calls.sum(), unpriced=ev.unpriced_calls.sum()).to_pyarrow().to_pylist()[0]
    calls, unpriced = int(r["calls"] or 0), int(r["unpriced"] or 0)
    if not calls:
        return []
    share = unpriced / calls
    if share <= rule.limit:
        return []
    scope = rule.workflow or "(all)"
    return [
        _breach(
            rule,
            scope,
            share,
            f"{share:.1%} of calls in {scope} are unpriced (limit {rule.limit:.1%}, "
            f"{w.label}); add a price override for the models `yieldmeter unpriced` lists",
            calls=calls,
            unpriced_calls=unpriced,
        )
    ]


def _cpso(rule: UnitRule, vs: Any, w: Window) -> list[Breach]:
    f = vs.funnel(rule.workflow, w)
    per: dict[str, list[float]] = {}
    for r in f.to_pylist():
        r = with_known_cost(r)  # a month of unpriced calls: its allocated cost and effort still count
        acc = per.setdefault(r["workflow"], [0.0, 0.0, 0.0])
        acc[0] += float(r.get("fully_loaded_cost") or 0.0)
        acc[1] += float(r.get("successful_outcomes") or 0)
        acc[2] += float(r.get("unpriced_calls") or 0)
    out = []
    for wf, (cost, succ, unpriced) in sorted(per.items()):
        if cost <= 0:
            continue
        cpso = cost / succ if succ else float("inf")
        if cpso > rule.limit:
            # with unpriced calls the cost counts only what is known: a lower bound
            what = (
                f"{'at least ' if unpriced else ''}{cpso:,.2f} USD"
                if succ
                else "unbounded (no successful outcome)"
            )
            out.append(
                _breach(
                    rule,
                    wf,
                    cpso,
                    f"cost per successful outcome in {wf} is {what}, above {rule.limit:,.2f} USD ({w.label})",
                    fully_loaded_cost=cost,
                    successful_outcomes=succ,
                )
            )
    return out


def _yield(rule: UnitRule, vs: Any, w: Window) -> list[Breach]:
    y = vs.yields(rule.workflow, w).yields
    out = []
    for r in y.to_pylist():
        if r["workflow"] == "(all)" and rule.workflow is None:
            continue
        if rule.family and r["family"] != rule.family:
            continue
        value = r.get("yield")
        if value is None or value >= rule.limit:
            continue
        rr = UnitRule(**{**rule.model_dump(), "family": r["family"]})
        out.append(
            _breach(
                rr,
                r["workflow"],
                value,
                f"{r['family']} yield of {r['workflow']} is {value:.2f}, below {rule.limit:g} ({w.label})",
                benefit=r.get("benefit"),
                fully_loaded_cost=r.get("fully_loaded_cost"),
            )
        )
    return out


def _coverage(rule: UnitRule, vs: Any, w: Window) -> list[Breach]:
    c = vs.coverage(rule.workflow, w).by_workflow
    target = rule.workflow or "(all)"
    out = []
    for r in c.to_pylist():
        if r["workflow"] != target:
            continue
        value = r.get("coverage")
        if value is None or value >= rule.limit:
            continue
        out.append(
            _breach(
                rule,
                target,
                value,
                f"attribution coverage of {target} is {value:.0%}, below "
                f"{rule.limit:.0%} ({w.label}): baseline {r.get('share_with_baseline') or 0:.0%}, "
                f"owner {r.get('share_with_owner') or 0:.0%}, evidence "
                f"{r.get('share_with_evidence') or 0:.0%}",
                spend=r.get("spend"),
                covered_spend=r.get("covered_spend"),
            )
        )
    return out
