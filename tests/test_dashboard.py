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
    "/decisions",
    "/work-units/fr-wu-1",
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = example_workspace(tmp_path_factory.mktemp("dash"))
    with serve(root) as url:
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
