"""``server.acknowledge: spool``: OTLP requests answered once durable in the spool, stored behind.

The server is real (uvicorn on loopback, or Starlette's test client for start and stop); the
writer is held back with a job of its own that waits on an event, so a request is answered
while its rows are provably not yet committed. Crashes are made by keeping the segments the
real spool wrote while nothing was committed, and starting a server on a store without them.
Costs use the receiver suite's prices: acme-chat at $2 input, $8 output per million tokens.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.loopback import serving
from tests.server_process import serve_process
from tests.test_ingest_otlp import protobuf, request, span
from tests.test_receiver import JS, PB, make_workspace, receiver_app, rows
from yieldmeter.ingest.base import ReadOptions
from yieldmeter.server.app import SPOOL_DIR
from yieldmeter.server.context import ServerSettings
from yieldmeter.server.decoding import decode_body
from yieldmeter.server.spool import (
    SpoolReplayError,
    batch_parts,
    encode_body,
    encode_record,
    read_segment,
    record_batch,
    segments,
)

SPOOL = ServerSettings(acknowledge="spool", decode_workers=0)


def acme(n: int, model: str = "acme-chat") -> dict[str, Any]:
    """A call of ``n`` x 1000 input and ``n`` x 100 output tokens: $0.0028 x n at the suite's prices."""
    return span(
        n,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "acme",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": n * 1000,
            "gen_ai.usage.output_tokens": n * 100,
        },
    )


def record(n: int) -> bytes:
    """A spool record of :func:`acme` ``(n)``'s request, as the server writes one."""
    batch = decode_body("protobuf", protobuf(acme(n)), ReadOptions(source="otlp"))
    meta, parts = batch_parts(batch, "otlp", "default", capture_content=False)
    return encode_record(meta, encode_body(parts))


def input_tokens(batch: Any) -> list[int]:
    return batch.tables["calls"].column("input_tokens").to_pylist()


def spool_dir(root: Path) -> Path:
    return root / SPOOL_DIR


def health(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/healthz", timeout=10).json()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextmanager
def held_writer(app: Any) -> Iterator[threading.Event]:
    """The app's writer busy with a job that waits until the event is set (or the block ends)."""
    gate = threading.Event()
    job = app.state.ctx.writer.submit(lambda ws: gate.wait(30))
    try:
        yield gate
    finally:
        gate.set()
        job.result(30)


def costs(root: Path) -> dict[int, float]:
    from yieldmeter.app.workspace import Workspace

    with Workspace.open(root) as ws:
        return {r["input_tokens"]: r["model_cost"] for r in ws.priced_calls().to_pyarrow().to_pylist()}


def test_requests_are_answered_from_the_spool_and_stored_behind(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=SPOOL)
    bodies = [(protobuf(acme(1)), PB), (protobuf(acme(2)), PB), (request(acme(3)), JS)]
    with serving(app) as url:
        with held_writer(app):
            for body, headers in bodies:  # answered while the writer cannot commit anything
                r = httpx.post(f"{url}/v1/traces", content=body, headers=headers, timeout=10)
                assert r.status_code == 200, r.text
            h = health(url)
            assert h["ingest"]["batches"] == 0  # nothing committed yet
            assert h["spool"]["acknowledged"] == 3
            assert h["spool"]["unsettled"] == 3
            assert h["spool"]["unapplied_bytes"] > 0  # the batches' size, counted against the limit
            [segment] = segments(spool_dir(root))
            read = read_segment(segment)
            assert read.damage == [] and read.torn_tail is None
            # each request's rows as decoded (protobuf or JSON alike)
            assert [input_tokens(record_batch(r)) for r in read.records] == [[1000], [2000], [3000]]
            meta = {"source": "otlp", "org": "default", "ignored": 0, "no_model": 0, "notes": []}
            assert read.records[0].meta == {**meta, "schema": 5, "capture_content": False}
        wait_for(lambda: health(url)["spool"]["unapplied_bytes"] == 0, "the writer to store the spool")
        assert health(url)["ingest"]["rows_landed"] >= 3
    # a clean stop deletes the segment: every record in it is in the store
    assert segments(spool_dir(root)) == []
    # (n x 1000 input x $2 + n x 100 output x $8) / 1M = $0.0028 x n
    assert costs(root) == pytest.approx({1000: 0.0028, 2000: 0.0056, 3000: 0.0084})


def test_a_crash_before_the_commits_is_replayed_at_the_next_start(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=SPOOL)
    crash = tmp_path / "crash"
    with serving(app) as url, held_writer(app):
        for n in (1, 2, 3):
            r = httpx.post(f"{url}/v1/traces", content=protobuf(acme(n)), headers=PB, timeout=10)
            assert r.status_code == 200
        # the spool as a crash now would leave it: acknowledged, nothing committed
        shutil.copytree(spool_dir(root), crash)
    # a record being written when the process died: never acknowledged, dropped
    [segment] = segments(crash)
    with segment.open("ab") as fh:
        fh.write(record(4)[:-9])

    # the crashed server's store held none of it: a new workspace with the crash's spool, started
    # acknowledging on commit (a spool left behind is replayed whatever the setting)
    other = make_workspace(tmp_path / "other")
    shutil.copytree(crash, spool_dir(other))
    commit = ServerSettings(acknowledge="commit", decode_workers=0)
    with TestClient(receiver_app(other, settings=commit)) as client:
        assert segments(spool_dir(other)) == []  # replayed, then deleted, before serving
        assert client.get("/healthz").json()["spool"]["replayed"] == 3
    assert costs(other) == pytest.approx({1000: 0.0028, 2000: 0.0056, 3000: 0.0084})

    # replayed where the commits did happen: recognised duplicates, nothing twice
    shutil.copytree(crash, spool_dir(root), dirs_exist_ok=True)
    with TestClient(receiver_app(root, settings=SPOOL)) as client:
        assert client.get("/healthz").json()["spool"]["replayed"] == 3
    assert rows(root, "SELECT count(*) AS n FROM calls") == [{"n": 3}]


def test_damaged_and_unwritable_records_are_kept_with_their_reason(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    spool = spool_dir(root)
    spool.mkdir(parents=True)
    meta = {"source": "otlp", "org": "default"}
    # segment 1: a good record, one that is not a batch (its checksum is right), another good one
    junk = encode_record(meta, b"\x0a\xff\xff\xff\xff")
    first = record(1)
    (spool / "000000000001.spool").write_bytes(first + junk + record(2))
    # segment 2: a good record, then one whose body changed on disk (checksum), then a good one
    good = record(3)
    bad = bytearray(record(4))
    bad[-3] ^= 0xFF
    (spool / "000000000002.spool").write_bytes(good + bytes(bad) + record(5))
    # segment 3: a record whose body length changed on disk (its header's CRC), then a good one
    lengths = bytearray(record(7))
    lengths[8] ^= 0x01
    (spool / "000000000003.spool").write_bytes(bytes(lengths) + record(8))
    # segment 4: a good record, then zeros (room the file system gave a write that never came)
    (spool / "000000000004.spool").write_bytes(record(9) + b"\0" * 64)

    with TestClient(receiver_app(root, settings=SPOOL)) as client:
        h = client.get("/healthz").json()["spool"]
        assert (h["replayed"], h["replay_failed"]) == (6, 1)
        # what was replayed, and new requests, go to a new segment numbered after the old ones
        r = client.post("/v1/traces", content=protobuf(acme(6)), headers=PB)
        assert r.status_code == 200
        # (after those kept under failed/; segment 4 was replayed whole and is gone)
        assert [p.name for p in segments(spool)] == ["000000000004.spool"]
    # past each damage, reading went on at the next sound record
    assert sorted(costs(root)) == [1000, 2000, 3000, 5000, 6000, 8000, 9000]
    failed = spool / "failed"
    assert sorted(p.name for p in failed.iterdir()) == [
        f"000000000001-{len(first)}.reason.txt",
        f"000000000001-{len(first)}.spool",
        "000000000002.reason.txt",
        "000000000002.spool",
        "000000000003.reason.txt",
        "000000000003.spool",
    ]
    reason = (failed / f"000000000001-{len(first)}.reason.txt").read_text()
    assert reason.startswith(f"000000000001.spool byte {len(first)}: not read: ")
    [kept] = read_segment(failed / f"000000000001-{len(first)}.spool").records
    assert kept.body == b"\x0a\xff\xff\xff\xff" and kept.meta == meta
    assert (failed / "000000000002.reason.txt").read_text() == (
        f"the record at byte {len(good)} does not match its checksum (read again from byte "
        f"{len(good) + len(bad)}); the 2 sound record(s) in it were replayed\n"
    )
    assert (failed / "000000000003.reason.txt").read_text() == (
        f"no sound record header at byte 0 (read again from byte {len(lengths)}); "
        "the 1 sound record(s) in it were replayed\n"
    )
    assert (failed / "000000000002.spool").read_bytes() == good + bytes(bad) + record(5)


def test_a_write_that_fails_after_the_answer_is_tried_again(tmp_path: Path) -> None:
    """The store refuses two writes (a full disk, injected), then takes them: the acknowledged
    request lands in the same run, tried again after 0.05 s, then 0.1 s."""
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=SPOOL)
    ws, writer = app.state.ctx.workspace, app.state.ctx.writer
    writer.retry_s = 0.05
    real, refusals = ws.ingest_batches, [0]

    def full_twice(*args: Any, **kw: Any) -> Any:
        if refusals[0] < 2:
            refusals[0] += 1
            raise OSError(28, "No space left on device (injected)")
        return real(*args, **kw)

    ws.ingest_batches = full_twice
    with serving(app) as url:
        r = httpx.post(f"{url}/v1/traces", content=protobuf(acme(1)), headers=PB, timeout=10)
        assert r.status_code == 200  # durable in the spool
        wait_for(lambda: health(url)["spool"]["unapplied_bytes"] == 0, "the write tried again")
        h = health(url)
        assert (h["writes_retrying"], h["spool"]["given_up"], refusals[0]) == (0, 0, 2)
    assert costs(root) == pytest.approx({1000: 0.0028})
    assert segments(spool_dir(root)) == []


def test_a_write_that_keeps_failing_is_kept_for_the_next_start(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=SPOOL)
    ws = app.state.ctx.workspace

    def disk_full(*args: Any, **kw: Any) -> Any:
        raise OSError(28, "No space left on device (injected)")

    ws.ingest_batches = disk_full
    with serving(app) as url:
        r = httpx.post(f"{url}/v1/traces", content=protobuf(acme(1)), headers=PB, timeout=10)
        assert r.status_code == 200  # durable in the spool
        wait_for(lambda: health(url)["writes_retrying"] == 1, "the failed write to wait its turn")
        spool = app.state.ctx.spool
    assert spool.given_up == 1  # the writer stopped while it kept failing
    assert len(segments(spool_dir(root))) == 1  # the stop keeps the segment
    with TestClient(receiver_app(root, settings=SPOOL)) as client:
        assert client.get("/healthz").json()["spool"]["replayed"] == 1
    assert costs(root) == pytest.approx({1000: 0.0028})
    assert segments(spool_dir(root)) == []


def test_a_full_spool_answers_503(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    body = protobuf(acme(1))
    # one record's worth: the first request is taken whatever its size, the second is refused
    settings = ServerSettings(acknowledge="spool", decode_workers=0, spool_limit=1)
    app = receiver_app(root, settings=settings)
    with serving(app) as url:
        with held_writer(app):
            assert httpx.post(f"{url}/v1/traces", content=body, headers=PB, timeout=10).status_code == 200
            r = httpx.post(f"{url}/v1/traces", content=protobuf(acme(2)), headers=PB, timeout=10)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "spool is full" in r.content.decode()
        wait_for(lambda: health(url)["spool"]["unapplied_bytes"] == 0, "the writer")
        r = httpx.post(f"{url}/v1/traces", content=protobuf(acme(2)), headers=PB, timeout=10)
        assert r.status_code == 200
    assert sorted(costs(root)) == [1000, 2000]


def test_acknowledge_is_spool_or_commit() -> None:
    assert ServerSettings.from_config({}).acknowledge == "spool"
    assert ServerSettings.from_config({"acknowledge": "commit"}).acknowledge == "commit"
    assert ServerSettings.from_config({"acknowledge": "spool", "spool_limit_mb": 1}).spool_limit == 1 << 20
    with pytest.raises(ValueError, match=r"server\.acknowledge: 'later' is not one of 'commit', 'spool'"):
        ServerSettings.from_config({"acknowledge": "later"})


def test_one_request_that_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    """Requests queued together share a transaction; when it fails, each is written on its own,
    so only the one that cannot be written is answered 503 (acknowledging on commit)."""
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=ServerSettings(acknowledge="commit", decode_workers=0))
    ws = app.state.ctx.workspace
    real = ws.ingest_batches

    def refuses_poison(batches: Any, **kw: Any) -> Any:
        batches = list(batches)
        if any("poison" in b.tables["calls"].column("model").to_pylist() for b in batches):
            raise RuntimeError("this batch cannot be written (injected)")
        return real(batches, **kw)

    ws.ingest_batches = refuses_poison
    statuses: dict[int, int] = {}
    with serving(app) as url:

        def send(n: int, model: str) -> None:
            r = httpx.post(f"{url}/v1/traces", content=protobuf(acme(n, model)), headers=PB, timeout=30)
            statuses[n] = r.status_code

        with held_writer(app):
            senders = [
                threading.Thread(target=send, args=(n, m))
                for n, m in ((1, "acme-chat"), (2, "poison"), (3, "acme-chat"))
            ]
            for t in senders:
                t.start()
            wait_for(lambda: app.state.ctx.writer.depth == 3, "three queued requests")
        for t in senders:
            t.join(30)
    assert statuses == {1: 200, 2: 503, 3: 200}
    assert sorted(costs(root)) == [1000, 3000]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kills the server with SIGKILL")
def test_every_acknowledged_span_survives_a_kill(tmp_path: Path) -> None:
    """``yieldmeter serve`` killed (SIGKILL) as soon as 30 concurrent requests were answered: the
    next start replays the spool, and every acknowledged span is in the store once."""
    root = make_workspace(tmp_path / "ws")
    with (root / "yieldmeter.yaml").open("a") as fh:
        fh.write("server:\n  acknowledge: spool\n  decode_workers: 0\n")
    bodies = [protobuf(*(acme(i * 20 + k) for k in range(1, 21))) for i in range(30)]
    with serve_process(root) as (base, proc):
        with httpx.Client(timeout=30) as client:

            def send(body: bytes) -> int:
                return client.post(f"{base}/v1/traces", content=body, headers=PB).status_code

            with ThreadPoolExecutor(6) as pool:
                statuses = list(pool.map(send, bodies))
        os.kill(proc.pid, signal.SIGKILL)  # no drain, no clean stop of the spool
        proc.wait(20)
    assert statuses == [200] * 30
    assert len(segments(spool_dir(root))) == 1  # left by the kill
    with serve_process(root) as (base, _):
        spool = httpx.get(f"{base}/healthz", timeout=10).json()["spool"]
        # the open segment held all 30 records: replayed, the committed ones as duplicates
        assert (spool["replayed"], spool["replay_failed"]) == (30, 0)
    assert rows(root, "SELECT count(*) AS n, count(DISTINCT span_id) AS spans FROM calls") == [
        {"n": 600, "spans": 600}
    ]


def test_the_spool_holds_no_message_content(tmp_path: Path) -> None:
    """The spool keeps the rows as mapped, not the request's body: a prompt in the request is in
    neither the spool nor the store, unless privacy.capture_content is on."""
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=SPOOL)
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "acme",
        "gen_ai.request.model": "acme-chat",
        "gen_ai.input.messages": '[{"role":"user","content":"my card number 4111"}]',
        "gen_ai.prompt.0.content": "legacy prompt 4111",
    }
    body = protobuf(span(1, attrs))
    assert b"my card number" in body and b"legacy prompt" in body
    with serving(app) as url, held_writer(app):
        assert httpx.post(f"{url}/v1/traces", content=body, headers=PB, timeout=10).status_code == 200
        [segment] = segments(spool_dir(root))
        data = segment.read_bytes()
        assert b"4111" not in data and b"acme-chat" in data
    # nor in the store, once committed
    attributes = rows(root, "SELECT attributes FROM calls")[0]["attributes"] or ""
    assert "4111" not in attributes


def test_segments_are_deleted_only_once_every_record_in_them_is_committed(tmp_path: Path) -> None:
    """Segments of one record each (closed as soon as written) stay while the writer is held, and
    go once it committed them; an idle segment is closed and goes too."""
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=SPOOL)
    spool = app.state.ctx.spool
    spool.segment_bytes = 1  # every append closes its segment
    with serving(app) as url:
        with held_writer(app):
            for n in (1, 2, 3):
                r = httpx.post(f"{url}/v1/traces", content=protobuf(acme(n)), headers=PB, timeout=10)
                assert r.status_code == 200
            assert len(segments(spool_dir(root))) == 3  # closed, not yet committed: kept
        wait_for(lambda: segments(spool_dir(root)) == [], "the committed segments to go")
        spool.segment_bytes, spool.idle_close_s = 1 << 30, 2.0
        r = httpx.post(f"{url}/v1/traces", content=protobuf(acme(4)), headers=PB, timeout=10)
        assert r.status_code == 200
        assert len(segments(spool_dir(root))) == 1  # open: more may come
        wait_for(lambda: segments(spool_dir(root)) == [], "the idle segment to be closed and go")
    assert sorted(costs(root)) == [1000, 2000, 3000, 4000]


def test_a_record_captured_with_content_waits_for_capture_to_be_on(tmp_path: Path) -> None:
    """A crash, then privacy.capture_content turned off: the records captured with content are not
    stored but kept apart; turned on again, moved back into the spool, they are replayed."""
    root = make_workspace(tmp_path / "ws")
    spool = spool_dir(root)
    spool.mkdir(parents=True)
    batch = decode_body("protobuf", protobuf(acme(1)), ReadOptions(source="otlp", capture_content=True))
    meta, parts = batch_parts(batch, "otlp", "default", capture_content=True)
    captured = encode_record(meta, encode_body(parts))
    (spool / "000000000001.spool").write_bytes(captured + record(2))
    with TestClient(receiver_app(root, settings=SPOOL)) as client:
        h = client.get("/healthz").json()["spool"]
        assert (h["replayed"], h["replay_failed"]) == (1, 1)
    assert sorted(costs(root)) == [2000]
    kept = spool / "failed" / "000000000001-0.spool"
    assert "capture_content on, which is off now" in kept.with_suffix(".reason.txt").read_text()
    with (root / "yieldmeter.yaml").open("a") as fh:
        fh.write("privacy:\n  capture_content: true\n")
    kept.rename(spool / kept.name)  # a record kept apart is a segment of its own: moved back, replayed
    with TestClient(receiver_app(root, settings=SPOOL)) as client:
        assert client.get("/healthz").json()["spool"]["replayed"] == 1
    assert sorted(costs(root)) == [1000, 2000]


def test_a_store_that_cannot_take_the_replay_stops_the_start(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    spool = spool_dir(root)
    spool.mkdir(parents=True)
    (spool / "000000000001.spool").write_bytes(record(1))
    app = receiver_app(root, settings=SPOOL)

    def disk_full(*args: Any, **kw: Any) -> Any:
        raise OSError(28, "No space left on device (injected)")

    app.state.ctx.workspace.ingest_batches = disk_full
    with pytest.raises(SpoolReplayError, match="No space left on device"), TestClient(app):
        pass
    assert [p.name for p in segments(spool)] == ["000000000001.spool"]  # left for the next start
    assert not (spool / "failed").exists()
    with TestClient(receiver_app(root, settings=SPOOL)):
        pass
    assert sorted(costs(root)) == [1000]


def test_an_error_of_the_batch_is_not_tried_again(tmp_path: Path) -> None:
    """A ValueError would come back at every try: the writer gives the record up at once, and the
    spool keeps it for the next start's replay."""
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=SPOOL)

    def refused(*args: Any, **kw: Any) -> Any:
        raise ValueError("this batch is refused (injected)")

    app.state.ctx.workspace.ingest_batches = refused
    with serving(app) as url:
        r = httpx.post(f"{url}/v1/traces", content=protobuf(acme(1)), headers=PB, timeout=10)
        assert r.status_code == 200
        wait_for(lambda: health(url)["spool"]["given_up"] == 1, "the record to be given up")
        assert health(url)["writes_retrying"] == 0
    assert len(segments(spool_dir(root))) == 1


def test_segments_are_read_in_the_order_of_their_numbers(tmp_path: Path) -> None:
    """Records kept apart are named after their segment and offset (kept apart again, after those
    too): moved back, each is a segment, read after the one it came from."""
    names = [
        "000000000010.spool",
        "000000000002-4096-0.spool",
        "000000000002-4096.spool",
        "000000000002.spool",
        "notes.spool",
        "x-1.spool",
    ]
    for name in names:
        (tmp_path / name).touch()
    assert [p.name for p in segments(tmp_path)] == [
        "000000000002.spool",
        "000000000002-4096.spool",
        "000000000002-4096-0.spool",
        "000000000010.spool",
    ]
