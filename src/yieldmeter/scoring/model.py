"""The logistic value model: prior weights, MAP calibration and its quality.

Calibration maximises the posterior of a logistic regression whose weights
have independent Gaussian priors centred on the documented prior weights
(:mod:`yieldmeter.scoring.priors`)::

    minimise  sum_i logloss(y_i, sigmoid(b + x_i . w))
              + 1/2 * sum_f ((w_f - prior_f) / scale_f)^2 * strength

so with few labels the weights stay near the priors and with many the data
dominate. A weight keeps its prior's sign (bounded at zero), which keeps the
score monotone in positive signals. Solved with L-BFGS-B (scipy). The fitted
log-odds are then recalibrated on the same labels (Platt scaling, one slope and
one offset, :func:`recalibrate`) to undo the spread the prior's pull takes away.

Labels are not always right: a QA sample marks some good work as bad and the
reverse. When the labels' sources are given, each source ``s`` gets an error
rate ``e_s`` (in [0, :data:`MAX_LABEL_NOISE`]) estimated with the weights, and a
label is modelled as the truth flipped with that probability::

    P(label = 1 | x) = e_s + (1 - 2 e_s) * sigmoid(b + x . w)

so a source that is wrong 3 times in 100 does not set a floor of 3% under every
unit that truly had no chance of delivering (and at $1,500 a unit, 3% is $45).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from yieldmeter.scoring.priors import FEATURES, INTERCEPT, PRIORS

#: A workflow gets its own calibrated model with at least this many labels, and this many of each class.
MIN_LABELS_WORKFLOW = 40
MIN_CLASS_WORKFLOW = 8
#: The global model is calibrated with at least this many labels, and this many of each class.
MIN_LABELS_GLOBAL = 20
MIN_CLASS_GLOBAL = 4
#: Share of labelled units held out to measure calibration quality.
HOLDOUT_SHARE = 0.25


@dataclass(frozen=True)
class ValueModel:
    """Weights of one logistic value model and where they came from."""

    name: str  # "prior", "global" or "workflow:<name>"
    intercept: float
    weights: np.ndarray  # in FEATURES order
    n_labels: int = 0
    #: Estimated error rate of each label source the model was fitted on.
    label_noise: dict[str, float] = field(default_factory=dict)
    #: Per workflow: log-odds added to the intercept (the global model's own base rate per workflow).
    offsets: dict[str, float] = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        return self.name != "prior"

    def logits(self, x: np.ndarray, workflows: np.ndarray | None = None) -> np.ndarray:
        z = self.intercept + x @ self.weights
        if self.offsets and workflows is not None:
            z = z + np.array([self.offsets.get(w, 0.0) for w in workflows.tolist()], dtype=np.float64)
        return z

    def predict(self, x: np.ndarray, workflows: np.ndarray | None = None) -> np.ndarray:
        return expit(self.logits(x, workflows))

    def as_dict(self) -> dict[str, float]:
        return {"intercept": self.intercept, **dict(zip(FEATURES, self.weights.tolist(), strict=True))}


def prior_model() -> ValueModel:
    return ValueModel("prior", INTERCEPT.weight, np.array([p.weight for p in PRIORS], dtype=np.float64))


#: Error rates are optimised in units of 1 / NOISE_STEP (percent), so that their steps are on
#: the scale of the weights': L-BFGS-B then needs far fewer iterations (the enterprise's
#: 14,500 labels: 0.19 s instead of 1.8 s, the same rates to 3 decimals).
NOISE_STEP = 100.0
#: Prior standard deviation (log-odds) of a workflow's intercept offset in the global model.
OFFSET_SCALE = 2.0
#: The most a label source is allowed to be wrong (a source wrong more often is not a label).
MAX_LABEL_NOISE = 0.2


def noisy_log_loss(z: np.ndarray, y: np.ndarray, e: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Summed log loss of labels ``y`` flipped with probability ``e`` around ``sigmoid(z)``.

    Returns the loss and its derivatives by ``z`` and by ``e`` (per row). With ``e = 0`` it is
    the ordinary logistic loss ``log(1 + e^z) - y z`` and its gradient ``sigmoid(z) - y``.
    """
    z = np.clip(z, -700.0, 700.0)
    sig = expit(z)
    log_sig, log_1m_sig = -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)
    with np.errstate(divide="ignore"):
        log_e, log_1m2e = np.log(e), np.log1p(-2.0 * e)
    log_q = np.logaddexp(log_e, log_1m2e + log_sig)
    log_1mq = np.logaddexp(log_e, log_1m2e + log_1m_sig)
    loss = float(-np.sum(y * log_q + (1.0 - y) * log_1mq))
    # sigma / q and (1 - sigma) / (1 - q), written so that neither overflows nor divides by 0
    a = 1.0 / (e * (1.0 + np.exp(np.minimum(-z, 700.0))) + 1.0 - 2.0 * e)
    c = 1.0 / (e * (1.0 + np.exp(np.minimum(z, 700.0))) + 1.0 - 2.0 * e)
    dz = (1.0 - 2.0 * e) * (-y * (1.0 - sig) * a + (1.0 - y) * sig * c)
    q = np.clip(np.exp(log_q), 1e-12, 1.0 - 1e-12)
    de = (-y / q + (1.0 - y) / (1.0 - q)) * (1.0 - 2.0 * sig)
    return loss, dz, de


def _source_index(sources: np.ndarray | None, n: int) -> tuple[list[str], np.ndarray]:
    if sources is None:
        return [], np.zeros(n, dtype=np.int64)
    names, idx = np.unique(np.asarray(sources, dtype=str), return_inverse=True)
    return [str(v) for v in names], idx.astype(np.int64)


def fit_map(
    x: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    prior: ValueModel | None = None,
    strength: float = 1.0,
    sources: np.ndarray | None = None,
    noise: dict[str, float] | None = None,
    workflows: np.ndarray | None = None,
) -> ValueModel:
    """MAP logistic regression pulled towards ``prior`` (default: the documented priors).

    ``strength`` multiplies the prior's precision (2.0 = twice as stubborn). ``sources``, one
    per label: estimate each source's error rate with the weights (module docstring), or take
    it from ``noise`` when given; without ``sources`` every label is taken as the truth.
    ``workflows``, one per label: fit one intercept offset per workflow too (prior
    N(0, :data:`OFFSET_SCALE`)), so workflows with different base rates share the signal weights
    without sharing a base rate.
    """
    prior = prior or prior_model()
    mu = np.concatenate([[prior.intercept], prior.weights])
    scale = np.array([INTERCEPT.scale] + [p.scale for p in PRIORS], dtype=np.float64)
    prec = strength / scale**2
    xa = np.hstack([np.ones((x.shape[0], 1)), x])
    groups: list[str] = []
    if workflows is not None:
        groups, g_idx = _source_index(workflows, len(y))
        xa = np.hstack([xa, np.eye(len(groups))[g_idx]])
        mu = np.concatenate([mu, np.zeros(len(groups))])
        prec = np.concatenate([prec, np.full(len(groups), strength / OFFSET_SCALE**2)])
    y = y.astype(np.float64)
    fixed = noise is not None
    names, src = _source_index(sources, len(y))
    e_fixed = np.array([(noise or {}).get(n, 0.0) for n in names], dtype=np.float64)[src] if names else None
    estimated = names if not fixed else []
    k = len(mu)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, e = theta[:k], theta[k:] / NOISE_STEP
        z = xa @ w
        if e_fixed is not None and fixed:
            loss, dz, _ = noisy_log_loss(z, y, e_fixed)
            de = np.zeros(0)
        elif names:
            loss, dz, de_row = noisy_log_loss(z, y, e[src])
            de = np.bincount(src, weights=de_row, minlength=len(names)) / NOISE_STEP
        else:
            # log(1 + e^z) - y z, computed stably
            loss, dz, de = float(np.sum(np.logaddexp(0.0, z) - y * z)), expit(z) - y, np.zeros(0)
        d = w - mu
        loss += 0.5 * np.sum(prec * d * d)
        grad = xa.T @ dz + prec * d
        return float(loss), np.concatenate([grad, de])

    bounds: list[tuple[float | None, float | None]] = [(None, None)]
    for p in PRIORS:
        bounds.append((0.0, None) if p.sign > 0 else (None, 0.0) if p.sign < 0 else (None, None))
    bounds += [(None, None)] * len(groups)
    bounds += [(0.0, MAX_LABEL_NOISE * NOISE_STEP)] * len(estimated)
    start = np.concatenate([mu, np.full(len(estimated), 0.01 * NOISE_STEP)])
    res = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds)
    nf = 1 + len(PRIORS)
    label_noise = (
        dict(zip(estimated, (float(v) / NOISE_STEP for v in res.x[k:]), strict=True))
        if not fixed
        else {n: float((noise or {}).get(n, 0.0)) for n in names}
    )
    return ValueModel(
        name,
        float(res.x[0]),
        np.asarray(res.x[1:nf], dtype=np.float64),
        n_labels=len(y),
        label_noise=label_noise,
        offsets=dict(zip(groups, (float(v) for v in res.x[nf:k]), strict=True)),
    )


#: Bounds of the recalibration slope: it may sharpen or flatten the fitted odds, within reason.
SLOPE_BOUNDS = (0.25, 4.0)


def recalibrate(
    model: ValueModel,
    x: np.ndarray,
    y: np.ndarray,
    sources: np.ndarray | None = None,
    workflows: np.ndarray | None = None,
) -> ValueModel:
    """Platt scaling of a fitted model: ``z' = a z + c`` fitted on the labels, folded into the weights.

    The prior pulls every weight towards its documented size, which shrinks the fitted log-odds
    towards the middle: units with nothing to show come out more likely to have delivered value
    than the labels say, and units with strong evidence less. One slope ``a`` (kept in
    :data:`SLOPE_BOUNDS`, so never a sign flip) and one offset ``c`` restore the spread the labels
    support; with few labels of one class the model is left as it is. The labels of ``sources``
    are read with the error rates the fit estimated (``model.label_noise``).
    """
    if not enough_labels(y, min_labels=MIN_LABELS_GLOBAL, min_class=MIN_CLASS_GLOBAL):
        return model
    z = model.logits(x, workflows)
    y = y.astype(np.float64)
    e = (
        np.zeros(len(y))
        if sources is None
        else np.array([model.label_noise.get(str(s), 0.0) for s in sources], dtype=np.float64)
    )

    def objective(ac: np.ndarray) -> tuple[float, np.ndarray]:
        loss, r, _ = noisy_log_loss(ac[0] * z + ac[1], y, e)
        return loss, np.array([r @ z, r.sum()])

    res = minimize(
        objective, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[SLOPE_BOUNDS, (None, None)]
    )
    a, c = float(res.x[0]), float(res.x[1])
    return ValueModel(
        model.name,
        a * model.intercept + c,
        a * model.weights,
        n_labels=model.n_labels,
        label_noise=model.label_noise,
        offsets={w: a * v for w, v in model.offsets.items()},
    )


def enough_labels(y: np.ndarray, *, min_labels: int, min_class: int) -> bool:
    pos = int(y.sum())
    return len(y) >= min_labels and pos >= min_class and len(y) - pos >= min_class


def holdout_mask(ids: list[str]) -> np.ndarray:
    """Deterministic hold-out: a unit is held out when a stable hash of its id falls in the first quarter."""
    import zlib

    cut = int(HOLDOUT_SHARE * 1000)
    return np.array([zlib.crc32(i.encode("utf-8")) % 1000 < cut for i in ids], dtype=bool)


@dataclass(frozen=True)
class ReliabilityBin:
    bin_low: float
    bin_high: float
    n: int
    mean_predicted: float
    observed_rate: float


@dataclass(frozen=True)
class CalibrationReport:
    """Quality of the value model on held-out labels (the model was fitted without them).

    ``baseline_log_loss``: for a workflow model, the global model's held-out log loss on the same
    labels (the model it replaces). ``used``: whether scores use this model (it must beat the
    priors, and a workflow model the global model too, on held-out labels); ``note`` says why not.
    """

    model: str
    n_train: int
    n_holdout: int
    log_loss: float | None
    brier: float | None
    prior_log_loss: float | None
    prior_brier: float | None
    reliability: list[ReliabilityBin] = field(default_factory=list)
    note: str = ""
    baseline_log_loss: float | None = None
    used: bool = True


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean of -[y log p + (1 - y) log(1 - p)], p clipped to [1e-12, 1 - 1e-12]."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean of (p - y)^2."""
    return float(np.mean((p - y) ** 2))


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width bins of predicted probability: mean prediction vs observed rate in each non-empty bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append(
                ReliabilityBin(
                    float(edges[b]), float(edges[b + 1]), int(m.sum()), float(p[m].mean()), float(y[m].mean())
                )
            )
    return out


def label_probability(
    model: ValueModel, x: np.ndarray, sources: np.ndarray | None, workflows: np.ndarray | None = None
) -> np.ndarray:
    """P(label = 1 | x): the model's probability of value seen through each label source's error
    rate, ``e_s + (1 - 2 e_s) p`` (module docstring). This, not ``p``, is what a label tests: a
    source wrong 3 times in 100 gives a unit with no chance of value a 3% chance of a "yes"."""
    p = model.predict(x, workflows)
    if sources is None or not model.label_noise:
        return p
    e = np.array([model.label_noise.get(str(s), 0.0) for s in sources], dtype=np.float64)
    return e + (1.0 - 2.0 * e) * p


def evaluate(
    model: ValueModel,
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_train: int,
    workflows: np.ndarray | None = None,
    sources: np.ndarray | None = None,
    baseline: ValueModel | None = None,
    baseline_workflows: np.ndarray | None = None,
) -> CalibrationReport:
    """Held-out log loss, Brier and reliability of ``model`` beside the priors' (and ``baseline``'s).

    Every model is scored on the probability of the labels it predicts (:func:`label_probability`,
    with ``model``'s estimated error rates for the priors and the baseline too, so that the
    comparison is between the probabilities of value alone).
    """
    if len(y) == 0:
        return CalibrationReport(model.name, n_train, 0, None, None, None, None, note="no held-out labels")
    noise = model.label_noise

    def q(m: ValueModel, wf: np.ndarray | None) -> np.ndarray:
        seen = ValueModel(m.name, m.intercept, m.weights, 0, noise, m.offsets)
        return label_probability(seen, x, sources, wf)

    p = q(model, workflows)
    p0 = q(prior_model(), None)
    return CalibrationReport(
        model=model.name,
        n_train=n_train,
        n_holdout=len(y),
        log_loss=log_loss(y, p),
        brier=brier(y, p),
        prior_log_loss=log_loss(y, p0),
        prior_brier=brier(y, p0),
        reliability=reliability_table(y, p),
        baseline_log_loss=None if baseline is None else log_loss(y, q(baseline, baseline_workflows)),
    )
