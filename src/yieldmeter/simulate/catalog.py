"""What the simulated organisation is made of: models, workflows, their states and signals.

Everything here is a declaration (frozen dataclasses); :mod:`yieldmeter.simulate.engine`
draws from it. ``docs/simulator.md`` explains the numbers.

A work unit's hidden truth is drawn in two steps. First whether it *delivered*
value: ``P(delivered) = sigmoid(base_logit + user skill + model effect + task effect
+ noise)``. Then its *state* given that, e.g. a support draft that did not deliver
is either ``unresolved`` (sent, the customer came back) or ``rejected`` (never sent).
The state fixes the true value (``unit_value x value_mult x lognormal noise``), the
number of calls, the human effort, and the probability of every observable signal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    """A model as telemetry shows it. ``priced`` is False for a model the catalog does not know."""

    key: str
    provider: str  # gen_ai.provider.name (OpenTelemetry well-known values)
    request_model: str
    response_model: str
    ttft_ms: float
    tokens_per_s: float
    server: str
    priced: bool = True
    caches: bool = True


MODELS: dict[str, ModelSpec] = {
    m.key: m
    for m in (
        ModelSpec("gpt-4o", "openai", "gpt-4o", "gpt-4o-2024-08-06", 450, 85, "api.openai.com"),
        ModelSpec(
            "gpt-4o-mini", "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 300, 120, "api.openai.com"
        ),
        ModelSpec("gpt-4.1", "openai", "gpt-4.1", "gpt-4.1-2025-04-14", 500, 80, "api.openai.com"),
        ModelSpec(
            "gpt-4.1-mini", "openai", "gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", 320, 110, "api.openai.com"
        ),
        ModelSpec("o3-mini", "openai", "o3-mini", "o3-mini-2025-01-31", 2400, 150, "api.openai.com"),
        ModelSpec(
            "claude-3-5-sonnet",
            "anthropic",
            "claude-3-5-sonnet-20241022",
            "claude-3-5-sonnet-20241022",
            700,
            70,
            "api.anthropic.com",
        ),
        ModelSpec(
            "claude-3-5-haiku",
            "anthropic",
            "claude-3-5-haiku-20241022",
            "claude-3-5-haiku-20241022",
            400,
            105,
            "api.anthropic.com",
        ),
        ModelSpec(
            "gemini-1.5-flash",
            "gcp.gemini",
            "gemini-1.5-flash",
            "gemini-1.5-flash-002",
            350,
            170,
            "generativelanguage.googleapis.com",
            caches=False,
        ),
        # A self-hosted model the price catalog has never heard of: its calls are unpriced.
        ModelSpec(
            "acme-sre-llm",
            "acme",
            "acme-sre-llm-v2",
            "acme-sre-llm-v2",
            600,
            40,
            "llm.sre.internal",
            priced=False,
            caches=False,
        ),
    )
}


@dataclass(frozen=True)
class Effort:
    """Human minutes spent on a unit in some state: lognormal around ``median_minutes``."""

    kind: str
    median_minutes: float
    sigma: float = 0.4
    p: float = 1.0


@dataclass(frozen=True)
class State:
    """What really happened to a unit. ``used``: someone used the output at all."""

    name: str
    delivered: bool
    value_mult: float = 1.0
    used: bool = True
    #: calls: ``min_calls + geometric extra`` with this mean extra
    min_calls: int = 1
    extra_calls: float = 0.0
    effort: tuple[Effort, ...] = ()
    is_loop: bool = False
    is_recontact: bool = False


@dataclass(frozen=True)
class SignalRule:
    """A signal kind emitted with probability ``p[state]``, ``delay_minutes`` (median) after the unit ends.

    Explicit signals are only ever logged for units whose feedback is captured at
    all (``WorkflowSpec.explicit_capture``): many real logs have none.
    """

    kind: str
    p: Mapping[str, float]
    explicit: bool
    source: str
    delay_minutes: float = 2.0
    delay_sigma: float = 1.0


@dataclass(frozen=True)
class OutcomeSpec:
    """How a workflow reports outcomes: per period, and/or per unit in some states."""

    metric: str
    unit: str
    evidence_level: str
    attribution_share: float
    benefit_owner: str
    period_days: int = 7
    baseline_value: float | None = None
    improvement: float = 0.2  # observed = baseline x (1 - improvement)
    monetary: bool = True
    per_unit_states: tuple[str, ...] = ()
    per_unit_p: float = 0.0
    per_unit_metric: str = ""
    evidence_ref: str = ""
    #: a non-monetary (strategic) outcome's observed value: its 0-5 strategic impact rating
    strategic_rating: float | None = None


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    process: str
    owner: str
    value_dimension: str
    outcome_definition: str
    unit_value: float
    baseline_cost: float | None
    baseline_minutes: float | None
    quality_threshold: float
    risk_class: str
    latency_slo_ms: float
    labour_rate: float
    service: str
    teams: tuple[str, ...]
    #: share of the organisation's people working in this workflow
    people_share: float
    #: sessions per active person per weekday, and mean units per session
    sessions_per_day: float
    units_per_session: float
    task_types: tuple[tuple[str, float, float], ...]  # name, share, logit effect
    models: tuple[tuple[str, float, float], ...]  # model key, share, logit effect
    base_logit: float
    delivered_states: Mapping[str, float]
    failed_states: Mapping[str, float]
    states: tuple[State, ...]
    signals: tuple[SignalRule, ...]
    input_tokens: tuple[float, float]  # median, sigma
    output_tokens: tuple[float, float]
    value_sigma: float
    explicit_capture: float
    effort_logged: float = 0.93
    context_growth: float = 0.0  # input grows by this fraction per earlier call in the unit
    session_growth: float = 0.0  # tokens of context added per earlier unit in the session
    cache_fraction: float = 0.0
    gap_ms: float = 800.0  # median pause between calls of one unit (tool time, thinking)
    round_the_clock: bool = False
    #: share of units a quality-assurance sample labels (value_confirmed / value_denied, 97% right)
    audit_rate: float = 0.04
    #: share of units whose system of record later confirms the outcome either way (always right)
    confirm_rate: float = 0.0
    outcome: OutcomeSpec | None = None
    recontact_window_days: float = 7.0
    #: (model key, task type, logit effect) added on top of the model's and the task type's own
    #: effects: a model as good as another on one kind of task and worse on another
    model_task_effects: tuple[tuple[str, str, float], ...] = ()

    def state(self, name: str) -> State:
        return next(s for s in self.states if s.name == name)

    def model_effect(self, model: str, task_type: str) -> float:
        """The logit effect of ``model`` on ``task_type``: its own plus the pair's (0 when none)."""
        own = next(e for m, _, e in self.models if m == model)
        return own + sum(e for m, t, e in self.model_task_effects if m == model and t == task_type)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)


@dataclass(frozen=True)
class Flagship:
    """The analyst session of the board story: 40 questions, 3 copied into a memo, 1 moved the board."""

    session_id: str = "sess-board-prep-q4"
    questions: int = 40
    copied: tuple[int, ...] = (7, 19, 33)  # 0-based positions in the session
    moved: int = 33
    day: int = 9  # day of the period it happens on
    hour: float = 9.5
    extra: dict[str, str] = field(default_factory=dict)
