"""What keeping summing spans' usage once costs the store's writes (docs/telemetry.md).

A summing call (a framework step's or a remote agent's span reporting usage) and the call
under it may come in different requests; ``Store.write_batch`` then deletes or skips the
summing call. This benchmark writes the same decoded OTLP requests (512 spans each, every span
with a parent) to fresh stores with that step and with it passed through, the baseline, in the
same run, alternating, best of three each, for three shapes of telemetry:

* ``plain``: model calls only (no summing call stored or written: the common case);
* ``step_per_write``: one framework step reporting usage in every request, with no call under
  it (each write hashes the step's id and finds no stored span under it in memory);
* ``openlit``: OpenLIT's LangChain spans over an instrumented provider: every model call a
  framework step with the provider's chat span under it, in the same request (the span
  mapping keeps the step as structure, and the store records it in ``summed_spans``).

``BENCH_SUMMING_SPANS`` sets the spans per shape (default 102,400). Writes
``benchmarks/results/summing.json`` (``summing_<spans>_spans.json`` for another number):
seconds with and without the step, their ratio and the extra milliseconds per write.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from yieldmeter.app.workspace import Workspace
from yieldmeter.ingest.base import Batch, ReadOptions
from yieldmeter.ingest.otlp_json import decode_json
from yieldmeter.store import duckdb_store

sys.path.insert(0, str(Path(__file__).parent))

from otlp_spans import json_lines, random_id

SPANS = int(os.environ.get("BENCH_SUMMING_SPANS", "102400"))
RESULTS = (
    Path(__file__).parent / "results" / ("summing.json" if SPANS == 102400 else f"summing_{SPANS}_spans.json")
)


def _set_operation(span: dict[str, Any], operation: str) -> None:
    for a in span["attributes"]:
        if a["key"] == "gen_ai.operation.name":
            a["value"] = {"stringValue": operation}


def _plain(k: int, i: int, spans: list[dict[str, Any]]) -> None:
    spans[i]["parentSpanId"] = random_id("parent", k * 512 + i, 8).hex()


def _step_per_write(k: int, i: int, spans: list[dict[str, Any]]) -> None:
    _plain(k, i, spans)
    if i == 5:
        _set_operation(spans[i], "framework")


def _openlit(k: int, i: int, spans: list[dict[str, Any]]) -> None:
    span = spans[i]
    if i % 2 == 0:
        span["parentSpanId"] = random_id("chain", k * 512 + i, 8).hex()
        _set_operation(span, "framework")
    else:
        span["parentSpanId"] = spans[i - 1]["spanId"]
        span["traceId"] = spans[i - 1]["traceId"]


SHAPES: dict[str, Callable[[int, int, list[dict[str, Any]]], None]] = {
    "plain": _plain,
    "step_per_write": _step_per_write,
    "openlit": _openlit,
}


def requests(shape: Callable[[int, int, list[dict[str, Any]]], None]) -> list[Batch]:
    out = []
    for k, line in enumerate(json_lines(SPANS)):
        doc = orjson.loads(line)
        spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
        for i in range(len(spans)):
            shape(k, i, spans)
        out.append(decode_json(orjson.dumps(doc), ReadOptions(source="otlp")))
    return out


def write_all(batches: list[Batch], with_step: bool) -> float:
    real = duckdb_store.Store._take_back_sums

    def passed_through(self: Any, con: Any, calls: Any, keys: Any, summed: Any) -> Any:
        return duckdb_store._Sums(kept=calls)

    if not with_step:
        duckdb_store.Store._take_back_sums = passed_through  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as d, Workspace.init(Path(d) / "ws") as ws:
            t0 = time.perf_counter()
            for b in batches:
                ws.ingest_batches([b], source="otlp", fmt="otlp", after=False)
            return time.perf_counter() - t0
    finally:
        duckdb_store.Store._take_back_sums = real  # type: ignore[method-assign]


def main() -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "summing",
        "spans_per_shape": SPANS,
        "spans_per_write": 512,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    for name, shape in SHAPES.items():
        batches = requests(shape)
        times: dict[bool, list[float]] = {False: [], True: []}
        for with_step in (False, True) * 3:
            times[with_step].append(write_all(batches, with_step))
        base, step = min(times[False]), min(times[True])
        result[name] = {
            "writes": len(batches),
            "without_step_s": round(base, 3),
            "with_step_s": round(step, 3),
            "with_to_without_ratio": round(step / base, 3),
            "extra_ms_per_write": round((step - base) / len(batches) * 1000, 2),
        }
        print(name, result[name], flush=True)
    result["measured_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S%z")
    return result


if __name__ == "__main__":
    out = main()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")
