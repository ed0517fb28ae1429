"""Work unit facts: one row per work unit with its cost, usage, stage and success.

Every value report (funnel, benchmarks, patterns, value per token, waste) is a
``group_by`` of this one expression, so they agree with each other.

Per work unit ``u`` (calls are the calls whose ``work_unit_id`` is ``u``):

- ``model_cost``      = sum of the calls' model cost (unpriced calls add 0 and are counted)
- ``allocated_cost``  = sum over calls of model_cost x (allocated / model cost of the call's
                        workflow and day in :func:`~yieldmeter.metrics.spend.cost_lines`)
- ``effort_cost``     = sum of effort minutes / 60 x labour rate (person, else workflow,
                        else team, else default: the rule of cost_lines)
- ``fully_loaded_cost`` = model_cost + allocated_cost + effort_cost
- ``accepted``        = at least one acceptance signal (accepted, edited, saved, shared, copied,
                        exported, used_in_artifact)
- ``acted``           = at least one decision/action signal (decision_reached, action_taken,
                        metric_moved, referenced_later) or an outcome row tied to the unit
- ``meets_quality``   = the unit's own label when it has one, else score >= the workflow's
                        quality_threshold (50 when none is declared)
- ``meets_latency``   = no call slower than the workflow's latency_slo_ms (true when none)
- ``meets_risk``      = risk class low/medium/none: true; high: a human accepted it or
                        reviewed it (effort recorded); critical: reviewed (effort recorded);
                        and never when escalated or rejected without a later acceptance
- ``successful``      = accepted and meets_quality and meets_latency and meets_risk, and
                        acted when the workflow records decisions/actions at all
                        (``success_basis`` says which: "action" or "acceptance")
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from yieldmeter.config import LabourRates
from yieldmeter.metrics.benchmarks import BUCKETS, portable_bucket
from yieldmeter.metrics.period import elapsed_seconds, utc_day
from yieldmeter.metrics.tables import Tables
from yieldmeter.scoring.priors import ACCEPTANCE_SIGNALS, ACTION_SIGNALS, POSITIVE_SIGNALS

DEFAULT_QUALITY_THRESHOLD = 50.0
TOOL_OPERATIONS = ("execute_tool", "tool", "tool_call", "function_call")


@ibis.udf.agg.builtin(name="max_by")
def _max_by(arg: dt.string, key: dt.int64) -> dt.string:  # type: ignore[empty-body]
    """The ``arg`` of the row with the largest ``key`` (DuckDB and Spark SQL both have ``max_by``).

    Ibis compiles ``argmax`` as ``first(arg ORDER BY key DESC)``, which DuckDB evaluates with a
    sort key built per row: a third of the cost of grouping 10M calls by unit.
    """


def allocation_uplift(lines: ir.Table) -> ir.Table:
    """Per workflow, team and day: allocated cost per dollar of model cost (where model cost > 0).

    By team too: an item that names its team (a GPU node of one team) is that team's cost, so
    the calls of another team in the same workflow and day carry none of it.
    """
    g = lines.group_by(
        uplift_workflow=lines.workflow, uplift_team=lines.team, uplift_day=lines.day
    ).aggregate(model_cost=lines.model_cost.sum(), allocated_cost=lines.allocated_cost.sum())
    g = g.filter(g.model_cost > 0)
    return g.select("uplift_workflow", "uplift_team", "uplift_day", uplift=g.allocated_cost / g.model_cost)


def unit_calls(priced: ir.Table, lines: ir.Table | None) -> ir.Table:
    """Per work unit: calls, tokens, model/allocated cost, slowest call, dominant model, tool use.

    Each call carries the uplift of its workflow, team and day (a join with a table of a few
    thousand rows), so the calls are grouped once, by unit. The dominant model is the model of the unit's
    largest call (argmax of input + output tokens).
    """
    c = priced.filter(priced.work_unit_id.notnull())
    if lines is not None:
        up = allocation_uplift(lines)
        up = up.select(
            _up_workflow=up.uplift_workflow.fill_null(""),
            _up_team=up.uplift_team.fill_null(""),
            _up_day=utc_day(up.uplift_day),
            _uplift=up.uplift,
        )
        c = c.mutate(
            _workflow_key=c.workflow.fill_null(""), _team_key=c.team.fill_null(""), _day=utc_day(c.ts)
        )
        c = c.left_join(
            up, [c._workflow_key == up._up_workflow, c._team_key == up._up_team, c._day == up._up_day]
        )
        uplift = c._uplift.fill_null(0.0)
    else:
        uplift = ibis.literal(0.0)
    requests = c.request_count.fill_null(1)
    tokens = c.input_tokens.fill_null(0) + c.output_tokens.fill_null(0)
    model_cost = c.model_cost.fill_null(0.0)
    return c.group_by(c.work_unit_id).aggregate(
        calls=requests.sum().cast("int64"),
        input_tokens=c.input_tokens.fill_null(0).sum().cast("int64"),
        output_tokens=c.output_tokens.fill_null(0).sum().cast("int64"),
        model_cost=model_cost.sum(),
        allocated_cost=(model_cost * uplift).sum(),
        unpriced_calls=requests.sum(where=~c.priced).fill_null(0).cast("int64"),
        max_duration_ms=c.duration_ms.max(),
        first_call_at=c.ts.min(),
        # max_by skips calls without a model; when the largest call has none, neither has the unit
        model=ibis.ifelse(
            tokens.max(where=c.model.notnull()) >= tokens.max(), _max_by(c.model, tokens), ibis.null("string")
        ),
        tool_use=c.operation.isin(TOOL_OPERATIONS).any(),
    )


def unit_effort(t: Tables, rates: LabourRates) -> ir.Table:
    """Per work unit: effort minutes and their cost at the labour rate (same rule as cost_lines)."""
    e, wu, wf = t.effort, t.work_units, t.workflows
    j = e.left_join(wu.select("work_unit_id", "workflow", "team"), "work_unit_id")
    wr = wf.select(rate_workflow="workflow", wf_rate="labour_rate")
    j = j.left_join(wr, j.workflow == wr.rate_workflow)
    team_rates = ibis.memtable(
        {"rate_team": list(rates.teams), "team_rate": [float(v) for v in rates.teams.values()]},
        schema={"rate_team": "string", "team_rate": "float64"},
    )
    people_rates = ibis.memtable(
        {"rate_person": list(rates.people), "person_rate": [float(v) for v in rates.people.values()]},
        schema={"rate_person": "string", "person_rate": "float64"},
    )
    j = j.left_join(team_rates, j.team == team_rates.rate_team)
    j = j.left_join(people_rates, j.person == people_rates.rate_person)
    rate = ibis.coalesce(j.person_rate, j.wf_rate, j.team_rate, ibis.literal(float(rates.default)))
    return j.group_by(j.work_unit_id).aggregate(
        effort_minutes=j.minutes.sum(), effort_cost=(j.minutes / 60.0 * rate).sum()
    )


def unit_signals(t: Tables) -> ir.Table:
    """Per work unit: stage flags from signals and the first acceptance time."""
    s = t.signals.filter(t.signals.work_unit_id.notnull())
    wf = t.workflows.select(win_workflow="workflow", window_days="recontact_window_days")
    per = s.group_by(s.work_unit_id).aggregate(
        n_accept=s.kind.isin(ACCEPTANCE_SIGNALS).sum().cast("int64"),
        n_action=s.kind.isin(ACTION_SIGNALS).sum().cast("int64"),
        n_positive=s.kind.isin(POSITIVE_SIGNALS).sum().cast("int64"),
        n_explicit_accept=(s.kind == "accepted").sum().cast("int64"),
        n_rejected=(s.kind == "rejected").sum().cast("int64"),
        n_escalated=(s.kind == "escalated").sum().cast("int64"),
        first_accept_at=s.ts.min(where=s.kind.isin(ACCEPTANCE_SIGNALS)),
    )
    # recontact within the workflow's window after the first acceptance
    wu = t.work_units.select(rc_unit="work_unit_id", rc_workflow="workflow")
    rc = s.filter(s.kind == "recontact").select(rc_unit=s.work_unit_id, rc_ts=s.ts)
    rc = rc.join(wu, "rc_unit")
    rc = rc.left_join(wf, rc.rc_workflow == wf.win_workflow)
    rc = rc.join(per.select(rc_unit="work_unit_id", acc="first_accept_at"), "rc_unit")
    window_s = rc.window_days.fill_null(7.0) * 86400.0
    delta_s = elapsed_seconds(rc.acc, rc.rc_ts)  # to the microsecond on every engine
    rc = rc.filter(rc.acc.notnull() & (delta_s >= 0) & (delta_s <= window_s))
    rc = rc.group_by(work_unit_id=rc.rc_unit).aggregate(n_recontact_after_accept=rc.count())
    out = per.left_join(rc, "work_unit_id")
    return out.select(*per.columns, n_recontact_after_accept=out.n_recontact_after_accept.fill_null(0))


def unit_facts(
    t: Tables,
    priced: ir.Table,
    lines: ir.Table | None,
    rates: LabourRates,
    scores: ir.Table | None = None,
) -> ir.Table:
    """One row per work unit: usage, the parts of fully loaded cost, stages, score and success.

    ``priced`` is :func:`yieldmeter.metrics.cost.priced_calls`; ``lines`` is
    :func:`yieldmeter.metrics.spend.cost_lines` (None: no allocated cost);
    ``scores`` the scores table (None: ``t.scores``; when neither exists every unit scores null
    and quality is judged on labels only).
    """
    scores = scores if scores is not None else t.scores
    u = t.work_units.select(
        "work_unit_id", "parent_id", "workflow", "task_type", "user_id", "team", "started_at", "status"
    )
    calls = unit_calls(priced, lines)
    eff = unit_effort(t, rates)
    sig = unit_signals(t)
    linked = t.outcomes.filter(t.outcomes.work_unit_id.notnull())
    linked = linked.group_by(linked.work_unit_id).aggregate(n_outcomes=linked.count())
    wf = t.workflows.select(
        wf_name="workflow",
        declared_unit_value="unit_value",
        baseline_minutes="baseline_minutes",
        quality_threshold="quality_threshold",
        risk_class="risk_class",
        latency_slo_ms="latency_slo_ms",
    )
    j = u.left_join(calls, "work_unit_id").left_join(eff, "work_unit_id").left_join(sig, "work_unit_id")
    j = j.left_join(linked, "work_unit_id")
    j = j.left_join(wf, j.workflow == wf.wf_name)
    if scores is not None:
        sc = scores.select("work_unit_id", "score", "p_value", "expected_value", "label")
        j = j.left_join(sc, "work_unit_id")
        score, p_value, ev, label = j.score, j.p_value, j.expected_value, j.label
    else:
        score = ibis.null("float64")
        p_value = ibis.null("float64")
        ev = ibis.null("float64")
        label = ibis.null("int64")
    z_i = ibis.literal(0, "int64")
    accepted = j.n_accept.fill_null(0) > 0
    acted = (j.n_action.fill_null(0) > 0) | (j.n_outcomes.fill_null(0) > 0)
    threshold = j.quality_threshold.fill_null(DEFAULT_QUALITY_THRESHOLD)
    if scores is not None:
        meets_quality = ibis.cases(
            (label.notnull(), label == 1), (score.notnull(), score >= threshold), else_=ibis.literal(False)
        )
    else:
        meets_quality = ibis.literal(False)
    meets_latency = (
        j.latency_slo_ms.isnull() | j.max_duration_ms.isnull() | (j.max_duration_ms <= j.latency_slo_ms)
    )
    reviewed = j.effort_minutes.fill_null(0.0) > 0
    clean = (j.n_escalated.fill_null(0) == 0) & ((j.n_rejected.fill_null(0) == 0) | accepted)
    meets_risk = clean & ibis.cases(
        (j.risk_class == "critical", reviewed),
        (j.risk_class == "high", reviewed | (j.n_explicit_accept.fill_null(0) > 0)),
        else_=ibis.literal(True),
    )
    model_cost = j.model_cost.fill_null(0.0)
    allocated = j.allocated_cost.fill_null(0.0)
    effort_cost = j.effort_cost.fill_null(0.0)
    facts = j.select(
        "work_unit_id",
        "parent_id",
        "workflow",
        "task_type",
        "user_id",
        "team",
        "status",
        "model",
        "declared_unit_value",
        "baseline_minutes",
        started_at=ibis.coalesce(j.started_at, j.first_call_at),
        calls=j.calls.fill_null(z_i),
        input_tokens=j.input_tokens.fill_null(z_i),
        output_tokens=j.output_tokens.fill_null(z_i),
        tokens=(j.input_tokens.fill_null(z_i) + j.output_tokens.fill_null(z_i)),
        unpriced_calls=j.unpriced_calls.fill_null(z_i),
        model_cost=model_cost,
        allocated_cost=allocated,
        effort_minutes=j.effort_minutes.fill_null(0.0),
        effort_cost=effort_cost,
        fully_loaded_cost=model_cost + allocated + effort_cost,
        max_duration_ms=j.max_duration_ms,
        tool_use=j.tool_use.fill_null(False),
        first_accept_at=j.first_accept_at,
        n_positive=j.n_positive.fill_null(z_i),
        n_recontact_after_accept=j.n_recontact_after_accept.fill_null(z_i),
        accepted=accepted,
        acted=acted,
        score=score,
        p_value=p_value,
        expected_value=ev,
        label=label,
        meets_quality=meets_quality,
        meets_latency=meets_latency,
        meets_risk=meets_risk,
    )
    # does the workflow record decisions/actions at all? (aggregate + join, not a sorting window)
    facts = facts.mutate(_workflow_key=facts.workflow.fill_null(""))
    tracking = facts.group_by(_tracks_workflow=facts._workflow_key).aggregate(_tracks=facts.acted.any())
    facts = facts.join(tracking, facts._workflow_key == tracking._tracks_workflow).drop(
        "_tracks_workflow", "_workflow_key"
    )
    tracks_actions = facts._tracks
    successful = (
        facts.accepted
        & facts.meets_quality
        & facts.meets_latency
        & facts.meets_risk
        & (facts.acted | ~tracks_actions)
    )
    return facts.mutate(
        tracks_actions=tracks_actions,
        successful=successful,
        # the unit's bootstrap batch for benchmarks and patterns, hashed once here
        bucket=portable_bucket(facts.work_unit_id, BUCKETS),
    ).drop("_tracks")
