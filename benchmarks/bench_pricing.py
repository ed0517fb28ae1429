"""Pricing benchmark: 1,000,000 calls priced by the store's join.

Three ways to price the same calls, in the same run:

* the join (``yieldmeter.metrics.cost.priced_calls``): validity intervals,
  time-of-day windows, tiers, service tiers, cache prices — what yieldmeter runs;
* a bare DuckDB equi-join on the model with flat input/output prices: the
  floor any join-based pricing can reach (the limit);
* ``genai_prices.calc_price`` call by call on a sample, extrapolated to 1M.

Targets (issue 2): the join prices 1M calls in under 0.25 s on 2 cores and is
over 400x faster than per-call pricing. Writes ``benchmarks/results/pricing.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

N_CALLS = int(os.environ.get("BENCH_PRICING_CALLS", 1_000_000))
SAMPLE = int(os.environ.get("BENCH_PRICING_SAMPLE", 5_000))
RESULTS = Path(__file__).parent / "results" / "pricing.json"
MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o-2024-08-06"),
    ("anthropic", "claude-3-5-sonnet-20241022"),
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("google", "gemini-1.5-pro"),
    ("google", "gemini-1.5-flash"),
    ("deepseek", "deepseek-chat"),
    ("mistral", "mistral-large-latest"),
    ("acme", "acme-llm"),  # unpriced
]


def synthetic_calls(n: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    m = rng.integers(0, len(MODELS), n)
    start = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    ts = start + rng.integers(0, 180 * 86_400 * 1_000_000, n)
    inp = rng.lognormal(7.5, 1.2, n).astype(np.int64)
    cached = (inp * rng.uniform(0, 0.5, n) * (rng.random(n) < 0.4)).astype(np.int64)
    tiers = np.random.default_rng(seed + 1).random(n)  # apart: the other draws stay as they were
    return pa.table(
        {
            "call_id": pa.array([f"c{i}" for i in range(n)]),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "provider": pa.array([MODELS[i][0] for i in m]),
            "model": pa.array([MODELS[i][1] for i in m]),
            "input_tokens": pa.array(inp),
            "output_tokens": pa.array(rng.lognormal(5.5, 1.0, n).astype(np.int64)),
            "cached_input_tokens": pa.array(cached),
            # 15% batch, 5% flex: the join matches each call's service tier (these dates are
            # before genai-prices' tier prices start, so the total is the standard rate's)
            "service_tier": pa.array(
                np.select([tiers < 0.15, tiers < 0.2], ["batch", "flex"], ""), pa.string()
            ),
        }
    )


def best_of(fn, runs: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> dict[str, object]:
    from genai_prices import Usage, calc_price

    from yieldmeter.app.workspace import Workspace
    from yieldmeter.ingest.conform import conform
    from yieldmeter.metrics.cost import priced_calls

    calls = synthetic_calls(N_CALLS)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as d, Workspace.init(d) as ws:
        c = conform("calls", calls, source="bench")
        ws.store.write("calls", c.rows)
        ws.refresh_model_map()
        con = ws.store.con

        expr = priced_calls(ws.tables())
        priced = expr.aggregate(cost=expr.model_cost.sum(), priced=expr.priced.sum(), n=expr.count())
        sql = ws.backend.compile(priced)
        join_s = best_of(lambda: con.execute(sql).fetchall())
        total, n_priced, n = con.execute(sql).fetchone()

        # The limit: one flat price per model, equality join only.
        con.execute(
            "CREATE TEMP TABLE flat AS SELECT m.provider, m.model, any_value(p.input) AS pin, "
            "any_value(p.output) AS pout FROM model_map m JOIN prices p "
            "ON p.provider = m.price_provider AND p.model = m.price_model GROUP BY ALL"
        )
        equi_sql = (
            "SELECT sum(c.input_tokens * f.pin + c.output_tokens * f.pout) / 1e6, count(*) FROM calls c "
            "JOIN flat f ON f.provider = c.provider AND f.model = c.model"
        )
        equi_s = best_of(lambda: con.execute(equi_sql).fetchall())

    sample = calls.slice(0, SAMPLE).to_pylist()
    t0 = time.perf_counter()
    for r in sample:
        try:  # noqa: SIM105 (a try costs the per-call loop less than contextlib.suppress)
            calc_price(
                Usage(
                    input_tokens=r["input_tokens"],
                    cache_read_tokens=r["cached_input_tokens"],
                    output_tokens=r["output_tokens"],
                ),
                r["model"],
                provider_id=r["provider"],
                genai_request_timestamp=r["ts"],
            )
        except LookupError:
            pass
    per_call_s = (time.perf_counter() - t0) / len(sample) * N_CALLS

    result = {
        "calls": N_CALLS,
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "join_seconds": round(join_s, 4),
        "bare_equi_join_seconds": round(equi_s, 4),
        "per_call_seconds_extrapolated": round(per_call_s, 2),
        "per_call_sample": len(sample),
        "join_speedup_vs_per_call": round(per_call_s / join_s, 1),
        "join_over_equi_join": round(join_s / equi_s, 2),
        "priced_calls": int(n_priced),
        "total_model_cost_usd": round(float(total), 4),
        "targets": {"join_seconds": 0.25, "speedup_vs_per_call": 400},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    assert n == N_CALLS
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
