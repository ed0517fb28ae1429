"""The simulator: determinism, scenario shapes, readable sources, refusals.

Every test runs a small organisation (a few thousand calls), so the file takes seconds.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from yieldmeter.simulate import SCENARIOS, SimulationError, SimulationParams, simulate
from yieldmeter.simulate.catalog import MODELS

SMALL = {"days": 5, "users": 50}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def enterprise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("enterprise")
    simulate(out, SimulationParams(seed=7, **SMALL))
    return out


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    params = SimulationParams(scenario="support-recontact", seed=3, days=3, users=20)
    simulate(tmp_path / "a", params)
    simulate(tmp_path / "b", params)
    simulate(tmp_path / "c", SimulationParams(scenario="support-recontact", seed=4, days=3, users=20))
    a, b, c = (_digest(tmp_path / x) for x in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["otlp/traces-0001.jsonl"] != c["otlp/traces-0001.jsonl"]


def test_every_scenario_generates(tmp_path: Path) -> None:
    for name, scenario in SCENARIOS.items():
        users = max(30, sum(len(w.teams) for w in scenario.workflows) * 2)
        result = simulate(tmp_path / name, SimulationParams(scenario=name, seed=1, days=2, users=users))
        assert result.counts["calls"] > 0 and result.counts["work_units"] > 0, name


def test_analyst_session_has_forty_questions_three_copied_one_moved(tmp_path: Path) -> None:
    simulate(tmp_path, SimulationParams(scenario="analyst-session", seed=11, days=10))
    truth = pq.read_table(tmp_path / "truth.parquet").to_pandas()
    flagship = truth[(truth.level == "work_unit") & truth.flagship]
    assert len(flagship) == 40
    assert flagship.parent_id.nunique() == 1 and flagship.parent_id.iloc[0] == "sess-board-prep-q4"
    assert sorted(flagship.state.value_counts().to_dict().items()) == [
        ("memo", 2),
        ("moved", 1),
        ("unused", 37),
    ]
    ids = set(flagship.work_unit_id)
    signals = [json.loads(line) for line in (tmp_path / "tables/signals.jsonl").open()]
    copied = {s["work_unit_id"] for s in signals if s["work_unit_id"] in ids and s["kind"] == "copied"}
    decided = {
        s["work_unit_id"] for s in signals if s["work_unit_id"] in ids and s["kind"] == "decision_reached"
    }
    assert len(copied) == 3
    assert len(decided) == 1 and decided <= copied
    moved = flagship[flagship.state == "moved"]
    assert decided == set(moved.work_unit_id)
    outcomes = [json.loads(line) for line in (tmp_path / "tables/outcomes.jsonl").open()]
    board = [o for o in outcomes if o.get("work_unit_id") in decided]
    assert len(board) == 1 and board[0]["value_dimension"] == "strategic" and "monetary_value" not in board[0]


def _hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode()


def test_otlp_lines_are_collector_file_exporter_requests(enterprise: Path) -> None:
    """Each line parses as an ExportTraceServiceRequest (ids hex, int64 as strings, GenAI attributes)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans = 0
    files = sorted((enterprise / "otlp").glob("traces-*.jsonl"))
    assert files
    for path in files:
        for line in path.open():
            raw = json.loads(line)
            for rs in raw["resourceSpans"]:
                keys = {a["key"] for a in rs["resource"]["attributes"]}
                assert "service.name" in keys
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
                        int(span["traceId"], 16), int(span["spanId"], 16)
                        assert int(span["endTimeUnixNano"]) > int(span["startTimeUnixNano"])
                        attrs = {a["key"]: a["value"] for a in span["attributes"]}
                        for key in (
                            "gen_ai.operation.name",
                            "gen_ai.provider.name",
                            "gen_ai.request.model",
                            "gen_ai.response.model",
                            "gen_ai.conversation.id",
                            "user.id",
                            "yieldmeter.work_unit.id",
                            "yieldmeter.workflow",
                            "yieldmeter.task_type",
                            "yieldmeter.team",
                        ):
                            assert "stringValue" in attrs[key], key
                        assert isinstance(attrs["gen_ai.usage.input_tokens"]["intValue"], str)
                        assert isinstance(attrs["gen_ai.usage.output_tokens"]["intValue"], str)
                        # proto3 JSON wants bytes as base64; OTLP JSON uses hex (the one deviation)
                        span["traceId"] = _hex_to_b64(span["traceId"])
                        span["spanId"] = _hex_to_b64(span["spanId"])
                        spans += 1
            json_format.ParseDict(raw, ExportTraceServiceRequest())
    manifest = json.loads((enterprise / "manifest.json").read_text())
    assert spans == manifest["counts"]["calls"]


def test_tables_use_canonical_columns_and_conform(enterprise: Path) -> None:
    import pyarrow as pa

    from yieldmeter.ingest.conform import conform
    from yieldmeter.schema import table

    for name in ("work_units", "signals", "effort", "outcomes"):
        rows = [json.loads(line) for line in (enterprise / f"tables/{name}.jsonl").open()]
        assert rows, name
        columns = {k for r in rows for k in r}
        assert columns <= set(table(name).names), (name, columns - set(table(name).names))
        result = conform(name, pa.Table.from_pylist(rows), source=name)
        assert result.rejects.num_rows == 0, result.rejects.to_pylist()[:3]


def test_config_is_valid_with_a_mid_period_price_change(enterprise: Path) -> None:
    from yieldmeter.config import parse_config

    config = parse_config((enterprise / "yieldmeter.yaml").read_text())
    assert len(config.workflows) >= 6
    dimensions = {w.value_dimension for w in config.workflows}
    assert {"loss_avoided", "margin", "throughput", "strategic", "cycle_time"} <= dimensions
    (override,) = config.prices
    assert override.model == "gpt-4o" and override.valid_from is not None
    assert datetime(2026, 10, 1, tzinfo=UTC) < override.valid_from < datetime(2026, 10, 6, tzinfo=UTC)


def test_models_exist_in_the_price_catalog_except_the_private_one() -> None:
    from genai_prices import Usage, calc_price

    priced = [m for m in MODELS.values() if m.priced]
    assert len(priced) >= 6
    for m in priced:
        calc_price(Usage(input_tokens=1000, output_tokens=100), m.response_model, provider_id=m.provider)
    unknown = [m for m in MODELS.values() if not m.priced]
    assert unknown
    for m in unknown:
        with pytest.raises(LookupError):
            calc_price(Usage(input_tokens=1000, output_tokens=100), m.response_model, provider_id=m.provider)


def test_organisation_looks_real_to_a_finops_analyst(enterprise: Path) -> None:
    truth = pq.read_table(enterprise / "truth.parquet").to_pandas()
    units = truth[truth.level == "work_unit"]
    manifest = json.loads((enterprise / "manifest.json").read_text())
    assert 0 < manifest["truth"]["unpriced_calls"] < 0.05 * manifest["truth"]["calls"]
    # a few heavy users: the top 5% of people make over a fifth of the calls
    calls = units.groupby("user_id").calls.sum().sort_values(ascending=False)
    top = calls.iloc[: max(1, len(calls) // 20)].sum()
    assert top > 0.2 * calls.sum()
    # weekday rhythm: 2026-10-03/04 are a weekend
    wu = [json.loads(line) for line in (enterprise / "tables/work_units.jsonl").open()]
    day = np.array([r["started_at"][:10] for r in wu])
    weekday = np.mean([(day == d).sum() for d in ("2026-10-01", "2026-10-02", "2026-10-05")])
    weekend = np.mean([(day == d).sum() for d in ("2026-10-03", "2026-10-04")])
    assert weekday > 2.5 * weekend
    # agent runs loop, chat sessions iterate
    loops = units[units.is_loop]
    assert len(loops) and loops.calls.min() >= 40
    assert units[units.workflow == "board-analysis"].parent_id.value_counts().max() > 5
    # fraud pays back its tokens many times over: tiny tokens per alert, large value
    fraud = units[units.workflow == "fraud-review"]
    assert fraud.tokens.median() < 2000 and fraud.true_value.sum() > 100 * fraud.tokens.sum() / 1e6


def test_truth_holds_units_users_and_teams(enterprise: Path) -> None:
    truth = pq.read_table(enterprise / "truth.parquet").to_pandas()
    assert set(truth.level) == {"work_unit", "user", "team"}
    units = truth[truth.level == "work_unit"]
    users = truth[truth.level == "user"]
    for (wf, user), g in list(units.groupby(["workflow", "user_id"]))[:20]:
        row = users[(users.workflow == wf) & (users.subject == user)].iloc[0]
        assert row.n_units == len(g)
        assert row.value_per_token == pytest.approx(g.true_value.sum() / g.tokens.sum())


def test_focus_file_has_focus_columns(enterprise: Path) -> None:
    rows = list(csv.DictReader((enterprise / "billing/focus.csv").open()))
    assert rows
    for key in (
        "BilledCost",
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "ServiceCategory",
        "ServiceName",
        "ProviderName",
        "Tags",
    ):
        assert key in rows[0]
    assert all(float(r["BilledCost"]) >= 0 for r in rows)
    tags = [json.loads(r["Tags"]) for r in rows]
    assert any("workflow" in t for t in tags) and all("team" in t for t in tags)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (SimulationParams(users=3), "too few"),
        (SimulationParams(days=0), "--days must be between"),
        (SimulationParams(scenario="nope"), "unknown scenario"),
        (SimulationParams(seed=-1), "--seed"),
        (SimulationParams(users=50_000, days=366), "limit"),
        # times the store refuses (before 1990, from 2100 on): every row would be quarantined
        (SimulationParams(start=datetime(2300, 1, 1, tzinfo=UTC)), "between 1990-01-01 and 2100-01-01"),
        (SimulationParams(start=datetime(1677, 9, 22, tzinfo=UTC)), "between 1990-01-01 and 2100-01-01"),
        (SimulationParams(start=datetime(2099, 12, 25, tzinfo=UTC), days=10), "--days 10"),
    ],
)
def test_impossible_parameters_are_refused(tmp_path: Path, params: SimulationParams, message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        simulate(tmp_path / "out", params)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_with_a_message_and_no_traceback(tmp_path: Path) -> None:
    from yieldmeter.cli.main import build_app

    runner = CliRunner()
    r = runner.invoke(build_app(), ["simulate", "--out", str(tmp_path / "o"), "--users", "3"])
    assert r.exit_code == 1
    assert "too few" in r.output and "Traceback" not in r.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    r = runner.invoke(build_app(), ["simulate", "--out", str(tmp_path / "busy"), "--days", "1"])
    assert r.exit_code == 1 and "already holds other files" in r.output
    assert "--overwrite" in " ".join(r.output.split())  # the way out is named
    r = runner.invoke(
        build_app(),
        ["simulate", "--out", str(tmp_path / "ok"), "--scenario", "fraud", "--days", "1", "--users", "10"],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ok" / "truth.parquet").exists()


@pytest.mark.slow
def test_default_size_is_about_200k_calls(tmp_path: Path) -> None:
    # the demo's size (issue 5: about 200k calls in 30 days); how fast it generates is a
    # benchmark figure (docs/simulator.md), never a timed assertion here
    result = simulate(tmp_path, SimulationParams())
    assert 150_000 <= result.counts["calls"] <= 260_000
