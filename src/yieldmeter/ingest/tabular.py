"""Canonical tables from CSV, JSON lines or Parquet files, read in batches.

The columns carry the canonical names of :mod:`yieldmeter.schema`; the table is
given (``--table``) or inferred from the id column the file has. Values are
read as text where the format has no types (CSV, JSON) and cast by
:func:`~yieldmeter.ingest.conform.conform`, so one bad cell rejects one row,
not the file. Memory stays bounded: one batch at a time.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from yieldmeter.errors import InputError
from yieldmeter.ingest.base import Batch, Format, ReadOptions, UntilUnreadable
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


class TableNotKnown(InputError):
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
    if stripped.startswith((b"{", b"[")):
        return "jsonl"
    return "csv"


def _table_for(options: ReadOptions, columns: list[str]) -> tuple[str, Batch | None]:
    """The canonical table the rows are for, and a batch carrying a note on ignored columns."""
    name = options.table or infer_table(columns, options.source)
    if name not in TABLES:
        raise TableNotKnown(f"unknown table {name!r}; choose one of {', '.join(INGESTIBLE)}")
    known = set(TABLES[name].names)
    extra = [c for c in columns if c not in known]
    note = None
    if extra:
        note = Batch(
            notes=[f"{options.source}: columns not in table {name} were ignored: {', '.join(extra[:10])}"]
        )
    return name, note


def _conformed_batches(
    tables: Iterator[tuple[pa.Table, int]], options: ReadOptions, first_columns: list[str]
) -> Iterator[Batch]:
    name, note = _table_for(options, first_columns)
    if note is not None:
        yield note
    for data, first in tables:
        yield Batch.of(name, conform(name, data, source=options.source, first_position=first))


#: CSV bytes parsed at a time: about what one batch holds in memory, whatever the file's size
CSV_CHUNK_BYTES = 4 << 20
#: the longest one CSV record or JSON array element may be before the reader gives up on the file
MAX_RECORD_BYTES = 64 << 20
_NULLS = ["", "NULL", "null", "None"]

#: an adapter's reject before conform: (position, reason, raw text)
Reject = tuple[int, str, str]


class UnreadableFile(InputError):
    """The file (or what is left of it) cannot be read as CSV, JSON or Parquet; says why."""


#: One CSV record: fields separated by commas, up to its newline. A field is quoted only when it
#: starts with a quote (then it runs to its closing quote, "" inside it being a quote, newlines
#: included); elsewhere a quote is a plain character (``5" screen``), as Arrow's parser reads it.
_FIELD = rb'(?:"(?:[^"]|"")*"[^,\n]*|[^,\n"][^,\n]*|)'
_RECORD = re.compile(_FIELD + rb"(?:," + _FIELD + rb")*\n")


def _record_end(buf: bytes) -> int:
    """Where the last complete record of ``buf`` ends (0: none does yet)."""
    if b'"' not in buf:  # no quoted field: every newline ends a record
        return buf.rfind(b"\n") + 1
    pos, match = 0, _RECORD.match
    while (m := match(buf, pos)) is not None and m.end() > pos:
        pos = m.end()
    return pos


def _csv_pieces(stream: BinaryIO) -> Iterator[bytes]:
    """The stream in pieces of about :data:`CSV_CHUNK_BYTES`, each ending at the end of a record,
    so no record is split between two pieces (a quoted field may hold newlines)."""
    buf = b""
    while True:
        data = stream.read(CSV_CHUNK_BYTES)
        buf += data
        if not data:
            if buf.strip():
                yield buf
            return
        cut = _record_end(buf)
        if not cut:
            if len(buf) > MAX_RECORD_BYTES:
                raise UnreadableFile(
                    f"no record ends within {len(buf) >> 20} MiB (an unclosed quote?): the rest of the "
                    "file was not read"
                )
            continue  # a record longer than a piece: read on
        yield buf[:cut]
        buf = buf[cut:]


def _not_utf8_rows(data: pa.Table) -> dict[int, str]:
    """Rows of binary columns holding bytes that are not UTF-8 text, with the reason."""
    bad: dict[int, str] = {}
    for name in data.column_names:
        col = data.column(name)
        try:
            col.cast(pa.string())
        except (pa.ArrowInvalid, UnicodeDecodeError):
            for i, v in enumerate(col.to_pylist()):
                if v is None or i in bad:
                    continue
                try:
                    v.decode("utf-8")
                except UnicodeDecodeError as exc:
                    bad[i] = f"{name}: not UTF-8 text (byte {exc.start})"
    return bad


def _read_csv(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    """CSV read in pieces of :data:`CSV_CHUNK_BYTES`.

    A row with the wrong number of fields, or with bytes that are not UTF-8, is quarantined with
    its row number (1 = the first row after the header); the other rows of the file land.
    """
    header = stream.readline()
    if not header.strip():
        return
    try:
        if b"\x00" in header:
            raise UnicodeDecodeError("utf-8", header, header.index(b"\x00"), len(header), "a NUL byte")
        header.decode("utf-8")
        columns = pacsv.read_csv(io.BytesIO(header)).column_names
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise UnreadableFile(
            f"the first line is not a CSV header (binary, or not UTF-8 text): {exc}"
        ) from None
    name, note = _table_for(options, columns)
    if note is not None:
        yield note
    text = pa.schema([pa.field(c, pa.string()) for c in columns])

    def parse(piece: bytes, as_bytes: bool, bad_rows: list[Any]) -> pa.Table:
        def invalid(row: Any) -> str:
            bad_rows.append(row)
            return "skip"

        types = {c: pa.binary() if as_bytes else pa.string() for c in columns}
        return pacsv.read_csv(
            io.BytesIO(header + piece),
            # one thread: the parser then numbers the rows it skips
            read_options=pacsv.ReadOptions(use_threads=False, block_size=CSV_CHUNK_BYTES),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(
                column_types=types, strings_can_be_null=True, null_values=_NULLS
            ),
        )

    before = 0  # data rows (read or rejected) in the pieces before this one
    for piece in _csv_pieces(stream):
        bad_rows: list[Any] = []
        try:
            data = parse(piece, False, bad_rows)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            if "UTF8" not in str(exc):
                raise UnreadableFile(f"after row {before}: {exc}") from None
            bad_rows = []
            data = parse(piece, True, bad_rows)  # some bytes are not UTF-8: find the rows
        # the parser numbers physical lines from the piece's header (line 1)
        rejects: list[Reject] = [
            (
                before + r.number - 1,
                f"expected {r.expected_columns} fields, found {r.actual_columns}",
                r.text[:2000],
            )
            for r in bad_rows
        ]
        skipped = {p for p, _, _ in rejects}
        read = data.num_rows + len(rejects)
        positions = [p for p in range(before + 1, before + read + 1) if p not in skipped]
        if len(positions) != data.num_rows:  # records spanning several lines: number them in order
            positions = list(range(before + 1, before + data.num_rows + 1))
        if data.num_columns and pa.types.is_binary(data.schema.field(0).type):
            not_text = _not_utf8_rows(data)
            for i, reason in sorted(not_text.items()):
                raw = b",".join(v or b"" for v in data.slice(i, 1).to_pylist()[0].values())
                rejects.append((positions[i], reason, raw.decode("utf-8", errors="replace")[:2000]))
            keep = [i not in not_text for i in range(data.num_rows)]
            data = data.filter(pa.array(keep, pa.bool_())).cast(text)
            positions = [p for p, k in zip(positions, keep, strict=True) if k]
        batch = Batch.of(name, conform(name, data, source=options.source, positions=positions))
        if rejects:
            pos, reasons, raws = zip(*sorted(rejects), strict=True)
            adapter = make_rejects(name, options.source, list(pos), list(reasons), list(raws))
            batch.rejects = pa.concat_tables([batch.rejects, adapter])
        yield batch
        before += read


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


@dataclass(frozen=True)
class _Unreadable:
    """A JSON array element (and the rest of the file after it) that could not be read."""

    reason: str
    text: str


#: what undecodable bytes become with ``surrogateescape``
_NOT_TEXT = re.compile("[\udc80-\udcff]")


def _json_array(head: bytes, stream: BinaryIO) -> Iterator[tuple[int, Any]]:
    """The elements of one JSON array, read a piece at a time: ``(index, value)`` from 1.

    Memory holds one piece and the element being read, not the whole file. An element that is
    not valid JSON ends the reading: it comes back as :class:`_Unreadable`, naming the element,
    its line and column, and saying that the rest of the file was not read. An element holding
    bytes that are not UTF-8 comes back as :class:`_Unreadable` alone, and the reading goes on.
    """
    decoder = json.JSONDecoder()
    # bytes that are not UTF-8 become lone surrogates, so the element holding them is rejected
    # alone and the reading goes on
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    buf = utf8.decode(head)
    pos = buf.index("[") + 1
    eof = False
    lines_before = 0  # newlines in the text already dropped from the buffer
    index = 0

    def more() -> bool:
        nonlocal buf, pos, eof, lines_before
        if eof:
            return False
        data = stream.read(CSV_CHUNK_BYTES)
        lines_before += buf.count("\n", 0, pos)
        buf = buf[pos:] + utf8.decode(data, final=not data)
        pos = 0
        eof = not data
        return True

    expect_value = True
    while True:
        while pos < len(buf) and buf[pos] in " \t\r\n":
            pos += 1
        if pos >= len(buf):
            if not more():
                yield index + 1, _Unreadable("the JSON array is not closed: the file ends early", "")
                return
            continue
        if buf[pos] == "]" and (expect_value is False or index == 0):
            return
        if not expect_value:
            if buf[pos] != ",":
                line = lines_before + buf.count("\n", 0, pos) + 1
                yield (
                    index + 1,
                    _Unreadable(
                        f"not valid JSON after element {index} (line {line}): expected ',' or ']'; "
                        "the rest of the file was not read",
                        buf[pos : pos + 2000],
                    ),
                )
                return
            pos += 1
            expect_value = True
            continue
        try:
            value, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            # an element cut by the end of the piece reads again with more text
            if len(buf) - pos < MAX_RECORD_BYTES and more():
                continue
            line = lines_before + buf.count("\n", 0, exc.pos) + 1
            yield (
                index + 1,
                _Unreadable(
                    f"not valid JSON in element {index + 1} (line {line}): {exc.msg}; "
                    "the rest of the file was not read",
                    buf[pos : pos + 2000],
                ),
            )
            return
        if end >= len(buf) and not eof and more():
            continue  # a number may go on in the next piece: read the element again
        index += 1
        text, pos = buf[pos:end], end
        expect_value = False
        bad = _NOT_TEXT.search(text)
        if bad is not None:
            line = lines_before + buf.count("\n", 0, end - len(text) + bad.start()) + 1
            shown = text[:2000].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            reason = f"element {index} (line {line}) holds bytes that are not UTF-8 text"
            yield index, _Unreadable(reason, shown)
            continue
        yield index, value


def _read_jsonl(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    """JSON lines (or one JSON array). A line that is not a JSON object is rejected."""
    head = stream.read(4096)
    while head and not head.strip() and len(head) < MAX_RECORD_BYTES:
        more = stream.read(4096)
        if not more:
            break
        head += more
    if not head.strip():
        return
    records: Iterator[tuple[int, Any]]
    if head.lstrip().startswith(b"["):
        records = _json_array(head, stream)
    else:
        # line numbers count from the first non-blank line; good enough to find a row
        records = enumerate(io.BufferedReader(_Prepend(head.lstrip(), stream)), start=1)

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

    readable = UntilUnreadable(records)
    for pos, raw in readable:
        if isinstance(raw, _Unreadable):
            pending_rejects.append((pos, raw.reason, raw.text))
            continue
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
    readable.raise_if_failed()


def _read_parquet(stream: BinaryIO, options: ReadOptions) -> Iterator[Batch]:
    pf = pq.ParquetFile(stream)
    if b"yieldmeter.truth" in (pf.schema_arrow.metadata or {}):
        raise UnreadableFile(
            "the hidden truth of a simulation (`yieldmeter validate --truth` reads it): not data to "
            "import; the simulated sources are beside it (otlp/, tables/, billing/)"
        )
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
