"""One report suite, every engine: the same figures on DuckDB and Spark (to 1e-9 relative).

Each report (every Workspace report and every public report of ``ws.value``)
runs on the workspace's own DuckDB store (the reference), on DuckDB over the
lake exported from that store, and on Spark ``local[2]`` over the same lake,
for two data sets: the examples and a small simulated organisation.

Engine gaps come from ``yieldmeter.lake.engines.UNSUPPORTED`` and nowhere else:
such a case is a strict expected failure, so a gap that starts working fails
here until its declaration is removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine_support import (
    all_reports,
    assert_same_figures,
    build_example_workspace,
    build_simulated_workspace,
    run_report,
    spark_available,
    spark_session_for_tests,
)
from yieldmeter.lake.engines import UNSUPPORTED, EngineGap, EngineSettings

DATASETS = ("examples", "simulated")
#: test engine id -> (engine name in UNSUPPORTED, on a lake)
ENGINES = {"duckdb-lake": "duckdb", "spark": "spark"}
SPARK_MISSING = spark_available()
#: Figures that differ on one data set although the report runs: not an engine gap (the report
#: works), a discrepancy under investigation. Strict: when it is fixed, remove the line.
KNOWN_DIFFERENCES: dict[tuple[str, str, str], str] = {
    ("simulated", "spark", "value.patterns"): (
        "bootstrap intervals (the _low/_high columns) differ by up to 0.2% for some segments on the "
        "simulated organisation while every point estimate is equal: a few units probably fall in "
        "another segment (timestamp or float bucket edge) on Spark; not found yet"
    ),
}


def _cases() -> Iterator[Any]:
    for dataset in DATASETS:
        for engine_id, engine in ENGINES.items():
            for report in all_reports():
                marks = []
                if engine == "spark":
                    marks += [pytest.mark.spark]
                    if SPARK_MISSING:
                        marks.append(pytest.mark.skip(reason=SPARK_MISSING))
                reason = UNSUPPORTED.get((engine, report))
                if reason is not None:
                    marks.append(
                        pytest.mark.xfail(
                            strict=True, raises=EngineGap, reason=f"declared engine gap: {reason}"
                        )
                    )
                known = KNOWN_DIFFERENCES.get((dataset, engine_id, report))
                if known is not None:
                    marks.append(pytest.mark.xfail(strict=True, reason=f"known difference: {known}"))
                yield pytest.param(
                    dataset, engine_id, report, marks=marks, id=f"{dataset}-{engine_id}-{report}"
                )


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


class _Data:
    """Workspaces, lakes and reference figures, built once per test run and on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workspaces: dict[str, Path] = {}
        self.lakes: dict[str, Path] = {}
        self.reference: dict[tuple[str, str], Any] = {}
        self.opened: dict[tuple[str, str], Any] = {}

    def workspace(self, dataset: str) -> Path:
        if dataset not in self.workspaces:
            dest = self.root / dataset / "ws"
            if dataset == "examples":
                build_example_workspace(dest)
            else:
                build_simulated_workspace(dest, self.root / dataset / "raw")
            self.workspaces[dataset] = dest
        return self.workspaces[dataset]

    def lake(self, dataset: str) -> Path:
        if dataset not in self.lakes:
            from yieldmeter.app.workspace import Workspace
            from yieldmeter.lake.export import export_workspace

            dest = self.root / dataset / "lake"
            with Workspace.open(self.workspace(dataset)) as ws:
                export_workspace(ws, str(dest))
            self.lakes[dataset] = dest
        return self.lakes[dataset]

    def expected(self, dataset: str, report: str) -> Any:
        if (dataset, report) not in self.reference:
            from yieldmeter.app.workspace import Workspace

            with Workspace.open(self.workspace(dataset)) as ws:
                self.reference[(dataset, report)] = run_report(ws, report)
        return self.reference[(dataset, report)]

    def on_engine(self, dataset: str, engine_id: str) -> Any:
        key = (dataset, engine_id)
        if key not in self.opened:
            from yieldmeter.lake.workspace import open_on_engine

            engine = ENGINES[engine_id]
            if engine == "spark":
                spark_session_for_tests()
            settings = EngineSettings(engine, str(self.lake(dataset)), "local[2]")
            self.opened[key] = open_on_engine(self.workspace(dataset), settings)
        return self.opened[key]

    def close(self) -> None:
        for ws in self.opened.values():
            ws.close()


@pytest.fixture(scope="session")
def engine_data(data_root: Path) -> Iterator[_Data]:
    data = _Data(data_root)
    yield data
    data.close()


@pytest.mark.parametrize(("dataset", "engine_id", "report"), list(_cases()))
def test_same_figures_on_every_engine(engine_data: _Data, dataset: str, engine_id: str, report: str) -> None:
    expected = engine_data.expected(dataset, report)
    ws = engine_data.on_engine(dataset, engine_id)
    actual = run_report(ws, report)
    assert sorted(actual) == sorted(expected)
    for name, table in expected.items():
        assert_same_figures(table, actual[name], f"{dataset}/{engine_id}/{name}")


def test_reports_are_not_empty(engine_data: _Data) -> None:
    """The comparison means something: the simulated organisation yields rows in the main reports."""
    for report in ("spend", "priced_calls", *[r for r in all_reports() if r == "value.funnel"]):
        tables = engine_data.expected("simulated", report)
        assert all(t.num_rows > 0 for t in tables.values()), report


def test_every_declared_gap_names_a_known_report() -> None:
    """A declaration for a report that does not exist is stale: remove it."""
    known = set(all_reports()) | {"ingest", "score"}
    stale = [k for k in UNSUPPORTED if k[1] not in known or k[0] not in ENGINES.values()]
    assert not stale, f"stale engine gap declarations: {stale}"
