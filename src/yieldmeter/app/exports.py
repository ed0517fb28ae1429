"""The export files, written alike by ``yieldmeter export`` and ``GET /api/v1/export/{name}``.

One writer per format, so a file reads the same from either surface: CSV with a header and
values quoted only where needed (times in ISO 8601 with their offset), JSON lines by orjson
(times in RFC 3339). The score and benchmark exports lead with the columns a reader looks for
first (:data:`SCORE_COLUMNS`, :data:`BENCHMARK_COLUMNS`), then the others.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

import orjson
import pyarrow as pa

#: The benchmark columns, in the order an export shows them first.
BENCHMARK_COLUMNS = (
    "subject",
    "workflow",
    "n",
    "value_per_token",
    "value_per_token_low",
    "value_per_token_high",
    "success_rate",
    "success_rate_low",
    "success_rate_high",
    "cost_per_success",
    "cost_per_success_low",
    "cost_per_success_high",
    "value_per_token_raw",
    "success_rate_raw",
    "shrinkage",
    "tokens",
    "value",
    "successes",
    "fully_loaded_cost",
)


#: The score columns, in the order an export shows them: what a unit is, then its value.
SCORE_COLUMNS = (
    "work_unit_id",
    "workflow",
    "score",
    "p_value",
    "expected_value",
    "confidence",
    "confidence_level",
    "unit_value",
    "model",
    "label",
    "top_signals",
    "scored_at",
)


def _leading(rows: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    first = [c for c in columns if c in rows.column_names]
    return rows.select(first + [c for c in rows.column_names if c not in first])


def benchmark_export(rows: pa.Table) -> pa.Table:
    """Benchmark rows with :data:`BENCHMARK_COLUMNS` first, then every other column."""
    return _leading(rows, BENCHMARK_COLUMNS)


def score_export(rows: pa.Table) -> pa.Table:
    """Score rows with :data:`SCORE_COLUMNS` first, then any other column."""
    return _leading(rows, SCORE_COLUMNS)


def csv_bytes(table: pa.Table) -> bytes:
    """``table`` as CSV: its header (alone when it has no rows), then its rows, quoted only where
    a value needs it; a time in ISO 8601 with its offset, true/false, a list or object as JSON."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(table.column_names)
    for row in table.to_pylist():
        w.writerow([_cell(v) for v in row.values()])
    return out.getvalue().encode("utf-8")


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, list | dict):
        return orjson.dumps(v, default=str).decode()
    return v


def jsonl_bytes(table: pa.Table) -> bytes:
    """``table`` as JSON lines, one object per row."""
    return b"".join(orjson.dumps(r, default=str) + b"\n" for r in table.to_pylist())
