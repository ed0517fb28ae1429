"""``yieldmeter report reported-cost``: a source's own cost against yieldmeter's price."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from yieldmeter.cli.common import (
    FormatOpt,
    ModelsOpt,
    OutputFormat,
    PeriodOpt,
    TeamsOpt,
    WorkflowsOpt,
    WorkspaceOpt,
    console,
    emit,
    fail,
    group,
    parse_period,
    workspace,
)


def register(app: typer.Typer) -> None:
    report = group(app, "report", "Reports: spend, and the value measures.")

    @report.command("reported-cost")
    def report_reported_cost(
        by: Annotated[
            str, typer.Option("--by", help="model, team, day, provider, source or workflow.")
        ] = "model",
        period: PeriodOpt = None,
        team: TeamsOpt = None,
        workflow: WorkflowsOpt = None,
        model: ModelsOpt = None,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """The cost a source reported (LiteLLM spend, Langfuse cost_details, gen_ai.usage.cost) beside
        yieldmeter's price of the same calls, and the difference; unpriced calls counted, never $0."""
        from yieldmeter.metrics.reported_cost import BY
        from yieldmeter.metrics.spend import Filters

        if by not in BY:
            fail(f"--by {by}: choose one of {', '.join(BY)}")
        start, end = parse_period(period)
        filters = Filters(start, end, tuple(team or ()), tuple(workflow or ()), tuple(model or ()))
        with workspace(ws_path) as ws:
            rows = ws.reported_cost(by, filters)
        if not rows.num_rows and fmt is OutputFormat.table:
            console().print(
                "No call carries a reported cost: import LiteLLM spend logs or Langfuse observations, "
                "or send spans with gen_ai.usage.cost."
            )
            return
        if fmt is OutputFormat.table:  # the figures a person compares, in dollars, fitting 80 columns
            emit([_readable(r, by) for r in rows.to_pylist()], fmt, title=f"Reported vs priced cost by {by}")
            return
        emit(rows, fmt, title=f"Reported vs priced cost by {by}")


def _usd(v: float | None) -> str:
    if v is None:
        return "unpriced"
    text = f"${abs(v):,.6f}".rstrip("0").rstrip(".")
    return f"-{text}" if v < 0 and text != "$0" else text


def _readable(r: dict[str, Any], by: str) -> dict[str, Any]:
    key = r[by]
    share = r["difference_share"]
    return {
        by: key.date().isoformat() if isinstance(key, datetime) else key,
        "calls": r["calls"],
        "reported": _usd(r["reported_cost"]),
        "priced": _usd(r["priced_cost"]),
        "difference": "-" if r["difference"] is None else _usd(r["difference"]),
        "share": "-" if share is None else f"{share:.1%}",
        "unpriced": r["unpriced_calls"],
    }
