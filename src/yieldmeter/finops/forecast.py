"""Spend forecasts, cost per successful outcome forecasts and budget burn-down.

The model is statsforecast's ``AutoETS`` (exponential smoothing with the
error, trend and season chosen by AICc), weekly season, fitted per series on
the complete UTC days of history (today is partial, so it is left out of the
fit and forecast whole). Series shorter than three weeks fall back to a
non-seasonal AutoETS; shorter than three days get no forecast.

Intervals: statsforecast gives 80% and 95% intervals per day; the daily
standard deviation is read back from them (sd = (hi_80 - mean) / 1.2816). A
period's total is the sum of the daily means with the interval
``total -/+ z x sqrt(sum sd^2)``, i.e. daily errors taken as independent.
Summing the daily bounds instead (errors moving together) was about five times
wider and covered 100% at the 80% level in the backtest; the independent
interval covered 80% / 95% (``benchmarks/bench_finops.py``). Where daily
errors are correlated (a level shift), it will cover less — read the backtest
on your own history before trusting the band.

For a period ``P`` that holds today: ``actual`` = spend in P before today,
``forecast`` = sum of the daily forecasts from today to the end of P, and
``total`` = actual + forecast.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from yieldmeter.finops.budgets import Budget
from yieldmeter.finops.events import SCOPE_COLUMNS, scope_filter
from yieldmeter.finops.windows import budget_window, next_months

LEVELS = (80, 95)
Z = {80: 1.2816, 95: 1.96}
HISTORY_DAYS = 180
FORECAST_BY = ("team", "workflow", "model", "provider", "initiative", "org")


def _day(dt: datetime) -> datetime:
    dt = dt.astimezone(UTC)
    return datetime(dt.year, dt.month, dt.day, tzinfo=UTC)


def total_interval(f: dict[str, np.ndarray], i0: int, i1: int, level: int) -> tuple[float, float, float]:
    """(mean, low, high) of the sum of days [i0, i1) with independent daily errors (see the module doc)."""
    mean = float(f["mean"][i0:i1].sum())
    half = Z[level] * float(np.sqrt(np.square(f["sd"][i0:i1]).sum()))
    return mean, max(mean - half, 0.0), mean + half


def daily(ev: ir.Table, by: str, start: datetime, end: datetime, measure: str) -> dict[str, np.ndarray]:
    """Daily totals of ``measure`` per key of ``by`` on [start, end) (UTC days, zeros filled)."""
    col = SCOPE_COLUMNS.get(by, by)
    ev = ev.filter((ev.ts >= ibis.literal(start)) & (ev.ts < ibis.literal(end)))
    key = ibis.literal("(all)") if col is None else ev[col].fill_null("(none)")
    g = ev.group_by(key=key, day=ev.ts.truncate("D")).aggregate(y=ev[measure].sum())
    n = (end - start).days
    out: dict[str, np.ndarray] = {}
    for r in g.to_pyarrow().to_pylist():
        i = (_day(r["day"]) - start).days
        if 0 <= i < n:
            out.setdefault(r["key"], np.zeros(n))[i] += float(r["y"] or 0.0)
    return out


def fit_forecast(series: dict[str, np.ndarray], h: int, start: datetime) -> dict[str, dict[str, np.ndarray]]:
    """Daily forecasts for ``h`` days after the history: {key: {mean, lo-80, hi-80, lo-95, hi-95}}."""
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    out: dict[str, dict[str, np.ndarray]] = {}
    groups: dict[int, list[str]] = {}
    for key, y in series.items():
        first = int(np.argmax(y != 0)) if np.any(y != 0) else len(y)
        series[key] = y = y[first:] if len(y) - first >= 3 else y
        if len(y) < 3 or not np.any(y != 0):
            if len(y):
                z = np.zeros(h)
                out[key] = {"mean": z, "sd": z, **{f"{s}-{lv}": z for lv in LEVELS for s in ("lo", "hi")}}
            continue
        groups.setdefault(7 if len(y) >= 21 else 1, []).append(key)
    for season, keys in groups.items():
        frames = []
        for key in keys:
            y = series[key]
            ds = pd.date_range(start + timedelta(days=-len(y)), periods=len(y), freq="D")
            frames.append(pd.DataFrame({"unique_id": key, "ds": ds.tz_localize(None), "y": y}))
        df = pd.concat(frames, ignore_index=True)
        sf = StatsForecast(models=[AutoETS(season_length=season)], freq="D", n_jobs=1)
        fc = sf.forecast(df=df, h=h, level=list(LEVELS))
        for key, part in fc.groupby("unique_id", sort=False):
            raw = part["AutoETS"].to_numpy(float)
            res = {"mean": np.clip(raw, 0, None), "sd": (part["AutoETS-hi-80"].to_numpy(float) - raw) / Z[80]}
            for lv in LEVELS:
                res[f"lo-{lv}"] = np.clip(part[f"AutoETS-lo-{lv}"].to_numpy(float), 0, None)
                res[f"hi-{lv}"] = np.clip(part[f"AutoETS-hi-{lv}"].to_numpy(float), 0, None)
            out[str(key)] = res
    return out


def spend_forecast(
    ev: ir.Table,
    by: str,
    now: datetime,
    tz: tzinfo = UTC,
    *,
    months: int = 3,
    measure: str = "fully_loaded_cost",
) -> pa.Table:
    """Per key of ``by``: the rest of this month and the next ``months`` months, with 80%/95% intervals."""
    if by not in FORECAST_BY:
        raise ValueError(f"cannot forecast by {by!r}; choose from {', '.join(FORECAST_BY)}")
    today = _day(now)
    periods = next_months(now, tz, months)
    hist_start = today - timedelta(days=HISTORY_DAYS)
    first_period_start = budget_window("month", now, tz).start
    series = daily(ev, by, hist_start, today, measure)
    end = _day(periods[-1][2] - timedelta(microseconds=1)) + timedelta(days=1)
    h = (end - today).days
    fc = fit_forecast(dict(series), h, today)
    rows: list[dict[str, Any]] = []
    for key in sorted(series):
        y = series[key]
        f = fc.get(key)
        for label, p_start, p_end in periods:
            p_start = first_period_start if label.startswith("rest of") else p_start
            a_lo = max((_day(p_start) - hist_start).days, 0)
            actual = float(y[a_lo:].sum()) if p_start < today else 0.0
            i0 = max((_day(p_start) - today).days, 0)
            i1 = max((_day(p_end - timedelta(microseconds=1)) - today).days + 1, 0)
            row: dict[str, Any] = {"by": by, "key": key, "period": label, "actual": actual}
            if f is None:
                row.update(
                    forecast=None, total=None, **{f"{s}_{lv}": None for lv in LEVELS for s in ("lo", "hi")}
                )
            else:
                mean = float(f["mean"][i0:i1].sum())
                row.update(forecast=mean, total=actual + mean)
                for lv in LEVELS:
                    _, lo, hi = total_interval(f, i0, i1, lv)
                    row[f"lo_{lv}"], row[f"hi_{lv}"] = actual + lo, actual + hi
            row["history_days"] = int(len(y) - np.argmax(y != 0)) if np.any(y != 0) else 0
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=FORECAST_SCHEMA)


FORECAST_SCHEMA = pa.schema(
    [
        ("by", pa.string()),
        ("key", pa.string()),
        ("period", pa.string()),
        ("actual", pa.float64()),
        ("forecast", pa.float64()),
        ("total", pa.float64()),
        ("lo_80", pa.float64()),
        ("hi_80", pa.float64()),
        ("lo_95", pa.float64()),
        ("hi_95", pa.float64()),
        ("history_days", pa.int64()),
    ]
)


def cpso_forecast(facts: ir.Table, now: datetime, tz: tzinfo = UTC) -> pa.Table:
    """Next month's cost per successful outcome per workflow.

    cpso = forecast fully loaded cost / forecast successful outcomes (both AutoETS on
    daily series by the work unit's start); the 80% band is cost_lo / successes_hi
    to cost_hi / successes_lo.
    """
    today = _day(now)
    hist_start = today - timedelta(days=HISTORY_DAYS)
    f = facts.filter(
        (facts.started_at >= ibis.literal(hist_start)) & (facts.started_at < ibis.literal(today))
    )
    f = f.mutate(ts=f.started_at, workflow=f.workflow.fill_null("(none)"))
    f = f.mutate(successes=ibis.ifelse(f.successful, 1.0, 0.0))
    _, p_start, p_end = next_months(now, tz, 1)[1]
    i0, i1 = (_day(p_start) - today).days, (_day(p_end - timedelta(microseconds=1)) - today).days + 1
    cost = daily(f, "workflow", hist_start, today, "fully_loaded_cost")
    succ = daily(f, "workflow", hist_start, today, "successes")
    fc_cost, fc_succ = fit_forecast(dict(cost), i1, today), fit_forecast(dict(succ), i1, today)
    rows = []
    for wf in sorted(cost):
        c, s = fc_cost.get(wf), fc_succ.get(wf)
        row: dict[str, Any] = {"workflow": wf, "period": f"{p_start.astimezone(tz):%Y-%m}"}
        hist_c, hist_s = float(cost[wf][-30:].sum()), float(succ.get(wf, np.zeros(1))[-30:].sum())
        row["last_30d_cpso"] = hist_c / hist_s if hist_s else None
        if c is None or s is None:
            row.update(cost=None, successes=None, cpso=None, cpso_lo_80=None, cpso_hi_80=None)
        else:
            cm, sm = float(c["mean"][i0:i1].sum()), float(s["mean"][i0:i1].sum())
            _, clo, chi = total_interval(c, i0, i1, 80)
            _, slo, shi = total_interval(s, i0, i1, 80)
            row.update(
                cost=cm,
                successes=sm,
                cpso=cm / sm if sm > 0 else None,
                cpso_lo_80=clo / shi if shi > 0 else None,
                cpso_hi_80=chi / slo if slo > 0 else math.inf if chi > 0 else None,
            )
        rows.append(row)
    return pa.Table.from_pylist(rows)


def burn_down(ev: ir.Table, b: Budget, now: datetime, tz: tzinfo = UTC) -> dict[str, Any]:
    """Cumulative actual spend per day of the budget's window, the forecast to its end, and the run-out day.

    run_out_day = the first day the cumulative actual + forecast mean reaches the amount;
    earliest_run_out_day uses the 80% upper bound of the cumulative forecast instead.
    """
    w = budget_window(b.period, now, tz)
    scoped = scope_filter(ev, b.scope_kind, b.scope)
    today = _day(now)
    w_start = _day(w.start)
    hist_start = min(w_start, today - timedelta(days=HISTORY_DAYS))
    y = daily(scoped, "org", hist_start, today, b.basis).get("(all)", np.zeros((today - hist_start).days))
    days: list[dict[str, Any]] = []
    cum = 0.0
    offset = (w_start - hist_start).days
    for i in range(offset, len(y)):
        cum += float(y[i])
        days.append(
            {"day": (hist_start + timedelta(days=i)).date().isoformat(), "actual": cum, "forecast": None}
        )
    reached = next((d["day"] for d in days if d["actual"] >= b.amount), None)
    run_out = earliest = reached
    if not w.rolling:
        h = max((_day(w.end - timedelta(microseconds=1)) - today).days + 1, 0)
        f = fit_forecast({"(all)": y.copy()}, h, today).get("(all)") if h else None
        hi, var = cum, 0.0
        for i in range(h):
            mean = float(f["mean"][i]) if f is not None else 0.0
            cum += mean
            var += float(f["sd"][i]) ** 2 if f is not None else 0.0
            hi = cum + Z[80] * float(np.sqrt(var))
            day = (today + timedelta(days=i)).date().isoformat()
            days.append({"day": day, "actual": None, "forecast": cum})
            if run_out is None and cum >= b.amount:
                run_out = day
            if earliest is None and hi >= b.amount:
                earliest = day
    return {
        "budget_id": b.budget_id,
        "scope_kind": b.scope_kind,
        "scope": b.scope,
        "period": b.period,
        "amount": b.amount,
        "basis": b.basis,
        "window_start": w.start.isoformat(),
        "window_end": w.end.isoformat(),
        "days": days,
        "projected_total": cum,
        "run_out_day": run_out,
        "earliest_run_out_day": earliest,
    }
