"""Role reports: which sections answer the questions each role asks.

- **board**: the share of AI spend connected to measured outcomes, yields with their
  evidence, the trend, and the decisions the evidence changed.
- **cfo**: model-only vs fully loaded cost, yields with intervals, named benefit owners,
  a production-scale scenario; budget status, the spend forecast and chargeback by team.
- **cio** (and CAIO): the share of calls mapped to work units and workflows, coverage,
  unpriced models, model mix.
- **coo**: outcomes against baselines, the conversion chain, waste.
- **finops**: unit costs, model mix, spend by team, budgets and alerts, the forecast, anomalies,
  chargeback by team, initiatives, unpriced models, waste, routing.
- **product**: cost per accepted and per successful outcome (not per call), patterns, waste.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from yieldmeter.app import finops_sections as fs
from yieldmeter.app import role_sections as rs
from yieldmeter.reports.model import Report, Section

if TYPE_CHECKING:
    from yieldmeter.app.reports import ReportFilters, ReportService

TITLES = {
    "board": ("Board pack", "What AI spend produced, and how sure we are"),
    "cfo": ("CFO report", "Cost, yield, owners and what production scale means"),
    "cio": ("CIO / CAIO report", "How much of AI use is tied to work, workflows and owners"),
    "coo": ("COO report", "Operating outcomes against baselines"),
    "finops": ("FinOps report", "Unit costs, model mix, budgets and unpriced usage"),
    "product": ("Product report", "Cost per accepted and per successful outcome, not per call"),
}


def _spend_by_team(svc: ReportService, f: ReportFilters) -> Section:
    return Section(
        "spend_by_team", "Spend by team", "Which teams spend what?", tables=[svc.spend_table(f, "team")]
    )  # small teams merged for a reader without the people privilege (ReportService.spend)


def _plan(svc: ReportService, f: ReportFilters) -> dict[str, list[Callable[[], Section]]]:
    def g(
        key: str, title: str, fn: Callable[[ReportService, ReportFilters], Section]
    ) -> Callable[[], Section]:
        return lambda: svc.guarded(key, title, lambda: fn(svc, f))

    return {
        "board": [
            lambda: svc.coverage_section(f),
            lambda: svc.spend_section(f),
            lambda: svc.yields_section(f),
            lambda: svc.decisions_section(f),
            lambda: svc.waste_section(f),
        ],
        "cfo": [
            lambda: svc.spend_section(f),
            lambda: svc.yields_section(f),
            g("owners", "Named benefit owners", rs.owners_section),
            g("scenario", "Production-scale scenario", rs.scenario_section),
            lambda: svc.coverage_section(f),
            lambda: svc.budgets_section(f),
            g("forecast", "Forecast", fs.forecast_section),
            g("chargeback", "Chargeback by team", fs.showback_section),
        ],
        "cio": [
            g("mapping", "Calls mapped to work and workflows", rs.mapping_section),
            lambda: svc.coverage_section(f),
            lambda: svc.unpriced_section(f),
            lambda: svc.model_mix(f),
        ],
        "coo": [
            g("outcomes", "Outcomes against baselines", rs.outcomes_section),
            lambda: svc.funnel_section(f),
            lambda: svc.waste_section(f),
        ],
        "finops": [
            lambda: svc.spend_section(f),
            lambda: svc.funnel_section(f),
            lambda: svc.model_mix(f),
            lambda: _spend_by_team(svc, f),
            lambda: svc.budgets_section(f),
            g("forecast", "Forecast", fs.forecast_section),
            g("anomalies", "Anomalies", fs.anomalies_section),
            g("chargeback", "Chargeback by team", fs.showback_section),
            g("initiatives", "Initiatives", fs.initiatives_section),
            lambda: svc.unpriced_section(f),
            lambda: svc.waste_section(f),
            lambda: svc.routing_section(f),
        ],
        "product": [
            lambda: svc.funnel_section(f, lead_with_outcomes=True),
            lambda: svc.patterns_section(f),
            lambda: svc.waste_section(f),
        ],
    }


def build_report(svc: ReportService, role: str, f: ReportFilters) -> Report:
    title, subtitle = TITLES[role]
    sections = [build() for build in _plan(svc, f)[role]]
    return Report(role, title, subtitle, f.label, svc.now(), str(svc.ws.root), sections)
