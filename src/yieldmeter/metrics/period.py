"""Reporting windows and the month grain of the value reports.

A window is half-open ``[start, end)`` in UTC; ``--period`` text is parsed by
:func:`yieldmeter.app.periods.period_bounds` (the same rule as every report).

Per-call time keys (:func:`utc_day`, :func:`utc_second_of_day`) and durations
(:func:`elapsed_seconds`) are computed from the instant's count of microseconds since the
epoch, by the engine's native function (:data:`EPOCH_MICROS`): a UTC day is
``floor(us / 86_400e6)``, exact and free of calendars. Through the calendar (``date_trunc`` on
a ``TIMESTAMPTZ``, or the cast Ibis puts in ``epoch_seconds``) DuckDB consults ICU for every
row, about half a microsecond each: more than pricing the call costs. And Ibis's
``epoch_seconds`` is not the same number everywhere: DuckDB keeps the fraction, Spark's
``unix_timestamp`` drops it, so a duration of 60.26 s read as two ``epoch_seconds`` is 60 s on
Spark and lands in another bucket (this moved one unit between time-to-first-acceptance
segments on the simulated organisation). Microseconds are integers on both engines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

UNASSIGNED = "(unassigned)"
DAY_SECONDS = 86_400
_US = 1_000_000
_DAY_US = DAY_SECONDS * _US


@ibis.udf.scalar.builtin(name="epoch_us")
def _duckdb_epoch_us(ts: dt.Timestamp(timezone="UTC")) -> dt.int64:  # type: ignore[valid-type,empty-body]
    """DuckDB's microseconds since the epoch of an instant (no time zone arithmetic)."""


@ibis.udf.scalar.builtin(name="unix_micros")
def _spark_unix_micros(ts: dt.Timestamp(timezone="UTC")) -> dt.int64:  # type: ignore[valid-type,empty-body]
    """Spark SQL's microseconds since the epoch of a timestamp (Spark 3.1+)."""


#: engine name -> its native "microseconds since the epoch" of a timestamp column
EPOCH_MICROS = {"duckdb": _duckdb_epoch_us, "pyspark": _spark_unix_micros}


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

    def overlapping(self, table: ir.Table, start: str, end: str) -> ir.Table:
        """The rows whose period ``[start, end)`` overlaps the window. A row with no end, or
        an end not after its start, is a moment at ``start``: in the window when that is."""
        s, e = table[start], table[end]
        moment = e.isnull() | (e <= s)
        if self.start is not None:
            table = table.filter(
                ibis.ifelse(moment, s >= ibis.literal(self.start), e > ibis.literal(self.start))
            )
        if self.end is not None:
            table = table.filter(s < ibis.literal(self.end))
        return table

    def share(self, table: ir.Table, start: str, end: str) -> ir.FloatingValue:
        """The part of each row's period ``[start, end)`` inside the window, by time (1.0 for
        a moment, and for a period the window holds whole); for rows :meth:`overlapping` keeps."""
        s, e = table[start], table[end]
        moment = e.isnull() | (e <= s)
        lo = s if self.start is None else ibis.greatest(s, ibis.literal(self.start))
        hi = e if self.end is None else ibis.least(e, ibis.literal(self.end))
        return ibis.ifelse(moment, 1.0, elapsed_seconds(lo, hi) / elapsed_seconds(s, e))

    def first_day(self, ts: ir.TimestampValue) -> ir.TimestampValue:
        """``ts``, or the window's start where ``ts`` lies before it."""
        return ts if self.start is None else ibis.greatest(ts, ibis.literal(self.start))

    def last_day(self, table: ir.Table, start: str, end: str) -> ir.TimestampValue:
        """The end of each row's period ``[start, end)`` inside the window: ``end``, or the
        window's end where ``end`` lies after it; null for a moment (no end, or none after its
        start)."""
        s, e = table[start], table[end]
        inside = e if self.end is None else ibis.least(e, ibis.literal(self.end))
        return ibis.ifelse(e.isnull() | (e <= s), ibis.null("timestamp"), inside).cast(s.type())


def months_between(first: datetime, last: datetime) -> list[tuple[str, datetime, datetime]]:
    """The calendar months (UTC) from the one holding ``first`` to the one holding ``last``:
    ``(label, start, end)``, label ``YYYY-MM`` as :func:`month_of` writes it."""
    out = []
    y, m = first.year, first.month
    last = min(last, datetime(9999, 11, 30, tzinfo=UTC))  # the calendar ends with year 9999
    while (y, m) <= (last.year, last.month):
        start = datetime(y, m, 1, tzinfo=UTC)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        out.append((f"{start:%Y-%m}", start, datetime(y, m, 1, tzinfo=UTC)))
    return out


def month_of(col: ir.TimestampValue) -> ir.StringValue:
    """The month label 'YYYY-MM' of a timestamp (the grain of the value reports)."""
    return col.strftime("%Y-%m")


def _engine(expr: ir.Expr) -> str | None:
    """The name of the one backend ``expr`` reads from (None: none, or several)."""
    backends, _ = expr._find_backends()
    return backends[0].name if len(backends) == 1 else None


def epoch_micros(ts: ir.TimestampValue) -> ir.IntegerValue | None:
    """Microseconds since the epoch, by the engine's native function; None where it has none."""
    native = EPOCH_MICROS.get(_engine(ts) or "")
    return native(ts) if native is not None else None


def utc_day(ts: ir.TimestampValue) -> ir.TimestampValue:
    """Midnight UTC of the day of ``ts``: ``ts.truncate("D")`` in a UTC session, same type."""
    us = epoch_micros(ts) if _engine(ts) == "duckdb" else None
    if us is None:
        # exact elsewhere too (a UTC session); the microsecond path only saves DuckDB its ICU calls
        return ts.truncate("D")
    # floor(us / day) in float64 is exact: a quotient this size is never within rounding of the
    # next integer (1 / 86_400e6 is three orders above its spacing until year 9999)
    return ((us // _DAY_US) * DAY_SECONDS).as_timestamp("s")


def utc_second_of_day(ts: ir.TimestampValue) -> ir.NumericValue:
    """Seconds since midnight UTC (whole seconds where the engine computes it natively).

    Only ever compared with whole-second bounds, where ``floor(x) >= a`` is ``x >= a``.
    """
    us = epoch_micros(ts)
    if us is None:
        return ts.epoch_seconds() % DAY_SECONDS
    return (us % _DAY_US) // _US


def elapsed_seconds(start: ir.TimestampValue, end: ir.TimestampValue) -> ir.FloatingValue:
    """``end - start`` in seconds, to the microsecond, the same number on every engine.

    The difference is taken in integer microseconds and divided once, so a bucket edge (60 s)
    is compared exactly; never through ``epoch_seconds`` (whole seconds on Spark).
    """
    a, b = epoch_micros(start), epoch_micros(end)
    if a is None or b is None:
        return (end.epoch_seconds() - start.epoch_seconds()).cast("float64")
    return (b - a).cast("float64") / float(_US)
