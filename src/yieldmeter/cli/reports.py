"""``yieldmeter report board|cfo|cio|coo|finops|product``: the role reports as md, html, pdf or json."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from yieldmeter.cli.common import (
    ModelsOpt,
    PeriodOpt,
    TeamsOpt,
    WorkflowsOpt,
    WorkspaceOpt,
    console,
    fail,
    group,
    workspace,
    write_file,
)


class ReportFormat(StrEnum):
    md = "md"
    html = "html"
    pdf = "pdf"
    json = "json"


HELP = {
    "board": "Board pack: share of AI spend connected to measured outcomes, yields, decisions changed.",
    "cfo": "CFO: model vs fully loaded cost, yields, named benefit owners, a production-scale scenario.",
    "cio": "CIO/CAIO: share of calls mapped to work units and workflows, coverage, unpriced models.",
    "coo": "COO: outcomes against baselines, the conversion chain, waste.",
    "finops": "FinOps: unit costs, model mix, budgets, unpriced models, waste, routing.",
    "product": "Product: cost per accepted and per successful outcome (not per call), patterns.",
}


def _command(role: str):  # type: ignore[no-untyped-def]
    def command(
        fmt: Annotated[
            ReportFormat, typer.Option("--format", "-f", help="md, html, pdf or json.")
        ] = ReportFormat.md,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="File to write (pdf needs one).")
        ] = None,
        period: PeriodOpt = None,
        team: TeamsOpt = None,
        workflow: WorkflowsOpt = None,
        model: ModelsOpt = None,
        people: Annotated[
            bool,
            typer.Option(
                "--people",
                help="Show teams below privacy.min_group_size one by one (a privileged view).",
            ),
        ] = False,
        ws_path: WorkspaceOpt = Path("."),
    ) -> None:
        from yieldmeter.app.reports import ReportFilters
        from yieldmeter.app.value import PrivacyError
        from yieldmeter.reports.render import render

        try:
            filters = ReportFilters.of(period, team or (), workflow or (), model or (), people=people)
        except ValueError as exc:
            fail(str(exc))
        if fmt is ReportFormat.pdf and out is None and sys.stdout.isatty():
            fail("a PDF goes to a file: pass --out board.pdf")
        with workspace(ws_path) as ws:
            try:
                report = ws.reports.role(role, filters)
            except PrivacyError as exc:
                fail(str(exc))
            body = render(report, fmt.value)
        if out is None:
            sys.stdout.buffer.write(body)
            sys.stdout.flush()
            return
        write_file(out, body)
        console().print(f"{role} report written to [bold]{out}[/] ({len(body):,} bytes)", highlight=False)

    command.__doc__ = HELP[role]
    return command


def register(app: typer.Typer) -> None:
    from yieldmeter.app.reports import ROLES

    report = group(app, "report", "Reports: spend, and the value measures.")
    for role in ROLES:
        report.command(role, help=HELP[role])(_command(role))
