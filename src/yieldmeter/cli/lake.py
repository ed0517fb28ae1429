"""Scale-out commands: the engine choice, ``lake export|ingest|info|engines``, ``spark normalise``.

``yieldmeter --engine spark --lake PATH report spend`` runs any report on
Spark over a lake; ``--engine duckdb --lake PATH`` on DuckDB over the same
lake; no option: the workspace's own DuckDB store. The choice also comes
from ``YIELDMETER_ENGINE`` / ``YIELDMETER_LAKE`` / ``YIELDMETER_SPARK_MASTER``
and from the ``engine:`` section of ``yieldmeter.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from yieldmeter.cli import common
from yieldmeter.cli.common import FormatOpt, OutputFormat, WorkspaceOpt, console, emit, fail, group

EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        envvar="YIELDMETER_ENGINE",
        help="duckdb (the workspace file, or a lake with --lake) or spark (a lake).",
        show_default="duckdb",
    ),
]
LakeOpt = Annotated[
    str | None,
    typer.Option(
        "--lake", envvar="YIELDMETER_LAKE", help="Lake to read (folder or s3://, gs://, hdfs:// URI)."
    ),
]
MasterOpt = Annotated[
    str | None,
    typer.Option(
        "--spark-master",
        envvar="YIELDMETER_SPARK_MASTER",
        help="Spark master URL (local[*], spark://host:7077, k8s://..., yarn); set only to override "
        "the master spark-submit gave the driver.",
        show_default="spark-submit's, else MASTER/SPARK_MASTER, else local[*]",
    ),
]


def engine_options(engine: EngineOpt = None, lake: LakeOpt = None, spark_master: MasterOpt = None) -> None:
    """AI value management: from token spend to cost per successful outcome and yield."""
    common.ENGINE_CHOICE.clear()
    common.ENGINE_CHOICE.update(engine=engine, lake=lake, master=spark_master)


def register(app: typer.Typer) -> None:
    app.callback()(engine_options)
    lake = group(app, "lake", "The lake: canonical tables as day-partitioned Parquet for DuckDB or Spark.")
    spark = group(app, "spark", "Spark jobs over a lake.")

    @lake.command("export")
    def lake_export(
        path: Annotated[str, typer.Argument(help="Lake folder or URI to write.")],
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Write the workspace's store to a lake (each table replaced: the lake becomes a snapshot)."""
        from yieldmeter.app.workspace import Workspace
        from yieldmeter.lake.export import export_workspace
        from yieldmeter.lake.layout import LakeError
        from yieldmeter.store.duckdb_store import StoreUnavailable

        try:
            ws = Workspace.open(ws_path)
        except (FileNotFoundError, ValueError, StoreUnavailable) as exc:
            fail(str(exc))
        with ws:
            try:
                summary = export_workspace(ws, path)
            except (LakeError, OSError) as exc:  # a URI no client reads, a bucket out of reach
                fail(f"cannot write the lake {path}: {exc}")
        emit(summary.rows(), fmt, title=f"Lake {summary.lake}")
        if fmt is OutputFormat.table:
            console().print(f"{summary.files} files written; manifest at {summary.lake}/_manifest.json")

    @lake.command("ingest")
    def lake_ingest(
        paths: Annotated[list[Path], typer.Argument(help="Files or folders to import.")],
        to: Annotated[str, typer.Option("--to", "--to-lake", help="Lake folder or URI to write.")],
        table: Annotated[
            str | None, typer.Option("--table", help="Canonical table of tabular files.")
        ] = None,
        fmt: Annotated[str, typer.Option("--format", help="auto or a format name (see `ingest`).")] = "auto",
        ws_path: WorkspaceOpt = Path("."),
        output: Annotated[
            OutputFormat, typer.Option("--output", help="Summary format.")
        ] = OutputFormat.table,
        strict: Annotated[bool, typer.Option("--strict", help=common.STRICT_HELP)] = False,
        org: Annotated[str | None, typer.Option("--org", help=common.ORG_HELP)] = None,
    ) -> None:
        """Import files straight into a lake (no store); a re-run of the same input changes nothing."""
        ingest_to_lake_command(paths, to, table, fmt, ws_path, output, strict, org)

    @lake.command("info")
    def lake_info(
        path: Annotated[str, typer.Argument(help="Lake folder or URI.")], fmt: FormatOpt = OutputFormat.table
    ) -> None:
        """What the lake holds, from its manifest: rows, files and day partitions per table."""
        from yieldmeter.lake.layout import Lake, LakeError

        try:
            lake = Lake(path)
            if not lake.exists():
                fail(f"no yieldmeter lake at {path} (no _manifest.json)")
            doc = lake.manifest()
        except LakeError as exc:
            fail(str(exc))
        except OSError as exc:  # credentials, network, permissions: said, not a traceback
            fail(f"cannot read the lake {path}: {exc}")
        rows = []
        for name, t in sorted(doc.get("tables", {}).items()):
            parts = sorted(t.get("partitions") or {})
            rows.append(
                {
                    "table": name,
                    "rows": t.get("rows", 0),
                    "files": t.get("files", 0),
                    "partitions": len(parts) if t.get("partitioned_by") else None,
                    "first": parts[0] if parts and t.get("partitioned_by") == "day" else None,
                    "last": parts[-1] if parts and t.get("partitioned_by") == "day" else None,
                }
            )
        emit(rows, fmt, title=f"Lake {lake.uri} (schema version {doc.get('schema_version')})")

    @lake.command("engines")
    def lake_engines(fmt: FormatOpt = OutputFormat.table) -> None:
        """What each engine does not support over a lake, and why (the one declaration of engine gaps)."""
        from yieldmeter.lake.engines import ENGINES, UNSUPPORTED

        rows = [{"engine": e, "capability": c, "why": r} for (e, c), r in sorted(UNSUPPORTED.items())]
        emit(
            rows,
            fmt,
            title=f"Engine gaps over a lake ({', '.join(ENGINES)}; everything not listed runs on both; "
            "DuckDB on the workspace's own file runs everything)",
        )

    @spark.command("normalise")
    def spark_normalise(
        raw_path: Annotated[
            str, typer.Argument(help="Raw OTLP JSON lines (Collector file exporter output).")
        ],
        lake_path: Annotated[str, typer.Argument(help="Lake folder or URI to write.")],
        ws_path: WorkspaceOpt = Path("."),
        master: MasterOpt = None,
        fmt: FormatOpt = OutputFormat.table,
        replace_days: Annotated[
            bool,
            typer.Option(
                "--replace-days",
                help="Replace the days the input touches even where the lake holds rows the input lacks.",
            ),
        ] = False,
    ) -> None:
        """Turn raw OTLP JSON lines into the lake's canonical tables on Spark (the same adapter, per file).

        Every day the input touches is replaced: give it those days whole (their raw folders).
        """
        from yieldmeter.config import CONFIG_FILE, ConfigError, load_config
        from yieldmeter.lake.engines import EngineGap, EngineSettings, spark_session
        from yieldmeter.lake.spark_jobs import normalise

        try:
            config = load_config(Path(ws_path) / CONFIG_FILE)
            settings = EngineSettings.resolve(
                engine="spark",
                lake=lake_path,
                master=master or common.ENGINE_CHOICE.get("master"),
                config=config.engine.settings(),
            )
            session = spark_session(settings.master, settings.spark_conf)
            summary = normalise(session, raw_path, lake_path, config, replace_days=replace_days)
        except (ConfigError, EngineGap, FileNotFoundError, ValueError) as exc:
            fail(str(exc))
        emit(summary.rows(), fmt, title=f"Normalised {raw_path} -> {lake_path}")
        common.report_unread(summary.unreadable, summary.files, done="written")


def ingest_to_lake_command(
    paths: list[Path], lake: str, table: str | None, fmt: str, ws_path: Path, output: OutputFormat,
    strict: bool = False, org: str | None = None,
) -> None:  # fmt: skip
    """Shared by ``lake ingest`` and ``ingest --to-lake``: write files to a lake and print the summary."""
    from yieldmeter.config import CONFIG_FILE, ConfigError, load_config
    from yieldmeter.ingest.registry import UnknownFormat
    from yieldmeter.ingest.tabular import TableNotKnown
    from yieldmeter.lake.ingest import ingest_to_lake
    from yieldmeter.schema import INGESTIBLE

    if table is not None and table not in INGESTIBLE:
        fail(f"--table {table!r} is not a table; choose one of {', '.join(INGESTIBLE)}")
    try:
        config = load_config(Path(ws_path) / CONFIG_FILE)
        summary = ingest_to_lake(paths, lake, config, fmt=fmt, table=table, org=org)
    except (ConfigError, UnknownFormat, TableNotKnown, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    notes = common.note_console(output)
    for f in summary.files:
        for note in dict.fromkeys(f.notes):
            notes.print(f"[yellow]note:[/] {f.source}: {note}", highlight=False)
    emit(summary.rows(), output, title=f"Ingest summary (lake {lake})")
    if output is OutputFormat.table:
        console().print(
            f"{summary.total('read'):,} rows read: {summary.total('landed'):,} landed, "
            f"{summary.total('duplicates'):,} duplicates skipped, "
            f"{summary.total('quarantined'):,} quarantined.",
            highlight=False,
        )
    common.report_ingest_outcome(summary, output, strict)
