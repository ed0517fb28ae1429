"""The scenarios: the cases yieldmeter exists for, each a set of workflows with its own mix.

``enterprise`` (the default) runs every workflow at once; the others isolate one
story and exaggerate it so that it is unmistakable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from yieldmeter.errors import InputError
from yieldmeter.schema import PLAUSIBLE_TIMES
from yieldmeter.simulate.catalog import WorkflowSpec
from yieldmeter.simulate.routing_workflows import DOCUMENTS, SCREENING, TAGGING
from yieldmeter.simulate.workflows import AGENT, ANALYST, CLAIMS, CODE, CONTENT, FRAUD, SUPPORT


class SimulationError(InputError):
    """Parameters the simulator cannot honour; the message says which and what to do."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    workflows: tuple[WorkflowSpec, ...]
    default_users: int
    flagship: bool = False


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "enterprise",
            "all workflows at once: a 400-person organisation's month of AI use (the default)",
            (FRAUD, SUPPORT, CODE, CONTENT, ANALYST, CLAIMS, AGENT),
            default_users=400,
            flagship=True,
        ),
        Scenario(
            "fraud",
            "fraud review: tiny token cost per alert, large loss avoided when a fraud is caught",
            (replace(FRAUD, people_share=1.0),),
            default_users=60,
        ),
        Scenario(
            "support-recontact",
            "customer support: drafts accepted and sent, but many issues come back within the window",
            (
                replace(
                    SUPPORT,
                    people_share=1.0,
                    base_logit=0.2,
                    failed_states={"unresolved": 0.75, "rejected": 0.25},
                ),
            ),
            default_users=80,
        ),
        Scenario(
            "code-rework",
            "software delivery: merged AI changes whose review and rework exceed the no-AI baseline",
            (
                replace(
                    CODE, people_share=1.0, base_logit=0.0, failed_states={"rework": 0.75, "closed": 0.25}
                ),
            ),
            default_users=80,
        ),
        Scenario(
            "unused-content",
            "internal content: documents generated, saved and shared, and read by nobody",
            (replace(CONTENT, people_share=1.0, base_logit=-2.5),),
            default_users=60,
        ),
        Scenario(
            "analyst-session",
            "board analysis: a 40-question session, 3 answers copied into a memo, 1 moved the board",
            (replace(ANALYST, people_share=1.0),),
            default_users=30,
            flagship=True,
        ),
        Scenario(
            "agent-loop",
            "incident agent: runs that loop on retries, burning tokens with nothing accepted",
            (
                replace(
                    AGENT, people_share=1.0, base_logit=-0.2, failed_states={"failed": 0.45, "loop": 0.55}
                ),
            ),
            default_users=60,
        ),
        Scenario(
            "claims",
            "claims processing: document extraction with corrections and a controlled pilot",
            (replace(CLAIMS, people_share=1.0),),
            default_users=60,
        ),
        Scenario(
            "model-routing",
            "per task type, a cheaper model as good as the incumbent or clearly worse: routing's truth",
            (DOCUMENTS, SCREENING, TAGGING),
            default_users=240,
        ),
    )
}

DEFAULT_SCENARIO = "enterprise"
DEFAULT_DAYS = 30
DEFAULT_START = datetime(2026, 10, 1, tzinfo=UTC)
MAX_DAYS = 366
MAX_USERS = 50_000
MAX_CALLS = 20_000_000
#: People per team below which a team cannot exist (benchmarks need several teams per workflow).
MIN_PER_TEAM = 2


@dataclass(frozen=True)
class SimulationParams:
    scenario: str = DEFAULT_SCENARIO
    seed: int = 42
    days: int = DEFAULT_DAYS
    users: int | None = None  # None: the scenario's default
    start: datetime = DEFAULT_START

    def resolved_users(self) -> int:
        return self.users if self.users is not None else SCENARIOS[self.scenario].default_users


def min_users(scenario: Scenario) -> int:
    return sum(len(w.teams) for w in scenario.workflows) * MIN_PER_TEAM


def mean_calls_per_unit(w: WorkflowSpec) -> float:
    """Expected calls per work unit of ``w`` at its base success rate."""
    p_delivered = 1.0 / (1.0 + math.exp(-w.base_logit))
    total = 0.0
    for states, weight in ((w.delivered_states, p_delivered), (w.failed_states, 1.0 - p_delivered)):
        for name, p in states.items():
            s = w.state(name)
            total += weight * p * (s.min_calls + s.extra_calls)
    return total


def expected_calls(scenario: Scenario, users: int, days: int) -> float:
    """A rough call count, to refuse sizes that would not fit in memory before drawing anything."""
    total = 0.0
    for w in scenario.workflows:
        per_person_day = w.sessions_per_day * w.units_per_session * mean_calls_per_unit(w)
        total += users * w.people_share * days * 0.8 * per_person_day
    return total


def check_params(params: SimulationParams) -> Scenario:
    """The scenario of valid ``params``; a :class:`SimulationError` says what is wrong and what to do."""
    if params.scenario not in SCENARIOS:
        known = ", ".join(SCENARIOS)
        raise SimulationError(f"unknown scenario {params.scenario!r}; choose one of: {known}")
    scenario = SCENARIOS[params.scenario]
    if params.seed < 0 or params.seed >= 2**32:
        raise SimulationError(f"--seed must be between 0 and {2**32 - 1}, got {params.seed}")
    if not 1 <= params.days <= MAX_DAYS:
        raise SimulationError(f"--days must be between 1 and {MAX_DAYS}, got {params.days}")
    users = params.resolved_users()
    need = min_users(scenario)
    if users < need:
        raise SimulationError(
            f"--users {users} is too few for scenario {scenario.name!r}: it has "
            f"{need // MIN_PER_TEAM} teams and needs at least {MIN_PER_TEAM} people in each "
            f"(--users {need} or more)"
        )
    if users > MAX_USERS:
        raise SimulationError(f"--users must be at most {MAX_USERS:,}, got {users:,}")
    calls = expected_calls(scenario, users, params.days)
    if calls > MAX_CALLS:
        raise SimulationError(
            f"--users {users:,} over --days {params.days} would generate about {calls:,.0f} calls, "
            f"more than the simulator's limit of {MAX_CALLS:,}; lower --users or --days"
        )
    if params.start.tzinfo is None:
        raise SimulationError("the start of the period must be a UTC timestamp")
    first, last = PLAUSIBLE_TIMES  # the times the store takes: data outside would all be quarantined
    end = params.start + timedelta(days=params.days)
    if params.start < first or end > last:
        raise SimulationError(
            f"--start {params.start:%Y-%m-%d} with --days {params.days}: the period must lie between "
            f"{first:%Y-%m-%d} and {last:%Y-%m-%d} (the times yieldmeter stores)"
        )
    return scenario
