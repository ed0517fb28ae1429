"""Score every work unit: features -> (calibrated) logistic model -> scores table.

Each score carries:

- ``p_value`` = sigmoid(intercept + sum_f weight_f * x_f), the probability the
  interaction delivered value; ``score`` = 100 x p_value;
- ``expected_value`` = p_value x the workflow's ``unit_value`` (null when the
  workflow declares none);
- ``confidence`` = evidence x (0.6 + 0.4 x n / (n + 100)), where evidence is
  1.0 for a unit with its own label, 0.4 + 0.2 x rank for a unit tied to an
  outcome of that evidence rank (anecdote 0 .. controlled experiment 3), 0.8
  with explicit signals and a decision or action, 0.6 with explicit signals,
  0.4 with implicit signals only, 0.2 with none; and n
  is the number of labels the model was calibrated on (0 for the priors).
  ``confidence_level``: high >= 0.7 > medium >= 0.4 > low;
- ``top_signals``: up to three features with the largest |weight x value|,
  e.g. ``used_in_artifact +2.50, copied +1.50``.

Model choice per unit: its workflow's own calibrated model when the workflow
has enough labels, else the global calibrated model when the organisation has
enough, else the documented priors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from yieldmeter.metrics.tables import Tables
from yieldmeter.scoring.features import SIGNAL_KINDS, design_matrix, unit_features
from yieldmeter.scoring.model import (
    MIN_CLASS_GLOBAL,
    MIN_CLASS_WORKFLOW,
    MIN_LABELS_GLOBAL,
    MIN_LABELS_WORKFLOW,
    CalibrationReport,
    ValueModel,
    enough_labels,
    evaluate,
    fit_map,
    holdout_mask,
    prior_model,
)
from yieldmeter.scoring.priors import ACTION_SIGNALS, EXPLICIT_FEATURES, FEATURES
from yieldmeter.scoring.schema import SCORES_SCHEMA, SCORES_TABLE

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace

TOP_SIGNALS = 3


@dataclass
class ScoringResult:
    scores: pa.Table
    models: dict[str, ValueModel] = field(default_factory=dict)
    calibration: list[CalibrationReport] = field(default_factory=list)
    n_units: int = 0
    n_labels: int = 0

    def summary(self) -> list[dict[str, Any]]:
        """One row per model: labels used and held-out quality next to the priors'."""
        rows = []
        by_model = {c.model: c for c in self.calibration}
        used = {}
        col = self.scores.column("model").to_pylist() if self.scores.num_rows else []
        for m in col:
            used[m] = used.get(m, 0) + 1
        for name in sorted(set(used) | set(by_model)):
            c = by_model.get(name)
            rows.append(
                {
                    "model": name,
                    "work_units": used.get(name, 0),
                    "labels_train": c.n_train if c else 0,
                    "labels_holdout": c.n_holdout if c else 0,
                    "log_loss": c.log_loss if c else None,
                    "prior_log_loss": c.prior_log_loss if c else None,
                    "brier": c.brier if c else None,
                    "prior_brier": c.prior_brier if c else None,
                }
            )
        return rows


def _calibrate(
    name: str, x: np.ndarray, y: np.ndarray, hold: np.ndarray
) -> tuple[ValueModel, CalibrationReport]:
    """Fit on the training part to report held-out quality, then refit on every label for use."""
    train = ~hold
    if enough_labels(y[train], min_labels=2, min_class=1) and hold.any():
        trial = fit_map(x[train], y[train], name=name)
        report = evaluate(trial, x[hold], y[hold], n_train=int(train.sum()))
    else:
        report = CalibrationReport(
            name,
            int(train.sum()),
            int(hold.sum()),
            None,
            None,
            None,
            None,
            note="too few labels to hold some out",
        )
    return fit_map(x, y, name=name), report


def fit_models(data: pa.Table, x: np.ndarray) -> tuple[dict[str, ValueModel], list[CalibrationReport]]:
    """The global model and one per workflow with enough labels (see :mod:`.model` thresholds)."""
    labels = data.column("label").to_numpy(zero_copy_only=False)
    labels = np.array([np.nan if v is None else v for v in labels], dtype=np.float64)
    has = ~np.isnan(labels)
    models: dict[str, ValueModel] = {"prior": prior_model()}
    reports: list[CalibrationReport] = []
    if not has.any():
        return models, reports
    ids = [str(i) for i in np.asarray(data.column("work_unit_id").to_pylist(), dtype=object)[has]]
    hold = holdout_mask(ids)
    xl, yl = x[has], labels[has].astype(np.int64)
    if enough_labels(yl, min_labels=MIN_LABELS_GLOBAL, min_class=MIN_CLASS_GLOBAL):
        models["global"], rep = _calibrate("global", xl, yl, hold)
        reports.append(rep)
    workflows = np.asarray(data.column("workflow").to_pylist(), dtype=object)[has]
    for wf in sorted({w for w in workflows if w is not None}):
        m = workflows == wf
        if enough_labels(yl[m], min_labels=MIN_LABELS_WORKFLOW, min_class=MIN_CLASS_WORKFLOW):
            name = f"workflow:{wf}"
            models[name], rep = _calibrate(name, xl[m], yl[m], hold[m])
            reports.append(rep)
    return models, reports


def _top_signals(contrib: np.ndarray) -> list[str | None]:
    k = min(TOP_SIGNALS, contrib.shape[1])
    mag = np.abs(contrib)
    top = np.argsort(-mag, axis=1, kind="stable")[:, :k]
    names = np.array(FEATURES, dtype=object)
    out: list[str | None] = []
    for row, idx in enumerate(top):
        parts = [f"{names[j]} {contrib[row, j]:+.2f}" for j in idx if mag[row, j] >= 0.005]
        out.append(", ".join(parts) if parts else None)
    return out


def _confidence(data: pa.Table, x: np.ndarray, n_model: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    explicit_idx = [FEATURES.index(f) for f in EXPLICIT_FEATURES]
    implicit_idx = [FEATURES.index(f) for f in SIGNAL_KINDS if f in FEATURES and f not in EXPLICIT_FEATURES]
    has_explicit = (x[:, explicit_idx] != 0).any(axis=1)
    has_implicit = (x[:, implicit_idx] != 0).any(axis=1)
    rank = data.column("evidence_rank").to_numpy(zero_copy_only=False)
    rank = (
        np.array([np.nan if v is None else v for v in rank], dtype=np.float64)
        if rank.dtype == object
        else rank
    )
    rank = rank.astype(np.float64)
    action_idx = [FEATURES.index(f) for f in ACTION_SIGNALS]
    has_action = (x[:, action_idx] > 0).any(axis=1)
    evidence = np.where(has_explicit, np.where(has_action, 0.8, 0.6), np.where(has_implicit, 0.4, 0.2))
    evidence = np.where(~np.isnan(rank), np.maximum(evidence, 0.4 + 0.2 * np.nan_to_num(rank)), evidence)
    evidence = np.where(labelled, 1.0, evidence)
    return evidence * (0.6 + 0.4 * n_model / (n_model + 100.0))


def score_units(
    data: pa.Table, unit_values: dict[str, float], *, scored_at: datetime | None = None
) -> ScoringResult:
    """Scores for the rows of :func:`unit_features` (already fetched), calibrating where labels allow."""
    n = data.num_rows
    x = design_matrix(data)
    models, reports = fit_models(data, x)
    workflows = np.asarray(data.column("workflow").to_pylist(), dtype=object)
    chosen = np.full(n, "global" if "global" in models else "prior", dtype=object)
    for name in models:
        if name.startswith("workflow:"):
            chosen[workflows == name.split(":", 1)[1]] = name
    p = np.empty(n)
    contrib = np.empty_like(x)
    n_model = np.zeros(n)
    for name, model in models.items():
        m = chosen == name
        if m.any():
            p[m] = model.predict(x[m])
            contrib[m] = x[m] * model.weights
            n_model[m] = model.n_labels
    labels = data.column("label")
    labelled = labels.is_valid().to_numpy(zero_copy_only=False)
    confidence = _confidence(data, x, n_model, labelled)
    unit_value = np.array([unit_values.get(w, np.nan) if w is not None else np.nan for w in workflows])
    scored_at = scored_at or datetime.now(UTC)
    table = pa.table(
        {
            "work_unit_id": data.column("work_unit_id"),
            "workflow": data.column("workflow"),
            "score": pa.array(np.round(100.0 * p, 2)),
            "p_value": pa.array(p),
            "unit_value": pa.array(unit_value, mask=np.isnan(unit_value)),
            "expected_value": pa.array(p * unit_value, mask=np.isnan(unit_value)),
            "confidence": pa.array(np.round(confidence, 3)),
            "confidence_level": pa.array(
                np.where(confidence >= 0.7, "high", np.where(confidence >= 0.4, "medium", "low"))
            ),
            "model": pa.array(chosen.astype(str)),
            "label": labels.cast(pa.int64()),
            "top_signals": pa.array(_top_signals(contrib), type=pa.string()),
            "scored_at": pa.array([scored_at] * n, type=SCORES_SCHEMA.field("scored_at").type),
        },
        schema=SCORES_SCHEMA,
    )
    return ScoringResult(table, models, reports, n_units=n, n_labels=int(labelled.sum()))


def unit_values_of(t: Tables) -> dict[str, float]:
    wf = t.workflows.select("workflow", "unit_value").to_pyarrow().to_pylist()
    return {r["workflow"]: r["unit_value"] for r in wf if r["unit_value"] is not None}


def score_tables(t: Tables) -> ScoringResult:
    """Score every work unit of ``t`` (runs the feature query, fits, predicts; writes nothing)."""
    data = unit_features(t).to_pyarrow()
    return score_units(data, unit_values_of(t))


def score_workspace(ws: Workspace) -> ScoringResult:
    """Score every work unit of the workspace and replace its ``scores`` table; returns what was done."""
    result = score_tables(ws.tables())
    ws.store.ensure_table(SCORES_TABLE, SCORES_SCHEMA)
    ws.store.replace(SCORES_TABLE, result.scores)
    return result
