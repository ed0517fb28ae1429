"""The lake without Spark: layout and manifest, export, idempotent ingest, engine choice and gaps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tests.engine_support import EXAMPLES, assert_same_figures, build_example_workspace
from yieldmeter.cli.main import build_app
from yieldmeter.lake.engines import UNSUPPORTED, EngineGap, EngineSettings, require
from yieldmeter.lake.layout import Lake

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(build_app(), list(args))
    return result.exit_code, result.output


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return build_example_workspace(tmp_path / "ws")


def test_export_writes_day_partitions_and_a_manifest(ws: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    code, out = cli("lake", "export", str(lake), "-w", str(ws), "-f", "json")
    assert code == 0, out
    doc = json.loads((lake / "_manifest.json").read_text())
    assert doc["format"] == "yieldmeter-lake" and doc["schema_version"] >= 1
    calls = doc["tables"]["calls"]
    # 13 example calls over five working days, 3-7 March 2025: one folder per day
    assert calls["rows"] == 13 and calls["partitioned_by"] == "day"
    assert sorted(calls["partitions"]) == [f"2025-03-0{d}" for d in range(3, 8)]
    assert (lake / "calls" / "day=2025-03-03").is_dir()
    assert doc["tables"]["workflows"]["partitioned_by"] is None and doc["tables"]["workflows"]["rows"] == 4
    assert doc["tables"]["model_map"]["rows"] > 0 and doc["tables"]["prices"]["rows"] > 0
    # a second export is a snapshot of the same store: same files, same rows
    before = sorted(p.relative_to(lake) for p in lake.rglob("*.parquet"))
    assert cli("lake", "export", str(lake), "-w", str(ws))[0] == 0
    assert sorted(p.relative_to(lake) for p in lake.rglob("*.parquet")) == before
    code, out = cli("lake", "info", str(lake), "-f", "json")
    assert code == 0 and {r["table"]: r["rows"] for r in json.loads(out)}["calls"] == 13


def test_ingest_to_lake_is_idempotent_and_matches_the_store(ws: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    code, out = cli(
        "ingest", str(EXAMPLES / "data"), "--to-lake", str(lake), "-w", str(ws), "--output", "json"
    )
    assert code == 0, out
    first = json.loads(out)
    assert sum(r["landed"] for r in first) == 41 and sum(r["duplicates"] for r in first) == 0
    files = sorted(p.relative_to(lake) for p in lake.rglob("*.parquet"))
    calls = Lake(str(lake)).read_table("calls")
    code, out = cli(
        "ingest", str(EXAMPLES / "data"), "--to-lake", str(lake), "-w", str(ws), "--output", "json"
    )
    again = json.loads(out)
    assert sum(r["landed"] for r in again) == 0 and sum(r["duplicates"] for r in again) == 41
    assert sorted(p.relative_to(lake) for p in lake.rglob("*.parquet")) == files
    assert Lake(str(lake)).read_table("calls").sort_by("call_id").equals(calls.sort_by("call_id"))
    # a store ingest and a lake ingest of the same files report the same spend
    code, on_lake = cli(
        "--engine",
        "duckdb",
        "--lake",
        str(lake),
        "report",
        "spend",
        "--by",
        "team,model",
        "-w",
        str(ws),
        "-f",
        "json",
    )
    assert code == 0, on_lake
    code, on_store = cli("report", "spend", "--by", "team,model", "-w", str(ws), "-f", "json")
    assert_same_figures(
        pa.Table.from_pylist(json.loads(on_store)),
        pa.Table.from_pylist(json.loads(on_lake)),
        "spend: store vs --to-lake",
    )


def test_an_id_stored_by_another_source_is_kept_once(ws: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    copy = tmp_path / "copy" / "calls.csv"
    copy.parent.mkdir()
    shutil.copy(EXAMPLES / "data" / "calls.csv", copy)
    assert cli("ingest", str(EXAMPLES / "data" / "calls.csv"), "--to-lake", str(lake), "-w", str(ws))[0] == 0
    _, out = cli("ingest", str(copy), "--to-lake", str(lake), "-w", str(ws), "--output", "json")
    assert json.loads(out)[0]["duplicates"] == 13
    assert Lake(str(lake)).read_table("calls").num_rows == 13


def test_bad_rows_go_to_the_lake_quarantine(ws: Path, tmp_path: Path) -> None:
    bad = tmp_path / "calls.csv"
    bad.write_text(
        "call_id,ts,model,input_tokens\nc1,2025-03-03T09:00:00Z,gpt-4o,10\nc2,not-a-time,gpt-4o,5\n"
    )
    lake = tmp_path / "lake"
    code, out = cli("ingest", str(bad), "--to-lake", str(lake), "-w", str(ws), "--output", "json")
    assert code == 0, out
    assert json.loads(out)[0]["quarantined"] == 1
    q = Lake(str(lake)).read_table("quarantine").to_pylist()
    assert len(q) == 1 and q[0]["source"] == str(bad) and q[0]["position"] is not None
    code, out = cli("--engine", "duckdb", "--lake", str(lake), "quarantine", "-w", str(ws), "-f", "json")
    assert code == 0 and len(json.loads(out)) == 1


def test_engine_choice_precedence() -> None:
    env = {"YIELDMETER_ENGINE": "spark", "YIELDMETER_LAKE": "/env/lake"}
    config = {"name": "duckdb", "lake": "/config/lake", "master": "spark://config:7077"}
    s = EngineSettings.resolve(config=config, env=env)
    assert (s.engine, s.lake, s.master) == ("spark", "/env/lake", "spark://config:7077")
    s = EngineSettings.resolve(engine="duckdb", lake="/arg", config=config, env=env)
    assert (s.engine, s.lake) == ("duckdb", "/arg")
    assert EngineSettings.resolve(env={}).engine == "duckdb" and EngineSettings.resolve(env={}).lake is None
    with pytest.raises(ValueError, match="unknown key"):
        EngineSettings.resolve(config={"mastr": "x"}, env={})


def test_clear_messages_for_wrong_choices(ws: Path, tmp_path: Path) -> None:
    code, out = cli("--engine", "spark", "report", "spend", "-w", str(ws))
    assert code == 1 and "reads a lake" in out
    code, out = cli("--engine", "hive", "--lake", str(tmp_path), "report", "spend", "-w", str(ws))
    assert code == 1 and "unknown engine" in out
    code, out = cli("--engine", "duckdb", "--lake", str(tmp_path / "none"), "report", "spend", "-w", str(ws))
    assert code == 1 and "no yieldmeter lake" in out
    lake = tmp_path / "lake"
    assert cli("lake", "export", str(lake), "-w", str(ws))[0] == 0
    code, out = cli(
        "--engine", "duckdb", "--lake", str(lake), "ingest", str(EXAMPLES / "data"), "-w", str(ws)
    )
    assert code == 1 and "--to-lake" in out
    # scores on a lake would vanish with the process: said, nothing run; reports still score in memory
    code, out = cli("--engine", "duckdb", "--lake", str(lake), "score", "-w", str(ws))
    assert code == 1 and "scores are not stored on the lake" in " ".join(out.split()), out
    code, out = cli(
        "--engine", "duckdb", "--lake", str(lake), "report", "funnel", "-w", str(ws), "-f", "json"
    )
    assert code == 0 and json.loads(out), out


def test_declared_gaps_raise_with_their_reason() -> None:
    (engine, capability), reason = next(iter(UNSUPPORTED.items()))
    with pytest.raises(EngineGap, match="not supported on the"):
        require(engine, capability)
    require("duckdb", "spend")  # no gap: no error
    assert reason
    code, out = cli("lake", "engines", "-f", "json")
    assert code == 0 and len(json.loads(out)) == len(UNSUPPORTED)
