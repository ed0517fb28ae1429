"""``yieldmeter validate --suite`` (``make validate``): every scenario, several seeds, one report.

Each run simulates a scenario into a temporary workspace, ingests it through the
real importers, scores it, and measures it with :func:`yieldmeter.app.validity.validate`.
The results go to ``benchmarks/results/validity.json`` and a table in ``docs/validity.md``.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from yieldmeter.app.validity import TARGETS, ValidityReport, target_text, validate
from yieldmeter.simulate import SCENARIOS, SimulationParams

#: Days simulated per scenario in the suite: the enterprise at its default size, the others shorter.
SUITE_DAYS = {"enterprise": 30}
DEFAULT_DAYS = 14

#: Figures shown in the docs table, in order.
SHOWN = (
    "spearman_ev",
    "spearman_ev_unlabelled",
    "spearman_ev_ceiling_signals",
    "spearman_ev_ceiling_known_delivery",
    "spearman_ev_within",
    "auc_delivered",
    "labelled_share",
    "kendall_user",
    "kendall_team",
    "interval_coverage_user",
    "interval_coverage_team",
    "precision_expensive_loop",
    "recall_expensive_loop",
    "precision_unused_output",
    "recall_unused_output",
    "precision_rework",
    "recall_rework",
    "precision_accepted_not_resolved",
    "recall_accepted_not_resolved",
    "unpriced_share",
    "true_unpriced_share",
)


@dataclass
class SuiteRun:
    report: ValidityReport
    days: int
    users: int
    calls: int
    seconds: dict[str, float]


@dataclass
class SuiteResult:
    runs: list[SuiteRun] = field(default_factory=list)
    started_at: str = ""

    def scenarios(self) -> list[str]:
        return list(dict.fromkeys(r.report.scenario for r in self.runs))

    def aggregate(self, scenario: str) -> dict[str, dict[str, float | None]]:
        """Per figure: mean, min and max over the seeds of ``scenario`` (NaN runs left out)."""
        runs = [r.report for r in self.runs if r.report.scenario == scenario]
        out: dict[str, dict[str, float | None]] = {}
        for name in dict.fromkeys(k for r in runs for k in r.figures):
            vals = [v for r in runs if (v := r.figures.get(name)) is not None and not math.isnan(v)]
            out[name] = (
                {"mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals))}
                if vals
                else {"mean": None, "min": None, "max": None}
            )
        return out

    def summary_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name in SHOWN:
            row: dict[str, Any] = {"metric": name}
            for scenario in self.scenarios():
                row[scenario] = self.aggregate(scenario).get(name, {}).get("mean")
            row["target"] = target_text(name)
            rows.append(row)
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.started_at,
            "machine": {"python": platform.python_version(), "platform": platform.platform()},
            "targets": {k: {"value": v[0], "rule": v[1]} for k, v in TARGETS.items()},
            "scenarios": {
                s: {
                    k: {stat: None if v is None else round(v, 4) for stat, v in a.items()}
                    for k, a in agg.items()
                }
                for s in self.scenarios()
                for agg in [self.aggregate(s)]
            },
            "runs": [
                {
                    **r.report.as_dict(),
                    "days": r.days,
                    "users": r.users,
                    "calls": r.calls,
                    "seconds": {k: round(v, 2) for k, v in r.seconds.items()},
                }
                for r in self.runs
            ],
        }


def run_suite(
    seeds: Sequence[int],
    scenarios: Sequence[str] | None = None,
    *,
    days: int | None = None,
    users: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> SuiteResult:
    """Simulate, ingest, score and measure every scenario for every seed."""
    from yieldmeter.app.demo import load_simulation
    from yieldmeter.app.workspace import Workspace

    say = progress or (lambda _m: None)
    result = SuiteResult(started_at=datetime.now(UTC).isoformat(timespec="seconds"))
    for scenario in scenarios or list(SCENARIOS):
        for seed in seeds:
            n_days = days or SUITE_DAYS.get(scenario, DEFAULT_DAYS)
            params = SimulationParams(scenario=scenario, seed=seed, days=n_days, users=users)
            root = Path(tempfile.mkdtemp(prefix=f"yieldmeter-validity-{scenario}-"))
            try:
                sim, _ingest, seconds = load_simulation(root, params)
                t0 = time.perf_counter()
                with Workspace.open(root) as ws:
                    report = validate(ws, sim.truth_path)
                seconds["validate"] = time.perf_counter() - t0
            finally:
                shutil.rmtree(root, ignore_errors=True)
            result.runs.append(
                SuiteRun(report, n_days, params.resolved_users(), sim.counts["calls"], seconds)
            )
            say(
                f"{scenario} seed {seed}: spearman_ev {report.figures['spearman_ev']:.3f}, "
                f"kendall_user {report.figures['kendall_user']:.3f} ({sum(seconds.values()):.0f} s)"
            )
    return result


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def render_markdown(result: SuiteResult) -> str:
    """The table of ``docs/validity.md``: mean over seeds, with the range, per scenario."""
    scenarios = result.scenarios()
    seeds = sorted({r.report.seed for r in result.runs if r.report.seed is not None})
    aggs = {s: result.aggregate(s) for s in scenarios}
    lines = [
        "| figure | " + " | ".join(scenarios) + " | target (enterprise) |",
        "| --- | " + " | ".join("---:" for _ in scenarios) + " | --- |",
    ]
    for name in SHOWN:
        cells = []
        for s in scenarios:
            a = aggs[s].get(name, {})
            if a.get("mean") is None:
                cells.append("-")
            elif a["min"] == a["max"]:
                cells.append(_fmt(a["mean"]))
            else:
                cells.append(f"{_fmt(a['mean'])} ({_fmt(a['min'])}-{_fmt(a['max'])})")
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {target_text(name) or ''} |")
    sizes = ", ".join(
        f"{s} {r.days} days x {r.users} people (~{r.calls:,} calls)"
        for s in scenarios
        for r in [next(x for x in result.runs if x.report.scenario == s)]
    )
    return (
        f"Generated by `yieldmeter validate --suite` on {result.started_at}; "
        f"seeds {', '.join(map(str, seeds))}; mean over seeds (min-max). Sizes: {sizes}.\n\n"
        + "\n".join(lines)
        + "\n"
    )


BEGIN = "<!-- validity-table:begin -->"
END = "<!-- validity-table:end -->"


def write_results(result: SuiteResult, json_path: Path, doc_path: Path) -> None:
    """Write the JSON results, and replace the table between the markers of the docs page."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
    table = f"{BEGIN}\n{render_markdown(result)}{END}"
    if doc_path.exists():
        text = doc_path.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + table + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip() + "\n\n" + table + "\n"
    else:
        text = f"# Validity\n\n{table}\n"
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text(text, encoding="utf-8")
