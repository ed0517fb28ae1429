"""Builders for the value engine's tests: a real in-memory DuckDB with the canonical tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import pyarrow as pa

from yieldmeter.metrics.tables import Tables
from yieldmeter.schema import TABLES

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def ts(minutes: float = 0.0, days: float = 0.0) -> datetime:
    return T0 + timedelta(minutes=minutes, days=days)


def rows_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of canonical table ``name`` (missing columns take their declared default, else null)."""
    decl = TABLES[name]
    cols = {}
    for c in decl.columns:
        cols[c.name] = [r.get(c.name, c.default) for r in rows]
    return pa.table(cols, schema=decl.arrow_schema)


def make_backend(data: dict[str, list[dict[str, Any]]]) -> Any:
    """A fresh in-memory DuckDB Ibis backend holding every canonical table (plus model_map)."""
    con = ibis.duckdb.connect()
    for name in TABLES:
        con.create_table(name, obj=rows_table(name, data.get(name, [])))
    con.create_table(
        "model_map",
        schema=ibis.schema(
            {"provider": "string", "model": "string", "price_provider": "string", "price_model": "string"}
        ),
    )
    return con


def make_tables(data: dict[str, list[dict[str, Any]]]) -> tuple[Any, Tables]:
    con = make_backend(data)
    return con, Tables.from_backend(con)
