"""Replay a period's traffic under a routing policy: the counterfactual cost and successes.

For every work unit of the period in a segment whose policy entry is a *switch* to model M:

- a unit that M served keeps its actual fully loaded cost and outcome;
- a unit another model served is re-priced at M's fully loaded cost per unit and counted at M's
  success rate in that segment (expected successes), both from the policy's evidence; where the
  policy has no figures for M in that segment, from the period's own units on M in that segment;
  where neither exists the unit cannot be re-priced: it keeps its actuals and is counted in
  ``unestimable_units``.

Units in segments the policy keeps, experiments on, or does not know keep their actuals. So::

    counterfactual cost      = sum over kept units of actual cost + sum over moved units of c_M
    counterfactual successes = sum over kept units of successful  + sum over moved units of p_M

The per segment x model aggregation runs in Ibis; the re-pricing is arithmetic on that small table.

Which estimates price the counterfactual is part of the result: :attr:`ReplayResult.priced_with` is
the policy's evidence period (its figures per model), :attr:`ReplayResult.traffic` the period
replayed, and :attr:`ReplayResult.in_sample` says whether they overlap (a replay of the evidence's
own traffic checks the arithmetic, not the forecast; replay a later period for that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import ibis.expr.types as ir

from yieldmeter.routing.policy import Policy
from yieldmeter.routing.segments import KEYS


@dataclass
class ReplaySegment:
    workflow: str
    task_type: str
    action: str
    model: str
    units: int
    moved_units: int
    unestimable_units: int
    actual_cost: float
    actual_successes: float
    counterfactual_cost: float
    counterfactual_successes: float
    tier: str = ""

    @property
    def saving(self) -> float:
        return self.actual_cost - self.counterfactual_cost


def _iso(v: Any) -> str | None:
    return v.isoformat() if isinstance(v, datetime) else (str(v) if v else None)


@dataclass
class ReplayResult:
    segments: list[ReplaySegment] = field(default_factory=list)
    #: the policy's evidence period, whose per-model figures price the moved units
    priced_with: dict[str, Any] = field(default_factory=dict)
    #: the period whose traffic was replayed: start, end (exclusive) and the units' first/last start
    traffic: dict[str, Any] = field(default_factory=dict)

    @property
    def in_sample(self) -> bool | None:
        """Whether the replayed traffic overlaps the policy's evidence period (None: unknown)."""
        p0, p1 = self.priced_with.get("start"), self.priced_with.get("end")
        t0, t1 = self.traffic.get("first_at"), self.traffic.get("last_at")
        if not (p0 and p1 and t0 and t1):
            return None
        a0, a1, b0, b1 = (datetime.fromisoformat(str(v)) for v in (p0, p1, t0, t1))
        return b0 <= a1 and a0 <= b1

    def totals(self) -> dict[str, Any]:
        out = self._totals(self.segments)
        tiers = sorted({x.tier for x in self.segments if x.tier})
        out["by_tier"] = {t: self._totals([x for x in self.segments if x.tier == t]) for t in tiers}
        out["priced_with"] = self.priced_with
        out["traffic"] = self.traffic
        out["in_sample"] = self.in_sample
        return out

    @staticmethod
    def _totals(s: list[ReplaySegment]) -> dict[str, Any]:
        ac = sum(x.actual_cost for x in s)
        cc = sum(x.counterfactual_cost for x in s)
        asx = sum(x.actual_successes for x in s)
        csx = sum(x.counterfactual_successes for x in s)
        return {
            "units": sum(x.units for x in s),
            "moved_units": sum(x.moved_units for x in s),
            "unestimable_units": sum(x.unestimable_units for x in s),
            "actual_cost": ac,
            "counterfactual_cost": cc,
            "saving": ac - cc,
            "saving_share": (ac - cc) / ac if ac else None,
            "actual_successes": asx,
            "counterfactual_successes": csx,
            "success_change": csx - asx,
            "actual_cost_per_success": ac / asx if asx else None,
            "counterfactual_cost_per_success": cc / csx if csx else None,
        }

    def rows(self) -> list[dict[str, Any]]:
        return [{**x.__dict__, "saving": x.saving} for x in self.segments]


def replay_stats(units: ir.Table) -> ir.Table:
    """Per workflow x task type x model in the period: units, successes and fully loaded cost."""
    return units.group_by(list(KEYS)).aggregate(
        n=units.count(),
        successes=units.successful.cast("int64").sum(),
        cost_sum=units.fully_loaded_cost.fill_null(0.0).sum(),
    )


def replay(
    units: ir.Table, policy: Policy, start: datetime | None = None, end: datetime | None = None
) -> ReplayResult:
    """Counterfactual cost and successes of ``units`` (one period, [start, end)) under ``policy``."""
    rows = replay_stats(units).to_pyarrow().to_pylist()
    span = units.aggregate(first_at=units.started_at.min(), last_at=units.started_at.max())
    first_last = span.to_pyarrow().to_pylist()[0]
    by_seg: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by_seg.setdefault((r["workflow"], r["task_type"]), []).append(r)
    out = ReplayResult(
        priced_with={k: policy.period.get(k) for k in ("start", "end", "days")},
        traffic={
            "start": _iso(start),
            "end": _iso(end),
            "first_at": _iso(first_last["first_at"]),
            "last_at": _iso(first_last["last_at"]),
        },
    )
    for (wf, task), seg_rows in sorted(by_seg.items()):
        entry = policy.entry(wf, task)
        n = sum(int(r["n"]) for r in seg_rows)
        ac = sum(float(r["cost_sum"]) for r in seg_rows)
        asx = float(sum(int(r["successes"]) for r in seg_rows))
        seg = ReplaySegment(
            wf,
            task,
            entry.action if entry else "unknown",
            entry.model if entry else "",
            n,
            0,
            0,
            ac,
            asx,
            ac,
            asx,
            entry.tier if entry else "",
        )
        if entry is not None and entry.routes:
            target = entry.model
            figures = entry.models.get(target)
            observed = next((r for r in seg_rows if r["model"] == target), None)
            if figures is not None:
                c_m, p_m = figures.cost_per_unit, figures.success_rate
            elif observed is not None and observed["n"]:
                c_m, p_m = observed["cost_sum"] / observed["n"], observed["successes"] / observed["n"]
            else:
                c_m = p_m = None
            cost, succ = 0.0, 0.0
            for r in seg_rows:
                if r["model"] == target:
                    cost += float(r["cost_sum"])
                    succ += int(r["successes"])
                elif c_m is None or p_m is None:
                    cost += float(r["cost_sum"])
                    succ += int(r["successes"])
                    seg.unestimable_units += int(r["n"])
                else:
                    cost += int(r["n"]) * c_m
                    succ += int(r["n"]) * p_m
                    seg.moved_units += int(r["n"])
            seg.counterfactual_cost, seg.counterfactual_successes = cost, succ
        out.segments.append(seg)
    return out
