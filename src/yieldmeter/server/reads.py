"""Reads on a pool, writes through one writer; computed views cached until the data changes.

Each reader thread opens its own cursor on the store (a DuckDB connection is
not shared between threads) and its own :class:`Workspace` over it, so the
value service's materialised intermediate tables live per thread. Views (a
dashboard section, a role report) are cached by name and filters with the data
version they were computed on: the row counts of the canonical tables plus a
counter the API bumps on its own writes (checked at most every
``version_every_s``).

Stale while revalidate: a cached view is served while the version is
unchanged, or while it is younger than ``min_refresh_s`` (default 10 s). When
it is older and the data changed, the stale view is still served at once and
one refresh is started on a separate refresher thread, so readers never wait
for a recomputation while telemetry streams in; the figures are then at most
one recomputation behind. A reader thread's workspace keeps the value service's
materialised tables (cost lines, unit facts) the same way: while telemetry streams
in they are made again at most every ``min_refresh_s``, so a view asked for the
first time (new filters) is computed from them, not from the store; and they are
made once for all reader threads (:class:`SharedTables`: the first thread that needs
one makes it, as Arrow, the others read the same copy through a view on their own
connection), not once per thread. Records posted
through the REST API (decisions,
budgets, work units...) bump the counter and are seen by the next read. Only
the very first request for a view computes it while the client waits (the
server warms the overview at start). A cached view is answered on the event
loop, without a thread hop, when the version was checked in the last
``version_every_s``.

Timeouts: a read that takes longer than its timeout (60 s) answers
:class:`ReadTimeout` (503 with ``Retry-After``) and its query is interrupted on the
reader thread's own connection, so the thread is free for the next read instead
of finishing work nobody waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace

T = TypeVar("T")
READ_TIMEOUT_S = 60.0
_MISS = object()


class ReadTimeout(TimeoutError):
    pass


class ReadsClosed(RuntimeError):
    """A read asked for while the server stops."""


class SharedTables:
    """The value service's data-only intermediate tables (``yieldmeter.app.value.SHAREABLE``),
    made once per *epoch* and read by every reader thread.

    A thread starts a new epoch when its data refresh is due and the current epoch is older than
    ``min_refresh_s`` or predates a write through the API (``generation``); otherwise it joins the
    current one. Within an epoch a table is made by the first thread that asks; the others wait
    for it rather than make their own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.epoch = 0
        self.generation: int | None = None
        self.started = 0.0
        self._tables: dict[str, Any] = {}
        self._making: dict[str, threading.Lock] = {}

    def join(self, generation: int, max_age_s: float) -> int:
        """The epoch a refreshing thread reads: the current one, or a new one when it is too old."""
        with self._lock:
            if self.generation != generation or time.monotonic() - self.started >= max_age_s:
                self.epoch += 1
                self.generation = generation
                self.started = time.monotonic()
                self._tables, self._making = {}, {}
            return self.epoch

    def get(self, epoch: int, name: str, make: Callable[[], Any]) -> Any:
        with self._lock:
            if epoch != self.epoch:  # a thread still on an older epoch: its own copy
                return make()
            lock = self._making.setdefault(name, threading.Lock())
        with lock:
            with self._lock:
                hit = self._tables.get(name) if epoch == self.epoch else None
            if hit is not None:
                return hit
            table = make()
            with self._lock:
                if epoch == self.epoch:
                    self._tables[name] = table
            return table


class _Running:
    """The connection a read runs on, to interrupt it when its caller stops waiting."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.con: Any = None
        self.done = False
        self.abandoned = False  # its caller stopped waiting: not to be started, or to be interrupted

    def interrupt(self) -> None:
        with self.lock:  # never the next read of the same thread: ``done`` is set under the lock
            if not self.done and self.con is not None:
                self.con.interrupt()

    def abandon(self, loop: asyncio.AbstractEventLoop, every_s: float = 0.1) -> None:
        """Stop the read: it does not start if it has not, and its query is interrupted now and
        again every ``every_s`` until the read is done (an interrupt that comes before a query
        starts, or between two, is lost: DuckDB clears it when the next query starts)."""
        with self.lock:
            self.abandoned = True
            done = self.done
        if not done:
            self.interrupt()
            loop.call_later(every_s, self.abandon, loop, every_s)


class Reads:
    def __init__(
        self,
        ws: Workspace,
        *,
        threads: int = 3,
        min_refresh_s: float = 10.0,
        max_entries: int = 256,
        version_every_s: float = 0.5,
    ) -> None:
        self.root = ws.root
        self.config = ws.config
        self.store = ws.store
        self.min_refresh_s = min_refresh_s
        self.max_entries = max_entries
        self.generation = 0
        self.version_every_s = version_every_s
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="yieldmeter-read")
        self._refresher = ThreadPoolExecutor(1, thread_name_prefix="yieldmeter-refresh")
        self._refreshing: set[Hashable] = set()
        self._version: tuple[float, Any] = (0.0, None)
        self._local = threading.local()
        self._cache: OrderedDict[Hashable, tuple[Any, float, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self.shared = SharedTables()
        self._closing = False
        self._cons: list[Any] = []  # every reader thread's connection, interrupted at close
        self._cons_lock = threading.Lock()

    def close(self) -> None:
        """Stop reading before the store closes: queued reads are cancelled, the queries running
        on the reader threads' connections are interrupted, and the threads are waited for.

        Closing the store closes every cursor made from its connection; a query still running on
        one then crashes the process (it did, in a server stopped while it warmed its overview).
        """
        self._closing = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._refresher.shutdown(wait=False, cancel_futures=True)
        stopped = threading.Event()

        def join() -> None:
            self._pool.shutdown(wait=True)
            self._refresher.shutdown(wait=True)
            stopped.set()

        threading.Thread(target=join, name="yieldmeter-read-close", daemon=True).start()
        # again and again: an interrupt that comes between two queries of a thread is lost (DuckDB
        # clears it when the next query starts)
        while not stopped.wait(0.05):
            with self._cons_lock:
                cons = list(self._cons)
            for con in cons:
                with contextlib.suppress(Exception):
                    con.interrupt()

    def bump(self) -> None:
        """Say the data changed (a write through the API)."""
        self.generation += 1

    # -- per thread ------------------------------------------------------------------------
    def workspace(self) -> Workspace:
        """This thread's workspace over its own cursor; refreshed when the data changed."""
        from yieldmeter.app.workspace import Workspace
        from yieldmeter.store.duckdb_store import Store

        if self._closing:
            raise ReadsClosed("the server is stopping")
        ws = getattr(self._local, "ws", None)
        if ws is None:
            ws = Workspace(self.root, self.config, Store(self.store.cursor(), self.store.path))
            with self._cons_lock:
                self._cons.append(ws.store.con)
            ws.value.keep = False  # a reader never writes: its tables are shared (SharedTables), not kept
            self._local.ws = ws
            self._local.version = None
        version = self.version(ws)
        local = self._local.version
        if local != version:
            # Telemetry changes the row counts every moment under load; forgetting the thread's
            # materialised tables each time would make every read a cold one. So they are kept
            # for min_refresh_s after they were made (the figures are at most that far behind,
            # like a stale view), and dropped at once after a write through the API.
            due = (
                local is None
                or local[0] != version[0]
                or time.monotonic() - self._local.refreshed_at >= self.min_refresh_s
            )
            if due:
                if local is not None:
                    ws.reports.refresh()
                epoch = self.shared.join(version[0], self.min_refresh_s)
                ws.value.shared = lambda name, make: self.shared.get(epoch, name, make)
                self._local.version = version
                self._local.refreshed_at = time.monotonic()
        return ws  # type: ignore[no-any-return]

    def version(self, ws: Workspace) -> tuple[Any, ...]:
        at, known = self._version
        if known is not None and known[0] == self.generation and time.monotonic() - at < self.version_every_s:
            return known  # type: ignore[no-any-return]
        version = (self.generation, *ws.store.counts().values())
        self._version = (time.monotonic(), version)
        return version

    # -- running -----------------------------------------------------------------------------
    async def run(self, fn: Callable[[Workspace], T], timeout: float = READ_TIMEOUT_S) -> T:
        """``fn(workspace)`` on a reader thread, uncached."""
        return await self._wait(lambda ws: fn(ws), timeout, "the query")

    async def view(self, key: Hashable, fn: Callable[[Workspace], T], timeout: float = READ_TIMEOUT_S) -> T:
        """``fn(workspace)``, cached under ``key`` (see the module docstring for when it is recomputed)."""
        hit = self._peek(key, fn)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        return await self._wait(lambda ws: self._cached(key, fn, ws), timeout, "the view")

    async def _wait(self, job: Callable[[Workspace], T], timeout: float, what: str) -> T:
        """``job`` on a reader thread; past ``timeout`` its query is interrupted and ReadTimeout raised."""
        running = _Running()

        def work() -> T:
            try:
                ws = self.workspace()
                with running.lock:
                    if running.abandoned:  # its caller stopped waiting before it started
                        raise ReadTimeout(f"{what} took longer than {timeout:g} s")
                    running.con = ws.store.con
                return job(ws)
            finally:
                with running.lock:
                    running.done = True

        try:
            fut = self._pool.submit(work)
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout)
        except TimeoutError:
            running.abandon(asyncio.get_running_loop())
            raise ReadTimeout(f"{what} took longer than {timeout:g} s") from None
        except (Exception, asyncio.CancelledError) as exc:
            if self._ended_by_close(exc):
                raise ReadsClosed("the server is stopping") from None
            raise

    def _ended_by_close(self, exc: BaseException) -> bool:
        """Whether :meth:`close` ended a read: refused it (the pool is shut down), cancelled it while
        it waited, or interrupted its query; a cancellation of the caller itself is not."""
        if not self._closing:
            return False
        if isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            return task is None or not task.cancelling()
        return True

    def _peek(self, key: Hashable, fn: Callable[[Workspace], Any]) -> Any:
        """A cached view without leaving the event loop, when the data version was checked just now."""
        at, version = self._version
        if version is None or version[0] != self.generation or time.monotonic() - at >= self.version_every_s:
            return _MISS
        state, value = self._lookup(key, version)
        if state == "miss":
            return _MISS
        if state == "stale":
            self._start_refresh(key, fn)
        return value

    def _start_refresh(self, key: Hashable, fn: Callable[[Workspace], Any]) -> None:
        with self._cache_lock:
            start = key not in self._refreshing
            self._refreshing.add(key)
        if start and not self._background(self._refresh, key, fn):
            with self._cache_lock:
                self._refreshing.discard(key)

    def warm(self, key: Hashable, fn: Callable[[Workspace], Any]) -> None:
        """Compute a view in the background (at start, so the first visitor does not wait)."""
        self._background(self._cached, key, fn)

    def _background(self, fn: Callable[..., Any], *args: Any) -> bool:
        """``fn(*args)`` on the refresher thread; False once the server stops (a stale view is
        then served as it is)."""
        if self._closing:
            return False
        try:
            self._refresher.submit(fn, *args)
        except RuntimeError:  # shut down between the check and the submit
            if self._closing:
                return False
            raise
        return True

    def _lookup(self, key: Hashable, version: Any) -> tuple[str, Any]:
        """("fresh" | "stale" | "miss", value)."""
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is None:
                return "miss", None
            v, at, value = hit
            self._cache.move_to_end(key)
            if v[0] != version[0]:  # a write through the API: its author must see it at once
                return "miss", None
            if v == version or time.monotonic() - at < self.min_refresh_s:
                return "fresh", value
            return "stale", value

    def _store(self, key: Hashable, version: Any, value: Any) -> None:
        with self._cache_lock:
            self._cache[key] = (version, time.monotonic(), value)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                old, _ = self._cache.popitem(last=False)
                self._key_locks.pop(old, None)

    def _refresh(self, key: Hashable, fn: Callable[[Workspace], Any]) -> None:
        try:
            ws = self.workspace()
            version = self._local.version
            self._store(key, version, fn(ws))
        finally:
            with self._cache_lock:
                self._refreshing.discard(key)

    def _cached(self, key: Hashable, fn: Callable[[Workspace], T], ws: Workspace | None = None) -> T:
        ws = ws if ws is not None else self.workspace()
        version = self._local.version
        state, value = self._lookup(key, version)
        if state == "fresh":
            return value  # type: ignore[no-any-return]
        if state == "stale":
            self._start_refresh(key, fn)
            return value  # type: ignore[no-any-return]
        with self._cache_lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:  # one computation per view at a time; the others wait for it
            state, value = self._lookup(key, version)
            if state != "miss":
                return value  # type: ignore[no-any-return]
            value = fn(ws)
            self._store(key, version, value)
        return value
