"""Value engine commands: ``score``, ``report funnel|yield|coverage|value-per-token|benchmarks|
patterns|waste`` and ``export scores|benchmarks``.

Thin: parse, call ``ws.value`` (:class:`yieldmeter.app.value.ValueService`), format.
"""

from __future__ import annotations

from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from yieldmeter.cli.common import (
    FormatOpt,
    OutputFormat,
    PeopleOpt,
    PeriodOpt,
    WorkspaceOpt,
    console,
    emit,
    fail,
    group,
    workspace,
    write_file,
    writing,
)

if TYPE_CHECKING:
    import pyarrow as pa

WorkflowOpt = Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")]

#: Columns shown in the text table (JSON and CSV carry every column).
TABLE_COLUMNS: dict[str, list[str]] = {
    "funnel": [
        "workflow",
        "month",
        "calls",
        "work_units",
        "accepted_outputs",
        "actions",
        "successful_outcomes",
        "value",
        "fully_loaded_cost",
        "unpriced_calls",
        "cost_per_work_unit",
        "cost_per_accepted_output",
        "cost_per_successful_outcome",
        "success_basis",
    ],
    "yield": [
        "workflow",
        "family",
        "outcomes",
        "benefit",
        "fully_loaded_cost",
        "yield",
        "yield_low",
        "yield_high",
        "evidence_mix",
        "strategic_score",
        "strategic_confidence",
    ],
    "coverage": [
        "workflow",
        "spend",
        "share_with_baseline",
        "share_with_owner",
        "share_with_evidence",
        "coverage",
        "uncovered_spend",
        "missing",
    ],
    "value-per-token": [
        "workflow",
        "model",
        "team",
        "task_type",
        "user_id",
        "n",
        "tokens",
        "value",
        "value_per_token",
        "value_per_token_low",
        "value_per_token_high",
        "mean_percentile",
        "mean_percentile_low",
        "mean_percentile_high",
        "workflows",
    ],
    "benchmarks": [
        "workflow",
        "subject",
        "n",
        "value_per_token",
        "value_per_token_low",
        "value_per_token_high",
        "success_rate",
        "success_rate_low",
        "success_rate_high",
        "cost_per_success",
    ],
    "patterns": [
        "workflow",
        "dimension",
        "segment",
        "n",
        "value_per_token",
        "lift",
        "lift_low",
        "lift_high",
        "success_rate",
        "cost_per_success",
    ],
    "waste": ["workflow", "category", "work_units", "spend_at_stake", "share_of_spend", "examples"],
}


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"


ExportFormatOpt = Annotated[ExportFormat, typer.Option("--format", "-f")]
ExportOutOpt = Annotated[Path | None, typer.Option("--out", help="File to write (default: standard output).")]


class BenchBy(StrEnum):
    user = "user"
    team = "team"


def _show(name: str, data: pa.Table | list[dict[str, Any]], fmt: OutputFormat, title: str) -> None:
    if fmt is OutputFormat.table:
        rows = data if isinstance(data, list) else data.to_pylist()
        keep = [c for c in TABLE_COLUMNS.get(name, []) if any(c in r for r in rows)]
        if keep:
            rows = [{c: r.get(c) for c in keep} for r in rows]
        emit(rows, fmt, title=title)
    else:
        emit(data, fmt, title=title)


def _notes(notes: list[str], fmt: OutputFormat) -> None:
    if fmt is OutputFormat.table:
        for n in notes:
            console().print(f"note: {n}", highlight=False)


def _run(fn: Any) -> Any:
    """Call a service method, turning the errors a person can fix into a message."""
    from yieldmeter.app.value import PrivacyError
    from yieldmeter.lake.engines import EngineGap

    try:
        return fn()
    except (PrivacyError, ValueError, LookupError, EngineGap) as exc:
        fail(str(exc))


def _write_export(table: pa.Table, fmt: ExportFormat, out: Path | None) -> None:
    """An export to ``out`` or standard output, by the API's writers (:mod:`yieldmeter.app.exports`)."""
    import pyarrow.parquet as pq

    from yieldmeter.app.exports import csv_bytes, jsonl_bytes

    if fmt is ExportFormat.parquet:
        if out is None:
            fail("parquet needs --out PATH (it is a binary format)")
        with writing(out):
            pq.write_table(table, out)
    else:
        data = (csv_bytes if fmt is ExportFormat.csv else jsonl_bytes)(table)
        if out is None:
            typer.echo(data.decode("utf-8"), nl=False)
        else:
            write_file(out, data)
    if out is not None:
        console().print(f"wrote {table.num_rows:,} rows to {out}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def score(ws_path: WorkspaceOpt = Path("."), fmt: FormatOpt = OutputFormat.table) -> None:
        """Score every work unit (interaction value score 0-100) and store the scores.

        Calibrates the prior weights on labelled outcomes where there are enough, and reports the
        calibration's quality on held-out labels next to the priors'.
        """
        with workspace(ws_path) as ws:
            result = _run(ws.value.score)
        rows = result.summary()
        if fmt is OutputFormat.json:  # the reliability table of each model, nested in its row
            bins = {c.model: [asdict(b) for b in c.reliability] for c in result.calibration}
            rows = [{**r, "reliability": bins.get(r["model"], [])} for r in rows]
        emit(
            rows,
            fmt,
            title=f"Scored {result.n_units:,} work units ({result.n_labels:,} labelled)",
        )
        if fmt is OutputFormat.table:
            if result.unit_values:
                shown = ("workflow", "source", "unit_value", "declared", "measured", "relative_se")
                shown += ("periods", "note")
                emit(
                    [{k: row[k] for k in shown} for row in (u.row() for u in result.unit_values)],
                    fmt,
                    title="Unit values (USD per success: measured from outcome periods, or declared)",
                )
            for rep in result.calibration:
                if rep.reliability:
                    rows = [
                        {
                            "bin": f"{b.bin_low:.1f}-{b.bin_high:.1f}",
                            "n": b.n,
                            "mean_predicted": b.mean_predicted,
                            "observed_rate": b.observed_rate,
                        }
                        for b in rep.reliability
                    ]
                    emit(rows, fmt, title=f"Reliability on held-out labels: {rep.model}")

    report = group(app, "report", "Reports: spend, and the value measures.")

    @report.command("funnel")
    def report_funnel(
        workflow: WorkflowOpt = None,
        period: PeriodOpt = None,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Conversion chain per workflow and month, with the fully loaded cost at every stage."""
        with workspace(ws_path) as ws:
            rows = _run(lambda: ws.value.funnel(workflow, period))
            _show("funnel", rows, fmt, "Conversion chain")
            _notes(ws.value.notes, fmt)

    @report.command("yield")
    def report_yield(
        workflow: WorkflowOpt = None,
        period: PeriodOpt = None,
        evidence: Annotated[bool, typer.Option("--evidence", help="List the strategic evidence.")] = False,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Workflow, revenue, risk and capacity yields (benefit / fully loaded cost) with intervals;
        strategic value as a 0-5 score, never dollars."""
        with workspace(ws_path) as ws:
            rep = _run(lambda: ws.value.yields(workflow, period))
            if evidence:
                _show("strategic-evidence", rep.strategic_evidence, fmt, "Strategic evidence")
                return
            _show("yield", rep.rows(), fmt, "Yields")
            _notes(rep.notes, fmt)

    @report.command("coverage")
    def report_coverage(
        workflow: WorkflowOpt = None,
        period: PeriodOpt = None,
        uncovered: Annotated[
            bool, typer.Option("--uncovered", help="List the largest uncovered spend.")
        ] = False,
        limit: Annotated[int, typer.Option("--limit")] = 10,
        people: PeopleOpt = False,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Share of spend linked to a baseline, an owner and evidence of change (with the three parts).

        The largest uncovered spend merges teams below privacy.min_group_size unless --people."""
        with workspace(ws_path) as ws:
            rep = _run(lambda: ws.value.coverage(workflow, period, limit, people=people))
            if uncovered:
                _show("uncovered", rep.largest_uncovered, fmt, "Largest uncovered spend")
                _notes(rep.notes, fmt)
                return
            _show("coverage", rep.by_workflow, fmt, "Attribution coverage")
            if fmt is OutputFormat.table and rep.largest_uncovered.num_rows:
                _show("uncovered", rep.largest_uncovered, fmt, "Largest uncovered spend")
                _notes(rep.notes, fmt)

    @report.command("value-per-token")
    def report_vpt(
        workflow: WorkflowOpt = None,
        period: PeriodOpt = None,
        by: Annotated[str, typer.Option("--by", help="model, team, task_type or user_id.")] = "model",
        normalise: Annotated[
            bool, typer.Option("--normalise", help="Compare across workflows as percentiles within each.")
        ] = False,
        people: PeopleOpt = False,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Expected value per token inside one workflow (across workflows only normalised)."""
        by = "user_id" if by == "user" else by
        with workspace(ws_path) as ws:
            rows = _run(
                lambda: ws.value.value_per_token(workflow, period, by, normalise=normalise, people=people)
            )
            _show("value-per-token", rows, fmt, "Value per token")

    @report.command("benchmarks")
    def report_benchmarks(
        workflow: WorkflowOpt = None,
        period: PeriodOpt = None,
        by: Annotated[BenchBy, typer.Option("--by")] = BenchBy.team,
        people: PeopleOpt = False,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Teams (or, with --people, users) inside each workflow: shrunk estimates with intervals."""
        with workspace(ws_path) as ws:
            rep = _run(lambda: ws.value.benchmarks(workflow, period, by.value, people=people))
            _show("benchmarks", rep.rows, fmt, f"Benchmarks by {by.value}")
            _notes(rep.notes, fmt)

    @report.command("patterns")
    def report_patterns(
        workflow: WorkflowOpt = None,
        period: PeriodOpt = None,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Which patterns (model, session length, iterations, prompt size, tool use, time to first
        acceptance) deliver the most value per token in their workflow, with intervals."""
        with workspace(ws_path) as ws:
            rows = _run(lambda: ws.value.patterns(workflow, period))
            _show("patterns", rows, fmt, "Patterns by value per token (lift vs workflow mean)")

    @report.command("waste")
    def report_waste(
        workflow: WorkflowOpt = None,
        period: PeriodOpt = None,
        ws_path: WorkspaceOpt = Path("."),
        fmt: FormatOpt = OutputFormat.table,
    ) -> None:
        """Expensive loops, unused outputs, rework and accepted-but-not-resolved, with spend at stake."""
        with workspace(ws_path) as ws:
            rows = _run(lambda: ws.value.waste(workflow, period))
            _show("waste", rows, fmt, "Waste")

    export = group(app, "export", "Export tables for other tools.")

    @export.command("scores")
    def export_scores(
        fmt: ExportFormatOpt = ExportFormat.csv,
        out: ExportOutOpt = None,
        workflow: WorkflowOpt = None,
        ws_path: WorkspaceOpt = Path("."),
    ) -> None:
        """Interaction value scores per work unit."""
        from yieldmeter.app.exports import score_export

        with workspace(ws_path) as ws:
            table = _run(lambda: ws.value.scores(workflow))
            if table.num_rows == 0:
                scored = [] if workflow is None else ws.value.scores().column("workflow").to_pylist()
                if not scored:
                    fail("no scores stored yet: run `yieldmeter score` first")
                names = ", ".join(sorted({str(w) for w in scored if w is not None}))
                fail(f"no scores for workflow {workflow!r}; the scored workflows: {names}")
            _write_export(score_export(table), fmt, out)

    @export.command("unit-values")
    def export_unit_values(
        fmt: ExportFormatOpt = ExportFormat.csv,
        out: ExportOutOpt = None,
        ws_path: WorkspaceOpt = Path("."),
    ) -> None:
        """What one success of each workflow is worth: measured from outcome periods, or declared."""
        with workspace(ws_path) as ws:
            table = _run(ws.value.unit_values)
            if table.num_rows == 0:
                fail("no unit values stored yet: run `yieldmeter score` first")
            _write_export(table, fmt, out)

    @export.command("benchmarks")
    def export_benchmarks(
        by: Annotated[BenchBy, typer.Option("--by")] = BenchBy.team,
        fmt: ExportFormatOpt = ExportFormat.csv,
        out: ExportOutOpt = None,
        workflow: WorkflowOpt = None,
        period: PeriodOpt = None,
        people: PeopleOpt = False,
        ws_path: WorkspaceOpt = Path("."),
    ) -> None:
        """Benchmarks per team (or user, with --people) inside each workflow."""
        from yieldmeter.app.exports import benchmark_export

        with workspace(ws_path) as ws:
            rep = _run(lambda: ws.value.benchmarks(workflow, period, by.value, people=people))
            _write_export(benchmark_export(rep.rows), fmt, out)
