"""The views the dashboard pages show and ``GET /api/v1/views/{name}`` returns: lists of sections.

Each view is a function of the report service, the filters and whether the
caller may see people; it only picks which sections of
:class:`~yieldmeter.app.reports.ReportService` to show. :func:`build` is how the
API and the dashboard run one: the service's privacy check first (a team filter
naming a team below ``privacy.min_group_size`` is refused without ``people``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from yieldmeter.app.reports import ReportFilters, ReportService
from yieldmeter.reports.model import Section


@dataclass(frozen=True)
class View:
    name: str
    title: str
    build: Callable[[ReportService, ReportFilters, bool], list[Section]]
    scope: str = "read"


def _overview(s: ReportService, f: ReportFilters, people: bool) -> list[Section]:
    spend = s.spend_section(f)
    sections = [s.coverage_section(f), spend, s.yields_section(f), s.decisions_section(f)]
    return [*s.no_data_sections(), *sections]


def _benchmarks(s: ReportService, f: ReportFilters, people: bool) -> list[Section]:
    return [s.benchmarks_section(f, "team"), s.patterns_section(f)]


def _people(s: ReportService, f: ReportFilters, people: bool) -> list[Section]:
    return [s.benchmarks_section(f, "user", people=people)]


def _spend(s: ReportService, f: ReportFilters, people: bool) -> list[Section]:
    return [
        s.spend_section(f),
        Section("by_team", "Spend by team", tables=[s.spend_table(f, "team")]),
        s.model_mix(f),
        Section("by_app", "Spend by app", tables=[s.spend_table(f, "app")]),
    ]


def _finops(s: ReportService, f: ReportFilters, name: str) -> Section:
    """A FinOps section (:mod:`yieldmeter.app.finops_sections`), marked unavailable if it cannot run."""
    from yieldmeter.app import finops_sections as fs

    build = getattr(fs, f"{name}_section")
    return s.guarded(name, name.capitalize(), lambda: build(s, f))


VIEWS: dict[str, View] = {
    v.name: v
    for v in (
        View("overview", "Overview", _overview),
        View("spend", "Spend", _spend),
        View("funnel", "Conversion chain", lambda s, f, p: [s.funnel_section(f)]),
        View("benchmarks", "Teams and patterns", _benchmarks),
        View("people", "People", _people, scope="people"),
        View("waste", "Waste", lambda s, f, p: [s.waste_section(f)]),
        View("unpriced", "Unpriced models", lambda s, f, p: [s.unpriced_section(f)]),
        View("routing", "Routing", lambda s, f, p: [s.routing_section(f)]),
        View("budgets", "Budgets", lambda s, f, p: [s.budgets_section(f)]),
        View("alerts", "Alerts", lambda s, f, p: [_finops(s, f, "alerts")]),
        View("forecast", "Forecast", lambda s, f, p: [_finops(s, f, "forecast")]),
        View("anomalies", "Anomalies", lambda s, f, p: [_finops(s, f, "anomalies")]),
        View("decisions", "Decisions", lambda s, f, p: [s.decisions_section(f)]),
    )
}


def build(name: str, s: ReportService, f: ReportFilters) -> list[Section]:
    """The sections of view ``name`` for the filters (``f.people``: the caller may see people)."""
    s.check_privacy(f)
    return VIEWS[name].build(s, f, f.people)


def cache_key(name: str, f: ReportFilters) -> tuple[object, ...]:
    """The read cache key of a view: its name and the filters, the caller's ``people`` included
    (spend by team and the team picker depend on it)."""
    return ("view", name, f.key())


def warm(reads: object, *, open_mode: bool = False) -> None:
    """Compute the overview in the background at start, so the first visitor does not wait: the
    one an open server's single visitor sees (every scope), else a reader's, then a privileged one's."""
    for people in (True,) if open_mode else (False, True):
        f = ReportFilters(people=people)
        reads.warm(cache_key("overview", f), lambda ws, f=f: build("overview", ws.reports, f))  # type: ignore[attr-defined]
