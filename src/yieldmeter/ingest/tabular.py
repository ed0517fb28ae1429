"""Canonical tables from CSV, JSON lines or Parquet files, read in batches.

The columns carry the canonical names of :mod:`yieldmeter.schema`; the table is
given (``--table``) or inferred from the id column the file has. Values are
read as text where the format has no types (CSV, JSON) and cast by
:func:`~yieldmeter.ingest.conform.conform`, so one bad cell rejects one row,
not the file. Memory stays bounded: one batch at a time.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from yieldmeter.ingest.base import Batch, Format, ReadOptions
from yieldmeter.ingest.conform import conform, make_rejects
from yieldmeter.schema import INGESTIBLE, TABLES

#: id column -> table, tried in order (work_unit_id last: other tables carry it too)
_KEY_TO_TABLE = (
    ("call_id", "calls"),
    ("signal_id", "signals"),
    ("effort_id", "effort"),
    ("outcome_id", "outcomes"),
    ("item_id", "cost_items"),
    ("budget_id", "budgets"),
    ("scope_kind", "budgets"),
    ("decision_id", "decisions"),
    ("measurement_id", "capacity_measurements"),
    ("work_unit_id", "work_units"),
)

PARQUET_MAGIC = b"PAR1"


class TableNotKnown(ValueError):
    pass


def infer_table(columns: list[str], source: str) -> str:
    present = set(columns)
    for key, name in _KEY_TO_TABLE:
        if key in present:
            return name
    raise TableNotKnown(
        f"{source}: cannot tell which table these rows are for (no id column such as call_id, "
        f"signal_id, effort_id, outcome_id, item_id); pass --table one of {', '.join(INGESTIBLE)}"
    )


def _kind(head: bytes, name: str) -> str:
    lower = name.lower().removesuffix(".gz")
    if head.startswith(PARQUET_MAGIC) or lower.endswith(".parquet"):
        return "parquet"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    stripped = head.lstrip()
    if stripped.startswith(b"{"):
        return "jsonl"
    return "csv"


def _conformed_batches(
    tables: Iterator[tuple[pa.Table, int]], options: ReadOptions, first_columns: list[str]
) -> Iterator[Batch]:
    name = options.table or infer_table(first_columns, options.source)
    if name not in TABLES:
        raise TableNotKnown(f"unknown table {name!r}; choose one of {', '.join(INGESTIBLE)}")
    known = set(TABLES[name].names)
    extra = [c for c in first_columns if c not in known]
    noted = False
    for data, first in tables:
        batch = Batch.of(name, conform(name, data, source=options.source, first_position=first))
        if extra and not noted:
            batch.notes.append(
                f"{options.source}: columns not in table {name} were ignored: {', '.join(extra[:10])}"
            )
            noted = True
        yield batch


def _read_csv(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    header = stream.readline()
    if not header.strip():
        return
    columns = pacsv.read_csv(io.BytesIO(header)).column_names
    reader = pacsv.open_csv(
        _Prepend(header, stream),
        read_options=pacsv.ReadOptions(block_size=8 << 20),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            strings_can_be_null=True,
            null_values=["", "NULL", "null", "None"],
        ),
    )

    def tables() -> Iterator[tuple[pa.Table, int]]:
        row = 1
        for rb in reader:
            t = pa.Table.from_batches([rb])
            yield t, row
            row += t.num_rows

    yield from _conformed_batches(tables(), options, columns)


class _Prepend(io.RawIOBase):
    """A stream that yields ``head`` and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _column(values: list[Any]) -> pa.Array:
    try:
        arr = pa.array(values)
        if pa.types.is_struct(arr.type) or pa.types.is_list(arr.type) or pa.types.is_map(arr.type):
            raise pa.ArrowInvalid("nested")
        return arr
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(
            [
                None if v is None else (v if isinstance(v, str) else json.dumps(v, default=str))
                for v in values
            ],
            pa.string(),
        )


def _read_jsonl(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    """JSON lines (or one JSON array). A line that is not a JSON object is rejected."""
    first_line = b""
    lines = iter(stream)
    for first_line in lines:
        if first_line.strip():
            break
    if not first_line.strip():
        return
    if first_line.lstrip().startswith(b"["):
        whole = json.loads(first_line + b"".join(lines))
        records = iter(enumerate(whole, start=1))
    else:
        # line numbers count from the first non-blank line; good enough to find a row
        records = enumerate(itertools.chain([first_line], lines), start=1)  # type: ignore[assignment]

    table_name: str | None = options.table
    pending_rejects: list[tuple[int, str, str]] = []
    batch_rows: list[dict[str, Any]] = []
    batch_pos: list[int] = []

    def flush() -> Iterator[Batch]:
        nonlocal table_name
        if not batch_rows and not pending_rejects:
            return
        if table_name is None:
            table_name = infer_table(list(batch_rows[0]) if batch_rows else [], options.source)
        cols: dict[str, list[Any]] = {}
        for r in batch_rows:
            for k in r:
                cols.setdefault(k, [])
        for k in cols:
            cols[k] = [r.get(k) for r in batch_rows]
        data = pa.table({k: _column(v) for k, v in cols.items()}) if batch_rows else pa.table({})
        if batch_rows:
            batch = Batch.of(
                table_name, conform(table_name, data, source=options.source, positions=batch_pos)
            )
        else:
            batch = Batch()
        if pending_rejects:
            pos, reasons, raws = zip(*pending_rejects, strict=True)
            batch.rejects = pa.concat_tables(
                [
                    batch.rejects,
                    make_rejects(table_name, options.source, list(pos), list(reasons), list(raws)),
                ]
            )
        batch_rows.clear()
        batch_pos.clear()
        pending_rejects.clear()
        yield batch

    for pos, raw in records:
        if isinstance(raw, bytes | str):
            text = raw.strip()
            if not text:
                continue
            try:
                rec = json.loads(text)
            except ValueError as exc:
                shown = text[:2000]
                shown_text = shown.decode(errors="replace") if isinstance(shown, bytes) else shown
                pending_rejects.append((pos, f"not valid JSON: {exc}", shown_text))
                continue
        else:
            rec = raw
        if not isinstance(rec, dict):
            pending_rejects.append((pos, "not a JSON object", json.dumps(rec, default=str)[:2000]))
            continue
        batch_rows.append(rec)
        batch_pos.append(pos)
        if len(batch_rows) >= options.batch_rows:
            yield from flush()
    yield from flush()


def _read_parquet(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    pf = pq.ParquetFile(stream)
    columns = pf.schema_arrow.names

    def tables() -> Iterator[tuple[pa.Table, int]]:
        row = 1
        for rb in pf.iter_batches(batch_size=options.batch_rows):
            t = pa.Table.from_batches([rb])
            yield t, row
            row += t.num_rows

    yield from _conformed_batches(tables(), options, columns)


def read(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    head = stream.peek(8) if hasattr(stream, "peek") else b""
    kind = _kind(head, options.source)
    if kind == "parquet":
        yield from _read_parquet(stream, options)
    elif kind == "jsonl":
        yield from _read_jsonl(stream, options)
    else:
        yield from _read_csv(stream, options)


FORMAT = Format(
    name="table",
    description="canonical tables as CSV, JSON lines or Parquet (columns named as in DESIGN.md)",
    detect=lambda head, name: False,
    read=read,
)
