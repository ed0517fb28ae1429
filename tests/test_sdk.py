"""The Python SDK: work-unit linkage on real OpenTelemetry spans, and records sent to a real server.

The recorder's promise is that recording never blocks or breaks the application: the tests
below run it against a real server on loopback that is up, busy (503 with ``Retry-After``),
down, or refusing, and time ``record()`` while a delivery is in flight.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.loopback import free_port, serving
from tests.test_receiver import make_workspace, receiver_app, rows
from yieldmeter.sdk import Recorder, instrument, work_unit
from yieldmeter.server.context import ServerSettings

CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "acme",
    "gen_ai.request.model": "acme-chat",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.output_tokens": 10,
}


def run_python(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a Python process of its own (what happens at exit, in signal handlers),
    with this yieldmeter importable; ``timeout`` is a hang detector."""
    import yieldmeter

    path = os.pathsep.join([str(Path(yieldmeter.__file__).parents[1]), *sys.path])
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=dict(os.environ, PYTHONPATH=path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_work_unit_linkage_reaches_the_store(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    with serving(receiver_app(root)) as url:
        provider = TracerProvider()
        instrument(provider)  # before the exporter: attributes are set when a span starts
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
        tracer = provider.get_tracer("app")
        with work_unit("claims-triage", id="claim-7", task_type="classify", team="claims-ops") as wu:
            with tracer.start_as_current_span("chat 1", attributes=CHAT):
                pass
            with (
                work_unit(id="claim-7-review", task_type="review"),
                tracer.start_as_current_span("chat 2", attributes=CHAT),
            ):
                pass
        with tracer.start_as_current_span("chat outside", attributes=CHAT):
            pass
        provider.shutdown()
    assert wu.id == "claim-7"
    got = {r["work_unit_id"]: r for r in rows(root, "SELECT * FROM calls")}
    assert set(got) - {"claim-7", "claim-7-review"} == {
        next(r["trace_id"] for r in got.values() if r["work_unit_id"] not in ("claim-7", "claim-7-review"))
    }
    first, nested = got["claim-7"], got["claim-7-review"]
    assert (first["workflow"], first["task_type"], first["team"]) == (
        "claims-triage",
        "classify",
        "claims-ops",
    )
    # the nested unit inherits workflow and team, and overrides the task type
    assert (nested["workflow"], nested["task_type"], nested["team"]) == (
        "claims-triage",
        "review",
        "claims-ops",
    )
    units = {r["work_unit_id"]: r for r in rows(root, "SELECT * FROM work_units")}
    assert units["claim-7"]["workflow"] == "claims-triage" and units["claim-7"]["derived"]


def test_records_to_the_rest_api_without_duplicates(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    with serving(receiver_app(root)) as url:
        rec = Recorder(url, batch_size=100, flush_interval_s=0, path=tmp_path / "spill")
        sid = "sig-1"
        rec.record(
            "signals",
            {"signal_id": sid, "work_unit_id": "claim-7", "ts": "2025-03-01T10:00:00Z", "kind": "accepted"},
        )
        rec.record(
            "effort",
            {
                "effort_id": "eff-1",
                "work_unit_id": "claim-7",
                "ts": "2025-03-01T10:05:00Z",
                "minutes": 4.5,
                "person": "ana",
            },
        )
        rec.record(
            "outcomes",
            {
                "outcome_id": "out-1",
                "workflow": "claims-triage",
                "period_start": "2025-03-01",
                "metric": "handling_minutes",
                "baseline_value": 9,
                "observed_value": 6,
                "value_dimension": "cycle_time",
                "evidence_level": "baseline_comparison",
            },
        )
        rec.flush()
        # the same rows again (a retry after a lost answer): nothing new lands
        rec.record(
            "signals",
            {"signal_id": sid, "work_unit_id": "claim-7", "ts": "2025-03-01T10:00:00Z", "kind": "accepted"},
        )
        rec.close()
        # rows with problems: the good one lands, the bad ones come back with position and reason
        r = httpx.post(
            f"{url}/api/v1/effort",
            json=[
                {"work_unit_id": "claim-8", "ts": "2025-03-02T09:00:00Z", "minutes": 3},
                {
                    "effort_id": "e-bad",
                    "work_unit_id": "claim-8",
                    "ts": "2025-03-02T09:00:00Z",
                    "minutes": -2,
                },
                {"effort_id": "e-bad2", "work_unit_id": "claim-8", "ts": "yesterday-ish", "minutes": 1},
            ],
        )
        assert r.status_code == 200
        body = r.json()
        assert body["landed"] == 1
        assert [(x["position"], x["reason"]) for x in body["rejected"]] == [
            (2, "minutes: negative"),
            (3, "ts: cannot read as a timestamp"),
        ]
        assert httpx.post(f"{url}/api/v1/signals", content=b"{oops").status_code == 400
        # row by row, also where a row cannot be held at all: an epoch of 10^19 (a JSON integer
        # beyond int64; it was a 400 for the whole body) and elements that are not objects are
        # each their own reject, and the row between them lands
        big = {"signal_id": "s-big", "work_unit_id": "claim-8", "ts": 10**19, "kind": "rated"}
        fine = dict(big, signal_id="s-fine", ts="2025-03-02T09:00:00Z")
        r = httpx.post(f"{url}/api/v1/signals", json=[big, 7, fine, None])
        assert r.status_code == 200, r.text
        assert r.json()["landed"] == 1
        assert [(x["position"], x["reason"]) for x in r.json()["rejected"]] == [
            (1, "ts: cannot read as a timestamp"),
            (2, "expected an object (a signals row), not a number"),
            (4, "expected an object (a signals row), not null"),
        ]
        assert httpx.post(f"{url}/api/v1/signals", json="a string").status_code == 400
    assert rows(root, "SELECT signal_id, kind FROM signals ORDER BY signal_id") == [
        {"signal_id": "s-fine", "kind": "rated"},
        {"signal_id": "sig-1", "kind": "accepted"},
    ]
    # nothing lost: each reject is in the quarantine as it was posted
    quarantined = rows(
        root, "SELECT position, raw FROM quarantine WHERE table_name = 'signals' ORDER BY position"
    )
    assert quarantined[1:] == [{"position": 2, "raw": "7"}, {"position": 4, "raw": "null"}], quarantined
    effort = rows(root, "SELECT effort_id, minutes, person FROM effort ORDER BY minutes DESC")
    assert effort[0] == {"effort_id": "eff-1", "minutes": 4.5, "person": "ana"} and len(effort) == 2
    [outcome] = rows(root, "SELECT * FROM outcomes")
    assert (outcome["baseline_value"], outcome["observed_value"], outcome["evidence_level"]) == (
        9.0,
        6.0,
        "baseline_comparison",
    )


def signal(n: int, **kw: object) -> dict[str, object]:
    return {"signal_id": f"s-{n}", "work_unit_id": "u-1", "ts": "2025-03-01T10:00:00Z", "kind": "rated", **kw}


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def timed_record(rec: Recorder, row: dict[str, object]) -> float:
    t0 = time.perf_counter()
    rec.record("signals", row)
    return time.perf_counter() - t0


def test_503_with_retry_after_is_waited_out_in_the_background(tmp_path: Path) -> None:
    """A busy server answers 503 + Retry-After: 1. The recorder waits that second (its own backoff
    is 10 ms) on its thread, then delivers; record() meanwhile returns at once."""
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=ServerSettings(max_queue=1))
    release = threading.Event()
    with serving(app) as url:
        writer = app.state.ctx.writer
        writer.submit(lambda ws: release.wait(20))  # holds the writer thread
        time.sleep(0.1)
        writer.submit(lambda ws: None)  # fills the one queue slot: the next write is a 503
        rec = Recorder(
            url, batch_size=1, flush_interval_s=0, backoff_s=0.01, max_retries=3, path=tmp_path / "sp"
        )
        t0 = time.monotonic()
        assert timed_record(rec, signal(1)) < 0.25  # batch_size 1: the thread sends at once
        assert wait_for(lambda: rec.stats()["failed_attempts"] == 1)  # the 503
        # while the thread waits out Retry-After, recording is not held up by it
        assert timed_record(rec, signal(2, value=0.5)) < 0.25
        threading.Timer(0.3, release.set).start()
        assert wait_for(lambda: rec.stats()["sent"] == 2)
        elapsed = time.monotonic() - t0
        stats = rec.stats()
        rec.close()
    # three retries 10-40 ms apart would all have met the busy server; Retry-After made it wait 1 s
    assert elapsed >= 1.0, elapsed
    assert (stats["failed_attempts"], stats["spilled"], stats["dropped"]) == (1, 0, 0)
    assert rows(root, "SELECT signal_id FROM signals ORDER BY 1") == [
        {"signal_id": "s-1"},
        {"signal_id": "s-2"},
    ]


def test_a_full_batch_is_sent_without_waiting_for_the_timer(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    with serving(receiver_app(root)) as url:
        rec = Recorder(url, batch_size=3, flush_interval_s=0, path=tmp_path / "sp")  # no timed flush
        rec.record("signals", signal(1))
        rec.record("signals", signal(2))
        time.sleep(0.5)
        assert rec.stats()["sent"] == 0 and rec.stats()["buffered"] == 2  # below batch_size: waits
        rec.record("signals", signal(3))
        assert wait_for(lambda: rec.stats()["sent"] == 3)
        assert rows(root, "SELECT count(*) AS n FROM signals") == [{"n": 3}]
        rec.close()


def test_the_background_thread_flushes_on_its_timer(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    with serving(receiver_app(root)) as url:
        rec = Recorder(url, batch_size=100, flush_interval_s=0.2, path=tmp_path / "sp")
        rec.record("signals", signal(1, value=0.9))
        # no flush() call: the timer sends it (sent counts once the server acknowledged it)
        assert wait_for(lambda: rec.stats()["sent"] == 1)
        rec.close()
    assert rows(root, "SELECT signal_id, value FROM signals") == [{"signal_id": "s-1", "value": 0.9}]


def test_a_short_outage_keeps_the_rows_until_the_server_is_up(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    port = free_port()
    rec = Recorder(
        f"http://127.0.0.1:{port}", flush_interval_s=0.1, max_retries=1, backoff_s=0.01, path=tmp_path / "sp"
    )
    rec.record("signals", signal(1, value=0.9))
    assert wait_for(lambda: rec.stats()["failed_attempts"] >= 2)  # tried, failed, kept
    assert rec.stats()["buffered"] == 1 and rec.stats()["spilled"] == 0
    with serving(receiver_app(root), port=port):
        assert wait_for(lambda: rec.stats()["sent"] == 1)
    rec.close()
    assert rows(root, "SELECT signal_id, value FROM signals") == [{"signal_id": "s-1", "value": 0.9}]
    assert not (tmp_path / "sp").exists()


def test_a_server_that_stays_down_gets_the_rows_spilled_to_the_local_file(tmp_path: Path) -> None:
    from yieldmeter.app.workspace import Workspace

    spill = tmp_path / "spill"
    rec = Recorder(
        f"http://127.0.0.1:{free_port()}",
        flush_interval_s=0.05,
        max_retries=1,
        backoff_s=0.01,
        spill_after_s=0.3,
        path=spill,
    )
    durations = [timed_record(rec, signal(n)) for n in range(1, 4)]
    assert max(durations) < 0.25  # the app never waits on the dead server
    assert wait_for(lambda: rec.stats()["spilled"] == 3)
    assert rec.stats()["buffered"] == 0
    rec.close()
    lines = (spill / "signals.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["signal_id"] for x in lines) == ["s-1", "s-2", "s-3"]
    ws = Workspace.init(tmp_path / "ws")  # what the docs say to do with the file
    try:
        ws.ingest_paths([spill / "signals.jsonl"], table="signals")
        assert ws.store.count("signals") == 3
    finally:
        ws.close()


def test_the_buffer_is_bounded_and_what_it_drops_is_counted(tmp_path: Path) -> None:
    rec = Recorder(
        f"http://127.0.0.1:{free_port()}",
        batch_size=1000,
        flush_interval_s=0,
        max_buffer=5,
        path=tmp_path / "sp",
    )
    for n in range(7):
        rec.record("signals", signal(n))  # never raises, never blocks
    assert (rec.stats()["buffered"], rec.stats()["dropped"]) == (5, 2)
    rec.close()  # at close the server is still down: one try, then the file
    assert rec.stats()["spilled"] == 5
    assert len((tmp_path / "sp" / "signals.jsonl").read_text().splitlines()) == 5


def test_rows_the_server_refuses_are_spilled_not_retried(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    # a body limit below one row's size: the server answers 413, a refusal a retry cannot mend
    with serving(receiver_app(root, settings=ServerSettings(body_limit=40))) as url:
        rec = Recorder(url, flush_interval_s=0, path=tmp_path / "sp")
        rec.record("signals", signal(1))
        stats = rec.flush()
        rec.close()
    assert (stats["refused"], stats["spilled"], stats["failed_attempts"]) == (1, 1, 0)
    assert json.loads((tmp_path / "sp" / "signals.jsonl").read_text())["signal_id"] == "s-1"


def test_a_number_json_cannot_carry_is_refused_alone(tmp_path: Path) -> None:
    """NaN would make the whole JSON body unreadable to the server (400 for every row sent with
    it): the one record is refused when it is made, logged and counted, and its batch lands."""
    from yieldmeter.sdk import configure, flush, record_effort, record_signal

    root = make_workspace(tmp_path / "ws")
    with serving(receiver_app(root)) as url:
        rec = configure(url, flush_interval_s=0, path=tmp_path / "sp")
        try:
            before = rec.stats()["unrecorded"]  # a count for the whole process
            record_signal("claim-1", "rated", float("nan"))
            record_effort("claim-1", float("inf"))
            record_signal("claim-1", "rated", 0.5, attributes={"raw_score": float("nan")})
            record_signal("claim-1", "rated", 0.8)
            stats = flush()
            assert (stats["sent"], stats["refused"], stats["unrecorded"] - before) == (1, 0, 3)
        finally:
            rec.close()
            configure(path=tmp_path / "unused", flush_interval_s=0)
    # the row names where it came from: the SDK's x-yieldmeter-source header
    assert rows(root, "SELECT kind, value, source FROM signals") == [
        {"kind": "rated", "value": 0.8, "source": "sdk"}
    ]
    assert not (tmp_path / "sp").exists()  # nothing spilled


def test_record_functions_never_raise_into_the_app(tmp_path: Path) -> None:
    from yieldmeter.sdk import configure, flush, record_effort, record_outcome, record_signal

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    rec = configure(path=blocked, flush_interval_s=0)  # the local file cannot be written
    try:
        record_signal("claim-1", "accepted", attributes={"obj": object()})  # not JSON: written as text
        record_effort("claim-1", 3, ts=12345)  # odd time: the server will judge it
        record_outcome("wf", "m", period_start=object())  # type: ignore[arg-type]
        stats = flush()  # the write fails: kept for later, nothing raised
        assert stats["buffered"] == 3 and stats["sent"] == 0
        rec.close()  # the disk still refuses: counted as dropped, logged, not raised
        assert rec.stats()["dropped"] == 3
    finally:
        configure(path=tmp_path / "unused", flush_interval_s=0)


def test_module_functions_write_local_files_without_a_server(tmp_path: Path) -> None:
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.sdk import configure, flush, record_effort, record_outcome, record_signal

    out = tmp_path / "records"
    configure(path=out, flush_interval_s=0)
    sid = record_signal("claim-9", "used_in_artifact", actor="ana", attributes={"doc": "memo-3"})
    record_effort("claim-9", 12, kind="correction")
    oid = record_outcome("claims-triage", "handling_minutes", period_start="2025-03-01", observed_value=6.0)
    again = record_outcome("claims-triage", "handling_minutes", period_start="2025-03-01", observed_value=5.5)
    assert oid == again  # the same month's outcome keeps its id: re-recording replaces it
    flush()
    [line] = (out / "signals.jsonl").read_text().splitlines()
    assert json.loads(line)["signal_id"] == sid and json.loads(json.loads(line)["attributes"]) == {
        "doc": "memo-3"
    }
    ws = Workspace.init(tmp_path / "ws")
    try:
        for table in ("signals", "effort", "outcomes"):
            ws.ingest_paths([out / f"{table}.jsonl"], table=table)
        assert ws.store.count("signals") == 1 and ws.store.count("effort") == 1
        [o] = ws.store.query_arrow("SELECT observed_value FROM outcomes").to_pylist()
        assert o["observed_value"] == 5.5
    finally:
        ws.close()
        configure(path=tmp_path / "unused", flush_interval_s=0)


class SilentServer:
    """Accepts connections and never answers: a request to it waits out the client's timeout."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.held: list[object] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)  # read nothing, answer nothing

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for c in self.held:
            c.close()  # type: ignore[attr-defined]
        self.sock.close()


def test_rows_in_flight_when_close_gives_up_are_spilled_not_lost(tmp_path: Path) -> None:
    """A server that accepts the connection and never answers: the background thread's request
    is still waiting (3 s timeout) when close() stops waiting for the thread (0.3 s). The rows
    it holds are spilled by close() itself, and once, not again when the request fails."""
    with SilentServer() as server:
        rec = Recorder(server.url, path=tmp_path / "spill", batch_size=3, timeout_s=3.0, max_retries=0)
        for i in range(3):
            rec.record("signals", {"signal_id": f"s{i}", "work_unit_id": "u", "kind": "accepted"})
        assert wait_for(lambda: rec.stats()["buffered"] == 0)  # the thread took them
        thread = rec._thread
        rec.close(timeout_s=0.3)
        assert rec.stats()["spilled"] == 3, rec.stats()
        assert thread is not None and wait_for(lambda: not thread.is_alive(), timeout=15.0)
        spilled = [json.loads(x) for x in (tmp_path / "spill" / "signals.jsonl").read_text().splitlines()]
        assert sorted(r["signal_id"] for r in spilled) == ["s0", "s1", "s2"]
        assert (rec.stats()["buffered"], rec.stats()["spilled"]) == (0, 3)


def _child_records_and_waits(tag: str) -> None:
    """In a forked child: record with the recorder made in the parent; its thread must send."""
    import sys

    from yieldmeter.sdk import record_signal
    from yieldmeter.sdk.recorder import _recorder

    for i in range(3):
        record_signal(f"{tag}-wu", "accepted", signal_id=f"{tag}-{i}")
    # the child's own background thread sends them on its timer, with no flush() call; the
    # parent's buffered row is not sent again from here
    wait_for(lambda: _recorder().stats()["sent"] >= 3, timeout=15.0)
    time.sleep(0.5)  # a few more timer rounds: nothing more is sent
    sys.exit(0 if _recorder().stats()["sent"] == 3 else 3)


def _child_records_and_returns(tag: str) -> None:
    from yieldmeter.sdk import record_signal

    record_signal(f"{tag}-wu", "accepted", signal_id=f"{tag}-0")  # and the child exits: os._exit


def test_forked_multiprocessing_children_send_their_own_records(tmp_path: Path) -> None:
    """The parent's recorder thread is running when it forks. Each child gets a recorder of its
    own (the copied thread is dead there): one sends on its own timer, one returns at once and
    its record is sent when the child exits (os._exit: no atexit), none resends the parent's."""
    import multiprocessing

    from yieldmeter.sdk import configure, record_signal

    root = make_workspace(tmp_path / "ws")
    fork = multiprocessing.get_context("fork")
    with serving(receiver_app(root)) as url:
        rec = configure(url, flush_interval_s=0.2, path=tmp_path / "sp")
        try:
            record_signal("parent-wu", "accepted", signal_id="p-0")
            assert wait_for(lambda: rec.stats()["sent"] == 1)  # the parent's thread is running
            assert rec._thread is not None and rec._thread.is_alive()
            record_signal("parent-wu", "accepted", signal_id="p-1")  # likely buffered at the fork
            waits = fork.Process(target=_child_records_and_waits, args=("a",))
            returns = fork.Process(target=_child_records_and_returns, args=("b",))
            for p in (waits, returns):
                p.start()
            for p in (waits, returns):
                p.join(30)
            assert (waits.exitcode, returns.exitcode) == (0, 0)
            stats = rec.flush()
            assert (stats["sent"], stats["buffered"]) == (2, 0)  # the parent's counts are its own
        finally:
            rec.close()
            configure(path=tmp_path / "unused", flush_interval_s=0)
    assert [r["signal_id"] for r in rows(root, "SELECT signal_id FROM signals ORDER BY 1")] == [
        "a-0",
        "a-1",
        "a-2",
        "b-0",
        "p-0",
        "p-1",
    ]
    assert not (tmp_path / "sp").exists()


def test_rows_in_flight_at_exit_are_spilled_when_the_server_does_not_answer(tmp_path: Path) -> None:
    """A process records and exits while its background thread waits for a server that never
    answers (10 s timeout). The exit hook waits 2 s for the thread, then the rows it holds are
    spilled to the local file before the interpreter exits (the daemon thread dies with them)."""

    script = (
        "import sys\n"
        "from yieldmeter.sdk import configure, record_signal\n"
        "configure(sys.argv[1], path=sys.argv[2], batch_size=3, max_retries=0)\n"
        "for i in range(3):\n"
        "    record_signal('u', 'accepted', signal_id=f's{i}')\n"
        "from yieldmeter.sdk.recorder import _recorder\n"
        "import time\n"
        "deadline = time.monotonic() + 10\n"
        "while _recorder().stats()['buffered'] and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"  # the thread has taken them all: they are in flight at exit
    )
    with SilentServer() as server:
        done = run_python(script, server.url, str(tmp_path / "spill"))
    assert done.returncode == 0, done.stderr
    spilled = [json.loads(x) for x in (tmp_path / "spill" / "signals.jsonl").read_text().splitlines()]
    assert sorted(r["signal_id"] for r in spilled) == ["s0", "s1", "s2"], done.stderr
    assert "still being sent when close() stopped waiting" in done.stderr


def test_flush_waits_for_the_rows_the_background_thread_is_sending(tmp_path: Path) -> None:
    """The timer's flush has taken the rows and waits for a server whose writer is busy. A
    flush() meanwhile has nothing buffered to send, but returns only once those rows are
    delivered: after flush() they are stored (what a Pool task relies on before it ends)."""
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root)
    release = threading.Event()
    with serving(app) as url:
        app.state.ctx.writer.submit(lambda ws: release.wait(30))  # holds the writer thread
        rec = Recorder(url, batch_size=3, flush_interval_s=0, path=tmp_path / "sp")
        for n in range(3):
            rec.record("signals", signal(n))
        assert wait_for(lambda: rec.stats()["buffered"] == 0)  # the thread took them
        result: list[dict[str, int]] = []
        flusher = threading.Thread(target=lambda: result.append(rec.flush()))
        flusher.start()
        flusher.join(0.5)
        assert flusher.is_alive() and not result  # waiting for the rows in flight, not returned
        assert rec.stats().get("in_flight") == 3  # the thread is sending them
        release.set()
        flusher.join(30)
        assert result and (result[0]["sent"], result[0]["in_flight"], result[0]["buffered"]) == (3, 0, 0)
        assert rows(root, "SELECT count(*) AS n FROM signals") == [{"n": 3}]
        rec.close()


def test_an_outcome_keeps_its_id_however_its_period_start_is_written(tmp_path: Path) -> None:
    """The same start date as a date string, a date, a datetime at midnight (in its own zone,
    whichever) and an ISO midnight text is one outcome: re-recording replaces it, and the import
    stores it once. The id is the one the date string always had; a start at another time keeps
    the id it always had (a datetime's ISO form, text as given), on the caller's wall clock."""
    from datetime import UTC, date, datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from yieldmeter.app.workspace import Workspace
    from yieldmeter.ingest.conform import stable_id
    from yieldmeter.sdk import configure, flush, record_outcome

    def key(start: str) -> str:
        return stable_id("outcome", "claims-triage", "handling_minutes", start, None)

    out = tmp_path / "records"
    configure(path=out, flush_interval_s=0)
    try:
        starts = (
            "2025-03-01",
            date(2025, 3, 1),
            datetime(2025, 3, 1),
            datetime(2025, 3, 1, tzinfo=UTC),
            datetime(2025, 3, 1, tzinfo=ZoneInfo("Europe/Berlin")),  # not 28 February, 23:00 UTC
            datetime(2025, 3, 1, tzinfo=ZoneInfo("America/New_York")),
            "2025-03-01T00:00:00Z",
            "2025-03-01T00:00:00+00:00",
            "2025-03-01T00:00:00+01:00",
            "2025-03-01 00:00",
        )
        ids = {
            record_outcome("claims-triage", "handling_minutes", period_start=p, observed_value=6.0)
            for p in starts
        }
        assert ids == {key("2025-03-01")}
        # another time than midnight, or text of another form: the id it always had
        kept = {
            datetime(2025, 3, 1, 12): "2025-03-01T12:00:00+00:00",
            "2025-03-01T12:00:00Z": "2025-03-01T12:00:00Z",
            "2025-03-01 12:00:00": "2025-03-01 12:00:00",
            datetime(2025, 3, 1, 1, tzinfo=timezone(timedelta(hours=1))): "2025-03-01T01:00:00+01:00",
            "20250301": "20250301",
            " 2025-03-01": " 2025-03-01",
        }
        for p, hashed in kept.items():
            assert record_outcome("claims-triage", "handling_minutes", period_start=p) == key(hashed), p
        flush()
    finally:
        configure(path=tmp_path / "unused", flush_interval_s=0)
    ws = Workspace.init(tmp_path / "ws")
    try:
        ws.ingest_paths([out / "outcomes.jsonl"], table="outcomes")
        assert ws.store.count("outcomes") == 1 + len(kept)  # each kept id is an outcome of its own
    finally:
        ws.close()


def test_linkage_a_span_is_created_with_wins_over_the_baggage() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    instrument(provider)
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("app")
    own = {"yieldmeter.workflow": "explicit-wf", "yieldmeter.work_unit.id": "explicit-id"}
    with work_unit("outer-wf", id="wu-1", team="ops"):
        with tracer.start_as_current_span("explicit", attributes=own):
            pass
        with tracer.start_as_current_span("plain"):
            pass
    provider.shutdown()
    got = {s.name: dict(s.attributes or {}) for s in spans.get_finished_spans()}
    assert got["explicit"] == {**own, "yieldmeter.team": "ops"}  # what it did not set is copied
    assert got["plain"] == {
        "yieldmeter.work_unit.id": "wu-1",
        "yieldmeter.workflow": "outer-wf",
        "yieldmeter.team": "ops",
    }


def test_a_record_after_close_goes_to_the_local_file_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An atexit hook registered before the first record runs after the SDK's exit hook (atexit
    runs the newest first), so it records into a closed recorder: the row is written at once,
    not kept in a buffer nobody sends any more. A record to a closed recorder that has a server
    is spilled to the local file: no request in the calling thread (record() never blocks), no
    client left open, and one warning for all."""
    import logging

    script = (
        "import atexit, sys\n"
        "from yieldmeter.sdk import configure, record_signal\n"
        "atexit.register(lambda: record_signal('wu-exit', 'abandoned', signal_id='exit-1'))\n"
        "configure(None, path=sys.argv[1])\n"
        "record_signal('wu-run', 'accepted', signal_id='run-1')\n"
    )
    done = run_python(script, str(tmp_path / "records"))
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "records" / "signals.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["signal_id"] for x in lines) == ["exit-1", "run-1"], done.stderr

    root = make_workspace(tmp_path / "ws")
    with serving(receiver_app(root)) as url:
        rec = Recorder(url, flush_interval_s=0, path=tmp_path / "sp")
        rec.close()
        with caplog.at_level(logging.WARNING, logger="yieldmeter.sdk"):
            for n in range(3):
                rec.record("signals", signal(n))
        stats = rec.stats()
        assert (stats["sent"], stats["spilled"], stats["buffered"], stats["failed_attempts"]) == (0, 3, 0, 0)
        assert rec._client is None and rec._thread is None
    assert rows(root, "SELECT signal_id FROM signals") == []
    spilled = (tmp_path / "sp" / "signals.jsonl").read_text().splitlines()
    assert [json.loads(x)["signal_id"] for x in spilled] == ["s-0", "s-1", "s-2"]
    assert caplog.text.count("record() after the recorder was closed") == 1


def test_rows_the_server_quarantines_are_counted_apart_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server takes the batch and rejects one row into its quarantine: that row is not
    counted as sent, and the warning names it by its id, not by its place in the batch."""
    import logging

    root = make_workspace(tmp_path / "ws")
    with serving(receiver_app(root)) as url:
        rec = Recorder(url, flush_interval_s=0, path=tmp_path / "sp")
        good = {"effort_id": "e-good", "work_unit_id": "u-1", "ts": "2025-03-01T10:00:00Z", "minutes": 3}
        rec.record("effort", good)
        rec.record("effort", dict(good, effort_id="e-negative", minutes=-5))
        with caplog.at_level(logging.WARNING, logger="yieldmeter.sdk"):
            stats = rec.flush()
        rec.close()
    assert (stats["sent"], stats.get("quarantined"), stats["refused"], stats["spilled"]) == (1, 1, 0, 0)
    assert "the server quarantined effort row effort_id=e-negative: minutes: negative" in caplog.text
    assert rows(root, "SELECT effort_id FROM effort") == [{"effort_id": "e-good"}]


class FakeResponse:
    status_code = 200
    text = ""
    headers: ClassVar[dict[str, str]] = {}

    def json(self) -> dict[str, object]:
        return {}


class FakeClient:
    """Stands in for the recorder's httpx client: ``on_post(n)`` runs before the n-th POST answers."""

    def __init__(self, on_post: Callable[[int], None] = lambda n: None) -> None:
        self.on_post = on_post
        self.posts: list[str] = []
        self.closed = False

    def post(self, url: str, *, content: str, headers: dict[str, str]) -> FakeResponse:
        self.posts.append(content)
        self.on_post(len(self.posts))
        return FakeResponse()

    def close(self) -> None:
        self.closed = True


def run_with_hang_detector(target: Callable[[], object], timeout: float = 20.0) -> list[object]:
    """Run ``target`` in a daemon thread; a call still running after ``timeout`` is a hang."""
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(target()), daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), "hangs"
    return result


def test_a_flush_called_again_in_the_thread_that_is_sending_does_not_wait_for_itself(tmp_path: Path) -> None:
    """A signal handler that flushes (SIGTERM: flush, then exit) runs in the thread it interrupts,
    here in the middle of a flush's POST: the handler's flush must not wait for the batch its own
    interrupted frame is sending, which can only end once the handler has returned."""
    rec = Recorder("http://127.0.0.1:9", flush_interval_s=0, path=tmp_path / "sp")
    inner: list[dict[str, int]] = []
    rec._client = FakeClient(lambda n: inner.append(rec.flush()) if n == 1 else None)
    rec.record("signals", signal(1))
    [outer] = run_with_hang_detector(rec.flush)
    assert inner and inner[0]["in_flight"] == 1  # the handler returned while its frame's batch was sent
    assert (outer["sent"], outer["in_flight"], outer["buffered"]) == (1, 0, 0)  # type: ignore[index]
    rec.close()


def test_a_flush_stops_waiting_for_another_threads_rows_after_its_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The background thread waits for a server that never answers: a flush waits for its rows
    only ``timeout_s``, then returns with a warning, the rows still in flight on that thread."""
    import logging

    with SilentServer() as server:
        rec = Recorder(server.url, path=tmp_path / "sp", batch_size=3, timeout_s=5.0, max_retries=0)
        for i in range(3):
            rec.record("signals", signal(i))
        assert wait_for(lambda: rec.stats()["buffered"] == 0)  # the thread took them
        with caplog.at_level(logging.WARNING, logger="yieldmeter.sdk"):
            [stats] = run_with_hang_detector(lambda: rec.flush(timeout_s=0.3))
        assert stats["in_flight"] == 3  # type: ignore[index]
        assert "flush() stopped waiting after 0.3 s for 3 rows another thread is sending" in caplog.text
        rec.close(timeout_s=0.3)


def test_a_flush_interrupted_by_keyboardinterrupt_keeps_its_rows_and_blocks_no_later_flush(
    tmp_path: Path,
) -> None:
    """Ctrl-C while flush() waits for the server: the interrupt reaches the caller, and the
    rows go back to the buffer, not left in flight for ever (where every later flush waited for
    them and close() did not send them); the next flush sends them."""

    def interrupt(n: int) -> None:
        if n == 1:
            raise KeyboardInterrupt

    rec = Recorder("http://127.0.0.1:9", flush_interval_s=0, path=tmp_path / "sp")
    rec._client = client = FakeClient(interrupt)
    rec.record("signals", signal(1))
    rec.record("effort", {"effort_id": "e-1", "work_unit_id": "u-1", "minutes": 3})
    with pytest.raises(KeyboardInterrupt):
        rec.flush()
    assert (rec.stats()["in_flight"], rec.stats()["buffered"]) == (0, 2)
    rec.record("signals", signal(2))
    [stats] = run_with_hang_detector(rec.flush)
    assert (stats["sent"], stats["in_flight"], stats["buffered"]) == (3, 0, 0)  # type: ignore[index]
    sent = [r["signal_id"] for body in client.posts for r in json.loads(body) if "signal_id" in r]
    assert sent == ["s-1", "s-1", "s-2"]  # the interrupted POST, then both at the next flush

    # interrupted inside close(): nothing would send the rows later, so they are spilled
    rec = Recorder("http://127.0.0.1:9", flush_interval_s=0, path=tmp_path / "sp2")
    rec._client = FakeClient(interrupt)
    rec.record("signals", signal(3))
    with pytest.raises(KeyboardInterrupt):
        rec.close()
    assert (rec.stats()["in_flight"], rec.stats()["spilled"]) == (0, 1)
    spilled = (tmp_path / "sp2" / "signals.jsonl").read_text().splitlines()
    assert [json.loads(x)["signal_id"] for x in spilled] == ["s-3"]


def test_a_signal_handler_that_flushes_never_waits_for_its_own_thread(tmp_path: Path) -> None:
    """A SIGTERM handler that flushes before exit runs in the main thread, between two bytecodes
    of whatever it was doing: inside record()'s hold of the recorder's lock, a plain lock made the
    handler wait for itself for ever. Here a timer signal flushes again and again while the main
    thread records (in a process of its own, killed if it hangs); every row reaches the file."""

    script = (
        "import random, signal, sys, time\n"
        "from yieldmeter.sdk.recorder import Recorder\n"
        "r = Recorder(path=sys.argv[1], flush_interval_s=0, batch_size=10**9, max_buffer=10**7)\n"
        "armed = [False]\n"
        "def handler(signum, frame):\n"
        "    r.flush()\n"
        "    armed[0] = False\n"
        "signal.signal(signal.SIGALRM, handler)\n"
        "n, t0 = 0, time.monotonic()\n"
        "while time.monotonic() - t0 < 3:\n"
        "    if not armed[0]:\n"
        "        armed[0] = True\n"
        "        signal.setitimer(signal.ITIMER_REAL, random.uniform(0.0001, 0.002))\n"
        "    r.record('signals', {'signal_id': f's{n}', 'kind': 'x'})\n"
        "    n += 1\n"
        "signal.setitimer(signal.ITIMER_REAL, 0)\n"
        "r.close()\n"
        "print(n)\n"
    )
    done = run_python(script, str(tmp_path / "records"), timeout=120)  # the run takes about 3 s
    assert done.returncode == 0, done.stderr
    recorded = int(done.stdout.strip())
    lines = (tmp_path / "records" / "signals.jsonl").read_text().splitlines()
    assert len({json.loads(x)["signal_id"] for x in lines}) == recorded
