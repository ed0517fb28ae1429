"""Write the simulated organisation as its real sources would.

- ``otlp/traces-NNNN.jsonl``: what the OpenTelemetry Collector's file exporter
  writes, one ``ExportTraceServiceRequest`` per line (OTLP/JSON: lowerCamelCase
  keys, hex ids, int64 as strings, enums as numbers), with GenAI semantic
  convention attributes and yieldmeter's linkage attributes.
- ``tables/*.jsonl``: work units, signals, effort and outcomes with the
  canonical column names of :mod:`yieldmeter.schema`.
- ``billing/focus.csv``: non-token cost in FOCUS 1.x columns.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yieldmeter.simulate.catalog import MODELS
from yieldmeter.simulate.engine import MODEL_KEYS, Calls, Org, Units

SPANS_PER_REQUEST = 1024
SPANS_PER_FILE = 60_000
SCOPES = {
    "openai": ("opentelemetry.instrumentation.openai_v2", "2.1b0"),
    "anthropic": ("opentelemetry.instrumentation.anthropic", "0.40.0"),
    "gcp.gemini": ("opentelemetry.instrumentation.google_genai", "0.3b0"),
    # A self-hosted model behind an OpenAI-compatible endpoint, traced by the same library.
    "acme": ("opentelemetry.instrumentation.openai_v2", "2.1b0"),
}


def iso(ns: np.ndarray) -> np.ndarray:
    """ISO 8601 UTC strings with millisecond precision."""
    stamps = np.asarray(ns, dtype=np.int64).astype("datetime64[ns]").astype("datetime64[ms]")
    text = np.datetime_as_string(stamps, unit="ms")
    return np.char.add(text.astype(str), "Z").astype(object)


def _hex_ids(rng: np.random.Generator, n: int, words: int) -> list[str]:
    parts = [rng.integers(1, 2**63, n, dtype=np.int64).tolist() for _ in range(words)]
    if words == 1:
        return [f"{a:016x}" for a in parts[0]]
    return [f"{a:016x}{b:016x}" for a, b in zip(parts[0], parts[1], strict=True)]


def _sattr(key: str, value: str) -> str:
    return f'{{"key":"{key}","value":{{"stringValue":{json.dumps(value)}}}}}'


def _resource(service: str) -> str:
    return (
        '{"attributes":['
        + ",".join(
            [
                _sattr("service.name", service),
                _sattr("service.version", "1.4.2"),
                _sattr("deployment.environment.name", "production"),
                _sattr("telemetry.sdk.language", "python"),
            ]
        )
        + "]}"
    )


def write_otlp(
    out_dir: Path,
    org: Org,
    units: Units,
    calls: Calls,
    workflows: Sequence[str],
    services: Sequence[str],
    seed: int,
) -> list[Path]:
    """Write every call as a GenAI ``chat`` span; the calls of one work unit share a trace."""
    rng = np.random.default_rng([seed, 2])
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(calls.unit)
    trace_of_unit = _hex_ids(rng, len(units.work_unit_id), 2)
    span_ids = _hex_ids(rng, n, 1)
    u = calls.unit
    model_specs = [MODELS[k] for k in MODEL_KEYS]
    provider = [model_specs[m].provider for m in calls.model.tolist()]
    conv = np.where(units.parent_id[u] == None, units.work_unit_id[u], units.parent_id[u])  # noqa: E711
    start = calls.start_ns
    end = calls.start_ns + calls.duration_ns
    fields = zip(
        u.tolist(),
        span_ids,
        calls.model.tolist(),
        start.tolist(),
        end.tolist(),
        calls.input_tokens.tolist(),
        calls.output_tokens.tolist(),
        calls.cached_tokens.tolist(),
        calls.error.tolist(),
        conv.tolist(),
        org.user_id[units.user[u]].tolist(),
        units.work_unit_id[u].tolist(),
        units.task_type[u].tolist(),
        org.team[units.user[u]].tolist(),
        strict=True,
    )
    wf_names = list(workflows)
    wf_of_call = units.workflow[u]
    spans: list[str] = []
    for (ui, sid, m, s, e, inp, outp, cached, err, cv, user, wu, task, team), wfi in zip(
        fields, wf_of_call.tolist(), strict=True
    ):
        spec = model_specs[m]
        cache_attr = (
            f',{{"key":"gen_ai.usage.cache_read.input_tokens","value":{{"intValue":"{cached}"}}}}'
            if cached
            else ""
        )
        if err:
            status = '{"message":"429 Too Many Requests","code":2}'
            err_attr = ',{"key":"error.type","value":{"stringValue":"RateLimitError"}}'
        else:
            status = "{}"
            err_attr = ""
        spans.append(
            f'{{"traceId":"{trace_of_unit[ui]}","spanId":"{sid}","name":"chat {spec.request_model}","kind":3,'
            f'"startTimeUnixNano":"{s}","endTimeUnixNano":"{e}","attributes":['
            f'{{"key":"gen_ai.operation.name","value":{{"stringValue":"chat"}}}},'
            f'{{"key":"gen_ai.provider.name","value":{{"stringValue":"{spec.provider}"}}}},'
            f'{{"key":"gen_ai.request.model","value":{{"stringValue":"{spec.request_model}"}}}},'
            f'{{"key":"gen_ai.response.model","value":{{"stringValue":"{spec.response_model}"}}}},'
            f'{{"key":"server.address","value":{{"stringValue":"{spec.server}"}}}},'
            f'{{"key":"gen_ai.usage.input_tokens","value":{{"intValue":"{inp}"}}}},'
            f'{{"key":"gen_ai.usage.output_tokens","value":{{"intValue":"{outp}"}}}}{cache_attr}{err_attr},'
            f'{{"key":"gen_ai.conversation.id","value":{{"stringValue":"{cv}"}}}},'
            f'{{"key":"user.id","value":{{"stringValue":"{user}"}}}},'
            f'{{"key":"yieldmeter.work_unit.id","value":{{"stringValue":"{wu}"}}}},'
            f'{{"key":"yieldmeter.workflow","value":{{"stringValue":"{wf_names[wfi]}"}}}},'
            f'{{"key":"yieldmeter.task_type","value":{{"stringValue":"{task}"}}}},'
            f'{{"key":"yieldmeter.team","value":{{"stringValue":"{team}"}}}}],'
            f'"status":{status}}}'
        )
    # The collector batches spans as they end, grouped by resource and scope inside a request.
    order = np.argsort(end, kind="stable")
    service_of = wf_of_call
    scope_names = sorted(set(SCOPES.values()))
    scope_of = np.array([scope_names.index(SCOPES[p]) for p in provider]) if n else np.array([], dtype=int)
    resources = [_resource(s) for s in services]
    paths: list[Path] = []
    fh = None
    written = 0
    for chunk_start in range(0, n, SPANS_PER_REQUEST):
        chunk = order[chunk_start : chunk_start + SPANS_PER_REQUEST]
        if fh is None or written >= SPANS_PER_FILE:
            if fh is not None:
                fh.close()
            path = out_dir / f"traces-{len(paths) + 1:04d}.jsonl"
            paths.append(path)
            fh = path.open("w", encoding="utf-8")
            written = 0
        key = service_of[chunk] * len(scope_names) + scope_of[chunk]
        chunk = chunk[np.argsort(key, kind="stable")]
        key = service_of[chunk] * len(scope_names) + scope_of[chunk]
        res_parts: list[str] = []
        for svc in np.unique(service_of[chunk]).tolist():
            scope_parts = []
            for sc in np.unique(scope_of[chunk][service_of[chunk] == svc]).tolist():
                members = chunk[key == svc * len(scope_names) + sc]
                name, version = scope_names[sc]
                scope_parts.append(
                    f'{{"scope":{{"name":"{name}","version":"{version}"}},"spans":['
                    + ",".join(spans[i] for i in members.tolist())
                    + "]}"
                )
            res_parts.append(f'{{"resource":{resources[svc]},"scopeSpans":[' + ",".join(scope_parts) + "]}")
        fh.write('{"resourceSpans":[' + ",".join(res_parts) + "]}\n")
        written += len(chunk)
    if fh is not None:
        fh.close()
    return paths


def write_jsonl(path: Path, columns: dict[str, Iterable[Any]]) -> int:
    """Write rows given as columns; ``None`` and NaN are left out of each object."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    cols = [list(c.tolist() if isinstance(c, np.ndarray) else c) for c in columns.values()]
    count = 0
    dumps = json.dumps
    with path.open("w", encoding="utf-8") as fh:
        for row in zip(*cols, strict=True):
            obj = {k: v for k, v in zip(names, row, strict=True) if v is not None and v == v}
            fh.write(dumps(obj, separators=(",", ":")) + "\n")
            count += 1
    return count


FOCUS_COLUMNS = (
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "RegionId",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
)


def write_focus(path: Path, rows: list[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FOCUS_COLUMNS, extrasaction="raise")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in FOCUS_COLUMNS})
    return len(rows)
