"""Shared plumbing for the export importers: records out of JSON, JSON lines or CSV, rows into batches.

An export adapter reads records with :func:`iter_records`, maps each to a
canonical row (or raises :class:`RecordError` with a reason), and hands the
rows to a :class:`RowBuffer`, which conforms them in batches and keeps the
records it could not map as rejects with their position.
"""

from __future__ import annotations

import codecs
import csv
import gzip
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson
import pyarrow as pa

from yieldmeter.errors import InputError
from yieldmeter.ingest.base import Batch, ReadOptions, UntilUnreadable
from yieldmeter.ingest.conform import conform, make_rejects

_TS = pa.timestamp("us", tz="UTC")
_TIME_COLUMNS = {
    "calls": ("ts",),
    "cost_items": ("period_start", "period_end"),
    "signals": ("ts",),
}


class RecordError(InputError):
    """A record that cannot be mapped; the message names the field and why. ``raw``: the record
    as read, where the reader could not hand it over itself (a CSV row that is not UTF-8)."""

    def __init__(self, message: str, raw: str | None = None, *, shifted: bool = False) -> None:
        super().__init__(message)
        self.raw = raw
        #: ``raw`` is a CSV row of the wrong width: its values may sit under other columns' names
        self.shifted = shifted


#: What the quarantine keeps in place of a refused record's prompt or completion text.
CONTENT_NOT_KEPT = "(content not kept: capture_content is off)"


def raw_of(rec: Any, content: Collection[str] = ()) -> Any:
    """What the quarantine keeps of a record an adapter refused: the record, else what its
    reader kept of it, else the reader's message.

    ``content``: the fields that hold prompt or completion text (empty when the workspace
    captures content), ``parent.key`` for a key inside a JSON-object field; their values are
    not kept. A CSV row of the wrong width in a file with
    such a column is not kept at all, as any of its values may be shifted text: the reason
    names the row, to be found in the file.
    """
    if isinstance(rec, dict):
        return _without(rec, content)
    if not isinstance(rec, RecordError):  # a list or a value where a record was expected
        if content and isinstance(rec, list | tuple):  # it may hold records, with their text
            return f"(not kept: a {type(rec).__name__}, not a record, and capture_content is off)"
        return str(rec)
    if rec.raw is None:
        return str(rec)
    if not content:
        return rec.raw
    try:
        kept = orjson.loads(rec.raw)
    except orjson.JSONDecodeError:
        return rec.raw
    if not isinstance(kept, dict) or not any(k.partition(".")[0] in kept for k in content):
        return rec.raw
    if rec.shifted:
        columns = ", ".join(sorted({k.partition(".")[0] for k in content} & kept.keys()))
        return f"(row not kept: its fields may be shifted, and the file has content columns: {columns})"
    return _without(kept, content)


def _without(rec: dict[str, Any], content: Collection[str]) -> dict[str, Any]:
    """``rec`` with the values of its ``content`` fields replaced; ``parent.key`` names a key
    of a field that holds a JSON object (as an object, or as its text in a CSV cell)."""
    inner: dict[str, set[str]] = {}
    for name in content:
        parent, dot, key = name.partition(".")
        if dot:
            inner.setdefault(parent, set()).add(key)
    out = {}
    for k, v in rec.items():
        if v in (None, ""):
            out[k] = v
        elif k in content:
            out[k] = CONTENT_NOT_KEPT
        elif k in inner:
            out[k] = _without_inside(v, inner[k])
        else:
            out[k] = v
    return out


def _without_inside(value: Any, keys: set[str]) -> Any:
    """A JSON object (or its text) without the values of ``keys``; text that is not an object
    but names one of them is not kept at all."""
    doc = value
    if isinstance(value, str | bytes):
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
    if not isinstance(doc, dict):
        text = value if isinstance(value, str) else str(value)
        return CONTENT_NOT_KEPT if any(k in text for k in keys) else value
    if not keys & doc.keys():
        return value
    kept = _without(doc, keys)
    return kept if isinstance(value, dict) else orjson.dumps(kept).decode()


def data_page(doc: Any) -> list[Any] | None:
    """The records of an API page ``{"data": [...], ...}`` (Langfuse's observations, LiteLLM's
    spend logs as its proxy pages them), for :func:`iter_records`'s ``unwrap``."""
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        return doc["data"]  # type: ignore[no-any-return]
    return None


def head_kind(head: bytes) -> str:
    """``json`` (one document), ``jsonl`` or ``csv``, judged from the first bytes."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        first, _, rest = text.partition(b"\n")
        try:
            orjson.loads(first)
        except orjson.JSONDecodeError:
            return "json"
        return "jsonl" if rest.strip() else "json"
    return "csv"


def iter_records(
    stream: BinaryIO, *, unwrap: Callable[[Any], list[Any] | None] | None = None
) -> Iterator[tuple[int, Any]]:
    """``(position, record)`` pairs: array items, JSON lines, or CSV rows (1-based data rows).

    ``unwrap`` turns a document (a page object) into its records, e.g. the
    buckets of an API page; a JSON lines file of pages is unwrapped line by line, its records
    numbered through the file (a line holds many). A line that is not JSON yields
    ``(line number, RecordError)``.
    """
    head = stream.read(65_536)
    kind = head_kind(head)
    if kind == "json":
        doc = orjson.loads(head + stream.read())
        items = unwrap(doc) if unwrap else None
        if items is None:
            items = doc if isinstance(doc, list) else [doc]
        pos = 0
        for item in items:
            sub = unwrap(item) if unwrap and isinstance(item, dict) and isinstance(doc, list) else None
            for rec in sub if sub is not None else [item]:
                pos += 1
                yield pos, rec
        return
    if kind == "jsonl":
        lines = _lines(head, stream)
        pos = 0
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield lineno, RecordError(f"line {lineno}: not valid JSON ({exc})")
                continue
            sub = unwrap(doc) if unwrap else None
            if sub is None:
                yield lineno, doc
            else:  # a line of a page: its records are counted through the file, as in a document
                for rec in sub:
                    pos += 1
                    yield pos, rec
        return
    # bytes that are not UTF-8 are kept as surrogates, so they reject their row, not the file
    decoded = codecs.getreader("utf-8-sig")(_Rejoin(head, stream), errors="surrogateescape")  # type: ignore[arg-type]
    # a .gz is read in small pieces: gzip loses the output of the read that meets a file cut
    # short, and a piece smaller than a row keeps every whole row before the cut
    text = _csv_lines(decoded, 72 if isinstance(stream, gzip.GzipFile) else 8192)
    reader = csv.DictReader(text)
    for i, row in enumerate(reader, 1):
        # a row of the wrong width (a download cut short, a comma not quoted) would land with its
        # values under other columns: DictReader gives the extra fields the key None and the
        # missing ones the value None (a cell that is there, even empty, is text)
        # (a trailing empty field, or a header's trailing empty column, holds nothing to shift)
        if None in row or None in row.values():  # the common row is whole: two C-level checks
            width = len(reader.fieldnames or ())
            extra = row.get(None) or []  # type: ignore[call-overload]
            missing = sum(1 for k, v in row.items() if k is not None and v is None)
            blank_header = sum(1 for k, v in row.items() if k == "" and v is None)
        else:
            extra, missing, blank_header = [], 0, 0
        if any(x != "" for x in extra) or missing > blank_header:
            found = width + len(extra) - missing
            kept = {_escaped(str(k)): v for k, v in row.items() if k is not None}
            kept = {k: _escaped(v) if isinstance(v, str) else v for k, v in kept.items()}
            if extra:
                kept["(extra fields)"] = [_escaped(x) for x in extra]
            reason = f"expected {width} fields, found {found}"
            yield i, RecordError(reason, orjson.dumps(kept).decode(), shifted=True)
            continue
        rec = {k: (None if v in ("", "NULL", "null") else v) for k, v in row.items() if k is not None}
        try:
            "".join([*rec, *(v for v in rec.values() if isinstance(v, str))]).encode()
        except UnicodeEncodeError:
            # kept with the bytes written as escapes (\xe9), so the row can be found and fixed
            kept = {_escaped(k): _escaped(v) if isinstance(v, str) else v for k, v in rec.items()}
            yield i, RecordError(_not_utf8(rec), orjson.dumps(kept).decode())
            continue
        yield i, rec


def _not_utf8(rec: dict[str, Any]) -> str:
    """Which field of a CSV record holds bytes that are not UTF-8 text (the first one)."""
    for k, v in rec.items():
        if not _is_utf8(k):
            return f"column name {k!r}: not UTF-8 text"
        if isinstance(v, str) and not _is_utf8(v):
            return f"{k}: not UTF-8 text"
    return "not UTF-8 text"


def _escaped(text: str) -> str:
    """Text read with ``surrogateescape``, its bytes that are not UTF-8 written as ``\\xNN``."""
    return text.encode(errors="surrogateescape").decode(errors="backslashreplace")


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class _Rejoin:
    """A stream whose first bytes were already read."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head, b""
            return out if n < 0 else out + self._stream.read(max(0, n - len(out)))
        return self._stream.read(n)


def _csv_lines(text: Any, size: int) -> Iterator[str]:
    """The lines of decoded text, cut at ``\n`` only and with their ends, as the csv module needs
    them (``newline=""``): iterating a codecs reader cut lines at U+2028, form feeds and the other
    Unicode line breaks, which CSV writers leave unquoted inside a field. Read in pieces of
    ``size`` characters (``test_the_rows_before_a_cut_in_an_export_gz_land`` for a .gz)."""
    rest = ""
    while chunk := text.read(size):
        parts = (rest + chunk).split("\n")
        rest = parts.pop()
        for line in parts:
            yield line + "\n"
    if rest:
        yield rest


def _lines(head: bytes, stream: BinaryIO) -> Iterator[bytes]:
    buf = head
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        buf += chunk
        *complete, buf = buf.split(b"\n")
        yield from complete
    yield from (line for line in buf.split(b"\n") if line)


def first(record: dict[str, Any], *names: str) -> Any:
    """The first present, non-empty value among several spellings of a field."""
    for n in names:
        v = record.get(n)
        if v is not None and v != "":
            return v
    return None


def json_field(value: Any, name: str) -> Any:
    """A field that exports carry either as JSON text or as an object."""
    if value is None or isinstance(value, dict | list):
        return value
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise RecordError(f"{name}: not valid JSON") from None
    raise RecordError(f"{name}: expected JSON, got {type(value).__name__}")


def whole(value: Any, name: str) -> int | None:
    """A token count: a whole number (``12``, ``"12"``, ``12.0``), else :class:`RecordError`."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RecordError(f"{name}: expected a whole number, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise RecordError(f"{name}: expected a whole number, got {value!r}") from None
    if f != f or f in (float("inf"), float("-inf")) or f != int(f):
        raise RecordError(f"{name}: expected a whole number, got {value!r}")
    if f < 0:
        raise RecordError(f"{name}: negative ({value!r})")
    return int(f)


def epoch_or_iso(value: Any, name: str) -> Any:
    """Epoch seconds (API pages) as a datetime; ISO text is left for conform to parse."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if value is None:
        raise RecordError(f"{name}: missing")
    return value


def to_json(value: Any) -> str | None:
    if not value:
        return None
    return orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS).decode()


class RowBuffer:
    """Collects mapped rows per table and yields conformed batches of ``options.batch_rows``."""

    def __init__(self, options: ReadOptions) -> None:
        self.options = options
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.positions: dict[str, list[int]] = {}
        self.bad: dict[str, tuple[list[int], list[str], list[Any]]] = {}
        self.ignored = 0
        self.notes: list[str] = []
        self.count = 0

    def add(self, table_name: str, row: dict[str, Any], position: int) -> None:
        self.rows.setdefault(table_name, []).append(row)
        self.positions.setdefault(table_name, []).append(position)
        self.count += 1

    def reject(self, table_name: str, position: int, reason: str, raw: Any) -> None:
        pos, reasons, raws = self.bad.setdefault(table_name, ([], [], []))
        pos.append(position)
        reasons.append(reason)
        raws.append(raw if isinstance(raw, str) else orjson.dumps(raw, default=str).decode())
        self.count += 1

    def full(self) -> bool:
        return self.count >= self.options.batch_rows

    def flush(self) -> Batch:
        source = self.options.source
        batch = Batch(ignored=self.ignored, notes=list(self.notes))
        for name, rows in self.rows.items():
            table = _table(rows)
            for col in _TIME_COLUMNS.get(name, ()):
                if col in table.column_names and not pa.types.is_string(table.schema.field(col).type):
                    i = table.schema.get_field_index(col)
                    table = table.set_column(i, col, table.column(col).cast(_TS))
            table = table.append_column("source", pa.array([source] * table.num_rows, pa.string()))
            batch.add(name, conform(name, table, source=source, positions=self.positions[name]))
        for name, (pos, reasons, raws) in self.bad.items():
            batch.add(name, _as_conformed(make_rejects(name, source, pos, reasons, raws), name))
        self.rows, self.positions, self.bad, self.count, self.ignored, self.notes = {}, {}, {}, 0, 0, []
        return batch


def _as_conformed(rejects: pa.Table, name: str) -> Any:
    from yieldmeter.ingest.conform import Conformed
    from yieldmeter.schema import empty

    return Conformed(empty(name), rejects)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as Arrow; a column whose values mix types is kept as text for conform to judge."""
    names: list[str] = []
    for r in rows:
        for k in r:
            if k not in names:
                names.append(k)
    arrays = {}
    for n in names:
        values = [r.get(n) for r in rows]
        try:
            arrays[n] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[n] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(arrays)


def read_usage_results(
    stream: BinaryIO,
    options: ReadOptions,
    *,
    unwrap: Callable[[Any], Any],
    is_cost: Callable[[dict[str, Any]], bool],
    map_cost: Callable[[dict[str, Any]], dict[str, Any]],
    map_usage: Callable[[dict[str, Any]], dict[str, Any] | None],
    report: str,
    notes: Callable[[], list[str]] = list,
) -> Iterator[Batch]:
    """Provider usage/cost report pages -> ``calls`` (usage buckets) and ``cost_items`` (costs).

    Shared by the OpenAI and Anthropic importers: each result is a cost row when
    ``is_cost`` says so, else a usage bucket; a result that cannot be mapped is
    rejected with its position. ``unwrap`` tags each result of a page's bucket with the
    bucket's window (``_start``); a record that is not inside one (another format read with
    ``--format``) is rejected saying it is not a result of a ``report`` page. A usage result
    ``map_usage`` maps to None (usage not counted in tokens) is ignored, and the kinds are noted.
    ``notes``: what the format has to say once the file is read (with the last batch).
    """
    buf = RowBuffer(options)
    passed: dict[str, int] = {}
    records = UntilUnreadable(iter_records(stream, unwrap=unwrap))
    for pos, rec in records:
        table = "cost_items" if isinstance(rec, dict) and is_cost(rec) else "calls"
        try:
            if isinstance(rec, RecordError):
                raise rec
            if not isinstance(rec, dict):
                raise RecordError(f"expected a result object, got {type(rec).__name__}")
            if "_start" not in rec:
                raise RecordError(f"not a result inside a bucket of {report} (is the file of this format?)")
            row = map_cost(rec) if table == "cost_items" else map_usage(rec)
        except RecordError as exc:
            buf.reject(table, pos, f"result {pos}: {exc}", raw_of(rec))
            continue
        if row is None:
            buf.ignored += 1
            kind = str(rec.get("object"))
            passed[kind] = passed.get(kind, 0) + 1
            continue
        buf.add(table, row, pos)
        if buf.full():
            yield buf.flush()
    if passed:
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(passed.items()))
        buf.notes.append(
            f"usage not counted in tokens ignored ({kinds}): no token price applies; "
            "import the costs page for what it cost"
        )
    buf.notes.extend(notes())
    yield buf.flush()
    records.raise_if_failed()
