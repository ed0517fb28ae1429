"""``calls.service_tier``: the rate a provider served a call at, in one spelling.

Null for the standard rate (or none reported), else the tier as the provider names it, trimmed
and lower-cased: ``batch``, ``flex``, ``priority``, ``fast``, or any other a source reports
(OpenAI's ``scale``). What each tier costs is the price table's business
(:mod:`yieldmeter.pricing.tiers`).
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

#: What sources write for the standard rate: the tier is stored as null. ``auto`` and
#: ``standard_only`` are what a request asks for (OpenAI, Anthropic) when only that is reported.
STANDARD_WORDS = ("", "standard", "default", "auto", "standard_only", "on_demand", "on-demand")
BATCH = "batch"


def normalise_tier(raw: object) -> str | None:
    """The stored spelling of a reported tier: None for the standard rate (or none reported)."""
    if raw is None:
        return None
    if isinstance(raw, bool):  # OpenAI's usage API: ``batch: true``
        return BATCH if raw else None
    word = str(raw).strip().lower()
    return None if word in STANDARD_WORDS else word


def normalise_call_tiers(columns: dict[str, pa.Array], flag: Callable[[pa.Array, str], None]) -> None:
    """The calls table's row check (``schema.CALLS.row_check``): ``service_tier`` in its stored
    spelling on every write, whatever the source wrote (``Batch``, ``default``)."""
    tiers = columns["service_tier"]
    if tiers.null_count == len(tiers):
        return  # the usual case: no tier reported
    words = pc.utf8_lower(pc.utf8_trim_whitespace(tiers))
    standard = pc.is_in(words, value_set=pa.array(STANDARD_WORDS))
    columns["service_tier"] = pc.if_else(standard, pa.scalar(None, pa.string()), words)
