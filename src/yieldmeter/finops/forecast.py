"""Spend forecasts, cost per successful outcome forecasts and budget burn-down.

Days are local days of ``alerts.timezone`` (UTC by default): a day runs from
one local midnight to the next, so a New York budget's burn-down and its
status count the same spend. The fit uses the complete days of history (today
is partial, so it is left out of the fit and forecast whole).

The model is statsforecast's ``AutoETS`` (exponential smoothing, fitted per
series), chosen by how much history a series has:

- under ``MIN_HISTORY`` (3) days: no forecast; under a week: the mean of the
  days there are, with their spread;
- under ``LONG_HISTORY`` (8 weeks): a level with no trend, plus a weekly season
  from ``SEASON_HISTORY`` (3 weeks). A trend fitted on a few weeks is mostly
  noise; carried over three months it sent a steady 2,000 USD a day to 0 or to
  ten times that, so a short history forecasts its recent level and weekly
  pattern;
- from 8 weeks: two models, a level (no trend) and a *damped* trend, each with
  the weekly season, and the one with the lower AICc per series. A damped trend
  follows growth and flattens out instead of running away over a 90-day
  horizon; an undamped trend is never used.

Guards on the result: a daily forecast is never below 0, and a day's standard
deviation is at most ``SD_CAP`` (3) x the standard deviation of the series'
last 28 days (at least 5% of their mean; of the whole history when those days hold no
spend), so one odd month-start bill in a
short series cannot give an 80% band of 1e13 USD.

Intervals: statsforecast gives the daily standard deviation ``sd`` (read back
from its 80% interval: sd = (hi_80 - mean) / 1.2816). A day's error is split
into the day's own noise (``noise`` = the first day's sd, scaled with the
day's mean) and the uncertainty of the level it sits on (``sqrt(sd^2 -
noise^2)``), which all days of a period share. A period's total is the sum of
the daily means with the interval::

    total -/+ z x sqrt(sum noise^2 + (sum level)^2)

i.e. daily noise independent, level errors moving together. Taking every
error as independent covered 65% at the 80% level on 90-day horizons in the
backtest (``benchmarks/bench_finops.py``); this split covers what
``benchmarks/results/finops.json`` reports. Read the backtest on your own
history before trusting the band.

For a period ``P`` that holds today: ``actual`` = spend in P before today,
``forecast`` = sum of the daily forecasts from today to the end of P, and
``total`` = actual + forecast. ``model`` says which model each series used.

Unpriced calls (a model with no price) have no cost, and none is invented for them:
``unpriced_calls`` counts a key's unpriced calls in the history up to now, so its figures
are known to leave them out. A key whose history has unpriced calls and no cost at all
has no forecast (``actual``, ``forecast``, ``total`` and the bands null, ``model`` "none:
every call unpriced"), never a forecast of 0.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from yieldmeter.errors import InputError
from yieldmeter.finops.budgets import Budget
from yieldmeter.finops.events import SCOPE_COLUMNS, scope_filter
from yieldmeter.finops.windows import budget_window, next_months

LEVELS = (80, 95)
Z = {80: 1.2816, 95: 1.96}
HISTORY_DAYS = 180
MIN_HISTORY = 3
ETS_HISTORY = 7
#: successes in 28 days below which the success rate is read over the whole history
MIN_SUCCESSES = 10
SEASON_HISTORY = 21
LONG_HISTORY = 56
SD_CAP = 3.0
FORECAST_BY = ("team", "workflow", "model", "provider", "initiative", "org")


def midnight(dt: datetime, tz: tzinfo = UTC) -> datetime:
    """The local midnight that starts ``dt``'s day in ``tz``, as a UTC instant."""
    local = dt.astimezone(tz)
    return datetime.combine(local.date(), time(), tzinfo=tz).astimezone(UTC)


def day_starts(first: datetime, n: int, tz: tzinfo = UTC) -> list[datetime]:
    """The ``n + 1`` local midnights from ``first``'s day on (UTC instants; 23- or 25-hour days at DST)."""
    d0 = first.astimezone(tz).date()
    return [datetime.combine(d0 + timedelta(days=i), time(), tzinfo=tz).astimezone(UTC) for i in range(n + 1)]


def days_between(a: datetime, b: datetime, tz: tzinfo = UTC) -> int:
    """Local calendar days from ``a``'s day to ``b``'s day."""
    return (b.astimezone(tz).date() - a.astimezone(tz).date()).days


def _utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


def total_interval(f: dict[str, np.ndarray], i0: int, i1: int, level: int) -> tuple[float, float, float]:
    """(mean, low, high) of the sum of days [i0, i1): daily noise independent, level shared (module doc)."""
    mean = float(f["mean"][i0:i1].sum())
    noise = f["noise"][i0:i1]
    shared = np.sqrt(np.clip(np.square(f["sd"][i0:i1]) - np.square(noise), 0.0, None))
    half = Z[level] * float(np.sqrt(np.square(noise).sum() + shared.sum() ** 2))
    return mean, max(mean - half, 0.0), mean + half


def daily(
    ev: ir.Table, by: str, start: datetime, end: datetime, measure: str, tz: tzinfo = UTC
) -> dict[str, np.ndarray]:
    """Daily totals of ``measure`` per key of ``by`` on the local days [start, end) (zeros filled).

    ``start`` and ``end`` are local midnights of ``tz``.
    """
    col = SCOPE_COLUMNS.get(by, by)
    n = days_between(start, end, tz)
    ev = ev.filter((ev.ts >= ibis.literal(start)) & (ev.ts < ibis.literal(end)))
    key = ibis.literal("(all)") if col is None else ev[col].fill_null("(none)")
    if tz is UTC or getattr(tz, "key", None) == "UTC":  # UTC days are a truncation of the time
        g = ev.group_by(key=key, day=ev.ts.truncate("D")).aggregate(y=ev[measure].sum())
        rows = [(r["key"], (_utc(r["day"]) - start).days, r["y"]) for r in g.to_pyarrow().to_pylist()]
    else:  # local days are not a truncation of UTC time: bucket by the local midnights
        bounds = day_starts(start, n, tz)
        days = ibis.memtable(
            {"d_index": list(range(n)), "d0": bounds[:-1], "d1": bounds[1:]},
            schema={"d_index": "int64", "d0": "timestamp('UTC')", "d1": "timestamp('UTC')"},
        )
        e = ev.mutate(key=key)
        j = e.join(days, [e.ts >= days.d0, e.ts < days.d1])
        g = j.group_by(["key", "d_index"]).aggregate(y=j[measure].sum())
        rows = [(r["key"], r["d_index"], r["y"]) for r in g.to_pyarrow().to_pylist()]
    out: dict[str, np.ndarray] = {}
    for k, i, y in rows:
        if 0 <= i < n:
            out.setdefault(k, np.zeros(n))[i] += float(y or 0.0)
    return out


def _guard(res: dict[str, np.ndarray], y: np.ndarray) -> dict[str, np.ndarray]:
    """Bounded daily sd (module doc), the noise/level split, and the daily intervals from them."""
    recent = y[-28:]
    # recent days with no spread at all (spend that stopped): the whole history's spread bounds
    # the band instead, so a forecast above zero never gets a band of zero width
    scale = max(float(np.std(recent)), 0.05 * float(np.mean(recent))) or float(np.std(y)) or 1e-9
    mean = np.clip(res["mean"], 0.0, None)
    sd = np.clip(res["sd"], 0.0, SD_CAP * scale)
    if len(sd) and mean[0] > 0:
        noise = np.minimum(sd, sd[0] * mean / mean[0])
    else:
        noise = np.minimum(sd, sd[0] if len(sd) else 0.0)
    out = {"mean": mean, "sd": sd, "noise": noise}
    for lv in LEVELS:
        out[f"lo-{lv}"] = np.clip(mean - Z[lv] * sd, 0.0, None)
        out[f"hi-{lv}"] = mean + Z[lv] * sd
    return out


def _zeros(h: int, model: str) -> dict[str, Any]:
    z = np.zeros(h)
    return {
        "mean": z,
        "sd": z,
        "noise": z,
        "model": model,
        **{f"{s}-{lv}": z for lv in LEVELS for s in ("lo", "hi")},
    }


def fit_forecast(series: dict[str, np.ndarray], h: int, start: datetime) -> dict[str, dict[str, Any]]:
    """Daily forecasts for ``h`` days after the history: {key: {mean, sd, noise, lo-80, ..., model}}.

    ``series`` holds each key's complete days, oldest first, ending the day before ``start``.
    Leading zero days (before the series started) are left out of the fit.
    """
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    out: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[int, bool], list[str]] = {}
    trimmed: dict[str, np.ndarray] = {}
    for key, y in series.items():
        if not np.any(y != 0):
            if len(y):
                out[key] = _zeros(h, "none: no spend")
            continue
        y = y[int(np.argmax(y != 0)) :]  # from the first day with spend: the zeros before are no history
        trimmed[key] = y
        if len(y) < MIN_HISTORY:  # no forecast (spend_forecast says so), not one fit on padding
            continue
        if len(y) < ETS_HISTORY:  # too few days to fit exponential smoothing: their mean, their spread
            res = {"mean": np.full(h, float(y.mean())), "sd": np.full(h, float(y.std(ddof=1)))}
            out[key] = {**_guard(res, y), "model": f"mean of {len(y)} days"}
            continue
        groups.setdefault((7 if len(y) >= SEASON_HISTORY else 1, len(y) >= LONG_HISTORY), []).append(key)
    for (season, long), keys in groups.items():
        frames = []
        for key in keys:
            y = trimmed[key]
            ds = pd.date_range(start.replace(tzinfo=None) - timedelta(days=len(y)), periods=len(y), freq="D")
            frames.append(pd.DataFrame({"unique_id": key, "ds": ds, "y": y}))
        df = pd.concat(frames, ignore_index=True)
        models = [AutoETS(season_length=season, model="ZNZ", alias="level")]
        if long:
            models.append(AutoETS(season_length=season, model="ZZZ", damped=True, alias="damped"))
        sf = StatsForecast(models=models, freq="D", n_jobs=1)
        sf.fit(df=df)
        fc = sf.predict(h=h, level=[80])
        # AICc per series and model: the level model unless the damped trend fits better
        uids = [str(u) for u in sf.uids]
        choice = {
            uid: "damped"
            if long and sf.fitted_[i, 1].model_["aicc"] < sf.fitted_[i, 0].model_["aicc"]
            else "level"
            for i, uid in enumerate(uids)
        }
        for key, part in fc.groupby("unique_id", sort=False):
            alias = choice[str(key)]
            raw = part[alias].to_numpy(float)
            res = {"mean": raw, "sd": (part[f"{alias}-hi-80"].to_numpy(float) - raw) / Z[80]}
            out[str(key)] = {**_guard(res, trimmed[str(key)]), "model": _model_name(alias, season)}
    return out


def _model_name(alias: str, season: int) -> str:
    trend = "damped trend" if alias == "damped" else "level"
    return f"AutoETS {trend}" + (", weekly season" if season == 7 else "")


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
        raise InputError(f"cannot forecast by {by!r}; choose from {', '.join(FORECAST_BY)}", field="by")
    today = midnight(now, tz)
    periods = next_months(now, tz, months)
    hist_start = day_starts(today - timedelta(days=HISTORY_DAYS), 0, tz)[0]
    first_period_start = budget_window("month", now, tz).start
    series = daily(ev, by, hist_start, today, measure, tz)
    unpriced = unpriced_calls(ev, by, hist_start, now)
    h = days_between(today, periods[-1][2], tz)
    fc = fit_forecast(dict(series), h, today)
    rows: list[dict[str, Any]] = []
    for key in sorted(series):
        y = series[key]
        f = fc.get(key)
        n_unpriced = unpriced.get(key, 0)
        unknown = n_unpriced > 0 and not np.any(y != 0)  # no cost at all, only calls with no price
        for label, p_start, p_end in periods:
            p_start = first_period_start if label.startswith("rest of") else p_start
            a_lo = max(days_between(hist_start, p_start, tz), 0)
            actual = float(y[a_lo:].sum()) if p_start < today else 0.0
            i0 = max(days_between(today, p_start, tz), 0)
            i1 = max(days_between(today, p_end, tz), 0)
            row: dict[str, Any] = {"by": by, "key": key, "period": label, "actual": actual}
            if f is None or unknown:
                row.update(
                    forecast=None, total=None, **{f"{s}_{lv}": None for lv in LEVELS for s in ("lo", "hi")}
                )
                if unknown:
                    row["actual"] = None
            else:
                mean = float(f["mean"][i0:i1].sum())
                row.update(forecast=mean, total=actual + mean)
                for lv in LEVELS:
                    _, lo, hi = total_interval(f, i0, i1, lv)
                    row[f"lo_{lv}"], row[f"hi_{lv}"] = actual + lo, actual + hi
            row["history_days"] = int(len(y) - np.argmax(y != 0)) if np.any(y != 0) else 0
            row["model"] = f["model"] if f is not None else f"none: under {MIN_HISTORY} days of history"
            if unknown:
                row["model"] = "none: every call unpriced (cost unknown)"
            row["unpriced_calls"] = n_unpriced
            rows.append(row)
    return pa.Table.from_pylist(rows, schema=FORECAST_SCHEMA)


def unpriced_calls(ev: ir.Table, by: str, start: datetime, end: datetime) -> dict[str, int]:
    """Unpriced calls per key of ``by`` (keyed as :func:`daily` keys them) with ``start <= ts <= end``."""
    col = SCOPE_COLUMNS.get(by, by)
    ev = ev.filter((ev.ts >= ibis.literal(start)) & (ev.ts <= ibis.literal(end)) & (ev.unpriced_calls > 0))
    key = ibis.literal("(all)") if col is None else ev[col].fill_null("(none)")
    g = ev.group_by(key=key).aggregate(n=ev.unpriced_calls.sum()).to_pyarrow()
    return {
        k: int(n or 0) for k, n in zip(g.column("key").to_pylist(), g.column("n").to_pylist(), strict=True)
    }


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
        ("model", pa.string()),
        ("unpriced_calls", pa.int64()),
    ]
)


def cpso_forecast(facts: ir.Table, now: datetime, tz: tzinfo = UTC) -> pa.Table:
    """Next month's cost per successful outcome per workflow: a cost forecast and a success rate.

    Successes follow the work that is done, so they are forecast as spend times the workflow's
    recent success rate, not as a second series of their own (two independent fits on five weeks
    of history gave 77 USD per success against a recent 471):

    - ``cost`` = the fully loaded cost forecast for next month (:func:`fit_forecast`, daily series
      by the work unit's start, local days);
    - rate = successes / fully loaded cost over the last 28 complete days (all of the history when
      those 28 days hold fewer than ``MIN_SUCCESSES`` successes; ``rate_days`` says which);
    - ``successes`` = cost x rate, ``cpso`` = cost / successes = 1 / rate;
    - 80% band: the rate's Poisson error, ``cpso x exp(-/+ 1.2816 / sqrt(successes counted))``.

    A workflow with cost and no success in its history has no cpso (it is unbounded); a change in
    the workflow's efficiency shows in the next weeks' rate, not before.
    """
    today = midnight(now, tz)
    hist_start = day_starts(today - timedelta(days=HISTORY_DAYS), 0, tz)[0]
    f = facts.filter(
        (facts.started_at >= ibis.literal(hist_start)) & (facts.started_at < ibis.literal(today))
    )
    f = f.mutate(ts=f.started_at, workflow=f.workflow.fill_null("(none)"))
    f = f.mutate(successes=ibis.ifelse(f.successful, 1.0, 0.0))
    _, p_start, p_end = next_months(now, tz, 1)[1]
    i0, i1 = days_between(today, p_start, tz), days_between(today, p_end, tz)
    cost = daily(f, "workflow", hist_start, today, "fully_loaded_cost", tz)
    succ = daily(f, "workflow", hist_start, today, "successes", tz)
    fc_cost = fit_forecast(dict(cost), i1, today)
    rows = []
    for wf in sorted(cost):
        c, y_cost = fc_cost.get(wf), cost[wf]
        y_succ = succ.get(wf, np.zeros(len(y_cost)))
        started = int(np.argmax(y_cost != 0)) if np.any(y_cost != 0) else len(y_cost)
        window = 28 if y_succ[-28:].sum() >= MIN_SUCCESSES else len(y_cost) - started
        c_w, s_w = (
            float(y_cost[-window:].sum()) if window else 0.0,
            float(y_succ[-window:].sum()) if window else 0.0,
        )
        row: dict[str, Any] = {"workflow": wf, "period": f"{p_start.astimezone(tz):%Y-%m}"}
        row["last_28d_cpso"] = float(y_cost[-28:].sum() / y_succ[-28:].sum()) if y_succ[-28:].sum() else None
        row["rate_days"] = window
        if c is None or s_w <= 0 or c_w <= 0:
            row.update(cost=float(c["mean"][i0:i1].sum()) if c else None, successes=None, cpso=None,
                       cpso_lo_80=None, cpso_hi_80=None)  # fmt: skip
        else:
            cm = float(c["mean"][i0:i1].sum())
            cpso = c_w / s_w
            spread = math.exp(Z[80] / math.sqrt(s_w))
            row.update(
                cost=cm, successes=cm / cpso, cpso=cpso, cpso_lo_80=cpso / spread, cpso_hi_80=cpso * spread
            )
        rows.append(row)
    return pa.Table.from_pylist(rows)


def burn_down(ev: ir.Table, b: Budget, now: datetime, tz: tzinfo = UTC) -> dict[str, Any]:
    """Cumulative actual spend per local day of the budget's window, the forecast to its end, the run-out day.

    Days are local days of ``tz`` (the budget window's own time zone), so the last actual day's
    cumulative spend is the budget status's ``spent`` up to today's local midnight.
    run_out_day = the first day the cumulative actual + forecast mean reaches the amount;
    earliest_run_out_day uses the 80% upper bound of the cumulative forecast instead.
    """
    w = budget_window(b.period, now, tz)
    scoped = scope_filter(ev, b.scope_kind, b.scope)
    today = midnight(now, tz)
    w_start = midnight(w.start, tz)
    hist_start = min(w_start, day_starts(today - timedelta(days=HISTORY_DAYS), 0, tz)[0])
    n = days_between(hist_start, today, tz)
    y = daily(scoped, "org", hist_start, today, b.basis, tz).get("(all)", np.zeros(n))
    days: list[dict[str, Any]] = []
    cum = 0.0
    offset = days_between(hist_start, w_start, tz)
    d0 = hist_start.astimezone(tz).date()
    for i in range(offset, len(y)):
        cum += float(y[i])
        days.append({"day": (d0 + timedelta(days=i)).isoformat(), "actual": cum, "forecast": None})
    reached = next((d["day"] for d in days if d["actual"] >= b.amount), None)
    run_out = earliest = reached
    model = None
    if not w.rolling:
        h = max(days_between(today, w.end - timedelta(microseconds=1), tz) + 1, 0)
        f = fit_forecast({"(all)": y.copy()}, h, today).get("(all)") if h else None
        model = f["model"] if f is not None else None
        level_sd, noise_var = 0.0, 0.0
        t0 = today.astimezone(tz).date()
        for i in range(h):
            mean = float(f["mean"][i]) if f is not None else 0.0
            cum += mean
            if f is not None:
                noise_var += float(f["noise"][i]) ** 2
                level_sd += math.sqrt(max(float(f["sd"][i]) ** 2 - float(f["noise"][i]) ** 2, 0.0))
            hi = cum + Z[80] * math.sqrt(noise_var + level_sd**2)
            day = (t0 + timedelta(days=i)).isoformat()
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
        "model": model,
    }
