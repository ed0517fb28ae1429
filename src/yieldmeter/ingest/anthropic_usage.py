"""Anthropic Admin API usage and cost reports (JSON pages, or JSON lines of pages).

``/v1/organizations/usage_report/messages``: buckets (``starting_at``,
``ending_at``) whose ``results`` carry ``uncached_input_tokens``,
``cache_read_input_tokens``, ``cache_creation.ephemeral_5m_input_tokens`` and
``ephemeral_1h_input_tokens``, ``output_tokens``, ``model``, ``workspace_id``,
``api_key_id``, ``service_tier`` and the other dimensions the report was grouped by
(``account_id``, the user, becomes ``user_id``). Anthropic counts input *apart* from cache
reads and writes, so the canonical ``input_tokens`` is their sum. The report
has no request count: each result is one aggregated row (``request_count`` 1).

``/v1/organizations/cost_report``: results whose ``amount`` is in *cents, as a
decimal string* ("123.45" = $1.2345). Token costs become ``cost_items`` of
category ``ai_tokens`` (reconciliation only); other cost types (web search,
code execution) are ``ai_services``, which the calls do not price.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO

from yieldmeter.ingest.base import Batch, Format, ReadOptions
from yieldmeter.ingest.conform import stable_id
from yieldmeter.ingest.records import RecordError, epoch_or_iso, read_usage_results, to_json, whole
from yieldmeter.ingest.service_tier import BATCH, normalise_tier


def _unwrap(doc: Any) -> list[Any] | None:
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        return None
    out = []
    for bucket in doc["data"]:
        if not isinstance(bucket, dict):
            out.append(bucket)
            continue
        for result in bucket.get("results") or []:
            if isinstance(result, dict):
                result = {**result, "_start": bucket.get("starting_at"), "_end": bucket.get("ending_at")}
            out.append(result)
    return out


#: The usage report's group_by dimensions (with the bucket's bounds) that make a result's id ...
_USAGE_DIMENSIONS = (
    "_start", "_end", "workspace_id", "api_key_id", "model", "service_tier", "context_window"
)  # fmt: skip
#: ... and those added to the API later, in the id only where a result has one, so the ids of
#: results imported before them stay the same
_LATER_DIMENSIONS = ("account_id", "service_account_id", "inference_geo", "speed")
#: kept in a call's attributes (the model and the user account have columns of their own)
_ATTRIBUTE_DIMENSIONS = (
    "workspace_id", "api_key_id", "service_tier", "context_window",
    "service_account_id", "inference_geo", "speed",
)  # fmt: skip


def _is_cost(r: dict[str, Any]) -> bool:
    return "amount" in r or "cost_type" in r


def _tier(r: dict[str, Any]) -> Any:
    """The rate a result was billed at: batch (a ``service_tier``), else fast mode (``speed``),
    else its ``service_tier`` (``standard`` is stored as none: :mod:`yieldmeter.ingest.service_tier`)."""
    tier, speed = r.get("service_tier"), r.get("speed")
    if normalise_tier(tier) != BATCH and normalise_tier(speed):
        return speed
    return tier


def map_usage(r: dict[str, Any]) -> dict[str, Any]:
    uncached = whole(r.get("uncached_input_tokens"), "uncached_input_tokens") or 0
    cache_read = whole(r.get("cache_read_input_tokens"), "cache_read_input_tokens") or 0
    creation = r.get("cache_creation") or {}
    if not isinstance(creation, dict):
        raise RecordError("cache_creation: expected an object")
    write_5m = (
        whole(creation.get("ephemeral_5m_input_tokens"), "cache_creation.ephemeral_5m_input_tokens") or 0
    )
    write_1h = (
        whole(creation.get("ephemeral_1h_input_tokens"), "cache_creation.ephemeral_1h_input_tokens") or 0
    )
    server_tools = r.get("server_tool_use") or {}
    # a result's identity is every dimension the report can be grouped by (group_by): one left
    # out would make two results of one bucket the same call, the later replacing the earlier
    key = ("anthropic-usage", *(r.get(d) for d in _USAGE_DIMENSIONS))
    if any(r.get(d) is not None for d in _LATER_DIMENSIONS):
        key += tuple(r.get(d) for d in _LATER_DIMENSIONS)
    attrs = {
        **{d: r.get(d) for d in _ATTRIBUTE_DIMENSIONS},
        "web_search_requests": server_tools.get("web_search_requests")
        if isinstance(server_tools, dict)
        else None,
        "bucket_end": r.get("_end"),
    }
    return {
        "call_id": stable_id(*key),
        "ts": epoch_or_iso(r.get("_start"), "starting_at"),
        "provider": "anthropic",
        "model": r.get("model"),
        "operation": "chat",
        "input_tokens": uncached + cache_read + write_5m + write_1h,
        "output_tokens": whole(r.get("output_tokens"), "output_tokens") or 0,
        "cached_input_tokens": cache_read,
        "cache_write_tokens": write_5m + write_1h,
        "cache_write_1h_tokens": write_1h,  # a part of the writes, priced at the hour's rate
        "request_count": 1,
        "service_tier": _tier(r),
        "user_id": r.get("account_id"),
        "app": r.get("workspace_id"),
        "attributes": to_json({k: v for k, v in attrs.items() if v is not None}),
    }


def map_cost(r: dict[str, Any]) -> dict[str, Any]:
    raw = r.get("amount")
    try:
        cents = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise RecordError(f"amount: expected cents as a decimal string, got {raw!r}") from None
    if not cents.is_finite():
        raise RecordError(f"amount: expected cents as a decimal string, got {raw!r}")
    currency = str(r.get("currency") or "USD").upper()
    if currency != "USD":
        raise RecordError(f"currency {currency!r}: only USD amounts can be imported")
    cost_type = r.get("cost_type")
    dims = ("_start", "_end", "workspace_id", "description", "model", "token_type", "service_tier")
    dims += ("context_window",)
    key = ("anthropic-cost", *(r.get(d) for d in dims))
    attrs = {
        "workspace_id": r.get("workspace_id"),
        "description": r.get("description"),
        "cost_type": cost_type,
        "service_tier": r.get("service_tier"),
        "context_window": r.get("context_window"),
        "amount_cents": str(raw),
    }
    return {
        "item_id": stable_id(*key),
        "period_start": epoch_or_iso(r.get("_start"), "starting_at"),
        "period_end": epoch_or_iso(r.get("_end"), "ending_at"),
        "amount": float(cents / 100),
        "category": "ai_tokens" if cost_type in (None, "tokens") else "ai_services",
        "provider": "anthropic",
        "model": r.get("model"),
        "unit": r.get("token_type") or cost_type,
        "attributes": to_json({k: v for k, v in attrs.items() if v is not None}),
    }


def read(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    return read_usage_results(
        stream,
        options,
        unwrap=_unwrap,
        is_cost=_is_cost,
        map_cost=map_cost,
        map_usage=map_usage,
        report="an Anthropic usage or cost report page (data[].results[])",
    )


def detect(head: bytes, filename: str) -> bool:
    text = head[:16384]
    return b"starting_at" in text and (
        b"uncached_input_tokens" in text
        or b"cost_type" in text
        or b"cache_creation" in text
        # a page of a period without usage: its buckets' results are empty
        or (b'"ending_at"' in text and b'"results"' in text)
    )


FORMAT = Format(
    name="anthropic-usage",
    description="Anthropic Admin API usage_report/messages and cost_report pages",
    detect=detect,
    read=read,
)
