"""FOCUS billing exports (FinOps Open Cost and Usage Specification 1.0 to 1.3) -> ``cost_items``.

Columns read: ``ChargePeriodStart``/``ChargePeriodEnd``, ``EffectiveCost``
(amortised, what allocation should use; ``BilledCost`` when absent),
``BillingCurrency``, ``ProviderName`` (1.0-1.2) or ``ServiceProviderName``
(1.3+), ``HostProviderName``, ``ServiceCategory``, ``ServiceName``,
``ChargeCategory``, ``ConsumedQuantity``/``ConsumedUnit``, ``SkuId``,
``SkuMeter``, ``SkuPriceDetails`` and ``Tags``.

A row's id names the charge, not its amounts (:func:`charge_key`): billing
exports are delivered again and again for a period that is not closed (a
month-to-date file each day, with the amounts so far), and each delivery's
rows replace the ones stored before instead of adding to them.

AI token SKUs are recognised (``Tokens`` as the consumed or pricing unit, a
token meter, or token properties in ``SkuPriceDetails``) and carry provider,
model (``ModelId``), quantity and a unit naming the token kind; the
specification's drafts spell the kind either ``TokenType`` or
``TokenDirection`` + ``TokenCacheAction``, and both are read. Their category
is ``ai_tokens``: the bill for tokens the calls already price, kept for
reconciliation. Other rows take their ``ServiceCategory`` as the category.
Non-USD rows are rejected (the store holds USD).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import orjson

from yieldmeter.ingest.base import Batch, Format, ReadOptions, UntilUnreadable
from yieldmeter.ingest.conform import parse_timestamp, stable_id
from yieldmeter.ingest.records import RecordError, RowBuffer, first, iter_records, json_field, raw_of, to_json

_CATEGORIES = {
    "ai and machine learning": "ai_platform",
    "compute": "compute",
    "storage": "storage",
    "networking": "network",
    "databases": "database",
    "analytics": "analytics",
    "management and governance": "management",
    "security": "security",
    "integration": "integration",
    "developer tools": "developer_tools",
}
_TOKEN_KINDS = {
    ("input", None): "input_tokens",
    ("output", None): "output_tokens",
    ("input", "read"): "cache_read_tokens",
    ("input", "write"): "cache_write_tokens",
    ("cachedinput", None): "cache_read_tokens",
    ("cached input", None): "cache_read_tokens",
    ("cacheread", None): "cache_read_tokens",
    ("cachewrite", None): "cache_write_tokens",
}
_KEEP = ("BilledCost", "ListCost", "ContractedCost", "ChargeCategory", "ChargeClass", "ChargeDescription",
         "ServiceName", "ServiceCategory", "HostProviderName", "SkuId", "SkuPriceId", "SkuMeter", "RegionId",
         "ResourceId", "SubAccountId", "BillingAccountId", "BillingPeriodStart", "PricingQuantity",
         "PricingUnit", "PrincipalId")  # fmt: skip


#: The columns of a FOCUS row, besides its charge period, provider, model, token kind, team and
#: workflow, that say which charge it is. Amounts, quantities and prices are left out (a
#: restated row keeps its id), and so are display names, ``ChargeDescription`` (it states the
#: price: "$0.40 per million requests in Tier1"), ``HostProviderName`` (FOCUS 1.3 adds it beside
#: 1.0's ``PublisherName``: an export upgraded mid-month would rename every row) and the tags
#: other than team and workflow (a tag switched on for cost allocation part way through a
#: period would otherwise make every restated row new). A ``Correction`` (``ChargeClass``) is a
#: charge of its own, and of the billing period it is invoiced in: it keeps the charge period of
#: the row it corrects and arrives in a later period's file. All of them are kept in
#: ``attributes`` (``_KEEP``), so the id of a stored row can be computed again from what the
#: store holds (:func:`stored_charge_ids`, schema migration 3).
CHARGE_KEY_ATTRIBUTES = ("BillingAccountId", "SubAccountId", "ChargeCategory", "ChargeClass",
                         "ServiceCategory", "ServiceName", "SkuId", "SkuPriceId", "SkuMeter", "RegionId",
                         "ResourceId", "PricingUnit", "PrincipalId")  # fmt: skip
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def charge_key(row: dict[str, Any], attrs: dict[str, Any]) -> str:
    """What names the charge of a mapped FOCUS row (``attrs``: its attributes before JSON).

    The same charge gives the same key whether it came from CSV or JSON, under FOCUS 1.0 or 1.3
    column names, with columns yieldmeter does not read added, or with other amounts: the
    times are compared as instants, the other values as text.
    """
    parts: list[Any] = [_instant(row["period_start"]), _instant(row["period_end"])]
    parts += [_text(row[c]) for c in ("provider", "model", "unit", "team", "workflow")]
    parts += [_text(attrs.get(c)) for c in CHARGE_KEY_ATTRIBUTES]
    if str(attrs.get("ChargeClass") or "").strip().lower() == "correction":
        parts.append(_instant(attrs.get("BillingPeriodStart")))
    return orjson.dumps(parts, default=str).decode()


def _text(value: Any) -> str | None:
    """A key part as text; blank is absent, as a CSV's empty cell is (JSON may say ``""``)."""
    text = None if value is None else str(value).strip()
    return text or None


def charge_id(key: str, occurrence: int) -> str:
    """The item id of the ``occurrence``-th row (from 1, in file order) with this charge key."""
    return stable_id("focus-charge", key, occurrence)


#: The ``cost_items`` columns :func:`charge_key` reads besides ``attributes``.
KEY_COLUMNS = ("period_start", "period_end", "provider", "model", "unit", "team", "workflow")


def stored_charge_ids(rows: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(item_id, charge id)`` of the FOCUS rows among stored ``cost_items`` rows (``item_id``,
    ``attributes`` as JSON text and :data:`KEY_COLUMNS`), numbered in the order given as an
    import numbers a file's rows (store schema migration 3). FOCUS rows are those whose
    attributes hold ``ChargeCategory`` and ``BilledCost``: this importer keeps both, and FOCUS
    requires both on every row."""
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        try:
            attrs = orjson.loads(r["attributes"] or "null")
        except orjson.JSONDecodeError:
            continue
        if not isinstance(attrs, dict) or "ChargeCategory" not in attrs or "BilledCost" not in attrs:
            continue
        key = charge_key(r, attrs)
        seen[key] = seen.get(key, 0) + 1
        out.append((r["item_id"], charge_id(key, seen[key])))
    return out


def _instant(value: Any) -> Any:
    when = parse_timestamp(value)
    return _text(value) if when is None else (when - _EPOCH) // timedelta(microseconds=1)


def _token_kind(details: dict[str, Any], meter: str) -> str | None:
    ttype = first(details, "TokenType")
    if ttype is not None:
        key = (str(ttype).strip().lower(), None)
        if key in _TOKEN_KINDS:
            return _TOKEN_KINDS[key]
        return f"{str(ttype).strip().lower().replace(' ', '_')}_tokens"
    direction = first(details, "TokenDirection")
    if direction is not None:
        action = first(details, "TokenCacheAction")
        key = (str(direction).strip().lower(), str(action).strip().lower() if action else None)
        return _TOKEN_KINDS.get(key, f"{key[0]}_{key[1] or ''}_tokens".replace("__", "_"))
    low = meter.lower()
    for word, kind in (("cache read", "cache_read_tokens"), ("cache write", "cache_write_tokens"),
                       ("input", "input_tokens"), ("output", "output_tokens")):  # fmt: skip
        if word in low:
            return kind
    return None


def _is_token_sku(r: dict[str, Any], details: dict[str, Any]) -> bool:
    units = " ".join(str(first(r, c) or "") for c in ("ConsumedUnit", "PricingUnit", "SkuMeter")).lower()
    return "token" in units or any(k in details for k in ("TokenType", "TokenDirection"))


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RecordError(f"{name}: expected a number, got {value!r}") from None


def map_row(r: dict[str, Any]) -> tuple[dict[str, Any], str, bool]:
    """The ``cost_items`` row of one billing row, without its id; its :func:`charge_key`; and
    whether it is a row of yieldmeter's own chargeback export (``yieldmeter.cost_part`` tag)."""
    given = first(r, "BillingCurrency")
    if given is None:  # FOCUS requires it on every row: a blank one is not taken for dollars
        raise RecordError("BillingCurrency: missing (FOCUS requires it; amounts must be USD)")
    currency = str(given).strip().upper()
    if currency != "USD":
        raise RecordError(f"BillingCurrency {currency!r}: amounts must be USD (convert before importing)")
    effective = _number(first(r, "EffectiveCost"), "EffectiveCost")
    billed = _number(first(r, "BilledCost"), "BilledCost")
    amount = effective if effective is not None else billed
    if amount is None:
        raise RecordError("EffectiveCost and BilledCost: both missing")
    details = json_field(first(r, "SkuPriceDetails"), "SkuPriceDetails") or {}
    if not isinstance(details, dict):
        raise RecordError("SkuPriceDetails: expected a JSON object")
    tags = json_field(first(r, "Tags"), "Tags") or {}
    tags = tags if isinstance(tags, dict) else {}
    provider = first(r, "ServiceProviderName", "ProviderName")
    # yieldmeter's own chargeback export (``yieldmeter.cost_part`` tag) prices tokens too, but it is an
    # allocation of metered cost, never a provider's bill for tokens
    own = "yieldmeter.cost_part" in tags
    tokens = _is_token_sku(r, details) and not own
    service_category = str(first(r, "ServiceCategory") or "").strip()
    attrs = {k: r.get(k) for k in _KEEP if r.get(k) is not None}
    attrs.update({f"sku.{k}": v for k, v in details.items()})
    if tags:
        attrs["tags"] = tags
    start, start_at = _period_bound(r, "ChargePeriodStart", "BillingPeriodStart")
    end, end_at = _period_bound(r, "ChargePeriodEnd", "BillingPeriodEnd")
    if end_at < start_at:
        raise RecordError(f"{end[0]} {end[1]!r}: before {start[0]} {start[1]!r}")
    row = {
        "period_start": start[1],
        "period_end": end[1],
        "amount": amount,
        "category": "ai_tokens"
        if tokens
        else _CATEGORIES.get(service_category.lower(), service_category.lower().replace(" ", "_") or "cloud"),
        "team": first(tags, "team", "Team", "yieldmeter.team"),
        "workflow": first(tags, "workflow", "yieldmeter.workflow"),
        "provider": provider,
        "model": first(details, "ModelId", "ModelName") if tokens else None,
        "quantity": _number(first(r, "ConsumedQuantity"), "ConsumedQuantity"),
        "unit": (_token_kind(details, str(first(r, "SkuMeter") or "")) if tokens else None)
        or first(r, "ConsumedUnit"),
        "attributes": to_json(attrs),
    }
    return row, charge_key(row, attrs), own


def _period_bound(r: dict[str, Any], *names: str) -> tuple[tuple[str, Any], datetime]:
    """A charge period's start or end: (the column it came from, its value) and the time, so a
    row that cannot be placed in time is refused naming the file's own column."""
    for name in names:
        value = r.get(name)
        if value is not None and value != "":
            when = parse_timestamp(value)
            if when is None:
                raise RecordError(f"{name} {value!r}: not a time (ISO 8601, e.g. 2026-11-01T00:00:00Z)")
            return (name, value), when
    raise RecordError(f"{' and '.join(names)}: both missing")


def read(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    buf = RowBuffer(options)
    seen: dict[str, int] = {}
    own = 0  # rows of yieldmeter's own chargeback export
    records = UntilUnreadable(iter_records(stream))
    for pos, rec in records:
        try:
            if isinstance(rec, RecordError):
                raise rec
            if not isinstance(rec, dict):
                raise RecordError(f"expected a billing row, got {type(rec).__name__}")
            row, key, is_own = map_row(rec)
        except RecordError as exc:
            buf.reject("cost_items", pos, f"row {pos}: {exc}", raw_of(rec))
            continue
        # rows of one charge stay apart: the n-th gets its own id, stable across re-imports
        seen[key] = seen.get(key, 0) + 1
        buf.add("cost_items", {"item_id": charge_id(key, seen[key]), **row}, pos)
        own += is_own
        if buf.full():
            yield buf.flush()
    if own:
        buf.notes.append(
            f"{own:,} rows are yieldmeter's own chargeback export (`export focus`, tag "
            "yieldmeter.cost_part): they restate the calls, effort and cost items of the workspace that "
            "wrote them, so in that workspace they count its cost twice; import them into another one"
        )
    yield buf.flush()
    records.raise_if_failed()


def detect(head: bytes, filename: str) -> bool:
    text = head[:8192]
    return b"BilledCost" in text and (b"ChargePeriodStart" in text or b"BillingPeriodStart" in text)


FORMAT = Format(
    name="focus",
    description="FOCUS 1.0-1.3 billing export (CSV or JSON) into cost_items, AI token SKUs recognised",
    detect=detect,
    read=read,
)
