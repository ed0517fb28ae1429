"""The read pool's view cache: stale while telemetry streams in, fresh at once after an API write."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from yieldmeter.app.workspace import Workspace
from yieldmeter.ingest.conform import conform
from yieldmeter.server.reads import Reads


def _signal(ws: Workspace, n: int) -> None:
    rows = conform(
        "signals",
        pa.Table.from_pylist(
            [
                {
                    "signal_id": f"s-new-{n}",
                    "work_unit_id": "fr-wu-3",
                    "ts": "2025-03-03T10:00:00Z",
                    "kind": "accepted",
                }
            ]
        ),
        source="test",
    )
    ws.store.write("signals", rows.rows)


def test_stale_while_revalidate_and_read_your_writes(example_workspace: Path) -> None:
    with Workspace.open(example_workspace) as ws:
        reads = Reads(ws, min_refresh_s=0.0, version_every_s=0.0)
        computed: list[int] = []

        def count(w: Workspace) -> int:
            n = w.store.count("signals")
            computed.append(n)
            return n

        async def scenario() -> None:
            first = await reads.view("signals", count)
            assert await reads.view("signals", count) == first  # unchanged data: served from the cache
            assert computed == [first]
            _signal(ws, 1)  # telemetry landed (row counts changed)
            assert await reads.view("signals", count) == first  # the stale view, at once
            deadline = time.monotonic() + 20
            while await reads.view("signals", count) != first + 1:  # ... refreshed in the background
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            _signal(ws, 2)
            reads.bump()  # a write through the REST API: its author reads it back at once
            assert await reads.view("signals", count) == first + 2

        try:
            asyncio.run(scenario())
        finally:
            reads.close()


def _slow_read(
    interrupted: list[BaseException],
    started: threading.Event | None = None,
    ran_on: list[threading.Thread] | None = None,
) -> Callable[[Workspace], int]:
    """A read that is minutes of work for DuckDB (a 10^12-row cross product) unless its query is
    interrupted; the interrupt is appended to ``interrupted``, the thread it ran on to ``ran_on``,
    and ``started`` is set when it begins."""
    import duckdb

    def slow(w: Workspace) -> int:
        if ran_on is not None:
            ran_on.append(threading.current_thread())
        if started is not None:
            started.set()
        try:
            return int(
                w.store.con.execute(
                    "SELECT count(*) FROM range(1000000) a, range(1000000) b WHERE a.range + b.range = 7"
                ).fetchone()[0]
            )
        except duckdb.InterruptException as exc:
            interrupted.append(exc)
            raise

    return slow


def test_a_read_past_its_timeout_is_interrupted_and_answers_503(example_workspace: Path) -> None:
    """A slow query answers ReadTimeout (503 with Retry-After) and is interrupted on its reader
    thread, so the one thread of this pool is free for the next read at once."""
    import pytest

    from yieldmeter.server.problems import to_problem
    from yieldmeter.server.reads import ReadTimeout

    interrupted: list[BaseException] = []
    slow = _slow_read(interrupted)

    with Workspace.open(example_workspace) as ws:
        reads = Reads(ws, threads=1)

        async def scenario() -> None:
            t0 = time.monotonic()
            with pytest.raises(ReadTimeout) as caught:
                await reads.run(slow, timeout=0.5)
            assert time.monotonic() - t0 < 5
            resp = to_problem(caught.value)
            assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
            t1 = time.monotonic()  # the same (only) reader thread answers the next read quickly
            assert await reads.run(lambda w: w.store.count("calls"), timeout=30) == 13
            assert time.monotonic() - t1 < 10
            assert len(interrupted) == 1
            with pytest.raises(ReadTimeout):  # a cached view times out the same way
                await reads.view("slow", slow, timeout=0.5)
            assert await reads.run(lambda w: 1, timeout=30) == 1

        try:
            asyncio.run(scenario())
        finally:
            reads.close()


def test_close_interrupts_running_reads_before_the_store_closes(example_workspace: Path) -> None:
    """A server stopped while a read runs (its overview warming at start, in the crash this
    guards against) must not close the store under the reader thread's query: closing the store
    closes every cursor made from it, and a query still running on one crashed the process.
    ``close()`` interrupts the query and waits for the thread; a read asked for afterwards, or
    one whose query was interrupted, answers 503."""
    import pytest

    from yieldmeter.server.problems import to_problem
    from yieldmeter.server.reads import ReadsClosed

    started = threading.Event()
    interrupted: list[BaseException] = []
    ran_on: list[threading.Thread] = []
    slow = _slow_read(interrupted, started, ran_on)

    with Workspace.open(example_workspace) as ws:
        reads = Reads(ws, threads=2)

        async def scenario() -> None:
            running = asyncio.ensure_future(reads.run(slow, timeout=120))
            assert await asyncio.to_thread(started.wait, 20)
            t0 = time.monotonic()
            # bounded: were the interrupt lost, the query would run for minutes (a daemon thread,
            # so a close that never returns fails the test instead of holding the process)
            closer = threading.Thread(target=reads.close, daemon=True)
            closer.start()
            await asyncio.to_thread(closer.join, 60)
            assert not closer.is_alive() and time.monotonic() - t0 < 10  # interrupted, not run to its end
            # the reader thread has finished: nothing runs on a cursor when the store closes
            assert not ran_on[0].is_alive()
            assert len(interrupted) == 1
            with pytest.raises(ReadsClosed) as caught:
                await running
            resp = to_problem(caught.value)
            assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
            with pytest.raises(ReadsClosed):
                await reads.run(lambda w: 1)
            # nothing starts in the background any more: a stale view is served as it is
            reads.warm("overview", lambda w: 1)
            reads._start_refresh("overview", lambda w: 1)
            assert "overview" not in reads._refreshing

        asyncio.run(scenario())


def test_a_read_that_timed_out_before_its_query_started_never_runs(example_workspace: Path) -> None:
    """A read whose caller stopped waiting while its thread was still getting ready (here: a
    slow workspace) does not start when the thread is ready: no query of it was running to be
    interrupted, and an interrupt sent before a query starts is lost. A queued one never runs
    either (its future is cancelled)."""
    import pytest

    from yieldmeter.server.reads import ReadTimeout

    ran: list[str] = []
    with Workspace.open(example_workspace) as ws:
        reads = Reads(ws, threads=1)
        ready = reads.workspace

        def slow_to_get_ready() -> Workspace:
            time.sleep(1.0)
            return ready()

        reads.workspace = slow_to_get_ready  # type: ignore[method-assign]

        async def scenario() -> None:
            with pytest.raises(ReadTimeout):
                await reads.run(lambda w: ran.append("started"), timeout=0.2)
            reads.workspace = ready  # type: ignore[method-assign]
            assert await reads.run(lambda w: 5, timeout=30) == 5  # after the first got ready
            assert ran == []

        try:
            asyncio.run(scenario())
        finally:
            reads.close()
