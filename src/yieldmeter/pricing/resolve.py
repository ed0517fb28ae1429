"""Map the (provider, model) a call reports to a price in the catalog.

Calls name models in many spellings: provider prefixes (``openai/gpt-4o``),
dated snapshots (``gpt-4o-2024-08-06``), Bedrock ids
(``us.anthropic.claude-3-5-sonnet-20240620-v1:0``), Vertex ids
(``claude-3-5-sonnet-v2@20241022``), OpenTelemetry provider names
(``gcp.vertex_ai``, ``aws.bedrock``, ``azure.ai.openai``). Resolution runs once
per *distinct* pair, never per call, and its result is stored in the
``model_map`` table that the cost join uses.

Order: a price override from ``yieldmeter.yaml`` for the model; genai-prices'
own matching with the provider hint; the same after normalising the spelling;
genai-prices' matching across all providers. What still matches nothing is
*unpriced*: counted and listed, never costed as zero.

A model the hinted provider does not list itself but prices through another's
table (genai-prices' fallback: Azure's ``gpt-5`` is OpenAI's) resolves with
``how`` = :data:`FALLBACK`: genai-prices applies no service tier's prices to it,
so neither does the cost join (:mod:`yieldmeter.metrics.cost`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from yieldmeter.config import PriceOverride
from yieldmeter.pricing.catalog import CatalogModel, owner_index

#: OpenTelemetry ``gen_ai.provider.name`` / ``gen_ai.system`` and gateway spellings -> genai-prices ids.
PROVIDER_ALIASES = {
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "amazon": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "azure_openai": "azure",
    "azure_ai": "azure",  # LiteLLM's Azure AI Foundry
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "vertex": "google",
    "gemini": "google",
    "google_genai": "google",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "ibm.watsonx.ai": "ibm",
    "anthropic.bedrock": "aws",
}

#: ``Resolution.how`` of a model found through another provider's table (see the module docstring)
FALLBACK = "fallback"

_BEDROCK_REGION = re.compile(r"^(us|eu|apac|us-gov|global|au|jp|ca)\.")
_BEDROCK_VENDOR = re.compile(r"^(anthropic|meta|amazon|mistral|cohere|ai21|deepseek|writer|qwen|openai)\.")
_BEDROCK_VERSION = re.compile(r"-v\d+(:\d+)?$")


@dataclass(frozen=True)
class Resolution:
    price_provider: str | None
    price_model: str | None
    how: str  # override, catalog, normalised, fallback, any-provider, unpriced

    @property
    def priced(self) -> bool:
        return self.price_model is not None


def normalise_provider(provider: str | None) -> str | None:
    if not provider:
        return None
    p = provider.strip().lower()
    return PROVIDER_ALIASES.get(p, p)


def spellings(provider: str | None, model: str) -> list[tuple[str | None, str]]:
    """Candidate (provider, model) spellings, most literal first."""
    m = model.strip().lower()
    p = normalise_provider(provider)
    out: list[tuple[str | None, str]] = [(p, m)]
    if m.startswith("models/"):
        m = m[len("models/") :]
        out.append((p, m))
    if "/" in m:
        head, tail = m.split("/", 1)
        out.append((normalise_provider(head), tail))
        m = tail
    if "@" in m:  # Vertex: claude-3-5-sonnet-v2@20241022
        m = m.replace("@", "-")
        out.append((p, m))
    bare = _BEDROCK_REGION.sub("", m)
    if bare != m or _BEDROCK_VENDOR.match(bare):
        vendor = _BEDROCK_VENDOR.match(bare)
        stripped = _BEDROCK_VENDOR.sub("", bare)
        stripped = _BEDROCK_VERSION.sub("", stripped)
        out.append((p, bare))
        out.append((normalise_provider(vendor.group(1)) if vendor else p, stripped))
    seen: set[tuple[str | None, str]] = set()
    unique = []
    for c in out:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


def _catalog_lookup(provider: str | None, model: str) -> CatalogModel | None:
    from genai_prices.data_snapshot import get_snapshot

    try:
        found, info = get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return None
    # genai-prices prices a tier only where the provider it resolved the hint to (``google``
    # for ``google_vertexai``) lists the model itself (``ModelInfo.calc_price``)
    own = any(info is m for m in found.models)
    return CatalogModel(owner_index()[id(info)], info.id, fallback=not own)


def override_name(o: PriceOverride) -> str:
    return f"{o.provider}/{o.model}" if o.provider else o.model


def resolve(provider: str | None, model: str | None, overrides: list[PriceOverride] = ()) -> Resolution:  # type: ignore[assignment]
    """Resolve one (provider, model) pair as calls report it."""
    if not model:
        return Resolution(None, None, "unpriced")
    candidates = spellings(provider, model)
    for o in overrides:
        op = normalise_provider(o.provider)
        for p, m in candidates:
            if m == o.model.strip().lower() and (op is None or op == p):
                return Resolution("override", override_name(o), "override")
    for i, (p, m) in enumerate(candidates):
        if p is None:
            continue
        found = _catalog_lookup(p, m)
        if found:
            if found.fallback:
                return Resolution(found.provider, found.model, FALLBACK)
            return Resolution(found.provider, found.model, "catalog" if i == 0 else "normalised")
    for _, m in candidates:
        found = _catalog_lookup(None, m)
        if found:
            return Resolution(found.provider, found.model, "any-provider")
    return Resolution(None, None, "unpriced")
