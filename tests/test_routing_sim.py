"""Routing validated on a scenario with known truth (yieldmeter.routing.sim), across seeds.

The truth has, per segment, a cheaper model of equal success (support FAQ, claims extraction,
fraud card alerts...), cheaper but clearly worse ones (claims settlement letters, fraud account
takeover), one as good but too slow for the SLO (claims triage), one with too little traffic on
the alternative (support refunds: an experiment, or kept as not testable) and one with too little
data at all. Evidence: one month of traffic per seed, as `yieldmeter route` would use.

The tolerance, and why. Every switch with a large share of the saving has a decisive test with power
near 1 at these volumes (claims extraction, 10,000 units a month split 60/20/20, success about 0.85:
non-inferiority z = 0.05 / sqrt(0.1275/6000 + 0.1275/2000) = 5.4 against 1.96, a miss rate of 3 in
10,000). One refusal is designed in and cannot shrink with volume: in a high-stakes segment a switch
is refused when the candidate's success rate is "significantly lower" at alpha = 0.05, so a truly
equal candidate is refused 5% of the time. Fraud card alerts are such a segment and carry about a
third of the oracle's saving, so about 5% of seeds fall below 90% (benchmarks/bench_routing.py: 2
seeds of 40). Hence: a seed may fall below 90% only through that refusal (checked below), and at most
2 of 10 may (P(more than 2 of 10) = 1.2% at 5% a seed); the mean must reach 95%.
"""

from __future__ import annotations

import statistics

import ibis

from yieldmeter.routing import sim
from yieldmeter.routing.recommend import Action, Decision, RoutingSettings, Tier
from yieldmeter.routing.report import analyse

SEEDS = range(10)
S = RoutingSettings()


def run(seed: int) -> tuple[sim.Evaluation, list]:
    units = ibis.memtable(sim.simulate_units(seed, days=30))
    report = analyse(units, ibis.memtable(sim.workflows_table()), S)
    return sim.evaluate(report.decisions, S), report.decisions


def by_key(decisions: list[Decision]) -> dict[tuple[str, str], Decision]:
    return {(d.workflow, d.task_type): d for d in decisions}


def test_recommendations_capture_the_oracle_saving_and_never_harm_high_stakes() -> None:
    captures = []
    for seed in SEEDS:
        ev, decisions = run(seed)
        captures.append(ev.capture)
        # never a high-stakes segment moved to a truly worse model, never any move beyond the margin
        assert ev.high_stakes_moved_to_worse == [], (seed, ev)
        assert ev.moved_beyond_margin == [], (seed, ev)
        # too little data: listed as such, never routed
        assert ev.insufficient == ["fraud-review/merchant-review"], seed
        by = {d.segment: d for d in decisions}
        assert by["fraud-review/account-takeover"].action is Action.KEEP, seed
        assert by["claims/settlement-letter"].action is Action.KEEP, seed
        assert by["claims/triage"].model != "local-llama-70b", seed  # too slow for the SLO
        refund = by["support-drafts/refund"]  # ~24 units on the alternative in a month
        assert refund.action in (Action.EXPERIMENT, Action.KEEP), seed
        assert refund.action is not Action.EXPERIMENT or refund.experiment is not None
        # kept as not testable: it says how long the experiment would take (with ~24 units the
        # alternative can also look dearer by chance: a plain keep)
        assert refund.not_testable is None or refund.not_testable.days > S.max_days, seed
        if ev.capture < 0.9:
            # the only admissible cause: the high-stakes guard refused a truly equal candidate;
            # with those segments' oracle saving added back, the seed reaches 90%
            tiers = {k: d.tier for k, d in by_key(decisions).items()}
            orc = {(o.workflow, o.task_type): o for o in sim.oracle(tiers, S)}
            refused = [
                d
                for d in decisions
                if d.tier is Tier.HIGH_STAKES
                and d.action is not Action.SWITCH
                and "significantly lower success rate" in d.reason
            ]
            back = sum(orc[(d.workflow, d.task_type)].monthly_saving for d in refused)
            assert (ev.captured_saving + back) / ev.oracle_saving >= 0.9, (seed, captures, decisions)
    assert sum(c < 0.9 for c in captures) <= 2, captures
    assert statistics.mean(captures) >= 0.95, captures


def test_replay_against_everything_on_the_strong_model() -> None:
    # RouteLLM's metric: cost saved against the strong model alone, at the share of its successful
    # outcomes kept (benchmarks/results/routing.json has the figures over seeds; docs/routing.md).
    a = sim.anchor_comparison(0)
    assert a.cost_reduction > 0.4
    assert a.success_share >= 0.95
