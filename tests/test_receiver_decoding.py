"""Decoding OTLP bodies in worker processes, the writer's idle checkpoint, and its scoring apart.

Real processes (spawned, as the server does), a real server on loopback and
the real DuckDB file. The golden figures: every span carries 1,000 input and
100 output tokens, so ``n`` spans land ``n`` calls, ``1000 n`` input tokens and
``100 n`` output tokens.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from starlette.testclient import TestClient

from tests.loopback import serving
from tests.test_receiver import PB, make_workspace, receiver_app, rows
from yieldmeter.app.workspace import Workspace
from yieldmeter.ingest.base import ReadOptions, default_workers
from yieldmeter.ingest.otlp import UnreadableRequest
from yieldmeter.server.context import ServerSettings
from yieldmeter.server.decoding import INLINE_BELOW, DecodePool, decode_body
from yieldmeter.server.writer import Writer

T0 = 1_740_823_200_000_000_000  # 2025-03-01T10:00:00Z in ns
OPTIONS = ReadOptions(source="otlp")


def _kv(key: str, value: str | int) -> KeyValue:
    v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=v)


def pb_request(n: int, offset: int = 0) -> bytes:
    """``n`` chat spans of the acme-chat model (priced in the test config), four to a trace."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", "claims-api"))
    ss = rs.scope_spans.add()
    for i in range(offset, offset + n):
        s = ss.spans.add()
        s.trace_id = (i // 4 + 1).to_bytes(16, "big")
        s.span_id = (i + 1).to_bytes(8, "big")
        s.name = "chat acme-chat"
        s.start_time_unix_nano = T0 + i * 1_000_000
        s.end_time_unix_nano = T0 + i * 1_000_000 + 800_000_000
        for k, v in {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "acme",
            "gen_ai.request.model": "acme-chat",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 100,
            "yieldmeter.workflow": "claims-triage",
            "user.id": f"user-{i % 7}",
            "server.address": "api.acme.example",
        }.items():
            s.attributes.append(_kv(k, v))
    return req.SerializeToString()


def test_default_workers() -> None:
    assert default_workers(1) == 0  # one core: the loop decodes, a worker would only compete
    assert default_workers(2) == 2
    assert default_workers(32) == 4


def test_worker_decodes_large_bodies_exactly_as_the_loop_does() -> None:
    body = pb_request(600)
    assert len(body) >= INLINE_BELOW
    pool = DecodePool(1)
    pool.start()
    try:
        batch = asyncio.run(pool.decode("protobuf", body, OPTIONS))
        direct = decode_body("protobuf", body, OPTIONS)
        assert batch.tables.keys() == direct.tables.keys()
        for name, table in direct.tables.items():
            assert batch.tables[name].equals(table), name
        assert batch.rejects.equals(direct.rejects) and batch.ignored == direct.ignored
        assert (pool.in_workers, pool.on_loop) == (1, 0)
        small = asyncio.run(pool.decode("protobuf", pb_request(3), OPTIONS))  # not worth the trip
        assert small.tables["calls"].num_rows == 3
        assert (pool.in_workers, pool.on_loop) == (1, 1)
        # an unreadable body is reported from the worker as from the loop
        with pytest.raises(UnreadableRequest, match="not an OTLP ExportTraceServiceRequest"):
            asyncio.run(pool.decode("protobuf", b"\xff" * INLINE_BELOW, OPTIONS))
    finally:
        pool.stop()


def test_a_dead_worker_is_replaced_and_its_body_still_decoded() -> None:
    body = pb_request(600)
    pool = DecodePool(1)
    pool.start()
    try:
        with pytest.raises(BrokenProcessPool):
            pool._pool.submit(os._exit, 3).result(timeout=60)  # the worker dies
        batch = asyncio.run(pool.decode("protobuf", body, OPTIONS))
        assert batch.tables["calls"].num_rows == 600
        assert (pool.replaced, pool.on_loop, pool.in_workers) == (1, 1, 0)
        asyncio.run(pool.decode("protobuf", body, OPTIONS))  # the new pool serves the next one
        assert pool.in_workers == 1
    finally:
        pool.stop()


def test_receiver_with_decode_workers_lands_every_span(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=ServerSettings(decode_workers=1))
    with serving(app) as url:
        post = {"headers": PB, "timeout": 60}
        for k in range(3):
            r = httpx.post(f"{url}/v1/traces", content=pb_request(600, offset=600 * k), **post)
            assert r.status_code == 200, r.text
        # re-sent: acknowledged, and nothing lands twice
        assert httpx.post(f"{url}/v1/traces", content=pb_request(600), **post).status_code == 200
        r = httpx.post(f"{url}/v1/traces", content=b"\x0a\xff" * INLINE_BELOW, **post)
        assert r.status_code == 400
        health = httpx.get(f"{url}/healthz").json()
    assert health["decode"] == {"workers": 1, "in_workers": 5, "on_loop": 0, "pools_replaced": 0}
    got = rows(root, "SELECT count(*) AS n, sum(input_tokens) AS i, sum(output_tokens) AS o FROM calls")[0]
    assert got == {"n": 1800, "i": 1_800_000, "o": 180_000}


def test_writer_checkpoints_when_idle_not_on_each_commit(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    ws = Workspace.open(root)
    wal = Path(f"{ws.store.path}.wal")
    writer = Writer(ws, settle_s=0.3, checkpoint_threshold="1GB")
    writer.start()
    try:
        setting = ws.store.query_arrow("SELECT current_setting('checkpoint_threshold') AS s").column(0)[0]
        assert setting.as_py().startswith("953.6")  # 1 GB in DuckDB's MiB
        for k in range(4):
            batch = decode_body("protobuf", pb_request(500, offset=500 * k), OPTIONS)
            writer.submit_batch(batch, source="otlp").result(timeout=60)
        assert wal.exists() and wal.stat().st_size > 0  # committed, durable in the WAL, not yet checkpointed
        deadline = time.monotonic() + 30
        while wal.exists() and wal.stat().st_size > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not wal.exists() or wal.stat().st_size == 0  # idle: written into the file
    finally:
        writer.stop()
        ws.close()
    assert rows(root, "SELECT count(*) AS n FROM calls") == [{"n": 2000}]


class _HeldScoring:
    """``score_tables``'s first call held until released, after it read; later calls score at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from yieldmeter.scoring import engine

        self.real = engine.score_tables
        self.started = threading.Event()
        self.release = threading.Event()
        monkeypatch.setattr(engine, "score_tables", self)

    def __call__(self, t: Any) -> Any:
        result = self.real(t)
        if not self.started.is_set():
            self.started.set()
            assert self.release.wait(60)
        return result


@contextmanager
def _writer(root: Path, held: _HeldScoring | None = None, **kw: Any) -> Iterator[tuple[Workspace, Writer]]:
    """A started writer (idle after 0.2 s) on a new workspace; stopped and closed after, a
    held scoring released first."""
    ws = Workspace.open(make_workspace(root))
    writer = Writer(ws, **{"settle_s": 0.2, "checkpoint_threshold": None, **kw})
    writer.start()
    try:
        yield ws, writer
    finally:
        if held is not None:
            held.release.set()
        writer.stop()
        ws.close()


def _spans(writer: Writer, n: int, offset: int = 0) -> Future[Any]:
    """``n`` spans from ``offset`` on submitted as one OTLP request."""
    return writer.submit_batch(decode_body("protobuf", pb_request(n, offset=offset), OPTIONS), source="otlp")


def _count(ws: Workspace, table: str) -> int:
    """The rows of ``table`` (0 before it was made), read on a cursor: the writer's thread
    holds the workspace's connection."""
    made = ws.store.query_arrow(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    )
    if not made.column(0)[0].as_py():
        return 0
    return ws.store.query_arrow(f"SELECT count(*) AS n FROM {table}").column(0)[0].as_py()


def _scored(ws: Workspace) -> int:
    """How many work units the stored scores hold."""
    return _count(ws, "scores")


def _until(done: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_requests_commit_while_the_scores_are_computed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-scoring reads every work unit (seconds on a large store); it runs on a thread of its
    own, so a request that comes meanwhile commits and is answered at once. Four spans make a
    trace and a trace a work unit: 400 spans are 100 units. Checked against the writer that
    scored on its own thread: the second request then waited for the held scoring, and failed."""
    held = _HeldScoring(monkeypatch)
    with _writer(tmp_path / "ws", held) as (ws, writer):
        _spans(writer, 400).result(timeout=60)
        assert held.started.wait(30)  # idle: the scoring began, and holds
        _spans(writer, 400, offset=400).result(timeout=10)  # committed while the scoring is held
        assert _count(ws, "calls") == 800 and _scored(ws) == 0
        held.release.set()
        _until(lambda: _scored(ws) == 200)  # the next idle scores the second request's units too
        assert _scored(ws) == 200


def test_scores_from_before_a_rescore_on_the_writer_are_not_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that writes telemetry with its follow-up at once (an ingest with ``after`` on) scores
    on the writer's thread. A scoring that began apart before it read less: when it ends, its
    scores are dropped, not stored over the newer ones. 400 spans are 100 units; the write adds
    100 more, and its re-score stores 200. Checked by storing the older scores anyway: 100 rows
    were left."""
    held = _HeldScoring(monkeypatch)
    with _writer(tmp_path / "ws", held) as (ws, writer):
        _spans(writer, 400).result(timeout=60)
        assert held.started.wait(30)  # it read the first 100 units, and holds
        batch = decode_body("protobuf", pb_request(400, offset=400), OPTIONS)
        writer.submit(lambda w: w.ingest_batches([batch], source="api", fmt="otlp")).result(timeout=60)
        assert _scored(ws) == 200
        held.release.set()
        _until(lambda: writer._scoring is None, 5)
        time.sleep(0.3)  # and a while for the writer to have stored it, were it stored
        assert _scored(ws) == 200


def test_a_budget_written_meanwhile_does_not_score_the_pending_telemetry(tmp_path: Path) -> None:
    """A budget written through the API is evaluated at once; the telemetry pending (400 spans,
    100 units, not yet settled: settle_s is 60 s here) is left to its own scoring, which the stop
    runs. Checked against the follow-up that took the pending telemetry along: the budget's
    write scored the 100 units itself."""
    with _writer(tmp_path / "ws", settle_s=60) as (ws, writer):
        _spans(writer, 400).result(timeout=60)
        budget = writer.submit(lambda w: w.finops.add_budget("team", "alpha", "month", 10.0))
        budget.result(timeout=60)
        assert _count(ws, "budgets") == 1 and _scored(ws) == 0 and ws.has_pending_changes
        writer.stop()
        assert _scored(ws) == 100


def test_the_wal_is_checkpointed_after_a_scoring_that_ends_during_another_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle checkpoint waits for the scoring (its open read would hold it off). Here the
    scoring ends while the writer runs a job that writes no telemetry (as an API key's
    creation), so no write is pending once it is stored: the WAL is still written into the
    file once nothing came for ``settle_s``. Checked against the writer that checkpointed only
    when its queue was empty as the scoring was stored, which counted the scorer's wake-up
    there and left the WAL behind."""
    held = _HeldScoring(monkeypatch)
    with _writer(tmp_path / "ws", held, checkpoint_threshold="1GB") as (ws, writer):
        wal = Path(f"{ws.store.path}.wal")

        def while_it_ends(_: Workspace) -> None:
            held.release.set()
            _until(lambda: writer._scoring is not None and writer._scoring.done())
            time.sleep(0.1)  # and its wake-up queued

        _spans(writer, 400).result(timeout=60)
        assert held.started.wait(30)
        writer.submit(while_it_ends).result(timeout=60)
        assert wal.stat().st_size > 0
        _until(lambda: not wal.exists() or wal.stat().st_size == 0, 10)
        assert not wal.exists() or wal.stat().st_size == 0
        assert _scored(ws) == 100


def test_a_scoring_that_fails_stops_no_write_and_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scoring that raises on the scorer thread is logged; the writer goes on committing, and
    the scoring is tried again after ``settle_s`` with no other write (400 spans are 100 units,
    800 are 200). Checked against the writer that dropped the failed scoring's changes: nothing
    was scored until the next write. And, before: letting the exception reach the writer's loop
    killed its thread, and the second request was never answered."""
    from yieldmeter.scoring import engine

    real, calls = engine.score_tables, []

    def first_fails(t: Any) -> Any:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise RuntimeError("a scoring that fails")
        return real(t)

    monkeypatch.setattr(engine, "score_tables", first_fails)
    with _writer(tmp_path / "ws") as (ws, writer):
        _spans(writer, 400).result(timeout=60)
        _until(lambda: _scored(ws) == 100)  # no other write came: tried again
        assert calls[0].startswith("yieldmeter-scorer") and len(calls) == 2 and _scored(ws) == 100
        _spans(writer, 400, offset=400).result(timeout=60)
        _until(lambda: _scored(ws) == 200)
        assert _scored(ws) == 200


def test_scores_that_fail_to_be_stored_are_computed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storing the scores raises once (the scoring itself went well): the changes go back to the
    queue and are scored and stored again with no other write (400 spans are 100 units)."""
    from yieldmeter.scoring import engine

    real, calls = engine.store_scores, []

    def first_fails(ws: Any, scores: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a store that fails")
        return real(ws, scores)

    monkeypatch.setattr(engine, "store_scores", first_fails)
    with _writer(tmp_path / "ws") as (ws, writer):
        _spans(writer, 400).result(timeout=60)
        _until(lambda: _scored(ws) == 100)
        assert _scored(ws) == 100 and len(calls) == 2


def test_a_scoring_that_keeps_failing_waits_longer_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every scoring raises; the writer idles (settle_s 0.2 s). Tried at about 0.2 s, then after
    0.2, 0.4 and 0.8 s more (about 0.6, 1.2 and 2.2 s, the wake-ups every 0.2 s and the scorings'
    own time added): at most 4 tries in the first 2.5 s. Checked against the writer that tried
    again at each idle wake-up: 7 tries."""
    from yieldmeter.scoring import engine

    tries: list[float] = []

    def always_fails(t: Any) -> Any:
        tries.append(time.monotonic())
        raise RuntimeError("a scoring that fails")

    monkeypatch.setattr(engine, "score_tables", always_fails)
    with _writer(tmp_path / "ws") as (_, writer):
        _spans(writer, 400).result(timeout=60)
        start = time.monotonic()
        time.sleep(2.5)
        within = [t for t in tries if t - start < 2.5]
    assert 2 <= len(within) <= 4, [round(t - start, 2) for t in tries]


def test_a_scoring_that_keeps_failing_is_tried_less_and_less_often(tmp_path: Path) -> None:
    """Each failure doubles the wait before the next try, from settle_s (0.2 s here) up to
    max_stale_s (1 s): 0.2, 0.4, 0.8, 1, 1; a scoring that succeeds starts the count again.
    (The writer is not started: nothing else touches its state.)"""
    ws = Workspace.open(make_workspace(tmp_path / "ws"))
    writer = Writer(ws, settle_s=0.2, max_stale_s=1.0, checkpoint_threshold=None)
    try:
        waits = []
        for _ in range(5):
            writer._failed({"calls"})
            waits.append(writer._retry_wait)
        assert waits == [0.2, 0.4, 0.8, 1.0, 1.0]
        assert ws.take_pending_changes() == {"calls"}  # handed back, scored with what comes next
        succeeded: Future[Any] = Future()
        succeeded.set_result(None)
        writer._scoring, writer._scoring_changes = succeeded, set()
        writer._finish_scoring()
        writer._failed({"calls"})
        assert writer._retry_wait == 0.2
    finally:
        writer.stop()
        ws.close()


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own priority is Linux's")
def test_scoring_runs_below_the_requests_and_duckdb_leaves_the_decoders_their_cores(tmp_path: Path) -> None:
    """A re-score under load took the two cores from the decode processes and the event loop (answers
    of 100-200 ms at 12,000 spans/s every 30 s): the scorer thread runs 10 nice steps lower (Linux),
    and DuckDB gets the cores the decode processes leave, so a query runs on the thread that asks."""
    cores = len(os.sched_getaffinity(0))
    app = receiver_app(make_workspace(tmp_path / "ws"), settings=ServerSettings(decode_workers=1))
    with TestClient(app):
        ctx = app.state.ctx
        setting = ctx.workspace.store.query_arrow("SELECT current_setting('threads') AS n").column(0)[0]
        assert setting.as_py() == max(1, cores - 1)

        def priority() -> int:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        mine = priority()
        assert ctx.writer._scorer.submit(priority).result(10) == min(19, mine + 10)
    assert ServerSettings(decode_workers=0, duckdb_threads=3).threads() == 3
    assert ServerSettings.from_config({"duckdb_threads": 2, "decode_workers": 0}).threads() == 2
    with pytest.raises(ValueError, match=r"server\.duckdb_threads: 'many'"):
        ServerSettings.from_config({"duckdb_threads": "many"})
