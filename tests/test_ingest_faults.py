"""Files with faults in their structure, not only in their values: a row with the wrong number of
fields, bytes that are not UTF-8, a broken JSON array, a binary file, a process killed mid-import.

The contract (issue 2, DESIGN.md "Store"): every input row ends up landed, a duplicate, or in
quarantine with its file, row and reason; a bad row never blocks the good rows of its file, and a
bad file never blocks the other files of the import.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from tests.test_ingest_formats import FORMATS
from yieldmeter.app.workspace import Workspace
from yieldmeter.cli.main import build_app
from yieldmeter.ingest import tabular
from yieldmeter.schema import SCHEMA_VERSION
from yieldmeter.store.duckdb_store import Migration, Store, StoreTooNew

HEADER = b"call_id,ts,provider,model,input_tokens,output_tokens,work_unit_id\n"


def _row(i: int, unit: str = "wu-1") -> bytes:
    return f"c{i},2025-03-01T10:00:00Z,openai,gpt-4o,100,10,{unit}\n".encode()


def test_structural_faults_in_a_csv_are_quarantined_with_their_row(tmp_path: Path) -> None:
    """Rows 1-7 after the header; 2, 4 and 6 are broken in their structure:

    row 2 has one field too many, row 4 one too few, row 6 holds the bytes ff fe (not UTF-8);
    row 5 is quoted across two lines (one record: it lands). 4 land, 3 are quarantined.
    """
    data = (
        HEADER
        + _row(1)
        + b"c2,2025-03-01T10:00:00Z,openai,gpt-4o,100,10,wu-1,surplus\n"
        + _row(3)
        + b"c4,2025-03-01T10:00:00Z,openai\n"
        + b'c5,2025-03-01T10:00:00Z,openai,"gpt-4o",100,10,"wu\n1"\n'
        + b"c6,2025-03-01T10:00:00Z,openai,gpt-\xff\xfe,100,10,wu-1\n"
        + _row(7)
    )
    src = tmp_path / "calls.csv"
    src.write_bytes(data)
    with Workspace.init(tmp_path / "ws") as ws:
        s = ws.ingest_paths([src]).files[0]
        assert (s.read, s.landed, s.duplicates, s.quarantined, s.error) == (7, 4, 0, 3, None)
        assert s.accounted
        q = {r["position"]: (r["reason"], r["source"]) for r in ws.quarantine().to_pylist()}
        assert q == {
            2: ("expected 7 fields, found 8", str(src)),
            4: ("expected 7 fields, found 3", str(src)),
            6: ("model: not UTF-8 text (byte 4)", str(src)),
        }
        ids = ws.store.query_arrow("SELECT call_id FROM calls ORDER BY call_id").column("call_id")
        assert ids.to_pylist() == ["c1", "c3", "c5", "c7"]
        again = ws.ingest_paths([src]).files[0]
        assert (again.landed, again.duplicates, again.quarantined) == (0, 4, 3)
        assert ws.store.count("quarantine") == 3  # the same bad rows are quarantined once


def test_row_numbers_hold_across_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file read in many pieces (500-byte pieces here, ~8 rows each) numbers its rows as one file:
    the broken rows 37 and 181 of 200 are quarantined as rows 37 and 181."""
    monkeypatch.setattr(tabular, "CSV_CHUNK_BYTES", 500)
    rows = [_row(i) for i in range(1, 201)]
    rows[36] = b"c37,2025-03-01T10:00:00Z,too,few\n"
    rows[180] = b"c181,2025-03-01T10:00:00Z,openai,gpt-4o,100,10,wu-1,x,y\n"
    src = tmp_path / "calls.csv"
    src.write_bytes(HEADER + b"".join(rows))
    pieces = list(tabular._csv_pieces(io.BytesIO(b"".join(rows))))
    assert len(pieces) > 20 and b"".join(pieces) == b"".join(rows)
    with Workspace.init(tmp_path / "ws") as ws:
        s = ws.ingest_paths([src]).files[0]
        assert (s.read, s.landed, s.quarantined) == (200, 198, 2)
        assert sorted(ws.quarantine().column("position").to_pylist()) == [37, 181]


def test_a_piece_boundary_never_splits_a_quoted_record() -> None:
    # the newline inside quotes is not a place to cut: the only cut is after the record
    stream = io.BytesIO(b'a,"x\ny",b\nc,d,e\n')
    original = tabular.CSV_CHUNK_BYTES
    try:
        tabular.CSV_CHUNK_BYTES = 4
        assert list(tabular._csv_pieces(stream)) == [b'a,"x\ny",b\n', b"c,d,e\n"]
    finally:
        tabular.CSV_CHUNK_BYTES = original


def test_a_broken_json_array_lands_what_came_before(tmp_path: Path) -> None:
    """Elements 1-4 are read, element 5 is broken: 4 land, the rest of the file is one quarantine
    entry naming element 5 and its line, and nothing is claimed beyond it."""
    good = [
        {"signal_id": f"s{i}", "work_unit_id": "u", "ts": "2025-03-01T00:00:00Z", "kind": "accepted"}
        for i in range(1, 9)
    ]
    text = json.dumps(good, indent=1).replace('"s5"', '"s5" oops')
    src = tmp_path / "signals.json"
    src.write_text(text)
    with Workspace.init(tmp_path / "ws") as ws:
        s = ws.ingest_paths([src]).files[0]
        assert (s.read, s.landed, s.quarantined) == (5, 4, 1)
        (q,) = ws.quarantine().to_pylist()
        line = text[: text.index("oops")].count("\n") + 1
        assert q["position"] == 5
        assert q["reason"] == (
            f"not valid JSON in element 5 (line {line}): Expecting ',' delimiter; "
            "the rest of the file was not read"
        )


def test_a_json_array_is_read_a_piece_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # pieces of 16 bytes: every element and number straddles a boundary somewhere
    monkeypatch.setattr(tabular, "CSV_CHUNK_BYTES", 16)
    values = [{"n": 12345678901234, "s": "é" * 7, "x": [1.5, None, True]} for _ in range(30)]
    data = json.dumps(values).encode()
    out = list(tabular._json_array(data[:16], io.BytesIO(data[16:])))
    assert [i for i, _ in out] == list(range(1, 31)) and [v for _, v in out] == values


def test_an_import_goes_on_past_a_file_it_cannot_read(tmp_path: Path) -> None:
    """A folder of three files: a binary file, a good CSV and one that is not a known table.
    The good file lands; each bad file is one quarantine row naming it and why; the CLI prints the
    summary, names both files on stderr and exits 1."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a-binary.csv").write_bytes(b"\x00\x01\x02\x03" + bytes(range(256)) * 8)
    (folder / "b-calls.csv").write_bytes(HEADER + _row(1) + _row(2))
    (folder / "c-odd.csv").write_text("colour,size\nred,3\n")
    runner = CliRunner()
    r = runner.invoke(build_app(), ["ingest", str(folder), "-w", str(tmp_path / "ws"), "--output", "json"])
    assert r.exit_code == 1, r.output
    summary = json.loads(r.stdout[r.stdout.index("[") :])
    by_file = {Path(f["source"]).name: f for f in summary}
    assert by_file["b-calls.csv"]["landed"] == 2 and by_file["b-calls.csv"]["error"] is None
    assert "first line is not a CSV header" in by_file["a-binary.csv"]["error"]
    assert "cannot tell which table" in by_file["c-odd.csv"]["error"]
    assert f"{folder / 'a-binary.csv'}: cannot read" in r.stderr
    assert "2 of 3 files could not be read" in r.stderr
    with Workspace.open(tmp_path / "ws") as ws:
        q = {Path(x["source"]).name: x for x in ws.quarantine().to_pylist()}
        assert set(q) == {"a-binary.csv", "c-odd.csv"}
        assert q["c-odd.csv"]["position"] is None and "cannot tell which table" in q["c-odd.csv"]["reason"]
        assert ws.store.count("calls") == 2
    # a workbook saved with a .csv name is a zip archive: said so, with what to do
    (tmp_path / "d-workbook.csv").write_bytes(b"PK\x03\x04\x14\x00" + bytes(range(256)) * 8)
    r = runner.invoke(build_app(), ["ingest", str(tmp_path / "d-workbook.csv"), "-w", str(tmp_path / "ws2")])
    assert r.exit_code == 1 and "a zip archive (an Excel workbook is one)" in r.stderr, r.stderr


def test_a_gz_whose_compressed_data_is_damaged_is_quarantined(tmp_path: Path) -> None:
    """A .gz whose first deflate block has the reserved block type (BTYPE 11, the byte after the
    10-byte gzip header) fails in zlib, not in gzip: its own quarantine row, and the next file lands."""
    folder = tmp_path / "in"
    folder.mkdir()
    damaged = bytearray(gzip.compress(HEADER + _row(1)))
    damaged[10] = 0b110  # BFINAL 0, BTYPE 11
    (folder / "a-calls.csv.gz").write_bytes(bytes(damaged))
    (folder / "b-calls.csv").write_bytes(HEADER + _row(2))
    with Workspace.init(tmp_path / "ws") as ws:
        by_file = {Path(f.source).name: f for f in ws.ingest_paths([folder]).files}
        assert by_file["a-calls.csv.gz"].error == (
            "cannot read the file: Error -3 while decompressing data: invalid block type"
        )
        assert by_file["b-calls.csv"].landed == 1 and by_file["b-calls.csv"].error is None
        [q] = ws.quarantine().to_pylist()
        assert Path(q["source"]).name == "a-calls.csv.gz" and "invalid block type" in q["reason"]


@pytest.mark.skipif(os.name != "posix", reason="uses a POSIX signal")
def test_a_killed_ingest_keeps_whole_batches_only(tmp_path: Path) -> None:
    """`Workspace.ingest_paths` on a CSV read in pieces of 8 KiB, killed (SIGKILL) inside the
    transaction of its 4th batch, after that batch's rows were inserted: the store holds exactly
    the first three pieces' rows, the work units derived from them, and nothing of the fourth."""
    rows = [_row(i, unit=f"wu-{i // 50}") for i in range(1, 3001)]
    src = tmp_path / "calls.csv"
    src.write_bytes(HEADER + b"".join(rows))
    ws_dir = tmp_path / "ws"
    Workspace.init(ws_dir).close()
    script = textwrap.dedent(
        f"""
        import os, signal
        from yieldmeter.app.workspace import Workspace
        from yieldmeter.ingest import tabular
        from yieldmeter.store import duckdb_store

        tabular.CSV_CHUNK_BYTES = 8192
        upsert = duckdb_store.Store._upsert
        seen = []

        def killing_upsert(self, con, spec, rows, *rest):
            result = upsert(self, con, spec, rows, *rest)
            if spec.name == "calls":
                seen.append(rows.num_rows)
                if len(seen) == 4:  # the 4th batch is inserted, its transaction still open
                    os.kill(os.getpid(), signal.SIGKILL)
            return result

        duckdb_store.Store._upsert = killing_upsert
        with Workspace.open({str(ws_dir)!r}) as ws:
            ws.ingest_paths([{str(src)!r}])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    original = tabular.CSV_CHUNK_BYTES
    try:
        tabular.CSV_CHUNK_BYTES = 8192
        pieces = list(tabular._csv_pieces(io.BytesIO(b"".join(rows))))
    finally:
        tabular.CSV_CHUNK_BYTES = original
    committed = sum(p.count(b"\n") for p in pieces[:3])
    assert len(pieces) > 4 and 0 < committed < len(rows)
    con = duckdb.connect(str(ws_dir / ".yieldmeter" / "store.duckdb"))
    ids = {r[0] for r in con.execute("SELECT call_id FROM calls").fetchall()}
    assert ids == {f"c{i}" for i in range(1, committed + 1)}
    units = {r[0] for r in con.execute("SELECT work_unit_id FROM work_units WHERE derived").fetchall()}
    assert units == {f"wu-{i // 50}" for i in range(1, committed + 1)}
    con.close()


def test_ordered_migrations_and_a_store_from_a_newer_version(tmp_path: Path) -> None:
    """Steps run in version order, once, only above the recorded version; a failing step leaves
    the store at its version; a store written by a newer yieldmeter is refused."""
    db = tmp_path / "store.duckdb"
    Store.open(db).close()  # a store at the current schema
    v = SCHEMA_VERSION
    ran: list[int] = []

    def step(n: int) -> Migration:
        return Migration(n, f"step {n}", lambda con: ran.append(n))

    store = Store.open(db)
    store.migrate([step(v + 2), step(v + 1), step(v)], target=v + 2)
    assert ran == [v + 1, v + 2] and store.meta("schema_version") == str(v + 2)
    store.migrate([step(v + 2), step(v + 1)], target=v + 2)  # there already: nothing runs again
    assert ran == [v + 1, v + 2]

    def broken(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError(f"step {v + 3} failed")

    with pytest.raises(RuntimeError, match=f"step {v + 3} failed"):
        store.migrate([Migration(v + 3, "broken", broken)], target=v + 3)
    assert store.meta("schema_version") == str(v + 2)
    assert not store.con.execute(
        "SELECT * FROM information_schema.tables WHERE table_name = 'half_done'"
    ).fetchall()
    store.close()

    # this yieldmeter reads schema v: a store at v + 2 is from a newer one
    with pytest.raises(StoreTooNew, match=rf"newer yieldmeter \(schema {v + 2}\).*upgrade yieldmeter"):
        Store.open(db)
    # and the CLI says so, without a traceback
    Workspace.init(tmp_path / "ws").close()
    con = duckdb.connect(str(tmp_path / "ws" / ".yieldmeter" / "store.duckdb"))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    r = CliRunner().invoke(build_app(), ["status", "-w", str(tmp_path / "ws")])
    assert r.exit_code == 1 and "newer yieldmeter (schema 99)" in r.output


def test_init_takes_the_workspace_option_and_variable(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(build_app(), ["init", "--workspace", str(tmp_path / "a")])
    assert r.exit_code == 0 and (tmp_path / "a" / "yieldmeter.yaml").exists()
    r = runner.invoke(build_app(), ["init"], env={"YIELDMETER_WORKSPACE": str(tmp_path / "b")})
    assert r.exit_code == 0 and (tmp_path / "b" / ".yieldmeter" / "store.duckdb").exists()


def test_a_folder_walk_passes_over_what_is_not_data(tmp_path: Path) -> None:
    """A folder's yieldmeter.yaml, README and hidden files are passed over; a simulation's truth
    file is refused (it is what `validate` reads, never data), even when named on its own."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "in"
    (folder / ".cache").mkdir(parents=True)
    (folder / "calls.csv").write_bytes(HEADER + _row(1))
    (folder / "yieldmeter.yaml").write_text("workflows: []\n")
    (folder / "README.md").write_text("# data\n")
    # the script that fetched the exports, naming their objects: it was read as a usage page
    (folder / "fetch_costs.py").write_text('KIND = "organization.costs.result"\nprint(KIND)\n')
    (folder / "fetch-usage").write_text(
        '#!/bin/sh\ncurl -H "x-api-key: $KEY" | grep organization.costs.result\n'
    )
    (folder / ".cache" / "x.csv").write_bytes(HEADER + _row(2))
    truth = pa.table({"work_unit_id": ["wu-1"], "true_value": [1.0]})
    pq.write_table(truth.replace_schema_metadata({"yieldmeter.truth": "{}"}), folder / "truth.parquet")
    assert [p.name for p in Workspace.input_files([folder])] == ["calls.csv", "truth.parquet"]
    with Workspace.init(tmp_path / "ws") as ws:
        s = ws.ingest_paths([folder])
        calls, refused = s.files
        assert calls.landed == 1 and refused.error is not None and "truth of a simulation" in refused.error
        assert ws.store.count("work_units") == 1  # wu-1 derived from the call, not the truth's row


def test_a_quote_inside_a_field_is_a_character(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``5" screen`` is an unquoted field holding a quote (Arrow reads it so): 300 rows in pieces
    of 500 bytes all land, and cutting the file into pieces stays linear (one stray quote once
    made every later newline look like it was inside quotes)."""
    monkeypatch.setattr(tabular, "CSV_CHUNK_BYTES", 500)
    rows = [_row(i) for i in range(1, 301)]
    rows[4] = b'c5,2025-03-01T10:00:00Z,openai,5" screen,100,10,wu-1\n'
    src = tmp_path / "calls.csv"
    src.write_bytes(HEADER + b"".join(rows))
    with Workspace.init(tmp_path / "ws") as ws:
        s = ws.ingest_paths([src]).files[0]
        assert (s.read, s.landed, s.quarantined) == (300, 300, 0)
        model = ws.store.query_arrow("SELECT model FROM calls WHERE call_id = 'c5'").column(0)[0].as_py()
        assert model == '5" screen'


def test_bytes_that_are_not_text_reject_one_json_element(tmp_path: Path) -> None:
    """Element 78 of 150 holds the byte ff: it alone is quarantined; the 149 others land."""
    good = [
        {"signal_id": f"s{i}", "work_unit_id": "u", "ts": "2025-03-01T00:00:00Z", "kind": "accepted"}
        for i in range(150)
    ]
    data = json.dumps(good, indent=1).encode().replace(b'"s77"', b'"s7\xff7"')
    src = tmp_path / "signals.json"
    src.write_bytes(data)
    with Workspace.init(tmp_path / "ws") as ws:
        s = ws.ingest_paths([src]).files[0]
        assert (s.read, s.landed, s.quarantined, s.error) == (150, 149, 1, None)
        (q,) = ws.quarantine().to_pylist()
        assert q["position"] == 78 and "not UTF-8 text" in q["reason"]


def test_the_files_a_folder_walk_passes_over_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "calls.csv").write_bytes(HEADER + _row(1))
    (folder / "yieldmeter.yaml").write_text("workflows: []\n")
    (folder / "spend.log").write_bytes(HEADER + _row(2))  # a .log may hold data: it is read
    r = CliRunner().invoke(build_app(), ["ingest", str(folder), "-w", str(tmp_path / "ws")])
    assert r.exit_code == 0, r.output
    assert "passed over 1 files" in " ".join(r.output.split()) and "yieldmeter.yaml" in r.output
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.store.count("calls") == 2


LITELLM = FORMATS / "litellm_spend_logs.csv"


def test_an_export_row_that_is_not_utf8_is_quarantined_alone(tmp_path: Path) -> None:
    """The LiteLLM fixture (5 spend logs, rows 4 and 5 broken on purpose: 3 land) with the
    Latin-1 byte e9 in row 2's user: that row is quarantined naming the field, and rows 1 and 3
    land. Before, the decode error ended the file at byte 0 and none of its rows landed."""
    header, *rows = LITELLM.read_bytes().splitlines(keepends=True)
    rows[1] = rows[1].replace(b",u-2,", b",u-\xe9,")
    path = tmp_path / "spend.csv"
    path.write_bytes(header + b"".join(rows))
    with Workspace.init(tmp_path / "ws") as ws:
        [f] = ws.ingest_paths([path]).files
        assert (f.format, f.landed, f.quarantined, f.error) == ("litellm", 2, 3, None)
        q = {q["position"]: q for q in ws.quarantine().to_pylist()}
        assert q[2]["reason"] == "row 2: user: not UTF-8 text" and set(q) == {2, 4, 5}
        # the row is kept whole, the byte written as an escape
        assert (
            json.loads(q[2]["raw"])["user"] == "u-\\xe9" and json.loads(q[2]["raw"])["request_id"] == "msg_b2"
        )


def test_the_rows_before_a_cut_in_an_export_gz_land(tmp_path: Path) -> None:
    """A .gz LiteLLM export cut short in its last row: the rows read before the cut land (fewer
    than a batch: without the reader's failure held back they were lost with the buffer), then
    the rest of the file is one quarantine row with the reason."""
    header, first, *_ = LITELLM.read_bytes().splitlines(keepends=True)
    # 3,000 copies of the good first row under their own ids: past what format detection reads
    data = header + b"".join(first.replace(b"chatcmpl-a1", f"r{i}".encode()) for i in range(3000))
    whole = gzip.compress(data)
    cut = tmp_path / "spend.csv.gz"
    cut.write_bytes(whole[: len(whole) - 40])  # the end of the deflate stream and the trailer
    readable = gzip.GzipFile(fileobj=io.BytesIO(cut.read_bytes()))
    with pytest.raises(EOFError):
        readable.read()
    # the whole rows before the cut: the lines zlib inflates from what is left, less the header
    before_cut = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut.read_bytes()).count(b"\n") - 1
    with Workspace.init(tmp_path / "ws") as ws:
        [f] = ws.ingest_paths([cut]).files
        assert (f.format, f.error) == (
            "litellm",
            "cannot read the file: Compressed file ended before the end-of-stream marker was reached",
        )
        assert 2900 < f.landed == before_cut < 3000
        assert ws.store.count("calls") == f.landed
        [q] = [q for q in ws.quarantine().to_pylist() if q["position"] is None]
        assert Path(q["source"]).name == "spend.csv.gz" and "cannot read the file" in q["reason"]
