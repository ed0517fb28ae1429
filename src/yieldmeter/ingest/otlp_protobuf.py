"""OTLP/HTTP binary protobuf (``ExportTraceServiceRequest``) -> a :class:`Batch`, via :class:`SpanRows`."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from yieldmeter.ingest.base import Batch, ReadOptions
from yieldmeter.ingest.otlp import Resource, SpanRows, UnreadableRequest, paused_gc
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


def decode_protobuf(body: bytes, options: ReadOptions) -> Batch:
    """An ``ExportTraceServiceRequest`` in binary protobuf -> one :class:`Batch`."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        request = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise UnreadableRequest(f"not an OTLP ExportTraceServiceRequest in protobuf: {exc}") from None
    with paused_gc():
        return _map(request, options)


def _map(request: Any, options: ReadOptions) -> Batch:
    rows = SpanRows(options)
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
                    position,
                    span.kind,
                )
    return rows.batch()
