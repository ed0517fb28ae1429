"""Turn an adapter's Arrow table into canonical rows plus rejects.

This is the one place that decides whether a row is acceptable: required
fields present, numbers non-negative, closed enums respected, timestamps
parseable. It is pure (no I/O) and vectorised; a row that fails a check goes to
the rejects with the *first* reason that applies, and never blocks the good
rows of its batch.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from yieldmeter.schema import PLAUSIBLE_TIMES, TS, Column, Table, table

REJECT_SCHEMA = pa.schema(
    [
        pa.field("table_name", pa.string()),
        pa.field("source", pa.string()),
        pa.field("position", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.string()),
    ]
)

_EARLIEST, _LATEST = (pa.scalar(t, TS) for t in PLAUSIBLE_TIMES)
#: the reason of a time outside PLAUSIBLE_TIMES, ``.format(column)``
_OUT_OF_TIME = (
    "{}: not between " + " and ".join(f"{t:%Y-%m-%d}" for t in PLAUSIBLE_TIMES) + " (a unit or clock error?)"
)


@dataclass(frozen=True)
class Conformed:
    """Canonical rows that passed, and rejects (``REJECT_SCHEMA``) that did not."""

    rows: pa.Table
    rejects: pa.Table

    @property
    def read(self) -> int:
        return self.rows.num_rows + self.rejects.num_rows


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()


def make_rejects(
    table_name: str, source: str, positions: list[int], reasons: list[str], raws: list[Any]
) -> pa.Table:
    """Rejects built by an adapter for rows it could not even map (bad JSON...)."""
    return pa.table(
        {
            "table_name": [table_name] * len(positions),
            "source": [source] * len(positions),
            "position": pa.array(positions, pa.int64()),
            "reason": reasons,
            "raw": [r if isinstance(r, str) else _json(r) for r in raws],
        },
        schema=REJECT_SCHEMA,
    )


def file_rejects(source: str, reason: str, table: str | None = None) -> pa.Table:
    """The one reject of a file (or the rest of it) that could not be read: no position, no raw
    row, the reason; ``table`` when the import named one, else ``(file)``."""
    return make_rejects(table or "(file)", source, [None], [reason], [""])  # type: ignore[list-item]


def stable_id(*parts: object) -> str:
    """A deterministic id from the parts: the same input always gives the same id."""
    h = hashlib.blake2b(digest_size=12)
    for p in parts:
        h.update(b"\x1f")
        h.update(str(p).encode())
    return h.hexdigest()


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def parse_timestamp(value: Any) -> datetime | None:
    """A time from an ISO string, a datetime, or epoch seconds/ms/us/ns (by magnitude), in UTC;
    ``None`` when it cannot be read or is out of range. Never raises."""
    try:
        return _parse_ts_scalar(value)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


_BOOLS = {
    "true": True,
    "1": True,
    "1.0": True,
    "yes": True,
    "false": False,
    "0": False,
    "0.0": False,
    "no": False,
}


def parse_bool(value: Any) -> bool | None:
    """A boolean as exports spell it (``True``, ``"true"``, ``"1"``, a pandas export's ``1.0``,
    ``"yes"``, and their opposites); None for anything else."""
    return _BOOLS.get(str(value).strip().lower())


def _parse_ts_scalar(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):  # true is not a time (nor epoch second 1)
        return None
    if isinstance(value, int | float):
        # epoch seconds, milliseconds, microseconds or nanoseconds by magnitude
        v = float(value)
        for scale in (1.0, 1e3, 1e6, 1e9):
            if abs(v / scale) < 1e10:
                return datetime.fromtimestamp(v / scale, tz=UTC)
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        try:
            return _parse_ts_scalar(float(text))
        except ValueError:
            return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _cast_column(arr: pa.ChunkedArray, col: Column) -> tuple[pa.Array, pa.Array | None]:
    """Cast to the column type; values that cannot be cast become null.

    Returns the cast array and a mask of values that were present but
    unreadable, or ``None`` when every value was read.
    """
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    target = col.type
    if arr.type == target:
        return arr, None
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target), None
    if pa.types.is_boolean(arr.type) and (pa.types.is_integer(target) or target == TS):
        # true is not 1 token nor epoch second 1 (as a score it is 1.0): every value is unreadable
        return pa.nulls(len(arr), target), pc.is_valid(arr)
    nested = pa.types.is_struct(arr.type) or pa.types.is_list(arr.type) or pa.types.is_map(arr.type)
    if nested and not col.json_text:  # an object where a name or a number belongs
        return pa.nulls(len(arr), target), pc.is_valid(arr)
    try:
        if target == TS and pa.types.is_timestamp(arr.type):
            out = arr.cast(TS) if arr.type.tz else pc.assume_timezone(arr, "UTC").cast(TS)
        elif target == TS and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            out = arr.cast(TS)
        elif target == TS and pa.types.is_date(arr.type):
            out = pc.assume_timezone(arr.cast(pa.timestamp("us")), "UTC")
        elif target == TS:
            raise pa.ArrowInvalid("fall back to scalar parse")
        elif pa.types.is_string(target) and not (
            pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
        ):
            if nested:
                out = pa.array([None if v is None else _json(v) for v in arr.to_pylist()], pa.string())
            else:
                out = arr.cast(target)
        elif pa.types.is_integer(target) and pa.types.is_floating(arr.type):
            # tokens arrive as 12.0 from some exports; 12.5 is unreadable
            rounded = pc.round(arr)
            bad = pc.fill_null(pc.not_equal(rounded, arr), False)
            out = pc.if_else(bad, pa.scalar(None, arr.type), arr).cast(target)
            return out, bad
        else:
            out = arr.cast(target)
        return out, None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    # Slow path, only for columns that hold junk: parse value by value.
    values = arr.to_pylist()
    parsed: list[Any] = []
    bad: list[bool] = []
    for v in values:
        p = _parse_scalar(v, col)
        parsed.append(p)
        bad.append(v is not None and v != "" and p is None)
    return pa.array(parsed, target), pa.array(bad, pa.bool_())


def _parse_scalar(v: Any, col: Column) -> Any:
    if v is None or v == "":
        return None
    target = col.type
    if isinstance(v, dict | list) and not col.json_text:
        return None
    if isinstance(v, bool) and (pa.types.is_integer(target) or target == TS):
        return None
    if target == TS:
        return parse_timestamp(v)
    try:
        if pa.types.is_integer(target):
            f = float(v)
            # beyond int64 the value is unreadable (quarantined), never a crash of the whole batch
            return int(f) if f == int(f) and -(2**63) <= f < 2**63 else None
        if pa.types.is_floating(target):
            return float(v)
        if pa.types.is_boolean(target):
            return parse_bool(v)
        if pa.types.is_string(target):
            return v if isinstance(v, str) else _json(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return None


def conform(
    table_name: str,
    data: pa.Table,
    *,
    source: str,
    positions: pa.Array | list[int] | None = None,
    first_position: int = 1,
    named_by: tuple[str, str] | None = None,
) -> Conformed:
    """Cast ``data`` to the canonical schema of ``table_name`` and validate it.

    ``positions`` gives each row's place in its source (1-based data row, or
    span index); by default rows are numbered from ``first_position``. Columns
    the input lacks take their defaults; columns the schema lacks are ignored.
    ``named_by``: (a word, a column of ``data``) that names a rejected row in its reason, where
    a position alone does not find it (``("span", "span_id")``: ``span 5b8e...: ts: ...``).
    """
    spec: Table = table(table_name)
    n = data.num_rows
    if positions is None:
        positions = pa.array(range(first_position, first_position + n), pa.int64())
    elif not isinstance(positions, pa.Array):
        positions = pa.array(positions, pa.int64())

    reasons = pa.nulls(n, pa.string())

    def flag(mask: pa.Array, reason: str) -> None:
        nonlocal reasons
        if not pc.any(mask).as_py():  # the usual case: nothing to flag, three compute calls saved
            return
        mask = pc.fill_null(mask, False)
        reasons = pc.if_else(pc.and_(mask, pc.is_null(reasons)), pa.scalar(reason), reasons)

    columns: dict[str, pa.Array] = {}
    present = set(data.column_names)
    # Fill a derivable key before the required-field check.
    for col in spec.columns:
        if col.name in present:
            arr, unreadable = _cast_column(data.column(col.name), col)
            if unreadable is not None and pc.any(unreadable).as_py():
                flag(unreadable, f"{col.name}: cannot read as {_type_word(col.type)}")
        else:
            arr = pa.nulls(n, col.type)
        if col.default is not None:
            arr = pc.fill_null(arr, pa.scalar(col.default, col.type))
        columns[col.name] = arr

    if spec.row_check and n:
        module, _, function = spec.row_check.partition(":")
        getattr(importlib.import_module(module), function)(columns, flag)

    if spec.derive_key_from:
        key = columns[spec.key]
        if pc.any(pc.is_null(key)).as_py():
            parts = [columns[c].to_pylist() for c in spec.derive_key_from]
            prefix = (table_name,) if spec.key_prefixed else ()
            derived = [
                stable_id(*prefix, *row) if all(p is not None for p in row) else None
                for row in zip(*parts, strict=True)
            ]
            columns[spec.key] = pc.coalesce(key, pa.array(derived, pa.string()))

    # the parts a key is derived from first: a row without one says which, not that the key is missing
    for col in sorted(spec.columns, key=lambda c: c.name not in spec.derive_key_from):
        arr = columns[col.name]
        if col.required:
            missing = pc.is_null(arr)
            if pa.types.is_string(col.type):
                missing = pc.or_kleene(missing, pc.equal(pc.utf8_trim_whitespace(arr), ""))
            flag(missing, f"{col.name}: missing")
        if col.non_negative:
            flag(pc.less(arr, pa.scalar(0, col.type)), f"{col.name}: negative")
        if col.maximum is not None:
            flag(pc.greater(arr, pa.scalar(col.maximum, col.type)), f"{col.name}: over {col.maximum:g}")
        if col.enum is not None:
            bad = pc.invert(pc.is_in(arr, value_set=pa.array(col.enum)))
            flag(pc.and_(bad, pc.is_valid(arr)), f"{col.name}: not one of {', '.join(col.enum)}")
        if pa.types.is_floating(col.type):
            flag(pc.is_nan(arr), f"{col.name}: not a number")
            flag(pc.is_inf(arr), f"{col.name}: infinite")
        if col.type == TS and not col.any_time:
            outside = pc.or_(pc.less(arr, _EARLIEST), pc.greater_equal(arr, _LATEST))
            flag(outside, _OUT_OF_TIME.format(col.name))

    for earlier, later in spec.in_order:
        flag(pc.less(columns[later], columns[earlier]), f"{later}: before {earlier}")

    for parts, bound in spec.at_most:
        total = columns[parts[0]]
        for part in parts[1:]:
            total = pc.add(total, columns[part])
        flag(pc.greater(total, columns[bound]), f"{' + '.join(parts)}: exceeds {bound}")

    out = pa.table(columns, schema=spec.arrow_schema)
    bad_mask = pc.is_valid(reasons)
    if not pc.any(bad_mask).as_py():
        return Conformed(out, empty_rejects())
    good = out.filter(pc.invert(bad_mask))
    bad_idx = pc.indices_nonzero(bad_mask)
    raw_rows = data.take(bad_idx).to_pylist()
    rejects = pa.table(
        {
            "table_name": pa.array([table_name] * len(bad_idx), pa.string()),
            "source": pa.array([source] * len(bad_idx), pa.string()),
            "position": positions.take(bad_idx),
            "reason": _named(reasons.take(bad_idx), raw_rows, named_by),
            "raw": pa.array([_json(r) for r in raw_rows], pa.string()),
        },
        schema=REJECT_SCHEMA,
    )
    return Conformed(good, rejects)


def _named(reasons: pa.Array, rows: list[dict[str, Any]], named_by: tuple[str, str] | None) -> pa.Array:
    """``reasons``, each led by its row's name where ``named_by`` gives one and the row has it."""
    if named_by is None:
        return reasons
    word, column = named_by
    return pa.array(
        [
            f"{word} {row[column]}: {reason}" if row.get(column) else reason
            for row, reason in zip(rows, reasons.to_pylist(), strict=True)
        ],
        pa.string(),
    )


def _type_word(t: pa.DataType) -> str:
    if t == TS:
        return "a timestamp"
    if pa.types.is_integer(t):
        return "a whole number"
    if pa.types.is_floating(t):
        return "a number"
    if pa.types.is_boolean(t):
        return "true/false"
    if pa.types.is_string(t):
        return "text"
    return str(t)


def concat_rejects(parts: list[pa.Table]) -> pa.Table:
    parts = [p for p in parts if p.num_rows]
    return pa.concat_tables(parts) if parts else empty_rejects()
