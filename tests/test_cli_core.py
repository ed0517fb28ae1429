"""The foundation commands, run in-process through the real Typer app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLES
from yieldmeter.cli.main import build_app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_init_ingest_report_round_trip(tmp_path: Path, runner: CliRunner) -> None:
    app = build_app()
    ws = tmp_path / "ws"
    r = runner.invoke(app, ["init", str(ws)])
    assert r.exit_code == 0, r.output
    assert (ws / "yieldmeter.yaml").exists() and (ws / ".yieldmeter" / "store.duckdb").exists()
    shutil.copy(EXAMPLES / "yieldmeter.yaml", ws / "yieldmeter.yaml")

    r = runner.invoke(app, ["ingest", str(EXAMPLES / "data"), "--workspace", str(ws), "--output", "json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output[r.output.index("[") :])
    assert sum(f["landed"] for f in summary) == 41 and sum(f["unpriced_calls"] for f in summary) == 2

    # the environment variable names the workspace for every command
    r = runner.invoke(
        app,
        ["report", "spend", "--by", "team,model", "--format", "json"],
        env={"YIELDMETER_WORKSPACE": str(ws)},
    )
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert set(rows[0]) == {
        "team",
        "model",
        "calls",
        "input_tokens",
        "output_tokens",
        "model_cost",
        "unpriced_calls",
        "allocated_cost",
        "effort_cost",
        "fully_loaded_cost",
    }
    finance = next(x for x in rows if x["team"] == "finance" and x["model"] == "gpt-4o")
    assert finance["model_cost"] == pytest.approx(0.09, abs=1e-12)

    r = runner.invoke(app, ["report", "spend", "--by", "month", "--format", "csv", "-w", str(ws)])
    assert r.exit_code == 0 and r.output.startswith("month,calls,")

    # spend per person is a privileged view, as benchmarks per user are
    r = runner.invoke(app, ["report", "spend", "--by", "user", "-w", str(ws)])
    assert r.exit_code == 1 and "add --people" in r.output
    r = runner.invoke(app, ["report", "spend", "--by", "user", "--people", "-w", str(ws), "-f", "json"])
    assert r.exit_code == 0 and "ana" in {x["user_id"] for x in json.loads(r.output)}

    r = runner.invoke(app, ["unpriced", "-w", str(ws), "--format", "json"])
    assert json.loads(r.output)[0]["model"] == "acme-summariser"

    r = runner.invoke(app, ["status", "-w", str(ws)])
    assert r.exit_code == 0 and "calls" in r.output


def test_bad_input_gives_a_message_and_a_non_zero_exit(tmp_path: Path, runner: CliRunner) -> None:
    app = build_app()
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    r = runner.invoke(app, ["ingest", str(empty), "-w", str(tmp_path / "ws")])
    assert r.exit_code == 2 and f"nothing could be read from {empty}" in " ".join(r.output.split())
    # beside files that are read, an empty one is named in a note and the import goes on
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "empty.csv").write_text("")
    shutil.copy(EXAMPLES / "data" / "calls.csv", folder / "calls.csv")
    r = runner.invoke(app, ["ingest", str(folder), "-w", str(tmp_path / "ws")])
    flat = " ".join(r.output.split())
    assert r.exit_code == 0 and f"note: nothing read from {folder / 'empty.csv'}" in flat, r.output

    r = runner.invoke(app, ["ingest", str(tmp_path / "missing.csv"), "-w", str(tmp_path / "ws")])
    assert r.exit_code == 1 and "no such file" in r.output

    r = runner.invoke(app, ["report", "spend", "--by", "colour", "-w", str(tmp_path / "ws")])
    assert r.exit_code == 1 and "not a dimension" in r.output

    r = runner.invoke(app, ["report", "spend", "--period", "last-tuesday", "-w", str(tmp_path / "ws")])
    assert r.exit_code == 1 and "is not YYYY" in r.output

    r = runner.invoke(app, ["status", "-w", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "yieldmeter init" in r.output

    odd = tmp_path / "odd.csv"
    odd.write_text("colour,size\nred,3\n")
    r = runner.invoke(app, ["ingest", str(odd), "-w", str(tmp_path / "ws")])
    assert r.exit_code == 1 and "cannot tell which table" in r.output

    (tmp_path / "ws" / "yieldmeter.yaml").write_text("workflows:\n  - workflow: x\n    unit_value: lots\n")
    r = runner.invoke(app, ["status", "-w", str(tmp_path / "ws")])
    assert r.exit_code == 1 and "line 3 (workflows[0].unit_value)" in r.output


def test_a_usage_page_of_a_quiet_day_is_read_not_failed(tmp_path: Path, runner: CliRunner) -> None:
    """OpenAI and Anthropic answer a period without usage with buckets whose results are empty:
    recognised by their structure, they failed the import (exit 2, "nothing could be read"), so a
    daily job failed on a quiet day. They are read, with a note; an empty file still fails."""
    app = build_app()
    openai = {"object": "page", "has_more": False, "data": [
        {"object": "bucket", "start_time": 1740787200, "end_time": 1740873600, "results": []}]}  # fmt: skip
    day = {"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z", "results": []}
    anthropic = {"has_more": False, "data": [day]}
    for name, doc, fmt in (("o.json", openai, "openai-usage"), ("a.json", anthropic, "anthropic-usage")):
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        r = runner.invoke(app, ["ingest", str(path), "-w", str(tmp_path / "ws")])
        flat = " ".join(r.output.split())
        assert r.exit_code == 0 and f"{name}: {fmt}" in flat and f"note: no rows in {path}" in flat, r.output
    # an empty file is not a page of a quiet day, whether its format is detected or named
    empty = tmp_path / "empty.json"
    empty.write_text("")
    for args in ([], ["--format", "litellm"], ["--format", "openai-usage"]):
        r = runner.invoke(app, ["ingest", str(empty), *args, "-w", str(tmp_path / "ws")])
        assert r.exit_code == 2 and "nothing could be read" in " ".join(r.output.split()), (args, r.output)
    # ...gzipped too: its emptiness is judged on what it holds (the raw file was read again,
    # whose gzip header is not white space: exit 0)
    import gzip

    packed = tmp_path / "empty.json.gz"
    packed.write_bytes(gzip.compress(b""))
    r = runner.invoke(app, ["ingest", str(packed), "--format", "otlp-json", "-w", str(tmp_path / "ws")])
    assert r.exit_code == 2, r.output
    # a quiet page from a pipe is a quiet page (the pipe, read again after the import, was empty)
    import subprocess
    import sys

    cli = [sys.executable, "-m", "yieldmeter.cli.main", "ingest", "/dev/stdin", "-w", str(tmp_path / "ws")]
    done = subprocess.run(cli, input=json.dumps(openai).encode(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def test_a_damaged_file_is_named_not_a_traceback(tmp_path: Path, runner: CliRunner) -> None:
    """Files a person keeps beside the data (the configuration, a model shape, a routing policy,
    the store, a lake's manifest) that are not what they should be end the command with a message
    naming the file, never a Python traceback (CliRunner keeps the exception: SystemExit only)."""
    app = build_app()
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    latin1 = b"\xff\xfe{}"  # not UTF-8

    def refused(args: list[str], *words: str) -> None:
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (args, r.output, r.exception)
        flat = " ".join(r.output.split())
        assert all(w in flat for w in words), (args, flat)

    (tmp_path / "shape.json").write_bytes(latin1)
    roofline = ["capacity", "roofline", "--model-shape", str(tmp_path / "shape.json"), "--gpu", "h100"]
    refused(roofline, "shape.json, line 1: not UTF-8")
    (tmp_path / "policy.json").write_bytes(latin1)
    refused(
        ["route", "replay", str(tmp_path / "policy.json"), "-w", str(ws)], "policy.json, line 1: not UTF-8"
    )
    lake = tmp_path / "lake"
    assert runner.invoke(app, ["lake", "export", str(lake), "-w", str(ws)]).exit_code == 0
    (lake / "_manifest.json").write_text('{"format": ')
    refused(["lake", "info", str(lake)], "_manifest.json is damaged")
    refused(["lake", "export", str(lake), "-w", str(ws)], "_manifest.json is damaged")
    (lake / "_manifest.json").write_text("[]")
    refused(["lake", "info", str(lake)], "_manifest.json is not a yieldmeter lake manifest")
    (tmp_path / "a-file").write_text("")
    refused(["init", str(tmp_path / "a-file")], "a-file: a file is in the way")
    refused(["init", str(tmp_path / "a-file" / "sub")], "a file is in the way")
    config = ws / "yieldmeter.yaml"
    config.write_bytes(config.read_bytes() + b"# owner: Ren\xe9\n")  # Latin-1, not UTF-8
    lines = config.read_bytes().count(b"\n")
    refused(["status", "-w", str(ws)], f"yieldmeter.yaml, line {lines}: not UTF-8")
    config.write_text("")
    (ws / ".yieldmeter" / "store.duckdb").write_text("garbage")
    refused(["status", "-w", str(ws)], "store.duckdb cannot be opened", "not a valid DuckDB database")


def test_strict_ingest_exits_1_when_a_row_is_quarantined(tmp_path: Path, runner: CliRunner) -> None:
    """Two calls, one with negative tokens: the good one lands either way; the import exits 0, or
    1 with ``--strict``, to the store and to a lake alike."""
    app = build_app()
    calls = tmp_path / "calls.csv"
    calls.write_text(
        "call_id,ts,provider,model,input_tokens,output_tokens\n"
        "c1,2026-11-02T10:00:00Z,openai,gpt-4o,100,10\n"
        "c2,2026-11-02T10:01:00Z,openai,gpt-4o,-5,10\n"
    )
    for extra in ([], ["--to-lake", str(tmp_path / "lake")]):
        ws = tmp_path / f"ws{len(extra)}"
        r = runner.invoke(app, ["ingest", str(calls), "--table", "calls", "-w", str(ws), *extra])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["ingest", str(calls), "--table", "calls", "-w", str(ws), "--strict", *extra])
        assert r.exit_code == 1 and "1 rows quarantined (--strict" in r.output, r.output
    clean = tmp_path / "clean.csv"
    clean.write_text("".join(calls.read_text().splitlines(keepends=True)[:2]))
    r = runner.invoke(
        app, ["ingest", str(clean), "--table", "calls", "-w", str(tmp_path / "ws9"), "--strict"]
    )
    assert r.exit_code == 0, r.output


def test_output_files_get_their_folder_or_a_clear_error(tmp_path: Path, runner: CliRunner) -> None:
    """--out makes the folders it names; a path under a file cannot be written: the error names it
    (it was a FileNotFoundError or NotADirectoryError traceback)."""
    app = build_app()
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    out = tmp_path / "new" / "deeper" / "route.json"
    r = runner.invoke(app, ["route", "-w", str(ws), "-f", "json", "-o", str(out)])
    assert r.exit_code == 0 and json.loads(out.read_text())["yieldmeter_routing_policy"] == 1, r.output
    blocked = out / "board.md"  # under a file
    for args in (
        ["report", "board", "-f", "md"],
        ["route", "-f", "json"],
        ["export", "benchmarks", "-f", "csv"],
    ):
        r = runner.invoke(app, [*args, "-w", str(ws), "--out", str(blocked)])
        assert r.exit_code == 1 and f"cannot write {blocked}" in r.output, (args, r.output)


@pytest.mark.parametrize("command", ["showback", "reconcile", "initiatives", "report spend"])
def test_a_period_that_is_no_period_is_an_error_not_a_traceback(
    tmp_path: Path, runner: CliRunner, command: str
) -> None:
    app = build_app()
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    r = runner.invoke(app, [*command.split(), "--period", "2025-13", "-w", str(ws)])
    assert r.exit_code == 1 and "period '2025-13' is not" in r.output and r.exception is not None
    assert isinstance(r.exception, SystemExit), r.exception  # a message, not an uncaught error


def test_route_options_before_a_subcommand_are_refused_not_ignored(tmp_path: Path, runner: CliRunner) -> None:
    """`route --period X replay P` replayed the default window: --period was route's own option."""
    app = build_app()
    r = runner.invoke(app, ["route", "--period", "2026-10", "replay", str(tmp_path / "p.json")])
    assert r.exit_code == 1 and "--period before `replay` would be ignored" in r.output
    assert "yieldmeter route replay --help" in r.output


def test_an_empty_reconciliation_is_an_empty_list_in_json(tmp_path: Path, runner: CliRunner) -> None:
    """No bills imported: the table output says how to import one; -f json printed that sentence
    too, which a pipeline cannot parse. It is the empty list the API answers."""
    import json

    app = build_app()
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    r = runner.invoke(app, ["reconcile", "-f", "json", "-w", str(ws)])
    assert r.exit_code == 0 and json.loads(r.stdout) == [], r.stdout
    r = runner.invoke(app, ["reconcile", "-f", "csv", "-w", str(ws)])  # the header alone, not a blank line
    assert r.exit_code == 0 and r.stdout.startswith("month,model,provider,billed,metered,"), r.stdout
    r = runner.invoke(app, ["reconcile", "-w", str(ws)])
    assert r.exit_code == 0 and "No provider token bills imported" in r.stdout


def test_a_small_change_keeps_its_sign_and_a_tenth() -> None:
    """The demo summary read "-0 successful outcomes a month" for a change of -0.497."""
    from yieldmeter.app.demo import _signed

    assert [_signed(x) for x in (-0.497, -0.04, 0.0, 3.26, 9.96, 12.4, -1234.6)] == [
        "-0.5",
        "-0.04",
        "+0.0",
        "+3.3",
        "+10",
        "+12",
        "-1,235",
    ]


def test_ingest_org_writes_every_row_as_that_org(runner: CliRunner, tmp_path: Path) -> None:
    """The Python SDK's spill file carries no org: rows a live server would have written as the
    key's org (acme) landed as 'default'. ``--org acme`` writes them as acme, into the store or a
    lake; a blank org is refused, naming the option; without it the rows keep 'default'."""
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.lake.layout import Lake
    from yieldmeter.sdk import Recorder

    rec = Recorder(path=tmp_path / "spill", flush_interval_s=0)  # no server: the local file
    ts = "2025-03-01T10:00:00+00:00"
    rec.record("signals", {"signal_id": "s-1", "work_unit_id": "wu-1", "ts": ts, "kind": "accepted"})
    rec.record(
        "signals", {"signal_id": "s-2", "work_unit_id": "wu-2", "ts": ts, "kind": "rated", "value": 0.5}
    )
    rec.close()
    spilled = tmp_path / "spill" / "signals.jsonl"
    app = build_app()
    ws = tmp_path / "ws"
    r = runner.invoke(app, ["ingest", str(spilled), "--table", "signals", "--org", " ", "-w", str(ws)])
    assert r.exit_code == 1 and "--org: an org name is needed" in r.output
    r = runner.invoke(app, ["ingest", str(spilled), "--table", "signals", "--org", "acme", "-w", str(ws)])
    assert r.exit_code == 0, r.output
    with Workspace.open(ws) as w:
        assert w.store.query_arrow("SELECT DISTINCT org FROM signals").column("org").to_pylist() == ["acme"]
    lake = tmp_path / "lake"
    args = ["ingest", str(spilled), "--table", "signals", "--to-lake", str(lake), "-w", str(ws)]
    assert runner.invoke(app, [*args, "--org", "acme"]).exit_code == 0
    assert set(Lake(str(lake)).read_table("signals").column("org").to_pylist()) == {"acme"}
    # --org default is an org like any other: rows that carry acme are written as default
    tagged = tmp_path / "tagged.jsonl"
    tagged.write_text(
        json.dumps({"signal_id": "s-9", "work_unit_id": "wu-9", "ts": ts, "kind": "saved", "org": "acme"})
    )
    args = ["ingest", str(tagged), "--table", "signals", "-w", str(ws)]
    assert runner.invoke(app, [*args, "--org", "default"]).exit_code == 0
    with Workspace.open(ws) as w:
        assert w.store.query_arrow("SELECT org FROM signals WHERE signal_id = 's-9'").column(
            "org"
        ).to_pylist() == ["default"]
    other = tmp_path / "ws2"
    assert runner.invoke(app, ["ingest", str(spilled), "--table", "signals", "-w", str(other)]).exit_code == 0
    with Workspace.open(other) as w:
        assert w.store.query_arrow("SELECT DISTINCT org FROM signals").column("org").to_pylist() == [
            "default"
        ]
