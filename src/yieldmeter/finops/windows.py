"""Budget windows: calendar periods in a time zone and rolling windows.

A window is half-open ``[start, end)`` in UTC instants.

* ``month`` / ``quarter`` / ``year``: the calendar period that holds ``now``,
  starting at local midnight in the configured time zone (so a Paris month
  starts at 22:00 or 23:00 UTC the evening before, with daylight saving).
* ``rolling:Nd``: the last N x 24 hours before ``now`` — ``[now - N days, now)``.
  A rolling window crosses period boundaries freely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from yieldmeter.errors import InputError

_ROLLING = re.compile(r"^rolling:(\d{1,4})d$")
CALENDAR = ("month", "quarter", "year")


class BadPeriod(InputError):
    pass


@dataclass(frozen=True)
class BudgetWindow:
    period: str
    start: datetime  # UTC
    end: datetime  # UTC
    now: datetime  # UTC
    rolling: bool

    @property
    def elapsed(self) -> float:
        """Share of the window that has passed at ``now`` (1.0 for a rolling window)."""
        if self.rolling:
            return 1.0
        total = (self.end - self.start).total_seconds()
        return min(1.0, max(0.0, (self.now - self.start).total_seconds() / total))

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400.0


def check_period(period: str) -> str:
    """The period text, or a BadPeriod saying which forms are accepted."""
    p = (period or "").strip().lower()
    if p in CALENDAR or _ROLLING.match(p):
        if p.startswith("rolling:") and int(_ROLLING.match(p).group(1)) == 0:  # type: ignore[union-attr]
            raise BadPeriod(f"period {period!r}: a rolling window needs at least 1 day")
        return p
    raise BadPeriod(f"period {period!r} is not month, quarter, year or rolling:Nd (e.g. rolling:7d)")


def _local_start(now_local: datetime, period: str) -> tuple[datetime, datetime]:
    y, m = now_local.year, now_local.month
    if period == "month":
        a, b = (y, m), (y + (m == 12), m % 12 + 1)
    elif period == "quarter":
        q0 = 3 * ((m - 1) // 3) + 1
        a, b = (y, q0), (y + (q0 == 10), (q0 + 2) % 12 + 1)
    else:
        a, b = (y, 1), (y + 1, 1)
    tz = now_local.tzinfo
    return datetime(a[0], a[1], 1, tzinfo=tz), datetime(b[0], b[1], 1, tzinfo=tz)


def budget_window(period: str, now: datetime, tz: tzinfo = UTC) -> BudgetWindow:
    """The window of ``period`` that holds ``now`` (an aware datetime; naive means UTC)."""
    p = check_period(period)
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    m = _ROLLING.match(p)
    if m:
        return BudgetWindow(p, now - timedelta(days=int(m.group(1))), now, now, True)
    start, end = _local_start(now.astimezone(tz), p)
    return BudgetWindow(p, start.astimezone(UTC), end.astimezone(UTC), now, False)


def next_months(now: datetime, tz: tzinfo, n: int = 3) -> list[tuple[str, datetime, datetime]]:
    """The rest of the current month and the next ``n`` calendar months: (label, start, end) in UTC."""
    w = budget_window("month", now, tz)
    out = [(f"rest of {w.start.astimezone(tz):%Y-%m}", now.astimezone(UTC), w.end)]
    start = w.end
    for _ in range(n):
        local = start.astimezone(tz)
        _, end = _local_start(local + timedelta(days=1), "month")
        out.append((f"{local:%Y-%m}", start, end.astimezone(UTC)))
        start = end.astimezone(UTC)
    return out
