"""FinOps surfaces: the REST endpoints (in-process client over the real app), the alert schedule,
evaluation on ingest, and the CLI.

Data is placed one hour before the wall clock's now, so the breach is real *now*
(the schedule and ingest evaluate at the current time).
"""

from __future__ import annotations

import csv
import io
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.finops_data import call, ingest, make_workspace
from yieldmeter.app.workspace import Workspace
from yieldmeter.cli.main import build_app
from yieldmeter.finops.scheduler import start_alert_scheduler
from yieldmeter.server.app import create_app


def _recent(root: Path, extra: str = "") -> Workspace:
    ws = make_workspace(root, extra)
    ingest(ws, "calls", [call(datetime.now(UTC) - timedelta(hours=1), 9.0)])
    return ws


def test_rest_endpoints(tmp_path: Path):
    # schedule_seconds: the app starts the alert schedule with the server and stops it on shutdown.
    ws = _recent(tmp_path / "ws", "alerts:\n  evaluate_on_ingest: false\n  schedule_seconds: 3600\n")
    ws.close()
    with TestClient(create_app(tmp_path / "ws")) as c:
        budget = {"scope_kind": "team", "scope": "alpha", "period": "rolling:7d", "amount": 10}
        r = c.post("/api/v1/finops/budgets", json=budget)
        assert r.status_code == 201, r.text
        bid = r.json()["budget_id"]
        rows = c.get("/api/v1/finops/budgets").json()
        assert rows[0]["spent"] == 9.0 and rows[0]["state"] == "soft"  # 9 of 10: soft (0.8) crossed
        ev = c.post("/api/v1/finops/alerts/evaluate").json()
        assert [(e["event"], e["kind"], e["severity"]) for e in ev] == [("fired", "budget", "soft")]
        assert c.post("/api/v1/finops/alerts/evaluate").json() == []  # fires once per breach
        assert len(c.get("/api/v1/finops/alerts").json()) == 1
        assert c.get(f"/api/v1/finops/budgets/{bid}/burn-down").json()["amount"] == 10.0
        assert c.get("/api/v1/finops/budgets/nope/burn-down").status_code == 404
        assert c.get("/api/v1/finops/anomalies?days=3").status_code == 200
        assert c.get("/api/v1/finops/anomalies?days=0").status_code == 400
        assert c.get("/api/v1/finops/forecast?by=vibes").status_code == 400
        sb = c.get("/api/v1/finops/showback").json()
        assert [(r["team"], r["total_cost"]) for r in sb] == [("alpha", 9.0)]
        text = c.get("/api/v1/finops/export/focus").text
        focus = list(csv.DictReader(io.StringIO(text)))
        assert len(focus) == 1 and float(focus[0]["BilledCost"]) == 9.0
        assert (
            c.post(
                "/api/v1/finops/budgets", json={"scope_kind": "galaxy", "scope": "x", "amount": 1}
            ).status_code
            == 400
        )
        # an admin body is small: 64 KiB at most, refused before it is parsed
        huge = {**budget, "note": "x" * (64 * 1024)}
        r = c.post("/api/v1/finops/budgets", json=huge)
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json", r.text


def test_budgets_posted_as_records_follow_the_identity_rule(tmp_path: Path):
    """One budget per scope and period, however it is written. POST /api/v1/budgets takes the rows
    /finops/budgets and the command take: a row without a period is a month budget (it was
    refused as "budget_id: missing", the wrong field), and posting the same scope again updates
    it. A row giving an id of its own replaces the budget of its scope and period (it landed as a
    second budget on the same team and month), and so does a budget written after it: a budget
    stored under its own id before stays one budget, and can be mended under that id."""
    ws = _recent(tmp_path / "ws")
    ws.close()
    with TestClient(create_app(tmp_path / "ws")) as c:
        r = c.post("/api/v1/budgets", json=[{"scope_kind": "team", "scope": "alpha", "amount": 7}])
        assert r.json()["landed"] == 1 and r.json()["rejected"] == [], r.text
        r = c.post("/api/v1/finops/budgets", json={"scope_kind": "team", "scope": "alpha", "amount": 8})
        assert r.status_code == 201, r.text
        mine = {"budget_id": "mine", "scope_kind": "team", "scope": "alpha", "period": "month", "amount": 9}
        r = c.post("/api/v1/budgets", json=[mine])
        assert r.json()["landed"] == 1, r.text
        rows = c.get("/api/v1/finops/budgets").json()
        assert [(b["budget_id"], b["amount"]) for b in rows] == [("mine", 9.0)]
        r = c.post("/api/v1/budgets", json=[{**mine, "amount": 10}])  # mended under its own id
        assert [(b["budget_id"], b["amount"]) for b in c.get("/api/v1/finops/budgets").json()] == [
            ("mine", 10.0)
        ]
        r = c.post("/api/v1/finops/budgets", json={"scope_kind": "team", "scope": "alpha", "amount": 11})
        assert [b["amount"] for b in c.get("/api/v1/finops/budgets").json()] == [11.0]  # still one
        r = c.post("/api/v1/budgets", json=[{"scope_kind": "team", "amount": 9}])
        assert [x["reason"] for x in r.json()["rejected"]] == ["scope: missing"]  # the part, not the id


def test_schedule_and_ingest_evaluate(tmp_path: Path):
    ws = _recent(tmp_path / "ws", "alerts:\n  ingest_min_interval_s: 0\n")
    # Adding a budget is an ingest: evaluation runs at once and the soft alert fires (9 of 10).
    ws.finops.add_budget("team", "alpha", "rolling:7d", 10.0)
    assert [(a["kind"], a["severity"]) for a in ws.finops.alerts().to_pylist()] == [("budget", "soft")]
    # The schedule resolves it once the budget is raised (a changed budget is a new state of the rule).
    with ThreadPoolExecutor(1) as pool:  # stands in for the server's single writer
        handle = start_alert_scheduler(lambda fn: pool.submit(fn, ws), interval_s=0.2)
        try:
            pool.submit(lambda: ws.finops.add_budget("team", "alpha", "rolling:7d", 100.0)).result()
            deadline = time.monotonic() + 20

            # One connection, one thread at a time: read through the "writer" too, as the server's readers
            # use their own cursors.
            def firing() -> int:
                return pool.submit(lambda: ws.finops.alerts("firing").num_rows).result()

            while (firing() or handle.runs < 1) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            handle.stop()
    assert handle.runs >= 1 and handle.last_error is None
    assert ws.finops.alerts("firing").num_rows == 0
    assert [a["severity"] for a in ws.finops.alerts("resolved").to_pylist()] == ["soft"]


def test_cli_commands(tmp_path: Path):
    ws = _recent(tmp_path / "ws")
    ws.close()
    runner = CliRunner()
    w = ["-w", str(tmp_path / "ws")]
    r = runner.invoke(build_app(), ["budgets", "add", "team", "alpha", "5", "--period", "rolling:7d", *w])
    assert r.exit_code == 0, r.output
    assert "no spend names" not in r.output
    # a budget for a team no spend names (a typo) would never burn: saying so costs nothing
    r = runner.invoke(build_app(), ["budgets", "add", "team", "alpah", "5", *w])
    assert r.exit_code == 0 and "no spend names team 'alpah' yet" in r.output
    assert "did you mean alpha" in " ".join(r.output.split())
    r = runner.invoke(build_app(), ["budgets", "list", "-f", "json", *w])
    assert r.exit_code == 0 and '"state": "hard"' in r.output
    r = runner.invoke(build_app(), ["budgets", "hard-stops", "-f", "json", *w])
    assert r.exit_code == 0 and '"scope": "alpha"' in r.output  # 9 of 5: past the hard threshold
    r = runner.invoke(build_app(), ["alerts", "evaluate", "-f", "json", *w])
    assert r.exit_code == 0 and '"severity": "hard"' in r.output
    out = tmp_path / "f.csv"
    r = runner.invoke(build_app(), ["export", "focus", str(out), *w])
    assert r.exit_code == 0 and out.exists() and "9.00 USD" in r.output
    r = runner.invoke(build_app(), ["budgets", "add", "team", "alpha", "5", "--period", "fortnight", *w])
    assert r.exit_code == 1 and "rolling:Nd" in r.output
