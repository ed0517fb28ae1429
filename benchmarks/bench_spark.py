"""The report set on DuckDB and on Spark over the same lake; Spark's scaling from 1 to 2 cores.

    python benchmarks/bench_spark.py [CALLS ...]     (default: 200000 1000000)

Builds a lake of N synthetic calls (30 days, 40 teams, 8 models, one work unit per 4 calls, signals
on half the units, platform cost items), then times the report set below on DuckDB over the lake and
on Spark ``local[1]`` and ``local[2]`` (a fresh session each, started before the clock runs). Writes
``benchmarks/results/spark.json`` with seconds per report, calls/s and calls/s per core.

The issue asks for 10M calls; on a shared 2-core machine that takes too long for Spark, so the
script measures the sizes given and the results file extrapolates 10M from the largest size
linearly (all reports are scans, joins and aggregations linear in the calls); run it with 10000000
on a bigger machine to measure it.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "spark.json"
MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-sonnet-20241022"),
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("openai", "o3-mini"),
    ("google", "gemini-1.5-pro"),
    ("google", "gemini-1.5-flash"),
    ("acme", "in-house-7b"),
]
WORKFLOWS = ["fraud-review", "support-reply", "board-analysis", "internal-content"]
CONFIG = """workflows:
  - {workflow: fraud-review, team: risk, value_dimension: loss_avoided, unit_value: 150}
  - {workflow: support-reply, team: support, value_dimension: cycle_time, unit_value: 6}
  - {workflow: board-analysis, team: finance, value_dimension: strategic, unit_value: 500}
  - {workflow: internal-content, team: comms, value_dimension: throughput, unit_value: 20}
"""

#: The report set: Workspace reports and the value reports that run on both engines.
REPORTS = {
    "spend_by_team_model_day": lambda ws: ws.spend(["team", "model", "day"]),
    "spend_by_month_workflow": lambda ws: ws.spend(["month", "workflow"]),
    "unpriced": lambda ws: ws.unpriced(),
    "status": lambda ws: ws.status(),
    "value.funnel": lambda ws: ws.value.funnel(),
    "value.yields": lambda ws: ws.value.yields(),
    "value.coverage": lambda ws: ws.value.coverage(),
}


def synthetic(n: int, seed: int = 7) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    ts = np.sort(rng.integers(0, 30 * 86_400 * 1_000_000, n)) + int(start.timestamp() * 1_000_000)
    model_ix = rng.integers(0, len(MODELS), n)
    wf_ix = rng.integers(0, len(WORKFLOWS), n)
    unit = np.arange(n) // 4
    tsa = pa.array(ts, pa.timestamp("us", tz="UTC"))
    calls = pa.table(
        {
            "call_id": pa.array([f"c{i:010d}" for i in range(n)]),
            "ts": tsa,
            "duration_ms": rng.gamma(2.0, 600.0, n),
            "provider": pa.array(np.array([m[0] for m in MODELS])[model_ix]),
            "model": pa.array(np.array([m[1] for m in MODELS])[model_ix]),
            "input_tokens": rng.integers(200, 8000, n),
            "output_tokens": rng.integers(50, 1500, n),
            "team": pa.array([f"team-{t:02d}" for t in rng.integers(0, 40, n)]),
            "user_id": pa.array([f"u{u:04d}" for u in rng.integers(0, 2000, n)]),
            "workflow": pa.array(np.array(WORKFLOWS)[wf_ix]),
            "work_unit_id": pa.array([f"wu{u:09d}" for u in unit]),
        }
    )
    first = np.arange(0, n, 4)
    units = pa.table(
        {
            "work_unit_id": pa.array([f"wu{u:09d}" for u in unit[first]]),
            "workflow": calls.column("workflow").take(pa.array(first)),
            "team": calls.column("team").take(pa.array(first)),
            "user_id": calls.column("user_id").take(pa.array(first)),
            "started_at": tsa.take(pa.array(first)),
            "ended_at": tsa.take(pa.array(first)),
        }
    )
    signed = first[rng.random(len(first)) < 0.5]
    signals = pa.table(
        {
            "signal_id": pa.array([f"s{i:09d}" for i in range(len(signed))]),
            "work_unit_id": pa.array([f"wu{u:09d}" for u in unit[signed]]),
            "ts": tsa.take(pa.array(signed)),
            "kind": pa.array(
                np.array(["accepted", "rejected", "copied", "used_in_artifact"])[
                    rng.integers(0, 4, len(signed))
                ]
            ),
        }
    )
    items = pa.table(
        {
            "item_id": [f"ci-{w}" for w in WORKFLOWS],
            "period_start": pa.array([start] * 4, pa.timestamp("us", tz="UTC")),
            "period_end": pa.array([start + timedelta(days=30)] * 4, pa.timestamp("us", tz="UTC")),
            "amount": [5000.0, 2000.0, 1000.0, 500.0],
            "workflow": WORKFLOWS,
        }
    )
    return {"calls": calls, "work_units": units, "signals": signals, "cost_items": items}


def build_lake(n: int, root: Path) -> Path:
    from yieldmeter.config import parse_config
    from yieldmeter.ingest.conform import conform
    from yieldmeter.lake.ingest import LakeWriter
    from yieldmeter.lake.layout import Lake

    (root / "yieldmeter.yaml").write_text(CONFIG)
    lake = Lake(str(root / "lake"))
    writer = LakeWriter(lake, parse_config(CONFIG))
    writer.sync_reference()
    for name, rows in synthetic(n).items():
        c = conform(name, rows, source="bench")
        lake.write_source(name, c.rows, "bench")
        if name == "calls":
            writer.add_model_pairs(c.rows)
    lake.refresh_manifest()
    return root


def time_engine(root: Path, engine: str, master: str) -> dict[str, float]:
    """Run in a child process: one engine, one fresh session, the report set timed."""
    code = f"""
import json, time
from yieldmeter.lake.engines import EngineSettings, spark_session
from yieldmeter.lake.workspace import open_on_engine
import benchmarks.bench_spark as b
if {engine!r} == "spark":
    spark_session({master!r}, {{"spark.driver.memory": "6g"}})
ws = open_on_engine({str(root)!r}, EngineSettings({engine!r}, {str(root / "lake")!r}, {master!r}))
out = {{}}
t_all = time.perf_counter()
for name, run in b.REPORTS.items():
    t = time.perf_counter()
    run(ws)
    out[name] = time.perf_counter() - t
out["total"] = time.perf_counter() - t_all
print("RESULT" + json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"{engine} {master} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[6:])


def main(sizes: list[int]) -> None:
    runs = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = build_lake(n, Path(tmp))
            for engine, master, cores in (
                ("duckdb", "", 2),
                ("spark", "local[1]", 1),
                ("spark", "local[2]", 2),
            ):
                t = time_engine(root, engine, master or "local[*]")
                runs.append(
                    {
                        "calls": n,
                        "engine": engine,
                        "master": master or None,
                        "cores": cores,
                        "seconds": t,
                        "calls_per_s": n / t["total"],
                        "calls_per_core_s": n / t["total"] / cores,
                    }
                )
                print(
                    f"{n:>11,} calls  {engine:6} {master or '':9} {t['total']:8.1f} s "
                    f"{n / t['total']:>12,.0f} calls/s",
                    flush=True,
                )
    if RESULTS.exists():  # keep the sizes measured by earlier runs, newest figure per setup wins
        seen = {(r["calls"], r["engine"], r["master"]) for r in runs}
        earlier = json.loads(RESULTS.read_text()).get("runs", [])
        runs = [r for r in earlier if (r["calls"], r["engine"], r["master"]) not in seen] + runs
        runs.sort(key=lambda r: (r["calls"], r["engine"], r["master"] or ""))
    largest = max(r["calls"] for r in runs)
    spark2 = next(r for r in runs if r["calls"] == largest and r["master"] == "local[2]")
    spark1 = next(r for r in runs if r["calls"] == largest and r["master"] == "local[1]")
    duck = next(r for r in runs if r["calls"] == largest and r["engine"] == "duckdb")
    out = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "note": "shared 2-core machine, other jobs running: figures are a floor",
        },
        "reports": list(REPORTS),
        "runs": runs,
        "spark_scaling_1_to_2_cores": spark1["seconds"]["total"] / spark2["seconds"]["total"],
        "spark_calls_per_core_s": spark2["calls_per_core_s"],
        "extrapolated_10M": {
            "method": f"linear from {largest:,} calls",
            "duckdb_s": duck["seconds"]["total"] * 10_000_000 / largest,
            "spark_local2_s": spark2["seconds"]["total"] * 10_000_000 / largest,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [200_000, 1_000_000])
