"""Role reports on the example workspace: the figures they state, and the board pack as a PDF on paper."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from yieldmeter.app.reports import ROLES, ReportFilters
from yieldmeter.app.workspace import Workspace
from yieldmeter.reports.render import render, to_markdown

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def test_every_role_report_answers_its_questions(example_workspace: Path) -> None:
    expected = {
        "board": {"coverage", "spend", "yields", "decisions", "waste"},
        "cfo": {"spend", "yields", "owners", "scenario", "coverage"},
        "cio": {"mapping", "coverage", "unpriced", "model_mix"},
        "coo": {"outcomes", "funnel", "waste"},
        "finops": {
            "spend",
            "funnel",
            "model_mix",
            "spend_by_team",
            "budgets",
            "unpriced",
            "waste",
            "routing",
        },
        "product": {"funnel", "patterns", "waste"},
    }
    with Workspace.open(example_workspace) as ws:
        for role in ROLES:
            report = ws.reports.role(role)
            assert {s.key for s in report.sections} == expected[role], role
            doc = json.loads(render(report, "json"))
            assert doc["role"] == role and doc["sections"]
            md = render(report, "md").decode()
            assert md.startswith(f"# {report.title}")
        board = ws.reports.role("board")
        spend = board.section("spend")
        assert spend is not None
        kpis = {k.label: k.value for k in spend.kpis}
        # examples: model cost of the 11 priced calls, $70 of cost items, 45 min effort at the labour rates
        assert kpis["Allocated platform cost"] == pytest.approx(70.0)
        assert kpis["Human effort cost"] == pytest.approx(45.0)
        assert kpis["Unpriced calls"] == 2
        cov = {k.label: k.value for k in board.section("coverage").kpis}  # type: ignore[union-attr]
        assert 0 < cov["Spend connected to measured outcomes"] < 1
        cio = ws.reports.role("cio").section("mapping")
        assert cio is not None
        shares = {k.label: k.value for k in cio.kpis}
        assert shares["Calls mapped to work units"] == pytest.approx(1.0)  # every example call names its unit
        product = ws.reports.role("product").section("funnel")
        fraud = next(r for r in product.tables[0].rows if r["workflow"] == "fraud-review")  # type: ignore[union-attr]
        assert fraud["cost_per_successful_outcome"] == pytest.approx(fraud["fully_loaded_cost"] / 1)


def test_filters_narrow_spend(example_workspace: Path) -> None:
    with Workspace.open(example_workspace) as ws:
        everything = ws.reports.totals(ReportFilters())
        risk = ws.reports.totals(ReportFilters.of(team="risk"))
        april = ws.reports.totals(ReportFilters.of(period="2025-04"))
    assert 0 < risk["fully_loaded_cost"] < everything["fully_loaded_cost"]
    assert (april.get("calls") or 0) == 0
    with pytest.raises(ValueError, match="period"):
        ReportFilters.of(period="last tuesday")


def test_decisions_reach_the_board_pack(example_workspace: Path) -> None:
    import pyarrow as pa

    from yieldmeter.ingest.conform import conform

    with Workspace.open(example_workspace) as ws:
        rows = conform(
            "decisions",
            pa.Table.from_pylist(
                [
                    {
                        "decision_id": "d1",
                        "date": "2025-03-21T00:00:00Z",
                        "subject": "board-analysis",
                        "change": "funded the analyst assistant for all of finance",
                        "evidence": "board-minutes-2025-03-20",
                    }
                ]
            ),
            source="test",
        )
        ws.store.write("decisions", rows.rows)
        md = to_markdown(ws.reports.role("board"))
    assert "funded the analyst assistant" in md


@pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils (pdftoppm, pdftotext) not installed; scripts/system-deps.sh installs it",
)
def test_board_pack_pdf_has_its_sections_on_paper(example_workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "board.pdf"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "yieldmeter.cli.main",
            "report",
            "board",
            "--format",
            "pdf",
            "--out",
            str(out),
            "-w",
            str(example_workspace),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"%PDF")
    text = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], capture_output=True, text=True, check=True
    ).stdout
    for heading in (
        "Board pack",
        "Attribution coverage",
        "Spend connected to measured outcomes",
        "AI spend",
        "Fully loaded cost",
        "Yields",
        "Decision register",
        "Waste",
    ):
        assert heading in text, heading
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(out), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert 2 <= len(pages) <= 12
    assert all(p.stat().st_size > 5_000 for p in pages)  # drawn pages, not blank ones
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(out, ARTIFACTS / "board-pack.pdf")
    shutil.copy(pages[0], ARTIFACTS / "board-pack-page-1.png")
    # the charts are vector drawings in the PDF (inline SVG): the first page holds filled paths
    first = subprocess.run(
        ["pdftotext", "-f", "1", "-l", "1", str(out), "-"], capture_output=True, text=True
    ).stdout
    assert "Share of spend with each part of the evidence" in first


def test_cli_writes_every_format(example_workspace: Path, tmp_path: Path) -> None:
    for fmt in ("md", "html", "json"):
        out = tmp_path / f"cfo.{fmt}"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "yieldmeter.cli.main",
                "report",
                "cfo",
                "--format",
                fmt,
                "--out",
                str(out),
                "--period",
                "2025-03",
                "-w",
                str(example_workspace),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert out.stat().st_size > 500
    html = (tmp_path / "cfo.html").read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # no CDN
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "yieldmeter.cli.main",
            "report",
            "cfo",
            "--period",
            "soon",
            "-w",
            str(example_workspace),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "period" in bad.stderr
