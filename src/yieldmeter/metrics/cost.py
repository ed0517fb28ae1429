"""Model cost: every call priced at once, as one join.

    model cost = ( (input - cached* - cache_write*) x input price
                 + cached* x cached-input price
                 + (cache_write* - cache_write_1h*) x cache-write price
                 + cache_write_1h* x one-hour cache-write price
                 + (output - reasoning*) x output price
                 + reasoning* x reasoning price ) / 1e6
               + request_count x price per 1,000 requests / 1e3

where ``x*`` is the token count when the model has a separate price for that
kind of token and 0 otherwise (so cached tokens are charged at the input price
for a model without a cache price, exactly as genai-prices decomposes usage;
one-hour writes are cache writes, charged at the cache-write price where the
model has no one-hour price).
The price row is the one valid at the call's timestamp, in the call's UTC
time-of-day window, in the tier band of the call's input tokens, and of the
call's service tier (batch, flex, priority, ...); a call of a tier the price
table has no rows for is priced at the standard rate
(:mod:`yieldmeter.pricing.tiers`).

A call whose model resolves to no catalog entry, or to an entry with no price
at that time, has ``model_cost`` null and ``priced`` false: unpriced calls are
counted and shown, never costed as zero.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from yieldmeter.metrics.period import utc_second_of_day
from yieldmeter.metrics.tables import Tables
from yieldmeter.pricing.resolve import FALLBACK
from yieldmeter.pricing.tiers import catalog_tiers

OPEN_TIER = 2**62


def price_lookup(t: Tables) -> ir.Table:
    """model_map joined to prices: every (reported provider, model) with its price cells.

    Prices are restated as increments so that each call costs six
    multiply-adds and no branches: a cached token costs the input price plus
    ``d_cached`` (the cache price minus the input price, or 0 when the model
    has no cache price), and so on.

    A model found through another provider's table (``how`` = fallback: Azure's
    ``gpt-5`` is OpenAI's) has no service tier's prices, as in genai-prices: its
    standard cells stand for every tier.
    """
    m, p = t.model_map, _prices(t)
    keys = ("price_provider", "provider"), ("price_model", "model")
    own = m.filter(m.how != FALLBACK)
    j = own.join(p, [own[a] == p[b] for a, b in keys])
    fallback = m.filter(m.how == FALLBACK)
    standard = p.filter(p.service_tier == "")
    f = fallback.join(standard, [fallback[a] == standard[b] for a, b in keys])
    # each standard cell once per tier, from a literal list: a cross join with the price table's
    # distinct tiers made DuckDB size the lookup as large and build the calls join on the calls
    f = f.mutate(_tier=ibis.literal(["", *catalog_tiers()], type="array<string>").unnest())
    return _cells(j, j.service_tier).union(_cells(f, f._tier))


def _prices(t: Tables) -> ir.Table:
    # a lake's price rows from before tiers were priced have none: the standard rate's
    return t.prices.mutate(service_tier=t.prices.service_tier.fill_null(""))


def _tiers(t: Tables) -> ir.Table:
    """The tiers the price table has rows for ('' the standard rate's), one row each."""
    p = _prices(t)
    return p.select(_tier=p.service_tier).distinct()


def _cells(j: ir.Table, tier: ir.StringValue) -> ir.Table:
    p_in = j["input"].fill_null(0.0)
    p_out = j.output.fill_null(0.0)
    p_write = j.cache_write.fill_null(p_in)
    return j.select(
        map_provider=j["provider"],
        map_model=j["model"],
        price_provider=j.price_provider,
        price_model=j.price_model,
        valid_from=j.valid_from,
        valid_to=j.valid_to,
        tier_lo=j.tier_above_input_tokens,
        # an open upper bound as a large number keeps the join condition a plain
        # comparison (an OR here turns DuckDB's hash join into a nested loop)
        tier_hi=j.tier_upto_input_tokens.fill_null(OPEN_TIER),
        sod_from=j.seconds_of_day_from,
        sod_to=j.seconds_of_day_to,
        service_tier=tier,
        p_input=p_in,
        p_output=p_out,
        d_cached=j.cached_input.fill_null(p_in) - p_in,
        d_cache_write=p_write - p_in,
        d_cache_write_1h=j.cache_write_1h.fill_null(p_write) - p_write,
        d_reasoning=j.reasoning.fill_null(p_out) - p_out,
        p_requests=j.per_1k_requests.fill_null(0.0),
    )


def priced_calls(t: Tables, *, tiers: bool = True) -> ir.Table:
    """Calls with ``price_provider``, ``price_model``, ``model_cost`` (USD) and ``priced``.

    ``tiers=False``: every call at the standard rate (the list price), whatever its tier.
    """
    lk = price_lookup(t)
    # join keys computed before the join, so the join itself compares columns
    tier = t.calls.service_tier
    c = t.calls.mutate(
        _provider_key=t.calls.provider.fill_null(""),
        _second_of_day=utc_second_of_day(t.calls.ts),
        # '' (the standard rate) for no tier, and for a tier no price row is for (one the
        # catalog does not price apart, or a lake's price table from an older catalog)
        _tier_key=ibis.ifelse(tier.isin(_tiers(t)._tier), tier, "") if tiers else ibis.literal(""),
    )
    joined = c.left_join(
        lk,
        [
            c._provider_key == lk.map_provider,
            c.model == lk.map_model,
            c.ts >= lk.valid_from,
            c.ts < lk.valid_to,
            c.input_tokens > lk.tier_lo,
            c.input_tokens <= lk.tier_hi,
            c._second_of_day >= lk.sod_from,
            c._second_of_day < lk.sod_to,
            c._tier_key == lk.service_tier,
        ],
    )
    token_cost = (
        joined.input_tokens.cast("float64") * joined.p_input
        + joined.cached_input_tokens.cast("float64") * joined.d_cached
        + joined.cache_write_tokens.cast("float64") * joined.d_cache_write
        # a lake's calls from before the column have none (null, not the store's default 0)
        + joined.cache_write_1h_tokens.fill_null(0).cast("float64") * joined.d_cache_write_1h
        + joined.output_tokens.cast("float64") * joined.p_output
        + joined.reasoning_tokens.cast("float64") * joined.d_reasoning
    ) / 1e6
    request_cost = joined.request_count.cast("float64") * joined.p_requests / 1e3
    return joined.select(
        *[joined[name] for name in t.calls.columns],
        price_provider=joined.price_provider,
        price_model=joined.price_model,
        # null (not 0) when no price matched: unpriced calls are never silently free
        model_cost=token_cost + request_cost,
        priced=joined.valid_from.notnull(),
    )


def known_cost(cost: ir.NumericValue, calls: ir.IntegerValue, unpriced_calls: ir.IntegerValue) -> ir.Value:
    """``cost`` of a group, or null where it had calls and every one was unpriced.

    A unit's cost counts its unpriced calls as 0 (:mod:`yieldmeter.metrics.units`), so a sum
    over a group is the cost of its priced calls plus what else it carries (allocated cost,
    effort); where no call of the group was priced, that sum would pass a remainder off as the
    whole: the cost is unknown, never $0. (Some calls priced: the sum is a lower bound, and the
    group's ``unpriced_calls`` say by how many calls.)
    """
    return ibis.ifelse((calls > 0) & (unpriced_calls >= calls), ibis.null("float64"), cost)


def unpriced_models(priced: ir.Table) -> ir.Table:
    """Per (provider, model) no price matches: calls, tokens and how many workflows call it,
    most calls first. ``priced`` is :func:`priced_calls`, narrowed by the caller as it likes."""
    u = priced.filter(~priced.priced)
    return (
        u.group_by(provider=u.provider, model=u.model)
        .aggregate(
            calls=u.request_count.sum(),
            input_tokens=u.input_tokens.sum(),
            output_tokens=u.output_tokens.sum(),
            workflows=u.workflow.nunique(),
        )
        .order_by([ibis.desc("calls"), "model"])
    )
