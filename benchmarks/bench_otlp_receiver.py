"""OTLP/HTTP receiver benchmark: protobuf batches of 512 spans from a second process on loopback.

The server (``create_app`` under uvicorn, its single writer committing to a
fresh DuckDB store) runs in a child process; this process sends
``BENCH_RECEIVER_REQUESTS`` requests of 512 GenAI spans over
``BENCH_RECEIVER_CONNECTIONS`` keep-alive connections and times each answer,
which comes only after the spans are committed. Beside it, the raw decode rate
of the same bodies (``ExportTraceServiceRequest.FromString``, nothing else),
the limit, and the ratio.

``BENCH_RECEIVER_DECODE_WORKERS`` sets the server's decode processes
(``server.decode_workers``; default ``auto``, one on 2 cores; ``0`` decodes
on the event loop, as before they existed).

``BENCH_RECEIVER_CHECKPOINT_THRESHOLD`` sets ``server.checkpoint_threshold`` (default: the
server's). The server's peak resident memory and the WAL it holds at the end are reported:
run ``BENCH_RECEIVER_REQUESTS=2000`` (1M spans) to see what continuous load holds.

``BENCH_RECEIVER_ROUTES=otlp`` serves only the receiver's routes and
``BENCH_RECEIVER_NO_RESCORE=1`` turns off the Workspace's re-scoring after
every commit, to isolate the receiver's own cost; such a run writes
``otlp_receiver_isolated.json`` and says what ran.

Target (issue 3): >= 50,000 spans/s sustained with p99 acknowledgement under
100 ms, on 2 cores. Writes ``benchmarks/results/otlp_receiver.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

N_REQUESTS = int(os.environ.get("BENCH_RECEIVER_REQUESTS", 400))
CONNECTIONS = int(os.environ.get("BENCH_RECEIVER_CONNECTIONS", 8))
#: ``otlp`` serves only the receiver's routes; empty (default) serves the whole app, as ``yieldmeter serve``.
NO_RESCORE = os.environ.get("BENCH_RECEIVER_NO_RESCORE") == "1"
DECODE_WORKERS = os.environ.get("BENCH_RECEIVER_DECODE_WORKERS", "auto")
#: ``server.checkpoint_threshold`` (empty: the server's default)
CHECKPOINT = os.environ.get("BENCH_RECEIVER_CHECKPOINT_THRESHOLD", "")
ROUTES = "yieldmeter.server.otlp" if os.environ.get("BENCH_RECEIVER_ROUTES") == "otlp" else ""
SPANS = 512
RESULTS = Path(__file__).parent / "results" / "otlp_receiver.json"

SERVER = """
import sys, uvicorn
from yieldmeter.app.workspace import Workspace
from yieldmeter.server.app import create_app
from yieldmeter.server.context import ServerSettings
Workspace.init(sys.argv[1]).close()
server = {"decode_workers": sys.argv[5]}
if sys.argv[6]:
    server["checkpoint_threshold"] = sys.argv[6]
settings = ServerSettings.from_config(server)
if sys.argv[4] == "1":  # isolate the receiver: no whole-workspace re-scoring after each commit
    Workspace._after_ingest = lambda self, changed: None
routes = sys.argv[3].split(",") if sys.argv[3] else None
app = create_app(sys.argv[1], route_modules=routes, settings=settings)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def _peak_rss_mib(pid: int) -> float | None:
    """A live process's peak resident memory (``VmHWM``; Linux only, else None)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main() -> None:
    import httpx
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from otlp_spans import protobuf_request
    from yieldmeter.server.writer import CHECKPOINT_THRESHOLD

    sys.path.insert(0, str(Path(__file__).parent.parent))
    from tests.loopback import free_port

    load_at_start = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure
    bodies = [protobuf_request(SPANS, offset=i * SPANS) for i in range(N_REQUESTS)]
    t = time.perf_counter()
    for b in bodies:
        ExportTraceServiceRequest.FromString(b)
    decode_rate = N_REQUESTS * SPANS / (time.perf_counter() - t)

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVER,
                str(Path(tmp) / "ws"),
                str(port),
                ROUTES,
                "1" if NO_RESCORE else "0",
                DECODE_WORKERS,
                CHECKPOINT,
            ]
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("server did not start") from None
                    time.sleep(0.2)
            # warm-up: the first request builds the model map
            httpx.post(
                f"{url}/v1/traces",
                content=protobuf_request(SPANS, offset=10**9),
                headers={"content-type": "application/x-protobuf"},
                timeout=60,
            )

            latencies: list[float] = []
            statuses: dict[int, int] = {}
            lock = threading.Lock()
            queue = list(range(N_REQUESTS))

            def sender() -> None:
                with httpx.Client(timeout=60, headers={"content-type": "application/x-protobuf"}) as c:
                    while True:
                        with lock:
                            if not queue:
                                return
                            i = queue.pop()
                        t0 = time.perf_counter()
                        try:
                            status = c.post(f"{url}/v1/traces", content=bodies[i]).status_code
                        except httpx.TransportError:
                            status = 0  # connection lost
                        dt = time.perf_counter() - t0
                        with lock:
                            latencies.append(dt)
                            statuses[status] = statuses.get(status, 0) + 1

            threads = [threading.Thread(target=sender) for _ in range(CONNECTIONS)]
            cpu0 = time.process_time()
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t
            client_cpu = time.process_time() - cpu0  # what the load generator took of the shared cores
            # what the server held: its peak (the writer keeps the WAL in memory until a
            # checkpoint, up to server.checkpoint_threshold), and the WAL it left unwritten
            server_peak_mib = _peak_rss_mib(server.pid)
            wal_mib = sum(p.stat().st_size for p in Path(tmp).rglob("*.wal")) / 2**20
        finally:
            server.terminate()
            server.wait(30)

    ok = statuses.get(200, 0)
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    result = {
        "benchmark": "otlp_receiver",
        "requests": N_REQUESTS,
        "spans_per_request": SPANS,
        "connections": CONNECTIONS,
        "routes": ROUTES or "all (yieldmeter serve)",
        "decode_workers": DECODE_WORKERS,
        "checkpoint_threshold": CHECKPOINT or CHECKPOINT_THRESHOLD,
        "rescore_after_each_commit": not NO_RESCORE,
        "cpu_count": os.cpu_count(),
        "statuses": statuses,
        "spans_per_s": ok * SPANS / wall,
        "ack_ms_p50": statistics.median(latencies) * 1000,
        "ack_ms_p90": pct(0.90),
        "ack_ms_p99": pct(0.99),
        "ack_ms_max": latencies[-1] * 1000,
        "raw_decode_spans_per_s": decode_rate,
        "receiver_to_raw_decode_ratio": (ok * SPANS / wall) / decode_rate,
        "client_cpu_cores": client_cpu / wall,
        "server_peak_rss_mib": server_peak_mib,
        "server_wal_mib_at_end": wal_mib,
        "load_average_at_start": load_at_start,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "target_spans_per_s": 50_000,
        "target_ack_ms_p99": 100,
    }
    out = RESULTS
    if ROUTES or NO_RESCORE:
        out = RESULTS.with_name("otlp_receiver_isolated.json")
    elif N_REQUESTS != 400 or CHECKPOINT:  # not the standard run: kept beside it, named for what differs
        length = f"_{N_REQUESTS}_requests" if N_REQUESTS != 400 else ""
        threshold = f"_checkpoint_{CHECKPOINT}" if CHECKPOINT else ""
        out = RESULTS.with_name(f"otlp_receiver{length}{threshold}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k:>30}: {v:,.2f}" if isinstance(v, float) else f"{k:>30}: {v}")


if __name__ == "__main__":
    main()
