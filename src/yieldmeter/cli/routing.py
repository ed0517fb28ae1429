"""Routing commands: ``route [--format table|json|litellm] [--out FILE]`` and ``route replay POLICY``.

Thin: parse, call ``ws.routing`` (:class:`yieldmeter.app.routing.RoutingService`), format.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from yieldmeter.cli.common import (
    PERIOD_HELP,
    WorkspaceOpt,
    console,
    emit,
    fail,
    parse_period,
    workspace,
    write_file,
)

EvidencePeriodOpt = Annotated[str | None, typer.Option("--period", help=f"Evidence period: {PERIOD_HELP}")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Write to this file instead of standard output.")
]


#: Columns of the text table (the JSON policy and --out carry everything, with the reasons).
TABLE_COLUMNS = (
    "tier",
    "units",
    "action",
    "model",
    "success_now",
    "success_new",
    "cost_per_success_now",
    "cost_per_success_new",
    "monthly_saving",
    "experiment_share",
    "experiment_days",
    "days_needed",
)

#: Columns of the per-model evidence table: what every decision rests on, with its intervals.
EVIDENCE_COLUMNS = (
    "units",
    "success_rate",
    "success_low",
    "success_high",
    "cost_per_success",
    "cost_per_success_low",
    "cost_per_success_high",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p95_low_ms",
    "latency_p95_high_ms",
    "latency_slo_ms",
    "note",
)


FRONTIER_COLUMNS = (
    "tier",
    "model",
    "units",
    "success_rate",
    "cost_per_unit",
    "cost_per_success",
    "on_frontier",
)


class RouteFormat(StrEnum):
    table = "table"
    json = "json"
    litellm = "litellm"


class ReplayFormat(StrEnum):
    table = "table"
    json = "json"


def _write(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    write_file(out, text if text.endswith("\n") else text + "\n")
    console().print(f"wrote {out}", highlight=False)


def _totals_line(t: dict[str, Any]) -> str:
    return (
        f"{t['switches']} switches: projected saving {t['monthly_saving']:,.2f} USD/month "
        f"(95% interval {t['monthly_saving_low']:,.2f} .. {t['monthly_saving_high']:,.2f}), "
        f"successful outcomes {t['monthly_success_change']:+,.1f}/month; "
        f"{t['experiments']} experiments, {t['not_testable']} not testable at this volume, "
        f"{t['insufficient_data']} segments with too little data."
    )


def _replay_line(t: dict[str, Any]) -> str:
    return (
        f"actual {t['actual_cost']:,.2f} USD for {t['actual_successes']:,.0f} successful outcomes; "
        f"under the policy {t['counterfactual_cost']:,.2f} USD for {t['counterfactual_successes']:,.1f} "
        f"(saving {t['saving']:,.2f} USD, {t['moved_units']:,} units moved, "
        f"{t['unestimable_units']:,} could not be re-priced)."
    )


def register(app: typer.Typer) -> None:
    route = typer.Typer(
        name="route",
        help="Which workload should run on which model: recommendations, experiments, exports, replay.",
        invoke_without_command=True,
    )
    app.add_typer(route, name="route")

    @route.callback()
    def route_main(
        ctx: typer.Context,
        ws_path: WorkspaceOpt = Path("."),
        fmt: Annotated[
            RouteFormat,
            typer.Option("--format", "-f", help="table, json (policy) or litellm (proxy config)."),
        ] = RouteFormat.table,
        out: OutOpt = None,
        period: EvidencePeriodOpt = None,
        alpha: Annotated[
            float, typer.Option("--alpha", min=0.001, max=0.2, help="Significance level of every test.")
        ] = 0.05,
        min_units: Annotated[
            int, typer.Option("--min-units", min=5, help="Units a model needs in a segment to be chosen.")
        ] = 30,
    ) -> None:
        """Per workflow and task type: the model that minimises fully loaded cost per successful
        outcome, where the evidence is clear; else the experiment that would settle it."""
        if ctx.invoked_subcommand is not None:
            # options given before the subcommand are route's own: the subcommand never sees them
            # (compared by name: the enum is click's, which typer may carry a copy of)
            given = [
                p.opts[0]
                for p in ctx.command.params
                if p.name and getattr(ctx.get_parameter_source(p.name), "name", "") == "COMMANDLINE"
            ]
            if given:
                fail(
                    f"{', '.join(given)} before `{ctx.invoked_subcommand}` would be ignored: options "
                    f"go after the subcommand (yieldmeter route {ctx.invoked_subcommand} --help)"
                )
            return
        start, end = parse_period(period)
        with workspace(ws_path) as ws:
            from yieldmeter.app.routing import RoutingService
            from yieldmeter.routing.recommend import RoutingSettings

            settings = RoutingSettings(alpha=alpha, min_units=min_units)
            svc = ws.routing if settings == RoutingSettings() else RoutingService(ws, settings)
            if fmt is RouteFormat.json:
                _write(svc.policy_json(start, end), out)
                return
            if fmt is RouteFormat.litellm:
                _write(svc.litellm_yaml(start, end), out)
                return
            rows = svc.table(start, end)
            if out is not None:
                _write(json.dumps(rows, indent=2, default=str), out)
                return
            if not rows:
                console().print("No work units with calls in this period: nothing to route.")
                return
            shown = [
                {
                    "segment": f"{r['workflow']}/{r['task_type']}",
                    **{k: r["action_label"] if k == "action" else r[k] for k in TABLE_COLUMNS},
                }
                for r in rows
            ]
            emit(shown, "table", title="Routing by value-efficiency (per workflow x task type)")
            for r in rows:
                console().print(f"  {r['workflow']}/{r['task_type']}: {r['reason']}", highlight=False)
            evidence = [
                {
                    "segment": f"{r['workflow']}/{r['task_type']}",
                    "model": r["model"] + (" *" if r["incumbent"] else ""),
                    **{k: r[k] for k in EVIDENCE_COLUMNS},
                }
                for r in svc.evidence(start, end)
            ]
            emit(
                evidence,
                "table",
                title="Evidence per model (* incumbent; 95% intervals: success Wilson, cost per success "
                "delta method, p95 latency of the slowest call per unit distribution-free)",
            )
            frontier = [{k: r[k] for k in FRONTIER_COLUMNS} for r in svc.frontier(start, end)]
            emit(frontier, "table", title="Cost-quality frontier per value tier")
            t = svc.totals(start, end)
            for tier, tt in t["by_tier"].items():
                console().print(f"{tier}: {_totals_line(tt)}", highlight=False)
            console().print(f"all tiers: {_totals_line(t)}", highlight=False)

    @route.command("replay")
    def route_replay(
        policy: Annotated[
            Path, typer.Argument(help="Policy JSON written by `yieldmeter route --format json`.")
        ],
        ws_path: WorkspaceOpt = Path("."),
        period: Annotated[
            str | None,
            typer.Option("--period", help="Traffic to replay (default: the last 30 days of data)."),
        ] = None,
        fmt: Annotated[ReplayFormat, typer.Option("--format", "-f")] = ReplayFormat.table,
    ) -> None:
        """Replay a period's traffic under POLICY: counterfactual fully loaded cost and successes."""
        from yieldmeter.routing.policy import PolicyError, load_policy

        try:
            pol = load_policy(policy)
        except PolicyError as exc:
            fail(str(exc))
        start, end = parse_period(period)
        with workspace(ws_path) as ws:
            result = ws.routing.replay(pol, start, end)
            if fmt is ReplayFormat.json:
                typer.echo(
                    json.dumps({"segments": result.rows(), "totals": result.totals()}, indent=2, default=str)
                )
                return
            emit(result.rows(), "table", title=f"Replay under {policy.name}")
            t = result.totals()
            p, tr = t["priced_with"], t["traffic"]
            console().print(
                f"Traffic replayed: {tr['first_at']} .. {tr['last_at']}. Moved units priced with the "
                f"policy's estimates from its evidence period {p['start']} .. {p['end']}"
                + (
                    " (in sample: the same traffic the estimates came from; replay a later period "
                    "to test them)."
                    if result.in_sample
                    else "."
                ),
                highlight=False,
            )
            for tier, tt in t["by_tier"].items():
                console().print(f"{tier}: {_replay_line(tt)}", highlight=False)
            console().print(f"all tiers: {_replay_line(t)}", highlight=False)
