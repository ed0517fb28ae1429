"""The price join against genai-prices itself, model-name normalisation, overrides.

The reference is ``genai_prices.calc_price`` on the very same calls: the join
must give the same USD to 1e-9 for every call, across models with cache
prices, tiered prices (Gemini, Claude long context), time-of-day windows
(DeepSeek off-peak) and date-conditional prices.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from genai_prices import Usage, calc_price

from yieldmeter.app.workspace import Workspace
from yieldmeter.config import ConfigError, PriceOverride
from yieldmeter.ingest.base import Batch
from yieldmeter.ingest.conform import conform
from yieldmeter.ingest.service_tier import normalise_tier
from yieldmeter.pricing.book import build_prices
from yieldmeter.pricing.resolve import resolve, spellings
from yieldmeter.pricing.tiers import price_context

# (provider as a call reports it, model as a call reports it, genai-prices provider id)
MODELS = [
    ("openai", "gpt-4o", "openai"),
    ("openai", "gpt-4o-mini", "openai"),
    ("openai", "gpt-4o-2024-08-06", "openai"),
    ("openai", "o3-mini", "openai"),
    ("anthropic", "claude-3-5-sonnet-20241022", "anthropic"),
    ("anthropic", "claude-3-5-haiku-20241022", "anthropic"),
    ("anthropic", "claude-sonnet-4-20250514", "anthropic"),
    ("google", "gemini-1.5-pro", "google"),
    ("google", "gemini-2.5-pro", "google"),
    ("google", "gemini-1.5-flash", "google"),
    ("deepseek", "deepseek-chat", "deepseek"),
    ("mistral", "mistral-large-latest", "mistral"),
    ("groq", "llama-3.1-8b-instant", "groq"),
]


def _calls(n: int, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    start = datetime(2024, 6, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        provider, model, _ = MODELS[i % len(MODELS)]
        # input sizes straddle the 128k / 200k tier thresholds some models have
        input_tokens = rng.choice([rng.randint(0, 5_000), rng.randint(100_000, 300_000)])
        cached = rng.randint(0, input_tokens // 2) if rng.random() < 0.5 else 0
        writes = rng.randint(0, (input_tokens - cached) // 3) if rng.random() < 0.3 else 0
        hour = rng.randint(0, writes) if rng.random() < 0.5 else 0  # the writes kept for an hour
        rows.append(
            {
                "call_id": f"c{i}",
                # two years of timestamps at random times of day: crosses price changes and
                # DeepSeek's off-peak window
                "ts": start + timedelta(seconds=rng.randint(0, 700 * 86_400)),
                "provider": provider,
                "model": model,
                "input_tokens": input_tokens,
                "cached_input_tokens": cached,
                "cache_write_tokens": writes,
                "cache_write_1h_tokens": hour,
                "output_tokens": rng.randint(0, 8_000),
            }
        )
    return rows


def _priced(path: Path, rows: list[dict[str, object]], *, configured: bool = False) -> dict[str, dict]:
    """``rows`` ingested as calls into a new workspace at ``path`` (``configured``: whose
    ``yieldmeter.yaml`` is already written), priced: call id -> priced call."""
    calls = [Batch.of("calls", conform("calls", pa.Table.from_pylist(rows), source="t"))]
    with Workspace.open(path, create=True) if configured else Workspace.init(path) as ws:
        ws.ingest_batches(calls, source="t")
        return {r["call_id"]: r for r in ws.priced_calls().to_pyarrow().to_pylist()}


def test_join_matches_calc_price_to_a_nanodollar(tmp_path: Path) -> None:
    rows = _calls(390)
    priced = _priced(tmp_path, rows)
    by_model = {m: p for _, m, p in MODELS}
    checked = 0
    for r in rows:
        expected = calc_price(
            Usage(
                input_tokens=r["input_tokens"],
                cache_read_tokens=r["cached_input_tokens"],
                cache_write_tokens=r["cache_write_tokens"],
                cache_write_1h_tokens=r["cache_write_1h_tokens"],
                output_tokens=r["output_tokens"],
            ),
            r["model"],
            provider_id=by_model[r["model"]],
            genai_request_timestamp=r["ts"],
        ).total_price
        got = priced[r["call_id"]]
        assert got["priced"], f"{r['model']} at {r['ts']} should be priced"
        assert got["model_cost"] == pytest.approx(float(expected), abs=1e-9), (r, got)
        checked += 1
    assert checked == 390


def test_time_of_day_and_tiers_are_really_exercised() -> None:
    """Guard against the comparison above passing only on flat prices."""
    prices = build_prices([])
    # one-hour cache writes have prices of their own, above the five-minute ones (Claude)
    hour = prices.filter(pa.compute.greater(prices["cache_write_1h"], prices["cache_write"]))
    assert "claude-3-5-sonnet" in set(hour.column("model").to_pylist())
    models = set(prices.column("model").to_pylist())
    assert "deepseek-chat" in models
    tod = prices.filter(pa.compute.not_equal(prices["seconds_of_day_to"], 86_400))
    assert tod.num_rows > 0
    tiers = prices.filter(pa.compute.greater(prices["tier_above_input_tokens"], -1))
    assert "gemini-1.5-pro" in set(tiers.column("model").to_pylist())


@pytest.mark.parametrize(
    ("provider", "model", "expected"),
    [
        ("openai", "gpt-4o-2024-08-06", ("openai", "gpt-4o")),
        (None, "openai/gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("gcp.vertex_ai", "claude-3-5-sonnet-v2@20241022", ("google", "claude-3-5-sonnet")),
        ("azure.ai.openai", "gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("gcp.gemini", "models/gemini-1.5-flash", ("google", "gemini-1.5-flash")),
    ],
)
def test_normalisation(provider: str | None, model: str, expected: tuple[str, str]) -> None:
    r = resolve(provider, model)
    assert (r.price_provider, r.price_model) == expected


def test_bedrock_ids_resolve() -> None:
    r = resolve("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert r.priced and r.price_provider == "aws"
    assert ("anthropic", "claude-3-5-sonnet-20240620") in spellings(
        "aws.bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    )


def test_unknown_model_is_unpriced_not_zero(tmp_path: Path) -> None:
    rows = [
        {
            "call_id": "a",
            "ts": "2025-03-01T00:00:00Z",
            "provider": "acme",
            "model": "acme-llm",
            "input_tokens": 10,
        },
        {
            "call_id": "b",
            "ts": "2025-03-01T00:00:00Z",
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 10,
        },
    ]
    with Workspace.init(tmp_path) as ws:
        s = ws.ingest_batches(
            [Batch.of("calls", conform("calls", pa.Table.from_pylist(rows), source="t"))], source="t"
        )
        assert s.unpriced == 1
        got = {r["call_id"]: r for r in ws.priced_calls().to_pyarrow().to_pylist()}
        assert got["a"]["model_cost"] is None and not got["a"]["priced"]
        assert got["b"]["priced"]
        assert ws.unpriced().to_pylist() == [
            {
                "provider": "acme",
                "model": "acme-llm",
                "calls": 1,
                "input_tokens": 10,
                "output_tokens": 0,
                "workflows": 0,  # the call names no workflow
            }
        ]


def test_overrides_private_model_and_discount_window(tmp_path: Path) -> None:
    (tmp_path / "yieldmeter.yaml").write_text(
        """
prices:
  - model: acme-llm
    provider: acme
    input: 1.0
    output: 2.0
  - model: gpt-4o
    provider: openai
    discount: 0.2
    valid_from: 2025-03-15T00:00:00Z
"""
    )
    rows = [
        # private model: 1,000,000 in x $1 + 500,000 out x $2 = $2.00
        {
            "call_id": "p",
            "ts": "2025-03-01T00:00:00Z",
            "provider": "acme",
            "model": "acme-llm",
            "input_tokens": 1_000_000,
            "output_tokens": 500_000,
        },
        # before the discount: 1M in x $2.50 = $2.50
        {
            "call_id": "before",
            "ts": "2025-03-10T00:00:00Z",
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 1_000_000,
        },
        # after: $2.50 x 0.8 = $2.00
        {
            "call_id": "after",
            "ts": "2025-03-20T00:00:00Z",
            "provider": "openai",
            "model": "gpt-4o",
            "input_tokens": 1_000_000,
        },
    ]
    got = {k: r["model_cost"] for k, r in _priced(tmp_path, rows, configured=True).items()}
    assert got == pytest.approx({"p": 2.0, "before": 2.5, "after": 2.0}, abs=1e-12)


def test_overlapping_overrides_are_refused() -> None:
    a = PriceOverride(model="x", input=1, valid_from=datetime(2025, 1, 1, tzinfo=UTC))
    b = PriceOverride(model="x", input=2, valid_from=datetime(2025, 2, 1, tzinfo=UTC))
    with pytest.raises(ConfigError, match="overlap"):
        build_prices([a, b])


# (provider, model, genai-prices provider id) with service-tier variants in genai-prices 0.2.3:
# OpenAI batch, flex and priority; Anthropic and Google batch; Anthropic fast mode
TIER_MODELS = [
    ("openai", "gpt-5", "openai"),
    ("openai", "gpt-5-mini", "openai"),
    ("openai", "gpt-4o", "openai"),
    ("openai", "o3", "openai"),
    ("anthropic", "claude-sonnet-4-5", "anthropic"),
    ("anthropic", "claude-opus-4-8", "anthropic"),
    ("google", "gemini-2.5-pro", "google"),
    ("mistral", "mistral-large-latest", "mistral"),
]
# as sources spell them: a tier the catalog does not price apart (scale) and the standard
# rate's names are priced at the standard rate
TIER_WORDS = [None, "batch", "Batch ", "flex", "priority", "fast", "scale", "default", "standard"]


def test_service_tiers_match_calc_price_with_its_price_context(tmp_path: Path) -> None:
    """Each call against ``calc_price(..., price_context=...)`` of the same tier. The calls run
    from 2026-09 to 2027-01, across the dates the catalog's tier prices start (2026-10-12 and
    2026-10-14), so a call before them is priced at the standard rate by both."""
    rng = random.Random(11)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    rows = []
    for i in range(360):
        provider, model, _ = TIER_MODELS[i % len(TIER_MODELS)]
        input_tokens = rng.choice([rng.randint(0, 5_000), rng.randint(150_000, 300_000)])
        cached = rng.randint(0, input_tokens // 2) if rng.random() < 0.5 else 0
        rows.append(
            {
                "call_id": f"t{i}",
                "ts": start + timedelta(seconds=rng.randint(0, 150 * 86_400)),
                "provider": provider,
                "model": model,
                "input_tokens": input_tokens,
                "cached_input_tokens": cached,
                "output_tokens": rng.randint(0, 8_000),
                "service_tier": TIER_WORDS[(i // len(TIER_MODELS)) % len(TIER_WORDS)],
            }
        )
    priced = _priced(tmp_path, rows)
    by_model = {m: p for _, m, p in TIER_MODELS}
    apart = 0
    for r in rows:
        tier = normalise_tier(r["service_tier"])
        usage = Usage(
            input_tokens=r["input_tokens"],
            cache_read_tokens=r["cached_input_tokens"],
            output_tokens=r["output_tokens"],
        )
        kw = {"provider_id": by_model[r["model"]], "genai_request_timestamp": r["ts"]}
        expected = calc_price(usage, r["model"], **kw, price_context=price_context(tier) if tier else None)
        standard = calc_price(usage, r["model"], **kw)
        got = priced[r["call_id"]]
        assert got["service_tier"] == tier
        assert got["model_cost"] == pytest.approx(float(expected.total_price), abs=1e-9), (r, got)
        apart += expected.total_price != standard.total_price
    # guard against passing on standard prices alone: many calls cost other than the standard
    assert apart > 60


def test_batch_and_flex_calls_cost_half_by_hand(tmp_path: Path) -> None:
    """gpt-5 on 2026-11-02, 1,000,000 input and 1,000,000 output tokens. genai-prices 0.2.3:
    standard $1.25 + $10 = $11.25; batch (from 2026-10-14) and flex (from 2026-10-12) $0.625 + $5
    = $5.625; priority $2.50 + $20 = $22.50; scale is not priced apart: $11.25."""
    tiers = {"std": None, "batch": "batch", "flex": "flex", "priority": "priority", "scale": "scale"}
    rows = [
        {
            "call_id": name,
            "ts": "2026-11-02T10:00:00Z",
            "provider": "openai",
            "model": "gpt-5",
            "input_tokens": 1_000_000,
            "output_tokens": 1_000_000,
            "service_tier": tier,
        }
        for name, tier in tiers.items()
    ]
    got = {k: r["model_cost"] for k, r in _priced(tmp_path, rows).items()}
    assert got == pytest.approx(
        {"std": 11.25, "batch": 5.625, "flex": 5.625, "priority": 22.5, "scale": 11.25}, abs=1e-12
    )


def test_overrides_apply_at_every_tier(tmp_path: Path) -> None:
    """A discount applies to each tier's catalog price; absolute prices to every tier alike."""
    (tmp_path / "yieldmeter.yaml").write_text(
        """
prices:
  - model: gpt-5
    provider: openai
    discount: 0.2
  - model: acme-llm
    provider: acme
    input: 1.0
    output: 2.0
"""
    )
    rows = [
        # batch gpt-5, 1M in + 1M out: ($0.625 + $5) x 0.8 = $4.50
        {"call_id": "g", "model": "gpt-5", "provider": "openai", "service_tier": "batch"},
        # a private model has one price: 1M x $1 + 1M x $2 = $3.00, batch or not
        {"call_id": "a", "model": "acme-llm", "provider": "acme", "service_tier": "batch"},
    ]
    for r in rows:
        r.update(ts="2026-11-02T10:00:00Z", input_tokens=1_000_000, output_tokens=1_000_000)
    got = {k: r["model_cost"] for k, r in _priced(tmp_path, rows, configured=True).items()}
    assert got == pytest.approx({"g": 4.5, "a": 3.0}, abs=1e-12)


def test_a_model_priced_through_another_provider_s_table_has_no_tier_prices(tmp_path: Path) -> None:
    """Azure's gpt-5 is priced from OpenAI's table (genai-prices' fallback), and genai-prices
    applies no tier's prices to it: 1,000,000 input and 1,000,000 output tokens on 2026-11-02
    cost $1.25 + $10 = $11.25 at every tier, as ``calc_price(provider_id="azure", ...)`` says.
    OpenAI's own gpt-5 at the flex tier: $5.625."""
    rows = [
        {"call_id": f"{provider}-{tier}", "provider": provider, "service_tier": tier}
        # text-completion-openai (LiteLLM's word): genai-prices finds OpenAI's own table by name
        for provider in ("azure", "openai", "text-completion-openai")
        for tier in (None, "batch", "flex", "priority")
    ]
    for r in rows:
        r.update(ts="2026-11-02T10:00:00Z", model="gpt-5", input_tokens=1_000_000, output_tokens=1_000_000)
    got = {k: r["model_cost"] for k, r in _priced(tmp_path, rows).items()}
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    for r in rows:
        expected = calc_price(
            usage,
            "gpt-5",
            provider_id=r["provider"],
            genai_request_timestamp=datetime(2026, 11, 2, 10, tzinfo=UTC),
            price_context=price_context(r["service_tier"]) if r["service_tier"] else None,
        ).total_price
        assert got[r["call_id"]] == pytest.approx(float(expected), abs=1e-12), r
    assert [got[f"azure-{t}"] for t in ("None", "batch", "flex", "priority")] == pytest.approx([11.25] * 4)
    assert got["openai-flex"] == got["text-completion-openai-flex"] == pytest.approx(5.625)
    assert resolve("azure", "gpt-5").how == "fallback" and resolve("openai", "gpt-5").how == "catalog"
    # LangChain's provider word: genai-prices resolves it to google, whose own table lists Gemini
    assert resolve("google_vertexai", "gemini-2.5-pro").how == "catalog"


def test_a_tier_the_price_table_has_no_rows_for_is_the_standard_rate(tmp_path: Path) -> None:
    """A lake's price table written with an older catalog may lack a tier this yieldmeter knows:
    its calls are priced at the standard rate (gpt-5 on 2026-11-02, 1M + 1M tokens: $11.25),
    not left unpriced."""
    row = {"call_id": "f", "ts": "2026-11-02T10:00:00Z", "provider": "openai", "model": "gpt-5"}
    row.update(input_tokens=1_000_000, output_tokens=1_000_000, service_tier="flex")
    with Workspace.init(tmp_path) as ws:
        ws.ingest_batches(
            [Batch.of("calls", conform("calls", pa.Table.from_pylist([row]), source="t"))], source="t"
        )
        [before] = ws.priced_calls().to_pyarrow().to_pylist()
        ws.store.con.execute("DELETE FROM prices WHERE service_tier = 'flex'")
        [after] = ws.priced_calls().to_pyarrow().to_pylist()
    assert before["model_cost"] == pytest.approx(5.625)
    assert after["priced"] and after["model_cost"] == pytest.approx(11.25)
