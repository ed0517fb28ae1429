"""Langfuse observation exports (JSON, JSON lines or CSV; snake_case or the API's camelCase).

Fields read: ``id``, ``trace_id``, ``type``, ``start_time``, ``end_time``,
``provided_model_name`` (else ``model``), ``usage_details``, ``cost_details``,
and the trace's ``user_id``, ``session_id``, ``tags``. Only generations and
embeddings are model calls; other observation types are counted as ignored.

``usage_details`` keeps every usage type as its own bucket (``input``
excludes ``input_cached_tokens``), see
:func:`yieldmeter.ingest.otlp_semconv.langfuse_usage`. The call id is
``<trace_id>-<observation id>``, the same id the OTLP receiver gives the span
Langfuse's SDK exported, so importing an export of spans already received
creates no duplicates. ``cost_details.total`` becomes ``reported_cost``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from yieldmeter.ingest.base import Batch, Format, ReadOptions, UntilUnreadable
from yieldmeter.ingest.otlp_semconv import SpanError, langfuse_usage
from yieldmeter.ingest.records import (
    RecordError,
    RowBuffer,
    data_page,
    first,
    iter_records,
    json_field,
    raw_of,
    to_json,
)

_CALL_TYPES = {"GENERATION": "chat", "EMBEDDING": "embeddings"}
#: The fields that hold prompt or completion text: kept only with capture_content, in a call's
#: attributes and in a refused observation's quarantine entry.
CONTENT = ("input", "output")


def map_row(r: dict[str, Any], options: ReadOptions) -> dict[str, Any] | None:
    kind = str(first(r, "type") or "").upper()
    if not kind:  # every observation has a type (SPAN, EVENT, GENERATION...): not one of them
        raise RecordError("type: missing (not a Langfuse observation)")
    if kind not in _CALL_TYPES:
        return None
    oid = first(r, "id")
    trace = first(r, "trace_id", "traceId")
    if oid is None or trace is None:
        raise RecordError("id and trace_id: both needed for a call id")
    usage = json_field(first(r, "usage_details", "usageDetails"), "usage_details")
    if usage is None:  # older exports: usage {input, output, total} or promptTokens/completionTokens
        legacy = json_field(first(r, "usage"), "usage") or {}
        usage = {
            "input": first(legacy, "input", "promptTokens") or first(r, "prompt_tokens", "promptTokens"),
            "output": first(legacy, "output", "completionTokens")
            or first(r, "completion_tokens", "completionTokens"),
        }
    if not isinstance(usage, dict):
        raise RecordError("usage_details: expected a JSON object")
    try:
        inp, out, cache_read, cache_write, reasoning, hour = langfuse_usage(usage)
    except SpanError as exc:
        raise RecordError(f"usage_details: {exc}") from None
    cost = json_field(first(r, "cost_details", "costDetails"), "cost_details") or {}
    reported = cost.get("total") if isinstance(cost, dict) else None
    if reported is None:
        reported = first(r, "calculated_total_cost", "calculatedTotalCost", "total_cost", "totalCost")
    meta = json_field(first(r, "metadata"), "metadata")
    meta = meta if isinstance(meta, dict) else {}
    tags = json_field(first(r, "tags", "trace_tags"), "tags")
    level = str(first(r, "level") or "DEFAULT").upper()
    attrs = {
        "name": first(r, "name"),
        "langfuse.observation.id": oid,
        "parent_observation_id": first(r, "parent_observation_id", "parentObservationId"),
        "tags": tags or None,
        "usage_details": usage,
        "cost_details": cost or None,
        "prompt_name": first(r, "prompt_name", "promptName"),
    }
    if options.capture_content:
        attrs["input"] = r.get("input")
        attrs["output"] = r.get("output")
    return {
        "call_id": f"{trace}-{oid}",
        "ts": first(r, "start_time", "startTime"),
        "_end": first(r, "end_time", "endTime"),
        "provider": first(meta, "ls_provider", "provider"),
        "model": first(r, "provided_model_name", "providedModelName", "model"),
        "operation": _CALL_TYPES[kind],
        "input_tokens": inp,
        "output_tokens": out,
        "cached_input_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "cache_write_1h_tokens": hour,
        "reasoning_tokens": reasoning,
        "status": "error" if level == "ERROR" else "ok",
        "user_id": first(r, "user_id", "userId", "trace_user_id"),
        "session_id": first(r, "session_id", "sessionId", "trace_session_id"),
        "environment": first(r, "environment"),
        "trace_id": trace,
        "span_id": oid,
        "work_unit_id": first(meta, "yieldmeter.work_unit.id") or trace,
        "workflow": first(meta, "yieldmeter.workflow"),
        "task_type": first(meta, "yieldmeter.task_type"),
        "team": first(meta, "yieldmeter.team"),
        "reported_cost": reported,
        "attributes": to_json({k: v for k, v in attrs.items() if v is not None}),
    }


def read(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    from yieldmeter.ingest.litellm import _with_duration

    buf = RowBuffer(options)
    content = () if options.capture_content else CONTENT
    records = UntilUnreadable(iter_records(stream, unwrap=data_page))  # the API's pages
    for pos, rec in records:
        try:
            if isinstance(rec, RecordError):
                raise rec
            if not isinstance(rec, dict):
                raise RecordError(f"expected an observation object, got {type(rec).__name__}")
            row = map_row(rec, options)
        except RecordError as exc:
            buf.reject("calls", pos, f"observation {pos}: {exc}", raw_of(rec, content))
            continue
        if row is None:
            buf.ignored += 1
            continue
        buf.add("calls", _with_duration(row), pos)
        if buf.full():
            yield buf.flush()
    yield buf.flush()
    records.raise_if_failed()


#: An observation's own type, which the export and the API write before its input and output.
_OBSERVATION_TYPE = re.compile(
    rb'"type"\s*:\s*"(?:GENERATION|SPAN|EVENT|EMBEDDING|AGENT|TOOL|CHAIN|RETRIEVER)"'
)


#: The API's page without observations: ``{"data": [], "meta": {"page": 1, ..., "totalItems": 0}}``.
_EMPTY_PAGE = re.compile(rb'\{\s*"data"\s*:\s*\[\s*\]\s*,\s*"meta"\s*:\s*\{[^{}]*"totalItems"')


def detect(head: bytes, filename: str) -> bool:
    """Observations: their usage or model fields, or (where a long input comes first, as in a
    RAG trace) an observation type beside a trace id. The OTLP formats, which carry Langfuse's
    attributes too, are told apart before this."""
    if _EMPTY_PAGE.match(head.lstrip(b"\xef\xbb\xbf \t\r\n")):  # the API's page of a quiet day
        return True
    has_trace = any(k in head for k in (b"trace_id", b"traceId"))
    return any(k in head for k in (b"provided_model_name", b"providedModelName")) or (
        has_trace
        and (
            any(k in head for k in (b"usage_details", b"usageDetails"))
            or bool(_OBSERVATION_TYPE.search(head))
        )
    )


FORMAT = Format(
    name="langfuse",
    description="Langfuse observation exports (generations with usage_details and cost_details)",
    detect=detect,
    read=read,
)
