"""What every format adapter returns: canonical Arrow rows per table, and rejects.

Adapters are pure: bytes or records in, :class:`Batch` out. They open no
connection and write nothing; the Workspace hands their batches to the store.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import multiprocessing
import os
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, TypeVar

import pyarrow as pa

from yieldmeter.errors import InputError
from yieldmeter.ingest.conform import Conformed, concat_rejects, empty_rejects
from yieldmeter.schema import SUMMED_SCHEMA

if TYPE_CHECKING:
    from yieldmeter.config import Config

log = logging.getLogger("yieldmeter.ingest")


#: Ends the quarantine reason of a line-by-line file's last line that is not valid and has no line
#: end: a file still being written (a Collector's file exporter mid-write). When a later import
#: of the same file reads that line whole, starting with the text the row kept, the line has an
#: outcome of its own and the row is settled (deleted): :attr:`Batch.settles`.
UNENDED_LINE = (
    "the file's last line, with no line end: a file still being written? Once the line is whole, "
    "importing the file again lands it (and, in a workspace, deletes this row, unless the line "
    "was cut before its first span id)"
)


@dataclass
class Batch:
    """Canonical rows for one or more tables, plus the rows that were rejected.

    ``tables`` maps a canonical table name to rows already passed through
    :func:`yieldmeter.ingest.conform.conform`. ``ignored`` counts input records
    that are deliberately not data (e.g. non-GenAI spans), ``no_model`` the spans
    mapped to calls without a model (counted before conform and the store, so a
    rejected or repeated span counts too), and ``notes`` carries messages
    worth showing the user once. ``settles`` (a file's last batch): the line
    numbers of earlier imports' quarantine rows of an unended last line
    (:data:`UNENDED_LINE`, :attr:`ReadOptions.unended`) that this import read
    whole (ended by a line end or, the last, parsing without one) and starting
    with the text the row kept: each now has an outcome of its own, and the
    row is deleted. ``summed``: the framework and agent spans with usage that the mapping kept as
    structure because a call of the batch runs under them (their usage is its usage), as
    ``trace_id, span_id, parent_span_id, ts`` (:data:`~yieldmeter.schema.SUMMED_SCHEMA`): the store counts
    them as ``structure`` and keeps them, so a summing span above them that comes in another
    request finds the call under it.
    """

    tables: dict[str, pa.Table] = field(default_factory=dict)
    rejects: pa.Table = field(default_factory=empty_rejects)
    ignored: int = 0
    notes: list[str] = field(default_factory=list)
    no_model: int = 0
    settles: tuple[int, ...] = ()
    summed: pa.Table = field(default_factory=SUMMED_SCHEMA.empty_table)

    @classmethod
    def of(cls, table_name: str, conformed: Conformed, **kw: object) -> Batch:
        return cls({table_name: conformed.rows}, conformed.rejects, **kw)  # type: ignore[arg-type]

    def add(self, table_name: str, conformed: Conformed) -> None:
        if table_name in self.tables:
            self.tables[table_name] = pa.concat_tables([self.tables[table_name], conformed.rows])
        else:
            self.tables[table_name] = conformed.rows
        self.rejects = concat_rejects([self.rejects, conformed.rejects])

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.tables.values())

    @property
    def nbytes(self) -> int:
        """The memory its tables, rejects and summed spans take."""
        return sum(t.nbytes for t in self.tables.values()) + self.rejects.nbytes + self.summed.nbytes


@dataclass(frozen=True)
class ReadOptions:
    """Options every adapter receives."""

    source: str
    table: str | None = None  # for tabular input: which canonical table the rows are
    capture_content: bool = False  # keep prompt/completion text (off by default)
    batch_rows: int = 65_536
    score_signals: dict[str, str] = field(default_factory=dict)
    #: processes a large line-oriented file is decoded in (0: in the caller's own process)
    decode_workers: int = 0
    #: this source's quarantined unended last lines (:data:`UNENDED_LINE`) from earlier imports:
    #: their line number -> the text kept of them (``raw``), which the line read whole now must
    #: start with to settle the row (the same file, grown; not another one under its name)
    unended: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config, source: str, table: str | None = None) -> ReadOptions:
        """The options a workspace's ``yieldmeter.yaml`` sets for reading ``source``."""
        workers = config.ingest.decode_workers
        return cls(
            source=source,
            table=table,
            capture_content=config.privacy.capture_content,
            score_signals=dict(config.score_signals),
            decode_workers=default_workers() if workers == "auto" else workers,
        )


def check_org(org: str | None) -> None:
    """Refuse an org given as blank text (``ingest --org ""``): a name, or none at all."""
    if org is not None and not org.strip():
        raise ValueError("--org: an org name is needed (leave it out to keep the rows' own)")


def with_org(batch: Batch, org: str) -> Batch:
    """The batch with every row's ``org`` set to the org of the server's ingest key; ``default``
    (no keys: any client) leaves the rows' own."""
    return batch if org == "default" else set_org(batch, org)


def set_org(batch: Batch, org: str) -> Batch:
    """The batch with every row's ``org`` set to ``org`` (``ingest --org``, ``default`` too)."""
    for name, t in batch.tables.items():
        if "org" in t.column_names:
            i = t.schema.get_field_index("org")
            batch.tables[name] = t.set_column(i, "org", pa.array([org] * t.num_rows, pa.string()))
    return batch


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the platform has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return (len(affinity(0)) if affinity is not None else os.cpu_count()) or 1


def default_workers(cpus: int | None = None) -> int:
    """Decode processes for ``auto``: one per core this process may use (none on one core), at
    most 4."""
    cpus = cpus or usable_cores()
    return 0 if cpus < 2 else min(4, cpus)


#: An adapter reads a binary stream and yields batches.
Reader = Callable[[BinaryIO, ReadOptions], Iterator[Batch]]


@dataclass(frozen=True)
class Format:
    """A file format yieldmeter can import.

    ``detect`` looks at the first bytes (and the file name) and says whether
    the file is of this format; ``read`` yields batches.
    """

    name: str
    description: str
    detect: Callable[[bytes, str], bool]
    read: Reader


T = TypeVar("T")

#: what an adapter raises for input it cannot read: ValueError (and its kin: JSON, Arrow and UTF-8
#: errors), OSError/EOFError (a truncated .gz), zlib.error (a .gz whose compressed data is
#: damaged), csv.Error (a field past the csv module's limit); a usage export of another shape
#: surfaces as a KeyError, IndexError or TypeError, which a bug could raise too, so its reason
#: says both
UNREADABLE = (ValueError, TypeError, KeyError, IndexError, OSError, EOFError, zlib.error, csv.Error)


class UntilUnreadable(Generic[T]):
    """A file's records, ending where the file can no longer be read (a ``.gz`` cut short).

    An adapter that buffers rows stores those it has, then calls :meth:`raise_if_failed`, so the
    rows before the failure land and the failure quarantines the rest of the file, as for OTLP.
    """

    def __init__(self, records: Iterable[T]) -> None:
        self._records = records
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[T]:
        try:
            yield from self._records
        except UNREADABLE as exc:  # the file cannot be read on; raise_if_failed gives it to the caller
            self.error = exc

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error


def open_binary(path: Path) -> BinaryIO:
    """Open a file for an adapter, past a UTF-8 byte order mark (which editors and Windows tools
    write, and which no JSON parser takes), decompressing gzip (a ``.gz`` name, or gzip's own
    first bytes under any name). The first bytes are peeked at, never sought back to, so a pipe
    (``/dev/stdin``, a ``zstdcat`` into ``<(...)``) reads as a file does. A file compressed
    another way raises :class:`CompressedFile` naming how."""
    raw = path.open("rb")
    try:
        stream: BinaryIO = raw
        if path.suffix.lower() == ".gz" or raw.peek(2)[:2] == b"\x1f\x8b":
            stream = _Gunzip(raw)
        head = stream.peek(6)[:6]  # type: ignore[attr-defined]
        if head.startswith(b"PK\x03\x04"):
            raise CompressedFile(
                "a zip archive (an Excel workbook is one): export the sheet as CSV, or unzip it first"
            )
        if head[:1] == b"\x00" and stream.peek(8)[4:8] == _ZSTD:  # type: ignore[attr-defined]
            raise CompressedFile(
                "messages compressed one by one with zstd, as the Collector's file exporter writes "
                "them with compression: zstd (zstdcat cannot read them either): export without "
                "compression (gzip the files afterwards if you like)"
            )
        packed = next((name for magic, name in _OTHER_COMPRESSION if head.startswith(magic)), None)
        if packed is not None:
            raise CompressedFile(
                f"{packed}-compressed: decompress it first (yieldmeter reads plain files and gzip)"
            )
        if head.startswith(b"\xef\xbb\xbf"):
            stream.read(3)
    except BaseException:  # a .gz that is not gzip fails here: the reader names it as before
        raw.close()
        raise
    return stream


def read_head(stream: BinaryIO, size: int) -> tuple[bytes, BinaryIO]:
    """The first ``size`` bytes of ``stream`` (fewer at its end), and the stream to read from
    its start: ``stream`` itself, sought back, when it can be; otherwise (a pipe, or a file cut
    short inside its first bytes) one that gives those bytes again and then the rest, so a pipe is
    read once and the bytes before a cut still reach the reader, which then meets the cut."""
    raw = stream._raw if isinstance(stream, _Gunzip) else stream
    start = stream.tell() if raw.seekable() else None
    parts: list[bytes] = []
    got, error = 0, None
    try:
        read = getattr(stream, "read1", stream.read)  # what is at hand: a cut gzip loses no more
        while got < size:  # in pieces: a cut gzip raises, and what the piece decoded is lost
            piece = read(min(8192, size - got))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
    except (EOFError, OSError, zlib.error) as exc:
        error = exc
    head = b"".join(parts)
    if start is not None and error is None:
        stream.seek(start)
        return head, stream
    return head, io.BufferedReader(_Replay(head, stream, error), 1 << 16)  # type: ignore[return-value]


class _Replay(io.RawIOBase):
    """Bytes already read from a stream, then the rest of it (see :func:`read_head`); an error met
    while the bytes were read is raised once they are given."""

    def __init__(self, head: bytes, stream: BinaryIO, error: BaseException | None) -> None:
        self._head = memoryview(head)
        self._stream = stream
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if len(self._head):
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        # what is at hand (a cut gzip drops what the call that meets the cut decoded)
        data = getattr(self._stream, "read1", self._stream.read)(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            super().close()


class _Gunzip(gzip.GzipFile):
    """gzip over an open file, closing that file with it (``GzipFile`` leaves a given one open)."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


#: The first bytes of files compressed by a method yieldmeter does not open itself.
_ZSTD = b"\x28\xb5\x2f\xfd"
_OTHER_COMPRESSION = (
    (_ZSTD, "zstd"),  # the OpenTelemetry Collector file exporter's compression
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


class CompressedFile(InputError):
    """A file compressed by a method yieldmeter does not read (it reads gzip)."""


class ReadAhead:
    """Iterate a reader's batches one batch ahead of their writer, on a thread of its own.

    An adapter is Python (it holds the GIL) and the store's write of a batch is mostly DuckDB
    and Arrow (they release it), so on two cores the next batch is decoded while the last one
    is written. Besides the batch being written, ``depth`` batches wait in between and one more
    is in the reader's hand: with the default depth of 1, two batches more than without it.

    The batches come out in the reader's order. An error of the reader comes out where it
    happened, after the batches read before it (which the caller has written by then). Use it
    as a context manager: leaving the block (the writer failed, or finished) stops the reader
    after its current batch and waits for its thread, so the file it reads can be closed.
    """

    _ITEM, _END, _ERROR = range(3)

    def __init__(self, batches: Iterable[Batch], depth: int = 1) -> None:
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._read, args=(batches,), name="yieldmeter-read-ahead", daemon=True
        )
        self._thread.start()

    def _read(self, batches: Iterable[Batch]) -> None:
        try:
            it = iter(batches)
            for batch in it:
                if not self._put((self._ITEM, batch)):
                    # the writer stopped: the reader's own cleanup (its pools, its files), on
                    # its own thread; the writer is gone, so a failure of it is only logged
                    close = getattr(it, "close", None)
                    if close is not None:
                        try:
                            close()
                        except Exception:
                            log.warning("closing the reader of a stopped import failed", exc_info=True)
                    return
        except BaseException as exc:  # handed to the writer's thread, raised there in order
            self._put((self._ERROR, exc))
            return
        self._put((self._END, None))  # a generator that ran to its end is closed already

    def _put(self, item: tuple[int, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Batch]:
        while True:
            kind, value = self._queue.get()
            if kind == self._END:
                return
            if kind == self._ERROR:
                raise value
            yield value

    @staticmethod
    def pays() -> bool:
        """Whether reading ahead can gain anything: not on one core (the cores this process may
        run on, where the platform says), where the reader and the writer would only take turns
        (and more batches would wait in memory)."""
        return usable_cores() > 1

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def read_ahead(batches: Iterable[Batch]) -> AbstractContextManager[Iterable[Batch]]:
    """The batches for a writer: read ahead where it pays (:class:`ReadAhead`), else as they
    are; either way the reader is closed when the block ends (a failed write included), before
    the file it reads is."""
    if ReadAhead.pays():
        return ReadAhead(batches)
    return closing(batches) if hasattr(batches, "close") else nullcontext(batches)  # type: ignore[return-value]


def decode_processes(workers: int) -> ProcessPoolExecutor:
    """``workers`` decode processes, spawned (no thread or DuckDB handle of this process forked),
    that end themselves once the process that started them is gone: killed (SIGKILL), it cannot
    stop its pool, and they would otherwise idle for ever, reparented."""
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_end_with_parent,
        initargs=(os.getpid(),),
    )


def _end_with_parent(parent: int) -> None:
    """Run in each new decode process: a thread that ends it within a second of its parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="yieldmeter-parent-watch", daemon=True).start()
