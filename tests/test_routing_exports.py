"""Policy JSON round trip, the LiteLLM proxy config, and replay figures checked by hand."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tests.routing_data import units_table, workflows_table
from yieldmeter.routing.policy import (
    ROUTE_NAME,
    ModelFigures,
    Policy,
    PolicyEntry,
    PolicyError,
    litellm_config,
    litellm_yaml,
    load_policy,
    parse_policy,
    policy_from_report,
)
from yieldmeter.routing.recommend import RoutingSettings
from yieldmeter.routing.replay import replay
from yieldmeter.routing.report import analyse
from yieldmeter.routing.sim import START


def small_report():  # type: ignore[no-untyped-def]
    units = []
    for i in range(1200):  # "big": a and b alike in success, b a tenth of the cost -> switch to b
        units.append({"workflow": "w", "task_type": "big", "model": "a" if i % 2 else "b",
                      "started_at": START + timedelta(days=30 * i / 1200), "cost": 1.0 if i % 2 else 0.1,
                      "ok": i % 5 != 0, "latency_ms": 900.0, "ev": 5.0})  # fmt: skip
    for i in range(400):  # "mid": c cheaper with 12 units only -> experiment
        units.append({"workflow": "w", "task_type": "mid", "model": "c" if i < 12 else "a",
                      "started_at": START + timedelta(days=30 * i / 400), "cost": 0.2 if i < 12 else 1.0,
                      "ok": i % 4 != 0, "latency_ms": 900.0, "ev": 5.0})  # fmt: skip
    for _ in range(5):
        units.append({"workflow": "w", "task_type": "tiny", "model": "a", "cost": 1.0, "ok": True, "ev": 5.0})
    wf = workflows_table([{"workflow": "w", "risk_class": "medium", "unit_value": 6.0}])
    return analyse(units_table(units), wf, RoutingSettings())


def test_policy_round_trip(tmp_path: Path) -> None:
    report = small_report()
    policy = policy_from_report(report)
    actions = {e.task_type: e.action for e in policy.entries}
    assert actions == {"big": "switch", "mid": "experiment", "tiny": "insufficient_data"}
    path = tmp_path / "policy.json"
    path.write_text(policy.to_json(), encoding="utf-8")
    back = load_policy(path)
    assert back.entries == policy.entries
    big = back.entry("w", "big")
    assert big is not None and big.model == "b" and big.routes
    assert big.models["b"] == ModelFigures(600, 0.8, pytest.approx(0.1))  # type: ignore[arg-type]
    assert big.evidence["p_non_inferior"] < 0.05 and "non-inferior" in big.evidence["reason"]


def test_bad_policy_files_say_where() -> None:
    def doc(**seg: str) -> dict:  # type: ignore[type-arg]
        return {"yieldmeter_routing_policy": 1, "segments": [seg]}

    with pytest.raises(PolicyError, match="not a yieldmeter routing policy"):
        parse_policy({"segments": []}, "p.json")
    with pytest.raises(PolicyError, match=r"p.json, segments\[0\]: missing 'model'"):
        parse_policy(doc(workflow="w", task_type="t", action="switch"), "p.json")
    with pytest.raises(PolicyError, match="action 'route' is not one of"):
        parse_policy(doc(workflow="w", task_type="t", action="route", model="m"), "p.json")


def test_litellm_config_parses_with_the_expected_structure() -> None:
    policy = policy_from_report(small_report())
    text = litellm_yaml(policy, {"a": "openai", "b": "anthropic"})
    assert text.startswith("# LiteLLM proxy config")
    cfg = yaml.safe_load(text)
    assert set(cfg) == {"model_list", "router_settings"}
    assert cfg["router_settings"]["enable_tag_filtering"] is True
    deployments = cfg["model_list"]
    assert all(d["model_name"] == ROUTE_NAME for d in deployments)
    by_tag: dict[str, list[tuple[str, int]]] = {}
    for d in deployments:
        p = d["litellm_params"]
        assert isinstance(p["model"], str) and isinstance(p["tags"], list)
        for tag in p["tags"]:
            by_tag.setdefault(tag, []).append((p["model"], p.get("weight", 100)))
    assert by_tag["w/big"] == [("anthropic/b", 100)]  # the switch
    assert by_tag["w/tiny"] == [("openai/a", 100)]  # too little data: stays where it is
    # the experiment: the incumbent and the candidate under one tag, weights = the traffic split
    mid = dict(by_tag["w/mid"])
    assert set(mid) == {"openai/a", "c"} and sum(mid.values()) == 100 and mid["c"] < 50
    assert by_tag["default"] == [("openai/a", 100)]
    assert litellm_config(policy)["router_settings"] == cfg["router_settings"]


def test_replay_by_hand() -> None:
    # segment w/t, policy: switch to b, whose evidence says 0.20 USD and 90% success per unit.
    # traffic: 4 units on a at 1.00 USD (3 successful), 2 on b at 0.25 USD (both successful);
    # segment w/u is not in the policy: 1 unit at 5.00 USD, successful.
    rows = [{"workflow": "w", "task_type": "t", "model": "a", "cost": 1.0, "ok": i < 3} for i in range(4)]
    rows += [{"workflow": "w", "task_type": "t", "model": "b", "cost": 0.25, "ok": True} for _ in range(2)]
    rows += [{"workflow": "w", "task_type": "u", "model": "a", "cost": 5.0, "ok": True}]
    policy = Policy((PolicyEntry("w", "t", "switch", "b", "a", models={"b": ModelFigures(100, 0.9, 0.2)}),))
    result = replay(units_table(rows), policy)
    t = result.totals()
    # actual: w/t 4 * 1.00 + 2 * 0.25 = 4.50 USD, 5 successes; w/u 5.00 USD, 1 success
    assert t["actual_cost"] == pytest.approx(9.5) and t["actual_successes"] == 6
    # under the policy: b's own units kept (0.50 USD, 2); a's 4 moved at 0.20 USD and 0.9 each
    # -> w/t 0.50 + 0.80 = 1.30 USD, 2 + 3.6 = 5.6 successes; w/u unchanged
    assert t["counterfactual_cost"] == pytest.approx(6.3)
    assert t["counterfactual_successes"] == pytest.approx(6.6)
    assert t["saving"] == pytest.approx(3.2) and t["moved_units"] == 4 and t["unestimable_units"] == 0
    # without figures in the policy, b's observed figures in the period are used: 0.25 USD, 100%
    bare = Policy((PolicyEntry("w", "t", "switch", "b", "a"),))
    t2 = replay(units_table(rows), bare).totals()
    assert t2["counterfactual_cost"] == pytest.approx(0.5 + 4 * 0.25 + 5.0)
    assert t2["counterfactual_successes"] == pytest.approx(2 + 4 + 1)
    # a model never seen in the segment and absent from the policy: units keep their actuals
    unknown = Policy((PolicyEntry("w", "t", "switch", "z", "a"),))
    t3 = replay(units_table(rows), unknown).totals()
    assert t3["unestimable_units"] == 6 and t3["saving"] == pytest.approx(0.0)
    assert json.loads(json.dumps(result.rows()))  # plain rows
