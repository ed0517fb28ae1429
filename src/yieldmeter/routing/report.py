"""The routing report: decisions for every segment, the frontier per value tier, and the totals.

:func:`analyse` runs the Ibis aggregation once (:func:`.segments.segment_model_stats`), fetches the
small segment x model table, and does the statistics in numpy/scipy (:mod:`.recommend`).

Frontier per tier: every model's units across the tier's segments, with its success rate (Wilson
interval), fully loaded cost per work unit and per successful outcome; ``on_frontier`` marks the
Pareto set on (cost per work unit, success rate): no other model is at most as costly and at least
as successful, strictly better in one. Models serve different task mixes inside a tier, so the
frontier describes what was observed, not a controlled comparison; the per-segment decisions are
the controlled ones.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import ibis.expr.types as ir

from yieldmeter.routing import stats
from yieldmeter.routing.recommend import TIER_LABELS, Action, Decision, RoutingSettings, Tier, decide_all
from yieldmeter.routing.segments import segment_model_stats, window_span


@dataclass
class RoutingReport:
    """Everything routing knows for one evidence period."""

    period_start: datetime | None
    period_end: datetime | None
    period_days: float
    settings: RoutingSettings
    decisions: list[Decision] = field(default_factory=list)
    frontier: list[dict[str, Any]] = field(default_factory=list)

    def by_action(self, action: Action) -> list[Decision]:
        return [d for d in self.decisions if d.action is action]

    @property
    def recommendations(self) -> list[Decision]:
        return self.by_action(Action.SWITCH)

    @property
    def experiments(self) -> list[Decision]:
        return self.by_action(Action.EXPERIMENT)

    @property
    def insufficient(self) -> list[Decision]:
        return self.by_action(Action.INSUFFICIENT_DATA)

    @property
    def not_testable(self) -> list[Decision]:
        """Segments kept because the experiment that would settle them cannot decide in time."""
        return [d for d in self.decisions if d.not_testable is not None]

    def totals(self, workflows: Collection[str] = (), incumbents: Collection[str] = ()) -> dict[str, Any]:
        """Projected monthly saving and change in successful outcomes of all switches together,
        and the same per value tier (``by_tier``); of the segments of ``workflows`` and now on
        ``incumbents`` only, where they are given."""
        decisions = [
            d
            for d in self.decisions
            if (not workflows or d.workflow in workflows) and (not incumbents or d.incumbent in incumbents)
        ]
        out = _totals(decisions)
        out["by_tier"] = {
            str(tier): _totals(ds) for tier in Tier if (ds := [d for d in decisions if d.tier is tier])
        }
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per segment, for a table or CSV."""
        out = []
        for d in self.decisions:
            inc = d.models[0]
            rec = next((m for m in d.models if m.model == d.model), inc)
            out.append(
                {
                    "workflow": d.workflow,
                    "task_type": d.task_type,
                    "tier": str(d.tier),
                    "units": d.n,
                    "incumbent": d.incumbent,
                    "action": str(d.action),
                    "action_label": d.action_label,
                    "model": d.experiment.model if d.experiment else d.model,
                    "success_now": d.current_success_rate,
                    "success_new": rec.success_rate if d.action is Action.SWITCH else None,
                    "cost_per_success_now": d.current_cost_per_success,
                    "cost_per_success_new": rec.cost_per_success if d.action is Action.SWITCH else None,
                    "monthly_saving": d.monthly_saving,
                    "monthly_success_change": d.monthly_success_change,
                    "experiment_share": d.experiment.traffic_share if d.experiment else None,
                    "experiment_days": d.experiment.days if d.experiment else None,
                    "days_needed": (
                        d.not_testable.days if d.not_testable and d.not_testable.days >= 0 else None
                    ),
                    "reason": d.reason,
                }
            )
        return out

    def model_rows(self) -> list[dict[str, Any]]:
        """One row per segment and model: the evidence behind every decision, with its intervals
        (success: Wilson 95%; cost per successful outcome: delta method 95%; latency of the slowest
        call per unit: p50, p95 with its distribution-free ~95% interval, p99)."""
        out = []
        for d in self.decisions:
            for m in d.models:
                out.append(
                    {
                        "workflow": d.workflow,
                        "task_type": d.task_type,
                        "model": m.model,
                        "incumbent": m.model == d.incumbent,
                        "units": m.n,
                        "share": m.share,
                        "success_rate": m.success_rate,
                        "success_low": m.success_low,
                        "success_high": m.success_high,
                        "cost_per_unit": m.cost_per_unit,
                        "cost_per_success": m.cost_per_success,
                        "cost_per_success_low": m.cost_per_success_low,
                        "cost_per_success_high": m.cost_per_success_high,
                        "latency_p50_ms": m.latency_p50_ms,
                        "latency_p95_ms": m.latency_p95_ms,
                        "latency_p95_low_ms": m.latency_p95_low_ms,
                        "latency_p95_high_ms": m.latency_p95_high_ms,
                        "latency_p99_ms": m.latency_p99_ms,
                        "latency_slo_ms": d.latency_slo_ms,
                        "eligible": m.eligible,
                        "note": m.note,
                    }
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "period_start": self.period_start.isoformat() if self.period_start else None,
            "period_end": self.period_end.isoformat() if self.period_end else None,
            "period_days": self.period_days,
            "totals": self.totals(),
            "decisions": [d.to_dict() for d in self.decisions],
            "frontier": self.frontier,
        }


def _totals(decisions: list[Decision]) -> dict[str, Any]:
    sw = [d for d in decisions if d.action is Action.SWITCH]
    exps = [d for d in decisions if d.action is Action.EXPERIMENT]
    untestable = [d for d in decisions if d.not_testable is not None]
    return {
        "monthly_saving": sum(d.monthly_saving for d in sw),
        "monthly_success_change": sum(d.monthly_success_change for d in sw),
        "switches": len(sw),
        "experiments": len(exps),
        "insufficient_data": sum(d.action is Action.INSUFFICIENT_DATA for d in decisions),
        "monthly_cost_now": sum(d.current_cost_per_unit * d.monthly_units for d in decisions),
        "not_testable": len(untestable),
        "monthly_saving_low": sum(d.monthly_saving_low for d in sw),
        "monthly_saving_high": sum(d.monthly_saving_high for d in sw),
        "potential_monthly_saving_in_experiments": sum(d.potential_monthly_saving for d in exps),
        "potential_monthly_saving_not_testable": sum(d.potential_monthly_saving for d in untestable),
        "segments": len(decisions),
        "kept": sum(d.action is Action.KEEP for d in decisions),
    }


def tier_frontier(decisions: list[Decision], min_units: int = 30) -> list[dict[str, Any]]:
    """Per tier and model: pooled volume, success, cost per unit and per success; the Pareto set.

    Only models with at least ``min_units`` units in the tier and no unpriced unit compete for the
    frontier (``on_frontier`` is false for the others and ``note`` says why)."""
    pooled: dict[tuple[Tier, str], dict[str, float]] = {}
    for d in decisions:
        for m in d.models:
            acc = pooled.setdefault((d.tier, m.model), {"n": 0, "s": 0, "cost": 0.0, "unpriced": 0})
            acc["unpriced"] += m.unpriced_units
            acc["n"] += m.n
            acc["s"] += m.successes
            acc["cost"] += m.cost_per_unit * m.n
    rows: list[dict[str, Any]] = []
    for tier in Tier:
        models = sorted(k[1] for k in pooled if k[0] is tier)
        if not models:
            continue
        tier_rows = []
        for name in models:
            a = pooled[(tier, name)]
            n, s = int(a["n"]), int(a["s"])
            cpu = a["cost"] / n if n else math.nan
            rate = s / n if n else math.nan
            lo, hi = stats.wilson_interval(s, n)
            note = ""
            if n < min_units:
                note = f"too little data ({n} units)"
            elif a["unpriced"]:
                note = "unpriced calls: cost understated"
            tier_rows.append(
                {
                    "tier": str(tier),
                    "tier_label": TIER_LABELS[tier],
                    "model": name,
                    "units": n,
                    "success_rate": rate,
                    "success_low": lo,
                    "success_high": hi,
                    "cost_per_unit": cpu,
                    "cost_per_success": a["cost"] / s if s else None,
                    "note": note,
                }
            )
        competing = [r for r in tier_rows if not r["note"]]
        front = stats.pareto_front([(r["cost_per_unit"], r["success_rate"]) for r in competing])
        for row in tier_rows:
            row["on_frontier"] = False
        for row, on in zip(competing, front, strict=True):
            row["on_frontier"] = on
        rows.extend(sorted(tier_rows, key=lambda r: r["cost_per_unit"]))
    return rows


def analyse(units: ir.Table, workflows: ir.Table, settings: RoutingSettings | None = None) -> RoutingReport:
    """Decisions, frontier and totals from routing units (already restricted to the period)."""
    settings = settings or RoutingSettings()
    span = window_span(units).to_pyarrow().to_pylist()[0]
    first, last = span["first_at"], span["last_at"]
    days = (
        max((last - first).total_seconds() / 86400.0, 1.0) if first is not None and last is not None else 1.0
    )
    rows = segment_model_stats(units, workflows).to_pyarrow().to_pylist()
    decisions = decide_all(rows, days, settings)
    return RoutingReport(first, last, days, settings, decisions, tier_frontier(decisions, settings.min_units))
