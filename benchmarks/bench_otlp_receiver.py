"""OTLP/HTTP receiver benchmark: protobuf batches of 512 spans from a second process on loopback.

The server (``create_app`` under uvicorn, its single writer committing to a
fresh DuckDB store) runs in a child process; this process sends
``BENCH_RECEIVER_REQUESTS`` requests of 512 GenAI spans over
``BENCH_RECEIVER_CONNECTIONS`` keep-alive connections and times each answer,
which comes once the spans are durable: in the spool with
``BENCH_RECEIVER_ACKNOWLEDGE=spool`` (``server.acknowledge``, the default), after
their commit with ``commit``. ``stored_spans_per_s`` counts the time until the last
acknowledged span was in the store too. Beside it, the raw decode rate
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

``BENCH_RECEIVER_RATES`` (spans a second, comma separated, e.g. ``2000,4000,8000``) runs
the paced sweep instead: requests are sent on a schedule, at each offered rate in turn, whether
or not the earlier ones were answered (open loop), and each acknowledgement is timed from the
moment its request was due, so a client that falls behind counts as waiting too. With a fixed
number of connections each sending its next request on the last answer (the standard run), the
latency is set by the throughput: 8 requests of 512 spans in flight answer in about
4,096 / throughput seconds however steady the server is. The sweep asks the question of the
target instead: up to which sustained rate does the p99 stay under 100 ms? Each step sends
``BENCH_RECEIVER_STEP_S`` seconds (default 10) of requests, at least 100, to one server whose
store keeps growing; the sweep stops after a step that did not keep up (answered below 90% of
the offered rate, or a p99 over 2 s). Writes ``otlp_receiver_paced.json``.

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # tests.loopback: a free port, the store caught up

N_REQUESTS = int(os.environ.get("BENCH_RECEIVER_REQUESTS", 400))
CONNECTIONS = int(os.environ.get("BENCH_RECEIVER_CONNECTIONS", 8))
#: ``otlp`` serves only the receiver's routes; empty (default) serves the whole app, as ``yieldmeter serve``.
NO_RESCORE = os.environ.get("BENCH_RECEIVER_NO_RESCORE") == "1"
DECODE_WORKERS = os.environ.get("BENCH_RECEIVER_DECODE_WORKERS", "auto")
#: ``server.checkpoint_threshold`` (empty: the server's default)
CHECKPOINT = os.environ.get("BENCH_RECEIVER_CHECKPOINT_THRESHOLD", "")
#: ``server.acknowledge``: ``spool`` (the server's default) or ``commit``
ACKNOWLEDGE = os.environ.get("BENCH_RECEIVER_ACKNOWLEDGE", "spool")
ROUTES = "yieldmeter.server.otlp" if os.environ.get("BENCH_RECEIVER_ROUTES") == "otlp" else ""
#: offered rates of the paced sweep, spans a second (empty: the standard closed-loop run)
RATES = [int(r) for r in os.environ.get("BENCH_RECEIVER_RATES", "").split(",") if r.strip()]
STEP_S = float(os.environ.get("BENCH_RECEIVER_STEP_S", 10))
#: connections of the paced sweep: enough that a due request always finds one free
PACED_CONNECTIONS = 64
SPANS = 512
RESULTS = Path(__file__).parent / "results" / "otlp_receiver.json"

SERVER = """
import sys, uvicorn
from yieldmeter.app.workspace import Workspace
from yieldmeter.server.app import create_app
from yieldmeter.server.context import ServerSettings
Workspace.init(sys.argv[1]).close()
server = {"decode_workers": sys.argv[5], "acknowledge": sys.argv[7]}
if sys.argv[6]:
    server["checkpoint_threshold"] = sys.argv[6]
settings = ServerSettings.from_config(server)
if sys.argv[4] == "1":  # isolate the receiver: no follow-up (derivation check, re-score, alerts)
    Workspace._after_ingest = lambda self, changed: None
    Workspace.prepare_follow_up = lambda self, changed: False  # the writer's, since 2026-12-07
    Workspace.finish_follow_up = lambda self, changed, scores: None
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


@contextmanager
def _server(tmp: str) -> Iterator[tuple[str, int]]:
    """The app under uvicorn in a child process on a free loopback port, warmed up: (url, pid)."""
    import httpx
    from tests.loopback import free_port

    from otlp_spans import protobuf_request

    port = free_port()
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
            ACKNOWLEDGE,
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
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(30)


class _Answers:
    """Each request's acknowledgement time and status, from several sender threads."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.lock = threading.Lock()

    def post(self, client: Any, url: str, body: bytes, since: float) -> None:
        """Send ``body``; its time counts from ``since`` (a ``perf_counter`` reading)."""
        import httpx

        try:
            status = client.post(f"{url}/v1/traces", content=body).status_code
        except httpx.TransportError:
            status = 0  # connection lost
        dt = time.perf_counter() - since
        with self.lock:
            self.latencies.append(dt)
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def pct(self, q: float) -> float:
        """The ``q`` quantile in milliseconds (the nearest rank at or below)."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _send(url: str, bodies: list[bytes], connections: int, gap: float | None) -> tuple[_Answers, float]:
    """Send every body over ``connections`` keep-alive connections; the answers and the seconds
    from the first send to the last answer.

    ``gap`` None: each connection sends its next body on the last one's answer (closed loop).
    Otherwise body ``i`` is due ``i * gap`` seconds after the start and sent then by whichever
    connection is free, and timed from when it was due (open loop). The clients are made, and
    each opens its connection (a ``GET /healthz``), before the clock starts: making one takes
    milliseconds of the shared cores, and the first request of a step paid for its connection.
    (The server closes a connection idle for 5 s, as ``yieldmeter serve`` does: below about
    6,500 spans/s a sender's next request connects again, a fraction of a millisecond on
    loopback.) The first body is due a moment after the clock starts, when the senders woken
    with it are back asleep.
    """
    import httpx

    answers = _Answers()
    lock = threading.Lock()
    order = iter(range(len(bodies)))
    start = [0.0]
    lead = 0.0 if gap is None else 0.05
    # the clock starts (``lead`` later) when the last client has opened its connection: the
    # barrier's action runs before any thread passes
    ready = threading.Barrier(connections, action=lambda: start.__setitem__(0, time.perf_counter() + lead))

    def sender() -> None:
        with httpx.Client(timeout=60, headers={"content-type": "application/x-protobuf"}) as c:
            try:
                c.get(f"{url}/healthz")
            except httpx.TransportError:
                ready.abort()  # the others would wait for this one forever
                raise
            ready.wait()
            while True:
                with lock:
                    i = next(order, None)
                if i is None:
                    return
                since = time.perf_counter()
                if gap is not None:
                    since = start[0] + i * gap
                    time.sleep(max(0.0, since - time.perf_counter()))
                answers.post(c, url, bodies[i], since)

    threads = [threading.Thread(target=sender) for _ in range(connections)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return answers, time.perf_counter() - start[0]


def closed_loop() -> None:
    """The standard run: ``N_REQUESTS`` over ``CONNECTIONS`` connections, each sending on the last answer."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from tests.loopback import stored

    from otlp_spans import protobuf_request
    from yieldmeter.server.writer import CHECKPOINT_THRESHOLD

    load_at_start = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure
    bodies = [protobuf_request(SPANS, offset=i * SPANS) for i in range(N_REQUESTS)]
    t = time.perf_counter()
    for b in bodies:
        ExportTraceServiceRequest.FromString(b)
    decode_rate = N_REQUESTS * SPANS / (time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp, _server(tmp) as (url, pid):
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        answers, wall = _send(url, bodies, CONNECTIONS, None)
        client_cpu = time.process_time() - cpu0  # what the load generator took of the shared cores
        stored(url, timeout=600)  # with the spool, the store's writes go on after the answers
        stored_wall = time.perf_counter() - t0
        # what the server held: its peak (the writer keeps the WAL in memory until a
        # checkpoint, up to server.checkpoint_threshold), and the WAL it left unwritten
        server_peak_mib = _peak_rss_mib(pid)
        wal_mib = sum(p.stat().st_size for p in Path(tmp).rglob("*.wal")) / 2**20

    ok = answers.ok()
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
        "statuses": answers.statuses,
        "acknowledge": ACKNOWLEDGE,
        "spans_per_s": ok * SPANS / wall,
        # spans acknowledged over the time until the last was in the store (the same as
        # spans_per_s when each answer waits for its commit)
        "stored_spans_per_s": ok * SPANS / max(wall, stored_wall),
        "ack_ms_p50": statistics.median(answers.latencies) * 1000,
        "ack_ms_p90": answers.pct(0.90),
        "ack_ms_p99": answers.pct(0.99),
        "ack_ms_max": max(answers.latencies) * 1000,
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
    elif N_REQUESTS != 400 or CHECKPOINT or ACKNOWLEDGE != "spool":
        # not the standard run: kept beside it, named for what differs
        length = f"_{N_REQUESTS}_requests" if N_REQUESTS != 400 else ""
        threshold = f"_checkpoint_{CHECKPOINT}" if CHECKPOINT else ""
        ack = f"_{ACKNOWLEDGE}" if ACKNOWLEDGE != "spool" else ""
        out = RESULTS.with_name(f"otlp_receiver{length}{threshold}{ack}.json")
    _write(out, result)


def paced() -> None:
    """The sweep: each rate of ``RATES`` in turn, requests sent on a schedule (see the module's doc)."""
    from tests.loopback import stored

    from otlp_spans import protobuf_request
    from yieldmeter.server.writer import CHECKPOINT_THRESHOLD

    load_at_start = round(os.getloadavg()[0], 2)
    steps: list[dict[str, Any]] = []
    # every step's bodies are made before the server starts: made between the steps, they left
    # it idle for seconds, and it wrote its WAL into the file then (a checkpoint), which a
    # server under sustained load does only when the WAL reaches its threshold
    bodies_of: list[list[bytes]] = []
    sent = 0  # spans made so far: every step's spans are new ones
    for rate in RATES:
        n = max(100, round(rate * STEP_S / SPANS))
        bodies_of.append([protobuf_request(SPANS, offset=sent + i * SPANS) for i in range(n)])
        sent += n * SPANS
    with tempfile.TemporaryDirectory() as tmp, _server(tmp) as (url, pid):
        for rate, bodies in zip(RATES, bodies_of, strict=True):
            n = len(bodies)
            answers, wall = _send(url, bodies, PACED_CONNECTIONS, SPANS / rate)
            step = {
                "offered_spans_per_s": rate,
                "requests": n,
                "statuses": answers.statuses,
                "answered_spans_per_s": answers.ok() * SPANS / wall,
                "ack_ms_p50": answers.pct(0.50),
                "ack_ms_p90": answers.pct(0.90),
                "ack_ms_p99": answers.pct(0.99),
                "ack_ms_max": max(answers.latencies) * 1000,
            }
            step["kept_up"] = step["answered_spans_per_s"] >= 0.9 * rate and step["ack_ms_p99"] <= 2000
            steps.append(step)
            print(
                f"offered {rate:>7,} spans/s: answered {step['answered_spans_per_s']:>9,.0f}, "
                f"p50 {step['ack_ms_p50']:>6,.0f} ms, p99 {step['ack_ms_p99']:>6,.0f} ms, {answers.statuses}"
            )
            if not step["kept_up"]:
                break
        t_end = time.perf_counter()
        stored(url, timeout=600)
        stored_after_s = time.perf_counter() - t_end  # the writer's backlog when the last step ended
        server_peak_mib = _peak_rss_mib(pid)
    met = [
        s["offered_spans_per_s"]
        for s in steps
        if s["kept_up"] and s["ack_ms_p99"] < 100 and s["statuses"] == {200: s["requests"]}
    ]
    _write(
        RESULTS.with_name(
            "otlp_receiver_paced.json"
            if ACKNOWLEDGE == "spool"
            else f"otlp_receiver_paced_{ACKNOWLEDGE}.json"
        ),
        {
            "benchmark": "otlp_receiver_paced",
            "spans_per_request": SPANS,
            "step_seconds": STEP_S,
            "connections": PACED_CONNECTIONS,
            "routes": ROUTES or "all (yieldmeter serve)",
            "decode_workers": DECODE_WORKERS,
            "checkpoint_threshold": CHECKPOINT or CHECKPOINT_THRESHOLD,
            "acknowledge": ACKNOWLEDGE,
            "rescore_after_each_commit": not NO_RESCORE,
            "cpu_count": os.cpu_count(),
            "steps": steps,
            "seconds_to_store_the_rest_after_the_last_step": stored_after_s,
            # the highest offered rate every request of which was answered, with p99 under 100 ms
            "highest_rate_with_p99_under_100ms": max(met, default=None),
            "server_peak_rss_mib": server_peak_mib,
            "load_average_at_start": load_at_start,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "target_spans_per_s": 50_000,
            "target_ack_ms_p99": 100,
        },
    )


def _write(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        if k != "steps":
            print(f"{k:>34}: {v:,.2f}" if isinstance(v, float) else f"{k:>34}: {v}")


def main() -> None:
    paced() if RATES else closed_loop()


if __name__ == "__main__":
    main()
