"""Unit values measured from outcomes (scoring.unit_value), computed by hand.

Workflow ``claims`` declares $9 a unit and reports two weekly outcome periods:

    period A, days 0-7:  units a1 a2 a3 (p 0.9, 0.8, 0.3; sum 2.0), outcome $20 x attribution 0.9 = $18
                         a4 (p 0.95) has an outcome of its own, $30: valued by it, not counted here
    period B, days 7-14: units b1 b2 (p 1.0 each; sum 2.0), two metrics' outcomes $15 + $7 = $22
                         (x attribution 1.0): one period, not two
    day 20:              unit c1 (p 0.5), in no period
    days 30-37:          an outcome of $500 with no unit in it: left out, and the note says so
    an outcome with no period end ($1,000): left out, and the note says so too

    measured = (18 + 22) / (2.0 + 2.0) = $10 per expected success
    residuals B_j - measured x E_j: 18 - 20 = -2, 22 - 20 = 2
    Var = (4 + 4) x k / (k - 1) / (sum E)^2 = 8 x 2 / 16 = 1, so se = $1, relative 0.1 (1 dof)

Workflow ``fraud`` declares $900 and reports no periods: f1 has its own outcome,
$500 x attribution 0.5 = $250; f2 keeps the declared $900; f3's own outcome says $0 (no value),
so it keeps $900 too. Workflow ``board`` reports one period only: its spread is unknown, so the
declared $400 stands. Workflow ``notes`` declares nothing and has only an anecdote: no value.
Workflow ``idle`` reports $0 for both its periods: nothing measured, the declared $5 stands.
Workflow ``ovl`` reports days 0-7 and 3-10: overlapping periods, the declared $2 stands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tests.value_data import build_workspace, make_tables, ts
from yieldmeter.lake.layout import Lake
from yieldmeter.scoring.unit_value import monetary_outcomes, unit_values

UNITS = [  # id, workflow, start (days), p
    ("a1", "claims", 0.5, 0.9),
    ("a2", "claims", 1.0, 0.8),
    ("a3", "claims", 6.0, 0.3),
    ("a4", "claims", 2.0, 0.95),
    ("b1", "claims", 7.0, 1.0),
    ("b2", "claims", 13.9, 1.0),
    ("c1", "claims", 20.0, 0.5),
    ("f1", "fraud", 1.0, 0.97),
    ("f2", "fraud", 2.0, 0.5),
    ("f3", "fraud", 3.0, 0.1),
    ("g1", "board", 1.0, 0.6),
    ("n1", "notes", 1.0, 0.6),
    ("i1", "idle", 1.0, 0.6),
    ("i2", "idle", 8.0, 0.6),
    ("v1", "ovl", 1.0, 0.9),
    ("v2", "ovl", 5.0, 0.9),
]


def _outcome(
    oid: str, workflow: str, start: float, end: float | None, money: float | None, share: float, **kw: Any
) -> dict[str, Any]:
    return {
        "outcome_id": oid,
        "workflow": workflow,
        "period_start": ts(days=start),
        "period_end": None if end is None else ts(days=end),
        "metric": "m",
        "monetary_value": money,
        "attribution_share": share,
        **kw,
    }


OUTCOMES = [
    _outcome("oA", "claims", -1, 7, 20.0, 0.9),
    _outcome("oB1", "claims", 7, 14, 15.0, 1.0),
    _outcome("oB2", "claims", 7, 14, 7.0, 1.0, metric="m2"),
    _outcome("o-late", "claims", 30, 37, 500.0, 1.0),
    _outcome("o-open", "claims", 0, None, 1000.0, 1.0),
    _outcome("o-a4", "claims", 2, 3, 30.0, 1.0, work_unit_id="a4"),
    _outcome("o-f1", "fraud", 1, 2, 500.0, 0.5, work_unit_id="f1"),
    _outcome("o-f3", "fraud", 3, 4, 0.0, 1.0, work_unit_id="f3"),
    _outcome("o-g", "board", 0, 14, 5000.0, 1.0),
    _outcome("o-n", "notes", 0, 14, 800.0, 1.0, evidence_level="anecdote"),
    _outcome("o-cycle", "claims", 0, 7, None, 1.0),  # a non-monetary outcome measures no money
    _outcome("o-i1", "idle", 0, 7, 0.0, 1.0),
    _outcome("o-i2", "idle", 7, 14, 0.0, 1.0),
    _outcome("o-v1", "ovl", 0, 7, 50.0, 1.0),
    _outcome("o-v2", "ovl", 3, 10, 50.0, 1.0),
]
DECLARED = {"claims": 9.0, "fraud": 900.0, "board": 400.0, "idle": 5.0, "ovl": 2.0}


def _measure(min_successes: float = 1.0) -> tuple[dict[str, float], dict[str, Any]]:
    _, t = make_tables({"outcomes": OUTCOMES})
    ids, wfs, starts, p = zip(*UNITS, strict=True)
    value, reports = unit_values(
        pa.array(ids),
        np.array(wfs, dtype=object),
        pa.array([ts(days=d) for d in starts], pa.timestamp("us", tz="UTC")),
        np.array(p),
        DECLARED,
        monetary_outcomes(t).to_pyarrow(),
        min_successes=min_successes,
    )
    return dict(zip(ids, value.tolist(), strict=True)), {r.workflow: r for r in reports}


def test_unit_values_by_hand() -> None:
    value, rep = _measure()
    claims = rep["claims"]
    assert claims.source == "measured" and claims.used == pytest.approx(10.0)
    assert claims.measured == pytest.approx(10.0) and claims.declared == 9.0
    assert claims.expected_successes == pytest.approx(4.0) and claims.periods == 2
    assert claims.relative_se == pytest.approx(0.1)
    assert claims.own_outcome_units == 1 and claims.period_benefit == pytest.approx(40.0)
    assert claims.note == (
        "1 outcome period(s) with no expected success left out; 1 outcome(s) with no period end left out"
    )
    for u in ("a1", "a2", "a3", "b1", "b2", "c1"):  # c1 is in no period: the workflow's value
        assert value[u] == pytest.approx(10.0), u
    assert value["a4"] == pytest.approx(30.0)

    fraud = rep["fraud"]
    assert fraud.source == "declared" and fraud.used == 900.0 and fraud.relative_se is None
    assert fraud.own_outcome_units == 1
    assert value["f1"] == pytest.approx(250.0)
    assert value["f2"] == value["f3"] == 900.0

    board = rep["board"]
    assert board.source == "declared" and board.used == 400.0 and value["g1"] == 400.0
    assert board.measured == pytest.approx(5000.0 / 0.6) and board.relative_se is None
    assert board.note == "1 outcome period with units in it: one period says nothing of its own noise"

    notes = rep["notes"]
    assert notes.source == "none" and notes.used is None and np.isnan(value["n1"])

    idle = rep["idle"]
    assert (
        idle.source == "declared"
        and value["i1"] == 5.0
        and idle.note == "its outcome periods report no benefit"
    )

    ovl = rep["ovl"]
    assert ovl.source == "declared" and value["v1"] == 2.0 and "overlap" in ovl.note
    assert ovl.measured is None  # overlapping periods would count v1's benefit twice


def test_too_few_expected_successes_keep_the_declared_value() -> None:
    value, rep = _measure(min_successes=20.0)
    assert rep["claims"].source == "declared" and value["a1"] == 9.0
    assert "4.0 expected successes" in rep["claims"].note and "fewer than 20" in rep["claims"].note
    assert value["a4"] == pytest.approx(30.0)  # a unit's own outcome is its value regardless


CONFIG = """\
workflows:
  - workflow: claims
    unit_value: 9
  - workflow: fraud
    unit_value: 900
prices:
  - model: m
    provider: p
    input: 1.0
    output: 2.0
"""


def _workspace_rows() -> dict[str, list[dict[str, Any]]]:
    """40 claims a week for two weeks, all alike (one call, a QA label "value confirmed"), so every
    unit has the same p, q; the weeks' outcomes report $300 and $360. By hand: E_1 = E_2 = 40q,
    measured = 660 / 80q; residuals 300 - 330 = -30 and 360 - 330 = +30,
    Var = (900 + 900) x 2 / (80q)^2, so se = 60 / 80q, and relative to the value
    60 / 660 = 0.0909 whatever q is (1 degree of freedom)."""
    units, calls, signals = [], [], []
    for i in range(80):
        uid = f"u{i}"
        units.append({"work_unit_id": uid, "workflow": "claims", "started_at": ts(days=i / 80 * 14)})
        calls.append(
            {
                "call_id": f"c{i}",
                "ts": ts(days=i / 80 * 14),
                "work_unit_id": uid,
                "workflow": "claims",
                "provider": "p",
                "model": "m",
                "input_tokens": 1000,
                "output_tokens": 100,
            }
        )
        signals.append(
            {"signal_id": f"s{i}", "work_unit_id": uid, "ts": ts(days=i / 80 * 14), "kind": "value_confirmed"}
        )
    outcomes = [_outcome("w1", "claims", 0, 7, 300.0, 1.0), _outcome("w2", "claims", 7, 14, 360.0, 1.0)]
    return {"work_units": units, "calls": calls, "signals": signals, "outcomes": outcomes}


def test_score_stores_the_unit_values_and_the_benchmarks_read_them(tmp_path: Path) -> None:
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.cli.main import build_app

    build_workspace(tmp_path, _workspace_rows(), CONFIG).close()
    export = ["export", "unit-values", "--format", "jsonl", "--workspace", str(tmp_path)]
    r = CliRunner().invoke(build_app(), export)  # nothing scored yet: nothing stored to export
    assert r.exit_code == 1 and "run `yieldmeter score` first" in r.output
    r = CliRunner().invoke(build_app(), ["score", "--workspace", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "Unit values" in r.output
    claims_line = next(line for line in r.output.splitlines() if "claims" in line)
    assert "measured" in claims_line and "declared" not in claims_line
    with Workspace.open(tmp_path) as ws:
        stored = {u["workflow"]: u for u in ws.store.query_arrow("SELECT * FROM unit_values").to_pylist()}
        scores = ws.value.scores().to_pylist()
        p_sum = sum(s["p_value"] for s in scores)
        claims = stored["claims"]
        assert claims["source"] == "measured" and claims["periods"] == 2
        assert claims["unit_value"] == pytest.approx(660.0 / p_sum)
        assert claims["period_benefit"] == pytest.approx(660.0)
        # every unit rests on it, and the expected values add up to the outcomes' $660
        assert sum(s["expected_value"] for s in scores) == pytest.approx(660.0)
        assert [s["unit_value"] for s in scores] == [pytest.approx(claims["unit_value"])] * 80
        assert claims["relative_se"] == pytest.approx(60.0 / 660.0)
        assert stored["fraud"]["source"] == "declared" and stored["fraud"]["unit_value"] == 900.0
        # the benchmarks draw that error (1 degree of freedom) for claims, and none for fraud
        assert ws.value.value_uncertainty() == {"claims": (pytest.approx(60.0 / 660.0), 1)}
    # `export unit-values` writes the stored table, one line a workflow
    r = CliRunner().invoke(build_app(), export)
    assert r.exit_code == 0, r.output
    exported = [json.loads(line) for line in r.output.splitlines()]
    assert [(e["workflow"], e["source"]) for e in exported] == [("claims", "measured"), ("fraud", "declared")]
    assert exported[0]["unit_value"] == pytest.approx(claims["unit_value"])
    assert exported[0]["relative_se"] == pytest.approx(60.0 / 660.0) and exported[0]["periods"] == 2
    assert exported[0]["period_benefit"] == pytest.approx(660.0)

    # a store scored by a version whose unit_values lacked a later column: opening the workspace
    # gives the table that column, null until the next scoring run, and everything reads it
    with Workspace.open(tmp_path) as ws:
        ws.store.con.execute("ALTER TABLE unit_values DROP COLUMN period_benefit")
    with Workspace.open(tmp_path) as ws:
        benefit = ws.store.query_arrow("SELECT period_benefit FROM unit_values").column(0)
        assert benefit.null_count == len(benefit) == 2
        assert ws.value.value_uncertainty() == {"claims": (pytest.approx(60.0 / 660.0), 1)}
    r = CliRunner().invoke(build_app(), export)
    assert r.exit_code == 0, r.output
    exported = [json.loads(line) for line in r.output.splitlines()]
    assert exported[0]["period_benefit"] is None and exported[0]["periods"] == 2
    lake = tmp_path / "lake"
    r = CliRunner().invoke(build_app(), ["lake", "export", str(lake), "--workspace", str(tmp_path)])
    assert r.exit_code == 0, r.output
    lake_values = Lake(str(lake)).read_table("unit_values").sort_by("workflow").to_pylist()
    assert [(u["workflow"], u["period_benefit"]) for u in lake_values] == [("claims", None), ("fraud", None)]
