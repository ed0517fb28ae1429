"""The Python SDK: work-unit linkage on real OpenTelemetry spans, and records sent to a real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.loopback import free_port, serving
from tests.test_receiver import make_workspace, receiver_app, rows
from yieldmeter.sdk import Recorder, RecordError, instrument, work_unit

CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "acme",
    "gen_ai.request.model": "acme-chat",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.output_tokens": 10,
}


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
        rec = Recorder(url, batch_size=100, flush_interval_s=0)
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
        # an epoch of 10^19 (a JSON integer beyond int64) fails the whole body: a 400 that says so, not a 500
        big = {"signal_id": "s-big", "work_unit_id": "claim-8", "ts": 10**19, "kind": "rated"}
        r = httpx.post(f"{url}/api/v1/signals", json=[big])
        assert r.status_code == 400 and "signals rows could not be read" in r.text, r.text
    assert rows(root, "SELECT signal_id, kind FROM signals") == [{"signal_id": "sig-1", "kind": "accepted"}]
    effort = rows(root, "SELECT effort_id, minutes, person FROM effort ORDER BY minutes DESC")
    assert effort[0] == {"effort_id": "eff-1", "minutes": 4.5, "person": "ana"} and len(effort) == 2
    [outcome] = rows(root, "SELECT * FROM outcomes")
    assert (outcome["baseline_value"], outcome["observed_value"], outcome["evidence_level"]) == (
        9.0,
        6.0,
        "baseline_comparison",
    )


def test_retry_until_the_server_is_up(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    port = free_port()
    rec = Recorder(f"http://127.0.0.1:{port}", flush_interval_s=0, max_retries=1, backoff_s=0.01)
    rec.record(
        "signals",
        {
            "signal_id": "s-1",
            "work_unit_id": "u-1",
            "ts": "2025-03-01T10:00:00Z",
            "kind": "rated",
            "value": 0.9,
        },
    )
    with pytest.raises(RecordError, match="after retries"):
        rec.flush()
    with serving(receiver_app(root), port=port):
        rec.flush()  # the rows were kept and go now
    rec.close()
    assert rows(root, "SELECT signal_id, value FROM signals") == [{"signal_id": "s-1", "value": 0.9}]


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
