"""Pieces every command module shares: the workspace option, output, errors.

Commands call these to stay thin: parse arguments, call the Workspace, hand
the rows to :func:`emit`.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table as RichTable

if TYPE_CHECKING:
    from yieldmeter.app.workspace import IngestSummary, Workspace

WorkspaceOpt = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        envvar="YIELDMETER_WORKSPACE",
        help="Workspace folder (holds yieldmeter.yaml and .yieldmeter/).",
        show_default="current folder",
    ),
]


#: The engine chosen with ``yieldmeter --engine/--lake/--spark-master`` (filled by the root
#: callback in ``cli/lake.py``); :func:`workspace` opens the workspace on it.
ENGINE_CHOICE: dict[str, str | None] = {}


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
PeopleOpt = Annotated[
    bool, typer.Option("--people", help="Show per-person rows (a privileged view; see privacy in the docs).")
]
#: How a period is written (:func:`yieldmeter.app.periods.period_bounds`).
PERIOD_HELP = "YYYY, YYYY-Qn, YYYY-MM, YYYY-MM-DD, or START..END (END exclusive)."
PeriodOpt = Annotated[str | None, typer.Option("--period", help=PERIOD_HELP)]
#: The scope of a report: each may be repeated (any of the values given).
TeamsOpt = Annotated[list[str] | None, typer.Option("--team")]
WorkflowsOpt = Annotated[list[str] | None, typer.Option("--workflow")]
ModelsOpt = Annotated[list[str] | None, typer.Option("--model")]


def console() -> Console:
    return Console()


def err_console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a message for a person (no traceback) and exit non-zero."""
    err_console().print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to ``host:port`` now, before any work is done or any address printed: a
    port in use (another server, an earlier demo) is a clear error instead of a uvicorn
    traceback after a banner whose address answers with another server's data. A name with
    several addresses (``localhost``: ::1 and 127.0.0.1; ``""``: every interface) gets one
    socket each, as uvicorn's own binding did."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        fail(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}")
    socks: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    unavailable: OSError | None = None
    for family, kind, proto, _, address in infos:
        if (family, address[:2]) in seen:
            continue
        seen.add((family, address[:2]))
        if socks and port == 0:  # one port for every address: the one the first socket got
            address = (address[0], socks[0].getsockname()[1], *address[2:])
        sock = None
        try:
            sock = socket.socket(family, kind, proto)
            if os.name != "nt":  # on Windows it lets a second server take a port in use
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # the IPv4 address gets a socket of its own
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(2048)
        except OSError as exc:
            if sock is not None:
                sock.close()
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                unavailable = exc  # a family this machine does not run (::1 without IPv6): passed over
                continue
            for other in socks:
                other.close()
            _cannot_listen(host, port, exc)
        socks.append(sock)
    if not socks:
        _cannot_listen(host, port, unavailable or OSError(f"no address for {host!r}"))
    return socks


def _cannot_listen(host: str, port: int, exc: OSError) -> NoReturn:
    in_use = exc.errno == errno.EADDRINUSE
    fail(
        f"cannot listen on {host}:{port}: "
        + ("the port is in use (another server?): choose another with --port" if in_use else str(exc))
    )


def run_server(app: Any, socks: list[socket.socket], **options: Any) -> None:
    """Serve ``app`` with uvicorn on the sockets :func:`listen` bound; a server that fails to
    start (its lifespan raised) exits 3, as ``uvicorn.run`` did."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, **options))
    server.run(sockets=socks)
    if not server.started:
        raise typer.Exit(3)


def parse_period(text: str | None) -> tuple[datetime | None, datetime | None]:
    """``--period`` text (:data:`PERIOD_HELP`) as [start, end); ``2025-03`` -> [2025-03-01,
    2025-04-01), ``A..B`` -> [A, B); text that is none of the forms ends the command with why."""
    from yieldmeter.app.periods import period_bounds

    try:
        return period_bounds(text)
    except ValueError as exc:
        fail(str(exc))


@contextmanager
def workspace(path: Path, *, create: bool = False) -> Iterator[Workspace]:
    """Open the workspace, turning known failures into clear messages."""
    from yieldmeter.config import ConfigError
    from yieldmeter.lake.engines import EngineGap
    from yieldmeter.lake.workspace import open_workspace
    from yieldmeter.store.duckdb_store import StoreUnavailable

    try:
        ws: Workspace = open_workspace(path, create=create, **ENGINE_CHOICE)
    except (ConfigError, FileNotFoundError, EngineGap, ValueError, StoreUnavailable) as exc:
        fail(str(exc))
    try:
        yield ws
    except EngineGap as exc:
        fail(str(exc))
    finally:
        ws.close()


def group(app: typer.Typer, name: str, help: str) -> typer.Typer:
    """The sub-command group ``name`` of ``app``, created on first use.

    Several modules add commands to one group (``report``, ``export``...).
    """
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    sub = typer.Typer(name=name, help=help, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


def _plain(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def rows_of(data: Any) -> list[dict[str, Any]]:
    """Rows as plain dicts from a list of dicts, an Arrow table or a pandas frame."""
    if isinstance(data, list):
        return [{k: _plain(v) for k, v in r.items()} for r in data]
    if hasattr(data, "to_pylist"):
        return [{k: _plain(v) for k, v in r.items()} for r in data.to_pylist()]
    if hasattr(data, "to_dict"):
        return [{k: _plain(v) for k, v in r.items()} for r in data.to_dict(orient="records")]
    raise TypeError(f"cannot format {type(data).__name__}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.2f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _rich_table(rows: Sequence[dict[str, Any]], columns: list[str], title: str | None) -> RichTable:
    table = RichTable(title=title, show_lines=False)
    for c in columns:
        table.add_column(c, justify="right" if rows and isinstance(rows[0].get(c), int | float) else "left")
    for r in rows:
        table.add_row(*(_cell(r.get(c))[:120] for c in columns))
    return table


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    return columns


def render(rows: Sequence[dict[str, Any]], fmt: OutputFormat | str, *, title: str | None = None) -> str:
    """Rows as JSON (array of objects), CSV, or a text table."""
    fmt = OutputFormat(fmt)
    if fmt is OutputFormat.json:
        return json.dumps(list(rows), indent=2, default=str)
    columns = _columns(rows)
    if fmt is OutputFormat.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    cons = Console(width=200, record=True)
    with cons.capture() as cap:
        cons.print(_rich_table(rows, columns, title))
    return cap.get()


def emit(data: Any, fmt: OutputFormat | str, *, title: str | None = None) -> None:
    """Print rows in the chosen format to standard output."""
    rows = rows_of(data)
    if OutputFormat(fmt) is OutputFormat.table:
        if not rows:
            console().print(f"{title or 'Result'}: nothing to show.")
            return
        console().print(_rich_table(rows, _columns(rows), title))
        return
    if (
        not rows
        and OutputFormat(fmt) is OutputFormat.csv
        and hasattr(data, "schema")
        and hasattr(data, "column_names")
    ):
        from yieldmeter.app.exports import csv_bytes

        typer.echo(csv_bytes(data).decode(), nl=False)  # nothing in scope: the header alone
        return
    text = render(rows, fmt, title=title)
    typer.echo(text, nl=not text.endswith("\n"))


@contextmanager
def writing(out: Path) -> Iterator[Path]:
    """Around the writing of a command's output file: its folder is made, and a path that cannot
    be written is a clear error naming it and why, not a traceback."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        yield out
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")


def write_file(out: Path, data: bytes | str) -> None:
    """Write a command's output file (see :func:`writing`)."""
    with writing(out):
        if isinstance(data, str):
            out.write_text(data, encoding="utf-8")
        else:
            out.write_bytes(data)


def note_console(output: OutputFormat) -> Console:
    """Where notes beside a command's output go: stdout under a table for a person, stderr when
    the output is JSON or CSV for a program (a note would make it unreadable)."""
    return console() if output is OutputFormat.table else err_console()


#: ``--strict`` of the import commands: a pipeline that must not go on past a quarantined row
STRICT_HELP = "Exit 1 when any row was quarantined (the other rows still land)."
ORG_HELP = (
    "Write every row as this org (what an ingest key maps a client to on the server), e.g. for "
    "the Python SDK's spill files; default: the rows' own."
)


def report_ingest_outcome(
    summary: IngestSummary, output: OutputFormat = OutputFormat.table, strict: bool = False
) -> None:
    """After an import's summary: the files a folder walk passed over, the files that could not
    be read (on stderr), and the exit: 2 when nothing was read, 1 when a file failed, and with
    ``strict`` 1 when a row was quarantined."""
    if summary.passed_over:
        note_console(output).print(
            f"[yellow]note:[/] passed over {len(summary.passed_over)} files of the folders that are "
            f"not data (configuration, documents, scripts, hidden): {_listed(summary.passed_over)}",
            highlight=False,
            soft_wrap=True,  # file names are not cut across lines
        )
    quiet = [f.source for f in summary.files if f.quiet]  # a page of a quiet day: read, with a note
    blank = [f.source for f in summary.files if f.unread and not f.quiet]
    if quiet:
        note_console(output).print(
            f"[yellow]note:[/] no rows in {_listed(quiet)} (its format, with nothing in it: a period "
            "without usage?)",
            highlight=False,
            soft_wrap=True,
        )
    nothing_read = summary.total("read") == 0 and summary.total("ignored") == 0 and not quiet
    if blank and not nothing_read:  # beside files that were read: said, the import goes on
        note_console(output).print(
            f"[yellow]note:[/] nothing read from {_listed(blank)} (empty, or no rows of a format "
            "yieldmeter knows)",
            highlight=False,
            soft_wrap=True,
        )
    report_unread(
        [(f.source, f.error) for f in summary.files if f.error],
        len(summary.files),
        nothing_read=nothing_read,
        blank=blank,
    )
    quarantined = summary.total("quarantined")
    if strict and quarantined:
        fail(f"{quarantined:,} rows quarantined (--strict; they are listed by `yieldmeter quarantine`)")


def privacy_note(note: str, fmt: OutputFormat) -> None:
    """Under a table, how ``privacy.min_group_size`` shaped it (small teams merged or left out)."""
    if note and fmt is OutputFormat.table:
        console().print(f"note: {note} --people shows each.", highlight=False)


def _listed(names: Sequence[object], most: int = 5) -> str:
    """``names`` as "a, b, c", the first ``most`` of them, then "and N more"."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(str(n) for n in names[:most]) + more


def report_unread(
    failed: Sequence[tuple[str, str]],
    files: int,
    *,
    nothing_read: bool = False,
    done: str = "imported",
    blank: Sequence[str] = (),
) -> None:
    """Name each file that could not be read to its end, with the reason (on stderr), and exit:
    2 when nothing was read (naming the ``blank`` files, read without a row), 1 when a file failed
    (its rows before the failure were ``done``)."""
    for source, reason in failed:
        err_console().print(f"[bold red]error:[/] {source}: {reason}", highlight=False)
    if nothing_read:
        fail(
            f"nothing could be read from {_listed(blank) or 'the input'} (empty, or not a format "
            "yieldmeter knows)",
            code=2,
        )
    if failed:
        fail(
            f"{len(failed)} of {files} files could not be read to the end (quarantined with the "
            f"reason; the other files and the rows before the failure were {done})"
        )
