"""The receiver's spool: an OTLP request acknowledged once its rows are durable on disk.

With ``server.acknowledge: spool`` (the default), the trace routes answer a request once
its rows are appended to a spool file and ``fsync``-ed (a fraction of a millisecond),
not once the writer committed its rows: a commit waits behind every DuckDB
checkpoint (0.6 to 1.2 s under sustained load), and the requests queued behind it
with it. The writer still commits each request's rows, behind the answer.

A spool is a directory of segment files (``000000000001.spool``...), each a run of
records: a header (magic, lengths, CRC-32, and a CRC-32 of those), a small JSON meta
(the route's source, the org its key writes as, the batch's counts and notes, the
store's schema version, whether content was captured) and the request's
:class:`~yieldmeter.ingest.base.Batch` as decoded, each table an Arrow IPC stream.
The rows, not the request's body: message content is dropped by the mapping unless
``privacy.capture_content`` is on, so the spool holds no more than the store does.
A segment is deleted once it is closed (past ``segment_bytes``, idle for
``idle_close_s``, or at a clean stop) and every record in it was committed to the store.

After a crash, the segments left are replayed into the store before the server
serves (:func:`replay`): a record committed before the crash is a recognised
duplicate then, as a request sent twice is. A record that cannot be read or written
on replay is kept under ``failed/`` (in the same format: moved back into the
spool, it is replayed at the next start) with a ``.reason.txt``; a segment
damaged on disk (a CRC that does not match) is copied there whole, and read on past
each damage from the next sound record. A record cut short at a segment's end, its
header sound, was being written when the process died, so it was never acknowledged:
it is dropped. An error of the machine during the replay stops the start
(:class:`SpoolReplayError`) and leaves the spool for the next.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import struct
import threading
import zlib
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import orjson
import pyarrow as pa

from yieldmeter.ingest.base import Batch
from yieldmeter.schema import SCHEMA_VERSION
from yieldmeter.server.writer import IngestTotals, merge_batches

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace

log = logging.getLogger("yieldmeter.server")

SUFFIX = ".spool"
MAGIC = b"YMS2"
#: magic, meta length, body length, CRC-32 of meta and body; then the CRC-32 of those 16 bytes,
#: so a damaged length is told from a record cut short
_HEAD = struct.Struct("<4sIII")
_HEAD_CRC = struct.Struct("<I")
_HEADER = _HEAD.size + _HEAD_CRC.size
#: in a body, before each table: the length of its name, and of its IPC stream
_NAME = struct.Struct("<I")
_SIZE = struct.Struct("<Q")
#: the body's names of a batch's rejects and summed spans (a canonical table's name is its own)
_REJECTS, _SUMMED = "!rejects", "!summed"
#: A segment is closed, and a new one started, once it holds this many bytes.
SEGMENT_BYTES = 16 * 1024 * 1024
#: Batches answered and not yet committed (their size in memory), beyond which requests get 503.
SPOOL_LIMIT = 256 * 1024 * 1024
#: One append writes (and fsyncs) at most this many bytes of queued records.
_GROUP_BYTES = 8 * 1024 * 1024
#: A segment that took no record for this many seconds is closed (and deleted once every record
#: in it is committed), so committed rows do not wait in the spool for the next 16 MiB.
IDLE_CLOSE_S = 5.0
_STOP = object()


class SpoolFull(RuntimeError):
    """The batches answered and not yet committed take more than the spool's limit."""


@dataclass(eq=False)
class _Segment:
    path: Path
    size: int = 0
    #: records in this segment not yet committed to the store (or whose write failed)
    unapplied: int = 0
    closed: bool = False


@dataclass(eq=False)
class Entry:
    """One request's record: reserved, appended, durable (``durable`` resolves), applied."""

    size: int
    durable: Future[None] = field(default_factory=Future)
    meta: dict[str, Any] = field(default_factory=dict)
    #: the batch's tables, encoded into the record's body on the spool thread
    parts: list[tuple[str, pa.Table]] = field(default_factory=list)
    segment: _Segment | None = None
    applied: bool = False


def batch_parts(
    batch: Batch, source: str, org: str, *, capture_content: bool
) -> tuple[dict[str, Any], list[tuple[str, pa.Table]]]:
    """A batch as a record's meta and its named tables (Arrow tables do not change: the writer
    may go on with the batch while the spool thread encodes them). ``capture_content``: the
    batch was mapped with message content kept."""
    meta = {
        "schema": SCHEMA_VERSION,
        "source": source,
        "org": org,
        "capture_content": capture_content,
        "ignored": batch.ignored,
        "no_model": batch.no_model,
        "notes": list(batch.notes),
    }
    parts = [*batch.tables.items(), (_REJECTS, batch.rejects), (_SUMMED, batch.summed)]
    return meta, parts


def encode_body(parts: list[tuple[str, pa.Table]]) -> bytes:
    """Each table as its name and an Arrow IPC stream, each led by its length."""
    out = bytearray()
    for name, table in parts:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        stream = sink.getvalue()
        key = name.encode()
        out += _NAME.pack(len(key)) + key + _SIZE.pack(stream.size)
        out += memoryview(stream)
    return bytes(out)


def record_batch(record: Record) -> Batch:
    """The batch a record holds (``ValueError`` or an Arrow error when its body is not one)."""
    body = memoryview(record.body)
    tables: dict[str, pa.Table] = {}
    pos = 0
    while pos < len(body):
        (n,) = _NAME.unpack_from(body, pos)
        name = bytes(body[pos + _NAME.size : pos + _NAME.size + n]).decode()
        pos += _NAME.size + n
        (size,) = _SIZE.unpack_from(body, pos)
        pos += _SIZE.size
        if pos + size > len(body):
            raise ValueError(f"table {name!r} runs past the record's end")
        tables[name] = pa.ipc.open_stream(pa.py_buffer(body[pos : pos + size])).read_all()
        pos += size
    meta = record.meta
    batch = Batch(
        tables={k: t for k, t in tables.items() if not k.startswith("!")},
        ignored=int(meta.get("ignored", 0)),
        notes=[str(n) for n in meta.get("notes", [])],
        no_model=int(meta.get("no_model", 0)),
    )
    if _REJECTS in tables:
        batch.rejects = tables[_REJECTS]
    if _SUMMED in tables:
        batch.summed = tables[_SUMMED]
    return batch


def _header(meta: bytes, body: bytes) -> bytes:
    head = _HEAD.pack(MAGIC, len(meta), len(body), zlib.crc32(body, zlib.crc32(meta)))
    return head + _HEAD_CRC.pack(zlib.crc32(head))


def encode_record(meta: dict[str, Any], body: bytes) -> bytes:
    """One record: header, meta (JSON) and body."""
    m = orjson.dumps(meta)
    return _header(m, body) + m + body


@dataclass
class Record:
    meta: dict[str, Any]
    body: bytes
    offset: int  # where the record starts in its segment


@dataclass
class SegmentRead:
    """The records of a segment, and what could not be read."""

    records: list[Record]
    #: why bytes between records could not be read (empty: read whole, or only a torn tail)
    damage: list[str] = field(default_factory=list)
    #: the segment ends in a record cut short: being written when the process died, it was never
    #: acknowledged (its answer waits for the fsync), so nothing is lost with it
    torn_tail: str | None = None


def _record_at(data: bytes, pos: int) -> tuple[Record | None, int, str]:
    """The record at ``pos``: (record, its end, "") when whole and sound; (None, end, "torn") when
    its header is sound and it runs past the data; (None, end, reason) when its header is sound and
    the rest is not; (None, 0, reason) when there is no sound header there."""
    if len(data) - pos < _HEADER:
        return None, len(data), "torn"
    head = data[pos : pos + _HEAD.size]
    magic, mlen, blen, crc = _HEAD.unpack(head)
    if magic != MAGIC or _HEAD_CRC.unpack_from(data, pos + _HEAD.size)[0] != zlib.crc32(head):
        return None, 0, f"no sound record header at byte {pos}"
    end = pos + _HEADER + mlen + blen
    if end > len(data):
        return None, len(data), "torn"
    meta = data[pos + _HEADER : pos + _HEADER + mlen]
    body = data[pos + _HEADER + mlen : end]
    if zlib.crc32(body, zlib.crc32(meta)) != crc:  # its header is sound: the next record is at its end
        return None, end, f"the record at byte {pos} does not match its checksum"
    try:
        doc = orjson.loads(meta)
    except orjson.JSONDecodeError:
        return None, end, f"the record at byte {pos} has unreadable meta"
    return Record(doc, body, pos), end, ""


def read_segment(path: Path) -> SegmentRead:
    """The records of the segment at ``path``. Past damage, reading goes on at the next sound
    record (a header whose own CRC matches, followed by a meta and body that match theirs)."""
    data = path.read_bytes()
    out = SegmentRead([])
    pos = 0
    while pos < len(data):
        record, end, problem = _record_at(data, pos)
        if record is not None:
            out.records.append(record)
            pos = end
            continue
        if problem == "torn":
            out.torn_tail = f"a record cut short at byte {pos}"
            return out
        if not data[pos:].strip(b"\0"):  # space the file system gave the last write, never written
            out.torn_tail = f"zeros from byte {pos} to the end"
            return out
        out.damage.append(problem)
        if end:  # a sound header: the damage is its own record, the next one follows it
            if end < len(data):
                out.damage[-1] += f" (read again from byte {end})"
            pos = end
            continue
        nxt = data.find(MAGIC, pos + 1)
        while nxt != -1 and _record_at(data, nxt)[0] is None:
            nxt = data.find(MAGIC, nxt + 1)
        if nxt == -1:  # nothing sound after it: the damage runs to the end
            return out
        out.damage[-1] += f" (read again from byte {nxt})"
        pos = nxt
    return out


def _number(path: Path) -> tuple[int, ...] | None:
    """A segment's number: ``000000000007.spool``, or ``000000000007-4096.spool`` for a record of
    it kept apart under ``failed/`` (moved back, it is replayed as any segment; kept apart again,
    ``000000000007-4096-0.spool``)."""
    parts = path.stem.split("-")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def segments(directory: Path) -> list[Path]:
    """The segment files in ``directory``, oldest first."""
    found = [(n, p) for p in directory.glob(f"*{SUFFIX}") if (n := _number(p)) is not None]
    return [p for _, p in sorted(found)]


def _fsync_dir(directory: Path) -> None:
    """Make a file created or renamed in ``directory`` durable (its directory entry)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _resolve(group: list[Entry], exc: BaseException | None) -> None:
    """Answer the requests waiting on ``group``'s records (one whose wait was cancelled is not)."""
    for e in group:
        with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
            if exc is None:
                e.durable.set_result(None)
            else:
                e.durable.set_exception(exc)


class Spool:
    """Appends records on a thread of its own, one ``fsync`` per group of queued records.

    Used from three threads: the event loop reserves and appends (:meth:`reserve`,
    :meth:`append`), the spool thread writes, the writer thread reports each record's
    commit (:meth:`settled`). One lock guards the segments' counts.
    """

    def __init__(
        self,
        directory: Path,
        *,
        limit: int = SPOOL_LIMIT,
        segment_bytes: int = SEGMENT_BYTES,
        idle_close_s: float = IDLE_CLOSE_S,
    ) -> None:
        self.directory = directory
        self.limit = limit
        self.segment_bytes = segment_bytes
        self.idle_close_s = idle_close_s
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._segments: list[_Segment] = []  # not yet deleted, oldest first; the last may be open
        self._file: Any = None
        self._next = 1
        self._pending = 0  # bytes reserved and not yet committed to the store
        self._unsettled = 0  # records reserved and not yet committed (or given up)
        self._thread: threading.Thread | None = None
        #: since start: records acknowledged, records the writer gave up on (it tries a failed
        #: write again until it stops: kept for the next start's replay), and what was replayed
        self.acknowledged = 0
        self.given_up = 0
        self.replayed = 0
        self.replay_failed = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def leftover(self) -> list[Path]:
        """Segments an earlier run left (to :func:`replay` before :meth:`start`)."""
        return segments(self.directory) if self.directory.is_dir() else []

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # numbered after every segment the directory has held: those kept under failed/ (named
        # ``<segment>`` or ``<segment>-<offset>``) included, so none is overwritten
        names = [*self.directory.glob(f"*{SUFFIX}"), *self.directory.glob(f"failed/*{SUFFIX}")]
        numbers = [n[0] for p in names if (n := _number(p)) is not None]
        self._next = max(numbers, default=0) + 1
        self._thread = threading.Thread(target=self._run, name="yieldmeter-spool", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write what is queued, close the open segment, and delete the segments fully committed
        (call after the writer stopped: then every record of a clean run is)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            for seg in self._segments:
                seg.closed = True
            self._collect()
            kept = [s for s in self._segments if s.unapplied]
        if kept:
            log.error(
                "%d spool segment(s) hold acknowledged spans not in the store: replayed at the next start",
                len(kept),
            )

    # -- the event loop's side ------------------------------------------------------------------
    def reserve(self, size: int) -> Entry:
        """Room for a batch of ``size`` bytes (:attr:`Batch.nbytes`); :class:`SpoolFull` beyond
        the limit."""
        with self._lock:
            if self._pending and self._pending + size > self.limit:
                raise SpoolFull("the spool is full: acknowledged spans wait for the store")
            self._pending += size
            self._unsettled += 1
        return Entry(size)

    def release(self, entry: Entry) -> None:
        """The request was refused before anything was written (the writer's queue is full)."""
        with self._lock:
            self._pending -= entry.size
            self._unsettled -= 1

    def append(self, entry: Entry, batch: Batch, *, source: str, org: str, capture_content: bool) -> None:
        """Queue the batch's record; ``entry.durable`` resolves once it is on disk."""
        entry.meta, entry.parts = batch_parts(batch, source, org, capture_content=capture_content)
        self._queue.put(entry)

    # -- the writer's side ----------------------------------------------------------------------
    def settled(self, entry: Entry, future: Future[Any]) -> None:
        """The writer's future for the record's rows is done: committed, or given up (the writer
        stopped while the write kept failing): the record stays in its segment, replayed at the
        next start."""
        failed = future.cancelled() or future.exception() is not None
        with self._lock:
            self._pending -= entry.size
            self._unsettled -= 1
            if failed:
                self.given_up += 1
            else:
                entry.applied = True
                if entry.segment is not None:
                    entry.segment.unapplied -= 1
                    self._collect()
        if failed:
            log.error("acknowledged spans were not written to the store: the spool keeps them")

    # -- the spool thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.idle_close_s if self._file is not None else None)
            except queue.Empty:  # idle: close the segment, deleted once its records are committed
                self._close_segment()
                continue
            group: list[Entry] = []
            size = 0
            stop = item is _STOP
            if not stop:
                group.append(item)
                size += item.size
            while not stop and size < _GROUP_BYTES:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                group.append(item)
                size += item.size
            if group:
                try:
                    self._write(group)
                except Exception as exc:  # the thread must live on: every later answer waits on it
                    log.exception("the spool could not be written")
                    self._close_segment()
                    _resolve(group, exc)
            if stop:
                return

    def _write(self, group: list[Entry]) -> None:
        try:
            seg = self._open_segment()
            for e in group:
                meta, body = orjson.dumps(e.meta), encode_body(e.parts)
                e.parts = []
                self._file.write(_header(meta, body))
                self._file.write(meta)
                self._file.write(body)
                seg.size += _HEADER + len(meta) + len(body)
                with self._lock:
                    e.segment = seg
                    if not e.applied:  # a record whose write already failed keeps its segment too
                        seg.unapplied += 1
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            log.error("the spool could not be written: %s", exc)
            self._close_segment()  # a part-written record ends it: the next group starts another
            _resolve(group, exc)
            return
        with self._lock:
            self.acknowledged += len(group)
        _resolve(group, None)
        if seg.size >= self.segment_bytes:
            self._close_segment()

    def _open_segment(self) -> _Segment:
        if self._file is None:
            path = self.directory / f"{self._next:012d}{SUFFIX}"
            self._next += 1
            self._file = path.open("xb")
            _fsync_dir(self.directory)
            with self._lock:
                self._segments.append(_Segment(path))
        return self._segments[-1]

    def _close_segment(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            self._file.close()
        self._file = None
        with self._lock:
            self._segments[-1].closed = True
            self._collect()

    def _collect(self) -> None:
        """Delete the closed segments every record of which is in the store (under the lock)."""
        keep = []
        for seg in self._segments:
            if seg.closed and seg.unapplied == 0:
                try:
                    seg.path.unlink(missing_ok=True)
                except OSError as exc:  # left for the next start, which replays it as duplicates
                    log.warning("spool segment %s not deleted: %s", seg.path.name, exc)
                continue
            keep.append(seg)
        self._segments = keep

    def stats(self) -> dict[str, int]:
        """What ``/healthz`` reports."""
        with self._lock:
            return {
                "segments": len(self._segments),
                "unsettled": self._unsettled,
                "unapplied_bytes": self._pending,
                "acknowledged": self.acknowledged,
                "given_up": self.given_up,
                "replayed": self.replayed,
                "replay_failed": self.replay_failed,
            }


class SpoolReplayError(RuntimeError):
    """The store could not take the spool's records for a reason of its own (a full disk, no
    memory): the server does not start, and the spool is left as it was."""


def _environmental(exc: BaseException) -> bool:
    """An error of the machine, not of the record: the next start may well succeed."""
    return isinstance(
        exc,
        OSError
        | MemoryError
        | duckdb.IOException
        | duckdb.OutOfMemoryException
        | duckdb.FatalException  # the database was invalidated
        | duckdb.ConnectionException
        | duckdb.InterruptException,
    )


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _keep_failed(directory: Path, name: str, data: bytes, reason: str) -> Path:
    """Keep ``data`` (records, or a damaged segment) under ``failed/``, with the reason beside,
    durably before the segment it came from is deleted."""
    failed = directory / "failed"
    failed.mkdir(exist_ok=True)
    out = failed / f"{name}{SUFFIX}"
    _write_durably(out, data)
    _write_durably(out.with_suffix(".reason.txt"), (reason + "\n").encode())
    _fsync_dir(failed)
    return out


def replay(spool: Spool, ws: Workspace, totals: IngestTotals, *, max_rows: int = 50_000) -> None:
    """Write the records of the segments an earlier run left into the store, one segment at a
    time, then delete the segment. Run before the writer starts.

    A segment's records are written in transactions of up to ``max_rows`` rows; when one fails,
    its records one by one, so only those that cannot be written are kept apart (under
    ``failed/``, with the reason). An error of the machine (a full disk) stops the replay with
    :class:`SpoolReplayError` and leaves the segment for the next start. A record captured with
    message content while ``privacy.capture_content`` is now off is not stored: it is kept apart.
    """
    capture = ws.config.privacy.capture_content
    for path in spool.leftover():
        read = read_segment(path)
        groups: dict[str, list[list[tuple[Record, Batch]]]] = {}
        for rec in read.records:
            if rec.meta.get("capture_content") and not capture:
                _fail(
                    spool, path, rec, "captured with privacy.capture_content on, which is off now: not stored"
                )
                continue
            try:
                batch = record_batch(rec)
            except Exception as exc:  # kept with its reason; the others are written
                _fail(spool, path, rec, f"not read: {type(exc).__name__}: {exc}")
                continue
            chunks = groups.setdefault(str(rec.meta.get("source", "otlp")), [[]])
            if sum(b.rows for _, b in chunks[-1]) + batch.rows > max_rows and chunks[-1]:
                chunks.append([])
            chunks[-1].append((rec, batch))
        for source, chunks in groups.items():
            for chunk in chunks:
                _replay_chunk(spool, ws, totals, path, source, chunk)
        if read.damage:
            reasons = "; ".join(read.damage)
            out = _keep_failed(
                spool.directory,
                path.stem,
                path.read_bytes(),
                f"{reasons}; the {len(read.records)} sound record(s) in it were replayed",
            )
            log.error("spool segment %s is damaged (%s): kept as %s", path.name, reasons, out)
        elif read.torn_tail:
            log.warning("spool segment %s ends in %s, never acknowledged: dropped", path.name, read.torn_tail)
        path.unlink()
        _fsync_dir(path.parent)
    if spool.replayed or spool.replay_failed:
        log.warning(
            "replayed %d acknowledged request(s) from the spool; %d kept under %s",
            spool.replayed,
            spool.replay_failed,
            spool.directory / "failed",
        )


def _replay_chunk(
    spool: Spool,
    ws: Workspace,
    totals: IngestTotals,
    path: Path,
    source: str,
    chunk: list[tuple[Record, Batch]],
) -> None:
    def write(batch: Batch) -> None:
        try:
            totals.add(batch, ws.ingest_batches([batch], source=source, fmt="otlp", after=False))
        except Exception as exc:
            if _environmental(exc):
                raise SpoolReplayError(
                    f"the store could not take the spool's records ({type(exc).__name__}: {exc}); "
                    f"{path} is left for the next start"
                ) from exc
            raise

    try:
        write(merge_batches([b for _, b in chunk]))
        spool.replayed += len(chunk)
        return
    except Exception as exc:  # a record that does not write, or a transaction too large for memory
        if len(chunk) == 1 and isinstance(exc, SpoolReplayError):
            raise
        log.warning("replaying %s in one transaction failed (%s): record by record", path.name, exc)
    for rec, batch in chunk:
        try:
            write(batch)
            spool.replayed += 1
        except SpoolReplayError:
            raise
        except Exception as exc:
            version = rec.meta.get("schema")
            note = (
                f" (written by schema {version}, the store is at {SCHEMA_VERSION})"
                if version != SCHEMA_VERSION
                else ""
            )
            _fail(spool, path, rec, f"not written: {type(exc).__name__}: {exc}{note}")


def _fail(spool: Spool, path: Path, rec: Record, reason: str) -> None:
    where = f"{path.name} byte {rec.offset}"
    data = encode_record(rec.meta, rec.body)
    out = _keep_failed(spool.directory, f"{path.stem}-{rec.offset}", data, f"{where}: {reason}")
    spool.replay_failed += 1
    log.error("a spooled request could not be replayed (%s): kept as %s", reason, out)
