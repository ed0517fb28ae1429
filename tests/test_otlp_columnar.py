"""The columnar reader of OTLP JSON lines gives what the span-by-span mapping gives, byte for byte.

``decode_lines(..., columnar=False)`` maps every span with ``SpanRows`` (tested at length in
``test_ingest_otlp.py``); the default reads batches of plain spans as columns. Every test here
reads the same bytes both ways and compares the whole batches: rows, their order and types,
the ``attributes`` JSON text, rejects, ignored spans, notes. The generated lines start from a
plain model call and draw changes that make a span not plain (or only look so), so both the
columnar rows and the hand-over to the mapping are compared.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_ingest_otlp import kv
from yieldmeter.ingest.base import Batch, ReadOptions
from yieldmeter.ingest.otlp_columnar import read_chunk
from yieldmeter.ingest.otlp_json import decode_lines


def _kv(key: str, value: Any) -> dict[str, Any]:
    """An attribute as ``kv`` writes it, or with ``value`` as the raw ``AnyValue`` when a dict."""
    return {"key": key, "value": value} if isinstance(value, dict) else kv(key, value)


def _span(i: int, attrs: dict[str, Any] | list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    span = {
        "traceId": f"{i // 3 + 1:032x}",
        "spanId": f"{i + 1:016x}",
        "parentSpanId": f"{i + 100:016x}" if i % 2 else "",
        "name": "chat gpt-4o",
        "kind": 3,
        "startTimeUnixNano": str(1_765_000_000_000_000_000 + i * 1_000_000),
        "endTimeUnixNano": str(1_765_000_000_000_000_000 + i * 1_000_000 + 420_000_000),
        "attributes": attrs if isinstance(attrs, list) else [_kv(k, v) for k, v in attrs.items()],
        "status": {},
    }
    span.update(fields)
    return span


def _plain_attrs(i: int) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 1200 + i,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.cache_read.input_tokens": 200,
        "gen_ai.request.temperature": 0.7,
        "gen_ai.request.max_tokens": 1024,
        "gen_ai.response.finish_reasons": "stop",
        "gen_ai.conversation.id": f"conv-{i // 4}",
        "server.address": "api.openai.com",
        "user.id": f"u{i % 3}",
        "yieldmeter.workflow": "claims-triage",
        "gen_ai.prompt": "secret text",  # content: dropped unless captured
        "http.retries": True,
    }


def _line(spans: list[dict[str, Any]], resource: list[dict[str, Any]] | None = None) -> bytes:
    res = (
        resource
        if resource is not None
        else [_kv("service.name", "claims-api"), _kv("deployment.environment.name", "prod")]
    )
    doc = {
        "resourceSpans": [
            {"resource": {"attributes": res}, "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}
        ]
    }
    return orjson.dumps(doc) + b"\n"


def _both(chunk: bytes, **options: Any) -> tuple[list[Batch], list[Batch]]:
    opts = ReadOptions(source="traces.jsonl", **options)
    return decode_lines(chunk, 1, opts), decode_lines(chunk, 1, opts, columnar=False)


def _assert_same(fast: list[Batch], slow: list[Batch]) -> None:
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert a.ignored == b.ignored and a.no_model == b.no_model and a.notes == b.notes
        assert a.rejects.equals(b.rejects), (a.rejects.to_pylist(), b.rejects.to_pylist())
        assert sorted(a.tables) == sorted(b.tables)
        for name in b.tables:
            x, y = a.tables[name], b.tables[name]
            assert x.schema == y.schema
            for col in y.column_names:
                assert x[col].to_pylist() == y[col].to_pylist(), col
            assert x.equals(y)


def _columnar_batches(chunk: bytes, **options: Any) -> tuple[list[Batch] | None, int]:
    """What the columnar reader gives, and how many batches it handed to the mapping (batches
    of ``batch_rows`` spans, by default all)."""
    handed: list[int] = []
    opts = ReadOptions(source="traces.jsonl", **options)

    def fallback(lines: list[bytes], first: int) -> list[Batch]:
        handed.append(first)
        return decode_lines(b"".join(lines), first, opts, columnar=False)

    read = read_chunk(chunk, 1, opts, min(opts.batch_rows, 16_384), fallback)
    if read is None:
        return None, len(handed)
    batches, as_columns = read
    assert as_columns + len(handed) == len(batches)
    return batches, len(handed)


def test_plain_model_calls_are_read_as_columns_and_match_the_mapping() -> None:
    chunk = b"".join(_line([_span(i, _plain_attrs(i)) for i in range(j * 5, j * 5 + 5)]) for j in range(6))
    batches, handed = _columnar_batches(chunk)
    assert batches is not None and handed == 0  # every span plain: no batch went to the mapping
    calls = batches[0].tables["calls"]
    assert calls.num_rows == 30
    # span 1 by hand: input 1200 + 1 (cache reads are inside input), the response model wins,
    # the request model and the conversation stay in attributes, the prompt text is dropped
    row = calls.slice(1, 1).to_pylist()[0]
    assert (row["input_tokens"], row["output_tokens"], row["cached_input_tokens"]) == (1201, 300, 200)
    assert (row["model"], row["provider"], row["user_id"], row["work_unit_id"]) == (
        "gpt-4o-2024-08-06", "openai", "u1", "conv-0",
    )  # fmt: skip
    assert orjson.loads(row["attributes"]) == {
        "gen_ai.request.temperature": 0.7,
        "gen_ai.request.max_tokens": 1024,
        "gen_ai.response.finish_reasons": "stop",
        "server.address": "api.openai.com",
        "http.retries": True,
        "gen_ai.conversation.id": "conv-0",
        "gen_ai.request.model": "gpt-4o",
    }
    assert row["parent_span_id"] == f"{101:016x}"
    assert row["duration_ms"] == 420.0  # end - start: 420,000,000 ns in _span
    _assert_same(*_both(chunk))
    _assert_same(*_both(chunk, capture_content=True))
    _assert_same(*_both(chunk, batch_rows=7))  # batches cut after the line reaching 7 spans


def test_non_genai_spans_are_counted_as_ignored() -> None:
    spans = [
        _span(i, {"http.request.method": "GET", "url.path": "/x", "tags": {"arrayValue": {}}})
        for i in range(4)
    ]
    chunk = _line([*spans, _span(9, _plain_attrs(9))])
    batches, handed = _columnar_batches(chunk)
    assert batches is not None and handed == 0 and batches[0].ignored == 4
    _assert_same(*_both(chunk))


@pytest.mark.parametrize(
    "literal, text",
    [
        (b"1", b"1"),  # a whole number written as an int stays one in attributes, as orjson reads it
        (b"1.0", b"1.0"),
        (b"2.5e-3", b"0.0025"),
        (b"1e2", b"100.0"),
    ],
)
def test_doubles_keep_the_text_the_mapping_writes(literal: bytes, text: bytes) -> None:
    line = _line([_span(1, _plain_attrs(1))]).replace(b'"doubleValue":0.7', b'"doubleValue":' + literal)
    fast, slow = _both(line)
    _assert_same(fast, slow)
    assert (
        b'"gen_ai.request.temperature":' + text in fast[0].tables["calls"]["attributes"][0].as_py().encode()
    )


_EMPTY_SPAN = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{}]}]}]}\n'  # one non-GenAI span


@pytest.mark.parametrize(
    "chunk",
    [
        b"not json\n",
        b"\n",  # a blank line
        b"null\n",  # first in a chunk, pyarrow 26 crashed on it
        b'{"foo":1}\n',  # no resourceSpans: the mapping rejects the line
        b'{"resourceSpans":[null]}\n',
        b'{"resourceSpans":[null,{"scopeSpans":[{"spans":[{}]}]}]}\n',  # the mapping stops at the null
        b'{"resource_spans":[{"scopeSpans":[{"spans":[{}]}]}]}\n',  # the snake_case name
        b'{"resourceSpans":[{"instrumentationLibrarySpans":[{"spans":[{}]}]}]}\n',  # the old name
        b'{"resourceSpans":\n[{"scopeSpans":[{"spans":[{}]}]}]}\n{"resourceSpans":[]}{"resourceSpans":[]}\n',
        b'{"resourceSpans":[]} {"resourceSpans":[]}\n',  # two documents on one line
        b"\xef\xbb\xbf" + _EMPTY_SPAN,
    ],
)
@pytest.mark.parametrize("where", ["first", "last"])
def test_chunks_the_reader_cannot_take_go_to_the_mapping(chunk: bytes, where: str) -> None:
    good = _line([_span(1, _plain_attrs(1))])
    whole = chunk + good if where == "first" else good + chunk
    assert _columnar_batches(whole)[0] is None
    for rows in (1, 2, 65_536):  # batches are cut where the mapping cuts them
        _assert_same(*_both(whole, batch_rows=rows))


def test_values_arrow_reads_otherwise_go_to_the_mapping() -> None:
    good = _line([_span(1, _plain_attrs(1))])
    for chunk in (
        good.replace(b'"intValue":"1024"', b'"intValue":1024'),  # an int as a JSON number
        good.replace(b'"stop"', b'"st\xffop"'),  # not UTF-8
    ):
        assert _columnar_batches(chunk)[0] is None
        _assert_same(*_both(chunk))


@pytest.mark.parametrize(
    "value",
    [
        b'{"arrayValue":{"values":5}}',  # the mapping cannot iterate it
        b'{"kvlistValue":{"values":[null]}}',
        b'{"kvlistValue":{"values":[{"value":{"stringValue":"v"}}]}}',  # an entry without a key
        b'{"arrayValue":{"values":[{"arrayValue":{"values":[]}}]}}',  # below one level: not parsed here
    ],
)
def test_arrays_and_maps_the_mapping_may_refuse_are_its_own_on_any_span_or_resource(value: bytes) -> None:
    kv = b'{"key":"odd","value":' + value + b"}"
    http = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[' + kv + b"]}]}]}]}\n"
    plain = _line([_span(1, _plain_attrs(1))])
    in_resource = plain.replace(
        b'"attributes":[{"key":"service.name"', b'"attributes":[' + kv + b',{"key":"service.name"'
    )
    for chunk in (http, in_resource):
        assert chunk.count(b'"odd"') == 1
        batches, handed = _columnar_batches(chunk)
        assert batches is None or handed == 1  # a number where a list goes: Arrow refuses the chunk
        _assert_same(*_both(chunk))


def test_plain_arrays_and_maps_on_resources_and_other_spans_stay_columnar() -> None:
    args = b'{"arrayValue":{"values":[{"stringValue":"python"},{"intValue":"3"}]}}'
    kv = b'{"key":"process.command_args","value":' + args + b"}"
    plain = _line([_span(1, _plain_attrs(1))])
    chunk = plain.replace(
        b'"attributes":[{"key":"service.name"', b'"attributes":[' + kv + b',{"key":"service.name"'
    )
    batches, handed = _columnar_batches(chunk)
    assert batches is not None and handed == 0
    _assert_same(*_both(chunk))


def test_handed_over_lines_are_the_file_s_own_bytes() -> None:
    """The mapping gets each line with its newline, the last as the file ends (with none here)."""
    chunk = _EMPTY_SPAN + _line([_span(1, _plain_attrs(1))]).replace(b'"code":', b'"c":') + _EMPTY_SPAN[:-1]
    chunk = chunk.replace(b'"status":{}', b'"status":{"code":7}', 1)  # an unknown status: not plain
    got: list[bytes] = []
    opts = ReadOptions(source="t")
    read_chunk(chunk, 1, opts, 16_384, lambda lines, first: got.extend(lines) or [])
    assert b"".join(got) == chunk and got[0].endswith(b"\n") and not got[-1].endswith(b"\n")


# -- the rules, one by one: each read as columns (or handed over) and compared -----------------

_DROP = object()


def _case(changes: dict[str, Any], resource: dict[str, Any] | None = None, **fields: Any) -> bytes:
    attrs = {**_plain_attrs(5), **changes}
    span = _span(5, {k: v for k, v in attrs.items() if v is not _DROP}, **fields)
    res = None if resource is None else [_kv(k, v) for k, v in resource.items()]
    return _line([span], res)


_PLAIN_CASES = {
    # Python's `or` over texts: an empty text gives way; `a or b or None` ends in None
    "user.id empty, enduser.id empty": _case({"user.id": "", "enduser.id": ""}),
    "user.id empty, enduser.id set": _case({"user.id": "", "enduser.id": "e"}),
    "enduser.id empty alone": _case({"user.id": _DROP, "enduser.id": ""}),
    "provider empty, system empty": _case({"gen_ai.provider.name": "", "gen_ai.system": ""}),
    "provider empty: from the host": _case({"gen_ai.provider.name": "", "server.address": "api.groq.com"}),
    "legacy system": _case({"gen_ai.provider.name": _DROP, "gen_ai.system": "anthropic"}),
    # the parent is a column: an attribute of its name is one like any other
    "an attribute named parent_span_id": _case({"parent_span_id": "mine"}),
    "azure host before openai": _case(
        {"gen_ai.provider.name": _DROP, "server.address": "api.openai.com.openai.azure.com"}
    ),
    "response model empty": _case({"gen_ai.response.model": ""}),
    "session empty: the conversation": _case({"session.id": ""}),
    "session set": _case({"session.id": "s1"}),
    "no conversation: the trace is the unit": _case({"gen_ai.conversation.id": _DROP}),
    "work unit empty is kept": _case({"yieldmeter.work_unit.id": ""}),
    "legacy token names": _case(
        {"gen_ai.usage.input_tokens": _DROP, "gen_ai.usage.prompt_tokens": 900, "llm.usage.prompt_tokens": 7}
    ),
    "first spelling wins": _case({"gen_ai.usage.output_tokens": 5, "gen_ai.usage.completion_tokens": 9}),
    "cache writes and reasoning inside": _case(
        {"gen_ai.usage.cache_write.input_tokens": 40, "gen_ai.usage.reasoning.output_tokens": 100}
    ),
    "OpenLIT and AI SDK cache and reasoning names": _case(
        {
            "gen_ai.usage.cache_read.input_tokens": _DROP,
            "ai.usage.inputTokenDetails.cacheReadTokens": 30,
            "ai.usage.inputTokenDetails.cacheWriteTokens": 20,
            "ai.usage.reasoningTokens": 10,
        }
    ),
    "no operation: chat": _case({"gen_ai.operation.name": _DROP}),
    "embeddings": _case({"gen_ai.operation.name": "embeddings"}),
    "error type": _case({"error.type": "timeout"}),
    "content captured or not": _case({"gen_ai.input.messages": "[]", "llm.prompts.0.content": "hi"}),
    "workflow empty, resource's": _case(
        {"yieldmeter.workflow": ""}, {"yieldmeter.workflow": "R", "service.name": "s"}
    ),
    "resource fallback without workflow": _case({"yieldmeter.workflow": ""}, {"yieldmeter.team": "T"}),
    "workflow empty, no fallback": _case({"yieldmeter.workflow": ""}, {"service.name": ""}),
    "environment: the older name": _case(
        {}, {"deployment.environment.name": "", "deployment.environment": "staging"}
    ),
    "environment: both empty": _case({}, {"deployment.environment.name": "", "deployment.environment": ""}),
    "resource array elsewhere": _case(
        {}, {"process.command_args": {"arrayValue": {"values": []}}, "service.name": "s"}
    ),
    "error status with message": _case({}, status={"code": 2, "message": "boom"}),
    "ok status with message": _case({}, status={"code": 1, "message": "fine"}),
    "no end time": _case({}, endTimeUnixNano="0"),
    "unicode text": _case({"custom.a": "é ✓"}),
    "integral double written as int": _case({"gen_ai.request.temperature": {"doubleValue": 1}}),
    "small and large doubles": _case({"a": 1e-4, "b": 123456789.125, "c": -0.0}),
    # on every OpenAI response (OpenLLMetry, openai-v2): read as columns, the response's first
    "service tier, standard": _case({"openai.response.service_tier": "default"}),
    "service tier, request and response": _case(
        {"openai.request.service_tier": "auto", "gen_ai.openai.response.service_tier": "Flex"}
    ),
    "service tier, request only": _case({"gen_ai.request.service_tier": "priority"}),
    # Strands without cache counts: nothing depends on its model provider
    "Strands without cache counts": _case(
        {"gen_ai.provider.name": "strands-agents", "gen_ai.usage.cache_read.input_tokens": _DROP}
    ),
    "service tier, empty response": _case(
        {"openai.response.service_tier": "", "openai.request.service_tier": "flex"}
    ),
}


@pytest.mark.parametrize("chunk", _PLAIN_CASES.values(), ids=list(_PLAIN_CASES))
def test_each_rule_read_as_columns_matches_the_mapping(chunk: bytes) -> None:
    batches, handed = _columnar_batches(chunk)
    assert batches is not None and handed == 0
    _assert_same(*_both(chunk))
    _assert_same(*_both(chunk, capture_content=True))


_HANDED_CASES = {
    "a quote in a kept text": _case({"custom.a": 'q"uote'}),
    "a tab in the conversation id": _case({"gen_ai.conversation.id": "c\t1"}),
    "cache above input": _case({"gen_ai.usage.input_tokens": 10, "gen_ai.usage.cache_read.input_tokens": 50}),
    "reasoning above output": _case({"gen_ai.usage.reasoning.output_tokens": 5000}),
    "negative tokens": _case({"gen_ai.usage.output_tokens": -1}),
    "tokens as text": _case({"gen_ai.usage.output_tokens": "12"}),
    "no model": _case({"gen_ai.response.model": _DROP, "gen_ai.request.model": _DROP}),
    "an attribute named status.message": _case(
        {"status.message": "mine"}, status={"code": 2, "message": "m"}
    ),
    "a key twice": _case({}).replace(b'"key":"user.id"', b'"key":"server.address"'),
    "a reported cost": _case({"gen_ai.usage.cost": 0.25}),
    # inside or apart from the input by the provider: Anthropic's 1205 + 30 = 1235 input
    "a cache count the provider passes through": _case(
        {"gen_ai.provider.name": "anthropic", "gen_ai.usage.prompt_tokens_details.cache_read": 30}
    ),
    "an AI SDK v5 cache count": _case({"ai.usage.cachedInputTokens": 30}),
    # Strands' counts are apart for a Bedrock model (1205 + 200 + 30 = 1435 input), inside for others
    "a Strands cache count": _case(
        {
            "gen_ai.provider.name": _DROP,
            "gen_ai.system": " Strands-Agents",
            "gen_ai.response.model": "us.anthropic.claude-sonnet-4-20250514-v1:0",
            "gen_ai.usage.cache_write_input_tokens": 30,
        }
    ),
    "an agent span": _case({"gen_ai.operation.name": "invoke_agent"}),
    # not a call though it names a model: the mapping ignores it and counts it
    "a framework step": _case({"gen_ai.operation.name": "retrieval"}),
    # a call because it names a model: the mapping tells it from one that is not
    "an operation not known here": _case({"gen_ai.operation.name": "image_generation"}),
    "a double Arrow writes with an exponent": _case({"custom.a": 1e16}),
    "a tiny double": _case({"custom.a": 1e-7}),
    "uppercase ids": _case({}, traceId="AB" * 16),
    "unknown status": _case({}, status={"code": 7}),
    "a time after 2100": _case({}, startTimeUnixNano="4102444800000000001"),
}


@pytest.mark.parametrize("chunk", _HANDED_CASES.values(), ids=list(_HANDED_CASES))
def test_what_is_not_plain_is_handed_to_the_mapping(chunk: bytes) -> None:
    batches, handed = _columnar_batches(chunk)
    assert batches is not None and handed == 1
    _assert_same(*_both(chunk))


@pytest.mark.parametrize(
    "elsewhere",
    [
        b'"resource":{"attributes":[{"key":"r","value":{"doubleValue":1}}]}',
        b'"scope":{"name":"t","attributes":[{"key":"r","value":{"doubleValue":1}}]}',
    ],
)
def test_a_whole_double_written_as_an_int_elsewhere_leaves_whole_doubles_to_the_mapping(
    elsewhere: bytes,
) -> None:
    """``2.0`` on the span and ``1`` on its resource or scope: the bytes do not say which is which."""
    line = _case({"gen_ai.request.temperature": 2.0})
    if elsewhere.startswith(b'"resource"'):
        line = line.replace(b'"resource":{"attributes":[', elsewhere[:-2] + b",")
    else:
        line = line.replace(b'"scope":{"name":"t"}', elsewhere)
    assert line.count(b'"doubleValue":1}') == 1
    batches, handed = _columnar_batches(line)
    assert batches is not None and handed == 1
    _assert_same(*_both(line))


def test_an_escaped_key_leaves_whole_doubles_to_the_mapping() -> None:
    line = _case({"gen_ai.request.temperature": 1.0}).replace(b'"doubleValue":1.0', b'"double\\u0056alue":1')
    batches, handed = _columnar_batches(line)
    assert batches is not None and handed == 1
    _assert_same(*_both(line))


def test_whole_doubles_written_both_ways_in_one_chunk_go_to_the_mapping() -> None:
    """``1`` and ``2.0`` in one chunk: which whole double was written which way is not known."""
    one = _case({"gen_ai.request.temperature": {"doubleValue": 1}})
    two = _case({"gen_ai.request.temperature": 2.0}).replace(b"0000000000000006", b"0000000000000099")
    batches, handed = _columnar_batches(one + two, batch_rows=1)
    assert batches is not None and handed == 2
    _assert_same(*_both(one + two, batch_rows=1))


# -- generated: a plain span and changes to it ---------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
_ARRAYS_AND_MAPS = [
    {"arrayValue": {}},
    {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "1"}, {}]}},
    {"arrayValue": {"values": [{"arrayValue": {}}]}},
    {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}},
    {"kvlistValue": {"values": [{"value": {"boolValue": True}}]}},
]
_ODD = st.one_of(
    st.just({}),
    st.just({"arrayValue": {"values": [{"intValue": "1"}]}}),
    st.just({"kvlistValue": {"values": []}}),
    st.just({"stringValue": "a", "intValue": "2"}),
    st.sampled_from([{"intValue": "007"}, {"intValue": "+5"}, {"intValue": "1e3"}, {"intValue": "-0"}]),
    st.just({"doubleValue": 3}),
    st.just({"bytesValue": "AAE="}),
    st.sampled_from(_ARRAYS_AND_MAPS),
)
_VALUE = st.one_of(
    _TEXT,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 2.0, 1e-5, 123456.75, 1e15, 0.1]),
    st.booleans(),
    _ODD,
)
#: texts the mapping reads with Python's truth and ``or``: empty ones, and ones JSON escapes
_WORDS = st.sampled_from(
    [
        "", "", "a", "gpt-4o", "anthropic", 'q"uote', "back\\slash", "tab\t", "é", "line\u2028sep", "\x7f",
        "strands-agents", "us.anthropic.claude-sonnet-4-v1:0",
    ]
)  # fmt: skip
_TOKENS = ("input_tokens", "prompt_tokens", "output_tokens", "completion_tokens", "cache", "reasoning")
_HOSTS = st.sampled_from(
    [
        "",
        "api.openai.com",
        "x.openai.azure.com",
        "api.openai.com.openai.azure.com",
        "bedrock-runtime.aws",
        "api.groq.com",
        "example.org",
    ]
)


def _value_for(key: str) -> st.SearchStrategy[Any]:
    if any(t in key for t in _TOKENS):
        return st.one_of(st.integers(0, 3000), st.integers(0, 3000), st.integers(-3, 10**9), _VALUE)
    if key == "server.address":
        return st.one_of(_HOSTS, _HOSTS, _VALUE)
    return st.one_of(_WORDS, _WORDS, _VALUE)


_KEYS = st.sampled_from(
    [
        "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
        "gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
        "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.prompt_tokens",
        "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_write.input_tokens", "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.cost", "gen_ai.conversation.id", "yieldmeter.work_unit.id", "yieldmeter.workflow",
        "yieldmeter.team", "yieldmeter.task_type", "user.id", "enduser.id", "session.id", "error.type",
        "server.address", "llm.request.type", "langfuse.observation.type", "langfuse.user.id",
        "gen_ai.prompt", "gen_ai.input.messages", "parent_span_id", "status.message", "custom.a", "custom.b",
        "ai.usage.cachedInputTokens", "gen_ai.usage.prompt_tokens_details.cache_write",
        "gen_ai.request.temperature", "", "openai.response.service_tier", "openai.request.service_tier",
        "gen_ai.usage.cache_creation.ephemeral_1h_input_tokens", "gen_ai.usage.cache_read_input_tokens",
        "gen_ai.usage.cache_write_input_tokens",
    ]
)  # fmt: skip
_EVALUATION = {"name": "gen_ai.evaluation.result", "attributes": [_kv("gen_ai.evaluation.score.value", 0.5)]}
#: span fields and the values drawn for them (None: the field left out)
_FIELDS = {
    "traceId": ["", "0" * 32, "AB" * 16, "q" * 32, "AAECAwQFBgcICQoLDA0ODw==", 5],
    "spanId": ["", "0" * 16, "Ab" * 8, "12"],
    "startTimeUnixNano": ["", "0", "-5", "12x", "5" * 20, "4102444800000000000", "4102444800000000001", "01"],
    "endTimeUnixNano": ["", "0", None, "1", "9" * 19, "1765000000000000000", "1765000000000001000"],
    "status": [
        {}, {"code": 2}, {"code": 2, "message": "boom"}, {"code": 2, "message": ""}, {"code": 7}, {"code": 1},
        {"message": 'a"b'}, None,
    ],
    "parentSpanId": ["", None, "x\\y", "p\u2028q", "é", 7],
    "events": [[], [{"name": "exception"}], [_EVALUATION], [None]],
    "attributes": [None, [], [None], [{"key": None, "value": {"stringValue": "x"}}]],
}  # fmt: skip
_SPAN_FIELD = st.one_of([st.tuples(st.just(k), st.sampled_from(v)) for k, v in _FIELDS.items()])
_RESOURCE_KEYS = [
    "service.name", "deployment.environment", "deployment.environment.name", "yieldmeter.team",
    "yieldmeter.workflow", "yieldmeter.task_type", "process.args",
]  # fmt: skip
_RESOURCE = st.lists(
    st.tuples(
        st.sampled_from(_RESOURCE_KEYS),
        st.one_of(_WORDS, st.integers(0, 9), st.sampled_from(_ARRAYS_AND_MAPS), st.just({"doubleValue": 1})),
    ),
    max_size=4,
)


@st.composite
def _spans(draw: st.DrawFn, i: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["plain", "attrs", "attrs", "attrs", "fields", "http"]))
    attrs: dict[str, Any] = _plain_attrs(i) if kind != "http" else {"http.route": "/v1"}
    items = list(attrs.items())
    fields: dict[str, Any] = {}
    if kind == "attrs":
        for _ in range(draw(st.integers(1, 4))):
            change = draw(st.sampled_from(["set", "set", "set", "drop", "twice"]))
            key = draw(_KEYS)
            if change == "set":
                items = [(k, v) for k, v in items if k != key] + [(key, draw(_value_for(key)))]
            elif change == "drop":
                items = [(k, v) for k, v in items if k != key]
            else:
                items.append((key, draw(_value_for(key))))
    elif kind == "fields":
        fields.update([draw(_SPAN_FIELD)])
    span = _span(i, [_kv(k, v) for k, v in items])
    for k, v in fields.items():
        if v is None:
            span.pop(k, None)
        else:
            span[k] = v
    return span


@st.composite
def _chunks(draw: st.DrawFn) -> bytes:
    """Lines of one span each, mostly (each its own batch at ``batch_rows=1``), some of several."""
    out = []
    i = 0
    for _ in range(draw(st.integers(1, 8))):
        spans = []
        for _ in range(draw(st.sampled_from([1, 1, 1, 0, 3]))):
            spans.append(draw(_spans(i)))
            i += 1
        resource = None
        if draw(st.integers(0, 3)) == 0:
            resource = [_kv(k, v) for k, v in draw(_RESOURCE)]
        out.append(_line(spans, resource))
        if draw(st.integers(0, 9)) == 0:
            out.append(draw(_ODD_LINES))
    return b"".join(out)


#: lines the columnar reader leaves to the mapping whole, among others
_ODD_LINES = st.sampled_from(
    [
        b"null\n",
        b'{"foo":1}\n',
        b'{"resourceSpans":[]}\n',
        b'{"resourceSpans":[null]}\n',
        b'{"resource_spans":[{"scopeSpans":[{"spans":[{}]}]}]}\n',
        b'{"resourceSpans":[{"instrumentationLibrarySpans":[{"spans":[{}]}]}]}\n',
        b'{"resourceSpans":[{"scopeSpans":[{"scope":{"attributes":[{"key":"d","value":{"doubleValue":1}}]}}]}]}\n',
        b'{"resourceSpans":[{"scopeSpans":[null,{"spans":[null]}]}]}\n',
    ]
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk=_chunks(), rows=st.sampled_from([1, 1, 65_536]), capture=st.booleans())
def test_generated_lines_read_the_same_both_ways(chunk: bytes, rows: int, capture: bool) -> None:
    _assert_same(*_both(chunk, batch_rows=rows, capture_content=capture))


def test_empty_input_reads_as_nothing() -> None:
    assert _columnar_batches(b"") == ([], 0)
    _assert_same(*_both(b""))


def test_a_file_of_chunks_the_reader_cannot_use_is_tried_less_and_less(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Agent spans on every line: after each chunk read as no columns, the next 1, 3, 7 are mapped
    span by span; whatever is chosen, ``read`` gives the mapping's batches."""
    import io

    from yieldmeter.ingest import otlp_json

    agent = _case({"gen_ai.operation.name": "invoke_agent"})
    plain = _line([_span(7, _plain_attrs(7))])
    monkeypatch.setattr(otlp_json, "CHUNK_BYTES", 1)  # a chunk a line
    tried: list[int] = []
    real = otlp_json.read_chunk

    def spy(chunk: bytes, first: int, *args: Any) -> Any:
        tried.append(first)
        return real(chunk, first, *args)

    monkeypatch.setattr(otlp_json, "read_chunk", spy)
    data = agent * 13 + plain * 3
    opts = ReadOptions(source="traces.jsonl", batch_rows=1)
    fast = list(otlp_json.read(io.BytesIO(data), opts))
    assert tried == [1, 3, 7, 15, 16]  # waits of 1, 3 and 7 chunks; line 15 is read, so 16 is tried
    monkeypatch.setattr(otlp_json, "read_chunk", lambda *a: None)
    _assert_same(fast, list(otlp_json.read(io.BytesIO(data), opts)))
