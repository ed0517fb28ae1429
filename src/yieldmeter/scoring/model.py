"""The logistic value model: prior weights, MAP calibration and its quality.

Calibration maximises the posterior of a logistic regression whose weights
have independent Gaussian priors centred on the documented prior weights
(:mod:`yieldmeter.scoring.priors`)::

    minimise  sum_i logloss(y_i, sigmoid(b + x_i . w))
              + 1/2 * sum_f ((w_f - prior_f) / scale_f)^2 * strength

so with few labels the weights stay near the priors and with many the data
dominate. A weight keeps its prior's sign (bounded at zero), which keeps the
score monotone in positive signals. Solved with L-BFGS-B (scipy).
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

    @property
    def calibrated(self) -> bool:
        return self.name != "prior"

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + x @ self.weights

    def predict(self, x: np.ndarray) -> np.ndarray:
        return expit(self.logits(x))

    def as_dict(self) -> dict[str, float]:
        return {"intercept": self.intercept, **dict(zip(FEATURES, self.weights.tolist(), strict=True))}


def prior_model() -> ValueModel:
    return ValueModel("prior", INTERCEPT.weight, np.array([p.weight for p in PRIORS], dtype=np.float64))


def fit_map(
    x: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    prior: ValueModel | None = None,
    strength: float = 1.0,
) -> ValueModel:
    """MAP logistic regression pulled towards ``prior`` (default: the documented priors).

    ``strength`` multiplies the prior's precision (2.0 = twice as stubborn).
    """
    prior = prior or prior_model()
    mu = np.concatenate([[prior.intercept], prior.weights])
    scale = np.array([INTERCEPT.scale] + [p.scale for p in PRIORS], dtype=np.float64)
    prec = strength / scale**2
    xa = np.hstack([np.ones((x.shape[0], 1)), x])
    y = y.astype(np.float64)

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = xa @ w
        # log(1 + e^z) - y z, computed stably
        loss = np.sum(np.logaddexp(0.0, z) - y * z)
        d = w - mu
        loss += 0.5 * np.sum(prec * d * d)
        grad = xa.T @ (expit(z) - y) + prec * d
        return float(loss), grad

    bounds: list[tuple[float | None, float | None]] = [(None, None)]
    for p in PRIORS:
        bounds.append((0.0, None) if p.sign > 0 else (None, 0.0) if p.sign < 0 else (None, None))
    res = minimize(objective, mu.copy(), jac=True, method="L-BFGS-B", bounds=bounds)
    return ValueModel(name, float(res.x[0]), np.asarray(res.x[1:], dtype=np.float64), n_labels=len(y))


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
    """Quality of the value model on held-out labels (the model was fitted without them)."""

    model: str
    n_train: int
    n_holdout: int
    log_loss: float | None
    brier: float | None
    prior_log_loss: float | None
    prior_brier: float | None
    reliability: list[ReliabilityBin] = field(default_factory=list)
    note: str = ""


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


def evaluate(model: ValueModel, x: np.ndarray, y: np.ndarray, *, n_train: int) -> CalibrationReport:
    prior = prior_model()
    if len(y) == 0:
        return CalibrationReport(model.name, n_train, 0, None, None, None, None, note="no held-out labels")
    p = model.predict(x)
    p0 = prior.predict(x)
    return CalibrationReport(
        model=model.name,
        n_train=n_train,
        n_holdout=len(y),
        log_loss=log_loss(y, p),
        brier=brier(y, p),
        prior_log_loss=log_loss(y, p0),
        prior_brier=brier(y, p0),
        reliability=reliability_table(y, p),
    )
