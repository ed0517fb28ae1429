"""Reporting windows and the month grain of the value reports.

A window is half-open ``[start, end)`` in UTC; ``--period`` text is parsed by
:func:`yieldmeter.app.periods.period_bounds` (the same rule as every report).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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


def month_of(col: ir.TimestampValue) -> ir.StringValue:
    """The month label 'YYYY-MM' of a timestamp (the grain of the value reports)."""
    return col.strftime("%Y-%m")
