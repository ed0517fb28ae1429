"""Builders for the value engine's tests: a real in-memory DuckDB with the canonical tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import pyarrow as pa

from yieldmeter.metrics.tables import Tables
from yieldmeter.schema import TABLES
from yieldmeter.store.duckdb_store import INTERNAL_TABLES

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def ts(minutes: float = 0.0, days: float = 0.0) -> datetime:
    return T0 + timedelta(minutes=minutes, days=days)


def rows_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of canonical table ``name`` (missing columns take their declared default, else null)."""
    decl = TABLES[name]
    cols = {}
    for c in decl.columns:
        cols[c.name] = [r.get(c.name, c.default) for r in rows]
    return pa.table(cols, schema=decl.arrow_schema)


def make_backend(data: dict[str, list[dict[str, Any]]]) -> Any:
    """A fresh in-memory DuckDB Ibis backend holding every canonical table (plus model_map)."""
    con = ibis.duckdb.connect()
    for name in TABLES:
        con.create_table(name, obj=rows_table(name, data.get(name, [])))
    con.create_table("model_map", obj=INTERNAL_TABLES["model_map"].empty_table())  # as the store's
    return con


def make_tables(data: dict[str, list[dict[str, Any]]]) -> tuple[Any, Tables]:
    con = make_backend(data)
    return con, Tables.from_backend(con)


GOLDEN_CONFIG = """\
workflows:
  - workflow: claims
    owner: head-of-claims
    unit_value: 4
    baseline_minutes: 10
    quality_threshold: 50
    risk_class: high
    latency_slo_ms: 5000
    labour_rate: 60
    recontact_window_days: 7
  - workflow: fraud
    owner: risk-head
    unit_value: 900
privacy:
  min_group_size: 2
prices:
  - model: m
    provider: p
    input: 1.0
    output: 2.0
"""


def golden_rows() -> dict[str, list[dict[str, Any]]]:
    """The small organisation the golden tests compute by hand.

    Model m costs $1 per million input tokens. Workflow claims (risk high, SLO 5 s,
    baseline 10 min, $60/h), all on 2026-10-01:

    ====  =====================  ===========  ================================  =====  ======
    unit  calls (input tokens)   model cost   signals                           score  effort
    ====  =====================  ===========  ================================  =====  ======
    c1    1 x 1M                 $1.00        accepted, action_taken            90
    c2    1 x 1M                 $1.00        saved                             80
    c3    12 x 100k              $1.20        (none)                            10
    c4    1 x 1M, 9 s (> SLO)    $1.00        accepted, action_taken            85
    c5    1 x 1M                 $1.00        copied, action_taken, recontact   60     30 min
                                              (+1 day)
    c6    1 x 1M                 $1.00        copied, action_taken              90
    ====  =====================  ===========  ================================  =====  ======

    plus a $5 platform cost item for claims (pro rata: $5 x cost / $6.20), fraud unit f1 (1 call
    x 2M = $2, no signal, score 10) and a $0.50 call with no workflow (500k tokens).
    """
    day = T0
    units = [
        {
            "work_unit_id": u,
            "workflow": "claims",
            "team": team,
            "user_id": user,
            "started_at": day,
            "parent_id": "s1",
        }
        for u, team, user in [
            ("c1", "east", "ann"),
            ("c2", "east", "bob"),
            ("c3", "east", "ann"),
            ("c4", "west", "cy"),
            ("c5", "west", "dee"),
            ("c6", "west", "cy"),
        ]
    ]
    units.append(
        {"work_unit_id": "f1", "workflow": "fraud", "team": "risk", "user_id": "eve", "started_at": day}
    )
    calls = []

    def call(cid: str, unit: str | None, wf: str | None, tokens: int, duration: float = 1000.0) -> None:
        calls.append(
            {
                "call_id": cid,
                "ts": day,
                "work_unit_id": unit,
                "workflow": wf,
                "provider": "p",
                "model": "m",
                "input_tokens": tokens,
                "output_tokens": 0,
                "duration_ms": duration,
            }
        )

    for u in ("c1", "c2", "c5", "c6"):
        call(f"{u}-1", u, "claims", 1_000_000)
    for i in range(12):
        call(f"c3-{i}", "c3", "claims", 100_000)
    call("c4-1", "c4", "claims", 1_000_000, duration=9000.0)
    call("f1-1", "f1", "fraud", 2_000_000)
    call("x-1", None, None, 500_000)
    signals = []
    for u, kinds in [
        ("c1", ["accepted", "action_taken"]),
        ("c2", ["saved"]),
        ("c4", ["accepted", "action_taken"]),
        ("c5", ["copied", "action_taken"]),
        ("c6", ["copied", "action_taken"]),
    ]:
        for k in kinds:
            signals.append({"signal_id": f"{u}-{k}", "work_unit_id": u, "ts": ts(5), "kind": k})
    signals.append({"signal_id": "c5-rc", "work_unit_id": "c5", "ts": ts(5, days=1), "kind": "recontact"})
    effort = [{"effort_id": "e5", "work_unit_id": "c5", "ts": ts(10), "minutes": 30.0, "person": "dee"}]
    items = [
        {
            "item_id": "plat",
            "period_start": ts(days=-1),
            "period_end": ts(days=2),
            "amount": 5.0,
            "workflow": "claims",
            "category": "platform",
        }
    ]
    outcomes = [
        # workflow family: $100 x 0.5 = $50, baseline comparison (+-25%)
        {
            "outcome_id": "o1",
            "workflow": "claims",
            "period_start": day,
            "value_dimension": "cycle_time",
            "monetary_value": 100.0,
            "attribution_share": 0.5,
            "evidence_level": "baseline_comparison",
            "baseline_value": 10.0,
            "observed_value": 6.0,
        },
        # capacity not redeployed: excluded
        {
            "outcome_id": "o2",
            "workflow": "claims",
            "period_start": day,
            "value_dimension": "capacity",
            "monetary_value": 1000.0,
            "redeployed": False,
            "evidence_level": "observational",
        },
        # capacity redeployed: $20, anecdote (+-100%)
        {
            "outcome_id": "o3",
            "workflow": "claims",
            "period_start": day,
            "value_dimension": "capacity",
            "monetary_value": 20.0,
            "redeployed": True,
            "evidence_level": "anecdote",
        },
        # strategic: 4 with a controlled experiment (w 4), 1 on an anecdote (w 1) -> 17 / 5 = 3.4
        {
            "outcome_id": "o4",
            "workflow": "claims",
            "period_start": day,
            "value_dimension": "strategic",
            "observed_value": 4.0,
            "evidence_level": "controlled_experiment",
            "evidence_ref": "exp-7",
            "monetary_value": 1e6,
        },
        {
            "outcome_id": "o5",
            "workflow": "claims",
            "period_start": day,
            "value_dimension": "strategic",
            "observed_value": 1.0,
            "evidence_level": "anecdote",
        },
    ]
    return {
        "work_units": units,
        "calls": calls,
        "signals": signals,
        "effort": effort,
        "cost_items": items,
        "outcomes": outcomes,
    }


GOLDEN_SCORES = {"c1": 90.0, "c2": 80.0, "c3": 10.0, "c4": 85.0, "c5": 60.0, "c6": 90.0, "f1": 10.0}


def golden_scores() -> pa.Table:
    from yieldmeter.scoring.schema import SCORES_SCHEMA

    wf = {u: ("fraud" if u.startswith("f") else "claims") for u in GOLDEN_SCORES}
    value = {"claims": 4.0, "fraud": 900.0}
    rows = [
        {
            "work_unit_id": u,
            "workflow": wf[u],
            "score": s,
            "p_value": s / 100,
            "unit_value": value[wf[u]],
            "expected_value": s / 100 * value[wf[u]],
            "confidence": 0.5,
            "confidence_level": "medium",
            "model": "prior",
            "label": None,
            "top_signals": None,
            "scored_at": T0,
        }
        for u, s in GOLDEN_SCORES.items()
    ]
    return pa.Table.from_pylist(rows, schema=SCORES_SCHEMA)


def build_workspace(
    path: Any, data: dict[str, list[dict[str, Any]]], config: str, scores: pa.Table | None = None
) -> Any:
    """A real workspace (DuckDB file) at ``path`` holding ``data``; optional fixed scores."""
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.scoring.schema import SCORES_SCHEMA, SCORES_TABLE

    (path / "yieldmeter.yaml").write_text(config, encoding="utf-8")
    ws = Workspace.open(path, create=True)
    for name in ("work_units", "calls", "signals", "effort", "outcomes", "cost_items"):
        if data.get(name):
            ws.store.write(name, rows_table(name, data[name]))
    ws.refresh_model_map()
    if scores is not None:
        ws.store.ensure_table(SCORES_TABLE, SCORES_SCHEMA)
        ws.store.replace(SCORES_TABLE, scores)
    return ws
