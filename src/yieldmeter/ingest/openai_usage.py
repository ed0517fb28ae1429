"""OpenAI organization usage and costs API pages (JSON, or JSON lines of pages).

``/v1/organization/usage/completions`` (and ``/embeddings``): pages of
buckets (``start_time``, ``end_time`` in epoch seconds) whose ``results``
carry ``input_tokens`` (which *include* ``input_cached_tokens``),
``output_tokens``, ``num_model_requests``, ``project_id``, ``user_id``,
``api_key_id``, ``model``, ``batch`` and ``service_tier``. Each result becomes
one aggregated call row with ``request_count = num_model_requests`` (moderations too). The
pages of usage not counted in tokens (images, audio, vector stores, code interpreter
sessions) are ignored, counted and noted: no token price applies to them.

``/v1/organization/costs``: results with ``amount.value`` in *dollars* and a
``line_item`` such as ``"gpt-4o-2024-08-06, input"``; they become
``cost_items`` of category ``ai_tokens`` (the provider's bill for tokens the
calls already price: kept for reconciliation, never added to fully loaded cost).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from yieldmeter.ingest.base import Batch, Format, ReadOptions
from yieldmeter.ingest.conform import stable_id
from yieldmeter.ingest.records import RecordError, epoch_or_iso, read_usage_results, to_json, whole
from yieldmeter.ingest.service_tier import BATCH

_KIND_OPERATION = {
    "organization.usage.completions.result": "chat",
    "organization.usage.embeddings.result": "embeddings",
    "organization.usage.moderations.result": "moderations",
}
#: Usage that is not counted in tokens (images, audio seconds and characters, vector store bytes,
#: code interpreter sessions): no token price applies, so these results are ignored (counted,
#: with a note) rather than landed as calls of 0 tokens that would read as $0; the costs page
#: carries what they cost.
_NOT_TOKENS = re.compile(r"^organization\.usage\.(\w+)\.result$")


def _unwrap(doc: Any) -> list[Any] | None:
    """A page's buckets, each result tagged with its bucket's window."""
    if not isinstance(doc, dict):
        return None
    if doc.get("object") == "page" or isinstance(doc.get("data"), list):
        out = []
        for bucket in doc.get("data") or []:
            if not isinstance(bucket, dict):
                out.append(bucket)
                continue
            for result in bucket.get("results") or []:
                if isinstance(result, dict):
                    result = {**result, "_start": bucket.get("start_time"), "_end": bucket.get("end_time")}
                out.append(result)
        return out
    return None


def map_usage(r: dict[str, Any]) -> dict[str, Any] | None:
    """A usage result as an aggregated call; None for usage not counted in tokens."""
    if r.get("object") not in _KIND_OPERATION and _NOT_TOKENS.match(str(r.get("object"))):
        return None
    inp = whole(r.get("input_tokens"), "input_tokens") or 0
    cached = whole(r.get("input_cached_tokens"), "input_cached_tokens") or 0
    if cached > inp:
        raise RecordError(f"input_cached_tokens ({cached}) exceeds input_tokens ({inp}), which include them")
    requests = whole(r.get("num_model_requests"), "num_model_requests")
    start = epoch_or_iso(r.get("_start"), "start_time")
    dims = ("object", "_start", "_end", "project_id", "user_id", "api_key_id", "model", "batch")
    dims += ("service_tier",)
    key = ("openai-usage", *(r.get(d) for d in dims))
    attrs = {
        "project_id": r.get("project_id"),
        "api_key_id": r.get("api_key_id"),
        "batch": r.get("batch"),
        "service_tier": r.get("service_tier"),
        "input_audio_tokens": r.get("input_audio_tokens") or None,
        "output_audio_tokens": r.get("output_audio_tokens") or None,
        "bucket_end": r.get("_end"),
    }
    return {
        "call_id": stable_id(*key),
        "ts": start,
        "provider": "openai",
        "model": r.get("model"),
        "operation": _KIND_OPERATION.get(str(r.get("object")), "chat"),
        "input_tokens": inp,
        "output_tokens": whole(r.get("output_tokens"), "output_tokens") or 0,
        "cached_input_tokens": cached,
        "request_count": requests if requests is not None else 1,
        # a batch bucket is billed at the batch rate whatever its service_tier says
        "service_tier": BATCH if r.get("batch") is True else r.get("service_tier"),
        "user_id": r.get("user_id"),
        "app": r.get("project_id"),
        "attributes": to_json({k: v for k, v in attrs.items() if v is not None}),
    }


def map_cost(r: dict[str, Any]) -> dict[str, Any]:
    amount = r.get("amount")
    if not isinstance(amount, dict) or amount.get("value") is None:
        raise RecordError("amount.value: missing")
    currency = str(amount.get("currency") or "usd").lower()
    if currency != "usd":
        raise RecordError(f"amount.currency {currency!r}: only USD amounts can be imported")
    try:
        value = float(amount["value"])  # dollars (the Anthropic cost report uses cents; OpenAI does not)
    except (TypeError, ValueError):
        raise RecordError(f"amount.value: expected a number, got {amount['value']!r}") from None
    line = str(r.get("line_item") or "")
    model, _, unit = line.partition(", ")
    return {
        "item_id": stable_id("openai-costs", r.get("_start"), r.get("_end"), r.get("project_id"), line),
        "period_start": epoch_or_iso(r.get("_start"), "start_time"),
        "period_end": epoch_or_iso(r.get("_end"), "end_time"),
        "amount": value,
        "category": "ai_tokens",
        "provider": "openai",
        "model": model or None,
        "unit": unit or None,
        "attributes": to_json({"project_id": r.get("project_id"), "line_item": line or None}),
    }


def read(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    return read_usage_results(
        stream,
        options,
        unwrap=_unwrap,
        is_cost=lambda r: r.get("object") == "organization.costs.result",
        map_cost=map_cost,
        map_usage=map_usage,
        report="an OpenAI usage or costs page (data[].results[])",
    )


def detect(head: bytes, filename: str) -> bool:
    text = head[:16384]
    return (
        b'"organization.usage.' in text
        or b'"organization.costs.result"' in text
        or (b"num_model_requests" in text and b"input_cached_tokens" in text)
        # a page of a period without usage: buckets whose results are all empty
        or (re.search(rb'"object"\s*:\s*"bucket"', text) is not None and b'"results"' in text)
    )


FORMAT = Format(
    name="openai-usage",
    description="OpenAI organization usage (completions, embeddings) and costs API pages",
    detect=detect,
    read=read,
)
