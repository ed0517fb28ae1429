"""Builders for the routing tests: routing units as Ibis tables, and a real workspace from them.

:func:`ingest_units` turns routing units (one per work unit) into canonical rows and sends them
through the real ingest path (conform, the DuckDB store, pricing, scoring): one call per unit on its
model with its latency as the call's duration, and signals that make success unambiguous for the
value engine: ``accepted`` + ``value_confirmed`` when successful, ``rejected`` + ``value_denied``
when not (the label decides the quality threshold; see yieldmeter.metrics.units).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import yaml

from yieldmeter.ingest.base import Batch
from yieldmeter.ingest.conform import conform

PROVIDERS = {"gpt-4o": "openai", "gpt-4o-mini": "openai", "claude-3-5-haiku": "anthropic"}
#: Tokens per call by model so the real price catalog gives each model a distinct cost.
TOKENS = {"gpt-4o": (3000, 600), "gpt-4o-mini": (3000, 600), "claude-3-5-haiku": (3000, 600)}


def units_table(rows: list[dict[str, Any]]) -> ibis.Table:
    """Routing units from dicts (missing columns: defaults that keep a unit priced and scored)."""
    from yieldmeter.routing.sim import START

    full = []
    for i, r in enumerate(rows):
        full.append(
            {
                "work_unit_id": r.get("work_unit_id", f"wu-{i}"),
                "workflow": r["workflow"],
                "task_type": r.get("task_type", "t"),
                "model": r["model"],
                "started_at": r.get("started_at", START),
                "fully_loaded_cost": float(r["cost"]),
                "successful": bool(r["ok"]),
                "latency_ms": r.get("latency_ms"),
                "expected_value": r.get("ev"),
                "unpriced_calls": int(r.get("unpriced_calls", 0)),
            }
        )
    schema = pa.schema(
        [
            ("work_unit_id", pa.string()),
            ("workflow", pa.string()),
            ("task_type", pa.string()),
            ("model", pa.string()),
            ("started_at", pa.timestamp("us", tz="UTC")),
            ("fully_loaded_cost", pa.float64()),
            ("successful", pa.bool_()),
            ("latency_ms", pa.float64()),
            ("expected_value", pa.float64()),
            ("unpriced_calls", pa.int64()),
        ]
    )
    return ibis.memtable(pa.Table.from_pylist(full, schema=schema))


def workflows_table(rows: list[dict[str, Any]]) -> ibis.Table:
    cols = ("workflow", "risk_class", "latency_slo_ms", "quality_threshold", "unit_value")
    types = (pa.string(), pa.string(), pa.float64(), pa.float64(), pa.float64())
    data = {c: pa.array([r.get(c) for r in rows], t) for c, t in zip(cols, types, strict=True)}
    return ibis.memtable(pa.table(data))


def write_config(root: Path, workflows: list[dict[str, Any]]) -> None:
    (root / "yieldmeter.yaml").write_text(yaml.safe_dump({"workflows": workflows}), encoding="utf-8")


def ingest_units(ws: Any, units: pa.Table) -> None:
    """Canonical calls, work units and signals for ``units`` through ``ws.ingest_batches``."""
    u = units.to_pylist()
    calls, wus, signals = [], [], []
    for r in u:
        wid = r["work_unit_id"]
        inp, out = TOKENS.get(r["model"], (3000, 600))
        calls.append(
            {
                "call_id": f"c-{wid}",
                "ts": r["started_at"],
                "duration_ms": r["latency_ms"],
                "provider": PROVIDERS.get(r["model"]),
                "model": r["model"],
                "input_tokens": inp,
                "output_tokens": out,
                "work_unit_id": wid,
                "workflow": r["workflow"],
                "task_type": r["task_type"],
                "user_id": "u-1",
                "team": "t-1",
            }
        )
        wus.append(
            {
                "work_unit_id": wid,
                "workflow": r["workflow"],
                "task_type": r["task_type"],
                "user_id": "u-1",
                "team": "t-1",
                "started_at": r["started_at"],
                "status": "completed",
            }
        )
        kinds = ("accepted", "value_confirmed") if r["successful"] else ("rejected", "value_denied")
        for k in kinds:
            signals.append(
                {"signal_id": f"s-{wid}-{k}", "work_unit_id": wid, "ts": r["started_at"], "kind": k}
            )
    tables = {}
    for name, rows in (("calls", calls), ("work_units", wus), ("signals", signals)):
        c = conform(name, pa.Table.from_pylist(rows), source="routing-test")
        assert c.rejects.num_rows == 0, c.rejects.to_pylist()[:3]
        tables[name] = c.rows
    ws.ingest_batches([Batch(tables=tables)], source="routing-test")
