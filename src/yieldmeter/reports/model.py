"""What a report is made of: sections of figures, tables, charts and notes.

A :class:`Report` is plain data: the same object renders to Markdown, HTML,
PDF and JSON (:mod:`yieldmeter.reports.render`) and feeds the dashboard. The
service that fills it (:class:`yieldmeter.app.reports.ReportService`) holds
the measures; renderers only format.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

#: How a figure is formatted: dollars, a share (0-1 shown as %), a ratio (x), a count, plain text.
Unit = Literal["usd", "share", "ratio", "count", "number", "text", "score"]
#: What a cost figure reads when its calls have no price: unknown, never $0 (DESIGN: measures).
UNPRICED = "unpriced"


def plain(value: Any) -> Any:
    """A JSON-safe version of a cell (NaN/inf -> None, dates -> ISO text)."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def rows_of(data: Any) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts from an Arrow table or a list of dicts."""
    if data is None:
        return []
    rows = data.to_pylist() if hasattr(data, "to_pylist") else list(data)
    return [{k: plain(v) for k, v in r.items()} for r in rows]


def fmt(value: Any, unit: Unit = "number") -> str:
    """A figure for a person: ``$1,234``, ``58%``, ``52.1x``, ``1,234``; ``-`` when unknown."""
    value = plain(value)
    if value is None or value == "":
        return "-"
    if unit == "text" or isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    v = float(value)
    if unit == "usd":
        if v < 0:
            return "-" + fmt(-v, "usd")
        if abs(v) >= 100:
            return f"${v:,.0f}"
        if abs(v) >= 1:
            return f"${v:,.2f}"
        if 0 < v < 0.00005:  # "$0.0000" would read as nothing spent (a negative one as "-<$0.0001")
            return "<$0.0001"
        return f"${v:.4f}" if v else "$0"
    if unit == "share":
        return f"{v:.0%}" if abs(v) >= 0.01 or v == 0 else f"{v:.1%}"
    if unit == "ratio":
        if abs(v) >= 1000:
            return f"{v:,.0f}x"
        # below 1x two significant digits: 0.066 and 0.11 are "0.066x - 0.11x", not "0.1x - 0.1x"
        return f"{v:,.1f}x" if abs(v) >= 0.995 or v == 0 else f"{_plain_digits(v, 2)}x"
    if unit == "score":
        return f"{v:.0f}"
    if unit == "count" or (isinstance(value, int)):
        return f"{int(v):,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:,.2f}"
    return _plain_digits(v, 4) if v else "0"


def _plain_digits(v: float, digits: int) -> str:
    """``v`` (0 < |v| < 1) to ``digits`` significant digits, never in exponent notation
    (0.0001618 and 0.00005878 in one column, not 5.878e-05)."""
    places = digits - 1 - math.floor(math.log10(abs(v)))
    if places > 15:  # below a trillionth nothing is read digit by digit
        return f"{v:.{digits - 1}e}"
    return f"{v:.{places}f}".rstrip("0").rstrip(".") if places > 0 else f"{v:.0f}"


@dataclass
class Kpi:
    """One headline figure."""

    label: str
    value: Any
    unit: Unit = "number"
    note: str = ""
    low: Any = None
    high: Any = None

    @property
    def text(self) -> str:
        return fmt(self.value, self.unit)

    @property
    def band(self) -> str:
        if self.low is None or self.high is None:
            return ""
        return f"{fmt(self.low, self.unit)} - {fmt(self.high, self.unit)}"


@dataclass
class Column:
    key: str
    label: str
    unit: Unit = "text"
    link: str | None = None  # a URL pattern with {value}, e.g. "/work-units/{value}"


@dataclass
class TableData:
    columns: list[Column]
    rows: list[dict[str, Any]]
    caption: str = ""

    def cell(self, row: dict[str, Any], col: Column) -> str:
        return fmt(row.get(col.key), col.unit)


@dataclass
class Chart:
    """A chart spec; :mod:`yieldmeter.reports.charts` draws it as SVG.

    kind: ``bar`` (labels, values; negative values grow left of zero), ``grouped`` (labels,
    series -> values, one bar per series), ``stacked`` (labels, series -> values),
    ``line`` (labels, series -> values), ``funnel`` (labels, values, costs),
    ``interval`` (labels, values, lows, highs, reference).

    A value may be a word instead of a number (:data:`UNPRICED`): it is written, never drawn
    as zero.
    """

    kind: Literal["bar", "grouped", "stacked", "line", "funnel", "interval"]
    title: str
    labels: list[str]
    values: list[float | str | None] = field(default_factory=list)
    series: dict[str, list[float | str | None]] = field(default_factory=dict)
    lows: list[float | None] = field(default_factory=list)
    highs: list[float | None] = field(default_factory=list)
    costs: list[float | str | None] = field(default_factory=list)
    unit: Unit = "usd"
    reference: float | None = None
    reference_label: str = ""


@dataclass
class Section:
    """One question a role asks, and the answer."""

    key: str
    title: str
    question: str = ""
    kpis: list[Kpi] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    tables: list[TableData] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unavailable: str | None = None
    #: The filters this section does not honour, and why (shown under its question); empty
    #: when it honours every filter asked for. Figures of another scope are never mixed in silently.
    scope: str = ""


@dataclass
class Report:
    role: str
    title: str
    subtitle: str
    period: str
    generated_at: str
    workspace: str
    sections: list[Section] = field(default_factory=list)

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))  # type: ignore[no-any-return]
