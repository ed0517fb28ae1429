"""The Workspace: the one object every surface calls.

A workspace is a folder with ``yieldmeter.yaml`` and the store under
``.yieldmeter/``. The CLI, the server, the reports and the SDK open a
Workspace and call its methods; they hold no SQL and no business logic.
Capabilities beyond the foundation hang off it as services (``ws.value``,
``ws.capacity``...), each in its own module.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from yieldmeter.config import CONFIG_FILE, STORE_DIR, TEMPLATE, Config, load_config
from yieldmeter.ingest.base import (
    UNREADABLE,
    Batch,
    ReadOptions,
    check_org,
    read_ahead,
    set_org,
)
from yieldmeter.ingest.conform import conform
from yieldmeter.ingest.langfuse_scores import SOURCE as SCORES_SOURCE
from yieldmeter.metrics import cost, spend
from yieldmeter.metrics.tables import Tables
from yieldmeter.store.duckdb_store import Store, WriteResult

if TYPE_CHECKING:
    from yieldmeter.app.capacity import CapacityService
    from yieldmeter.app.finops import FinOpsService
    from yieldmeter.app.reports import ReportService
    from yieldmeter.app.routing import RoutingService
    from yieldmeter.app.value import ValueService
    from yieldmeter.scoring.engine import ScoringResult

STORE_FILE = "store.duckdb"


class NoWorkspace(FileNotFoundError):
    pass


@dataclass
class FileSummary:
    """What became of one input."""

    source: str
    format: str
    read: int = 0
    landed: int = 0
    updated: int = 0
    duplicates: int = 0
    quarantined: int = 0
    ignored: int = 0
    unpriced: int = 0
    #: framework or agent spans' calls kept as structure, or taken back from the store, because
    #: a call under them reached the store in another request or batch (``WriteResult``)
    structure: int = 0
    taken_back: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: why the file (or the rest of it, after the rows counted here) could not be read
    error: str | None = None
    #: whether its first bytes were white space only (``None``: not opened)
    blank: bool | None = None

    def add(self, table_name: str, r: WriteResult) -> None:
        self.read += r.read
        self.landed += r.landed
        self.updated += r.updated
        self.duplicates += r.duplicates
        self.quarantined += r.quarantined
        self.structure += r.structure
        self.taken_back += r.taken_back
        if r.landed:
            self.tables[table_name] = self.tables.get(table_name, 0) + r.landed

    @property
    def accounted(self) -> bool:
        """Every row read is landed, a duplicate, quarantined, or a call kept as structure."""
        return self.read == self.landed + self.duplicates + self.quarantined + self.structure

    @property
    def unread(self) -> bool:
        """Read without an error, and nothing came of it: no row, none ignored."""
        return self.error is None and not self.read and not self.ignored

    @property
    def quiet(self) -> bool:
        """An unread file of a format told by its structure (a usage page of a day without usage,
        a bill or a trace export with nothing in it): read, not failed, so a daily job goes on.
        An empty file (no byte but white space, once decompressed) is no such page, even when
        ``--format`` names one."""
        return self.unread and self.format not in ("table", "auto") and self.blank is False


@dataclass
class IngestSummary:
    files: list[FileSummary] = field(default_factory=list)
    #: files of the folders walked that are not data (configuration, documents, hidden files)
    passed_over: list[Path] = field(default_factory=list)

    def total(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.files)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "source": f.source,
                "format": f.format,
                "read": f.read,
                "landed": f.landed,
                "updated": f.updated,
                "duplicates": f.duplicates,
                "quarantined": f.quarantined,
                "structure": f.structure,
                "taken_back": f.taken_back,
                "ignored": f.ignored,
                "unpriced_calls": f.unpriced,
                "error": f.error,
            }
            for f in self.files
        ]


def _sums_note(structure: int, taken_back: int) -> str:
    parts = []
    if structure:
        parts.append(f"{structure} kept as structure, not as calls")
    if taken_back:
        parts.append(f"{taken_back} stored earlier taken back")
    return (
        f"framework or agent spans reporting usage ({', '.join(parts)}): a model call under them "
        "reached yieldmeter too, and their usage is its usage (counted once; see docs/telemetry.md)"
    )


#: Per calls source, the signals that may come before their calls: Langfuse scores sent
#: before their trace wait on the trace id until its calls land (Store.write_batch).
WAITING_SIGNALS = {"langfuse-otel": SCORES_SOURCE}

#: The tables whose change makes the scores stale.
SCORE_INPUTS = frozenset({"signals", "outcomes", "calls", "effort", "work_units"})

#: Hook run after ingest when signals, outcomes or calls changed: (workspace) -> None.
AfterIngest = Callable[["Workspace"], None]


class Workspace:
    """A yieldmeter workspace. Create with :meth:`open` or :meth:`init`."""

    def __init__(self, root: Path, config: Config, store: Store, backend: Any = None) -> None:
        self.root = root
        self.config = config
        self.store = store
        #: The Ibis backend metrics run on: the store's DuckDB by default; a lake
        #: read by DuckDB or Spark for scale-out (see yieldmeter.lake).
        self._backend = backend
        #: the store's tables bound with the schema they were bound to (:meth:`tables`)
        self._bound_tables: tuple[tuple[tuple[str, str, str], ...], Tables] | None = None
        self._pending_changes: set[str] = set()
        #: how many times scores were stored (``scoring.engine.store_scores``): a scoring started
        #: apart before the last store read less than it (see yieldmeter.server.writer)
        self.scores_stored = 0

    # -- lifecycle -------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str = ".", *, create: bool = False) -> Workspace:
        """Open the workspace at ``path``; with ``create`` make the store if missing."""
        root = Path(path).expanduser().resolve()
        config_path = root / CONFIG_FILE
        store_path = root / STORE_DIR / STORE_FILE
        if not create and not config_path.exists() and not store_path.exists():
            raise NoWorkspace(
                f"no yieldmeter workspace at {root} (no {CONFIG_FILE}, no {STORE_DIR}/); "
                f"run `yieldmeter init {root}` or pass --workspace"
            )
        config = load_config(config_path)
        ws = cls(root, config, Store.open(store_path))
        from yieldmeter.scoring.schema import SCORING_TABLES

        ws.store.add_missing_columns(SCORING_TABLES)  # scores stored by an older yieldmeter
        ws.sync_reference()
        return ws

    @classmethod
    def init(cls, path: Path | str = ".") -> Workspace:
        """Write a commented ``yieldmeter.yaml`` (if absent) and create the store."""
        root = Path(path).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        config_path = root / CONFIG_FILE
        if not config_path.exists():
            config_path.write_text(TEMPLATE, encoding="utf-8")
        return cls.open(root, create=True)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reference data: workflows, prices, model map -------------------------------------
    def sync_reference(self) -> None:
        """Bring the workflow catalog and the price table in line with the config."""
        from yieldmeter.pricing.book import build_prices, fingerprint

        rows = [{**w.model_dump(mode="json"), "org": "default"} for w in self.config.workflows]
        wf = conform("workflows", pa.Table.from_pylist(rows) if rows else pa.table({}), source=CONFIG_FILE)
        if self.store.meta("workflows") != repr(rows):
            self.store.replace("workflows", wf.rows)
            self.store.set_meta("workflows", repr(rows))
        fp = fingerprint(self.config.prices)
        if self.store.meta("prices_fingerprint") != fp:
            self.store.replace("prices", build_prices(self.config.prices))
            self.store.set_meta("prices_fingerprint", fp)
            self.store.replace("model_map", self.store.ibis.table("model_map").limit(0).to_pyarrow())
        self.refresh_model_map()

    def refresh_model_map(self, pairs: Iterable[tuple[str, str]] | None = None) -> int:
        """Resolve (provider, model) pairs that calls report and the map lacks; returns how many.

        With ``pairs`` (``provider`` as '' when absent), only those are checked
        against the map (what one ingested batch reports), so the work follows
        the batch, not the size of ``calls``; without, every pair in ``calls``.
        """
        if pairs is not None:
            return self._priced_pairs(pairs)[1]
        missing = self.store.query_arrow(
            "SELECT DISTINCT coalesce(c.provider, '') AS provider, c.model FROM calls c "
            "WHERE c.model IS NOT NULL AND NOT EXISTS (SELECT 1 FROM model_map m "
            "WHERE m.provider = coalesce(c.provider, '') AND m.model = c.model)"
        ).to_pylist()
        return len(self._resolve_pairs([(r["provider"], r["model"]) for r in missing]))

    def _priced_pairs(self, pairs: Iterable[tuple[str, str]]) -> tuple[dict[tuple[str, str], bool], int]:
        """Whether each (provider, model) pair of the map has a price, once ``pairs`` the map
        lacks are resolved into it; and how many were. One read of the map: this runs after
        every batch the server commits."""
        mapped = self.store.query_arrow("SELECT provider, model, price_model FROM model_map")
        priced = {
            (p, m): price is not None
            for p, m, price in zip(
                mapped.column("provider").to_pylist(),
                mapped.column("model").to_pylist(),
                mapped.column("price_model").to_pylist(),
                strict=True,
            )
        }
        added = self._resolve_pairs(sorted(set(pairs) - priced.keys()))
        priced.update(added)
        return priced, len(added)

    def _resolve_pairs(self, missing: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        """Resolve ``missing`` pairs to prices and add them to the map; whether each has one."""
        from yieldmeter.pricing.resolve import resolve

        if not missing:
            return {}
        out = []
        for provider, model in missing:
            r = resolve(provider or None, model, self.config.prices)
            out.append(
                {
                    "provider": provider,
                    "model": model,
                    "price_provider": r.price_provider,
                    "price_model": r.price_model,
                    "how": r.how,
                }
            )
        self.store.append("model_map", pa.Table.from_pylist(out, schema=self.store_schema("model_map")))
        return {(r["provider"], r["model"]): r["price_model"] is not None for r in out}

    def store_schema(self, name: str) -> pa.Schema:
        from yieldmeter.store.duckdb_store import INTERNAL_TABLES

        return INTERNAL_TABLES[name]

    # -- ingest ------------------------------------------------------------------------
    def read_options(self, source: str, table: str | None = None) -> ReadOptions:
        return ReadOptions.from_config(self.config, source, table)

    def ingest_batches(
        self,
        batches: Iterable[Batch],
        *,
        source: str,
        fmt: str = "records",
        after: bool = True,
        into: FileSummary | None = None,
    ) -> FileSummary:
        """Write adapter batches, one transaction each, then derive and price.

        Safe to call again with the same batches: nothing changes the second time.
        With ``after`` false, the follow-up work (re-scoring, alert evaluation)
        is queued for :meth:`flush_after_ingest` instead of run now, so a bulk
        import or a busy receiver re-scores once, not per batch; with ``after``, the
        follow-up of what this call wrote runs now (the queue is left to its flush).
        """
        summary = into if into is not None else FileSummary(source=source, format=fmt)
        pairs: dict[tuple[str, str], int] = {}
        reported: set[tuple[str, str]] = set()  # (provider or '', model) of calls that carry a model
        changed: set[str] = set()
        sums = [0, 0]  # calls kept as structure, and taken back, by this call's writes
        try:
            for batch in batches:
                summary.ignored += batch.ignored
                summary.notes.extend(batch.notes)
                # the work units the calls reference are derived in the batch's own transaction
                results = self.store.write_batch(
                    batch.tables,
                    batch.rejects,
                    derive_units=True,
                    waiting_signals=WAITING_SIGNALS.get(source),
                    settle=(source, batch.settles) if batch.settles else None,
                    summed=batch.summed,
                )
                for name, r in results.items():
                    summary.add(name, r)
                    if r.landed or r.taken_back:
                        changed.add(name)
                    sums[0] += r.structure
                    sums[1] += r.taken_back
                calls = batch.tables.get("calls")
                if calls is not None and results.get("calls") and results["calls"].structure_ids:
                    # kept as structure, not calls: no model pair, nothing unpriced
                    gone = pa.array(results["calls"].structure_ids, pa.string())
                    calls = calls.filter(pc.invert(pc.is_in(calls.column("call_id"), value_set=gone)))
                if calls is not None and calls.num_rows and results["calls"].landed:
                    grouped = calls.group_by(["provider", "model"]).aggregate([("request_count", "sum")])
                    for p, m, n in zip(
                        grouped.column("provider").to_pylist(),
                        grouped.column("model").to_pylist(),
                        grouped.column("request_count_sum").to_pylist(),
                        strict=True,
                    ):
                        pairs[(p or "", m or "")] = pairs.get((p or "", m or ""), 0) + int(n or 0)
                        if m is not None:
                            reported.add((p or "", m))
        finally:
            if any(sums):
                summary.notes.append(_sums_note(*sums))
            # the batches that landed before a reader failed are followed up like any other
            if "calls" in changed:
                priced, _ = self._priced_pairs(reported)
                summary.unpriced = sum(n for key, n in pairs.items() if not priced.get(key, False))
            if changed:
                if after:
                    # only what this call wrote: what an earlier call queued waits for its own
                    # follow-up (a budget written through the server is not held up by a scoring
                    # of the telemetry the server will score anyway)
                    self._after_ingest(changed)
                else:
                    self._pending_changes |= changed
        return summary

    @property
    def has_pending_changes(self) -> bool:
        """Whether ingested data awaits re-scoring and alert evaluation."""
        return bool(self._pending_changes)

    def flush_after_ingest(self) -> None:
        """Run the follow-up work queued by ``ingest_batches(after=False)``."""
        changed = self.take_pending_changes()
        if changed:
            self._after_ingest(changed)

    def take_pending_changes(self) -> set[str]:
        """The tables changed since the last follow-up, handed over: the queue is emptied (the
        caller runs :meth:`prepare_follow_up` and :meth:`finish_follow_up` on them)."""
        changed, self._pending_changes = self._pending_changes, set()
        return changed

    def return_pending_changes(self, changed: set[str]) -> None:
        """Hand ``changed`` back to the queue of :meth:`take_pending_changes` (a follow-up that
        failed, to be tried again)."""
        self._pending_changes |= changed

    def _after_ingest(self, changed: set[str]) -> None:
        """Re-score when the evidence behind scores changed, then evaluate budgets and alert
        rules on the new data and scores."""
        scores = None
        try:
            if self.prepare_follow_up(changed):
                from yieldmeter.scoring.engine import score_tables

                scores = score_tables(self.tables())
        finally:
            self.finish_follow_up(changed, scores)

    def prepare_follow_up(self, changed: set[str]) -> bool:
        """The follow-up's writes that come before scoring (the derived work units, once after
        calls or units were written around them); whether the scores are stale."""
        if changed & {"calls", "work_units"}:
            self.store.derive_if_unsure()
        return bool(changed & SCORE_INPUTS)

    def score_apart(self) -> ScoringResult:
        """Every work unit scored, reading through a cursor of its own: safe on another thread
        while this workspace's connection writes (it reads the last commit). Writes nothing:
        :meth:`finish_follow_up` stores the result."""
        from yieldmeter.scoring.engine import score_tables

        if self._backend is not None:  # a lake: nothing here writes meanwhile
            return score_tables(self.tables())
        import ibis

        cursor = self.store.cursor()
        try:
            # one snapshot for every query of the scoring, as on a connection nothing else writes to
            cursor.execute("BEGIN TRANSACTION")
            return score_tables(Tables.from_backend(ibis.duckdb.from_connection(cursor)))
        finally:
            cursor.close()  # ends the transaction, which wrote nothing

    def finish_follow_up(self, changed: set[str], scores: ScoringResult | None) -> None:
        """Store ``scores`` (when scored), then evaluate budgets and alert rules on the new data."""
        try:
            if scores is not None:
                from yieldmeter.scoring.engine import store_scores

                store_scores(self, scores)
        finally:
            if "value" in self.__dict__:  # the cached value service holds intermediates of the old data
                self.value.invalidate()
            if changed & {"calls", "cost_items", "effort", "budgets", "outcomes", "signals"}:
                self.finops.evaluate_on_ingest()  # budgets and alert rules; throttled, never raises

    @staticmethod
    def input_files(paths: Sequence[Path | str], passed_over: list[Path] | None = None) -> list[Path]:
        """The files ``paths`` name: files as given, folders walked (sorted), in order.

        A folder's hidden files and its configuration and documents (:data:`NOT_DATA`: a
        ``yieldmeter.yaml``, a README) are not data and are passed over (appended to
        ``passed_over`` when given, so the caller can say so); a file named on its own is always
        read.
        """
        files: list[Path] = []
        for raw in paths:
            path = Path(raw)
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file or folder")
            if not path.is_dir():
                files.append(path)
                continue
            for p in sorted(p for p in path.rglob("*") if p.is_file()):
                hidden = any(part.startswith(".") for part in p.relative_to(path).parts)
                if hidden or p.suffix.lower() in NOT_DATA or _script(p):
                    if passed_over is not None:
                        passed_over.append(p)
                else:
                    files.append(p)
        return files

    def ingest_paths(
        self,
        paths: Sequence[Path | str],
        *,
        fmt: str = "auto",
        table: str | None = None,
        progress: Callable[[Path, int, int], None] | None = None,
        org: str | None = None,
    ) -> IngestSummary:
        """Import files; ``fmt`` is a format name or ``auto`` (detected by content).

        ``org``: every row is written as this org (what an ingest key does on the server), for
        files written without one, such as the Python SDK's spill files; ``None`` keeps the
        rows' own (``default`` where they carry none).

        A file that cannot be read (or the rest of it, from where reading failed) is recorded
        in quarantine with the reason, named in its :class:`FileSummary` (``error``), and the
        import goes on with the next file: the batches read before the failure stay landed.
        ``progress(path, bytes_done, bytes_total)`` is called as a file is read.
        """
        from yieldmeter.ingest.registry import get_format

        if fmt != "auto":
            get_format(fmt)  # an unknown --format is the caller's mistake, not the file's
        check_org(org)
        summary = IngestSummary()
        with self.store.bulk():
            files = self.input_files(paths, summary.passed_over)
            self._ingest_files(files, fmt, table, progress, summary, org)
        _return_freed_memory()
        self.flush_after_ingest()  # score once for the whole import, not per file
        return summary

    def _ingest_files(
        self,
        files: list[Path],
        fmt: str,
        table: str | None,
        progress: Callable[[Path, int, int], None] | None,
        summary: IngestSummary,
        org: str | None = None,
    ) -> None:
        from yieldmeter.ingest.registry import UnknownFormat, open_format

        for f in files:
            result = FileSummary(source=str(f), format=fmt)
            try:
                total = f.stat().st_size  # a file gone since the folder was walked: its own error
                chosen, opened, result.blank = open_format(f, fmt)
                result.format = chosen.name
                with opened as stream:
                    counted = (
                        _Counting(stream, lambda n, f=f, total=total: progress(f, n, total))
                        if progress
                        else stream
                    )
                    options = self.read_options(str(f), table)
                    if chosen.name == "otlp-json":  # the one reader of files still being written
                        options = replace(options, unended=self.store.unended_lines(str(f)))
                    batches = chosen.read(counted, options)  # type: ignore[arg-type]
                    if org is not None:
                        batches = (set_org(b, org) for b in batches)
                    # the next batch is read while the last one is written
                    with read_ahead(batches) as ahead:
                        self.ingest_batches(ahead, source=str(f), fmt=chosen.name, after=False, into=result)
            except UNREADABLE as exc:
                result.error = str(exc) if isinstance(exc, UnknownFormat) else unreadable_reason(exc, f)
                self._quarantine_file(result, table, result.error)
            summary.files.append(result)

    def _quarantine_file(self, result: FileSummary, table: str | None, reason: str) -> None:
        """One quarantine row for a file (or its rest) that could not be read."""
        from yieldmeter.ingest.conform import file_rejects

        rejects = file_rejects(result.source, reason, table)
        r = self.store.write_batch({}, rejects)
        n = sum(x.quarantined for x in r.values())
        result.read += n
        result.quarantined += n

    # -- metrics -------------------------------------------------------------------------
    @property
    def backend(self) -> Any:
        return self._backend if self._backend is not None else self.store.ibis

    def tables(self) -> Tables:
        """The tables metrics read, bound to the backend. The store's own are bound once per
        schema: binding asks DuckDB for each table's columns (about 30 ms for them all), the
        store's schema signature is one catalog query (about 4 ms)."""
        if self._backend is not None:
            return Tables.from_backend(self._backend)
        signature = self.store.schema_signature()
        bound = self._bound_tables
        if bound is None or bound[0] != signature:
            bound = self._bound_tables = (signature, Tables.from_backend(self.store.ibis))
        return bound[1]

    def priced_calls(self, *, tiers: bool = True) -> ir.Table:
        return cost.priced_calls(self.tables(), tiers=tiers)

    def cost_lines(self) -> ir.Table:
        return spend.cost_lines(self.tables(), self.config.labour_rates)

    def spend(self, by: Sequence[str] = (), filters: spend.Filters | None = None) -> pa.Table:
        """Model, allocated, effort and fully loaded cost grouped by ``by``."""
        return spend.spend(self.cost_lines(), by, filters).to_pyarrow()

    def reported_cost(self, by: str = "model", filters: spend.Filters | None = None) -> pa.Table:
        """A source's own cost of its calls (LiteLLM spend, Langfuse cost_details, gen_ai.usage.cost)
        against yieldmeter's price, per ``by``: see :mod:`yieldmeter.metrics.reported_cost`."""
        from yieldmeter.metrics.reported_cost import reported_cost

        return reported_cost(self.tables(), by, filters).to_pyarrow()

    def unpriced(self) -> pa.Table:
        """Models that resolve to no price, with their call and token volume."""
        return cost.unpriced_models(self.priced_calls()).to_pyarrow()

    def status(self) -> dict[str, Any]:
        counts = self.store.counts()
        t = self.tables()
        calls = t.calls
        span = calls.aggregate(first=calls.ts.min(), last=calls.ts.max()).to_pyarrow().to_pylist()[0]
        totals = self.spend(()).to_pylist()
        return {
            "workspace": str(self.root),
            "tables": counts,
            "first_call": span["first"],
            "last_call": span["last"],
            "totals": totals[0] if totals else {},
            "workflows": [w.workflow for w in self.config.workflows],
        }

    def quarantine(self, limit: int = 50) -> pa.Table:
        q = self.store.ibis.table("quarantine")
        return q.order_by([q.ingested_at.desc(), q.source, q.position]).limit(limit).to_pyarrow()

    # -- services of later layers ------------------------------------------------------------
    @cached_property
    def value(self) -> ValueService:
        from yieldmeter.app.value import ValueService

        return ValueService(self)

    @cached_property
    def capacity(self) -> CapacityService:
        from yieldmeter.app.capacity import CapacityService

        return CapacityService(self)

    @cached_property
    def routing(self) -> RoutingService:
        from yieldmeter.app.routing import RoutingService

        return RoutingService(self)

    @cached_property
    def finops(self) -> FinOpsService:
        from yieldmeter.app.finops import FinOpsService

        return FinOpsService(self)

    @cached_property
    def reports(self) -> ReportService:
        from yieldmeter.app.reports import ReportService

        return ReportService(self)


#: file endings a folder walk passes over: configuration, documents, images, and the scripts
#: that fetch exports and sit beside them (one naming "organization.costs.result" read as a page)
NOT_DATA = frozenset(
    {".yaml", ".yml", ".toml", ".ini", ".cfg", ".md", ".rst", ".pdf", ".png", ".jpg", ".svg", ".html"}
    | {".py", ".sh", ".bash", ".zsh", ".ps1", ".bat", ".js", ".mjs", ".cjs", ".ts", ".rb", ".pl", ".php"}
    | {".go", ".java", ".rs", ".sql", ".r", ".ipynb"}
)


def _script(path: Path) -> bool:
    """A file that starts with ``#!``: a script, whatever its name (``fetch-usage``)."""
    try:
        with path.open("rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return False


def unreadable_reason(exc: BaseException, source: Path | str) -> str:
    """Why a file could not be read, for people (the file itself is named beside it)."""
    message = str(exc).removeprefix(f"{source}: ")
    if isinstance(exc, UnicodeDecodeError):
        return f"not text in UTF-8 (byte {exc.start}): not a CSV, JSON or usage export yieldmeter reads"
    if isinstance(exc, KeyError | IndexError | TypeError):
        return (
            f"not the structure its format has ({type(exc).__name__}: {message}); the rest was not "
            "read (if the file is of this format, this is a yieldmeter bug: please report it)"
        )
    if isinstance(exc, EOFError | OSError | zlib.error):
        return f"cannot read the file: {message}"
    return f"cannot read: {message}"


class _Counting:
    """Wraps a binary stream and reports the bytes read so far."""

    def __init__(self, stream: Any, report: Callable[[int], None]) -> None:
        self._stream = stream
        self._report = report
        self._done = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self._done += len(data)
        self._report(self._done)
        return data

    def readline(self, limit: int = -1) -> bytes:
        data = self._stream.readline(limit)
        self._done += len(data)
        self._report(self._done)
        return data

    def __iter__(self) -> Any:
        for line in self._stream:
            self._done += len(line)
            self._report(self._done)
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _return_freed_memory() -> None:
    """Give the system back what a bulk import's transient buffers left free, before the re-score.

    Allocators keep freed memory for reuse: Arrow's pool (mimalloc) and the C library's heap
    held about 100 MB after a 1M-span OTLP import, which the re-score's own peak then sat on
    (``docs/telemetry.md``, Throughput).
    """
    gc.collect()
    pa.default_memory_pool().release_unused()
    libc = ctypes.util.find_library("c")
    if libc and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc).malloc_trim(0)  # glibc only: musl has none
