"""A :class:`~yieldmeter.reports.model.Report` as Markdown, HTML, PDF or JSON.

HTML is one self-contained page (styles inline, charts as inline SVG), so it
can be mailed or opened air-gapped; the PDF is that page laid out for A4 paper
by WeasyPrint.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Literal

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from yieldmeter.errors import InputError
from yieldmeter.reports.charts import draw
from yieldmeter.reports.model import Report, Section, TableData, fmt

ReportFormat = Literal["md", "html", "pdf", "json"]
FORMATS: tuple[str, ...] = ("md", "html", "pdf", "json")


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja environment of reports and dashboard pages (templates ship in the package)."""
    env = Environment(
        loader=PackageLoader("yieldmeter.reports", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["chart"] = lambda c, width=640: Markup(draw(c, width))
    env.filters["fmt"] = fmt
    return env


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)


def _md_table(t: TableData, limit: int = 25) -> list[str]:
    out = [f"*{t.caption}*", ""] if t.caption else []  # an empty table says which list is empty
    if not t.rows:
        return [*out, "_Nothing to show._", ""]
    out.append("| " + " | ".join(c.label for c in t.columns) + " |")
    out.append(
        "|"
        + "|".join(
            "---:" if c.unit in ("usd", "share", "ratio", "count", "number") else "---" for c in t.columns
        )
        + "|"
    )
    for r in t.rows[:limit]:
        out.append("| " + " | ".join(t.cell(r, c).replace("|", "/") for c in t.columns) + " |")
    if len(t.rows) > limit:
        out.append(f"\n_{len(t.rows) - limit} more rows in the JSON or HTML report._")
    out.append("")
    return out


def _md_section(s: Section) -> list[str]:
    out = [f"## {s.title}", ""]
    if s.question:
        out += [f"_{s.question}_", ""]
    if s.scope:
        out += [f"> **Scope:** {s.scope}", ""]
    if s.unavailable:
        return [*out, f"> Not available: {s.unavailable}", ""]
    for k in s.kpis:
        band = f" ({k.band})" if k.band else ""
        note = f" — {k.note}" if k.note else ""
        out.append(f"- **{k.label}**: {k.text}{band}{note}")
    if s.kpis:
        out.append("")
    for t in s.tables:
        out += _md_table(t)
    for n in s.notes:
        out.append(f"> {n}")
    if s.notes:
        out.append("")
    return out


def to_markdown(report: Report) -> str:
    lines = [
        f"# {report.title}",
        "",
        f"{report.subtitle}. Period: {report.period}. Generated {report.generated_at}.",
        "",
    ]
    for s in report.sections:
        lines += _md_section(s)
    return "\n".join(lines).rstrip() + "\n"


def to_html(report: Report, *, for_print: bool = False) -> str:
    return environment().get_template("report.html").render(report=report, for_print=for_print)


def to_pdf(report: Report) -> bytes:
    """The report laid out on A4 by WeasyPrint (needs the Pango libraries; see scripts/system-deps.sh)."""
    from weasyprint import HTML

    return HTML(string=to_html(report, for_print=True)).write_pdf()  # type: ignore[no-any-return]


def render(report: Report, fmt_: str) -> bytes:
    """The report in ``fmt_`` (md, html, pdf, json) as bytes."""
    if fmt_ == "md":
        return to_markdown(report).encode()
    if fmt_ == "html":
        return to_html(report).encode()
    if fmt_ == "pdf":
        return to_pdf(report)
    if fmt_ == "json":
        return to_json(report).encode()
    raise InputError(f"no report format {fmt_!r}; choose from {', '.join(FORMATS)}", field="format")
