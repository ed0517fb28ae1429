"""FinOps accuracy: forecast backtest on the simulator, anomaly precision/recall on planted spikes.

Forecast: the simulator (``enterprise`` scenario, 150 days, seed 42) gives every
call's tokens and model; daily cost per workflow and per model is tokens x an
illustrative list price per model (USD per million tokens, below). Rolling
origins at days 90, 100, 110 and 120: fit :func:`yieldmeter.finops.forecast.fit_forecast`
(statsforecast AutoETS, weekly season) on the days before, forecast 30 days,
and compare with what the simulator drew:

- ``total_mape``: mean |forecast 30-day total - actual| / actual over series x origins
  (the budget question: how much will this period cost);
- ``daily_wape``: sum |f - a| / sum a over every forecast day;
- ``coverage_daily_80/95``: share of days inside the 80%/95% intervals;
- ``coverage_total_80/95``: share of 30-day totals inside the period interval (independent daily errors);
- ``seasonal_naive_total_mape``: the same total error for "repeat the last week", the bar to beat.

Anomalies: 20 teams x 84 days of daily spend with a weekly pattern and 15%
log-normal noise; 30 spikes of 2x to 5x planted in the last 42 days, five
seeds; :func:`yieldmeter.finops.anomalies.spikes` over those 42 days. Precision =
planted spikes found / spikes reported, recall = planted found / planted. A
second run plants 1.5x spikes to show where detection stops.

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
DAYS = 150
ORIGINS = (90, 100, 110, 120)
H = 30


def simulated_series() -> dict[str, np.ndarray]:
    from yieldmeter.simulate.engine import MODEL_KEYS, NS_PER_DAY, generate
    from yieldmeter.simulate.scenarios import SimulationParams, check_params

    params = SimulationParams(days=DAYS, seed=42)
    scenario = check_params(params)
    _, units, calls = generate(scenario, params)
    p_in = np.array([PRICES[m][0] for m in MODEL_KEYS])
    p_out = np.array([PRICES[m][1] for m in MODEL_KEYS])
    cost = (calls.input_tokens * p_in[calls.model] + calls.output_tokens * p_out[calls.model]) / 1e6
    start_ns = int(params.start.timestamp() * 1e9)
    day = ((calls.start_ns - start_ns) // NS_PER_DAY).astype(int)
    ok = (day >= 0) & (day < DAYS)
    out: dict[str, np.ndarray] = {}
    wf = units.workflow[calls.unit]
    for i, w in enumerate(scenario.workflows):
        m = ok & (wf == i)
        out[f"workflow:{w.name}"] = np.bincount(day[m], weights=cost[m], minlength=DAYS)
    for i, name in enumerate(MODEL_KEYS):
        m = ok & (calls.model == i)
        if m.any():
            out[f"model:{name}"] = np.bincount(day[m], weights=cost[m], minlength=DAYS)
    return out


def forecast_backtest() -> dict[str, Any]:
    from yieldmeter.finops.forecast import fit_forecast, total_interval

    series = simulated_series()
    t0 = time.perf_counter()
    ape, naive_ape, abs_err, actual_sum = [], [], 0.0, 0.0
    inside = {"daily_80": [], "daily_95": [], "total_80": [], "total_95": []}
    for origin in ORIGINS:
        hist = {k: v[:origin].copy() for k, v in series.items()}
        fc = fit_forecast(hist, H, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=origin))
        for key, y in series.items():
            f = fc.get(key)
            a = y[origin : origin + H]
            if f is None or a.sum() <= 0:
                continue
            ape.append(abs(f["mean"].sum() - a.sum()) / a.sum())
            naive = np.tile(y[origin - 7 : origin], H // 7 + 1)[:H]
            naive_ape.append(abs(naive.sum() - a.sum()) / a.sum())
            abs_err += float(np.abs(f["mean"] - a).sum())
            actual_sum += float(a.sum())
            for lv in (80, 95):
                inside[f"daily_{lv}"] += list((a >= f[f"lo-{lv}"]) & (a <= f[f"hi-{lv}"]))
                _, lo, hi = total_interval(f, 0, H, lv)
                inside[f"total_{lv}"].append(lo <= a.sum() <= hi)
    return {
        "series": len(series),
        "origins": list(ORIGINS),
        "horizon_days": H,
        "total_mape": float(np.mean(ape)),
        "total_mape_p90": float(np.quantile(ape, 0.9)),
        "seasonal_naive_total_mape": float(np.mean(naive_ape)),
        "daily_wape": abs_err / actual_sum,
        **{f"coverage_{k}": float(np.mean(v)) for k, v in inside.items()},
        "seconds": round(time.perf_counter() - t0, 2),
    }


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


def anomaly_precision_recall(factor: tuple[float, float]) -> dict[str, Any]:
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


def main() -> int:
    result = {
        "benchmark": "finops",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_version()}",
        "forecast_backtest": forecast_backtest(),
        "anomalies": [anomaly_precision_recall((2.0, 5.0)), anomaly_precision_recall((1.5, 1.5))],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "finops.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
