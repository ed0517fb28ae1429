"""The import reads the next batch while the last one is written (``ReadAhead``): the batches in
the reader's order, the reader's error after the batches before it, and a writer's failure
stops the reader (its generator closed on its own thread) before the file closes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from yieldmeter.app.workspace import Workspace
from yieldmeter.ingest.base import ReadAhead


def test_batches_in_order_and_the_reader_runs_ahead_on_its_own_thread() -> None:
    threads: set[str] = set()
    read: list[int] = []

    def reader() -> Iterator[int]:
        for i in range(50):
            threads.add(threading.current_thread().name)
            read.append(i)
            yield i

    with ReadAhead(reader(), depth=2) as ahead:  # type: ignore[arg-type]
        it = iter(ahead)
        first = next(it)
        # the reader does not wait for the writer, up to what the queue holds: 1 and 2 wait
        # in the queue, 3 in the reader's hand, and no further
        for _ in range(500):
            if len(read) >= 4:
                break
            time.sleep(0.01)
        time.sleep(0.2)  # room to read a fifth, had the bound been wrong
        assert len(read) == 4
        got = [first, *it]
    assert got == list(range(50))
    assert threads == {"yieldmeter-read-ahead"}


def test_the_reader_error_comes_after_the_batches_before_it() -> None:
    def reader() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("cannot read the file: cut short")

    got: list[int] = []
    with ReadAhead(reader()) as ahead, pytest.raises(OSError, match="cut short"):  # type: ignore[arg-type]
        for b in ahead:
            got.append(b)
    assert got == [1, 2]
    # an error before the first batch (here: nothing to iterate) reaches the writer too
    with ReadAhead(42) as ahead, pytest.raises(TypeError):  # type: ignore[arg-type]
        list(ahead)


def test_a_writer_failure_stops_the_reader_and_closes_it_on_its_thread() -> None:
    closed_on: list[str] = []
    read: list[int] = []

    def reader() -> Iterator[int]:
        try:
            for i in range(10_000):
                read.append(i)
                yield i
        finally:
            closed_on.append(threading.current_thread().name)

    ahead = ReadAhead(reader())  # type: ignore[arg-type]
    failed: list[BaseException] = []

    def write() -> None:
        try:
            with ahead:
                for b in ahead:
                    if b == 3:
                        raise RuntimeError("the store failed")
        except RuntimeError as exc:
            failed.append(exc)

    writer = threading.Thread(target=write)  # bounded: a reader that never stopped fails, not hangs
    writer.start()
    writer.join(30)
    assert not writer.is_alive() and [str(e) for e in failed] == ["the store failed"]
    assert not ahead._thread.is_alive()  # joined when the block ended
    assert closed_on == ["yieldmeter-read-ahead"]
    # at most 0-3 taken by the writer (it failed on 3), 4 in the queue (depth 1), 5 in the
    # reader's hand: 6
    assert len(read) <= 6


@pytest.mark.parametrize("cores", [2, 1])
def test_an_import_of_many_batches_lands_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cores: int
) -> None:
    """End to end through the importer: ten batches of 4 spans, all landed once; read ahead on
    two cores, not on one (where reader and writer would only take turns)."""
    monkeypatch.setattr(ReadAhead, "pays", staticmethod(lambda: cores > 1))
    from tests.test_ingest_otlp import CHAT, request, span
    from yieldmeter.ingest import otlp_json
    from yieldmeter.store.duckdb_store import Store

    monkeypatch.setattr(otlp_json, "_SPANS_PER_BATCH", 4)
    mapped_on: set[str] = set()
    decode = otlp_json._decode  # every chunk of lines, as columns or span by span

    def decoded(*a, **k):  # type: ignore[no-untyped-def]
        mapped_on.add(threading.current_thread().name)
        return decode(*a, **k)

    monkeypatch.setattr(otlp_json, "_decode", decoded)
    writes: list[int] = []
    write_batch = Store.write_batch

    def counted(self: Store, tables, *a, **k):  # type: ignore[no-untyped-def]
        writes.append(tables["calls"].num_rows if "calls" in tables else 0)
        return write_batch(self, tables, *a, **k)

    monkeypatch.setattr(Store, "write_batch", counted)

    lines = [
        request(span(2 * i + 1, {**CHAT, "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": i}))
        for i in range(40)
    ]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with Workspace.init(tmp_path / "ws") as ws:
        [f] = ws.ingest_paths([path]).files
        assert f.landed == 40 and f.error is None
        assert writes == [4] * 10
        # read ahead: the lines were mapped on the reader's thread (where two cores are to share)
        assert mapped_on == ({"yieldmeter-read-ahead"} if cores > 1 else {"MainThread"})
        # output tokens 0..39, one call each: 780 in all
        assert ws.store.con.execute("SELECT count(*), sum(output_tokens) FROM calls").fetchone() == (40, 780)
