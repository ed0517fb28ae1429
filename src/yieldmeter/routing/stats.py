"""The statistics routing decisions rest on, on small aggregated numbers (numpy/scipy).

Every function takes sufficient statistics a segment x model row carries
(counts and sums from :mod:`yieldmeter.routing.segments`), never raw rows.

- success rate interval: Wilson score interval.
- cost per successful outcome ``R = sum(cost) / sum(success) = mean(c) / p`` and its
  variance by the delta method for a ratio of means::

      Var(R) ~= (1/n) * ( s_c^2 / p^2  +  cbar^2 * s_s^2 / p^4  -  2 * cbar * s_cs / p^3 )

  where ``s_c^2`` is the sample variance of the unit cost, ``s_s^2 = p (1 - p)`` that of the
  0/1 success and ``s_cs`` their covariance.
- "is the candidate cheaper per success?": one-sided z-test on ``R_ref - R_cand`` with the two
  delta-method variances (independent samples).
- "is the candidate's success rate not worse than the reference by more than a margin?":
  one-sided non-inferiority z-test, ``H0: p_c - p_r <= -margin``, unpooled (Wald) standard error.
- "is the candidate's success rate significantly lower?": one-sided two-proportion z-test with
  the pooled standard error, ``H0: p_c >= p_r``.
- sample size for an experiment: normal approximation with unequal allocation (see
  :func:`experiment_size`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm


def z_quantile(p: float) -> float:
    return float(norm.ppf(p))


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (nan, nan) when n is 0.

    centre = (p + z^2/2n) / (1 + z^2/n), half width = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n).
    """
    if n <= 0:
        return (math.nan, math.nan)
    z = z_quantile(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class CostPerSuccess:
    """Cost per successful outcome of one sample, with its delta-method standard error."""

    n: int
    successes: int
    mean_cost: float
    success_rate: float
    value: float  # sum(cost) / sum(success); inf when there is no success
    unit_variance: float  # n x Var(value): the per-unit variance, for sample-size formulas
    se: float

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        if not math.isfinite(self.value):
            return (math.nan, math.nan)
        z = z_quantile(0.5 + confidence / 2)
        return (max(0.0, self.value - z * self.se), self.value + z * self.se)


def cost_per_success(
    n: int, cost_sum: float, cost_sq_sum: float, successes: int, cost_success_sum: float
) -> CostPerSuccess:
    """R = cost_sum / successes with its delta-method SE, from sufficient statistics.

    ``cost_sq_sum`` = sum(c^2), ``cost_success_sum`` = sum(c x s) over the n units.
    Sample moments use the n - 1 denominator.
    """
    if n <= 0:
        return CostPerSuccess(0, 0, math.nan, math.nan, math.nan, math.nan, math.nan)
    cbar = cost_sum / n
    p = successes / n
    if successes <= 0:
        return CostPerSuccess(n, 0, cbar, 0.0, math.inf, math.inf, math.inf)
    dof = max(n - 1, 1)
    var_c = max(0.0, (cost_sq_sum - n * cbar * cbar) / dof)
    var_s = max(0.0, (successes - n * p * p) / dof)
    cov = (cost_success_sum - n * cbar * p) / dof
    unit_var = var_c / p**2 + cbar**2 * var_s / p**4 - 2 * cbar * cov / p**3
    unit_var = max(unit_var, 0.0)
    return CostPerSuccess(n, successes, cbar, p, cbar / p, unit_var, math.sqrt(unit_var / n))


def cheaper_per_success_p(ref: CostPerSuccess, cand: CostPerSuccess) -> float:
    """One-sided p-value of H0: R_cand >= R_ref (z = (R_ref - R_cand) / sqrt(se_ref^2 + se_cand^2))."""
    if not (math.isfinite(ref.value) and math.isfinite(cand.value)):
        return 1.0 if not math.isfinite(cand.value) else 0.0
    se = math.hypot(ref.se, cand.se)
    if se == 0:
        return 0.0 if cand.value < ref.value else 1.0
    return float(norm.sf((ref.value - cand.value) / se))


def non_inferiority_p(s_ref: float, n_ref: float, s_cand: float, n_cand: float, margin: float) -> float:
    """One-sided p-value of H0: p_cand - p_ref <= -margin (Wald SE, unpooled).

    z = (p_c - p_r + margin) / sqrt(p_r(1-p_r)/n_r + p_c(1-p_c)/n_c). A zero SE (both rates 0 or 1)
    is floored at the SE of one success in the larger sample so that certainty is never claimed
    from a handful of identical outcomes.
    """
    if n_ref <= 0 or n_cand <= 0:
        return 1.0
    pr, pc = s_ref / n_ref, s_cand / n_cand
    se = math.sqrt(pr * (1 - pr) / n_ref + pc * (1 - pc) / n_cand)
    se = max(se, 1.0 / max(n_ref, n_cand))
    return float(norm.sf((pc - pr + margin) / se))


def lower_success_p(s_ref: float, n_ref: float, s_cand: float, n_cand: float) -> float:
    """One-sided p-value of H0: p_cand >= p_ref (pooled two-proportion z-test).

    z = (p_r - p_c) / sqrt(p (1-p) (1/n_r + 1/n_c)), p = (s_r + s_c) / (n_r + n_c).
    A small p-value means the candidate's success rate is significantly lower.
    """
    if n_ref <= 0 or n_cand <= 0:
        return 1.0
    pr, pc = s_ref / n_ref, s_cand / n_cand
    pooled = (s_ref + s_cand) / (n_ref + n_cand)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cand))
    if se == 0:
        return 1.0
    return float(norm.sf((pr - pc) / se))


def experiment_size(
    *,
    p_ref: float,
    p_cand: float,
    margin: float,
    unit_var_ref: float,
    unit_var_cand: float,
    cps_gap: float,
    share: float,
    alpha: float,
    power: float,
) -> int:
    """Work units (both arms together) a randomised experiment needs to settle a switch.

    With a fraction ``share`` sent to the candidate, the N units must give both tests power:

    - non-inferiority of success, assuming the true difference is min(observed, 0):
      N >= (z_a + z_b)^2 (p_r q_r / (1-s) + p_c q_c / s) / (d + margin)^2
    - cheaper per success, assuming the observed gap ``cps_gap = R_ref - R_cand`` is true:
      N >= (z_a + z_b)^2 (v_r / (1-s) + v_c / s) / cps_gap^2

    and the larger of the two is returned. ``inf`` when the gap or margin leaves nothing to detect.
    """
    za, zb = z_quantile(1 - alpha), z_quantile(power)
    k = (za + zb) ** 2
    d = min(p_cand - p_ref, 0.0)
    room = d + margin
    if room <= 0 or cps_gap <= 0 or not (0 < share < 1):
        return math.inf  # type: ignore[return-value]
    n_quality = k * (p_ref * (1 - p_ref) / (1 - share) + p_cand * (1 - p_cand) / share) / room**2
    n_cost = k * (unit_var_ref / (1 - share) + unit_var_cand / share) / cps_gap**2
    return math.ceil(max(n_quality, n_cost, 1.0))


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """Which (cost, quality) points are on the frontier: no other point is at most as costly and at
    least as good, and strictly better in one of the two."""
    out = []
    for i, (ci, qi) in enumerate(points):
        dominated = any(
            (cj <= ci and qj >= qi and (cj < ci or qj > qi)) for j, (cj, qj) in enumerate(points) if j != i
        )
        out.append(not dominated)
    return out
