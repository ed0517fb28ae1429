"""``yieldmeter simulate``, ``yieldmeter demo`` and ``yieldmeter validate``.

The commands parse, call :mod:`yieldmeter.simulate`, :mod:`yieldmeter.app.demo`
or :mod:`yieldmeter.app.validity`, and format what they return.
"""

from __future__ import annotations

import socket
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from yieldmeter.cli.common import OutputFormat, console, emit, err_console, fail, listen, run_server

if TYPE_CHECKING:
    from yieldmeter.app.demo import BoardSummary
    from yieldmeter.app.validity import ValidityReport

SeedOpt = Annotated[
    int, typer.Option("--seed", help="Random seed: the same seed gives the same organisation.")
]
ScenarioOpt = Annotated[
    str,
    typer.Option(
        "--scenario",
        help="enterprise (all), fraud, support-recontact, code-rework, unused-content, analyst-session, "
        "agent-loop, claims, model-routing.",
    ),
]
DaysOpt = Annotated[int, typer.Option("--days", help="Length of the simulated period in days.")]
UsersOpt = Annotated[
    int | None, typer.Option("--users", help="People in the organisation (default: the scenario's).")
]
StartOpt = Annotated[
    str | None, typer.Option("--start", help="First simulated day, YYYY-MM-DD (UTC).", show_default=False)
]


def _start(text: str | None, default: datetime) -> datetime:
    """``--start`` as midnight UTC of its day; ``default`` when not given."""
    if text is None:
        return default
    try:
        return datetime.combine(date.fromisoformat(text.strip()), datetime.min.time(), UTC)
    except ValueError:
        fail(f"--start {text!r} is not a day (YYYY-MM-DD)")


def _share(x: float | None) -> str:
    """A share of spend; unknown where the spend is (every call unpriced), never 0%."""
    return "unknown" if x is None else f"{x:.0%}"


def _money(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1e6:
        return f"${x / 1e6:,.2f}M"
    if abs(x) >= 1e4:
        return f"${x / 1e3:,.1f}k"
    return f"${x:,.2f}"


def print_board_summary(summary: BoardSummary) -> None:
    """The board summary as a few plain lines a person reads in ten seconds."""
    out = console()
    out.print(f"\n[bold]yieldmeter board summary[/] - {summary.period}", highlight=False)
    out.print(
        f"  AI spend (model cost):   {_money(summary.model_cost)} over {summary.calls:,} calls, "
        f"{summary.work_units:,} work units",
        highlight=False,
    )
    out.print(
        f"  fully loaded cost:       {_money(summary.fully_loaded_cost)} "
        f"(model {_money(summary.model_cost)} + platform {_money(summary.allocated_cost)} "
        f"+ human effort {_money(summary.effort_cost)})",
        highlight=False,
    )
    if summary.unpriced_calls:
        out.print(
            f"  unpriced:                {summary.unpriced_calls:,} calls to models the price catalog "
            f"does not know ({', '.join(summary.unpriced_models)})",
            highlight=False,
        )
    if summary.coverage is not None:
        c = summary.coverage
        out.print(
            f"  attribution coverage:    {_share(c['coverage'])} of spend linked to a baseline, an owner "
            f"and evidence of change (baseline {_share(c['baseline'])}, owner {_share(c['owner'])}, "
            f"evidence {_share(c['evidence'])})",
            highlight=False,
        )
    if summary.top_yields:
        out.print("  top yields (benefit / fully loaded cost):", highlight=False)
        for y in summary.top_yields:
            out.print(
                f"    {y['workflow']:<20} {y['family']:<9} {y['yield']:>9,.1f}x  "
                f"({_money(y['benefit'])} on {_money(y['cost'])}; {y['evidence'] or 'no evidence'})",
                highlight=False,
            )
    for line in summary.highlights:
        out.print(f"  {line}", highlight=False)
    if summary.waste:
        out.print("  biggest waste (spend at stake):", highlight=False)
        for w in summary.waste:
            out.print(
                f"    {w['workflow']:<20} {w['category']:<22} {w['units']:>6,} units  "
                f"{'unpriced' if w['at_stake'] is None else _money(w['at_stake'])}",
                highlight=False,
            )
    for r in summary.routing:
        out.print(f"  routing: {r}", highlight=False)
    for note in summary.notes:
        out.print(f"  [dim]note: {note}[/]", highlight=False)


def print_validity(report: ValidityReport, fmt: OutputFormat) -> None:
    if fmt is not OutputFormat.table:
        emit(report.rows(), fmt)
        return
    emit(report.rows(), fmt, title=f"validity: scenario {report.scenario}, seed {report.seed}")
    if report.missing_work_units:
        sample = ", ".join(report.missing_sample)
        err_console().print(
            f"[yellow]{report.missing_work_units:,} of {report.truth_work_units:,} work units of the truth "
            f"are not in the store[/] (e.g. {sample}); figures use the {report.matched_work_units:,} present",
            highlight=False,
        )
    for note in report.notes:
        console().print(f"[dim]note: {note}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        out: Annotated[Path, typer.Option("--out", help="Folder to write the simulated sources into.")],
        seed: SeedOpt = 42,
        scenario: ScenarioOpt = "enterprise",
        days: DaysOpt = 30,
        users: UsersOpt = None,
        start: StartOpt = None,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Write into a folder that holds other files.")
        ] = False,
    ) -> None:
        """Simulate an organisation's AI use with known true value (OTLP traces, tables, FOCUS, truth).

        The period starts on --start, by default 2026-10-01: the same seed and options give the
        same files on any day.
        """
        from yieldmeter.simulate import SimulationError, SimulationParams
        from yieldmeter.simulate import simulate as run
        from yieldmeter.simulate.scenarios import DEFAULT_START

        first = _start(start, DEFAULT_START)
        try:
            result = run(
                out,
                SimulationParams(scenario=scenario, seed=seed, days=days, users=users, start=first),
                overwrite=overwrite,
            )
        except SimulationError as exc:
            fail(str(exc))
        c = result.counts
        console().print(
            f"Simulated scenario [bold]{scenario}[/] (seed {seed}, {days} days, "
            f"{result.params.resolved_users()} people) in {result.seconds:.1f} s -> {out}\n"
            f"  {c['calls']:,} calls (OTLP JSON in otlp/), {c['work_units']:,} work units, "
            f"{c['signals']:,} signals, {c['effort']:,} effort rows, {c['outcomes']:,} outcomes (tables/), "
            f"{c['cost_items']:,} FOCUS rows (billing/)\n"
            f"  yieldmeter.yaml, and truth.parquet (for `yieldmeter validate` only)\n"
            f"  next: yieldmeter init WS && cp {out}/yieldmeter.yaml WS/ && "
            f"yieldmeter ingest {out}/tables {out}/otlp {out}/billing -w WS",
            highlight=False,
        )

    @app.command()
    def demo(
        ws_path: Annotated[
            Path | None,
            typer.Option(
                "--workspace", "-w", help="Keep the demo workspace here (default: a temporary folder)."
            ),
        ] = None,
        no_serve: Annotated[bool, typer.Option("--no-serve", help="Print the summary and exit.")] = False,
        seed: SeedOpt = 42,
        scenario: ScenarioOpt = "enterprise",
        days: DaysOpt = 30,
        users: UsersOpt = None,
        start: StartOpt = None,
        port: Annotated[int, typer.Option("--port", help="Port for the dashboard.")] = 8765,
    ) -> None:
        """Simulate an organisation, ingest it through the real importers, score it, summarise it.

        The period ends yesterday unless --start says otherwise, so this month's budgets, the
        forecasts and the last weeks' anomalies have data to show.
        """
        from yieldmeter.app.demo import DemoError, recent_start, run_demo
        from yieldmeter.simulate import SimulationError
        from yieldmeter.store.duckdb_store import StoreUnavailable

        first = _start(start, recent_start(days))

        def step(message: str) -> None:
            err_console().print(f"[dim]{message}[/]", highlight=False)

        socks = None if no_serve else listen("127.0.0.1", port)  # a port in use fails before the work
        try:
            result = run_demo(
                ws_path, seed=seed, scenario=scenario, days=days, users=users, start=first, progress=step
            )
        except (SimulationError, DemoError, StoreUnavailable) as exc:
            fail(str(exc))
        print_board_summary(result.summary)
        t = result.timings
        console().print(
            f"\n[dim]workspace {result.workspace}; simulate {t['simulate']:.1f} s, "
            f"ingest {t['ingest']:.1f} s, score {t['score']:.1f} s, summary {t['summary']:.1f} s[/]",
            highlight=False,
        )
        if socks is None:
            return
        _serve(result.workspace, socks)

    @app.command()
    def validate(
        truth: Annotated[
            Path | None, typer.Option("--truth", help="truth.parquet written by `yieldmeter simulate`.")
        ] = None,
        ws_path: Annotated[
            Path, typer.Option("--workspace", "-w", envvar="YIELDMETER_WORKSPACE", help="Workspace folder.")
        ] = Path("."),
        suite: Annotated[
            bool,
            typer.Option("--suite", help="Simulate, ingest and measure every scenario; write the results."),
        ] = False,
        seeds: Annotated[str, typer.Option("--seeds", help="Seeds for --suite, comma separated.")] = "1,2,3",
        results: Annotated[Path, typer.Option("--results", help="JSON results file for --suite.")] = Path(
            "benchmarks/results/validity.json"
        ),
        doc: Annotated[Path, typer.Option("--doc", help="Markdown page for --suite.")] = Path(
            "docs/validity.md"
        ),
        fmt: Annotated[
            OutputFormat, typer.Option("--format", "-f", help="Output format.")
        ] = OutputFormat.table,
    ) -> None:
        """Measure yieldmeter against the simulator's truth: rank correlations, intervals, waste, unpriced."""
        from yieldmeter.app import validity, validity_suite

        if suite:
            from yieldmeter.simulate import SimulationError

            try:
                seed_list = [int(s) for s in seeds.split(",") if s.strip()]
            except ValueError:
                fail(f"--seeds must be integers separated by commas, got {seeds!r}")
            if not seed_list:  # nothing to run: it would write an empty results file and page
                fail("--seeds names no seed: give one or more, separated by commas (e.g. 1,2,3)")

            def step(message: str) -> None:
                err_console().print(f"[dim]{message}[/]", highlight=False)

            try:
                suite_result = validity_suite.run_suite(seed_list, progress=step)
            except SimulationError as exc:
                fail(str(exc))
            validity_suite.write_results(suite_result, results, doc)
            emit(suite_result.summary_rows(), fmt, title="validity across scenarios (mean over seeds)")
            console().print(f"wrote {results} and {doc}", highlight=False)
            return
        if truth is None:
            fail("give --truth PATH (the truth.parquet written by `yieldmeter simulate`), or --suite")
        from yieldmeter.cli.common import workspace

        with workspace(ws_path) as ws:
            try:
                report = validity.validate(ws, truth)
            except validity.TruthError as exc:
                fail(str(exc))
        print_validity(report, fmt)


def _serve(root: Path, socks: list[socket.socket]) -> None:
    """Serve the demo workspace's dashboard on loopback and print its URL."""
    from yieldmeter.server.app import create_app

    app: Any = create_app(root)
    url = f"http://127.0.0.1:{socks[0].getsockname()[1]}/"
    console().print(f"\nDashboard: [bold]{url}[/]  (Ctrl-C to stop)", highlight=False)
    run_server(app, socks)
