"""Record signals, outcomes and effort: to the server's REST API, or to local JSON lines.

Recording never blocks or breaks the application:

- ``record()`` (and ``record_signal``...) only appends to an in-memory buffer
  under a lock that no I/O ever holds, and returns; delivery problems are
  logged and counted (:meth:`Recorder.stats`), never raised.
- A background thread sends the buffer in batches: when a table reaches
  ``batch_size`` rows, every ``flush_interval_s`` seconds, and at exit.
  Sending retries with exponential backoff on connection errors, 408, 429 and
  5xx, honouring ``Retry-After``; ids are made on the client, so a retried
  batch creates no duplicates.
- When the server stays unreachable for ``spill_after_s`` seconds (or at
  exit), the rows are *spilled*: appended to ``<path>/<table>.jsonl``, which
  ``yieldmeter ingest <path>/signals.jsonl --table signals`` imports later.
  Rows the server refuses (a 4xx other than 408/429) are spilled at once, with
  the server's reason logged.
- The buffer holds at most ``max_buffer`` rows. A record that arrives when it
  is full is dropped and counted (``stats()["dropped"]``, with a warning), so
  memory stays bounded whatever happens to the server.
- A forked child (``os.fork``, multiprocessing's ``fork`` start method) gets
  its own recorder state: a fresh lock, an empty buffer and counters (the
  parent sends what it held), no shared connection, and its own background
  thread from its first record, as OpenTelemetry's ``BatchSpanProcessor``
  does. A multiprocessing child sends (or spills) what is left when it exits
  normally (a multiprocessing finalizer: such a child leaves with
  ``os._exit``, which runs no ``atexit`` hook). A child that is killed (the
  workers of a ``Pool`` that ``terminate()``, or a ``with Pool(...)`` block,
  ends) or that calls ``os._exit`` itself sends nothing more: call
  :func:`flush` at the end of the task.

Without an endpoint, rows are appended to ``<path>/<table>.jsonl`` directly.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import math
import os
import re
import sys
import threading
import time
import uuid
import weakref
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("yieldmeter.sdk")

TABLES = ("signals", "outcomes", "effort")
_KEYS = {"signals": "signal_id", "outcomes": "outcome_id", "effort": "effort_id"}
#: Where rows go without an endpoint, and where they are spilled when the server stays down.
DEFAULT_PATH = Path("yieldmeter-records")
#: The longest ``Retry-After`` honoured; a longer one is waited out by the next flush instead.
MAX_RETRY_AFTER_S = 30.0


class RecordError(RuntimeError):
    """Rows could not be delivered (raised inside the recorder only; the app never sees it)."""


class _Refused(RecordError):
    """The server answered that these rows are wrong: resending them cannot help."""


def _iso(v: datetime | date | str | None) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=UTC).isoformat()
    return str(v)  # the server judges it (and rejects it with a reason if it is no time)


def _period_key(v: datetime | date | str | None) -> str | None:
    """A period start as the default outcome id hashes it: a calendar period, read on the
    caller's own wall clock, so that the spellings of one start date are one id and no other
    id changes from the one it always had.

    - A ``date``, and a ``datetime`` at midnight in its own zone (or without one), is the date:
      ``date(2025, 3, 1)``, ``datetime(2025, 3, 1)``, ``datetime(2025, 3, 1, tzinfo=UTC)`` and
      Europe/Berlin's midnight of 1 March are all ``2025-03-01``.
    - Text of the form ``YYYY-MM-DD``, ``T`` or a space, and a time that reads as midnight, in
      any zone or none, is the date: ``2025-03-01T00:00:00Z``, ``2025-03-01T00:00:00+00:00``,
      ``2025-03-01T00:00+01:00``, ``2025-03-01 00:00:00`` are ``2025-03-01``.
    - Anything else is hashed as it always was: another ``datetime`` as its ISO form, UTC when
      it has no zone (``datetime(2025, 3, 1, 12)`` is ``2025-03-01T12:00:00+00:00``, a time at
      +05:30 keeps its +05:30); other text exactly as given (``2025-03-01``,
      ``2025-03-01T12:00:00Z``, ``20250301``, `` 2025-03-01``, ``2025-03``)."""
    if isinstance(v, datetime):
        if (v.hour, v.minute, v.second, v.microsecond) == (0, 0, 0, 0):
            return v.date().isoformat()
        return _iso(v)
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, str) and _MIDNIGHT_TEXT.match(v):
        try:
            dt = datetime.fromisoformat(v[:-1] + "+00:00" if v[-1:] in ("Z", "z") else v)
        except ValueError:
            return v
        if (dt.hour, dt.minute, dt.second, dt.microsecond) == (0, 0, 0, 0):
            return dt.date().isoformat()
        return v
    return _iso(v)


#: a date, ``T`` or a space, and a time at midnight (seconds and fractions optional), any zone
_MIDNIGHT_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]00:00(:00(\.0+)?)?([Zz]|[+-]\d{2}:\d{2})?\Z")


class Recorder:
    """Buffers canonical rows and delivers them from a background thread; thread-safe.

    ``flush_interval_s`` 0 turns off the timed flush (a full batch, :meth:`flush` and
    :meth:`close` still send).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        api_key: str | None = None,
        path: Path | str | None = None,
        batch_size: int = 100,
        flush_interval_s: float = 2.0,
        max_retries: int = 3,
        backoff_s: float = 0.2,
        timeout_s: float = 10.0,
        max_buffer: int = 10_000,
        spill_after_s: float = 60.0,
        source: str = "sdk",
    ) -> None:
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.path = Path(path) if path is not None else DEFAULT_PATH
        self.api_key = api_key
        self.batch_size = max(1, batch_size)
        self.flush_interval_s = flush_interval_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.max_buffer = max_buffer
        self.spill_after_s = spill_after_s
        self.source = source
        self._buffer: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
        self._buffered = 0
        #: guards the buffer and the counters only: never held while sending, writing or sleeping
        #: re-entrant: a signal handler that flushes (or records, or closes) may interrupt its
        #: own thread inside it; a plain lock would wait for itself for ever
        self._lock = threading.RLock()
        self._counts = {
            "sent": 0,
            "quarantined": 0,
            "spilled": 0,
            "dropped": 0,
            "refused": 0,
            "failed_attempts": 0,
        }
        self._down_since: float | None = None
        self._client: Any = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned_closed = False  # record() after close(): warned once
        #: batches a flush has taken and is sending now, by token, with the id of the thread
        #: sending them; whoever pops one owns its rows
        self._inflight: dict[int, tuple[str, list[dict[str, Any]], int]] = {}
        self._tokens = itertools.count()
        self._settled = threading.Condition(self._lock)  # notified when an in-flight batch ends
        _close_at_exit(self)

    # -- recording -----------------------------------------------------------------------------
    def record(self, table: str, row: dict[str, Any]) -> None:
        """Buffer one row; returns at once. Raises only for a table that does not exist, or a
        number JSON cannot carry (NaN, infinity): refused here, it cannot fail the batch it would
        have been sent in.

        After :meth:`close` (at exit: an ``atexit`` hook registered before the first record
        runs after the SDK's own) nothing would send a buffered row later: the row is appended
        to the local file at once instead (``<path>/<table>.jsonl``: spilled, with one warning
        per recorder, when there is an endpoint), without a network call."""
        if table not in self._buffer:
            raise ValueError(f"unknown record table {table!r}; one of {', '.join(TABLES)}")
        clean = {k: v for k, v in row.items() if v is not None}
        for k, v in clean.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{table}.{k}: {v} is not a finite number")
        dropped = 0
        with self._lock:
            # decided under the lock close()'s last take of the buffer waits for: a row buffered
            # before close() set stop is in that take, one recorded after it goes to the file
            closed = self._stop.is_set()
            warn_closed = closed and self.endpoint is not None and not self._warned_closed
            if closed:
                self._warned_closed = True
            elif self._buffered >= self.max_buffer:
                self._counts["dropped"] += 1
                dropped = self._counts["dropped"]
            else:
                self._buffer[table].append(clean)
                self._buffered += 1
                if len(self._buffer[table]) >= self.batch_size:
                    self._wake.set()
        if closed:
            self._record_after_close(table, clean, warn_closed)
            return
        if dropped and (dropped == 1 or dropped % 1000 == 0):
            log.warning(
                "yieldmeter: record buffer full (%d rows): %d record(s) dropped so far",
                self.max_buffer,
                dropped,
            )
        self._ensure_thread()

    def _record_after_close(self, table: str, row: dict[str, Any], warn: bool) -> None:
        """A record to a closed recorder: one line appended to the local file, no network."""
        if self.endpoint is None:  # the file is where rows go anyway
            try:
                self._deliver(table, [row])
            except OSError as exc:
                log.error("yieldmeter: could not write a %s row to %s: %s", table, self.path, exc)
                with self._lock:
                    self._counts["dropped"] += 1
            return
        if warn:
            log.warning(
                "yieldmeter: record() after the recorder was closed: rows are spilled to %s "
                "(yieldmeter ingest imports them), not sent",
                self.path / f"{table}.jsonl",
            )
        self._spill(table, [row])

    def stats(self) -> dict[str, int]:
        """Rows ``buffered`` now and ``in_flight`` (being sent now); ``sent`` (and stored),
        ``quarantined`` (taken by the server but rejected one by one, with a reason, into its
        quarantine), ``spilled`` (to the local file), ``dropped`` (buffer full), ``refused`` (a
        whole batch, by the server, so spilled) since the start; ``failed_attempts``; and
        ``unrecorded``: records the ``record_*`` functions could not even build (process-wide)."""
        with self._lock:
            in_flight = sum(len(rows) for _, rows, _ in self._inflight.values())
            return {
                "buffered": self._buffered,
                "in_flight": in_flight,
                **self._counts,
                "unrecorded": _unrecorded,
            }

    def flush(self, *, final: bool = False, timeout_s: float | None = None) -> dict[str, int]:
        """Send what is buffered now, in the calling thread, and wait for the rows another thread
        (the background one) is sending at the time; never raises.

        Rows the server cannot take now go back to the buffer, or to the spill file once
        the server has been down for ``spill_after_s`` (at once with ``final``). Returns
        :meth:`stats`.

        The wait for another thread's rows lasts at most ``timeout_s`` (by default as long as
        one delivery with its retries may take: ``(max_retries + 1) * (timeout_s + 30)``
        seconds of the recorder's settings); then it returns, with a warning, and those rows
        stay in flight with the thread that sends them. Rows the calling thread itself is
        sending (a flush called again from a signal handler that interrupted a flush, a
        ``close()`` or a record in this thread) are not waited for: the interrupted call
        finishes them when the handler returns.
        """
        me = threading.get_ident()
        with self._lock:
            earlier = {token for token, (_, _, owner) in self._inflight.items() if owner != me}
        self._send_buffer(final=final)
        if timeout_s is None:
            timeout_s = (self.max_retries + 1) * (self.timeout_s + MAX_RETRY_AFTER_S)
        with self._settled:  # each in-flight batch ends: sent, kept, spilled or taken by close()
            settled = self._settled.wait_for(lambda: not earlier.intersection(self._inflight), timeout_s)
            left = sum(len(self._inflight[t][1]) for t in earlier.intersection(self._inflight))
        if not settled:
            log.warning(
                "yieldmeter: flush() stopped waiting after %.1f s for %d rows another thread is sending",
                timeout_s,
                left,
            )
        return self.stats()

    def _send_buffer(self, *, final: bool = False) -> None:
        """Take what is buffered now and send it in the calling thread."""
        batches = []
        with self._lock:
            taken = {t: rows for t, rows in self._buffer.items() if rows}
            self._buffer = {t: [] for t in TABLES}
            self._buffered = 0
            for table, rows in taken.items():
                key = _KEYS[table]
                # the newest record of an id wins (the store keeps the first of a batch)
                rows = list({r.get(key) or id(r): r for r in rows}.values())
                token = next(self._tokens)
                self._inflight[token] = (table, rows, threading.get_ident())
                batches.append((token, table, rows))
        try:
            while batches:
                token, table, rows = batches[0]
                try:
                    self._deliver(table, rows, final=final)
                except Exception as exc:  # never into the app: keep the rows, or spill them
                    batches.pop(0)
                    if self._settle(token):  # else close() has spilled them already
                        self._undelivered(table, rows, exc, final)
                else:
                    batches.pop(0)
                    self._settle(token)
        finally:
            if batches:  # interrupted (KeyboardInterrupt, a signal handler's SystemExit...)
                self._put_back(batches)

    def _put_back(self, batches: list[tuple[int, str, list[dict[str, Any]]]]) -> None:
        """Batches a flush was interrupted in (a BaseException that is no Exception) or did not
        reach: settled, and their rows back at the head of the buffer, for the next flush or
        close() to send (they may have reached the server: ids made here keep that from
        duplicating). Once closed, or what does not fit back, is spilled: never lost."""
        spill = []
        with self._settled:
            for token, table, rows in batches:
                if self._inflight.pop(token, None) is None:
                    continue  # close() has spilled them already
                kept: list[dict[str, Any]] = []
                if not self._stop.is_set():
                    room = max(0, self.max_buffer - self._buffered)
                    kept, rows = rows[:room], rows[room:]
                    self._buffer[table] = kept + self._buffer[table]
                    self._buffered += len(kept)
                if rows:
                    spill.append((table, rows))
            self._settled.notify_all()
        for table, rows in spill:
            self._spill(table, rows)

    def _settle(self, token: int) -> bool:
        """End an in-flight batch; False when close() took its rows meanwhile."""
        with self._settled:
            owned = self._inflight.pop(token, None) is not None
            self._settled.notify_all()
        return owned

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the background thread and send (or spill) what is left; never raises.

        Rows the thread is still sending after ``timeout_s`` (a server that does not answer)
        are spilled to the local file at once, with a warning: at exit the thread dies with
        them."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                self._spill_in_flight(timeout_s)
        self._send_buffer(final=True)
        if self._client is not None:
            with contextlib.suppress(Exception):  # closing a broken connection: nothing left to save
                self._client.close()
            self._client = None

    def _spill_in_flight(self, waited_s: float) -> None:
        """Take the batches still being sent and spill them (the sender no longer owns them)."""
        with self._settled:
            batches = list(self._inflight.values())
            self._inflight.clear()
            self._settled.notify_all()
        for table, rows, _ in batches:
            log.warning(
                "yieldmeter: %d %s rows were still being sent when close() stopped waiting (%.1f s); "
                "spilled to %s",
                len(rows),
                table,
                waited_s,
                self.path / f"{table}.jsonl",
            )
            self._spill(table, rows)

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stop.is_set():
            with self._lock:
                if self._thread is not None:
                    return
                self._thread = threading.Thread(target=self._loop, name="yieldmeter-recorder", daemon=True)
            _close_at_multiprocessing_exit()
            self._thread.start()

    def _reset_after_fork(self) -> None:
        """In a forked child: the parent's thread did not come along, and its lock may have been
        held by a thread that no longer exists. Fresh lock and events, no thread (the first record
        starts one), an empty buffer and counters (what the parent buffered is the parent's to
        send), and no HTTP client (its connections are the parent's sockets)."""
        self._lock = threading.RLock()
        self._settled = threading.Condition(self._lock)
        self._inflight = {}  # the parent's batches: the parent's to settle
        self._wake = threading.Event()
        stopped, self._stop = self._stop.is_set(), threading.Event()
        if stopped:  # a closed recorder stays closed
            self._stop.set()
        self._thread = None
        self._client = None
        self._buffer = {t: [] for t in TABLES}
        self._buffered = 0
        self._counts = dict.fromkeys(self._counts, 0)
        self._down_since = None

    def _loop(self) -> None:
        interval = self.flush_interval_s if self.flush_interval_s > 0 else None
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                return  # close() sends what is left
            try:
                self._send_buffer()
            except Exception:  # the thread must outlive any surprise
                log.exception("yieldmeter: flushing records failed")

    # -- delivery ---------------------------------------------------------------------------
    def _undelivered(self, table: str, rows: list[dict[str, Any]], exc: Exception, final: bool) -> None:
        """Rows a flush could not send: back to the buffer while the outage is short, else spilled."""
        if isinstance(exc, _Refused):
            log.error("yieldmeter: %s; the rows are kept in %s", exc, self.path / f"{table}.jsonl")
            with self._lock:
                self._counts["refused"] += len(rows)
            self._spill(table, rows)
            return
        now = time.monotonic()
        with self._lock:
            if self._down_since is None:
                self._down_since = now
            overflow = rows
            # closing (stop set): nobody will send these later, so they go to the file now
            if not final and not self._stop.is_set() and now - self._down_since < self.spill_after_s:
                room = max(0, self.max_buffer - self._buffered)
                kept, overflow = rows[:room], rows[room:]  # what does not fit back is spilled, not lost
                self._buffer[table] = kept + self._buffer[table]
                self._buffered += len(kept)
        if overflow:
            log.warning(
                "yieldmeter: %s; %d %s rows spilled to %s",
                exc,
                len(overflow),
                table,
                self.path / f"{table}.jsonl",
            )
            self._spill(table, overflow)
        else:
            log.warning("yieldmeter: %s (kept; will retry)", exc)

    def _spill(self, table: str, rows: list[dict[str, Any]]) -> None:
        try:
            self._append(table, rows)
        except OSError as exc:  # the disk too: the rows are lost, and said so
            log.error("yieldmeter: could not spill %d %s rows to %s: %s", len(rows), table, self.path, exc)
            with self._lock:
                self._counts["dropped"] += len(rows)
            return
        with self._lock:
            self._counts["spilled"] += len(rows)

    def _append(self, table: str, rows: list[dict[str, Any]]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / f"{table}.jsonl").open("a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r, default=str) + "\n" for r in rows))

    def _deliver(self, table: str, rows: list[dict[str, Any]], *, final: bool = False) -> None:
        if self.endpoint is None:
            self._append(table, rows)
            with self._lock:
                self._counts["sent"] += len(rows)
            return
        import httpx

        if self._client is None:
            headers = {"x-yieldmeter-source": self.source}
            if self.api_key:
                headers["authorization"] = f"Bearer {self.api_key}"
            self._client = httpx.Client(timeout=self.timeout_s, headers=headers)
        url = f"{self.endpoint}/api/v1/{table}"
        body = json.dumps(rows, default=str)
        delay = self.backoff_s
        last = ""
        attempts = 1 if final else self.max_retries + 1  # at exit: one try, then the file
        for attempt in range(attempts):
            wait = delay
            try:
                resp = self._client.post(url, content=body, headers={"content-type": "application/json"})
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 300:
                    self._delivered(table, rows, resp)
                    return
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code not in (408, 429) and resp.status_code < 500:
                    raise _Refused(f"{url} refused {len(rows)} {table} rows: {last}")
                retry_after = resp.headers.get("retry-after", "")
                if retry_after.isdigit():
                    wait = max(wait, min(float(retry_after), MAX_RETRY_AFTER_S))
            with self._lock:
                self._counts["failed_attempts"] += 1
            if attempt + 1 < attempts:
                if self._stop.wait(wait) and not final:  # closing: stop waiting, close() spills
                    break
                delay = min(delay * 2, MAX_RETRY_AFTER_S)
        raise RecordError(f"could not deliver {len(rows)} {table} rows to {url} ({last})")

    def _delivered(self, table: str, rows: list[dict[str, Any]], resp: Any) -> None:
        """The server took the batch: rows it rejected one by one (kept in its quarantine with
        the reason) are counted as ``quarantined``, not ``sent``, and logged by their id."""
        try:
            rejected = resp.json().get("rejected") or []
        except (ValueError, AttributeError):
            rejected = []
        rejected = [r for r in rejected if isinstance(r, dict)]
        with self._lock:
            self._counts["sent"] += len(rows) - len(rejected)
            self._counts["quarantined"] += len(rejected)
            self._down_since = None
        key = _KEYS[table]
        for r in rejected:
            pos = r.get("position")  # 1-based, the row's place in the body sent
            row = rows[pos - 1] if isinstance(pos, int) and 1 <= pos <= len(rows) else {}
            log.warning(
                "yieldmeter: the server quarantined %s row %s=%s: %s",
                table,
                key,
                row.get(key, f"? (position {pos})"),
                r.get("reason"),
            )


_LIVE: weakref.WeakSet[Recorder] = weakref.WeakSet()
_exit_hook = False


def _close_at_exit(recorder: Recorder) -> None:
    """Send (or spill) what ``recorder`` holds when the interpreter exits; one hook for all."""
    global _exit_hook
    _LIVE.add(recorder)
    if not _exit_hook:
        _exit_hook = True
        atexit.register(_close_all)


def _close_all() -> None:
    for recorder in list(_LIVE):
        try:
            recorder.close(timeout_s=2.0)
        except Exception as exc:  # an exiting interpreter: log, never raise
            log.error("yieldmeter: records not delivered at exit: %s", exc)


#: the process a multiprocessing finalizer was registered in (see below)
_mp_exit_pid: int | None = None


def _close_at_multiprocessing_exit() -> None:
    """In a multiprocessing child, close the recorders when the child's task returns.

    A forked multiprocessing child ends with ``os._exit``: ``atexit`` hooks do not run, its
    finalizers do. They are registered here, from the child's first record, because
    multiprocessing clears the finalizers a child inherits after the fork hooks ran."""
    global _mp_exit_pid
    mp_process = sys.modules.get("multiprocessing.process")
    if mp_process is None or _mp_exit_pid == os.getpid() or mp_process.parent_process() is None:
        return
    _mp_exit_pid = os.getpid()
    from multiprocessing import util

    # the lowest priority: after the application's own finalizers, which may still record
    util.Finalize(None, _close_all, exitpriority=-(2**31))


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()  # another thread may have held it at the fork
    for recorder in list(_LIVE):
        recorder._reset_after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


_default: Recorder | None = None
_default_lock = threading.Lock()


def configure(endpoint: str | None = None, **kwargs: Any) -> Recorder:
    """Set the recorder the ``record_*`` functions use (endpoint: the server's base URL)."""
    global _default
    fresh = Recorder(endpoint, **kwargs)
    with _default_lock:
        old, _default = _default, fresh
    if old is not None:  # outside the lock: record_* calls go to the new recorder meanwhile
        old.close()
    return fresh


def _recorder() -> Recorder:
    """The configured recorder; else one from ``YIELDMETER_ENDPOINT`` / ``YIELDMETER_API_KEY`` /
    ``YIELDMETER_RECORDS_PATH`` (read on first use, never at import)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Recorder(
                os.environ.get("YIELDMETER_ENDPOINT") or None,
                api_key=os.environ.get("YIELDMETER_API_KEY") or None,
                path=os.environ.get("YIELDMETER_RECORDS_PATH") or None,
            )
        return _default


def flush() -> dict[str, int]:
    """Send what the default recorder holds now (see :meth:`Recorder.flush`); never raises."""
    return _recorder().flush()


#: Records the ``record_*`` functions could not even buffer (a value that is not JSON...).
_unrecorded = 0


def _record(table: str, build: Any) -> None:
    """Build a row and buffer it; whatever goes wrong is logged and counted, never raised."""
    global _unrecorded
    try:
        _recorder().record(table, build())
    except Exception as exc:  # recording must never break the application
        _unrecorded += 1
        log.error("yieldmeter: a %s record was not kept (%s: %s)", table, type(exc).__name__, exc)


def record_signal(
    work_unit_id: str,
    kind: str,
    value: float | None = None,
    *,
    actor: str | None = None,
    ts: datetime | str | None = None,
    attributes: dict[str, Any] | None = None,
    signal_id: str | None = None,
) -> str:
    """Record that ``kind`` happened to a work unit (accepted, used_in_artifact...); returns its id."""
    sid = signal_id or uuid.uuid4().hex
    _record(
        "signals",
        lambda: {
            "signal_id": sid,
            "work_unit_id": work_unit_id,
            "ts": _iso(ts) or datetime.now(UTC).isoformat(),
            "kind": kind,
            "value": value,
            "actor": actor,
            # NaN is not JSON: refused here (counted as unrecorded), never stored as invalid text
            "attributes": json.dumps(attributes, default=str, allow_nan=False) if attributes else None,
        },
    )
    return sid


def record_outcome(
    workflow: str,
    metric: str,
    *,
    period_start: datetime | date | str,
    period_end: datetime | date | str | None = None,
    observed_value: float | None = None,
    baseline_value: float | None = None,
    unit: str | None = None,
    value_dimension: str | None = None,
    monetary_value: float | None = None,
    attribution_share: float | None = None,
    evidence_level: str | None = None,
    evidence_ref: str | None = None,
    benefit_owner: str | None = None,
    work_unit_id: str | None = None,
    outcome_id: str | None = None,
) -> str:
    """Record an operating outcome against its baseline; returns its id.

    The default id is derived from workflow, metric, period start and work unit, so
    recording the same month's outcome again replaces it instead of adding one, however
    the start date is written: ``"2025-03-01"``, ``date(2025, 3, 1)``, ``datetime(2025, 3, 1)``
    (at midnight in any zone) and ``"2025-03-01T00:00:00Z"`` (or another midnight in ISO form)
    are one period. A start at another time keeps the id it always had (see ``_period_key``).
    """
    from yieldmeter.ingest.conform import stable_id

    start = _iso(period_start)
    oid = outcome_id or stable_id("outcome", workflow, metric, _period_key(period_start), work_unit_id)
    _record(
        "outcomes",
        lambda: {
            "outcome_id": oid,
            "workflow": workflow,
            "work_unit_id": work_unit_id,
            "period_start": start,
            "period_end": _iso(period_end),
            "metric": metric,
            "baseline_value": baseline_value,
            "observed_value": observed_value,
            "unit": unit,
            "value_dimension": value_dimension,
            "monetary_value": monetary_value,
            "attribution_share": attribution_share,
            "evidence_level": evidence_level,
            "evidence_ref": evidence_ref,
            "benefit_owner": benefit_owner,
        },
    )
    return oid


def record_effort(
    work_unit_id: str,
    minutes: float,
    *,
    kind: str = "review",
    person: str | None = None,
    ts: datetime | str | None = None,
    effort_id: str | None = None,
) -> str:
    """Record human minutes spent on a work unit (review, correction, rework...); returns its id."""
    eid = effort_id or uuid.uuid4().hex
    _record(
        "effort",
        lambda: {
            "effort_id": eid,
            "work_unit_id": work_unit_id,
            "ts": _iso(ts) or datetime.now(UTC).isoformat(),
            "person": person,
            "kind": kind,
            "minutes": minutes,
        },
    )
    return eid
