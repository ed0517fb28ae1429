"""The first ten minutes: simulate an organisation, ingest it for real, score it, summarise it.

``run_demo`` writes the simulated sources under ``<workspace>/simulated/``,
copies the simulated ``yieldmeter.yaml`` into the workspace, and ingests the
sources through :meth:`Workspace.ingest_paths` (the same importers and OTLP
parsing a user's data goes through). :class:`BoardSummary` is what the
terminal prints: spend, fully loaded cost, attribution coverage, top yields,
the biggest waste and a routing suggestion.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yieldmeter.config import CONFIG_FILE, STORE_DIR
from yieldmeter.simulate import SimulationParams, SimulationResult, simulate
from yieldmeter.simulate.scenarios import check_params

if TYPE_CHECKING:
    from yieldmeter.app.workspace import IngestSummary, Workspace

SOURCES_DIR = "simulated"
TOP_YIELDS = 4
TOP_WASTE = 3


class DemoError(RuntimeError):
    """The demo cannot run where it was asked to; the message says why and what to do."""


@dataclass
class BoardSummary:
    period: str
    calls: int
    work_units: int
    model_cost: float
    allocated_cost: float
    effort_cost: float
    fully_loaded_cost: float
    unpriced_calls: int
    unpriced_models: list[str] = field(default_factory=list)
    coverage: dict[str, float | None] | None = None
    top_yields: list[dict[str, Any]] = field(default_factory=list)
    waste: list[dict[str, Any]] = field(default_factory=list)
    highlights: list[str] = field(default_factory=list)
    routing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DemoResult:
    workspace: Path
    simulation: SimulationResult
    ingest: IngestSummary
    timings: dict[str, float]
    summary: BoardSummary


def prepare_workspace(path: Path | None) -> Path:
    """A fresh folder for the demo: ``path`` when it is new or empty, else a temporary folder."""
    if path is None:
        return Path(tempfile.mkdtemp(prefix="yieldmeter-demo-"))
    path = path.expanduser().resolve()
    if path.exists():
        if not path.is_dir():
            raise DemoError(f"--workspace {path} is a file; give a folder for the demo workspace")
        if (path / STORE_DIR).exists() or any(path.iterdir()):
            raise DemoError(
                f"--workspace {path} is not empty; the demo needs a fresh folder "
                "(give a new path, or omit --workspace for a temporary one)"
            )
    path.mkdir(parents=True, exist_ok=True)
    return path


def source_paths(sources: Path, formats: set[str]) -> list[Path]:
    """The simulated files in load order: work units first, then calls, then what refers to them."""
    tables = sources / "tables"
    paths = [tables / "work_units.jsonl", sources / "otlp"]
    paths += [tables / f"{t}.jsonl" for t in ("signals", "effort", "outcomes")]
    if "focus" in formats:
        paths.append(sources / "billing" / "focus.csv")
    return paths


def load_simulation(
    root: Path,
    params: SimulationParams,
    progress: Callable[[str], None] | None = None,
) -> tuple[SimulationResult, IngestSummary, dict[str, float]]:
    """Simulate ``params`` under ``root/simulated``, make ``root`` a workspace, ingest and score it.

    The simulated ``yieldmeter.yaml`` becomes the workspace's; the sources go through
    :meth:`Workspace.ingest_paths` like any user's files. Returns the simulation, the ingest
    summary and the seconds each step took (simulate, ingest, score).
    """
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.ingest.registry import available_formats

    say = progress or (lambda _m: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    say(f"simulating {params.scenario!r} (seed {params.seed}, {params.days} days) into {root / SOURCES_DIR}")
    sim = simulate(root / SOURCES_DIR, params)
    timings["simulate"] = time.perf_counter() - t0
    shutil.copyfile(sim.config_path, root / CONFIG_FILE)
    with Workspace.open(root, create=True) as ws:
        formats = {f.name for f in available_formats()}
        say(f"ingesting {sim.counts['calls']:,} calls and their work units, signals, effort and outcomes")
        t1 = time.perf_counter()
        ingest = ws.ingest_paths(source_paths(sim.out, formats))
        timings["ingest"] = time.perf_counter() - t1
        say("scoring every work unit")
        t2 = time.perf_counter()
        ws.value.score()
        timings["score"] = time.perf_counter() - t2
    return sim, ingest, timings


def run_demo(
    workspace: Path | None = None,
    *,
    seed: int = 42,
    scenario: str = "enterprise",
    days: int = 30,
    users: int | None = None,
    start: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Simulate ``scenario`` into a fresh workspace, ingest, score and summarise it.

    ``start``: the first simulated day (the simulator's default when None; the CLI's demo
    passes :func:`recent_start`).
    """
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.ingest.registry import available_formats

    params = SimulationParams(scenario=scenario, seed=seed, days=days, users=users)
    if start is not None:
        params = replace(params, start=start)
    check_params(params)  # refuse bad parameters before making a folder
    root = prepare_workspace(workspace)
    sim, ingest, timings = load_simulation(root, params, progress)
    t3 = time.perf_counter()
    with Workspace.open(root) as ws:
        summary = board_summary(ws)
    if "focus" not in {f.name for f in available_formats()}:
        summary.notes.append("no FOCUS importer in this build: platform and licence cost not loaded")
    timings["summary"] = time.perf_counter() - t3
    return DemoResult(root, sim, ingest, timings, summary)


def recent_start(days: int, now: datetime | None = None) -> datetime:
    """Midnight UTC of the first of ``days`` days that end with yesterday: a demo of the present,
    whose current month, forecasts and recent anomalies hold data."""
    today = (now or datetime.now(UTC)).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=max(days, 1))


def _period(ws: Workspace) -> str:
    status = ws.status()
    first, last = status.get("first_call"), status.get("last_call")
    if first is None or last is None:
        return "no calls"
    return f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"


def board_summary(ws: Workspace) -> BoardSummary:
    """The figures a board asks for first, from the workspace's own reports."""
    totals = ws.spend().to_pylist()[0]
    units = int(ws.status()["tables"].get("work_units", 0))
    unpriced_models = sorted({str(r.get("model")) for r in ws.unpriced().to_pylist() if r.get("model")})
    summary = BoardSummary(
        period=_period(ws),
        calls=int(totals.get("calls") or 0),
        work_units=units,
        model_cost=float(totals.get("model_cost") or 0.0),
        allocated_cost=float(totals.get("allocated_cost") or 0.0),
        effort_cost=float(totals.get("effort_cost") or 0.0),
        fully_loaded_cost=float(totals.get("fully_loaded_cost") or 0.0),
        unpriced_calls=int(totals.get("unpriced_calls") or 0),
        unpriced_models=unpriced_models,
    )
    value = ws.value
    cov = value.coverage().total
    if cov:
        # a share of spend whose every call is unpriced is unknown (None), never 0%
        parts = ("coverage", "share_with_baseline", "share_with_owner", "share_with_evidence")
        summary.coverage = {
            name: None if cov.get(key) is None else float(cov[key])
            for name, key in zip(("coverage", "baseline", "owner", "evidence"), parts, strict=True)
        }
    yields = [r for r in value.yields().yields.to_pylist() if r["workflow"] != "(all)" and r.get("yield")]
    yields.sort(key=lambda r: -float(r["yield"]))
    summary.top_yields = [
        {
            "workflow": r["workflow"],
            "family": r["family"],
            "yield": float(r["yield"]),
            "benefit": float(r["benefit"] or 0.0),
            "cost": float(r["fully_loaded_cost"] or 0.0),
            "evidence": r.get("evidence_mix"),
        }
        for r in yields[:TOP_YIELDS]
    ]
    summary.highlights = _token_paybacks(ws, yields)
    waste = [r for r in value.waste().to_pylist() if r["category"] != "total"]
    summary.highlights += _unused_line(waste) + _board_line(value.yields().strategic_evidence.to_pylist())
    waste.sort(key=lambda r: -float(r["spend_at_stake"] or 0.0))
    summary.waste = [
        {
            "workflow": r["workflow"],
            "category": r["category"],
            "units": int(r["work_units"]),
            "at_stake": None if r["spend_at_stake"] is None else float(r["spend_at_stake"]),  # unpriced
        }
        for r in waste[:TOP_WASTE]
    ]
    summary.routing = _routing_lines(ws)
    summary.notes.extend(value.notes)
    return summary


def _token_paybacks(ws: Workspace, yields: list[dict[str, Any]]) -> list[str]:
    """How many times its token cost the best-paying workflow returns (the fraud story)."""
    if not yields:
        return []
    by_wf = {r["workflow"]: float(r.get("model_cost") or 0.0) for r in ws.spend(by=["workflow"]).to_pylist()}
    best = max(
        (r for r in yields if by_wf.get(r["workflow"])),
        key=lambda r: float(r["benefit"] or 0.0) / by_wf[r["workflow"]],
        default=None,
    )
    if best is None:
        return []
    ratio = float(best["benefit"] or 0.0) / by_wf[best["workflow"]]
    return [
        f"{best['workflow']} returns {ratio:,.0f}x its token cost "
        f"({float(best['benefit'] or 0):,.0f} USD of {best['family']} benefit on "
        f"{by_wf[best['workflow']]:,.2f} USD of tokens)"
    ]


def _unused_line(waste: list[dict[str, Any]]) -> list[str]:
    """The workflow whose spend most went on outputs nobody used (the unread-content story)."""
    unused = [r for r in waste if r["category"] == "unused_output" and r.get("share_of_spend")]
    if not unused:
        return []
    top = max(unused, key=lambda r: float(r["share_of_spend"]))
    return [
        f"{top['workflow']}: {float(top['share_of_spend']):.0%} of its fully loaded cost went on outputs "
        f"nobody used ({int(top['work_units']):,} work units)"
    ]


def _board_line(evidence: list[dict[str, Any]]) -> list[str]:
    """Strategic outcomes tied to answers: the analyst answer that changed a board decision."""
    if not evidence:
        return []
    by_wf: dict[str, list[dict[str, Any]]] = {}
    for r in evidence:
        by_wf.setdefault(str(r["workflow"]), []).append(r)
    wf, rows = max(by_wf.items(), key=lambda kv: len(kv[1]))
    example = rows[0].get("evidence_ref") or rows[0].get("outcome_id")
    return [
        f"{wf}: {len(rows)} strategic outcomes record an answer that informed a business decision "
        f"({rows[0].get('evidence_level')} evidence, e.g. {example}); scored 0-5, never in dollars "
        "(the decision register, of decisions about AI itself, is another list)"
    ]


def _usd(v: float | None) -> str:
    return "an unknown amount" if v is None else f"{v:,.0f} USD"


def _signed(x: float) -> str:
    """A change with its sign (-0.497 read "-0"): whole from 10 (+12), a tenth below (-0.5), two
    significant digits below a twentieth (-0.04: a small loss keeps its sign); +0.0 for none."""
    if abs(x) >= 9.95:
        return f"{x:+,.0f}"
    if abs(x) >= 0.05 or x == 0:
        return f"{round(x, 1) + 0.0:+.1f}"
    return f"{x:+.2g}"


def _routing_lines(ws: Workspace) -> list[str]:
    """The routing suggestion with the largest saving (a statistically clear switch), else the
    experiment with the largest potential saving, else why there is none."""
    switches = sorted(ws.routing.recommendations(), key=lambda r: -(r.get("monthly_saving") or 0.0))
    if switches:
        r = switches[0]
        return [
            f"move {r['workflow']}/{r['task_type']} ({r['tier']}) from {r['incumbent']} to {r['model']}: "
            f"{_usd(r.get('monthly_saving'))} a month saved, "
            f"{_signed(r.get('monthly_success_change') or 0.0)} successful outcomes a month"
        ]
    trials = [e for e in ws.routing.experiments() if (e["experiment"] or {}).get("decides_within_max_days")]
    trials.sort(key=lambda e: -(e.get("potential_monthly_saving") or 0.0))
    if trials:
        e = trials[0]
        x = e["experiment"]
        return [
            f"test {x['model']} on {e['workflow']}/{e['task_type']} ({e['tier']}): send "
            f"{x.get('traffic_share', 0.0):.0%} of its traffic for {x.get('days', '?')} days to decide "
            f"(up to {_usd(e.get('potential_monthly_saving'))} a month)"
        ]
    return ["no model switch is supported by the evidence yet, and no experiment could decide one"]
