"""The lake: the canonical tables as hive-partitioned Parquet, with a manifest.

Layout (``LAKE`` is a local folder or a URI: ``s3://`` or ``s3a://``, ``gs://``,
``hdfs://``; see :class:`Lake` for how each client is given it)::

    LAKE/_manifest.json                         format, schema version, tables, partitions
    LAKE/calls/day=2025-03-03/part-<src>-0.parquet
    LAKE/work_units/day=.../...                 every table with a time column, by UTC day
    LAKE/workflows/part-<src>-0.parquet         reference tables: one folder, no partitions
    LAKE/quarantine/run=<src>/part-<src>-0.parquet

* A table with a ``time_column`` (:mod:`yieldmeter.schema`) is partitioned by
  the UTC day of that column (``day=YYYY-MM-DD``; a null time goes to
  ``day=__HIVE_DEFAULT_PARTITION__``, which Spark and DuckDB read as null).
* Every file written for one source is named ``part-<src>-<n>.parquet`` where
  ``<src>`` is a stable hash of the source; writing the same source again
  rewrites the same files and removes the ones it no longer produces, so a
  re-run leaves the same rows (see :meth:`Lake.write_source`).
* Files hold exactly the canonical columns; the ``day`` partition is derived
  and never read back as data.

The manifest is rewritten after every write from a listing of the touched
tables, so a reader (or a person) can see what the lake holds without a scan.
"""

from __future__ import annotations

import json
import posixpath
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from yieldmeter.ingest.conform import stable_id
from yieldmeter.schema import QUARANTINE_SCHEMA, TABLES

MANIFEST = "_manifest.json"
#: The lake's own format version, in its manifest. It moves only when what a lake holds changes
#: shape, not with every step of the store's schema (store migration 3 renamed stored FOCUS
#: items; a lake's files did not change), so a yieldmeter that reads version 2 reads this lake.
LAKE_SCHEMA_VERSION = 2
LAKE_FORMAT = "yieldmeter-lake"
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
DAY = "day"
RUN = "run"


class LakeError(ValueError):
    """A lake that cannot be used as asked; the message says where and what to do."""


#: How long a gs:// lake's client retries before an operation fails (``?retry_limit_seconds=``
#: in the lake's URI sets another).
GCS_RETRY_SECONDS = 60
#: Hadoop's names for object stores (what open-source Spark needs: ``s3a://``) -> pyarrow's and
#: DuckDB's name for the same store. Spark is always given the scheme the lake was named with.
ARROW_SCHEMES = {"s3a": "s3", "s3n": "s3"}


def _internal_schemas() -> dict[str, pa.Schema]:
    from yieldmeter.scoring.schema import SCORES_SCHEMA, UNIT_VALUES_SCHEMA
    from yieldmeter.store.duckdb_store import INTERNAL_TABLES

    return {
        "model_map": INTERNAL_TABLES["model_map"],
        "scores": SCORES_SCHEMA,
        "unit_values": UNIT_VALUES_SCHEMA,
        "quarantine": QUARANTINE_SCHEMA,
    }


def lake_schemas() -> dict[str, pa.Schema]:
    """Every table a lake can hold: the canonical ones, ``model_map``, ``scores`` with their
    ``unit_values``, and ``quarantine``."""
    out = {name: t.arrow_schema for name, t in TABLES.items()}
    out.update(_internal_schemas())
    return out


def partition_column(name: str) -> str | None:
    """``day`` for tables with a time column, ``run`` for quarantine, else None."""
    if name == "quarantine":
        return RUN
    t = TABLES.get(name)
    return DAY if t is not None and t.time_column else None


def source_token(source: str) -> str:
    """The stable hash that names a source's files."""
    return stable_id("lake-source", source)[:16]


@dataclass(frozen=True)
class WriteReport:
    table: str
    rows: int
    files: int
    removed: int


class Lake:
    """A lake at ``uri``. Reading the manifest and listing files never needs an engine."""

    def __init__(self, uri: str) -> None:
        """Open a lake; a URI that no client here can read is a :class:`LakeError`, never a traceback.

        ``s3a://bucket/lake`` (Hadoop's S3 client, which open-source Spark needs) is read by
        pyarrow and DuckDB as ``s3://bucket/lake``; Spark gets ``s3a://`` back from :meth:`url`.
        A query string (``?region=eu-west-1&endpoint_override=...``) is for pyarrow only.
        """
        self.uri = str(uri)
        self.scheme: str | None = None
        self._base = ""
        if "://" in self.uri:
            parsed = urllib.parse.urlsplit(self.uri)
            self.scheme = parsed.scheme.lower()
            self._base = f"{parsed.scheme}://{parsed.netloc}{parsed.path}".rstrip("/")
            arrow_uri = f"{self.arrow_scheme}://{self.uri.split('://', 1)[1]}"
            if self.arrow_scheme == "gs" and "retry_limit_seconds" not in parsed.query:
                # Google's client retries an unreachable store for 15 minutes: a command would hang
                # with nothing printed; a minute of retries, then the error (the URI may say more)
                arrow_uri += ("&" if parsed.query else "?") + f"retry_limit_seconds={GCS_RETRY_SECONDS}"
            try:
                self.fs, self.root = pafs.FileSystem.from_uri(arrow_uri)
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise LakeError(
                    f"cannot open the lake {self.uri}: {exc}. A lake is a local folder or an s3:// "
                    "(s3a://), gs:// or hdfs:// URI that pyarrow can reach (credentials and region as "
                    "for any AWS/GCP client, or ?region=...&endpoint_override=... in the URI)"
                ) from None
        else:
            from pathlib import Path

            self.fs = pafs.LocalFileSystem()
            self.root = str(Path(self.uri).expanduser().resolve())
        self.root = self.root.rstrip("/")

    @property
    def arrow_scheme(self) -> str | None:
        """The URI scheme pyarrow and DuckDB know the lake's store by (``s3`` for ``s3a``)."""
        return None if self.scheme is None else ARROW_SCHEMES.get(self.scheme, self.scheme)

    # -- paths ---------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def table_dir(self, name: str) -> str:
        return self.path(name)

    def url(self, name: str) -> str:
        """The table folder as Spark reads it: the lake's own URI (``s3a://...``), or a local path."""
        if self.scheme is not None:
            return f"{self._base}/{name}"
        return self.table_dir(name)

    def data_url(self, path: str) -> str:
        """A file path of :attr:`fs` (as :meth:`files` lists it) as DuckDB reads it: ``s3://bucket/key``."""
        if self.scheme is None:
            return path
        netloc = urllib.parse.urlsplit(self.uri).netloc
        bucket = netloc.split("@", 1)[0]  # abfs://container@account: paths start with the container
        if netloc and path.split("/", 1)[0] != bucket:  # hdfs: the file system's paths have no host
            path = netloc + "/" + path.lstrip("/")
        return f"{self.arrow_scheme}://{path}"

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path(MANIFEST)).type == pafs.FileType.File

    # -- files ---------------------------------------------------------------------
    def files(self, name: str) -> list[str]:
        """Parquet data files of a table (sorted), skipping Spark's ``_SUCCESS`` and hidden files."""
        info = self.fs.get_file_info(self.table_dir(name))
        if info.type != pafs.FileType.Directory:
            return []
        sel = pafs.FileSelector(self.table_dir(name), recursive=True)
        out = []
        for f in self.fs.get_file_info(sel):
            base = posixpath.basename(f.path)
            if f.type == pafs.FileType.File and base.endswith(".parquet") and not base.startswith(("_", ".")):
                out.append(f.path)
        return sorted(out)

    def has_data(self, name: str) -> bool:
        return bool(self.files(name))

    # -- writes --------------------------------------------------------------------
    def write_source(self, name: str, rows: pa.Table, source: str) -> WriteReport:
        """Write ``rows`` of table ``name`` as the files of ``source``, replacing its earlier files.

        Deterministic names make this idempotent: the same rows for the same
        source give the same files; files of this source that this write did
        not produce again (a day that no longer has rows) are removed.
        """
        schema = lake_schemas()[name]
        rows = rows.select(schema.names).cast(schema)
        token = source_token(source)
        before = {f for f in self.files(name) if posixpath.basename(f).startswith(f"part-{token}-")}
        written: list[str] = []
        if rows.num_rows:
            part = partition_column(name)
            data = rows
            partitioning = None
            if part == DAY:
                data = rows.append_column(DAY, day_of(rows, TABLES[name].time_column or ""))
                partitioning = ds.partitioning(pa.schema([pa.field(DAY, pa.string())]), flavor="hive")
            elif part == RUN:
                data = rows.append_column(RUN, pa.array([token] * rows.num_rows, pa.string()))
                partitioning = ds.partitioning(pa.schema([pa.field(RUN, pa.string())]), flavor="hive")
            ds.write_dataset(
                data,
                self.table_dir(name),
                format="parquet",
                partitioning=partitioning,
                basename_template=f"part-{token}-{{i}}.parquet",
                filesystem=self.fs,
                existing_data_behavior="overwrite_or_ignore",
                file_visitor=lambda wf: written.append(wf.path),
                preserve_order=True,
            )
        stale = before - set(written)
        for f in stale:
            self.fs.delete_file(f)
        return WriteReport(name, rows.num_rows, len(written), len(stale))

    def replace_table(self, name: str, rows: pa.Table, source: str = "replace") -> WriteReport:
        """Replace every file of a table (reference tables, a full export)."""
        for f in self.files(name):
            if not posixpath.basename(f).startswith(f"part-{source_token(source)}-"):
                self.fs.delete_file(f)
        return self.write_source(name, rows, source)

    def drop_table(self, name: str) -> int:
        """Remove every data file of a table (it then reads as absent); the count removed."""
        files = self.files(name)
        for f in files:
            self.fs.delete_file(f)
        return len(files)

    def check_writable(self) -> None:
        """Refuse to write into a folder that holds files but no lake: an export replaces every
        Parquet file under a table's folder, which could be somebody else's data."""
        if self.exists():
            self.check_version()
            return
        foreign = [i.path for i in self._listing() if not self._ours(i)]
        if foreign:
            raise LakeError(
                f"{self.uri} is not empty and holds no yieldmeter lake ({MANIFEST}; "
                f"{posixpath.relpath(foreign[0], self.root)} is not a lake file): give a new or "
                "empty folder, or an existing lake"
            )

    def _listing(self) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True, recursive=True))

    def _ours(self, info: pafs.FileInfo) -> bool:
        """Whether a path under the root is one a lake write makes: a table's folder, its
        partitions and ``part-*`` files, the manifest's temporary file (an export cut short
        before its manifest was written leaves only these, and may run again)."""
        parts = posixpath.relpath(info.path, self.root).split("/")
        if parts[0] not in lake_schemas():
            return len(parts) == 1 and parts[0] == f".{MANIFEST}.tmp"
        if info.type == pafs.FileType.Directory:
            return len(parts) == 1 or all(
                p.startswith(f"{DAY}=") or p.startswith(f"{RUN}=") for p in parts[1:]
            )
        # only the names a lake write gives its files (part-<source token>-<n>.parquet): a
        # folder of somebody's own part-0.parquet or Spark output is not taken for a lake
        return re.fullmatch(r"part-[0-9a-f]{16}-[0-9]+\.parquet", parts[-1]) is not None

    def keys_in_partition(self, name: str, day: str | None, *, exclude_source: str) -> set[str]:
        """Ids already stored in one day partition by other sources (for first-writer-wins dedupe)."""
        spec = TABLES[name]
        folder = self.path(name, f"{DAY}={day if day is not None else NULL_PARTITION}")
        if self.fs.get_file_info(folder).type != pafs.FileType.Directory:
            return set()
        mine = f"part-{source_token(exclude_source)}-"
        keys: set[str] = set()
        for f in self.fs.get_file_info(pafs.FileSelector(folder)):
            base = posixpath.basename(f.path)
            if base.endswith(".parquet") and not base.startswith((mine, "_", ".")):
                t = pq.read_table(f.path, filesystem=self.fs)
                if "derived" in t.column_names:  # a derived work unit gives way to a described one
                    t = t.filter(pc.invert(t.column("derived").fill_null(False)))
                keys.update(k for k in t.column(spec.key).to_pylist() if k is not None)
        return keys

    def read_table(self, name: str) -> pa.Table:
        """A (small) table read whole with pyarrow: reference tables, manifests, tests."""
        schema = lake_schemas()[name]
        files = self.files(name)
        if not files:
            return schema.empty_table()
        parts = [pq.read_table(f, filesystem=self.fs) for f in files]
        return pa.concat_tables(
            [p.select([c for c in schema.names if c in p.column_names]) for p in parts],
            promote_options="default",
        ).cast(schema)

    # -- manifest ------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        if not self.exists():
            return {"format": LAKE_FORMAT, "schema_version": LAKE_SCHEMA_VERSION, "tables": {}}
        with self.fs.open_input_stream(self.path(MANIFEST)) as fh:
            raw = fh.read()
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LakeError(
                f"{self.path(MANIFEST)} is damaged ({exc}): restore it from a backup, or export the "
                "store to a new lake"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != LAKE_FORMAT:
            raise LakeError(f"{self.path(MANIFEST)} is not a yieldmeter lake manifest")
        return doc

    def check_version(self) -> None:
        """Refuse a lake written by a newer schema than this yieldmeter knows."""
        doc = self.manifest()
        version = int(doc.get("schema_version", LAKE_SCHEMA_VERSION))
        if version > LAKE_SCHEMA_VERSION:
            raise LakeError(
                f"the lake at {self.uri} has schema version {version}; this yieldmeter reads up to "
                f"{LAKE_SCHEMA_VERSION}: upgrade yieldmeter"
            )

    def refresh_manifest(self, tables: Iterable[str] | None = None, **extra: Any) -> dict[str, Any]:
        """Re-list the given tables (all when None) and rewrite ``_manifest.json``."""
        doc = self.manifest()
        doc["format"] = LAKE_FORMAT
        doc["schema_version"] = LAKE_SCHEMA_VERSION
        doc["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        doc.setdefault("tables", {})
        for name in tables if tables is not None else lake_schemas():
            doc["tables"][name] = self._describe(name)
        doc.update(extra)
        self.fs.create_dir(self.root, recursive=True)
        tmp = self.path(f".{MANIFEST}.tmp")
        with self.fs.open_output_stream(tmp) as fh:
            fh.write(json.dumps(doc, indent=2, sort_keys=True).encode())
        self.fs.move(tmp, self.path(MANIFEST))
        return doc

    def _describe(self, name: str) -> dict[str, Any]:
        part = partition_column(name)
        partitions: dict[str, dict[str, int]] = {}
        total = 0
        files = self.files(name)
        for f in files:
            n = pq.ParquetFile(f, filesystem=self.fs).metadata.num_rows
            total += n
            key = ""
            if part is not None:
                seg = [s for s in f.split("/") if s.startswith(f"{part}=")]
                key = seg[-1].split("=", 1)[1] if seg else ""
            p = partitions.setdefault(key, {"files": 0, "rows": 0})
            p["files"] += 1
            p["rows"] += n
        schema = lake_schemas()[name]
        return {
            "partitioned_by": part,
            "time_column": TABLES[name].time_column if name in TABLES else None,
            "key": TABLES[name].key if name in TABLES else None,
            "columns": {f.name: str(f.type) for f in schema},
            "rows": total,
            "files": len(files),
            "partitions": dict(sorted(partitions.items())) if part is not None else {},
        }

    def param(self, key: str) -> Any:
        """A lake-level setting kept in the manifest (e.g. the prices fingerprint)."""
        return self.manifest().get(key)


def day_of(rows: pa.Table, column: str) -> pa.Array:
    """``YYYY-MM-DD`` of a UTC timestamp column (null stays null)."""
    col = rows.column(column)
    if pa.types.is_timestamp(col.type) and col.type.tz is not None:
        col = col.cast(pa.timestamp(col.type.unit))  # values are UTC already
    return pc.strftime(col, format="%Y-%m-%d").combine_chunks()
