"""LiteLLM proxy spend logs (the ``LiteLLM_SpendLogs`` table, exported as CSV, JSON or JSON lines).

One row per request: ``request_id``, ``call_type``, ``spend`` (USD), ``prompt_tokens``,
``completion_tokens``, ``startTime``, ``endTime``, ``model``, ``model_group``,
``custom_llm_provider``, ``user``, ``team_id``, ``end_user``, ``session_id``,
``request_tags``, ``metadata``, ``status``.

LiteLLM's ``prompt_tokens`` already include cached tokens (OpenAI's
convention, which LiteLLM applies to every provider), so cache reads and
writes found in ``metadata.usage_object`` are *not* added again. Older proxies
passed Anthropic's uncached ``input_tokens`` through as ``prompt_tokens``; a row
whose cache reads + writes exceed its ``prompt_tokens`` can only be that, so the
parts are added, the row's ``attributes`` say ``tokens_counted_apart``, and the
batch carries a note with the count. ``spend`` is
kept as ``reported_cost`` beside yieldmeter's own price, for reconciliation.
A row the proxy answered from its own cache (``cache_hit``) is a call with no
provider tokens (LiteLLM charges it 0): its response's counts are kept in
``attributes.cache_hit_tokens``, never billed again.
Message and response text is never read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import orjson

from yieldmeter.ingest.base import Batch, Format, ReadOptions, UntilUnreadable
from yieldmeter.ingest.conform import parse_bool
from yieldmeter.ingest.records import (
    RecordError,
    RowBuffer,
    data_page,
    first,
    iter_records,
    json_field,
    raw_of,
    to_json,
    whole,
)

_CALL_TYPES = {
    "completion": "chat",
    "acompletion": "chat",
    "text_completion": "text_completion",
    "atext_completion": "text_completion",
    "embedding": "embeddings",
    "aembedding": "embeddings",
    "responses": "chat",
    "aresponses": "chat",
    "anthropic_messages": "chat",
    "generate_content": "generate_content",
    "agenerate_content": "generate_content",
}
_STATUS = {"success": "ok", "failure": "error", "": "ok", None: "ok"}
#: The columns that hold prompt or completion text (the request as the proxy got it, too): kept
#: only with capture_content, in a call's attributes and in a refused row's quarantine entry.
CONTENT = (
    "messages",
    "response",
    "proxy_server_request",
    # what the proxy logs inside metadata (``SpendLogsMetadata``) that may hold request text:
    # the request body, MCP tool arguments and results, vector store queries, guardrail verdicts
    "metadata.proxy_server_request",
    "metadata.mcp_tool_call_metadata",
    "metadata.vector_store_request_metadata",
    "metadata.guardrail_information",
)
_LINKAGE = ("yieldmeter.work_unit.id", "yieldmeter.workflow", "yieldmeter.task_type", "yieldmeter.team")


def map_row(r: dict[str, Any], options: ReadOptions) -> dict[str, Any]:
    request_id = first(r, "request_id", "id")
    if request_id is None:
        raise RecordError("request_id: missing")
    meta = json_field(r.get("metadata"), "metadata") or {}
    if not isinstance(meta, dict):
        raise RecordError("metadata: expected a JSON object")
    usage = meta.get("usage_object") or {}
    prompt = whole(first(r, "prompt_tokens"), "prompt_tokens") or 0
    completion = whole(first(r, "completion_tokens"), "completion_tokens") or 0
    details = usage.get("prompt_tokens_details") or {}
    cached = whole(details.get("cached_tokens") or usage.get("cache_read_input_tokens"), "cached_tokens") or 0
    writes = (
        whole(usage.get("cache_creation_input_tokens"), "cache_creation_input_tokens")
        or whole(details.get("cache_creation_tokens"), "prompt_tokens_details.cache_creation_tokens")
        or 0
    )
    # Anthropic's writes kept for an hour, a part of the writes (priced at their own rate)
    ttl = details.get("cache_creation_token_details")
    ttl = ttl if isinstance(ttl, dict) else {}
    hour = whole(ttl.get("ephemeral_1h_input_tokens"), "ephemeral_1h_input_tokens") or 0
    writes = max(writes, hour)
    reasoning = (
        whole((usage.get("completion_tokens_details") or {}).get("reasoning_tokens"), "reasoning_tokens") or 0
    )
    counted_apart = cached + writes > prompt  # an older proxy that reported Anthropic's uncached input
    if counted_apart:
        prompt += cached + writes
    # The proxy answered from its own cache: no provider call, no tokens bought (LiteLLM's spend
    # is 0). The cached response's counts are kept in attributes, not billed again.
    hit = parse_bool(first(r, "cache_hit")) is True
    served = None
    if hit:
        counts = {
            "input": prompt,
            "output": completion,
            "cached_input": cached,
            "cache_write": writes,
            "reasoning": reasoning,
        }
        served = {k: v for k, v in counts.items() if v}
        prompt = completion = cached = writes = hour = reasoning = 0
        counted_apart = False
    spend = first(r, "spend")
    try:
        reported = float(spend) if spend is not None else None
    except (TypeError, ValueError):
        raise RecordError(f"spend: expected a number, got {spend!r}") from None
    requester = meta.get("requester_metadata") if isinstance(meta.get("requester_metadata"), dict) else {}
    link = {k: first(meta, k) or first(requester, k) for k in _LINKAGE}
    tags = json_field(r.get("request_tags"), "request_tags") or []
    call_type = first(r, "call_type") or "completion"
    status = first(r, "status")
    attrs = {
        "model_group": first(r, "model_group"),
        "api_base": first(r, "api_base"),
        "request_tags": tags or None,
        "cache_hit": first(r, "cache_hit"),
        "cache_hit_tokens": served,
        "api_key_alias": meta.get("user_api_key_alias"),
        "team_alias": meta.get("user_api_key_team_alias"),
        "team_id": first(r, "team_id"),
        "tokens_counted_apart": "cache" if counted_apart else None,
    }
    if options.capture_content:
        attrs["messages"] = r.get("messages")
        attrs["response"] = r.get("response")
        attrs["proxy_server_request"] = r.get("proxy_server_request")
    session = first(r, "session_id")
    return {
        "call_id": f"litellm-{request_id}",
        "ts": first(r, "startTime", "start_time"),
        "_end": first(r, "endTime", "end_time"),
        "provider": first(r, "custom_llm_provider"),
        "model": first(r, "model"),
        "operation": _CALL_TYPES.get(call_type, call_type),
        "input_tokens": prompt,
        "output_tokens": completion,
        "cached_input_tokens": cached,
        "cache_write_tokens": writes,
        "cache_write_1h_tokens": hour,
        "reasoning_tokens": reasoning,
        "status": _STATUS.get(status, status),
        "user_id": first(r, "end_user", "user"),
        "team": link["yieldmeter.team"] or meta.get("user_api_key_team_alias") or first(r, "team_id"),
        "session_id": session,
        "work_unit_id": link["yieldmeter.work_unit.id"] or session or f"litellm-{request_id}",
        "workflow": link["yieldmeter.workflow"],
        "task_type": link["yieldmeter.task_type"],
        "trace_id": meta.get("trace_id") or first(r, "trace_id"),
        "reported_cost": reported,
        "_counted_apart": counted_apart,
        "_cache_hit": hit,
        "attributes": to_json({k: v for k, v in attrs.items() if v not in (None, "", [])}),
    }


def read(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    buf = RowBuffer(options)
    content = () if options.capture_content else CONTENT
    apart = hits = 0
    # a file of rows, or the proxy's pages of them ({"data": [...], "total": ...})
    records = UntilUnreadable(iter_records(stream, unwrap=data_page))
    for pos, rec in records:
        try:
            if isinstance(rec, RecordError):
                raise rec
            if not isinstance(rec, dict):
                raise RecordError(f"expected an object per spend log row, got {type(rec).__name__}")
            row = map_row(rec, options)
        except RecordError as exc:
            buf.reject("calls", pos, f"row {pos}: {exc}", raw_of(rec, content))
        else:
            apart += row.pop("_counted_apart")
            hits += row.pop("_cache_hit")
            buf.add("calls", _with_duration(row), pos)
        if buf.full():
            yield _flush(buf, apart, hits)
            apart = hits = 0
    yield _flush(buf, apart, hits)
    records.raise_if_failed()


def _flush(buf: RowBuffer, apart: int, hits: int) -> Batch:
    if apart:
        buf.notes.append(
            f"{apart} LiteLLM row(s) report more cache read + write tokens than prompt_tokens: read as "
            "an older proxy's uncached input, and the cache tokens added to input_tokens"
        )
    if hits:
        buf.notes.append(
            f"{hits} LiteLLM row(s) were answered from the proxy's own cache (cache_hit): no provider "
            "was called, so they landed with no tokens (the response's counts are in "
            "attributes.cache_hit_tokens)"
        )
    return buf.flush()


def _with_duration(row: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime

    end = row.pop("_end")
    try:
        a = datetime.fromisoformat(str(row["ts"]).replace("Z", "+00:00"))
        b = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
        row["duration_ms"] = (b - a).total_seconds() * 1000
    except (TypeError, ValueError):
        row["duration_ms"] = None
    return row


#: The keys of the proxy's page (``/spend/logs/v2``) beside its ``data``.
_PAGE_KEYS = frozenset({"total", "page", "page_size", "total_pages"})


def detect(head: bytes, filename: str) -> bool:
    """Spend log rows, or the proxy's page without rows (a quiet period):
    ``{"data": [], "total": 0, "page": 1, "page_size": 50, "total_pages": 0}``."""
    text = head[:8192]
    if b"request_id" in text and b"call_type" in text and b"spend" in text:
        return True
    if len(head) > 4096 or b'"page_size"' not in head:  # an empty page is a few bytes
        return False
    try:
        doc = orjson.loads(head.lstrip(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("data") == [] and doc.keys() >= _PAGE_KEYS


FORMAT = Format(
    name="litellm",
    description="LiteLLM proxy spend logs (LiteLLM_SpendLogs as CSV, JSON or JSON lines)",
    detect=detect,
    read=read,
)
