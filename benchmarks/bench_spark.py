"""The full report set on DuckDB and on Spark over the same lake; Spark's scaling from 1 to 2 cores.

    python benchmarks/bench_spark.py [--setups duckdb,local1,local2] [CALLS ...]   (default: 200000 1000000)
    python benchmarks/bench_spark.py --sizing     (the sizing plan's other inputs, below)

Builds a lake of N synthetic calls (30 days, 40 teams, 8 models, one work unit per 4 calls, signals
on half the units, platform cost items), then times the report set below on DuckDB over the lake and
on Spark ``local[1]`` and ``local[2]`` (a fresh session each, started before the clock runs). Writes
``benchmarks/results/spark.json`` with seconds per report, calls/s and calls/s per core;
runs of the same report set measured earlier are kept (the newest figure per size and setup wins).

The report set is every report the engine tests compare (``tests/engine_support.py``): the spend,
unpriced and status reports of the Workspace and every public report of the value service, less the
row exports (``priced_calls``, ``quarantine``) and less what an engine declares unsupported
(``yieldmeter.lake.engines.UNSUPPORTED``: waste on Spark), so both engines run the same set.

``--sizing`` measures what the 10-billion-call plan in ``docs/scale-out.md`` needs besides the
report set, into ``benchmarks/results/spark_sizing.json``:

* ``spark normalise`` on ``local[1]`` over the OTLP traces of a simulated organisation (one, four
  and twelve weeks): spans per core-second, the marginal rate between the two largest (fixed costs out);
* in-memory scoring (``score_tables``, what every report over a lake without stored scores runs on
  the driver): the bytes of the per work unit feature table the driver receives, and the Python
  heap peak (``tracemalloc``, which numpy reports to) while fitting and scoring, per work unit.

``--setups`` picks the engines per run (a 10M run of all three holds the shared 2-core machine for
about 37 minutes: DuckDB 99 s, ``local[2]`` 805 s, ``local[1]`` 1,317 s in ``results/spark.json``).
The 1 -> 2 core scaling is taken at the largest size where both ``local1`` and ``local2`` were
measured: 10M, since all three setups were run at 10M (24 Nov 2026).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the report set comes from tests/engine_support.py
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

#: Reports of the engine tests that are row exports, not reports: left out of the timed set.
ROW_EXPORTS = {"priced_calls", "quarantine"}
#: --setups names -> (engine, Spark master, cores)
SETUPS = {"duckdb": ("duckdb", "", 2), "local1": ("spark", "local[1]", 1), "local2": ("spark", "local[2]", 2)}


def report_set() -> dict[str, Callable[[Any], Any]]:
    """The timed reports: the engine tests' set less row exports and any engine's declared gap."""
    from tests.engine_support import all_reports

    from yieldmeter.lake.engines import UNSUPPORTED

    gaps = {capability for _, capability in UNSUPPORTED}
    return {k: f for k, f in all_reports().items() if k not in ROW_EXPORTS and k not in gaps}


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
for name, run in b.report_set().items():
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


def main(sizes: list[int], setups: list[str]) -> None:
    runs = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = build_lake(n, Path(tmp))
            for setup in setups:
                engine, master, cores = SETUPS[setup]
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
    earlier = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if earlier.get("reports") == list(report_set()):
        # keep the sizes measured by earlier runs of the same report set, newest figure per setup wins
        seen = {(r["calls"], r["engine"], r["master"]) for r in runs}
        runs = [r for r in earlier["runs"] if (r["calls"], r["engine"], r["master"]) not in seen] + runs
        runs.sort(key=lambda r: (r["calls"], r["engine"], r["master"] or ""))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary(runs), indent=2) + "\n")
    print(f"wrote {RESULTS}")


def _run(runs: list[dict[str, Any]], calls: int, master: str | None) -> dict[str, Any] | None:
    return next((r for r in runs if r["calls"] == calls and r["master"] == master), None)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The results file: every run, Spark's 1 -> 2 core scaling and the figures at the largest size.

    Scaling is taken at the largest size with both a ``local[1]`` and a ``local[2]`` run; the
    10M figures are measured when a 10M run exists, else extrapolated linearly from the largest
    size (said so in ``method``).
    """
    both = [n for n in {r["calls"] for r in runs} if _run(runs, n, "local[1]") and _run(runs, n, "local[2]")]
    scaling = None
    if both:
        n = max(both)
        one, two = _run(runs, n, "local[1]"), _run(runs, n, "local[2]")
        assert one is not None and two is not None
        scaling = {"calls": n, "speedup": one["seconds"]["total"] / two["seconds"]["total"]}
    largest = max(r["calls"] for r in runs if r["master"] == "local[2]")
    spark2 = _run(runs, largest, "local[2]")
    duck = _run(runs, largest, None)
    assert spark2 is not None and duck is not None
    factor = 10_000_000 / largest
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "reports": list(report_set()),
        "runs": runs,
        "spark_scaling_1_to_2_cores": scaling,
        "spark_calls_per_core_s": spark2["calls_per_core_s"],
        "at_10M": {
            "method": "measured" if largest == 10_000_000 else f"linear from {largest:,} calls",
            "duckdb_s": duck["seconds"]["total"] * factor,
            "spark_local2_s": spark2["seconds"]["total"] * factor,
        },
    }


# -- sizing: normalise throughput, driver memory of in-memory scoring --------------------------------
SIZING = ROOT / "benchmarks" / "results" / "spark_sizing.json"


def _child(code: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"sizing run failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[6:])  # type: ignore[no-any-return]


def measure_normalise(days: int, root: Path) -> dict[str, Any]:
    """``spark normalise`` of a simulated organisation's OTLP traces on local[1] (session started first)."""
    import shutil

    from yieldmeter.simulate.run import simulate
    from yieldmeter.simulate.scenarios import SCENARIOS, SimulationParams, min_users

    result = simulate(root / "sim", SimulationParams(days=days, users=min_users(SCENARIOS["enterprise"])))
    raw = root / "raw"
    raw.mkdir()
    traces = [p for p in result.source_paths if p.suffix == ".jsonl" and "traces" in p.name]
    for p in traces:
        shutil.copy(p, raw / p.name)
    code = f"""
import json, time
from pathlib import Path
from yieldmeter.config import load_config
from yieldmeter.lake.engines import spark_session
from yieldmeter.lake.spark_jobs import normalise
session = spark_session("local[1]", {{"spark.driver.memory": "4g"}})
config = load_config(Path({str(result.config_path)!r}))
t = time.perf_counter()
summary = normalise(session, {str(raw)!r}, {str(root / "lake")!r}, config)
print("RESULT" + json.dumps({{"seconds": time.perf_counter() - t, "tables": summary.tables}}))
"""
    out = _child(code)
    raw_bytes = sum(p.stat().st_size for p in raw.iterdir())
    spans = out["tables"]["calls"]
    return {
        "days": days,
        "raw_bytes": raw_bytes,
        "calls": spans,
        "seconds": out["seconds"],
        "calls_per_core_s": spans / out["seconds"],
    }


def measure_scoring(n: int, root: Path) -> dict[str, Any]:
    """The driver side of in-memory scoring over a lake of ``n`` synthetic calls (n / 4 work units)."""
    build_lake(n, root)
    code = f"""
import json, time, tracemalloc
from yieldmeter.lake.engines import EngineSettings
from yieldmeter.lake.workspace import open_on_engine
from yieldmeter.scoring.engine import score_units, unit_values_of
from yieldmeter.scoring.unit_value import monetary_outcomes
from yieldmeter.scoring.features import unit_features
ws = open_on_engine({str(root)!r}, EngineSettings("duckdb", {str(root / "lake")!r}))
t = ws.tables()
features = unit_features(t).to_pyarrow()
tracemalloc.start()
t0 = time.perf_counter()
result = score_units(features, unit_values_of(t), outcomes=monetary_outcomes(t).to_pyarrow())
seconds = time.perf_counter() - t0
_, peak = tracemalloc.get_traced_memory()
print("RESULT" + json.dumps({{
    "units": features.num_rows, "feature_bytes": features.nbytes, "score_bytes": result.scores.nbytes,
    "python_peak_bytes": peak, "seconds": seconds}}))
"""
    out = _child(code)
    units = out["units"]
    return {
        "calls": n,
        **out,
        "feature_bytes_per_unit": out["feature_bytes"] / units,
        "python_peak_bytes_per_unit": out["python_peak_bytes"] / units,
        "driver_bytes_per_unit": (out["feature_bytes"] + out["python_peak_bytes"] + out["score_bytes"])
        / units,
    }


def sizing() -> None:
    """Measure the inputs of the sizing plan and write ``results/spark_sizing.json``."""
    normalise_runs = []
    for days in (7, 28, 84):
        with tempfile.TemporaryDirectory() as tmp:
            normalise_runs.append(measure_normalise(days, Path(tmp)))
            print(f"normalise {days:>2} days: {normalise_runs[-1]}", flush=True)
    small, large = normalise_runs[-2:]  # the marginal rate between the two largest: fixed costs out
    marginal = (large["calls"] - small["calls"]) / (large["seconds"] - small["seconds"])
    scoring_runs = []
    for n in (250_000, 1_000_000):
        with tempfile.TemporaryDirectory() as tmp:
            scoring_runs.append(measure_scoring(n, Path(tmp)))
            print(f"scoring {n:>9,} calls: {scoring_runs[-1]}", flush=True)
    a, b = scoring_runs
    per_unit = (
        (b["feature_bytes"] + b["python_peak_bytes"] + b["score_bytes"])
        - (a["feature_bytes"] + a["python_peak_bytes"] + a["score_bytes"])
    ) / (b["units"] - a["units"])
    doc = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "normalise_local1": normalise_runs,
        "normalise_marginal_calls_per_core_s": marginal,
        "scoring_in_memory": scoring_runs,
        "scoring_marginal_driver_bytes_per_unit": per_unit,
    }
    SIZING.parent.mkdir(parents=True, exist_ok=True)
    SIZING.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {SIZING}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--sizing"]:
        sizing()
        sys.exit(0)
    chosen = list(SETUPS)
    if args[:1] == ["--setups"]:
        chosen, args = args[1].split(","), args[2:]
        unknown = [s for s in chosen if s not in SETUPS]
        if unknown:
            sys.exit(f"unknown setup {unknown}: choose from {', '.join(SETUPS)}")
    main([int(a) for a in args] or [200_000, 1_000_000], chosen)
