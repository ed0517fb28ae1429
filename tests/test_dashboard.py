"""The dashboard in a real headless Chromium (Debian's chromium driven by Playwright's Python API)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import example_workspace, serve

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian's chromium is not installed (scripts/system-deps.sh)"
    ),
]
PAGES = [
    "/",
    "/spend",
    "/funnel",
    "/benchmarks",
    "/people",
    "/waste",
    "/unpriced",
    "/routing",
    "/budgets",
    "/alerts",
    "/forecast",
    "/anomalies",
    "/decisions",
    "/work-units/fr-wu-1",
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example workspace served open (one person on loopback: every scope), with two budgets
    (team risk, the organisation) and one decision so every page has figures to filter."""
    import httpx

    root = example_workspace(tmp_path_factory.mktemp("dash"))
    with serve(root) as url:
        for budget in (
            {"scope_kind": "team", "scope": "risk", "period": "month", "amount": 100.0},
            {"scope_kind": "org", "scope": "default", "period": "month", "amount": 1000.0},
        ):
            assert httpx.post(f"{url}/api/v1/budgets", json=[budget], timeout=60).json()["landed"] == 1
        decision = {
            "decision_id": "d-dash",
            "date": "2025-03-21T00:00:00Z",
            "subject": "fraud-review",
            "change": "kept the fraud assistant",
        }
        assert httpx.post(f"{url}/api/v1/decisions", json=[decision], timeout=60).json()["landed"] == 1
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


def open_page(browser: object, errors: list[str]) -> object:
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page.on(
        "console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"requestfailed: {r.url}"))
    return page


def test_pages_load_without_console_errors(base: str, browser: object) -> None:
    errors: list[str] = []
    page = open_page(browser, errors)
    for path in PAGES:
        resp = page.goto(base + path, wait_until="load")  # type: ignore[attr-defined]
        assert resp.status == 200, path
        assert page.locator("h1").count() == 1, path  # type: ignore[attr-defined]
        # no external resource: every script and style comes from this server
        for src in page.eval_on_selector_all(
            "script[src], link[href]",  # type: ignore[attr-defined]
            "els => els.map(e => e.src || e.href)",
        ):
            assert src.startswith(base) or src.startswith("data:"), (path, src)
    assert errors == []


def test_overview_screenshot_and_charts(base: str, browser: object) -> None:
    errors: list[str] = []
    page = open_page(browser, errors)
    page.goto(base + "/", wait_until="load")  # type: ignore[attr-defined]
    assert page.locator("svg.chart").count() >= 3  # type: ignore[attr-defined]
    assert page.locator("text=Spend connected to measured outcomes").count() >= 1  # type: ignore[attr-defined]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-overview.png"
    page.screenshot(path=str(shot), full_page=True)  # type: ignore[attr-defined]
    assert shot.stat().st_size > 20_000
    assert errors == []


def test_a_filter_changes_the_figures(base: str, browser: object) -> None:
    errors: list[str] = []
    page = open_page(browser, errors)
    page.goto(base + "/", wait_until="load")  # type: ignore[attr-defined]
    kpi = page.locator('[data-kpi="Fully loaded cost"]')  # type: ignore[attr-defined]
    before = kpi.inner_text()
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.select_option('select[data-filter="team"]', "risk")  # type: ignore[attr-defined]
    assert "team=risk" in page.url  # type: ignore[attr-defined]
    after = page.locator('[data-kpi="Fully loaded cost"]').inner_text()  # type: ignore[attr-defined]
    assert after != before
    assert float(after.strip("$").replace(",", "")) < float(before.strip("$").replace(",", ""))
    assert errors == []


def test_waste_drills_down_to_a_work_unit(base: str, browser: object) -> None:
    errors: list[str] = []
    page = open_page(browser, errors)
    page.goto(base + "/waste", wait_until="load")  # type: ignore[attr-defined]
    link = page.locator("a.drill").first  # type: ignore[attr-defined]
    target = link.inner_text()
    with page.expect_navigation():  # type: ignore[attr-defined]
        link.click()
    assert "/work-units/" in page.url  # type: ignore[attr-defined]
    assert page.locator("#work-unit-id").inner_text() == target  # type: ignore[attr-defined]
    for section in ("#score", "#calls", "#signals", "#effort"):
        assert page.locator(section).count() == 1  # type: ignore[attr-defined]
    assert page.locator("ul.why li").count() >= 1  # type: ignore[attr-defined]
    assert errors == []


def _view(base: str, name: str, query: str = "") -> dict[str, dict[str, object]]:
    import httpx

    r = httpx.get(f"{base}/api/v1/views/{name}{query}", timeout=120)
    assert r.status_code == 200, r.text
    return {s["key"]: s for s in r.json()["sections"]}


def _figures(section: dict[str, object]) -> object:
    return (section["kpis"], [t["rows"] for t in section["tables"]])  # type: ignore[index]


#: Per page: a filter, and per section whether the filter changes its figures ("changes") or the
#: section says it does not honour it ("labelled"). Every section of every page is listed.
FILTERED = {
    "overview": (
        "?team=risk",
        {"coverage": "changes", "spend": "changes", "yields": "labelled", "decisions": "labelled"},
    ),
    "spend": (
        "?team=risk",
        {"spend": "changes", "by_team": "changes", "model_mix": "changes", "by_app": "changes"},
    ),
    "funnel": ("?team=risk", {"funnel": "changes"}),
    "benchmarks": ("?model=gpt-4o", {"benchmarks": "changes", "patterns": "changes"}),
    "people": ("?team=risk", {"benchmarks": "changes"}),
    "waste": ("?team=risk", {"waste": "changes"}),
    "unpriced": ("?team=risk", {"unpriced": "changes"}),
    "routing": ("?model=gpt-4o", {"routing": "changes"}),
    "budgets": ("?team=risk", {"budgets": "changes"}),
    "decisions": ("?period=2025-04", {"decisions": "changes"}),
}


#: FinOps pages (alerts, forecast, anomalies): the example data has no alert, history or anomaly to
#: filter, so they are not checked here.
FINOPS_PAGES = {"alerts", "forecast", "anomalies"}


def test_every_page_has_a_filter_check() -> None:
    from yieldmeter.server.views import VIEWS

    assert set(VIEWS) == set(FILTERED) | FINOPS_PAGES


@pytest.mark.parametrize("page", sorted(FILTERED))
def test_a_filter_changes_or_labels_every_section(base: str, page: str) -> None:
    query, expected = FILTERED[page]
    everything, filtered = _view(base, page), _view(base, page, query)
    assert set(filtered) == set(expected), page
    for key, how in expected.items():
        section = filtered[key]
        if how == "changes":
            assert _figures(section) != _figures(everything[key]), (page, key)
        else:
            assert section["scope"] and "not filtered by" in section["scope"], (page, key)  # type: ignore[operator]
    # and the routing page's team filter is labelled, not silently ignored
    if page == "routing":
        assert "not filtered by team" in _view(base, page, "?team=risk")["routing"]["scope"]  # type: ignore[operator]


def test_overview_filtered_by_team_labels_what_it_cannot_filter(base: str, browser: object) -> None:
    errors: list[str] = []
    page = open_page(browser, errors)
    page.goto(base + "/?team=risk", wait_until="load")  # type: ignore[attr-defined]
    # risk's fully loaded cost by hand: $0.00108 of gpt-4o-mini + $0.2079 of the shared $20
    # platform item (pro rata by model cost) + 6 review minutes at $70/h = $7.21
    assert page.locator('[data-kpi="Fully loaded cost"]').inner_text() == "$7.21"  # type: ignore[attr-defined]
    assert page.locator('[data-kpi="Uncovered spend"]').inner_text() == "$0"  # type: ignore[attr-defined]
    note = page.locator('[data-scope="yields"]')  # type: ignore[attr-defined]
    assert note.count() == 1 and "not filtered by team" in note.inner_text()
    assert page.locator('[data-scope="spend"]').count() == 0  # type: ignore[attr-defined]
    assert errors == []


def test_routing_and_unpriced_pages_have_charts(base: str, browser: object) -> None:
    errors: list[str] = []
    page = open_page(browser, errors)
    for path in ("/routing", "/unpriced"):
        page.goto(base + path, wait_until="load")  # type: ignore[attr-defined]
        assert page.locator("svg.chart").count() >= 1, path  # type: ignore[attr-defined]
    page.goto(base + "/unpriced", wait_until="load")  # type: ignore[attr-defined]
    assert "acme-summariser" in page.locator("svg.chart").first.inner_html()  # type: ignore[attr-defined]
    assert errors == []


@pytest.fixture(scope="module")
def finops_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A workspace with a planted runaway agent: 30 runs of 3 calls in September 2026, then one of 60."""
    from datetime import timedelta

    from tests.finops_data import call, ingest, make_workspace, utc

    root = tmp_path_factory.mktemp("finops-dash") / "ws"
    ws = make_workspace(root)
    start = utc(2026, 9, 1, 9)
    rows = [
        call(start + timedelta(days=u, minutes=i), 0.01, workflow="agent", work_unit_id=f"run-{u}")
        for u in range(30)
        for i in range(3)
    ]
    loop_day = start + timedelta(days=29)
    rows += [
        call(loop_day + timedelta(minutes=i), 0.01, workflow="agent", work_unit_id="run-loop")
        for i in range(60)
    ]
    ingest(ws, "calls", rows)
    ingest(ws, "work_units", [{"work_unit_id": "run-loop", "workflow": "agent", "started_at": loop_day}])
    ws.close()
    with serve(root) as url:
        yield url


def test_finops_pages_and_an_anomaly_drills_down_to_its_work_unit(finops_base: str, browser: object) -> None:
    errors: list[str] = []
    page = open_page(browser, errors)
    for path in ("/alerts", "/forecast"):
        assert page.goto(finops_base + path + "?period=2026-09", wait_until="load").status == 200  # type: ignore[attr-defined]
    # September has ended: the anomalies page looks at its last 14 days, as of its end
    page.goto(finops_base + "/anomalies?period=2026-09", wait_until="load")  # type: ignore[attr-defined]
    assert page.locator("text=runaway_agent").count() >= 1  # type: ignore[attr-defined]
    link = page.locator("a.drill", has_text="run-loop").first  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        link.click()
    assert page.url.endswith("/work-units/run-loop")  # type: ignore[attr-defined]
    assert page.locator("#work-unit-id").inner_text() == "run-loop"  # type: ignore[attr-defined]
    assert errors == []


def test_an_empty_workspace_and_a_wrong_address_say_what_to_do(
    tmp_path_factory: pytest.TempPathFactory, browser: object
) -> None:
    """A fresh workspace showed only "Nothing to show for these filters" under no filters, and a
    mistyped page address answered the browser with a problem+json document."""
    import httpx

    from yieldmeter.app.workspace import Workspace

    root = tmp_path_factory.mktemp("empty") / "ws"
    Workspace.init(root).close()
    with serve(root) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        try:
            page.goto(f"{url}/")
            text = page.inner_text("main") if page.locator("main").count() else page.inner_text("body")
        finally:
            page.close()
        assert "No data yet" in text and "yieldmeter ingest FILES" in text and "yieldmeter demo" in text
        r = httpx.get(f"{url}/nosuchpage", headers={"accept": "text/html"}, timeout=60)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
        assert "There is no page at this address" in r.text
        r = httpx.post(f"{url}/", headers={"accept": "text/html"}, timeout=60)
        assert r.status_code == 405 and "GET" in r.headers["allow"]  # the page keeps Allow
        # an API client keeps problem details
        r = httpx.get(f"{url}/api/v1/nosuch", headers={"accept": "text/html"}, timeout=60)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
