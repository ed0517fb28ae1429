"""Realistic GenAI spans for the OTLP benchmarks: JSON lines and protobuf requests.

Each span looks like what the openai-v2 instrumentation and the Collector emit:
about fifteen attributes, a resource with service and environment, one in ten
spans a non-GenAI HTTP span that the importer ignores. Trace, span and
conversation ids look random, as real ones do (a hash of the span's number, so
every run writes the same bytes): ids that grow with the span's number would
let DuckDB skip most of the stored rows by their minimum and maximum and hide
what a store of real telemetry costs to write to (the benchmarks before
2026-12-07 used such ids).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import orjson

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("gcp.gemini", "gemini-2.5-flash"),
]


def random_id(kind: str, n: int, size: int) -> bytes:
    """``size`` bytes that look random, the same for the same ``kind`` and ``n``."""
    return hashlib.blake2b(f"{kind}{n}".encode(), digest_size=size).digest()


def _kv(k: str, v: object) -> dict:
    if isinstance(v, bool):
        return {"key": k, "value": {"boolValue": v}}
    if isinstance(v, int):
        return {"key": k, "value": {"intValue": str(v)}}
    if isinstance(v, float):
        return {"key": k, "value": {"doubleValue": v}}
    return {"key": k, "value": {"stringValue": str(v)}}


def span_attrs(i: int, rng: random.Random) -> dict[str, object]:
    provider, model = MODELS[i % len(MODELS)]
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.response.id": f"chatcmpl-{i:012d}",
        "gen_ai.response.finish_reasons": "stop",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 1024,
        "gen_ai.usage.input_tokens": rng.randint(100, 5000),
        "gen_ai.usage.output_tokens": rng.randint(10, 800),
        "gen_ai.usage.cache_read.input_tokens": rng.choice((0, 0, 64)),
        "gen_ai.conversation.id": random_id("conversation", i // 5, 16).hex(),
        "server.address": "api.openai.com",
        "server.port": 443,
        "yieldmeter.workflow": "claims-triage",
        "user.id": f"user-{i % 50}",
    }


def json_lines(n_spans: int, per_line: int = 512, seed: int = 7) -> Iterator[bytes]:
    """OTLP JSON lines, ``per_line`` spans each, as the Collector file exporter writes them."""
    rng = random.Random(seed)
    base = 1_763_000_000_000_000_000
    resource = {"attributes": [_kv("service.name", "claims-api"), _kv("deployment.environment.name", "prod")]}
    i = 0
    while i < n_spans:
        spans = []
        for _ in range(min(per_line, n_spans - i)):
            start = base + i * 1_000_000
            attrs = span_attrs(i, rng) if i % 10 else {"http.request.method": "GET", "url.path": "/health"}
            spans.append(
                {
                    "traceId": random_id("trace", i // 4, 16).hex(),
                    "spanId": random_id("span", i, 8).hex(),
                    "parentSpanId": "",
                    "name": "chat",
                    "kind": 3,
                    "startTimeUnixNano": str(start),
                    "endTimeUnixNano": str(start + 850_000_000),
                    "attributes": [_kv(k, v) for k, v in attrs.items()],
                    "status": {},
                }
            )
            i += 1
        doc = {
            "resourceSpans": [
                {"resource": resource, "scopeSpans": [{"scope": {"name": "bench"}, "spans": spans}]}
            ]
        }
        yield orjson.dumps(doc) + b"\n"


def protobuf_request(n_spans: int, offset: int = 0, seed: int = 7) -> bytes:
    """One ``ExportTraceServiceRequest`` of ``n_spans`` GenAI spans, serialised."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    rng = random.Random(seed + offset)

    def kv(k: str, v: object) -> KeyValue:
        if isinstance(v, bool):
            return KeyValue(key=k, value=AnyValue(bool_value=v))
        if isinstance(v, int):
            return KeyValue(key=k, value=AnyValue(int_value=v))
        if isinstance(v, float):
            return KeyValue(key=k, value=AnyValue(double_value=v))
        return KeyValue(key=k, value=AnyValue(string_value=str(v)))

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(
        [kv("service.name", "claims-api"), kv("deployment.environment.name", "prod")]
    )
    ss = rs.scope_spans.add()
    base = 1_763_000_000_000_000_000
    for j in range(n_spans):
        i = offset + j
        sp = ss.spans.add()
        sp.trace_id = random_id("trace", i // 4, 16)
        sp.span_id = random_id("span", i, 8)
        sp.name = "chat"
        sp.start_time_unix_nano = base + i * 1_000_000
        sp.end_time_unix_nano = base + i * 1_000_000 + 850_000_000
        sp.attributes.extend([kv(k, v) for k, v in span_attrs(i, rng).items()])
    return req.SerializeToString()
