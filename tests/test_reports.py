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
            # the sections of each role's questions (FinOps sections of budgets, forecasts and
            # chargeback join some roles; app/finops_sections.py)
            assert expected[role] <= {s.key for s in report.sections}, role
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


# Hand-computed figures of the example workspace (examples/), March 2025.
# Model cost: tokens x the catalog's USD per million tokens (genai-prices):
#   fraud-review     4 calls of gpt-4o-mini, 1200 in at 0.15 + 150 out at 0.60     = 4 x 0.00027 = 0.00108
#   support-reply    4 calls of claude-3-5-haiku, 2000 in at 0.80 + 400 out at 4.00 = 4 x 0.0032  = 0.0128
#   board-analysis   3 calls of gpt-4o, 6000 fresh in at 2.50 + 4000 cached at 1.25
#                    + 1000 out at 10.00                                           = 3 x 0.03    = 0.09
#   internal-content 2 calls of acme-summariser: no price (unpriced, never $0)
MODEL = {"fraud-review": 0.00108, "support-reply": 0.0128, "board-analysis": 0.09}
PRICED = sum(MODEL.values())  # 0.10388
# Allocated: the $20 gateway item names no scope, shared pro rata by model cost; the $50 licence
# names team support and stays there.
ALLOCATED = {wf: 20 * m / PRICED + (50 if wf == "support-reply" else 0) for wf, m in MODEL.items()}
# Effort: minutes / 60 x the workflow's labour rate: fraud 2+4 min at 70, support 3+6+3 at 40,
# the analyst's review 20 at 90.
EFFORT = {"fraud-review": 6 / 60 * 70, "support-reply": 12 / 60 * 40, "board-analysis": 20 / 60 * 90}
FULLY_LOADED = {wf: MODEL[wf] + ALLOCATED[wf] + EFFORT[wf] for wf in MODEL}
# Measured value: fraud losses avoided 12,000 x attribution 0.5; support 80 x 1.0; the board
# analysis outcome is strategic (no dollars). Successful outcomes per workflow: 1, 2, 1.
# measured (monetary) value; board-analysis's outcome is strategic, never dollars: none measured
VALUE = {"fraud-review": 6000.0, "support-reply": 80.0, "board-analysis": None}
SUCCESSES = {"fraud-review": 1, "support-reply": 2, "board-analysis": 1}


def test_coo_cfo_owners_and_scenario_figures_by_hand(example_workspace: Path) -> None:
    with Workspace.open(example_workspace) as ws:
        coo = ws.reports.role("coo").section("outcomes")
        cfo = ws.reports.role("cfo")
    assert coo is not None
    by_metric = {r["metric"]: r for r in coo.tables[0].rows}
    # (observed - baseline) / |baseline|: losses fell 42,000 -> 30,000, minutes 9 -> 5
    assert by_metric["fraud losses"]["change_pct"] == pytest.approx((30000 - 42000) / 42000)
    assert by_metric["minutes per ticket"]["change_pct"] == pytest.approx((5 - 9) / 9)
    chart = coo.charts[0]
    assert chart.values == pytest.approx([-12000 / 42000, -4 / 9])  # signed: a fall is negative
    assert "<svg" in __import__("yieldmeter.reports.charts", fromlist=["draw"]).draw(chart)

    owners = {r["workflow"]: r for r in cfo.section("owners").tables[0].rows}  # type: ignore[union-attr]
    assert owners["fraud-review"]["benefit_owner"] == "head-of-fraud"
    assert owners["fraud-review"]["benefit"] == pytest.approx(12000 * 0.5)
    assert owners["support-reply"]["benefit"] == pytest.approx(80.0)
    assert owners["board-analysis"]["benefit"] == 0.0  # strategic: never dollars
    assert owners["internal-content"] == {
        "workflow": "internal-content",
        "benefit_owner": None,
        "catalog_owner": "head-of-comms",
        "outcomes": 0,
        "benefit": 0.0,
        "strongest_evidence": None,
    }

    scenario = cfo.section("scenario")
    assert scenario is not None
    rows = {r["workflow"]: r for r in scenario.tables[0].rows}
    for wf in MODEL:
        variable = MODEL[wf] + EFFORT[wf]  # scales with volume; platform cost is held fixed
        scaled = variable * 10 + ALLOCATED[wf]
        assert rows[wf]["fully_loaded_cost_now"] == pytest.approx(FULLY_LOADED[wf]), wf
        assert rows[wf]["fully_loaded_cost_scaled"] == pytest.approx(scaled), wf
        assert rows[wf]["successful_outcomes"] == SUCCESSES[wf] * 10, wf
        assert rows[wf]["cost_per_successful_outcome_scaled"] == pytest.approx(scaled / (SUCCESSES[wf] * 10))
        value = VALUE[wf]
        assert rows[wf]["yield_scaled"] == (None if value is None else pytest.approx(value * 10 / scaled)), wf
    # fraud review at 10x: (0.00108 + 7) x 10 + 0.2079 = $70.22 for $60,000 of losses avoided
    assert rows["fraud-review"]["yield_scaled"] == pytest.approx(854.47, abs=0.01)
    assert rows["internal-content"]["fully_loaded_cost_scaled"] == "unpriced"
    kpis = {k.label: k for k in scenario.kpis}
    total = sum(MODEL[wf] * 10 + EFFORT[wf] * 10 + ALLOCATED[wf] for wf in MODEL)
    assert kpis["Fully loaded cost at 10x"].value == pytest.approx(total)
    assert "internal-content" in kpis["Fully loaded cost at 10x"].note
    assert kpis["Measured benefit at 10x"].value == pytest.approx(60800.0)


def test_unpriced_cost_reads_unpriced_never_zero(example_workspace: Path) -> None:
    """internal-content runs on a model with no price: every cost of it reads "unpriced"."""
    with Workspace.open(example_workspace) as ws:
        reports = {role: ws.reports.role(role) for role in ("product", "coo", "finops")}
        unit = ws.reports.work_unit("ct-wu-1")
    for role, report in reports.items():
        funnel = report.section("funnel")
        assert funnel is not None
        content = next(r for r in funnel.tables[0].rows if r["workflow"] == "internal-content")
        for key in ("cost_per_accepted_output", "fully_loaded_cost", "cost_per_work_unit"):
            assert content[key] == "unpriced", (role, key)
        assert any("internal-content is unpriced" in n for n in funnel.notes), role
        waste = report.section("waste")
        assert waste is not None
        unused = [r for r in waste.tables[0].rows if r["workflow"] == "internal-content"]
        assert unused and all(r["spend_at_stake"] == "unpriced" for r in unused), role
        assert "internal-content" in waste.kpis[0].note
        # no cost cell of it anywhere in the report reads $0 (its measured value may: no outcome)
        for section in report.sections:
            for table in section.tables:
                costs = [c for c in table.columns if c.unit == "usd" and "value" not in c.key]
                for row in table.rows:
                    if "internal-content" in row.values():
                        for c in costs:
                            assert table.cell(row, c) != "$0", (role, section.key, c.key)
    mix = reports["finops"].section("model_mix")
    assert mix is not None
    models = [r["model"] for r in mix.tables[0].rows]
    assert models == ["gpt-4o", "claude-3-5-haiku-20241022", "gpt-4o-mini", "acme-summariser"]  # by cost
    assert mix.tables[0].rows[-1]["model_cost"] == "unpriced"
    assert mix.charts[0].labels == models and "-" not in models and None not in models
    assert all(c["model_cost"] == "unpriced" for c in unit.calls)
    assert unit.facts["fully_loaded_cost"] == "unpriced"


def test_the_measures_of_an_unpriced_workflow_leave_its_cost_unknown(example_workspace: Path) -> None:
    """The measures themselves (`report funnel|waste|coverage|benchmarks|patterns`, GET /value/...),
    not only the reports: a workflow whose every call is unpriced (internal-content: 2 calls of
    acme-summariser, no price; no allocated cost, no effort) has a null cost, never $0, and so has
    every figure made of it; the priced workflows keep theirs."""
    with Workspace.open(example_workspace) as ws:
        rows = ws.value.funnel().to_pylist()
        waste = ws.value.waste().to_pylist()
        coverage = {r["workflow"]: r for r in ws.value.coverage().by_workflow.to_pylist()}
        benchmarks = ws.value.benchmarks(people=True).rows.to_pylist()
        patterns = ws.value.patterns().to_pylist()
    content = [r for r in rows if r["workflow"] == "internal-content"]
    assert content and all(r["calls"] == r["unpriced_calls"] == 2 for r in content)
    stage_costs = [k for k in rows[0] if k.startswith("cost_per_")]
    assert len(stage_costs) == 5 and all(r[k] is None for r in content for k in stage_costs)
    assert all(r["model_cost"] is None and r["fully_loaded_cost"] is None for r in content)
    assert all(r["allocated_cost"] == 0.0 and r["effort_cost"] == 0.0 for r in content)  # known: none
    # waste: ct-wu-2 is an unused output, at stake its whole (unknown) cost
    unused = [r for r in waste if r["workflow"] == "internal-content"]
    assert [r["category"] for r in unused] == ["unused_output", "total"]
    assert all(r["spend_at_stake"] is None and r["share_of_spend"] is None for r in unused)
    # coverage: its spend is unknown; the total is the three priced workflows' fully loaded cost
    assert coverage["internal-content"]["spend"] is None
    assert coverage["internal-content"]["uncovered_spend"] is None
    assert coverage["(all)"]["spend"] == pytest.approx(sum(FULLY_LOADED.values()))
    assert coverage["fraud-review"]["spend"] == pytest.approx(FULLY_LOADED["fraud-review"])
    # yield: an outcome worth $500 for internal-content (ingested below) is over an unknown cost
    outcome = {
        "outcome_id": "o-content",
        "workflow": "internal-content",
        "period_start": "2025-03-01T00:00:00Z",
        "period_end": "2025-04-01T00:00:00Z",
        "metric": "pages published",
        "unit": "USD",
        "value_dimension": "revenue",
        "monetary_value": 500,
        "attribution_share": 1.0,
        "evidence_level": "observational",
    }
    (example_workspace / "content.jsonl").write_text(json.dumps(outcome) + "\n")
    with Workspace.open(example_workspace) as ws:
        ws.ingest_paths([example_workspace / "content.jsonl"], table="outcomes")
        yields = {r["workflow"]: r for r in ws.value.yields().yields.to_pylist()}
    assert yields["internal-content"]["benefit"] == pytest.approx(500.0)
    assert (
        yields["internal-content"]["fully_loaded_cost"] is None
        and yields["internal-content"]["yield"] is None
    )
    assert yields["fraud-review"]["fully_loaded_cost"] == pytest.approx(FULLY_LOADED["fraud-review"])
    for group in (benchmarks, patterns):
        mine = [r for r in group if r["workflow"] == "internal-content"]
        assert mine and all(r["fully_loaded_cost"] is None for r in mine)
        assert all(r[k] is None for r in mine for k in ("cost_per_success_low", "cost_per_success_high"))
        priced = [r for r in group if r["workflow"] != "internal-content"]
        assert priced and all(r["fully_loaded_cost"] > 0 for r in priced)
    # a priced workflow: every call priced, the stage costs as before (fraud: cost / 2 calls)
    fraud = [r for r in rows if r["workflow"] == "fraud-review"]
    assert [r["unpriced_calls"] for r in fraud] == [0]
    assert fraud[0]["cost_per_call"] == pytest.approx(FULLY_LOADED["fraud-review"] / fraud[0]["calls"])


def test_a_month_of_unpriced_calls_still_adds_its_effort_to_the_chain(tmp_path: Path) -> None:
    """Workflow w: in March two calls of a model with no price and 30 minutes of review (at the
    default labour rate, $60 an hour: $30); in April one priced gpt-4o-mini call (100,000 input
    tokens at $0.15 and 10,000 output at $0.60 a million: $0.021). March's model cost is unknown,
    but its effort is known: the chain over both months costs 30 + 0.021 = $30.021, $15.0105 a
    work unit, and is known (one call priced), not $0.021 (March's month dropped)."""
    data = tmp_path / "data"
    data.mkdir()
    head = "call_id,ts,provider,model,operation,input_tokens,output_tokens,status,user_id,team"
    head += ",work_unit_id,workflow"
    (data / "calls.csv").write_text(
        f"{head}\n"
        "c1,2025-03-03T09:00:00Z,acme,acme-x,chat,1000,100,ok,ana,t,u1,w\n"
        "c2,2025-03-03T09:05:00Z,acme,acme-x,chat,1000,100,ok,ana,t,u1,w\n"
        "c3,2025-04-03T09:05:00Z,openai,gpt-4o-mini,chat,100000,10000,ok,bob,t,u2,w\n"
    )
    (data / "effort.csv").write_text(
        "effort_id,work_unit_id,ts,person,kind,minutes\ne1,u1,2025-03-03T09:20:00Z,ana,review,30\n"
    )
    with Workspace.open(tmp_path / "ws", create=True) as ws:
        ws.ingest_paths([data])
        months = [r for r in ws.value.funnel().to_pylist() if r["workflow"] == "w"]
        rows = {r["workflow"]: r for r in ws.reports.funnel_rows(ReportFilters())}
    assert [m["fully_loaded_cost"] for m in months] == [None, pytest.approx(0.021)]  # March unknown
    w = rows["w"]
    assert w["fully_loaded_cost"] == pytest.approx(30.021) and w["cost_known"]
    assert w["cost_per_work_unit"] == pytest.approx(15.0105)


def test_success_rates_are_named_apart_and_product_leads_with_outcome_costs(example_workspace: Path) -> None:
    with Workspace.open(example_workspace) as ws:
        finops = ws.reports.role("finops")
        product = ws.reports.role("product").section("funnel")
    funnel = finops.section("funnel")
    routing = finops.section("routing")
    assert funnel is not None and routing is not None and product is not None
    labels = {c.key: c.label for c in funnel.tables[0].columns}
    assert labels["success_rate"] == "success per action"
    assert labels["success_per_unit"] == "success per work unit"
    fraud = next(r for r in funnel.tables[0].rows if r["workflow"] == "fraud-review")
    # 4 units, 2 accepted, 1 acted on and successful: 1 of 1 action, 1 of 4 units
    assert fraud["success_rate"] == 1.0 and fraud["success_per_unit"] == 0.25
    routing_labels = [c.label for t in routing.tables for c in t.columns]
    assert "success rate" not in routing_labels and "current success rate" not in routing_labels
    frontier = routing.tables[-1]
    mini = next(r for r in frontier.rows if r["model"] == "gpt-4o-mini")
    assert mini["success_rate"] == 0.25  # the same 1 of 4 units as the funnel's success per work unit
    assert "success per work unit" in [c.label for c in frontier.columns]
    assert [c.kind for c in routing.charts] == ["interval", "bar"]
    # product: cost per accepted output and per successful outcome first, no cost per call
    lead = product.charts[0]
    assert lead.kind == "grouped"
    assert list(lead.series) == ["per accepted output", "per successful outcome"]
    i = lead.labels.index("fraud-review")
    assert lead.series["per successful outcome"][i] == pytest.approx(FULLY_LOADED["fraud-review"] / 1)
    assert lead.series["per accepted output"][i] == pytest.approx(FULLY_LOADED["fraud-review"] / 2)
    assert all(c.costs[0] is None for c in product.charts[1:])


def test_filters_reach_the_value_measures_or_say_they_do_not(example_workspace: Path) -> None:
    risk = ReportFilters.of(team="risk")
    with Workspace.open(example_workspace) as ws:
        s = ws.reports
        assert s.totals(risk)["fully_loaded_cost"] == pytest.approx(FULLY_LOADED["fraud-review"])
        cov_all = {k.label: k.value for k in s.coverage_section(ReportFilters()).kpis}
        cov_risk = {k.label: k.value for k in s.coverage_section(risk).kpis}
        # risk's spend is fraud review's, which has a baseline, an owner and evidence: all covered
        assert cov_risk["Uncovered spend"] == pytest.approx(0.0)
        assert cov_risk["Spend connected to measured outcomes"] == pytest.approx(1.0)
        assert cov_all["Uncovered spend"] > 40
        funnel = s.funnel_section(risk)
        assert [r["workflow"] for r in funnel.tables[0].rows] == ["fraud-review"]
        assert funnel.tables[0].rows[0]["value"] is None and "not filtered by team" in funnel.scope
        assert "not filtered by team" in s.yields_section(risk).scope
        assert s.yields_section(ReportFilters()).scope == ""
        assert {r["workflow"] for r in s.waste_section(risk).tables[0].rows} == {"fraud-review"}
        assert "not filtered by team" in s.decisions_section(risk).scope
        gpt4o = ReportFilters.of(model="gpt-4o")
        assert {r["workflow"] for r in s.patterns_section(gpt4o).tables[0].rows} == {"board-analysis"}
        assert {r["workflow"] for r in s.funnel_section(gpt4o).tables[0].rows} == {"board-analysis"}
        assert s.unpriced_section(risk).tables[0].rows == []
        assert len(s.unpriced_section(ReportFilters()).tables[0].rows) == 1
        both = ReportFilters.of(workflow=["fraud-review", "support-reply"])
        y = {(r["workflow"], r["family"]): r for r in s.yields_section(both).tables[0].rows}
        assert {wf for wf, _ in y} == {"fraud-review", "support-reply"}
        overall = {k.label: k.value for k in s.yields_section(both).kpis}
        # the (all) risk yield over the two workflows' cost only
        both_cost = FULLY_LOADED["fraud-review"] + FULLY_LOADED["support-reply"]
        assert overall["Risk yield"] == pytest.approx(6000 / both_cost)
        notes = {k.label: k.note for k in s.yields_section(both).kpis}
        assert notes["Risk yield"].startswith("$6,000 of risk benefit over all AI spend in scope ($"), notes


def test_small_figures_keep_their_digits_and_never_read_as_nothing() -> None:
    from yieldmeter.reports.model import fmt

    # one column of values per token: the same notation for both, never 5.878e-05
    assert (fmt(0.0001618), fmt(5.878e-05)) == ("0.0001618", "0.00005878")
    # a band under 1x keeps two significant digits (it read "0.1x - 0.1x" for 0.066 - 0.11)
    assert (fmt(0.066, "ratio"), fmt(0.11, "ratio"), fmt(1.5, "ratio"), fmt(1015, "ratio")) == (
        "0.066x",
        "0.11x",
        "1.5x",
        "1,015x",
    )
    # a positive amount under a hundredth of a cent is not "$0.0000"
    assert (fmt(0.00001, "usd"), fmt(0.0, "usd"), fmt(0.1355, "usd")) == ("<$0.0001", "$0", "$0.1355")


def test_small_teams_are_private_in_the_service(example_workspace: Path) -> None:
    from yieldmeter.app.value import PrivacyError

    cfg = example_workspace / "yieldmeter.yaml"
    cfg.write_text(cfg.read_text().replace("min_group_size: 1", "min_group_size: 2"))
    with Workspace.open(example_workspace) as ws:
        s = ws.reports
        reader = {r["team"]: r for r in s.spend_by(ReportFilters(), ["team"])}
        privileged = {r["team"]: r for r in s.spend_by(ReportFilters(people=True), ["team"])}
        # finance and comms (one person each) would be one "(other teams)" row whose cost is
        # finance's person's alone (every call of comms is unpriced): left out of the rows, while
        # the total still holds every team's cost
        assert set(reader) == {"risk", "support"}
        assert {"finance", "comms"} <= set(privileged)
        assert s.totals(ReportFilters())["fully_loaded_cost"] == pytest.approx(
            sum(r["fully_loaded_cost"] or 0.0 for r in privileged.values())
        )
        with pytest.raises(PrivacyError, match="min_group_size"):
            s.role("finops", ReportFilters.of(team="finance"))
        assert s.role("finops", ReportFilters.of(team="finance", people=True)).section("spend") is not None
        assert "finance" not in s.options()["team"] and "finance" in s.options(people=True)["team"]
        table = s.role("finops").section("spend_by_team").tables[0]  # type: ignore[union-attr]
        assert "hidden" in table.caption and "finance" not in {r["team"] for r in table.rows}
    # and the command line asks for --people to name a small team
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "yieldmeter.cli.main",
            "report",
            "finops",
            "--team",
            "finance",
            "-w",
            str(example_workspace),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0 and "--people" in done.stderr


def test_an_empty_markdown_table_keeps_its_caption() -> None:
    """Two empty lists in one section read as two bare "Nothing to show." lines: which was empty?"""
    from yieldmeter.reports.model import Column, Report, Section, TableData

    cols = [Column("model", "Model", "text")]
    section = Section(
        "routing",
        "Routing suggestions",
        tables=[
            TableData(cols, [], caption="Recommended switches"),
            TableData(cols, [], caption="Experiments"),
        ],
    )
    text = to_markdown(Report("finops", "FinOps", "", "2026-10", "now", "ws", [section]))
    assert "*Recommended switches*\n\n_Nothing to show._" in text
    assert "*Experiments*\n\n_Nothing to show._" in text


def test_a_workflow_of_strategic_outcomes_measures_no_value(example_workspace: Path) -> None:
    """board-analysis's only outcome is strategic (never in dollars): its funnel value read $0
    and $0 per success. No monetary outcome: no value measured, in the funnel and the section."""
    with Workspace.open(example_workspace) as ws:
        board = [r for r in ws.value.funnel().to_pylist() if r["workflow"] == "board-analysis"]
        assert board and all(r["value"] is None and r["value_per_success"] is None for r in board), board
        [row] = [r for r in ws.reports.funnel_rows(ReportFilters()) if r["workflow"] == "board-analysis"]
        assert row["value"] is None and row["value_per_success"] is None
        valued = [r for r in ws.reports.funnel_rows(ReportFilters()) if r["value"] is not None]
        assert valued, "a workflow with a monetary outcome keeps its value"
