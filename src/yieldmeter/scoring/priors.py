"""The prior weights of the interaction value score: the one place they live.

The score is a logistic model ``p = sigmoid(intercept + sum(weight_f * x_f))``
over the features of :mod:`yieldmeter.scoring.features`. Before an
organisation has labelled any outcome, these weights *are* the model; once it
has, calibration moves them towards its own evidence, pulled back towards
these values by a Gaussian prior (MAP), and never across zero: a signal whose
prior sign says "this is evidence of value" can be found to matter less, not to
mean the opposite (that keeps scores monotone in positive signals).

Sizes are log-odds. A weight of +1.0 multiplies the odds of value by e (2.7x);
+2.0 by 7.4x; -3.0 divides them by 20. The intercept sets the score of a unit
that carries no signal at all: an interaction nobody did anything with.

Signal features count occurrences as ``log2(1 + count)``, so one occurrence is
1.0, three are 2.0: repetition adds, with diminishing returns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prior:
    feature: str
    weight: float
    reason: str
    #: +1: calibration keeps the weight >= 0; -1: <= 0; 0: free.
    sign: int = 0
    #: Standard deviation of the Gaussian prior (log-odds); wider = the data may move it further.
    scale: float = 1.0


INTERCEPT = Prior(
    "intercept",
    -2.0,
    "A unit with no signal at all: p = 0.12. Most interactions that nobody accepts, copies or acts on "
    "did not deliver measurable value; the base rate is left wide for calibration to find.",
    scale=2.0,
)

PRIORS: tuple[Prior, ...] = (
    # Explicit signals: a person did something with the output.
    Prior("accepted", 2.0, "Explicit acceptance by the person the output was for.", sign=1),
    Prior("edited", 0.5, "Kept but changed: accepted with effort, weaker than a clean acceptance.", sign=1),
    Prior("rejected", -3.0, "Explicit rejection; rarely followed by value.", sign=-1),
    Prior("saved", 1.0, "Kept for later: intent to use, not yet use.", sign=1),
    Prior("shared", 1.2, "Passed to someone else: the output was worth another person's time.", sign=1),
    Prior(
        "copied",
        1.5,
        "Copied out of the tool: in chat and analyst work the main act of use, but also done to inspect.",
        sign=1,
    ),
    Prior("exported", 1.2, "Exported to a file or system: use outside the tool.", sign=1),
    Prior(
        "used_in_artifact",
        2.5,
        "Went into a memo, document, commit or ticket that outlives the session: the most direct "
        "evidence of use short of an outcome.",
        sign=1,
    ),
    Prior(
        "rated",
        1.5,
        "Mean rating rescaled to [-1, 1] (0-1 and 1-5 scales accepted): a good rating is strong, "
        "a bad one is as strong the other way.",
        sign=1,
    ),
    # Implicit signals: behaviour around the output.
    Prior(
        "continued",
        -0.4,
        "Kept iterating after this answer: it was not the end, but iteration is also normal work, so weak.",
        sign=-1,
    ),
    Prior("rephrased", -0.8, "Asked again in other words: the answer missed the question.", sign=-1),
    Prior("retried", -0.8, "Regenerated: the answer was not good enough as it stood.", sign=-1),
    Prior("abandoned", -2.0, "Walked away from the interaction without a result.", sign=-1),
    Prior("decision_reached", 1.5, "A decision was recorded on the strength of this output.", sign=1),
    Prior("referenced_later", 1.2, "Came back to it later: it held information worth returning to.", sign=1),
    Prior(
        "action_taken",
        1.8,
        "Something was done in the world because of it (a claim routed, a fix shipped).",
        sign=1,
    ),
    Prior(
        "metric_moved",
        1.5,
        "An operating metric tied to this unit moved; often delayed, hence not larger.",
        sign=1,
    ),
    Prior("escalated", -1.0, "Handed to a human or a higher tier: the AI did not resolve it.", sign=-1),
    Prior(
        "recontact", -1.5, "The customer came back about the same thing: accepted but not resolved.", sign=-1
    ),
    # Context: what the interaction cost in calls, tokens, time and people.
    Prior(
        "calls",
        -0.15,
        "log2(calls), 0 for one call: many calls for one unit without signals look like a loop; small "
        "because long agent runs are legitimate.",
        sign=0,
        scale=0.5,
    ),
    Prior(
        "tokens",
        0.0,
        "log10(tokens / 1000): size alone says nothing about value; left for calibration to find.",
        scale=0.5,
    ),
    Prior("error_share", -1.0, "Share of the unit's calls that failed: failed calls rarely deliver.", sign=0),
    Prior(
        "latency_over_slo",
        -0.5,
        "Share of calls slower than the workflow's latency SLO: late answers are used less.",
        sign=0,
    ),
    Prior(
        "effort",
        0.0,
        "log2(1 + human minutes): ambiguous (review is part of good work, rework is not); left for "
        "calibration to find.",
        scale=0.5,
    ),
)

FEATURES: tuple[str, ...] = tuple(p.feature for p in PRIORS)
PRIOR_BY_FEATURE: dict[str, Prior] = {p.feature: p for p in PRIORS}

#: Signals that count as "a person accepted the output" along the conversion chain.
ACCEPTANCE_SIGNALS: tuple[str, ...] = (
    "accepted",
    "edited",
    "saved",
    "shared",
    "copied",
    "exported",
    "used_in_artifact",
)
#: Signals that count as "a decision or action followed" along the conversion chain.
ACTION_SIGNALS: tuple[str, ...] = ("decision_reached", "action_taken", "metric_moved", "referenced_later")
#: Signals with a positive prior: their presence is evidence of value.
POSITIVE_SIGNALS: tuple[str, ...] = tuple(p.feature for p in PRIORS if p.sign > 0)
#: Features that are explicit signals (a person acted on the output).
EXPLICIT_FEATURES: tuple[str, ...] = (
    "accepted",
    "edited",
    "rejected",
    "saved",
    "shared",
    "copied",
    "exported",
    "used_in_artifact",
    "rated",
)
