"""Reporting periods as half-open UTC intervals [start, end)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from yieldmeter.errors import InputError


class PeriodError(InputError):
    """A period text that is not one of the accepted forms, or that ends before it starts."""

    field = "period"


#: The years a period or an "as of" time may fall in: windows, forecasts and look-backs reach
#: a year or more either side, which the calendar must still hold.
YEARS = (1900, 9000)


def check_year(when: datetime, what: str, field: str = "period") -> datetime:
    """``when``, or :class:`PeriodError` naming ``what`` (the input ``field``) when its year is
    outside :data:`YEARS`."""
    if not YEARS[0] <= when.year <= YEARS[1]:
        raise PeriodError(f"{what}: the year must be between {YEARS[0]} and {YEARS[1]}", field=field)
    return when


def _start_of(text: str) -> tuple[datetime, datetime]:
    bounds = _parse(text)
    check_year(bounds[0], f"period {text!r}")
    return bounds


def _parse(text: str) -> tuple[datetime, datetime]:
    parts = text.strip().split("-")
    try:
        if len(parts) == 1:
            y = int(parts[0])
            return datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC)
        if len(parts) == 2 and parts[1].upper().startswith("Q"):
            y, q = int(parts[0]), int(parts[1][1:])
            if 1 <= q <= 4:
                start = datetime(y, 3 * (q - 1) + 1, 1, tzinfo=UTC)
                return start, datetime(y + (q == 4), (3 * q) % 12 + 1, 1, tzinfo=UTC)
        elif len(parts) == 2:
            y, m = int(parts[0]), int(parts[1])
            return datetime(y, m, 1, tzinfo=UTC), datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
        elif len(parts) == 3:
            d = datetime(int(parts[0]), int(parts[1]), int(parts[2]), tzinfo=UTC)
            return d, d + timedelta(days=1)
    except (ValueError, OverflowError):  # not a date, or one at the edge of the calendar
        pass
    raise PeriodError(
        f"period {text!r} is not YYYY, YYYY-MM, YYYY-Qn, YYYY-MM-DD or START..END "
        "(e.g. 2025-03-01..2025-04-01)"
    )


def period_bounds(text: str | None) -> tuple[datetime | None, datetime | None]:
    """``2025`` / ``2025-03`` / ``2025-Q1`` / ``2025-03-05`` / ``START..END`` -> [start, end)."""
    if not text:
        return None, None
    if ".." in text:
        a, b = text.split("..", 1)
        start = _start_of(a)[0] if a else None
        end = _start_of(b)[0] if b else None
        if start and end and start >= end:
            raise PeriodError(f"period {text!r}: the start must be before the end")
        return start, end
    return _start_of(text)
