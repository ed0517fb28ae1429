"""The OTLP/HTTP receiver and the Langfuse-compatible endpoints, on a real server on loopback.

The end-to-end tests run the real OpenTelemetry SDK with its real
``OTLPSpanExporter`` (HTTP/protobuf) and the real Langfuse SDK against uvicorn
on 127.0.0.1. Costs are checked against prices set in ``yieldmeter.yaml`` so
the expected figures can be worked out by hand.
"""

from __future__ import annotations

import base64
import gc
import gzip
import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.testclient import TestClient

from tests.loopback import serving, stored
from tests.test_ingest_otlp import CHAT, T0, TRACE, kv, protobuf, request, span
from yieldmeter.app.workspace import Workspace
from yieldmeter.server.app import PRELOADED, create_app
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
    pb = protobuf(span(1, CHAT), span(2, {**CHAT, "gen_ai.usage.output_tokens": "x"}))
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


def test_every_member_of_a_gzip_body_is_read(client: TestClient) -> None:
    """RFC 1952: a gzip stream may hold several members (``cat a.gz b.gz``); each is inflated.
    Two protobuf messages end to end are one message with both lists, so both spans land."""
    gz = {**PB, "content-encoding": "gzip"}
    body = gzip.compress(protobuf(span(1, CHAT))) + gzip.compress(protobuf(span(2, CHAT)))
    r = client.post("/v1/traces", content=body + b"\0" * 8, headers=gz)  # zero padding is ignored
    assert r.status_code == 200
    assert ExportTraceServiceResponse.FromString(r.content).partial_success.rejected_spans == 0
    stored(client)
    assert client.get("/healthz").json()["ingest"]["rows_landed"] == 2
    r = client.post("/v1/traces", content=body + b"junk", headers=gz)
    assert r.status_code == 400  # bytes after a member that are not gzip
    r = client.post("/v1/traces", content=body + gzip.compress(b"x")[:12], headers=gz)
    assert r.status_code == 400  # the last member cut short


def test_the_body_limit_counts_every_gzip_member() -> None:
    from yieldmeter.server.context import HttpError, gunzip

    member = gzip.compress(b"a" * 600)
    assert gunzip(member * 3, 1800) == b"a" * 1800
    with pytest.raises(HttpError) as err:
        gunzip(member * 4, 1800)  # 600 bytes each: the fourth member passes the limit
    assert err.value.status == 413
    empty = gzip.compress(b"")  # 20 bytes that inflate to nothing: a body of them is only work
    assert gunzip(empty * 1000, 1800) == b""
    with pytest.raises(HttpError) as err:
        gunzip(empty * 100_000, 1800)
    assert err.value.status == 400 and "more than 1000 members" in err.value.message
    big = gzip.compress(bytes(range(256)) * 4096)  # a member longer than one piece fed to zlib
    assert gunzip(big + member, 2_000_000) == bytes(range(256)) * 4096 + b"a" * 600


def test_server_sets_what_lives_as_long_as_it_apart_from_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before serving, the server imports the modules it needs later; while it serves, what it
    started with is frozen out of the garbage collector's full passes, which every request waits
    on. The last of the process's servers to stop makes it collectable again (a test process
    starts many, some at once)."""
    import importlib

    imported: list[str] = []
    real = importlib.import_module

    def spy(name: str, *args: Any) -> Any:
        imported.append(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", spy)
    first = receiver_app(make_workspace(tmp_path / "a"))
    second = receiver_app(make_workspace(tmp_path / "b"))
    with TestClient(first) as c:
        assert set(PRELOADED) <= set(imported)
        assert gc.get_freeze_count() > 0
        with TestClient(second):
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() > 0  # the first still serves
        assert c.post("/v1/traces", content=request(span(1, CHAT)), headers=JS).status_code == 200
    assert gc.get_freeze_count() == 0


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


#: Any JSON scalar (finite floats: a NaN would make the whole body invalid JSON, tested apart).
_ANY = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
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
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.cost",
    "gen_ai.provider.name",
    "gen_ai.conversation.id",
    "error.type",
    "langfuse.observation.type",
    "langfuse.observation.usage_details",
    "langfuse.observation.cost_details",
    "langfuse.trace.metadata",
    "yieldmeter.work_unit.id",
    "service.name",
    "gen_ai.evaluation.name",
    "gen_ai.evaluation.score.value",
]
#: Attribute keys as senders get them wrong: not strings, null, or unhashable.
_KEY = st.sampled_from(_GENAI_KEYS) | st.integers() | st.none() | st.text(max_size=6) | st.just(["k"])
_OPS = ["chat", "generation", "invoke_agent", "execute_tool", "image_generation", "{}"]
_TIME = st.one_of(
    st.integers(min_value=-1, max_value=2**70).map(str),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.just(str(T0)),
    _ANY,
)
_SCALAR_VALUE = st.one_of(
    st.builds(lambda v: {"intValue": v}, st.integers(-(2**70), 2**70) | st.text(max_size=8)),
    st.builds(lambda v: {"stringValue": v}, st.text(max_size=8) | st.sampled_from(_OPS)),
    st.builds(
        lambda v: {"doubleValue": v},
        st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(["NaN", "Infinity", "x"]),
    ),
    st.builds(lambda v: {"boolValue": v}, st.booleans()),
    st.builds(lambda v: {"bytesValue": v}, st.text(max_size=8)),
    _ANY,
)
_VALUE = st.recursive(
    _SCALAR_VALUE,
    lambda inner: st.one_of(
        st.builds(lambda v: {"arrayValue": {"values": v}}, st.lists(inner, max_size=3)),
        st.builds(
            lambda v: {"kvlistValue": {"values": v}},
            st.lists(st.fixed_dictionaries({"key": _KEY, "value": inner}), max_size=3),
        ),
        st.builds(lambda v: {"kvlistValue": v}, _ANY),
    ),
    max_leaves=8,
)
_ATTRS = st.lists(st.fixed_dictionaries({"key": _KEY, "value": _VALUE}), max_size=6) | _ANY
_EVENT = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["gen_ai.evaluation.result", "exception"]) | _ANY,
        "attributes": _ATTRS,
    },
    optional={"timeUnixNano": _TIME},
)
_SPAN = st.fixed_dictionaries(
    {
        "traceId": st.sampled_from([TRACE, "", "zz"]) | st.text(max_size=4) | _ANY,
        "spanId": st.text("0123456789abcdef", min_size=16, max_size=16),
        "startTimeUnixNano": _TIME,
        "attributes": _ATTRS,
        "status": st.fixed_dictionaries({"code": st.integers(-1, 9) | _ANY}) | _ANY,
    },
    optional={
        "endTimeUnixNano": _TIME,
        "events": st.lists(_EVENT, max_size=3) | _ANY,
        "parentSpanId": _ANY,
        "name": _ANY,
    },
)
_RESOURCE_ATTRS = st.lists(st.fixed_dictionaries({"key": _KEY, "value": _VALUE}), max_size=3) | _ANY
_RESOURCE = st.fixed_dictionaries(
    {
        "resource": st.fixed_dictionaries({"attributes": _RESOURCE_ATTRS}),
        "scopeSpans": st.lists(
            st.fixed_dictionaries({"spans": st.lists(_SPAN | _ANY, max_size=3)}), max_size=2
        ),
    }
)
_JUNK_BODIES = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        _ANY | st.floats(),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), c, max_size=4),
        max_leaves=30,
    ).map(lambda d: json.dumps(d).encode()),
)
_GOOD_TRACE = "ab" * 16
_SERIAL = itertools.count(1)


def _good_span(n: int) -> dict[str, Any]:
    """A well-formed chat span: whatever surrounds it in a request, it must land."""
    return span(n, {**CHAT, "gen_ai.usage.input_tokens": 10}, trace=_GOOD_TRACE)


def _with_good_span(draw: Any, n: int) -> dict[str, Any]:
    """A request of junk resources and spans around one good span in a well-formed resource."""
    junk = draw(st.lists(_RESOURCE, max_size=3))
    neighbours = draw(st.lists(_SPAN, max_size=4))
    at = draw(st.integers(0, len(neighbours)))
    good_resource = {
        "resource": {"attributes": [kv("service.name", "claims-api")]},
        "scopeSpans": [{"spans": [*neighbours[:at], _good_span(n), *neighbours[at:]]}],
    }
    where = draw(st.integers(0, len(junk)))
    return {"resourceSpans": [*junk[:where], good_resource, *junk[where:]]}


@st.composite
def _traces_requests(draw: Any) -> tuple[bytes, str, bool, int | None]:
    """(body, content type, gzip?, serial of the good span it carries or None)."""
    gz = draw(st.booleans())
    kind = draw(st.sampled_from(["junk", "structured", "protobuf"]))
    if kind == "junk":
        body, ctype, n = (
            draw(_JUNK_BODIES),
            draw(st.sampled_from([JS["content-type"], PB["content-type"]])),
            None,
        )
    elif kind == "structured":
        n = next(_SERIAL)
        body, ctype = json.dumps(_with_good_span(draw, n)).encode(), JS["content-type"]
    else:
        n = next(_SERIAL)
        body, ctype = _protobuf_request(draw, n), PB["content-type"]
    return (gzip.compress(body) if gz else body), ctype, gz, n


def _protobuf_request(draw: Any, n: int) -> bytes:
    """A protobuf export whose other spans carry any value protobuf allows (times beyond int64...)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    u64 = st.integers(0, 2**64 - 1)
    for _ in range(draw(st.integers(0, 3))):
        s = ss.spans.add()
        s.trace_id = bytes.fromhex(TRACE)
        s.span_id = draw(st.binary(min_size=8, max_size=8))
        s.start_time_unix_nano = draw(u64)
        s.end_time_unix_nano = draw(u64)
        s.status.code = draw(st.integers(0, 2))
        for key in draw(st.lists(st.sampled_from(_GENAI_KEYS), max_size=5)):
            a = s.attributes.add()
            a.key = key
            choice = draw(st.integers(0, 3))
            if choice == 0:
                a.value.int_value = draw(st.integers(-(2**63), 2**63 - 1))
            elif choice == 1:
                a.value.string_value = draw(st.text(max_size=6) | st.sampled_from(_OPS))
            elif choice == 2:
                a.value.double_value = draw(st.floats())
            else:
                kv_ = a.value.kvlist_value.values.add()
                kv_.key = draw(st.text(max_size=4))
                kv_.value.int_value = draw(st.integers(-(2**63), 2**63 - 1))
        for _ in range(draw(st.integers(0, 2))):
            e = s.events.add()
            e.name = "gen_ai.evaluation.result"
            e.time_unix_nano = draw(u64)
            ev = e.attributes.add()
            ev.key = "gen_ai.evaluation.score.value"
            ev.value.double_value = draw(st.floats())
    good = ss.spans.add()
    good.trace_id = bytes.fromhex(_GOOD_TRACE)
    good.span_id = n.to_bytes(8, "big")
    good.start_time_unix_nano = T0
    good.end_time_unix_nano = T0 + 1_000_000
    for k, v in {**CHAT, "gen_ai.usage.input_tokens": 10}.items():
        a = good.attributes.add()
        a.key = k
        if isinstance(v, int):
            a.value.int_value = v
        else:
            a.value.string_value = v
    return req.SerializeToString()


def test_failed_write_is_rolled_back_and_answered_503(tmp_path: Path) -> None:
    """``acknowledge: commit``: the answer waits for the commit, so a write that fails is a 503
    (with the spool, the default, it is answered before and tried again: test_receiver_spool)."""
    commit = ServerSettings(acknowledge="commit", decode_workers=0)
    with TestClient(receiver_app(make_workspace(tmp_path / "ws"), settings=commit)) as client:
        writer = client.app.state.ctx.writer  # type: ignore[attr-defined]
        # a real failure: the calls table is gone when the writer tries to upsert
        writer.submit(lambda ws: ws.store.con.execute("ALTER TABLE calls RENAME TO calls_away")).result()
        r = client.post("/v1/traces", content=request(span(1, CHAT)), headers=JS)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "rolled back" in r.json()["message"]
        writer.submit(lambda ws: ws.store.con.execute("ALTER TABLE calls_away RENAME TO calls")).result()
        assert client.post("/v1/traces", content=request(span(1, CHAT)), headers=JS).status_code == 200


def _landed(client: TestClient, call_id: str) -> bool:
    ws = client.app.state.ctx.workspace  # type: ignore[attr-defined]
    return (
        ws.store.query_arrow(f"SELECT count(*) AS n FROM calls WHERE call_id = '{call_id}'")
        .column(0)[0]
        .as_py()
        == 1
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_traces_requests())
def test_receiver_never_crashes_and_the_good_spans_land(
    client: TestClient, case: tuple[bytes, str, bool, int | None]
) -> None:
    """Whatever arrives (junk bytes, attribute keys that are not strings, kvlists, evaluation
    events with any time, times beyond int64, malformed resources, gzip or not, JSON or protobuf),
    the answer is never a 5xx, and a well-formed span sent among bad ones lands."""
    body, ctype, gz, good = case
    headers = {"content-type": ctype, **({"content-encoding": "gzip"} if gz else {})}
    r = client.post("/v1/traces", content=body, headers=headers)
    assert r.status_code in (200, 400), r.text
    if good is not None:
        assert r.status_code == 200, r.text
        stored(client)
        assert _landed(client, f"{_GOOD_TRACE}-{good:016x}")


_SCORE = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=6) | st.integers() | st.none(),
        "traceId": st.sampled_from([TRACE, "f" * 32]) | st.integers() | st.none() | st.lists(st.just(1)),
        "observationId": st.text(max_size=4) | st.integers() | st.none(),
        "name": st.sampled_from(["helpful", "relevance"]) | _ANY,
        "value": _ANY
        | st.integers(-(2**80), 2**80)
        | st.sampled_from(["true", "friendly"])
        | st.just({"a": 1}),
        "dataType": st.sampled_from(["NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT", "ODD"]) | _ANY,
        "timestamp": st.sampled_from(["2025-03-01T10:00:00Z", "yesterday", "9999-12-31T23:59:59-14:00"])
        | st.integers(-(2**70), 2**70)
        | _ANY,
        "comment": _ANY,
    },
)


def _good_score(n: int) -> dict[str, Any]:
    return {
        "id": f"good-{n}",
        "traceId": TRACE,
        "name": "relevance",
        "value": 0.5,
        "timestamp": "2025-03-01T10:00:00Z",
    }


def _signal_landed(client: TestClient, signal_id: str) -> bool:
    ws = client.app.state.ctx.workspace  # type: ignore[attr-defined]
    q = f"SELECT count(*) AS n FROM signals WHERE signal_id = '{signal_id}'"
    return ws.store.query_arrow(q).column(0)[0].as_py() == 1


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scores=st.lists(_SCORE | _ANY, max_size=5), at=st.integers(0, 5), gz=st.booleans())
def test_scores_routes_never_crash_and_the_good_score_lands(
    client: TestClient, scores: list[Any], at: int, gz: bool
) -> None:
    """Scores of mixed types in one list (a timestamp as text beside one as a number, a traceId as
    a number...) are answered per score; the well-formed one among them is stored."""
    n = next(_SERIAL)
    at = min(at, len(scores))
    scores = [*scores[:at], _good_score(n), *scores[at:]]
    headers = {**JS, **({"content-encoding": "gzip"} if gz else {})}
    body = json.dumps(scores).encode()  # the stdlib writes integers beyond 64 bits too
    r = client.post("/api/public/scores", content=gzip.compress(body) if gz else body, headers=headers)
    assert r.status_code in (202, 207), r.text
    assert _signal_landed(client, f"good-{n}")
    # the same scores as Langfuse SDK v3/v4 send them: score-create events of the ingestion API
    m = next(_SERIAL)
    events = [
        {"id": f"ev-{i}", "type": "score-create", "timestamp": "2025-03-01T10:00:00Z", "body": s}
        for i, s in enumerate(scores)
    ]
    events[at]["body"] = _good_score(m)
    events.append({"id": "ev-trace", "type": "trace-create", "body": {"id": TRACE, "input": "secret"}})
    r = client.post("/api/public/ingestion", json={"batch": events, "metadata": {}})
    assert r.status_code == 207, r.text
    answers = {a["id"]: a for a in r.json()["successes"] + r.json()["errors"]}
    assert answers[f"ev-{at}"]["status"] == 201 and answers["ev-trace"]["status"] == 400
    assert _signal_landed(client, f"good-{m}")


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


def test_a_score_sent_before_its_trace_joins_the_work_unit_of_the_trace(client: TestClient) -> None:
    """A request handler scores its trace and goes on; the SDK's score consumer sends the score
    before the trace's spans. The score waited on the trace id, and stayed there when the calls
    landed on the work unit their metadata names: no work unit got the acceptance. It now joins
    the trace's work unit (an observation score, the call's) as the calls land."""
    early = [
        {"id": "s-trace", "traceId": TRACE, "name": "helpful", "value": 1, "dataType": "BOOLEAN"},
        {"id": "s-obs", "traceId": TRACE, "observationId": f"{2:016x}", "name": "relevance", "value": 0.5},
        {"id": "s-other", "traceId": "e" * 32, "name": "relevance", "value": 0.1},  # another trace
    ]
    assert client.post("/api/public/scores", json=early).status_code == 202
    generation = {
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": "gpt-4o",
        "langfuse.observation.usage_details": json.dumps({"input": 10, "output": 5}),
    }
    ticket_9 = {**generation, "langfuse.trace.metadata": json.dumps({"yieldmeter.work_unit.id": "TICKET-9"})}
    spans = [
        span(1, ticket_9),
        span(2, {**generation, "yieldmeter.work_unit.id": "TICKET-10"}),
        span(3, ticket_9),
    ]
    r = client.post("/api/public/otel/v1/traces", content=request(*spans), headers=JS)
    assert r.status_code == 200
    stored(client)
    ws = client.app.state.ctx.workspace  # type: ignore[attr-defined]
    signals = ws.store.query_arrow("SELECT signal_id, work_unit_id FROM signals").to_pylist()
    units = {s["signal_id"]: s["work_unit_id"] for s in signals}
    assert units["s-obs"] == "TICKET-10"  # the call of span 2
    assert units["s-trace"] == "TICKET-9"  # the trace's most frequent work unit (2 calls of 3)
    assert units["s-other"] == "e" * 32  # still waiting on its trace


def test_a_false_boolean_score_is_not_the_event_its_name_maps_to() -> None:
    """``score_signals: {helpful: accepted, kept: saved}``: a thumbs-down (BOOLEAN 0, or JSON
    false) stored an ``accepted`` signal, and the work unit read as accepted and successful. It
    is ``rejected`` now; a false score of a kind without an opposite is ``not_<kind>``, kept but
    weighing nothing (a rating of 0 read "not escalated" as the worst score); a true one, or a
    numeric 0 (not a yes/no), stays the mapped kind."""
    from yieldmeter.ingest.langfuse_scores import scores_to_batch

    def score(name: str, value: object, dtype: str | None) -> dict:
        return {"traceId": TRACE, "name": name, "value": value, "dataType": dtype}

    scores = [
        score("helpful", 0, "BOOLEAN"),
        score("helpful", False, None),
        score("helpful", "false", "BOOLEAN"),
        score("helpful", 1, "BOOLEAN"),
        score("helpful", 0, "NUMERIC"),
        score("kept", 0, "BOOLEAN"),
        score("kept", True, None),
        score("escalated", False, "BOOLEAN"),
    ]
    b = scores_to_batch(
        scores,
        score_signals={"helpful": "accepted", "kept": "saved", "escalated": "escalated"},
        capture_content=False,
        now=datetime(2025, 3, 1, tzinfo=UTC),
    )
    signals = b.batch.tables["signals"]
    got = list(zip(signals.column("kind").to_pylist(), signals.column("value").to_pylist(), strict=True))
    assert got == [
        ("rejected", 0.0),
        ("rejected", 0.0),
        ("rejected", 0.0),
        ("accepted", 1.0),
        ("accepted", 0.0),
        ("not_saved", 0.0),
        ("saved", 1.0),
        ("not_escalated", 0.0),
    ]


def test_a_score_keeps_no_comment_or_text_unless_content_is_captured() -> None:
    """A refused score (a session score, a text value where a number is due) was quarantined
    with its comment and text, and the text echoed in the reason the SDK logs; a CORRECTION
    score (a corrected output, SDK v5) was refused as 'not a number'. Its text is a label kept
    only with content capture, as a TEXT score's is."""
    from yieldmeter.ingest.langfuse_scores import scores_to_batch

    secret = "SECRET patient John Doe"
    scores = [
        {"sessionId": "s-1", "name": "helpful", "value": 1, "comment": secret},
        {"traceId": TRACE, "name": "relevance", "value": secret, "dataType": "NUMERIC"},
        {"traceId": TRACE, "name": "fix", "value": secret, "dataType": "CORRECTION", "comment": secret},
        {"traceId": TRACE, "name": "x", "value": {"note": secret}, "metadata": {"why": secret}},
    ]
    for capture in (False, True):
        b = scores_to_batch(
            scores, score_signals={}, capture_content=capture, now=datetime(2025, 3, 1, tzinfo=UTC)
        )
        assert b.ids[2] is not None and all(b.errors[:2]) and b.errors[3]
        kept = " ".join(
            [
                *b.errors[:2],
                b.errors[3],
                *b.batch.rejects.column("raw").to_pylist(),
                *b.batch.rejects.column("reason").to_pylist(),
            ]
        )
        [attributes] = b.batch.tables["signals"].column("attributes").to_pylist()
        assert (secret in kept) is capture and (secret in attributes) is capture, (capture, kept)
        if not capture:
            assert "(content not kept" in kept


LANGFUSE_KEY = IngestKey(public_key="pk-lf-test", secret_key="sk-lf-test", org="acme")


def test_real_langfuse_sdk(tmp_path: Path) -> None:
    """The Langfuse Python SDK (v5), unchanged, with its host pointed at yieldmeter: its Basic auth
    (public:secret key) is checked against the configured ingest key, and every row lands in
    that key's org."""
    langfuse = pytest.importorskip("langfuse")
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=ServerSettings(ingest_keys=[LANGFUSE_KEY]))
    with serving(app) as url:
        lf = langfuse.Langfuse(
            public_key="pk-lf-test", secret_key="sk-lf-test", host=url, tracing_enabled=True
        )
        assert lf.auth_check()  # Langfuse's start-up check: GET /api/public/projects (was a 404)
        # another public key (the SDK shares one client per public key), not configured: 401
        wrong = langfuse.Langfuse(
            public_key="pk-lf-other", secret_key="nope", host=url, tracing_enabled=False
        )
        with pytest.raises(Exception, match=r"401|[Uu]nauthori"):
            wrong.auth_check()
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
    assert call["org"] == "acme"  # Basic auth -> ingest key -> org
    [sig] = rows(root, "SELECT * FROM signals")
    assert (sig["kind"], sig["value"], sig["work_unit_id"], sig["org"]) == ("accepted", 1.0, trace_id, "acme")


def _older_langfuse_sdk(request: pytest.FixtureRequest, version: str) -> Path:
    """Langfuse ``version`` installed (without its dependencies, which the project's own SDK
    shares) into pytest's cache, beside the project's newer SDK; skipped when PyPI is out of reach."""
    import subprocess
    import sys

    target = Path(request.config.cache.mkdir(f"langfuse-{version}"))
    if not (target / "langfuse").is_dir():
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
        done = subprocess.run([*cmd, f"langfuse=={version}"], capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            pytest.skip(f"langfuse {version} could not be installed: {done.stderr[-300:]}")
    return target


@pytest.mark.parametrize("version", ["3.15.0", "4.18.0"])
def test_older_langfuse_sdks_send_scores_to_the_ingestion_api(
    tmp_path: Path, request: pytest.FixtureRequest, version: str
) -> None:
    """Langfuse SDK v3 and v4 export spans over OTLP like v5, but post scores as ``score-create``
    events to ``/api/public/ingestion``. Each runs unchanged in its own process."""
    import os
    import subprocess
    import sys

    sdk = _older_langfuse_sdk(request, version)
    root = make_workspace(tmp_path / "ws")
    app = receiver_app(root, settings=ServerSettings(ingest_keys=[LANGFUSE_KEY]))
    script = Path(__file__).parent / "langfuse_legacy_sdk.py"
    with serving(app) as url:
        env = {**os.environ, "PYTHONPATH": str(sdk)}
        done = subprocess.run(
            [sys.executable, str(script), url, LANGFUSE_KEY.public_key, LANGFUSE_KEY.secret_key],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
        assert out["sdk"].startswith(str(sdk))  # the older SDK ran, not the project's v5
    [call] = rows(root, "SELECT * FROM calls")
    assert (call["model"], call["input_tokens"], call["cached_input_tokens"], call["org"]) == (
        "acme-chat",
        1000,
        400,
        "acme",
    )
    signals = {s["kind"]: s for s in rows(root, "SELECT * FROM signals")}
    assert set(signals) == {"accepted", "rated"}  # helpful -> accepted (score_signals); relevance
    assert (signals["accepted"]["value"], signals["rated"]["value"]) == (1.0, 0.75)
    assert {s["work_unit_id"] for s in signals.values()} == {out["trace_id"]}
    assert {s["org"] for s in signals.values()} == {"acme"}


def test_ingestion_api_answers_per_event_as_langfuse_does(tmp_path: Path) -> None:
    """The documented payload of ``POST /api/public/ingestion``: a 207 with successes and errors;
    score-create events stored, every other event type refused by name and nothing of it stored."""
    app = receiver_app(make_workspace(tmp_path / "ws"), settings=ServerSettings(ingest_keys=[LANGFUSE_KEY]))
    basic = {"authorization": "Basic " + base64.b64encode(b"pk-lf-test:sk-lf-test").decode()}
    t = "2025-03-01T10:00:05.000Z"

    def event(ev_id: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": ev_id, "type": kind, "timestamp": t, "body": body}

    score_1 = {"id": "sc-1", "traceId": TRACE, "name": "relevance", "value": 0.4, "dataType": "NUMERIC"}
    score_2 = {
        "id": "sc-2",
        "traceId": TRACE,
        "observationId": f"{1:016x}",
        "name": "helpful",
        "value": 0,
        "dataType": "BOOLEAN",
        "comment": "wrong policy",
    }
    batch = [
        event("e1", "score-create", score_1),
        event("e2", "score-create", score_2),
        event("e3", "trace-create", {"id": TRACE, "input": "my secret prompt"}),
        event("e4", "generation-create", {"id": "g", "output": "secret answer"}),
        {"id": "e5", "type": "no-such-type", "body": {}},
        event("e6", "score-create", {"sessionId": "s-1", "name": "x", "value": 1}),  # no work unit
        "not an event",
    ]
    with TestClient(app) as c:
        assert c.post("/api/public/ingestion", json={"batch": batch}).status_code == 401
        r = c.post(
            "/api/public/ingestion", json={"batch": batch, "metadata": {"sdk_name": "python"}}, headers=basic
        )
        assert r.status_code == 207
        body = r.json()
        assert body["successes"] == [{"id": "e1", "status": 201}, {"id": "e2", "status": 201}]
        errors = {e["id"]: e for e in body["errors"]}
        assert set(errors) == {"e3", "e4", "e5", "e6", "event-6"} and {
            e["status"] for e in errors.values()
        } == {400}
        assert "/api/public/otel/v1/traces" in errors["e3"]["message"]
        assert "not a Langfuse ingestion event type" in errors["e5"]["message"]
        assert "traceId or observationId" in errors["e6"]["message"]
        assert c.post("/api/public/ingestion", json=[1], headers=basic).status_code == 400
        ws = c.app.state.ctx.workspace  # type: ignore[attr-defined]
        sig = {s["signal_id"]: s for s in ws.store.query_arrow("SELECT * FROM signals").to_pylist()}
        stored = (
            ws.store.query_arrow("SELECT * FROM calls").num_rows,
            ws.store.query_arrow("SELECT * FROM quarantine"),
        )
    assert set(sig) == {"sc-1", "sc-2"} and stored[0] == 0  # the trace and the generation: not stored
    assert (sig["sc-1"]["kind"], sig["sc-1"]["value"], sig["sc-1"]["org"]) == ("rated", 0.4, "acme")
    # helpful (mapped to accepted) false: a thumbs-down, so rejected
    assert (sig["sc-2"]["kind"], sig["sc-2"]["value"]) == ("rejected", 0.0)
    assert sig["sc-1"]["ts"].isoformat() == "2025-03-01T10:00:05+00:00"  # the event's timestamp
    assert "wrong policy" not in sig["sc-2"]["attributes"]  # a comment is content: off by default
    assert "secret" not in str(stored[1].to_pylist())


def test_a_framework_step_sent_after_the_call_under_it_is_structure(client: TestClient) -> None:
    """The Collector's batch boundary falls between an OpenLIT LangChain step reporting usage and
    its provider's chat span: two requests, the chat first. One call lands (900 input tokens,
    not 1,800); /healthz counts the step as structure, and, with the order reversed in another
    trace, the stored step as taken back. In one request (a third trace) the mapping keeps the
    step as structure, counted there too."""
    step = {**CHAT, "gen_ai.operation.name": "framework", "gen_ai.usage.input_tokens": 900}
    chat = {**CHAT, "gen_ai.usage.input_tokens": 900}
    other, third = "0af7651916cd43dd8448eb211c80319c", "1bf7651916cd43dd8448eb211c80319c"
    for spans in (
        [span(2, chat, parent=f"{1:016x}")], [span(1, step)],  # the call first
        [span(1, step, trace=other)], [span(2, chat, parent=f"{1:016x}", trace=other)],  # the step first
        [span(1, step, trace=third), span(2, chat, parent=f"{1:016x}", trace=third)],  # together
    ):  # fmt: skip
        assert client.post("/v1/traces", content=request(*spans), headers=JS).status_code == 200
        stored(client)  # each request in a transaction of its own (queued ones would share one)
    ingest = client.get("/healthz").json()["ingest"]
    assert (ingest["calls_as_structure"], ingest["calls_taken_back"]) == (2, 1)
    ws = client.app.state.ctx.workspace  # type: ignore[attr-defined]
    rows = ws.store.query_arrow("SELECT operation, input_tokens FROM calls").to_pylist()
    assert rows == [{"operation": "chat", "input_tokens": 900}] * 3


def test_healthz_counts_ignored_spans_and_calls_without_model(client: TestClient) -> None:
    no_model = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 5}
    body = request(span(1, {"http.request.method": "GET"}), span(2, no_model), span(3, CHAT))
    assert client.post("/v1/traces", content=body, headers=JS).status_code == 200
    stored(client)
    ingest = client.get("/healthz").json()["ingest"]
    assert (ingest["spans_ignored"], ingest["calls_without_model"], ingest["rows_landed"]) == (1, 1, 2)
    assert any("carry no model" in n for n in ingest["notes"])
    more = request(span(4, {"db.system": "postgresql"}), span(5, {"http.route": "/x"}))
    assert client.post("/v1/traces", content=more, headers=JS).status_code == 200
    stored(client)
    ingest = client.get("/healthz").json()["ingest"]
    assert (ingest["spans_ignored"], ingest["calls_without_model"]) == (3, 1)  # totals since start
