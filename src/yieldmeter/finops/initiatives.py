"""Initiatives: spend, value and yield rolled up to the portfolio a board funds.

An initiative groups workflows (``initiatives:`` in ``yieldmeter.yaml``, or a
workflow's own ``initiative`` key). Over the period, per initiative:

- ``fully_loaded_cost``, ``model_cost``: the spend events of its workflows;
- ``benefit``: the sum over its workflows of the monetary yield families'
  benefit (workflow, revenue, risk, capacity; see :mod:`yieldmeter.metrics.yields`);
  strategic value is never a dollar figure and is not added;
- ``yield`` = benefit / fully loaded cost (null when there is no cost);
- ``attribution_coverage`` = covered spend / spend of its workflows (the value
  engine's coverage: baseline, owner and evidence);
- ``budget`` (a year's, as declared), ``period_budget`` = the budget prorated to
  the period asked: budget x the period's days in each year / that year's days
  (a month of a 120,000 budget is 120,000 x 30 / 365 = 9,863); with no period,
  the days from the first to the last day with spend. ``budget_used`` = fully
  loaded cost / period budget;
- ``decisions``: decisions in the register that name the initiative;
- ``declared``: whether ``yieldmeter.yaml`` declares the initiative. A decision
  that names an initiative nobody declared is not dropped: its initiative gets
  a row (no spend, ``declared`` false) and :func:`undeclared` lists it, so a
  typo in the register shows.

Workflows that belong to no initiative roll up to ``(no initiative)``, so the
rows add up to all spend.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from yieldmeter.metrics.period import Window

if TYPE_CHECKING:
    from yieldmeter.app.finops import FinOpsService

NONE = "(no initiative)"


def rollup(svc: FinOpsService, period: str | None = None) -> pa.Table:
    from yieldmeter.app.periods import period_bounds
    from yieldmeter.finops.events import initiative_map

    ws = svc.ws
    start, end = period_bounds(period)
    window = Window(start, end, period or "all")
    t = ws.tables()
    ev = window.filter(svc.events(), "ts")
    spend = {
        r["workflow"]: r
        for r in ev.group_by("workflow")
        .aggregate(fully_loaded_cost=ev.fully_loaded_cost.sum(), model_cost=ev.model_cost.sum())
        .to_pyarrow()
        .to_pylist()
    }
    of = {
        r["map_workflow"]: r["map_initiative"] for r in initiative_map(t, ws.config).to_pyarrow().to_pylist()
    }
    benefit: dict[str, float] = {}
    covered: dict[str, float] = {}
    notes: list[str] = []
    try:
        for r in ws.value.yields(None, window).yields.to_pylist():
            if r["workflow"] != "(all)":
                benefit[r["workflow"]] = benefit.get(r["workflow"], 0.0) + float(r["benefit"] or 0.0)
        for r in ws.value.coverage(None, window).by_workflow.to_pylist():
            if r["workflow"] != "(all)":
                covered[r["workflow"]] = float(r.get("covered_spend") or 0.0)
    except ImportError as exc:  # the value engine is optional here
        notes.append(f"value not rolled up: {exc}")
    decisions: dict[str, int] = {}
    d = window.filter(t.decisions, "date")
    for r in d.group_by("initiative").aggregate(n=d.count()).to_pyarrow().to_pylist():
        decisions[r["initiative"] or NONE] = int(r["n"])
    declared = {i.initiative: i for i in ws.config.initiatives}
    # the yearly budget in force: yieldmeter.yaml's, or the one set since with budgets add / the API
    yearly = {
        b.scope: b.amount for b in svc.budget_list() if b.scope_kind == "initiative" and b.period == "year"
    }
    known = set(declared) | set(of.values())
    days = _period_years(start, end, ev)
    acc: dict[str, dict[str, Any]] = {}

    def row(name: str) -> dict[str, Any]:
        if name not in acc:
            decl = declared.get(name)
            acc[name] = {
                "initiative": name,
                "owner": decl.owner if decl else None,
                "budget": yearly.get(name),
                "workflows": [],
                "fully_loaded_cost": 0.0,
                "model_cost": 0.0,
                "benefit": 0.0,
                "covered_spend": 0.0,
            }
        return acc[name]

    for name in declared:
        row(name)
    for name in decisions:  # a decision naming an initiative nobody declared: shown, not dropped
        if name != NONE and name not in known:
            row(name)
    for wf in sorted(set(spend) | set(benefit), key=lambda x: (x is None, x or "")):
        r = row(of.get(wf, NONE) if wf else NONE)
        r["workflows"].append(wf or "(none)")
        s = spend.get(wf) or {}
        r["fully_loaded_cost"] += float(s.get("fully_loaded_cost") or 0.0)
        r["model_cost"] += float(s.get("model_cost") or 0.0)
        r["benefit"] += benefit.get(wf, 0.0)
        r["covered_spend"] += covered.get(wf, 0.0)
    out = []
    for r in acc.values():
        flc = r["fully_loaded_cost"]
        out.append(
            {
                **r,
                "workflows": ", ".join(r["workflows"]),
                "yield": r["benefit"] / flc if flc > 0 else None,
                "attribution_coverage": r["covered_spend"] / flc if flc > 0 else None,
                "period_budget": _prorate(r["budget"], days),
                "budget_used": flc / _prorate(r["budget"], days) if r["budget"] and days else None,
                "decisions": decisions.get(r["initiative"], 0),
                "declared": r["initiative"] in known or r["initiative"] == NONE,
            }
        )
    out.sort(key=lambda r: (r["initiative"] == NONE, -r["fully_loaded_cost"], r["initiative"]))
    return pa.Table.from_pylist(out)


def _period_years(start: datetime | None, end: datetime | None, ev: Any) -> float:
    """The period as a number of years: each year's days in it / that year's days."""
    if start is None or end is None:
        span = ev.aggregate(a=ev.ts.min(), b=ev.ts.max()).to_pyarrow().to_pylist()[0]
        if span["a"] is None:
            return 0.0
        first = span["a"].date() if start is None else start.date()
        last = span["b"].date() + timedelta(days=1) if end is None else end.date()
    else:
        first, last = start.date(), end.date()
    years = 0.0
    for y in range(first.year, last.year + 1):
        y0, y1 = max(first, date(y, 1, 1)), min(last, date(y + 1, 1, 1))
        if y1 > y0:
            years += (y1 - y0).days / (date(y + 1, 1, 1) - date(y, 1, 1)).days
    return years


def _prorate(budget: float | None, years: float) -> float | None:
    return budget * years if budget is not None and years > 0 else None


def undeclared(svc: FinOpsService) -> list[dict[str, Any]]:
    """Decisions that name an initiative ``yieldmeter.yaml`` does not declare, with what to do."""
    from yieldmeter.finops.events import initiative_map

    ws = svc.ws
    t = ws.tables()
    known = {i.initiative for i in ws.config.initiatives} | {
        r["map_initiative"] for r in initiative_map(t, ws.config).to_pyarrow().to_pylist()
    }
    d = t.decisions.filter(t.decisions.initiative.notnull())
    out = []
    for r in d.select("decision_id", "initiative").to_pyarrow().to_pylist():
        if r["initiative"] not in known:
            out.append(
                {
                    **r,
                    "problem": f"decision {r['decision_id']} names initiative {r['initiative']!r}, which "
                    f"yieldmeter.yaml does not declare (initiatives: {', '.join(sorted(known)) or 'none'}); "
                    "fix the decision or declare the initiative",
                }
            )
    return out
