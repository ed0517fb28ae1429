"""Adapter output written straight to a lake, without the DuckDB store.

``yieldmeter ingest FILES --to-lake LAKE`` reads each file with the same
format adapters as a store ingest and writes the canonical rows as the files
of that source (:meth:`Lake.write_source`), so:

* a re-run of the same input rewrites the same files: the lake holds the same
  rows (idempotent), and a source that changed replaces its earlier rows;
* inside one source, the first row of an id wins (a span the Collector retried: its first
  sighting; the store keeps the last, as its upsert would across files);
* across sources, an id already stored by another source in the same day partition, or
  the day either side of it (a time corrected across midnight), is kept and the new row
  counted as a duplicate (first writer wins); in an unpartitioned input table (budgets) the
  latest source's row replaces the stored one instead, as in the store;
* a framework or agent span's call with a call of the same source under it is structure
  only (:func:`drop_sums_with_calls`), as the store keeps it across requests and files;
* calls that name a work unit no input describes get a derived work unit
  (most frequent workflow, task type, user and team of its calls in that
  source; first and last time), like the store's derivation, per source;
* rows that break a rule go to the lake's ``quarantine`` with file, row and reason;
* the reference tables (``workflows``, ``prices``) follow ``yieldmeter.yaml``
  and ``model_map`` gains the (provider, model) pairs the calls report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from yieldmeter.app.workspace import FileSummary, IngestSummary, Workspace, unreadable_reason
from yieldmeter.config import CONFIG_FILE, Config
from yieldmeter.ingest.base import UNREADABLE, Batch, ReadOptions, check_org, set_org
from yieldmeter.ingest.conform import concat_rejects, conform, file_rejects, stable_id
from yieldmeter.ingest.otlp_common import call_parents, split_sums_with_calls, summing_calls
from yieldmeter.lake.layout import Lake, day_of, lake_schemas
from yieldmeter.schema import QUARANTINE_SCHEMA, TABLES

REFERENCE_SOURCE = "reference"


def quarantine_rows(rejects: pa.Table, now: datetime | None = None) -> pa.Table:
    """Adapter rejects as ``quarantine`` rows, with the store's stable ids."""
    now = now or datetime.now(UTC)
    ids = [
        stable_id(t, s, p, r)
        for t, s, p, r in zip(
            rejects.column("table_name").to_pylist(),
            rejects.column("source").to_pylist(),
            rejects.column("position").to_pylist(),
            rejects.column("reason").to_pylist(),
            strict=True,
        )
    ]
    return pa.table(
        {
            "quarantine_id": pa.array(ids, pa.string()),
            **{c: rejects.column(c) for c in ("table_name", "source", "position", "reason", "raw")},
            "ingested_at": pa.array([now] * rejects.num_rows, QUARANTINE_SCHEMA.field("ingested_at").type),
        },
        schema=QUARANTINE_SCHEMA,
    )


def drop_sums_with_calls(calls: pa.Table, summed: Sequence[pa.Table] = ()) -> tuple[pa.Table, int]:
    """The calls but those of summing spans (:data:`SUMMING_OPERATIONS`: a remote agent's, a
    framework step's) with a call under them in ``calls``, or under the spans the mapping kept
    as structure (``summed``, ``Batch.summed``), whose usage is that call's, as the store does
    across writes; and how many were dropped."""
    if not calls.num_rows or "operation" not in calls.column_names:
        return calls, 0
    if not pc.any(summing_calls(calls)).as_py():
        return calls, 0
    kept, dropped = split_sums_with_calls(calls, call_parents(*summed))
    return kept, dropped.num_rows


def first_per_key(rows: pa.Table, key: str) -> pa.Table:
    """The first row of every id (input order): a lake keeps an id's first sighting."""
    if rows.num_rows == 0:
        return rows
    pos = pa.array(range(rows.num_rows), pa.int64())
    firsts = rows.select([key]).append_column("_pos", pos).group_by(key).aggregate([("_pos", "min")])
    keep = pc.is_in(pos, value_set=firsts.column("_pos_min"))
    return rows.filter(keep)


def derive_work_units(calls: pa.Table, described: pa.Table, elsewhere: set[str] | None = None) -> pa.Table:
    """Work units for the calls' ``work_unit_id`` values that ``described`` (and ``elsewhere``) lack."""
    have = set(described.column("work_unit_id").to_pylist()) if described.num_rows else set()
    have |= elsewhere or set()
    groups: dict[str, list[int]] = {}
    ids = calls.column("work_unit_id").to_pylist()
    for i, u in enumerate(ids):
        if u is not None and u not in have:
            groups.setdefault(u, []).append(i)
    if not groups:
        return TABLES["work_units"].arrow_schema.empty_table()
    cols = {
        c: calls.column(c).to_pylist()
        for c in (
            "session_id",
            "workflow",
            "task_type",
            "user_id",
            "team",
            "ts",
            "duration_ms",
            "status",
            "org",
        )
    }

    def mode(name: str, idx: list[int]) -> object:
        counts: dict[object, int] = {}
        for i in idx:
            v = cols[name][i]
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
        return max(sorted(counts, key=str), key=lambda v: counts[v]) if counts else None

    from datetime import timedelta

    rows = []
    for u, idx in groups.items():
        starts = [cols["ts"][i] for i in idx]
        ends = [
            cols["ts"][i] + timedelta(milliseconds=math.floor((cols["duration_ms"][i] or 0) + 0.5))
            for i in idx
        ]
        rows.append(
            {
                "work_unit_id": u,
                "parent_id": next((cols["session_id"][i] for i in idx if cols["session_id"][i]), None),
                "workflow": mode("workflow", idx),
                "task_type": mode("task_type", idx),
                "user_id": mode("user_id", idx),
                "team": mode("team", idx),
                "owner": None,
                "started_at": min(starts),
                "ended_at": max(ends),
                "status": "failed" if all(cols["status"][i] == "error" for i in idx) else "completed",
                "derived": True,
                "org": next((cols["org"][i] for i in idx if cols["org"][i]), None),
                "attributes": None,
            }
        )
    return pa.Table.from_pylist(rows, schema=TABLES["work_units"].arrow_schema)


def _with_neighbours(days: list[str | None]) -> list[str | None]:
    """The day partitions ``days`` name and the days either side of each (null stays null)."""
    out: set[str | None] = set()
    for d in days:
        if d is None:
            out.add(None)
            continue
        day = date.fromisoformat(d)
        out.update((day + timedelta(days=k)).isoformat() for k in (-1, 0, 1))
    return sorted(out, key=lambda d: d or "")


class LakeWriter:
    """Writes adapter batches of one source at a time into a lake, and keeps its reference tables."""

    def __init__(self, lake: Lake, config: Config) -> None:
        self.lake = lake
        self.config = config

    def write_source(self, batches: Sequence[Batch], *, source: str, fmt: str) -> FileSummary:
        summary = FileSummary(source=source, format=fmt)
        tables: dict[str, list[pa.Table]] = {}
        rejects = []
        summed = [b.summed for b in batches]
        for b in batches:
            summary.ignored += b.ignored
            summary.notes.extend(b.notes)
            for name, rows in b.tables.items():
                tables.setdefault(name, []).append(rows)
            rejects.append(b.rejects)
        merged = {n: pa.concat_tables(parts) for n, parts in tables.items()}
        if "calls" in merged:
            merged["calls"], dropped = drop_sums_with_calls(merged["calls"], summed)
            summary.structure = dropped + sum(t.num_rows for t in summed)
            summary.read += summary.structure
            described = merged.get("work_units", TABLES["work_units"].arrow_schema.empty_table())
            derived = derive_work_units(merged["calls"], described, self._described_units())
            if derived.num_rows:
                merged["work_units"] = pa.concat_tables([described, derived])
        for name, rows in merged.items():
            spec = TABLES[name]
            kept = self._drop_stored_elsewhere(name, first_per_key(rows, spec.key), source)
            mine_before = self._keys_of_source(name, source)
            self.lake.write_source(name, kept, source)
            if name == "work_units":
                self._drop_derived_elsewhere(kept, source)
            # accounting covers input rows only (derived work units are not input), as in the store
            if name == "work_units" and "derived" in rows.column_names:
                is_input = pc.invert(rows.column("derived").fill_null(False))
                rows = rows.filter(is_input)
                kept = kept.filter(pc.invert(kept.column("derived").fill_null(False)))
            new = sum(1 for k in kept.column(spec.key).to_pylist() if k not in mine_before)
            summary.read += rows.num_rows
            summary.landed += new
            summary.duplicates += rows.num_rows - new
            if new:
                summary.tables[name] = new
        q = concat_rejects(rejects) if rejects else None
        if q is not None:
            summary.read += q.num_rows
            summary.quarantined += q.num_rows
        self.lake.write_source(
            "quarantine", quarantine_rows(q) if q is not None else QUARANTINE_SCHEMA.empty_table(), source
        )
        if "calls" in merged:
            self.add_model_pairs(merged["calls"])
        if summary.landed and self.drop_scores():
            summary.notes.append(
                "the lake's scores (from `lake export`) did not cover these rows and were removed: "
                "reports over the lake score its work units in memory (docs/scale-out.md)"
            )
        return summary

    def drop_scores(self) -> bool:
        """Remove the lake's ``scores`` and ``unit_values``: written by ``lake export`` for the
        work units of that moment, they would stand for work units, signals and outcomes they
        never saw (reports read stored scores before scoring anything). True when any were there."""
        return bool(sum(self.lake.drop_table(name) for name in ("scores", "unit_values")))

    def _described_units(self) -> set[str]:
        """Ids of work units some input described (not derived), anywhere in the lake."""
        out: set[str] = set()
        for f in self.lake.files("work_units"):
            t = pq.read_table(f, columns=["work_unit_id", "derived"], filesystem=self.lake.fs)
            t = t.filter(pc.invert(t.column("derived").fill_null(False)))
            out.update(t.column("work_unit_id").to_pylist())
        return out

    def _drop_derived_elsewhere(self, rows: pa.Table, source: str) -> None:
        """A described work unit replaces the units other sources derived for the same id."""
        described = rows.filter(pc.invert(rows.column("derived").fill_null(False))).column("work_unit_id")
        if len(described):
            self._drop_elsewhere(
                "work_units",
                source,
                lambda t: pc.and_(
                    t.column("derived").fill_null(False), pc.is_in(t.column("work_unit_id"), described)
                ),
            )

    def _drop_elsewhere(self, name: str, source: str, drop: Callable[[pa.Table], pa.Array]) -> None:
        """Rewrite the files of ``name`` other sources wrote without the rows ``drop`` marks."""
        from yieldmeter.lake.layout import source_token

        mine = f"part-{source_token(source)}-"
        for f in self.lake.files(name):
            if f.rsplit("/", 1)[-1].startswith(mine):
                continue
            t = pq.read_table(f, filesystem=self.lake.fs)
            marked = drop(t)
            if pc.any(marked).as_py():
                rest = t.filter(pc.invert(marked))
                if rest.num_rows:
                    pq.write_table(rest, f, filesystem=self.lake.fs)
                else:
                    self.lake.fs.delete_file(f)

    def _keys_of_source(self, name: str, source: str) -> set[str]:
        from yieldmeter.lake.layout import source_token

        token = f"part-{source_token(source)}-"
        out: set[str] = set()
        for f in self.lake.files(name):
            if f.rsplit("/", 1)[-1].startswith(token):
                col = pq.read_table(f, columns=[TABLES[name].key], filesystem=self.lake.fs).column(0)
                out.update(col.to_pylist())
        return out

    def _drop_stored_elsewhere(self, name: str, rows: pa.Table, source: str) -> pa.Table:
        """``rows`` less the ids another source already stored (the first sighting wins), looked
        for in the rows' day partitions and the days beside them: a row sent again with its time
        corrected across midnight, or moved by a time zone, is the same row. An unpartitioned
        input table (budgets: small) is the other way round, as in the store: the latest
        source's row replaces the one stored (a budget raised by a later file)."""
        spec = TABLES[name]
        if not rows.num_rows:
            return rows
        keys = rows.column(spec.key)
        if spec.time_column is None:
            self._drop_elsewhere(name, source, lambda t: pc.is_in(t.column(spec.key), keys))
            return rows
        stored: set[str] = set()
        for d in _with_neighbours(pc.unique(day_of(rows, spec.time_column)).to_pylist()):
            stored |= self.lake.keys_in_partition(name, d, exclude_source=source)
        if not stored:
            return rows
        return rows.filter(pc.invert(pc.is_in(keys, value_set=pa.array(sorted(stored)))))

    # -- reference tables ------------------------------------------------------------------
    def sync_reference(self) -> None:
        """Workflows and prices from the config; model_map re-resolved when prices changed."""
        from yieldmeter.pricing.book import build_prices, fingerprint

        rows = [{**w.model_dump(mode="json"), "org": "default"} for w in self.config.workflows]
        wf = conform("workflows", pa.Table.from_pylist(rows) if rows else pa.table({}), source=CONFIG_FILE)
        wf_fp = stable_id(repr(rows))
        price_fp = fingerprint(self.config.prices)
        changed = []
        if self.lake.param("workflows_fingerprint") != wf_fp or not self.lake.has_data("workflows"):
            self.lake.replace_table("workflows", wf.rows, REFERENCE_SOURCE)
            changed.append("workflows")
        if self.lake.param("prices_fingerprint") != price_fp or not self.lake.has_data("prices"):
            self.lake.replace_table("prices", build_prices(self.config.prices), REFERENCE_SOURCE)
            pairs = self.lake.read_table("model_map").select(["provider", "model"])
            self._write_model_map(pairs.to_pylist(), {})
            changed += ["prices", "model_map"]
        self.lake.refresh_manifest(changed, workflows_fingerprint=wf_fp, prices_fingerprint=price_fp)

    def add_model_pairs(self, calls: pa.Table) -> int:
        """Resolve (provider, model) pairs of ``calls`` that ``model_map`` lacks; returns how many."""
        existing = self.lake.read_table("model_map")
        known = {(r["provider"], r["model"]): r for r in existing.to_pylist()}
        pairs = calls.select(["provider", "model"]).group_by(["provider", "model"]).aggregate([])
        new = []
        for r in pairs.to_pylist():
            key = (r["provider"] or "", r["model"])
            if r["model"] is not None and key not in known:
                new.append({"provider": key[0], "model": key[1]})
        if new:
            self._write_model_map([*existing.select(["provider", "model"]).to_pylist(), *new], known)
        return len(new)

    def _write_model_map(
        self, pairs: list[dict[str, str]], known: dict[tuple[str, str], dict[str, str]]
    ) -> None:
        from yieldmeter.pricing.resolve import resolve

        out = []
        for p in sorted({(r["provider"], r["model"]) for r in pairs}):
            if p in known:
                out.append(known[p])
                continue
            r = resolve(p[0] or None, p[1], self.config.prices)
            out.append(
                {
                    "provider": p[0],
                    "model": p[1],
                    "price_provider": r.price_provider,
                    "price_model": r.price_model,
                    "how": r.how,
                }
            )
        self.lake.replace_table(
            "model_map", pa.Table.from_pylist(out, schema=lake_schemas()["model_map"]), REFERENCE_SOURCE
        )


def ingest_to_lake(
    paths: Sequence[Path | str],
    lake_uri: str,
    config: Config,
    *,
    fmt: str = "auto",
    table: str | None = None,
    org: str | None = None,
) -> IngestSummary:
    """Read files with the format adapters and write them to the lake at ``lake_uri``
    (``org``: every row written as this org, as :meth:`Workspace.ingest_paths` says)."""
    from yieldmeter.ingest.registry import UnknownFormat, get_format, open_format

    if fmt != "auto":
        get_format(fmt)  # an unknown --format is the caller's mistake, not a file's
    check_org(org)
    lake = Lake(lake_uri)
    lake.check_version()
    writer = LakeWriter(lake, config)
    writer.sync_reference()
    summary = IngestSummary()
    touched: set[str] = set()
    for f in Workspace.input_files(paths, summary.passed_over):
        batches: list[Batch] = []
        name, error, blank = fmt, None, None
        try:
            chosen, opened, blank = open_format(f, fmt)
            name = chosen.name
            with opened as stream:
                for batch in chosen.read(stream, ReadOptions.from_config(config, str(f), table)):
                    batches.append(batch if org is None else set_org(batch, org))
        except UNREADABLE as exc:
            # what was read before the failure is written; the file (or its rest) is one
            # quarantine row with the reason, as in a workspace's import
            error = str(exc) if isinstance(exc, UnknownFormat) else unreadable_reason(exc, f)
            batches.append(Batch(rejects=file_rejects(str(f), error, table)))
        fs = writer.write_source(batches, source=str(f), fmt=name)
        fs.error, fs.blank = error, blank
        summary.files.append(fs)
        touched |= {n for b in batches for n in b.tables}
    lake.refresh_manifest(
        sorted(touched | {"quarantine", "model_map", "work_units", "scores", "unit_values"}),
        written_by="yieldmeter ingest --to-lake",
    )
    return summary
