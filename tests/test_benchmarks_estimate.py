"""The benchmarks' shrinkage and bootstrap (metrics/benchmarks.estimate) on three groups, by hand.

One workflow, three people (value v and tokens k per work unit):

    A: 4 units of (4, 1000)                      V 16, K 4000, raw 0.004, residual 0
    B: (1, 1000), (3, 1000), (1, 1000), (3, 1000) V  8, K 4000, raw 0.002, residual 4
    C: 2 units of (0, 1000)                      V  0, K 2000, raw 0,     residual 0

Value per token (empirical Bayes, normal-normal):
    m = 24 / 10,000 = 0.0024
    s2 = (0 + 4 + 0) / (10 units - 3 groups) = 4/7           (pooled residual variance)
    se2 = (residual + s2) / K^2:  A (4/7)/4000^2, B (4 + 4/7)/4000^2, C (4/7)/2000^2
    tau2 = var(raw) - mean(se2),  var(raw) = (0.002^2 + 0 + 0.002^2) / 3
    b = se2 / (se2 + tau2);  value_per_token = (1 - b) raw + b m

Success rate (beta-binomial, method of moments): successes A 3, B 1, C 0:
    p = 4/10; phat = 3/4, 1/4, 0; between = var(phat) - mean(p(1 - p)/n)
    kappa = p(1 - p)/between - 1; rate = (S + kappa p) / (n + kappa)
Cost per success = C / (n x rate), with costs 40, 20, 10.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from yieldmeter.metrics.benchmarks import estimate

UNITS = {
    "A": [(4.0, 1000.0, 1, 10.0)] * 3 + [(4.0, 1000.0, 0, 10.0)],
    "B": [(1.0, 1000.0, 1, 5.0), (3.0, 1000.0, 0, 5.0), (1.0, 1000.0, 0, 5.0), (3.0, 1000.0, 0, 5.0)],
    "C": [(0.0, 1000.0, 0, 5.0)] * 2,
}


def _tables() -> tuple[pa.Table, pa.Table]:
    """The group sums and per-batch sums (each unit its own batch) the database would return."""
    sums: dict[str, list[object]] = {c: [] for c in ("workflow", "subject", "n", "value", "tokens")}
    sums.update({c: [] for c in ("successes", "cost", "svv", "skk", "svk")})
    buckets: dict[str, list[object]] = {
        c: [] for c in ("workflow", "subject", "bucket", "n", "value", "tokens", "successes", "cost")
    }
    for subject, units in UNITS.items():
        v, k, s, c = (np.array(x, dtype=float) for x in zip(*units, strict=True))
        row = {"workflow": "w", "subject": subject, "n": len(units), "value": v.sum(), "tokens": k.sum()}
        row.update(
            successes=int(s.sum()), cost=c.sum(), svv=(v * v).sum(), skk=(k * k).sum(), svk=(v * k).sum()
        )
        for key, val in row.items():
            sums[key].append(val)
        for i, (vi, ki, si, ci) in enumerate(units):
            for key, val in zip(buckets, ("w", subject, i, 1, vi, ki, float(si), ci), strict=True):
                buckets[key].append(val)
    return pa.table(sums), pa.table(buckets)


def test_shrinkage_by_hand() -> None:
    sums, buckets = _tables()
    est = {
        r["subject"]: r for r in estimate(sums, buckets, ["workflow", "subject"], ["workflow"]).to_pylist()
    }

    m = 24 / 10_000
    s2 = 4 / 7
    se2 = {"A": s2 / 4000**2, "B": (4 + s2) / 4000**2, "C": s2 / 2000**2}
    raw = {"A": 0.004, "B": 0.002, "C": 0.0}
    tau2 = (0.002**2 + 0 + 0.002**2) / 3 - sum(se2.values()) / 3
    for g in "ABC":
        b = se2[g] / (se2[g] + tau2)
        assert est[g]["value_per_token_raw"] == pytest.approx(raw[g], rel=1e-12)
        assert est[g]["workflow_value_per_token"] == pytest.approx(m, rel=1e-12)
        assert est[g]["shrinkage"] == pytest.approx(b, rel=1e-9)
        assert est[g]["value_per_token"] == pytest.approx((1 - b) * raw[g] + b * m, rel=1e-9)
    # A's estimate: b = 0.0140187 -> 0.0039776 (raw 0.004 pulled a little towards 0.0024)
    assert est["A"]["value_per_token"] == pytest.approx(0.0039775701, rel=1e-6)

    p = 0.4
    phat = np.array([0.75, 0.25, 0.0])
    between = phat.var() - np.mean(p * (1 - p) / np.array([4, 4, 2]))  # 0.0972222 - 0.08
    kappa = p * (1 - p) / between - 1  # 12.935484
    assert kappa == pytest.approx(12.935484, rel=1e-6)
    for g, s, n, c in (("A", 3, 4, 40.0), ("B", 1, 4, 20.0), ("C", 0, 2, 10.0)):
        rate = (s + kappa * p) / (n + kappa)
        assert est[g]["success_rate_raw"] == pytest.approx(s / n, rel=1e-12)
        assert est[g]["success_rate"] == pytest.approx(rate, rel=1e-9)
        assert est[g]["cost_per_success"] == pytest.approx(c / (n * rate), rel=1e-9)
    # C had no success at all: shrinkage still gives it a rate (and a finite cost per success)
    assert est["C"]["success_rate"] == pytest.approx(kappa * p / (2 + kappa), rel=1e-9)


def test_bootstrap_intervals_hold_the_estimate_and_repeat() -> None:
    sums, buckets = _tables()
    keys, part = ["workflow", "subject"], ["workflow"]
    one = estimate(sums, buckets, keys, part, seed=3).to_pylist()
    again = estimate(sums, buckets.take(np.arange(buckets.num_rows)[::-1]), keys, part, seed=3).to_pylist()
    assert one == again  # the same draws whatever order the batches come in
    for r in one:
        for name in ("value_per_token", "success_rate", "cost_per_success"):
            assert r[f"{name}_low"] <= r[name] <= r[f"{name}_high"], (r["subject"], name)
    # B's four units disagree (1 and 3 per 1,000 tokens): its interval is wider than A's,
    # whose units are all alike
    width = {r["subject"]: r["value_per_token_high"] - r["value_per_token_low"] for r in one}
    assert width["B"] > width["A"]


def test_bootstrap_band_is_nanpercentile_column_by_column() -> None:
    """The bands (2.5th and 97.5th percentile of each group's replicates, NaN draws left out) are
    exactly ``np.nanpercentile`` per column, on columns with no NaN, some, and only NaN."""
    import warnings

    from yieldmeter.metrics.benchmarks import _band

    rng = np.random.default_rng(7)
    for share_nan in (0.0, 0.01, 0.3):
        reps = rng.gamma(2.0, 1.0, (200, 60)) * 1e-6
        reps[rng.random(reps.shape) < share_nan] = np.nan
        reps[:, 5] = np.nan
        lo, hi = _band(reps, 2.5, 97.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want_lo, want_hi = np.nanpercentile(reps, [2.5, 97.5], axis=0)
        assert np.array_equal(lo, want_lo, equal_nan=True)
        assert np.array_equal(hi, want_hi, equal_nan=True)
        assert np.isnan(lo[5]) and np.isnan(hi[5])


def test_a_replicate_moves_a_shrunk_group_by_sqrt_one_minus_b() -> None:
    """By hand: raw 4, replicate raw 6, b 0.75, replicate workflow mean 3.

    (1 - b) raw + sqrt(1 - b) (rr - raw) + b mb = 0.25 x 4 + 0.5 x 2 + 0.75 x 3 = 4.25;
    holding b fixed alone, (1 - b) rr + b mb = 1.5 + 2.25 = 3.75, half the group's own move.
    An unshrunk group (b 0) moves with its raw estimate; a fully shrunk one (b 1) with the mean.
    A replicate whose raw estimate falls to 0 (mean 0.2): 1 + 0.5 x (-4) + 0.75 x 0.2 = -0.85,
    below what a value per token can be: 0.
    """
    from yieldmeter.metrics.benchmarks import replicate_vpt

    got = replicate_vpt(
        np.array([4.0, 4.0, 4.0, 4.0]),
        np.array([6.0, 6.0, 6.0, 0.0]),
        np.array([0.75, 0.0, 1.0, 0.75]),
        np.array([3.0, 3.0, 3.0, 0.2]),
    )
    assert got == pytest.approx([4.25, 6.0, 3.0, 0.0])


def test_a_measured_unit_value_widens_the_value_intervals_only() -> None:
    """A workflow whose unit value carries a 10% standard error (4 degrees of freedom): the same
    estimates, value-per-token intervals that hold them and are wider for every group, and the
    same success-rate and cost intervals; an error named for another workflow changes nothing."""
    sums, buckets = _tables()
    keys, part = ["workflow", "subject"], ["workflow"]
    plain = estimate(sums, buckets, keys, part, seed=3).to_pylist()
    wide = estimate(sums, buckets, keys, part, seed=3, value_uncertainty={"w": (0.1, 4)}).to_pylist()
    for p, w in zip(plain, wide, strict=True):
        assert w["value_per_token"] == p["value_per_token"]
        assert w["value_per_token_low"] <= w["value_per_token"] <= w["value_per_token_high"]
        if p["value_per_token"] > 0:
            assert w["value_per_token_high"] - w["value_per_token_low"] > (
                p["value_per_token_high"] - p["value_per_token_low"]
            )
        for name in ("success_rate", "cost_per_success"):
            assert (w[f"{name}_low"], w[f"{name}_high"]) == (p[f"{name}_low"], p[f"{name}_high"])


def test_the_unit_value_draws_do_not_depend_on_the_order_of_the_groups() -> None:
    """Two workflows with the same units and each its own unit value error: the intervals are the
    same whichever order the database returns the groups and batches in."""
    sums, buckets = _tables()

    def both(t: pa.Table) -> pa.Table:
        other = t.set_column(t.schema.get_field_index("workflow"), "workflow", pa.array(["v"] * t.num_rows))
        return pa.concat_tables([t, other])

    sums, buckets = both(sums), both(buckets)
    keys, part, unc = ["workflow", "subject"], ["workflow"], {"w": (0.1, 4), "v": (0.3, 2)}
    one = estimate(sums, buckets, keys, part, seed=3, value_uncertainty=unc)
    flipped = estimate(
        sums.take(np.arange(sums.num_rows)[::-1]),
        buckets.take(np.arange(buckets.num_rows)[::-1]),
        keys,
        part,
        seed=3,
        value_uncertainty=unc,
    )
    order = [("workflow", "ascending"), ("subject", "ascending")]
    assert flipped.sort_by(order).to_pylist() == one.sort_by(order).to_pylist()
    # the larger error of v widens its intervals more than w's
    rows = {(r["workflow"], r["subject"]): r for r in one.to_pylist()}
    width = {k: r["value_per_token_high"] - r["value_per_token_low"] for k, r in rows.items()}
    assert width[("v", "A")] > width[("w", "A")]


def test_the_realised_value_noise_widens_the_intervals_by_the_units_variance() -> None:
    """With ``svar`` in the group sums (sum of p (1 - p) v^2) the estimates stay, the value per
    token intervals widen, and more for B (variance 4 per unit, p 0.5 of a $4 value: sd
    sqrt(16) / 4000 per token) than for A (0.01 per unit: sqrt(0.04) / 4000); an ``svar`` of 0
    everywhere is the same as none, and the draws do not depend on the order of the groups."""
    sums, buckets = _tables()
    keys, part = ["workflow", "subject"], ["workflow"]
    plain = {r["subject"]: r for r in estimate(sums, buckets, keys, part, seed=3).to_pylist()}
    zero = estimate(sums.append_column("svar", pa.array([0.0] * sums.num_rows)), buckets, keys, part, seed=3)
    assert {r["subject"]: r for r in zero.to_pylist()} == plain
    per_group = {"A": 4 * 0.01, "B": 4 * 4.0, "C": 0.0}
    noisy_sums = sums.append_column(
        "svar", pa.array([per_group[s] for s in sums.column("subject").to_pylist()])
    )
    one = estimate(noisy_sums, buckets, keys, part, seed=3)
    noisy = {r["subject"]: r for r in one.to_pylist()}

    def width(r: dict[str, float]) -> float:
        return r["value_per_token_high"] - r["value_per_token_low"]

    for s in ("A", "B"):
        r = noisy[s]
        assert r["value_per_token"] == plain[s]["value_per_token"]
        assert r["value_per_token_low"] <= r["value_per_token"] <= r["value_per_token_high"]
    assert width(noisy["B"]) - width(plain["B"]) > width(noisy["A"]) - width(plain["A"]) > 0
    flipped = estimate(
        noisy_sums.take([2, 0, 1]), buckets.take(np.arange(buckets.num_rows)[::-1]), keys, part, seed=3
    )
    # the same draws in any order (the sums agree to rounding: they are added in another order)
    for got, want in zip(flipped.sort_by("subject").to_pylist(), one.to_pylist(), strict=True):
        assert got == {k: pytest.approx(v, rel=1e-12) if isinstance(v, float) else v for k, v in want.items()}
