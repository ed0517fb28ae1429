"""The routing oracle on the main simulator: the best model per segment, from the simulator's truth.

``yieldmeter simulate`` keeps, per work unit, its hidden ``P(delivered)`` and whether it delivered,
its model and its tokens (``truth.parquet``); the scenario declares every model's logit effect per
task type (:meth:`yieldmeter.simulate.catalog.WorkflowSpec.model_effect`). So the counterfactual of
moving a whole segment (workflow x task type) to model M is known, unit by unit, without yieldmeter's
measurements:

- true success rate ``p_M = mean over the segment's units of sigmoid(logit(p_u) - e(m_u) + e(M))``,
  where ``e(m)`` is the effect of the unit's model and ``e(M)`` that of M on the task type (the unit's
  person, task and noise stay as they were);
- true model cost ``mc_M = p_M x mean(tokens priced at M | delivered) + (1 - p_M) x mean(... | not)``
  over all the segment's units (tokens do not depend on the model; calls depend on the state);
  prices are the catalog's (genai-prices, at one call's size: no long-context tier);
- true effort cost ``ef_M = (p_M x E[minutes | delivered] + (1 - p_M) x E[minutes | not]) / 60 x
  labour rate``, with ``E[minutes | ...]`` from the workflow's states (lognormal mean
  ``median x exp(sigma^2 / 2)`` times the effort's probability);
- true cost per unit ``c_M = mc_M + ef_M``. Allocated platform cost is left out: it is fixed (a
  gateway, a subscription) and does not move when traffic does.

:func:`oracle` picks per segment, at the tool's quality constraint, the model with the lowest true
cost per successful outcome ``c_M / p_M`` among those whose true success rate is at least the
incumbent's minus the tier's margin (the tier from the workflow's risk class and the true mean
expected value). Its monthly saving is ``monthly units x (c_mix - c_best)`` where ``c_mix`` is the
true cost of the segment's current model mix, and 0 where the best model is the incumbent.

:func:`evaluate` prices the tool's switches with the same truth: captured saving, capture of the
oracle's saving, and any harmful move (a high-stakes segment moved to a truly worse model, any
segment moved beyond its margin).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yieldmeter.routing.recommend import Action, Decision, RoutingSettings, Tier, tier_of
from yieldmeter.simulate.catalog import MODELS, WorkflowSpec
from yieldmeter.simulate.scenarios import Scenario

#: A move to a model whose true success rate is lower by more than this counts as "worse" (points).
WORSE_BY = 0.005


def model_key(name: str) -> str | None:
    """The simulator's model key for a model name as telemetry reports it (response or request)."""
    for key, m in MODELS.items():
        if name in (key, m.request_model, m.response_model):
            return key
    return None


def token_prices(keys: Iterable[str]) -> dict[str, tuple[float, float]]:
    """USD per input and per output token of each model, from the price catalog (genai-prices).

    Priced at one call's size (10,000 input and 1,000 output tokens), below any long-context tier.
    """
    from genai_prices import Usage, calc_price

    from yieldmeter.pricing.resolve import resolve

    out = {}
    for key in keys:
        spec = MODELS[key]
        r = resolve(spec.provider, spec.request_model)
        if not r.priced:
            raise ValueError(f"model {key!r} has no catalog price: the oracle cannot cost it")
        where = {"model_ref": r.price_model, "provider_id": r.price_provider}
        inp = calc_price(Usage(input_tokens=10_000, output_tokens=0), **where)
        outp = calc_price(Usage(input_tokens=0, output_tokens=1_000), **where)
        out[key] = (float(inp.total_price) / 10_000, float(outp.total_price) / 1_000)
    return out


def _effort_minutes(w: WorkflowSpec, states: Mapping[str, float]) -> float:
    """Expected true minutes of effort per unit over ``states`` (state -> probability)."""
    total = 0.0
    for name, q in states.items():
        for e in w.state(name).effort:
            total += q * e.p * e.median_minutes * math.exp(e.sigma**2 / 2)
    return total


@dataclass(frozen=True)
class TrueModel:
    """One model on one segment if the whole segment ran on it (true figures)."""

    model: str
    units_now: int
    success_rate: float
    cost_per_unit: float

    @property
    def cost_per_success(self) -> float:
        return self.cost_per_unit / self.success_rate if self.success_rate > 0 else math.inf


@dataclass
class TrueSegment:
    workflow: str
    task_type: str
    tier: Tier
    units: int
    monthly_units: float
    incumbent: str
    models: dict[str, TrueModel] = field(default_factory=dict)
    best: str = ""
    oracle_saving: float = 0.0

    @property
    def segment(self) -> str:
        return f"{self.workflow}/{self.task_type}"

    @property
    def mix_cost(self) -> float:
        return sum(m.units_now * m.cost_per_unit for m in self.models.values()) / self.units

    def saving_if(self, model: str) -> float:
        """True monthly saving of moving the whole segment to ``model``."""
        return self.monthly_units * (self.mix_cost - self.models[model].cost_per_unit)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def oracle(truth: pa.Table, scenario: Scenario, settings: RoutingSettings | None = None) -> list[TrueSegment]:
    """Per segment of ``truth`` (a ``truth.parquet`` table of ``scenario``): true figures per model
    and the oracle's choice at the quality constraint of ``settings``."""
    settings = settings or RoutingSettings()
    meta_days = _days(truth)
    units = truth.filter(pc.equal(truth["level"], "work_unit"))
    cols = {
        k: units[k].to_numpy(zero_copy_only=False)
        for k in (
            "workflow",
            "task_type",
            "model",
            "p_delivered",
            "delivered",
            "input_tokens",
            "output_tokens",
            "expected_true_value",
        )
    }
    specs = {w.name: w for w in scenario.workflows}
    prices = token_prices({m for w in scenario.workflows for m, _, _ in w.models})
    out: list[TrueSegment] = []
    for wf_name, w in specs.items():
        rate = w.labour_rate / 60.0
        e_ok, e_fail = _effort_minutes(w, w.delivered_states), _effort_minutes(w, w.failed_states)
        for task, _, _ in w.task_types:
            sel = (cols["workflow"] == wf_name) & (cols["task_type"] == task)
            n = int(sel.sum())
            if n == 0:
                continue
            p_u = np.clip(cols["p_delivered"][sel].astype(float), 1e-12, 1 - 1e-12)
            m_u = cols["model"][sel]
            own = np.array([w.model_effect(m, task) for m in m_u])
            base_logit = np.log(p_u / (1 - p_u)) - own
            ok = cols["delivered"][sel].astype(bool)
            tin, tout = cols["input_tokens"][sel].astype(float), cols["output_tokens"][sel].astype(float)
            counts = {m: int((m_u == m).sum()) for m, _, _ in w.models}
            incumbent = max(counts, key=lambda m: (counts[m], m))
            mean_ev = float(np.mean(cols["expected_true_value"][sel]))
            tier = tier_of(mean_ev, w.risk_class, settings)
            seg = TrueSegment(wf_name, task, tier, n, n * settings.days_per_month / meta_days, incumbent)
            for m, _, _ in w.models:
                p_m = float(np.mean(_sigmoid(base_logit + w.model_effect(m, task))))
                a, b = prices[m]
                mc = tin * a + tout * b
                mc_ok = float(mc[ok].mean()) if ok.any() else float(mc.mean())
                mc_fail = float(mc[~ok].mean()) if (~ok).any() else float(mc.mean())
                cost = p_m * mc_ok + (1 - p_m) * mc_fail + (p_m * e_ok + (1 - p_m) * e_fail) * rate
                seg.models[m] = TrueModel(m, counts[m], p_m, cost)
            p_ref = seg.models[incumbent].success_rate
            eligible = [
                m for m, tm in seg.models.items() if tm.success_rate >= p_ref - settings.margin(tier) - 1e-12
            ]
            seg.best = min(eligible, key=lambda m: (seg.models[m].cost_per_success, m))
            seg.oracle_saving = 0.0 if seg.best == incumbent else seg.saving_if(seg.best)
            out.append(seg)
    return out


def _days(truth: pa.Table) -> float:
    import json

    meta = json.loads((truth.schema.metadata or {}).get(b"yieldmeter.truth", b"{}"))
    return float(meta.get("days") or 30)


@dataclass(frozen=True)
class SegmentCheck:
    segment: str
    tier: str
    oracle_model: str
    oracle_saving: float
    action: str
    model: str
    captured_saving: float
    true_success_change: float  # points, the recommended model vs the incumbent


@dataclass(frozen=True)
class OracleEvaluation:
    oracle_saving: float
    captured_saving: float
    capture: float
    high_stakes_moved_to_worse: list[str]
    moved_beyond_margin: list[str]
    segments: list[SegmentCheck]

    def to_dict(self) -> dict[str, object]:
        return {
            "oracle_saving": self.oracle_saving,
            "captured_saving": self.captured_saving,
            "capture": self.capture,
            "high_stakes_moved_to_worse": self.high_stakes_moved_to_worse,
            "moved_beyond_margin": self.moved_beyond_margin,
            "segments": [s.__dict__ for s in self.segments],
        }


def evaluate(
    decisions: Sequence[Decision],
    truth: pa.Table,
    scenario: Scenario,
    settings: RoutingSettings | None = None,
) -> OracleEvaluation:
    """The tool's switches priced with the truth, against the oracle's saving."""
    settings = settings or RoutingSettings()
    segs = {(s.workflow, s.task_type): s for s in oracle(truth, scenario, settings)}
    captured = 0.0
    worse: list[str] = []
    beyond: list[str] = []
    checks: list[SegmentCheck] = []
    for d in decisions:
        seg = segs.get((d.workflow, d.task_type))
        if seg is None:
            continue
        key = model_key(d.model) if d.action is Action.SWITCH else None
        gained, change = 0.0, 0.0
        if key is not None and key in seg.models:
            gained = seg.saving_if(key)
            change = seg.models[key].success_rate - seg.models[seg.incumbent].success_rate
            if seg.tier is Tier.HIGH_STAKES and change < -WORSE_BY:
                worse.append(seg.segment)
            if change < -settings.margin(seg.tier) - 1e-9:
                beyond.append(seg.segment)
        elif d.action is Action.SWITCH:
            raise ValueError(f"{d.segment}: recommended model {d.model!r} is not one the scenario knows")
        captured += gained
        checks.append(
            SegmentCheck(
                segment=seg.segment,
                tier=seg.tier.value,
                oracle_model=seg.best,
                oracle_saving=seg.oracle_saving,
                action=d.action.value,
                model=d.model,
                captured_saving=gained,
                true_success_change=change,
            )
        )
    total = sum(s.oracle_saving for s in segs.values())
    return OracleEvaluation(
        oracle_saving=total,
        captured_saving=captured,
        capture=captured / total if total > 0 else math.nan,
        high_stakes_moved_to_worse=worse,
        moved_beyond_margin=beyond,
        segments=checks,
    )
