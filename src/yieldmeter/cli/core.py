"""Foundation commands: init, ingest, status, report spend, unpriced, quarantine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from yieldmeter.cli.common import (
    ORG_HELP,
    STRICT_HELP,
    FormatOpt,
    ModelsOpt,
    OutputFormat,
    PeopleOpt,
    PeriodOpt,
    TeamsOpt,
    WorkflowsOpt,
    WorkspaceOpt,
    console,
    emit,
    fail,
    group,
    note_console,
    privacy_note,
    report_ingest_outcome,
    workspace,
)

#: Files larger than this get a progress bar.
PROGRESS_BYTES = 4 << 20


def register(app: typer.Typer) -> None:
    @app.command()
    def init(
        directory: Annotated[
            Path | None,
            typer.Argument(help="Folder for the workspace (default: --workspace, else here)."),
        ] = None,
        ws_path: WorkspaceOpt = Path("."),
    ) -> None:
        """Create a workspace: a commented yieldmeter.yaml and the store under .yieldmeter/."""
        from yieldmeter.app.workspace import Workspace
        from yieldmeter.config import CONFIG_FILE, ConfigError
        from yieldmeter.store.duckdb_store import StoreUnavailable

        where = directory if directory is not None else ws_path
        try:
            ws = Workspace.init(where)
        except (ConfigError, StoreUnavailable) as exc:
            fail(str(exc))
        except OSError as exc:  # a file where the folder would be, no permission
            blocked = isinstance(exc, FileExistsError | NotADirectoryError)
            fail(f"cannot create a workspace at {where}: {'a file is in the way' if blocked else exc}")
        ws.close()
        console().print(f"Workspace ready at [bold]{ws.root}[/] ({CONFIG_FILE} and .yieldmeter/).")

    @app.command()
    def ingest(
        paths: Annotated[list[Path], typer.Argument(help="Files or folders to import.")],
        table: Annotated[
            str | None,
            typer.Option("--table", help="Canonical table of tabular files (inferred from the id column)."),
        ] = None,
        fmt: Annotated[
            str,
            typer.Option(
                "--format",
                help="auto, otlp-json, otlp-proto, litellm, langfuse, openai-usage, anthropic-usage, "
                "focus, table.",
            ),
        ] = "auto",
        ws_path: WorkspaceOpt = Path("."),
        output: Annotated[
            OutputFormat, typer.Option("--output", help="Summary format.")
        ] = OutputFormat.table,
        to_lake: Annotated[
            str | None,
            typer.Option("--to-lake", help="Write to this lake (folder or URI) instead of the store."),
        ] = None,
        strict: Annotated[bool, typer.Option("--strict", help=STRICT_HELP)] = False,
        org: Annotated[str | None, typer.Option("--org", help=ORG_HELP)] = None,
    ) -> None:
        """Import CSV, JSON lines, Parquet, OTLP JSON and usage exports into the store."""
        if to_lake is not None:
            from yieldmeter.cli.lake import ingest_to_lake_command

            ingest_to_lake_command(paths, to_lake, table, fmt, ws_path, output, strict, org)
            return
        from yieldmeter.ingest.registry import UnknownFormat
        from yieldmeter.ingest.tabular import TableNotKnown
        from yieldmeter.schema import INGESTIBLE

        if table is not None and table not in INGESTIBLE:
            fail(f"--table {table!r} is not a table; choose one of {', '.join(INGESTIBLE)}")
        from yieldmeter.app.workspace import Workspace

        try:
            passed_over: list[Path] = []
            files = Workspace.input_files(paths, passed_over)
        except FileNotFoundError as exc:
            fail(str(exc))
        big = any(f.stat().st_size > PROGRESS_BYTES for f in files)
        with workspace(ws_path, create=True) as ws:
            progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=console(),
                transient=True,
                disable=not big,
            )
            tasks: dict[Path, int] = {}

            def report(path: Path, done: int, total: int) -> None:
                if path not in tasks:
                    tasks[path] = progress.add_task(path.name, total=total)
                progress.update(tasks[path], completed=done)

            try:
                with progress:
                    summary = ws.ingest_paths(
                        files, fmt=fmt, table=table, progress=report if big else None, org=org
                    )
            except (UnknownFormat, TableNotKnown, FileNotFoundError, ValueError) as exc:
                fail(str(exc))
        how = "detected by content" if fmt == "auto" else "as --format says"
        notes = note_console(output)
        for f in summary.files:
            if output is OutputFormat.table:  # on its own line: a table column would cut the name
                name = f.format if f.format != "auto" else "format not recognised"
                console().print(f"{f.source}: [bold]{name}[/] ({how})", highlight=False, soft_wrap=True)
            # under the file's own line in a table; named in the note where no such line is printed
            where = "" if output is OutputFormat.table else f"{f.source}: "
            for note in dict.fromkeys(f.notes):
                notes.print(f"[yellow]note:[/] {where}{note}", highlight=False)
        emit(summary.rows(), output, title="Ingest summary")
        if output is OutputFormat.table:
            updated = summary.total("updated")
            console().print(
                f"{summary.total('read'):,} rows read: {summary.total('landed'):,} landed"
                + (f" ({updated:,} replacing stored rows of the same id)" if updated else "")
                + f", {summary.total('duplicates'):,} duplicates skipped, "
                f"{summary.total('quarantined'):,} quarantined (see `yieldmeter quarantine`), "
                f"{summary.total('unpriced'):,} unpriced calls (see `yieldmeter unpriced`).",
                highlight=False,
            )
        summary.passed_over[:0] = passed_over  # the folders were walked here, before the import
        report_ingest_outcome(summary, output, strict)

    @app.command()
    def status(ws_path: WorkspaceOpt = Path("."), fmt: FormatOpt = OutputFormat.table) -> None:
        """What the store holds: rows per table, time span, totals."""
        with workspace(ws_path) as ws:
            info = ws.status()
        if fmt is not OutputFormat.table:
            emit([{"table": k, "rows": v} for k, v in info["tables"].items()], fmt)
            return
        c = console()
        c.print(f"[bold]Workspace[/] {info['workspace']}")
        if info["first_call"]:
            c.print(
                f"Calls from {info['first_call']:%Y-%m-%d %H:%M} to {info['last_call']:%Y-%m-%d %H:%M} UTC"
            )
        emit([{"table": k, "rows": v} for k, v in info["tables"].items()], fmt)
        t = info["totals"]
        if t:

            def usd(v: float | None) -> str:
                return "unpriced" if v is None else f"${v:,.2f}"

            c.print(
                f"Model cost {usd(t['model_cost'])}, fully loaded {usd(t['fully_loaded_cost'])}, "
                f"{t['unpriced_calls']:,} unpriced calls.",
                highlight=False,
            )

    report = group(app, "report", "Reports: spend, and the value measures.")

    @report.command("spend")
    def report_spend(
        by: Annotated[
            str,
            typer.Option(
                "--by",
                help="Comma-separated: team, workflow, user_id, model, "
                "provider, service_tier, app, environment, day, week, month.",
            ),
        ] = "team",
        period: PeriodOpt = None,
        team: TeamsOpt = None,
        workflow: WorkflowsOpt = None,
        model: ModelsOpt = None,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
        people: PeopleOpt = False,
    ) -> None:
        """Model cost, fully loaded cost, tokens, calls and unpriced volume (per person: --people).

        Without --people, teams below privacy.min_group_size are shown together, and a --team
        naming one is refused, as on the server and in the reports."""
        from yieldmeter.app.reports import ReportFilters
        from yieldmeter.app.spend_sections import OTHER_TEAMS
        from yieldmeter.app.value import PrivacyError
        from yieldmeter.metrics.spend import DIMENSIONS

        dims = [d.strip() for d in by.split(",") if d.strip()]
        dims = ["user_id" if d == "user" else d for d in dims]
        bad = [d for d in dims if d not in DIMENSIONS]
        if bad:
            fail(f"--by {', '.join(bad)}: not a dimension; choose from {', '.join(DIMENSIONS)}")
        if "user_id" in dims and not people:
            # as the value commands and the server: per-person figures are a privileged view
            fail("--by user_id shows spend per person, a privileged view: add --people")
        try:
            f = ReportFilters.of(period, team, workflow, model, people=people)
        except ValueError as exc:  # a period that is none of the forms
            fail(str(exc))
        with workspace(ws_path) as ws:
            try:
                rows = ws.reports.spend(dims, f)
            except PrivacyError as exc:
                fail(str(exc))
            privacy = ws.reports.team_privacy(f) if "team" in dims else None
        emit(rows, fmt, title="Spend")
        # said where it shaped what is shown: a merged row, or small teams left out of all teams
        if privacy is not None and (
            OTHER_TEAMS in rows.column("team").to_pylist() or (privacy.hidden and not f.teams)
        ):
            privacy_note(privacy.note(), fmt)

    @app.command()
    def unpriced(ws_path: WorkspaceOpt = Path("."), fmt: FormatOpt = OutputFormat.table) -> None:
        """Models no price matches, with their volume: add a price override in yieldmeter.yaml."""
        with workspace(ws_path) as ws:
            rows = ws.unpriced()
        emit(rows, fmt, title="Unpriced models")

    @app.command()
    def quarantine(
        limit: Annotated[int, typer.Option("--limit", min=1, help="Newest rows to show.")] = 50,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Rows that could not be stored, with the file, the row and the reason."""
        with workspace(ws_path) as ws:
            rows = ws.quarantine(limit).drop_columns(["quarantine_id"])
            held = ws.store.count("quarantine")
        emit(rows, fmt, title="Quarantine")
        if held > rows.num_rows:
            note_console(fmt).print(
                f"[yellow]note:[/] the newest {rows.num_rows:,} of {held:,} quarantined rows; "
                "--limit shows more",
                highlight=False,
            )
