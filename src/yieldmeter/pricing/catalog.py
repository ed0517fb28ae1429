"""The price catalog as a table, flattened from the ``genai-prices`` package.

genai-prices describes a model's price as a list of conditional prices (start
dates, time-of-day windows) with optional tiers on the call's input tokens.
Cost is computed as a join in the database, so here each model becomes rows
that partition time, time of day and input size into cells with one price
each:

* ``valid_from`` / ``valid_to``: the date intervals between start dates;
* ``seconds_of_day_from`` / ``_to``: the UTC windows between time-of-day bounds;
* ``tier_above_input_tokens`` / ``tier_upto_input_tokens``: tier bands (a tier
  applies to *all* tokens once the call's input exceeds its start);
* ``service_tier``: '' for the standard rate, and a copy of the cells for each service tier the
  catalog prices apart (:mod:`yieldmeter.pricing.tiers`), read with that tier's price context:
  a model without a price for a tier has the standard prices in its rows, so every call finds a
  row of its own tier.

Each cell's price is read with genai-prices' own ``ModelInfo.get_prices`` at an
instant inside the cell (with the tier's price context), so the selection rules
are genai-prices' by construction. Only the data bundled with the package is used; nothing is
downloaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from importlib.metadata import version

import pyarrow as pa

from yieldmeter.ingest.conform import stable_id
from yieldmeter.pricing.tiers import catalog_tiers, model_tiers, price_context
from yieldmeter.schema import PRICES

#: Bounds used for open-ended validity intervals.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
END_OF_TIME = datetime(2200, 1, 1, tzinfo=UTC)
DAY_SECONDS = 86_400

#: canonical price column -> genai-prices price key
PRICE_KEYS = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cached_input": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
    "reasoning": "output_reasoning_mtok",
    "per_1k_requests": "requests_kcount",
}


def catalog_version() -> str:
    return f"genai-prices {version('genai-prices')}"


@dataclass(frozen=True)
class CatalogModel:
    """A model of the catalog and the provider whose table lists it."""

    provider: str
    model: str
    #: found through another provider's table (genai-prices' fallback): no tier prices apply
    fallback: bool = False


@cache
def providers() -> list:  # type: ignore[type-arg]
    """The providers of the catalog bundled with genai-prices."""
    from genai_prices.data_snapshot import get_snapshot

    return get_snapshot().providers


@cache
def owner_index() -> dict[int, str]:
    """``id(ModelInfo)`` -> id of the provider that lists it (fallbacks resolve across providers)."""
    return {id(m): p.id for p in providers() for m in p.models}


def _time_seconds(t: time) -> int:
    if t.tzinfo is not None:
        offset = t.utcoffset() or timedelta(0)
        base = datetime.combine(date(2000, 1, 2), t.replace(tzinfo=None)) - offset
        t = base.time()
    return t.hour * 3600 + t.minute * 60 + t.second


def _breakpoints(model: object) -> tuple[list[date], list[int]]:
    from genai_prices import types

    dates: set[date] = set()
    seconds: set[int] = {0}
    conditionals = model.prices if isinstance(model.prices, list) else []  # type: ignore[attr-defined]
    constraints = [cp.constraint for cp in conditionals]
    # a service tier's prices may start later than the standard ones (genai-prices 0.2.3
    # prices OpenAI's flex and priority tiers from 2026-10-12): their start is a cell edge too
    constraints += [v.constraint for v in model.price_variants or ()]  # type: ignore[attr-defined]
    for c in constraints:
        if isinstance(c, types.StartDateConstraint):
            dates.add(c.start_date)
        elif isinstance(c, types.TimeOfDateConstraint):
            seconds.add(_time_seconds(c.start_time))
            seconds.add(_time_seconds(c.end_time))
    return sorted(dates), sorted(s for s in seconds if s < DAY_SECONDS)


def _value(price: object, band_input: int) -> float | None:
    """The price per unit that applies to a call whose input tokens fall in a band.

    ``band_input`` is a representative input count inside the band.
    """
    from genai_prices import types

    if price is None:
        return None
    if isinstance(price, types.TieredPrices):
        applicable: Decimal = price.base
        for tier in reversed(price.tiers):
            if band_input > tier.start:
                applicable = tier.price
                break
        return float(applicable)
    return float(price)  # type: ignore[arg-type]


def _tier_starts(model_price: object) -> list[int]:
    from genai_prices import types

    starts: set[int] = set()
    for key in PRICE_KEYS.values():
        v = getattr(model_price, key, None)
        if isinstance(v, types.TieredPrices):
            starts.update(t.start for t in v.tiers)
    return sorted(starts)


def model_rows(provider_id: str, model: object) -> Iterator[dict[str, object]]:
    """Price rows for one catalog model (see the module docstring)."""
    standard = list(_tier_rows(provider_id, model, ""))
    yield from standard
    own = model_tiers(model)
    for tier in catalog_tiers():
        if tier in own:
            yield from _tier_rows(provider_id, model, tier)
        else:  # the standard prices (what get_prices gives for a context no variant matches)
            yield from ({**row, "service_tier": tier} for row in standard)


def _tier_rows(provider_id: str, model: object, tier: str) -> Iterator[dict[str, object]]:
    context = price_context(tier) if tier else None
    dates, seconds = _breakpoints(model)
    date_edges: list[datetime] = [EPOCH] + [datetime.combine(d, time(), tzinfo=UTC) for d in dates]
    date_edges = [*sorted(set(date_edges)), END_OF_TIME]
    sec_edges = [*seconds, DAY_SECONDS]
    for di in range(len(date_edges) - 1):
        for si in range(len(sec_edges) - 1):
            instant = date_edges[di] + timedelta(seconds=sec_edges[si])
            mp = model.get_prices(instant, context)  # type: ignore[attr-defined]
            if getattr(mp, "input_mtok", None) is None and getattr(mp, "output_mtok", None) is None:
                continue  # no token price: such calls stay unpriced, never zero
            starts = _tier_starts(mp)
            bands = [-1, *starts]
            for bi, lo in enumerate(bands):
                hi = bands[bi + 1] if bi + 1 < len(bands) else None
                representative = lo + 1
                row: dict[str, object] = {
                    col: _value(getattr(mp, key, None), representative) for col, key in PRICE_KEYS.items()
                }
                row.update(
                    provider=provider_id,
                    model=model.id,  # type: ignore[attr-defined]
                    valid_from=date_edges[di],
                    valid_to=date_edges[di + 1],
                    tier_above_input_tokens=lo,
                    tier_upto_input_tokens=hi,
                    seconds_of_day_from=sec_edges[si],
                    seconds_of_day_to=sec_edges[si + 1],
                    service_tier=tier,
                )
                yield row


@cache
def _catalog_rows() -> tuple[dict[str, object], ...]:
    source = catalog_version()
    rows = []
    for p in providers():
        for m in p.models:
            for row in model_rows(p.id, m):
                row["source"] = source
                rows.append(row)
    return tuple(rows)


def catalog_rows() -> list[dict[str, object]]:
    """The catalog's price rows (made once a process: the bundled catalog does not change)."""
    return [dict(r) for r in _catalog_rows()]


def to_table(rows: list[dict[str, object]]) -> pa.Table:
    for r in rows:
        r["price_id"] = stable_id(
            r["provider"],
            r["model"],
            r["valid_from"],
            r["seconds_of_day_from"],
            r["tier_above_input_tokens"],
            # the standard rows keep the ids they had before tiers were priced
            *([r["service_tier"]] if r.get("service_tier") else []),
        )
    return pa.Table.from_pylist(rows, schema=PRICES.arrow_schema)
