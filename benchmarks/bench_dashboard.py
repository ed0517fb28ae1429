"""Dashboard overview on demo-sized data: render time, cached and not, and p99 with 20 concurrent
readers (varied filters) while ingest runs.

Builds the demo organisation (``yieldmeter simulate``'s enterprise scenario, 30 days) through the
real ingest path, starts ``yieldmeter serve`` as a process, and measures:

- ``compute_s`` (in process, the same ReportService the server calls): ``cold``, the overview with
  nothing materialised (a new reader thread, or the first read after new data); ``warm``, the same
  overview again with the value service's materialised cost lines and facts (no view cache: every
  section recomputed); ``filtered``, the overview for each of several new filters (team, workflow,
  model, period) reusing those materialised tables;
- ``first_render_s``: the first ``GET /`` (the server warms the overview at start);
- ``render_ms``: ``GET /`` one reader at a time, served from the view cache (median, p95, max);
- ``uncached_ms``: ``GET /?...`` one at a time, each with filters never asked before, so each
  is computed (the first on each of the server's reader threads also materialises its tables);
- ``concurrent_ms``: 20 reader threads looping over a Monday review (overview, spend, conversion
  chain, waste, each unfiltered, under four filters and for a month: 24 views, each asked for
  once before the clock) while another thread posts OTLP spans (512 per request) to
  ``/v1/traces`` as fast as they are acknowledged: p50, p99, max, and the ingest rate;
- ``concurrent_uncached_ms``: the same readers and ingest, but every request a page and filter
  nobody asked for before (144 views), so every one is computed while the others wait.

Writes ``benchmarks/results/dashboard.json``. ``--workspace DIR`` reuses a demo workspace built before.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from tests.loopback import free_port  # noqa: E402

from otlp_spans import json_lines  # noqa: E402

TARGET_RENDER_MS = 500
#: What the figures mean, and the targets they miss (rewritten by hand when they change).
NOTE = (
    "Views are cached per filters and served stale-while-revalidate while telemetry streams in "
    "(src/yieldmeter/server/reads.py). A view asked for the first time is computed from the value "
    "service's materialised cost lines and unit facts (made once per data refresh for all reader "
    "threads): compute_s.filtered and uncached_ms. Target missed: uncached renders are about "
    "0.3-0.5 s median but their p95 is about 1 s on two shared cores, and 20 readers asking only "
    "for views nobody asked before (concurrent_uncached_ms) queue for the CPU: far past the 1 s p99. "
    "The cached and refreshed case (concurrent_ms) meets it. Measured while other jobs loaded the "
    "machine (load 6-8 on 2 cores)."
)
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


def filter_pool(root: Path, n: int = 40, seed: int = 7) -> list[str]:
    """Query strings of single-value filters (as the dashboard's pickers make) over the demo data."""
    from yieldmeter.app.workspace import Workspace

    with Workspace.open(root) as ws:
        opts = ws.reports.options(people=True)
        span = ws.status()
    first = span["first_call"].date()
    rng = random.Random(seed)
    pool = [f"team={t}" for t in opts["team"]] + [f"workflow={w}" for w in opts["workflow"]]
    pool += [f"model={m}" for m in opts["model"]]
    pool += [f"period={(first + timedelta(days=d)).isoformat()}" for d in range(0, 28, 3)]
    rng.shuffle(pool)
    return pool[:n]


def compute_times(root: Path, pool: list[str]) -> dict[str, object]:
    from urllib.parse import parse_qs

    from yieldmeter.app.reports import ReportFilters
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.server.views import build

    out: dict[str, object] = {}
    with Workspace.open(root) as ws:
        STORE_ROWS.update({k: v for k, v in ws.store.counts().items() if v})
        f = ReportFilters(people=True)
        for label in ("cold", "warm"):
            t = time.perf_counter()
            build("overview", ws.reports, f)
            out[label] = round(time.perf_counter() - t, 3)
        filtered = []
        for q in pool[:12]:
            args = {k: v[0] for k, v in parse_qs(q).items()}
            t = time.perf_counter()
            build("overview", ws.reports, ReportFilters.of(**args, people=True))
            filtered.append(time.perf_counter() - t)
        out["filtered"] = {
            "filters": len(filtered),
            "median": round(statistics.median(filtered), 3),
            "max": round(max(filtered), 3),
        }
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def pool_period(pool: list[str]) -> str:
    """A period of the pool (the review's whole-month view): the first day's month."""
    day = next(q for q in pool if q.startswith("period="))
    return day.removeprefix("period=")[:7]


def readers_with_ingest(base: str, urls: list[str], duration: float, *, fresh: bool) -> dict[str, object]:
    """READERS threads looping over ``urls`` (random order; with ``fresh``, each url once, in turn)
    while one thread posts OTLP spans; latencies (ms) and the ingest rate."""
    stop = threading.Event()
    latencies: list[float] = []
    errors: list[str] = []
    spans = [0]
    lock = threading.Lock()
    todo = list(urls)
    random.Random(3).shuffle(todo)

    def next_url(rng: random.Random) -> str | None:
        if not fresh:
            return rng.choice(urls)
        with lock:
            return todo.pop() if todo else None

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=120) as c:
            while not stop.is_set():
                url = next_url(rng)
                if url is None:
                    return
                t0 = time.perf_counter()
                r = c.get(base + url)
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
                r = c.post(f"{base}/v1/traces", content=line, headers={"Content-Type": "application/json"})
                if r.status_code == 200:
                    spans[0] += 512

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
    threads.append(threading.Thread(target=ingest))
    t_start = time.perf_counter()
    for th in threads:
        th.start()
    time.sleep(duration)
    stop.set()
    for th in threads:
        th.join(300)
    elapsed = time.perf_counter() - t_start
    return {
        "readers": READERS,
        "requests": len(latencies),
        "errors": len(errors),
        "p50": round(pct(latencies, 0.5), 1),
        "p99": round(pct(latencies, 0.99), 1),
        "max": round(max(latencies), 1),
        "spans_acknowledged": spans[0],
        "spans_per_s": round(spans[0] / elapsed, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--duration", type=float, default=DURATION_S)
    args = ap.parse_args()
    root = args.workspace or Path(tempfile.mkdtemp(prefix="yieldmeter-bench-dash-"))
    counts = None
    if not (root / ".yieldmeter").exists():
        counts = build(root)
    pool = filter_pool(root)
    compute = compute_times(root, pool)
    print(f"overview computed in process: {compute}")

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
        uncached = []
        with httpx.Client(timeout=120) as c:
            for q in pool[12:36]:  # filters the in-process run did not use; each new to the server
                t = time.perf_counter()
                assert c.get(f"{base}/?{q}").status_code == 200, q
                uncached.append((time.perf_counter() - t) * 1000)
        pages = ["/", "/spend", "/funnel", "/waste"]
        # a Monday review: the four pages under a handful of filters, each view asked for once
        # before the clock starts (then served from the cache, refreshed while ingest runs)
        review = [f"{page}?{q}" for page in pages for q in ["", *pool[36:40], "period=" + pool_period(pool)]]
        with httpx.Client(timeout=300) as c:
            for url in review:
                assert c.get(base + url).status_code == 200, url
        steady = readers_with_ingest(base, review, args.duration, fresh=False)
        # every request a page and filters nobody asked for before: each one computed
        fresh = readers_with_ingest(base, [f"{p}?{q}" for p in pages for q in pool[:36]], 20.0, fresh=True)
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
        "uncached_ms": {
            "requests": len(uncached),
            "median": round(statistics.median(uncached), 1),
            "p95": round(pct(uncached, 0.95), 1),
            "max": round(max(uncached), 1),
            "over_target": sum(1 for u in uncached if u > TARGET_RENDER_MS),
            "target": TARGET_RENDER_MS,
        },
        "concurrent_ms": {**steady, "views": len(review), "target_p99": TARGET_P99_MS},
        "concurrent_uncached_ms": {**fresh, "views": len(pages) * 36, "target_p99": TARGET_P99_MS},
        "note": NOTE,
    }
    out = HERE / "results" / "dashboard.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
