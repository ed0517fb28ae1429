"""OTLP JSON lines read as columns, for the batches whose spans the mapping would read plainly.

:mod:`yieldmeter.ingest.otlp_json` parses each line with orjson and hands every
span to :class:`yieldmeter.ingest.otlp.SpanRows`, a loop of dict look-ups: about
40 µs a span, most of it Python. Most files the Collector writes hold nothing
but model calls under the current attribute names, each with one value per
attribute. For those, this module parses a chunk of lines with Arrow's JSON
reader (C++, on every core) into nested columns and computes the same ``calls``
rows with vectorised Arrow and NumPy operations.

It is a fast path, never a second mapping: a batch is read here only when
every span in it is *plain*, and then the rows are the ones ``SpanRows`` would
have built, byte for byte (``tests/test_otlp_columnar.py`` compares the two
on generated spans). Anything else sends the batch's lines to ``SpanRows``,
which reads every spelling and names every reason:

- a chunk Arrow cannot read to the schema below (a 64-bit integer or a time
  written as a JSON number, bytes that are not UTF-8, a byte-order mark), or
  with a line that is not one JSON object opening and closing on it, or that
  the mapping stops reading part way (no ``resourceSpans``, a null among them,
  spans under the old ``instrumentationLibrarySpans``): the whole chunk;
- a span that would be rejected, or would add a note: ids not in lowercase hex,
  times out of range, token counts that are negative, too large, not integers,
  or cache (reasoning) tokens above input (output), no model, an unknown status;
- a span the mapping reads with more than a column look-up: any operation
  but a model call's (agent and tool spans, framework steps, operations it
  does not know), evaluation events, Langfuse attributes, legacy ``llm.request.type``,
  a reported cost (``gen_ai.usage.cost``), a cache count whose accounting depends on
  the provider (``PROVIDER_CACHE_KEYS``, Strands Agents' cache counts), an attribute given twice or with no
  value, or several values, arrays, maps or bytes; on any span or resource, an
  array or map the mapping might refuse (nested below one level, a null or
  keyless map entry);
- a text that JSON would escape (quotes, backslashes, control characters), or a
  double whose shortest form Arrow and orjson write differently, or a whole
  double whose text (``2`` or ``2.0``) the bytes do not settle, where the span
  keeps the value in ``attributes``.

Two differences are known and kept, both in fields OTLP does not define, which
are skipped here as OTLP asks of unknown fields while the mapping quarantines
the line: a ``NaN`` or ``Infinity`` literal (not JSON, but Arrow's reader takes
it; looking for one would cost a sixth of the time this path takes), and
nesting deeper than orjson reads (1,024 levels).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from yieldmeter.ingest.base import Batch, ReadOptions
from yieldmeter.ingest.otlp import CALL_COLUMNS, CALL_TYPES, conform_calls
from yieldmeter.ingest.otlp_common import MAX_TIME_NS
from yieldmeter.ingest.otlp_semconv import (
    _CACHE_READ,
    _CACHE_WRITE,
    _CACHE_WRITE_1H,
    _CONSUMED,
    _GENAI_MARKERS,
    _INPUT,
    _OUTPUT,
    _PROVIDER_BY_HOST,
    _REASONING,
    EVALUATION_EVENT,
    MAX_SPAN_TOKENS,
    MODEL_OPERATIONS,
    PROVIDER_CACHE_KEYS,
    SERVICE_TIER_KEYS,
    STRANDS_PROVIDER,
    is_content_key,
)

_SCALARS = [
    ("stringValue", pa.string()),
    ("intValue", pa.string()),
    ("doubleValue", pa.float64()),
    ("boolValue", pa.bool_()),
    ("bytesValue", pa.string()),
]
#: an array or map's own values, one level down: what they hold below that is only seen to be there
_INNER_VALUE = pa.struct([*_SCALARS, ("arrayValue", pa.struct([])), ("kvlistValue", pa.struct([]))])
_ANY_VALUE = pa.struct(
    [
        *_SCALARS,
        ("arrayValue", pa.struct([("values", pa.list_(_INNER_VALUE))])),
        (
            "kvlistValue",
            pa.struct([("values", pa.list_(pa.struct([("key", pa.string()), ("value", _INNER_VALUE)])))]),
        ),
    ]
)
_ATTRIBUTES = pa.list_(pa.struct([("key", pa.string()), ("value", _ANY_VALUE)]))
_SPAN = pa.struct(
    [
        ("traceId", pa.string()),
        ("spanId", pa.string()),
        ("parentSpanId", pa.string()),
        ("name", pa.string()),
        ("startTimeUnixNano", pa.string()),
        ("endTimeUnixNano", pa.string()),
        ("attributes", _ATTRIBUTES),
        ("events", pa.list_(pa.struct([("name", pa.string())]))),
        ("status", pa.struct([("code", pa.int64()), ("message", pa.string())])),
    ]
)
_RESOURCE_SPANS = pa.struct(
    [
        ("resource", pa.struct([("attributes", _ATTRIBUTES)])),
        ("scopeSpans", pa.list_(pa.struct([("spans", pa.list_(_SPAN))]))),
        ("instrumentationLibrarySpans", pa.list_(pa.struct([]))),
    ]
)
SCHEMA = pa.schema([("resourceSpans", pa.list_(_RESOURCE_SPANS))])

#: a ``doubleValue`` written as a whole number (``1``): the mapping keeps it an int (``1`` in
#: ``attributes``), Arrow reads a double (``1.0``)
_WHOLE_DOUBLE = re.compile(rb'"doubleValue"\s*:\s*-?\d+\s*[,}\]]')
#: an ``intValue`` the mapping reads as the same int64 and writes back as the same digits
_INT64_TEXT = r"^(0|-?[1-9][0-9]{0,17})$"
_TIME_TEXT = rf"^[1-9][0-9]{{0,{len(str(MAX_TIME_NS)) - 1}}}$"
#: characters JSON escapes: a text holding one is left to the mapping (orjson writes the escapes)
_ESCAPED = r'["\\\x00-\x1f]'

_STRING, _INT, _DOUBLE, _BOOL, _OTHER = 1, 2, 3, 4, 5


def read_chunk(
    chunk: bytes, first_lineno: int, options: ReadOptions, limit: int,
    fallback: Callable[[list[bytes], int], list[Batch]],
) -> tuple[list[Batch], int] | None:  # fmt: skip
    """The batches of ``chunk`` (whole lines, the first being ``first_lineno``) and how many of
    them were read as columns; ``None`` when the chunk is the mapping's whole (Arrow cannot read
    it to the schema, or a line is one the mapping reads otherwise, see the module's doc).

    Batches are cut where :func:`yieldmeter.ingest.otlp_json._read_lines` cuts them: after
    the line that takes a batch to ``limit`` spans, and at the end. A batch with a span that
    is not plain is built by ``fallback(lines, first_lineno)``.
    """
    lines = chunk.split(b"\n")
    ends_with_newline = not lines[-1]
    if ends_with_newline:
        lines.pop()
    if not lines:
        return [], 0
    # Every line one object, opening and closing on it: then no document Arrow reads can span
    # two lines, so as many documents as lines means one a line (Arrow does not stop at a
    # newline). This also keeps out blank lines (which Arrow skips) and a ``null`` line (on
    # which pyarrow 26 crashes when it comes first).
    for line in lines:
        stripped = line.strip()
        if not stripped.startswith(b"{") or not stripped.endswith(b"}"):
            return None
    if not chunk.isascii():  # what orjson refuses and Arrow's reader takes
        if b"\xef\xbb\xbf" in chunk:
            return None  # a byte-order mark
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return None
    longest = max(len(line) for line in lines)
    try:
        table = pj.read_json(
            io.BytesIO(chunk),
            read_options=pj.ReadOptions(block_size=max(longest + 1, 1 << 20)),
            parse_options=pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore"),
            memory_pool=pa.system_memory_pool(),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(lines):
        return None  # two documents on one line
    resource_spans = table.column("resourceSpans").combine_chunks()
    if not _read_whole(resource_spans):
        return None
    spans = _Spans(resource_spans, len(lines), chunk, options)
    out: list[Batch] = []
    columnar = 0
    start = 0
    counts = spans.line_spans
    total = 0
    last = len(lines) - 1
    for i in range(len(lines)):
        total += int(counts[i])
        if total >= limit or i == last:
            if total:
                if spans.line_plain[start : i + 1].all():
                    out.append(spans.batch(start, i + 1, first_lineno))
                    columnar += 1
                else:
                    whole = [line + b"\n" for line in lines[start : i + 1]]
                    if i == last and not ends_with_newline:
                        whole[-1] = lines[i]
                    out.extend(fallback(whole, first_lineno + start))
            start, total = i + 1, 0
    del spans, table
    pa.default_memory_pool().release_unused()
    return out, columnar


def _read_whole(resource_spans: pa.ListArray) -> bool:
    """Whether the mapping reads every line's spans, and only those counted here.

    The mapping counts spans to cut batches. A line with no ``resourceSpans`` (or only the
    snake_case name), a null among them, or spans under the old ``instrumentationLibrarySpans``
    is one it stops reading part way, or reads spans of that the columns do not hold.
    """
    rs = resource_spans.flatten()
    ils = pc.struct_field(rs, "instrumentationLibrarySpans")
    return bool(
        _valid(resource_spans).all() and _valid(rs).all() and (_fill(pc.list_value_length(ils), 0) == 0).all()
    )


class _Spans:
    """Every span of a parsed chunk as columns: which are plain, and the ``calls`` they make."""

    def __init__(
        self, resource_spans: pa.ListArray, n_lines: int, chunk: bytes, options: ReadOptions
    ) -> None:
        self.options = options
        # -- the nesting: line > resourceSpans > scopeSpans > spans (all read: _read_whole) -----
        rs = resource_spans.flatten()
        rs_line = _parents(resource_spans)
        scopes_list = pc.struct_field(rs, "scopeSpans")
        scopes = scopes_list.flatten()
        scope_rs = _parents(scopes_list)
        spans_list = pc.struct_field(scopes, "spans")
        span = spans_list.flatten()
        span_scope = _parents(spans_list)
        span_rs = scope_rs[span_scope]
        self.line = rs_line[span_rs]  # each span's line, in file order
        n = len(span)
        self.line_spans = np.bincount(self.line, minlength=n_lines)
        span_ok = _valid(span)  # a null in spans[] is rejected by the mapping

        # -- resources ----------------------------------------------------------------------
        res_attrs = pc.struct_field(pc.struct_field(rs, "resource"), "attributes")
        res = _Attributes(res_attrs, len(rs))
        rs_ok = res.shape_ok.copy()  # the mapping reads every value (an error is the span's reject)
        app = res.string("service.name")
        env_name = res.string("deployment.environment.name")
        env_old = res.string("deployment.environment")
        fallback = {
            k: res.string(k) for k in ("yieldmeter.workflow", "yieldmeter.team", "yieldmeter.task_type")
        }
        has_fallback = np.zeros(len(rs), bool)
        for arr in fallback.values():
            has_fallback |= _valid(arr)
        for k in ("service.name", "deployment.environment.name", "deployment.environment", *fallback):
            rs_ok &= res.kind(k) <= _STRING  # _str(value): only texts are read plainly here
        take_rs = pa.array(span_rs)
        environment = _or(env_name, env_old).take(take_rs)
        environment = _or_none(environment)

        # -- the spans' attributes -----------------------------------------------------------
        attrs = _Attributes(pc.struct_field(span, "attributes"), n)
        span_ok &= attrs.shape_ok
        op = attrs.string("gen_ai.operation.name")
        present = attrs.present
        genai = _valid(op)
        for k in _GENAI_MARKERS:
            genai |= present(k)
        events = pc.struct_field(span, "events")
        ev = events.flatten()
        ev_names = pc.struct_field(ev, "name")
        ev_owner = _parents(events)
        evaluation = np.zeros(n, bool)
        evaluation[ev_owner[_fill(pc.equal(ev_names, EVALUATION_EVENT), False) | ~_valid(ev)]] = True
        # evaluations (and a null event), the legacy request type (it makes a span GenAI) and
        # Langfuse observations: the mapping's own
        span_ok &= ~evaluation & ~present("llm.request.type")
        span_ok &= ~(genai & attrs.has_prefix("langfuse."))
        # a model operation, or none (read as chat); structure spans, framework steps and
        # operations the mapping tells apart by what they carry are the mapping's own
        call = genai & (~_valid(op) | _fill(pc.is_in(op, pa.array(sorted(MODEL_OPERATIONS))), False))
        span_ok &= ~(genai & ~call)
        span_ok &= ~call | attrs.ok  # a call keeps every attribute: each must be read plainly
        span_ok &= ~(genai & (attrs.kind("gen_ai.operation.name") > _STRING))
        span_ok &= ~(call & present("gen_ai.usage.cost"))
        for k in PROVIDER_CACHE_KEYS:  # inside or apart by the provider: the mapping's own
            span_ok &= ~(call & present(k))
        for k in _CACHE_WRITE_1H:  # rare: the mapping reads them
            span_ok &= ~(call & present(k))
        # a name the mapping also gives a key of its own in ``attributes`` (its value replaces theirs)
        span_ok &= ~(call & present("status.message"))
        self.ignored_per_line = np.bincount(self.line[~genai], minlength=n_lines)

        # -- ids and times (read for calls only, as the mapping does) -------------------------
        trace_id = pc.struct_field(span, "traceId")
        span_id = pc.struct_field(span, "spanId")
        parent_id = pc.struct_field(span, "parentSpanId")
        # a parent id the mapping writes otherwise (upper case, base64) is the mapping's
        ids_ok = _hex_id(trace_id, 16) & _hex_id(span_id, 8) & (~_truthy(parent_id) | _hex_id(parent_id, 8))
        start_text = pc.struct_field(span, "startTimeUnixNano")
        end_text = pc.struct_field(span, "endTimeUnixNano")
        no_end = ~_valid(end_text) | _fill(pc.is_in(end_text, pa.array(["", "0"])), False)
        times_ok = _time_text(start_text) & (no_end | _time_text(end_text))
        start = _int64(pc.if_else(pa.array(times_ok), start_text, "0"))
        end = np.where(no_end, start, _int64(pc.if_else(pa.array(times_ok & ~no_end), end_text, "0")))
        times_ok &= end >= start
        status = pc.struct_field(span, "status")
        code = _fill(pc.struct_field(status, "code"), 0)
        status_ok = np.isin(code, (0, 1, 2))
        span_ok &= ~call | (ids_ok & times_ok & status_ok)
        error = (code == 2) | present("error.type")

        # -- tokens: the first spelling present, an int in range; the conventions' inclusion --
        def tokens(keys: tuple[str, ...]) -> np.ndarray:
            nonlocal span_ok
            value = np.zeros(n, np.int64)
            found = np.zeros(n, bool)
            for k in keys:
                kind = attrs.kind(k)
                span_ok &= ~call | (kind == 0) | (kind == _INT)
                v = attrs.int64(k)
                take = ~found & (kind == _INT)
                value = np.where(take, v, value)
                found |= take
            span_ok &= ~call | ((value >= 0) & (value <= MAX_SPAN_TOKENS))
            return value

        inp = tokens(_INPUT)
        out = tokens(_OUTPUT)
        cache_read = tokens(_CACHE_READ)
        cache_write = tokens(_CACHE_WRITE)
        reasoning = tokens(_REASONING)
        span_ok &= ~call | ((cache_read + cache_write <= inp) & (reasoning <= out))  # else a note

        # -- texts ------------------------------------------------------------------------------
        texts = (
            "gen_ai.response.model", "gen_ai.request.model", "gen_ai.provider.name", "gen_ai.system",
            "server.address", "yieldmeter.work_unit.id", "yieldmeter.workflow", "yieldmeter.task_type",
            "yieldmeter.team", "gen_ai.conversation.id", "user.id", "enduser.id", "session.id",
            *SERVICE_TIER_KEYS,
        )  # fmt: skip
        for k in texts:
            span_ok &= ~call | (attrs.kind(k) <= _STRING)
        s = attrs.string
        request_model = s("gen_ai.request.model")
        model = _or(s("gen_ai.response.model"), request_model)  # no model (nor an empty one) is not plain
        span_ok &= ~call | _truthy(model)  # no model: a note
        provider = _or(s("gen_ai.provider.name"), s("gen_ai.system"))
        host = s("server.address")
        from_host = pa.nulls(n, pa.string())
        for needle, name in reversed(_PROVIDER_BY_HOST):  # the first match wins
            from_host = pc.if_else(_fill(pc.match_substring(host, needle), False), name, from_host)
        provider = pc.coalesce(provider, from_host)  # `if provider is None`
        # Strands' cache counts are inside or apart by its model provider: the mapping's own
        strands = _fill(pc.equal(pc.utf8_lower(pc.utf8_trim_whitespace(provider)), STRANDS_PROVIDER), False)
        span_ok &= ~(call & strands & (cache_read + cache_write > 0))
        conversation = s("gen_ai.conversation.id")
        wu = pc.coalesce(s("yieldmeter.work_unit.id"), conversation, trace_id)
        linkage = {}
        for k in ("yieldmeter.workflow", "yieldmeter.task_type", "yieldmeter.team"):
            own = s(k)
            with_fallback = _or(own, fallback[k].take(take_rs))
            linkage[k] = pc.if_else(pa.array(has_fallback[span_rs]), with_fallback, own)
        user = _or(s("user.id"), _or_none(s("enduser.id")))  # `a or b or None`
        session = _or(s("session.id"), conversation)
        tier = pc.coalesce(*(s(k) for k in SERVICE_TIER_KEYS))  # the first present, as the mapping

        # -- attributes: what the columns do not hold, as orjson writes the mapping's dict ----
        message = pc.struct_field(status, "message")
        tail = [
            _field("status.message", pc.if_else(pa.array(error & _truthy(message)), message, None)),
            _field("gen_ai.conversation.id", conversation),
            _field(
                "gen_ai.request.model",
                pc.if_else(_fill(pc.not_equal(request_model, model), True), request_model, None),
            ),
        ]
        # a text holds a quote, a backslash or a control character only where the JSON held a
        # backslash (its escape): without one, no text needs looking at
        escapes = b"\\" in chunk
        if escapes:
            for text in (parent_id, message, conversation, request_model):
                span_ok &= ~call | ~_fill(pc.match_substring_regex(text, _ESCAPED), False)
        extra, extra_ok = attrs.json_object(tail, options.capture_content, chunk, escapes)
        span_ok &= ~call | extra_ok

        line_bad = np.zeros(n_lines, bool)
        line_bad[rs_line[~rs_ok]] = True
        line_bad[self.line[~span_ok]] = True
        self.line_plain = ~line_bad

        # -- the calls, in span order ---------------------------------------------------------
        rows = pa.array(np.flatnonzero(call))
        self.call_line = self.line[call]
        cols: dict[str, Any] = {
            "call_id": pc.binary_join_element_wise(trace_id, span_id, "-"),
            "ts": start // 1000,
            "duration_ms": (end - start).astype(np.float64) / 1e6,
            "provider": provider,
            "model": model,
            "operation": pc.if_else(pc.is_valid(op), op, "chat"),
            "input_tokens": inp,
            "output_tokens": out,
            "cached_input_tokens": cache_read,
            "cache_write_tokens": cache_write,
            "cache_write_1h_tokens": np.zeros(n, np.int64),
            "reasoning_tokens": reasoning,
            "status": np.where(error, "error", "ok"),
            "user_id": user,
            "team": linkage["yieldmeter.team"],
            "app": app.take(take_rs),
            "environment": environment,
            "trace_id": trace_id,
            "span_id": span_id,
            "parent_span_id": pc.if_else(_truthy_arr(parent_id), parent_id, None),
            "session_id": session,
            "work_unit_id": wu,
            "workflow": linkage["yieldmeter.workflow"],
            "task_type": linkage["yieldmeter.task_type"],
            "reported_cost": pa.nulls(n, pa.float64()),
            "service_tier": tier,
            "attributes": extra,
        }
        self.calls = {
            name: pa.array(cols[name], CALL_TYPES.get(name, pa.string())).take(rows) for name in CALL_COLUMNS
        }

    def batch(self, first: int, stop: int, first_lineno: int) -> Batch:
        """The batch of lines ``first`` to ``stop`` (indexes in the chunk), every span plain."""
        lo, hi = np.searchsorted(self.call_line, (first, stop))
        arrays = {name: col.slice(lo, hi - lo) for name, col in self.calls.items()}
        positions = pa.array(self.call_line[lo:hi] + first_lineno, pa.int64())
        batch = Batch()
        batch.add("calls", conform_calls(arrays, self.options.source, positions))
        batch.ignored = int(self.ignored_per_line[first:stop].sum())
        return batch


class _Attributes:
    """The key-value lists of ``n`` owners (spans or resources) as flat columns.

    ``shape_ok`` is false for an owner whose list the mapping may reject (a null in it, a
    null key, an array or map with more than plain values below it, a null or keyless
    entry in a map); ``ok`` also for one whose attributes it would not read as plain values:
    an attribute with no value or several, an array, map or bytes value, an ``intValue``
    that is not an int64 in plain digits, a key given twice.
    """

    def __init__(self, lists: pa.ListArray, n: int) -> None:
        self.n = n
        kv = lists.flatten()
        self.owner = _parents(lists)
        self.shape_ok = np.ones(n, bool)
        keys = pc.struct_field(kv, "key")
        self.shape_ok[self.owner[~(_valid(kv) & _valid(keys))]] = False
        value = pc.struct_field(kv, "value")
        self.shape_ok[self.owner[_nested(value)]] = False
        self.sv = pc.struct_field(value, "stringValue")
        self.iv = pc.struct_field(value, "intValue")
        self.dv = pc.struct_field(value, "doubleValue")
        self.bv = pc.struct_field(value, "boolValue")
        flags = [_valid(a) for a in (self.sv, self.iv, self.dv, self.bv)]
        single = sum(f.astype(np.int8) for f in flags) == 1
        for other in ("arrayValue", "kvlistValue", "bytesValue"):
            single &= ~_valid(pc.struct_field(value, other))
        kind = np.select(flags, [_STRING, _INT, _DOUBLE, _BOOL], 0).astype(np.int8)
        kind[~single | ((kind == _INT) & ~_int64_text(self.iv))] = _OTHER
        self.kv_kind = kind
        self.ok = self.shape_ok.copy()
        self.ok[self.owner[kind == _OTHER]] = False
        encoded = pc.dictionary_encode(pc.fill_null(keys, ""))
        self.names: list[str] = encoded.dictionary.to_pylist()
        self.code = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self.codes = {name: i for i, name in enumerate(self.names)}
        if len(self.code):  # a key given twice in one list
            pair = np.sort(self.owner * len(self.names) + self.code)
            self.ok[pair[1:][pair[1:] == pair[:-1]] // len(self.names)] = False
        self._where: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def where(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """For each owner, the index of its ``key`` attribute in the flat columns (-1 when it has
        none), and whether it has the key more than once."""
        found = self._where.get(key)
        if found is None:
            at = np.full(self.n, -1, np.int64)
            twice = np.zeros(self.n, bool)
            code = self.codes.get(key)
            if code is not None:
                flat = np.flatnonzero(self.code == code)
                at[self.owner[flat]] = flat
                twice = np.bincount(self.owner[flat], minlength=self.n) > 1
            found = self._where[key] = (at, twice)
        return found

    def present(self, key: str) -> np.ndarray:
        return self.where(key)[0] >= 0

    def kind(self, key: str) -> np.ndarray:
        """The kind of each owner's ``key`` value: 0 when absent, :data:`_OTHER` when not plain."""
        at, twice = self.where(key)
        kind = self.kv_kind[np.maximum(at, 0)] if len(self.kv_kind) else np.zeros(self.n, np.int8)
        return np.where(twice, _OTHER, np.where(at >= 0, kind, 0))

    def string(self, key: str) -> pa.Array:
        """The ``stringValue`` of ``key`` for each owner (null when absent or not a text)."""
        at = self.where(key)[0]
        if not (at >= 0).any():
            return pa.nulls(self.n, pa.string())
        return self.sv.take(pa.array(at, mask=at < 0))

    def int64(self, key: str) -> np.ndarray:
        """The ``intValue`` of ``key`` as int64 (0 where absent or not a plain int)."""
        at = self.where(key)[0]
        use = self.kind(key) == _INT
        if not use.any():
            return np.zeros(self.n, np.int64)
        text = self.iv.take(pa.array(at, mask=~use))
        return _fill(pc.cast(text, pa.int64()), 0).astype(np.int64)

    def has_prefix(self, prefix: str) -> np.ndarray:
        out = np.zeros(self.n, bool)
        codes = [i for i, name in enumerate(self.names) if name.startswith(prefix)]
        if codes:
            out[self.owner[np.isin(self.code, codes)]] = True
        return out

    def json_object(
        self, tail: list[pa.Array], capture: bool, chunk: bytes, escapes: bool
    ) -> tuple[pa.Array, np.ndarray]:
        """Each owner's attributes that no column holds, then ``tail`` (``"key":value`` texts or
        nulls), as the JSON object orjson writes for the mapping's dict (null when empty);
        and whether the text is sure to be the same."""
        keep = np.array(
            [not (name in _CONSUMED or (not capture and is_content_key(name))) for name in self.names], bool
        )
        at = np.flatnonzero(keep[self.code]) if len(self.code) else np.zeros(0, np.int64)
        owner = self.owner[at]
        kind = self.kv_kind[at]
        ok = np.ones(self.n, bool)
        idx = pa.array(at)
        texts = pc.if_else(
            pa.array(kind == _STRING), pc.binary_join_element_wise('"', self.sv.take(idx), '"', ""), None
        )
        if escapes:
            escaped = _fill(pc.match_substring_regex(self.sv.take(idx), _ESCAPED), False)
            ok[owner[escaped & (kind == _STRING)]] = False
        texts = pc.if_else(pa.array(kind == _INT), self.iv.take(idx), texts)
        texts = pc.if_else(pa.array(kind == _BOOL), pc.if_else(self.bv.take(idx), "true", "false"), texts)
        doubles = kind == _DOUBLE
        if doubles.any():
            d = _fill(self.dv.take(idx), 0.0).astype(np.float64)
            d_text = pc.cast(self.dv.take(idx), pa.string())
            shown = np.abs(d)
            fits = np.isfinite(d) & ((shown >= 1e-4) | (d == 0)) & (shown < 1e15)
            fits &= _fill(pc.find_substring(d_text, "e"), 0) == -1
            whole = fits & (np.floor(d) == d)
            as_int = np.zeros(len(d), bool)
            if whole.any():
                # orjson writes 2.0 for a double and 2 for an int, and which the line held is
                # only in its bytes: known when every doubleValue of the chunk is a span
                # attribute's (none elsewhere, none spelt with a \u escape) and either none or
                # all of the whole ones are written as ints. Otherwise whole doubles are the
                # mapping's.
                every = self.dv.to_numpy(zero_copy_only=False)
                every = every[~np.isnan(every)]
                wholes = int((np.floor(every) == every).sum())
                literal_ints = len(_WHOLE_DOUBLE.findall(chunk))
                known = b"\\u" not in chunk and chunk.count(b'"doubleValue"') == len(every)
                if known and literal_ints == wholes:
                    as_int = whole
                elif not known or literal_ints:
                    fits &= ~whole
            ok[owner[doubles & ~fits]] = False
            d_int = pc.cast(pa.array(np.where(as_int, d, 0).astype(np.int64)), pa.string())
            dotted = pc.if_else(_fill(pc.match_substring(d_text, "."), False), d_text,
                                pc.binary_join_element_wise(d_text, ".0", ""))  # fmt: skip
            texts = pc.if_else(pa.array(doubles), pc.if_else(pa.array(as_int), d_int, dotted), texts)
        key_text = pa.array([orjson.dumps(name).decode() + ":" for name in self.names], pa.string())
        pairs = pc.binary_join_element_wise(key_text.take(pa.array(self.code[at])), texts, "")
        # the pairs, then each tail text, grouped by owner in that order (a stable sort)
        pieces = [pairs]
        owners = [owner]
        for texts_of_tail in tail:
            has = np.flatnonzero(_valid(texts_of_tail))
            pieces.append(texts_of_tail.take(pa.array(has)))
            owners.append(has)
        every_owner = np.concatenate(owners)
        order = np.argsort(every_owner, kind="stable")
        counts = np.bincount(every_owner, minlength=self.n)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        flat = pa.concat_arrays(pieces).take(pa.array(order))
        body = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), flat), ",")
        wrapped = pc.binary_join_element_wise("{", body, "}", "")
        return pc.if_else(pa.array(counts > 0), wrapped, None), ok


def _field(key: str, value: pa.Array) -> pa.Array:
    """``"key":"value"`` where ``value`` is not null (its text holds nothing JSON escapes)."""
    return pc.binary_join_element_wise(orjson.dumps(key).decode() + ':"', value, '"', "")


def _nested(value: pa.Array) -> np.ndarray:
    """For each ``AnyValue``, whether it is an array or map the mapping might not read: one
    holding an array or map itself (not parsed here), or a map entry that is null or has
    no key (the mapping rejects those)."""
    out = np.zeros(len(value), bool)
    array_values = pc.struct_field(pc.struct_field(value, "arrayValue"), "values")
    inner = array_values.flatten()
    deeper = _valid(pc.struct_field(inner, "arrayValue")) | _valid(pc.struct_field(inner, "kvlistValue"))
    out[_parents(array_values)[deeper]] = True
    entries_list = pc.struct_field(pc.struct_field(value, "kvlistValue"), "values")
    entries = entries_list.flatten()
    inner = pc.struct_field(entries, "value")
    bad = ~_valid(entries) | ~_valid(pc.struct_field(entries, "key"))
    bad |= _valid(pc.struct_field(inner, "arrayValue")) | _valid(pc.struct_field(inner, "kvlistValue"))
    out[_parents(entries_list)[bad]] = True
    return out


def _parents(lists: pa.Array) -> np.ndarray:
    return pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)


def _valid(arr: pa.Array) -> np.ndarray:
    return pc.is_valid(arr).to_numpy(zero_copy_only=False)


def _fill(arr: pa.Array, value: Any) -> np.ndarray:
    return pc.fill_null(arr, value).to_numpy(zero_copy_only=False)


def _match(arr: pa.Array, pattern: str) -> np.ndarray:
    return _fill(pc.match_substring_regex(arr, pattern), False)


def _hex_id(arr: pa.Array, size: int) -> np.ndarray:
    """Where an id is ``size`` bytes in lowercase hex, not all zeros (others: the mapping's)."""
    return _match(arr, f"^[0-9a-f]{{{size * 2}}}$") & _fill(pc.not_equal(arr, "0" * (size * 2)), False)


def _time_text(arr: pa.Array) -> np.ndarray:
    """Where a text is a time in ns the mapping takes: plain digits, 1 to :data:`MAX_TIME_NS`
    (texts of one length compare as their numbers do)."""
    short = _fill(pc.less(pc.utf8_length(arr), len(str(MAX_TIME_NS))), False)
    return _match(arr, _TIME_TEXT) & (short | _fill(pc.less_equal(arr, str(MAX_TIME_NS)), False))


def _int64_text(arr: pa.Array) -> np.ndarray:
    """Where a text is an int64 in the digits ``str(int(text))`` gives back (nulls: false)."""
    try:
        back = pc.cast(pc.cast(arr, pa.int64()), pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _match(arr, _INT64_TEXT)  # one text is not an int: find which
    return _fill(pc.equal(back, arr), False)


def _int64(arr: pa.Array) -> np.ndarray:
    return pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)


def _truthy(arr: pa.Array) -> np.ndarray:
    """Where a text is neither null nor empty (Python's truth of ``str | None``)."""
    return _fill(pc.not_equal(arr, ""), False)


def _truthy_arr(arr: pa.Array) -> pa.Array:
    return pa.array(_truthy(arr))


def _or_none(a: pa.Array) -> pa.Array:
    """Python's ``a or None`` on texts."""
    return pc.if_else(_truthy_arr(a), a, None)


def _or(a: pa.Array, b: pa.Array) -> pa.Array:
    """Python's ``a or b`` on texts: ``a`` unless it is null or empty."""
    return pc.if_else(_truthy_arr(a), a, b)
