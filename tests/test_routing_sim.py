"""Routing validated on a scenario with known truth (yieldmeter.routing.sim), across seeds.

The truth has, per segment, a cheaper model of equal success (support FAQ, claims extraction,
fraud card alerts...), cheaper but clearly worse ones (claims settlement letters, fraud account
takeover), one as good but too slow for the SLO (claims triage), one with too little traffic on
the alternative (support refunds: an experiment) and one with too little data at all.
Evidence: 60 days of traffic per seed (the scenario's volumes; see docs/routing.md for 30 days).
"""

from __future__ import annotations

import statistics

import ibis

from yieldmeter.routing import sim
from yieldmeter.routing.recommend import Action, RoutingSettings
from yieldmeter.routing.report import analyse

SEEDS = range(10)
S = RoutingSettings()


def run(seed: int) -> tuple[sim.Evaluation, list]:
    units = ibis.memtable(sim.simulate_units(seed, days=60))
    report = analyse(units, ibis.memtable(sim.workflows_table()), S)
    return sim.evaluate(report.decisions, S), report.decisions


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
        refund = by["support-drafts/refund"]  # ~48 units on the alternative in 60 days
        assert refund.action in (Action.EXPERIMENT, Action.KEEP) or refund.model == "gpt-4o-mini", seed
        assert refund.action is not Action.EXPERIMENT or refund.experiment is not None
    # Statistical decisions can miss a saving by chance (a non-inferiority test at 2.5% per
    # candidate): 9 seeds in 10 must reach 90% of the oracle saving, and the mean must too.
    assert sum(c >= 0.9 for c in captures) >= 9, captures
    assert statistics.mean(captures) >= 0.9, captures


def test_replay_against_everything_on_the_strong_model() -> None:
    # RouteLLM's metric: cost saved against the strong model alone, at the share of its successful
    # outcomes kept. On this scenario (docs/routing.md): about 54% saved keeping about 99%.
    a = sim.anchor_comparison(0)
    assert a.cost_reduction > 0.4
    assert a.success_share >= 0.95
