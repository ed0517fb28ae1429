"""The capacity service on a real workspace (DuckDB file), and the CLI commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from tests.loopback import free_port
from tests.openai_server import running_server
from yieldmeter.app.capacity import Scope
from yieldmeter.app.workspace import Workspace
from yieldmeter.capacity.specs import CapacityError
from yieldmeter.cli import capacity as capacity_cli
from yieldmeter.ingest.conform import conform

# Three calls at 10:xx (1,000 in / 100 out each), none at 11:xx, one at 12:xx (2,000 in / 200 out).
CALLS = """call_id,ts,provider,model,input_tokens,output_tokens,workflow
c1,2026-03-02T10:05:00Z,openai,gpt-4o-mini,1000,100,triage
c2,2026-03-02T10:20:00Z,openai,gpt-4o-mini,1000,100,triage
c3,2026-03-02T10:40:00Z,openai,gpt-4o-mini,1000,100,triage
c4,2026-03-02T12:10:00Z,openai,gpt-4o-mini,2000,200,drafting
"""
CONFIG = """
capacity:
  rent: {input: 1.0, output: 4.0}
  build: {efficiency: 0.5, batch: 16}
"""


def make_ws(root: Path, config: str = CONFIG, calls: str = CALLS) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    (root / "yieldmeter.yaml").write_text(config)
    (root / "calls.csv").write_text(calls)
    ws = Workspace.init(root)
    ws.ingest_paths([root / "calls.csv"], table="calls")
    return ws


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    w = make_ws(tmp_path / "ws")
    yield w
    w.close()


def test_hourly_volume_and_token_lengths(ws: Workspace) -> None:
    hv = ws.capacity.hourly_volume().order_by("hour").to_pyarrow().to_pylist()
    assert [(r["hour"].hour, r["input_tokens"], r["output_tokens"], r["requests"]) for r in hv] == [
        (10, 3000, 300, 3),
        (12, 2000, 200, 1),
    ]
    lengths = ws.capacity.token_lengths(Scope(workflow="triage")).to_pyarrow().to_pylist()[0]
    assert lengths["prompt_p50"] == 1000 and lengths["output_p50"] == 100 and lengths["requests"] == 3
    prof = ws.capacity.token_profile()
    assert prof is not None and set(prof.pairs) == {(1000, 100), (2000, 200)}


def test_load_profile_fills_empty_hours_and_prices_at_capacity_rent(ws: Workspace) -> None:
    p = ws.capacity.load_profile()
    assert list(p.input_tokens) == [3000, 0, 2000] and list(p.output_tokens) == [300, 0, 200]
    # (3000 x $1 + 300 x $4) / 1e6 = $0.0042; (2000 + 800) / 1e6 = $0.0028
    assert list(p.rent_cost) == pytest.approx([0.0042, 0.0, 0.0028])


def test_a_period_profile_counts_its_quiet_hours_within_the_data(ws: Workspace) -> None:
    """triage's calls are all at 10:xx, the store's data runs 10:05 to 12:10. Without a period
    the profile is triage's one busy hour; for the day 2026-03-02 it is the day's hours the store
    has data for (10:00 to 13:00), the quiet ones as zeros, so its rent is not the busy hour's
    scaled up. Hours before and after any data are not quiet hours: they are left out."""
    alone = ws.capacity.load_profile(Scope(workflow="triage"))
    assert list(alone.input_tokens) == [3000]
    day = Scope(
        workflow="triage", start=datetime(2026, 3, 2, tzinfo=UTC), end=datetime(2026, 3, 3, tzinfo=UTC)
    )
    p = ws.capacity.load_profile(day)
    assert list(p.input_tokens) == [3000, 0, 0] and list(p.rent_cost) == pytest.approx([0.0042, 0.0, 0.0])


def test_plan_from_the_workspace(ws: Workspace) -> None:
    plan = ws.capacity.plan()
    rent = plan.option("rent")
    assert rent is not None
    # $0.007 over a 3-hour window, scaled to 730 hours
    assert rent.usd_per_month == pytest.approx(0.007 * 730 / 3)
    build = plan.option("build")
    assert build is not None and "assumed" in plan.assumptions[-1]
    assert {c.line for c in build.lines} >= {"capital", "energy", "hosting", "operations"}
    assert plan.recommendation.startswith("rent")  # a few thousand tokens never pay for a GPU
    assert "unit_price_per_hour" in plan.unavailable["reserve"]
    scoped = ws.capacity.plan(Scope(workflow="drafting"))
    assert scoped.option("rent").usd_per_month == pytest.approx(0.0028 * 730)  # type: ignore[union-attr]


def test_plan_uses_a_stored_measurement(ws: Workspace) -> None:
    row = {
        "measurement_id": "m1",
        "ts": datetime(2026, 3, 1, tzinfo=UTC),
        "mode": "local",
        "gpu": "h100",
        "model_shape": "llama-3-8b",
        "precision": "bf16",
        "batch": 16,
        "prompt_tokens": 1000,
        "output_tokens": 100,
        "prefill_tokens_per_s": 40000.0,
        "decode_tokens_per_s": 2000.0,
    }
    c = conform("capacity_measurements", pa.Table.from_pylist([row]), source="test")
    ws.store.write("capacity_measurements", c.rows, c.rejects)
    t, why = ws.capacity.replica_throughput(ws.capacity.shape(), 1000, 100)
    assert why == "" and t is not None
    assert (t.prefill_tokens_per_s, t.decode_tokens_per_s) == (40000.0, 2000.0)
    assert t.source.startswith("measured: local bench at batch 16")


def test_unpriced_calls_are_not_costed_as_zero(tmp_path: Path) -> None:
    calls = CALLS.replace("gpt-4o-mini", "acme-internal-llm").replace("openai", "acme")
    w = make_ws(tmp_path / "u", config="capacity: {}\n", calls=calls)
    try:
        with pytest.raises(
            CapacityError, match=r"4 calls \(all calls\) are unpriced \(models: acme-internal-llm\)"
        ):
            w.capacity.plan()
    finally:
        w.close()


def test_a_scope_without_calls_says_which_scope(tmp_path: Path) -> None:
    """A period with no calls names the period (the end excluded), not "all calls"."""
    from yieldmeter.app.capacity import Scope

    w = make_ws(tmp_path / "p", config="capacity: {}\n")
    try:
        scope = Scope(
            workflow="triage", start=datetime(2024, 1, 1, tzinfo=UTC), end=datetime(2024, 2, 1, tzinfo=UTC)
        )
        with pytest.raises(CapacityError) as err:
            w.capacity.plan(scope)
    finally:
        w.close()
    assert (
        str(err.value) == "nothing to plan for: no calls (workflow triage, from 2024-01-01 until 2024-02-01)"
    )
    assert Scope(start=datetime(2026, 11, 3, 9, 30, tzinfo=UTC)).label() == "from 2026-11-03 09:30"


def test_bad_capacity_config_names_the_key(tmp_path: Path) -> None:
    w = make_ws(tmp_path / "b", config="capacity:\n  build: {pue: 0.5}\n")
    try:
        with pytest.raises(CapacityError, match=r"capacity\.build\.pue"):
            w.capacity.plan()
    finally:
        w.close()


def test_bench_results_are_stored(ws: Workspace) -> None:
    pytest.importorskip("torch")
    _, results = ws.capacity.bench_local(
        shape="tiny", batches=(2,), prompt_tokens=16, output_tokens=8, device="cpu", repeats=1
    )
    with running_server(step_ms=1.0) as url:
        levels = ws.capacity.bench_endpoint(
            url, concurrencies=(1, 2), requests_per_level=2, scope=Scope(workflow="triage")
        )
    assert levels[0].prompt_tokens == 2 * 1000  # the triage calls' observed profile, a word per token
    local = ws.capacity.measurements("local").to_pyarrow().to_pylist()
    assert len(local) == 1 and local[0]["model_shape"] == "tiny" and local[0]["batch"] == 2
    assert local[0]["decode_tokens_per_s"] == pytest.approx(results[0].decode_tokens_per_s)
    assert json.loads(local[0]["attributes"])["method"] == "eager"
    ep = ws.capacity.measurements("endpoint").to_pyarrow().to_pylist()
    assert sorted(r["concurrency"] for r in ep) == [1, 2]
    assert all(r["output_tokens"] == 100 and r["ttft_ms_p50"] > 0 for r in ep)


# -- CLI ---------------------------------------------------------------------------------------------
def cli() -> typer.Typer:
    app = typer.Typer()
    capacity_cli.register(app)
    return app


def test_cli_roofline_and_errors() -> None:
    runner = CliRunner()
    ok = runner.invoke(cli(), ["capacity", "roofline", "-s", "llama-3-8b", "-g", "h100", "-f", "json"])
    assert ok.exit_code == 0, ok.output
    rows = {r["quantity"]: r for r in json.loads(ok.stdout)}
    assert rows["decode bound"]["value"] == pytest.approx(221.95, abs=0.1)
    full = runner.invoke(cli(), ["capacity", "roofline", "-s", "llama-3-70b", "-g", "l40s", "-f", "json"])
    assert full.exit_code == 3 and "short by" in full.stderr
    bad = runner.invoke(cli(), ["capacity", "roofline", "-g", "h900"])
    assert bad.exit_code == 1 and "known GPUs: a10, a100" in bad.stderr


def test_cli_plan_and_bench(ws: Workspace) -> None:
    runner = CliRunner()
    out = runner.invoke(cli(), ["capacity", "plan", "-w", str(ws.root), "-f", "json"])
    assert out.exit_code == 0, out.output
    plan = json.loads(out.stdout)[0]
    assert [o["option"] for o in plan["options"]] == ["rent", "build"]
    assert any(line["line"] == "energy" for line in plan["lines"])
    port = free_port()
    t = runner.invoke(
        cli(), ["capacity", "bench", "-w", str(ws.root), "--endpoint", f"http://127.0.0.1:{port}"]
    )
    assert t.exit_code == 1 and f"cannot reach the endpoint at http://127.0.0.1:{port}" in t.stderr.replace(
        "\n", ""
    )


def test_compute_link_for_owned_gpus(tmp_path: Path) -> None:
    calls = CALLS.replace("openai,gpt-4o-mini", "vllm,llama-3-8b-instruct")
    config = """
capacity:
  owned: {providers: [vllm], gpus: 2}
  build: {gpu_price: 20000, other_capex_per_gpu: 4000, amortisation_months: 24, cost_of_capital: 0,
          server_power_w_per_gpu: 100, idle_power_fraction: 0.3, pue: 1.5, energy_price_per_kwh: 0.1,
          hosting_per_gpu_month: 100, operations_per_month: 500}
"""
    w = make_ws(tmp_path / "owned", config=config, calls=calls)
    try:
        row = {
            "measurement_id": "m1",
            "ts": datetime(2026, 3, 1, tzinfo=UTC),
            "mode": "local",
            "gpu": "h100",
            "model_shape": "llama-3-8b",
            "precision": "bf16",
            "batch": 64,
            "prefill_tokens_per_s": 1000.0,
            "decode_tokens_per_s": 100.0,
        }
        c = conform("capacity_measurements", pa.Table.from_pylist([row]), source="test")
        w.store.write("capacity_measurements", c.rows, c.rejects)
        link = {r["workflow"]: r for r in w.capacity.compute_link()}
    finally:
        w.close()
    # GPU-seconds busy: triage 3000/1000 + 300/100 = 6 s; drafting 2000/1000 + 200/100 = 4 s
    # -> shares 0.6 and 0.4
    assert link["triage"]["share"] == pytest.approx(0.6) and link["drafting"]["share"] == pytest.approx(0.4)
    assert link["triage"]["gpu_hours_busy"] == pytest.approx(6 / 3600)
    # fleet: 2 installed GPUs over a 3-hour window (10:00-12:59), utilisation u = 10 s / (2 x 3 h)
    u = 10 / (2 * 3 * 3600)
    assert link["triage"]["fleet_utilisation"] == pytest.approx(u)
    # capital: 2 x $24,000 / 24 months = $2,000/month x 3/730 of a month
    capital = 2000 * 3 / 730
    # energy: 2 GPUs x (700 W x (0.3 + 0.7u) + 100 W) x PUE 1.5 x 3 h / 1000 = 0.009 x (310 + 490u) kWh
    kwh = 0.009 * (310 + 490 * u)
    assert link["triage"]["capital_usd"] == pytest.approx(0.6 * capital)
    assert link["drafting"]["energy_kwh"] == pytest.approx(0.4 * kwh)
    assert link["drafting"]["energy_usd"] == pytest.approx(0.4 * kwh * 0.1)
    total = capital + kwh * 0.1 + (2 * 100 + 500) * 3 / 730
    assert link["triage"]["compute_usd"] + link["drafting"]["compute_usd"] == pytest.approx(total)
    assert link["triage"]["usd_per_million_tokens"] == pytest.approx(0.6 * total / 3300 * 1e6)


def test_the_rent_option_starts_from_list_prices_whatever_the_tier(tmp_path: Path) -> None:
    """A batch call of gpt-5 on 2026-11-02, 1,000,000 input and 1,000,000 output tokens, costs
    $0.625 + $5 = $5.625 (genai-prices 0.2.3's batch rate); the capacity plan's list cost is the
    standard rate, $1.25 + $10 = $11.25, since the plan takes its own batch share off it."""
    calls = "call_id,ts,provider,model,input_tokens,output_tokens,workflow,service_tier\n"
    calls += "b1,2026-11-02T10:05:00Z,openai,gpt-5,1000000,1000000,triage,batch\n"
    w = make_ws(tmp_path / "b", config="capacity: {}\n", calls=calls)
    try:
        [call] = w.priced_calls().to_pyarrow().to_pylist()
        [hour] = w.capacity.hourly_volume().to_pyarrow().to_pylist()
    finally:
        w.close()
    assert call["model_cost"] == pytest.approx(5.625)
    assert hour["list_cost"] == pytest.approx(11.25)
