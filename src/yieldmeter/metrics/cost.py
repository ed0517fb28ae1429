"""Model cost: every call priced at once, as one join.

    model cost = ( (input - cached* - cache_write*) x input price
                 + cached* x cached-input price
                 + cache_write* x cache-write price
                 + (output - reasoning*) x output price
                 + reasoning* x reasoning price ) / 1e6
               + request_count x price per 1,000 requests / 1e3

where ``x*`` is the token count when the model has a separate price for that
kind of token and 0 otherwise (so cached tokens are charged at the input price
for a model without a cache price, exactly as genai-prices decomposes usage).
The price row is the one valid at the call's timestamp, in the call's UTC
time-of-day window, and in the tier band of the call's input tokens.

A call whose model resolves to no catalog entry, or to an entry with no price
at that time, has ``model_cost`` null and ``priced`` false: unpriced calls are
counted and shown, never costed as zero.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from yieldmeter.metrics.tables import Tables


def price_lookup(t: Tables) -> ir.Table:
    """model_map joined to prices: every (reported provider, model) with its price cells."""
    m, p = t.model_map, t.prices
    return m.join(p, [m.price_provider == p.provider, m.price_model == p.model]).select(
        map_provider=m.provider,
        map_model=m.model,
        price_provider=m.price_provider,
        price_model=m.price_model,
        valid_from=p.valid_from,
        valid_to=p.valid_to,
        tier_lo=p.tier_above_input_tokens,
        tier_hi=p.tier_upto_input_tokens,
        sod_from=p.seconds_of_day_from,
        sod_to=p.seconds_of_day_to,
        p_input=p["input"],
        p_output=p.output,
        p_cached=p.cached_input,
        p_cache_write=p.cache_write,
        p_reasoning=p.reasoning,
        p_requests=p.per_1k_requests,
    )


def priced_calls(t: Tables) -> ir.Table:
    """Calls with ``price_provider``, ``price_model``, ``model_cost`` (USD) and ``priced``."""
    c = t.calls
    lk = price_lookup(t)
    seconds_of_day = c.ts.hour().cast("int64") * 3600 + c.ts.minute() * 60 + c.ts.second()
    joined = c.left_join(
        lk,
        [
            c.provider.fill_null("") == lk.map_provider,
            c.model == lk.map_model,
            c.ts >= lk.valid_from,
            c.ts < lk.valid_to,
            c.input_tokens > lk.tier_lo,
            lk.tier_hi.isnull() | (c.input_tokens <= lk.tier_hi),
            seconds_of_day >= lk.sod_from,
            seconds_of_day < lk.sod_to,
        ],
    )
    zero = ibis.literal(0.0)
    cached = ibis.ifelse(joined.p_cached.notnull(), joined.cached_input_tokens, 0)
    writes = ibis.ifelse(joined.p_cache_write.notnull(), joined.cache_write_tokens, 0)
    reasoning = ibis.ifelse(joined.p_reasoning.notnull(), joined.reasoning_tokens, 0)
    token_cost = (
        (joined.input_tokens - cached - writes).cast("float64") * joined.p_input.fill_null(zero)
        + cached.cast("float64") * joined.p_cached.fill_null(zero)
        + writes.cast("float64") * joined.p_cache_write.fill_null(zero)
        + (joined.output_tokens - reasoning).cast("float64") * joined.p_output.fill_null(zero)
        + reasoning.cast("float64") * joined.p_reasoning.fill_null(zero)
    ) / 1e6
    request_cost = joined.request_count.cast("float64") * joined.p_requests.fill_null(zero) / 1e3
    priced = joined.valid_from.notnull()
    return joined.select(
        *[joined[name] for name in c.columns],
        price_provider=joined.price_provider,
        price_model=joined.price_model,
        model_cost=ibis.ifelse(priced, token_cost + request_cost, ibis.null("float64")),
        priced=priced,
    )
