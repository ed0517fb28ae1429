"""``yieldmeter spark normalise``: raw OTLP JSON lines -> the lake's canonical tables, on Spark.

The OpenTelemetry Collector's ``file`` exporter writes one
``ExportTraceServiceRequest`` per line into rotated files (often synced to
object storage). This job reads those files as whole binary records
(``binaryFile``), and runs **the same adapter** a ``yieldmeter ingest`` runs
(:func:`yieldmeter.ingest.otlp_json.read`) once per file inside
``mapInArrow``, so a row on Spark is byte for byte the row the CLI makes,
with the same ids and the same quarantine reasons and positions.

Steps:

1. parse: each file -> Arrow IPC payloads, one per (canonical table, day),
   plus quarantine rows; the result is cached;
2. per table: decode the payloads of that table (``mapInArrow`` again), drop
   repeated ids (a span the Collector retried) keeping the first, as
   ``ingest --to-lake`` does: the row of the first file (by path) and, inside it, the first in
   input order; for ``work_units`` add a derived unit for each work unit the
   calls name and no span describes;
3. write with dynamic partition overwrite: the days this input touches are
   replaced, other days are left alone, so a re-run leaves the same rows;
4. on the driver: reference tables from ``yieldmeter.yaml`` (workflows,
   prices) and the model map for the (provider, model) pairs seen; the manifest.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from yieldmeter.config import Config
from yieldmeter.lake.engines import _spark_type
from yieldmeter.lake.layout import DAY, RUN, Lake, day_of, lake_schemas, source_token
from yieldmeter.schema import TABLES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ENVELOPE = pa.schema(
    [("table", pa.string()), (DAY, pa.string()), ("source", pa.string()), ("payload", pa.binary())]
)
#: Carried with every decoded row so repeated ids keep the row ``ingest --to-lake`` keeps (the first).
SOURCE, ORDER = "_source", "_order"


@dataclass
class NormaliseSummary:
    raw: str
    lake: str
    files: int = 0
    tables: dict[str, int] = field(default_factory=dict)
    #: (file, reason) of each file that could not be read to its end (quarantined, the job went on)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [{"table": k, "rows": v} for k, v in sorted(self.tables.items())]


def _ipc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def _source_of(path: str) -> str:
    """The source name a CLI ingest of the same file records (local paths without ``file:``)."""
    return (
        path[5:]
        if path.startswith("file:") and not path.startswith("file://")
        else path.removeprefix("file://")
    )


def parse_files(batches: Iterator[pa.RecordBatch], options: dict[str, Any]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: (path, content) rows -> envelope rows (table, day, Arrow IPC payload).

    A file's tables are split by day once it is read whole: a framework or agent step and the
    call under it in two of its batches count once (``drop_sums_with_calls``), as with
    ``ingest --to-lake``."""
    import gzip

    from yieldmeter.app.workspace import unreadable_reason
    from yieldmeter.ingest.base import UNREADABLE, ReadOptions
    from yieldmeter.ingest.conform import file_rejects
    from yieldmeter.ingest.otlp_json import read
    from yieldmeter.lake.ingest import drop_sums_with_calls, quarantine_rows

    now = datetime.now(UTC)
    for rb in batches:
        paths = rb.column("path").to_pylist()
        contents = rb.column("content").to_pylist()
        for path, content in zip(paths, contents, strict=True):
            source = _source_of(path)
            opts = ReadOptions(source=source, **options)
            out_t: list[str | None] = []
            out_d: list[str | None] = []
            out_p: list[bytes] = []
            tables: dict[str, list[pa.Table]] = {}
            summed: list[pa.Table] = []
            stream: Any = io.BytesIO(content)
            if path.endswith(".gz"):  # read as a stream: a .gz cut short lands its lines before the cut
                stream = gzip.GzipFile(fileobj=stream)
            try:
                for number, batch in enumerate(read(stream, opts)):
                    for name, rows in batch.tables.items():
                        if not rows.num_rows:
                            continue
                        # input order inside the file (batch, row), kept through the split by day
                        first = number << 32
                        order = pa.array(range(first, first + rows.num_rows), pa.int64())
                        tables.setdefault(name, []).append(rows.append_column(ORDER, order))
                    summed.append(batch.summed)
                    if batch.rejects.num_rows:
                        out_t.append("quarantine")
                        out_d.append(None)
                        out_p.append(_ipc(quarantine_rows(batch.rejects, now)))
            except UNREADABLE as exc:
                # what was read before the failure lands; the file (or its rest) is one quarantine
                # row with the reason, as in `yieldmeter ingest --to-lake`, and the job goes on
                reason = unreadable_reason(exc, source)
                rejects = file_rejects(source, reason)
                out_t.append("quarantine")
                out_d.append(None)
                out_p.append(_ipc(quarantine_rows(rejects, now)))
            for name, parts in tables.items():
                rows = pa.concat_tables(parts)
                if name == "calls":  # a step and the call under it in two batches: counted once
                    rows, _ = drop_sums_with_calls(rows, summed)
                days = day_of(rows, TABLES[name].time_column or "")
                for d in pc.unique(days).to_pylist():
                    mask = pc.is_null(days) if d is None else pc.equal(days, d)
                    out_t.append(name)
                    out_d.append(d)
                    out_p.append(_ipc(rows.filter(mask)))
            if out_t:
                yield pa.RecordBatch.from_arrays(
                    [
                        pa.array(out_t, pa.string()),
                        pa.array(out_d, pa.string()),
                        pa.array([source] * len(out_t), pa.string()),
                        pa.array(out_p, pa.binary()),
                    ],
                    schema=ENVELOPE,
                )


def decode(batches: Iterator[pa.RecordBatch], name: str, run: str) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: envelope rows of one table -> its canonical rows, the partition column,
    and the file and input position of each row (:data:`SOURCE`, :data:`ORDER`)."""
    schema = lake_schemas()[name]
    for rb in batches:
        days = rb.column(DAY).to_pylist()
        sources = rb.column("source").to_pylist()
        for d, source, payload in zip(days, sources, rb.column("payload").to_pylist(), strict=True):
            raw = pa.ipc.open_stream(payload).read_all()
            n = raw.num_rows
            order = raw.column(ORDER) if ORDER in raw.column_names else pa.array(range(n), pa.int64())
            rows = raw.select(schema.names).cast(schema)
            part = run if name == "quarantine" else d
            rows = rows.append_column(RUN if name == "quarantine" else DAY, pa.array([part] * n, pa.string()))
            rows = rows.append_column(SOURCE, pa.array([source] * n, pa.string()))
            rows = rows.append_column(ORDER, order)
            yield from rows.to_batches()


def _ddl(schema: pa.Schema, extra: str) -> str:
    return ", ".join([*(f"`{f.name}` {_spark_type(f.type)}" for f in schema), f"`{extra}` string"])


def first_per_key(df: DataFrame, key: str) -> DataFrame:
    """One row per ``key``: the first by file path, then input order (what the CLI keeps).

    ``dropDuplicates`` would keep whichever row a task happened to see first.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = Window.partitionBy(key).orderBy(F.col(SOURCE), F.col(ORDER))
    return df.withColumn("_n", F.row_number().over(first)).filter(F.col("_n") == 1).drop("_n")


def _derived_units(calls: DataFrame, described: DataFrame) -> DataFrame:
    """Work units the calls name and no input describes: the store's derivation rule, in Spark."""
    from pyspark.sql import functions as F

    named = calls.filter(F.col("work_unit_id").isNotNull())
    missing = named.join(described.select("work_unit_id"), "work_unit_id", "left_anti")
    end = F.col("ts") + F.make_dt_interval(
        secs=F.round(F.coalesce(F.col("duration_ms"), F.lit(0.0))).cast("long") / 1000.0
    )
    units = missing.groupBy("work_unit_id").agg(
        F.first("session_id", ignorenulls=True).alias("parent_id"),
        F.mode("workflow").alias("workflow"),
        F.mode("task_type").alias("task_type"),
        F.mode("user_id").alias("user_id"),
        F.mode("team").alias("team"),
        F.min("ts").alias("started_at"),
        F.max(end).alias("ended_at"),
        F.when(F.bool_and(F.col("status") == "error"), "failed").otherwise("completed").alias("status"),
        F.first("org", ignorenulls=True).alias("org"),
    )
    return units.select(
        "work_unit_id",
        "parent_id",
        "workflow",
        "task_type",
        "user_id",
        "team",
        F.lit(None).cast("string").alias("owner"),
        "started_at",
        "ended_at",
        "status",
        F.lit(True).alias("derived"),
        "org",
        F.lit(None).cast("string").alias("attributes"),
        F.date_format("started_at", "yyyy-MM-dd").alias(DAY),
    )


def _with_units_described_elsewhere(
    session: SparkSession, lake: Lake, described: DataFrame, calls: DataFrame, *, keep: bool
) -> DataFrame:
    """The work units to write: the input's own, a unit derived for each id its calls name that
    no input describes, and, with ``keep``, the units the lake holds described (``ingest
    --to-lake`` of a work units file, ``lake export``, an earlier run's spans) in the days this
    run replaces: a derived unit gives way to a described one, as with ``ingest --to-lake``.
    Without ``keep`` (``--replace-days``) the days are replaced by the input alone. Read from
    the lake and checkpointed, so the write may overwrite what it read.

    Which writer described a unit is not asked: the run rewrites every row it keeps into files
    of its own, so a file's name would not tell at the next run."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    try:
        stored = session.read.parquet(lake.url("work_units"))
    except AnalysisException:  # no work units yet
        return described.unionByName(_derived_units(calls, described))
    elsewhere = (
        stored.filter(~F.coalesce(F.col("derived"), F.lit(False)))
        .withColumn(DAY, F.col(DAY).cast("string"))
        .join(described.select("work_unit_id"), "work_unit_id", "left_anti")
        .select(*described.columns)
    )
    # the days this run replaces: its described units' and its calls' (a derived unit starts
    # at its first call)
    days = described.select(DAY).unionByName(calls.select(DAY)).distinct()
    replaced = elsewhere.join(days, DAY, "left_semi")
    # a unit described in a day this run does not replace stays there: never derived again (a
    # derived copy in this run's days would be a second row of it); one in a replaced day is
    # kept, or with --replace-days dropped, and then derived from the calls like any other
    outside = elsewhere.join(days, DAY, "left_anti")
    known = described.unionByName(elsewhere if keep else outside)
    units = described.unionByName(_derived_units(calls, known))
    return (units.unionByName(replaced) if keep else units).localCheckpoint()


class WouldDropRows(ValueError):
    """A run would replace day partitions that hold rows its input does not have."""


def _rows_dropped(session: SparkSession, lake: Lake, name: str, df: DataFrame) -> tuple[int, list[str]]:
    """Rows of the lake's ``name`` in the days ``df`` touches whose keys ``df`` lacks, and those days."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    days = sorted(r[DAY] for r in df.select(DAY).distinct().collect() if r[DAY] is not None)
    if not days:
        return 0, []
    key = TABLES[name].key
    try:
        stored = session.read.parquet(lake.url(name))
    except AnalysisException:  # the table has no files yet
        return 0, []
    stored = stored.filter(F.col(DAY).cast("string").isin(days)).select(
        key, F.col(DAY).cast("string").alias(DAY)
    )
    lost = stored.join(df.select(key), key, "left_anti")
    hit = lost.groupBy(DAY).count().collect()
    return sum(int(r["count"]) for r in hit), sorted(r[DAY] for r in hit)


def normalise(
    session: SparkSession, raw_path: str, lake_uri: str, config: Config, *, replace_days: bool = False
) -> NormaliseSummary:
    """Run the job; returns the rows written per table.

    Each table's day partitions that the input touches are replaced, so the input must hold
    those days whole (normalise a day's raw folder, not its last hour). Before anything is
    written, rows the lake holds for those days and the input lacks are counted: any, and the
    run stops with :class:`WouldDropRows`, unless ``replace_days`` says to drop them.
    """
    from pyspark.sql import functions as F

    from yieldmeter.lake.ingest import LakeWriter

    lake = Lake(lake_uri)
    lake.check_version()
    run = source_token(raw_path)
    options = {"capture_content": config.privacy.capture_content, "score_signals": dict(config.score_signals)}
    files = session.read.format("binaryFile").option("recursiveFileLookup", "true").load(raw_path)
    files = files.filter(~F.col("path").rlike(r"/[._][^/]*$"))  # hidden files, _SUCCESS
    summary = NormaliseSummary(raw_path, lake.uri, files=files.count())
    if summary.files == 0:
        raise FileNotFoundError(f"{raw_path}: no files to normalise")
    envelope = (
        files.select("path", "content")
        .mapInArrow(
            lambda it: parse_files(it, options),
            _ddl(pa.schema([("table", pa.string())]), DAY) + ", source string, payload binary",
        )
        .persist()
    )
    present = [r["table"] for r in envelope.select("table").distinct().collect()]
    written: dict[str, DataFrame] = {}
    for name in sorted(set(present) | ({"work_units"} if "calls" in present else set())):
        schema = lake_schemas()[name]
        part = RUN if name == "quarantine" else DAY
        ddl = _ddl(schema, part) + f", `{SOURCE}` string, `{ORDER}` bigint"
        if name in present:
            df = envelope.filter(F.col("table") == name).mapInArrow(
                lambda it, name=name: decode(it, name, run), ddl
            )
        else:
            df = session.createDataFrame([], ddl)
        if name != "quarantine":
            df = first_per_key(df, TABLES[name].key)
        df = df.drop(SOURCE, ORDER)
        if name == "work_units":
            df = _with_units_described_elsewhere(session, lake, df, written["calls"], keep=not replace_days)
        written[name] = df.persist()
    if not replace_days:  # checked for every table before any is written
        for name, df in written.items():
            if name == "quarantine":
                continue
            n, days = _rows_dropped(session, lake, name, df)
            if n:
                for d in written.values():
                    d.unpersist()
                envelope.unpersist()
                raise WouldDropRows(
                    f"{name}: {n:,} rows already in the lake for {', '.join(days)} are not in {raw_path}; "
                    "a run replaces every day it touches, so normalise those days' whole input "
                    "(their raw folders), or pass --replace-days to drop the rows. Nothing was written."
                )
    for name, df in written.items():
        part = RUN if name == "quarantine" else DAY
        df.write.mode("overwrite").option("partitionOverwriteMode", "dynamic").partitionBy(part).parquet(
            lake.url(name)
        )
        summary.tables[name] = df.count()
    if "quarantine" in written:
        unread = written["quarantine"].filter((F.col("table_name") == "(file)") & F.col("position").isNull())
        summary.unreadable = sorted(
            (r["source"], r["reason"]) for r in unread.select("source", "reason").collect()
        )
    writer = LakeWriter(lake, config)
    writer.sync_reference()
    writer.drop_scores()
    if "calls" in written:
        pairs = written["calls"].select("provider", "model").distinct().toArrow()
        writer.add_model_pairs(pairs)
    for df in written.values():
        df.unpersist()
    envelope.unpersist()
    lake.refresh_manifest(
        [*written, "model_map", "scores", "unit_values"], written_by="yieldmeter spark normalise"
    )
    return summary
