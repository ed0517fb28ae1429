"""A routing scenario with known truth, to validate recommendations against an oracle.

The general simulator (:mod:`yieldmeter.simulate`) gives each model one success effect for all task
types, so no model is "as good as the frontier model on FAQs but worse on billing". Routing needs
exactly that, so this module draws routing units (see :data:`.segments.UNIT_COLUMNS`) from a truth
table where, per segment, a cheaper model is either *equal* in success to the incumbent, clearly
*worse*, or too slow for the workflow's latency SLO, and where a few segments hold too little data.

Everything is numpy over one seeded generator: the same seed gives the same units.

- A unit's fully loaded cost = model cost (the model's base cost per unit x the segment's size
  multiplier x lognormal(mean 1, sigma 0.6)) + correction effort (with the model's correction
  probability, ``effort_minutes`` at ``labour_rate`` USD/h).
- A unit is successful when it delivered (Bernoulli(p_delivered)) and its latency is within the
  workflow's SLO, the value engine's rule; so the true success rate is
  ``p_delivered x P(latency <= SLO)`` with lognormal latency.
- expected value = true success rate x the workflow's unit value.

:func:`oracle` picks, per segment, the model with the lowest true cost per successful outcome among
those whose true success rate is within the tier's margin of the incumbent's and whose true p95
latency meets the SLO; :func:`evaluate` scores decisions against it with true figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from scipy.stats import norm

from yieldmeter.routing.recommend import Action, Decision, RoutingSettings, Tier

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
EFFORT_MINUTES = 1.0
LABOUR_RATE = 60.0


@dataclass(frozen=True)
class SimModel:
    name: str
    cost: float  # USD per unit of model cost at size multiplier 1
    latency_ms: float  # median of the slowest call per unit
    correction: float  # probability a unit needs a human correction


MODELS: dict[str, SimModel] = {
    m.name: m
    for m in (
        SimModel("gpt-4o", 0.060, 2500.0, 0.02),
        SimModel("claude-3-5-haiku", 0.015, 1600.0, 0.025),
        SimModel("gpt-4o-mini", 0.0036, 1200.0, 0.03),
        SimModel("local-llama-70b", 0.0012, 26000.0, 0.03),
    )
}


@dataclass(frozen=True)
class SimWorkflow:
    name: str
    unit_value: float
    risk_class: str | None
    latency_slo_ms: float | None


WORKFLOWS = {
    w.name: w
    for w in (
        SimWorkflow("support-drafts", 0.4, "low", None),
        SimWorkflow("claims", 6.0, "medium", 20000.0),
        SimWorkflow("fraud-review", 150.0, "high", None),
    )
}


@dataclass(frozen=True)
class SimSegment:
    workflow: str
    task_type: str
    units_per_month: float
    size: float  # multiplies every model's cost
    p: dict[str, float]  # true P(delivered) per model
    traffic: dict[str, float]  # current share of units per model (the first is the incumbent)


SEGMENTS: tuple[SimSegment, ...] = (
    # cheaper model equal: mini == 4o
    SimSegment(
        "support-drafts",
        "faq",
        12000,
        1.0,
        {"gpt-4o": 0.80, "gpt-4o-mini": 0.80, "claude-3-5-haiku": 0.79},
        {"gpt-4o": 0.6, "gpt-4o-mini": 0.2, "claude-3-5-haiku": 0.2},
    ),
    # the cheapest is worse, the middle one equal
    SimSegment(
        "support-drafts",
        "billing",
        8000,
        1.2,
        {"gpt-4o": 0.78, "gpt-4o-mini": 0.60, "claude-3-5-haiku": 0.78},
        {"gpt-4o": 0.6, "gpt-4o-mini": 0.2, "claude-3-5-haiku": 0.2},
    ),
    # too little traffic on the alternatives: an experiment
    SimSegment(
        "support-drafts",
        "refund",
        800,
        1.0,
        {"gpt-4o": 0.75, "gpt-4o-mini": 0.75},
        {"gpt-4o": 0.97, "gpt-4o-mini": 0.03},
    ),
    SimSegment(
        "claims",
        "extraction",
        10000,
        2.0,
        {"gpt-4o": 0.85, "gpt-4o-mini": 0.85, "claude-3-5-haiku": 0.70},
        {"gpt-4o": 0.6, "gpt-4o-mini": 0.2, "claude-3-5-haiku": 0.2},
    ),
    # every cheaper model is clearly worse: keep
    SimSegment(
        "claims",
        "settlement-letter",
        5000,
        3.0,
        {"gpt-4o": 0.75, "gpt-4o-mini": 0.58, "claude-3-5-haiku": 0.60},
        {"gpt-4o": 0.6, "gpt-4o-mini": 0.2, "claude-3-5-haiku": 0.2},
    ),
    # the cheapest is as good but too slow for the SLO
    SimSegment(
        "claims",
        "triage",
        6000,
        1.0,
        {"gpt-4o": 0.82, "claude-3-5-haiku": 0.82, "local-llama-70b": 0.82},
        {"gpt-4o": 0.6, "claude-3-5-haiku": 0.2, "local-llama-70b": 0.2},
    ),
    SimSegment(
        "fraud-review",
        "card-alert",
        16000,
        1.5,
        {"gpt-4o": 0.90, "gpt-4o-mini": 0.90, "claude-3-5-haiku": 0.80},
        {"gpt-4o": 0.6, "gpt-4o-mini": 0.2, "claude-3-5-haiku": 0.2},
    ),
    # high stakes, cheaper models clearly worse: must never move
    SimSegment(
        "fraud-review",
        "account-takeover",
        6000,
        2.0,
        {"gpt-4o": 0.88, "gpt-4o-mini": 0.74, "claude-3-5-haiku": 0.76},
        {"gpt-4o": 0.6, "gpt-4o-mini": 0.2, "claude-3-5-haiku": 0.2},
    ),
    # too little data to route at all
    SimSegment(
        "fraud-review",
        "merchant-review",
        15,
        2.0,
        {"gpt-4o": 0.85, "gpt-4o-mini": 0.85},
        {"gpt-4o": 0.5, "gpt-4o-mini": 0.5},
    ),
)

LATENCY_SIGMA = 0.35
COST_SIGMA = 0.6


def true_success(seg: SimSegment, model: str) -> float:
    """p_delivered x P(latency <= SLO) under the lognormal latency."""
    slo = WORKFLOWS[seg.workflow].latency_slo_ms
    p = seg.p[model]
    if slo is None:
        return p
    return p * float(norm.cdf((math.log(slo) - math.log(MODELS[model].latency_ms)) / LATENCY_SIGMA))


def true_cost(seg: SimSegment, model: str) -> float:
    m = MODELS[model]
    return m.cost * seg.size + m.correction * EFFORT_MINUTES / 60.0 * LABOUR_RATE


def true_p95_latency(model: str) -> float:
    return MODELS[model].latency_ms * math.exp(LATENCY_SIGMA * 1.6448536269514722)


def simulate_units(seed: int, segments: Sequence[SimSegment] = SEGMENTS, days: int = DAYS) -> pa.Table:
    """One month of routing units drawn from the truth (columns of :data:`.segments.UNIT_COLUMNS`)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("workflow", "task_type", "model", "offset", "cost", "ok", "latency", "ev")
    }
    for seg in segments:
        wf = WORKFLOWS[seg.workflow]
        n = int(rng.poisson(seg.units_per_month * days / 30.0))
        names = list(seg.traffic)
        shares = np.array([seg.traffic[m] for m in names])
        pick = rng.choice(len(names), size=n, p=shares / shares.sum())
        for i, name in enumerate(names):
            k = int((pick == i).sum())
            m = MODELS[name]
            cost = m.cost * seg.size * rng.lognormal(-0.5 * COST_SIGMA**2, COST_SIGMA, k)
            cost = cost + (rng.random(k) < m.correction) * EFFORT_MINUTES / 60.0 * LABOUR_RATE
            latency = m.latency_ms * rng.lognormal(0.0, LATENCY_SIGMA, k)
            ok = rng.random(k) < seg.p[name]
            if wf.latency_slo_ms is not None:
                ok &= latency <= wf.latency_slo_ms
            cols["workflow"].append(np.full(k, seg.workflow, dtype=object))
            cols["task_type"].append(np.full(k, seg.task_type, dtype=object))
            cols["model"].append(np.full(k, name, dtype=object))
            cols["offset"].append(rng.uniform(0, days * 86400.0, k))
            cols["cost"].append(cost)
            cols["ok"].append(ok)
            cols["latency"].append(latency)
            cols["ev"].append(np.full(k, true_success(seg, name) * wf.unit_value))
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    n = len(cat["cost"])
    start_us = int(START.timestamp() * 1e6)
    started = (start_us + (cat["offset"] * 1e6).astype(np.int64)).astype("datetime64[us]")
    return pa.table(
        {
            "work_unit_id": pa.array([f"wu-{seed}-{i:07d}" for i in range(n)], pa.string()),
            "workflow": pa.array(cat["workflow"].tolist(), pa.string()),
            "task_type": pa.array(cat["task_type"].tolist(), pa.string()),
            "model": pa.array(cat["model"].tolist(), pa.string()),
            "started_at": pa.array(started, pa.timestamp("us", tz="UTC")),
            "fully_loaded_cost": pa.array(cat["cost"], pa.float64()),
            "successful": pa.array(cat["ok"], pa.bool_()),
            "latency_ms": pa.array(cat["latency"], pa.float64()),
            "expected_value": pa.array(cat["ev"], pa.float64()),
            "unpriced_calls": pa.array(np.zeros(n, dtype=np.int64), pa.int64()),
        }
    )


def workflows_table() -> pa.Table:
    ws = list(WORKFLOWS.values())
    return pa.table(
        {
            "workflow": pa.array([w.name for w in ws], pa.string()),
            "risk_class": pa.array([w.risk_class for w in ws], pa.string()),
            "latency_slo_ms": pa.array([w.latency_slo_ms for w in ws], pa.float64()),
            "quality_threshold": pa.array([None] * len(ws), pa.float64()),
            "unit_value": pa.array([w.unit_value for w in ws], pa.float64()),
        }
    )


@dataclass(frozen=True)
class OracleChoice:
    workflow: str
    task_type: str
    incumbent: str
    model: str
    monthly_saving: float


def _mix_cost(seg: SimSegment) -> float:
    total = sum(seg.traffic.values())
    return sum(share / total * true_cost(seg, m) for m, share in seg.traffic.items())


def oracle(
    tiers: dict[tuple[str, str], Tier], settings: RoutingSettings, segments: Sequence[SimSegment] = SEGMENTS
) -> list[OracleChoice]:
    """The best choice per segment with perfect knowledge, at the same quality constraint."""
    out = []
    for seg in segments:
        inc = next(iter(seg.traffic))
        tier = tiers.get((seg.workflow, seg.task_type), Tier.ROUTINE)
        slo = WORKFLOWS[seg.workflow].latency_slo_ms
        p_ref = true_success(seg, inc)
        eligible = [
            m
            for m in seg.traffic
            if true_success(seg, m) >= p_ref - settings.margin(tier) - 1e-12
            and (slo is None or true_p95_latency(m) <= slo)
        ]
        best = min(eligible, key=lambda m: true_cost(seg, m) / true_success(seg, m))
        saving = 0.0 if best == inc else seg.units_per_month * (_mix_cost(seg) - true_cost(seg, best))
        out.append(OracleChoice(seg.workflow, seg.task_type, inc, best, saving))
    return out


@dataclass(frozen=True)
class Evaluation:
    oracle_saving: float
    captured_saving: float
    capture: float
    high_stakes_moved_to_worse: list[str]
    moved_beyond_margin: list[str]
    insufficient: list[str]


def evaluate(
    decisions: Sequence[Decision], settings: RoutingSettings, segments: Sequence[SimSegment] = SEGMENTS
) -> Evaluation:
    """True monthly saving of the switches against the oracle's, and any harmful move."""
    by_key = {(s.workflow, s.task_type): s for s in segments}
    tiers = {(d.workflow, d.task_type): d.tier for d in decisions}
    orc = oracle(tiers, settings, segments)
    captured = 0.0
    worse: list[str] = []
    beyond: list[str] = []
    for d in decisions:
        seg = by_key[(d.workflow, d.task_type)]
        if d.action is not Action.SWITCH:
            continue
        captured += seg.units_per_month * (_mix_cost(seg) - true_cost(seg, d.model))
        p_ref, p_new = true_success(seg, d.incumbent), true_success(seg, d.model)
        if d.tier is Tier.HIGH_STAKES and p_new < p_ref - 1e-9:
            worse.append(d.segment)
        if p_new < p_ref - settings.margin(d.tier) - 1e-9:
            beyond.append(d.segment)
    total = sum(o.monthly_saving for o in orc)
    return Evaluation(
        oracle_saving=total,
        captured_saving=captured,
        capture=captured / total if total > 0 else math.nan,
        high_stakes_moved_to_worse=worse,
        moved_beyond_margin=beyond,
        insufficient=[d.segment for d in decisions if d.action is Action.INSUFFICIENT_DATA],
    )


@dataclass(frozen=True)
class AnchorComparison:
    """RouteLLM's metric on the scenario: cost saved against sending everything to the strongest
    model, at the share of that model's successful outcomes kept."""

    strong_model: str
    cost_all_strong: float
    cost_policy: float
    successes_all_strong: float
    successes_policy: float

    @property
    def cost_reduction(self) -> float:
        return 1.0 - self.cost_policy / self.cost_all_strong

    @property
    def cost_ratio(self) -> float:
        return self.cost_all_strong / self.cost_policy

    @property
    def success_share(self) -> float:
        return self.successes_policy / self.successes_all_strong


def anchor_comparison(
    seed: int, settings: RoutingSettings | None = None, evidence_days: int = DAYS
) -> AnchorComparison:
    """Learn a policy on ``evidence_days`` of traffic (default: one month), then replay a fresh month
    (another draw of the same truth) under it and under "everything on gpt-4o"; both counterfactuals
    use the policy's evidence (observed cost per unit and success rate per segment and model)."""
    import ibis

    from yieldmeter.routing.policy import Policy, PolicyEntry, policy_from_report
    from yieldmeter.routing.replay import replay
    from yieldmeter.routing.report import analyse

    settings = settings or RoutingSettings()
    evidence = ibis.memtable(simulate_units(seed, days=evidence_days))
    report = analyse(evidence, ibis.memtable(workflows_table()), settings)
    policy = policy_from_report(report)
    month = ibis.memtable(simulate_units(seed + 10_000, days=30))
    strong = "gpt-4o"
    all_strong = Policy(
        tuple(
            PolicyEntry(e.workflow, e.task_type, "switch", strong, e.incumbent, models=e.models)
            for e in policy.entries
        )
    )
    p = replay(month, policy).totals()
    s = replay(month, all_strong).totals()
    return AnchorComparison(
        strong, s["counterfactual_cost"], p["counterfactual_cost"], s["counterfactual_successes"],
        p["counterfactual_successes"],
    )  # fmt: skip
