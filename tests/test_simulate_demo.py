"""``yieldmeter demo``: a small simulated organisation through the real ingest path to a board summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from yieldmeter.app.demo import DemoError, run_demo


def test_demo_cli_prints_the_board_summary(tmp_path: Path) -> None:
    from yieldmeter.cli.main import build_app

    ws = tmp_path / "ws"
    args = [
        "demo",
        "--workspace",
        str(ws),
        "--no-serve",
        "--scenario",
        "fraud",
        "--days",
        "2",
        "--users",
        "12",
    ]
    r = CliRunner().invoke(build_app(), args)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    for phrase in (
        "board summary",
        "AI spend (model cost)",
        "fully loaded cost",
        "attribution coverage",
        "top yields",
        "fraud-review",
        "its token cost",
        "routing:",
    ):
        assert phrase in out, phrase
    assert (ws / "yieldmeter.yaml").exists() and (ws / "simulated" / "truth.parquet").exists()
    # the same workspace again is refused: the demo needs a fresh folder
    r = CliRunner().invoke(build_app(), args)
    assert r.exit_code == 1 and "not empty" in r.output


def test_demo_summary_reconciles_with_the_workspace(tmp_path: Path) -> None:
    from yieldmeter.app.workspace import Workspace

    result = run_demo(tmp_path / "ws", scenario="agent-loop", days=2, users=12)
    s = result.summary
    assert s.calls == result.simulation.counts["calls"]
    assert s.work_units == result.simulation.counts["work_units"]
    assert s.fully_loaded_cost == pytest.approx(s.model_cost + s.allocated_cost + s.effort_cost)
    assert s.unpriced_models == ["acme-sre-llm-v2"] or s.unpriced_calls == 0
    assert any(w["category"] == "expensive_loop" for w in s.waste)
    assert set(result.timings) >= {"simulate", "ingest", "score", "summary"}
    with Workspace.open(result.workspace) as ws:
        assert ws.value.scores().num_rows == s.work_units
        # the routing line is the service's own: its largest switch, else an experiment, else why not
        (line,) = s.routing
        switches = ws.routing.recommendations()
        if switches:
            best = max(switches, key=lambda r: r["monthly_saving"])
            assert line.startswith(f"move {best['workflow']}/{best['task_type']}")
        elif any((e["experiment"] or {}).get("decides_within_max_days") for e in ws.routing.experiments()):
            assert line.startswith("test ")
        else:
            assert line.startswith("no model switch")
    with pytest.raises(DemoError, match="is a file"):
        (tmp_path / "f").write_text("x")
        run_demo(tmp_path / "f", scenario="fraud", days=1, users=10)


def test_a_port_in_use_is_refused_before_any_work(tmp_path: Path) -> None:
    """demo and serve bind their port first: a port another server holds is a clear error, and
    neither simulates, opens a store nor prints an address that would answer with the other
    server's data (uvicorn failed after the banner, with exit code 3)."""
    import socket

    from yieldmeter.cli.main import build_app

    with socket.create_server(("127.0.0.1", 0)) as held:
        port = str(held.getsockname()[1])
        ws = tmp_path / "ws"
        demo = ["demo", "--workspace", str(ws), "--scenario", "fraud", "--days", "2", "--users", "12"]
        r = CliRunner().invoke(build_app(), [*demo, "--port", port])
        assert r.exit_code == 1 and "the port is in use" in r.output, r.output
        assert not ws.exists() and "Dashboard" not in r.output
        served = tmp_path / "served"
        assert CliRunner().invoke(build_app(), ["init", "-w", str(served)]).exit_code == 0
        r = CliRunner().invoke(build_app(), ["serve", "-w", str(served), "--port", port])
        assert r.exit_code == 1 and "the port is in use" in r.output, r.output
        assert "dashboard:" not in r.output


def test_the_demo_ends_yesterday_unless_told_where_to_start(tmp_path: Path) -> None:
    """A demo of October seen in December had an empty current month: no budgets, forecasts of
    trailing zeros, no recent anomalies."""
    from datetime import UTC, datetime

    from yieldmeter.app.demo import recent_start
    from yieldmeter.cli.main import build_app

    now = datetime(2026, 12, 6, 15, 30, tzinfo=UTC)
    assert recent_start(7, now) == datetime(2026, 11, 29, tzinfo=UTC)  # 29 Nov - 5 Dec: 7 days
    ws = tmp_path / "ws"
    args = ["demo", "-w", str(ws), "--no-serve", "--scenario", "fraud", "--days", "2", "--users", "12"]
    r = CliRunner().invoke(build_app(), [*args, "--start", "2025-03-10"])
    assert r.exit_code == 0, r.output
    assert "2025-03-10 to 2025-03-11" in r.output
    r = CliRunner().invoke(build_app(), ["demo", "-w", str(tmp_path / "x"), "--no-serve", "--start", "March"])
    assert r.exit_code == 1 and "--start 'March' is not a day" in r.output


def test_a_server_whose_startup_fails_exits_non_zero() -> None:
    """A startup that raises ends the command with exit code 3, as uvicorn.run did (uvicorn 0.55's
    Server.run exits 3 itself; run_server checks ``started`` for a version that returns)."""
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    import typer
    from starlette.applications import Starlette

    from yieldmeter.cli.common import listen, run_server

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("the alert scheduler could not start")
        yield

    socks = listen("127.0.0.1", 0)
    with pytest.raises((SystemExit, typer.Exit)) as stopped:
        run_server(Starlette(lifespan=lifespan), socks)
    code = stopped.value.code if isinstance(stopped.value, SystemExit) else stopped.value.exit_code
    assert code == 3
