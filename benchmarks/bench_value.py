"""Benchmark of the value engine: every value report on 10M calls / 1M work units.

    python benchmarks/bench_value.py [--calls 10000000] [--units 1000000] [--threads 2]

1. Generates a synthetic organisation with numpy/pyarrow straight into a DuckDB
   store file (cached in the temp folder; reused when the same size is asked again).
2. Scores every work unit (``yieldmeter score``), timed on its own.
3. Times all value reports together (funnel, yields, coverage, value per token,
   benchmarks, patterns, waste) through ``ValueService``:
   - cold: the first session after scoring; it computes the unit facts and cost
     lines and keeps them in the store (``yieldmeter.app.value.KEPT``);
   - warm: a fresh service on a warm database, as a new process or the next
     command is: it reads the kept unit facts and cost lines (still current:
     nothing was written since) and computes every report from them;
   - recompute: a fresh service that keeps nothing: every intermediate computed
     from the canonical tables, as the hand-written SQL and pandas do;
   - cached: the same service again (its intermediate tables in hand).
4. Times the same figures computed by hand-written DuckDB SQL, and by pandas on
   the same data (frames loaded before the clock starts), and checks that the
   three agree on the funnel totals.

Targets (issue 4): warm under 3 s; within 2x of the hand-written SQL (compared on
recompute, as both read the canonical tables; warm beside it); over 10x faster
than pandas (warm, with recompute beside it).

Writes ``benchmarks/results/value.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "value.json"

WORKFLOWS = [
    # name, unit_value, baseline_minutes, quality_threshold, risk, slo_ms, owner, baseline_cost
    ("claims-triage", 4.0, 9.0, 60.0, "medium", 20000.0, "head-of-claims", 6.5),
    ("fraud-review", 900.0, 30.0, 70.0, "high", 60000.0, "cro", 40.0),
    ("support-chat", 2.5, 6.0, 50.0, "low", 8000.0, "head-of-support", 3.0),
    ("code-assist", 12.0, 20.0, 55.0, "low", 15000.0, "vp-eng", None),
    ("analyst-qa", 150.0, 45.0, 60.0, "medium", 30000.0, None, None),
    ("content-gen", 1.0, 15.0, 40.0, "low", 30000.0, "cmo", None),
    ("contract-review", 60.0, 40.0, 75.0, "critical", 60000.0, "gc", 80.0),
    ("agent-ops", 8.0, 12.0, 50.0, "medium", 120000.0, None, None),
]
MODELS = [
    ("acme", "m-large", 5.0, 15.0),
    ("acme", "m-medium", 1.0, 4.0),
    ("acme", "m-small", 0.15, 0.6),
    ("acme", "m-reason", 10.0, 40.0),
    ("acme", "m-embed", 0.02, 0.0),
]
T0 = np.datetime64("2026-08-01T00:00:00", "us")
SPAN_US = np.int64(92 * 86400 * 1_000_000)


def config_text() -> str:
    lines = ["workflows:"]
    for name, uv, bm, qt, risk, slo, owner, bc in WORKFLOWS:
        lines += [
            f"  - workflow: {name}",
            f"    unit_value: {uv}",
            f"    baseline_minutes: {bm}",
            f"    quality_threshold: {qt}",
            f"    risk_class: {risk}",
            f"    latency_slo_ms: {slo}",
            "    labour_rate: 70",
        ]
        if owner:
            lines.append(f"    owner: {owner}")
        if bc is not None:
            lines.append(f"    baseline_cost: {bc}")
    lines += ["privacy:", "  min_group_size: 5", "prices:"]
    for prov, model, i, o in MODELS:
        lines += [f"  - model: {model}", f"    provider: {prov}", f"    input: {i}", f"    output: {o}"]
    return "\n".join(lines) + "\n"


def _ids(prefix: str, idx: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar(prefix), pc.cast(pa.array(idx), pa.string()), "")


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array((T0 + us.astype("timedelta64[us]")).astype("datetime64[us]")).cast(
        pa.timestamp("us", tz="UTC")
    )


def _take(values: list[Any], idx: np.ndarray) -> pa.Array:
    return pc.take(pa.array(values), pa.array(idx))


def generate(n_calls: int, n_units: int, seed: int = 42) -> dict[str, pa.Table]:
    """A synthetic organisation: units, calls, signals, effort, outcomes, cost items."""
    from yieldmeter.schema import TABLES

    rng = np.random.default_rng(seed)
    n_wf, n_teams, n_users = len(WORKFLOWS), 20, 2000
    wf_names = [w[0] for w in WORKFLOWS]
    u_wf = rng.choice(n_wf, size=n_units, p=[0.25, 0.05, 0.25, 0.15, 0.05, 0.1, 0.05, 0.1])
    u_user = rng.integers(0, n_users, n_units)
    user_team = rng.integers(0, n_teams, n_users)
    u_team = user_team[u_user]
    u_start = rng.integers(0, SPAN_US, n_units)
    u_session = np.arange(n_units) // 5
    units = {
        "work_unit_id": _ids("u", np.arange(n_units)),
        "parent_id": _ids("s", u_session),
        "workflow": _take(wf_names, u_wf),
        "user_id": _ids("user", u_user),
        "team": _ids("team", u_team),
        "started_at": _ts(u_start),
        "status": pa.array(np.full(n_units, "completed")),
        "derived": pa.array(np.zeros(n_units, bool)),
        "org": pa.array(np.full(n_units, "default")),
    }
    # calls: each unit gets at least one; the rest spread with a heavy tail (agent loops)
    extra = n_calls - n_units
    weights = rng.pareto(1.5, n_units) + 0.2
    c_unit = np.concatenate([np.arange(n_units), rng.choice(n_units, size=extra, p=weights / weights.sum())])
    c_unit.sort()
    model_of_wf = np.array([0, 3, 2, 1, 0, 2, 3, 1])
    c_model = np.where(rng.random(n_calls) < 0.8, model_of_wf[u_wf[c_unit]], rng.integers(0, 5, n_calls))
    c_ts = u_start[c_unit] + rng.integers(0, 600_000_000, n_calls)
    c_ts = np.minimum(c_ts, SPAN_US - 1)
    calls = {
        "call_id": _ids("c", np.arange(n_calls)),
        "ts": _ts(c_ts),
        "duration_ms": pa.array(rng.lognormal(8.0, 0.8, n_calls)),
        "source": pa.array(np.full(n_calls, "bench")),
        "provider": pa.array(np.full(n_calls, "acme")),
        "model": _take([m[1] for m in MODELS], c_model),
        "operation": pa.array(np.where(rng.random(n_calls) < 0.1, "execute_tool", "chat")),
        "input_tokens": pa.array(rng.lognormal(7.5, 1.0, n_calls).astype(np.int64)),
        "output_tokens": pa.array(rng.lognormal(5.5, 0.9, n_calls).astype(np.int64)),
        "request_count": pa.array(np.ones(n_calls, np.int64)),
        "status": pa.array(np.where(rng.random(n_calls) < 0.02, "error", "ok")),
        "user_id": pc.take(units["user_id"], pa.array(c_unit)),
        "team": pc.take(units["team"], pa.array(c_unit)),
        "work_unit_id": pc.take(units["work_unit_id"], pa.array(c_unit)),
        "workflow": pc.take(units["workflow"], pa.array(c_unit)),
        "session_id": pc.take(units["parent_id"], pa.array(c_unit)),
        "org": pa.array(np.full(n_calls, "default")),
    }
    for name in ("cached_input_tokens", "cache_write_tokens", "reasoning_tokens"):
        calls[name] = pa.array(np.zeros(n_calls, np.int64))
    # signals
    accept_p = np.array([0.6, 0.5, 0.45, 0.35, 0.2, 0.1, 0.55, 0.3])[u_wf]
    accepted = rng.random(n_units) < accept_p
    sig_units, sig_kinds, sig_off = [], [], []

    def add(mask: np.ndarray, kind: str, offset_us: int) -> None:
        idx = np.flatnonzero(mask)
        sig_units.append(idx)
        sig_kinds.append(np.full(len(idx), kind))
        sig_off.append(np.full(len(idx), offset_us))

    kind_pick = rng.random(n_units)
    add(accepted & (kind_pick < 0.6), "accepted", 60_000_000)
    add(accepted & (kind_pick >= 0.6), "copied", 60_000_000)
    add(accepted & (rng.random(n_units) < 0.4), "action_taken", 3_600_000_000)
    add(accepted & (rng.random(n_units) < 0.04), "recontact", 86_400_000_000)
    add(~accepted & (rng.random(n_units) < 0.3), "continued", 30_000_000)
    add(~accepted & (rng.random(n_units) < 0.08), "rejected", 30_000_000)
    label = rng.random(n_units) < 0.02
    truth = rng.random(n_units) < np.where(accepted, 0.8, 0.15)
    add(label & truth, "value_confirmed", 7 * 86_400_000_000)
    add(label & ~truth, "value_denied", 7 * 86_400_000_000)
    s_unit = np.concatenate(sig_units)
    n_sig = len(s_unit)
    signals = {
        "signal_id": _ids("g", np.arange(n_sig)),
        "work_unit_id": pc.take(units["work_unit_id"], pa.array(s_unit)),
        "ts": _ts(np.minimum(u_start[s_unit] + np.concatenate(sig_off), SPAN_US + 10 * 86_400_000_000)),
        "kind": pa.array(np.concatenate(sig_kinds)),
        "org": pa.array(np.full(n_sig, "default")),
    }
    e_unit = np.flatnonzero(rng.random(n_units) < 0.2)
    effort = {
        "effort_id": _ids("e", np.arange(len(e_unit))),
        "work_unit_id": pc.take(units["work_unit_id"], pa.array(e_unit)),
        "ts": _ts(u_start[e_unit]),
        "person": pc.take(units["user_id"], pa.array(e_unit)),
        "kind": pa.array(np.full(len(e_unit), "review")),
        "minutes": pa.array(rng.lognormal(2.0, 0.9, len(e_unit))),
        "org": pa.array(np.full(len(e_unit), "default")),
    }
    dims = ["cycle_time", "revenue", "loss_avoided", "capacity", "strategic", "quality"]
    levels = ["anecdote", "observational", "baseline_comparison", "controlled_experiment"]
    out_rows = []
    for m, month in enumerate(["2026-08", "2026-09", "2026-10"]):
        for w, name in enumerate(wf_names):
            if w in (4, 7):  # no outcomes: uncovered spend
                continue
            for k in range(3):
                dim = dims[(w + k) % len(dims)]
                out_rows.append(
                    {
                        "outcome_id": f"o{m}{w}{k}",
                        "workflow": name,
                        "period_start": f"{month}-01T00:00:00+00:00",
                        "metric": "m",
                        "baseline_value": 10.0,
                        "observed_value": 8.0 if dim != "strategic" else 3.0,
                        "value_dimension": dim,
                        "monetary_value": float(1000 * (w + 1) * (k + 1)),
                        "attribution_share": 0.6,
                        "evidence_level": levels[(w + k + m) % 4],
                        "redeployed": k % 2 == 0,
                        "benefit_owner": "owner",
                        "org": "default",
                    }
                )
    outcomes = pa.Table.from_pylist(out_rows)
    outcomes = outcomes.set_column(
        outcomes.schema.get_field_index("period_start"),
        "period_start",
        pc.cast(
            pc.strptime(outcomes.column("period_start"), "%Y-%m-%dT%H:%M:%S%z", "us"),
            pa.timestamp("us", tz="UTC"),
        ),
    )
    from datetime import UTC, datetime

    months = [
        datetime(2026, 8, 1, tzinfo=UTC),
        datetime(2026, 9, 1, tzinfo=UTC),
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    ]
    items = pa.Table.from_pylist(
        [
            {
                "item_id": f"i{m}{k}",
                "period_start": months[m],
                "period_end": months[m + 1],
                "amount": 10000.0,
                "category": "platform",
                "allocation": "pro_rata",
                "org": "default",
                "workflow": wf_names[k] if k < 2 else None,
            }
            for m in range(3)
            for k in range(3)
        ]
    )
    raw = {
        "work_units": pa.table(units),
        "calls": pa.table(calls),
        "signals": pa.table(signals),
        "effort": pa.table(effort),
        "outcomes": outcomes,
        "cost_items": items,
    }
    out = {}
    for name, t in raw.items():
        schema = TABLES[name].arrow_schema
        cols = []
        for f in schema:
            if f.name in t.column_names:
                cols.append(pc.cast(t.column(f.name), f.type))
            else:
                cols.append(pa.nulls(t.num_rows, f.type))
        out[name] = pa.table(cols, schema=schema)
    return out


def build(path: Path, n_calls: int, n_units: int) -> None:
    """Create the workspace at ``path`` with the synthetic data (skipped when it exists)."""
    from yieldmeter.app.workspace import Workspace

    marker = path / "built.json"
    if marker.exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    (path / "yieldmeter.yaml").write_text(config_text(), encoding="utf-8")
    t0 = time.perf_counter()
    data = generate(n_calls, n_units)
    gen_s = time.perf_counter() - t0
    with Workspace.open(path, create=True) as ws:
        con = ws.store.con
        for name, t in data.items():
            con.register("_bench_rows", t)
            cols = ", ".join(f'"{c}"' for c in t.column_names)
            con.execute(f'INSERT INTO "{name}" ({cols}) SELECT {cols} FROM _bench_rows')
            con.unregister("_bench_rows")
        con.execute("CHECKPOINT")
        ws.refresh_model_map()
    marker.write_text(json.dumps({"generate_s": gen_s, "load_s": time.perf_counter() - t0 - gen_s}))


def all_reports(v: Any) -> dict[str, int]:
    """Every report of the value engine; returns the rows each produced."""
    first = WORKFLOWS[0][0]
    out = {
        "funnel": v.funnel().num_rows,
        "yield": v.yields().yields.num_rows,
        "coverage": v.coverage().by_workflow.num_rows,
        "value_per_token": v.value_per_token(first).num_rows,
        "value_per_token_normalised": v.value_per_token(by="team", normalise=True).num_rows,
        "benchmarks": v.benchmarks(by="team").rows.num_rows,
        "patterns": v.patterns().num_rows,
        "waste": v.waste().num_rows,
    }
    return out


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=int(os.environ.get("BENCH_VALUE_CALLS", 10_000_000)))
    ap.add_argument("--units", type=int, default=int(os.environ.get("BENCH_VALUE_UNITS", 1_000_000)))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "yieldmeter-bench-value")
    ap.add_argument("--skip-pandas", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from value_baselines import pandas_figures, sql_figures
    from yieldmeter.app.value import ValueService
    from yieldmeter.app.workspace import Workspace

    path = args.data / f"{args.calls}-{args.units}"
    build_s, _ = timed(lambda: build(path, args.calls, args.units))
    result: dict[str, Any] = {
        "calls": args.calls,
        "work_units": args.units,
        "threads": args.threads,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": os.getloadavg(),
        },
        "build": json.loads((path / "built.json").read_text()),
    }
    with Workspace.open(path) as ws:
        ws.store.con.execute(f"SET threads = {args.threads}")
        score_s, scored = timed(ws.value.score)
        result["score_s"] = round(score_s, 3)
        result["labels"] = scored.n_labels
        result["calibration"] = scored.summary()
        cold_s, rows = timed(lambda: all_reports(ValueService(Workspace(path, ws.config, ws.store))))
        # a new workspace over the same store: nothing of the sessions before but what the store
        # keeps (as the next command or another process would find it)
        warm = [
            timed(lambda: all_reports(ValueService(Workspace(path, ws.config, ws.store))))[0]
            for _ in range(3)
        ]
        kept_read = ValueService(ws)
        kept_source = str(kept_read.facts().get_name()).rsplit(".", 1)[-1]

        def recomputing() -> ValueService:
            svc = ValueService(Workspace(path, ws.config, ws.store))
            svc.keep = False
            return svc

        recompute = [timed(lambda: all_reports(recomputing()))[0] for _ in range(2)]
        svc = ValueService(ws)
        all_reports(svc)
        cached = [timed(lambda: all_reports(svc))[0] for _ in range(2)]
        per_report = {}
        svc2 = recomputing()
        per_report["facts+cost_lines"] = round(timed(svc2.facts)[0], 3)
        for name, fn in [
            ("funnel", svc2.funnel),
            ("yield", svc2.yields),
            ("coverage", svc2.coverage),
            ("value_per_token", lambda: svc2.value_per_token(WORKFLOWS[0][0])),
            ("benchmarks", lambda: svc2.benchmarks(by="team")),
            ("patterns", svc2.patterns),
            ("waste", svc2.waste),
        ]:
            per_report[name] = round(timed(fn)[0], 3)
        funnel_engine = svc.funnel()
        sql_times = []
        for _ in range(3):
            s, sql_out = timed(lambda: sql_figures(ws.store.con))
            sql_times.append(s)
        pandas_s = None
        pandas_out = None
        if not args.skip_pandas:
            frames = {
                n: ws.store.con.execute(f'SELECT * FROM "{n}"').to_arrow_table().to_pandas()
                for n in (
                    "calls",
                    "work_units",
                    "signals",
                    "effort",
                    "outcomes",
                    "cost_items",
                    "workflows",
                    "scores",
                )
            }
            pandas_s, pandas_out = timed(lambda: pandas_figures(frames, MODELS))

    def key(r: dict[str, Any]) -> tuple[str, str]:
        return (r["workflow"], r["month"])

    engine_totals = {key(r): (r["successful_outcomes"], r["work_units"]) for r in funnel_engine.to_pylist()}
    sql_totals = {key(r): (r["successful_outcomes"], r["work_units"]) for r in sql_out["funnel"]}
    agree_sql = all(engine_totals.get(k) == v for k, v in sql_totals.items() if v[1])
    agree_pandas = None
    if pandas_out is not None:
        pd_totals = {
            key(r): (r["successful_outcomes"], r["work_units"])
            for r in pandas_out["funnel"]
            if r["work_units"]
        }
        agree_pandas = all(engine_totals.get(k) == v for k, v in pd_totals.items())
    warm_s = min(warm)
    recompute_s = min(recompute)
    sql_s = min(sql_times)
    result["machine"]["load_average_after"] = os.getloadavg()
    result.update(
        {
            "build_s": round(build_s, 3),
            "reports_rows": rows,
            "cold_s": round(cold_s, 3),
            "warm_s": round(warm_s, 3),
            "warm_runs_s": [round(x, 3) for x in warm],
            "warm_reads": kept_source,
            "recompute_s": round(recompute_s, 3),
            "recompute_runs_s": [round(x, 3) for x in recompute],
            "cached_s": round(min(cached), 3),
            "per_report_s": per_report,
            "hand_sql_s": round(sql_s, 3),
            "pandas_s": round(pandas_s, 3) if pandas_s is not None else None,
            "warm_vs_sql": round(warm_s / sql_s, 2),
            "recompute_vs_sql": round(recompute_s / sql_s, 2),
            "pandas_vs_warm": round(pandas_s / warm_s, 1) if pandas_s else None,
            "pandas_vs_recompute": round(pandas_s / recompute_s, 1) if pandas_s else None,
            "agree_with_sql": agree_sql,
            "agree_with_pandas": agree_pandas,
            "targets": {
                "warm_under_3s": warm_s < 3.0,
                "within_2x_of_sql": recompute_s <= 2 * sql_s,
                "over_10x_faster_than_pandas": bool(pandas_s and pandas_s / warm_s > 10),
            },
        }
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing[f"{args.calls}_calls_{args.units}_units"] = result
    RESULTS.write_text(json.dumps(existing, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
