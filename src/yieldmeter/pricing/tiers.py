"""Service tiers: the processing tier a call was served at, and the prices that go with it.

Providers charge the same model at several rates: OpenAI's and Anthropic's batch APIs at half
the list price, OpenAI's ``flex`` tier at half and ``priority`` at 1.7 to 2 times, Anthropic's
fast mode at twice. genai-prices carries these as *price variants* selected by a
request context (``{"processing": "batch"}``, ``{"service_tier": "flex"}``,
``{"speed": "fast"}``).

yieldmeter keeps one word per call, ``calls.service_tier``
(:mod:`yieldmeter.ingest.service_tier`). The price table holds a row set per tier the
catalog prices apart (:func:`catalog_tiers`); a call whose tier the catalog does not price apart
(OpenAI's ``scale``, Anthropic's ``priority``, or a model without a batch price) is priced at
the standard rate, as genai-prices does.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from yieldmeter.ingest.service_tier import BATCH, normalise_tier

#: genai-prices' context keys whose variants a tier word selects. A tier word ``w`` is the
#: context ``{service_tier: w, speed: w}``, and ``batch`` also ``{processing: batch}``: OpenAI
#: names its fast tier ``service_tier``, Anthropic ``speed``; each model's variants match one.
_CONTEXT_KEYS = ("service_tier", "speed")


def price_context(tier: str) -> dict[str, str]:
    """genai-prices' request context for a stored tier word."""
    context = dict.fromkeys(_CONTEXT_KEYS, tier)
    if tier == BATCH:
        context["processing"] = BATCH
    return context


def _tier_of_variant(when: Mapping[str, str]) -> str | None:
    if when.get("processing") == BATCH:
        return BATCH
    for key in _CONTEXT_KEYS:
        if key in when:
            return normalise_tier(when[key])
    return None


def model_tiers(model: object) -> set[str]:
    """The tiers a catalog model (a genai-prices ``ModelInfo``) prices apart."""
    tiers = set()
    for variant in model.price_variants or ():  # type: ignore[attr-defined]
        # OpenAI's ``default`` variant overrides no price: not a tier of its own
        priced = any(v is not None for v in vars(variant.prices).values())
        tier = _tier_of_variant(variant.when) if priced else None
        if tier:
            tiers.add(tier)
    return tiers


@cache
def catalog_tiers() -> tuple[str, ...]:
    """The tiers the bundled catalog prices apart from the standard rate, sorted."""
    from yieldmeter.pricing.catalog import providers

    return tuple(sorted(set().union(*(model_tiers(m) for p in providers() for m in p.models))))
