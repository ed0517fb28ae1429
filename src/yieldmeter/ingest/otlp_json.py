"""OTLP JSON: request bodies (``application/json``) and the Collector file exporter's JSON lines.

The OTLP JSON encoding uses lowerCamelCase keys, hex trace and span ids, and
64-bit integers as strings or numbers; unknown fields are ignored. The
Collector's ``file`` exporter writes one ``ExportTraceServiceRequest`` per line.
A whole file that is one (pretty-printed) request is read too.
"""

from __future__ import annotations

import io
import logging
import re
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, BinaryIO

import orjson

from yieldmeter.ingest.base import UNENDED_LINE, Batch, Format, ReadOptions, decode_processes
from yieldmeter.ingest.conform import make_rejects
from yieldmeter.ingest.otlp import Resource, SpanRows, UnreadableRequest, paused_gc
from yieldmeter.ingest.otlp_columnar import read_chunk
from yieldmeter.ingest.otlp_semconv import EVALUATION_EVENT

log = logging.getLogger("yieldmeter.ingest")

#: A span waits as Python objects (a few KB each) until its batch is built, so OTLP batches are
#: smaller than ``ReadOptions.batch_rows``: 16k spans hold about 65 MB, 64k spans held 260 MB,
#: which put a 1M-span import over 1 GiB.
_SPANS_PER_BATCH = 16_384


def _value(v: Any) -> Any:
    """An OTLP JSON ``AnyValue`` as a Python value (intValue strings become int where they can)."""
    if type(v) is not dict:
        return v
    x = v.get("stringValue")
    if x is not None:
        return x
    x = v.get("intValue")
    if x is not None:
        if type(x) is str:
            try:
                return int(x)
            except ValueError:
                return x  # the mapping names the attribute and rejects the span
        return x
    x = v.get("doubleValue")
    if x is not None:
        if type(x) is str:  # "NaN", "Infinity", or a number sent as a string
            try:
                return float(x)
            except ValueError:
                return x
        return x
    x = v.get("boolValue")
    if x is not None:
        return x
    x = v.get("arrayValue")
    if x is not None:
        return [_value(i) for i in (x.get("values") or [])] if type(x) is dict else x
    x = v.get("kvlistValue")
    if x is not None:
        return _attrs(x.get("values")) if type(x) is dict else x
    x = v.get("bytesValue")
    if x is not None:
        return x
    return None


def _attrs(kvs: Any) -> dict[str, Any]:
    if not kvs:
        return {}
    if type(kvs) is not list:
        raise TypeError("attributes: expected a list of {key, value}")
    # One comprehension, no call for string values (most attributes); other AnyValues go
    # through _value. A list not in OTLP shape is read again by the plain loop, which
    # raises the error (and so the quarantine reason) this reader has always given.
    try:
        return {
            kv["key"]: (
                x
                if type(v := kv.get("value")) is dict and type(x := v.get("stringValue")) is str
                else _value(v)
            )
            for kv in kvs
        }
    except (TypeError, KeyError, AttributeError):
        return _attrs_loop(kvs)


def _attrs_loop(kvs: list[Any]) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        v = kv.get("value")
        x = v.get("stringValue") if type(v) is dict else None
        out[kv["key"]] = x if x is not None else _value(v)
    return out


def add_request(doc: Any, rows: SpanRows, position: int | None = None) -> int:
    """Map every span of one decoded ``ExportTraceServiceRequest`` into ``rows``.

    ``position`` is given for file lines (every span of the line gets it);
    otherwise spans are numbered from 1 within the request. Returns the span count.
    Raises :class:`UnreadableRequest` when the document is not a trace export at all.
    """
    if type(doc) is not dict:
        raise UnreadableRequest(f"expected a JSON object with resourceSpans, got {type(doc).__name__}")
    resource_spans = doc.get("resourceSpans")
    if resource_spans is None and "resource_spans" in doc:
        # protobuf's field names (a JSON printer told to keep them): the spec's keys are
        # lowerCamelCase; read as such, every key of the request (attribute keys are values)
        resource_spans = _camel_keys(doc["resource_spans"])
    if resource_spans is None:
        other = next((k for k in _OTHER_SIGNALS if k in doc), None)
        if other is not None:
            raise UnreadableRequest(f"an OTLP {_OTHER_SIGNALS[other]} export ({other}), not traces")
        if doc:
            raise UnreadableRequest("no resourceSpans: not an OTLP trace export")
        return 0
    if type(resource_spans) is not list:
        raise UnreadableRequest("resourceSpans: expected a list")
    n = 0
    for rs in resource_spans:
        if type(rs) is not dict:
            raise UnreadableRequest("resourceSpans[]: expected objects")
        resource: Resource | None = None
        bad_resource = ""
        try:
            resource = Resource(_attrs((rs.get("resource") or {}).get("attributes")))
        except Exception as exc:  # only this resource's spans are rejected, with the reason
            bad_resource = f"resource.attributes not in OTLP shape ({type(exc).__name__}: {exc})"
        scopes = rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []
        if type(scopes) is not list:
            raise UnreadableRequest("scopeSpans: expected a list")
        for ss in scopes:
            spans = ss.get("spans") if type(ss) is dict else None
            if not spans:
                continue
            if type(spans) is not list:
                raise UnreadableRequest("scopeSpans[].spans: expected a list")
            for span in spans:
                n += 1
                pos = position if position is not None else n
                if resource is None:
                    rows.spans += 1
                    ids = (
                        (span.get("traceId"), span.get("spanId"), span.get("name"))
                        if type(span) is dict
                        else (None, None, None)
                    )
                    rows._reject(pos, bad_resource, *ids, None)
                else:
                    _add_span(span, resource, rows, pos)
    return n


def _camel_keys(obj: Any) -> Any:
    """``obj`` with every object key in lowerCamelCase (``scope_spans`` -> ``scopeSpans``).

    A loop over a stack, not a recursion: a value nested as deep as orjson reads (1,024 levels)
    is copied whole, and the span holding it is then read (or refused) as in camelCase."""
    stack: list[tuple[Any, Any]] = []

    def copy(v: Any) -> Any:
        if type(v) is dict:
            stack.append((v, d := {}))
            return d
        if type(v) is list:
            stack.append((v, l_ := []))
            return l_
        return v

    out = copy(obj)
    while stack:
        src, dst = stack.pop()
        if type(src) is dict:
            for k, v in src.items():
                dst[_camel(k)] = copy(v)
        else:
            for v in src:
                dst.append(copy(v))
    return out


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _add_span(span: Any, resource: Resource, rows: SpanRows, pos: int) -> None:
    if type(span) is not dict:
        rows.spans += 1
        rows._reject(pos, f"expected a span object, got {type(span).__name__}", None, None, None, None)
        return
    try:
        attrs = _attrs(span.get("attributes"))
        events = None
        evs = span.get("events")
        if evs:
            events = [
                (
                    e.get("name"),
                    e.get("timeUnixNano"),
                    _attrs(e.get("attributes")) if e.get("name") == EVALUATION_EVENT else {},
                )
                for e in evs
            ]
        status = span.get("status") or {}
        code = status.get("code", 0) if type(status) is dict else status
        message = status.get("message", "") if type(status) is dict else ""
    except Exception as exc:  # a span of any shape is that span's reject, never the request's
        rows.spans += 1
        reason = f"attributes or events not in OTLP shape ({type(exc).__name__}: {exc})"
        rows._reject(pos, reason, span.get("traceId"), span.get("spanId"), span.get("name"), None)
        return
    rows.add(
        span.get("traceId"),
        span.get("spanId"),
        span.get("parentSpanId") or "",
        span.get("name"),
        span.get("startTimeUnixNano"),
        span.get("endTimeUnixNano"),
        code,
        message,
        attrs,
        resource,
        events,
        pos,
        span.get("kind"),
    )


def decode_json(body: bytes, options: ReadOptions) -> Batch:
    """One OTLP/HTTP JSON request body -> one :class:`Batch`."""
    with paused_gc():
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UnreadableRequest(f"not valid JSON: {exc}") from None
        rows = SpanRows(options)
        add_request(doc, rows)
        return rows.batch()


def read(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    """Collector file-exporter JSON lines; one batch per ``options.batch_rows`` spans (at most 16,384).

    A line that is not JSON or not a trace export is quarantined with its line
    number; the other lines still land. An invalid last line without a line end is
    quarantined saying the file may still be being written (:data:`UNENDED_LINE`); the last
    batch names the rows of earlier imports' such lines that this import read whole
    (:attr:`Batch.settles`, from :attr:`ReadOptions.unended`). The last batch is held back
    until the file has been read: one batch more in memory. With ``options.decode_workers`` > 0, a
    file of more than one chunk (:data:`CHUNK_BYTES`) of lines is decoded and
    mapped in that many worker processes; the batches are the same either way,
    cut at the same lines and in file order. When reading the file fails part
    way (a truncated ``.gz``), the lines read before it still land, then the
    error is raised.
    """
    head = _past_blank_lines([stream.readline()], stream)
    if head[-1].lstrip().startswith(b"{") and not _parses(head[-1]):
        # One pretty-printed request spread over many lines, or JSON lines whose first line is
        # broken: in JSON lines the next (non-blank) line is a request of its own, whole, or cut
        # short too but opening as one does; in a pretty-printed one it is a key, a bracket, or
        # an element of the request's lists (which may open with "{" but is no request).
        head = _past_blank_lines([*head, stream.readline()], stream)
        following = head[-1]
        whole_line = following.lstrip().startswith(b"{") and _parses(following)
        if not whole_line and not _REQUEST_LINE.match(following):
            doc = b"".join(head) + stream.read()
            try:
                request = orjson.loads(doc)
            except orjson.JSONDecodeError:  # no one request either: lines after all, read each
                head, stream = doc.splitlines(keepends=True), io.BytesIO()
            else:
                with paused_gc():
                    batch = _whole(request, doc, options)
                if batch is not None:
                    yield batch
                return
    failed: list[Exception] = []
    lines = _Settling(_until_failure(_chain(head, stream), failed), options.unended)
    held = None  # the last batch is held back to carry what the file's lines settle
    try:
        for batch in (
            _read_parallel(lines, options) if options.decode_workers > 0 else _read_serial(lines, options)
        ):
            if held is not None:
                yield held
            held = batch
    except Exception:
        if held is not None:  # decoded before the failure: it lands, as it did when yielded at once
            yield held
        raise
    if held is not None:
        if not failed:  # every line has been read: earlier imports' unended last lines it completes
            held.settles = tuple(lines.settled)
        yield held
    if failed:
        raise failed[0]


def _read_serial(lines: Iterable[bytes], options: ReadOptions) -> Iterator[Batch]:
    tries = _ColumnarTries()
    for chunk in _chunks(lines):
        yield from tries.decode(*chunk, options)


class _Settling:
    """Lines, noting which of ``unended`` (line number -> the text a quarantine row kept of an
    unended last line) are now read whole and start with that text: ended by a line end, or the
    last one parsing without one (a file that ends without a line end)."""

    def __init__(self, lines: Iterable[bytes], unended: dict[int, str]) -> None:
        self._lines = lines
        self._unended = unended
        self.settled: list[int] = []

    def __iter__(self) -> Iterator[bytes]:
        lines = iter(self._lines)
        if not self._unended:
            yield from lines
            return
        last = max(self._unended)
        for lineno, line in enumerate(lines, 1):
            kept = self._unended.get(lineno)
            if kept is not None and (line.endswith(b"\n") or _parses(line)) and _starts(line, kept):
                self.settled.append(lineno)
            yield line
            if lineno >= last:  # no row waits on the rest
                yield from lines
                return


def _starts(line: bytes, kept: str) -> bool:
    """Whether ``line`` starts with the text a quarantine row kept of it (its first 2,000 bytes,
    decoded, where a character cut short reads as U+FFFD), and that text holds a whole span id:
    a line cut before one starts like any request of the same service (and trace), so another
    file under the same name (the Collector rotated it) cannot be told from the same file
    grown; its row stays."""
    kept = kept.rstrip("\ufffd")
    return _SPAN_ID.search(kept) is not None and line[:2000].decode("utf-8", "replace").startswith(kept)


_SPAN_ID = re.compile(r'"span_?[iI]d"\s*:\s*"[^"]+"')


def _past_blank_lines(lines: list[bytes], stream: BinaryIO) -> list[bytes]:
    """``lines`` and, while the last one is blank (not the end), the next lines of ``stream``."""
    while lines[-1] and not lines[-1].strip():
        lines.append(stream.readline())
    return lines


def _until_failure(lines: Iterable[bytes], failed: list[Exception]) -> Iterator[bytes]:
    """``lines`` until reading fails; the error goes to ``failed``, to be raised once what was
    read before it has landed."""
    try:
        yield from lines
    except Exception as exc:
        failed.append(exc)


def _whole(request: Any, doc: bytes, options: ReadOptions) -> Batch | None:
    """A file that is one pretty-printed request, parsed from ``doc`` (``None`` when it holds no
    span)."""
    rows = SpanRows(options)
    try:
        add_request(request, rows, 1)
    except UnreadableRequest as exc:
        return _finish(rows, options, [1], [f"line 1: {exc}"], [doc[:2000].decode("utf-8", "replace")])
    return _finish(rows, options, [], [], []) if rows.spans else None


#: Lines are cut into chunks of about this many bytes (about 14,000 spans of the Collector's
#: JSON): what a decode process maps at a time, big enough that a chunk's trip costs little
#: beside its mapping. A batch never spans two chunks, with decode processes or without.
CHUNK_BYTES = 16 << 20


def _read_lines(lines: Iterable[bytes], options: ReadOptions, first_lineno: int) -> Iterator[Batch]:
    """The batches of ``lines`` (one chunk, see :func:`_chunks`, or part of one), the first of
    which is line ``first_lineno`` of the file.

    A batch ends at the line that takes it to ``options.batch_rows`` (at most 16,384) spans,
    and at the end of the lines: a batch never spans two chunks.
    """
    rows = SpanRows(options)
    bad_pos: list[int] = []
    bad_reason: list[str] = []
    bad_raw: list[str] = []
    limit = min(options.batch_rows, _SPANS_PER_BATCH)
    for lineno, line in enumerate(lines, first_lineno):
        if line.strip():
            try:
                add_request(orjson.loads(line), rows, lineno)
            except orjson.JSONDecodeError as exc:
                bad_pos.append(lineno)
                unended = "" if line.endswith(b"\n") else f"; {UNENDED_LINE}"
                bad_reason.append(f"line {lineno}: not valid JSON ({exc}){unended}")
                bad_raw.append(line[:2000].decode("utf-8", "replace"))
            except UnreadableRequest as exc:
                bad_pos.append(lineno)
                bad_reason.append(f"line {lineno}: {exc}")
                bad_raw.append(line[:2000].decode("utf-8", "replace"))
        if rows.spans >= limit:
            yield _finish(rows, options, bad_pos, bad_reason, bad_raw)
            rows = SpanRows(options)
            bad_pos, bad_reason, bad_raw = [], [], []
    if rows.spans or bad_pos:
        yield _finish(rows, options, bad_pos, bad_reason, bad_raw)


def decode_lines(chunk: bytes, first_lineno: int, options: ReadOptions, columnar: bool = True) -> list[Batch]:
    """The batches of the lines in ``chunk``, the first being ``first_lineno``.

    Batches of plain model-call spans are read as columns (:mod:`.otlp_columnar`), the
    others span by span; ``columnar=False`` reads every batch span by span.
    """
    return _decode(chunk, first_lineno, options, columnar)[0]


def _decode(
    chunk: bytes, first_lineno: int, options: ReadOptions, columnar: bool
) -> tuple[list[Batch], bool]:
    """:func:`decode_lines`, and whether the columnar reader was tried and read no batch."""
    with paused_gc():  # while reading and mapping, not while the caller holds the batches
        if columnar:
            limit = min(options.batch_rows, _SPANS_PER_BATCH)
            read = read_chunk(
                chunk, first_lineno, options, limit,
                lambda lines, first: list(_read_lines(lines, options, first)),
            )  # fmt: skip
            if read is not None:
                batches, as_columns = read
                return batches, bool(batches) and not as_columns
        return list(_read_lines(io.BytesIO(chunk), options, first_lineno)), columnar


class _ColumnarTries:
    """When a file's next chunk is worth trying as columns.

    A chunk the columnar reader reads no batch of costs its parse for nothing, about as
    much again as mapping it span by span (a file of agent traces, say). After such a
    chunk the next 1, 3, 7, 15, then 31 chunks are mapped span by span before the reader
    tries again; a chunk it reads resets the wait. The batches are the same either way.
    Used by :func:`read` in one process; decode processes try every chunk they are given.
    """

    def __init__(self) -> None:
        self.misses = 0
        self.wait = 0

    def decode(self, chunk: bytes, first_lineno: int, options: ReadOptions) -> list[Batch]:
        if self.wait:
            self.wait -= 1
            return decode_lines(chunk, first_lineno, options, columnar=False)
        batches, missed = _decode(chunk, first_lineno, options, True)
        if missed:
            self.misses += 1
            self.wait = min(2**self.misses - 1, 31)
        else:
            self.misses = 0
        return batches


_Chunk = tuple[bytes, int]  # whole lines, and the file's line number of the first


def _chunks(lines: Iterable[bytes]) -> Iterator[_Chunk]:
    """Whole lines in chunks that end at the line taking them to :data:`CHUNK_BYTES`."""
    buf: list[bytes] = []
    size = 0
    lineno = 1
    for line in lines:
        buf.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield b"".join(buf), lineno
            lineno += len(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf), lineno


def _read_parallel(lines: Iterable[bytes], options: ReadOptions) -> Iterator[Batch]:
    """Chunks of lines mapped in ``options.decode_workers`` processes, their batches in file order.

    The first chunk is decoded here while the processes start, so a file of one chunk never
    starts one. At most two chunks per process wait, which bounds the memory held.
    """
    chunks = _chunks(lines)
    first = next(chunks, None)
    second = next(chunks, None) if first is not None else None
    if first is None or second is None:
        if first is not None:
            yield from decode_lines(*first, options)
        return
    pool = _DecodePool(options)
    pending: deque[tuple[Future[list[Batch]] | None, _Chunk]] = deque()
    try:
        pending.append((pool.submit(second), second))
        yield from decode_lines(*first, options)
        for chunk in chunks:
            pending.append((pool.submit(chunk), chunk))
            while len(pending) > 2 * options.decode_workers:
                yield from pool.result(*pending.popleft())
        while pending:
            yield from pool.result(*pending.popleft())
    finally:
        pool.close()


class _DecodePool:
    """Spawned decode processes, until one dies (a chunk that exhausted its memory): from then
    on, every chunk not yet decoded is decoded in this process."""

    def __init__(self, options: ReadOptions) -> None:
        self.options = options
        self.pool: ProcessPoolExecutor | None = decode_processes(options.decode_workers)

    def submit(self, chunk: _Chunk) -> Future[list[Batch]] | None:
        """The chunk's future, or ``None`` when it is to be decoded here."""
        if self.pool is not None:
            try:
                return self.pool.submit(decode_lines, *chunk, self.options)
            except BrokenProcessPool:  # a process died since the last result
                self._broken(chunk)
        return None

    def result(self, future: Future[list[Batch]] | None, chunk: _Chunk) -> list[Batch]:
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                self._broken(chunk)
        return decode_lines(*chunk, self.options)

    def _broken(self, chunk: _Chunk) -> None:
        if self.pool is not None:
            log.error("a decode process died (lines from %d on): the rest is decoded here", chunk[1])
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _chain(head: list[bytes], stream: BinaryIO) -> Iterator[bytes]:
    yield from head
    yield from stream


def _parses(line: bytes) -> bool:
    try:
        orjson.loads(line)
        return True
    except orjson.JSONDecodeError:
        return False


def _finish(rows: SpanRows, options: ReadOptions, pos: list[int], reason: list[str], raw: list[str]) -> Batch:
    batch = rows.batch()
    if pos:
        from yieldmeter.ingest.conform import concat_rejects

        batch.rejects = concat_rejects(
            [batch.rejects, make_rejects("calls", options.source, pos, reason, raw)]
        )
    return batch


#: a line that opens an ``ExportTraceServiceRequest``, as the Collector's file exporter writes one
_REQUEST_LINE = re.compile(rb'(?m)^\s*\{\s*"(resourceSpans|resource_spans)"')


#: the top keys of the other signals' exports, which a Collector's file exporter writes alike
_OTHER_SIGNALS = {
    "resourceLogs": "logs",
    "resourceMetrics": "metrics",
    "resourceProfiles": "profiles",
    "resource_logs": "logs",
    "resource_metrics": "metrics",
}
_OTHER_LINE = re.compile(rb'^\s*\{\s*"(' + b"|".join(k.encode() for k in _OTHER_SIGNALS) + rb')"')


def other_signal(head: bytes) -> str | None:
    """Why a file that opens with another signal's export (logs, metrics) is not read: a message
    for a file nothing else recognised, or ``None``."""
    m = _OTHER_LINE.match(head.lstrip(b"\xef\xbb\xbf"))
    if m is None:
        return None
    kind = _OTHER_SIGNALS[m.group(1).decode()]
    return (
        f"an OpenTelemetry {kind} export ({m.group(1).decode()} lines): yieldmeter reads traces "
        "(resourceSpans); where trace lines follow further on, pass --format otlp-json"
    )


def detect(head: bytes, filename: str) -> bool:
    text = head.lstrip()[:4096]
    if text.startswith(b"{") and (b'"resourceSpans"' in text or b'"resource_spans"' in text):
        return True
    # a first line that is not JSON (cut short, a stray log line): the next lines tell; the
    # reader quarantines that line with its number
    return _REQUEST_LINE.search(head[:65536]) is not None


FORMAT = Format(
    name="otlp-json",
    description="OTLP JSON trace export lines (OpenTelemetry Collector file exporter)",
    detect=detect,
    read=read,
)
