"""``spark normalise``: raw OTLP JSON lines -> lake tables on Spark, row for row what the CLI makes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.engine_support import spark_available, spark_session_for_tests
from yieldmeter.config import load_config
from yieldmeter.lake.ingest import ingest_to_lake
from yieldmeter.lake.layout import Lake

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(spark_available() is not None, reason=str(spark_available())),
]
LINES = 120  # Collector export lines taken from a simulated organisation: small, to keep Spark quick


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from yieldmeter.simulate.run import simulate
    from yieldmeter.simulate.scenarios import SCENARIOS, SimulationParams, min_users

    root = tmp_path_factory.mktemp("normalise")
    result = simulate(root / "sim", SimulationParams(days=2, users=min_users(SCENARIOS["enterprise"])))
    source = next(p for p in result.source_paths if p.suffix == ".jsonl" and "traces" in p.name)
    lines = source.read_bytes().splitlines(keepends=True)[:LINES]
    half = max(1, len(lines) // 2)
    out = root / "raw" / "2026" / "10"
    out.mkdir(parents=True)
    # one good file and one with a line that is not JSON: the bad line is quarantined, the rest lands
    (out / "traces-a.jsonl").write_bytes(b"".join(lines[:half]))
    (out / "traces-b.jsonl").write_bytes(b"".join(lines[half:]) + b"{not json\n")
    (root / "yieldmeter.yaml").write_bytes(result.config_path.read_bytes())
    return root


def test_normalise_matches_the_cli_and_is_idempotent(raw: Path) -> None:
    from yieldmeter.lake.spark_jobs import normalise

    config = load_config(raw / "yieldmeter.yaml")
    session = spark_session_for_tests()
    on_spark = raw / "lake-spark"
    first = normalise(session, str(raw / "raw"), str(on_spark), config)
    assert first.files == 2 and first.tables["calls"] > 0 and first.tables["quarantine"] == 1
    ingest_to_lake(sorted((raw / "raw").rglob("*.jsonl")), str(raw / "lake-cli"), config, fmt="otlp-json")
    a, b = Lake(str(on_spark)), Lake(str(raw / "lake-cli"))
    for table, key in (("calls", "call_id"), ("model_map", "model")):
        spark_rows, cli_rows = a.read_table(table).sort_by(key), b.read_table(table).sort_by(key)
        assert spark_rows.num_rows > 0, table
        assert spark_rows.equals(cli_rows), f"{table}: Spark and the CLI adapter disagree"
    # derived work units: the same units; the CLI derives per file (a unit whose calls span two files
    # keeps the first file's view), Spark over the whole input, so only ids and flags are compared
    units_spark = a.read_table("work_units").select(["work_unit_id", "derived"]).to_pylist()
    units_cli = b.read_table("work_units").select(["work_unit_id", "derived"]).to_pylist()
    ids = [u["work_unit_id"] for u in units_spark]
    assert ids and len(ids) == len(set(ids))
    flags = {u["work_unit_id"]: u["derived"] for u in units_spark}
    assert flags == {u["work_unit_id"]: u["derived"] for u in units_cli}
    assert all(flags.values())  # spans describe no work unit: every unit is derived, on both sides
    q_spark = a.read_table("quarantine").drop_columns(["ingested_at"])
    q_cli = b.read_table("quarantine").drop_columns(["ingested_at"])
    assert q_spark.equals(q_cli) and q_spark.column("raw")[0].as_py() == "{not json\n"
    # a re-run replaces the days it wrote: the same rows, no duplicates
    normalise(session, str(raw / "raw"), str(on_spark), config)
    assert a.read_table("calls").sort_by("call_id").equals(b.read_table("calls").sort_by("call_id"))
    assert a.read_table("quarantine").num_rows == 1
    assert a.manifest()["tables"]["calls"]["rows"] == first.tables["calls"]


def test_normalise_refuses_to_drop_rows_of_the_days_it_replaces(raw: Path) -> None:
    """An hour's folder must not wipe the rest of its day: the run stops, and writes nothing."""
    import shutil

    from yieldmeter.lake.spark_jobs import WouldDropRows, normalise

    config = load_config(raw / "yieldmeter.yaml")
    session = spark_session_for_tests()
    lake_dir = raw / "lake-guard"
    whole = normalise(session, str(raw / "raw"), str(lake_dir), config)
    part = raw / "raw-part" / "2026" / "10"
    part.mkdir(parents=True)
    shutil.copy(raw / "raw" / "2026" / "10" / "traces-a.jsonl", part)  # the day's first half only
    lake = Lake(str(lake_dir))
    with pytest.raises(WouldDropRows, match=r"rows already in the lake for .* --replace-days") as err:
        normalise(session, str(raw / "raw-part"), str(lake_dir), config)
    dropped = int(re.match(r"calls: ([\d,]+) rows", str(err.value)).group(1).replace(",", ""))
    assert dropped > 0
    assert lake.read_table("calls").num_rows == whole.tables["calls"]  # nothing was written
    # the whole day again is fine (idempotent), and --replace-days does what it says
    assert normalise(session, str(raw / "raw"), str(lake_dir), config).tables == whole.tables
    half = normalise(session, str(raw / "raw-part"), str(lake_dir), config, replace_days=True)
    assert 0 < half.tables["calls"] < whole.tables["calls"]
    # the second half's rows in the days the first half touches are gone, other days are kept
    assert lake.read_table("calls").num_rows == whole.tables["calls"] - dropped


def test_a_repeated_span_keeps_the_row_the_cli_keeps(raw: Path, tmp_path: Path) -> None:
    """The first file (by path), and inside it the first line, wins: as in the CLI, not by chance.

    The same spans arrive again with other token counts: at the end of the first file, and at the
    start of a second, larger file (Spark reads the larger file first, so a row kept by arrival,
    as ``dropDuplicates`` keeps it, is the retried one); only the first sighting may land.
    """
    from yieldmeter.lake.spark_jobs import normalise

    config = load_config(raw / "yieldmeter.yaml")
    a, b = sorted((raw / "raw" / "2026" / "10").glob("traces-*.jsonl"))
    # Collector lines are batches of hundreds of spans: one line is plenty
    first, more = a.read_bytes().splitlines(keepends=True), b.read_bytes().splitlines(keepends=True)[:-1]
    retried = [
        re.sub(rb'("gen_ai.usage.input_tokens","value":\{"intValue":")\d+', rb"\g<1>1", ln) for ln in first
    ]
    assert retried != first and more
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b"".join(first + retried))
    (folder / "b.jsonl").write_bytes(b"".join(retried + more))
    normalise(spark_session_for_tests(), str(folder), str(tmp_path / "spark"), config)
    ingest_to_lake(sorted(folder.glob("*.jsonl")), str(tmp_path / "cli"), config, fmt="otlp-json")
    on_spark = Lake(str(tmp_path / "spark")).read_table("calls").sort_by("call_id")
    on_cli = Lake(str(tmp_path / "cli")).read_table("calls").sort_by("call_id")
    assert on_spark.num_rows > 0 and on_spark.equals(on_cli)
    assert 1 not in on_spark.column("input_tokens").to_pylist()  # no retried row won anywhere


def test_a_file_it_cannot_read_is_quarantined_and_the_others_land(raw: Path, tmp_path: Path) -> None:
    """A .gz cut short fails its own file only: the lines before the cut land and the rest of the
    file is one quarantine row with the reason, as `ingest --to-lake` does; the other file lands
    whole. (Before, the Spark task failed, and with it the whole job.)"""
    import gzip

    from yieldmeter.lake.spark_jobs import normalise

    config = load_config(raw / "yieldmeter.yaml")
    a, b = sorted((raw / "raw" / "2026" / "10").glob("traces-*.jsonl"))
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(a.read_bytes())
    whole = gzip.compress(b"".join(b.read_bytes().splitlines(keepends=True)[:-1]))  # its good lines
    (folder / "b.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])
    summary = normalise(spark_session_for_tests(), str(folder), str(tmp_path / "spark"), config)
    assert summary.files == 2 and summary.tables["quarantine"] == 1
    ingest_to_lake(sorted(folder.iterdir()), str(tmp_path / "cli"), config, fmt="otlp-json")
    spark, cli = Lake(str(tmp_path / "spark")), Lake(str(tmp_path / "cli"))
    calls = spark.read_table("calls").sort_by("call_id")
    assert calls.equals(cli.read_table("calls").sort_by("call_id"))
    ingest_to_lake([folder / "a.jsonl"], str(tmp_path / "a-only"), config, fmt="otlp-json")
    only_a = Lake(str(tmp_path / "a-only")).read_table("calls").num_rows
    assert calls.num_rows > only_a > 0  # the lines before the cut landed too
    [q] = spark.read_table("quarantine").drop_columns(["ingested_at"]).to_pylist()
    [q_cli] = cli.read_table("quarantine").drop_columns(["ingested_at"]).to_pylist()
    assert q == q_cli and q["reason"].startswith("cannot read the file") and q["table_name"] == "(file)"
    # named for the command's error and exit 1, as `ingest --to-lake` names it
    [(source, reason)] = summary.unreadable
    assert Path(source).name == "b.jsonl.gz" and reason == q["reason"]


def test_normalise_keeps_the_work_units_an_earlier_write_described(raw: Path) -> None:
    """Work units described by `ingest --to-lake` (owner, session, start) were replaced by units
    derived from the calls when `spark normalise` rewrote their days, silently."""
    import pyarrow.compute as pc

    from yieldmeter.lake.spark_jobs import normalise

    config = load_config(raw / "yieldmeter.yaml")
    lake_dir = raw / "lake-described"
    # half the units described: the days are rewritten with described and derived units side by
    # side, and a second run must still tell them apart (file names no longer do)
    lines = (raw / "sim" / "tables" / "work_units.jsonl").read_text().splitlines(keepends=True)
    units_file = raw / "half_work_units.jsonl"
    units_file.write_text("".join(lines[::2]))
    ingest_to_lake([units_file], str(lake_dir), config)
    lake = Lake(str(lake_dir))
    before = lake.read_table("work_units")
    assert before.num_rows > 0 and not pc.any(before.column("derived")).as_py()
    for _ in range(2):
        result = normalise(spark_session_for_tests(), str(raw / "raw"), str(lake_dir), config)
        assert result.tables["calls"] > 0
    after = lake.read_table("work_units")
    ids = after.column("work_unit_id").to_pylist()
    assert len(ids) == len(set(ids))  # one row per unit
    described = {r["work_unit_id"]: r for r in before.to_pylist()}
    kept = [r for r in after.to_pylist() if r["work_unit_id"] in described]
    assert len(kept) == len(described)  # every described unit is still there, none derived
    for r in kept:
        assert not r["derived"] and r == described[r["work_unit_id"]], r["work_unit_id"]
    # the calls' units the file did not describe are derived, as before
    named = set(lake.read_table("calls").column("work_unit_id").to_pylist()) - {None}
    assert named - set(described) <= {r["work_unit_id"] for r in after.to_pylist() if r["derived"]}
    # --replace-days replaces the days with the input alone: every unit its calls name, once
    normalise(spark_session_for_tests(), str(raw / "raw"), str(lake_dir), config, replace_days=True)
    ids = lake.read_table("work_units").column("work_unit_id").to_pylist()
    assert len(ids) == len(set(ids)) and named <= set(ids)


def test_the_command_runs_with_the_workspace_engine_section(raw: Path) -> None:
    """`yieldmeter spark normalise` passed the config's checked engine section where a mapping was
    read, and failed on every run; the tests above call normalise() itself."""
    from typer.testing import CliRunner

    from yieldmeter.cli.main import build_app

    ws = raw / "ws-cmd"
    ws.mkdir()
    (ws / "yieldmeter.yaml").write_text(
        (raw / "yieldmeter.yaml").read_text()
        + "engine:\n  spark_conf:\n    spark.sql.shuffle.partitions: 2\n"
    )
    lake_dir = raw / "lake-cmd"
    spark_session_for_tests()  # the session the command reuses (the tests' master and settings)
    r = CliRunner().invoke(
        build_app(), ["spark", "normalise", str(raw / "raw"), str(lake_dir), "-w", str(ws), "-f", "json"]
    )
    assert r.exit_code == 0, r.output
    assert Lake(str(lake_dir)).read_table("calls").num_rows > 0, r.output
