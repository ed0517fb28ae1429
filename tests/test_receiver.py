"""The OTLP/HTTP receiver and the Langfuse-compatible endpoints, on a real server on loopback.

The end-to-end tests run the real OpenTelemetry SDK with its real
``OTLPSpanExporter`` (HTTP/protobuf) and the real Langfuse SDK against uvicorn
on 127.0.0.1. Costs are checked against prices set in ``yieldmeter.yaml`` so
the expected figures can be worked out by hand.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.testclient import TestClient

from tests.loopback import serving
from tests.test_ingest_otlp import CHAT, TRACE, request, span
from yieldmeter.app.workspace import Workspace
from yieldmeter.server.app import create_app
from yieldmeter.server.context import IngestKey, ServerSettings

CONFIG = """\
workflows:
  - workflow: claims-triage
    owner: head-of-claims
prices:
  - model: acme-chat
    provider: acme
    input: 2.0
    cached_input: 0.5
    output: 8.0
score_signals:
  helpful: accepted
"""
PB = {"content-type": "application/x-protobuf"}
#: The routes this suite is about (the REST API and dashboard have their own tests).
RECEIVER_ROUTES = ["yieldmeter.server.otlp", "yieldmeter.server.ingest_api"]
JS = {"content-type": "application/json"}


def make_workspace(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "yieldmeter.yaml").write_text(CONFIG)
    Workspace.init(root).close()
    return root


def receiver_app(root: Path, **kw: Any) -> Any:
    return create_app(root, route_modules=RECEIVER_ROUTES, **kw)


def rows(root: Path, sql: str) -> list[dict]:
    ws = Workspace.open(root)
    try:
        return ws.store.query_arrow(sql).to_pylist()
    finally:
        ws.close()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The app in process (for status-code checks); the real-server tests use ``serving``."""
    with TestClient(receiver_app(make_workspace(tmp_path / "ws"))) as c:
        yield c


# -- end to end with the real OpenTelemetry exporter ----------------------------------------------
def test_opentelemetry_sdk_exporter_end_to_end(tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    root = make_workspace(tmp_path / "ws")
    with serving(receiver_app(root)) as url:
        provider = TracerProvider(
            resource=Resource.create({"service.name": "claims-api", "deployment.environment.name": "prod"})
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span(
            "invoke_agent triager",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "triager",
                "yieldmeter.workflow": "claims-triage",
                "yieldmeter.work_unit.id": "claim-1",
            },
        ):
            # current spelling: 1000 input of which 400 cached, 250 output
            with tracer.start_as_current_span(
                "chat acme-chat",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "acme",
                    "gen_ai.request.model": "acme-chat",
                    "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.cache_read.input_tokens": 400,
                    "gen_ai.usage.output_tokens": 250,
                    "yieldmeter.work_unit.id": "claim-1",
                    "yieldmeter.workflow": "claims-triage",
                },
            ):
                pass
            # legacy spelling: gen_ai.system, prompt/completion tokens
            with tracer.start_as_current_span(
                "acme.chat",
                attributes={
                    "gen_ai.system": "acme",
                    "gen_ai.request.model": "acme-chat",
                    "gen_ai.usage.prompt_tokens": 2000,
                    "gen_ai.usage.completion_tokens": 500,
                    "yieldmeter.work_unit.id": "claim-1",
                },
            ):
                pass
            with tracer.start_as_current_span("GET /policy", attributes={"http.request.method": "GET"}):
                pass
        assert provider.force_flush(10_000)
        provider.shutdown()

    calls = {r["model"] + str(r["input_tokens"]): r for r in rows(root, "SELECT * FROM calls")}
    assert set(calls) == {"acme-chat1000", "acme-chat2000"}
    cur, legacy = calls["acme-chat1000"], calls["acme-chat2000"]
    assert (cur["cached_input_tokens"], cur["output_tokens"], cur["app"], cur["environment"]) == (
        400,
        250,
        "claims-api",
        "prod",
    )
    assert (legacy["provider"], legacy["output_tokens"]) == ("acme", 500)
    assert {cur["work_unit_id"], legacy["work_unit_id"]} == {"claim-1"}

    ws = Workspace.open(root)
    try:
        cost = {r["input_tokens"]: r["model_cost"] for r in ws.priced_calls().to_pyarrow().to_pylist()}
        # (600 uncached x $2 + 400 cached x $0.50 + 250 output x $8) / 1M = $0.0034
        assert cost[1000] == pytest.approx(0.0034)
        # (2000 x $2 + 500 x $8) / 1M = $0.008
        assert cost[2000] == pytest.approx(0.008)
        [unit] = ws.store.query_arrow("SELECT * FROM work_units").to_pylist()
        assert (unit["work_unit_id"], unit["workflow"], unit["derived"]) == (
            "claim-1",
            "claims-triage",
            False,
        )
    finally:
        ws.close()


def test_otlp_json_gzip_partial_success_and_resend(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    body = request(
        span(1, {**CHAT, "gen_ai.usage.input_tokens": 10}), span(2, {**CHAT, "gen_ai.usage.input_tokens": -1})
    )
    with serving(receiver_app(root)) as url:
        for _ in range(2):  # re-sending the same spans lands nothing new
            r = httpx.post(
                f"{url}/v1/traces", content=gzip.compress(body), headers={**JS, "content-encoding": "gzip"}
            )
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
            partial = r.json()["partialSuccess"]
            assert partial["rejectedSpans"] == "1" and "negative" in partial["errorMessage"]
    assert rows(root, "SELECT count(*) AS n FROM calls") == [{"n": 1}]
    assert rows(root, "SELECT count(*) AS n FROM quarantine") == [{"n": 1}]


# -- status codes ---------------------------------------------------------------------------------
def test_protobuf_partial_success(client: TestClient) -> None:
    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    doc = orjson.loads(request(span(1, CHAT), span(2, {**CHAT, "gen_ai.usage.output_tokens": "x"})))
    for s in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        s["traceId"] = base64.b64encode(bytes.fromhex(s["traceId"])).decode()
        s["spanId"] = base64.b64encode(bytes.fromhex(s["spanId"])).decode()
        s.pop("parentSpanId")
    pb = ParseDict(doc, ExportTraceServiceRequest()).SerializeToString()
    r = client.post("/v1/traces", content=pb, headers=PB)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    resp = ExportTraceServiceResponse.FromString(r.content)
    assert resp.partial_success.rejected_spans == 1
    assert "not a whole number" in resp.partial_success.error_message


def test_unreadable_bodies_get_400_in_their_own_encoding(client: TestClient) -> None:
    good = request(span(1, CHAT))
    r = client.post("/v1/traces", content=b"\x0a\xff\xff\xff\xff", headers=PB)  # truncated protobuf
    assert r.status_code == 400 and r.headers["content-type"] == "application/x-protobuf"
    assert b"ExportTraceServiceRequest" in r.content  # google.rpc.Status message
    r = client.post("/v1/traces", content=good[:-7], headers=JS)
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    r = client.post("/v1/traces", content=b'{"resourceSpans": 3}', headers=JS)
    assert r.status_code == 400
    r = client.post(
        "/v1/traces", content=gzip.compress(good)[:20], headers={**JS, "content-encoding": "gzip"}
    )
    assert r.status_code == 400
    r = client.post("/v1/traces", content=good, headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/v1/traces", content=good, headers={**JS, "content-encoding": "br"})
    assert r.status_code == 415


def test_body_limit(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    with serving(receiver_app(root)) as url:
        big = b"x" * (70 * 1024 * 1024)
        r = httpx.post(f"{url}/v1/traces", content=big, headers=JS, timeout=60)
        assert r.status_code == 413
        bomb = gzip.compress(b" " * (65 * 1024 * 1024))  # small on the wire, 65 MiB inflated
        r = httpx.post(
            f"{url}/v1/traces", content=bomb, headers={**JS, "content-encoding": "gzip"}, timeout=60
        )
        assert r.status_code == 413
        r = httpx.post(f"{url}/v1/traces", content=request(span(1, CHAT)), headers=JS)
        assert r.status_code == 200  # still serving


def test_busy_store_answers_503_with_retry_after(tmp_path: Path) -> None:
    app = receiver_app(make_workspace(tmp_path / "ws"), settings=ServerSettings(max_queue=1))
    release = threading.Event()
    with TestClient(app) as c:
        writer = app.state.ctx.writer
        writer.submit(lambda ws: release.wait(10))  # holds the writer thread
        time.sleep(0.1)
        writer.submit(lambda ws: None)  # fills the one queue slot
        r = c.post("/v1/traces", content=request(span(1, CHAT)), headers=JS)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        release.set()
        time.sleep(0.1)
        assert c.post("/v1/traces", content=request(span(1, CHAT)), headers=JS).status_code == 200


_ANY = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_KEYS = [
    "resourceSpans",
    "scopeSpans",
    "spans",
    "attributes",
    "key",
    "value",
    "intValue",
    "stringValue",
    "traceId",
    "spanId",
    "startTimeUnixNano",
    "status",
]
_GENAI_KEYS = [
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.provider.name",
    "langfuse.observation.type",
    "langfuse.observation.usage_details",
    "yieldmeter.work_unit.id",
]
_VALUE = st.one_of(
    st.builds(lambda v: {"intValue": v}, st.integers() | st.text(max_size=8)),
    st.builds(
        lambda v: {"stringValue": v}, st.text(max_size=8) | st.sampled_from(["chat", "generation", "{}"])
    ),
    st.builds(lambda v: {"doubleValue": v}, st.floats()),
    st.builds(lambda v: {"boolValue": v}, st.booleans()),
    st.builds(lambda v: {"arrayValue": {"values": v}}, st.lists(st.just({"intValue": "1"}), max_size=2)),
    _ANY,
)
_SPAN = st.fixed_dictionaries(
    {
        "traceId": st.sampled_from([TRACE, "", "zz"]) | st.text(max_size=4),
        "spanId": st.text("0123456789abcdef", min_size=16, max_size=16),
        "startTimeUnixNano": st.integers(min_value=-1, max_value=2**70).map(str) | _ANY,
        "attributes": st.lists(
            st.fixed_dictionaries({"key": st.sampled_from(_GENAI_KEYS), "value": _VALUE}), max_size=6
        ),
        "status": st.fixed_dictionaries({"code": st.integers(-1, 9) | _ANY}),
    },
)
_BODIES = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        _ANY,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), c, max_size=4),
        max_leaves=30,
    ).map(lambda d: json.dumps(d).encode()),
    st.lists(_SPAN, max_size=5).map(
        lambda spans: json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
    ),
)


def test_failed_write_is_rolled_back_and_answered_503(client: TestClient) -> None:
    writer = client.app.state.ctx.writer  # type: ignore[attr-defined]
    # a real failure: the calls table is gone when the writer tries to upsert
    writer.submit(lambda ws: ws.store.con.execute("ALTER TABLE calls RENAME TO calls_away")).result()
    r = client.post("/v1/traces", content=request(span(1, CHAT)), headers=JS)
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "rolled back" in r.json()["message"]
    writer.submit(lambda ws: ws.store.con.execute("ALTER TABLE calls_away RENAME TO calls")).result()
    assert client.post("/v1/traces", content=request(span(1, CHAT)), headers=JS).status_code == 200


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_BODIES, ctype=st.sampled_from(["application/x-protobuf", "application/json"]))
def test_receiver_never_crashes(client: TestClient, body: bytes, ctype: str) -> None:
    """Whatever arrives, the answer is 200 (maybe with rejected spans) or 400, never a 500."""
    r = client.post("/v1/traces", content=body, headers={"content-type": ctype})
    assert r.status_code in (200, 400), r.text


# -- Langfuse -------------------------------------------------------------------------------------
def test_langfuse_route_auth_and_org(tmp_path: Path) -> None:
    key = IngestKey(public_key="pk-lf-1", secret_key="sk-lf-1", org="acme")
    app = receiver_app(make_workspace(tmp_path / "ws"), settings=ServerSettings(ingest_keys=[key]))
    basic = "Basic " + base64.b64encode(b"pk-lf-1:sk-lf-1").decode()
    with TestClient(app) as c:
        body = request(span(1, CHAT))
        assert c.post("/api/public/otel/v1/traces", content=body, headers=JS).status_code == 401
        wrong = "Basic " + base64.b64encode(b"pk-lf-1:nope").decode()
        assert (
            c.post(
                "/api/public/otel/v1/traces", content=body, headers={**JS, "authorization": wrong}
            ).status_code
            == 401
        )
        r = c.post("/api/public/otel/v1/traces", content=body, headers={**JS, "authorization": basic})
        assert r.status_code == 200
        r = c.post(
            "/v1/traces", content=request(span(2, CHAT)), headers={**JS, "authorization": "Bearer sk-lf-1"}
        )
        assert r.status_code == 200
    assert {r["org"] for r in rows(tmp_path / "ws", "SELECT org FROM calls")} == {"acme"}


def test_langfuse_scores_endpoint(client: TestClient) -> None:
    client.post(
        "/v1/traces", content=request(span(1, {**CHAT, "gen_ai.conversation.id": "conv-3"})), headers=JS
    )
    one = {"id": "score-1", "traceId": TRACE, "name": "relevance", "value": 0.7, "dataType": "NUMERIC"}
    r = client.post("/api/public/scores", json=one)
    assert r.status_code == 200 and r.json() == {"id": "score-1"}
    batch = [
        {
            "id": "score-2",
            "traceId": TRACE,
            "observationId": f"{1:016x}",
            "name": "helpful",
            "value": 1,
            "dataType": "BOOLEAN",
        },
        {
            "id": "score-3",
            "traceId": "f" * 32,
            "name": "tone",
            "value": "friendly",
            "dataType": "CATEGORICAL",
        },
        {"id": "score-4", "name": "orphan", "value": 1, "sessionId": "s"},
    ]
    r = client.post("/api/public/scores", json=batch)
    assert r.status_code == 207 and r.json()["accepted"] == 2 and r.json()["rejected"] == 1
    assert "traceId or observationId" in r.json()["errors"][0]["message"]
    ws = client.app.state.ctx.workspace  # type: ignore[attr-defined]
    sig = {s["signal_id"]: s for s in ws.store.query_arrow("SELECT * FROM signals").to_pylist()}
    # the trace's calls belong to work unit conv-3, so its scores do too
    assert (sig["score-1"]["kind"], sig["score-1"]["value"], sig["score-1"]["work_unit_id"]) == (
        "rated",
        0.7,
        "conv-3",
    )
    assert (sig["score-2"]["kind"], sig["score-2"]["value"]) == ("accepted", 1.0)  # score_signals: helpful
    assert (
        sig["score-3"]["value"] is None and orjson.loads(sig["score-3"]["attributes"])["label"] == "friendly"
    )
    assert sig["score-3"]["work_unit_id"] == "f" * 32  # a trace not seen yet keeps its id


def test_real_langfuse_sdk(tmp_path: Path) -> None:
    """The Langfuse Python SDK (v3+), unchanged, with its host pointed at yieldmeter."""
    langfuse = pytest.importorskip("langfuse")
    root = make_workspace(tmp_path / "ws")
    with serving(receiver_app(root)) as url:
        lf = langfuse.Langfuse(
            public_key="pk-lf-test", secret_key="sk-lf-test", host=url, tracing_enabled=True
        )
        with (
            lf.start_as_current_observation(name="answer", as_type="span") as root_span,
            langfuse.propagate_attributes(
                user_id="u-9",
                session_id="chat-5",
                tags=["support"],
                metadata={"yieldmeter.workflow": "support-answers"},
            ),
        ):
            with lf.start_as_current_observation(name="llm", as_type="generation", model="acme-chat") as gen:
                # Langfuse buckets: 600 input + 400 cached = 1000 input tokens in all
                gen.update(
                    usage_details={"input": 600, "input_cached_tokens": 400, "output": 250},
                    cost_details={"total": 0.0034},
                )
                gen.score(name="helpful", value=1, data_type="BOOLEAN")
            trace_id = root_span.trace_id
        lf.flush()
        lf.shutdown()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not rows(root, "SELECT 1 FROM signals"):
            time.sleep(0.2)
    [call] = rows(root, "SELECT * FROM calls")
    assert (call["model"], call["input_tokens"], call["cached_input_tokens"], call["output_tokens"]) == (
        "acme-chat",
        1000,
        400,
        250,
    )
    assert (call["user_id"], call["session_id"], call["reported_cost"]) == ("u-9", "chat-5", 0.0034)
    assert call["workflow"] == "support-answers"  # yieldmeter linkage carried in Langfuse metadata
    assert call["trace_id"] == trace_id and call["source"] == "langfuse-otel"
    [sig] = rows(root, "SELECT * FROM signals")
    assert (sig["kind"], sig["value"], sig["work_unit_id"]) == ("accepted", 1.0, trace_id)
