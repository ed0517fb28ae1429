"""Dashboard overview on demo-sized data: render time, and p99 with 20 concurrent readers while ingest runs.

Builds the demo organisation (``yieldmeter simulate``'s enterprise scenario, 30 days) through the
real ingest path, starts ``yieldmeter serve`` as a process, and measures over HTTP:

- ``compute_s``: the overview's figures computed from the store with nothing cached (in process,
  the same ReportService the server calls), first and warm value-service runs;
- ``first_render_s``: the first ``GET /`` (the server warms the overview at start);
- ``render_ms``: ``GET /`` one reader at a time (median, p95, max);
- ``concurrent_ms``: 20 reader threads looping over ``GET /`` while another thread posts OTLP
  spans (512 per request) to ``/v1/traces`` as fast as they are acknowledged (p50, p99, max),
  with the ingest rate reached meanwhile.

Writes ``benchmarks/results/dashboard.json``. ``--workspace DIR`` reuses a demo workspace built before.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from otlp_spans import json_lines  # noqa: E402

TARGET_RENDER_MS = 500
TARGET_P99_MS = 1000
READERS = 20
DURATION_S = 30.0
#: Rows per table of the workspace measured (filled by compute_times).
STORE_ROWS: dict[str, int] = {}


def build(root: Path) -> dict[str, int]:
    from yieldmeter.app.demo import load_simulation
    from yieldmeter.simulate import SimulationParams

    sim, _, timings = load_simulation(root, SimulationParams())
    print(f"demo workspace built in {sum(timings.values()):.0f} s: {sim.counts}")
    return dict(sim.counts)


def compute_times(root: Path) -> dict[str, float]:
    from yieldmeter.app.reports import ReportFilters
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.server.views import VIEWS

    out: dict[str, float] = {}
    with Workspace.open(root) as ws:
        STORE_ROWS.update({k: v for k, v in ws.store.counts().items() if v})
        f = ReportFilters()
        for label in ("cold", "warm_value_service"):
            t = time.perf_counter()
            VIEWS["overview"].build(ws.reports, f, False)
            out[label] = round(time.perf_counter() - t, 3)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--duration", type=float, default=DURATION_S)
    args = ap.parse_args()
    root = args.workspace or Path(tempfile.mkdtemp(prefix="yieldmeter-bench-dash-"))
    counts = None
    if not (root / ".yieldmeter").exists():
        counts = build(root)
    compute = compute_times(root)
    print(f"overview computed with nothing cached: {compute}")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "yieldmeter.cli.main", "serve", "-w", str(root), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        t = time.perf_counter()
        assert httpx.get(f"{base}/", timeout=120).status_code == 200
        first = time.perf_counter() - t

        single = []
        with httpx.Client(timeout=60) as c:
            for _ in range(30):
                t = time.perf_counter()
                assert c.get(f"{base}/").status_code == 200
                single.append((time.perf_counter() - t) * 1000)

        stop = threading.Event()
        latencies: list[float] = []
        errors: list[str] = []
        spans = [0]
        lock = threading.Lock()

        def reader() -> None:
            with httpx.Client(timeout=60) as c:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    r = c.get(f"{base}/")
                    ms = (time.perf_counter() - t0) * 1000
                    with lock:
                        latencies.append(ms)
                        if r.status_code != 200:
                            errors.append(str(r.status_code))

        def ingest() -> None:
            with httpx.Client(timeout=60) as c:
                for line in json_lines(10_000_000, per_line=512, seed=11):
                    if stop.is_set():
                        return
                    r = c.post(
                        f"{base}/v1/traces", content=line, headers={"Content-Type": "application/json"}
                    )
                    if r.status_code == 200:
                        spans[0] += 512

        threads = [threading.Thread(target=reader) for _ in range(READERS)] + [
            threading.Thread(target=ingest)
        ]
        t_start = time.perf_counter()
        for th in threads:
            th.start()
        time.sleep(args.duration)
        stop.set()
        for th in threads:
            th.join(120)
        elapsed = time.perf_counter() - t_start
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    result = {
        "data": {"simulated": counts or "reused workspace", "store_rows": STORE_ROWS},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "compute_s": compute,
        "first_render_s": round(first, 3),
        "render_ms": {
            "median": round(statistics.median(single), 1),
            "p95": round(pct(single, 0.95), 1),
            "max": round(max(single), 1),
            "target": TARGET_RENDER_MS,
        },
        "concurrent_ms": {
            "readers": READERS,
            "requests": len(latencies),
            "errors": len(errors),
            "p50": round(pct(latencies, 0.5), 1),
            "p99": round(pct(latencies, 0.99), 1),
            "max": round(max(latencies), 1),
            "target_p99": TARGET_P99_MS,
        },
        "ingest_during": {"spans_acknowledged": spans[0], "spans_per_s": round(spans[0] / elapsed, 1)},
        "note": "Views are cached per filters and served stale-while-revalidate while telemetry streams in "
        "(src/yieldmeter/server/reads.py); compute_s is what a recomputation costs.",
    }
    out = HERE / "results" / "dashboard.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
