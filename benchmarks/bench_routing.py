"""Routing against known truth: capture of the oracle's saving, harm, and RouteLLM's metric.

Three measurements, every figure docs/routing.md quotes:

1. ``pipeline``: the ``model-routing`` scenario of ``yieldmeter simulate`` (30 days) through the real
   importers, the value engine and ``ws.routing`` on the month of evidence, per seed; the oracle
   (:mod:`yieldmeter.routing.oracle`) prices the switches with the truth. Per seed: the oracle's
   monthly saving, the captured one, the capture, harmful moves, the tool's own projection; and
   RouteLLM's metric with true figures: cost saved against every segment on its workflow's strongest
   (most expensive) model, at the share of that model's successful outcomes kept.
2. ``unit_scenario``: :mod:`yieldmeter.routing.sim` (routing units drawn from a truth table, no
   ingest), one month of evidence, many seeds: the distribution of capture and harm.
3. ``anchor``: RouteLLM's metric on the unit scenario by replay, as the product computes it: learn the
   policy on a month, replay a fresh month (another draw of the same truth) under the policy and under
   "everything on gpt-4o", both priced with the policy's estimates.

    python benchmarks/bench_routing.py                       # writes benchmarks/results/routing.json
    python benchmarks/bench_routing.py --pipeline-seeds 1,2 --unit-seeds 10 --anchor-seeds 3
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "min": min(values), "max": max(values)}


def pipeline_run(seed: int) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from yieldmeter.app.demo import load_simulation
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.routing.oracle import evaluate, model_key, oracle
    from yieldmeter.routing.recommend import Action
    from yieldmeter.simulate import SCENARIOS, SimulationParams

    scenario = SCENARIOS["model-routing"]
    root = Path(tempfile.mkdtemp(prefix=f"bench-routing-{seed}-"))
    try:
        t0 = time.perf_counter()
        load_simulation(root, SimulationParams(scenario="model-routing", seed=seed))
        t1 = time.perf_counter()
        with Workspace.open(root) as ws:
            report = ws.routing.report()
        t2 = time.perf_counter()
        truth = pq.read_table(root / "simulated" / "truth.parquet")
        ev = evaluate(report.decisions, truth, scenario)
        segs = {s.segment: s for s in oracle(truth, scenario)}
        # RouteLLM's metric with true figures: all on the workflow's strongest model vs the policy
        strongest = {w.name: w.models[0][0] for w in scenario.workflows}  # the incumbent: the dearest
        cost_strong = succ_strong = cost_policy = succ_policy = 0.0
        for d in report.decisions:
            s = segs[d.segment]
            strong = s.models[strongest[d.workflow]]
            cost_strong += s.monthly_units * strong.cost_per_unit
            succ_strong += s.monthly_units * strong.success_rate
            if d.action is Action.SWITCH:
                m = s.models[model_key(d.model) or ""]
                cost_policy += s.monthly_units * m.cost_per_unit
                succ_policy += s.monthly_units * m.success_rate
            else:  # kept, experiment or too little data: the current mix stays
                share = {k: t.units_now / s.units for k, t in s.models.items()}
                cost_policy += s.monthly_units * sum(share[k] * t.cost_per_unit for k, t in s.models.items())
                succ_policy += s.monthly_units * sum(share[k] * t.success_rate for k, t in s.models.items())
        totals = report.totals()
        return {
            "seed": seed,
            "oracle_monthly_saving": ev.oracle_saving,
            "captured_monthly_saving": ev.captured_saving,
            "capture": ev.capture,
            "high_stakes_moved_to_worse": ev.high_stakes_moved_to_worse,
            "moved_beyond_margin": ev.moved_beyond_margin,
            "projected_monthly_saving": totals["monthly_saving"],
            "switches": totals["switches"],
            "experiments": totals["experiments"],
            "not_testable": totals["not_testable"],
            "decisions": {d.segment: f"{d.action_label} {d.model}" for d in report.decisions},
            "routellm_metric_true": {
                "cost_reduction": 1 - cost_policy / cost_strong,
                "success_share": succ_policy / succ_strong,
            },
            "seconds": {"simulate_ingest_score": t1 - t0, "route": t2 - t1},
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def unit_scenario(seeds: int, days: int = 30) -> dict[str, Any]:
    import ibis

    from yieldmeter.routing import sim
    from yieldmeter.routing.recommend import Action, RoutingSettings
    from yieldmeter.routing.report import analyse

    settings = RoutingSettings()
    captures: list[float] = []
    harmful = 0
    misses: dict[str, int] = {}
    t0 = time.perf_counter()
    for seed in range(seeds):
        units = ibis.memtable(sim.simulate_units(seed, days=days))
        report = analyse(units, ibis.memtable(sim.workflows_table()), settings)
        ev = sim.evaluate(report.decisions, settings)
        captures.append(ev.capture)
        harmful += len(ev.high_stakes_moved_to_worse) + len(ev.moved_beyond_margin)
        tiers = {(d.workflow, d.task_type): d.tier for d in report.decisions}
        oracle = {(o.workflow, o.task_type): o for o in sim.oracle(tiers, settings)}
        for d in report.decisions:
            o = oracle[(d.workflow, d.task_type)]
            if o.monthly_saving > 0 and (d.action is not Action.SWITCH or d.model != o.model):
                misses[d.segment] = misses.get(d.segment, 0) + 1
    return {
        "seeds": seeds,
        "evidence_days": days,
        "capture": _summary(captures),
        "seeds_at_least_90": sum(c >= 0.9 for c in captures),
        "harmful_moves": harmful,
        "segments_not_switched_to_the_oracle_model": misses,
        "seconds": time.perf_counter() - t0,
    }


def anchor(seeds: int) -> dict[str, Any]:
    from yieldmeter.routing import sim

    runs = [sim.anchor_comparison(seed) for seed in range(seeds)]
    return {
        "seeds": seeds,
        "evidence_days": sim.DAYS,
        "cost_reduction": _summary([a.cost_reduction for a in runs]),
        "cost_ratio": _summary([a.cost_ratio for a in runs]),
        "success_share": _summary([a.success_share for a in runs]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline-seeds", default="1,2,3,4,5,6,7,8,9,10")
    parser.add_argument("--unit-seeds", type=int, default=40)
    parser.add_argument("--anchor-seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS / "routing.json")
    args = parser.parse_args()
    pipeline = []
    for seed in [int(s) for s in args.pipeline_seeds.split(",") if s.strip()]:
        run = pipeline_run(seed)
        print(f"pipeline seed {seed}: capture {run['capture']:.1%}, harm {run['high_stakes_moved_to_worse']}")
        pipeline.append(run)
    captures = [r["capture"] for r in pipeline]
    result = {
        "benchmark": "routing",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_version()}",
        "pipeline": {
            "scenario": "model-routing",
            "days": 30,
            "capture": _summary(captures),
            "seeds_at_least_90": sum(c >= 0.9 for c in captures),
            "harmful_moves": sum(
                len(r["high_stakes_moved_to_worse"]) + len(r["moved_beyond_margin"]) for r in pipeline
            ),
            "routellm_metric_true": {
                k: _summary([r["routellm_metric_true"][k] for r in pipeline])
                for k in ("cost_reduction", "success_share")
            },
            "runs": pipeline,
        },
        "unit_scenario": unit_scenario(args.unit_seeds),
        "anchor": anchor(args.anchor_seeds),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "pipeline"}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
