"""FinOps commands: budgets, alerts, forecast, anomalies, showback, reconcile, initiatives, export focus.

Thin: parse, call ``ws.finops`` (:class:`yieldmeter.app.finops.FinOpsService`), format.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from yieldmeter.cli.common import (
    FormatOpt,
    OutputFormat,
    PeopleOpt,
    PeriodOpt,
    WorkspaceOpt,
    console,
    emit,
    err_console,
    fail,
    group,
    note_console,
    privacy_note,
    workspace,
)

AtOpt = Annotated[
    str | None,
    typer.Option("--at", help="Evaluate as of this ISO time (UTC when no offset); default now."),
]


def _at(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--at {text!r} is not an ISO date or time (e.g. 2026-11-15 or 2026-11-15T12:00:00Z)")
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _errors() -> tuple[type[Exception], ...]:
    from yieldmeter.app.value import PrivacyError
    from yieldmeter.config import ConfigError
    from yieldmeter.finops.budgets import BrokenBudget

    # a stored budget that no longer validates is said in words too (the message says how to fix it)
    return (ConfigError, ValueError, KeyError, BrokenBudget, PrivacyError)


def register(app: typer.Typer) -> None:
    budgets = group(app, "budgets", "Spend budgets: status, add, burn-down.")

    @budgets.command("list")
    def budgets_list(
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
        at: AtOpt = None,
        people: PeopleOpt = False,
    ) -> None:
        """Every budget: window, spent, share used, state, projection and the day it runs out
        (budgets on a person or a team below privacy.min_group_size: with --people)."""
        with workspace(ws_path) as ws:
            try:
                rows = ws.finops.budgets(_at(at), people=people)
            except _errors() as exc:
                fail(str(exc))
            emit(rows, fmt, title="Budgets")

    @budgets.command("add")
    def budgets_add(
        scope_kind: Annotated[
            str, typer.Argument(help="team, workflow, user, model, provider, initiative, org")
        ],
        scope: Annotated[str, typer.Argument(help="The team, workflow... name (any text for org).")],
        amount: Annotated[float, typer.Argument(help="USD per period.")],
        period: Annotated[
            str, typer.Option("--period", help="month, quarter, year or rolling:Nd.")
        ] = "month",
        basis: Annotated[
            str, typer.Option("--basis", help="model_cost or fully_loaded_cost.")
        ] = "model_cost",
        soft: Annotated[float, typer.Option("--soft", help="Notify at this share of the amount.")] = 0.8,
        hard: Annotated[float, typer.Option("--hard", help="Hard threshold (share of the amount).")] = 1.0,
        ws_path: WorkspaceOpt = Path("."),
    ) -> None:
        """Create or update a budget (one per scope and period)."""
        with workspace(ws_path) as ws:
            try:
                bid = ws.finops.add_budget(
                    scope_kind, scope, period, amount, basis=basis, soft_threshold=soft, hard_threshold=hard
                )
            except _errors() as exc:
                fail(str(exc))
            console().print(f"budget {bid}: {scope_kind} {scope}, {amount:,.2f} USD per {period} ({basis})")
            note = ws.finops.unseen_scope(scope_kind, scope)
            if note:
                err_console().print(f"[yellow]note:[/] {note}", highlight=False)

    @budgets.command("hard-stops")
    def budgets_hard_stops(
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
        at: AtOpt = None,
        people: PeopleOpt = False,
    ) -> None:
        """Budgets past their hard threshold: the scopes a gateway should refuse until the window resets
        (budgets on a person or a team below privacy.min_group_size: with --people)."""
        with workspace(ws_path) as ws:
            try:
                rows = ws.finops.hard_stops(_at(at), people=people)
            except _errors() as exc:
                fail(str(exc))
            emit(rows, fmt, title="Hard stops")

    @budgets.command("burn-down")
    def budgets_burn_down(
        budget_id: Annotated[str, typer.Argument(help="Budget id (`yieldmeter budgets list`).")],
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
        at: AtOpt = None,
        people: PeopleOpt = False,
    ) -> None:
        """Daily cumulative spend, its forecast to the window's end, and the projected run-out day
        (of a budget on a person or a small team: with --people)."""
        with workspace(ws_path) as ws:
            try:
                bd = ws.finops.burn_down(budget_id, _at(at), people=people)
            except _errors() as exc:
                fail(str(exc))
            if fmt is OutputFormat.json:
                typer.echo(json.dumps(bd, indent=2, default=str))
                return
            emit(
                bd["days"],
                fmt,
                title=f"Burn-down of {bd['scope_kind']} {bd['scope']} ({bd['amount']:,.2f} USD)",
            )
            console().print(
                f"projected total {bd['projected_total']:,.2f} USD; "
                f"runs out: {bd['run_out_day'] or 'not this period'}"
                f" (earliest, 80% upper bound: {bd['earliest_run_out_day'] or '-'})"
            )

    alerts = group(app, "alerts", "Alerts on budgets and unit economics.")

    @alerts.command("list")
    def alerts_list(
        status: Annotated[str, typer.Option("--status", help="firing, resolved or all.")] = "firing",
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
        people: PeopleOpt = False,
    ) -> None:
        """Alerts from the alert state (what the dashboard shows; on a person or a team below
        privacy.min_group_size: with --people)."""
        if status not in ("firing", "resolved", "all"):
            fail("--status must be firing, resolved or all")
        with workspace(ws_path) as ws:
            rows = ws.finops.alerts(None if status == "all" else status, people=people)
            emit(rows, fmt, title=f"Alerts ({status})")

    @alerts.command("evaluate")
    def alerts_evaluate(
        ws_path: WorkspaceOpt = Path("."), fmt: FormatOpt = OutputFormat.table, at: AtOpt = None
    ) -> None:
        """Evaluate every rule now, update the alert state and deliver what fired or resolved.

        The state moves forward only: --at may name a time after the last evaluation, not before
        it, and not after now (the server's next evaluation would be refused until then)."""
        with workspace(ws_path) as ws:
            try:
                events = ws.finops.evaluate_alerts(_at(at))
            except _errors() as exc:
                fail(str(exc))
            rows = [
                {"event": e.event, **{k: e.alert[k] for k in ("severity", "kind", "scope", "message")}}
                for e in events
            ]
            emit(rows, fmt, title="Alert changes")

    @alerts.command("deliveries")
    def alerts_deliveries(ws_path: WorkspaceOpt = Path("."), fmt: FormatOpt = OutputFormat.table) -> None:
        """Delivery attempts per channel, with errors (a failed webhook shows here)."""
        with workspace(ws_path) as ws:
            emit(ws.finops.deliveries(), fmt, title="Alert deliveries")

    @app.command()
    def forecast(
        by: Annotated[
            str, typer.Option("--by", help="team, workflow, model, provider, initiative or org.")
        ] = "team",
        months: Annotated[int, typer.Option("--months", min=1, max=12, help="Months after this one.")] = 3,
        cpso: Annotated[
            bool, typer.Option("--cost-per-success", help="Forecast cost per successful outcome.")
        ] = False,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
        at: AtOpt = None,
        people: PeopleOpt = False,
    ) -> None:
        """Fully loaded spend for the rest of this month and the next months, with 80%/95% intervals
        (by team, teams below privacy.min_group_size together unless --people)."""
        with workspace(ws_path) as ws:
            try:
                if cpso:
                    emit(
                        ws.finops.forecast_cpso(_at(at)), fmt, title="Cost per successful outcome, next month"
                    )
                else:
                    rows = ws.finops.forecast(by, _at(at), months=months, people=people)
                    emit(rows, fmt, title=f"Spend forecast by {by}")
            except _errors() as exc:
                fail(str(exc))

    @app.command()
    def anomalies(
        days: Annotated[int, typer.Option("--days", min=1, max=90, help="Days to scan, up to today.")] = 14,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
        at: AtOpt = None,
        people: PeopleOpt = False,
    ) -> None:
        """Spend and token spikes, runaway agents and model-mix changes, largest spend at stake first
        (team spikes of teams below privacy.min_group_size together unless --people)."""
        with workspace(ws_path) as ws:
            emit(ws.finops.anomalies(_at(at), days=days, people=people), fmt, title="Anomalies")

    @app.command()
    def showback(
        period: PeriodOpt = None,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
        people: PeopleOpt = False,
    ) -> None:
        """Fully loaded cost per cost centre and team: direct and shared parts (rules: chargeback:).

        Without --people, teams below privacy.min_group_size are added up into one row."""
        with workspace(ws_path) as ws:
            try:
                rows, note = ws.finops.showback_noted(period, people=people)
                unpriced = sum(ws.finops.unpriced_by_team(period).values())
            except _errors() as exc:
                fail(str(exc))
        emit(rows, fmt, title="Showback")
        privacy_note(note, fmt)
        if unpriced:  # under a table; on stderr beside JSON or CSV
            note_console(fmt).print(
                f"note: {unpriced:,} call{'s' if unpriced > 1 else ''} without a list price "
                "charged nothing (unpriced_calls per team); `yieldmeter unpriced` lists the models.",
                highlight=False,
            )

    @app.command()
    def reconcile(
        period: PeriodOpt = None, ws_path: WorkspaceOpt = Path("."), fmt: FormatOpt = OutputFormat.table
    ) -> None:
        """Imported provider bills against metered model cost, per month and model; differences shown."""
        with workspace(ws_path) as ws:
            try:
                rows = ws.finops.reconciliation(period)
            except _errors() as exc:
                fail(str(exc))
            if not rows.num_rows and fmt is OutputFormat.table:  # json and csv stay machine-read: []
                console().print(
                    "No provider token bills imported: `yieldmeter ingest --format focus BILL.csv`."
                )
                return
            emit(rows, fmt, title="Reconciliation")

    @app.command()
    def initiatives(
        period: PeriodOpt = None, ws_path: WorkspaceOpt = Path("."), fmt: FormatOpt = OutputFormat.table
    ) -> None:
        """Spend, benefit, yield, coverage, budget and decisions per initiative."""
        with workspace(ws_path) as ws:
            try:
                emit(ws.finops.initiatives(period), fmt, title="Initiatives")
            except _errors() as exc:
                fail(str(exc))
            for problem in ws.finops.undeclared_initiatives():
                err_console().print(f"[yellow]warning:[/] {problem['problem']}", highlight=False)

    export = group(app, "export", "Export tables for other tools.")

    @export.command("focus")
    def export_focus(
        out: Annotated[Path, typer.Argument(help="CSV file (or .parquet) to write.")],
        period: PeriodOpt = None,
        version: Annotated[
            str, typer.Option("--focus-version", help="1.3 (Allocated* columns), 1.2 or 1.0.")
        ] = "1.3",
        ws_path: WorkspaceOpt = Path("."),
    ) -> None:
        """The showback/chargeback allocation as FOCUS rows, for FinOps tools."""
        with workspace(ws_path) as ws:
            try:
                s = ws.finops.export_focus(out, period, version=version)
            except _errors() as exc:
                fail(str(exc))
            console().print(
                f"wrote {s['rows']:,} FOCUS {s['version']} rows, {s['billed_cost']:,.2f} USD, to {s['path']}"
            )
