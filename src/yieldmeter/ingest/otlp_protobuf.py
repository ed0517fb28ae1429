"""OTLP binary protobuf (``ExportTraceServiceRequest``) -> :class:`Batch` es, via :class:`SpanRows`:
one OTLP/HTTP request body (:func:`decode_protobuf`), or a file of them as the Collector's file
exporter writes with ``format: proto`` (:func:`read`, the ``otlp-proto`` import format)."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from yieldmeter.ingest.base import UNREADABLE, Batch, Format, ReadOptions
from yieldmeter.ingest.conform import concat_rejects, make_rejects
from yieldmeter.ingest.otlp import Resource, SpanRows, UnreadableRequest, paused_gc
from yieldmeter.ingest.otlp_json import _SPANS_PER_BATCH
from yieldmeter.ingest.otlp_semconv import EVALUATION_EVENT


def _pb_value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    x = getattr(v, which)
    if which == "array_value":
        return [_pb_value(i) for i in x.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in x.values}
    if which == "bytes_value":
        return base64.b64encode(x).decode()
    return x


_SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def _pb_attrs(kvs: Iterable[Any]) -> dict[str, Any]:
    # scalars (nearly every attribute) are read inline, without a call per attribute
    return {
        kv.key: getattr(v, w) if (w := (v := kv.value).WhichOneof("value")) in _SCALARS else _pb_value(v)
        for kv in kvs
    }


def _parse(body: bytes) -> Any:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        return ExportTraceServiceRequest.FromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise UnreadableRequest(f"not an OTLP ExportTraceServiceRequest in protobuf: {exc}") from None


def decode_protobuf(body: bytes, options: ReadOptions) -> Batch:
    """An ``ExportTraceServiceRequest`` in binary protobuf -> one :class:`Batch`."""
    request = _parse(body)
    with paused_gc():
        rows = SpanRows(options)
        _add(request, rows)
        return rows.batch()


def _add(request: Any, rows: SpanRows, at: int | None = None) -> None:
    """Map the spans of ``request`` into ``rows``: numbered from 1 within it, or all ``at`` (the
    message's number in a file)."""
    position = 0
    for rs in request.resource_spans:
        resource = Resource(_pb_attrs(rs.resource.attributes))
        for ss in rs.scope_spans:
            for span in ss.spans:
                position += 1
                events = None
                if span.events:
                    events = [
                        (
                            e.name,
                            e.time_unix_nano,
                            _pb_attrs(e.attributes) if e.name == EVALUATION_EVENT else {},
                        )
                        for e in span.events
                    ]
                rows.add(
                    span.trace_id.hex(),
                    span.span_id.hex(),
                    span.parent_span_id.hex(),
                    span.name,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    span.status.code,
                    span.status.message,
                    _pb_attrs(span.attributes),
                    resource,
                    events,
                    position if at is None else at,
                    span.kind,
                )


#: The largest message a file's length prefix may announce: the receiver's body limit.
MAX_FILE_MESSAGE = 64 << 20


def read(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    """The Collector file exporter's ``format: proto``: messages one after another, each a 4-byte
    big-endian length and then a trace export (``TracesData``, wire-alike with
    ``ExportTraceServiceRequest``) in binary protobuf. Spans are numbered by their message in the
    file; a message that is not a trace export is quarantined with its number and the others
    land; a file cut inside a message (the Collector stopped mid-write) or whose length prefix is
    past reason (not this format, or damaged) ends there, with the messages before it landed.
    One batch per 16,384 spans at most, as the JSON lines are."""
    limit = min(options.batch_rows, _SPANS_PER_BATCH)
    rows = SpanRows(options)
    bad: list[tuple[int, str, str]] = []
    number = 0
    failed: BaseException | None = None
    while True:
        try:
            prefix = stream.read(4)
            if not prefix:
                break
            number += 1
            if len(prefix) < 4:
                bad.append((number, f"message {number}: cut short inside its length", ""))
                break
            size = int.from_bytes(prefix, "big")
            if size > MAX_FILE_MESSAGE:
                why = f"says it is {size:,} bytes, more than {MAX_FILE_MESSAGE >> 20} MiB: damaged, or not"
                bad.append((number, f"message {number}: {why} the proto format", prefix.hex()))
                break
            body = stream.read(size)
        except UNREADABLE as exc:  # a .gz cut short: what came before lands, then the error
            failed = exc
            break
        if len(body) < size:
            bad.append((number, f"message {number}: cut short ({len(body):,} of {size:,} bytes)", ""))
            break
        try:
            request = _parse(body)
            _check_traces(request)
        except UnreadableRequest as exc:
            bad.append((number, f"message {number}: {exc}", base64.b64encode(body[:1500]).decode()))
            continue
        with paused_gc():
            _add(request, rows, number)
        if rows.spans >= limit:
            yield _batch(rows, bad, options)
            rows, bad = SpanRows(options), []
    if rows.spans or bad:
        yield _batch(rows, bad, options)
    if failed is not None:
        raise failed


def _check_traces(request: Any) -> None:
    """A metrics or logs export in the same file format parses as a trace export (the messages
    share their outer fields), with "spans" whose ids are no span ids: such a message is no
    trace export. A span with a trace id of 16 bytes is enough to tell."""
    seen = False
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if len(span.trace_id) == 16:
                    return
                seen = True
    if seen:
        raise UnreadableRequest(
            "not a trace export: none of its spans has a trace id (a metrics or logs export?)"
        )


def _batch(rows: SpanRows, bad: list[tuple[int, str, str]], options: ReadOptions) -> Batch:
    batch = rows.batch()
    if bad:
        pos, reason, raw = zip(*bad, strict=True)
        rejects = make_rejects("calls", options.source, list(pos), list(reason), list(raw))
        batch.rejects = concat_rejects([batch.rejects, rejects])
    return batch


def detect(head: bytes, filename: str) -> bool:
    """Messages as the file exporter writes them: a length whose first byte is at most 3 (under
    64 MiB, the largest message read; no text file starts with such a byte), then field 1 of a
    trace export, its resource spans."""
    if len(head) < 6 or head[0] > 3 or head[4] != 0x0A:  # a first byte of 3: under 64 MiB
        return False
    size = int.from_bytes(head[:4], "big")
    return size >= 2 and (len(head) < size + 4 or size + 4 == len(head) or head[size + 4] == 0)


FORMAT = Format(
    name="otlp-proto",
    description="OTLP binary trace export files (OpenTelemetry Collector file exporter, format: proto)",
    detect=detect,
    read=read,
)
