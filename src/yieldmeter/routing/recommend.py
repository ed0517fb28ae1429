"""Routing decisions per segment: switch, experiment, keep, or too little data to say.

For each segment (workflow x task type) the *reference* is the incumbent: the model that served
most of its work units. A candidate is every other model that served the segment and is

- priced (no unit with an unpriced call: its cost would be understated),
- inside the latency SLO: p95 of the slowest call per unit <= the workflow's ``latency_slo_ms``,
- backed by at least ``min_units`` work units in the segment.

A **switch** to a candidate is recommended only when all of these hold, each a one-sided test at
``alpha / k`` (Bonferroni over the segment's k candidates):

1. cheaper per successful outcome: z-test on R_ref - R_cand, delta-method SEs (:mod:`.stats`);
2. not worse by more than the tier's margin: non-inferiority z-test, H0: p_c - p_r <= -margin;
3. high-stakes tier only: not significantly lower, pooled two-proportion z-test, H0: p_c >= p_r,
   at plain ``alpha`` (no correction: a refusal is the safe side).

The cheapest-per-success candidate that passes is recommended. When none passes but a candidate's
point estimates are promising (cheaper per success, success within the margin, not significantly
lower for high-stakes), the output is an **experiment**: the traffic share, the model and the
duration from :func:`.stats.experiment_size` on the segment's own volume and variance, with the
smallest share (of ``shares``, at most the tier's cap) that decides within ``max_days``. When no
allowed share decides within ``max_days``, the segment is **kept (not testable at this volume)**:
no traffic is split, and :attr:`Decision.not_testable` holds the experiment at the tier's largest
share with the units and days it would need (an experiment that cannot decide only moves traffic
onto a model whose quality nobody will ever know).

Value tiers, from the segment's mean expected value per work unit (p_value x unit value, the value
engine's score) and the workflow's risk class: ``high_stakes`` when the risk class is high or
critical or the mean is at least ``high_stakes_from`` USD; ``low_value`` below
``low_value_below`` USD; ``routine`` otherwise (and when nothing is known).

Projections per month (``days_per_month`` / days in the evidence period x the segment's units):
saving = monthly units x (current cost per unit of the segment's mix - candidate's cost per unit);
change in successful outcomes = monthly units x (candidate success rate - current mix rate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from yieldmeter.routing import stats


class Tier(StrEnum):
    LOW_VALUE = "low_value"
    ROUTINE = "routine"
    HIGH_STAKES = "high_stakes"


class Action(StrEnum):
    SWITCH = "switch"
    EXPERIMENT = "experiment"
    KEEP = "keep"
    INSUFFICIENT_DATA = "insufficient_data"


TIER_LABELS = {Tier.LOW_VALUE: "low-value drafts", Tier.ROUTINE: "routine", Tier.HIGH_STAKES: "high-stakes"}


@dataclass(frozen=True)
class RoutingSettings:
    """The thresholds every decision states; defaults are what the docs explain."""

    alpha: float = 0.05
    power: float = 0.8
    min_units: int = 30
    min_segment_units: int = 50
    margins: Mapping[str, float] = field(
        default_factory=lambda: {Tier.LOW_VALUE: 0.10, Tier.ROUTINE: 0.05, Tier.HIGH_STAKES: 0.03}
    )
    max_share: Mapping[str, float] = field(
        default_factory=lambda: {Tier.LOW_VALUE: 0.5, Tier.ROUTINE: 0.25, Tier.HIGH_STAKES: 0.10}
    )
    shares: tuple[float, ...] = (0.05, 0.10, 0.20, 0.25, 0.50)
    max_days: int = 28
    low_value_below: float = 1.0
    high_stakes_from: float = 50.0
    days_per_month: float = 30.0

    def margin(self, tier: Tier) -> float:
        return float(self.margins[tier])


@dataclass
class ModelEvidence:
    """One model in one segment: volume, success, cost per success and latency, with intervals."""

    model: str
    n: int
    share: float
    successes: int
    success_rate: float
    success_low: float
    success_high: float
    cost_per_unit: float
    cost_per_success: float | None
    cost_per_success_low: float | None
    cost_per_success_high: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_p95_low_ms: float | None
    latency_p95_high_ms: float | None
    unpriced_units: int
    eligible: bool
    note: str = ""
    #: per-unit variance of the cost per success (delta method), for experiment sizing
    unit_variance: float | None = None
    #: standard error of the mean cost per unit: sqrt(sample variance of unit cost / n)
    cost_per_unit_se: float = 0.0


@dataclass
class Experiment:
    model: str
    traffic_share: float
    units_needed: int
    candidate_units: int
    days: int
    decides_within_max_days: bool
    rule: str


@dataclass
class Decision:
    """The recommendation for one segment, with the evidence behind it."""

    workflow: str
    task_type: str
    tier: Tier
    risk_class: str | None
    latency_slo_ms: float | None
    n: int
    monthly_units: float
    mean_expected_value: float | None
    incumbent: str
    current_success_rate: float
    current_cost_per_unit: float
    current_cost_per_success: float | None
    action: Action
    model: str
    reason: str
    margin: float
    alpha: float
    p_cheaper: float | None = None
    p_non_inferior: float | None = None
    p_lower: float | None = None
    monthly_saving: float = 0.0
    monthly_saving_low: float = 0.0
    monthly_saving_high: float = 0.0
    monthly_success_change: float = 0.0
    #: for an experiment, or a segment kept as not testable: the saving per month if the
    #: candidate's point estimates hold (never in the totals of switches)
    potential_monthly_saving: float = 0.0
    experiment: Experiment | None = None
    #: action keep: the experiment that would settle the promising candidate and cannot decide
    #: within ``max_days`` at this volume (its units and days say how far off it is)
    not_testable: Experiment | None = None
    models: list[ModelEvidence] = field(default_factory=list)

    @property
    def action_label(self) -> str:
        """The action as a person reads it: "keep (not testable at this volume)" for such keeps."""
        if self.action is Action.KEEP and self.not_testable is not None:
            return "keep (not testable at this volume)"
        return self.action.value

    @property
    def segment(self) -> str:
        return f"{self.workflow}/{self.task_type}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tier"] = str(self.tier)
        d["action"] = str(self.action)
        d["action_label"] = self.action_label
        d["segment"] = self.segment
        # flat copies of the experiment plan, for tables that skip nested values
        e = self.experiment
        d["experiment_model"] = e.model if e else None
        d["experiment_share"] = e.traffic_share if e else None
        d["experiment_units"] = e.units_needed if e else None
        d["experiment_days"] = e.days if e else None
        u = self.not_testable
        d["days_needed"] = (u.days if u.days >= 0 else None) if u else None
        return _finite(d)


def _finite(obj: Any) -> Any:
    """NaN and infinities become None so JSON stays valid."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def tier_of(mean_ev: float | None, risk_class: str | None, settings: RoutingSettings) -> Tier:
    if risk_class in ("high", "critical"):
        return Tier.HIGH_STAKES
    if mean_ev is None:
        return Tier.ROUTINE
    if mean_ev >= settings.high_stakes_from:
        return Tier.HIGH_STAKES
    if mean_ev < settings.low_value_below:
        return Tier.LOW_VALUE
    return Tier.ROUTINE


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _cps(row: Mapping[str, Any]) -> stats.CostPerSuccess:
    return stats.cost_per_success(
        int(row["n"]),
        float(row["cost_sum"]),
        float(row["cost_sq_sum"]),
        int(row["successes"]),
        float(row["cost_success_sum"]),
    )


def _evidence(
    row: Mapping[str, Any], seg_n: int, slo: float | None, settings: RoutingSettings
) -> ModelEvidence:
    n, s = int(row["n"]), int(row["successes"])
    c = _cps(row)
    lo, hi = stats.wilson_interval(s, n)
    clo, chi = c.interval()
    p95 = _num(row.get("latency_p95_ms"))
    notes = []
    if n < settings.min_units:
        notes.append(f"too little data ({n} units, need {settings.min_units})")
    if int(row.get("unpriced_units") or 0) > 0:
        notes.append(f"{row['unpriced_units']} units with unpriced calls: cost understated")
    if slo is not None and p95 is not None and p95 > slo:
        notes.append(f"p95 latency {p95:,.0f} ms above the SLO of {slo:,.0f} ms")
    if s == 0:
        notes.append("no successful outcome yet")
    return ModelEvidence(
        model=str(row["model"]),
        n=n,
        share=n / seg_n if seg_n else 0.0,
        successes=s,
        success_rate=s / n if n else math.nan,
        success_low=lo,
        success_high=hi,
        cost_per_unit=c.mean_cost,
        cost_per_success=c.value if math.isfinite(c.value) else None,
        cost_per_success_low=clo if math.isfinite(clo) else None,
        cost_per_success_high=chi if math.isfinite(chi) else None,
        latency_p50_ms=_num(row.get("latency_p50_ms")),
        latency_p95_ms=p95,
        latency_p99_ms=_num(row.get("latency_p99_ms")),
        latency_p95_low_ms=_num(row.get("latency_p95_low_ms")),
        latency_p95_high_ms=_num(row.get("latency_p95_high_ms")),
        unpriced_units=int(row.get("unpriced_units") or 0),
        eligible=not notes,
        note="; ".join(notes),
        unit_variance=c.unit_variance if math.isfinite(c.unit_variance) else None,
        cost_per_unit_se=_mean_se(n, float(row["cost_sum"]), float(row["cost_sq_sum"])),
    )


def _mean_se(n: int, total: float, sq_total: float) -> float:
    if n < 2:
        return 0.0
    mean = total / n
    return math.sqrt(max(0.0, (sq_total - n * mean * mean) / (n - 1)) / n)


def _plan_experiment(
    ref: ModelEvidence, cand: ModelEvidence, tier: Tier, daily_units: float, settings: RoutingSettings
) -> Experiment:
    # With too little data on the candidate, assume its success equals the reference's and its
    # cost per unit is what was seen; its variance scales with its cost.
    p_ref = ref.success_rate
    small = cand.n < settings.min_units or cand.cost_per_success is None
    p_cand = p_ref if small else cand.success_rate
    cps_ref = ref.cost_per_success or math.inf
    cps_cand = cand.cost_per_unit / p_cand if p_cand > 0 else math.inf
    var_ref = ref.unit_variance or 0.0
    ratio = cand.cost_per_unit / ref.cost_per_unit if ref.cost_per_unit > 0 else 1.0
    var_cand = var_ref * ratio * ratio if small else (cand.unit_variance or 0.0)
    margin = settings.margin(tier)
    cap = float(settings.max_share[tier])
    shares = [s for s in settings.shares if s <= cap] or [cap]
    best: Experiment | None = None
    for share in shares:
        n = stats.experiment_size(
            p_ref=p_ref,
            p_cand=p_cand,
            margin=margin,
            unit_var_ref=var_ref,
            unit_var_cand=var_cand,
            cps_gap=cps_ref - cps_cand,
            share=share,
            alpha=settings.alpha,
            power=settings.power,
        )
        days = math.inf if not math.isfinite(n) or daily_units <= 0 else math.ceil(n / daily_units)
        exp = Experiment(
            model=cand.model,
            traffic_share=share,
            units_needed=int(n) if math.isfinite(n) else -1,
            candidate_units=math.ceil(n * share) if math.isfinite(n) else -1,
            days=int(days) if math.isfinite(days) else -1,
            decides_within_max_days=math.isfinite(days) and days <= settings.max_days,
            rule=(
                f"randomise {share:.0%} of {tier.value} traffic to {cand.model}; switch if it is cheaper per "
                f"successful outcome (one-sided z, p < {settings.alpha}) and non-inferior on success "
                f"(margin {margin:.0%}, p < {settings.alpha})"
            ),
        )
        best = exp
        if exp.decides_within_max_days:
            break
    assert best is not None
    return best


def decide_segment(
    rows: Sequence[Mapping[str, Any]], period_days: float, settings: RoutingSettings
) -> Decision:
    """The decision for one segment from its segment x model statistics rows."""
    first = rows[0]
    workflow, task_type = str(first["workflow"]), str(first["task_type"])
    risk, slo = first.get("risk_class"), _num(first.get("latency_slo_ms"))
    seg_n = sum(int(r["n"]) for r in rows)
    seg_s = sum(int(r["successes"]) for r in rows)
    seg_cost = sum(float(r["cost_sum"]) for r in rows)
    ev_units = sum(int(r.get("ev_units") or 0) for r in rows)
    unit_value = _num(first.get("unit_value"))
    if ev_units:
        mean_ev: float | None = sum(float(r.get("ev_sum") or 0.0) for r in rows) / ev_units
    elif unit_value is not None and seg_n:
        mean_ev = unit_value * seg_s / seg_n
    else:
        mean_ev = None
    tier = tier_of(mean_ev, risk, settings)
    models = sorted((_evidence(r, seg_n, slo, settings) for r in rows), key=lambda m: (-m.n, m.model))
    ref = models[0]
    monthly = seg_n * settings.days_per_month / max(period_days, 1.0)
    daily = seg_n / max(period_days, 1.0)
    cur_rate = seg_s / seg_n if seg_n else math.nan
    cur_cpu = seg_cost / seg_n if seg_n else math.nan
    margin = settings.margin(tier)
    d = Decision(
        workflow=workflow,
        task_type=task_type,
        tier=tier,
        risk_class=risk,
        latency_slo_ms=slo,
        n=seg_n,
        monthly_units=monthly,
        mean_expected_value=mean_ev,
        incumbent=ref.model,
        current_success_rate=cur_rate,
        current_cost_per_unit=cur_cpu,
        current_cost_per_success=seg_cost / seg_s if seg_s else None,
        action=Action.KEEP,
        model=ref.model,
        reason="",
        margin=margin,
        alpha=settings.alpha,
        models=models,
    )
    if seg_n < settings.min_segment_units or ref.n < settings.min_units or ref.successes == 0:
        d.action = Action.INSUFFICIENT_DATA
        why = (
            f"{seg_n} work units (need {settings.min_segment_units})"
            if seg_n < settings.min_segment_units
            else f"incumbent {ref.model} has {ref.n} units and {ref.successes} successes"
        )
        d.reason = f"too little data to route: {why}; traffic left as it is"
        return d
    if len(models) == 1:
        d.reason = f"only {ref.model} has served this segment; nothing to compare"
        return d
    by_row = {str(r["model"]): r for r in rows}
    ref_cps = _cps(by_row[ref.model])
    candidates = [m for m in models[1:] if m.eligible]
    k = max(len(candidates), 1)
    passing: list[tuple[ModelEvidence, float, float, float | None]] = []
    for m in candidates:
        c = _cps(by_row[m.model])
        p_cost = stats.cheaper_per_success_p(ref_cps, c)
        p_ni = stats.non_inferiority_p(ref.successes, ref.n, m.successes, m.n, margin)
        p_low = (
            stats.lower_success_p(ref.successes, ref.n, m.successes, m.n)
            if tier is Tier.HIGH_STAKES
            else None
        )
        safe = p_low is None or p_low >= settings.alpha
        if p_cost < settings.alpha / k and p_ni < settings.alpha / k and safe:
            passing.append((m, p_cost, p_ni, p_low))
    if passing:
        m, p_cost, p_ni, p_low = min(passing, key=lambda t: (t[0].cost_per_success or math.inf, t[0].model))
        _project(d, m, monthly)
        d.action, d.model = Action.SWITCH, m.model
        d.p_cheaper, d.p_non_inferior, d.p_lower = p_cost, p_ni, p_low
        d.reason = (
            f"{m.model} costs {m.cost_per_success:.4g} per successful outcome vs {ref.cost_per_success:.4g} "
            f"on {ref.model} (p = {p_cost:.2g}); success {m.success_rate:.1%} vs {ref.success_rate:.1%}, "
            f"non-inferior at margin {margin:.0%} (p = {p_ni:.2g})"
        )
        return d
    promising = _promising(ref, models[1:], tier, margin, settings)
    if promising:
        cand = max(promising, key=lambda m: (ref.cost_per_unit - m.cost_per_unit, m.model))
        plan = _plan_experiment(ref, cand, tier, daily, settings)
        _project(d, cand, monthly, experiment=True)
        if not plan.decides_within_max_days:
            d.action, d.model, d.not_testable = Action.KEEP, ref.model, plan
            need = (
                f"{plan.units_needed:,} work units, {plan.days:,} days at {plan.traffic_share:.0%} of traffic"
                if plan.days >= 0
                else "more units than any volume gives (no difference left to detect)"
            )
            d.reason = (
                f"keep (not testable at this volume): {cand.model} looks cheaper per successful outcome "
                f"({cand.n} units), but an experiment would need {need}, against a limit of "
                f"{settings.max_days} days; no traffic is split"
            )
            return d
        d.action, d.model = Action.EXPERIMENT, ref.model
        d.experiment = plan
        d.reason = (
            f"{cand.model} looks cheaper per successful outcome but the evidence is not clear yet "
            f"({cand.n} units); run the experiment ({plan.traffic_share:.0%} of traffic for {plan.days} days)"
        )
        return d
    worse = [m for m in candidates if (m.cost_per_success or math.inf) < (ref.cost_per_success or math.inf)]
    lower = {
        m.model: p
        for m in worse
        if tier is Tier.HIGH_STAKES
        and (p := stats.lower_success_p(ref.successes, ref.n, m.successes, m.n)) < settings.alpha
    }
    why = [f"{m} has a significantly lower success rate (p = {p:.2g})" for m, p in lower.items()]
    rest = [m.model for m in worse if m.model not in lower]
    if rest:
        why.append(
            f"{', '.join(rest)} fail{'s' if len(rest) == 1 else ''} the success margin of {margin:.0%}"
        )
    d.reason = (
        f"cheaper per successful outcome, but {'; '.join(why)}; keep {ref.model}"
        if worse
        else f"no cheaper model per successful outcome than {ref.model}"
    )
    return d


def _promising(
    ref: ModelEvidence, others: Iterable[ModelEvidence], tier: Tier, margin: float, settings: RoutingSettings
) -> list[ModelEvidence]:
    out = []
    for m in others:
        if m.unpriced_units or "latency" in m.note or m.cost_per_unit >= ref.cost_per_unit:
            continue
        if m.n >= settings.min_units and m.successes > 0:
            if m.success_rate < ref.success_rate - margin:
                continue
            if (m.cost_per_success or math.inf) >= (ref.cost_per_success or math.inf):
                continue
            if (
                tier is Tier.HIGH_STAKES
                and stats.lower_success_p(ref.successes, ref.n, m.successes, m.n) < settings.alpha
            ):
                continue
        out.append(m)
    return out


def _project(d: Decision, m: ModelEvidence, monthly: float, *, experiment: bool = False) -> None:
    """Monthly saving and success change; the saving's 95% interval carries the uncertainty of the
    candidate's mean cost per unit (the current mix's cost is observed, not estimated)."""
    gap = d.current_cost_per_unit - m.cost_per_unit
    if experiment:
        # An experiment changes next to nothing until it decides; its upside is shown, not counted.
        d.potential_monthly_saving = monthly * gap
        return
    half = 1.959963984540054 * m.cost_per_unit_se
    d.monthly_saving = monthly * gap
    d.monthly_saving_low = monthly * (gap - half)
    d.monthly_saving_high = monthly * (gap + half)
    d.monthly_success_change = monthly * (m.success_rate - d.current_success_rate)


def decide_all(
    rows: Iterable[Mapping[str, Any]], period_days: float, settings: RoutingSettings
) -> list[Decision]:
    """Decisions for every segment in ``rows`` (segment x model statistics), largest segments first."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r["workflow"]), str(r["task_type"])), []).append(r)
    out = [decide_segment(g, period_days, settings) for g in groups.values()]
    return sorted(out, key=lambda d: (-d.n, d.workflow, d.task_type))
