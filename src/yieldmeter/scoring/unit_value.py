"""Unit values measured from outcomes, beside the value the workflow declares.

A workflow declares what one successful unit is worth (``unit_value`` in ``yieldmeter.yaml``);
its outcomes say what the units really delivered. Where monetary outcomes exist, the value an
expected value rests on is the measured one:

- **A unit's own outcome.** A unit tied to monetary outcomes (``outcomes.work_unit_id``) whose
  attributed benefit ``sum(monetary_value x attribution_share)`` is positive is worth that
  benefit: the loss a caught fraud avoided, not the fraud workflow's average. (An outcome that
  says "no value" labels its unit, which keeps its workflow's value.)
- **The workflow's periods.** A workflow's outcomes for periods (no ``work_unit_id``) state the
  benefit of the units that started inside ``[period_start, period_end)``. Outcomes for the same
  period add (two metrics of one week); a period needs an end, and a period no unit started in
  is left out (its benefit cannot be spread over anyone). The measured unit value is the periods'
  attributed benefit over the successes expected among their units, ``sum(benefit) /
  sum(p_value)``, leaving out units valued by their own outcome: over all the periods together,
  the expected values of their units then add up to the benefit the outcomes report.
- Its standard error comes from the spread between periods (a ratio estimator with
  ``periods - 1`` degrees of freedom).
- The measured value is used from :data:`MIN_PERIODS` periods (one period says nothing of its
  own noise) and :data:`MIN_EXPECTED_SUCCESSES` expected successes in them. Periods that
  overlap without being the same period are not used: which units each covers is ambiguous.
  Otherwise the declared value stands, and the report's note says why.
- Outcomes at ``anecdote`` evidence measure nothing here (they still label their unit).
- A workflow with no declared value but measured outcomes gets the measured value.

Nothing is read from the truth of a simulation: these are the user's own outcome rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yieldmeter.metrics.tables import Tables
from yieldmeter.schema import EvidenceLevel

#: Expected successes a workflow's outcome periods must hold before their value replaces the
#: declared one: below it, one period's noise would set every unit's value.
MIN_EXPECTED_SUCCESSES = 20.0
#: Outcome periods a measured value needs: the spread between periods is its standard error.
MIN_PERIODS = 2


@dataclass(frozen=True)
class UnitValue:
    """What one successful unit of a workflow is worth, and where that figure came from."""

    workflow: str
    declared: float | None
    measured: float | None
    used: float | None
    #: "measured" (outcome periods), "declared" (yieldmeter.yaml) or "none"
    source: str
    #: attributed benefit of the workflow's outcome periods, and the expected successes among
    #: the units they cover
    period_benefit: float = 0.0
    expected_successes: float = 0.0
    periods: int = 0
    #: the measured value's standard error relative to it, from the spread of its periods
    #: (``periods - 1`` degrees of freedom); None for a declared value
    relative_se: float | None = None
    #: units valued by an outcome of their own
    own_outcome_units: int = 0
    note: str = ""

    def row(self) -> dict[str, object]:
        """The ``unit_values`` table's columns but ``scored_at``, as ``yieldmeter score`` shows them."""
        return {
            "workflow": self.workflow,
            "unit_value": self.used,
            "source": self.source,
            "declared": self.declared,
            "measured": self.measured,
            "relative_se": self.relative_se,
            "periods": self.periods,
            "period_benefit": self.period_benefit,
            "expected_successes": self.expected_successes,
            "own_outcome_units": self.own_outcome_units,
            "note": self.note,
        }


def monetary_outcomes(t: Tables) -> ir.Table:
    """Outcomes that measure money, with their attributed benefit; anecdotes left out."""
    o = t.outcomes
    measures = o.evidence_level.fill_null("") != EvidenceLevel.ANECDOTE.value
    o = o.filter(o.monetary_value.notnull() & measures)
    return o.select(
        "workflow",
        "work_unit_id",
        "period_start",
        "period_end",
        benefit=o.monetary_value * o.attribution_share.fill_null(1.0),
    )


def _us(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch (nulls as the smallest int64)."""
    c = pc.cast(col, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(c.fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False), dtype=np.int64)


def unit_values(
    unit_ids: pa.ChunkedArray | pa.Array,
    workflows: np.ndarray,
    started_at: pa.ChunkedArray | pa.Array,
    p: np.ndarray,
    declared: dict[str, float],
    outcomes: pa.Table,
    *,
    min_successes: float = MIN_EXPECTED_SUCCESSES,
) -> tuple[np.ndarray, list[UnitValue]]:
    """Per unit the value its expected value rests on (NaN where none), and per workflow a report.

    ``outcomes`` holds the rows of :func:`monetary_outcomes`; ``p`` is each unit's p_value.
    """
    n = len(workflows)
    value = np.full(n, np.nan)
    own = outcomes.filter(pc.is_valid(outcomes.column("work_unit_id")))
    own_units = np.zeros(n, dtype=bool)
    if own.num_rows:
        per_unit = own.group_by("work_unit_id").aggregate([("benefit", "sum")])
        ids = per_unit.column("work_unit_id")
        idx = np.asarray(pc.index_in(unit_ids, value_set=ids).fill_null(-1).to_numpy(zero_copy_only=False))
        benefit = np.asarray(per_unit.column("benefit_sum").to_numpy(zero_copy_only=False), dtype=float)
        own_units = idx >= 0
        # an outcome that says "no value" labels its unit; the unit keeps its workflow's value
        own_units[own_units] = benefit[idx[own_units]] > 0
        value[own_units] = benefit[idx[own_units]]
    for_periods = outcomes.filter(
        pc.and_(pc.is_null(outcomes.column("work_unit_id")), pc.is_valid(outcomes.column("workflow")))
    )
    dated = pc.and_(
        pc.is_valid(for_periods.column("period_start")), pc.is_valid(for_periods.column("period_end"))
    )
    undated = np.asarray(for_periods.filter(pc.invert(dated)).column("workflow").to_pylist(), dtype=object)
    periods = for_periods.filter(dated)
    # outcomes of one workflow for the same period add up: one period, several metrics
    periods = periods.group_by(["workflow", "period_start", "period_end"], use_threads=False).aggregate(
        [("benefit", "sum")]
    )
    p_wf = np.asarray(periods.column("workflow").to_pylist(), dtype=object)
    p_start, p_end = _us(periods.column("period_start")), _us(periods.column("period_end"))
    p_benefit = np.asarray(periods.column("benefit_sum").to_numpy(zero_copy_only=False), dtype=float)
    start = _us(started_at)
    reports = []
    names = sorted({w for w in workflows.tolist() if w is not None} | set(declared) | set(p_wf.tolist()))
    for w in names:
        in_wf = workflows == w
        decl = declared.get(w)
        mine = np.flatnonzero(p_wf == w)
        mine = mine[np.argsort(p_start[mine], kind="stable")]
        n_undated = int((undated == w).sum())
        # the workflow's units without an outcome of their own: what its periods' benefit is spread over
        rest = np.flatnonzero(in_wf & ~own_units)
        rest_start, rest_p = start[rest], p[rest]
        covered = np.zeros(len(rest), dtype=bool)
        expected, benefits, used_periods = [], [], []
        for j in mine.tolist():
            inside = (rest_start >= p_start[j]) & (rest_start < p_end[j])
            e = float(rest_p[inside].sum())
            if e > 0:  # a period with no expected success has no one to spread its benefit over
                expected.append(e)
                benefits.append(float(p_benefit[j]))
                used_periods.append(j)
                covered |= inside
        empty = len(mine) - len(expected)
        k = len(expected)
        ends = np.maximum.accumulate(p_end[used_periods])[:-1] if k > 1 else np.array([], dtype=np.int64)
        overlap = bool(k > 1 and (p_start[used_periods][1:] < ends).any())
        benefit = float(sum(benefits))
        successes = float(rest_p[covered].sum())
        # overlapping periods would count a unit's benefit twice: nothing is measured from them
        measured = benefit / successes if k and successes > 0 and not overlap else None
        rel_se = None
        if measured is not None and measured > 0 and k >= MIN_PERIODS:
            # ratio estimator: Var(sum B / sum E) ~ sum (B_j - r E_j)^2 / (sum E)^2 x k / (k - 1)
            resid = np.asarray(benefits) - measured * np.asarray(expected)
            rel_se = float(np.sqrt((resid**2).sum() * k / (k - 1)) / successes / measured)
        if rel_se is not None and successes >= min_successes:
            used, source, note = measured, "measured", ""
        else:
            used, source = decl, "declared" if decl is not None else "none"
            if not len(mine):
                note = f"{n_undated} outcome(s) with no period end: no period to measure" if n_undated else ""
            elif overlap:
                note = "its outcome periods overlap, so which units each one covers is ambiguous"
            elif k < MIN_PERIODS:
                note = (
                    f"{k} outcome period with units in it: one period says nothing of its own noise"
                    if k
                    else "no expected success among the units started inside its outcome periods"
                )
            elif measured is None or measured <= 0:
                note = "its outcome periods report no benefit"
            else:
                note = (
                    f"{successes:.1f} expected successes in its outcome periods, fewer than "
                    f"{min_successes:.0f}: too few to measure a unit value"
                )
        left_out = (
            f"{empty} outcome period(s) with no expected success left out" if empty else "",
            f"{n_undated} outcome(s) with no period end left out" if n_undated and len(mine) else "",
        )
        note = "; ".join(x for x in (note, *left_out) if x)
        if used is not None:
            value[rest] = used
        reports.append(
            UnitValue(
                workflow=w,
                declared=decl,
                measured=measured,
                used=used,
                source=source,
                period_benefit=benefit,
                expected_successes=successes,
                periods=k,
                relative_se=rel_se if source == "measured" else None,
                own_outcome_units=int((in_wf & own_units).sum()),
                note=note,
            )
        )
    return value, reports
