"""Draw the organisation, its work units with their hidden truth, and their calls.

Everything is vectorised numpy over one seeded ``Generator``: the same
parameters always give the same organisation, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yieldmeter.simulate.catalog import MODELS, Flagship, WorkflowSpec
from yieldmeter.simulate.scenarios import MIN_PER_TEAM, Scenario, SimulationParams

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
WEEKEND_WEIGHT = 0.12
ERROR_RATE = 0.012
MODEL_KEYS: tuple[str, ...] = tuple(MODELS)


@dataclass
class Org:
    """People: one row each. Arrays share their index."""

    user_id: np.ndarray
    team: np.ndarray
    workflow: np.ndarray  # index into scenario.workflows
    activity: np.ndarray  # mean 1; a few heavy users
    skill: np.ndarray  # logit shift of P(delivered)
    verbosity: np.ndarray  # multiplies prompt size
    team_names: list[str]


@dataclass
class Units:
    """Work units with their hidden truth. Arrays share their index."""

    work_unit_id: np.ndarray
    parent_id: np.ndarray  # session id or None
    workflow: np.ndarray  # index into scenario.workflows
    user: np.ndarray  # index into Org
    task_type: np.ndarray
    model: np.ndarray  # index into MODEL_KEYS
    position: np.ndarray  # position in its session
    p_delivered: np.ndarray
    delivered: np.ndarray
    state: np.ndarray  # state name
    true_value: np.ndarray
    expected_value: np.ndarray  # p_delivered x E[value | delivered]
    started_ns: np.ndarray
    ended_ns: np.ndarray
    n_calls: np.ndarray
    flagship: np.ndarray


@dataclass
class Calls:
    unit: np.ndarray  # index into Units
    index: np.ndarray  # position in its unit
    model: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    cached_tokens: np.ndarray
    start_ns: np.ndarray
    duration_ns: np.ndarray
    error: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _lognormal_mean1(rng: np.random.Generator, sigma: float, n: int) -> np.ndarray:
    return rng.lognormal(-0.5 * sigma * sigma, sigma, n) if sigma > 0 else np.ones(n)


def build_org(scenario: Scenario, users: int, rng: np.random.Generator) -> Org:
    """People spread over the scenario's teams, with skewed activity and a few heavy users."""
    shares = np.array([w.people_share for w in scenario.workflows], dtype=float)
    minimum = np.array([len(w.teams) * MIN_PER_TEAM for w in scenario.workflows])
    per_workflow = np.maximum(minimum, np.floor(users * shares / shares.sum()).astype(int))
    # Hand the rounding remainder (or excess) to the largest workflows.
    diff = users - int(per_workflow.sum())
    order = np.argsort(-shares, kind="stable")
    i = 0
    while diff != 0:
        j = order[i % len(order)]
        if diff > 0:
            per_workflow[j] += 1
            diff -= 1
        elif per_workflow[j] > minimum[j]:
            per_workflow[j] -= 1
            diff += 1
        i += 1
    teams: list[str] = []
    team_of: list[np.ndarray] = []
    wf_of: list[np.ndarray] = []
    team_skill: list[float] = []
    team_verbosity: list[float] = []
    for wi, (w, n) in enumerate(zip(scenario.workflows, per_workflow, strict=True)):
        k = len(w.teams)
        weights = rng.dirichlet(np.full(k, 4.0))
        sizes = MIN_PER_TEAM + np.floor(weights * (n - k * MIN_PER_TEAM)).astype(int)
        sizes[int(np.argmax(weights))] += n - int(sizes.sum())
        for t, size in zip(w.teams, sizes, strict=True):
            team_of.append(np.full(size, len(teams)))
            wf_of.append(np.full(size, wi))
            teams.append(t)
            team_skill.append(float(rng.normal(0.0, 0.45)))
            team_verbosity.append(float(rng.lognormal(0.0, 0.3)))
    team = np.concatenate(team_of)
    workflow = np.concatenate(wf_of)
    n = len(team)
    activity = rng.lognormal(0.0, 0.8, n)
    heavy = rng.random(n) < 0.03
    activity[heavy] *= 4.0
    activity /= activity.mean()
    skill = np.asarray(team_skill)[team] + rng.normal(0.0, 0.6, n)
    verbosity = np.asarray(team_verbosity)[team] * rng.lognormal(0.0, 0.35, n)
    user_id = np.array([f"u-{i:04d}" for i in range(n)], dtype=object)
    return Org(user_id, np.asarray(teams, dtype=object)[team], workflow, activity, skill, verbosity, teams)


def _day_weights(params: SimulationParams, round_the_clock: bool) -> np.ndarray:
    start_dow = params.start.weekday()
    dow = (start_dow + np.arange(params.days)) % 7
    weekend = dow >= 5
    return np.where(weekend, 0.7 if round_the_clock else WEEKEND_WEIGHT, 1.0)


def _hours(rng: np.random.Generator, n: int, round_the_clock: bool) -> np.ndarray:
    """Hour of day (UTC, float): two working-day peaks, or a flatter round-the-clock profile."""
    if round_the_clock:
        base = rng.uniform(0.0, 24.0, n)
        busy = rng.random(n) < 0.6
        base[busy] = rng.normal(13.0, 3.5, int(busy.sum()))
        return np.mod(base, 24.0)
    peak = np.where(rng.random(n) < 0.55, 10.0, 14.5)
    return np.clip(rng.normal(peak, 1.7), 6.0, 20.5)


def _choice(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
    return np.searchsorted(np.cumsum(probs / probs.sum()), rng.random(n), side="right").clip(
        0, len(probs) - 1
    )


def _group_offsets(lengths: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Exclusive cumulative sum of ``values`` restarting at each group of ``lengths``."""
    csum = np.cumsum(values)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    before = np.concatenate(([0], csum))[starts]
    return csum - values - before


def _workflow_units(
    wi: int,
    w: WorkflowSpec,
    org: Org,
    params: SimulationParams,
    flagship: Flagship | None,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    members = np.flatnonzero(org.workflow == wi)
    day_w = _day_weights(params, w.round_the_clock)
    lam = org.activity[members] * w.sessions_per_day * day_w.sum()
    n_sessions = rng.poisson(lam)
    s_user = np.repeat(members, n_sessions)
    ns = len(s_user)
    s_day = _choice(rng, day_w, ns)
    s_hour = _hours(rng, ns, w.round_the_clock)
    if w.units_per_session > 1:
        s_len = np.minimum(rng.geometric(1.0 / w.units_per_session, ns), 60)
    else:
        s_len = np.ones(ns, dtype=int)
    # Each session keeps one model: the person's habit, drawn around the workflow's mix.
    model_keys = [MODEL_KEYS.index(m) for m, _, _ in w.models]
    shares = np.array([s for _, s, _ in w.models])
    user_pref = rng.dirichlet(shares * 12.0 + 0.05, len(org.user_id))
    u_cum = np.cumsum(user_pref[s_user], axis=1)
    s_model_local = (u_cum < rng.random(ns)[:, None]).sum(axis=1).clip(0, len(model_keys) - 1)
    flag_session = np.zeros(ns, dtype=bool)
    if flagship is not None:
        analysts = members[np.argsort(-org.activity[members], kind="stable")]
        s_user = np.append(s_user, analysts[0])
        s_day = np.append(s_day, min(flagship.day, params.days - 1))
        s_hour = np.append(s_hour, flagship.hour)
        s_len = np.append(s_len, flagship.questions)
        s_model_local = np.append(s_model_local, [m for m, _, _ in w.models].index("claude-3-5-sonnet"))
        flag_session = np.append(flag_session, True)
        ns += 1
    n = int(s_len.sum())
    sess = np.repeat(np.arange(ns), s_len)
    position = np.arange(n) - np.repeat(np.cumsum(s_len) - s_len, s_len)
    user = s_user[sess]
    model_local = s_model_local[sess]
    task_shares = np.array([s for _, s, _ in w.task_types])
    task_local = _choice(rng, task_shares, n)
    task_eff = np.array([e for _, _, e in w.task_types])[task_local]
    model_eff = np.array([e for _, _, e in w.models])[model_local]
    logit = w.base_logit + org.skill[user] + model_eff + task_eff + rng.normal(0.0, 0.4, n)
    if w.model_task_effects:
        # per (model, task type) effects; no draw, so workflows without them are unchanged
        models_, tasks_ = [m for m, _, _ in w.models], [t for t, _, _ in w.task_types]
        pair = np.zeros((len(models_), len(tasks_)))
        for m, t, e in w.model_task_effects:
            pair[models_.index(m), tasks_.index(t)] += e
        logit = logit + pair[model_local, task_local]
    p = _sigmoid(logit)
    delivered = rng.random(n) < p
    names = list(w.state_names)
    d_names, d_p = list(w.delivered_states), np.array(list(w.delivered_states.values()))
    f_names, f_p = list(w.failed_states), np.array(list(w.failed_states.values()))
    d_pick = np.array([names.index(s) for s in d_names])[_choice(rng, d_p, n)]
    f_pick = np.array([names.index(s) for s in f_names])[_choice(rng, f_p, n)]
    state = np.where(delivered, d_pick, f_pick)
    flag_unit = flag_session[sess]
    if flagship is not None and flag_unit.any():
        fpos = position[flag_unit]
        fstate = np.full(len(fpos), names.index("unused"))
        fstate[np.isin(fpos, flagship.copied)] = names.index("memo")
        fstate[fpos == flagship.moved] = names.index("moved")
        state[flag_unit] = fstate
        delivered[flag_unit] = fstate != names.index("unused")
    value_mult = np.array([w.state(s).value_mult for s in names])
    true_value = w.unit_value * value_mult[state] * _lognormal_mean1(rng, w.value_sigma, n)
    true_value[~np.array([w.state(s).delivered for s in names])[state]] = 0.0
    mean_mult = sum(p_ * w.state(s).value_mult for s, p_ in w.delivered_states.items())
    expected_value = p * w.unit_value * mean_mult
    prefix = "".join(part[0] for part in w.name.split("-")) + "-"
    session_ids = np.array([f"sess-{prefix}{i:06d}" for i in range(ns)], dtype=object)
    if flagship is not None:
        session_ids[-1] = flagship.session_id
    parent = session_ids[sess] if w.units_per_session > 1 else np.full(n, None, dtype=object)
    session_start = (
        int(params.start.timestamp()) * NS_PER_S
        + s_day * NS_PER_DAY
        + (s_hour * 3600 * NS_PER_S).astype(np.int64)
    )
    return {
        "workflow": np.full(n, wi),
        "user": user,
        "task_type": np.array([t for t, _, _ in w.task_types], dtype=object)[task_local],
        "model": np.asarray(model_keys)[model_local],
        "position": position,
        "session": sess,
        "session_start": session_start[sess],
        "s_len": s_len,
        "parent": parent,
        "p": p,
        "delivered": delivered,
        "state": np.asarray(names, dtype=object)[state],
        "state_idx": state,
        "true_value": true_value,
        "expected_value": expected_value,
        "flagship": flag_unit,
        "prefix": np.full(n, prefix, dtype=object),
    }


def _calls_for(
    w: WorkflowSpec, u: dict[str, np.ndarray], org: Org, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    names = list(w.state_names)
    min_calls = np.array([w.state(s).min_calls for s in names])[u["state_idx"]]
    extra = np.array([w.state(s).extra_calls for s in names])[u["state_idx"]]
    n_calls = min_calls + rng.geometric(1.0 / (1.0 + extra)) - 1
    m = int(n_calls.sum())
    unit_local = np.repeat(np.arange(len(n_calls)), n_calls)
    index = np.arange(m) - np.repeat(np.cumsum(n_calls) - n_calls, n_calls)
    user = u["user"][unit_local]
    model = u["model"][unit_local]
    position = u["position"][unit_local]
    med_in, sd_in = w.input_tokens
    med_out, sd_out = w.output_tokens
    inp = med_in * org.verbosity[user] * rng.lognormal(0.0, sd_in, m) * (1.0 + w.context_growth * index)
    inp = inp + w.session_growth * position
    out = med_out * rng.lognormal(0.0, sd_out, m) * np.sqrt(org.verbosity[user])
    inp = np.maximum(1, inp.round()).astype(np.int64)
    out = np.maximum(1, out.round()).astype(np.int64)
    caches = np.array([MODELS[k].caches for k in MODEL_KEYS])[model]
    warm = (index > 0) | (position > 0)
    cached = np.where(caches & warm, inp * w.cache_fraction * rng.uniform(0.6, 1.0, m), 0.0)
    cached = np.minimum(cached.round().astype(np.int64), inp)
    error = rng.random(m) < ERROR_RATE
    out = np.where(error, 0, out)
    ttft = np.array([MODELS[k].ttft_ms for k in MODEL_KEYS])[model]
    tps = np.array([MODELS[k].tokens_per_s for k in MODEL_KEYS])[model]
    dur_ms = ttft * rng.lognormal(0.0, 0.3, m) + out / tps * 1000.0 * rng.lognormal(0.0, 0.2, m) + inp / 20.0
    dur_ns = (dur_ms * 1e6).astype(np.int64)
    gap_ns = (w.gap_ms * rng.lognormal(0.0, 0.7, m) * 1e6).astype(np.int64)
    rel = _group_offsets(n_calls, dur_ns + gap_ns)
    span = rel[np.cumsum(n_calls) - 1] + dur_ns[np.cumsum(n_calls) - 1]
    # Units of one session follow each other, with the person's think time between them.
    think = (rng.lognormal(np.log(150.0), 0.6, len(n_calls)) * NS_PER_S).astype(np.int64)
    unit_offset = _group_offsets(u["s_len"], span + think)
    started = u["session_start"] + unit_offset
    return {
        "unit_local": unit_local,
        "index": index,
        "model": model,
        "input": inp,
        "output": out,
        "cached": cached,
        "start": started[unit_local] + rel,
        "duration": dur_ns,
        "error": error,
        "n_calls": n_calls,
        "started": started,
        "ended": started + span,
    }


def generate(scenario: Scenario, params: SimulationParams) -> tuple[Org, Units, Calls]:
    """The organisation, its work units (with truth) and its calls, for ``params``."""
    rng = np.random.default_rng(params.seed)
    org = build_org(scenario, params.resolved_users(), rng)
    unit_parts: list[dict[str, np.ndarray]] = []
    call_parts: list[dict[str, np.ndarray]] = []
    offset = 0
    for wi, w in enumerate(scenario.workflows):
        flagship = Flagship() if scenario.flagship and w.name == "board-analysis" else None
        u = _workflow_units(wi, w, org, params, flagship, rng)
        c = _calls_for(w, u, org, rng)
        u["n_calls"] = c["n_calls"]
        u["started"] = c["started"]
        u["ended"] = c["ended"]
        c["unit"] = c["unit_local"] + offset
        offset += len(u["user"])
        unit_parts.append(u)
        call_parts.append(c)

    def cat(parts: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
        return np.concatenate([p[key] for p in parts])

    n_units = offset
    prefix = cat(unit_parts, "prefix")
    # Ids in time order per workflow prefix read like a case system's.
    seq = np.concatenate([np.arange(len(p["user"])) for p in unit_parts])
    wu_ids = np.array(
        [f"wu-{p}{i:07d}" for p, i in zip(prefix.tolist(), seq.tolist(), strict=True)], dtype=object
    )
    units = Units(
        work_unit_id=wu_ids,
        parent_id=cat(unit_parts, "parent"),
        workflow=cat(unit_parts, "workflow"),
        user=cat(unit_parts, "user"),
        task_type=cat(unit_parts, "task_type"),
        model=cat(unit_parts, "model"),
        position=cat(unit_parts, "position"),
        p_delivered=cat(unit_parts, "p"),
        delivered=cat(unit_parts, "delivered"),
        state=cat(unit_parts, "state"),
        true_value=cat(unit_parts, "true_value"),
        expected_value=cat(unit_parts, "expected_value"),
        started_ns=cat(unit_parts, "started"),
        ended_ns=cat(unit_parts, "ended"),
        n_calls=cat(unit_parts, "n_calls"),
        flagship=cat(unit_parts, "flagship"),
    )
    assert len(units.work_unit_id) == n_units
    calls = Calls(
        unit=cat(call_parts, "unit"),
        index=cat(call_parts, "index"),
        model=cat(call_parts, "model"),
        input_tokens=cat(call_parts, "input"),
        output_tokens=cat(call_parts, "output"),
        cached_tokens=cat(call_parts, "cached"),
        start_ns=cat(call_parts, "start"),
        duration_ns=cat(call_parts, "duration"),
        error=cat(call_parts, "error"),
    )
    return org, units, calls
