"""The value commands end to end: a real workspace folder, the real CLI, JSON/CSV/JSONL/Parquet out."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.value_data import GOLDEN_CONFIG, build_workspace, golden_rows


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("cli")
    build_workspace(path, golden_rows(), GOLDEN_CONFIG).close()
    yield path


def run(folder: Path, *args: str) -> tuple[int, str]:
    from yieldmeter.cli.main import build_app

    result = CliRunner().invoke(build_app(), [*args, "--workspace", str(folder)])
    return result.exit_code, result.output


def test_score_then_reports_as_json(folder: Path) -> None:
    code, out = run(folder, "score", "--format", "json")
    assert code == 0, out
    assert json.loads(out)[0]["model"] == "prior"
    for report in ("funnel", "yield", "coverage", "benchmarks", "patterns", "waste"):
        code, out = run(folder, "report", report, "--format", "json")
        assert code == 0, (report, out)
        rows = json.loads(out)
        assert isinstance(rows, list) and rows, report
        assert all(k == k.lower() and " " not in k for r in rows for k in r), report
    code, out = run(folder, "report", "value-per-token", "--workflow", "claims", "--format", "json")
    assert code == 0 and json.loads(out)[0]["workflow"] == "claims"


def test_errors_are_for_people(folder: Path) -> None:
    code, out = run(folder, "report", "value-per-token")
    assert code == 1 and "only comparable inside one workflow" in out and "Traceback" not in out
    code, out = run(folder, "report", "benchmarks", "--by", "user")
    assert code == 1 and "--people" in out
    code, out = run(folder, "report", "funnel", "--period", "someday")
    assert code == 1 and "period" in out


def test_exports_carry_the_issue_columns(folder: Path, tmp_path: Path) -> None:
    assert run(folder, "score")[0] == 0
    code, out = run(folder, "export", "scores", "--format", "csv")
    assert code == 0, out
    header = next(csv.reader(io.StringIO(out)))
    assert header[:6] == ["work_unit_id", "workflow", "score", "p_value", "expected_value", "confidence"]
    code, out = run(folder, "export", "scores", "--workflow", "nosuch")
    assert code == 1 and "no scores for workflow 'nosuch'; the scored workflows: " in " ".join(out.split())
    code, out = run(folder, "export", "benchmarks", "--by", "team", "--format", "jsonl")
    assert code == 0, out
    first = json.loads(out.splitlines()[0])
    assert list(first)[:8] == [
        "subject",
        "workflow",
        "n",
        "value_per_token",
        "value_per_token_low",
        "value_per_token_high",
        "success_rate",
        "success_rate_low",
    ]
    assert "cost_per_success" in first
    target = tmp_path / "bench.parquet"
    code, out = run(
        folder,
        "export",
        "benchmarks",
        "--by",
        "user",
        "--people",
        "--format",
        "parquet",
        "--out",
        str(target),
    )
    assert code == 0, out
    assert pq.read_table(target).num_rows == 5  # ann, bob, cy, dee, eve
