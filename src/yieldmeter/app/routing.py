"""RoutingService: which workload should run on which model, with the evidence and the savings.

``ws.routing`` is what the CLI, the dashboard and the FinOps report call. Success per work unit is
the value engine's (``ws.value.facts()``: quality threshold, risk class and latency SLO met), so
routing and the conversion chain count the same successful outcomes.

Methods return plain rows (lists of dicts) or the report objects of :mod:`yieldmeter.routing`:

- :meth:`report`: every segment's decision, the tier frontier and the totals (with per-tier totals);
- :meth:`recommendations`, :meth:`experiments`, :meth:`not_testable`, :meth:`insufficient`,
  :meth:`frontier`, :meth:`totals`, :meth:`evidence` (per model, with latency and intervals): the
  parts surfaces show;
- :meth:`policy`, :meth:`policy_json`, :meth:`litellm_yaml`: the exports;
- :meth:`replay`: last month's traffic (or a period) under a policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import ibis.expr.types as ir

from yieldmeter.routing.policy import Policy, litellm_yaml, load_policy, policy_from_report
from yieldmeter.routing.recommend import RoutingSettings
from yieldmeter.routing.replay import ReplayResult, replay
from yieldmeter.routing.report import RoutingReport, analyse
from yieldmeter.routing.segments import in_window, routing_units

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace

Period = tuple[datetime | None, datetime | None]


class RoutingService:
    """Routing over one workspace; reports are cached per period until the value service's facts
    change (``ws.value.invalidate()`` after new data)."""

    def __init__(self, ws: Workspace, settings: RoutingSettings | None = None) -> None:
        self.ws = ws
        self.settings = settings or RoutingSettings()
        self._reports: dict[tuple[Any, ...], RoutingReport] = {}
        self._facts: ir.Table | None = None

    # -- inputs ------------------------------------------------------------------------------
    def units(self, start: datetime | None = None, end: datetime | None = None) -> ir.Table:
        """Routing units (one per work unit with calls) started in [start, end)."""
        facts = self.ws.value.facts()
        if facts is not self._facts:
            # the value service re-derived its facts (new data landed): cached reports are stale
            self._facts = facts
            self._reports.clear()
        return in_window(routing_units(facts), start, end)

    def _workflows(self) -> ir.Table:
        return self.ws.value.tables().workflows

    def providers(self) -> dict[str, str]:
        """The provider each model was called through (the most frequent), for the LiteLLM export."""
        c = self.ws.value.tables().calls
        c = c.filter(c.model.notnull() & c.provider.notnull())
        rows = c.group_by(["model", "provider"]).aggregate(n=c.count()).to_pyarrow().to_pylist()
        best: dict[str, tuple[int, str]] = {}
        for r in rows:
            if r["model"] not in best or r["n"] > best[r["model"]][0]:
                best[r["model"]] = (r["n"], r["provider"])
        return {m: p for m, (_, p) in best.items()}

    # -- the report ----------------------------------------------------------------------------
    def report(self, start: datetime | None = None, end: datetime | None = None) -> RoutingReport:
        key = (start, end)
        units = self.units(start, end)  # first: it forgets stale reports
        if key not in self._reports:
            self._reports[key] = analyse(units, self._workflows(), self.settings)
        return self._reports[key]

    def recommendations(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Switches that are statistically clear, with their evidence and projections."""
        return [d.to_dict() for d in self.report(start, end).recommendations]

    def experiments(self, start: datetime | None = None, end: datetime | None = None) -> list[dict[str, Any]]:
        """Segments where a cheaper model looks promising: the experiment that would settle it."""
        return [d.to_dict() for d in self.report(start, end).experiments]

    def insufficient(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Segments with too little data to route, listed so nothing is routed silently."""
        return [d.to_dict() for d in self.report(start, end).insufficient]

    def frontier(self, start: datetime | None = None, end: datetime | None = None) -> list[dict[str, Any]]:
        """Per value tier and model: success rate, cost per unit and per success; the Pareto set."""
        return self.report(start, end).frontier

    def totals(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        workflows: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Totals of the switches (of ``workflows``, and of the segments now on ``models``)."""
        return self.report(start, end).totals(workflows, models)

    def table(self, start: datetime | None = None, end: datetime | None = None) -> list[dict[str, Any]]:
        """One row per segment: action, model, success and cost per success now and after, saving."""
        return self.report(start, end).rows()

    def evidence(self, start: datetime | None = None, end: datetime | None = None) -> list[dict[str, Any]]:
        """One row per segment and model: volume, success, cost per success and latency, with
        their intervals (what every decision rests on)."""
        return self.report(start, end).model_rows()

    def not_testable(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Segments kept because no experiment could decide within the time limit at their volume."""
        return [d.to_dict() for d in self.report(start, end).not_testable]

    # -- exports ---------------------------------------------------------------------------------
    def policy(self, start: datetime | None = None, end: datetime | None = None) -> Policy:
        return policy_from_report(self.report(start, end))

    def policy_json(self, start: datetime | None = None, end: datetime | None = None) -> str:
        return self.policy(start, end).to_json()

    def litellm_yaml(self, start: datetime | None = None, end: datetime | None = None) -> str:
        return litellm_yaml(self.policy(start, end), self.providers())

    # -- replay ---------------------------------------------------------------------------------
    def last_month(self) -> Period:
        """The 30 days up to and including the last work unit's start."""
        span = self.units().aggregate(last=self.units().started_at.max()).to_pyarrow().to_pylist()[0]
        last = span["last"]
        if last is None:
            return (None, None)
        end = last + timedelta(microseconds=1)
        return (end - timedelta(days=30), end)

    def replay(
        self, policy: Policy | str, start: datetime | None = None, end: datetime | None = None
    ) -> ReplayResult:
        """Counterfactual cost and successes of the period's traffic under ``policy`` (a Policy or a
        path to a policy JSON file); the period defaults to :meth:`last_month`."""
        if not isinstance(policy, Policy):
            policy = load_policy(policy)
        if start is None and end is None:
            start, end = self.last_month()
        return replay(self.units(start, end), policy, start, end)
