"""What the organisation's systems would record about the hidden truth.

Signals, human effort and outcomes are drawn from each unit's true state with
noise: explicit feedback is only captured for some units, implicit signals fire
with a probability per state, effort is logged for most units with measurement
noise, and outcomes arrive per period or per confirmed case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yieldmeter.simulate.catalog import Flagship, WorkflowSpec
from yieldmeter.simulate.engine import NS_PER_DAY, NS_PER_S, Org, Units
from yieldmeter.simulate.scenarios import Scenario, SimulationParams

NS_PER_MIN = 60 * NS_PER_S
AUDIT_ACCURACY = 0.97


@dataclass
class Observed:
    signals: dict[str, np.ndarray]
    effort: dict[str, np.ndarray]
    outcomes: list[dict[str, object]]
    true_effort_minutes: np.ndarray  # per unit, before logging


def _rows(parts: list[dict[str, np.ndarray]], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not parts:
        return {k: np.array([], dtype=object) for k in keys}
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


SIGNAL_KEYS = ("unit", "kind", "ts", "value", "actor", "source")
EFFORT_KEYS = ("unit", "kind", "ts", "minutes", "person")


def _signals_for(
    wi: int, w: WorkflowSpec, units: Units, org: Org, rng: np.random.Generator
) -> list[dict[str, np.ndarray]]:
    idx = np.flatnonzero((units.workflow == wi) & ~units.flagship)
    if len(idx) == 0:
        return []
    names = list(w.state_names)
    state_idx = np.array([names.index(s) for s in units.state[idx]]) if len(idx) else np.array([], dtype=int)
    captured = rng.random(len(idx)) < w.explicit_capture
    parts = []
    for rule in w.signals:
        p = np.array([rule.p.get(s, 0.0) for s in names])[state_idx]
        hit = rng.random(len(idx)) < p
        if rule.explicit:
            hit &= captured
        sel = idx[hit]
        k = len(sel)
        if k == 0:
            continue
        delay = rule.delay_minutes * rng.lognormal(0.0, rule.delay_sigma, k) * NS_PER_MIN
        value = np.full(k, np.nan)
        if rule.kind == "rated":
            good = units.delivered[sel]
            value = np.where(good, rng.choice([4.0, 5.0], k, p=[0.4, 0.6]), rng.choice([1.0, 2.0, 3.0], k))
        actor = org.user_id[units.user[sel]] if rule.explicit else np.full(k, None, dtype=object)
        parts.append(
            {
                "unit": sel,
                "kind": np.full(k, rule.kind, dtype=object),
                "ts": units.ended_ns[sel] + delay.astype(np.int64),
                "value": value,
                "actor": actor,
                "source": np.full(k, rule.source, dtype=object),
            }
        )
    # Labelled outcomes that calibration learns from: a quality-assurance sample (3% wrong), and
    # where the system of record confirms outcomes, its confirmations (both ways, always right).
    u = rng.random(len(idx))
    audited = u < w.audit_rate
    confirmed = (u >= w.audit_rate) & (u < w.audit_rate + w.confirm_rate)
    for sel, accuracy, actor, source, days in (
        (idx[audited], AUDIT_ACCURACY, f"qa-{w.name}", "qa-audit", (3, 12)),
        (idx[confirmed], 1.0, None, "case-mgmt", (10, 25)),
    ):
        k = len(sel)
        if k == 0:
            continue
        truth = units.delivered[sel] ^ (rng.random(k) >= accuracy)
        parts.append(
            {
                "unit": sel,
                "kind": np.where(truth, "value_confirmed", "value_denied").astype(object),
                "ts": units.ended_ns[sel] + (rng.uniform(*days, k) * NS_PER_DAY).astype(np.int64),
                "value": np.full(k, np.nan),
                "actor": np.full(k, actor, dtype=object),
                "source": np.full(k, source, dtype=object),
            }
        )
    return parts


def _flagship_signals(units: Units, org: Org, flagship: Flagship) -> list[dict[str, np.ndarray]]:
    """The board story, recorded exactly: 3 answers copied into the memo, 1 of them moved the board."""
    idx = np.flatnonzero(units.flagship)
    if len(idx) == 0:
        return []
    pos = units.position[idx]
    user = org.user_id[units.user[idx[0]]]
    rows: list[tuple[int, str, int, str | None, str]] = []
    for i, p in zip(idx.tolist(), pos.tolist(), strict=True):
        end = int(units.ended_ns[i])
        if p < flagship.questions - 1:
            rows.append((i, "continued", end + 60 * NS_PER_S, None, "analyst-workbench"))
        if p in flagship.copied:
            rows.append((i, "copied", end + 2 * NS_PER_MIN, user, "analyst-workbench"))
            rows.append((i, "used_in_artifact", end + 3 * 60 * NS_PER_MIN, user, "docs"))
        elif p % 4 == 1:
            rows.append((i, "rephrased", end + 40 * NS_PER_S, None, "analyst-workbench"))
        if p == flagship.moved:
            rows.append((i, "referenced_later", end + 2 * NS_PER_DAY, None, "docs"))
            rows.append((i, "decision_reached", end + 6 * NS_PER_DAY, None, "board-portal"))
    k = len(rows)
    return [
        {
            "unit": np.array([r[0] for r in rows]),
            "kind": np.array([r[1] for r in rows], dtype=object),
            "ts": np.array([r[2] for r in rows], dtype=np.int64),
            "value": np.full(k, np.nan),
            "actor": np.array([r[3] for r in rows], dtype=object),
            "source": np.array([r[4] for r in rows], dtype=object),
        }
    ]


def _effort_for(
    wi: int, w: WorkflowSpec, units: Units, org: Org, rng: np.random.Generator, true_minutes: np.ndarray
) -> list[dict[str, np.ndarray]]:
    idx = np.flatnonzero(units.workflow == wi)
    parts = []
    names = list(w.state_names)
    state_of = units.state[idx]
    for s in names:
        sel_all = idx[state_of == s]
        for e in w.state(s).effort:
            sel = sel_all[rng.random(len(sel_all)) < e.p]
            k = len(sel)
            if k == 0:
                continue
            minutes = e.median_minutes * rng.lognormal(0.0, e.sigma, k)
            np.add.at(true_minutes, sel, minutes)
            logged = rng.random(k) < w.effort_logged
            sel, minutes = sel[logged], minutes[logged]
            k = len(sel)
            # Time tracking is approximate: rounded to the half minute, with a little noise.
            shown = np.maximum(0.5, np.round(minutes * rng.lognormal(0.0, 0.08, k) * 2) / 2)
            parts.append(
                {
                    "unit": sel,
                    "kind": np.full(k, e.kind, dtype=object),
                    "ts": units.ended_ns[sel] + (rng.uniform(5, 240, k) * NS_PER_MIN).astype(np.int64),
                    "minutes": shown,
                    "person": org.user_id[units.user[sel]],
                }
            )
    return parts


def _outcomes_for(
    wi: int, w: WorkflowSpec, units: Units, params: SimulationParams, rng: np.random.Generator
) -> list[dict[str, object]]:
    spec = w.outcome
    if spec is None:
        return []
    idx = np.flatnonzero(units.workflow == wi)
    out: list[dict[str, object]] = []
    per_unit = np.zeros(len(idx), dtype=bool)
    if spec.per_unit_states:
        in_state = np.isin(units.state[idx], spec.per_unit_states)
        per_unit = in_state & ((rng.random(len(idx)) < spec.per_unit_p) | units.flagship[idx])
        for i in idx[per_unit].tolist():
            value = float(units.true_value[i])
            end = int(units.ended_ns[i])
            out.append(
                {
                    "outcome_id": f"oc-{units.work_unit_id[i]}",
                    "workflow": w.name,
                    "work_unit_id": units.work_unit_id[i],
                    "period_start": end,
                    "period_end": end + NS_PER_DAY,
                    "metric": spec.per_unit_metric,
                    "baseline_value": round(value, 2) if spec.monetary else None,
                    "observed_value": 0.0 if spec.monetary else spec.strategic_rating,
                    "unit": spec.unit if spec.monetary else "decision",
                    "value_dimension": w.value_dimension,
                    "monetary_value": round(value, 2) if spec.monetary else None,
                    "attribution_share": 1.0,
                    "evidence_level": spec.evidence_level,
                    "evidence_ref": f"{spec.evidence_ref} ({units.work_unit_id[i]})",
                    "benefit_owner": spec.benefit_owner,
                }
            )
    if spec.period_days <= 0:
        return out
    start_ns = int(params.start.timestamp()) * NS_PER_S
    end_ns = start_ns + params.days * NS_PER_DAY
    rest = idx[~per_unit]
    p_start = start_ns
    k = 0
    while p_start < end_ns:
        p_end = min(end_ns, p_start + spec.period_days * NS_PER_DAY)
        in_period = rest[(units.started_ns[rest] >= p_start) & (units.started_ns[rest] < p_end)]
        # The outcome report states the whole improvement; the AI's part is attribution_share of it,
        # so attributed value reconciles with the true value of the period's units (plus noise).
        true_sum = float(units.true_value[in_period].sum())
        measured = true_sum * float(rng.lognormal(0.0, 0.1)) / spec.attribution_share
        baseline = spec.baseline_value
        observed = (
            None
            if baseline is None
            else round(baseline * (1 - spec.improvement * float(rng.lognormal(0, 0.1))), 3)
        )
        out.append(
            {
                "outcome_id": f"oc-{w.name}-{k:03d}",
                "workflow": w.name,
                "work_unit_id": None,
                "period_start": p_start,
                "period_end": p_end,
                "metric": spec.metric,
                "baseline_value": baseline,
                "observed_value": observed,
                "unit": spec.unit,
                "value_dimension": w.value_dimension,
                "monetary_value": round(measured, 2) if spec.monetary else None,
                "attribution_share": spec.attribution_share,
                "evidence_level": spec.evidence_level,
                "evidence_ref": spec.evidence_ref,
                "benefit_owner": spec.benefit_owner,
            }
        )
        p_start = p_end
        k += 1
    return out


def observe(scenario: Scenario, params: SimulationParams, org: Org, units: Units) -> Observed:
    """Signals, effort and outcomes for ``units``, from their own random stream (seed + 1)."""
    rng = np.random.default_rng([params.seed, 1])
    sig_parts: list[dict[str, np.ndarray]] = []
    eff_parts: list[dict[str, np.ndarray]] = []
    outcomes: list[dict[str, object]] = []
    true_minutes = np.zeros(len(units.work_unit_id))
    for wi, w in enumerate(scenario.workflows):
        sig_parts += _signals_for(wi, w, units, org, rng)
        eff_parts += _effort_for(wi, w, units, org, rng, true_minutes)
        outcomes += _outcomes_for(wi, w, units, params, rng)
    if scenario.flagship:
        sig_parts += _flagship_signals(units, org, Flagship())
    return Observed(_rows(sig_parts, SIGNAL_KEYS), _rows(eff_parts, EFFORT_KEYS), outcomes, true_minutes)
