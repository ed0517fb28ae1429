"""The store: the only code that talks to the database.

One embedded DuckDB file. Writes arrive as Arrow tables of canonical rows and
go through :meth:`Store.write_batch`, which in one transaction

* keeps the last of repeated ids inside the batch, as a later batch would replace it
  (an identical repeat is counted as a duplicate, one with other content as replaced),
* counts rows identical to what is stored as duplicates and changes nothing (the
  ``source`` they came from aside: the same rows from a copy of a file are duplicates),
* replaces rows whose id is stored with other content (an upsert),
* inserts the rest, and the batch's rejects into ``quarantine``;
* counts a framework or agent span's usage once when the call under it comes in another
  write (:meth:`Store._take_back_sums`).

A crash before the commit leaves nothing of the batch; after it, everything.
Only one writer at a time (a lock); readers use cursors of the same database.
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from yieldmeter.ingest.base import UNENDED_LINE
from yieldmeter.ingest.conform import stable_id
from yieldmeter.ingest.otlp_common import (
    as_summed,
    call_parents,
    split_sums_with_calls,
    summing_calls,
)
from yieldmeter.ingest.otlp_semconv import SUMMING_OPERATIONS
from yieldmeter.schema import QUARANTINE_SCHEMA, SCHEMA_VERSION, SUMMED_SCHEMA, TABLES, Table

log = logging.getLogger(__name__)

#: Tables the store keeps for itself (not user input).
INTERNAL_TABLES: dict[str, pa.Schema] = {
    "quarantine": QUARANTINE_SCHEMA,
    "model_map": pa.schema(
        [
            pa.field("provider", pa.string()),  # as calls report it ('' when absent)
            pa.field("model", pa.string()),
            pa.field("price_provider", pa.string()),
            pa.field("price_model", pa.string()),
            pa.field("how", pa.string()),
        ]
    ),
    "meta": pa.schema([pa.field("key", pa.string()), pa.field("value", pa.string())]),
    #: the spans of summing calls (:data:`SUMMING_OPERATIONS`) kept as structure, by the span
    #: mapping or the store, with a parent: a summing span above them that arrives later finds
    #: the call under it through them (:meth:`Store._take_back_sums`). Schema 4 stores hold a
    #: row for each span above them too, which reads the same.
    "summed_spans": SUMMED_SCHEMA,
}


@dataclass
class WriteResult:
    """What became of the rows of one write."""

    read: int = 0
    landed: int = 0  # inserted or updated
    updated: int = 0  # of landed, rows that replaced a stored row with other content
    duplicates: int = 0
    quarantined: int = 0
    #: calls not stored as calls: a framework or agent span's, whose usage a call under it (in
    #: this write or stored) counts already (:meth:`Store.write_batch`); structure only
    structure: int = 0
    #: stored calls of that kind deleted by this write, which stored a call under them
    taken_back: int = 0
    #: the ids of the ``structure`` calls
    structure_ids: tuple[str, ...] = ()

    def __iadd__(self, other: WriteResult) -> WriteResult:
        self.read += other.read
        self.landed += other.landed
        self.updated += other.updated
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.structure += other.structure
        self.taken_back += other.taken_back
        self.structure_ids += other.structure_ids
        return self


_DUCK_TYPES = {
    "string": "VARCHAR",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
    "double": "DOUBLE",
    "int64": "BIGINT",
    "bool": "BOOLEAN",
    "date32[day]": "DATE",
}


def duck_type(t: pa.DataType) -> str:
    try:
        return _DUCK_TYPES[str(t)]
    except KeyError:
        raise TypeError(f"no DuckDB type for {t}") from None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class StoreUnavailable(RuntimeError):
    """The store cannot be opened by this process; the message says why and what to do."""


class StoreTooNew(StoreUnavailable):
    """The store was written by a newer yieldmeter than this one."""


class StoreInUse(StoreUnavailable):
    """Another process holds the store's file (DuckDB allows one writing process at a time)."""


@dataclass(frozen=True)
class Migration:
    """One ordered step of the store's schema: what it brings the store to, and how."""

    version: int  # the schema version the store has after this step
    description: str
    step: Callable[[duckdb.DuckDBPyConnection], None]  # runs inside the migration's transaction


def _stored_columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """The names of the columns the store's ``table`` has (none: no such table)."""
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
    ).fetchall()
    return {r[0] for r in rows}


def _rekey_focus_items(con: duckdb.DuckDBPyConnection) -> None:
    """Give the stored FOCUS cost items the id of their charge (:func:`~yieldmeter.ingest.focus.charge_key`).

    Their ids used to hash the whole billing row (or its ``Id``), so a billing period delivered
    again with other amounts added its rows beside the ones stored. The ids are computed from
    what the store holds of each row (:func:`~yieldmeter.ingest.focus.stored_charge_ids`); rows
    of one charge are numbered charges first, then credits and corrections, each in the order of
    their old ids (a later import numbers them in file order: the same rows, so a re-import
    still replaces them).
    """
    from yieldmeter.ingest.focus import KEY_COLUMNS, stored_charge_ids

    has = _stored_columns(con, "cost_items")
    if not {"item_id", "attributes", "period_start", "period_end"} <= has:
        return
    select = ", ".join(_q(c) if c in has else f"NULL AS {_q(c)}" for c in KEY_COLUMNS)
    # a correction stored before schema 3 kept no ChargeClass, so it shares its charge's key: the
    # charge, imported first, is number 1 on every later import of its file
    amount = "amount" if "amount" in has else "0.0"
    rows = con.execute(
        f"SELECT item_id, attributes, {select} FROM cost_items "
        "WHERE contains(attributes, '\"ChargeCategory\"') AND contains(attributes, '\"BilledCost\"') "
        f"ORDER BY {amount} < 0, item_id"
    ).to_arrow_table()
    moves = stored_charge_ids(rows.to_pylist())
    if not moves:
        return
    old, new = zip(*moves, strict=True)
    con.register("_rekey", pa.table({"old": list(old), "new": list(new)}))
    try:
        con.execute(
            "UPDATE cost_items SET item_id = _rekey.new FROM _rekey WHERE cost_items.item_id = _rekey.old"
        )
    finally:
        con.unregister("_rekey")
    Store._mark_written(con, ["cost_items"])


def _flag_stored_calls(con: duckdb.DuckDBPyConnection) -> None:
    """Migration 4: a store that holds calls reads every call at its next derivation."""
    if con.execute("SELECT count(*) FROM (SELECT 1 FROM calls LIMIT 1)").fetchone()[0]:
        Store._put_meta(con, UNDERIVED, "1")


#: The ``attributes`` key in which schema 4 kept the parents of the summing spans the span mapping
#: kept as structure above a call (nearest first, comma-separated); now ``summed_spans`` rows
_SUMMED_PARENTS = "yieldmeter.summed_parents"


def _parents_to_column(con: duckdb.DuckDBPyConnection, chunk: int = 100_000) -> None:
    """Migration 5: a call's parent span moves from ``attributes`` (``parent_span_id``) to its
    column, and the parents of the summing spans the span mapping kept as structure above it
    (:data:`_SUMMED_PARENTS`) to ``summed_spans``, one row per span with its parent, as the span
    mapping now writes them (with the call's start: schema 4 kept no other). ``attributes`` keep
    the rest, written as the mapping writes them now (``null`` when nothing is left), so a span
    sent again is a duplicate, not a change. Rows are rewritten ``chunk`` at a time, which
    bounds the memory of a large store.
    """
    if not {"call_id", "trace_id", "ts", "attributes"} <= _stored_columns(con, "calls"):
        return
    con.execute(f"ALTER TABLE calls ADD COLUMN IF NOT EXISTS parent_span_id {duck_type(pa.string())}")
    cols = ", ".join(f"{_q(f.name)} {duck_type(f.type)}" for f in SUMMED_SCHEMA)
    con.execute(f"CREATE TABLE IF NOT EXISTS summed_spans ({cols})")
    last = con.execute("SELECT max(rowid) FROM calls").fetchone()[0]
    moved = False
    for lo in range(0, (last or 0) + 1, chunk):  # by row number: DuckDB reads only those rows
        part = con.execute(
            "SELECT rowid, trace_id, ts, attributes FROM calls WHERE rowid >= ? AND rowid < ? "
            "AND (contains(attributes, '\"parent_span_id\":') OR contains(attributes, ?))",
            [lo, lo + chunk, f'"{_SUMMED_PARENTS}":'],
        ).fetchall()
        rows, parents, attrs = [], [], []
        links: list[tuple[str, str, str, datetime]] = []
        for row, trace_id, ts, text in part:
            try:
                doc = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict):
                continue
            parent = doc.pop("parent_span_id", None)
            above = doc.pop(_SUMMED_PARENTS, None)
            parent = parent if isinstance(parent, str) and parent else None
            if parent and isinstance(above, str) and trace_id:
                chain = [parent, *(p for p in above.split(",") if p)]
                links += [(trace_id, a, b, ts) for a, b in itertools.pairwise(chain)]
            rows.append(row)
            parents.append(parent)
            attrs.append(orjson.dumps(doc).decode() if doc else None)
        if not rows:
            continue
        moved = True
        con.register("_moved", pa.table({"r": rows, "p": parents, "a": attrs}, schema=_MOVED))
        try:
            con.execute(
                "UPDATE calls SET parent_span_id = m.p, attributes = m.a FROM _moved m "
                "WHERE calls.rowid = m.r"
            )
        finally:
            con.unregister("_moved")
        if links:
            con.register("_links", pa.Table.from_pylist(
                [dict(zip(SUMMED_SCHEMA.names, link, strict=True)) for link in links], schema=SUMMED_SCHEMA
            ))  # fmt: skip
            try:
                con.execute("INSERT INTO summed_spans SELECT DISTINCT * FROM _links")
            finally:
                con.unregister("_links")
    if moved:
        Store._mark_written(con, ["calls"])


_MOVED = pa.schema([pa.field("r", pa.int64()), pa.field("p", pa.string()), pa.field("a", pa.string())])


#: The store's ordered migration steps. Additive changes (a new table or column) need none:
#: :meth:`Store.migrate` makes them itself. A change that renames, retypes or rewrites data, or
#: that older versions must not write under (2: writes are recorded per table, and tables derived
#: from them are trusted while those records are unchanged), adds a step here and raises
#: :data:`~yieldmeter.schema.SCHEMA_VERSION` to its version.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        2,
        "every write records a token per table in meta (written:<table>), which derived tables kept "
        "in the store are checked against; a yieldmeter that does not record them must not write here",
        lambda con: None,
    ),
    Migration(
        3,
        "FOCUS cost items are named by their charge, not by the whole billing row, so a billing "
        "period delivered again replaces its rows; the stored ones take their charge's id",
        _rekey_focus_items,
    ),
    Migration(
        4,
        "a batch derives its work units from the calls since their start (underived_calls); "
        "calls an older version stored may have no derived unit, so every call is read until "
        "the next whole derivation, and a version that does not know the flag must not write here",
        _flag_stored_calls,
    ),
    Migration(
        5,
        "a call's parent span is a column (parent_span_id), no longer a key of its attributes, and the "
        "framework and agent spans the span mapping kept as structure are rows of summed_spans, no "
        "longer a key of the call under them (yieldmeter.summed_parents)",
        _parents_to_column,
    ),
)

#: The prefix of the ``meta`` keys that record the last write of each table: ``written:<table>``
#: holds a new random token after every write to ``<table>``, set in the write's own transaction.
WRITTEN = "written:"
#: The prefix of the ``meta`` keys that record what a kept copy of a derived table was made from
#: (:meth:`Store.keep_copy`).
KEPT = "kept:"
#: The ``meta`` key set while the work units may not be what their calls make: calls written
#: without deriving their units (``write_batch`` without ``derive_units``, ``append``,
#: ``replace``), work units replaced or appended, a work unit input that says it was derived (its
#: start is not known to be its calls'), a store an older version wrote (migration 4). Cleared by
#: a whole :meth:`Store.derive_work_units` (``Store.derive_if_unsure``). While it is unset, every
#: derived unit's calls start at or after its ``started_at`` and a unit with no row has no calls,
#: which lets a batch's derivation read only the calls from there on.
UNDERIVED = "underived_calls"
#: The tables whose writes outside the upsert leave the derived work units unsure
_UNIT_INPUTS = ("calls", "work_units")


#: The table whose ids are looked up through :class:`_KeyHashes` before the stored column is
#: read: ``calls``, by far the largest, written to by every batch of telemetry.
KEY_HASHED = "calls"
#: The internal table of summing spans kept as structure (:meth:`Store._take_back_sums`)
SUMMED_SPANS = "summed_spans"
#: The ``meta`` tokens that tell whether :class:`_KeyHashes` are current (:meth:`Store._key_hashes`)
_KEY_TOKENS = (WRITTEN + KEY_HASHED, WRITTEN + SUMMED_SPANS)


class _Hashes:
    """A growing set of DuckDB ``hash()`` values, sorted, that answers "may this be here?"."""

    def __init__(self, hashes: np.ndarray) -> None:
        self.base = np.sort(hashes.astype(np.uint64))
        self.recent = np.zeros(0, np.uint64)

    def may_hold(self, hashes: np.ndarray) -> np.ndarray:
        return _in_sorted(self.base, hashes) | _in_sorted(self.recent, hashes)

    def add(self, hashes: np.ndarray) -> None:
        # new hashes gather in a small sorted array, merged into the large one once it is an
        # eighth of it: each write sorts the small one only
        self.recent = np.sort(np.concatenate([self.recent, hashes.astype(np.uint64)]))
        if len(self.recent) > max(len(self.base) // 8, 1 << 16):
            self.base = np.sort(np.concatenate([self.base, self.recent]))
            self.recent = np.zeros(0, np.uint64)


class _KeyHashes(_Hashes):
    """DuckDB's ``hash()`` of every stored id of :data:`KEY_HASHED`, or more, in this process.

    An id whose hash is not here is not stored, so a batch of fresh ids skips the semi join
    that reads the whole id column (a scan that grows with the store: 23 ms a write at
    900,000 calls). An id whose hash is here (a re-send, or a rare collision) goes to the
    semi join as before. Hashes are added before the commit and never taken out, so a
    rolled-back write or a deleted row leaves a superset, which costs a semi join, never a
    duplicate. ``hash()`` may change between DuckDB versions: the hashes live in memory
    only and are made again in each process. 8 bytes a stored call.
    """

    def __init__(self, hashes: np.ndarray, token: str | None) -> None:
        super().__init__(hashes)
        #: the ids of the stored summing calls (``SUMMING_OPERATIONS``), or more, read when first
        #: needed (:meth:`Store._take_back_sums`)
        self.summing: set[str] | None = None
        #: the hashes of the call ids (``trace_id-parent_span_id``) of the spans above every stored
        #: call and summed span, or more, read when a summing call first comes: one whose id is
        #: not here has no call under it in the store, and its write reads no stored call for it
        #: (8 bytes a stored call; each write adds its own while it is kept)
        self.parents: _Hashes | None = None
        #: the ``written:`` token of the table these hashes are current for
        self.token = token
        #: that of ``summed_spans``, which ``parents`` are current for
        self.summed_token: str | None = None


#: DuckDB's hash of the call id of the span above a row of ``calls`` or ``summed_spans`` (a call
#: id is ``trace_id-span_id``), null without one
_PARENT_HASH = (
    "CASE WHEN parent_span_id IS NOT NULL AND trace_id IS NOT NULL "
    "THEN hash(trace_id || '-' || parent_span_id) END"
)


def _present(column: np.ndarray) -> np.ndarray:
    """The values of a fetched column but its nulls (a masked array where it has them)."""
    return column.compressed() if np.ma.isMaskedArray(column) else column


_TS = pa.timestamp("us", tz="UTC")
#: How far outside a summing call's own time a call under it is looked for (clock skew between
#: the processes of one trace; a call and its framework step usually share one clock)
_SUM_SLACK = timedelta(minutes=1)


@dataclass
class _Sums:
    """What :meth:`Store._take_back_sums` did to a write's calls."""

    kept: pa.Table = field(default_factory=lambda: pa.table({}))
    structure: int = 0  # incoming calls not kept
    structure_ids: tuple[str, ...] = ()
    taken_back: int = 0  # stored calls deleted
    recorded: bool = False  # rows written to ``summed_spans``
    #: work units and start times of the deleted calls, whose derived units are rebuilt
    units: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    starts: pa.Array = field(default_factory=lambda: pa.array([], _TS))


def _in_sorted(sorted_hashes: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    if not len(sorted_hashes):
        return np.zeros(len(hashes), bool)
    at = np.minimum(np.searchsorted(sorted_hashes, hashes), len(sorted_hashes) - 1)
    return sorted_hashes[at] == hashes


class StoreBusy(RuntimeError):
    """The writer is held by another write for longer than the caller would wait."""


class Store:
    """A DuckDB-backed canonical store. Create with :meth:`open`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path | None) -> None:
        self.con = con
        self.path = path
        self._write_lock = threading.Lock()
        self._ibis: Any = None
        self._stored_keys: _KeyHashes | None = None

    # -- lifecycle -----------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str | None) -> Store:
        """Open (or create) the store file at ``path``; ``None`` for in-memory."""
        p = Path(path) if path is not None else None
        if p is not None:
            p.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(p) if p is not None else ":memory:")
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                # not a DuckDB file, a damaged one, or one this DuckDB cannot read: said, not a trace
                raise StoreUnavailable(f"the store {p} cannot be opened: {exc}") from None
            holder = str(exc).partition("Conflicting lock is held in ")[2].partition(". See also")[0]
            holder = holder.strip().rstrip(".")
            raise StoreInUse(
                f"the store {p} is in use by another process{f' ({holder})' if holder else ''}: "
                "stop it first (a running `yieldmeter serve` takes records, keys and budgets "
                "through its REST API; see docs/server.md)"
            ) from None
        con.execute("SET TimeZone = 'UTC'")
        # a library does not draw on its caller's terminal: DuckDB draws a progress bar on
        # standard output for a query past two seconds (a re-score of a large store, inside a
        # server's log or across the CLI's own progress)
        con.execute("SET enable_progress_bar_print = false")
        # DuckDB's allocator hands freed memory back on threads of its own, not only when a
        # query ends past a threshold: a re-score after a 1M-span import peaked ~60 MB lower
        con.execute("SET allocator_background_threads = true")
        store = cls(con, p)
        store.migrate()
        return store

    def close(self) -> None:
        self.con.close()

    def set_threads(self, n: int) -> None:
        """DuckDB's worker threads for every query of this database (``1``: each query runs on the
        thread that asked for it, at that thread's priority)."""
        self.con.execute(f"SET threads = {int(n)}")

    def set_checkpoint_threshold(self, size: str) -> None:
        """The WAL size (a DuckDB size such as ``'256MB'``) at which a commit also checkpoints.

        A checkpoint writes the changed row groups into the file and blocks the
        committing writer meanwhile; a server under continuous load raises the
        threshold and checkpoints when idle (:meth:`checkpoint`) instead.
        """
        self.con.execute("SET checkpoint_threshold = ?", [size])

    @contextmanager
    def bulk(self, checkpoint_threshold: str = "128MB") -> Iterator[None]:
        """A bulk import: a checkpoint every ``checkpoint_threshold`` of WAL, not every 16 MB, and
        one at the end.

        DuckDB checkpoints inside every commit that takes the WAL past its threshold (16 MB
        by default), and each checkpoint rewrites row groups of tables that keep growing: a
        1.2M-row CSV import took 68 s that way, 38 s with a 512 MB threshold. What the WAL
        holds and the file does not yet is held in memory too, which took a 1M-span OTLP
        import to 1.4 GiB at 512 MB; 128 MB was as fast at 0.95 GiB (``docs/architecture.md``).
        Every commit stays durable (it is in the WAL).
        """
        previous = self.con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
        self.set_checkpoint_threshold(checkpoint_threshold)
        try:
            yield
        finally:
            if previous:
                self.set_checkpoint_threshold(str(previous[0]))
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write the WAL into the database file now (under the write lock, between transactions)."""
        with self._write_lock:
            self.con.execute("CHECKPOINT")

    @property
    def ibis(self) -> Any:
        """An Ibis backend over the same connection (lazily created)."""
        if self._ibis is None:
            import ibis

            self._ibis = ibis.duckdb.from_connection(self.con)
        return self._ibis

    def schema_signature(self) -> tuple[tuple[str, str, str], ...]:
        """Every (table, column, type) of the store's tables, in order: one catalog query, which
        tells when table expressions bound earlier (:meth:`Workspace.tables`) still fit the store
        (a table created, dropped and made again with the same columns, as a kept copy is, fits)."""
        return tuple(
            self.con.execute(
                "SELECT table_name, column_name, data_type FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = 'main' "
                "ORDER BY table_name, column_index"
            ).fetchall()
        )

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for a reader thread."""
        cur = self.con.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        return cur

    # -- schema --------------------------------------------------------------------
    def migrate(self, migrations: Sequence[Migration] | None = None, target: int = SCHEMA_VERSION) -> None:
        """Bring the store to schema ``target`` in one transaction, and record it.

        1. A store written by a newer yieldmeter (a higher recorded version) is refused with
           :class:`StoreTooNew`: this version would misread it.
        2. Each step of ``migrations`` (default :data:`MIGRATIONS`) whose version lies above the
           recorded one and at or below ``target`` runs, in version order.
        3. Additive changes need no step: a table or column declared in
           :mod:`yieldmeter.schema` that the store lacks is created with its default.

        A failing step rolls everything back: the store stays at its recorded version.
        A new store is created at ``target`` and runs no step.
        """
        steps = sorted(MIGRATIONS if migrations is None else migrations, key=lambda m: m.version)
        with self.transaction():
            stored = self._stored_version()
            if stored is not None and stored > target:
                raise StoreTooNew(
                    f"{self.path or 'the store'} was written by a newer yieldmeter (schema {stored}); "
                    f"this one reads schema {target} and older: upgrade yieldmeter"
                )
            if stored is not None:
                self._ensure("meta", INTERNAL_TABLES["meta"], {})  # a step may record in it
                for m in steps:
                    if stored < m.version <= target:
                        m.step(self.con)
            for t in TABLES.values():
                self._ensure(t.name, t.arrow_schema, {c.name: c.default for c in t.columns})
            for name, schema in INTERNAL_TABLES.items():
                self._ensure(name, schema, {})
            self._put_meta(self.con, "schema_version", str(target))

    def _stored_version(self) -> int | None:
        """The schema version recorded in the store; ``None`` for a new store (no ``meta``)."""
        has_meta = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
        ).fetchone()
        if not has_meta or not has_meta[0]:
            # tables without meta: a store from before versions were recorded (version 1)
            other = self.con.execute("SELECT count(*) FROM information_schema.tables").fetchone()
            return 1 if other and other[0] else None
        row = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 1

    def ensure_table(self, name: str, schema: pa.Schema) -> None:
        """Create a table owned by a later layer (e.g. scores) if it is missing (a write of it:
        whether the scores table exists changes what the measures read)."""
        with self.transaction() as con:
            if self._ensure(name, schema, {}):
                self._mark_written(con, [name])

    def add_missing_columns(self, schemas: Mapping[str, pa.Schema]) -> None:
        """Give the tables of ``schemas`` that the store has the columns they lack, as nulls: a
        later layer's table written by an older yieldmeter reads like a new one. A table the
        store does not have is not created (its layer creates it when it first writes it)."""
        tables = self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        present = {r[0] for r in tables}
        if present & schemas.keys():
            with self.transaction():
                for name, schema in schemas.items():
                    if name in present:
                        self._ensure(name, schema, {})

    def _ensure(self, name: str, schema: pa.Schema, defaults: dict[str, object]) -> bool:
        """Create the table, or add the columns it lacks; True when it was created."""
        existing = _stored_columns(self.con, name)
        if not existing:
            cols = ", ".join(f"{_q(f.name)} {duck_type(f.type)}" for f in schema)
            self.con.execute(f"CREATE TABLE {_q(name)} ({cols})")
            return True
        for f in schema:
            if f.name not in existing:
                default = defaults.get(f.name)
                clause = ""
                if default is not None:
                    lit = f"'{default}'" if isinstance(default, str) else str(default)
                    clause = f" DEFAULT {lit}"
                self.con.execute(
                    f"ALTER TABLE {_q(name)} ADD COLUMN {_q(f.name)} {duck_type(f.type)}{clause}"
                )
        return False

    def meta(self, key: str) -> str | None:
        return self._metas(self.con, (key,)).get(key)

    @staticmethod
    def _metas(con: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> dict[str, str]:
        """The ``meta`` values of ``keys`` that are set, in one statement."""
        marks = ", ".join("?" * len(keys))  # a list parameter (``= ANY(?)``) plans twice as slow
        return dict(con.execute(f"SELECT key, value FROM meta WHERE key IN ({marks})", list(keys)).fetchall())

    def written(self) -> dict[str, str]:
        """The token of the last write of each table (``meta`` keys ``written:<table>``): a table's
        token changes with every write to it, so a result derived from tables is still current
        while the tokens it was made from are unchanged."""
        rows = self.con.execute(
            "SELECT key, value FROM meta WHERE starts_with(key, ?) ORDER BY key", [WRITTEN]
        ).fetchall()
        return {k[len(WRITTEN) :]: v for k, v in rows}

    @staticmethod
    def _mark_written(con: duckdb.DuckDBPyConnection, names: Iterable[str]) -> str:
        """Record a write to ``names`` (inside the caller's transaction): a new token for each,
        returned."""
        token = uuid.uuid4().hex
        Store._put_metas(con, {WRITTEN + name: token for name in sorted(set(names))})
        return token

    @staticmethod
    def _put_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
        """Set ``meta[key]`` inside the caller's transaction."""
        Store._put_metas(con, {key: value})

    @staticmethod
    def _put_metas(con: duckdb.DuckDBPyConnection, values: Mapping[str, str]) -> None:
        """Set ``meta[key]`` to each of ``values`` inside the caller's transaction, in two
        statements however many (every write marks two or three tables written)."""
        if not values:
            return
        keys = list(values)
        con.execute(f"DELETE FROM meta WHERE key IN ({', '.join('?' * len(keys))})", keys)
        rows = ", ".join(["(?, ?)"] * len(keys))
        con.execute(f"INSERT INTO meta VALUES {rows}", [x for kv in values.items() for x in kv])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as con:
            self._put_meta(con, key, value)

    # -- copies of derived tables ------------------------------------------------------
    def kept_stamp(self, name: str) -> str | None:
        """What the kept copy ``name`` was recorded with by :meth:`keep_copy` (None: none kept)."""
        return self.meta(KEPT + name)

    def keep_copy(self, name: str, source: str, stamp: str, *, current: Callable[[], bool]) -> bool:
        """Replace the table ``name`` with a copy of this connection's temporary table ``source``,
        recorded with ``stamp`` (``meta`` key ``kept:<name>``), in one transaction. Skipped (False)
        when another write holds the store, when ``current()``, asked inside the transaction, says
        the copy would be of data changed since, or when the copy cannot be written (a full disk, a
        read-only file: only logged, what was computed from it stands)."""
        try:
            with self.transaction(timeout=0) as con:
                if not current():
                    return False
                con.execute(f"DROP TABLE IF EXISTS main.{_q(name)}")
                con.execute(f"CREATE TABLE main.{_q(name)} AS SELECT * FROM temp.{_q(source)}")
                self._put_meta(con, KEPT + name, stamp)
        except StoreBusy:
            return False
        except duckdb.Error:
            log.warning("could not keep %s in the store", name, exc_info=True)
            return False
        return True

    # -- transactions ----------------------------------------------------------------
    @contextmanager
    def transaction(self, timeout: float = -1) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the writer and run a transaction; roll back on any error."""
        if not self._write_lock.acquire(timeout=timeout):
            raise StoreBusy("the store is busy with another write")
        try:
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield self.con
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")
        finally:
            self._write_lock.release()

    # -- writes ----------------------------------------------------------------------
    def write(self, table_name: str, rows: pa.Table, rejects: pa.Table | None = None) -> WriteResult:
        return self.write_batch({table_name: rows}, rejects)[table_name]

    def write_batch(
        self,
        tables: dict[str, pa.Table],
        rejects: pa.Table | None = None,
        *,
        timeout: float = -1,
        derive_units: bool = False,
        waiting_signals: str | None = None,
        settle: tuple[str, Sequence[int]] | None = None,
        summed: pa.Table | None = None,
    ) -> dict[str, WriteResult]:
        """Write several tables and their rejects in one transaction.

        With ``derive_units``, the work units that the batch's calls reference
        and no input described are (re)derived in the same transaction, so the
        batch and what follows from it commit together (one commit, not two).
        ``waiting_signals``: the source of signals that may have come before their calls (a
        Langfuse score sent before its trace waits on the trace or observation id); those
        that wait on a trace or span of the batch's calls join their work unit, in the same
        transaction (:meth:`_join_waiting_signals`).
        ``settle``: (source, line numbers): that file's quarantine rows of an unended last line
        (:data:`~yieldmeter.ingest.base.UNENDED_LINE`) at those lines are deleted: the import
        read each line whole, so each has an outcome of its own.
        ``summed``: the framework and agent spans with usage the span mapping kept as structure
        (``Batch.summed``): counted as ``structure`` calls, and kept where a summing span above
        them that comes later finds them (:meth:`_take_back_sums`).
        """
        results: dict[str, WriteResult] = {name: WriteResult() for name in tables}
        with self.transaction(timeout) as con:
            settled = settle is not None and self._settle_unended(con, *settle)
            summed = SUMMED_SCHEMA.empty_table() if summed is None else summed
            sums = _Sums()
            calls = tables.get("calls")
            keys = None  # the stored calls' id hashes, read once for both steps
            state: dict[str, str] = {}
            if calls is not None and calls.num_rows:
                state = self._metas(con, (*_KEY_TOKENS, UNDERIVED))
                keys = self._key_hashes(con, state)
                sums = self._take_back_sums(con, calls, keys, summed)
                tables = {**tables, "calls": sums.kept}
            for name, rows in tables.items():
                if rows.num_rows:
                    results[name] = self._upsert(
                        con, TABLES[name], rows, keys if name == KEY_HASHED else None
                    )
            mapped = summed.num_rows
            if mapped:
                # a request sent again brings its calls again: when calls were written and none
                # was stored before (nor kept as structure: those are not written), the steps the
                # mapping kept are new too, and need no look for their copies
                written = results.get("calls", WriteResult())
                new = sums.kept.num_rows > 0 and not (written.duplicates or written.updated or sums.structure)
                self._record_summed(con, summed, new=new, keys=keys or self._key_hashes(con))
                sums.recorded = True
            if sums.structure or sums.taken_back or mapped:
                result = results.setdefault("calls", WriteResult())
                result.read += sums.structure + mapped
                result.structure = sums.structure + mapped
                result.taken_back = sums.taken_back
                result.structure_ids = sums.structure_ids
            if rejects is not None and rejects.num_rows:
                counts = self._quarantine(con, rejects)
                for name, n in counts.items():
                    results.setdefault(name, WriteResult())
                    results[name].quarantined += n
                    results[name].read += n
            calls = tables.get("calls")
            if calls is not None and (results["calls"].landed or sums.taken_back):
                if derive_units:
                    units = pc.drop_null(
                        pc.unique(pa.concat_arrays([*calls.column("work_unit_id").chunks, sums.units]))
                    )
                    units = units.filter(pc.not_equal(units, ""))
                    if len(units):
                        self._derive_batch_units(
                            con,
                            units,
                            pc.min(pa.concat_arrays([*calls.column("ts").chunks, sums.starts])).as_py(),
                            underived=UNDERIVED in state,
                        )
                else:
                    self._set_underived(con, True)
            if self._says_derived(tables.get("work_units")):
                self._set_underived(con, True)  # a start that need not be its calls'
            touched = [
                name
                for name, rows in tables.items()
                if rows.num_rows or (name == "calls" and sums.taken_back)
            ]
            landed = calls is not None and results["calls"].landed
            if waiting_signals and landed and self._join_waiting_signals(con, calls, waiting_signals):
                touched.append("signals")
            if (rejects is not None and rejects.num_rows) or settled:
                touched.append("quarantine")
            if derive_units and "calls" in touched:
                touched.append("work_units")
            if sums.recorded:
                touched.append(SUMMED_SPANS)
            token = self._mark_written(con, touched)
            if self._stored_keys is not None:  # what this write leaves: the hashes are current
                if "calls" in touched:
                    self._stored_keys.token = token
                if sums.recorded:
                    self._stored_keys.summed_token = token
        return results

    def _take_back_sums(
        self, con: duckdb.DuckDBPyConnection, calls: pa.Table, keys: _KeyHashes, summed: pa.Table
    ) -> _Sums:
        """Keep a span's usage once when a summing call (:data:`SUMMING_OPERATIONS`) and a call
        under it arrive in different writes, as the span mapping does inside one request.

        A call of this write whose parent span is a stored summing call deletes that call; a
        summing call of this write with a call under it (in this write, or stored) is not kept.
        ``summed``: the summing spans the span mapping kept as structure (a call of their request
        under them, :data:`~yieldmeter.schema.SUMMED_SCHEMA`); their parents count
        as the calls' parents (they are recorded in ``summed_spans`` once the calls are written,
        :meth:`write_batch`). The summing calls this step keeps as structure or deletes are
        recorded there too, so a summing span above them that comes later finds the call under
        it. The ids of the stored summing calls are kept in memory beside the id hashes (one
        scan of ``operation`` when first needed), so a write with no summing call on either
        side reads nothing more; so are the hashes of the spans above the stored calls and
        summed spans (``_KeyHashes.parents``, one scan when the first summing call comes), so
        stored calls are read only for a summing call of this write that one may be under, by
        their parent span, in the time of that call.
        """
        sums = _Sums(kept=calls)
        if keys.summing is None:
            keys.summing = {
                r[0]
                for r in con.execute(
                    "SELECT call_id FROM calls WHERE list_contains(?, operation)", [list(SUMMING_OPERATIONS)]
                ).fetchall()
            }
        summing = summing_calls(calls)
        incoming = bool(pc.any(summing).as_py())
        if not keys.summing and not incoming:
            return sums  # the common case: no summing call stored, none written now
        candidates = [p for p in pc.unique(call_parents(calls, summed)).to_pylist() if p in keys.summing]
        if candidates:
            deleted = con.execute(
                "DELETE FROM calls WHERE call_id IN (SELECT unnest($ids)) AND list_contains($ops, operation) "
                "RETURNING work_unit_id, ts, trace_id, span_id, parent_span_id",
                {"ids": candidates, "ops": list(SUMMING_OPERATIONS)},
            ).to_arrow_table()
            if deleted.num_rows:  # their ids stay in ``keys.summing``: a superset costs a probe
                self._record_summed(con, deleted, keys=keys)
                sums.recorded = True
                sums.taken_back = deleted.num_rows
                sums.units = deleted.column("work_unit_id").combine_chunks().cast(pa.string())
                sums.starts = deleted.column("ts").combine_chunks().cast(sums.starts.type)
        if incoming:
            ours = calls.filter(summing)
            if keys.parents is None:  # one scan, the first time a summing call comes
                found = con.execute(
                    f"SELECT {_PARENT_HASH} AS h FROM calls UNION ALL SELECT {_PARENT_HASH} FROM summed_spans"
                ).fetchnumpy()["h"]
                keys.parents = _Hashes(_present(found))
            hashed = con.execute(
                "SELECT list_transform($ids, lambda x: hash(x))", {"ids": ours.column("call_id").to_pylist()}
            ).fetchone()[0]
            ours = ours.filter(pa.array(keys.parents.may_hold(np.array(hashed, np.uint64))))
            under = [summed]
            if ours.num_rows:  # a call or a summed span under them may be stored: read them
                under.append(self._stored_under(con, ours))
            sums.kept, dropped = split_sums_with_calls(calls, call_parents(*under))
            sums.structure = dropped.num_rows
            if sums.structure:
                sums.structure_ids = tuple(dropped.column("call_id").to_pylist())
                self._record_summed(con, dropped, keys=keys)
                sums.recorded = True
            keys.summing.update(sums.kept.column("call_id").filter(summing_calls(sums.kept)).to_pylist())
        return sums

    @staticmethod
    def _stored_under(con: duckdb.DuckDBPyConnection, summing: pa.Table) -> pa.Table:
        """The stored calls and summed spans whose parent is one of the ``summing`` calls' spans
        (``trace_id``, ``parent_span_id``), read within :data:`_SUM_SLACK` of those calls' time
        (one statement: each costs milliseconds whatever it reads)."""
        lo = pc.min(summing.column("ts")).as_py() - _SUM_SLACK
        ends = pc.add(
            pc.cast(summing.column("ts"), pa.int64()),
            pc.cast(pc.multiply(pc.fill_null(summing.column("duration_ms"), 0.0), 1000.0), pa.int64()),
        )
        hi = datetime.fromtimestamp(pc.max(ends).as_py() / 1e6, UTC) + _SUM_SLACK
        return con.execute(
            "WITH s AS (SELECT unnest($spans) AS s) "
            "SELECT trace_id, parent_span_id FROM calls WHERE ts BETWEEN $lo AND $hi "
            "AND parent_span_id IN (SELECT s FROM s) "
            "UNION ALL SELECT trace_id, parent_span_id FROM summed_spans WHERE ts BETWEEN $lo AND $hi "
            "AND parent_span_id IN (SELECT s FROM s)",
            {"lo": lo, "hi": hi, "spans": pc.drop_null(pc.unique(summing.column("span_id"))).to_pylist()},
        ).to_arrow_table()

    @staticmethod
    def _record_summed(
        con: duckdb.DuckDBPyConnection, spans: pa.Table, new: bool = False, keys: _KeyHashes | None = None
    ) -> None:
        """Keep the summing spans kept as structure (``summed_spans``): their place in their trace,
        each once, where they have a parent (a summing span above them may come later).

        A span sent again has the same start, so only the stored spans of the batch's time are
        read, give or take :data:`_SUM_SLACK` (migration 5 gave the spans it moved their call's
        start); the table grows in time order, so DuckDB skips the rest by their ``ts`` range.
        With ``new`` (the caller knows none is stored), none are: that look costs a write
        about 2 ms.
        """
        spans = as_summed(spans)
        linked = pc.and_(pc.is_valid(spans.column("trace_id")), pc.is_valid(spans.column("parent_span_id")))
        spans = spans.filter(linked)
        if not spans.num_rows:
            return
        bounds = pc.min_max(spans.column("ts")).as_py()
        con.register("_summed", spans)
        try:
            if new:
                con.execute("INSERT INTO summed_spans SELECT DISTINCT * FROM _summed")
            else:
                con.execute(
                    "INSERT INTO summed_spans SELECT DISTINCT n.* FROM _summed n WHERE NOT EXISTS "
                    "(SELECT 1 FROM summed_spans s WHERE s.ts BETWEEN $lo AND $hi "
                    "AND s.trace_id = n.trace_id AND s.span_id = n.span_id "
                    "AND s.parent_span_id = n.parent_span_id)",
                    {"lo": bounds["min"] - _SUM_SLACK, "hi": bounds["max"] + _SUM_SLACK},
                )
            if keys is not None and keys.parents is not None:
                above = con.execute(f"SELECT {_PARENT_HASH} AS h FROM _summed").fetchnumpy()["h"]
                keys.parents.add(_present(above))
        finally:
            con.unregister("_summed")

    @staticmethod
    def _settle_unended(con: duckdb.DuckDBPyConnection, source: str, lines: Sequence[int]) -> bool:
        """Delete ``source``'s quarantine rows of an unended last line at ``lines``; whether there
        were any."""
        deleted = con.execute(
            "DELETE FROM quarantine WHERE source = ? AND list_contains(?, position) AND ends_with(reason, ?)",
            [source, list(lines), UNENDED_LINE],
        ).fetchone()
        return bool(deleted and deleted[0])

    def unended_lines(self, source: str) -> dict[int, str]:
        """``source``'s quarantined unended last lines (:data:`~yieldmeter.ingest.base.UNENDED_LINE`):
        line number -> the text the row kept, which a later import of the file must read whole
        to settle the row (``write_batch(settle=...)``)."""
        rows = self.con.execute(
            "SELECT position, raw FROM quarantine WHERE source = ? AND ends_with(reason, ?)",
            [source, UNENDED_LINE],
        ).fetchall()
        return {position: raw or "" for position, raw in rows}

    @staticmethod
    def _says_derived(units: pa.Table | None) -> bool:
        """Whether work unit input rows include one marked derived (an export read back)."""
        if units is None or not units.num_rows or "derived" not in units.column_names:
            return False
        return bool(pc.any(pc.fill_null(units.column("derived"), False)).as_py())

    def _upsert(
        self, con: duckdb.DuckDBPyConnection, spec: Table, rows: pa.Table, hashed: _KeyHashes | None = None
    ) -> WriteResult:
        """Insert new ids, replace changed ones, count identical ones; work proportional to the batch.

        The batch is deduplicated in Arrow (the last occurrence of an id wins). The
        stored table is probed on its key column alone, so a batch of new ids
        (the common case: fresh telemetry) reads no other stored column; only
        ids that are stored already are compared column by column.
        """
        n = rows.num_rows
        rows = rows.select(spec.names)
        keys = rows.column(spec.key)
        #: id -> its rows in the batch with content other than the one kept: each landed, then was
        #: replaced in the batch (unless the kept row is what is stored: then nothing changed)
        replaced: dict[Any, int] = {}
        distinct: pa.Table | None = None  # the batch's distinct rows, where an id repeats
        if pc.count_distinct(keys, mode="all").as_py() != n:
            # repeated ids inside the batch: the last one wins, whatever the batch size (nulls
            # count as one id)
            last = (
                pa.table({"k": keys, "_pos": pa.array(range(n), pa.int64())})
                .group_by("k", use_threads=False)
                .aggregate([("_pos", "max")])
                .column("_pos_max")
            )
            distinct = rows.group_by(spec.names, use_threads=False).aggregate([])
            ids, contents_per_id = pc.value_counts(distinct.column(spec.key)).flatten()
            repeated = pc.greater(contents_per_id, 1)
            extra = pc.subtract(contents_per_id.filter(repeated), 1).to_pylist()
            replaced = dict(zip(ids.filter(repeated).to_pylist(), extra, strict=True))
            rows = rows.take(pc.take(last, pc.sort_indices(last)))  # in the batch's order
            keys = rows.column(spec.key)
        staged = rows.num_rows
        key = _q(spec.key)
        target = _q(spec.name)
        con.register("_incoming", rows)
        try:
            stored_keys = (hashed or self._key_hashes(con)) if spec.name == KEY_HASHED else None
            hashes = None
            if stored_keys is not None:
                # with the hashes of the spans above them, once a summing call made them needed
                above = f", {_PARENT_HASH} AS p" if stored_keys.parents is not None else ""
                fetched = con.execute(f"SELECT hash({key}) AS h{above} FROM _incoming").fetchnumpy()
                hashes = fetched["h"]
            if stored_keys is not None and not stored_keys.may_hold(hashes).any():
                matched = pa.chunked_array([], rows.schema.field(spec.key).type)  # none stored
            else:
                matched = (
                    con.execute(
                        f"SELECT s.{key} AS k FROM _incoming s SEMI JOIN {target} t ON s.{key} = t.{key}"
                    )
                    .to_arrow_table()
                    .column("k")
                )
            identical = changed = 0
            if len(matched):
                # re-sent ids: compare every column with what is stored, but where it came from
                compared = [_q(c) for c in spec.names if c != "source"]
                same = " AND ".join(f"s.{c} IS NOT DISTINCT FROM t.{c}" for c in compared)
                con.register("_matched", pa.table({"k": matched}))
                try:
                    flags = con.execute(
                        f"SELECT s.{key} AS k, ({same}) AS same FROM _incoming s "
                        f"JOIN (SELECT * FROM {target} WHERE {key} IN (SELECT k FROM _matched)) t "
                        f"ON s.{key} = t.{key}"
                    ).to_arrow_table()
                finally:
                    con.unregister("_matched")
                same_keys = flags.filter(flags.column("same")).column("k")
                changed_keys = flags.filter(pc.invert(flags.column("same"))).column("k")
                identical, changed = len(same_keys), len(changed_keys)
                if replaced:  # the batch ends where the store is: its repeats changed nothing
                    for k in same_keys.to_pylist():
                        replaced.pop(k, None)
                    self._stored_repeats(con, spec, distinct, changed_keys, replaced, same)
                if changed:
                    con.register("_changed", pa.table({"k": changed_keys}))
                    try:
                        con.execute(f"DELETE FROM {target} WHERE {key} IN (SELECT k FROM _changed)")
                    finally:
                        con.unregister("_changed")
                if identical:
                    con.unregister("_incoming")
                    same_set = same_keys.combine_chunks()
                    rows = rows.filter(pc.invert(pc.is_in(rows.column(spec.key), value_set=same_set)))
                    con.register("_incoming", rows)
            others = 0
            if spec.one_per_derived_key and rows.num_rows:
                # the same identity stored under another id: replaced by the row written now
                same = " AND ".join(f"s.{_q(c)} = t.{_q(c)}" for c in spec.derive_key_from)
                others = con.execute(
                    f"DELETE FROM {target} t WHERE EXISTS (SELECT 1 FROM _incoming s "
                    f"WHERE {same} AND s.{key} <> t.{key})"
                ).fetchone()[0]
            if rows.num_rows:
                col_list = ", ".join(_q(c) for c in spec.names)
                con.execute(f"INSERT INTO {target} ({col_list}) SELECT {col_list} FROM _incoming")
            if stored_keys is not None:
                stored_keys.add(hashes)  # before the commit: a rolled-back write leaves a superset
                if stored_keys.parents is not None:
                    stored_keys.parents.add(_present(fetched["p"]))
        finally:
            con.unregister("_incoming")
        n_replaced = sum(replaced.values())
        return WriteResult(
            read=n,
            landed=staged - identical + n_replaced,
            updated=changed + n_replaced + others,
            duplicates=(n - staged - n_replaced) + identical,
        )

    def _key_hashes(
        self, con: duckdb.DuckDBPyConnection, tokens: Mapping[str, str] | None = None
    ) -> _KeyHashes | None:
        """The hashes of the stored ``calls`` ids, current for this transaction.

        They are kept only while every write to ``calls`` went through this object: the
        ``written:calls`` token is the one its last write left. Any other write (another
        process, ``replace``, ``append``) changed the token, and they are read again, one
        scan of the id column. The hashes of the spans above them (``parents``) are dropped,
        to be read again when needed, after a write of ``summed_spans`` by another object too.
        ``tokens``: the ``meta`` values of :data:`_KEY_TOKENS`, when the caller read them already.
        """
        if tokens is None:
            tokens = self._metas(con, _KEY_TOKENS)
        token = tokens.get(WRITTEN + KEY_HASHED)
        keys = self._stored_keys
        if keys is None or keys.token != token:
            key = _q(TABLES[KEY_HASHED].key)
            hashes = con.execute(f"SELECT hash({key}) AS h FROM {_q(KEY_HASHED)}").fetchnumpy()["h"]
            keys = self._stored_keys = _KeyHashes(hashes, token)
        summed = tokens.get(WRITTEN + SUMMED_SPANS)
        if keys.summed_token != summed:
            keys.parents, keys.summed_token = None, summed
        return keys

    @staticmethod
    def _stored_repeats(
        con: duckdb.DuckDBPyConnection,
        spec: Table,
        distinct: pa.Table | None,
        changed_keys: pa.ChunkedArray,
        replaced: dict[Any, int],
        same: str,
    ) -> None:
        """An earlier row of a repeated id that is what the store holds changed nothing: a
        duplicate, not a row that landed and was replaced (``replaced`` is counted down)."""
        pending = [k for k in changed_keys.to_pylist() if k in replaced]
        if distinct is None or not pending:
            return
        ours = distinct.filter(pc.is_in(distinct.column(spec.key), value_set=pa.array(pending, pa.string())))
        key, target = _q(spec.key), _q(spec.name)
        con.register("_repeats", ours)
        try:
            hits = con.execute(
                f"SELECT s.{key} AS k FROM _repeats s JOIN {target} t ON s.{key} = t.{key} WHERE {same}"
            ).to_arrow_table()
        finally:
            con.unregister("_repeats")
        for k in hits.column("k").to_pylist():
            replaced[k] -= 1

    def _quarantine(self, con: duckdb.DuckDBPyConnection, rejects: pa.Table) -> dict[str, int]:
        now = datetime.now(UTC)
        names = rejects.column("table_name").to_pylist()
        # the row's content is part of its identity: the same bad row ingested again is one row,
        # another bad row at the same place of another request or file (a span 0 of each OTLP
        # request) is another
        ids = [
            stable_id(t, s, p, r, raw)
            for t, s, p, r, raw in zip(
                names,
                rejects.column("source").to_pylist(),
                rejects.column("position").to_pylist(),
                rejects.column("reason").to_pylist(),
                rejects.column("raw").to_pylist(),
                strict=True,
            )
        ]
        q = pa.table(
            {
                "quarantine_id": ids,
                "table_name": rejects.column("table_name"),
                "source": rejects.column("source"),
                "position": rejects.column("position"),
                "reason": rejects.column("reason"),
                "raw": rejects.column("raw"),
                "ingested_at": pa.array(
                    [now] * rejects.num_rows, QUARANTINE_SCHEMA.field("ingested_at").type
                ),
            },
            schema=QUARANTINE_SCHEMA,
        )
        con.register("_rejects", q)
        try:
            # the same bad row re-ingested is quarantined once
            con.execute(
                "INSERT INTO quarantine SELECT * FROM _rejects r "
                "WHERE r.quarantine_id NOT IN (SELECT quarantine_id FROM quarantine)"
            )
        finally:
            con.unregister("_rejects")
        counts: dict[str, int] = {}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        return counts

    def replace(self, name: str, rows: pa.Table) -> None:
        """Replace the whole content of a reference table (prices, workflows, model_map)."""
        with self.transaction() as con:
            con.register("_replacement", rows)
            try:
                con.execute(f"DELETE FROM {_q(name)}")
                cols = ", ".join(_q(c) for c in rows.column_names)
                con.execute(f"INSERT INTO {_q(name)} ({cols}) SELECT {cols} FROM _replacement")
            finally:
                con.unregister("_replacement")
            if name in _UNIT_INPUTS:
                self._set_underived(con, True)
            self._mark_written(con, [name])

    def append(self, name: str, rows: pa.Table) -> None:
        with self.transaction() as con:
            con.register("_appended", rows)
            try:
                cols = ", ".join(_q(c) for c in rows.column_names)
                con.execute(f"INSERT INTO {_q(name)} ({cols}) SELECT {cols} FROM _appended")
            finally:
                con.unregister("_appended")
            if name in _UNIT_INPUTS:
                self._set_underived(con, True)
            self._mark_written(con, [name])

    # -- derived work units ---------------------------------------------------------------
    def derive_work_units(self, work_unit_ids: list[str] | None = None) -> int:
        """Describe work units that calls reference but no input described.

        A derived unit takes the most frequent workflow, task type, user and
        team of its calls, and their first and last time. Derived rows are
        rebuilt when more calls arrive; a described row is never touched.
        With ``work_unit_ids``, only those units are rebuilt. Returns how many
        derived units the store holds.
        """
        with self.transaction() as con:
            units = None
            if work_unit_ids is not None:
                units = "_touched"
                con.register(units, pa.table({"k": pa.array(work_unit_ids, pa.string())}))
            scope = "" if units is None else f"AND c.work_unit_id IN (SELECT k FROM {units})"
            try:
                con.execute(
                    "DELETE FROM work_units WHERE derived AND work_unit_id IN "
                    f"(SELECT DISTINCT c.work_unit_id FROM calls c WHERE c.work_unit_id IS NOT NULL {scope})"
                )
                self._derive_work_units(con, units)
            finally:
                if units is not None:
                    con.unregister(units)
            if units is None:
                self._set_underived(con, False)  # every unit is derived from all its calls again
            n = con.execute("SELECT count(*) FROM work_units WHERE derived").fetchone()[0]
            self._mark_written(con, ["work_units"])
        return int(n)

    def derive_if_unsure(self) -> bool:
        """Derive every work unit again when :data:`UNDERIVED` is set (then batches read only
        the calls since their units' start again); whether it did."""
        with self.transaction():  # the write lock: no batch changes the flag meanwhile
            unsure = self._underived()
        if unsure:
            self.derive_work_units()
        return unsure

    def _derive_batch_units(
        self, con: duckdb.DuckDBPyConnection, units: pa.Array, first_ts: Any, *, underived: bool
    ) -> None:
        """Rebuild the derived work units of ``units``, the units of calls written in this
        transaction from ``first_ts`` on, reading only as much of ``calls`` as they need
        (``underived``: :data:`UNDERIVED` is set, and every call of them is read).

        A unit's stored derived row says when its calls start (``started_at``); a unit with no
        row has no calls but the batch's (see :data:`UNDERIVED`). So only calls from the
        earliest of those times on are read: in a store filled in time order, DuckDB skips the
        older row groups by their minimum and maximum ``ts``, and the work follows the batch,
        not the store. The derived rows go and their starts come back in one statement, and
        the units' table is registered once: each statement is a share of every request's
        acknowledgement.
        """
        con.register("_touched", pa.table({"k": units}))
        try:
            # read as Arrow: Python datetimes of a TIMESTAMPTZ would need pytz
            gone = con.execute(
                "DELETE FROM work_units WHERE derived AND work_unit_id IN (SELECT k FROM _touched) "
                "RETURNING started_at"
            ).to_arrow_table()
            since = None
            if first_ts is not None and not underived and not gone.column(0).null_count:
                starts = [first_ts, pc.min(gone.column(0)).as_py()] if gone.num_rows else [first_ts]
                since = min(t if t.tzinfo else t.replace(tzinfo=UTC) for t in starts)  # the store's UTC
            self._derive_work_units(con, "_touched", since=since)
        finally:
            con.unregister("_touched")

    def _derive_work_units(
        self, con: duckdb.DuckDBPyConnection, units: str | None, *, since: Any = None
    ) -> None:
        """Insert the derived rows of the units named in the registered table ``units`` (column
        ``k``; every unit when ``None``) that have calls and no row, inside the caller's
        transaction, which deleted their derived rows first: a row left is a described one.
        ``since``: read only the calls from then on (the caller knows those units have none
        before).
        """
        where = ["c.work_unit_id IS NOT NULL"]
        params: list[Any] = []
        if units is not None:
            where.append(f"c.work_unit_id IN (SELECT k FROM {units})")
        if since is not None:
            where.append("c.ts >= ?")  # a constant: DuckDB skips row groups by their zone maps
            params.append(since)
        # only described rows are left of these units; asked for by name, DuckDB skips the row
        # groups that hold derived rows only, by their minimum and maximum
        described = "SELECT w.work_unit_id FROM work_units w WHERE (w.derived = false OR w.derived IS NULL)"
        if units is not None:
            described += f" AND w.work_unit_id IN (SELECT k FROM {units})"
        where.append(f"c.work_unit_id NOT IN ({described})")
        con.execute(
            f"""
            INSERT INTO work_units (work_unit_id, parent_id, workflow, task_type, user_id, team,
                                    owner, started_at, ended_at, status, derived, org, attributes)
            SELECT c.work_unit_id, any_value(c.session_id), mode(c.workflow), mode(c.task_type),
                   mode(c.user_id), mode(c.team), NULL, min(c.ts),
                   max(c.ts + to_milliseconds(CAST(coalesce(c.duration_ms, 0) AS BIGINT))),
                   CASE WHEN bool_and(c.status = 'error') THEN 'failed' ELSE 'completed' END,
                   TRUE, any_value(c.org), NULL
            FROM calls c
            WHERE {" AND ".join(where)}
            GROUP BY c.work_unit_id
            """,
            params,
        )

    def _underived(self) -> bool:
        """Whether :data:`UNDERIVED` is set: the derived units may not be what their calls make
        (read on this object's connection, inside its transaction when one is open)."""
        return self.meta(UNDERIVED) is not None

    def _set_underived(self, con: duckdb.DuckDBPyConnection, underived: bool) -> None:
        if underived:
            self._put_meta(con, UNDERIVED, "1")
        else:
            con.execute("DELETE FROM meta WHERE key = ?", [UNDERIVED])

    # -- reads -----------------------------------------------------------------------
    def count(self, name: str) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {_q(name)}").fetchone()[0])

    def counts(self) -> dict[str, int]:
        return {name: self.count(name) for name in [*TABLES, "quarantine"]}

    def read_table(self, name: str, order_by: str | None = None) -> pa.Table:
        """A whole (small) table of the store, on a cursor of its own, so a reader thread never
        shares the connection the writer holds (e.g. the API keys the server reloads)."""
        sql = f"SELECT * FROM {_q(name)}" + (f" ORDER BY {_q(order_by)}" if order_by else "")
        return self.cursor().execute(sql).to_arrow_table()

    @staticmethod
    def _join_waiting_signals(con: duckdb.DuckDBPyConnection, calls: pa.Table, source: str) -> int:
        """Point the ``source`` signals that wait on a trace or span id of ``calls`` (of the same
        org) at the work unit of those calls: the call of the span the signal names
        (``attributes.observationId``), else the trace's most frequent one. Returns how many
        moved; a signal already on its work unit stays."""
        con.register("_arrived", calls.select(["trace_id", "span_id", "work_unit_id", "org"]))
        try:
            # the common case first: no signal waits on an id of the batch (one narrow scan)
            waiting = con.execute(
                """
                SELECT signal_id FROM signals
                WHERE source = ? AND work_unit_id IN (
                  SELECT trace_id FROM _arrived UNION ALL SELECT span_id FROM _arrived)
                """,
                [source],
            ).to_arrow_table()
            if not waiting.num_rows:
                return 0
            con.register("_waiting", waiting)
            moved = con.execute(
                """
                WITH spans AS (
                  SELECT span_id, org, any_value(work_unit_id) AS unit
                  FROM _arrived WHERE span_id IS NOT NULL GROUP BY span_id, org),
                traces AS (
                  SELECT trace_id, org, mode(work_unit_id) AS unit
                  FROM _arrived WHERE trace_id IS NOT NULL GROUP BY trace_id, org),
                moves AS (
                  SELECT s.signal_id, s.work_unit_id AS waits_on,
                         coalesce(o.unit, t.unit, w.unit) AS unit
                  FROM signals s
                  LEFT JOIN spans o ON o.span_id = json_extract_string(s.attributes, '$.observationId')
                                   AND o.org IS NOT DISTINCT FROM s.org
                  LEFT JOIN traces t ON t.trace_id = s.work_unit_id AND t.org IS NOT DISTINCT FROM s.org
                  LEFT JOIN spans w ON w.span_id = s.work_unit_id AND w.org IS NOT DISTINCT FROM s.org
                  WHERE s.signal_id IN (SELECT signal_id FROM _waiting)
                    AND (t.trace_id IS NOT NULL OR w.span_id IS NOT NULL))
                UPDATE signals SET work_unit_id = moves.unit
                FROM moves
                WHERE signals.signal_id = moves.signal_id
                  AND moves.unit IS NOT NULL AND moves.unit <> moves.waits_on
                """
            ).fetchone()
        finally:
            con.unregister("_arrived")
            con.unregister("_waiting")  # a name never registered is no error
        return int(moved[0]) if moved else 0

    def score_work_units(self, links: pa.Table, org: str) -> pa.Table:
        """The work unit each score belongs to, from the calls of ``org`` only.

        ``links`` has ``signal_id``, ``_trace`` and ``_observation`` (a Langfuse score's trace and
        observation ids). The answer has ``signal_id`` and ``unit``: the work unit of the call
        whose span is the observation, else the most frequent work unit of the trace's calls,
        else null. Read on a cursor of its own, closed before it returns.
        """
        cur = self.cursor()
        try:
            cur.register("_links", links)
            return cur.execute(
                """
                SELECT l.signal_id,
                       coalesce(
                         (SELECT any_value(c.work_unit_id) FROM calls c
                          WHERE c.span_id = l._observation AND c.org = $org),
                         (SELECT mode(c.work_unit_id) FROM calls c
                          WHERE c.trace_id = l._trace AND c.org = $org)) AS unit
                FROM _links l
                """,
                {"org": org},
            ).to_arrow_table()
        finally:
            cur.close()

    def query_arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run a store-internal query (never called from surfaces)."""
        return self.cursor().execute(sql, params or []).to_arrow_table()
