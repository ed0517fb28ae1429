"""Anomalies: spend and token spikes, runaway agents, sudden model-mix changes.

Each anomaly carries the spend at stake and example work unit ids to open.

**Spikes** (per team, workflow, model and provider; per UTC day): a day's
value ``x`` is compared with the ``BASELINE_DAYS`` days before it (zeros
included once the series has started), on the log scale (spend is
multiplicative: +50% means the same on a small and a large team) and with
the weekly pattern removed — the median log level of weekend days and of
weekdays each get their offset from the overall median when the baseline
holds two weeks:

    robust z = 0.6745 x (log x - offset - median) / MAD      (median, MAD of the adjusted log baseline)

with MAD floored at ``MAD_FLOOR``. A spike is z >= ``Z_SPIKE``, at least
``MIN_RATIO`` x the expected value (exp(median + offset)) and above it by more
than ``MIN_SPEND`` USD for spend (10% of the expected value for tokens). Only
increases are flagged. Spend at stake = the day's model cost - its expected
model cost.

**Runaway agents**: a work unit whose calls are far above the norm of its kind
of work and that nothing came of. The norm is the unit's workflow x task type
(a ``feature`` in software delivery takes more calls than a ``bugfix``; the
workflow alone when the task type has fewer than ``MIN_NORM_UNITS`` units in
the lookback). Calls per unit are long-tailed, so they are compared on the log
scale::

    robust z = 0.6745 x (log calls - median log calls) / MAD of log calls     (MAD floored at 0.1)

A runaway has z >= ``Z_RUNAWAY``, at least ``RUNAWAY_RATIO`` x the median
calls and ``MIN_RUNAWAY_CALLS`` calls, and no acceptance or action signal
(accepted, edited, saved, used in an artifact, decision reached, action
taken...): a long unit whose output was used is long work, not a loop. On the
simulator's 30 days this cut false alarms from 55% to 3% of the flags, at the
same recall (``benchmarks/results/finops.json``). Spend at stake = the unit's
model cost - median calls x the norm's mean cost per call.

**Model-mix changes** (per workflow and day): the share of calls per model on
the day against the mix of the ``MIX_BASELINE_DAYS`` days before. Total
variation distance ``0.5 x sum |p_day - p_base|`` >= ``MIX_SHIFT`` on a day with
at least ``MIN_MIX_CALLS`` calls, and at least ``MIX_NOISE_K`` (2) x the distance
that sampling alone gives a day of ``n`` people (``0.5 x sum sqrt(p_base (1 -
p_base) / n)``; one person's calls mostly share a model, so a quiet Saturday
with three analysts is not a mix change). Spend at stake = day's model cost - day's calls
x the baseline cost per call (negative: the change saved money).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from yieldmeter.metrics.tables import Tables

BASELINE_DAYS = 28
Z_SPIKE = 3.5
MIN_SPEND = 1.0
MIN_RATIO = 1.3
#: log-scale MAD floor (about 3%): a perfectly flat series is not infinitely sensitive.
MAD_FLOOR = 0.02
Z_RUNAWAY = 2.5
RUNAWAY_RATIO = 5.0
MIN_RUNAWAY_CALLS = 10
MIN_NORM_UNITS = 10
LOG_MAD_FLOOR = 0.1
MIX_BASELINE_DAYS = 14
MIX_SHIFT = 0.3
MIN_MIX_CALLS = 20
MIX_NOISE_K = 2.0
SPIKE_DIMENSIONS = ("team", "workflow", "model", "provider")
EXAMPLES = 3

SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("dimension", pa.string()),
        ("key", pa.string()),
        ("day", pa.string()),
        ("value", pa.float64()),
        ("baseline", pa.float64()),
        ("score", pa.float64()),
        ("spend_at_stake", pa.float64()),
        ("example_work_units", pa.list_(pa.string())),
        ("message", pa.string()),
    ]
)


def _day(dt: datetime) -> datetime:
    dt = dt.astimezone(UTC)
    return datetime(dt.year, dt.month, dt.day, tzinfo=UTC)


def seasonal_z(x: float, dow: int, base: np.ndarray, base_dow: np.ndarray) -> tuple[float, float]:
    """(robust z of ``x`` on weekday ``dow`` on the log scale, weekend offset removed; the expected value)."""
    weekend = (np.asarray(base_dow) >= 5).astype(int)
    eps = max(0.01 * float(np.median(base)), 1e-9)
    lb, lx = np.log(base + eps), float(np.log(x + eps))
    off = np.zeros(2)
    if len(base) >= 14:
        for k in (0, 1):
            if (weekend == k).sum() >= 3:
                off[k] = float(np.median(lb[weekend == k])) - float(np.median(lb))
    adj = lb - off[weekend]
    med = float(np.median(adj))
    mad = max(float(np.median(np.abs(adj - med))), MAD_FLOOR)
    k = int(dow >= 5)
    expected = float(np.exp(med + off[k]) - eps)
    z = 0.6745 * (lx - off[k] - med) / mad
    if expected > 0 and x / expected < MIN_RATIO:
        z = min(z, 0.0)
    return z, expected


def robust_z(x: float, base: np.ndarray) -> tuple[float, float]:
    """(robust z of ``x`` against ``base``, the median of ``base``)."""
    med = float(np.median(base))
    mad = float(np.median(np.abs(base - med)))
    mad = max(mad, 0.05 * abs(med), 1e-9)
    return 0.6745 * (x - med) / mad, med


def _examples(ev: ir.Table, col: str, key: str, day: datetime) -> list[str]:
    e = ev.filter(
        (ev[col] == key) & (ev.ts >= ibis.literal(day)) & (ev.ts < ibis.literal(day + timedelta(days=1)))
    )
    e = e.filter(e.work_unit_id.notnull())
    top = (
        e.group_by("work_unit_id").aggregate(c=e.model_cost.sum()).order_by([ibis.desc("c"), "work_unit_id"])
    )
    return [r["work_unit_id"] for r in top.limit(EXAMPLES).to_pyarrow().to_pylist()]


def spikes(ev: ir.Table, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Spend and token spikes on the days of [start, end) (see the module docstring)."""
    hist = start - timedelta(days=BASELINE_DAYS)
    n = (end - hist).days
    out: list[dict[str, Any]] = []
    w = ev.filter((ev.ts >= ibis.literal(hist)) & (ev.ts < ibis.literal(end)))
    dows = np.array([(hist + timedelta(days=k)).weekday() for k in range(n)])
    for dim in SPIKE_DIMENSIONS:
        g = w.filter(w[dim].notnull()).group_by(key=w[dim], day=w.ts.truncate("D"))
        g = g.aggregate(spend=w.model_cost.sum(), tokens=w.tokens.sum())
        series: dict[str, dict[str, np.ndarray]] = {}
        for r in g.to_pyarrow().to_pylist():
            s = series.setdefault(r["key"], {"spend": np.zeros(n), "tokens": np.zeros(n)})
            i = (_day(r["day"]) - hist).days
            s["spend"][i] += float(r["spend"] or 0.0)
            s["tokens"][i] += float(r["tokens"] or 0.0)
        for key, s in series.items():
            nz = np.flatnonzero(s["spend"] + s["tokens"])
            first = int(nz[0]) if len(nz) else n
            for i in range(BASELINE_DAYS, n):
                lo = max(i - BASELINE_DAYS, first)
                if i - lo < 7:  # too little history to call anything unusual
                    continue
                day = hist + timedelta(days=i)
                base_dow = dows[lo:i]
                for measure, kind in (("spend", "spend_spike"), ("tokens", "token_spike")):
                    x = s[measure][i]
                    z, med = seasonal_z(x, dows[i], s[measure][lo:i], base_dow)
                    floor = MIN_SPEND if measure == "spend" else 0.1 * med
                    if z < Z_SPIKE or x - med <= floor:
                        continue
                    at_stake = (
                        s["spend"][i] - seasonal_z(s["spend"][i], dows[i], s["spend"][lo:i], base_dow)[1]
                    )
                    unit = "USD" if measure == "spend" else "tokens"
                    out.append(
                        {
                            "kind": kind,
                            "dimension": dim,
                            "key": key,
                            "day": day.date().isoformat(),
                            "value": float(x),
                            "baseline": med,
                            "score": z,
                            "spend_at_stake": at_stake,
                            "example_work_units": _examples(ev, dim, key, day),
                            "message": f"{dim} {key}: {x:,.2f} {unit} on {day:%Y-%m-%d}, "
                            f"{x / med if med else float('inf'):.1f}x the {med:,.2f} expected from its "
                            f"last {BASELINE_DAYS} days",
                        }
                    )
    return out


def unit_context(t: Tables) -> ir.Table:
    """Per work unit: ``task_type`` and ``settled`` (an acceptance or action signal came in)."""
    from yieldmeter.scoring.priors import ACCEPTANCE_SIGNALS, ACTION_SIGNALS

    s = t.signals.filter(t.signals.kind.isin([*ACCEPTANCE_SIGNALS, *ACTION_SIGNALS]))
    settled = s.select(s_unit=s.work_unit_id).distinct()
    wu = t.work_units.select(c_unit=t.work_units.work_unit_id, task_type=t.work_units.task_type)
    j = wu.outer_join(settled, wu.c_unit == settled.s_unit)
    return j.select(
        c_unit=ibis.coalesce(j.c_unit, j.s_unit), task_type=j.task_type, settled=j.s_unit.notnull()
    )


def runaway_agents(
    ev: ir.Table, start: datetime, end: datetime, units: ir.Table | None = None
) -> list[dict[str, Any]]:
    """Work units with calls far above their workflow x task type's norm and nothing accepted (module doc).

    ``units`` is :func:`unit_context` (``c_unit``, ``task_type``, ``settled``); without it every unit
    is judged against its workflow and counts as unsettled.
    """
    hist = start - timedelta(days=BASELINE_DAYS)
    w = ev.filter((ev.ts >= ibis.literal(hist)) & (ev.ts < ibis.literal(end)))
    w = w.filter(w.work_unit_id.notnull() & (w.calls > 0))
    u = w.group_by(["workflow", "work_unit_id"]).aggregate(
        calls=w.calls.sum(), cost=w.model_cost.sum(), first=w.ts.min()
    )
    if units is not None:
        u = u.left_join(units, u.work_unit_id == units.c_unit).drop("c_unit")
    else:
        u = u.mutate(task_type=ibis.null("string"), settled=ibis.literal(False))
    by_wf: dict[str, list[dict[str, Any]]] = {}
    for r in u.to_pyarrow().to_pylist():
        by_wf.setdefault(r["workflow"] or "(none)", []).append(r)
    out = []
    for wf, wf_units in by_wf.items():
        by_task: dict[str, list[dict[str, Any]]] = {}
        for r in wf_units:
            by_task.setdefault(r["task_type"] or "", []).append(r)
        small = [r for task, rs in by_task.items() if len(rs) < MIN_NORM_UNITS or not task for r in rs]
        norms = [(task, rs) for task, rs in by_task.items() if task and len(rs) >= MIN_NORM_UNITS]
        if small:  # task types too rare for a norm of their own are judged against the whole workflow
            norms.append(("", small))
        for task, rs in norms:
            basis = wf_units if not task else rs
            if len(basis) < MIN_NORM_UNITS:
                continue
            out += _runaways(wf, task, rs, basis, start)
    return out


def _runaways(
    wf: str, task: str, judged: list[dict[str, Any]], basis: list[dict[str, Any]], start: datetime
) -> list[dict[str, Any]]:
    calls = np.array([float(r["calls"]) for r in basis])
    cost = np.array([float(r["cost"] or 0.0) for r in basis])
    med = float(np.median(calls))
    logs = np.log(calls)
    log_med = float(np.median(logs))
    log_mad = max(float(np.median(np.abs(logs - log_med))), LOG_MAD_FLOOR)
    per_call = float(cost.sum() / calls.sum()) if calls.sum() else 0.0
    norm = f"{wf} / {task}" if task else wf
    out = []
    for r in judged:
        c, k = float(r["calls"]), float(r["cost"] or 0.0)
        if r["first"] < start or r.get("settled"):
            continue
        z = 0.6745 * (float(np.log(c)) - log_med) / log_mad
        if z < Z_RUNAWAY or c < RUNAWAY_RATIO * med or c < MIN_RUNAWAY_CALLS:
            continue
        out.append(
            {
                "kind": "runaway_agent",
                "dimension": "workflow / task_type" if task else "workflow",
                "key": norm,
                "day": _day(r["first"]).date().isoformat(),
                "value": c,
                "baseline": med,
                "score": z,
                "spend_at_stake": float(k - med * per_call),
                "example_work_units": [r["work_unit_id"]],
                "message": f"work unit {r['work_unit_id']} in {norm} made {int(c)} calls, "
                f"{c / med if med else float('inf'):.0f}x the median of {med:g}, and nothing was accepted",
            }
        )
    return out


def model_mix(ev: ir.Table, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Days where a workflow's model mix moved far from its recent mix (see the module docstring)."""
    hist = start - timedelta(days=MIX_BASELINE_DAYS)
    n = (end - hist).days
    w = ev.filter((ev.ts >= ibis.literal(hist)) & (ev.ts < ibis.literal(end)) & (ev.calls > 0))
    w = w.filter(w.workflow.notnull() & w.model.notnull())
    g = w.group_by(workflow=w.workflow, model=w.model, day=w.ts.truncate("D")).aggregate(
        calls=w.calls.sum(), cost=w.model_cost.sum()
    )
    # the day's people (work units when calls name no user): one person's calls mostly share a model,
    # so people, not calls, are the sample the day's mix is drawn from
    who = ibis.coalesce(w.user_id, w.work_unit_id) if "user_id" in w.columns else w.work_unit_id
    gu = w.group_by(workflow=w.workflow, day=w.ts.truncate("D")).aggregate(units=who.nunique())
    data: dict[str, dict[str, np.ndarray]] = {}
    cost: dict[str, np.ndarray] = {}
    units: dict[str, np.ndarray] = {}
    for r in g.to_pyarrow().to_pylist():
        i = (_day(r["day"]) - hist).days
        data.setdefault(r["workflow"], {}).setdefault(r["model"], np.zeros(n))[i] += float(r["calls"])
        cost.setdefault(r["workflow"], np.zeros(n))[i] += float(r["cost"] or 0.0)
    for r in gu.to_pyarrow().to_pylist():
        units.setdefault(r["workflow"], np.zeros(n))[(_day(r["day"]) - hist).days] = float(r["units"] or 0)
    out = []
    for wf, models in data.items():
        names = sorted(models)
        m = np.vstack([models[k] for k in names])  # models x days
        for i in range(MIX_BASELINE_DAYS, n):
            day_calls = m[:, i].sum()
            base_calls = m[:, i - MIX_BASELINE_DAYS : i].sum(axis=1)
            if day_calls < MIN_MIX_CALLS or base_calls.sum() < MIN_MIX_CALLS:
                continue
            p, q = m[:, i] / day_calls, base_calls / base_calls.sum()
            tv = 0.5 * float(np.abs(p - q).sum())
            # sampling noise of the day's mix: about 0.5 x sum sqrt(q (1 - q) / n) for n people
            n_units = max(float(units.get(wf, np.zeros(n))[i]), 1.0)
            noise = 0.5 * float(np.sqrt(q * (1 - q) / n_units).sum())
            if tv < MIX_SHIFT or tv < MIX_NOISE_K * noise:
                continue
            day = hist + timedelta(days=i)
            base_cost = cost[wf][i - MIX_BASELINE_DAYS : i].sum() / base_calls.sum()
            gained = names[int(np.argmax(p - q))]
            out.append(
                {
                    "kind": "model_mix_change",
                    "dimension": "workflow",
                    "key": wf,
                    "day": day.date().isoformat(),
                    "value": tv,
                    "baseline": MIX_SHIFT,
                    "score": tv,
                    "spend_at_stake": float(cost[wf][i] - day_calls * base_cost),
                    "example_work_units": _examples(ev.filter(ev.model == gained), "workflow", wf, day),
                    "message": f"{wf}: model mix moved {tv:.0%} on {day:%Y-%m-%d}; {gained} went from "
                    f"{q[names.index(gained)]:.0%} to {p[names.index(gained)]:.0%} of calls",
                }
            )
    return out


def lookback(now: datetime, days: int) -> tuple[datetime, datetime]:
    """[first, end): the UTC days the detectors read for the anomalies of the last ``days`` days up to
    and including today, their baselines included."""
    end = _day(now) + timedelta(days=1)
    return end - timedelta(days=days + max(BASELINE_DAYS, MIX_BASELINE_DAYS)), end


def detect(ev: ir.Table, t: Tables | None, now: datetime, *, days: int = 14) -> pa.Table:
    """Every anomaly on the last ``days`` UTC days up to and including today, largest spend at stake first."""
    # Every detector and every example look-up reads the same window: compute it once on the backend.
    hist, end = lookback(now, days)
    start = end - timedelta(days=days)
    ev = ev.filter((ev.ts >= ibis.literal(hist)) & (ev.ts < ibis.literal(end))).cache()
    units = unit_context(t) if t is not None else None
    rows = spikes(ev, start, end) + runaway_agents(ev, start, end, units) + model_mix(ev, start, end)
    rows.sort(key=lambda r: (-abs(r["spend_at_stake"]), r["kind"], r["key"], r["day"]))
    return pa.Table.from_pylist(rows, schema=SCHEMA)
