"""OTLP JSON lines decoded in worker processes: the same batches, in file order, as in one process.

``CHUNK_BYTES`` is lowered so a small file spans many chunks; the chunking happens in the
importing process, so the worker processes (real, spawned) need no patch.
"""

from __future__ import annotations

import io
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from tests.test_ingest_otlp import CHAT, request, span
from yieldmeter.app.workspace import Workspace
from yieldmeter.config import ConfigError, load_config
from yieldmeter.ingest import otlp_json
from yieldmeter.ingest.base import Batch, ReadOptions


def _lines(n: int) -> bytes:
    """``n`` request lines of 3 spans (2 GenAI, 1 HTTP), with a broken line every 7th."""
    out = []
    for i in range(n):
        if i % 7 == 3:
            out.append(b'{"resourceSpans": [truncated')
            continue
        tokens = {"gen_ai.usage.input_tokens": 100 + i, "gen_ai.usage.output_tokens": i}
        out.append(
            request(
                span(3 * i + 1, {**CHAT, **tokens}, trace=f"{i + 1:032x}"),
                span(3 * i + 2, {**CHAT, **tokens, "gen_ai.conversation.id": f"c{i}"}, trace=f"{i + 1:032x}"),
                span(3 * i + 3, {"http.route": "/healthz"}, trace=f"{i + 1:032x}"),
            )
        )
    return b"\n".join(out) + b"\n"


def _read(data: bytes, workers: int) -> list[Batch]:
    return list(otlp_json.read(io.BytesIO(data), ReadOptions(source="t.jsonl", decode_workers=workers)))


def _combined(batches: list[Batch]) -> tuple[pa.Table, pa.Table, int]:
    calls = pa.concat_tables([b.tables["calls"] for b in batches if "calls" in b.tables])
    rejects = pa.concat_tables([b.rejects for b in batches])
    return calls, rejects, sum(b.ignored for b in batches)


def test_workers_give_the_batches_of_one_process_in_file_order(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _lines(60)  # 60 lines of about 2.5 KB: with 8 KB chunks, about 20 chunks
    monkeypatch.setattr(otlp_json, "CHUNK_BYTES", 8 * 1024)
    serial = _read(data, 0)
    parallel = _read(data, 2)
    assert len(parallel) > 10  # one batch per chunk: the work was spread
    s_calls, s_rejects, s_ignored = _combined(serial)
    p_calls, p_rejects, p_ignored = _combined(parallel)
    assert p_calls.equals(s_calls)  # same rows in the same order
    # 60 lines, 9 of them broken (i % 7 == 3): 51 x 2 calls, 51 HTTP spans ignored
    assert (p_calls.num_rows, p_ignored) == (102, 51) == (s_calls.num_rows, s_ignored)
    assert p_rejects.column("position").to_pylist() == [4, 11, 18, 25, 32, 39, 46, 53, 60]
    assert p_rejects.select(["position", "reason"]).equals(s_rejects.select(["position", "reason"]))
    # the line number of every call is its own line's, not its chunk's
    first_tokens = p_calls.column("input_tokens").to_pylist()[::2]
    assert first_tokens == [100 + i for i in range(60) if i % 7 != 3]


def test_a_file_of_one_chunk_starts_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("a process pool was started for a file of one chunk")

    monkeypatch.setattr(otlp_json, "ProcessPoolExecutor", refuse)
    [batch] = _read(_lines(4), 2)  # about 10 KB, under the 16 MB chunk
    assert batch.tables["calls"].num_rows == 6 and batch.rejects.num_rows == 1


def _die() -> None:
    os._exit(3)


def test_a_dead_process_leaves_its_chunk_to_this_one() -> None:
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    future = pool.submit(_die)  # a worker that dies for real: the pool breaks
    chunk = (_lines(2), 40)
    batches, left = otlp_json._result(future, chunk, pool, ReadOptions(source="t"))
    assert left is None  # no pool to go on with: later chunks are decoded here
    [batch] = batches
    assert batch.tables["calls"].num_rows == 4
    assert batch.tables["calls"].column("input_tokens").to_pylist() == [100, 100, 101, 101]


def test_decode_workers_in_the_configuration(tmp_path: Path) -> None:
    (tmp_path / "yieldmeter.yaml").write_text("ingest:\n  decode_workers: 3\n")
    ws = Workspace.init(tmp_path)
    try:
        assert ws.read_options("x").decode_workers == 3
    finally:
        ws.close()
    (tmp_path / "yieldmeter.yaml").write_text("ingest:\n  decode_workers: -1\n")
    with pytest.raises(ConfigError, match="decode_workers"):
        load_config(tmp_path / "yieldmeter.yaml")


def test_an_import_with_workers_lands_every_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_json, "CHUNK_BYTES", 16 * 1024)
    path = tmp_path / "traces.jsonl"
    path.write_bytes(_lines(30))
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "yieldmeter.yaml").write_text("ingest:\n  decode_workers: 2\n")
    ws = Workspace.init(tmp_path / "ws")
    try:
        [f] = ws.ingest_paths([path]).files
        # 30 lines, 4 broken (i = 3, 10, 17, 24): 26 x 2 calls, 26 ignored, 4 quarantined
        assert (f.landed, f.ignored, f.quarantined) == (52, 26, 4)
        assert ws.store.count("calls") == 52
        again = ws.ingest_paths([path])
        assert again.total("landed") == 0 and ws.store.count("quarantine") == 4
    finally:
        ws.close()
