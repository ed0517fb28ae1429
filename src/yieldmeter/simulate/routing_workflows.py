"""The ``model-routing`` scenario's workflows: models that are equal on some task types, worse on others.

Routing needs a truth the general workflows do not have: per task type, a cheaper model that is
exactly as good as the incumbent, and one that is clearly worse. Each workflow here declares it with
``model_task_effects`` (a logit effect per model and task type on top of the model's own), and keeps
the fully loaded cost of a unit dominated by tokens (long documents, human effort only where the AI
failed or on a sample), which is where model choice moves money. Every model meets the workflows'
latency SLOs with room to spare, so success differs between models only through ``P(delivered)``.

``docs/simulator.md`` tabulates the truth per segment; ``yieldmeter.routing.oracle`` reads it back
to score routing recommendations.
"""

from __future__ import annotations

from yieldmeter.simulate.catalog import Effort, OutcomeSpec, SignalRule, State, WorkflowSpec


def _p(**kw: float) -> dict[str, float]:
    return dict(kw)


#: Logit effect of a model that is clearly worse on a task type: about 10 to 17 points of success.
WORSE = -0.9

DOCUMENTS = WorkflowSpec(
    name="document-intake",
    process="back-office",
    owner="head-of-operations",
    value_dimension="throughput",
    outcome_definition="document read and its fields posted to the system of record without re-keying",
    unit_value=6.0,
    baseline_cost=4.0,
    baseline_minutes=6.0,
    quality_threshold=55,
    risk_class="medium",
    latency_slo_ms=180_000,
    labour_rate=45,
    service="doc-intake",
    teams=("ops-payables", "ops-receivables", "ops-legal"),
    people_share=0.45,
    sessions_per_day=11.0,
    units_per_session=1.0,
    # invoices: every model as good; contracts: the flash model worse; handwritten forms: both worse
    task_types=(("invoice", 0.45, 0.3), ("contract", 0.35, 0.0), ("handwritten-form", 0.2, -0.2)),
    models=(("claude-3-5-sonnet", 0.5, 0.0), ("gpt-4.1-mini", 0.25, 0.0), ("gemini-1.5-flash", 0.25, 0.0)),
    model_task_effects=(
        ("gemini-1.5-flash", "contract", WORSE),
        ("gpt-4.1-mini", "handwritten-form", WORSE),
        ("gemini-1.5-flash", "handwritten-form", WORSE),
    ),
    base_logit=1.7,
    delivered_states=_p(posted=1.0),
    failed_states=_p(corrected=0.75, rejected=0.25),
    states=(
        State("posted", True, extra_calls=0.2, effort=(Effort("review", 1.0, p=0.1),)),
        State("corrected", False, 0.0, extra_calls=0.2, effort=(Effort("correction", 2.0, p=0.6),)),
        State("rejected", False, 0.0, used=False, extra_calls=0.2, effort=(Effort("correction", 3.0),)),
    ),
    signals=(
        SignalRule("accepted", _p(posted=0.97, corrected=0.05, rejected=0.01), True, "doc-intake", 3),
        SignalRule("rejected", _p(corrected=0.85, rejected=0.95), True, "doc-intake", 3),
        SignalRule("action_taken", _p(posted=0.95, corrected=0.1, rejected=0.01), False, "erp", 30),
    ),
    input_tokens=(30_000, 0.3),
    output_tokens=(900, 0.3),
    value_sigma=0.3,
    explicit_capture=0.95,
    gap_ms=400,
    outcome=OutcomeSpec(
        metric="manual_keying_minutes",
        unit="minutes",
        evidence_level="baseline_comparison",
        attribution_share=0.8,
        benefit_owner="head-of-operations",
        period_days=7,
        baseline_value=6.0,
        improvement=0.6,
        evidence_ref="operations time study, before and after",
    ),
)

SCREENING = WorkflowSpec(
    name="kyc-screening",
    process="compliance",
    owner="head-of-financial-crime",
    value_dimension="loss_avoided",
    outcome_definition="screening hit resolved correctly (true match escalated, false positive cleared)",
    unit_value=80.0,
    baseline_cost=9.0,
    baseline_minutes=10.0,
    quality_threshold=55,
    risk_class="high",
    latency_slo_ms=120_000,
    labour_rate=60,
    service="kyc-screen",
    teams=("fincrime-onboarding", "fincrime-periodic"),
    people_share=0.35,
    sessions_per_day=11.0,
    units_per_session=1.0,
    # sanctions hits: the mini model as good; adverse-media reviews: every cheaper model worse
    task_types=(("sanctions-hit", 0.7, 0.3), ("adverse-media", 0.3, 0.0)),
    models=(("gpt-4.1", 0.5, 0.0), ("gpt-4.1-mini", 0.3, 0.0), ("gpt-4o-mini", 0.2, 0.0)),
    model_task_effects=(
        ("gpt-4o-mini", "sanctions-hit", WORSE),
        ("gpt-4.1-mini", "adverse-media", WORSE),
        ("gpt-4o-mini", "adverse-media", WORSE),
    ),
    base_logit=2.6,
    delivered_states=_p(resolved=1.0),
    failed_states=_p(overturned=1.0),
    states=(
        # the analyst's explicit acceptance is the review of a resolved hit; an overturned one is
        # looked at again half of the time
        State("resolved", True, extra_calls=0.1),
        State("overturned", False, 0.0, extra_calls=0.1, effort=(Effort("review", 1.0, p=0.5),)),
    ),
    signals=(
        SignalRule("accepted", _p(resolved=0.97, overturned=0.04), True, "case-mgmt", 5),
        SignalRule("rejected", _p(overturned=0.9), True, "case-mgmt", 5),
        SignalRule("decision_reached", _p(resolved=0.97, overturned=0.9), False, "case-mgmt", 10),
    ),
    input_tokens=(24_000, 0.3),
    output_tokens=(400, 0.3),
    value_sigma=0.5,
    explicit_capture=0.97,
    gap_ms=400,
    round_the_clock=True,
    outcome=OutcomeSpec(
        metric="screening_backlog_hours",
        unit="hours",
        evidence_level="observational",
        attribution_share=0.6,
        benefit_owner="head-of-financial-crime",
        period_days=7,
        baseline_value=40.0,
        improvement=0.4,
        evidence_ref="compliance operations weekly backlog report",
    ),
)

TAGGING = WorkflowSpec(
    name="ticket-tagging",
    process="customer-service",
    owner="vp-customer-care",
    value_dimension="capacity",
    outcome_definition="ticket tagged and routed to the right queue first time",
    unit_value=0.4,
    baseline_cost=0.5,
    baseline_minutes=0.5,
    quality_threshold=55,
    risk_class="low",
    latency_slo_ms=60_000,
    labour_rate=38,
    service="ticket-router",
    teams=("support-ops", "support-tooling"),
    people_share=0.20,
    sessions_per_day=12.0,
    units_per_session=1.0,
    # intent: every model as good; language: the flash model worse
    task_types=(("intent", 0.6, 0.2), ("language", 0.4, 0.0)),
    models=(("gpt-4.1-mini", 0.5, 0.0), ("gpt-4o-mini", 0.3, 0.0), ("gemini-1.5-flash", 0.2, 0.0)),
    model_task_effects=(("gemini-1.5-flash", "language", 2 * WORSE),),
    base_logit=1.8,
    delivered_states=_p(routed=1.0),
    failed_states=_p(rerouted=1.0),
    states=(
        State("routed", True),
        # the next agent re-routes the ticket as part of their work: no effort logged against it
        State("rerouted", False, 0.0),
    ),
    signals=(
        SignalRule("accepted", _p(routed=0.95, rerouted=0.03), True, "helpdesk", 1),
        SignalRule("rejected", _p(rerouted=0.9), True, "helpdesk", 2),
    ),
    input_tokens=(6_000, 0.3),
    output_tokens=(40, 0.3),
    value_sigma=0.2,
    explicit_capture=0.95,
    gap_ms=200,
    outcome=None,
)
