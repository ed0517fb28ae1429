"""The views the dashboard pages show and ``GET /api/v1/views/{name}`` returns: lists of sections.

Each view is a function of the report service, the filters and whether the
caller may see people; it only picks which sections of
:class:`~yieldmeter.app.reports.ReportService` to show.
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
    return [s.coverage_section(f), spend, s.yields_section(f), s.decisions_section(f)]


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


VIEWS: dict[str, View] = {
    v.name: v
    for v in (
        View("overview", "Overview", _overview),
        View("spend", "Spend", _spend),
        View("funnel", "Conversion chain", lambda s, f, p: [s.funnel_section(f)]),
        View("benchmarks", "Teams and patterns", _benchmarks),
        View("people", "People", _people, scope="people"),
        View("waste", "Waste", lambda s, f, p: [s.waste_section(f)]),
        View("unpriced", "Unpriced models", lambda s, f, p: [s.unpriced_section()]),
        View("routing", "Routing", lambda s, f, p: [s.routing_section(f)]),
        View("budgets", "Budgets", lambda s, f, p: [s.budgets_section(f)]),
        View("decisions", "Decisions", lambda s, f, p: [s.decisions_section(f)]),
    )
}


def cache_key(name: str, f: ReportFilters, people: bool) -> tuple[object, ...]:
    """The read cache key of a view: only the people view depends on the caller's scope."""
    return ("view", name, f.key(), people if VIEWS[name].scope == "people" else None)


def warm(reads: object) -> None:
    """Compute the overview in the background at start, so the first visitor does not wait."""
    f = ReportFilters()
    reads.warm(cache_key("overview", f, False), lambda ws: VIEWS["overview"].build(ws.reports, f, False))  # type: ignore[attr-defined]
