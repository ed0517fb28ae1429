"""Value per token: compared only inside one workflow, or normalised within each workflow.

    value_per_token = sum(expected_value) / sum(input_tokens + output_tokens)

over the work units of one workflow, where expected_value = p_value x the unit's value (its own
monetary outcome, else its workflow's unit value, measured from outcomes or declared: see
:mod:`yieldmeter.scoring.unit_value`). A workflow's unit value is priced against its own
outcome definition (a routed claim, a caught fraud, a merged change), so a dollar per token in
one workflow and in another are not the same kind of dollar: comparing them raw is refused
(:class:`CrossWorkflowComparison`).

Normalised comparison: every unit's value per token is turned into its percentile rank inside
its own workflow (0 = the workflow's least valuable per token, 1 = its most); groups are then
compared on their mean percentile, mean_percentile +- 1.96 x sd / sqrt(n) as the interval.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from yieldmeter.errors import InputError
from yieldmeter.metrics.period import UNASSIGNED, Window

VPT_DIMENSIONS: tuple[str, ...] = ("model", "team", "task_type", "user_id", "workflow")


class CrossWorkflowComparison(InputError):
    """Value per token asked across workflows without normalisation."""

    def __init__(self, workflows: list[str]) -> None:
        self.workflows = workflows
        shown = ", ".join(workflows[:5]) + (" ..." if len(workflows) > 5 else "")
        super().__init__(
            f"value per token is only comparable inside one workflow; the data holds {len(workflows)} "
            f"({shown}). Each workflow prices its unit value against its own outcome definition, so a "
            "dollar per token in one is not the same dollar in another. Pass --workflow W to compare "
            "inside one, or --normalise to compare percentiles within each workflow."
        )


def value_units(facts: ir.Table, window: Window | None = None) -> ir.Table:
    """Facts of the period with ``workflow`` filled and a per-unit ``unit_value_per_token``."""
    f = window.filter(facts, "started_at") if window is not None else facts
    f = f.mutate(workflow=f.workflow.fill_null(UNASSIGNED), model=f.model.fill_null("(none)"))
    return f.mutate(
        unit_value_per_token=ibis.ifelse(
            f.tokens > 0, f.expected_value.fill_null(0.0) / f.tokens.cast("float64"), ibis.null("float64")
        )
    )


def check_dimension(by: str) -> None:
    """Refuse a grouping of value per token that is not one of :data:`VPT_DIMENSIONS`."""
    if by not in VPT_DIMENSIONS:
        raise InputError(
            f"cannot group value per token by {by!r}; choose from {', '.join(VPT_DIMENSIONS)}", field="by"
        )


def unit_percentiles(facts: ir.Table, window: Window | None = None) -> ir.Table:
    """Per work unit with a value per token in the period: its workflow, the other
    :data:`VPT_DIMENSIONS` (as in the facts) and ``percentile``, the percentile rank of its value
    per token inside its workflow (0 = the workflow's least valuable per token, 1 = its most)."""
    f = value_units(facts, window)
    f = f.filter(f.unit_value_per_token.notnull() & f.expected_value.notnull())
    pct = ibis.percent_rank().over(group_by=f.workflow, order_by=f.unit_value_per_token)
    return f.select(*VPT_DIMENSIONS, percentile=pct)


def mean_percentiles(percentiles: ir.Table, by: str) -> ir.Table:
    """Per ``by`` group of :func:`unit_percentiles`: the mean percentile, with its interval."""
    check_dimension(by)
    f = percentiles
    g = f.group_by(f[by].fill_null("(none)").name(by)).aggregate(
        n=f.count(),
        workflows=f.workflow.nunique(),
        mean_percentile=f.percentile.mean(),
        sd=f.percentile.std(),
    )
    half = 1.96 * g.sd.fill_null(0.0) / g.n.cast("float64").sqrt()
    return g.select(
        by,
        "n",
        "workflows",
        "mean_percentile",
        mean_percentile_low=ibis.greatest(g.mean_percentile - half, 0.0),
        mean_percentile_high=ibis.least(g.mean_percentile + half, 1.0),
    ).order_by([ibis.desc("mean_percentile"), by])


def normalised(facts: ir.Table, by: str, window: Window | None = None) -> ir.Table:
    """Per ``by`` group across workflows: mean within-workflow percentile of value per token."""
    return mean_percentiles(unit_percentiles(facts, window), by)
