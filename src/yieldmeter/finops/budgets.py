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
- ``unpriced_calls`` = calls in the scope and window whose model has no price: their
                   cost is unknown, so it is not in ``spent`` (never counted as $0, never
                   priced by guess); a budget with unpriced calls can be further along
                   than ``used`` says

Late-arriving data counts where it belongs: a call ingested today with a
timestamp inside the window is in ``spent`` at the next evaluation.

Initiatives declared in ``yieldmeter.yaml`` with a ``budget`` are budgets too:
scope_kind initiative, period year, basis fully loaded cost, thresholds 0.8 / 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from yieldmeter.config import Config
from yieldmeter.errors import InputError, UnknownName
from yieldmeter.finops.events import BASES, scope_filter
from yieldmeter.finops.windows import BadPeriod, BudgetWindow, budget_window, check_period
from yieldmeter.ingest.conform import stable_id

#: Budget scope kinds that name one person: such a budget's spend, alerts and hard stops are
#: per-person data, shown only with the per-person privilege (``people``).
PERSON_SCOPES = ("user",)


def on_person(scope_kind: str | None) -> bool:
    """Whether a budget of ``scope_kind`` is set on one person."""
    return scope_kind in PERSON_SCOPES


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


class BadBudget(InputError):
    """A budget that cannot be used, as given; ``field`` names the field that is wrong."""


class BrokenBudget(RuntimeError):
    """A *stored* budget that does not pass :func:`check_budget` (written before budgets were
    checked on every write, or edited in the store): a fault of the stored state, not of a request."""


class UnknownBudget(UnknownName, KeyError):
    """No budget has this id."""

    def __str__(self) -> str:  # a KeyError would quote its message
        return str(self.args[0]) if self.args else ""


def _text(row: Mapping[str, Any], name: str, where: str) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadBudget(f"{where}: {name} must be text, not {value!r}", name)
    return value.strip()


def _number(row: Mapping[str, Any], name: str, where: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise BadBudget(f"{where}: {name} must be a number, not {value!r}", name) from None
    if not math.isfinite(number) or number < 0:
        raise BadBudget(f"{where}: {name} must be a finite number of at least 0, not {value!r}", name)
    return number


def check_budget(row: Mapping[str, Any], where: str = "budget") -> dict[str, Any]:
    """The fields of a budget ``row`` as a budget is used, or :class:`BadBudget` naming the field.

    ``scope_kind``, ``period`` and ``basis`` are trimmed and lower-cased (``Month`` is ``month``),
    so the budget's identity (its scope kind, scope and period) is the one its reads use;
    ``period`` must be month, quarter, year or rolling:Nd, ``scope_kind`` one of
    :data:`~yieldmeter.finops.events.SCOPE_COLUMNS`, ``basis`` one of ``BASES``, amounts and
    thresholds finite and not negative, the soft threshold (default 0.8) not above the hard one
    (default 1.0). A field the row lacks is not checked here (conform says it is missing).

    The one check of every way a budget is written (``yieldmeter budgets add``,
    ``POST /api/v1/finops/budgets``, ``POST /api/v1/budgets``) and of every read (:func:`validate`).
    """
    from yieldmeter.finops.events import SCOPE_COLUMNS

    out = dict(row)
    kind = _text(row, "scope_kind", where)
    if kind is not None:
        if kind.lower() not in SCOPE_COLUMNS:
            raise BadBudget(
                f"{where}: scope_kind {kind!r} is not one of {', '.join(SCOPE_COLUMNS)}", "scope_kind"
            )
        out["scope_kind"] = kind.lower()
    if row.get("scope") is not None and not isinstance(row["scope"], str):
        raise BadBudget(f"{where}: scope must be text, not {row['scope']!r}", "scope")
    period = _text(row, "period", where)
    if period is not None:
        try:
            out["period"] = check_period(period)
        except BadPeriod as exc:
            raise BadBudget(f"{where}: {exc}", "period") from None
    basis = _text(row, "basis", where)
    if basis is not None:
        if basis.lower() not in BASES:
            raise BadBudget(f"{where}: basis {basis!r} is not model_cost or fully_loaded_cost", "basis")
        out["basis"] = basis.lower()
    for name in ("amount", "soft_threshold", "hard_threshold"):
        number = _number(row, name, where)
        if number is not None:
            out[name] = number
    soft, hard = out.get("soft_threshold"), out.get("hard_threshold")
    soft, hard = 0.8 if soft is None else soft, 1.0 if hard is None else hard
    if soft > hard:
        raise BadBudget(
            f"{where}: soft_threshold {soft:g} is above hard_threshold {hard:g}", "soft_threshold"
        )
    return out


def check_budget_rows(doc: Any) -> Any:
    """Posted budget rows (a list of objects, or one object) as :func:`check_budget` normalises
    them, before anything is written; :class:`BadBudget` names the row (from 1) and the field.
    What is not an object is left as it is, for the caller to refuse."""
    rows = [doc] if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        return doc
    return [check_budget(r, f"budget {i}") if isinstance(r, dict) else r for i, r in enumerate(rows, 1)]


def check_budget_columns(columns: dict[str, pa.Array], flag: Callable[[pa.Array, str], None]) -> None:
    """The budgets table's row check (``schema.BUDGETS.row_check``): :func:`check_budget` on every
    row of every write, a file's included, so a budget no read could use is flagged with its
    reason, never stored. The rows that pass take its spelling (scope kind, period and basis
    trimmed and lower-cased) before their ids are derived, so ``Month`` and ``month`` are one
    budget."""
    normalised = ("scope_kind", "period", "basis")
    rows = pa.table(columns).to_pylist()
    wrong: list[str | None] = []
    for i, row in enumerate(rows):
        try:
            checked = check_budget(row, "budget")
        except BadBudget as exc:
            wrong.append(str(exc).removeprefix("budget: "))
            continue
        wrong.append(None)
        rows[i] = {**row, **{k: checked[k] for k in normalised if k in checked}}
    for name in normalised:
        columns[name] = pa.array([r[name] for r in rows], columns[name].type)
    for reason in sorted({w for w in wrong if w is not None}):
        flag(pa.array([w == reason for w in wrong]), reason)


def load_budgets(budgets: ir.Table, config: Config) -> list[Budget]:
    """Budgets from the budgets table plus the initiatives' budgets.

    A stored budget that does not pass :func:`check_budget` raises :class:`BrokenBudget` naming it
    and how to replace it: the store holds something no write lets in any more.
    """
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
        try:
            out.append(validate(b))
        except BadBudget as exc:
            raise BrokenBudget(
                f"stored {exc}. Replace it: post a budget with the same budget_id and a valid "
                f"{exc.field or 'value'} (POST /api/v1/budgets, or a budgets file)"
            ) from None
    stored = {b.budget_id for b in out}
    for i in config.initiatives:
        if i.budget is not None:
            key = stable_id("initiative", i.initiative, "year")
            if key in stored:  # one budget per scope and period: the one set since (CLI, API) wins
                continue
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
    """``b`` as :func:`check_budget` normalises it; :class:`BadBudget` names the budget and field."""
    where = f"budget {b.budget_id} ({b.scope_kind} {b.scope!r}, {b.period})"
    return Budget(**check_budget(b.__dict__, where))


def _spent_expr(ev: ir.Table, b: Budget, w: BudgetWindow) -> ir.Table:
    s = scope_filter(ev, b.scope_kind, b.scope)
    end = min(w.end, w.now + timedelta(microseconds=1))
    s = s.filter((s.ts >= ibis.literal(w.start)) & (s.ts < ibis.literal(end)))
    return s.aggregate(
        spent=s[b.basis].sum().fill_null(0.0), unpriced_calls=s.unpriced_calls.sum().fill_null(0)
    ).mutate(budget_id=ibis.literal(b.budget_id))


def budget_status(ev: ir.Table, budgets: list[Budget], now: datetime, tz: tzinfo = UTC) -> pa.Table:
    """One row per budget with window, spent, used, state, run rate, projection and run-out day."""
    if not budgets:
        return pa.Table.from_pylist([], schema=STATUS_SCHEMA)
    windows = {b.budget_id: budget_window(b.period, now, tz) for b in budgets}
    parts = [_spent_expr(ev, b, windows[b.budget_id]) for b in budgets]
    got = {r["budget_id"]: r for r in ibis.union(*parts).to_pyarrow().to_pylist()}
    rows = [
        status_row(
            b,
            windows[b.budget_id],
            float(got.get(b.budget_id, {}).get("spent") or 0.0),
            tz,
            unpriced_calls=int(got.get(b.budget_id, {}).get("unpriced_calls") or 0),
        )
        for b in budgets
    ]
    return pa.Table.from_pylist(rows, schema=STATUS_SCHEMA)


def status_row(
    b: Budget, w: BudgetWindow, spent: float, tz: tzinfo = UTC, *, unpriced_calls: int = 0
) -> dict[str, Any]:
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
        "unpriced_calls": unpriced_calls,
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
        ("unpriced_calls", pa.int64()),
        ("source", pa.string()),
    ]
)
