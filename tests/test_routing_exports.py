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
    for i in range(3000):  # "mid": c cheaper with 12 units only, 100 units a day -> experiment
        units.append({"workflow": "w", "task_type": "mid", "model": "c" if i < 12 else "a",
                      "started_at": START + timedelta(days=30 * i / 3000), "cost": 0.2 if i < 12 else 1.0,
                      "ok": i % 4 != 0, "latency_ms": 900.0, "ev": 5.0})  # fmt: skip
    for i in range(400):  # "slow": the same at 13 units a day -> not testable at this volume
        units.append({"workflow": "w", "task_type": "slow", "model": "c" if i < 12 else "a",
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
    assert actions == {"big": "switch", "mid": "experiment", "slow": "keep", "tiny": "insufficient_data"}
    path = tmp_path / "policy.json"
    path.write_text(policy.to_json(), encoding="utf-8")
    back = load_policy(path)
    assert back.entries == policy.entries
    big = back.entry("w", "big")
    assert big is not None and big.model == "b" and big.routes
    b = big.models["b"]
    assert (b.n, b.success_rate, b.cost_per_unit) == (600, 0.8, pytest.approx(0.1))
    assert big.evidence["p_non_inferior"] < 0.05 and "non-inferior" in big.evidence["reason"]
    # latency and intervals per model ride along for people (replay needs only n, success, cost)
    assert big.models["b"].latency_p95_ms == 900.0 and big.models["b"].success_low < 0.8
    assert back.settings["max_days"] == 28


def test_experiments_carry_their_size_and_untestable_segments_are_kept() -> None:
    # Both segments: c (12 units, 0.20 USD) looks cheaper than a (1.00 USD); a succeeds 3 times in 4.
    # c is assumed as good (p = 0.75), routine tier (margin 5 points, share at most 25%); the cost
    # part is negligible, so at share s: N = 6.182557 (0.1875/(1-s) + 0.1875/s) / 0.05^2.
    # At 25%: N = 6.182557 x 1.0 / 0.0025 = 2473.02 -> 2474 units. The period spans 29.99 days.
    # mid, 3000 units (100.03 a day): 20% needs 2897 units, 29 days; 25% needs 2474, 25 days: run it.
    # slow, 400 units (13.34 a day): 2474 units take ceil(2474 / 13.338) = 186 days > 28: keep.
    policy = policy_from_report(small_report())
    mid, slow = policy.entry("w", "mid"), policy.entry("w", "slow")
    assert mid is not None and slow is not None
    assert (mid.action, mid.experiment_model, mid.experiment_share) == ("experiment", "c", 0.25)
    assert (mid.experiment_units, mid.experiment_days) == (2474, 25)
    assert mid.splits(policy.max_days)
    assert slow.action == "keep" and slow.model == "a" and slow.experiment_model is None
    need = slow.evidence["not_testable"]
    assert need == {"model": "c", "traffic_share": 0.25, "units_needed": 2474, "candidate_units": 619,
                    "days_needed": 186, "max_days": 28}  # fmt: skip
    assert "not testable at this volume" in slow.evidence["reason"] and "186 days" in slow.evidence["reason"]
    assert not slow.splits(policy.max_days)
    # the table a person reads says so, with the days
    rows = {r["task_type"]: r for r in small_report().rows()}
    assert rows["slow"]["action_label"] == "keep (not testable at this volume)"
    assert rows["slow"]["days_needed"] == 186 and rows["slow"]["experiment_days"] is None
    assert rows["mid"]["experiment_days"] == 25


def test_bad_policy_files_say_where() -> None:
    def doc(**seg: str) -> dict:  # type: ignore[type-arg]
        return {"yieldmeter_routing_policy": 1, "segments": [seg]}

    with pytest.raises(PolicyError, match="not a yieldmeter routing policy"):
        parse_policy({"segments": []}, "p.json")
    with pytest.raises(PolicyError, match=r"p.json, segments\[0\]: missing 'model'"):
        parse_policy(doc(workflow="w", task_type="t", action="switch"), "p.json")
    with pytest.raises(PolicyError, match="action 'route' is not one of"):
        parse_policy(doc(workflow="w", task_type="t", action="route", model="m"), "p.json")
    # an experiment must say how long it runs, or it cannot be held to the time limit
    exp = {"workflow": "w", "task_type": "t", "action": "experiment", "model": "a",
           "experiment_model": "b", "experiment_share": 0.1, "experiment_units": 900}  # fmt: skip
    with pytest.raises(PolicyError, match=r"segments\[0\]: missing 'experiment_days'"):
        parse_policy(doc(**exp), "p.json")
    with pytest.raises(PolicyError, match="'latency_p95_ms' should be a number"):
        parse_policy(doc(workflow="w", task_type="t", action="keep", model="a",
                         models={"a": {"n": 1, "success_rate": 1.0, "cost_per_unit": 1.0,
                                       "latency_p95_ms": "fast"}}), "p.json")  # fmt: skip


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
    assert sorted(by_tag["w/mid"]) == [("c", 25), ("openai/a", 75)]
    # not testable at this volume: never split, the incumbent only
    assert by_tag["w/slow"] == [("openai/a", 100)]
    assert "w/slow -> a (keep, not testable at this volume: 186 days would settle it)" in text
    assert "w/mid -> a (experiment, experiment 25% to c for 25 days)" in text
    assert by_tag["default"] == [("openai/a", 100)]
    assert litellm_config(policy)["router_settings"] == cfg["router_settings"]


def test_litellm_config_never_splits_an_experiment_beyond_the_limit() -> None:
    # A hand-edited policy (or one written with a longer limit) whose experiment needs 352 days:
    # the LiteLLM config keeps the segment on its incumbent.
    base = {
        "workflow": "fraud",
        "task_type": "ato",
        "action": "experiment",
        "model": "big",
        "incumbent": "big",
        "tier": "high_stakes",
        "experiment_model": "small",
        "experiment_share": 0.1,
        "experiment_units": 40_000,
    }

    def policy(days: int) -> Policy:
        segment = {**base, "experiment_days": days}
        doc = {"yieldmeter_routing_policy": 1, "settings": {"max_days": 28}, "segments": [segment]}
        return parse_policy(doc)

    def weights(p: Policy) -> list[tuple[str, int, list[str]]]:
        params = [d["litellm_params"] for d in litellm_config(p)["model_list"]]
        return sorted((d["model"], d.get("weight", 100), d["tags"]) for d in params)

    assert weights(policy(352)) == [("big", 100, ["fraud/ato", "fraud/tier:high_stakes", "default"])]
    assert "experiment not applied: needs 352 days, limit 28" in litellm_yaml(policy(352))
    # the split under the segment's tag; untagged requests stay whole on the incumbent
    assert weights(policy(20)) == [
        ("big", 90, ["fraud/ato"]),
        ("big", 100, ["default"]),
        ("small", 10, ["fraud/ato"]),
    ]


def test_replay_by_hand() -> None:
    # segment w/t, policy: switch to b, whose evidence says 0.20 USD and 90% success per unit.
    # traffic: 4 units on a at 1.00 USD (3 successful), 2 on b at 0.25 USD (both successful);
    # segment w/u is not in the policy: 1 unit at 5.00 USD, successful.
    rows = [{"workflow": "w", "task_type": "t", "model": "a", "cost": 1.0, "ok": i < 3} for i in range(4)]
    rows += [{"workflow": "w", "task_type": "t", "model": "b", "cost": 0.25, "ok": True} for _ in range(2)]
    rows += [{"workflow": "w", "task_type": "u", "model": "a", "cost": 5.0, "ok": True}]
    # the policy's estimates come from September; the traffic replayed is October's (START)
    september = {"start": "2026-09-01T00:00:00+00:00", "end": "2026-09-30T23:00:00+00:00", "days": 29.96}
    policy = Policy(
        (PolicyEntry("w", "t", "switch", "b", "a", models={"b": ModelFigures(100, 0.9, 0.2)}),),
        period=september,
    )
    result = replay(units_table(rows), policy)
    assert result.priced_with == september and result.in_sample is False
    assert result.traffic["first_at"] == START.isoformat()
    t = result.totals()
    # actual: w/t 4 * 1.00 + 2 * 0.25 = 4.50 USD, 5 successes; w/u 5.00 USD, 1 success
    assert t["actual_cost"] == pytest.approx(9.5) and t["actual_successes"] == 6
    # under the policy: b's own units kept (0.50 USD, 2); a's 4 moved at 0.20 USD and 0.9 each
    # -> w/t 0.50 + 0.80 = 1.30 USD, 2 + 3.6 = 5.6 successes; w/u unchanged
    assert t["counterfactual_cost"] == pytest.approx(6.3)
    assert t["counterfactual_successes"] == pytest.approx(6.6)
    assert t["saving"] == pytest.approx(3.2) and t["moved_units"] == 4 and t["unestimable_units"] == 0
    assert t["priced_with"] == september and t["in_sample"] is False
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


#: LiteLLM's documented proxy config (docs.litellm.ai/docs/proxy/configs, /proxy/tag_routing,
#: /routing): the keys this export writes and the values each may take.
ROUTING_STRATEGIES = {
    "simple-shuffle",
    "least-busy",
    "usage-based-routing",
    "usage-based-routing-v2",
    "latency-based-routing",
    "cost-based-routing",
}
LITELLM_PARAMS = {"model": str, "api_key": str, "tags": list, "weight": int}


def check_litellm_schema(cfg: dict) -> None:  # type: ignore[type-arg]
    """The exported config against LiteLLM's documented schema, key by key."""
    assert set(cfg) <= {"model_list", "router_settings", "litellm_settings", "general_settings"}
    assert isinstance(cfg["model_list"], list) and cfg["model_list"]
    for d in cfg["model_list"]:
        assert set(d) == {"model_name", "litellm_params"} and isinstance(d["model_name"], str)
        params = d["litellm_params"]
        assert set(params) <= set(LITELLM_PARAMS) and "model" in params, params
        for key, kind in LITELLM_PARAMS.items():
            assert key not in params or isinstance(params[key], kind), (key, params)
        assert all(isinstance(t, str) and t for t in params["tags"])
        assert params.get("weight", 1) > 0
        assert "api_key" not in params or params["api_key"].startswith("os.environ/")
    rs = cfg["router_settings"]
    assert rs["enable_tag_filtering"] is True and rs["routing_strategy"] in ROUTING_STRATEGIES


def test_litellm_config_speaks_litellm_provider_names_and_keeps_a_default() -> None:
    """Telemetry names providers as OpenTelemetry does (gcp.gemini, aws.bedrock...); LiteLLM
    refuses a config whose model carries such a prefix ("LLM Provider NOT provided"). And when
    the most used incumbent moves everywhere, it still takes untagged requests: without a
    deployment tagged ``default``, LiteLLM spreads them over every model."""
    doc = {
        "yieldmeter_routing_policy": 1,
        "segments": [
            {"workflow": "kyc", "task_type": task, "action": "switch", "model": "gpt-4o-mini",
             "incumbent": "gemini-1.5-flash-002", "tier": "routine", "evidence": {"units": units}}
            for task, units in (("screening", 900), ("adverse-media", 300))
        ]
        + [
            {"workflow": "kyc", "task_type": "ocr", "action": "keep", "model": "anthropic.claude-3-haiku",
             "incumbent": "anthropic.claude-3-haiku", "tier": "routine", "evidence": {"units": 100}},
        ],
    }  # fmt: skip
    providers = {
        "gemini-1.5-flash-002": "gcp.gemini",
        "gpt-4o-mini": "openai",
        "anthropic.claude-3-haiku": "aws.bedrock",
    }
    params = [d["litellm_params"] for d in litellm_config(parse_policy(doc), providers)["model_list"]]
    by_model = {p["model"]: p for p in params}
    assert set(by_model) == {
        "gemini/gemini-1.5-flash-002",
        "openai/gpt-4o-mini",
        "bedrock/anthropic.claude-3-haiku",
    }
    assert by_model["gemini/gemini-1.5-flash-002"] == {
        "model": "gemini/gemini-1.5-flash-002",
        "api_key": "os.environ/GEMINI_API_KEY",
        "tags": ["default"],  # moved everywhere, still the default
    }
    assert "api_key" not in by_model["bedrock/anthropic.claude-3-haiku"]  # AWS credentials instead
    # one tier, two models: no tier tag
    assert by_model["openai/gpt-4o-mini"]["tags"] == ["kyc/adverse-media", "kyc/screening"]


def test_litellm_config_matches_the_documented_schema() -> None:
    policy = policy_from_report(small_report())
    check_litellm_schema(
        yaml.safe_load(litellm_yaml(policy, {"a": "openai", "b": "anthropic", "c": "openai"}))
    )


def test_litellm_router_routes_the_exported_config() -> None:
    """LiteLLM's own Router, built from the exported config, answers with ``mock_response`` (no
    network). Skipped where litellm is not installed: it is not a test dependency (about 60
    packages); docs/routing.md says how to run this test."""
    pytest.importorskip("litellm")
    import asyncio
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download at import
    from litellm import Router

    policy = policy_from_report(small_report())
    cfg = yaml.safe_load(litellm_yaml(policy, {"a": "openai", "b": "anthropic", "c": "openai"}))
    os.environ.setdefault("OPENAI_API_KEY", "sk-test")
    os.environ.setdefault("ANTHROPIC_API_KEY", "sk-test")
    router = Router(model_list=cfg["model_list"], **cfg["router_settings"])

    async def served(tags: list[str] | None, n: int) -> list[str]:
        out = []
        for _ in range(n):
            metadata = {"tags": tags} if tags else {}
            r = await router.acompletion(
                model=ROUTE_NAME,
                messages=[{"role": "user", "content": "hi"}],
                mock_response="ok",
                metadata=metadata,
            )
            out.append(r.model)
        return out

    assert set(asyncio.run(served(["w/big"], 10))) == {"b"}  # the switch
    assert set(asyncio.run(served(["w/slow"], 40))) == {"a"}  # not testable: never split
    assert set(asyncio.run(served(["w/tiny"], 10))) == {"a"}  # too little data: as it is
    assert set(asyncio.run(served(None, 10))) == {"a"}  # untagged: the default deployment
    mid = asyncio.run(served(["w/mid"], 400))
    # 25% to c: 100 expected, binomial sd 8.7; 5 sd either way
    assert 56 <= mid.count("c") <= 144 and set(mid) == {"a", "c"}


def test_totals_of_the_segments_a_filter_keeps() -> None:
    """A report narrowed to a workflow (or to workloads now on a model) sums that scope's switches
    only: the FinOps report said "4 switches" beside a table of 2."""
    report = small_report()
    everything = report.totals()
    assert report.totals(workflows=["w"]) == everything  # the one workflow there is
    assert report.totals(incumbents=["a", "b", "c"])["switches"] == everything["switches"] == 1
    none = report.totals(workflows=["other"])
    assert (none["switches"], none["monthly_saving"], none["segments"], none["by_tier"]) == (0, 0, 0, {})
    assert report.totals(incumbents=["b"])["switches"] == 0  # the switch's segment is on a today
