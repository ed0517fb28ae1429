"""Showback/chargeback, the FOCUS export (validated, re-imported), reconciliation and initiatives.

The shared example (hand-computed):

- alpha: a 2.00 USD call (direct); beta: a 3.00 USD call (direct);
- shared: a 1.00 USD call with no team, and a 5.00 USD licence with no team on
  a workflow without calls (so it lands whole, with no team);
- proportional split by direct cost: alpha 2 / 5 = 0.4, beta 0.6, so
  alpha = 2 + 0.4 x (1 + 5) = 4.4 and beta = 3 + 0.6 x 6 = 6.6; total 11.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from tests.finops_data import call, ingest, make_workspace, utc
from yieldmeter.app.reports import ReportFilters
from yieldmeter.app.workspace import Workspace

FIXTURES = Path(__file__).parent / "fixtures" / "focus"


def _shared_example(root: Path, chargeback: str = "") -> Workspace:
    ws = make_workspace(root, "chargeback:\n  cost_centres: {alpha: CC-100}\n" + chargeback)
    ingest(
        ws,
        "calls",
        [
            call(utc(2026, 11, 1, 10), 2.0, work_unit_id="u1"),
            call(utc(2026, 11, 2, 10), 3.0, team="beta"),
            call(utc(2026, 11, 2, 11), 1.0, team=None),
        ],
    )
    ingest(
        ws,
        "cost_items",
        [
            {
                "item_id": "lic",
                "period_start": utc(2026, 11, 1),
                "period_end": utc(2026, 11, 2),
                "amount": 5.0,
                "category": "licence",
                "workflow": "unused-workflow",
            }
        ],
    )
    return ws


def test_showback_proportional_even_and_by_rule(tmp_path: Path):
    ws = _shared_example(tmp_path / "p")
    rows = {r["team"]: r for r in ws.finops.showback("2026-11").to_pylist()}
    assert rows["alpha"]["total_cost"] == pytest.approx(4.4) and rows["alpha"]["cost_centre"] == "CC-100"
    assert rows["alpha"]["direct_cost"] == pytest.approx(2.0) and rows["alpha"][
        "shared_cost"
    ] == pytest.approx(2.4)
    assert rows["beta"]["total_cost"] == pytest.approx(6.6) and rows["beta"]["cost_centre"] == "beta"
    assert rows["alpha"]["share"] == pytest.approx(0.4)
    even_rows = _shared_example(tmp_path / "e", "  shared: even\n").finops.showback().to_pylist()
    even = {r["team"]: r["total_cost"] for r in even_rows}
    assert even == pytest.approx({"alpha": 2 + 3.0, "beta": 3 + 3.0})  # 6 shared / 2 teams
    rule = _shared_example(tmp_path / "r", "  shared: {alpha: 0.25, beta: 0.75}\n").finops.showback()
    assert {r["team"]: r["total_cost"] for r in rule.to_pylist()} == pytest.approx(
        {"alpha": 3.5, "beta": 7.5}
    )


def test_shared_cost_with_no_team_stays_visible(tmp_path: Path):
    ws = make_workspace(tmp_path / "ws")
    ingest(ws, "calls", [call(utc(2026, 11, 2, 11), 1.0, team=None)])
    rows = ws.finops.showback().to_pylist()
    assert [(r["team"], r["total_cost"]) for r in rows] == [("(unallocated)", pytest.approx(1.0))]


def test_focus_export_records_the_allocation_and_reimports_with_identical_totals(tmp_path: Path):
    ws = _shared_example(tmp_path / "ws")
    out = tmp_path / "focus-1.3.csv"
    summary = ws.finops.export_focus(out, "2026-11")
    assert summary["rows"] == 6 and summary["billed_cost"] == pytest.approx(11.0)
    t = pacsv.read_csv(out).to_pylist()
    direct = [r for r in t if json.loads(r["Tags"])["yieldmeter.allocation"] == "direct"]
    split = [r for r in t if r not in direct]
    assert len(direct) == 2 and all(not r["AllocatedMethodId"] for r in direct)
    assert {r["AllocatedMethodId"] for r in split} == {"yieldmeter-proportional"}
    by_origin: dict[str, float] = {}
    for r in split:
        details = json.loads(r["AllocatedMethodDetails"])
        by_origin[r["x_OriginChargeId"]] = by_origin.get(r["x_OriginChargeId"], 0.0) + sum(
            e["AllocatedRatio"] for e in details["Elements"]
        )
        assert r["AllocatedResourceId"] == r["SubAccountId"]
        assert r["BilledCost"] == pytest.approx(
            r["x_OriginAmount"] * details["Elements"][0]["AllocatedRatio"]
        )
    assert by_origin and all(
        v == pytest.approx(1.0) for v in by_origin.values()
    )  # ratios of a charge add to 1
    assert {"ServiceProviderName", "HostProviderName", "ServiceSubcategory"} <= set(t[0])
    # Re-import into a fresh workspace through yieldmeter's own FOCUS importer: same totals, same teams.
    other = make_workspace(tmp_path / "other")
    summary_in = other.ingest_paths([out], fmt="focus")
    assert summary_in.total("quarantined") == 0 and summary_in.total("landed") == 6
    # the file says what it is: in the workspace that wrote it, it would count the cost twice
    assert any("6 rows are yieldmeter's own chargeback export" in n for n in summary_in.files[0].notes)
    items = other.tables().cost_items
    total = items.aggregate(s=items.amount.sum()).to_pyarrow().to_pylist()[0]["s"]
    assert total == pytest.approx(11.0, abs=1e-9)
    per_team = {
        r["team"]: r["s"]
        for r in items.group_by("team").aggregate(s=items.amount.sum()).to_pyarrow().to_pylist()
    }
    assert per_team == pytest.approx({"alpha": 4.4, "beta": 6.6})
    cats = set(items.select("category").distinct().to_pyarrow().column(0).to_pylist())
    assert "ai_tokens" not in cats  # an allocation is not a provider's token bill


def test_reconciliation_against_the_focus_token_bill(tmp_path: Path):
    ws = make_workspace(
        tmp_path / "ws",
        "prices:\n  - model: solora-saturn-4.8\n    provider: solora\n    input: 5.0\n    output: 25.0\n"
        "    valid_from: 2020-01-01T00:00:00Z\n",
    )
    ws.ingest_paths([FIXTURES / "ai-per-token-api.csv"], fmt="focus")
    # Metered: 8.4M input x 5/M = 42.00 and 2.0M output x 25/M = 50.00 -> 92.00. The bill: 42.00 + 52.50.
    solora = {"provider": "solora", "model": "solora-saturn-4.8"}
    ingest(ws, "calls", [{"call_id": "s1", "ts": utc(2025, 5, 10), **solora,
                          "input_tokens": 8_400_000, "output_tokens": 2_000_000}])  # fmt: skip
    rows = {r["model"]: r for r in ws.finops.reconciliation().to_pylist()}
    r = rows["solora-saturn-4.8"]
    assert (r["billed"], r["metered"]) == (pytest.approx(94.5), pytest.approx(92.0))
    assert r["difference"] == pytest.approx(2.5) and r["status"] == "bill above metering"
    assert r["billed_tokens"] == pytest.approx(10_500_000) and r["metered_tokens"] == pytest.approx(
        10_400_000
    )
    assert rows["(total)"]["difference"] == pytest.approx(2.5)
    # The bill is never added to fully loaded cost: spend is the metered 92.00.
    assert ws.spend(()).to_pylist()[0]["fully_loaded_cost"] == pytest.approx(92.0)


def test_a_bill_naming_a_dated_snapshot_meets_the_calls_of_its_model(tmp_path: Path):
    """OpenAI's usage and cost pages both name gpt-4o-mini-2024-07-18: 1M input and 100k output
    tokens, list price 0.15 and 0.60 USD per million, metered 0.15 + 0.06 = 0.21 USD; the bill's
    lines are 0.15 + 0.06. The calls resolved to the catalog's gpt-4o-mini and the bill did not:
    two rows, "billed only" and "metered only". The bill's model now goes through the same
    resolver: one row, matched."""

    def page(results: list[dict]) -> str:
        bucket = {"object": "bucket", "start_time": 1754006400, "end_time": 1754092800, "results": results}
        return json.dumps({"object": "page", "data": [bucket], "has_more": False})

    snapshot = "gpt-4o-mini-2024-07-18"
    usage = {"object": "organization.usage.completions.result", "input_tokens": 1_000_000,
             "output_tokens": 100_000, "num_model_requests": 10, "model": snapshot,
             "input_cached_tokens": 0}  # fmt: skip
    costs = [
        {"object": "organization.costs.result", "amount": {"value": usd, "currency": "usd"},
         "line_item": f"{snapshot}, {kind}"}
        for usd, kind in ((0.15, "input"), (0.06, "output"))
    ]  # fmt: skip
    (tmp_path / "usage.json").write_text(page([usage]))
    (tmp_path / "costs.json").write_text(page(costs))
    ws = make_workspace(tmp_path / "ws")
    ws.ingest_paths([tmp_path / "usage.json", tmp_path / "costs.json"])
    rows = [
        (r["model"], r["billed"], r["metered"], r["status"]) for r in ws.finops.reconciliation().to_pylist()
    ]
    assert rows == [
        ("gpt-4o-mini", pytest.approx(0.21), pytest.approx(0.21), "matched"),
        ("(total)", pytest.approx(0.21), pytest.approx(0.21), "matched"),
    ]


def test_initiative_rollup_and_decisions(tmp_path: Path):
    ws = make_workspace(
        tmp_path / "ws",
        "initiatives:\n  - initiative: claims-automation\n    owner: coo\n    budget: 100\n"
        "    workflows: [triage]\n",
    )
    ingest(ws, "calls", [call(utc(2026, 11, 3), 10.0), call(utc(2026, 11, 3), 4.0, workflow="chat")])
    ingest(ws, "outcomes", [{"outcome_id": "o1", "workflow": "triage", "period_start": utc(2026, 11, 1),
                             "period_end": utc(2026, 12, 1), "metric": "claims routed",
                             "monetary_value": 50.0,
                             "value_dimension": "cycle_time", "attribution_share": 0.5,
                             "evidence_level": "baseline_comparison"}])  # fmt: skip
    decision = {"decision_id": "d1", "date": utc(2026, 11, 20), "subject": "triage"}
    ingest(
        ws, "decisions", [{**decision, "change": "scale to all regions", "initiative": "claims-automation"}]
    )
    ingest(
        ws,
        "decisions",
        [{**decision, "decision_id": "d2", "change": "pause", "initiative": "claims-automaton"}],
    )
    rows = {r["initiative"]: r for r in ws.finops.initiatives("2026-11").to_pylist()}
    ca = rows["claims-automation"]
    # benefit = 50 x 0.5 = 25 on 10 USD of fully loaded cost -> yield 2.5. The budget of 100 is a year's:
    # November is 30 / 365 of it = 8.2192, so 10 USD used 10 / 8.2192 = 121.7% of it (not 10%).
    assert (ca["owner"], ca["fully_loaded_cost"], ca["benefit"]) == ("coo", 10.0, 25.0)
    assert ca["yield"] == pytest.approx(2.5) and ca["decisions"] == 1 and ca["declared"] is True
    assert ca["period_budget"] == pytest.approx(100 * 30 / 365)
    assert ca["budget_used"] == pytest.approx(10 / (100 * 30 / 365))
    year = {r["initiative"]: r for r in ws.finops.initiatives("2026").to_pylist()}["claims-automation"]
    assert (year["period_budget"], year["budget_used"]) == (pytest.approx(100.0), pytest.approx(0.1))
    assert rows["(no initiative)"]["fully_loaded_cost"] == pytest.approx(4.0)
    assert [d["decision_id"] for d in ws.finops.decisions("claims-automation").to_pylist()] == ["d1"]
    # A decision naming an initiative nobody declared (a typo) is shown, not dropped.
    typo = rows["claims-automaton"]
    assert (typo["declared"], typo["decisions"], typo["fully_loaded_cost"]) == (False, 1, 0.0)
    [problem] = ws.finops.undeclared_initiatives()
    assert problem["decision_id"] == "d2" and "does not declare" in problem["problem"]
    assert "claims-automation" in problem["problem"]  # says which initiatives exist


def test_showback_merges_teams_too_small_to_show(tmp_path: Path):
    """privacy.min_group_size 2. alpha has two people (1.00 USD each), beta and gamma one each
    (3.00 and 5.00 USD): without the per-person privilege, beta and gamma are shown together as
    "(other teams)" (2 people, 8.00 USD, share 0.8 of 10.00); with it, every team. Without gamma,
    beta alone would be one person even merged: left out. And when gamma's only call has no price,
    gamma has no cost to charge and no row: the merged row would be beta's alone (one person), so it
    is left out too, though beta and gamma together have two people."""

    def org(root: Path, teams: list[tuple[str, str, float]], model: str = "m-small") -> Workspace:
        ws = make_workspace(root, "privacy:\n  min_group_size: 2\n")
        ingest(
            ws,
            "calls",
            [
                call(utc(2026, 11, 3, 9), usd, team=t, user_id=u, model=model if t == "gamma" else "m-small")
                for t, u, usd in teams
            ],
        )
        return ws

    ws = org(
        tmp_path / "a",
        [("alpha", "a1", 1.0), ("alpha", "a2", 1.0), ("beta", "b1", 3.0), ("gamma", "g1", 5.0)],
    )
    open_rows = {r["team"]: r for r in ws.finops.showback("2026-11").to_pylist()}
    assert set(open_rows) == {"alpha", "beta", "gamma"}
    rows = {r["team"]: r for r in ws.finops.showback("2026-11", people=False).to_pylist()}
    assert set(rows) == {"alpha", "(other teams)"}
    other = rows["(other teams)"]
    assert other["total_cost"] == pytest.approx(8.0) and other["share"] == pytest.approx(0.8)
    assert other["cost_centre"] is None and rows["alpha"]["total_cost"] == pytest.approx(2.0)

    alone = org(tmp_path / "b", [("alpha", "a1", 1.0), ("alpha", "a2", 1.0), ("beta", "b1", 3.0)])
    assert [r["team"] for r in alone.finops.showback("2026-11", people=False).to_pylist()] == ["alpha"]

    teams = [("alpha", "a1", 1.0), ("alpha", "a2", 1.0), ("beta", "b1", 3.0), ("gamma", "g1", 5.0)]
    unpriced = org(tmp_path / "c", teams, model="m-unknown")
    assert {r["team"] for r in unpriced.finops.showback("2026-11").to_pylist()} == {"alpha", "beta"}
    # the spend view merges gamma too (its calls are spend) but counts people over the teams of
    # known cost: gamma's person adds calls to the merged row, no cost ...
    privacy = unpriced.reports.team_privacy(ReportFilters(period="2026-11"))
    assert privacy.small == ("beta", "gamma") and privacy.merged_people == 1 and privacy.hidden
    # ... and the chargeback has rows for alpha and beta only: beta alone is not shown merged
    rows = unpriced.finops.showback("2026-11", people=False).to_pylist()
    assert [r["team"] for r in rows] == ["alpha"]


def test_a_small_team_is_private_on_a_day_none_of_its_people_worked(tmp_path: Path):
    """privacy.min_group_size 2: alpha has two people, beta one (a 3.00 USD call on the 3rd), and
    a 5.00 USD licence names beta on the 10th. On the 10th beta has cost and no person: it counted
    as no small team and was shown alone, though its cost is its one person's. It is small over
    all the data, so it is private on that day too (left out: even merged, one person)."""
    ws = make_workspace(tmp_path / "ws", "privacy:\n  min_group_size: 2\n")
    people = [("alpha", "a1", 1.0), ("alpha", "a2", 1.0), ("beta", "b1", 3.0)]
    ingest(ws, "calls", [call(utc(2026, 11, 3, 9), usd, team=t, user_id=u) for t, u, usd in people])
    licence = {"item_id": "lic", "period_start": utc(2026, 11, 10), "period_end": utc(2026, 11, 11),
               "amount": 5.0, "category": "licence", "team": "beta"}  # fmt: skip
    ingest(ws, "cost_items", [licence])
    day = ReportFilters(period="2026-11-10")
    assert ws.reports.team_privacy(day).small == ("beta",)
    assert [r["team"] for r in ws.finops.showback("2026-11-10").to_pylist()] == ["beta"]  # with people
    assert ws.finops.showback("2026-11-10", people=False).num_rows == 0
    # a team no person ever worked in (a platform team carrying cost items) is not small
    ingest(ws, "cost_items", [{**licence, "item_id": "gw", "team": "platform"}])
    assert ws.reports.team_privacy(day).small == ("beta",)
    assert "platform" in {r["team"] for r in ws.finops.showback("2026-11-10", people=False).to_pylist()}


def test_a_merged_team_row_never_shows_one_persons_cost(tmp_path: Path):
    """privacy.min_group_size 2; alpha has two people (1.00 USD each), beta and gamma one each
    (3.00 and 5.00 USD when priced).

    - gamma's every call unpriced: merging beta and gamma would show 3.00 USD, beta's person's
      cost alone (gamma adds calls, no cost); the merged row's people are counted over the teams
      of known cost, one, too few: the row is left out;
    - both priced: the two people's 8.00 USD are shown together;
    - both unpriced: the row shows no cost (unknown) and two people's calls: shown.
    """
    teams = [("alpha", "a1", 1.0), ("alpha", "a2", 1.0), ("beta", "b1", 3.0), ("gamma", "g1", 5.0)]
    f = ReportFilters(period="2026-11")
    cases = {
        ("m-small", "m-unknown"): {"alpha": 2.0},
        ("m-small", "m-small"): {"alpha": 2.0, "(other teams)": 8.0},
        ("m-unknown", "m-unknown"): {"alpha": 2.0, "(other teams)": None},
    }
    for (beta, gamma), shown in cases.items():
        models = {"alpha": "m-small", "beta": beta, "gamma": gamma}
        ws = make_workspace(tmp_path / f"{beta}-{gamma}", "privacy:\n  min_group_size: 2\n")
        ingest(
            ws,
            "calls",
            [call(utc(2026, 11, 3, 9), usd, team=t, user_id=u, model=models[t]) for t, u, usd in teams],
        )
        rows = {r["team"]: r for r in ws.reports.spend(["team"], f).to_pylist()}
        assert {t: r["fully_loaded_cost"] for t, r in rows.items()} == {
            k: v if v is None else pytest.approx(v) for k, v in shown.items()
        }, (beta, gamma)
        assert ws.reports.team_privacy(f).hidden == ("(other teams)" not in shown)
        if "(other teams)" in rows:
            assert rows["(other teams)"]["calls"] == 2
        ws.close()
        if "(other teams)" not in shown:  # the command line says so by team, and only by team
            from typer.testing import CliRunner

            from yieldmeter.cli.main import build_app

            for by, noted in (("team", True), ("model", False)):
                args = ["report", "spend", "--by", by, "--period", "2026-11", "-w", str(ws.root)]
                r = CliRunner().invoke(build_app(), args)
                assert r.exit_code == 0 and ("hidden" in r.output) == noted, (by, r.output)


def test_the_command_line_merges_small_teams_unless_people(tmp_path: Path):
    """`showback`, `report spend --by team` and `forecast` follow the rule of the server and the reports:
    privacy.min_group_size 2; alpha has two people (1.00 USD each), beta and gamma one each (3.00
    and 5.00 USD). Without --people, beta and gamma read as one "(other teams)" row of 3 + 5 = 8.00
    USD, a table says so, and a --team naming beta is refused; with --people, every team."""
    from typer.testing import CliRunner

    from yieldmeter.cli.main import build_app

    ws = make_workspace(tmp_path / "ws", "privacy:\n  min_group_size: 2\n")
    people = [("alpha", "a1", 1.0), ("alpha", "a2", 1.0), ("beta", "b1", 3.0), ("gamma", "g1", 5.0)]
    ingest(ws, "calls", [call(utc(2026, 11, 3, 9), usd, team=t, user_id=u) for t, u, usd in people])
    ws.close()
    app, runner = build_app(), CliRunner()

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(app, [*args, "-w", str(tmp_path / "ws")])
        return r.exit_code, r.output

    for command, cost in (("showback", "total_cost"), ("report spend --by team", "fully_loaded_cost")):
        code, out = run(*command.split(), "--period", "2026-11", "-f", "json")
        assert code == 0, out
        rows = {r["team"]: r[cost] for r in json.loads(out)}
        assert rows == {"alpha": pytest.approx(2.0), "(other teams)": pytest.approx(8.0)}, command
        code, out = run(*command.split(), "--period", "2026-11", "-f", "json", "--people")
        assert code == 0 and {r["team"] for r in json.loads(out)} == {"alpha", "beta", "gamma"}, command
        code, out = run(*command.split(), "--period", "2026-11")
        assert code == 0 and "2 teams with fewer than 2 people" in " ".join(out.split()), command
    # the forecast by team (a spend view too): the same two teams forecast together
    code, out = run("forecast", "--at", "2026-11-20", "-f", "json")
    assert code == 0 and {r["key"] for r in json.loads(out)} == {"alpha", "(other teams)"}, out
    code, out = run("forecast", "--at", "2026-11-20", "-f", "json", "--people")
    assert code == 0 and {r["key"] for r in json.loads(out)} == {"alpha", "beta", "gamma"}, out
    code, out = run("report", "spend", "--team", "beta")
    assert code == 1 and "min_group_size" in out
    code, out = run("report", "spend", "--team", "beta", "--people", "-f", "json")
    assert code == 0 and json.loads(out)[0]["fully_loaded_cost"] == pytest.approx(3.0)


def test_showback_counts_the_calls_it_cannot_charge(tmp_path: Path):
    """alpha: a 2.00 USD call and two calls of a model without a price; beta: one such call, and
    nothing it can be charged. The chargeback charges known amounts: alpha's model cost is 2.00
    USD beside unpriced_calls 2 (not a cost of 2.00 read as complete), beta has no row, and the
    command says that 3 calls were charged nothing."""
    from typer.testing import CliRunner

    from yieldmeter.cli.main import build_app

    ws = make_workspace(tmp_path / "ws")
    t = utc(2026, 11, 3, 9)
    unpriced = [call(t, 1.0, model="m-unknown"), call(t, 1.0, model="m-unknown")]
    ingest(ws, "calls", [call(t, 2.0), *unpriced, call(t, 1.0, model="m-unknown", team="beta")])
    rows = ws.finops.showback("2026-11").to_pylist()
    assert [(r["team"], r["model_cost"], r["unpriced_calls"]) for r in rows] == [("alpha", 2.0, 2)]
    assert ws.finops.unpriced_by_team("2026-11") == {"alpha": 2, "beta": 1}
    assert ws.finops.unpriced_by_team("2026-10") == {}  # the period narrows the count
    # the Chargeback section counts beta's call too, which no row holds
    from yieldmeter.app.finops_sections import showback_section

    section = showback_section(ws.reports, ReportFilters(period="2026-11", people=True))
    assert any(n.startswith("1 more calls without a list price are in no row above") for n in section.notes)
    ws.close()
    r = CliRunner().invoke(build_app(), ["showback", "--period", "2026-11", "-w", str(tmp_path / "ws")])
    assert r.exit_code == 0 and "3 calls without a list price charged nothing" in " ".join(r.output.split())
    r = CliRunner().invoke(
        build_app(), ["showback", "--period", "2026-11", "-f", "json", "-w", str(tmp_path / "ws")]
    )
    assert r.exit_code == 0 and "3 calls without a list price" in " ".join(r.stderr.split())  # beside JSON
    assert json.loads(r.stdout)[0]["unpriced_calls"] == 2
