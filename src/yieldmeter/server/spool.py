"""The receiver's spool: an OTLP request acknowledged once its body is durable on disk.

With ``server.acknowledge: spool``, the trace routes answer a request once its
body is appended to a spool file and ``fsync``-ed (a fraction of a millisecond),
not once the writer committed its rows: a commit waits behind every DuckDB
checkpoint (0.6 to 1.2 s under sustained load), and the requests queued behind it
with it. The writer still commits each request's rows, behind the answer.

A spool is a directory of segment files (``000000000001.spool``...), each a run of
records: a header (magic, lengths, CRC-32), a small JSON meta (the route's source,
the org its key writes as, the batch's counts and notes) and the request's
:class:`~yieldmeter.ingest.base.Batch` as decoded, each table an Arrow IPC stream.
The rows, not the request's body: message content is dropped by the mapping unless
``privacy.capture_content`` is on, so the spool holds no more than the store does.
A segment is deleted once it is closed (past ``segment_bytes``, or at a clean stop)
and every record in it was committed to the store.

After a crash, the segments left are replayed into the store before the server
serves (:func:`replay`): a record committed before the crash is a recognised
duplicate then, as a request sent twice is. A record that cannot be read or written
on replay is kept under ``failed/`` (in the same format: moved back into the
spool, it is replayed at the next start) with a ``.reason.txt``; a segment
damaged in the middle (a CRC that does not match) goes there whole after what
precedes the damage was replayed. A record cut short at a segment's end was being
written when the process died, so it was never acknowledged: it is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import struct
import threading
import zlib
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from yieldmeter.ingest.base import Batch

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.server.writer import IngestTotals

log = logging.getLogger("yieldmeter.server")

SUFFIX = ".spool"
MAGIC = b"YMS1"
#: magic, meta length, body length, CRC-32 of meta and body
_HEAD = struct.Struct("<4sIII")
#: in a body, before each table: the length of its name, and of its IPC stream
_NAME = struct.Struct("<I")
_SIZE = struct.Struct("<Q")
#: the body's names of a batch's rejects and summed spans (a canonical table's name is its own)
_REJECTS, _SUMMED = "!rejects", "!summed"
#: A segment is closed, and a new one started, once it holds this many bytes.
SEGMENT_BYTES = 16 * 1024 * 1024
#: Acknowledged bodies not yet committed to the store, beyond which requests are answered 503.
SPOOL_LIMIT = 256 * 1024 * 1024
#: One append writes (and fsyncs) at most this many bytes of queued records.
_GROUP_BYTES = 8 * 1024 * 1024
_STOP = object()


class SpoolFull(RuntimeError):
    """More acknowledged bytes wait for the writer than the spool's limit."""


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
    failed: bool = False


def batch_parts(batch: Batch, source: str, org: str) -> tuple[dict[str, Any], list[tuple[str, pa.Table]]]:
    """A batch as a record's meta and its named tables (Arrow tables do not change: the writer
    may go on with the batch while the spool thread encodes them)."""
    meta = {
        "source": source,
        "org": org,
        "ignored": batch.ignored,
        "no_model": batch.no_model,
        "notes": list(batch.notes),
    }
    parts = [*batch.tables.items(), (_REJECTS, batch.rejects), (_SUMMED, batch.summed)]
    return meta, parts


def batch_bytes(batch: Batch) -> int:
    """About what a batch's record takes (its tables' memory; the spool's limit counts it)."""
    return sum(t.nbytes for t in batch.tables.values()) + batch.rejects.nbytes + batch.summed.nbytes


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
    return _HEAD.pack(MAGIC, len(meta), len(body), zlib.crc32(body, zlib.crc32(meta)))


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
    """The records of a segment up to the end or the first bad one, and what was wrong after them."""

    records: list[Record]
    #: the reason the segment could not be read to its end (None: read whole)
    damage: str | None = None
    #: the damage is a record cut short at the end: never acknowledged, nothing is lost
    torn_tail: bool = False


def read_segment(path: Path) -> SegmentRead:
    """The records of the segment at ``path``."""
    data = path.read_bytes()
    records: list[Record] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < _HEAD.size:
            return SegmentRead(records, f"a record cut short at byte {pos}", torn_tail=True)
        magic, mlen, blen, crc = _HEAD.unpack_from(data, pos)
        if magic != MAGIC:
            return SegmentRead(records, f"no record header at byte {pos}")
        end = pos + _HEAD.size + mlen + blen
        if end > len(data):
            return SegmentRead(records, f"a record cut short at byte {pos}", torn_tail=True)
        meta = data[pos + _HEAD.size : pos + _HEAD.size + mlen]
        body = data[pos + _HEAD.size + mlen : end]
        if zlib.crc32(body, zlib.crc32(meta)) != crc:
            return SegmentRead(records, f"the record at byte {pos} does not match its checksum")
        try:
            doc = orjson.loads(meta)
        except orjson.JSONDecodeError:
            return SegmentRead(records, f"the record at byte {pos} has unreadable meta")
        records.append(Record(doc, body, pos))
        pos = end
    return SegmentRead(records)


def segments(directory: Path) -> list[Path]:
    """The segment files in ``directory``, oldest first."""
    return sorted(p for p in directory.glob(f"*{SUFFIX}") if p.stem.isdigit())


def _fsync_dir(directory: Path) -> None:
    """Make a file created or renamed in ``directory`` durable (its directory entry)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Appends records on a thread of its own, one ``fsync`` per group of queued records.

    Used from three threads: the event loop reserves and appends (:meth:`reserve`,
    :meth:`append`), the spool thread writes, the writer thread reports each record's
    commit (:meth:`settled`). One lock guards the segments' counts.
    """

    def __init__(
        self, directory: Path, *, limit: int = SPOOL_LIMIT, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.directory = directory
        self.limit = limit
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._segments: list[_Segment] = []  # not yet deleted, oldest first; the last may be open
        self._file: Any = None
        self._next = 1
        self._pending = 0  # bytes reserved and not yet committed to the store
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
        numbers = [int(n) for p in names if (n := p.stem.split("-")[0]).isdigit()]
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
        """Room for a record of ``size`` body bytes; :class:`SpoolFull` beyond the limit."""
        with self._lock:
            if self._pending and self._pending + size > self.limit:
                raise SpoolFull("the spool is full: acknowledged spans wait for the store")
            self._pending += size
        return Entry(size)

    def release(self, entry: Entry) -> None:
        """The request was refused before anything was written (the writer's queue is full)."""
        with self._lock:
            self._pending -= entry.size

    def append(self, entry: Entry, batch: Batch, *, source: str, org: str) -> None:
        """Queue the batch's record; ``entry.durable`` resolves once it is on disk."""
        entry.meta, entry.parts = batch_parts(batch, source, org)
        self._queue.put(entry)

    # -- the writer's side ----------------------------------------------------------------------
    def settled(self, entry: Entry, future: Future[Any]) -> None:
        """The writer's future for the record's rows is done: committed, or given up (the writer
        stopped while the write kept failing): the record stays in its segment, replayed at the
        next start."""
        failed = future.cancelled() or future.exception() is not None
        with self._lock:
            self._pending -= entry.size
            if failed:
                entry.failed = True
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
            item = self._queue.get()
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
                self._write(group)
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
                seg.size += _HEAD.size + len(meta) + len(body)
                with self._lock:
                    e.segment = seg
                    if not e.applied:  # a record whose write already failed keeps its segment too
                        seg.unapplied += 1
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            log.error("the spool could not be written: %s", exc)
            self._close_segment()  # a part-written record ends it: the next group starts another
            for e in group:
                e.durable.set_exception(exc)
            return
        with self._lock:
            self.acknowledged += len(group)
        for e in group:
            e.durable.set_result(None)
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
                "unapplied_bytes": self._pending,
                "acknowledged": self.acknowledged,
                "given_up": self.given_up,
                "replayed": self.replayed,
                "replay_failed": self.replay_failed,
            }


def _keep_failed(directory: Path, name: str, records: list[Record], reason: str) -> Path:
    """Keep ``records`` under ``failed/`` as a segment of their own, with the reason beside."""
    failed = directory / "failed"
    failed.mkdir(exist_ok=True)
    out = failed / f"{name}{SUFFIX}"
    with out.open("wb") as fh:  # durable before the segment it came from is deleted
        fh.write(b"".join(encode_record(r.meta, r.body) for r in records))
        fh.flush()
        os.fsync(fh.fileno())
    out.with_suffix(".reason.txt").write_text(reason + "\n")
    _fsync_dir(failed)
    return out


def replay(spool: Spool, ws: Workspace, totals: IngestTotals) -> None:
    """Write the records of the segments an earlier run left into the store, one segment at a time
    (its records in one transaction; one by one when that fails, to find the ones that do not
    write), then delete the segment. Run before the writer starts."""
    from yieldmeter.server.writer import merge_batches

    for path in spool.leftover():
        read = read_segment(path)
        decoded = []
        for rec in read.records:
            try:
                decoded.append((rec, str(rec.meta["source"]), record_batch(rec)))
            except Exception as exc:  # kept with its reason; the others are written
                _fail(spool, path, rec, f"not read: {type(exc).__name__}: {exc}")
        by_source: dict[str, list[Any]] = {}
        for item in decoded:
            by_source.setdefault(item[1], []).append(item)
        for source, items in by_source.items():
            try:
                merged = merge_batches([b for _, _, b in items])
                totals.add(merged, ws.ingest_batches([merged], source=source, fmt="otlp", after=False))
                spool.replayed += len(items)
                continue
            except Exception:
                log.warning("replaying %s in one transaction failed: record by record", path.name)
            for rec, _, batch in items:
                try:
                    totals.add(batch, ws.ingest_batches([batch], source=source, fmt="otlp", after=False))
                    spool.replayed += 1
                except Exception as exc:
                    _fail(spool, path, rec, f"not written: {type(exc).__name__}: {exc}")
        if read.damage and not read.torn_tail:
            damaged = spool.directory / "failed" / path.name
            damaged.parent.mkdir(exist_ok=True)
            path.rename(damaged)
            damaged.with_suffix(".reason.txt").write_text(
                f"{read.damage}; the {len(read.records)} record(s) before it were replayed\n"
            )
            _fsync_dir(damaged.parent)
            log.error("spool segment %s is damaged (%s): kept as %s", path.name, read.damage, damaged)
            continue
        if read.torn_tail:
            log.warning("spool segment %s ends in %s, never acknowledged: dropped", path.name, read.damage)
        path.unlink()
    if spool.replayed or spool.replay_failed:
        log.warning(
            "replayed %d acknowledged request(s) from the spool; %d kept under %s",
            spool.replayed,
            spool.replay_failed,
            spool.directory / "failed",
        )


def _fail(spool: Spool, path: Path, rec: Record, reason: str) -> None:
    where = f"{path.name} byte {rec.offset}"
    out = _keep_failed(spool.directory, f"{path.stem}-{rec.offset}", [rec], f"{where}: {reason}")
    spool.replay_failed += 1
    log.error("a spooled request could not be replayed (%s): kept as %s", reason, out)
