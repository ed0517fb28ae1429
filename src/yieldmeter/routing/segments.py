"""Per segment (workflow x task type) and model: the evidence routing reads, as Ibis expressions.

A *routing unit* is one work unit with the model that served it (the model that produced most of
its tokens), its fully loaded cost and whether it was a successful outcome by the value engine's
definition (:func:`yieldmeter.metrics.units.unit_facts`: accepted, quality threshold, risk class and
latency SLO met, acted where the workflow records actions).

:func:`segment_model_stats` aggregates routing units to one row per workflow x task type x model
with the sufficient statistics every test and interval needs:

- ``n`` work units, ``successes`` = sum(successful)
- ``cost_sum`` = sum(fully loaded cost), ``cost_sq_sum`` = sum(cost^2),
  ``cost_success_sum`` = sum(cost x successful) (for the delta method, see :mod:`.stats`)
- ``ev_sum`` = sum(expected value) (null scores count as 0), ``ev_units`` = units with a score
- ``unpriced_units``: units with at least one unpriced call (their cost is understated)
- latency of the slowest call per unit, nearest-rank percentiles p50/p95/p99
  (``k = ceil(q n)``-th smallest) with a distribution-free ~95% interval: the order statistics
  of rank ``floor(nq - 1.96 sqrt(nq(1-q)))`` and ``ceil(nq + 1.96 sqrt(nq(1-q))) + 1``, clipped to
  [1, n] (normal approximation to the binomial count of units below the quantile).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

UNASSIGNED = "(unassigned)"
NO_TASK = "(any)"
UNKNOWN_MODEL = "(unknown)"
KEYS = ("workflow", "task_type", "model")
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
Z95 = 1.959963984540054

#: Columns a routing-units table carries (see :func:`routing_units`).
UNIT_COLUMNS = {
    "work_unit_id": "string",
    "workflow": "string",
    "task_type": "string",
    "model": "string",
    "started_at": "timestamp('UTC')",
    "fully_loaded_cost": "float64",
    "successful": "boolean",
    "latency_ms": "float64",
    "expected_value": "float64",
    "unpriced_calls": "int64",
}


def routing_units(facts: ir.Table) -> ir.Table:
    """Routing units from the value engine's unit facts (one row per work unit with calls)."""
    f = facts.filter(facts.calls > 0)
    return f.select(
        work_unit_id=f.work_unit_id,
        workflow=f.workflow.fill_null(UNASSIGNED),
        task_type=f.task_type.fill_null(NO_TASK),
        model=f.model.fill_null(UNKNOWN_MODEL),
        started_at=f.started_at,
        fully_loaded_cost=f.fully_loaded_cost.cast("float64"),
        successful=f.successful.fill_null(False),
        latency_ms=f.max_duration_ms.cast("float64"),
        expected_value=f.expected_value.cast("float64"),
        unpriced_calls=f.unpriced_calls.cast("int64"),
    )


def in_window(units: ir.Table, start: object = None, end: object = None) -> ir.Table:
    """Units started in [start, end) (either bound may be None)."""
    if start is not None:
        units = units.filter(units.started_at >= ibis.literal(start))
    if end is not None:
        units = units.filter(units.started_at < ibis.literal(end))
    return units


def _latency_percentiles(units: ir.Table) -> ir.Table:
    lat = units.filter(units.latency_ms.notnull())
    w = ibis.window(group_by=[lat[k] for k in KEYS], order_by=lat.latency_ms)
    lat = lat.mutate(rank=ibis.row_number().over(w) + 1, nl=lat.count().over(group_by=[lat[k] for k in KEYS]))
    aggs: dict[str, ir.Value] = {}
    for name, q in QUANTILES.items():
        nq = lat.nl.cast("float64") * q
        half = Z95 * (nq * (1 - q)).sqrt()
        k = nq.ceil().cast("int64")
        lo = ibis.greatest((nq - half).floor().cast("int64"), 1)
        hi = ibis.least((nq + half).ceil().cast("int64") + 1, lat.nl)
        aggs[f"latency_{name}_ms"] = lat.latency_ms.max(where=lat["rank"] == ibis.greatest(k, 1))
        aggs[f"latency_{name}_low_ms"] = lat.latency_ms.max(where=lat["rank"] == lo)
        aggs[f"latency_{name}_high_ms"] = lat.latency_ms.max(where=lat["rank"] == hi)
    return lat.group_by(list(KEYS)).aggregate(**aggs)


def segment_model_stats(units: ir.Table, workflows: ir.Table) -> ir.Table:
    """One row per workflow x task type x model: sufficient statistics, latency and the constraints.

    The workflow's ``risk_class``, ``latency_slo_ms``, ``quality_threshold`` and ``unit_value`` ride
    along so a decision needs nothing else.
    """
    u = units
    cost = u.fully_loaded_cost.fill_null(0.0)
    ok = u.successful.cast("int64")
    base = u.group_by(list(KEYS)).aggregate(
        n=u.count(),
        successes=ok.sum(),
        cost_sum=cost.sum(),
        cost_sq_sum=(cost * cost).sum(),
        cost_success_sum=(cost * ok.cast("float64")).sum(),
        ev_sum=u.expected_value.fill_null(0.0).sum(),
        ev_units=u.expected_value.notnull().cast("int64").sum(),
        unpriced_units=(u.unpriced_calls.fill_null(0) > 0).cast("int64").sum(),
        first_at=u.started_at.min(),
        last_at=u.started_at.max(),
    )
    lat = _latency_percentiles(u)
    j = base.left_join(lat, list(KEYS))
    j = j.select(*base.columns, *[c for c in lat.columns if c not in KEYS])
    wf = workflows.select(
        wf_name=workflows.workflow,
        risk_class=workflows.risk_class,
        latency_slo_ms=workflows.latency_slo_ms.cast("float64"),
        quality_threshold=workflows.quality_threshold.cast("float64"),
        unit_value=workflows.unit_value.cast("float64"),
    )
    out = j.left_join(wf, j.workflow == wf.wf_name).drop("wf_name")
    return out.order_by(list(KEYS))


def window_span(units: ir.Table) -> ir.Table:
    """First and last unit start of the whole table (one row): the evidence period."""
    return units.aggregate(
        first_at=units.started_at.min(), last_at=units.started_at.max(), units=units.count()
    )
