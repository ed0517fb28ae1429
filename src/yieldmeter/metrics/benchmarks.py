"""Benchmarks and patterns inside a workflow: shrunk estimates with bootstrap intervals.

The sums per group come from the database as Ibis expressions
(:func:`group_sums`, :func:`bucket_sums`); the shrinkage and the bootstrap are
small numpy steps on those sums (:func:`estimate`), so no per-unit data leaves
the database.

Per group g of work units (a user, a team, or a pattern segment) with n units,
value V = sum(expected_value), tokens K, successes S, fully loaded cost C:

- raw value per token r_g = V / K; workflow mean m = sum V / sum K.
- its sampling variance se2_g = (sum (v_i - r_g k_i)^2 + s2) / K^2, where s2 is the pooled
  per-unit residual variance (one pseudo-unit, so a one-unit group is not certain).
- empirical-Bayes shrinkage (normal-normal, Efron-Morris): tau2 = max(var_g(r_g) - mean(se2_g), 0);
  weight b_g = se2_g / (se2_g + tau2); value_per_token = (1 - b_g) r_g + b_g m.
- success rate: beta-binomial shrinkage towards the workflow rate p with prior strength
  kappa = p(1 - p) / var_between - 1 (method of moments, clipped to [1, 10000]):
  success_rate = (S + kappa p) / (n + kappa).
- cost_per_success = C / (n x success_rate) (shrunk successes: a lucky small group does not
  look cheap). Where every call of a group's units is unpriced, C is unknown, not $0
  (:func:`yieldmeter.metrics.cost.known_cost`): C and the cost per success are null.
- intervals: Poisson bootstrap (B replicates, default 200) over batches: each group's units are
  split by a stable hash of work_unit_id into up to 32 batches, each batch is weighted Poisson(1)
  per replicate and the shrunk estimator recomputed with b_g and kappa held fixed, except that
  a group's own deviation from its raw estimate enters with weight sqrt(1 - b_g), the width of
  the empirical-Bayes posterior, where holding b_g fixed alone would give (1 - b_g) and
  intervals too narrow for heavily shrunk groups; 2.5th and 97.5th percentiles (at ``level``).
  Where the unit value is itself measured (``value_uncertainty``), each replicate also scales the
  workflow's values by a draw of that measurement's error; and each adds a normal draw of the
  realised value's noise, sd = sqrt(sum p_i (1 - p_i) v_i^2) / K over the group's units, since a
  unit delivers its value v_i or nothing while the estimate counts p_i v_i. The workflow mean m and rate p are
  re-estimated in each replicate, so a group that is the whole population still gets the
  population's interval. Small groups land mostly one unit per batch, so for them this is the
  ordinary unit bootstrap.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from yieldmeter.metrics.period import elapsed_seconds

BUCKETS = 32
BOOTSTRAP_REPLICATES = 200


def _value(f: ir.Table) -> ir.FloatingValue:
    return f.expected_value.fill_null(0.0)


def _realised_var_sum(f: ir.Table) -> dict[str, ir.FloatingValue]:
    """``svar``: the sum of p (1 - p) v^2 = EV^2 (1 - p) / p, the variance of each unit's realised
    value (v or 0) about its expected value p v (0 for a unit with no score). Only where the facts
    carry ``p_value`` (the pattern segments do not: see :func:`estimate`)."""
    if "p_value" not in f.columns:
        return {}
    ev, p = f.expected_value.fill_null(0.0), f.p_value
    return {"svar": ibis.ifelse(p.notnull() & ~p.isnan() & (p > 0), ev * ev * (1 - p) / p, 0.0).sum()}


def group_sums(facts: ir.Table, keys: Sequence[str]) -> ir.Table:
    """Per group: n, value, tokens, successes, cost and the second moments the shrinkage needs."""
    v = _value(facts)
    k = facts.tokens.cast("float64")
    return facts.group_by(list(keys)).aggregate(
        n=facts.count(),
        value=v.sum(),
        tokens=k.sum(),
        successes=facts.successful.sum().cast("int64"),
        cost=facts.fully_loaded_cost.sum(),
        svv=(v * v).sum(),
        skk=(k * k).sum(),
        svk=(v * k).sum(),
        **_realised_var_sum(facts),
        **_call_sums(facts),
    )


def _call_sums(f: ir.Table) -> dict[str, ir.IntegerValue]:
    """``calls`` and ``unpriced_calls``, where the facts carry them: a group whose every call is
    unpriced has an unknown cost."""
    if "unpriced_calls" not in f.columns:
        return {}
    return {"calls": f.calls.sum(), "unpriced_calls": f.unpriced_calls.sum()}


def portable_bucket(key: ir.StringValue, buckets: int) -> ir.IntegerValue:
    """``int(md5(key)[:2], 16) % buckets``: the same bucket on every engine.

    ``hash()`` is engine-specific (DuckDB and Spark disagree), so bootstrap batches built on it
    would differ between engines; md5 and the position of a hex digit are the same everywhere.
    """
    digits = ibis.literal("0123456789abcdef")
    md5 = key.fill_null("").hexdigest("md5").lower()
    hi = digits.find(md5.substr(0, 1)).cast("int64")
    lo = digits.find(md5.substr(1, 1)).cast("int64")
    return ((hi * 16 + lo) % buckets).cast("int64")


def bucket_sums(facts: ir.Table, keys: Sequence[str]) -> ir.Table:
    """Per group and bootstrap batch (stable hash of work_unit_id mod :data:`BUCKETS`): the sums."""
    # unit facts carry their batch already (computed once when they are materialised)
    bucket = facts.bucket if "bucket" in facts.columns else portable_bucket(facts.work_unit_id, BUCKETS)
    v = _value(facts)
    return facts.group_by([*keys, bucket.name("bucket")]).aggregate(
        n=facts.count(),
        value=v.sum(),
        tokens=facts.tokens.cast("float64").sum(),
        successes=facts.successful.sum().cast("float64"),
        cost=facts.fully_loaded_cost.sum(),
    )


def _arr(t: pa.Table, name: str) -> np.ndarray:
    return np.nan_to_num(t.column(name).to_numpy(zero_copy_only=False).astype(np.float64), nan=0.0)


def _keys_of(t: pa.Table, keys: Sequence[str]) -> list[tuple[object, ...]]:
    cols = [t.column(k).to_pylist() for k in keys]
    return list(zip(*cols, strict=True)) if cols else [()] * t.num_rows


def _shrinkage(
    n: np.ndarray,
    V: np.ndarray,
    K: np.ndarray,
    S: np.ndarray,
    svv: np.ndarray,
    skk: np.ndarray,
    svk: np.ndarray,
) -> dict[str, np.ndarray | float]:
    """Shrinkage parameters of the groups of one partition (one workflow, one dimension)."""
    g = len(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(K > 0, V / K, np.nan)
        m = V.sum() / K.sum() if K.sum() > 0 else np.nan
        r0 = np.nan_to_num(raw)
        resid = np.maximum(svv - 2 * r0 * svk + r0 * r0 * skk, 0.0)
        s2 = resid.sum() / max(n.sum() - g, 1.0)
        se2 = np.where(K > 0, (resid + s2) / (K * K), np.nan)
        ok = ~np.isnan(raw)
        tau2 = max(float(np.var(raw[ok]) - np.mean(se2[ok])), 0.0) if ok.sum() > 1 else 0.0
        b = np.where(ok, se2 / (se2 + tau2), np.nan) if tau2 > 0 else np.where(ok, 1.0, np.nan)
        p = S.sum() / n.sum() if n.sum() > 0 else np.nan
        phat = np.where(n > 0, S / n, np.nan)
        between = float(np.nanvar(phat) - np.nanmean(p * (1 - p) / n)) if g > 1 else 0.0
        kappa = float(np.clip(p * (1 - p) / between - 1.0, 1.0, 1e4)) if between > 0 else 1e4
    if not np.isfinite(kappa):
        kappa = 1e4
    return {"raw": raw, "m": m, "b": b, "p": p, "phat": phat, "kappa": kappa}


def _band(reps: np.ndarray, lo_q: float, hi_q: float) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``reps`` (replicates x groups), its ``lo_q`` and ``hi_q`` percentiles over the
    replicates that are not NaN (NaN where none is): ``np.nanpercentile(reps, q, axis=0)``, whose
    figures these are. That one works column by column once any column holds a NaN; here the
    columns without one go through ``np.percentile`` together, which computes the same figures."""
    import warnings

    lo, hi = np.full(reps.shape[1], np.nan), np.full(reps.shape[1], np.nan)
    gaps = np.isnan(reps).any(axis=0)
    whole = ~gaps
    if whole.any():
        lo[whole], hi[whole] = np.percentile(reps[:, whole], [lo_q, hi_q], axis=0)
    if gaps.any():
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # a column of NaN only: NaN, as it should
            lo[gaps], hi[gaps] = np.nanpercentile(reps[:, gaps], [lo_q, hi_q], axis=0)
    return lo, hi


def replicate_vpt(raw: np.ndarray, rr: np.ndarray, b: np.ndarray, mb: np.ndarray) -> np.ndarray:
    """One bootstrap replicate of the shrunk value per token, ``(1 - b) raw + sqrt(1 - b) (rr - raw) + b mb``
    (at least 0).

    ``rr`` and ``mb`` are the replicate's raw estimate and workflow mean. The group's own deviation
    enters with sqrt(1 - b), not (1 - b): the normal-normal posterior's sd is sqrt(1 - b) times
    the raw estimate's, and recomputing ``(1 - b) rr + b mb`` with b held fixed would give (1 - b)
    times, too narrow for a heavily shrunk group.
    """
    base = np.nan_to_num(raw)
    # a value per token is never negative: the wider move can overshoot below 0, the draw is 0
    return np.maximum((1 - b) * base + np.sqrt(1 - b) * (rr - base) + b * mb, 0.0)


def estimate(
    sums: pa.Table,
    buckets: pa.Table,
    keys: Sequence[str],
    partition: Sequence[str] = (),
    *,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = 0,
    level: float = 0.95,
    value_uncertainty: Mapping[str, tuple[float, int]] | None = None,
) -> pa.Table:
    """Shrunk value per token, success rate and cost per success with bootstrap intervals, per group.

    ``sums`` and ``buckets`` are the fetched :func:`group_sums` and :func:`bucket_sums` of the
    groups ``keys``; shrinkage pulls each group towards the mean of its ``partition`` (the columns
    of ``keys`` that name the population, e.g. the workflow), never across partitions.

    ``value_uncertainty`` maps a workflow (the ``workflow`` column of ``partition``) to the
    relative standard error of the unit value its values rest on and its degrees of freedom (a
    value measured from outcome periods, :mod:`yieldmeter.scoring.unit_value`). Every replicate
    then also scales the workflow's values by ``1 + se x t(dof)`` (at least 0), so the value per
    token intervals carry the unit value's uncertainty beside the sampling noise of the units.

    Where ``sums`` carry ``svar`` (:func:`group_sums`: the sum of each unit's ``p (1 - p) v^2``),
    every replicate adds a normal draw with sd ``sqrt(svar) / K`` (before the unit value's scale,
    then floored at 0): the interval is for the value the group's own units realise (each
    delivers v or nothing), not only for their expected rate. An approximation: symmetric, and
    without the spread of v itself among delivered units; the validity report measures how it
    covers (docs/validity.md).
    """
    g = sums.num_rows
    n = _arr(sums, "n")
    V, K, S, C = (_arr(sums, c) for c in ("value", "tokens", "successes", "cost"))
    svv, skk, svk = (_arr(sums, c) for c in ("svv", "skk", "svk"))
    raw, m, b, phat = (np.full(g, np.nan) for _ in range(4))
    p, kappa = np.full(g, np.nan), np.full(g, 1e4)
    parts: dict[tuple[object, ...], list[int]] = {}
    for i, key in enumerate(_keys_of(sums, partition)):
        parts.setdefault(key, []).append(i)
    pidx = np.empty(g, dtype=np.int64)
    for j, idx_list in enumerate(parts.values()):
        pidx[idx_list] = j
    for idx_list in parts.values():
        ix = np.array(idx_list)
        sh = _shrinkage(n[ix], V[ix], K[ix], S[ix], svv[ix], skk[ix], svk[ix])
        raw[ix], b[ix], phat[ix] = sh["raw"], sh["b"], sh["phat"]
        m[ix], p[ix], kappa[ix] = sh["m"], sh["p"], sh["kappa"]
    bz = np.nan_to_num(b, nan=1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        vpt = np.where(np.isnan(raw), np.nan, (1 - bz) * np.nan_to_num(raw) + bz * m)
        rate = (S + kappa * p) / (n + kappa)
        cps = np.where(rate > 0, C / (n * rate), np.nan)

    # bootstrap over batches, every group at once
    index = {k: i for i, k in enumerate(_keys_of(sums, keys))}
    # the draws must not depend on the order an engine returns the batches in
    buckets = buckets.sort_by([(c, "ascending") for c in (*keys, "bucket")])
    gi = np.array([index[k] for k in _keys_of(buckets, keys)], dtype=np.int64)
    bV, bK, bS, bC, bn = (_arr(buckets, c) for c in ("value", "tokens", "successes", "cost", "n"))
    rng = np.random.default_rng(seed)
    scale = np.ones((replicates, len(parts)))
    if value_uncertainty and "workflow" in partition:
        # one draw per workflow and replicate, shared by its partitions (a pattern dimension), from
        # a stream of the workflow's own: the same draws whatever order the groups come in
        at = list(partition).index("workflow")
        of_part = np.array([str(key[at]) for key in parts], dtype=object)
        for wf in sorted(set(of_part.tolist())):
            se, dof = value_uncertainty.get(wf, (0.0, 0))
            if se > 0 and dof > 0:
                t = np.random.default_rng([seed, zlib.crc32(wf.encode())]).standard_t(dof, size=replicates)
                scale[:, of_part == wf] = np.maximum(1.0 + se * t, 0.0)[:, None]
    # the realised value's own noise: sd sqrt(svar) / K of the units the group has, a normal draw
    # per group and replicate, drawn in the order of the groups' keys (not the order an engine
    # returned them in)
    with np.errstate(divide="ignore", invalid="ignore"):
        realised_sd = (
            np.where(K > 0, np.sqrt(_arr(sums, "svar")) / K, 0.0) if "svar" in sums.column_names else None
        )
    if realised_sd is not None and realised_sd.any():
        group_keys = list(index)
        rank = np.empty(g, dtype=np.int64)
        rank[sorted(range(g), key=lambda i: repr(group_keys[i]))] = np.arange(g)
        noise_rng = np.random.default_rng([seed, 2])
    else:
        realised_sd = None
    reps_vpt = np.empty((replicates, g))
    reps_rate = np.empty((replicates, g))
    reps_cps = np.empty((replicates, g))
    for r in range(replicates):
        w = rng.poisson(1.0, size=len(gi)).astype(np.float64)
        Vb = np.bincount(gi, w * bV, minlength=g)
        Kb = np.bincount(gi, w * bK, minlength=g)
        Sb = np.bincount(gi, w * bS, minlength=g)
        Cb = np.bincount(gi, w * bC, minlength=g)
        nb = np.bincount(gi, w * bn, minlength=g)
        # the population's own mean and rate are re-estimated in every replicate too
        P = len(parts)
        with np.errstate(divide="ignore", invalid="ignore"):
            mb = (np.bincount(pidx, Vb, minlength=P) / np.bincount(pidx, Kb, minlength=P))[pidx]
            pb = (np.bincount(pidx, Sb, minlength=P) / np.bincount(pidx, nb, minlength=P))[pidx]
            rr = np.where(Kb > 0, Vb / Kb, np.nan)
            noise = 0.0 if realised_sd is None else noise_rng.standard_normal(g)[rank] * realised_sd
            # the realised noise is in dollars of the same unit value, so the value's draw scales it too
            reps_vpt[r] = np.maximum(
                (replicate_vpt(raw, np.nan_to_num(rr, nan=0.0), bz, mb) + noise) * scale[r, pidx], 0.0
            )
            reps_vpt[r][np.isnan(rr)] = np.nan
            rb = (Sb + kappa * pb) / (nb + kappa)
            reps_rate[r] = rb
            reps_cps[r] = np.where(rb > 0, Cb / (nb * rb), np.nan)
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2

    (vlo, vhi), (rlo, rhi), (clo, chi) = (_band(r, lo_q, hi_q) for r in (reps_vpt, reps_rate, reps_cps))
    if "unpriced_calls" in sums.column_names:  # every call unpriced: the cost is unknown, not $0
        calls = _arr(sums, "calls")
        unknown = (calls > 0) & (_arr(sums, "unpriced_calls") >= calls)
        C, cps, clo, chi = (np.where(unknown, np.nan, a) for a in (C, cps, clo, chi))

    def col(a: np.ndarray) -> pa.Array:
        a = np.asarray(a, dtype=np.float64)
        return pa.array(a, mask=~np.isfinite(a))

    out = {k: sums.column(k) for k in keys}
    out.update(
        n=pa.array(n.astype(np.int64)),
        tokens=pa.array(K),
        value=pa.array(V),
        successes=pa.array(S.astype(np.int64)),
        fully_loaded_cost=col(C),
        value_per_token_raw=col(raw),
        value_per_token=col(vpt),
        value_per_token_low=col(vlo),
        value_per_token_high=col(vhi),
        shrinkage=col(b),
        workflow_value_per_token=col(m),
        success_rate_raw=col(phat),
        success_rate=col(rate),
        success_rate_low=col(rlo),
        success_rate_high=col(rhi),
        cost_per_success=col(cps),
        cost_per_success_low=col(clo),
        cost_per_success_high=col(chi),
    )
    return pa.table(out)


# -- pattern segments -------------------------------------------------------------------------

PATTERN_DIMENSIONS: tuple[str, ...] = (
    "model",
    "session_length",
    "iterations",
    "prompt_size",
    "tool_use",
    "time_to_first_acceptance",
)


def _bucket(x: ir.NumericValue, edges: Sequence[tuple[float, str]], last: str) -> ir.StringValue:
    return ibis.cases(*((x <= edge, label) for edge, label in edges), else_=last)


def with_segments(facts: ir.Table) -> ir.Table:
    """Facts plus one string column per pattern dimension.

    session_length: units in the same session (parent_id): 1, 2-5, 6-20, 21+;
    iterations: calls per unit: 1, 2-3, 4-10, 11+; prompt_size: input tokens per call:
    <=1k, 1k-4k, 4k-16k, >16k; tool_use: tools / no tools; time_to_first_acceptance:
    <=1 min, 1-10 min, 10-60 min, >1 h, never accepted.
    """
    f = facts
    # units per session by aggregate and join (a hash join; a window would sort every unit)
    f = f.mutate(_session=ibis.coalesce(f.parent_id, f.work_unit_id))
    sizes = f.group_by(_size_session=f._session).aggregate(_session_n=f.count())
    f = f.join(sizes, f._session == sizes._size_session)
    session_n = f._session_n
    per_call = f.input_tokens.cast("float64") / ibis.greatest(f.calls, 1).cast("float64")
    # to the microsecond on every engine: Spark's epoch_seconds drops the fraction, which moved a
    # unit accepted after 60.26 s into "<=1 min" there
    tta = elapsed_seconds(f.started_at, f.first_accept_at) / 60.0
    return f.mutate(
        session_length=_bucket(session_n, [(1, "1"), (5, "2-5"), (20, "6-20")], "21+"),
        iterations=_bucket(f.calls, [(1, "1"), (3, "2-3"), (10, "4-10")], "11+"),
        prompt_size=_bucket(per_call, [(1000, "<=1k"), (4000, "1k-4k"), (16000, "4k-16k")], ">16k"),
        tool_use=ibis.ifelse(f.tool_use, "tools", "no tools"),
        time_to_first_acceptance=ibis.ifelse(
            f.first_accept_at.isnull(),
            "never accepted",
            _bucket(tta, [(1, "<=1 min"), (10, "1-10 min"), (60, "10-60 min")], ">1 h"),
        ),
        model=f.model.fill_null("(none)"),
    )


def segment_frames(
    facts: ir.Table, dimensions: Sequence[str] = PATTERN_DIMENSIONS, *, segmented: bool = False
) -> ir.Table:
    """Facts unpivoted: one row per unit and dimension, with ``dimension`` and ``segment`` columns.

    ``segmented``: ``facts`` already carries the :func:`with_segments` columns.
    """
    s = facts if segmented else with_segments(facts)
    cols = ["workflow", "work_unit_id", "expected_value", "tokens", "successful", "fully_loaded_cost"]
    cols += [c for c in ("calls", "unpriced_calls", "bucket") if c in s.columns]
    parts = [s.select(*cols, dimension=ibis.literal(d), segment=s[d].cast("string")) for d in dimensions]
    return ibis.union(*parts)
