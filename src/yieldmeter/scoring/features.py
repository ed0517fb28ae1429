"""Per work unit features of the value score, as one Ibis expression.

One row per work unit with: the raw counts of every explicit and implicit
signal kind, the mean rating, the calls, tokens, failed calls, calls slower
than the workflow's latency SLO, human effort minutes, and the unit's label
where the organisation has one. :func:`design_matrix` turns those columns into
the model's features (see :mod:`yieldmeter.scoring.priors` for the encoding).

Labels, never features:

- the latest ``value_confirmed`` (1) / ``value_denied`` (0) signal of a unit;
- else an outcome row tied to the unit (``outcomes.work_unit_id``): 1, unless
  its ``monetary_value`` is zero or negative (the outcome says "no value").

``label_source`` says where the label came from: the label signal's ``source`` (e.g. a QA
audit, a case-management system; ``signal`` when it names none), or ``outcome``. Sources
differ in how often they are wrong, and calibration estimates that per source.
"""

from __future__ import annotations

from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from yieldmeter.metrics.tables import Tables
from yieldmeter.schema import EVIDENCE_RANK, EXPLICIT_SIGNALS, IMPLICIT_SIGNALS, LABEL_SIGNALS
from yieldmeter.scoring.priors import FEATURES

SIGNAL_KINDS: tuple[str, ...] = EXPLICIT_SIGNALS + IMPLICIT_SIGNALS
COUNTED_SIGNALS: tuple[str, ...] = tuple(k for k in SIGNAL_KINDS if k != "rated")


def signal_counts(t: Tables) -> ir.Table:
    """Per work unit: ``n_<kind>`` for every known kind, ``rating`` (mean), label and its time."""
    s = t.signals.filter(t.signals.work_unit_id.notnull())
    aggs: dict[str, Any] = {f"n_{k}": (s.kind == k).sum().cast("int64") for k in COUNTED_SIGNALS}
    # a rating without a number (a categorical or text score's label) is no rating of the mean:
    # counted, it made the mean null, read as 0, the worst rating
    rated = (s.kind == "rated") & s.value.notnull()
    aggs["n_rated"] = rated.sum().cast("int64")
    aggs["rating"] = s.value.mean(where=rated)
    aggs["n_signals"] = s.count()
    aggs["label_kind"] = s.kind.argmax(s.ts, where=s.kind.isin(LABEL_SIGNALS))
    aggs["label_origin"] = s.source.fill_null("signal").argmax(s.ts, where=s.kind.isin(LABEL_SIGNALS))
    return s.group_by(s.work_unit_id).aggregate(**aggs)


def call_stats(t: Tables) -> ir.Table:
    """Per work unit: calls, tokens, failed calls, calls over the workflow's latency SLO, slowest call."""
    c = t.calls.filter(t.calls.work_unit_id.notnull())
    wf = t.workflows.select(slo_workflow=t.workflows.workflow, slo=t.workflows.latency_slo_ms)
    c = c.left_join(wf, c.workflow == wf.slo_workflow)
    requests = c.request_count.fill_null(1)
    return c.group_by(c.work_unit_id).aggregate(
        n_calls=requests.sum().cast("int64"),
        n_tokens=(c.input_tokens.fill_null(0) + c.output_tokens.fill_null(0)).sum().cast("int64"),
        n_errors=requests.sum(where=c.status == "error").fill_null(0).cast("int64"),
        n_over_slo=requests.sum(where=c.slo.notnull() & (c.duration_ms > c.slo)).fill_null(0).cast("int64"),
        max_duration_ms=c.duration_ms.max(),
        first_call_at=c.ts.min(),
    )


def effort_minutes(t: Tables) -> ir.Table:
    e = t.effort
    return e.group_by(e.work_unit_id).aggregate(effort_minutes=e.minutes.sum())


def outcome_labels(t: Tables) -> ir.Table:
    """Per work unit tied to outcomes: label (1/0) and the strongest evidence rank among them."""
    o = t.outcomes.filter(t.outcomes.work_unit_id.notnull())
    rank = ibis.cases(
        *((o.evidence_level == level, rank) for level, rank in EVIDENCE_RANK.items()),
        else_=1,
    )
    positive = o.monetary_value.isnull() | (o.monetary_value > 0)
    return o.group_by(o.work_unit_id).aggregate(
        outcome_label=positive.cast("int64").max(),
        evidence_rank=rank.max(),
    )


def unit_features(t: Tables) -> ir.Table:
    """One row per work unit with every raw feature column and its label (null when unlabelled)."""
    u = t.work_units.select("work_unit_id", "workflow", "started_at")
    sig = signal_counts(t)
    calls = call_stats(t)
    eff = effort_minutes(t)
    out = outcome_labels(t)
    j = (
        u.left_join(sig, u.work_unit_id == sig.work_unit_id)
        .select(~ibis.selectors.endswith("_right"))
        .left_join(calls, "work_unit_id")
        .select(~ibis.selectors.endswith("_right"))
        .left_join(eff, "work_unit_id")
        .select(~ibis.selectors.endswith("_right"))
        .left_join(out, "work_unit_id")
        .select(~ibis.selectors.endswith("_right"))
    )
    label = ibis.cases(
        (j.label_kind == "value_confirmed", 1),
        (j.label_kind == "value_denied", 0),
        else_=j.outcome_label,
    )
    counts = {f"n_{k}": j[f"n_{k}"].fill_null(0) for k in (*COUNTED_SIGNALS, "rated")}
    return j.select(
        "work_unit_id",
        "workflow",
        **counts,
        rating=j.rating,
        n_signals=j.n_signals.fill_null(0),
        n_calls=j.n_calls.fill_null(0),
        n_tokens=j.n_tokens.fill_null(0),
        n_errors=j.n_errors.fill_null(0),
        n_over_slo=j.n_over_slo.fill_null(0),
        effort_minutes=j.effort_minutes.fill_null(0.0),
        label=label.cast("int64"),
        label_source=ibis.cases(
            (j.label_kind.notnull(), j.label_origin.fill_null("signal")),
            (j.outcome_label.notnull(), "outcome"),
            else_=ibis.null("string"),
        ),
        evidence_rank=j.evidence_rank,
        # when the unit started, as the unit facts have it (its first call where it does not say)
        started_at=ibis.coalesce(j.started_at, j.first_call_at),
    )


def _col(data: pa.Table, name: str, dtype: Any = np.float64) -> np.ndarray:
    arr = data.column(name).to_numpy(zero_copy_only=False)
    if arr.dtype == object:
        arr = np.array([np.nan if v is None else v for v in arr], dtype=np.float64)
    return np.nan_to_num(arr.astype(dtype, copy=False), nan=0.0)


def rating_feature(rating: np.ndarray, n_rated: np.ndarray) -> np.ndarray:
    """Mean rating on [-1, 1]: a 0-1 scale maps 0.5 to 0; a 1-5 scale maps 3 to 0; no rating is 0."""
    r = np.where(rating > 1.0, (rating - 3.0) / 2.0, (rating - 0.5) * 2.0)
    return np.where(n_rated > 0, np.clip(r, -1.0, 1.0), 0.0)


def design_matrix(data: pa.Table) -> np.ndarray:
    """The feature matrix, columns in :data:`FEATURES` order, from :func:`unit_features` rows.

    Encodings: signal counts ``log2(1 + n)``; ``calls`` ``max(log2(calls), 0)`` (one call is 0);
    ``tokens`` ``log10(max(tokens, 1) / 1000)``; ``error_share`` and ``latency_over_slo`` as shares of
    calls; ``effort`` ``log2(1 + minutes)``.
    """
    n = data.num_rows
    x = np.zeros((n, len(FEATURES)), dtype=np.float64)
    calls = _col(data, "n_calls")
    denom = np.maximum(calls, 1.0)
    for i, f in enumerate(FEATURES):
        if f == "rated":
            x[:, i] = rating_feature(_col(data, "rating"), _col(data, "n_rated"))
        elif f == "calls":
            x[:, i] = np.maximum(np.log2(np.maximum(calls, 1.0)), 0.0)
        elif f == "tokens":
            x[:, i] = np.log10(np.maximum(_col(data, "n_tokens"), 1.0) / 1000.0)
        elif f == "error_share":
            x[:, i] = _col(data, "n_errors") / denom
        elif f == "latency_over_slo":
            x[:, i] = _col(data, "n_over_slo") / denom
        elif f == "effort":
            x[:, i] = np.log2(1.0 + _col(data, "effort_minutes"))
        else:
            x[:, i] = np.log2(1.0 + _col(data, f"n_{f}"))
    return x
