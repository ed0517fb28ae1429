"""OpenTelemetry GenAI spans -> canonical rows: every spelling, the token accounting, linkage, structure.

Spans are built here in the OTLP JSON encoding (hex ids, int64 as strings)
and, where the encoding matters, in protobuf with the opentelemetry-proto
messages; both go through the one mapping in ``yieldmeter.ingest.otlp``.
"""

from __future__ import annotations

import base64
import gzip
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from yieldmeter.app.workspace import Workspace
from yieldmeter.ingest.base import Batch, ReadOptions
from yieldmeter.ingest.otlp import UnreadableRequest
from yieldmeter.ingest.otlp_json import decode_json
from yieldmeter.ingest.otlp_json import read as read_otlp_json
from yieldmeter.ingest.otlp_protobuf import decode_protobuf

T0 = 1_740_823_200_000_000_000  # 2025-03-01T10:00:00Z in ns
TRACE = "5b8efff798038103d269b633813fc60c"


def kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, list):
        return {"key": key, "value": {"arrayValue": {"values": [{"stringValue": v} for v in value]}}}
    return {"key": key, "value": {"stringValue": value}}


def span(
    n: int,
    attrs: dict[str, Any],
    *,
    trace: str = TRACE,
    parent: str = "",
    events: list | None = None,
    status: dict | None = None,
    ms: int = 1500,
) -> dict[str, Any]:
    return {
        "traceId": trace,
        "spanId": f"{n:016x}",
        "parentSpanId": parent,
        "name": f"span {n}",
        "kind": 3,
        "startTimeUnixNano": str(T0 + n * 1_000_000),
        "endTimeUnixNano": str(T0 + n * 1_000_000 + ms * 1_000_000),
        "attributes": [kv(k, v) for k, v in attrs.items()],
        "events": events or [],
        "status": status or {},
    }


def request(*spans: dict[str, Any], resource: dict[str, Any] | None = None) -> bytes:
    res = {"attributes": [kv(k, v) for k, v in (resource or {"service.name": "claims-api"}).items()]}
    doc = {
        "resourceSpans": [{"resource": res, "scopeSpans": [{"scope": {"name": "t"}, "spans": list(spans)}]}]
    }
    return orjson.dumps(doc)


def protobuf(*spans: dict[str, Any]) -> bytes:
    """The spans as a binary ``ExportTraceServiceRequest`` (protobuf's JSON mapping wants the hex
    ids of OTLP JSON as base64)."""
    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    doc = orjson.loads(request(*spans))
    for s in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for k in ("traceId", "spanId", "parentSpanId"):
            s[k] = base64.b64encode(bytes.fromhex(s[k])).decode()
    return ParseDict(doc, ExportTraceServiceRequest()).SerializeToString()


def decode(*spans: dict[str, Any], **kw: Any) -> Batch:
    resource = kw.pop("resource", None)
    return decode_json(request(*spans, resource=resource), ReadOptions(source="otlp", **kw))


def calls_by_span(batch: Batch) -> dict[int, dict[str, Any]]:
    return {int(r["span_id"], 16): r for r in batch.tables["calls"].to_pylist()}


CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
}


# -- spellings and accounting ---------------------------------------------------------------------
def test_current_spelling_and_conventions_accounting() -> None:
    attrs = {
        **CHAT,
        "gen_ai.usage.input_tokens": 1200,  # includes 200 cache reads and 100 cache writes (OTel)
        "gen_ai.usage.output_tokens": 300,  # includes 50 reasoning tokens
        "gen_ai.usage.cache_read.input_tokens": 200,
        "gen_ai.usage.cache_creation.input_tokens": 100,
        "gen_ai.usage.reasoning.output_tokens": 50,
        "gen_ai.conversation.id": "conv-9",
        "server.address": "api.openai.com",
        "user.id": "u-7",
        "gen_ai.response.id": "chatcmpl-1",
    }
    b = decode(span(1, attrs), resource={"service.name": "claims-api", "deployment.environment.name": "prod"})
    row = calls_by_span(b)[1]
    # Nothing added twice: the parts are already inside input and output.
    assert (row["input_tokens"], row["cached_input_tokens"], row["cache_write_tokens"]) == (1200, 200, 100)
    assert (row["output_tokens"], row["reasoning_tokens"]) == (300, 50)
    assert (row["provider"], row["model"], row["operation"]) == ("openai", "gpt-4o-2024-08-06", "chat")
    assert (row["app"], row["environment"], row["user_id"]) == ("claims-api", "prod", "u-7")
    assert row["call_id"] == f"{TRACE}-{1:016x}"
    assert row["duration_ms"] == pytest.approx(1500)
    assert row["ts"].isoformat() == "2025-03-01T10:00:00.001000+00:00"
    assert row["work_unit_id"] == "conv-9" and row["session_id"] == "conv-9"
    extra = json.loads(row["attributes"])
    assert extra["gen_ai.request.model"] == "gpt-4o"  # kept because it differs from the response model
    assert extra["gen_ai.response.id"] == "chatcmpl-1"


def test_legacy_spelling() -> None:
    attrs = {
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.prompt_tokens": 10,
        "gen_ai.usage.completion_tokens": 5,
        "gen_ai.usage.cache_creation_input_tokens": 0,
        "enduser.id": "legacy-user",
    }
    row = calls_by_span(decode(span(2, attrs), resource={"deployment.environment": "staging"}))[2]
    assert (row["provider"], row["model"], row["operation"]) == ("openai", "gpt-4o-mini", "chat")
    assert (row["input_tokens"], row["output_tokens"]) == (10, 5)
    assert (row["user_id"], row["environment"]) == ("legacy-user", "staging")


def test_newer_cache_write_name_and_instrumentations_that_count_apart() -> None:
    # An Anthropic instrumentation that reports uncached input only: 100 < 2000 + 500 reveals it,
    # so input = 100 + 2000 + 500 = 2600; reasoning 80 > output 20 likewise -> output 100.
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.cache_read.input_tokens": 2000,
        "gen_ai.usage.cache_write.input_tokens": 500,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.reasoning.output_tokens": 80,
    }
    row = calls_by_span(decode(span(3, attrs)))[3]
    assert (row["input_tokens"], row["cached_input_tokens"], row["cache_write_tokens"]) == (2600, 2000, 500)
    assert (row["output_tokens"], row["reasoning_tokens"]) == (100, 80)


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        # OpenLIT breaks down OpenAI's inclusive counts
        (
            {
                "gen_ai.usage.prompt_tokens_details.cache_read": 800,
                "gen_ai.usage.prompt_tokens_details.cache_write": 100,
                "gen_ai.usage.completion_tokens_details.reasoning": 60,
            },
            (800, 100, 60),
        ),
        # Vercel AI SDK v5: inputTokens (and gen_ai.usage.input_tokens) hold the cached ones
        ({"ai.usage.cachedInputTokens": 800, "ai.usage.reasoningTokens": 60}, (800, 0, 60)),
        # Vercel AI SDK v6: the details, beside the v5 name it still writes
        (
            {
                "ai.usage.inputTokenDetails.cacheReadTokens": 800,
                "ai.usage.cachedInputTokens": 800,
                "ai.usage.inputTokenDetails.cacheWriteTokens": 100,
                "ai.usage.outputTokenDetails.reasoningTokens": 60,
            },
            (800, 100, 60),
        ),
    ],
)
def test_openlit_and_ai_sdk_cache_and_reasoning_spellings(spelling: dict, expected: tuple) -> None:
    """1,000 input tokens of which 800 cache reads (and 100 writes), 200 output of which 60
    reasoning: the parts are read, and inside the counts (800 + 100 = 900 <= 1,000 input,
    60 <= 200 output), so input and output stay 1,000 and 200 and nothing is noted."""
    attrs = {**CHAT, "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200, **spelling}
    b = decode(span(1, attrs))
    row = calls_by_span(b)[1]
    assert (row["cached_input_tokens"], row["cache_write_tokens"], row["reasoning_tokens"]) == expected
    assert (row["input_tokens"], row["output_tokens"]) == (1000, 200) and b.notes == []
    assert not set(spelling) & set(json.loads(row["attributes"]))  # read into columns, not repeated


@pytest.mark.parametrize("op", ["chat", "text_completion", "generate_content", "embeddings"])
def test_model_operations_become_calls(op: str) -> None:
    row = calls_by_span(
        decode(span(4, {**CHAT, "gen_ai.operation.name": op, "gen_ai.usage.input_tokens": 7}))
    )[4]
    assert row["operation"] == op and row["input_tokens"] == 7


def test_provider_from_server_address_and_error_status() -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-x",
        "server.address": "api.anthropic.com",
        "error.type": "overloaded_error",
    }
    row = calls_by_span(decode(span(5, attrs, status={"code": 2, "message": "529"})))[5]
    assert row["provider"] == "anthropic" and row["status"] == "error"
    assert json.loads(row["attributes"])["status.message"] == "529"


# -- linkage --------------------------------------------------------------------------------------
def test_work_unit_linkage_order() -> None:
    explicit = {
        **CHAT,
        "yieldmeter.work_unit.id": "claim-42",
        "yieldmeter.workflow": "claims-triage",
        "yieldmeter.task_type": "classify",
        "gen_ai.conversation.id": "conv-1",
    }
    conversation = {**CHAT, "gen_ai.conversation.id": "conv-1"}
    bare = dict(CHAT)
    b = decode(
        span(1, explicit), span(2, conversation), span(3, bare), resource={"yieldmeter.team": "claims-ops"}
    )
    rows = calls_by_span(b)
    assert (rows[1]["work_unit_id"], rows[1]["workflow"], rows[1]["task_type"]) == (
        "claim-42",
        "claims-triage",
        "classify",
    )
    assert rows[2]["work_unit_id"] == "conv-1"
    assert rows[3]["work_unit_id"] == TRACE  # per trace when nothing else links it
    assert {r["team"] for r in rows.values()} == {"claims-ops"}  # resource-wide default


def test_content_dropped_unless_captured() -> None:
    attrs = {
        **CHAT,
        "gen_ai.input.messages": '[{"role":"user","content":"my card number"}]',
        "gen_ai.prompt.0.content": "legacy prompt",
        "gen_ai.output.messages": "[]",
    }
    off = calls_by_span(decode(span(1, attrs)))[1]["attributes"] or ""
    assert "card number" not in off and "legacy prompt" not in off
    on = json.loads(calls_by_span(decode(span(1, attrs), capture_content=True))[1]["attributes"])
    assert "card number" in on["gen_ai.input.messages"] and on["gen_ai.prompt.0.content"] == "legacy prompt"


def test_non_genai_spans_are_ignored_and_counted() -> None:
    b = decode(span(1, {"http.request.method": "GET"}), span(2, {"db.system": "postgresql"}), span(3, CHAT))
    assert b.ignored == 2 and b.tables["calls"].num_rows == 1 and b.rejects.num_rows == 0


# -- structure and evaluation events --------------------------------------------------------------
def test_agent_and_tool_spans_kept_as_structure() -> None:
    agent = span(
        1,
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "triager",
            "gen_ai.usage.input_tokens": 999,
            "gen_ai.provider.name": "openai",
        },
        ms=5000,
    )
    tool = span(
        2,
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_policy"},
        parent=f"{1:016x}",
        status={"code": 2},
    )
    chat = span(3, {**CHAT, "gen_ai.usage.input_tokens": 100}, parent=f"{1:016x}")
    b = decode(agent, tool, chat)
    # The agent's 999 tokens are its children's total; only the chat call counts.
    assert b.tables["calls"].num_rows == 1
    assert b.tables["calls"].column("parent_span_id")[0].as_py() == f"{1:016x}"
    [unit] = b.tables["work_units"].to_pylist()
    assert unit["work_unit_id"] == TRACE and unit["task_type"] == "triager" and not unit["derived"]
    assert (unit["ended_at"] - unit["started_at"]).total_seconds() == 5
    [sig] = b.tables["signals"].to_pylist()
    assert (sig["kind"], sig["actor"], sig["value"], sig["work_unit_id"]) == (
        "tool_call",
        "lookup_policy",
        0.0,
        TRACE,
    )


REMOTE_AGENT = {
    "gen_ai.operation.name": "invoke_agent",
    "gen_ai.provider.name": "aws.bedrock",
    "gen_ai.agent.name": "support-bot",
    "gen_ai.agent.id": "AGENT7X2Q",  # the Bedrock agent's id, which InvokeAgent needs
    "gen_ai.request.model": "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "gen_ai.usage.input_tokens": 5000,
    "gen_ai.usage.output_tokens": 700,
}


@pytest.mark.parametrize("kind", [3, "SPAN_KIND_CLIENT"])
def test_a_remote_agent_s_usage_is_a_call(kind: Any) -> None:
    """Semconv's invoke agent client span (Bedrock Agents): the model runs in the remote
    service and no span of its calls comes here, so the span's usage is a call; its work unit
    is kept as for any agent."""
    b = decode(dict(span(1, REMOTE_AGENT), kind=kind))
    row = calls_by_span(b)[1]
    assert (row["operation"], row["input_tokens"], row["output_tokens"]) == ("invoke_agent", 5000, 700)
    assert row["model"] == "anthropic.claude-3-5-sonnet-20240620-v1:0" and row["provider"] == "aws.bedrock"
    [unit] = b.tables["work_units"].to_pylist()
    assert unit["task_type"] == "support-bot"
    # the same through protobuf
    pb = decode_protobuf(protobuf(span(1, REMOTE_AGENT)), ReadOptions(source="otlp"))
    assert pb.tables["calls"].column("input_tokens").to_pylist() == [5000]


def test_an_agent_s_usage_is_not_counted_again_beside_its_calls() -> None:
    """An in-process agent (INTERNAL) sums its children's usage; a client agent span with a
    call of the batch under it (before or after it) too: only the calls count."""
    internal = decode(dict(span(1, REMOTE_AGENT), kind=1))
    assert internal.tables["calls"].num_rows == 0 and internal.tables["work_units"].num_rows == 1
    child = span(2, {**CHAT, "gen_ai.usage.input_tokens": 4000}, parent=f"{1:016x}")
    for spans in ((span(1, REMOTE_AGENT), child), (child, span(1, REMOTE_AGENT))):
        b = decode(*spans)
        assert sorted(calls_by_span(b)) == [2] and b.notes == []


def test_an_in_process_agent_sent_as_a_client_span_is_not_counted_twice() -> None:
    """Strands (up to 1.12): the agent is a CLIENT span carrying the run's summed usage, its
    model spans sit under ``execute_event_loop_cycle`` spans, and each span may come in a
    request of its own. No remote endpoint nor hosted agent is named: structure only, in any
    batching. Truth: the one chat call's 1000 input and 200 output tokens."""
    agent_attrs = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.system": "strands-agents",
        "gen_ai.agent.name": "Strands Agents",
        "gen_ai.request.model": "us.anthropic.claude-sonnet-4",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 200,
    }
    agent = span(1, agent_attrs)
    assert agent["kind"] == 3  # CLIENT
    cycle = span(2, {"gen_ai.operation.name": "execute_event_loop_cycle"}, parent=f"{1:016x}")
    chat_attrs = {**agent_attrs, "gen_ai.operation.name": "chat"}
    del chat_attrs["gen_ai.agent.name"]
    chat = span(3, chat_attrs, parent=f"{2:016x}")
    batchings = ([chat, cycle, agent], [chat], [cycle], [agent], [agent, cycle], [chat, agent])
    landed = {n: 0 for n in range(len(batchings))}
    for n, spans in enumerate(batchings):
        b = decode(*spans)
        if "calls" in b.tables:
            landed[n] = sum(b.tables["calls"].column("input_tokens").to_pylist())
    # the chat span's 1000 where it is sent, nothing for the agent in any batching
    assert landed == {0: 1000, 1: 1000, 2: 0, 3: 0, 4: 0, 5: 1000}


def test_a_remote_agent_is_known_by_its_endpoint_or_hosted_agent_id() -> None:
    """A client span naming its remote endpoint (``server.address``) is a remote agent's, as is
    one naming a hosted-agent provider with the agent's id; a hosted provider without an agent
    id (an in-process agent naming its model's provider) is structure only."""
    by_endpoint = {**REMOTE_AGENT, "gen_ai.provider.name": "acme-agents", "server.address": "agents.acme.io"}
    del by_endpoint["gen_ai.agent.id"]
    assert decode(span(1, by_endpoint)).tables["calls"].column("input_tokens").to_pylist() == [5000]
    no_id = dict(REMOTE_AGENT)
    del no_id["gen_ai.agent.id"]
    b = decode(span(1, no_id))
    assert b.tables["calls"].num_rows == 0 and b.tables["work_units"].num_rows == 1


def test_an_agent_s_system_prompt_is_content() -> None:
    """Strands' ``gen_ai.agent.system_prompt`` is prompt text: a remote agent's call (which
    keeps the agent span's other attributes) drops it unless capture_content is on."""
    attrs = {**REMOTE_AGENT, "gen_ai.agent.system_prompt": "You are the claims bot. Secret policy"}
    off = json.loads(calls_by_span(decode(span(1, attrs)))[1]["attributes"])
    assert "gen_ai.agent.system_prompt" not in off and off["gen_ai.agent.name"] == "support-bot"
    on = json.loads(calls_by_span(decode(span(1, attrs), capture_content=True))[1]["attributes"])
    assert on["gen_ai.agent.system_prompt"].startswith("You are")
    from yieldmeter.ingest.otlp_semconv import is_content_key

    assert is_content_key("gen_ai.system_message") and not is_content_key("gen_ai.system")


def test_a_rejected_agent_span_leaves_no_work_unit() -> None:
    """A remote agent's span whose usage is refused is rejected whole: the work unit it
    describes is taken back too, and an earlier unit it replaced is restored."""
    bad = {**REMOTE_AGENT, "yieldmeter.work_unit.id": "wu-42", "gen_ai.usage.output_tokens": -1}
    b = decode(span(1, bad))
    assert b.rejects.num_rows == 1 and "work_units" not in b.tables
    # a later-starting agent span of wu-42 first, then the bad one (starting earlier) replaces
    # it and is rejected: the first unit stays, as if the bad span never came
    good = span(5, {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "first",
                    "yieldmeter.work_unit.id": "wu-42"})  # fmt: skip
    b = decode(good, span(1, bad))
    [unit] = b.tables["work_units"].to_pylist()
    assert b.rejects.num_rows == 1 and unit["task_type"] == "first"


def test_evaluation_events_become_rated_signals() -> None:
    ev = [
        {
            "name": "gen_ai.evaluation.result",
            "timeUnixNano": str(T0 + 9_000_000_000),
            "attributes": [
                kv("gen_ai.evaluation.name", "relevance"),
                kv("gen_ai.evaluation.score.value", 0.8),
            ],
        },
        {
            "name": "gen_ai.evaluation.result",
            "timeUnixNano": str(T0 + 9_000_000_000),
            "attributes": [
                kv("gen_ai.evaluation.name", "helpful"),
                kv("gen_ai.evaluation.score.value", 1.0),
                kv("gen_ai.evaluation.explanation", "the user said thanks"),
            ],
        },
        {"name": "gen_ai.content.prompt", "attributes": []},
    ]
    b = decode(
        span(1, {**CHAT, "gen_ai.conversation.id": "c-1"}, events=ev), score_signals={"helpful": "accepted"}
    )
    sig = {s["kind"]: s for s in b.tables["signals"].to_pylist()}
    assert set(sig) == {"rated", "accepted"}
    assert sig["rated"]["value"] == 0.8 and sig["rated"]["work_unit_id"] == "c-1"
    assert sig["rated"]["ts"].isoformat() == "2025-03-01T10:00:09+00:00"
    assert "thanks" not in sig["accepted"]["attributes"]  # an explanation is content


# -- Langfuse SDK attributes ------------------------------------------------------------------------
def test_langfuse_generation_attributes() -> None:
    attrs = {
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": "gpt-4o",
        "langfuse.observation.usage_details": json.dumps(
            {"input": 600, "input_cached_tokens": 400, "output": 100}
        ),
        "langfuse.observation.cost_details": json.dumps({"input": 0.002, "output": 0.001, "total": 0.003}),
        "langfuse.observation.input": "secret",
        "langfuse.trace.tags": ["support"],
        "langfuse.trace.metadata": json.dumps({"yieldmeter.workflow": "support-answers"}),
        "user.id": "u-1",
        "session.id": "s-1",
    }
    b = decode(span(1, attrs), span(2, {"langfuse.observation.type": "span"}))
    row = calls_by_span(b)[1]
    # exclusive buckets: 600 + 400 cached = 1000 input
    assert (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"]) == (1000, 400, 100)
    assert row["reported_cost"] == pytest.approx(0.003)
    assert (row["user_id"], row["session_id"], row["workflow"]) == ("u-1", "s-1", "support-answers")
    assert "secret" not in row["attributes"]
    assert json.loads(row["attributes"])["langfuse.trace.tags"] == ["support"]
    assert b.ignored == 1  # a plain Langfuse span


@pytest.mark.parametrize(
    "usage",
    [
        # what langfuse.openai and the LangChain handler pass through: OpenAI's inclusive counts
        # with nested breakdowns (chat completions, the Responses API), and LangChain's own
        {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100,
         "prompt_tokens_details": {"cached_tokens": 400, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 60, "audio_tokens": 0}},
        {"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100,
         "input_tokens_details": {"cached_tokens": 400}, "output_tokens_details": {"reasoning_tokens": 60}},
        {"input_tokens": 1000, "output_tokens": 100, "total_tokens": 1100,
         "input_token_details": {"cache_read": 400, "audio": 0}, "output_token_details": {"reasoning": 60}},
    ],
)  # fmt: skip
def test_langfuse_usage_with_nested_breakdowns(usage: dict) -> None:
    """The counts are inclusive (1000 input holds the 400 cached, 100 output the 60 reasoning):
    the call has 1000 / 100, not 1400 / 160; the span was quarantined as 'not a whole number'."""
    attrs = {
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": "gpt-4o",
        "langfuse.observation.usage_details": json.dumps(usage),
    }
    b = decode(span(1, attrs))
    assert b.rejects.num_rows == 0
    row = calls_by_span(b)[1]
    got = (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"], row["reasoning_tokens"])
    assert got == (1000, 400, 100, 60)


# -- bad input ------------------------------------------------------------------------------------
def test_langfuse_v3_trace_attributes_on_the_root_span_reach_the_trace_s_calls() -> None:
    """SDK v3's update_trace(user_id, session_id, tags, metadata) sets them on the root span,
    a plain observation (no call). Langfuse applies them trace-wide: so do the calls of the
    trace in the same batch, where they lack them; the trace's input stays content."""
    other = "0123456789abcdef0123456789abcdef"
    root = span(
        1,
        {
            "langfuse.observation.type": "span",
            "user.id": "user-v3",
            "session.id": "session-v3",
            "langfuse.trace.tags": ["production"],
            "langfuse.trace.metadata.yieldmeter.workflow": '"claims-triage"',
            "langfuse.trace.input": "SECRET",
        },
    )
    generation = {
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": "gpt-4o",
        "langfuse.observation.usage_details": '{"input": 100, "output": 20}',
    }
    own = {**generation, "user.id": "someone-else"}
    b = decode(
        span(2, generation, parent=f"{1:016x}"),  # before the root: the order does not matter
        root,
        span(3, own, parent=f"{1:016x}"),
        span(4, generation, trace=other),
    )
    rows = calls_by_span(b)
    assert (rows[2]["user_id"], rows[2]["session_id"], rows[2]["workflow"]) == (
        "user-v3",
        "session-v3",
        "claims-triage",
    )
    attrs = json.loads(rows[2]["attributes"])
    assert attrs["langfuse.trace.tags"] == ["production"] and "SECRET" not in rows[2]["attributes"]
    assert rows[3]["user_id"] == "someone-else" and rows[3]["session_id"] == "session-v3"
    assert (rows[4]["user_id"], rows[4]["session_id"], rows[4]["workflow"]) == (None, None, None)
    assert (rows[2]["input_tokens"], rows[2]["output_tokens"]) == (100, 20) and b.ignored == 1


def test_bad_spans_are_rejected_with_reasons_and_the_rest_lands() -> None:
    b = decode(
        span(1, {**CHAT, "gen_ai.usage.input_tokens": -3}),
        span(2, {**CHAT, "gen_ai.usage.output_tokens": 10**12}),
        span(3, {**CHAT, "gen_ai.usage.input_tokens": "lots"}),
        dict(span(4, CHAT), traceId="not-hex"),
        dict(span(5, CHAT), startTimeUnixNano="0"),
        span(6, CHAT, status={"code": 7}),
        span(
            7, {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 5}
        ),  # no model: lands, unpriced
        span(8, CHAT),
        dict(span(9, CHAT), startTimeUnixNano="1", endTimeUnixNano="2"),  # 1970: a clock error
    )
    reasons = dict(
        zip(b.rejects.column("position").to_pylist(), b.rejects.column("reason").to_pylist(), strict=True)
    )
    assert "gen_ai.usage.input_tokens: negative (-3)" in reasons[1]
    assert "gen_ai.usage.output_tokens: 1,000,000,000,000 is more tokens" in reasons[2]
    assert "gen_ai.usage.input_tokens: not a whole number ('lots')" in reasons[3]
    assert "trace_id: missing or not 32 hex digits" in reasons[4]
    assert "startTimeUnixNano: missing" in reasons[5]
    # the checks on the mapped rows name the span too, as those made while mapping do
    assert reasons[6] == "span 0000000000000006: status: not one of ok, error"
    assert (
        reasons[9]
        == "span 0000000000000009: ts: not between 1990-01-01 and 2100-01-01 (a unit or clock error?)"
    )
    assert sorted(calls_by_span(b)) == [7, 8]
    assert calls_by_span(b)[7]["model"] is None and "no model" in b.notes[0]


def test_json_with_protobuf_field_names_is_read() -> None:
    """protobuf's JSON printer keeping the field names (``preserving_proto_field_name``) writes
    ``resource_spans``, ``scope_spans``, ``trace_id``, ``string_value``: the spec's keys are
    lowerCamelCase, but the request is plain enough to read. It was acknowledged with 200 and
    nothing stored: ``scope_spans`` was not looked for."""
    from google.protobuf.json_format import MessageToJson
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans = (span(1, {**CHAT, "gen_ai.conversation.id": "c-1"}), span(2, CHAT))
    message = ExportTraceServiceRequest.FromString(protobuf(*spans))
    body = MessageToJson(message, preserving_proto_field_name=True).encode()
    assert b'"scope_spans"' in body and b'"string_value"' in body
    got = decode_json(body, ReadOptions(source="otlp"))
    want = decode(*spans)
    assert got.rejects.num_rows == 0
    assert got.tables["calls"].to_pylist() == want.tables["calls"].to_pylist()


def test_json_with_protobuf_field_names_nested_deep_is_read_as_camel_case_is() -> None:
    """A value nested 240 maps deep (about 960 JSON levels, within orjson's 1,024) under
    protobuf's field names: the key renaming recursed once per level and raised RecursionError
    (a 500); now the request reads as the same body in camelCase does: one call."""

    def body(snake: bool) -> bytes:
        kv_, sv = ("kvlist_value", "string_value") if snake else ("kvlistValue", "stringValue")
        deep = f'{{"{sv}":"x"}}'
        for _ in range(240):
            deep = f'{{"{kv_}":{{"values":[{{"key":"k","value":{deep}}}]}}}}'
        names = ("trace_id", "span_id", "start_time_unix_nano") if snake else (
            "traceId", "spanId", "startTimeUnixNano")  # fmt: skip
        model = f'{{"key":"gen_ai.request.model","value":{{"{sv}":"gpt-4o"}}}}'
        attrs = f'[{model},{{"key":"custom.deep","value":{deep}}}]'
        one = f'{{"{names[0]}":"{TRACE}","{names[1]}":"{1:016x}","{names[2]}":"{T0}","attributes":{attrs}}}'
        rs, ss = ("resource_spans", "scope_spans") if snake else ("resourceSpans", "scopeSpans")
        return f'{{"{rs}":[{{"{ss}":[{{"spans":[{one}]}}]}}]}}'.encode()

    camel = decode_json(body(False), ReadOptions(source="otlp"))
    snake = decode_json(body(True), ReadOptions(source="otlp"))
    assert camel.tables["calls"].num_rows == 1 and camel.rejects.num_rows == 0
    assert snake.tables["calls"].to_pylist() == camel.tables["calls"].to_pylist()


def test_wrong_json_types() -> None:
    with pytest.raises(UnreadableRequest):
        decode_json(b'{"resourceSpans": "nope"}', ReadOptions(source="x"))
    with pytest.raises(UnreadableRequest):
        decode_json(b"[1, 2]", ReadOptions(source="x"))
    with pytest.raises(UnreadableRequest):
        decode_json(b"{not json", ReadOptions(source="x"))
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [5, {"traceId": TRACE, "attributes": "x"}]}]}]}
    b = decode_json(orjson.dumps(doc), ReadOptions(source="x"))
    assert b.rejects.num_rows == 2 and b.tables["calls"].num_rows == 0


def test_int_as_number_and_base64_ids() -> None:
    s = span(1, CHAT)
    s["attributes"].append(
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": 42}}
    )  # a number, not a string
    s["traceId"] = base64.b64encode(bytes.fromhex(TRACE)).decode()
    row = decode(s).tables["calls"].to_pylist()[0]
    assert row["input_tokens"] == 42 and row["trace_id"] == TRACE


def test_protobuf_and_json_map_identically() -> None:
    spans = [
        span(
            1,
            {
                **CHAT,
                "gen_ai.usage.input_tokens": 11,
                "gen_ai.usage.output_tokens": 3,
                "gen_ai.conversation.id": "c",
            },
        ),
        span(2, {"http.route": "/x"}),
    ]
    body = request(*spans)
    pb = protobuf(*spans)
    a = decode_json(body, ReadOptions(source="otlp"))
    p = decode_protobuf(pb, ReadOptions(source="otlp"))
    assert a.tables["calls"].to_pylist() == p.tables["calls"].to_pylist()
    assert a.ignored == p.ignored == 1
    with pytest.raises(UnreadableRequest):
        decode_protobuf(pb[: len(pb) // 2], ReadOptions(source="otlp"))


# -- file import ----------------------------------------------------------------------------------
def test_collector_file_export_gzip_reimport_and_quarantine(tmp_path: Path) -> None:
    lines = [
        request(
            span(1, {**CHAT, "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10}),
            span(2, {"http.route": "/healthz"}),
        ),
        b'{"resourceSpans": [truncated',
        request(span(3, {**CHAT, "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 5})),
    ]
    path = tmp_path / "traces.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    ws = Workspace.init(tmp_path / "ws")
    try:
        first = ws.ingest_paths([path])
        [f] = first.files
        assert f.format == "otlp-json"
        assert (f.landed >= 2, f.ignored, f.quarantined) == (True, 1, 1)
        q = ws.quarantine().to_pylist()
        assert q[0]["position"] == 2 and q[0]["reason"].startswith("line 2: not valid JSON")
        second = ws.ingest_paths([path])
        assert second.total("landed") == 0
        assert ws.store.count("calls") == 2 and ws.store.count("quarantine") == 1
        # gpt-4o at the catalog price: 150 input x $2.50/M + 15 output x $10/M = $0.000525
        pcalls = ws.priced_calls().to_pyarrow()
        assert sum(pcalls.column("model_cost").to_pylist()) == pytest.approx(0.000525)
    finally:
        ws.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_live_file_s_half_written_last_line_is_settled_once_read_whole(
    tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Collector's file exporter mid-write: the last line is cut short, with no line end. It
    is quarantined saying so; once the line is whole, importing the file again lands it and
    deletes that row. A line that is broken and ended stays quarantined, and so does a new
    unended last line. Another file under the same name (the Collector rotated it) settles
    nothing, nor does a line cut before its first span id (it starts like any other request).
    With decode processes the same (a line a chunk there)."""
    from yieldmeter.ingest import otlp_json
    from yieldmeter.ingest.base import UNENDED_LINE

    monkeypatch.setattr(otlp_json, "CHUNK_BYTES", 64)

    def chat(i: int, tokens: int) -> bytes:
        return request(
            span(i, {**CHAT, "gen_ai.usage.input_tokens": tokens, "gen_ai.usage.output_tokens": 1})
        )

    def cut(line: bytes) -> bytes:  # a line cut short past its first span id
        return line[: line.index(b'"spanId"') + 40]

    broken = b'{"resourceSpans": [broken'
    whole = [chat(1, 100), broken, chat(3, 300)]
    path = tmp_path / "traces.jsonl"
    path.write_bytes(b"\n".join(whole[:2]) + b"\n" + cut(whole[2]))
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "yieldmeter.yaml").write_text(f"ingest:\n  decode_workers: {workers}\n")
    ws = Workspace.init(tmp_path / "ws")

    def quarantined() -> dict[int, str]:
        return {r["position"]: r["reason"] for r in ws.quarantine().to_pylist()}

    try:
        ws.ingest_paths([path])
        q = quarantined()
        assert sorted(q) == [2, 3] and q[3].endswith(UNENDED_LINE) and not q[2].endswith(UNENDED_LINE)
        assert ws.store.count("calls") == 1
        # rotated: another file of whole lines under the name, its line 3 another request
        path.write_bytes(b"\n".join([chat(5, 500), chat(6, 600), chat(7, 700)]) + b"\n")
        ws.ingest_paths([path])
        assert sorted(quarantined()) == [2, 3] and ws.store.count("calls") == 4
        # the first file back, its writer done with line 3 and half way through line 4
        path.write_bytes(b"\n".join(whole) + b"\n" + cut(chat(4, 400)))
        ws.ingest_paths([path])
        q = quarantined()
        assert sorted(q) == [2, 4] and q[4].endswith(UNENDED_LINE)
        assert ws.store.count("calls") == 5
        # the file ends whole (with or without a last line end): nothing unended is left
        path.write_bytes(b"\n".join([*whole, chat(4, 400)]))
        summary = ws.ingest_paths([path])
        assert summary.total("landed") == 1
        assert sorted(quarantined()) == [2]
        assert ws.store.count("calls") == 6
        # cut before its first span id, the line starts like any request: its row stays
        path.write_bytes(b"\n".join([*whole, chat(4, 400)]) + b"\n" + chat(8, 800)[:30])
        ws.ingest_paths([path])
        path.write_bytes(b"\n".join([*whole, chat(4, 400), chat(8, 800)]) + b"\n")
        ws.ingest_paths([path])
        assert sorted(quarantined()) == [2, 5] and ws.store.count("calls") == 7
    finally:
        ws.close()


def test_a_pretty_printed_request_and_json_lines_with_a_broken_first_line(tmp_path: Path) -> None:
    good = request(span(1, {**CHAT, "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10}))
    # one request spread over many lines (json.dumps with indent): read whole, one call
    pretty = json.dumps(json.loads(good), indent=2).encode()
    [batch] = read_otlp_json(io.BytesIO(pretty), ReadOptions(source="pretty.json"))
    assert batch.tables["calls"].num_rows == 1 and batch.rejects.num_rows == 0
    # JSON lines whose first line is cut short: that line is quarantined, the rest land
    other = request(span(2, {**CHAT, "gen_ai.usage.input_tokens": 50, "gen_ai.usage.output_tokens": 5}))
    lines = good[: len(good) // 2] + b"\n" + good + b"\n" + other + b"\n"
    [batch] = read_otlp_json(io.BytesIO(lines), ReadOptions(source="t.jsonl"))
    assert batch.tables["calls"].column("input_tokens").to_pylist() == [100, 50]
    [reject] = batch.rejects.to_pylist()
    assert reject["position"] == 1 and reject["reason"].startswith("line 1: not valid JSON")
    # the first line cut short, then a blank line or a second cut line (a Collector killed twice):
    # the whole file was read as one request, one quarantine row, and the good lines lost
    for second in (b"\n", other[:40] + b"\n"):
        lines = good[: len(good) // 2] + b"\n" + second + good + b"\n" + other + b"\n"
        [batch] = read_otlp_json(io.BytesIO(lines), ReadOptions(source="t.jsonl"))
        assert batch.tables["calls"].column("input_tokens").to_pylist() == [100, 50]
        bad = 1 if second == b"\n" else 2
        assert batch.rejects.column("position").to_pylist() == list(range(1, bad + 1))
    # ...or a stray log line: the whole file is then no one request either, and is read by line
    lines = good[:40] + b"\nWARN exporter restarted\n" + other + b"\n"
    [batch] = read_otlp_json(io.BytesIO(lines), ReadOptions(source="t.jsonl"))
    assert batch.tables["calls"].column("input_tokens").to_pylist() == [50]
    assert batch.rejects.column("position").to_pylist() == [1, 2]
    # valid requests as scripts write them: one list element per line, which opens with "{" but
    # is no request; a blank line first. Each read whole (they were read as broken JSON lines)
    elements = [json.loads(r)["resourceSpans"][0] for r in (good, other)]
    per_line = b'{"resourceSpans": [\n' + b",\n".join(orjson.dumps(e) for e in elements) + b"\n]}\n"
    for doc, calls in ((per_line, 2), (b"\n" + pretty, 1)):
        [batch] = read_otlp_json(io.BytesIO(doc), ReadOptions(source="script.json"))
        assert batch.rejects.num_rows == 0 and batch.tables["calls"].num_rows == calls


# -- content, whatever the spelling ---------------------------------------------------------------
CONTENT_SPELLINGS = [
    "langfuse.trace.input",
    "langfuse.trace.output",
    "langfuse.observation.input",
    "langfuse.observation.output",
    "langfuse.experiment.item.expected_output",
    "langfuse.experiment.item.input",
    "gen_ai.content.prompt",
    "gen_ai.content.completion",
    "gen_ai.prompt",
    "gen_ai.prompt.0.content",
    "gen_ai.completion.0.content",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "llm.prompts",
    "llm.input_messages.0.message.content",
    "traceloop.entity.input",
    "input.value",
    "output.value",
    "ai.prompt.messages",
    "ai.response.text",
    # Vercel AI SDK: what it records only with recordInputs / recordOutputs
    "ai.prompt",
    "ai.prompt.tools",
    "ai.response.toolCalls",
    "ai.response.reasoning",
    "ai.response.reasoningDetails",
    "ai.response.object",
    "ai.result.text",
    "ai.result.toolCalls",
    "ai.result.object",
    "ai.toolCall.args",
    "ai.toolCall.result",
    "ai.values",
    # Spring AI
    "spring.ai.tool.call.arguments",
    "spring.ai.tool.call.result",
    "spring.ai.chat.client.user.text",
    "spring.ai.chat.client.user.params",
    "spring.ai.chat.client.system.text",
    "spring.ai.chat.client.system.params",
    "spring.ai.chat.client.advisor.params",
    # OpenLIT
    "gen_ai.response.tool_calls",
    "gen_ai.tool.args",
]


@pytest.mark.parametrize("key", CONTENT_SPELLINGS)
def test_content_is_dropped_in_every_spelling(key: str) -> None:
    attrs = {**CHAT, key: "my card number is 4111", "langfuse.trace.metadata.yieldmeter.workflow": "w"}
    off = calls_by_span(decode(span(1, attrs)))[1]
    assert "4111" not in (off["attributes"] or "")
    on = json.loads(calls_by_span(decode(span(1, attrs), capture_content=True))[1]["attributes"])
    assert on[key] == "my card number is 4111"  # kept when privacy.capture_content is on


@pytest.mark.parametrize(
    ("provider", "model", "spelling", "expected"),
    [
        # AI SDK v5 + @ai-sdk/anthropic: input = Anthropic's 5000 uncached, 3000 cache reads
        # apart: input 5000 + 3000 = 8000
        ("anthropic.messages", "claude-sonnet-4-5", {"ai.usage.cachedInputTokens": 3000}, (8000, 3000, 0)),
        # AI SDK v5 + amazon-bedrock (Converse's inputTokens exclude the cache): 5000 + 3000
        ("amazon-bedrock", "anthropic.claude-3-5", {"ai.usage.cachedInputTokens": 3000}, (8000, 3000, 0)),
        # OpenLIT + Anthropic: 5000 uncached + 3000 reads + 1000 writes = 9000
        (
            "anthropic",
            "claude-sonnet-4-5",
            {
                "gen_ai.usage.prompt_tokens_details.cache_read": 3000,
                "gen_ai.usage.prompt_tokens_details.cache_write": 1000,
            },
            (9000, 3000, 1000),
        ),
        # Claude on Vertex AI: Anthropic's counts, 5000 + 3000
        ("gcp.vertex_ai", "claude-sonnet-4-5@2025", {"ai.usage.cachedInputTokens": 3000}, (8000, 3000, 0)),
        # OpenAI counts the cache inside: 5000 input of which 3000 cached
        ("openai", "gpt-4o", {"gen_ai.usage.prompt_tokens_details.cache_read": 3000}, (5000, 3000, 0)),
        ("openai.chat", "gpt-4o", {"ai.usage.cachedInputTokens": 3000}, (5000, 3000, 0)),
        # Gemini on Vertex counts it inside too
        ("gcp.vertex_ai", "gemini-2.5-pro", {"ai.usage.cachedInputTokens": 3000}, (5000, 3000, 0)),
        # AI SDK v6 with Anthropic: inputTokens is the total (8000, of which 3000 cached)
        (
            "anthropic.messages",
            "claude-sonnet-4-5",
            {"ai.usage.inputTokenDetails.cacheReadTokens": 3000, "ai.usage.cachedInputTokens": 3000},
            (5000, 3000, 0),
        ),
    ],
)
def test_provider_passed_cache_counts_follow_the_provider(
    provider: str, model: str, spelling: dict, expected: tuple
) -> None:
    """5000 input tokens as the instrumentation reports them, with the provider's cache counts:
    Anthropic (and Bedrock's Converse) report input without the cache, so the cache tokens are
    added; OpenAI and Gemini report them inside. Known from the provider, not guessed from the
    numbers: no note."""
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": provider,
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": 5000,
        "gen_ai.usage.output_tokens": 400,
        **spelling,
    }
    _assert_known_cache_counts(attrs, expected, reported_input=5000, output=400)


def _assert_known_cache_counts(attrs: dict, expected: tuple, reported_input: int, output: int) -> None:
    """The call's (input, cache read, cache write) are ``expected``; its cache tokens were added
    (``tokens_counted_apart``) exactly when its input grew past the reported one, and the batch
    has no note: known, not guessed from the numbers."""
    b = decode(span(1, attrs))
    row = calls_by_span(b)[1]
    assert (row["input_tokens"], row["cached_input_tokens"], row["cache_write_tokens"]) == expected
    assert row["output_tokens"] == output and b.notes == []
    apart = json.loads(row["attributes"] or "{}").get("yieldmeter.tokens_counted_apart")
    assert apart == ("cache" if expected[0] > reported_input else None)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # Bedrock's Converse counts (Strands' default model provider): 2000 uncached + 500 + 300
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", (2800, 500, 300)),
        ("amazon.nova-pro-v1:0", (2800, 500, 300)),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc", (2800, 500, 300)),
        # its OpenAI and LiteLLM providers pass prompt_tokens, the cache inside: 2000 in all
        ("gpt-4o", (2000, 500, 300)),
        ("anthropic/claude-sonnet-4-20250514", (2000, 500, 300)),
        ("bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", (2000, 500, 300)),
        # its OpenAI provider on Bedrock's OpenAI-compatible endpoint: prompt_tokens too
        ("openai.gpt-oss-120b-1:0", (2000, 500, 300)),
    ],
)
def test_strands_cache_counts_follow_its_model_provider(model: str, expected: tuple) -> None:
    """Strands Agents names itself the provider and passes its model provider's usage through:
    ``inputTokens`` with ``cacheReadInputTokens`` / ``cacheWriteInputTokens`` beside it. Bedrock
    counts input without the cache (added here), OpenAI and LiteLLM with it (parts of it). The
    model id tells which ran; known, not guessed from the numbers: no note."""
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "strands-agents",
        "gen_ai.request.model": model,
        "gen_ai.usage.prompt_tokens": 2000,
        "gen_ai.usage.input_tokens": 2000,
        "gen_ai.usage.completion_tokens": 150,
        "gen_ai.usage.output_tokens": 150,
        "gen_ai.usage.total_tokens": 2950,
        "gen_ai.usage.cache_read_input_tokens": 500,
        "gen_ai.usage.cache_write_input_tokens": 300,
    }
    _assert_known_cache_counts(attrs, expected, reported_input=2000, output=150)


def test_the_content_rule_keeps_what_is_not_text() -> None:
    from yieldmeter.ingest.otlp_semconv import is_content_key

    for key in (
        "gen_ai.usage.input_tokens",
        "gen_ai.output.type",
        "gen_ai.request.model",
        "gen_ai.tool.name",
        "langfuse.trace.tags",
        "langfuse.trace.metadata.yieldmeter.workflow",
        "http.request.body.size",
        "db.query.text",  # not a GenAI namespace: the rule does not guess there
        # counts and settings beside the content of the same instrumentations
        "ai.usage.promptTokens",
        "ai.usage.cachedInputTokens",
        "ai.usage.reasoningTokens",
        "ai.response.finishReason",
        "ai.model.id",
        "gen_ai.usage.completion_tokens_details.reasoning",
        "gen_ai.usage.prompt_tokens_details.cache_read",
        "gen_ai.request.tool_choice",
        "gen_ai.request.reasoning_effort",
        "spring.ai.tool.definition.name",
        "spring.ai.chat.client.conversation.id",
        "spring.ai.kind",
        # counts and settings the broadened rule took for text
        "llm.token_count.completion_details.reasoning",  # OpenInference: a count
        "ai.prompt.format",  # AI SDK: 'prompt' or 'messages'
        "ai.prompt.toolChoice",  # AI SDK: {"type":"auto"}
    ):
        assert not is_content_key(key), key
    assert is_content_key("ai.prompt.tools") and is_content_key("ai.prompt.messages")
    assert all(is_content_key(k) for k in CONTENT_SPELLINGS)


def test_instrumentations_content_is_dropped_from_calls_and_from_a_rejected_span() -> None:
    """Vercel AI SDK, Spring AI and OpenLIT content: neither a call's attributes nor the copy of
    a rejected span keeps it; their token counts stay."""
    content = {
        "ai.response.toolCalls": "SECRET-1",
        "ai.response.reasoning": "SECRET-2",
        "ai.response.object": "SECRET-3",
        "ai.result.toolCalls": "SECRET-4",
        "spring.ai.chat.client.user.text": "SECRET-5",
        "spring.ai.tool.call.arguments": "SECRET-6",
        "gen_ai.response.tool_calls": "SECRET-7",
    }
    kept = {"ai.usage.promptTokens": 100, "gen_ai.usage.completion_tokens_details.audio": 3}
    good = span(1, {**CHAT, **content, **kept})
    bad = span(2, {**CHAT, **content, **kept, "gen_ai.usage.input_tokens": -5})
    b = decode(good, bad)
    attrs = json.loads(calls_by_span(b)[1]["attributes"])
    [raw] = b.rejects.column("raw").to_pylist()
    assert "SECRET" not in json.dumps(attrs) and "SECRET" not in raw
    assert attrs["ai.usage.promptTokens"] == 100
    assert json.loads(raw)["attributes"]["ai.usage.promptTokens"] == 100


# -- smaller cases of the conventions -------------------------------------------------------------
def test_error_type_alone_marks_the_call_failed() -> None:
    row = calls_by_span(decode(span(1, {**CHAT, "error.type": "timeout"})))[1]  # no span status
    assert row["status"] == "error" and json.loads(row["attributes"])["error.type"] == "timeout"


def test_legacy_cache_creation_tokens_inside_and_apart() -> None:
    inside = {**CHAT, "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.cache_creation_input_tokens": 300}
    # counted apart: 100 uncached + 300 written = 400 input, and a note says it was read that way
    apart = {**CHAT, "gen_ai.usage.input_tokens": 100, "gen_ai.usage.cache_creation_input_tokens": 300}
    b = decode(span(1, inside), span(2, apart))
    rows = calls_by_span(b)
    assert (rows[1]["input_tokens"], rows[1]["cache_write_tokens"]) == (1000, 300)
    assert (rows[2]["input_tokens"], rows[2]["cache_write_tokens"]) == (400, 300)
    assert json.loads(rows[2]["attributes"])["yieldmeter.tokens_counted_apart"] == "cache"
    assert "yieldmeter.tokens_counted_apart" not in json.loads(rows[1]["attributes"])
    [note] = [n for n in b.notes if "cache" in n]
    assert note.startswith("1 span(s) report more cache read + write tokens than input tokens")


def test_the_counted_apart_guess_is_noted_for_reasoning_too() -> None:
    b = decode(
        span(1, {**CHAT, "gen_ai.usage.output_tokens": 20, "gen_ai.usage.reasoning.output_tokens": 80})
    )
    assert calls_by_span(b)[1]["output_tokens"] == 100
    assert any(n.startswith("1 span(s) report more reasoning tokens than output") for n in b.notes)
    assert decode(span(1, {**CHAT, "gen_ai.usage.output_tokens": 100})).notes == []


def test_an_unknown_operation_is_kept_as_a_call() -> None:
    """image_generation (or any operation the mapping does not know) is a model invocation that
    costs money: it lands as a call with its operation, priced if its model has a price."""
    row = calls_by_span(decode(span(1, {**CHAT, "gen_ai.operation.name": "image_generation"})))[1]
    assert row["operation"] == "image_generation" and row["model"] == "gpt-4o-2024-08-06"


@pytest.mark.parametrize(
    "op",
    [
        "retrieval",  # semconv
        "search_memory",
        "upsert_memory",
        "create_memory_store",
        "framework",  # Spring AI: chat client, advisors, tool calls
        "workflow",  # OpenLIT
        "retrieve",
        "vectordb",
    ],
)
def test_framework_steps_are_not_calls(op: str) -> None:
    """Retrieval, memory and framework spans are not model calls, even with a model named (the
    embedding model of a retrieval): ignored and counted; the chat beside them lands."""
    step = span(
        1, {"gen_ai.operation.name": op, "gen_ai.provider.name": "openai", "gen_ai.request.model": "m"}
    )
    b = decode(step, span(2, {**CHAT, "gen_ai.usage.input_tokens": 1000}))
    assert sorted(calls_by_span(b)) == [2] and b.ignored == 1 and b.rejects.num_rows == 0


def test_an_unknown_operation_is_a_call_only_with_a_model_or_usage() -> None:
    """plan, fetch_response or any operation not known here: no model and no usage is no call;
    with usage (a newer kind of inference) it is one, and its tokens count."""
    bare = {"gen_ai.operation.name": "plan", "gen_ai.provider.name": "openai"}
    used = {"gen_ai.operation.name": "fetch_response", "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 300, "gen_ai.usage.output_tokens": 40}  # fmt: skip
    b = decode(span(1, bare), span(2, used))
    rows = calls_by_span(b)
    assert sorted(rows) == [2] and b.ignored == 1
    assert (rows[2]["operation"], rows[2]["input_tokens"], rows[2]["output_tokens"]) == (
        "fetch_response",
        300,
        40,
    )


def test_a_framework_step_reporting_spend_is_a_call_unless_a_call_sits_under_it() -> None:
    """OpenLIT's LangChain handler writes an LLM's response model, tokens and cost on its
    ``framework`` span; where the provider below is not instrumented it is the only span of the
    inference, so it is a call (900 in, 150 out, 0.0021 reported). With the provider's own chat
    span under it in the batch, only the chat counts (its 900, not 900 + 900 = 1800). A span of
    an unknown operation reporting only a cost is a call too (unpriced, no model: a note). The
    step kept as structure is in the batch's ``summed`` (its span and parent); a chat under it
    that conform quarantines (an unknown status code) is no call under it: the step stays a call,
    so the usage is counted while the chat waits in the quarantine."""
    llm = {
        "gen_ai.system": "langchain",
        "gen_ai.operation.name": "framework",
        "gen_ai.response.model": "meta-llama/Llama-3.1-8B-Instruct",
        "gen_ai.usage.input_tokens": 900,
        "gen_ai.usage.output_tokens": 150,
        "gen_ai.usage.cost": 0.0021,
    }
    b = decode(span(1, llm))
    row = calls_by_span(b)[1]
    assert (row["operation"], row["input_tokens"], row["output_tokens"], row["reported_cost"]) == (
        "framework", 900, 150, 0.0021,
    )  # fmt: skip
    child = span(2, {**CHAT, "gen_ai.usage.input_tokens": 900}, parent=f"{1:016x}")
    for spans in ((span(1, llm), child), (child, span(1, llm))):
        b = decode(*spans)
        assert (
            sorted(calls_by_span(b)) == [2]
            and sum(b.tables["calls"].column("input_tokens").to_pylist()) == 900
        )
        assert b.summed.select(["span_id", "parent_span_id"]).to_pylist() == [
            {"span_id": f"{1:016x}", "parent_span_id": None}
        ]
    refused = span(2, {**CHAT, "gen_ai.usage.input_tokens": 900}, parent=f"{1:016x}", status={"code": 7})
    b = decode(span(1, llm), refused)
    assert sorted(calls_by_span(b)) == [1] and b.rejects.num_rows == 1 and b.summed.num_rows == 0
    cost_only = {
        "gen_ai.operation.name": "web_search",
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.cost": 0.025,
    }
    b = decode(span(3, cost_only))
    assert calls_by_span(b)[3]["reported_cost"] == 0.025 and b.ignored == 0


def _sequences(items: list[int]) -> Iterator[list[list[int]]]:
    """Every way to send ``items`` in requests: each ordered split into non-empty groups."""
    if not items:
        yield []
        return
    for size in range(1, len(items) + 1):
        for first in itertools.combinations(items, size):
            rest = [i for i in items if i not in first]
            for tail in _sequences(rest):
                yield [list(first), *tail]


def test_a_summing_span_and_the_call_under_it_count_once_across_requests(tmp_path: Path) -> None:
    """The framework step of the test above and its provider's chat span, exported in two
    requests (a batch boundary between them), in either order: the store keeps the chat only,
    900 input tokens, not 1,800. Nested steps (a LangChain chain's step 1 over step 2 over chat
    3) sent in every grouping and order (13 ways) leave the chat alone. A remote agent's client
    span (``invoke_agent`` with ``server.address``) is taken back the same way when the hosted
    agent's own chat span reaches the store after it. A parent id written in upper case or
    base64 meets its span; an attribute named ``parent_span_id``, at the top or inside a map
    attribute, does not stand for the span's parent. A summing span with no call under it stays
    a call; a step kept as structure adds no model to the model map, and re-sending everything
    changes nothing."""
    llm = {
        "gen_ai.system": "langchain",
        "gen_ai.operation.name": "framework",
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 900,
        "gen_ai.usage.output_tokens": 150,
    }
    agent = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.agent.id": "AGENT1",
        "server.address": "bedrock-agent-runtime.us-east-1.amazonaws.com",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 900,
        "gen_ai.usage.output_tokens": 150,
    }

    def chat(n: int, parent: int | str, trace: str) -> dict[str, Any]:
        up = parent if isinstance(parent, str) else f"{parent:016x}"
        return span(n, {**CHAT, "gen_ai.usage.input_tokens": 900}, parent=up, trace=trace)

    def trace(k: int) -> str:
        return f"{k:032x}"

    def step_under(n: int, parent: int, trace: str) -> dict[str, Any]:
        return span(n, {**llm, "gen_ai.usage.input_tokens": 800}, parent=f"{parent:016x}", trace=trace)

    def rooted(n: int, key: str, trace: str) -> dict[str, Any]:
        s = span(n, {**CHAT, "gen_ai.usage.input_tokens": 900}, trace=trace)
        named = f"{0xAB:016x}" if key != "parent_span_id" else f"{0xAA:016x}"
        value = (
            {"kvlistValue": {"values": [kv("parent_span_id", named)]}}
            if key != "parent_span_id"
            else {"stringValue": named}
        )
        s["attributes"].append({"key": key, "value": value})
        return s

    unknown = {**llm, "gen_ai.response.model": "mystery-model-x"}
    mapped = chat(2, 0xCD, trace(6))
    mapped["attributes"].append(
        {
            "key": "langchain.metadata",
            "value": {"kvlistValue": {"values": [kv("parent_span_id", f"{0xAB:016x}")]}},
        }
    )
    orders = {  # trace -> its requests, in the order they are sent
        # the call first; the step comes with a call of its own trace beside it
        trace(1): [[chat(2, 1, trace(1))], [span(1, unknown, trace=trace(1)), chat(9, "", trace(1))]],
        trace(2): [[span(1, llm, trace=trace(2))], [chat(2, 1, trace(2))]],  # the sum first
        trace(3): [[span(1, llm, trace=trace(3))]],  # a step with no call under it
        trace(4): [[span(1, agent, trace=trace(4))], [chat(2, 1, trace(4))]],
        trace(5): [  # parents in upper case and in base64, one a request after its step
            [span(0xAB, llm, trace=trace(5))],
            [chat(2, f"{0xAB:016X}", trace(5))],
            [chat(3, base64.b64encode(bytes.fromhex(f"{0xEF:016x}")).decode(), trace(5))],
            [span(0xEF, llm, trace=trace(5))],
        ],
        trace(6): [[span(0xAB, llm, trace=trace(6))], [mapped]],  # 0xAB is not the chat's parent
        # chat 3 under step 2 under step 1; the chat sent alone, with step 2 (kept as structure
        # by the mapping), alone again, then step 1
        trace(7): [
            [chat(3, 2, trace(7))],
            [step_under(2, 1, trace(7)), chat(3, 2, trace(7))],
            [chat(3, 2, trace(7))],
            [span(1, llm, trace=trace(7))],
        ],
        # root calls naming a parent only where they must not be read: a map attribute, and an
        # attribute of the column's name
        trace(8): [[span(0xAB, llm, trace=trace(8))], [rooted(4, "langchain.metadata", trace(8))]],
        trace(9): [[span(0xAA, llm, trace=trace(9))], [rooted(4, "parent_span_id", trace(9))]],
        # a request of steps only, whose calls (the steps) all end as structure: step 1 (under a
        # span of another service) by the mapping, step 2 by the store; sent again below
        trace(10): [[chat(3, 2, trace(10))], [step_under(1, 0x77, trace(10)), step_under(2, 1, trace(10))]],
    }
    step2 = {**llm, "gen_ai.usage.input_tokens": 800}
    nested = [span(1, llm, trace="t"), span(2, step2, parent=f"{1:016x}", trace="t"), chat(3, 2, "t")]
    ways = list(_sequences([0, 1, 2]))
    assert len(ways) == 13
    for k, way in enumerate(ways):
        t = trace(100 + k)
        orders[t] = [[{**nested[i], "traceId": t} for i in group] for group in way]
    simple = [trace(k) for k in (1, 2, 4)]

    def rounds(traces: list[str]) -> list[list[dict[str, Any]]]:
        """The requests of ``traces``: the k-th request of each trace goes in the k-th (one write
        for many traces, so the test makes few writes; each trace keeps its own order)."""
        most = max(len(orders[t]) for t in traces)
        return [[sp for t in traces if k < len(orders[t]) for sp in orders[t][k]] for k in range(most)]

    def send(requests: list[list[dict[str, Any]]]) -> list[Any]:
        return [ws.ingest_batches([decode(*spans)], source="otlp", fmt="otlp") for spans in requests]

    with Workspace.init(tmp_path / "ws") as ws:
        # the simple traces one by one, to read what each write says
        summaries = {t: send(orders[t]) for t in simple}
        every = [s for ss in summaries.values() for s in ss]
        every += send(rounds([t for t in orders if t not in simple]))
        stored = ws.store.con.execute(
            "SELECT trace_id, span_id, input_tokens FROM calls ORDER BY ALL"
        ).fetchall()
        by_trace: dict[str, list[tuple[int, int]]] = {}
        for t, s, n in stored:
            by_trace.setdefault(t, []).append((int(s, 16), n))
        assert by_trace == {
            trace(1): [(2, 900), (9, 900)],
            trace(2): [(2, 900)],
            trace(3): [(1, 900)],
            trace(4): [(2, 900)],
            trace(5): [(2, 900), (3, 900)],
            trace(6): [(2, 900), (0xAB, 900)],
            trace(7): [(3, 900)],
            trace(8): [(4, 900), (0xAB, 900)],
            trace(9): [(4, 900), (0xAA, 900)],
            trace(10): [(3, 900)],
            **{trace(100 + k): [(3, 900)] for k in range(13)},
        }
        assert all(s.accounted for s in every)
        # one summing span each dropped by the store: as structure (sent after its call) or
        # taken back (stored before it)
        dropped = [[(s.structure, s.taken_back) for s in summaries[t]] for t in simple]
        assert dropped == [[(0, 0), (1, 0)], [(0, 0), (0, 1)], [(0, 0), (0, 1)]]
        # each step with a call under it is counted once, as structure or taken back, by the
        # mapping or the store: the 13 nested groupings' two steps each, one step each in traces
        # 1, 2 and 4, two in 5 (0xAB, 0xEF), 7 (steps 2 and 1) and 10 (steps 1 and 2); the steps
        # of traces 3, 6, 8 and 9 have no call under them and stay calls
        assert sum(s.structure + s.taken_back for s in every) == 13 * 2 + 3 * 1 + 2 + 2 + 2
        parents = dict(
            ws.store.con.execute("SELECT trace_id || span_id, parent_span_id FROM calls").fetchall()
        )
        assert parents[trace(2) + f"{2:016x}"] == f"{1:016x}" and parents[trace(9) + f"{4:016x}"] is None
        assert parents[trace(5) + f"{3:016x}"] == f"{0xEF:016x}"  # base64 written as hex
        assert not ws.store.con.execute(
            "SELECT count(*) FROM calls WHERE json_extract_string(attributes, '$.parent_span_id') "
            "IS NOT NULL AND span_id <> ?",
            [f"{4:016x}"],
        ).fetchone()[0]  # the parent is a column; only the span that named one keeps its own
        assert any("framework or agent spans reporting usage" in n for s in every for n in s.notes)
        assert summaries[trace(1)][1].unpriced == 0
        models = {r[0] for r in ws.store.con.execute("SELECT model FROM model_map").fetchall()}
        assert "mystery-model-x" not in models
        again = send(rounds(list(orders)))
        again += send(orders[trace(10)][1:])  # alone: no call of the write is written at all
        assert sum(s.landed for s in again) == 0 and sum(s.taken_back for s in again) == 0
        assert (
            ws.store.con.execute("SELECT trace_id, span_id, input_tokens FROM calls ORDER BY ALL").fetchall()
            == stored
        )
        assert ws.store.con.execute("SELECT count(*) FROM summed_spans").fetchone()[0] == len(
            ws.store.con.execute(
                "SELECT DISTINCT trace_id, span_id, parent_span_id FROM summed_spans"
            ).fetchall()
        )  # each once, though sent again


def test_two_store_objects_on_one_file_both_know_the_steps_kept_as_structure(tmp_path: Path) -> None:
    """Each store object keeps in memory the hashes of the spans above the stored calls and
    summed spans, to skip reading the store for a step nothing can be under. Another object's
    write that only keeps a step as structure (step 2, over a stored chat: ``summed_spans``
    written, no call) makes the first read them again, so step 1 above it comes later as
    structure: the trace counts the chat's 900 input tokens, not 900 + 800."""
    from yieldmeter.store.duckdb_store import Store

    llm = {"gen_ai.system": "langchain", "gen_ai.operation.name": "framework",
           "gen_ai.response.model": "gpt-4o", "gen_ai.usage.input_tokens": 800}  # fmt: skip
    t, u = f"{1:032x}", f"{2:032x}"

    def write(store: Store, *spans: dict[str, Any]) -> tuple[int, int]:
        b = decode(*spans)
        r = store.write_batch(b.tables, b.rejects, summed=b.summed)["calls"]
        return r.landed, r.structure

    a = Store.open(tmp_path / "s.duckdb")
    b = Store.open(tmp_path / "s.duckdb")
    try:
        assert write(a, span(3, {**CHAT, "gen_ai.usage.input_tokens": 900}, parent=f"{2:016x}", trace=t)) == (
            1,
            0,
        )
        assert write(a, span(9, llm, trace=u)) == (1, 0)  # a step with nothing under it: a's hashes made
        assert write(b, span(2, llm, parent=f"{1:016x}", trace=t)) == (0, 1)
        assert write(a, span(1, llm, trace=t)) == (0, 1)
        total = a.con.execute("SELECT sum(input_tokens) FROM calls WHERE trace_id = ?", [t]).fetchone()[0]
        assert total == 900
    finally:
        b.close()
        a.close()


def test_a_parent_id_that_is_not_text_is_kept_as_text() -> None:
    """A ``parentSpanId`` JSON gives as a number, an object or a boolean is no span id: it is
    kept as text in ``parent_span_id`` (as the mapping keeps other odd values), and the span
    and the rest of the request land."""
    odd = [123, {"x": 1}, True]
    spans = [span(k + 1, CHAT) for k in range(len(odd))] + [span(9, CHAT, parent=f"{1:016x}")]
    for s, value in zip(spans, odd, strict=False):
        s["parentSpanId"] = value
    b = decode(*spans)
    parents = {n: r["parent_span_id"] for n, r in calls_by_span(b).items()}
    assert parents == {1: "123", 2: '{"x":1}', 3: "True", 9: f"{1:016x}"} and not b.rejects.num_rows


def test_a_store_of_schema_4_moves_parents_out_of_attributes(tmp_path: Path) -> None:
    """Schema 4 kept a call's parent span in its ``attributes`` (``parent_span_id``, after the
    span's own attributes) and the parents of the steps the mapping kept as structure above it
    in another key (``yieldmeter.summed_parents``, nearest first, last), and had no
    ``summed_spans`` before stop 33. Migration 5 moves the parent to its column and the chain to
    ``summed_spans``, leaving ``attributes`` as the mapping writes them now: the same requests
    sent again are duplicates, and step 1, above the step kept as structure, comes later and is
    known to have a call under it (structure, not a second count of the chat's 900 tokens)."""
    step = {
        "gen_ai.system": "langchain",
        "gen_ai.operation.name": "framework",
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 800,
    }
    chat = {**CHAT, "gen_ai.usage.input_tokens": 900, "gen_ai.conversation.id": "c1", "custom.a": "x"}
    request = [
        span(2, step, parent=f"{1:016x}"),
        span(3, chat, parent=f"{2:016x}"),
        span(5, chat, parent="9" * 16),
    ]
    own_tail = ("status.message", "gen_ai.conversation.id", "gen_ai.request.model")
    with Workspace.init(tmp_path / "ws") as ws:
        first = ws.ingest_batches([decode(*request)], source="otlp", fmt="otlp")
        assert (first.landed, first.structure) == (2, 1)
        con = ws.store.con
        fresh = con.execute("SELECT call_id, parent_span_id, attributes FROM calls ORDER BY 1").fetchall()
        for call_id, parent, text in fresh:  # written as schema 4 wrote them
            attrs = orjson.loads(text)
            old = {k: v for k, v in attrs.items() if k not in own_tail}
            old["parent_span_id"] = parent
            old.update({k: v for k, v in attrs.items() if k in own_tail})
            if call_id.endswith(f"{3:016x}"):
                old["yieldmeter.summed_parents"] = f"{1:016x}"
            con.execute(
                "UPDATE calls SET attributes = ? WHERE call_id = ?", [orjson.dumps(old).decode(), call_id]
            )
        con.execute("ALTER TABLE calls DROP COLUMN parent_span_id")
        con.execute("DROP TABLE summed_spans")
        con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
        root = ws.root
    with Workspace.open(root) as ws:
        con = ws.store.con
        assert (
            con.execute("SELECT call_id, parent_span_id, attributes FROM calls ORDER BY 1").fetchall()
            == fresh
        )
        assert con.execute("SELECT trace_id, span_id, parent_span_id FROM summed_spans").fetchall() == [
            (TRACE, f"{2:016x}", f"{1:016x}")
        ]
        again = ws.ingest_batches([decode(*request)], source="otlp", fmt="otlp")
        assert (again.landed, again.duplicates, again.structure) == (0, 2, 1)
        # step 2 is known once, though the migration gave it the chat's start (it had no other)
        assert con.execute("SELECT count(*) FROM summed_spans").fetchone()[0] == 1
        later = ws.ingest_batches([decode(span(1, step))], source="otlp", fmt="otlp")
        assert (later.landed, later.structure) == (0, 1)
        assert con.execute("SELECT sum(input_tokens) FROM calls").fetchone()[0] == 1800  # chats 3 and 5


def _eval(value: Any, time: Any = None) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "name": "gen_ai.evaluation.result",
        "attributes": [kv("gen_ai.evaluation.name", "relevance"), kv("gen_ai.evaluation.score.value", value)],
    }
    if time is not None:
        ev["timeUnixNano"] = time
    return ev


def test_evaluation_event_times() -> None:
    b = decode(
        span(1, CHAT, events=[_eval(0.5)]),  # no time: the span's
        span(2, CHAT, events=[_eval(0.6, str(2**64 + 5))]),  # beyond int64: the span's, and said so
        span(3, {"http.route": "/x"}, events=[_eval(0.7)]),  # on a span that is not GenAI
    )
    sig = {s["value"]: s for s in b.tables["signals"].to_pylist()}
    assert sig[0.5]["ts"].isoformat() == "2025-03-01T10:00:00.001000+00:00"  # span 1 starts T0 + 1 ms
    assert sig[0.6]["ts"].isoformat() == "2025-03-01T10:00:00.002000+00:00"
    assert json.loads(sig[0.6]["attributes"])["unreadable_time"] == str(2**64 + 5)
    assert sig[0.7]["ts"].isoformat() == "2025-03-01T10:00:00.003000+00:00"
    assert b.ignored == 1 and b.rejects.num_rows == 0


def test_a_rejected_signal_counts_its_span_as_rejected() -> None:
    from yieldmeter.ingest.otlp import rejected_spans

    # OTLP JSON writes a NaN double as the string "NaN": read as a float, and no score can be NaN
    nan = {"key": "gen_ai.evaluation.score.value", "value": {"doubleValue": "NaN"}}
    bad = {**_eval(0.1), "attributes": [nan]}
    b = decode(span(1, CHAT, events=[bad]), span(2, CHAT))
    assert b.tables["calls"].num_rows == 2  # the call itself is fine
    n, message = rejected_spans(b)
    assert n == 1 and message == "signals: span 0000000000000001: value: not a number"  # names its span


# -- whatever shape a span takes, only that span is rejected --------------------------------------
def test_keys_that_are_not_strings_land_as_text() -> None:
    s = span(1, CHAT)
    s["attributes"] += [
        {"key": 5, "value": {"stringValue": "five"}},
        {"key": None, "value": {"intValue": "3"}},
        {"key": "nested", "value": {"kvlistValue": {"values": [{"key": 7, "value": {"intValue": "1"}}]}}},
    ]
    bad = span(2, {**CHAT, "gen_ai.usage.input_tokens": -1})
    bad["attributes"].append({"key": 9, "value": {"stringValue": "x"}})
    b = decode(s, bad)
    extra = json.loads(calls_by_span(b)[1]["attributes"])
    assert (extra["5"], extra["None"], extra["nested"]) == ("five", 3, {"7": 1})
    [reason] = b.rejects.column("reason").to_pylist()
    assert "gen_ai.usage.input_tokens: negative" in reason
    assert json.loads(b.rejects.column("raw")[0].as_py())["attributes"]["9"] == "x"


def test_times_beyond_int64_reject_only_their_span() -> None:
    agent = span(1, {"gen_ai.operation.name": "invoke_agent", "yieldmeter.work_unit.id": "w-1"})
    agent["endTimeUnixNano"] = str(2**64)
    late = dict(span(2, CHAT), startTimeUnixNano=str(2**70))
    b = decode(agent, late, span(3, CHAT))
    reasons = dict(
        zip(b.rejects.column("position").to_pylist(), b.rejects.column("reason").to_pylist(), strict=True)
    )
    assert "endTimeUnixNano" in reasons[1] and "after the year 2100" in reasons[1]
    assert "startTimeUnixNano" in reasons[2]
    assert sorted(calls_by_span(b)) == [3] and "work_units" not in b.tables


def test_a_malformed_resource_rejects_only_its_own_spans() -> None:
    good = json.loads(request(span(3, CHAT)))["resourceSpans"][0]
    broken = json.loads(request(span(1, CHAT), span(2, CHAT)))["resourceSpans"][0]
    broken["resource"]["attributes"] = [{"key": ["not", "hashable"], "value": {"stringValue": "x"}}]
    b = decode_json(orjson.dumps({"resourceSpans": [broken, good]}), ReadOptions(source="otlp"))
    assert sorted(calls_by_span(b)) == [3]
    assert b.rejects.column("position").to_pylist() == [1, 2]
    assert all("resource.attributes" in r for r in b.rejects.column("reason").to_pylist())


# -- service tiers --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key",
    [
        "openai.response.service_tier",  # semconv
        "gen_ai.openai.response.service_tier",  # semconv before 1.37, OpenLLMetry
        "gen_ai.response.service_tier",  # OpenLIT
        "openai.request.service_tier",
        "gen_ai.openai.request.service_tier",
        "gen_ai.request.service_tier",
    ],
)
def test_a_service_tier_in_every_spelling_is_the_call_s(key: str) -> None:
    row = calls_by_span(decode(span(1, {**CHAT, key: "Flex"})))[1]
    assert row["service_tier"] == "flex"
    assert key not in json.loads(row["attributes"] or "{}")  # the column holds it


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        # the tier that served the call, not the one asked for
        ({"openai.request.service_tier": "auto", "openai.response.service_tier": "priority"}, "priority"),
        ({"openai.request.service_tier": "auto"}, None),
        ({"openai.response.service_tier": "default"}, None),
        ({"gen_ai.response.service_tier": "standard_only"}, None),  # Anthropic's word, via OpenLIT
        ({}, None),
    ],
)
def test_the_response_s_tier_comes_first_and_standard_is_none(attrs: dict, expected: str | None) -> None:
    spans = [span(1, {**CHAT, **attrs})]
    assert calls_by_span(decode(*spans))[1]["service_tier"] == expected
    assert calls_by_span(decode_protobuf(protobuf(*spans), ReadOptions(source="otlp")))[1][
        "service_tier"
    ] == (expected)


def test_a_collector_file_with_tiers_is_priced_at_each_tier(tmp_path: Path) -> None:
    """Read by the file import's columnar reader, which leaves a span with a tier to the mapping.
    gpt-5 on 2026-11-02, 1,000,000 input and 1,000,000 output tokens (genai-prices 0.2.3):
    flex $0.625 + $5 = $5.625; priority $2.50 + $20 = $22.50; none $1.25 + $10 = $11.25."""
    t0 = 1_793_613_600_000_000_000  # 2026-11-02T10:00:00Z in ns
    usage = {"gen_ai.usage.input_tokens": 1_000_000, "gen_ai.usage.output_tokens": 1_000_000}
    gpt5 = {**CHAT, "gen_ai.request.model": "gpt-5", "gen_ai.response.model": "gpt-5", **usage}
    spans = [
        span(1, {**gpt5, "openai.response.service_tier": "flex"}),
        span(2, {**gpt5, "openai.response.service_tier": "priority"}),
        span(3, gpt5),
    ]
    for s in spans:
        s["startTimeUnixNano"] = str(t0)
        s["endTimeUnixNano"] = str(t0 + 1_000_000_000)
    path = tmp_path / "traces.jsonl"
    path.write_bytes(request(*spans) + b"\n")
    with Workspace.init(tmp_path / "ws") as ws:
        ws.ingest_paths([path])
        got = {
            int(r["span_id"], 16): (r["service_tier"], r["model_cost"])
            for r in ws.priced_calls().to_pyarrow().to_pylist()
        }
    assert got == {
        1: ("flex", pytest.approx(5.625)),
        2: ("priority", pytest.approx(22.5)),
        3: (None, pytest.approx(11.25)),
    }


@pytest.mark.parametrize(
    "key",
    [
        "gen_ai.usage.cache_creation.ephemeral_1h_input_tokens",
        "gen_ai.usage.cache_creation.ephemeral_1h.input_tokens",
    ],
)
def test_one_hour_cache_writes_are_a_part_of_the_writes_priced_at_their_rate(
    tmp_path: Path, key: str
) -> None:
    """claude-3-5-sonnet-20241022 on 2025-03-01, 10,000 input tokens (the conventions': cache
    writes inside) of which 4,000 cache writes, 1,000 of them for an hour. By hand from
    genai-prices 0.2.3: 6,000 x $3/M + 3,000 x $3.75/M + 1,000 x $6/M = $0.03525. A span that
    reports the hour's writes alone wrote at least those: 1,000 writes, all for an hour."""
    claude = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-3-5-sonnet-20241022",
        "gen_ai.usage.input_tokens": 10_000,
        "gen_ai.usage.output_tokens": 0,
    }
    spans = [
        span(1, {**claude, "gen_ai.usage.cache_creation.input_tokens": 4000, key: 1000}),
        span(2, {**claude, key: 1000}),
    ]
    rows = calls_by_span(decode(*spans))
    assert (rows[1]["cache_write_tokens"], rows[1]["cache_write_1h_tokens"]) == (4000, 1000)
    assert (rows[2]["cache_write_tokens"], rows[2]["cache_write_1h_tokens"]) == (1000, 1000)
    assert key not in json.loads(rows[1]["attributes"] or "{}")
    path = tmp_path / "traces.jsonl"
    path.write_bytes(request(spans[0]) + b"\n")
    with Workspace.init(tmp_path / "ws") as ws:
        ws.ingest_paths([path])  # the file import's columnar reader leaves the span to the mapping
        [cost] = ws.priced_calls().to_pyarrow().column("model_cost").to_pylist()
    assert cost == pytest.approx(0.03525, abs=1e-12)
