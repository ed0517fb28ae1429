"""Routing through a real workspace: simulated units ingested as calls, work units and signals,
scored by the value engine, routed by ``ws.routing`` and the ``yieldmeter route`` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pytest
import yaml
from typer.testing import CliRunner

from tests.routing_data import ingest_units, write_config
from yieldmeter.app.workspace import Workspace
from yieldmeter.cli.main import build_app
from yieldmeter.routing import sim

KEEP = {("support-drafts", "faq"), ("fraud-review", "merchant-review")}
SEGMENTS = [s for s in sim.SEGMENTS if (s.workflow, s.task_type) in KEEP]


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, object]]:
    root = tmp_path_factory.mktemp("routing-ws")
    write_config(
        root,
        [
            {
                "workflow": w.name,
                "unit_value": w.unit_value,
                "risk_class": w.risk_class,
                "latency_slo_ms": w.latency_slo_ms,
            }
            for w in sim.WORKFLOWS.values()
        ],
    )
    units = sim.simulate_units(3, SEGMENTS, days=15)
    with Workspace.open(root, create=True) as ws:
        ingest_units(ws, units)
    yield root, units


def test_routing_counts_the_value_engines_successful_outcomes(routed: tuple[Path, object]) -> None:
    root, units = routed
    with Workspace.open(root) as ws:
        report = ws.routing.report()
        by = {d.segment: d for d in report.decisions}
        faq = by["support-drafts/faq"]
        # every unit is labelled and accepted/rejected, support has no SLO and a low risk class:
        # the value engine's success is exactly the simulated outcome, model by model
        for m in faq.models:
            mask = pc.and_(pc.equal(units["task_type"], "faq"), pc.equal(units["model"], m.model))
            sub = units.filter(mask)
            assert m.n == sub.num_rows
            assert m.successes == pc.sum(sub["successful"].cast("int64")).as_py()
        # real prices: 3,000 input + 600 output tokens on gpt-4o-mini cost 0.00081 USD
        # (0.15 and 0.60 USD per million), on gpt-4o 0.0135 USD (2.50 and 10.00)
        costs = {m.model: m.cost_per_unit for m in faq.models}
        assert costs["gpt-4o-mini"] == pytest.approx(0.00081, rel=1e-6)
        assert costs["gpt-4o"] == pytest.approx(0.0135, rel=1e-6)
        assert faq.tier.value == "low_value"  # expected value 0.8 x 0.40 USD
        assert faq.action.value == "switch" and faq.model in ("gpt-4o-mini", "claude-3-5-haiku")
        assert by["fraud-review/merchant-review"].action.value == "insufficient_data"
        assert ws.routing.insufficient()[0]["segment"] == "fraud-review/merchant-review"
        assert ws.routing.totals()["monthly_saving"] > 0
        # cached until the value engine's facts change (as after new data)
        assert ws.routing.report() is report
        ws.value.invalidate()
        assert ws.routing.report() is not report


def test_route_cli_exports_and_replays(routed: tuple[Path, object], tmp_path: Path) -> None:
    root, _ = routed
    runner = CliRunner()
    app = build_app()
    policy = tmp_path / "policy.json"
    r = runner.invoke(app, ["route", "-w", str(root), "--format", "json", "--out", str(policy)])
    assert r.exit_code == 0, r.output
    doc = json.loads(policy.read_text())
    assert {s["action"] for s in doc["segments"]} == {"switch", "insufficient_data"}
    strict = runner.invoke(app, ["route", "-w", str(root), "--format", "json", "--alpha", "0.001"])
    assert strict.exit_code == 0 and json.loads(strict.output)["settings"]["alpha"] == 0.001
    r = runner.invoke(app, ["route", "-w", str(root), "--format", "litellm"])
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load(r.output)
    assert cfg["router_settings"]["enable_tag_filtering"] is True
    assert any("support-drafts/faq" in d["litellm_params"]["tags"] for d in cfg["model_list"])
    r = runner.invoke(app, ["route", "-w", str(root)], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "support-drafts" in r.output and "projected saving" in r.output
    # the evidence per model, with latency and intervals, and the totals per tier
    assert "Evidence per model" in r.output and "latency_p95_ms" in r.output and "success_low" in r.output
    assert "low_value: 1 switches" in r.output and "all tiers: 1 switches" in r.output
    with Workspace.open(root) as ws:
        evidence = ws.routing.evidence()
        faq = [e for e in evidence if e["task_type"] == "faq"]
        assert {e["model"] for e in faq} == {m.model for m in ws.routing.report().decisions[0].models}
        assert all(e["latency_p95_low_ms"] <= e["latency_p95_ms"] <= e["latency_p95_high_ms"] for e in faq)
        assert all(e["success_low"] <= e["success_rate"] <= e["success_high"] for e in faq)
        by_tier = ws.routing.totals()["by_tier"]
        assert by_tier["low_value"]["switches"] == 1 and by_tier["high_stakes"]["insufficient_data"] == 1
    r = runner.invoke(app, ["route", "replay", str(policy), "-w", str(root)], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    # which estimates price the counterfactual, and that they come from the same traffic
    assert "Moved units priced with the policy's estimates from its evidence period" in r.output
    assert "(in sample" in r.output and "low_value: actual" in r.output
    r = runner.invoke(app, ["route", "replay", str(policy), "-w", str(root), "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    with Workspace.open(root) as ws:
        direct = ws.routing.replay(str(policy)).totals()
    assert out["totals"]["saving"] == pytest.approx(direct["saving"])
    assert direct["saving"] > 0 and direct["moved_units"] > 0
    assert out["totals"]["priced_with"] == {k: doc["period"][k] for k in ("start", "end", "days")}
    assert out["totals"]["in_sample"] is True
    assert out["totals"]["by_tier"]["low_value"]["saving"] == pytest.approx(direct["saving"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = runner.invoke(app, ["route", "replay", str(bad), "-w", str(root)])
    assert r.exit_code == 1 and "not valid JSON" in r.output


def test_route_cli_errors_are_for_people(routed: tuple[Path, object], tmp_path: Path) -> None:
    root, _ = routed
    runner = CliRunner()
    r = runner.invoke(build_app(), ["route", "-w", str(root), "--period", "last-week"])
    assert r.exit_code == 1 and "is not YYYY" in r.output
    r = runner.invoke(build_app(), ["route", "replay", str(tmp_path / "missing.json"), "-w", str(root)])
    assert r.exit_code == 1 and "no such file" in r.output
