"""FinOps accuracy: forecast backtests, anomaly precision/recall against the simulator's truth.

Forecast: the simulator (``enterprise`` scenario, 240 days, seed 42) gives every
call's tokens and model; daily cost per workflow and per model is tokens x an
illustrative list price per model (USD per million tokens, below). From rolling
origins, fit :func:`yieldmeter.finops.forecast.fit_forecast` on the days before
and compare with what the simulator drew:

- ``long``: all the history before the origin (90 to 150 days), horizons 30
  and 90 days;
- ``short``: only the last 14, 21 or 35 days before the origin (a team that
  just started), horizons 30 and 90 days.

Per case:

- ``total_mape``: mean |forecast horizon total - actual| / actual over series x origins
  (the budget question: how much will this period cost); ``total_mape_p90`` its 90th percentile;
- ``seasonal_naive_total_mape``: the same for "repeat the last week", the bar to beat;
- ``daily_wape``: sum |f - a| / sum a over every forecast day;
- ``coverage_total_80/95``: share of horizon totals inside the period interval;
- ``coverage_daily_80/95``: share of days inside the daily intervals;
- ``max_upper_over_actual``: the largest 80% upper bound / actual (a bounded band stays small);
- ``collapsed``: series whose last 28 forecast days sum to under 10% of what happened (a trend
  extrapolated to zero).

Cost per successful outcome: per workflow and origin (every 15 days from day
60), the trailing 28-day ratio of cost to delivered work units (what
:func:`~yieldmeter.finops.forecast.cpso_forecast` forecasts) against the next
30 days' actual ratio; the ratio over all the history for contrast;
``cpso_mape``.

Anomalies:

- spikes: 20 teams x 84 days of daily spend with a weekly pattern and 15%
  log-normal noise; 30 spikes of 2x to 5x planted in the last 42 days, five
  seeds; :func:`yieldmeter.finops.anomalies.spikes` over those 42 days. A
  second run plants 1.5x spikes to show where detection stops;
- runaway agents: two 30-day simulations (seeds 42 and 7);
  :func:`~yieldmeter.finops.anomalies.runaway_agents` over the last 28 days
  with the simulator's task types and signals, against the truth's
  ``is_loop`` units (the loops the simulator planted); also without the
  "nothing accepted" condition and with the workflow-only norm, to show what
  each part buys;
- model-mix changes: in the same simulations, on 12 planted workflow-days of
  the last 14, 60% (then 35%) of the workflow's calls move to a model it rarely uses;
  :func:`~yieldmeter.finops.anomalies.model_mix` against the planted days.

Precision = true flags / flags, recall = true flags found / truth.

    python benchmarks/bench_finops.py      # writes benchmarks/results/finops.json
"""

from __future__ import annotations

import json
import platform
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
#: Illustrative list prices, USD per million input / output tokens (cost is linear in them).
PRICES = {
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "o3-mini": (1.1, 4.4),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "gemini-1.5-flash": (0.075, 0.3),
    "acme-sre-llm": (0.4, 0.8),
}
DAYS = 240
#: (case, horizon, origins, history lengths: None = all the history before the origin)
FORECAST_CASES = (
    ("long", 30, (90, 100, 110, 120), None),
    ("long", 90, (120, 135, 150), None),
    ("short", 30, (60, 100, 150), (14, 21, 35)),
    ("short", 90, (60, 100, 150), (14, 21, 35)),
)


def simulation(days: int, seed: int) -> dict[str, Any]:
    """The simulator's organisation, units, calls (with an illustrative cost) and signals."""
    from yieldmeter.simulate.engine import MODEL_KEYS, NS_PER_DAY, generate
    from yieldmeter.simulate.observe import observe
    from yieldmeter.simulate.scenarios import SimulationParams, check_params

    params = SimulationParams(days=days, seed=seed)
    scenario = check_params(params)
    org, units, calls = generate(scenario, params)
    p_in = np.array([PRICES.get(m, (0.0, 0.0))[0] for m in MODEL_KEYS])
    p_out = np.array([PRICES.get(m, (0.0, 0.0))[1] for m in MODEL_KEYS])
    cost = (calls.input_tokens * p_in[calls.model] + calls.output_tokens * p_out[calls.model]) / 1e6
    start_ns = int(params.start.timestamp() * 1e9)
    return {
        "params": params,
        "scenario": scenario,
        "org": org,
        "units": units,
        "calls": calls,
        "cost": cost,
        "day": ((calls.start_ns - start_ns) // NS_PER_DAY).astype(int),
        "unit_day": ((units.started_ns - start_ns) // NS_PER_DAY).astype(int),
        "model_keys": MODEL_KEYS,
        "observed": observe(scenario, params, org, units),
    }


def simulated_series(sim: dict[str, Any]) -> dict[str, np.ndarray]:
    days, day, cost, calls = sim["params"].days, sim["day"], sim["cost"], sim["calls"]
    ok = (day >= 0) & (day < days)
    out: dict[str, np.ndarray] = {}
    wf = sim["units"].workflow[calls.unit]
    for i, w in enumerate(sim["scenario"].workflows):
        m = ok & (wf == i)
        out[f"workflow:{w.name}"] = np.bincount(day[m], weights=cost[m], minlength=days)
    for i, name in enumerate(sim["model_keys"]):
        m = ok & (calls.model == i)
        if m.any() and cost[m].sum() > 0:
            out[f"model:{name}"] = np.bincount(day[m], weights=cost[m], minlength=days)
    return {k: v for k, v in out.items() if v.sum() > 0}


def _backtest_case(series: dict[str, np.ndarray], h: int, origins: tuple[int, ...], lengths: Any) -> dict:
    from yieldmeter.finops.forecast import fit_forecast, total_interval

    ape, naive_ape, abs_err, actual_sum, upper, collapsed = [], [], 0.0, 0.0, [], 0
    inside: dict[str, list[bool]] = {"daily_80": [], "daily_95": [], "total_80": [], "total_95": []}
    for origin in origins:
        for length in lengths or (None,):
            lo = 0 if length is None else origin - length
            hist = {k: v[lo:origin].copy() for k, v in series.items() if v[lo:origin].sum() > 0}
            fc = fit_forecast(hist, h, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=origin))
            for key, f in fc.items():
                a = series[key][origin : origin + h]
                if a.sum() <= 0:
                    continue
                y = series[key]
                ape.append(abs(f["mean"].sum() - a.sum()) / a.sum())
                naive = np.tile(y[origin - 7 : origin], h // 7 + 1)[:h]
                naive_ape.append(abs(naive.sum() - a.sum()) / a.sum())
                abs_err += float(np.abs(f["mean"] - a).sum())
                actual_sum += float(a.sum())
                for lv in (80, 95):
                    inside[f"daily_{lv}"] += list((a >= f[f"lo-{lv}"]) & (a <= f[f"hi-{lv}"]))
                    _, t_lo, t_hi = total_interval(f, 0, h, lv)
                    inside[f"total_{lv}"].append(t_lo <= a.sum() <= t_hi)
                    if lv == 80:
                        upper.append(t_hi / a.sum())
                collapsed += int(f["mean"][-28:].sum() < 0.1 * a[-28:].sum())
    return {
        "forecasts": len(ape),
        "total_mape": float(np.mean(ape)),
        "total_mape_p90": float(np.quantile(ape, 0.9)),
        "seasonal_naive_total_mape": float(np.mean(naive_ape)),
        "daily_wape": abs_err / actual_sum,
        **{f"coverage_{k}": float(np.mean(v)) for k, v in inside.items()},
        "max_upper_over_actual": float(np.max(upper)),
        "collapsed": collapsed,
    }


def forecast_backtest(sim: dict[str, Any]) -> dict[str, Any]:
    series = simulated_series(sim)
    t0 = time.perf_counter()
    cases = {}
    for name, h, origins, lengths in FORECAST_CASES:
        key = f"{name}_{h}d"
        cases[key] = {
            "horizon_days": h,
            "origins": list(origins),
            "history_days": list(lengths) if lengths else "all before the origin",
            **_backtest_case(series, h, origins, lengths),
        }
    return {"series": len(series), "cases": cases, "seconds": round(time.perf_counter() - t0, 2)}


def cpso_backtest(sim: dict[str, Any]) -> dict[str, Any]:
    """Cost per delivered unit: the trailing 28 days' ratio (what cpso_forecast uses) and the ratio over
    all the history before the origin, each against the next 30 days' actual ratio, per workflow."""
    units, days = sim["units"], sim["params"].days
    unit_cost = np.bincount(sim["calls"].unit, weights=sim["cost"], minlength=len(units.work_unit_id))
    ud = sim["unit_day"]
    ape: dict[str, list[float]] = {"trailing_28d_ratio": [], "whole_history_ratio": []}
    for origin in range(60, days - 30, 15):
        for wi in range(len(sim["scenario"].workflows)):
            m = units.workflow == wi
            nxt = m & (ud >= origin) & (ud < origin + 30)
            if units.delivered[nxt].sum() == 0:
                continue
            actual = unit_cost[nxt].sum() / units.delivered[nxt].sum()
            for name, lo in (("trailing_28d_ratio", origin - 28), ("whole_history_ratio", 0)):
                past = m & (ud >= lo) & (ud < origin)
                if units.delivered[past].sum() and actual > 0:
                    forecast = unit_cost[past].sum() / units.delivered[past].sum()
                    ape[name].append(abs(forecast - actual) / actual)
    return {name: {"forecasts": len(v), "cpso_mape": float(np.mean(v))} for name, v in ape.items()}


def _spike_events(
    seed: int, factor: tuple[float, float], n_spikes: int = 30
) -> tuple[Any, set[tuple[str, str]]]:
    import ibis

    rng = np.random.default_rng(seed)
    start, days, teams = datetime(2026, 1, 5, tzinfo=UTC), 84, [f"team-{i:02d}" for i in range(20)]
    level = {t: rng.uniform(5, 200) for t in teams}
    cells = [(t, d) for t in teams for d in range(days - 42, days)]
    planted = {cells[i] for i in rng.choice(len(cells), n_spikes, replace=False)}
    rows: dict[str, list[Any]] = {"ts": [], "team": [], "model_cost": [], "tokens": []}
    for t in teams:
        for d in range(days):
            day = start + timedelta(days=d)
            usd = level[t] * (0.4 if day.weekday() >= 5 else 1.0) * float(np.exp(rng.normal(0, 0.15)))
            if (t, d) in planted:
                usd *= rng.uniform(*factor)
            rows["ts"].append(day + timedelta(hours=12))
            rows["team"].append(t)
            rows["model_cost"].append(usd)
            rows["tokens"].append(int(usd * 1e5))
    ev = ibis.memtable(rows, schema={"ts": "timestamp('UTC')", "team": "string", "model_cost": "float64",
                                      "tokens": "int64"})  # fmt: skip
    ev = ev.mutate(
        workflow=ibis.null("string"), model=ibis.null("string"), provider=ibis.null("string"),
        work_unit_id=ibis.null("string"),
    )  # fmt: skip
    truth = {(t, (start + timedelta(days=d)).date().isoformat()) for t, d in planted}
    return (ev, start + timedelta(days=days - 42), start + timedelta(days=days)), truth


def spike_precision_recall(factor: tuple[float, float]) -> dict[str, Any]:
    from yieldmeter.finops.anomalies import spikes

    tp = fp = planted = 0
    for seed in range(5):
        (ev, start, end), truth = _spike_events(seed, factor)
        found = {(r["key"], r["day"]) for r in spikes(ev, start, end) if r["kind"] == "spend_spike"}
        tp += len(found & truth)
        fp += len(found - truth)
        planted += len(truth)
    return {
        "spike_factor": list(factor),
        "planted": planted,
        "reported": tp + fp,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / planted,
    }


def _call_events(sim: dict[str, Any], model: np.ndarray | None = None) -> Any:
    """The simulation's calls as spend events (one row per call), for the detectors."""
    import ibis

    calls, units, params = sim["calls"], sim["units"], sim["params"]
    wf_names = np.array([w.name for w in sim["scenario"].workflows], dtype=object)
    keys = np.asarray(sim["model_keys"], dtype=object)
    start_ns = int(params.start.timestamp() * 1e9)
    ts = [params.start + timedelta(microseconds=int((t - start_ns) // 1000)) for t in calls.start_ns]
    return ibis.memtable(
        {
            "ts": ts,
            "workflow": wf_names[units.workflow[calls.unit]].tolist(),
            "model": keys[calls.model if model is None else model].tolist(),
            "work_unit_id": units.work_unit_id[calls.unit].tolist(),
            "user_id": sim["org"].user_id[units.user[calls.unit]].tolist(),
            "calls": np.ones(len(calls.unit), dtype=np.int64),
            "model_cost": sim["cost"],
            "tokens": (calls.input_tokens + calls.output_tokens).astype(np.int64),
        },
        schema={"ts": "timestamp('UTC')", "workflow": "string", "model": "string", "work_unit_id": "string",
                "user_id": "string", "calls": "int64", "model_cost": "float64", "tokens": "int64"},
    )  # fmt: skip


def _loops(sim: dict[str, Any]) -> set[str]:
    units = sim["units"]
    loop = np.zeros(len(units.work_unit_id), dtype=bool)
    for wi, w in enumerate(sim["scenario"].workflows):
        for s in w.states:
            if s.is_loop:
                loop |= (units.workflow == wi) & (units.state == s.name)
    return set(units.work_unit_id[loop].tolist())


def runaway_precision_recall(sims: list[dict[str, Any]]) -> dict[str, Any]:
    import ibis

    from yieldmeter.finops.anomalies import runaway_agents
    from yieldmeter.scoring.priors import ACCEPTANCE_SIGNALS, ACTION_SIGNALS

    variants: dict[str, dict[str, int]] = {}
    for sim in sims:
        units, sig = sim["units"], sim["observed"].signals
        start = sim["params"].start + timedelta(days=sim["params"].days - 28)
        end = sim["params"].start + timedelta(days=sim["params"].days)
        ev = _call_events(sim).cache()
        positive = np.isin(sig["kind"], [*ACCEPTANCE_SIGNALS, *ACTION_SIGNALS])
        settled = np.zeros(len(units.work_unit_id), dtype=bool)
        settled[sig["unit"][positive].astype(np.int64)] = True
        context = {"c_unit": units.work_unit_id.tolist(), "task_type": units.task_type.tolist(),
                   "settled": settled.tolist()}  # fmt: skip
        schema = {"c_unit": "string", "task_type": "string", "settled": "boolean"}
        in_window = units.work_unit_id[units.started_ns >= int(start.timestamp() * 1e9)]
        truth = _loops(sim) & set(in_window.tolist())
        runs = {
            "workflow x task type, nothing accepted (shipped)": ibis.memtable(context, schema=schema),
            "workflow x task type, signals ignored": ibis.memtable(
                {**context, "settled": [False] * len(context["settled"])}, schema=schema
            ),
            "workflow norm only, nothing accepted": ibis.memtable(
                {**context, "task_type": [None] * len(context["task_type"])}, schema=schema
            ),
        }
        for name, ctx in runs.items():
            flagged = {u for r in runaway_agents(ev, start, end, ctx) for u in r["example_work_units"]}
            v = variants.setdefault(name, {"flagged": 0, "true": 0, "loops": 0})
            v["flagged"] += len(flagged)
            v["true"] += len(flagged & truth)
            v["loops"] += len(truth)
    return {
        "seeds": [s["params"].seed for s in sims],
        "window_days": 28,
        **{
            name: {
                **v,
                "precision": v["true"] / v["flagged"] if v["flagged"] else None,
                "recall": v["true"] / v["loops"] if v["loops"] else None,
            }
            for name, v in variants.items()
        },
    }


def model_mix_precision_recall(
    sims: list[dict[str, Any]], share: float = 0.6, n_planted: int = 12
) -> dict[str, Any]:
    from yieldmeter.finops.anomalies import model_mix

    tp = fp = planted = 0
    for sim in sims:
        rng = np.random.default_rng([sim["params"].seed, 99])
        calls, units, days = sim["calls"], sim["units"], sim["params"].days
        wf = units.workflow[calls.unit]
        model = calls.model.copy()
        names = [w.name for w in sim["scenario"].workflows]
        cells = [(wi, d) for wi in range(len(names)) for d in range(days - 14, days)]
        cells = [c for c in cells if ((wf == c[0]) & (sim["day"] == c[1])).sum() >= 50]
        chosen = [cells[i] for i in rng.choice(len(cells), n_planted, replace=False)]
        truth = set()
        for wi, d in chosen:
            sel = np.flatnonzero((wf == wi) & (sim["day"] == d))
            used = np.bincount(model[wf == wi], minlength=len(sim["model_keys"]))
            rare = int(np.argmin(np.where(used > 0, used, np.inf))) if (used > 0).sum() > 1 else 0
            target = rare if used[rare] < 0.05 * used.sum() else int(np.argmin(used))
            move = sel[rng.random(len(sel)) < share]
            model[move] = target
            truth.add((names[wi], (sim["params"].start + timedelta(days=d)).date().isoformat()))
        ev = _call_events(sim, model).cache()
        start = sim["params"].start + timedelta(days=days - 14)
        end = sim["params"].start + timedelta(days=days)
        found = {(r["key"], r["day"]) for r in model_mix(ev, start, end)}
        tp += len(found & truth)
        fp += len(found - truth)
        planted += len(truth)
    return {
        "planted": planted,
        "reported": tp + fp,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / planted,
        "shift_planted": f"{share:.0%} of the day's calls to a model the workflow rarely uses",
    }


def main() -> int:
    long_sim = simulation(DAYS, 42)
    month_sims = [simulation(30, seed) for seed in (42, 7)]
    result = {
        "benchmark": "finops",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_version()}",
        "forecast_backtest": forecast_backtest(long_sim),
        "cpso_backtest": cpso_backtest(long_sim),
        "anomalies": {
            "spikes": [spike_precision_recall((2.0, 5.0)), spike_precision_recall((1.5, 1.5))],
            "runaway_agents": runaway_precision_recall(month_sims),
            "model_mix": [
                model_mix_precision_recall(month_sims, 0.6),
                model_mix_precision_recall(month_sims, 0.35),
            ],
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "finops.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
