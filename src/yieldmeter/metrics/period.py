"""Reporting periods: ``--period`` values and the month grain of the value reports.

Accepted forms: ``2026`` (a year), ``2026-Q4`` (a quarter), ``2026-10`` (a
month), ``2026-10-01..2026-11-15`` (a range of days, end inclusive). A window is
half-open ``[start, end)`` in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import ibis
import ibis.expr.types as ir

UNASSIGNED = "(unassigned)"


@dataclass(frozen=True)
class Window:
    start: datetime | None = None
    end: datetime | None = None
    label: str = "all"

    def filter(self, table: ir.Table, column: str) -> ir.Table:
        col = table[column]
        if self.start is not None:
            table = table.filter(col >= ibis.literal(self.start))
        if self.end is not None:
            table = table.filter(col < ibis.literal(self.end))
        return table


def _month(y: int, m: int) -> datetime:
    return datetime(y + (m - 1) // 12, (m - 1) % 12 + 1, 1, tzinfo=UTC)


def parse_period(text: str | None) -> Window:
    """A :class:`Window` from a ``--period`` value; a ValueError says which forms are accepted."""
    if text is None or text.strip() in ("", "all"):
        return Window()
    s = text.strip()
    try:
        if m := re.fullmatch(r"(\d{4})", s):
            y = int(m[1])
            return Window(datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC), s)
        if m := re.fullmatch(r"(\d{4})-[Qq]([1-4])", s):
            y, q = int(m[1]), int(m[2])
            return Window(_month(y, 3 * q - 2), _month(y, 3 * q + 1), s.upper())
        if m := re.fullmatch(r"(\d{4})-(\d{1,2})", s):
            y, mo = int(m[1]), int(m[2])
            if not 1 <= mo <= 12:
                raise ValueError
            return Window(_month(y, mo), _month(y, mo + 1), s)
        if m := re.fullmatch(r"(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})", s):
            a = datetime.fromisoformat(m[1]).replace(tzinfo=UTC)
            b = datetime.fromisoformat(m[2]).replace(tzinfo=UTC) + timedelta(days=1)
            if b <= a:
                raise ValueError
            return Window(a, b, s)
    except ValueError:
        pass
    raise ValueError(
        f"period {text!r} is not understood; use a year (2026), a quarter (2026-Q4), "
        "a month (2026-10) or a range of days (2026-10-01..2026-11-15)"
    )


def month_of(col: ir.TimestampValue) -> ir.StringValue:
    """The month label 'YYYY-MM' of a timestamp (the grain of the value reports)."""
    return col.strftime("%Y-%m")
