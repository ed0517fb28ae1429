"""OTLP JSON lines decoded in worker processes: the same batches, in file order, as in one process.

``CHUNK_BYTES`` is lowered so a small file spans many chunks; the chunks are cut in the
importing process, so the worker processes (real, spawned) need no patch.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
from pathlib import Path

import pytest

from tests.test_ingest_otlp import CHAT, _eval, request, span
from yieldmeter.app.workspace import Workspace
from yieldmeter.config import ConfigError, load_config
from yieldmeter.ingest import otlp_json
from yieldmeter.ingest.base import Batch, ReadOptions

#: line (1-based) whose second span has no start time: rejected with its own line's number
BAD_SPAN_LINE = 51


def _lines(n: int) -> bytes:
    """``n`` request lines of 3 spans (2 GenAI, the first with an evaluation, and 1 HTTP); every
    7th line from the 4th is broken."""
    out = []
    for i in range(n):
        if i % 7 == 3:
            out.append(b'{"resourceSpans": [truncated')
            continue
        tokens = {"gen_ai.usage.input_tokens": 100 + i, "gen_ai.usage.output_tokens": i}
        trace = f"{i + 1:032x}"
        second = span(3 * i + 2, {**CHAT, **tokens, "gen_ai.conversation.id": f"c{i}"}, trace=trace)
        if i + 1 == BAD_SPAN_LINE:
            second["startTimeUnixNano"] = "0"
        out.append(
            request(
                span(3 * i + 1, {**CHAT, **tokens}, trace=trace, events=[_eval(i / 100)]),
                second,
                span(3 * i + 3, {"http.route": "/healthz"}, trace=trace),
            )
        )
    return b"\n".join(out) + b"\n"


def _read(data: bytes, workers: int) -> list[Batch]:
    return list(otlp_json.read(io.BytesIO(data), ReadOptions(source="t.jsonl", decode_workers=workers)))


def test_workers_give_the_batches_of_one_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = _lines(60)  # 60 lines of about 1.8 KB
    monkeypatch.setattr(otlp_json, "CHUNK_BYTES", 4 * 1024)  # 2-3 lines a chunk
    chunks = list(otlp_json._chunks(io.BytesIO(data)))
    assert len(chunks) >= 15
    serial = _read(data, 0)
    with caplog.at_level(logging.ERROR, logger="yieldmeter.ingest"):
        parallel = _read(data, 2)
    assert not caplog.records  # the processes decoded their chunks: none died, none was skipped
    # one batch per chunk, cut at the same lines with processes or without
    assert len(parallel) == len(serial) == len(chunks)
    for s, p in zip(serial, parallel, strict=True):
        assert p.tables.keys() == s.tables.keys()
        for name in s.tables:
            assert p.tables[name].equals(s.tables[name]), name
        assert p.notes == s.notes and p.no_model == s.no_model
        assert p.rejects.select(["position", "reason"]).equals(s.rejects.select(["position", "reason"]))
        assert p.ignored == s.ignored
    assert sum("signals" in b.tables for b in parallel) == len(parallel) - 1  # the last: line 60 alone
    calls = [r for b in parallel for r in b.tables["calls"].to_pylist()]
    rejects = [r for b in parallel for r in b.rejects.to_pylist()]
    # 60 lines, 9 broken (i % 7 == 3: lines 4, 11, ..., 60): 51 good lines x 2 calls, less the
    # span without a start time; 51 HTTP spans ignored
    assert len(calls) == 101 and sum(b.ignored for b in parallel) == 51
    assert [r["position"] for r in rejects if r["reason"].startswith("line ")] == list(range(4, 61, 7))
    [bad_span] = [r for r in rejects if not r["reason"].startswith("line ")]
    # a span's reject carries its own line's number, not its chunk's first line
    assert bad_span["position"] == BAD_SPAN_LINE and "startTimeUnixNano: missing" in bad_span["reason"]
    assert [c["input_tokens"] for c in calls[::2]][:4] == [100, 101, 102, 104]


def test_a_file_of_one_chunk_starts_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("a process pool was started for a file of one chunk")

    monkeypatch.setattr(otlp_json, "ProcessPoolExecutor", refuse)
    [batch] = _read(_lines(4), 2)  # about 7 KB, under the 16 MB chunk
    assert batch.tables["calls"].num_rows == 6 and batch.rejects.num_rows == 1


def _die() -> None:
    os._exit(3)


def _broken_pool(workers: int = 1) -> otlp_json._DecodePool:
    pool = otlp_json._DecodePool(ReadOptions(source="t", decode_workers=workers))
    assert pool.pool is not None
    future = pool.pool.submit(_die)  # a process that dies for real: the pool breaks
    with pytest.raises(Exception, match="terminated abruptly"):
        future.result(timeout=60)
    return pool


def test_a_dead_process_leaves_its_chunk_and_the_rest_to_this_one() -> None:
    chunk = (_lines(2), 40)
    pool = _broken_pool()
    try:
        # broken after a result was taken: the next submit finds it so
        assert pool.submit(chunk) is None and pool.pool is None
        [batch] = pool.result(None, chunk)
        assert batch.tables["calls"].column("input_tokens").to_pylist() == [100, 100, 101, 101]
    finally:
        pool.close()
    # broken while the chunk was in a process: its result is decoded here
    pool = otlp_json._DecodePool(ReadOptions(source="t", decode_workers=1))
    try:
        assert pool.pool is not None
        future = pool.pool.submit(_die)
        [batch] = pool.result(future, chunk)
        assert pool.pool is None and batch.tables["calls"].num_rows == 4
    finally:
        pool.close()


def test_the_lines_before_a_read_failure_land_with_processes_or_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otlp_json, "CHUNK_BYTES", 6 * 1024)
    whole = gzip.compress(_lines(60))
    path = tmp_path / "traces.jsonl.gz"
    path.write_bytes(whole[: len(whole) * 2 // 3])  # a .gz cut short: reading fails part way
    landed = {}
    for workers in (0, 2):
        (tmp_path / f"ws{workers}").mkdir()
        (tmp_path / f"ws{workers}" / "yieldmeter.yaml").write_text(f"ingest:\n  decode_workers: {workers}\n")
        with Workspace.init(tmp_path / f"ws{workers}") as ws:
            # the format named: detection reads the file's head, and this one fails within 64 KB
            [f] = ws.ingest_paths([path], fmt="otlp-json").files
            assert f.error and f.error.startswith("cannot read the file")
            landed[workers] = (f.landed, ws.store.count("calls"))
    assert landed[0] == landed[2]
    assert landed[0][0] > 40  # most of the 101 calls were read before the cut


def test_decode_workers_in_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "yieldmeter.yaml"
    config.write_text("ingest:\n  decode_workers: 3\n")
    with Workspace.init(tmp_path) as ws:
        assert ws.read_options("x").decode_workers == 3
    config.write_text("ingest:\n  decode_workers: auto\n")
    assert load_config(config).ingest.decode_workers == "auto"
    for bad in ("-1", "true", "1000"):
        config.write_text(f"ingest:\n  decode_workers: {bad}\n")
        with pytest.raises(ConfigError, match="decode_workers"):
            load_config(config)


def test_an_import_with_workers_lands_every_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_json, "CHUNK_BYTES", 16 * 1024)
    path = tmp_path / "traces.jsonl"
    path.write_bytes(_lines(30))
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "yieldmeter.yaml").write_text("ingest:\n  decode_workers: 2\n")
    with Workspace.init(tmp_path / "ws") as ws:
        [f] = ws.ingest_paths([path]).files
        # 30 lines, 4 broken (i = 3, 10, 17, 24): 26 x (2 calls + 1 rated signal), 26 ignored,
        # 4 quarantined
        assert (f.landed, f.ignored, f.quarantined) == (78, 26, 4)
        assert (ws.store.count("calls"), ws.store.count("signals")) == (52, 26)
        again = ws.ingest_paths([path])
        assert again.total("landed") == 0 and ws.store.count("quarantine") == 4
