"""The lake without Spark: layout and manifest, export, idempotent ingest, engine choice and gaps."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from tests.engine_support import EXAMPLES, assert_same_figures, build_example_workspace
from yieldmeter.cli.main import build_app
from yieldmeter.lake.engines import (
    DEFAULT_MASTER,
    LAUNCHED_BY_SPARK,
    UNSUPPORTED,
    EngineGap,
    EngineSettings,
    choose_master,
    require,
    session_settings,
)
from yieldmeter.lake.layout import Lake, LakeError

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


def test_an_export_writes_into_a_new_folder_or_a_lake_it_knows(ws: Path, tmp_path: Path) -> None:
    """An export replaces every Parquet file under a table's folder: a folder that holds files
    but no lake (somebody's own data) is refused and left alone, and so is a newer lake."""
    mine = tmp_path / "userdata" / "calls" / "my_raw_export.parquet"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"PAR1 not ours")
    code, out = cli("lake", "export", str(tmp_path / "userdata"), "-w", str(ws))
    assert code != 0 and "holds no yieldmeter lake" in out, out
    assert mine.read_bytes() == b"PAR1 not ours"
    lake = tmp_path / "lake"
    assert cli("lake", "export", str(lake), "-w", str(ws))[0] == 0
    # an export cut short before its manifest (written last) may run again
    doc = json.loads((lake / "_manifest.json").read_text())
    (lake / "_manifest.json").unlink()
    code, out = cli("lake", "export", str(lake), "-w", str(ws))
    assert code == 0 and (lake / "_manifest.json").exists(), out
    (lake / "_manifest.json").write_text(json.dumps({**doc, "schema_version": 99}))
    code, out = cli("lake", "export", str(lake), "-w", str(ws))
    assert code != 0 and "upgrade yieldmeter" in out, out
    assert json.loads((lake / "_manifest.json").read_text())["schema_version"] == 99


def test_a_lake_drops_its_exported_scores_when_rows_land_or_the_export_has_none(
    ws: Path, tmp_path: Path
) -> None:
    """Reports read a lake's stored scores before scoring anything, so scores that do not cover
    its work units (a later ingest, an export of a workspace never scored) must not stay."""
    lake = tmp_path / "lake"
    assert cli("lake", "export", str(lake), "-w", str(ws))[0] == 0
    assert Lake(str(lake)).has_data("scores") and Lake(str(lake)).has_data("unit_values")
    # the same rows again land nothing: the scores still cover the lake
    code, out = cli(
        "ingest", str(EXAMPLES / "data"), "--to-lake", str(lake), "-w", str(ws), "--output", "json"
    )
    assert code == 0 and sum(r["landed"] for r in json.loads(out)) == 0, out
    assert Lake(str(lake)).has_data("scores")
    more = tmp_path / "more" / "calls.csv"
    more.parent.mkdir()
    head, first = (EXAMPLES / "data" / "calls.csv").read_text().splitlines()[:2]
    more.write_text(f"{head}\n{first.replace(first.split(',')[0], 'new-call-1', 1)}\n")
    code, out = cli("ingest", str(more), "--to-lake", str(lake), "-w", str(ws))
    assert code == 0 and "scores (from `lake export`) did not cover these rows and were removed" in " ".join(
        out.split()
    ), out
    assert not Lake(str(lake)).has_data("scores") and not Lake(str(lake)).has_data("unit_values")
    # an export from a workspace that was never scored leaves the lake none either
    assert cli("lake", "export", str(lake), "-w", str(ws))[0] == 0
    assert Lake(str(lake)).has_data("scores")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(EXAMPLES / "yieldmeter.yaml", bare / "yieldmeter.yaml")
    assert cli("lake", "export", str(lake), "-w", str(bare))[0] == 0
    assert not Lake(str(lake)).has_data("scores")


def test_an_id_stored_by_another_source_is_kept_once(ws: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    copy = tmp_path / "copy" / "calls.csv"
    copy.parent.mkdir()
    shutil.copy(EXAMPLES / "data" / "calls.csv", copy)
    assert cli("ingest", str(EXAMPLES / "data" / "calls.csv"), "--to-lake", str(lake), "-w", str(ws))[0] == 0
    _, out = cli("ingest", str(copy), "--to-lake", str(lake), "-w", str(ws), "--output", "json")
    assert json.loads(out)[0]["duplicates"] == 13
    assert Lake(str(lake)).read_table("calls").num_rows == 13


def test_a_row_sent_again_across_midnight_is_kept_once_and_a_budget_is_replaced(
    ws: Path, tmp_path: Path
) -> None:
    """c1 at 23:59:30 on the 3rd, sent again by another file at 00:00:05 on the 4th: one call in
    the lake (its first sighting), as the store holds one. A budget raised by a later file
    replaces the first, as in the store."""
    head = "call_id,ts,provider,model,input_tokens,output_tokens,team"
    first, second, budgets, raised = (tmp_path / d for d in ("in1", "in2", "b1", "b2"))
    for folder, ts in ((first, "2025-03-03T23:59:30Z"), (second, "2025-03-04T00:00:05Z")):
        folder.mkdir()
        (folder / "calls.csv").write_text(f"{head}\nc1,{ts},openai,gpt-4o,1000,100,risk\n")
    for folder, amount in ((budgets, 100), (raised, 5)):
        folder.mkdir()
        (folder / "budgets.csv").write_text(f"scope_kind,scope,period,amount\nteam,risk,month,{amount}\n")
    lake = tmp_path / "lake"
    for folder in (first, second):
        assert cli("ingest", str(folder), "--to-lake", str(lake), "-w", str(ws))[0] == 0
    calls = Lake(str(lake)).read_table("calls")
    assert calls.column("call_id").to_pylist() == ["c1"]
    assert calls.column("ts").to_pylist()[0].isoformat() == "2025-03-03T23:59:30+00:00"
    for folder in (budgets, raised):
        code, out = cli("ingest", str(folder), "--table", "budgets", "--to-lake", str(lake), "-w", str(ws))
        assert code == 0, out
    stored = Lake(str(lake)).read_table("budgets")
    assert stored.column("amount").to_pylist() == [5.0]


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
    assert code == 1 and "scores are not stored on a lake" in " ".join(out.split()), out
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


def _said(out: str, reason: str) -> bool:
    """Whether the declared ``reason`` is in a CLI message (the console wraps long lines)."""
    return " ".join(reason.split())[:60] in " ".join(out.split())


def test_every_write_on_a_lake_is_refused_with_its_declared_reason(ws: Path, tmp_path: Path) -> None:
    """Nothing that writes the workspace store reports success on a lake (it would vanish)."""
    lake = tmp_path / "lake"
    assert cli("lake", "export", str(lake), "-w", str(ws))[0] == 0
    on_lake = ("--engine", "duckdb", "--lake", str(lake))
    cases = {
        "ingest": ("ingest", str(EXAMPLES / "data")),
        "value.score": ("score",),
        "finops.alerts": ("alerts", "evaluate"),
        "store.write": ("keys", "create", "collector", "--scope", "ingest"),
        # a host nothing can bind: were the engine ignored again, serve fails fast instead of serving
        "serve": ("serve", "--host", "256.0.0.1"),
    }
    for capability, args in cases.items():
        code, out = cli(*on_lake, *args, "-w", str(ws))
        assert code == 1 and _said(out, UNSUPPORTED[("duckdb", capability)]), (capability, out)
    # `budgets add` records a budget as an ingest: the ingest gap answers
    code, out = cli(*on_lake, "budgets", "add", "team", "risk", "100", "-w", str(ws))
    assert code == 1 and _said(out, UNSUPPORTED[("duckdb", "ingest")]), out
    # and the store was not written: the keys and budgets of the workspace are as before
    code, out = cli("keys", "list", "-w", str(ws), "-f", "json")
    assert code == 0 and json.loads(out) == []
    # serve honours the engine chosen through the environment as well (it was ignored)
    result = runner.invoke(
        build_app(), ["serve", "--host", "256.0.0.1", "-w", str(ws)], env={"YIELDMETER_ENGINE": "spark"}
    )
    assert result.exit_code == 1 and _said(result.output, UNSUPPORTED[("spark", "serve")]), result.output


def test_a_report_over_a_lake_needs_the_workspace_its_settings_come_from(ws: Path, tmp_path: Path) -> None:
    """A mistyped --workspace reported over the lake with default labour rates (exit 0)."""
    lake = tmp_path / "lake"
    assert cli("lake", "export", str(lake), "-w", str(ws))[0] == 0
    on_lake = ("--engine", "duckdb", "--lake", str(lake), "report", "spend", "--by", "team")
    code, out = cli(*on_lake, "-w", str(tmp_path / "wz"))
    assert code == 1 and "no yieldmeter workspace at" in out and "yieldmeter.yaml" in out, out
    assert cli(*on_lake, "-w", str(ws))[0] == 0


def test_a_lake_named_in_the_config_is_put_aside_by_an_empty_one(ws: Path, tmp_path: Path) -> None:
    """With `engine: {lake: ...}` in yieldmeter.yaml nothing reached the workspace's store (an
    empty --lake or YIELDMETER_LAKE counted as unset), while the refusal said to pass neither."""
    lake = tmp_path / "lake"
    assert cli("lake", "export", str(lake), "-w", str(ws))[0] == 0
    cfg = ws / "yieldmeter.yaml"
    cfg.write_text(cfg.read_text() + f"engine:\n  name: duckdb\n  lake: {lake}\n")
    code, out = cli("ingest", str(EXAMPLES / "data" / "calls.csv"), "-w", str(ws))
    assert code == 1 and "--lake ''" in " ".join(out.split()), out
    code, out = cli("--lake", "", "ingest", str(EXAMPLES / "data" / "calls.csv"), "-w", str(ws))
    assert code == 0 and "13 duplicates skipped" in out, out
    result = runner.invoke(
        build_app(),
        ["ingest", str(EXAMPLES / "data" / "calls.csv"), "-w", str(ws)],
        env={"YIELDMETER_LAKE": ""},
    )
    assert result.exit_code == 0, result.output


def test_the_engine_section_is_checked_like_every_other(ws: Path) -> None:
    cfg = ws / "yieldmeter.yaml"
    cfg.write_text(cfg.read_text() + "engine:\n  spark_conf: 5\n")
    code, out = cli("report", "spend", "-w", str(ws))
    flat = " ".join(out.split())
    assert code == 1 and "yieldmeter.yaml, line" in flat and "engine.spark_conf" in flat, out
    cfg.write_text(cfg.read_text().replace("spark_conf: 5", "nmae: duckdb"))
    code, out = cli("report", "spend", "-w", str(ws))
    assert code == 1 and "engine.nmae" in " ".join(out.split()), out
    spark = EngineSettings.resolve(
        engine="spark", lake="/l", config={"spark_conf": {"spark.x.enabled": True}}
    )
    assert dict(spark.spark_conf) == {"spark.x.enabled": "true"}


def test_lake_engines_lists_every_declared_gap() -> None:
    code, out = cli("lake", "engines", "-f", "json")
    rows = json.loads(out)
    assert code == 0 and {(r["engine"], r["capability"]): r["why"] for r in rows} == UNSUPPORTED
    for engine in ("duckdb", "spark"):
        for capability in ("ingest", "value.score", "serve", "finops.alerts", "store.write"):
            assert (engine, capability) in UNSUPPORTED


def test_s3a_lakes_open_with_pyarrow_and_reach_spark_as_s3a() -> None:
    """Hadoop's s3a:// (open-source Spark) is s3:// to pyarrow and DuckDB; no network is used."""
    import pyarrow.fs as pafs

    lake = Lake("s3a://acme-finops/yieldmeter/lake?region=eu-west-1")
    assert isinstance(lake.fs, pafs.S3FileSystem) and lake.root == "acme-finops/yieldmeter/lake"
    assert lake.url("calls") == "s3a://acme-finops/yieldmeter/lake/calls"  # Spark: the scheme given
    assert lake.data_url(lake.path("calls", "day=2025-03-03", "part-x-0.parquet")) == (
        "s3://acme-finops/yieldmeter/lake/calls/day=2025-03-03/part-x-0.parquet"  # DuckDB: s3://
    )
    plain = Lake("s3://acme-finops/yieldmeter/lake?region=eu-west-1")
    assert plain.url("calls") == "s3://acme-finops/yieldmeter/lake/calls"
    with pytest.raises(LakeError, match="cannot open the lake nope://x"):
        Lake("nope://x/lake")


def test_a_gs_lake_gives_up_after_a_minute_unless_its_uri_says_otherwise() -> None:
    """Google's client retried an unreachable store for 15 minutes, printing nothing."""
    from datetime import timedelta

    def retry(uri: str) -> timedelta:
        return Lake(uri).fs.__reduce__()[1][0]["retry_time_limit"]  # type: ignore[no-any-return]

    assert retry("gs://acme/lake") == timedelta(seconds=60)
    assert retry("gs://acme/lake?retry_limit_seconds=5") == timedelta(seconds=5)


def test_a_lake_uri_nothing_reads_is_a_message_not_a_traceback(ws: Path) -> None:
    for args in (
        ("lake", "info", "nope://bucket/lake"),
        ("lake", "export", "nope://bucket/lake", "-w", str(ws)),
    ):
        result = runner.invoke(build_app(), list(args))
        assert result.exit_code == 1 and "cannot" in result.output, result.output
        assert "Traceback" not in result.output and not isinstance(result.exception, LakeError)


def test_the_spark_master_is_only_set_when_chosen() -> None:
    """``spark-submit --master yarn`` must win over a default; a configured master wins over both."""
    submit = {LAUNCHED_BY_SPARK: "40431"}
    assert choose_master(None, env={}) == DEFAULT_MASTER == "local[*]"
    assert choose_master(None, env=submit) is None  # the builder leaves spark-submit's master alone
    assert choose_master("k8s://https://api:6443", env=submit) == "k8s://https://api:6443"
    assert choose_master(None, {"spark.master": "yarn"}, env={}) == "yarn"
    assert choose_master(None, env={"SPARK_MASTER": "spark://head:7077"}) == "spark://head:7077"
    assert choose_master(None, env={"MASTER": "spark://m:7077", "SPARK_MASTER": "x"}) == "spark://m:7077"
    # settings: small-data ones for a local session only; a cluster keeps its own
    assert session_settings("local[2]")["spark.sql.shuffle.partitions"] == "8"
    assert session_settings(None) == {"spark.sql.session.timeZone": "UTC"}
    assert session_settings("yarn", {"spark.executor.memory": "8g"})["spark.executor.memory"] == "8g"
    # nothing configured anywhere: the settings carry no master, so the session start decides
    assert EngineSettings.resolve(engine="spark", lake="/l", env={}).master is None


def test_spark_tests_fail_in_ci_instead_of_skipping(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without Java the Spark tests skip with the reason on a laptop, and fail the run in CI."""
    from tests.engine_support import spark_available

    monkeypatch.setenv("PATH", str(tmp_path))  # no java on it
    monkeypatch.delenv("CI", raising=False)
    assert "no java runtime" in (spark_available() or "")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(RuntimeError, match="CI is set, so the Spark tests must run, but no java runtime"):
        spark_available()
    # a Java older than 17 is no Java for PySpark 4
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    java.chmod(0o755)
    monkeypatch.delenv("CI")
    assert "java 11 found" in (spark_available() or "")


def test_ingest_to_lake_passes_over_documents_and_quarantines_what_it_cannot_read(
    ws: Path, tmp_path: Path
) -> None:
    """The lake import walks a folder and fails a file as a workspace's import does: a README is
    passed over, a .gz with a damaged deflate block (reserved block type) is one quarantine row
    with the reason, the good file lands, and the command exits 1 naming the file."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(EXAMPLES / "data" / "calls.csv", folder / "calls.csv")  # 13 calls
    (folder / "README.md").write_text("# not data\n")
    damaged = bytearray(gzip.compress(b"call_id,ts\nc1,2025-03-03T10:00:00Z\n"))
    damaged[10] = 0b110  # the first deflate block's BTYPE 11
    (folder / "z-calls.csv.gz").write_bytes(bytes(damaged))
    lake = tmp_path / "lake"
    result = runner.invoke(
        build_app(), ["ingest", str(folder), "--to-lake", str(lake), "-w", str(ws), "--output", "json"]
    )
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)  # JSON alone: notes go to stderr beside machine output
    by_file = {Path(f["source"]).name: f for f in summary}
    assert set(by_file) == {"calls.csv", "z-calls.csv.gz"}
    assert by_file["calls.csv"]["landed"] == 13 and by_file["calls.csv"]["error"] is None
    bad = by_file["z-calls.csv.gz"]
    assert bad["error"] == "cannot read the file: Error -3 while decompressing data: invalid block type"
    assert bad["quarantined"] == 1
    assert "passed over 1 files" in result.stderr and "README.md" in result.stderr
    assert f"{folder / 'z-calls.csv.gz'}: cannot read the file" in result.stderr
    [q] = Lake(str(lake)).read_table("quarantine").to_pylist()
    assert Path(q["source"]).name == "z-calls.csv.gz" and "invalid block type" in q["reason"]
    assert Lake(str(lake)).read_table("calls").num_rows == 13


def test_a_lake_written_before_service_tiers_and_hour_writes_is_priced_as_before(
    ws: Path, tmp_path: Path
) -> None:
    """A lake's files written before ``calls.service_tier``, ``calls.cache_write_1h_tokens``,
    ``prices.service_tier`` and ``prices.cache_write_1h`` existed read those columns as null.
    Every call read as unpriced: no price row had the standard rate's tier, and a null count of
    hour writes made every cost null. They read as the standard rate and no hour writes."""
    import pyarrow.parquet as pq

    lake = tmp_path / "lake"
    assert cli("lake", "export", str(lake), "-w", str(ws))[0] == 0
    gone = {"calls": ("service_tier", "cache_write_1h_tokens"), "prices": ("service_tier", "cache_write_1h")}
    for table, columns in gone.items():
        files = list((lake / table).rglob("*.parquet"))
        assert files
        for f in files:
            t = pq.read_table(f)
            if table == "prices":  # then one row set: the standard rate's
                t = t.filter(pa.compute.equal(t["service_tier"], ""))
            pq.write_table(t.drop_columns(list(columns)), f)
    args = ("report", "spend", "--by", "team,model", "-w", str(ws), "-f", "json")
    code, on_lake = cli("--engine", "duckdb", "--lake", str(lake), *args)
    assert code == 0, on_lake
    code, on_store = cli(*args)
    rows = json.loads(on_lake)
    # the example's 13 calls: 2 of a model no catalog knows, the other 11 priced
    assert (sum(r["calls"] for r in rows), sum(r["unpriced_calls"] for r in rows)) == (13, 2)
    assert_same_figures(pa.Table.from_pylist(json.loads(on_store)), pa.Table.from_pylist(rows), "old lake")


def test_a_summing_span_and_the_call_under_it_count_once_in_a_lake(tmp_path: Path) -> None:
    """OpenLIT's LangChain step (``framework``, 900 input tokens) and its provider's chat span
    under it (900), read by one file import in two batches: the lake keeps the chat alone, as
    the store does (900 input tokens, not 1,800); the step is read and counted as structure.
    Nested: step 1 over step 2 over chat 3, with 2 and 3 in one batch (the mapping keeps 2 as
    structure) and 1 in another: the chat alone again, both steps counted as structure. Spark's
    ``lake normalise`` keeps the chat alone too when the step and the chat are in two batches of
    one file."""
    from yieldmeter.config import Config
    from yieldmeter.ingest.base import ReadOptions
    from yieldmeter.ingest.otlp_json import decode_json
    from yieldmeter.lake.ingest import LakeWriter

    trace = "5b8efff798038103d269b633813fc60c"
    t0 = 1_740_823_200_000_000_000

    def _any_value(v: object) -> dict[str, str]:
        return {"stringValue": v} if isinstance(v, str) else {"intValue": str(v)}

    def span(n: int, parent: int | None, operation: str) -> dict[str, object]:
        attrs = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 900,
            "gen_ai.usage.output_tokens": 150,
        }
        return {
            "traceId": trace,
            "spanId": f"{n:016x}",
            "parentSpanId": "" if parent is None else f"{parent:016x}",
            "name": operation,
            "kind": 3,
            "startTimeUnixNano": str(t0 + n * 1_000_000),
            "endTimeUnixNano": str(t0 + n * 1_000_000 + 1_500_000_000),
            "attributes": [{"key": k, "value": _any_value(v)} for k, v in attrs.items()],
        }

    def request(*spans: dict[str, object]) -> bytes:
        return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}).encode()

    step, chat = span(1, None, "framework"), span(2, 1, "chat")
    nested = [span(1, None, "framework"), span(2, 1, "framework"), span(3, 2, "chat")]
    cases = {  # name -> the batches, and what the summary says: (read, landed, structure)
        "call last": ([request(step), request(chat)], (2, 1, 1)),
        "call first": ([request(chat), request(step)], (2, 1, 1)),
        # the mapping keeps step 2 as structure (Batch.summed), the lake writer step 1: each counted
        "nested": ([request(nested[0]), request(nested[1], nested[2])], (3, 1, 2)),
    }
    for k, (name, (requests, counts)) in enumerate(cases.items()):
        batches = [decode_json(body, ReadOptions(source="spans.jsonl")) for body in requests]
        lake = Lake(str(tmp_path / f"lake{k}"))
        summary = LakeWriter(lake, Config()).write_source(batches, source="spans.jsonl", fmt="otlp-json")
        calls = lake.read_table("calls")
        assert calls.column("operation").to_pylist() == ["chat"], name
        assert calls.column("input_tokens").to_pylist() == [900], name
        assert (summary.read, summary.landed, summary.structure) == counts and summary.accounted, name
    # `lake normalise` on Spark maps each file in a task (parse_files, run here without Spark): a
    # line per batch, so the step and the chat are in two batches of the file, and counted once
    from yieldmeter.lake.spark_jobs import ENVELOPE, parse_files

    content = request(step) + b"\n" + request(chat) + b"\n"
    files = pa.record_batch(
        [pa.array(["spans.jsonl"]), pa.array([content], pa.binary())], names=["path", "content"]
    )
    out = pa.Table.from_batches(list(parse_files(iter([files]), {"batch_rows": 1})), schema=ENVELOPE)
    payloads = [
        p
        for t, p in zip(out.column("table").to_pylist(), out.column("payload").to_pylist(), strict=True)
        if t == "calls"
    ]
    calls = pa.concat_tables([pa.ipc.open_stream(p).read_all() for p in payloads])
    assert calls.column("operation").to_pylist() == ["chat"]
    assert calls.column("input_tokens").to_pylist() == [900]
