"""The ``prices`` table: the catalog plus the overrides of ``yieldmeter.yaml``.

An override is priced under the provider ``override`` and the model name
``[provider/]model`` of the override, so catalog and override rows never
overlap. Inside an override's validity window its prices apply (absolute
prices, or the catalog price less ``discount``); outside every window of that
model the catalog price applies if the catalog knows the model, else the calls
are unpriced.

Service tiers: a discount applies to the catalog price of each tier (a batch call of a model
with a 20% discount costs 80% of the batch price); absolute prices are what the organisation
pays for the model, so they apply at every tier.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import datetime

import pyarrow as pa

from yieldmeter.config import ConfigError, PriceOverride
from yieldmeter.pricing.catalog import (
    DAY_SECONDS,
    END_OF_TIME,
    EPOCH,
    PRICE_KEYS,
    catalog_rows,
    catalog_version,
    to_table,
)
from yieldmeter.pricing.resolve import override_name, resolve
from yieldmeter.pricing.tiers import catalog_tiers

#: The shape of the rows :func:`build_prices` makes, and of the model map rebuilt with them; raised
#: when it changes, so a store's tables are rebuilt though neither the catalog nor the overrides
#: changed (2: a row set per service tier; 3: one-hour cache write prices; 4: fallback resolutions).
LAYOUT = 4


def _utc(dt: datetime | None, default: datetime) -> datetime:
    if dt is None:
        return default
    return dt if dt.tzinfo else dt.replace(tzinfo=EPOCH.tzinfo)


def _clip(row: dict[str, object], start: datetime, end: datetime) -> dict[str, object] | None:
    lo = max(row["valid_from"], start)  # type: ignore[type-var]
    hi = min(row["valid_to"], end)  # type: ignore[type-var]
    if lo >= hi:
        return None
    return {**row, "valid_from": lo, "valid_to": hi}


def _gaps(windows: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    gaps, cursor = [], EPOCH
    for lo, hi in sorted(windows):
        if lo > cursor:
            gaps.append((cursor, lo))
        cursor = max(cursor, hi)
    if cursor < END_OF_TIME:
        gaps.append((cursor, END_OF_TIME))
    return gaps


def override_rows(
    overrides: list[PriceOverride], catalog: list[dict[str, object]]
) -> list[dict[str, object]]:
    by_model: dict[tuple[object, object], list[dict[str, object]]] = defaultdict(list)
    for r in catalog:
        by_model[(r["provider"], r["model"])].append(r)
    groups: dict[str, list[PriceOverride]] = defaultdict(list)
    for o in overrides:
        groups[override_name(o)].append(o)

    out: list[dict[str, object]] = []
    for name, items in groups.items():
        first = items[0]
        base = resolve(first.provider, first.model, [])
        base_rows = by_model.get((base.price_provider, base.price_model), []) if base.priced else []
        windows = []
        for o in items:
            start, end = _utc(o.valid_from, EPOCH), _utc(o.valid_to, END_OF_TIME)
            if start >= end:
                raise ConfigError(
                    f"yieldmeter.yaml (prices, model {name}): valid_from must be before valid_to"
                )
            for w_lo, w_hi in windows:
                if start < w_hi and w_lo < end:
                    raise ConfigError(
                        f"yieldmeter.yaml (prices, model {name}): two overrides overlap in time; "
                        "give each a valid_from/valid_to that do not overlap"
                    )
            windows.append((start, end))
            if o.discount is not None:
                if not base_rows:
                    raise ConfigError(
                        f"yieldmeter.yaml (prices, model {name}): a discount needs a catalog price, "
                        "but the catalog does not know this model; give input/output prices instead"
                    )
                for r in base_rows:
                    clipped = _clip(r, start, end)
                    if clipped:
                        for col in PRICE_KEYS:
                            if clipped[col] is not None:
                                clipped[col] = clipped[col] * (1.0 - o.discount)  # type: ignore[operator]
                        out.append({**clipped, "provider": "override", "model": name, "source": "override"})
            else:
                if o.input is None and o.output is None:
                    raise ConfigError(
                        f"yieldmeter.yaml (prices, model {name}): "
                        "give input and/or output prices, or a discount"
                    )
                out.extend(
                    {
                        "provider": "override",
                        "model": name,
                        "valid_from": start,
                        "valid_to": end,
                        "input": o.input,
                        "output": o.output,
                        "cached_input": o.cached_input,
                        "cache_write": o.cache_write,
                        "cache_write_1h": None,  # an hour's writes at the override's write price
                        "reasoning": None,
                        "per_1k_requests": None,
                        "tier_above_input_tokens": -1,
                        "tier_upto_input_tokens": None,
                        "seconds_of_day_from": 0,
                        "seconds_of_day_to": DAY_SECONDS,
                        "service_tier": tier,
                        "source": "override",
                    }
                    for tier in ("", *catalog_tiers())
                )
        for lo, hi in _gaps(windows):
            for r in base_rows:
                clipped = _clip(r, lo, hi)
                if clipped:
                    out.append({**clipped, "provider": "override", "model": name})
    return out


def build_prices(overrides: list[PriceOverride]) -> pa.Table:
    """The full ``prices`` table for a workspace."""
    catalog = catalog_rows()
    return to_table(catalog + override_rows(overrides, catalog))


def fingerprint(overrides: list[PriceOverride]) -> str:
    """Changes when the catalog version or the overrides change (then prices are rebuilt)."""
    payload = json.dumps(
        [catalog_version(), [o.model_dump(mode="json") for o in overrides], LAYOUT], sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
