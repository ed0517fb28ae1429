"""Score every work unit: features -> (calibrated) logistic model -> scores table.

Each score carries:

- ``p_value`` = sigmoid(intercept + sum_f weight_f * x_f), the probability the
  interaction delivered value; ``score`` = 100 x p_value;
- ``expected_value`` = p_value x ``unit_value``, the value one success of the unit is worth:
  its own monetary outcome, else its workflow's unit value as measured from outcome periods,
  else as declared (:mod:`yieldmeter.scoring.unit_value`; null when there is none);
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

Calibration (:func:`fit_models`):

- labels come from sources (a QA sample, a case-management system, outcomes);
  a source that never gives the other answer anywhere is a sample selected on
  the outcome and is left out of the fit (its labels still settle their units);
- the global model pools every workflow's labels: shared signal weights, one
  intercept offset per workflow (workflows differ in base rate far more than
  in what a signal means), and each label source's error rate;
- a workflow's own model starts from the global model as it stands for that
  workflow and takes the global error rates as given;
- a unit's own label then settles its score (:func:`label_posterior`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
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
    recalibrate,
)
from yieldmeter.scoring.priors import ACTION_SIGNALS, EXPLICIT_FEATURES, FEATURES
from yieldmeter.scoring.schema import (
    CALIBRATION_SCHEMA,
    CALIBRATION_TABLE,
    SCORES_SCHEMA,
    SCORES_TABLE,
    UNIT_VALUES_SCHEMA,
    UNIT_VALUES_TABLE,
)
from yieldmeter.scoring.unit_value import UnitValue, monetary_outcomes
from yieldmeter.scoring.unit_value import unit_values as measured_unit_values

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace

TOP_SIGNALS = 3
#: How often a label (value_confirmed / value_denied, an outcome tied to the unit) is taken to be
#: right: 19 times in 20. A label multiplies the model's odds by 19 or divides them by 19.
LABEL_ACCURACY = 0.95


@dataclass
class ScoringResult:
    scores: pa.Table
    models: dict[str, ValueModel] = field(default_factory=dict)
    calibration: list[CalibrationReport] = field(default_factory=list)
    n_units: int = 0
    n_labels: int = 0
    #: per workflow, the unit value the expected values rest on (declared or measured)
    unit_values: list[UnitValue] = field(default_factory=list)

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
                    "global_log_loss": c.baseline_log_loss if c else None,
                    "used": c.used if c else True,
                    "note": c.note if c else "",
                }
            )
        return rows


def _fit(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    sources: np.ndarray,
    workflows: np.ndarray | None,
    noise: dict[str, float] | None,
    prior: ValueModel | None,
) -> ValueModel:
    """MAP fit (label sources' error rates estimated, or ``noise``).

    The global model (pulled towards the documented priors) is then recalibrated (Platt) to
    restore the spread the priors' pull takes away. A workflow model is not: it is pulled towards
    the global model, already recalibrated, and a second slope on top of the first sharpened
    every logit again (slopes of up to 4 x 4: intercepts of +12, weights of 40 where the prior
    says 1.8, three units in four at p < 0.001 or > 0.999).
    """
    m = fit_map(x, y, name=name, sources=sources, noise=noise, workflows=workflows, prior=prior)
    return m if prior is not None else recalibrate(m, x, y, sources, workflows)


@dataclass(frozen=True)
class _Calibrated:
    model: ValueModel  # fitted on every label: what scores use
    report: CalibrationReport  # the trial model's quality on held-out labels
    trial: ValueModel | None  # fitted without the held-out labels (None: too few to hold out)


def _calibrate(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    hold: np.ndarray,
    sources: np.ndarray,
    workflows: np.ndarray | None = None,
    noise: dict[str, float] | None = None,
    prior: ValueModel | None = None,
    baseline: ValueModel | None = None,
    baseline_workflows: np.ndarray | None = None,
    trial_prior: ValueModel | None = None,
) -> _Calibrated:
    """Fit on the training part to report held-out quality, then refit on every label for use.

    ``workflows``: fit per-workflow intercept offsets (the global model). ``noise``: the label
    sources' error rates, fixed (the workflow models take the global model's, which pools
    every workflow's labels of a source); else estimated. ``prior``: the model the weights are
    pulled towards (default: the documented priors); ``trial_prior`` the one the trial fit is
    pulled towards when it must not have seen the held-out labels either (a workflow model's:
    the global model's trial). ``baseline``: the model this one would replace, scored on the
    same held-out labels (its workflow of each label in ``baseline_workflows``).
    """
    train = ~hold
    wt = None if workflows is None else workflows[train]
    trial = None
    if enough_labels(y[train], min_labels=2, min_class=1) and hold.any():
        trial = _fit(name, x[train], y[train], sources[train], wt, noise, trial_prior or prior)
        wh = None if workflows is None else workflows[hold]
        bw = None if baseline_workflows is None else baseline_workflows[hold]
        report = evaluate(
            trial,
            x[hold],
            y[hold],
            n_train=int(train.sum()),
            workflows=wh,
            sources=sources[hold],
            baseline=baseline,
            baseline_workflows=bw,
        )
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
    return _Calibrated(_fit(name, x, y, sources, workflows, noise, prior), report, trial)


#: A workflow's own model replaces the global one only when it does better on at least this many
#: held-out labels: on a dozen, one unlucky label decides the comparison.
MIN_HOLDOUT_WORKFLOW = 20


def _choose(report: CalibrationReport, *, needs_holdout: bool) -> CalibrationReport:
    """Whether scores use the model: it must predict held-out labels better (lower log loss) than
    the priors and than its baseline (the global model, for a workflow's own model); a workflow's
    model must show it on :data:`MIN_HOLDOUT_WORKFLOW` held-out labels or more."""
    if needs_holdout and (report.log_loss is None or report.n_holdout < MIN_HOLDOUT_WORKFLOW):
        return replace(
            report,
            used=False,
            note=f"not used: {report.n_holdout} labels held out, fewer than the {MIN_HOLDOUT_WORKFLOW} "
            "it needs to show it is better",
        )
    if report.log_loss is None:
        return report
    rivals = (("the priors", report.prior_log_loss), ("the global model", report.baseline_log_loss))
    worse = [name for name, other in rivals if other is not None and report.log_loss >= other]
    if worse:
        return replace(report, used=False, note=f"not used: held-out log loss not below {' or '.join(worse)}")
    return report


def one_sided_label_sources(data: pa.Table, labels: np.ndarray) -> np.ndarray:
    """Labelled units whose label source never gives the other answer, anywhere in the organisation.

    A source that only ever says "yes" (typically outcomes recorded for the successes) is a
    sample selected on the outcome, not a random one: fitting it would raise the base rate of
    the workflows it labels. Such labels still settle their own units' scores; they do not
    calibrate. One-sidedness is judged over the whole organisation, not per workflow, so that a
    two-sided source (a QA sample) is not dropped from a small workflow whose few labels
    happened to agree.
    """
    source = np.asarray(data.column("label_source").to_pylist(), dtype=object)
    out = np.zeros(len(labels), dtype=bool)
    has = ~np.isnan(labels)
    for s in set(source[has].tolist()):
        m = has & (source == s)
        if len(np.unique(labels[m])) < 2:
            out |= m
    return out


def label_posterior(p_model: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The model's probability updated by the unit's own label (NaN: no label, p unchanged).

    A label is taken to be right with probability :data:`LABEL_ACCURACY`, so it multiplies the
    odds by ``a / (1 - a)`` (confirmed) or divides them by it (denied).
    """
    lr = LABEL_ACCURACY / (1.0 - LABEL_ACCURACY)
    p = np.clip(p_model, 1e-12, 1 - 1e-12)
    odds = p / (1.0 - p)
    odds = np.where(label == 1, odds * lr, np.where(label == 0, odds / lr, odds))
    return np.where(np.isnan(label), p_model, odds / (1.0 + odds))


def _as_prior(model: ValueModel, workflow: str) -> ValueModel:
    """``model`` as it stands for ``workflow`` (its weights, its base rate): a prior to pull to."""
    return ValueModel("prior", model.intercept + model.offsets.get(workflow, 0.0), model.weights)


def fit_models(data: pa.Table, x: np.ndarray) -> tuple[dict[str, ValueModel], list[CalibrationReport]]:
    """The global model and one per workflow with enough labels (see :mod:`.model` thresholds)."""
    labels = data.column("label").to_numpy(zero_copy_only=False)
    labels = np.array([np.nan if v is None else v for v in labels], dtype=np.float64)
    has = ~np.isnan(labels)
    models: dict[str, ValueModel] = {"prior": prior_model()}
    reports: list[CalibrationReport] = []
    if not has.any():
        return models, reports
    has &= ~one_sided_label_sources(data, labels)
    if not has.any():
        return models, reports
    ids = [str(i) for i in np.asarray(data.column("work_unit_id").to_pylist(), dtype=object)[has]]
    hold = holdout_mask(ids)
    xl, yl = x[has], labels[has].astype(np.int64)
    sl = np.asarray(data.column("label_source").to_pylist(), dtype=object)[has].astype(str)
    workflows = np.asarray(data.column("workflow").to_pylist(), dtype=object)[has]
    wl = np.array(["" if w is None else str(w) for w in workflows], dtype=object)
    noise: dict[str, float] = {}
    glob: _Calibrated | None = None
    if enough_labels(yl, min_labels=MIN_LABELS_GLOBAL, min_class=MIN_CLASS_GLOBAL):
        glob = _calibrate("global", xl, yl, hold, sl, workflows=wl)
        rep = _choose(glob.report, needs_holdout=False)
        noise = glob.model.label_noise
        if rep.used:
            models["global"] = glob.model
        reports.append(rep)
    use_global = "global" in models
    for wf in sorted({w for w in workflows if w is not None}):
        m = workflows == wf
        if enough_labels(yl[m], min_labels=MIN_LABELS_WORKFLOW, min_class=MIN_CLASS_WORKFLOW):
            name = f"workflow:{wf}"
            # pulled towards the global model as it stands for this workflow (its weights, learned
            # from every workflow, and this workflow's base rate), not back to the documented priors;
            # it must then beat that global model (trained without the held-out labels) on this
            # workflow's held-out labels, and the priors, to be used.
            prior = trial_prior = None
            if glob is not None and use_global:
                prior = _as_prior(glob.model, str(wf))
                # the trial is pulled towards the global trial: neither saw the held-out labels,
                # so the comparison with that global trial is fair
                trial_prior = _as_prior(glob.trial, str(wf)) if glob.trial is not None else prior
            cal = _calibrate(
                name,
                xl[m],
                yl[m],
                hold[m],
                sl[m],
                noise=noise,
                prior=prior,
                baseline=glob.trial if glob is not None and use_global else None,
                baseline_workflows=wl[m],
                trial_prior=trial_prior,
            )
            rep = _choose(cal.report, needs_holdout=True)
            if rep.used:
                models[name] = cal.model
            reports.append(rep)
    return models, reports


def _top_signals(contrib: np.ndarray, label: np.ndarray, label_source: np.ndarray) -> list[str | None]:
    """The largest contributions; a unit's own label comes first (it moves the score most)."""
    k = min(TOP_SIGNALS, contrib.shape[1])
    mag = np.abs(contrib)
    top = np.argsort(-mag, axis=1, kind="stable")[:, :k]
    names = np.array(FEATURES, dtype=object)
    out: list[str | None] = []
    for row, idx in enumerate(top):
        parts = [f"{names[j]} {contrib[row, j]:+.2f}" for j in idx if mag[row, j] >= 0.005]
        if not np.isnan(label[row]):
            verdict = "value confirmed" if label[row] == 1 else "value denied"
            parts = [f"{verdict} ({label_source[row]})", *parts[: k - 1]]
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
    data: pa.Table,
    unit_values: dict[str, float],
    *,
    outcomes: pa.Table,
    scored_at: datetime | None = None,
) -> ScoringResult:
    """Scores for the rows of :func:`unit_features` (already fetched), calibrating where labels allow.

    ``unit_values`` are the declared values per workflow; ``outcomes`` (rows of
    :func:`~yieldmeter.scoring.unit_value.monetary_outcomes`) measure them where they can.
    """
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
            p[m] = model.predict(x[m], np.array(["" if w is None else str(w) for w in workflows[m]]))
            contrib[m] = x[m] * model.weights
            n_model[m] = model.n_labels
    labels = data.column("label")
    labelled = labels.is_valid().to_numpy(zero_copy_only=False)
    y = np.array([np.nan if v is None else float(v) for v in labels.to_pylist()], dtype=np.float64)
    p = label_posterior(p, y)
    confidence = _confidence(data, x, n_model, labelled)
    unit_value, values = measured_unit_values(
        data.column("work_unit_id"), workflows, data.column("started_at"), p, unit_values, outcomes
    )
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
            "top_signals": pa.array(
                _top_signals(contrib, y, np.asarray(data.column("label_source").to_pylist(), dtype=object)),
                type=pa.string(),
            ),
            "scored_at": pa.array([scored_at] * n, type=SCORES_SCHEMA.field("scored_at").type),
        },
        schema=SCORES_SCHEMA,
    )
    return ScoringResult(table, models, reports, n_units=n, n_labels=int(labelled.sum()), unit_values=values)


def unit_values_of(t: Tables) -> dict[str, float]:
    wf = t.workflows.select("workflow", "unit_value").to_pyarrow().to_pylist()
    return {r["workflow"]: r["unit_value"] for r in wf if r["unit_value"] is not None}


def score_tables(t: Tables) -> ScoringResult:
    """Score every work unit of ``t`` (runs the feature query, fits, predicts; writes nothing)."""
    data = unit_features(t).to_pyarrow()
    return score_units(data, unit_values_of(t), outcomes=monetary_outcomes(t).to_pyarrow())


def calibration_table(result: ScoringResult) -> pa.Table:
    """The calibration reports of a scoring run as rows of the ``calibration`` table."""
    scored_at = result.scores.column("scored_at")[0].as_py() if result.scores.num_rows else None
    rows = [
        {
            "model": c.model,
            "used": c.used,
            "labels_train": c.n_train,
            "labels_holdout": c.n_holdout,
            "log_loss": c.log_loss,
            "brier": c.brier,
            "prior_log_loss": c.prior_log_loss,
            "prior_brier": c.prior_brier,
            "global_log_loss": c.baseline_log_loss,
            "note": c.note,
            "reliability": json.dumps([asdict(b) for b in c.reliability]),
            "scored_at": scored_at or datetime.now(UTC),
        }
        for c in result.calibration
    ]
    return pa.Table.from_pylist(rows, schema=CALIBRATION_SCHEMA)


def unit_values_table(result: ScoringResult) -> pa.Table:
    """The unit values of a scoring run as rows of the ``unit_values`` table."""
    scored_at = result.scores.column("scored_at")[0].as_py() if result.scores.num_rows else None
    rows = [{**u.row(), "scored_at": scored_at or datetime.now(UTC)} for u in result.unit_values]
    return pa.Table.from_pylist(rows, schema=UNIT_VALUES_SCHEMA)


def score_workspace(ws: Workspace) -> ScoringResult:
    """Score every work unit of the workspace, replace its ``scores`` table, its ``calibration``
    table (the held-out quality of each model) and its ``unit_values`` (what one success of each
    workflow is worth, and where that came from); returns what was done."""
    result = score_tables(ws.tables())
    store_scores(ws, result)
    return result


def store_scores(ws: Workspace, result: ScoringResult) -> None:
    """Replace the workspace's ``scores``, ``calibration`` and ``unit_values`` with ``result``."""
    for name, schema, rows in (
        (SCORES_TABLE, SCORES_SCHEMA, result.scores),
        (CALIBRATION_TABLE, CALIBRATION_SCHEMA, calibration_table(result)),
        (UNIT_VALUES_TABLE, UNIT_VALUES_SCHEMA, unit_values_table(result)),
    ):
        ws.store.ensure_table(name, schema)
        ws.store.replace(name, rows)
    ws.scores_stored += 1
