"""Anomaly detection on planted spikes, a planted runaway agent and a planted model-mix change.

Precision = planted spikes found / spikes reported; recall = planted spikes found / planted.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.finops_data import call, ingest, make_workspace, utc

START = utc(2026, 9, 1)
DAYS = 56
TEAMS = ("alpha", "beta", "gamma", "delta")


def _spiky_rows(seed: int = 7) -> tuple[list[dict], set[tuple[str, str]]]:
    rng = np.random.default_rng(seed)
    planted = {("alpha", 35), ("beta", 40), ("gamma", 44), ("delta", 48), ("alpha", 52), ("gamma", 54)}
    rows = []
    for d in range(DAYS):
        day = START + timedelta(days=d)
        weekend = day.weekday() >= 5
        for team in TEAMS:
            usd = (5.0 if weekend else 10.0) * float(np.exp(rng.normal(0, 0.08)))
            if (team, d) in planted:
                usd *= 3 + 3 * rng.random()  # 3x to 6x
            for k in range(2):
                rows.append(
                    call(day + timedelta(hours=9 + k), usd / 2, team=team, work_unit_id=f"{team}-{d}-{k}")
                )
    truth = {(t, (START + timedelta(days=d)).date().isoformat()) for t, d in planted}
    return rows, truth


def test_spike_precision_and_recall_on_planted_spikes(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    rows, truth = _spiky_rows()
    ingest(ws, "calls", rows)
    now = START + timedelta(days=DAYS - 1, hours=23)
    found = ws.finops.anomalies(now, days=28).to_pylist()
    spikes = {(r["key"], r["day"]) for r in found if r["kind"] == "spend_spike" and r["dimension"] == "team"}
    hits = spikes & truth
    precision, recall = len(hits) / max(len(spikes), 1), len(hits) / len(truth)
    assert recall == 1.0, (spikes, truth)
    assert precision == 1.0, (spikes, truth)
    one = next(
        r for r in found if r["kind"] == "spend_spike" and (r["key"], r["day"]) == ("beta", "2026-10-11")
    )
    # Examples are the day's largest work units of that team; spend at stake is the excess over the median.
    assert set(one["example_work_units"]) == {"beta-40-0", "beta-40-1"}
    assert one["spend_at_stake"] == pytest.approx(one["value"] - one["baseline"], rel=1e-9)
    tokens = {(r["key"], r["day"]) for r in found if r["kind"] == "token_spike" and r["dimension"] == "team"}
    assert tokens == truth  # on one model, tokens move with spend


def test_runaway_agent_and_model_mix_change(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    rows = []
    for u in range(30):  # 30 agent runs of 3 calls each, one per day
        day = START + timedelta(days=u)
        rows += [
            call(day + timedelta(minutes=i), 0.01, workflow="agent", work_unit_id=f"run-{u}")
            for i in range(3)
        ]
    day = START + timedelta(days=29)
    # The runaway: 60 calls in one run.
    # Its spend at stake = 60 x 0.01 - median 3 calls x mean 0.01/call = 0.57.
    rows += [
        call(day + timedelta(minutes=i), 0.01, workflow="agent", work_unit_id="run-loop") for i in range(60)
    ]
    for d in range(21):  # 25 calls a day on m-small ...
        day = START + timedelta(days=d)
        n_large = 20 if d == 20 else 0  # ... until day 20, when 20 of 25 go to m-large
        for i in range(25):
            model = "m-large" if i < n_large else "m-small"
            rows.append(
                call(
                    day + timedelta(minutes=i), 0.02, model=model, workflow="mix", work_unit_id=f"mx-{d}-{i}"
                )
            )
    ingest(ws, "calls", rows)
    found = ws.finops.anomalies(START + timedelta(days=29, hours=12), days=14).to_pylist()
    runaway = [r for r in found if r["kind"] == "runaway_agent"]
    assert [r["example_work_units"] for r in runaway] == [["run-loop"]]
    assert runaway[0]["value"] == 60 and runaway[0]["baseline"] == 3
    assert runaway[0]["spend_at_stake"] == pytest.approx(0.6 - 3 * (0.9 + 0.6) / 150)
    mix = [r for r in found if r["kind"] == "model_mix_change"]
    assert [(r["key"], r["day"]) for r in mix] == [("mix", "2026-09-21")]
    # Total variation: m-large 0% -> 80% of calls: 0.5 x (0.8 + 0.8) = 0.8. Costs per call are equal (0.02)
    # by construction, so the spend at stake is 0.
    assert mix[0]["value"] == pytest.approx(0.8)
    assert mix[0]["spend_at_stake"] == pytest.approx(0.0, abs=1e-6)
    assert mix[0]["example_work_units"][0].startswith("mx-20-")
