"""The interaction value score: the analyst example, calibration, recovery of a known model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import spearmanr

from tests.value_data import build_workspace, make_tables, rows_table, ts
from yieldmeter.scoring.engine import MIN_HOLDOUT_WORKFLOW, _choose, score_tables
from yieldmeter.scoring.features import design_matrix, unit_features
from yieldmeter.scoring.model import (
    CalibrationReport,
    fit_map,
    holdout_mask,
    log_loss,
    noisy_log_loss,
    prior_model,
    recalibrate,
    reliability_table,
)
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


def test_an_ingest_that_changes_the_evidence_rescores(tmp_path: Path) -> None:
    """A signal ingested for q0 (no signal before: logit -2.0, 11.9) re-scores it at once:
    + accepted 2.0 -> logit 0.0, score 50; the other units keep their scores."""
    from yieldmeter.ingest.base import Batch
    from yieldmeter.ingest.conform import conform
    from yieldmeter.scoring import score_workspace

    data = analyst_session()
    data["signals"] = [s for s in data["signals"] if s["work_unit_id"] != "q0"]
    with build_workspace(tmp_path, data, ANALYST_CONFIG) as ws:
        score_workspace(ws)
        before = {r["work_unit_id"]: r["score"] for r in ws.value.scores().to_pylist()}
        assert before["q0"] == pytest.approx(100 * expit(-2.0), abs=0.01)
        row = {"signal_id": "acc-q0", "work_unit_id": "q0", "ts": ts(2), "kind": "accepted"}
        signal = conform("signals", rows_table("signals", [row]), source="test")
        ws.ingest_batches([Batch.of("signals", signal)], source="test")  # after=True: re-scores
        after = {r["work_unit_id"]: r["score"] for r in ws.value.scores().to_pylist()}
    assert after["q0"] == pytest.approx(50.0, abs=0.01)
    assert {k: v for k, v in after.items() if k != "q0"} == {k: v for k, v in before.items() if k != "q0"}


def test_prior_weights_are_documented_once_with_a_reason_and_sign() -> None:
    assert INTERCEPT.reason
    for p in PRIORS:
        assert len(p.reason) > 20, p.feature
        if p.sign:
            assert np.sign(p.weight) == p.sign, p.feature
    assert len(set(FEATURES)) == len(FEATURES)


#: the known model of :func:`synthetic_labelled`: the priors' signs, other sizes
TRUE_WEIGHTS = {
    "accepted": 1.0,
    "copied": 2.5,
    "used_in_artifact": 1.5,
    "rejected": -2.0,
    "retried": -1.5,
    "action_taken": 3.0,
    "escalated": -0.3,
}


def synthetic_labelled(
    n: int, seed: int, true: dict[str, float] | None = None, workflow: str = "w", prefix: str = "u"
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float], np.ndarray]:
    """Units with random signals and value_confirmed/denied labels drawn from a known logistic model.

    The true model (default :data:`TRUE_WEIGHTS`) has the priors' signs but other sizes (e.g.
    copied matters more, accepted less).
    """
    rng = np.random.default_rng(seed)
    true = true or TRUE_WEIGHTS
    intercept = -1.0
    kinds = list(true)
    units, signals, logits = [], [], np.full(n, intercept)
    present = rng.random((n, len(kinds))) < 0.25
    for i in range(n):
        uid = f"{prefix}{i:05d}"
        units.append({"work_unit_id": uid, "workflow": workflow, "started_at": ts(i)})
        for j, k in enumerate(kinds):
            if present[i, j]:
                signals.append({"signal_id": f"{uid}-{k}", "work_unit_id": uid, "ts": ts(i), "kind": k})
                logits[i] += true[k]
    p_true = expit(logits)
    y = rng.random(n) < p_true
    for i in range(n):
        kind = "value_confirmed" if y[i] else "value_denied"
        uid = f"{prefix}{i:05d}"
        signals.append({"signal_id": f"{uid}-label", "work_unit_id": uid, "ts": ts(i, days=30), "kind": kind})
    return {"work_units": units, "signals": signals}, {"intercept": intercept, **true}, p_true


def test_calibration_recovers_the_ranking_of_a_known_model() -> None:
    data, _true, p_true = synthetic_labelled(3000, seed=7)
    _, t = make_tables(data)
    result = score_tables(t)
    assert set(result.models) >= {"prior", "global"}
    # the ranking is the model's, read before any unit's own label settles its score (every unit
    # here is labelled), on the units held out of the trial fit that measured its quality
    features = unit_features(t).to_pyarrow()
    ids = features.column("work_unit_id").to_pylist()
    p = result.models["global"].predict(design_matrix(features))
    truth = p_true[[int(i[1:]) for i in ids]]  # units are numbered in generation order
    held = holdout_mask(ids)
    assert held.sum() > 500
    assert spearmanr(p[held], truth[held]).statistic >= 0.9
    assert spearmanr(p, truth).statistic >= 0.9
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


def test_a_workflow_model_is_used_only_where_it_beats_the_global_one_on_held_out_labels() -> None:
    """Workflow w follows the known model; workflow v reads its signals differently (acceptance
    is nearly everything there, copying and artifacts mean nothing). Each has 600 labelled units.
    v's own model must beat the global model on v's held-out labels and be used; any model that is
    used beats the priors and its baseline; a model that does not is reported, not used."""
    w_data, _, _ = synthetic_labelled(600, seed=3)
    v_true = {**TRUE_WEIGHTS, "accepted": 4.0, "copied": 0.0, "used_in_artifact": 0.0, "action_taken": 0.5}
    v_data, _, _ = synthetic_labelled(600, seed=4, true=v_true, workflow="v", prefix="v")
    _, t = make_tables({k: w_data[k] + v_data[k] for k in w_data})
    result = score_tables(t)
    reports = {c.model: c for c in result.calibration}
    v = reports["workflow:v"]
    assert v.used and v.log_loss is not None and v.baseline_log_loss is not None
    assert v.log_loss < v.baseline_log_loss and v.log_loss < v.prior_log_loss
    for c in reports.values():
        assert c.used == (c.model in result.models), c.model
        if c.used:
            assert c.log_loss is not None and c.prior_log_loss is not None
            assert c.log_loss < c.prior_log_loss and c.log_loss < (c.baseline_log_loss or np.inf)
        else:
            assert c.note.startswith("not used:"), c
    models = dict(
        zip(
            result.scores.column("work_unit_id").to_pylist(),
            result.scores.column("model").to_pylist(),
            strict=True,
        )
    )
    assert models["v00000"] == "workflow:v"
    assert models["u00000"] == ("workflow:w" if reports["workflow:w"].used else "global")


def test_model_choice_by_hand() -> None:
    """The rule of _choose on hand-made reports: strictly below the priors and the baseline."""
    base = CalibrationReport("workflow:x", 90, 30, 0.40, 0.1, 0.50, 0.2, baseline_log_loss=0.45)
    assert _choose(base, needs_holdout=True).used
    worse_than_global = _choose(replace(base, baseline_log_loss=0.40), needs_holdout=True)
    assert not worse_than_global.used
    assert worse_than_global.note == "not used: held-out log loss not below the global model"
    both = _choose(replace(base, prior_log_loss=0.3, baseline_log_loss=0.3), needs_holdout=True)
    assert both.note == "not used: held-out log loss not below the priors or the global model"
    unmeasured = replace(base, log_loss=None)
    assert not _choose(unmeasured, needs_holdout=True).used  # a workflow model must show it
    assert _choose(unmeasured, needs_holdout=False).used  # the global model stands without
    few = _choose(replace(base, n_holdout=MIN_HOLDOUT_WORKFLOW - 1), needs_holdout=True)
    assert not few.used and few.note.startswith(f"not used: {MIN_HOLDOUT_WORKFLOW - 1} labels held out")
    assert _choose(replace(base, n_holdout=MIN_HOLDOUT_WORKFLOW), needs_holdout=True).used


def test_calibration_is_stored_with_the_scores(tmp_path: Path) -> None:
    """The held-out report outlives the scoring run (a re-score after ingest keeps it)."""
    data, _, _ = synthetic_labelled(400, seed=5)
    with build_workspace(tmp_path, data, "workflows:\n  - workflow: w\n    unit_value: 10\n") as ws:
        ws.value.score()
        stored = ws.store.query_arrow("SELECT * FROM calibration ORDER BY model").to_pylist()
    (glob,) = [r for r in stored if r["model"] == "global"]
    assert glob["used"] and glob["labels_holdout"] > 50
    bins = json.loads(glob["reliability"])
    assert sum(b["n"] for b in bins) == glob["labels_holdout"]
    assert {"bin_low", "bin_high", "n", "mean_predicted", "observed_rate"} == set(bins[0])


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
    # no calibration from 1 label: both on the priors (intercept -2, no features: p = 0.1192, 11.92);
    # a's own label multiplies its odds by 0.95 / 0.05 = 19: 0.1353 x 19 = 2.571, p = 2.571 / 3.571 = 0.72
    assert s["a"]["model"] == s["b"]["model"] == "prior"
    assert (s["b"]["score"], s["a"]["score"]) == (11.92, 72.0)
    assert s["a"]["top_signals"] == "value confirmed (outcome)"


def test_one_sided_label_source_does_not_calibrate() -> None:
    """80 units of one workflow, no features: 30 with a label signal (15 `value_confirmed`, 15
    `value_denied`), 20 with an outcome (outcomes here always say yes), 30 with nothing.

    The outcome source never says no: a sample selected on success. Left out of the fit, the
    global model sees 15 of 30 and the Platt step puts an unlabelled unit at logit(15/30) = 0,
    p = 0.5. Fitting the outcomes too would give 35 of 50, p = 0.7. The labelled units are then
    settled by their own labels: 0.5 -> odds 1 x 19, p = 0.95, or 1 / 19, p = 0.05."""
    units = [{"work_unit_id": f"u{i}", "workflow": "w"} for i in range(80)]
    kinds = ["value_confirmed", "value_denied"]
    signals = [
        {"signal_id": f"s{i}", "work_unit_id": f"u{i}", "kind": kinds[i % 2], "ts": ts()} for i in range(30)
    ]
    outcomes = [
        {
            "outcome_id": f"o{i}",
            "work_unit_id": f"u{i}",
            "workflow": "w",
            "period_start": ts(),
            "monetary_value": 5.0,
        }
        for i in range(30, 50)
    ]
    _, t = make_tables({"work_units": units, "signals": signals, "outcomes": outcomes})
    r = score_tables(t)
    assert set(r.models) == {"prior", "global"}
    s = {row["work_unit_id"]: row for row in r.scores.to_pylist()}
    assert s["u60"]["p_value"] == pytest.approx(0.5, abs=1e-4)
    assert s["u0"]["p_value"] == pytest.approx(0.95, abs=1e-4)
    assert s["u1"]["p_value"] == pytest.approx(0.05, abs=1e-4)
    assert s["u40"]["p_value"] == pytest.approx(0.95, abs=1e-4)


def test_noisy_log_loss_by_hand() -> None:
    """z = 0 (sigmoid 0.5), error rate 0.1: P(label 1) = 0.1 + 0.8 x 0.5 = 0.5, loss log 2 whatever
    the label; its slope by z is -/+ 0.8 x 0.25 / 0.5 = -/+ 0.4. z = log 3 (sigmoid 0.75), e = 0.1:
    P(1) = 0.1 + 0.8 x 0.75 = 0.7, a 1 costs -log 0.7. With e = 0 it is the plain logistic loss,
    gradient sigmoid(z) - y."""
    loss, dz, _ = noisy_log_loss(np.zeros(2), np.array([1.0, 0.0]), np.full(2, 0.1))
    assert loss == pytest.approx(2 * np.log(2.0)) and dz == pytest.approx([-0.4, 0.4])
    loss, _, _ = noisy_log_loss(np.array([np.log(3.0)]), np.array([1.0]), np.array([0.1]))
    assert loss == pytest.approx(-np.log(0.7))
    z, y = np.array([-2.0, 0.5, 3.0]), np.array([1.0, 0.0, 1.0])
    loss, dz, _ = noisy_log_loss(z, y, np.zeros(3))
    assert loss == pytest.approx(float(np.sum(np.logaddexp(0.0, z) - y * z)))
    assert dz == pytest.approx(expit(z) - y)


def test_label_noise_is_estimated_per_source_and_taken_out() -> None:
    """8,000 units, one feature (accepted). Truth: the 4,000 accepted units delivered, the 4,000
    others did not. Half of each group is labelled by case management (always right), half by a
    QA sample that is wrong 1 time in 20 (100 flips in each group of 2,000).

    Read as the truth, the labels say an unaccepted unit delivers 100 / 4,000 = 2.5% of the time,
    and the plain fit lands there. The two sources disagree about the same kind of unit, which is
    what identifies the QA error rate: 100 / 2,000 = 5% (the weights' priors hold the fit a little
    short of it), case management 0; with the flips taken out the unaccepted units go far below
    2.5%. (With 800 units the priors hold the weights back more and the estimate is 2.4%.)"""
    x = np.zeros((8000, len(FEATURES)))
    x[4000:, FEATURES.index("accepted")] = 1.0
    y = np.r_[np.zeros(4000), np.ones(4000)]
    src = np.array((["case"] * 2000 + ["qa"] * 2000) * 2)
    y[2000:2100] = 1.0  # QA says "delivered" for 100 unaccepted units
    y[6000:6100] = 0.0  # and "not delivered" for 100 accepted ones
    plain = recalibrate(fit_map(x, y, name="global"), x, y)
    assert plain.predict(x[:1])[0] == pytest.approx(0.025, abs=0.01)
    m = fit_map(x, y, name="global", sources=src)
    assert m.label_noise["qa"] == pytest.approx(0.05, abs=0.01)
    assert m.label_noise["case"] == pytest.approx(0.0, abs=0.005)
    m = recalibrate(m, x, y, src)
    assert m.predict(x[:1])[0] < 0.001 and m.predict(x[4000:4001])[0] > 0.999
    # error rates given (as the workflow models take the global model's) are used, not estimated
    fixed = fit_map(x, y, name="global", sources=src, noise={"qa": 0.05})
    assert fixed.label_noise == {"case": 0.0, "qa": 0.05}


def test_global_model_keeps_each_workflow_base_rate() -> None:
    """Two workflows, no signals: 40 labels each, 32 yes in a (0.8), 8 yes in b (0.2). One shared
    intercept would score both 0.5; with a workflow offset each keeps close to its own rate (pulled
    a little towards the shared intercept by the offset's prior)."""
    x = np.zeros((80, len(FEATURES)))
    y = np.r_[np.ones(32), np.zeros(8), np.ones(8), np.zeros(32)]
    wf = np.array(["a"] * 40 + ["b"] * 40)
    m = recalibrate(fit_map(x, y, name="global", workflows=wf), x, y, workflows=wf)
    pa_, pb = m.predict(x[:1], wf[:1])[0], m.predict(x[40:41], wf[40:41])[0]
    assert pa_ == pytest.approx(0.8, abs=0.03) and pb == pytest.approx(0.2, abs=0.03)


def test_metric_helpers_by_hand() -> None:
    y = np.array([1, 0])
    p = np.array([0.8, 0.4])
    # -(log 0.8 + log 0.6) / 2
    assert log_loss(y, p) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    bins = reliability_table(y, p, bins=10)
    assert [(b.n, b.observed_rate) for b in bins] == [(1, 0.0), (1, 1.0)]


def test_a_rating_without_a_number_is_no_rating() -> None:
    """A categorical, text or correction score lands as ``rated`` with its label and no value:
    counted as rated, its null mean was read as 0, the worst rating (-1 on the feature's scale).
    A unit with only such a label has no rating (0); beside a number it leaves the mean alone.
    By hand: a 0-1 score of 0.75 maps to (0.75 - 0.5) * 2 = 0.5."""
    t0 = ts()
    data = {
        "work_units": [
            {"work_unit_id": u, "workflow": "w", "started_at": t0} for u in ("label", "both", "none")
        ],
        "signals": [
            {
                "signal_id": "l1",
                "work_unit_id": "label",
                "ts": t0,
                "kind": "rated",
                "attributes": '{"label": "ok"}',
            },
            {
                "signal_id": "b1",
                "work_unit_id": "both",
                "ts": t0,
                "kind": "rated",
                "attributes": '{"label": "ok"}',
            },
            {"signal_id": "b2", "work_unit_id": "both", "ts": t0, "kind": "rated", "value": 0.75},
        ],
    }
    _, t = make_tables(data)
    features = unit_features(t).to_pyarrow()
    x = design_matrix(features)
    rated = dict(zip(features.column("work_unit_id").to_pylist(), x[:, FEATURES.index("rated")], strict=True))
    assert rated == {"label": 0.0, "both": 0.5, "none": 0.0}
