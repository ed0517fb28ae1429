"""The interaction value score: the analyst example, calibration, recovery of a known model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import spearmanr

from tests.value_data import build_workspace, make_tables, ts
from yieldmeter.scoring.engine import score_tables
from yieldmeter.scoring.model import fit_map, log_loss, prior_model, reliability_table
from yieldmeter.scoring.priors import FEATURES, INTERCEPT, PRIOR_BY_FEATURE, PRIORS

ANALYST_CONFIG = """\
workflows:
  - workflow: analyst
    unit_value: 500
    quality_threshold: 60
prices:
  - model: m
    provider: p
    input: 1.0
    output: 2.0
"""


def analyst_session() -> dict[str, list[dict[str, Any]]]:
    """40 questions in one session; answers 5, 17 and 31 were copied into a memo the board acted on."""
    units = [
        {
            "work_unit_id": f"q{i}",
            "parent_id": "s1",
            "workflow": "analyst",
            "started_at": ts(i),
            "user_id": "a",
        }
        for i in range(40)
    ]
    calls = [
        {
            "call_id": f"c{i}",
            "ts": ts(i),
            "work_unit_id": f"q{i}",
            "workflow": "analyst",
            "provider": "p",
            "model": "m",
            "input_tokens": 2000,
            "output_tokens": 500,
            "duration_ms": 3000.0,
        }
        for i in range(40)
    ]
    signals = []
    for i in range(40):
        if i in (5, 17, 31):
            for k in ("copied", "used_in_artifact", "decision_reached"):
                signals.append({"signal_id": f"{k}{i}", "work_unit_id": f"q{i}", "ts": ts(i + 1), "kind": k})
        elif i < 39:
            signals.append(
                {"signal_id": f"cont{i}", "work_unit_id": f"q{i}", "ts": ts(i + 1), "kind": "continued"}
            )
    return {"work_units": units, "calls": calls, "signals": signals}


def test_analyst_example_scores_the_three_used_answers_high(tmp_path: Path) -> None:
    from yieldmeter.scoring import score_workspace

    ws = build_workspace(tmp_path, analyst_session(), ANALYST_CONFIG)
    try:
        result = score_workspace(ws)
        scores = {r["work_unit_id"]: r for r in ws.value.scores().to_pylist()}  # read back from the store
    finally:
        ws.close()
    assert result.n_units == 40 and len(scores) == 40
    used = {"q5", "q17", "q31"}
    # logit = -2.0 + copied 1.5 + used_in_artifact 2.5 + decision_reached 1.5 = 3.5 -> p = 0.9707
    for u in used:
        assert scores[u]["score"] == pytest.approx(100 * expit(3.5), abs=0.01)
        assert scores[u]["expected_value"] == pytest.approx(500 * expit(3.5), rel=1e-6)
        assert scores[u]["top_signals"].startswith("used_in_artifact +2.50")
        assert scores[u]["confidence_level"] == "medium"
    for u in set(scores) - used:
        # -2.0 - 0.4 (continued) -> 8.3, or -2.0 with no signal -> 11.9
        assert scores[u]["score"] < 15
    assert min(scores[u]["score"] for u in used) > 95 > max(scores[u]["score"] for u in set(scores) - used)


def test_prior_weights_are_documented_once_with_a_reason_and_sign() -> None:
    assert INTERCEPT.reason
    for p in PRIORS:
        assert len(p.reason) > 20, p.feature
        if p.sign:
            assert np.sign(p.weight) == p.sign, p.feature
    assert len(set(FEATURES)) == len(FEATURES)


def synthetic_labelled(
    n: int, seed: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float], np.ndarray]:
    """Units with random signals and value_confirmed/denied labels drawn from a known logistic model.

    The true model has the priors' signs but other sizes (e.g. copied matters more, accepted less).
    """
    rng = np.random.default_rng(seed)
    true = {
        "accepted": 1.0,
        "copied": 2.5,
        "used_in_artifact": 1.5,
        "rejected": -2.0,
        "retried": -1.5,
        "action_taken": 3.0,
        "escalated": -0.3,
    }
    intercept = -1.0
    kinds = list(true)
    units, signals, logits = [], [], np.full(n, intercept)
    present = rng.random((n, len(kinds))) < 0.25
    for i in range(n):
        uid = f"u{i:05d}"
        units.append({"work_unit_id": uid, "workflow": "w", "started_at": ts(i)})
        for j, k in enumerate(kinds):
            if present[i, j]:
                signals.append({"signal_id": f"{uid}-{k}", "work_unit_id": uid, "ts": ts(i), "kind": k})
                logits[i] += true[k]
    p_true = expit(logits)
    y = rng.random(n) < p_true
    for i in range(n):
        kind = "value_confirmed" if y[i] else "value_denied"
        signals.append(
            {"signal_id": f"u{i:05d}-label", "work_unit_id": f"u{i:05d}", "ts": ts(i, days=30), "kind": kind}
        )
    return {"work_units": units, "signals": signals}, {"intercept": intercept, **true}, p_true


def test_calibration_recovers_the_ranking_of_a_known_model() -> None:
    data, _true, p_true = synthetic_labelled(3000, seed=7)
    _, t = make_tables(data)
    result = score_tables(t)
    assert set(result.models) >= {"prior", "global"}
    p = np.array(result.scores.column("p_value").to_pylist())
    ids = result.scores.column("work_unit_id").to_pylist()
    order = np.argsort(ids)  # units are numbered in generation order
    rho = spearmanr(p[order], p_true).statistic
    assert rho >= 0.9
    # held-out quality is reported and beats the uncalibrated priors
    rep = next(c for c in result.calibration if c.model == "global")
    assert rep.n_holdout > 500 and rep.log_loss is not None
    assert rep.log_loss < rep.prior_log_loss
    assert rep.brier < rep.prior_brier
    assert sum(b.n for b in rep.reliability) == rep.n_holdout
    # copied (true 2.5, prior 1.5) moves up; accepted (true 1.0, prior 2.0) moves down
    w = result.models["global"].as_dict()
    assert w["copied"] > PRIOR_BY_FEATURE["copied"].weight
    assert w["accepted"] < PRIOR_BY_FEATURE["accepted"].weight
    # every labelled unit is confident: it carries its own label
    assert set(result.scores.column("confidence_level").to_pylist()) == {"high"}


def test_map_stays_near_the_priors_with_few_labels_and_keeps_signs() -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((12, len(FEATURES))) < 0.2).astype(float)
    y = np.zeros(12)  # every label says "no value": an unregularised fit would flip positive weights
    m = fit_map(x, y, name="global")
    prior = prior_model()
    for f, w, w0 in zip(FEATURES, m.weights, prior.weights, strict=True):
        sign = PRIOR_BY_FEATURE[f].sign
        if sign > 0:
            assert w >= 0, f
        if sign < 0:
            assert w <= 0, f
        assert abs(w - w0) < 2.0, f


def test_per_workflow_model_when_a_workflow_has_enough_labels() -> None:
    data, _, _ = synthetic_labelled(400, seed=3)
    for u in data["work_units"][:200]:
        u["workflow"] = "v"
    _, t = make_tables(data)
    result = score_tables(t)
    assert {"global", "workflow:v", "workflow:w"} <= set(result.models)
    models = dict(
        zip(
            result.scores.column("work_unit_id").to_pylist(),
            result.scores.column("model").to_pylist(),
            strict=True,
        )
    )
    assert models["u00000"] == "workflow:v" and models["u00399"] == "workflow:w"


def test_outcome_tied_to_a_unit_is_a_label_and_raises_confidence() -> None:
    units = [{"work_unit_id": "a", "workflow": "w"}, {"work_unit_id": "b", "workflow": "w"}]
    outcomes = [
        {
            "outcome_id": "o",
            "work_unit_id": "a",
            "workflow": "w",
            "period_start": ts(),
            "monetary_value": 10.0,
            "evidence_level": "controlled_experiment",
        }
    ]
    _, t = make_tables({"work_units": units, "outcomes": outcomes})
    s = {r["work_unit_id"]: r for r in score_tables(t).scores.to_pylist()}
    assert s["a"]["label"] == 1 and s["b"]["label"] is None
    assert s["a"]["confidence"] > s["b"]["confidence"]
    # no calibration from 1 label: both on the priors, the same score
    assert s["a"]["score"] == s["b"]["score"] and s["a"]["model"] == "prior"


def test_metric_helpers_by_hand() -> None:
    y = np.array([1, 0])
    p = np.array([0.8, 0.4])
    # -(log 0.8 + log 0.6) / 2
    assert log_loss(y, p) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    bins = reliability_table(y, p, bins=10)
    assert [(b.n, b.observed_rate) for b in bins] == [(1, 0.0), (1, 1.0)]
