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
- ``budget``, ``budget_used`` = fully loaded cost / budget (a budget is for the
  period asked; compare like with like);
- ``decisions``: decisions in the register that name the initiative.

Workflows that belong to no initiative roll up to ``(no initiative)``, so the
rows add up to all spend.
"""

from __future__ import annotations

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
    acc: dict[str, dict[str, Any]] = {}

    def row(name: str) -> dict[str, Any]:
        if name not in acc:
            decl = declared.get(name)
            acc[name] = {
                "initiative": name,
                "owner": decl.owner if decl else None,
                "budget": decl.budget if decl else None,
                "workflows": [],
                "fully_loaded_cost": 0.0,
                "model_cost": 0.0,
                "benefit": 0.0,
                "covered_spend": 0.0,
            }
        return acc[name]

    for name in declared:
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
                "budget_used": flc / r["budget"] if r["budget"] else None,
                "decisions": decisions.get(r["initiative"], 0),
            }
        )
    out.sort(key=lambda r: (r["initiative"] == NONE, -r["fully_loaded_cost"], r["initiative"]))
    return pa.Table.from_pylist(out)
