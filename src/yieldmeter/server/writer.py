"""The server's single writer: one thread owns every write to the store.

HTTP handlers decode on the event loop and hand :class:`Batch` es to
:meth:`Writer.submit_batch`; the writer thread takes whatever is queued,
merges batches of the same source into one transaction (group commit, so
many small OTLP requests cost one commit), and resolves each request's future
only after the transaction committed; a group whose transaction fails is written
again request by request, so only a request that cannot be written fails. A
full queue is refused at once with :class:`WriterBusy`, which the handlers turn
into ``503`` + ``Retry-After``.
:attr:`Writer.totals` counts what was committed since the process started,
including what is acknowledged but deliberately not stored (non-GenAI spans)
and calls that landed unpriced for want of a model; ``/healthz`` shows it.

Re-scoring after writes reads every work unit: seconds on a large store. The
scores are computed on a thread of their own, through a cursor that reads the
last commit, while the writer goes on committing requests; only storing them
(and evaluating budgets and alerts) is the writer's, a job like any other.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from yieldmeter.ingest.base import Batch
from yieldmeter.ingest.conform import concat_rejects

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.scoring.engine import ScoringResult

log = logging.getLogger("yieldmeter.server")

#: The server's WAL size before a commit checkpoints. DuckDB's default (16 MB) is
#: reached every ~30,000 spans, and each checkpoint stalls every in-flight request
#: for 0.3-0.6 s; the writer checkpoints when the queue goes idle instead. DuckDB holds
#: in memory what the WAL has not yet written to the file: under 1M spans of continuous
#: load the server peaked at 1,141-1,443 MiB with 512 MB, 897-965 MiB with 128 MB, whose
#: checkpoints stall the requests waiting on them more often (docs/telemetry.md, Throughput).
CHECKPOINT_THRESHOLD = "128MB"


class WriterBusy(RuntimeError):
    """The write queue is full; the client should retry after a moment."""


class WriterStopped(RuntimeError):
    """The server is shutting down."""


@dataclass
class _Job:
    future: Future[Any]
    batch: Batch | None = None
    source: str = ""
    fmt: str = "otlp"
    fn: Callable[[Workspace], Any] | None = None
    #: run on the writer thread just before the batch is written (e.g. to resolve work units)
    prepare: Callable[[Workspace, Batch], Batch] | None = None
    #: already acknowledged (from the spool): a failed write is tried again later, not handed back
    retry: bool = False
    attempts: int = 0


@dataclass
class IngestTotals:
    """What the writer committed since the process started; ``/healthz`` shows :meth:`as_dict`.

    ``spans_ignored``: spans acknowledged but not stored because they are not GenAI
    spans (HTTP, database...); ``calls_without_model``: GenAI spans that landed as
    calls with no model, so unpriced; ``rows_quarantined``: rows rejected with a reason
    (see the quarantine table). ``notes`` are the latest distinct notes of the batches.
    ``rows_landed`` counts new rows only; the others count what the requests carried, so a
    request sent again counts again there (the store keeps each row, and each reject, once).
    """

    batches: int = 0
    rows_landed: int = 0
    rows_quarantined: int = 0
    spans_ignored: int = 0
    calls_without_model: int = 0
    #: framework or agent spans' calls not stored, or taken back, because a call under them
    #: came in the same request or another (``FileSummary.structure`` and ``taken_back``)
    calls_as_structure: int = 0
    calls_taken_back: int = 0
    #: a tuple replaced whole (never mutated), so a reader on another thread sees a consistent one
    notes: tuple[str, ...] = ()

    def add(self, batch: Batch, summary: Any) -> None:
        self.batches += 1
        self.rows_landed += int(getattr(summary, "landed", 0) or 0)
        self.rows_quarantined += int(getattr(summary, "quarantined", 0) or 0)
        self.spans_ignored += batch.ignored
        self.calls_without_model += batch.no_model
        self.calls_as_structure += int(getattr(summary, "structure", 0) or 0)
        self.calls_taken_back += int(getattr(summary, "taken_back", 0) or 0)
        fresh = [n for n in dict.fromkeys(batch.notes) if n not in self.notes]
        if fresh:
            self.notes = (*self.notes, *fresh)[-5:]

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "rows_landed": self.rows_landed,
            "rows_quarantined": self.rows_quarantined,
            "spans_ignored": self.spans_ignored,
            "calls_without_model": self.calls_without_model,
            "calls_as_structure": self.calls_as_structure,
            "calls_taken_back": self.calls_taken_back,
            "notes": list(self.notes),
        }


#: How much lower (in ``nice`` steps) the scorer thread runs than the rest of the server, where a
#: thread has a priority of its own (Linux): a re-score reads every work unit, seconds of CPU under
#: load, and the event loop and the decode processes answering requests come first.
SCORER_NICE = 10


def lower_thread_priority(steps: int = SCORER_NICE) -> None:
    """Lower the calling thread's CPU priority by ``steps`` (Linux only; elsewhere ``setpriority``
    of a thread id would reach another process, so nothing is done)."""
    if sys.platform != "linux":
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))


_STOP = object()
_WAKE = object()  # put by the scorer thread when a scoring is done
#: The longest wait before an acknowledged write that failed is tried again (it doubles from
#: ``Writer.retry_s`` up to this).
RETRY_MAX_S = 60.0


def merge_batches(batches: list[Batch]) -> Batch:
    """One batch holding the rows, rejects, ignored counts and notes of ``batches``."""
    if len(batches) == 1:
        return batches[0]
    tables: dict[str, list[pa.Table]] = {}
    for b in batches:
        for name, t in b.tables.items():
            tables.setdefault(name, []).append(t)
    return Batch(
        tables={name: pa.concat_tables(parts) for name, parts in tables.items()},
        rejects=concat_rejects([b.rejects for b in batches]),
        ignored=sum(b.ignored for b in batches),
        notes=[n for b in batches for n in b.notes],
        no_model=sum(b.no_model for b in batches),
        summed=pa.concat_tables([b.summed for b in batches]),
    )


class Writer:
    """A thread that applies queued writes to the workspace, one transaction per group."""

    def __init__(
        self,
        workspace: Workspace,
        *,
        max_queue: int = 256,
        max_group_rows: int = 50_000,
        settle_s: float = 2.0,
        max_stale_s: float = 30.0,
        checkpoint_threshold: str | None = CHECKPOINT_THRESHOLD,
        retry_s: float = 1.0,
        duckdb_threads: int | None = None,
    ) -> None:
        self.workspace = workspace
        #: DuckDB's threads for the whole store while the writer runs (None: DuckDB's default)
        self.duckdb_threads = duckdb_threads
        #: the first wait before an acknowledged write that failed is tried again
        self.retry_s = retry_s
        #: acknowledged writes that failed, by when they are tried again: (monotonic, n, job)
        self._retries: list[tuple[float, int, _Job]] = []
        self._retry_seq = itertools.count()
        self.checkpoint_threshold = checkpoint_threshold
        self.max_group_rows = max_group_rows
        #: Re-scoring and alert evaluation run when no write came for ``settle_s``,
        #: and at least every ``max_stale_s`` under continuous load: an OTLP
        #: request is acknowledged once durable, never after a re-score.
        self.settle_s = settle_s
        self.max_stale_s = max_stale_s
        self._last_flush = time.monotonic()
        #: the scoring in flight on the scorer thread (at most one) and the changes it follows up
        self._scoring: Future[ScoringResult] | None = None
        self._scoring_changes: set[str] = set()
        self._scoring_base = 0  # the workspace's scores_stored when the scoring began
        #: after a scoring that failed, its changes wait until then (monotonic), the wait doubling
        #: from ``settle_s`` to ``max_stale_s`` while it keeps failing
        self._retry_at = 0.0
        self._retry_wait = 0.0
        #: something was committed since the last checkpoint: the writer checkpoints when idle
        self._unwritten = False
        self._scorer = ThreadPoolExecutor(
            1, thread_name_prefix="yieldmeter-scorer", initializer=lower_thread_priority
        )
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._stopped = False
        #: counted on the writer thread after each commit; read from anywhere
        self.totals = IngestTotals()

    def start(self) -> None:
        if self._thread is None:
            if self.checkpoint_threshold:
                self.workspace.store.set_checkpoint_threshold(self.checkpoint_threshold)
            if self.duckdb_threads:
                self.workspace.store.set_threads(self.duckdb_threads)
            self._thread = threading.Thread(target=self._run, name="yieldmeter-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the thread."""
        self._stopped = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        self._scorer.shutdown(wait=False, cancel_futures=True)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def retrying(self) -> int:
        """Acknowledged writes that failed and wait to be tried again."""
        return len(self._retries)

    def submit_batch(
        self,
        batch: Batch,
        *,
        source: str,
        fmt: str = "otlp",
        prepare: Callable[[Workspace, Batch], Batch] | None = None,
        retry: bool = False,
    ) -> Future[Any]:
        """Queue ``batch``; the future resolves to the workspace's summary once committed.

        ``prepare(workspace, batch)``, when given, runs on the writer thread just before the
        write and returns the batch to write (reads that must see every earlier commit). With
        ``retry`` (a batch already acknowledged), a write that fails is tried again after
        ``retry_s``, the wait doubling up to :data:`RETRY_MAX_S`, until it succeeds or the writer
        stops (the future then fails with :class:`WriterStopped`); an error of the batch itself
        (``ValueError``, ``LookupError``) is not tried again.
        """
        job = _Job(Future(), batch=batch, source=source, fmt=fmt, prepare=prepare, retry=retry)
        return self._put(job)

    def submit(self, fn: Callable[[Workspace], Any]) -> Future[Any]:
        """Run ``fn(workspace)`` on the writer thread (writes that are not batches)."""
        return self._put(_Job(Future(), fn=fn))

    def _put(self, job: _Job) -> Future[Any]:
        if self._stopped:
            raise WriterStopped("the server is shutting down")
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise WriterBusy("the write queue is full") from None
        return job.future

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        pending: _Job | None = None
        while True:
            if self._scoring is not None and self._scoring.done():
                self._finish_scoring()
            if pending is None and self._retries and self._retries[0][0] <= time.monotonic():
                job = heapq.heappop(self._retries)[2]  # an acknowledged write tried again
            elif pending is None:
                idle_work = self.workspace.has_pending_changes or self._unwritten
                wait = self.settle_s if idle_work else None
                until_retry = max(self._retries[0][0] - time.monotonic(), 0.0) if self._retries else None
                early = until_retry is not None and (wait is None or until_retry < wait)
                try:
                    job = self._queue.get(timeout=until_retry if early else wait)
                except queue.Empty:
                    if not early:  # idle for settle_s: re-score, then checkpoint
                        self._flush(checkpoint=True)
                    continue
            else:
                job = pending
            pending = None
            if job is _WAKE:  # the scoring finished: stored at the top of the loop
                continue
            if job is _STOP:
                stopped = WriterStopped("the server stopped before the write succeeded")
                for _, _, failed in self._retries:  # the spool keeps them for the next start
                    failed.future.set_exception(stopped)
                self._retries.clear()
                if self._scoring is not None:
                    self._finish_scoring()  # waits for it
                self._flush(apart=False)  # leave the scores current for the next start
                return
            self._unwritten = True
            if job.fn is not None:
                self._resolve([job], lambda fn=job.fn: fn(self.workspace))
                continue
            group = [job]
            rows = job.batch.rows if job.batch else 0
            # Only OTLP requests share a transaction: their answers do not report row counts.
            while job.fmt == "otlp" and rows < self.max_group_rows:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if (
                    nxt is _STOP
                    or nxt is _WAKE
                    or nxt.fn is not None
                    or (nxt.source, nxt.fmt) != (job.source, job.fmt)
                ):
                    pending = nxt
                    break
                group.append(nxt)
                rows += nxt.batch.rows if nxt.batch else 0
            self._write_group(group, job.source, job.fmt)
            if time.monotonic() - self._last_flush > self.max_stale_s:
                self._flush()

    def _write_group(self, group: list[_Job], source: str, fmt: str) -> None:
        """Write ``group`` in one transaction; when that fails, each request in one of its own, so
        one that cannot be written fails alone (the failed transaction was rolled back whole)."""
        if len(group) > 1:
            try:
                result = self._write(group, source, fmt)
            except Exception as exc:
                log.warning("a write of %d requests failed (%s): writing them one by one", len(group), exc)
            else:
                for j in group:
                    j.future.set_result(result)
                return
        for j in group:
            self._resolve([j], lambda j=j: self._write([j], source, fmt))

    def _write(self, group: list[_Job], source: str, fmt: str) -> Any:
        batches = [
            j.prepare(self.workspace, j.batch) if j.prepare is not None else j.batch
            for j in group
            if j.batch is not None
        ]
        merged = merge_batches(batches)
        summary = self.workspace.ingest_batches([merged], source=source, fmt=fmt, after=False)
        self.totals.add(merged, summary)
        return summary

    def _flush(self, *, checkpoint: bool = False, apart: bool = True) -> None:
        """Re-score and evaluate alerts for what was written since the last flush.

        With ``apart``, the scores are computed on the scorer thread and stored when done (see
        :meth:`_finish_scoring`); while one scoring runs, what was written since waits for the
        next flush. With ``checkpoint`` (the queue is idle), also write the WAL into the file,
        unless a scoring runs (its open read would hold the checkpoint off): storing its scores
        is a write, and the next idle checkpoints.
        """
        if self._scoring is not None:
            return
        now = time.monotonic()
        if apart and now < self._retry_at:
            # after a failed scoring its changes wait their turn (the stop's last flush tries at
            # once); the flush under load comes again as soon as they are due
            if checkpoint:
                self._checkpoint()
            return
        self._last_flush = now
        ws = self.workspace
        changed = ws.take_pending_changes()
        scores = None
        try:
            if changed and ws.prepare_follow_up(changed):
                if apart:
                    self._scoring_changes = changed
                    self._scoring_base = ws.scores_stored
                    self._scoring = self._scorer.submit(ws.score_apart)
                    self._scoring.add_done_callback(self._wake)
                    return
                scores = ws.score_apart()
        except Exception:  # scores lag behind: tried again after a while
            log.exception("re-scoring after ingest failed")
            self._failed(changed)
        self._follow_up(changed, scores)
        if checkpoint:
            self._checkpoint()

    def _finish_scoring(self) -> None:
        """Store the scores the scorer thread computed (waiting for them) and evaluate alerts."""
        assert self._scoring is not None
        scoring, self._scoring = self._scoring, None
        scores = None
        try:
            scores = scoring.result()
            self._retry_wait = 0.0
        except Exception:
            log.exception("re-scoring after ingest failed")
            self._failed(self._scoring_changes)
        if self.workspace.scores_stored != self._scoring_base:
            # scores were stored on this thread meanwhile (a job that wrote score inputs with its
            # follow-up at once), after this scoring began reading: they saw more than it did
            scores = None
        self._follow_up(self._scoring_changes, scores)
        self._scoring_changes = set()
        self._unwritten = True

    def _failed(self, changed: set[str]) -> None:
        """A scoring of ``changed`` failed: they are scored again (with what was written since)
        after ``settle_s``, then twice as long each time it fails again, up to ``max_stale_s``."""
        self.workspace.return_pending_changes(changed)
        self._retry_wait = min(max(self._retry_wait * 2, self.settle_s), self.max_stale_s)
        self._retry_at = time.monotonic() + self._retry_wait
        log.warning("scores will be computed again in %.1f s", self._retry_wait)

    def _follow_up(self, changed: set[str], scores: ScoringResult | None) -> None:
        if not changed:
            return
        try:
            self.workspace.finish_follow_up(changed, scores)
        except Exception:  # scores lag behind: tried again after a while, as a failed scoring is
            log.exception("storing scores after ingest failed")
            if scores is not None:
                self._failed(changed)

    def _later(self, job: _Job) -> None:
        """Try ``job`` (acknowledged already) again after a wait that doubles with each failure."""
        wait = min(self.retry_s * 2**job.attempts, RETRY_MAX_S)
        job.attempts += 1
        heapq.heappush(self._retries, (time.monotonic() + wait, next(self._retry_seq), job))
        log.error("an acknowledged write failed %d time(s): tried again in %.0f s", job.attempts, wait)

    def _wake(self, _: Future[Any]) -> None:
        """Wake the writer thread when it waits on an empty queue (a full one wakes it anyway)."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_WAKE)

    def _checkpoint(self) -> None:
        try:
            self.workspace.store.checkpoint()
            self._unwritten = False
        except Exception:  # a reader's open transaction can hold it off; the next idle retries
            log.warning("checkpoint skipped", exc_info=True)

    def _resolve(self, group: list[_Job], work: Callable[[], Any]) -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to every waiting request; the thread goes on
            if isinstance(exc, ValueError | LookupError):  # the client's mistake, answered as a 4xx
                log.info("write refused: %s", exc)
            else:
                log.exception("write failed")
            # a batch already acknowledged is tried again, unless the error is of the batch itself
            # (it would fail for ever: the spool keeps it, and the next start's replay sets it apart)
            again = isinstance(exc, Exception) and not isinstance(exc, ValueError | LookupError)
            for j in group:
                if j.retry and again and not self._stopped:
                    self._later(j)
                else:
                    j.future.set_exception(exc)
            return
        for j in group:
            j.future.set_result(result)
