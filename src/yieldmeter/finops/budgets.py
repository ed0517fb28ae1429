"""Budget status: how much of each budget its window has used, and where it is heading.

For a budget with amount ``A`` over window ``[start, end)`` (see :mod:`.windows`):

- ``spent``      = sum of the basis (model cost or fully loaded cost) of the spend
                   events in the scope with ``start <= ts < end`` (and ts <= now)
- ``used``       = spent / A
- ``state``      = ``hard`` when used >= hard_threshold, else ``soft`` when used >=
                   soft_threshold, else ``ok``; ``hard_breached`` = state is hard: the
                   hard stop a gateway polls (``GET /api/v1/finops/budgets/{id}/status``)
- ``run_rate``   = spent / days elapsed in the window (USD per day)
- ``projected``  = calendar windows: spent + run_rate x days left (a straight-line
                   burn; :mod:`.forecast` gives the model-based burn-down);
                   rolling windows: spent (the window moves with now)
- ``run_out``    = calendar windows: the day the straight-line burn reaches A, when
                   that is before the end of the window; else null

Late-arriving data counts where it belongs: a call ingested today with a
timestamp inside the window is in ``spent`` at the next evaluation.

Initiatives declared in ``yieldmeter.yaml`` with a ``budget`` are budgets too:
scope_kind initiative, period year, basis fully loaded cost, thresholds 0.8 / 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from yieldmeter.config import Config
from yieldmeter.finops.events import BASES, scope_filter
from yieldmeter.finops.windows import BudgetWindow, budget_window, check_period
from yieldmeter.ingest.conform import stable_id


@dataclass(frozen=True)
class Budget:
    budget_id: str
    scope_kind: str
    scope: str
    period: str
    amount: float
    basis: str = "model_cost"
    soft_threshold: float = 0.8
    hard_threshold: float = 1.0
    source: str = "budgets"


class BadBudget(ValueError):
    pass


def load_budgets(budgets: ir.Table, config: Config) -> list[Budget]:
    """Budgets from the budgets table plus the initiatives' budgets; errors name the budget."""
    out: list[Budget] = []
    for r in budgets.to_pyarrow().to_pylist():
        b = Budget(
            budget_id=r["budget_id"],
            scope_kind=r["scope_kind"],
            scope=r["scope"],
            period=r["period"],
            amount=float(r["amount"]),
            basis=r.get("basis") or "model_cost",
            soft_threshold=float(r["soft_threshold"] if r.get("soft_threshold") is not None else 0.8),
            hard_threshold=float(r["hard_threshold"] if r.get("hard_threshold") is not None else 1.0),
        )
        out.append(validate(b))
    for i in config.initiatives:
        if i.budget is not None:
            key = stable_id("initiative", i.initiative, "year")
            out.append(
                Budget(
                    key,
                    "initiative",
                    i.initiative,
                    "year",
                    float(i.budget),
                    "fully_loaded_cost",
                    source="yieldmeter.yaml",
                )
            )
    return out


def validate(b: Budget) -> Budget:
    from yieldmeter.finops.events import SCOPE_COLUMNS

    where = f"budget {b.budget_id} ({b.scope_kind} {b.scope!r}, {b.period})"
    try:
        period = check_period(b.period)
    except ValueError as exc:
        raise BadBudget(f"{where}: {exc}") from None
    if b.scope_kind not in SCOPE_COLUMNS:
        raise BadBudget(f"{where}: scope_kind must be one of {', '.join(SCOPE_COLUMNS)}")
    if b.basis not in BASES:
        raise BadBudget(f"{where}: basis must be model_cost or fully_loaded_cost")
    if b.soft_threshold > b.hard_threshold:
        raise BadBudget(
            f"{where}: soft_threshold {b.soft_threshold} is above hard_threshold {b.hard_threshold}"
        )
    return Budget(**{**b.__dict__, "period": period})


def _spent_expr(ev: ir.Table, b: Budget, w: BudgetWindow) -> ir.Table:
    s = scope_filter(ev, b.scope_kind, b.scope)
    end = min(w.end, w.now + timedelta(microseconds=1))
    s = s.filter((s.ts >= ibis.literal(w.start)) & (s.ts < ibis.literal(end)))
    return s.aggregate(spent=s[b.basis].sum().fill_null(0.0)).mutate(budget_id=ibis.literal(b.budget_id))


def budget_status(ev: ir.Table, budgets: list[Budget], now: datetime, tz: tzinfo = UTC) -> pa.Table:
    """One row per budget with window, spent, used, state, run rate, projection and run-out day."""
    if not budgets:
        return pa.Table.from_pylist([], schema=STATUS_SCHEMA)
    windows = {b.budget_id: budget_window(b.period, now, tz) for b in budgets}
    parts = [_spent_expr(ev, b, windows[b.budget_id]) for b in budgets]
    spent = {r["budget_id"]: float(r["spent"]) for r in ibis.union(*parts).to_pyarrow().to_pylist()}
    rows = [status_row(b, windows[b.budget_id], spent.get(b.budget_id, 0.0), tz) for b in budgets]
    return pa.Table.from_pylist(rows, schema=STATUS_SCHEMA)


def status_row(b: Budget, w: BudgetWindow, spent: float, tz: tzinfo = UTC) -> dict[str, Any]:
    used = spent / b.amount if b.amount > 0 else (float("inf") if spent > 0 else 0.0)
    state = "hard" if used >= b.hard_threshold else "soft" if used >= b.soft_threshold else "ok"
    elapsed_days = max((min(w.now, w.end) - w.start).total_seconds() / 86400.0, 1e-9)
    run_rate = spent / elapsed_days
    run_out: datetime | None = None
    if w.rolling:
        projected = spent
    else:
        left = max((w.end - w.now).total_seconds() / 86400.0, 0.0)
        projected = spent + run_rate * left
        if spent >= b.amount:
            run_out = w.now
        elif run_rate > 0:
            # compare in days first: a tiny run rate would overflow a timedelta
            days_to_run_out = (b.amount - spent) / run_rate
            if days_to_run_out < left:
                run_out = w.now + timedelta(days=days_to_run_out)
    return {
        "budget_id": b.budget_id,
        "scope_kind": b.scope_kind,
        "scope": b.scope,
        "period": b.period,
        "basis": b.basis,
        "window_start": w.start,
        "window_end": w.end,
        "amount": b.amount,
        "spent": spent,
        "used": used,
        "remaining": b.amount - spent,
        "soft_threshold": b.soft_threshold,
        "hard_threshold": b.hard_threshold,
        "state": state,
        "hard_breached": state == "hard",
        "run_rate_per_day": run_rate,
        "projected": projected,
        "projected_used": projected / b.amount if b.amount > 0 else None,
        "run_out_day": run_out.astimezone(tz).date().isoformat() if run_out else None,
        "source": b.source,
    }


_TS = pa.timestamp("us", tz="UTC")
STATUS_SCHEMA = pa.schema(
    [
        ("budget_id", pa.string()),
        ("scope_kind", pa.string()),
        ("scope", pa.string()),
        ("period", pa.string()),
        ("basis", pa.string()),
        ("window_start", _TS),
        ("window_end", _TS),
        ("amount", pa.float64()),
        ("spent", pa.float64()),
        ("used", pa.float64()),
        ("remaining", pa.float64()),
        ("soft_threshold", pa.float64()),
        ("hard_threshold", pa.float64()),
        ("state", pa.string()),
        ("hard_breached", pa.bool_()),
        ("run_rate_per_day", pa.float64()),
        ("projected", pa.float64()),
        ("projected_used", pa.float64()),
        ("run_out_day", pa.string()),
        ("source", pa.string()),
    ]
)
