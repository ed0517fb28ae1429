"""OpenTelemetry GenAI spans -> canonical rows, shared by the protobuf and JSON readers.

Both decoders (:func:`decode_protobuf` here, :mod:`yieldmeter.ingest.otlp_json`
for JSON) turn each span into plain Python values and hand them to
:class:`SpanRows`, which holds the one mapping of the GenAI semantic
conventions to ``calls``, ``signals`` and ``work_units``. The mapping is a
plain loop over dict look-ups that appends to per-column lists (no per-span
objects), because a file of a million spans must import at well over 100k
spans/s.

Spellings read (first match wins):

- provider: ``gen_ai.provider.name``, legacy ``gen_ai.system``
- model: ``gen_ai.response.model``, ``gen_ai.request.model``, ``langfuse.observation.model.name``
- input: ``gen_ai.usage.input_tokens``, legacy ``gen_ai.usage.prompt_tokens``, ``llm.usage.prompt_tokens``
- output: ``gen_ai.usage.output_tokens``, legacy ``gen_ai.usage.completion_tokens``
- cache read: ``gen_ai.usage.cache_read.input_tokens``, ``gen_ai.usage.cache_read_input_tokens``,
  OpenLIT's ``gen_ai.usage.prompt_tokens_details.cache_read``, the Vercel AI SDK's
  ``ai.usage.inputTokenDetails.cacheReadTokens``, ``ai.usage.cachedInputTokens``
- cache write: ``gen_ai.usage.cache_creation.input_tokens``, newer ``gen_ai.usage.cache_write.input_tokens``,
  ``gen_ai.usage.cache_creation_input_tokens``, OpenLIT's ``..._details.cache_write``, the AI SDK's
  ``ai.usage.inputTokenDetails.cacheWriteTokens``, Strands' ``gen_ai.usage.cache_write_input_tokens``
- reasoning: ``gen_ai.usage.reasoning.output_tokens``, ``gen_ai.usage.reasoning_tokens``, OpenLIT's
  ``gen_ai.usage.completion_tokens_details.reasoning``, the AI SDK's
  ``ai.usage.outputTokenDetails.reasoningTokens``, ``ai.usage.reasoningTokens``

Token accounting follows the conventions: input includes cache reads and
writes, output includes reasoning. The AI SDK v5's and OpenLIT's cache counts
(``PROVIDER_CACHE_KEYS``) are apart from the input where the provider reports
them apart (Anthropic, Bedrock), and then added; so are Strands Agents' counts of a Bedrock model
(``strands_bedrock``). Any other instrumentation that reports them apart
shows it by reporting more cache tokens than input (or more reasoning than
output): then the parts are added, and the batch carries a note saying how
many spans were read that way (the rule is a guess from the numbers; an
instrumentation that reports them apart with the parts *smaller* than the
input cannot be told from one that follows the conventions).

Mapping a span never raises: whatever goes wrong with one span (a value of a
shape no convention allows, a time beyond int64, a key that is not a string)
rejects that span with its reason, and the other spans of the request land.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pyarrow as pa

from yieldmeter.ingest.base import Batch, ReadOptions
from yieldmeter.ingest.conform import Conformed, conform, make_rejects
from yieldmeter.ingest.otlp_common import (
    MAX_TIME_NS,
    Resource,
    UnreadableRequest,
    _dumps,
    _hex_id,
    _str,
    _time_ns,
    as_summed,
    make_rejects_first,
    paused_gc,
    rejected_spans,
    split_sums_with_calls,
)
from yieldmeter.ingest.otlp_semconv import (
    _CACHE_READ,
    _CACHE_WRITE,
    _CACHE_WRITE_1H,
    _CONSUMED,
    _GENAI_MARKERS,
    _INPUT,
    _LANGFUSE_STRUCTURE,
    _LANGFUSE_TYPES,
    _LEGACY_REQUEST_TYPES,
    _OUTPUT,
    _REASONING,
    _USAGE_KEYS,
    AGENT_OPERATIONS,
    EVALUATION_EVENT,
    MAX_SPAN_TOKENS,
    MODEL_OPERATIONS,
    NON_MODEL_OPERATIONS,
    PROVIDER_CACHE_KEYS,
    SERVICE_TIER_KEYS,
    TOOL_OPERATIONS,
    SpanError,
    _json_obj,
    _langfuse_linkage,
    _provider_from_host,
    _tokens,
    cache_counted_apart,
    carries_call,
    carries_usage,
    first_key,
    is_content_key,
    langfuse_usage,
    remote_agent,
    strands_bedrock,
)

__all__ = [
    "CALL_COLUMNS",
    "CALL_TYPES",
    "Resource",
    "SpanRows",
    "UnreadableRequest",
    "paused_gc",
    "rejected_spans",
]

#: Model invocations: each becomes one row of ``calls``.
CALL_COLUMNS = (
    "call_id",
    "ts",
    "duration_ms",
    "provider",
    "model",
    "operation",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "status",
    "user_id",
    "team",
    "app",
    "environment",
    "trace_id",
    "span_id",
    "parent_span_id",
    "session_id",
    "work_unit_id",
    "workflow",
    "task_type",
    "reported_cost",
    "service_tier",
    "attributes",
)
_TS_US = pa.timestamp("us", tz="UTC")
#: Arrow type of each call column as the mapping produces it (conform then has nothing to cast);
#: the others are strings.
CALL_TYPES = {
    "ts": pa.int64(),
    "duration_ms": pa.float64(),
    "input_tokens": pa.int64(),
    "output_tokens": pa.int64(),
    "cached_input_tokens": pa.int64(),
    "cache_write_tokens": pa.int64(),
    "cache_write_1h_tokens": pa.int64(),
    "reasoning_tokens": pa.int64(),
    "reported_cost": pa.float64(),
}
_ERROR_STATUS = (2, "STATUS_CODE_ERROR")
#: the call columns a trace-level Langfuse attribute fills where a call lacks them
_TRACE_LEVEL_COLUMNS = ("user_id", "session_id", "workflow", "task_type", "team")
#: a tuple, not a set: a status code of any shape (even unhashable) is compared, never hashed
_KNOWN_STATUS = (0, 1, 2, None, "", "STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
#: The Arrow types of the rows :class:`SpanRows` builds for signals and work units, so a batch
#: never depends on type inference over whatever the spans carried.
_SIGNAL_SCHEMA = pa.schema(
    [
        ("signal_id", pa.string()),
        ("work_unit_id", pa.string()),
        ("ts", pa.int64()),
        ("kind", pa.string()),
        ("value", pa.float64()),
        ("actor", pa.string()),
        ("source", pa.string()),
        ("attributes", pa.string()),
        ("span_id", pa.string()),  # not a signals column: names the span in a reject's reason
    ]
)
_WORK_UNIT_SCHEMA = pa.schema(
    [
        ("work_unit_id", pa.string()),
        ("workflow", pa.string()),
        ("task_type", pa.string()),
        ("user_id", pa.string()),
        ("team", pa.string()),
        ("started_at", pa.int64()),
        ("ended_at", pa.int64()),
        ("status", pa.string()),
        ("derived", pa.bool_()),
        ("attributes", pa.string()),
    ]
)


def conform_calls(arrays: dict[str, pa.Array], source: str, positions: Any) -> Conformed:
    """``calls`` rows from one array per :data:`CALL_COLUMNS` name (typed as :data:`CALL_TYPES`,
    ``ts`` in ns // 1000): what both the mapping here and the columnar reader hand to conform."""
    arrays = dict(arrays)
    arrays["ts"] = arrays["ts"].cast(_TS_US)
    arrays["source"] = pa.array([source] * len(arrays["ts"]), pa.string())
    # a reject names its span: a request's positions count spans, a file's count lines
    return conform(
        "calls", pa.table(arrays), source=source, positions=positions, named_by=("span", "span_id")
    )


def _model_call(op: str, a: dict[str, Any]) -> bool:
    """Whether a span of operation ``op`` is a model call or structure (agent, tool), not a
    framework step (retrieval, memory, workflow...) that reports no spend, nor an operation not
    known here that names no model and reports no spend."""
    if op in MODEL_OPERATIONS or op in AGENT_OPERATIONS or op in TOOL_OPERATIONS:
        return True
    if op in NON_MODEL_OPERATIONS:
        return carries_usage(a)  # spend is never lost: a step reporting it is a call
    return carries_call(a)


class SpanRows:
    """Collects mapped spans column by column and turns them into a :class:`Batch`."""

    def __init__(self, options: ReadOptions) -> None:
        self.options = options
        self.capture = options.capture_content
        self.score_signals = options.score_signals
        #: one tuple per call, in ``CALL_COLUMNS`` order; turned into columns once, in :meth:`batch`
        self.rows: list[tuple[Any, ...]] = []
        self.positions: list[int] = []
        self.signals: list[dict[str, Any]] = []
        self.signal_positions: list[int] = []
        self.work_units: dict[str, dict[str, Any]] = {}
        #: (work unit id, the unit it replaced or None) per write, to take a rejected span's back
        self._unit_writes: list[tuple[str, dict[str, Any] | None]] = []
        self.bad_positions: list[int] = []
        self.bad_reasons: list[str] = []
        self.bad_raw: list[Any] = []
        self.ignored = 0
        self.spans = 0
        self._seen_keys: set[Any] = set()
        self._drop_keys: set[Any] = set()
        self.no_model = 0
        #: spans whose cache (or reasoning) tokens exceeded their input (output): read as counted apart
        self.cache_apart = 0
        self.reasoning_apart = 0
        #: spans kept as calls whose usage may be their children's (remote agents' client spans,
        #: framework steps reporting usage): (call id, the counts they added); one whose span is
        #: the parent of a call of the batch is taken back in :meth:`batch`
        self._summing_calls: list[tuple[str, tuple[int, int, int]]] = []
        #: trace-level attributes the Langfuse SDK set on a span (v3's ``update_trace`` puts them
        #: on the root span, which is no call): (trace, {column or attribute: value}) per span
        self._trace_level: list[tuple[str, dict[str, Any]]] = []

    def __len__(self) -> int:
        return self.spans

    # -- one span -------------------------------------------------------------------------------
    def add(
        self,
        trace_id: str,
        span_id: str,
        parent_span_id: str,
        name: str,
        start_ns: Any,
        end_ns: Any,
        status_code: Any,
        status_message: str,
        attrs: dict[str, Any],
        resource: Resource,
        events: list[tuple[str, Any, dict[str, Any]]] | None,
        position: int,
        kind: Any = None,
    ) -> None:
        """Map one span. Never raises for bad data: the span is rejected with its reason.

        ``kind`` is the span's kind (``3`` or ``SPAN_KIND_CLIENT``: a client span)."""
        self.spans += 1
        # what this span may have added before it failed is taken back, so a span is either
        # mapped whole or rejected whole
        n_rows, n_signals, ignored = len(self.rows), len(self.signals), self.ignored
        n_summing = len(self._summing_calls)
        n_trace_level, n_unit_writes = len(self._trace_level), len(self._unit_writes)
        counts = (self.no_model, self.cache_apart, self.reasoning_apart)
        try:
            self._add(
                trace_id, span_id, parent_span_id, name, start_ns, end_ns, status_code, status_message,
                attrs, resource, events, position, kind,
            )  # fmt: skip
        except Exception as exc:  # any failure of one span is that span's reject, never the request's
            del self.rows[n_rows:], self.positions[n_rows:]
            del self.signals[n_signals:], self.signal_positions[n_signals:]
            del self._summing_calls[n_summing:]
            del self._trace_level[n_trace_level:]
            while len(self._unit_writes) > n_unit_writes:  # latest first, back to what was there
                wu, before = self._unit_writes.pop()
                if before is None:
                    del self.work_units[wu]
                else:
                    self.work_units[wu] = before
            self.no_model, self.cache_apart, self.reasoning_apart = counts
            self.ignored = ignored
            reason = (
                str(exc) if isinstance(exc, SpanError) else f"unreadable span ({type(exc).__name__}: {exc})"
            )
            self._reject(position, reason, trace_id, span_id, name, attrs)

    def _reject(self, position: int, reason: str, trace_id: Any, span_id: Any, name: Any, attrs: Any) -> None:
        """Record a rejected span; never raises (the raw span is kept without its content)."""
        self.bad_positions.append(position)
        self.bad_reasons.append(f"span {span_id!s} ({name!s}): {reason}"[:2000])
        raw: dict[str, Any] = {"trace_id": trace_id, "span_id": span_id, "name": name}
        try:
            if isinstance(attrs, dict):
                raw["attributes"] = {k: v for k, v in attrs.items() if not self._is_content(k)}
            text = _dumps(raw)
        except Exception:  # a value orjson cannot write (nested too deep): the ids are enough
            text = _dumps({k: repr(v)[:200] for k, v in raw.items() if k != "attributes"})
        self.bad_raw.append(text)

    def _is_content(self, key: Any) -> bool:
        return not self.capture and is_content_key(key if type(key) is str else str(key))

    def _add(
        self,
        trace_id: str,
        span_id: str,
        parent_span_id: str,
        name: str,
        start_ns: Any,
        end_ns: Any,
        status_code: Any,
        status_message: str,
        a: dict[str, Any],
        resource: Resource,
        events: list[tuple[str, Any, dict[str, Any]]] | None,
        position: int,
        kind: Any = None,
    ) -> None:
        op = a.get("gen_ai.operation.name")
        lf_type = a.get("langfuse.observation.type")
        if lf_type is not None and not isinstance(lf_type, str):
            lf_type = _str(lf_type)
        if lf_type is not None:
            self._langfuse_trace(trace_id, a)
        if op is None:
            if lf_type is not None:
                op = _LANGFUSE_TYPES.get(lf_type) or _LANGFUSE_STRUCTURE.get(lf_type)
            elif "llm.request.type" in a:
                req_type = _str(a["llm.request.type"]) or ""
                op = _LEGACY_REQUEST_TYPES.get(req_type, req_type)
        genai = op is not None or any(k in a for k in _GENAI_MARKERS)
        if genai and isinstance(op, str) and not _model_call(op, a):
            genai = False  # a framework step, or an unknown operation with no model or usage
        if not genai or (lf_type is not None and op is None):
            if events and any(ev[0] == EVALUATION_EVENT for ev in events):
                # an evaluation can sit on any span: it needs real ids to name its signal
                self._evaluations(
                    _hex_id(trace_id, 16, "trace_id"), _hex_id(span_id, 8, "span_id"), a, events,
                    position, _time_ns(start_ns),
                )  # fmt: skip
            self.ignored += 1
            return
        if op is None:
            op = "chat"
        elif not isinstance(op, str):
            raise SpanError(f"gen_ai.operation.name: not a string ({op!r})")

        trace_id = _hex_id(trace_id, 16, "trace_id")
        span_id = _hex_id(span_id, 8, "span_id")
        if parent_span_id:  # written as span ids are (lowercase hex), so a parent meets its span
            with contextlib.suppress(SpanError):
                parent_span_id = _hex_id(parent_span_id, 8, "parentSpanId")
        try:
            start = int(start_ns)
            end = int(end_ns) if end_ns not in (None, "", 0, "0") else start
        except (TypeError, ValueError, OverflowError):
            raise SpanError(
                f"startTimeUnixNano/endTimeUnixNano: not a whole number ({start_ns!r}, {end_ns!r})"
            ) from None
        if start <= 0:
            raise SpanError("startTimeUnixNano: missing")
        if start > MAX_TIME_NS:  # 2100-01-01: a clock or unit error, not a real call
            raise SpanError(f"startTimeUnixNano: {start} is after the year 2100")
        if end > MAX_TIME_NS:
            raise SpanError(f"endTimeUnixNano: {end} is after the year 2100")
        if end < start:
            raise SpanError(f"endTimeUnixNano: {end} is before startTimeUnixNano {start}")

        wu = a.get("yieldmeter.work_unit.id")
        workflow = a.get("yieldmeter.workflow")
        task_type = a.get("yieldmeter.task_type")
        team = a.get("yieldmeter.team")
        if lf_type is not None and (wu is None or workflow is None):
            wu, workflow, task_type, team = _langfuse_linkage(a, wu, workflow, task_type, team)
        fb = resource.fallback
        if fb:
            workflow = workflow or fb.get("yieldmeter.workflow")
            team = team or fb.get("yieldmeter.team")
            task_type = task_type or fb.get("yieldmeter.task_type")
        conversation = a.get("gen_ai.conversation.id")
        if wu is None:
            wu = conversation if conversation is not None else trace_id
        error = status_code in _ERROR_STATUS or a.get("error.type") is not None
        if op in AGENT_OPERATIONS:
            self._agent(trace_id, span_id, parent_span_id, op, start, end, error, a, _str(wu),
                        workflow, task_type, team, position)  # fmt: skip
            if (
                op == "invoke_agent"
                and any(a.get(k) is not None for k in _USAGE_KEYS)
                and remote_agent(a, kind)
            ):
                # a remote agent (semconv's invoke agent client span to a hosted agent: Bedrock
                # Agents...) runs its model calls where no span of them reaches here: its usage
                # is a call of its own
                self._summing_call(
                    trace_id, span_id, parent_span_id, op, start, end, status_code, status_message,
                    error, a, resource, lf_type, conversation, wu, workflow, task_type, team, position,
                )  # fmt: skip
        elif op in TOOL_OPERATIONS:
            self._tool(trace_id, span_id, parent_span_id, start, end, error, a, _str(wu), position)
        elif op in NON_MODEL_OPERATIONS:
            # a framework step reporting spend (OpenLIT's LangChain LLM span, whose provider may
            # be instrumented or not): a call, unless a call of the batch sits under it
            self._summing_call(
                trace_id, span_id, parent_span_id, op, start, end, status_code, status_message,
                error, a, resource, lf_type, conversation, wu, workflow, task_type, team, position,
            )  # fmt: skip
        else:
            self._call(
                trace_id, span_id, parent_span_id, op, start, end, status_code, status_message, error,
                a, resource, lf_type, conversation, wu, workflow, task_type, team, position,
            )  # fmt: skip
        if events:
            self._evaluations(trace_id, span_id, a, events, position, start, wu=_str(wu))

    def _summing_call(self, trace_id: str, span_id: str, parent_span_id: str, *args: Any) -> None:
        """:meth:`_call` for a span whose usage may be the sum of calls under it: kept as a call,
        and taken back in :meth:`batch` when a call of the batch has it as its parent."""
        counts = (self.no_model, self.cache_apart, self.reasoning_apart)
        self._call(trace_id, span_id, parent_span_id, *args)
        added = (
            self.no_model - counts[0],
            self.cache_apart - counts[1],
            self.reasoning_apart - counts[2],
        )
        self._summing_calls.append((f"{trace_id}-{span_id}", added))

    def _call(
        self, trace_id: str, span_id: str, parent_span_id: str, op: str, start: int, end: int,
        status_code: Any, status_message: str, error: bool, a: dict[str, Any], resource: Resource,
        lf_type: Any, conversation: Any, wu: Any, workflow: Any, task_type: Any, team: Any, position: int,
    ) -> None:  # fmt: skip

        get = a.get
        # Fast path for the common shape (a plain in-range int under the current name); anything
        # else goes through _tokens, which reads every spelling and names what is wrong.
        inp = get("gen_ai.usage.input_tokens")
        if type(inp) is not int or not 0 <= inp <= MAX_SPAN_TOKENS:
            inp = _tokens(a, _INPUT)
        out = get("gen_ai.usage.output_tokens")
        if type(out) is not int or not 0 <= out <= MAX_SPAN_TOKENS:
            out = _tokens(a, _OUTPUT)
        cache_read = get("gen_ai.usage.cache_read.input_tokens")
        cache_key = None  # the current name: inside the input, as the conventions say
        if type(cache_read) is not int or not 0 <= cache_read <= MAX_SPAN_TOKENS:
            cache_read = _tokens(a, _CACHE_READ) or 0
            cache_key = first_key(a, _CACHE_READ)
        cache_write = _tokens(a, _CACHE_WRITE) or 0
        hour = _tokens(a, _CACHE_WRITE_1H) or 0
        reasoning = _tokens(a, _REASONING) or 0
        reported = get("gen_ai.usage.cost")
        if lf_type is not None:
            usage = get("langfuse.observation.usage_details")
            if usage is not None and inp is None:
                inp, out, cache_read, cache_write, reasoning, hour = langfuse_usage(
                    _json_obj(usage, "langfuse.observation.usage_details")
                )
            cost = get("langfuse.observation.cost_details")
            if cost is not None and reported is None:
                cd = _json_obj(cost, "langfuse.observation.cost_details")
                reported = cd.get("total")
                if reported is None and cd:
                    reported = sum(v for v in cd.values() if isinstance(v, int | float))
        # the hour's writes are a part of the writes: a span that reports them alone (or more
        # of them) wrote at least those
        cache_write = max(cache_write, hour)
        inp = inp or 0
        out = out or 0
        request_model = get("gen_ai.request.model")
        model = get("gen_ai.response.model") or request_model or get("langfuse.observation.model.name")
        provider = get("gen_ai.provider.name") or get("gen_ai.system")
        if provider is None:
            provider = _provider_from_host(get("server.address"))
        # Conventions: input includes cache reads and writes. A spelling that passes the
        # provider's counts through is apart where the provider reports them apart (Anthropic's
        # input_tokens = uncached only). Any other instrumentation that reports them apart
        # shows it by reporting more cached tokens than input; then the parts are summed (and
        # counted for a note: a guess from the numbers).
        known_apart = bool(
            (cache_read or cache_write)
            and (
                (
                    (cache_key in PROVIDER_CACHE_KEYS or first_key(a, _CACHE_WRITE) in PROVIDER_CACHE_KEYS)
                    and cache_counted_apart(provider, model)
                )
                or strands_bedrock(provider, model)
            )
        )
        cache_apart = not known_apart and cache_read + cache_write > inp
        reasoning_apart = reasoning > out
        if cache_apart or known_apart:
            inp += cache_read + cache_write
        if reasoning_apart:
            out += reasoning
        if reported is not None:
            try:
                reported = float(reported)
            except (TypeError, ValueError, OverflowError):
                raise SpanError(f"gen_ai.usage.cost: not a number ({reported!r})") from None

        # an unknown code is kept as text, and conform rejects it: "status: not one of ok, error"
        status = ("error" if error else "ok") if status_code in _KNOWN_STATUS else str(status_code)

        seen = self._seen_keys
        if not a.keys() <= seen:  # classify each attribute name once per reader
            new = a.keys() - seen
            seen |= new
            self._drop_keys |= {k for k in new if k in _CONSUMED or self._is_content(k)}
        drop = self._drop_keys
        extra = {k: v for k, v in a.items() if k not in drop}
        if error and status_message:
            extra["status.message"] = status_message
        if conversation is not None:
            extra["gen_ai.conversation.id"] = conversation
        if request_model is not None and request_model != model:
            extra["gen_ai.request.model"] = request_model
        if cache_apart or known_apart or reasoning_apart:
            extra["yieldmeter.tokens_counted_apart"] = ",".join(
                n for n, on in (("cache", cache_apart or known_apart), ("reasoning", reasoning_apart)) if on
            )

        tier = None
        for key in SERVICE_TIER_KEYS:
            tier = get(key)
            if tier is not None:
                break
        user = get("user.id") or get("enduser.id") or get("langfuse.user.id")
        session = get("session.id") or get("langfuse.session.id") or conversation
        environment = resource.environment or _str(get("langfuse.environment"))
        # every value is computed before the row is kept, so a failure cannot misalign the columns
        row = (
            f"{trace_id}-{span_id}",
            start // 1000,
            (end - start) / 1e6,
            provider if provider is None or type(provider) is str else _str(provider),
            model if model is None or type(model) is str else _str(model),
            op,
            inp,
            out,
            cache_read,
            cache_write,
            hour,
            reasoning,
            status,
            user if user is None or type(user) is str else _str(user),
            team if team is None or type(team) is str else _str(team),
            resource.app,
            environment,
            trace_id,
            span_id,
            (parent_span_id if type(parent_span_id) is str else _str(parent_span_id)) or None,
            session if session is None or type(session) is str else _str(session),
            wu if wu is None or type(wu) is str else _str(wu),
            workflow if workflow is None or type(workflow) is str else _str(workflow),
            task_type if task_type is None or type(task_type) is str else _str(task_type),
            reported,
            tier if tier is None or type(tier) is str else _str(tier),
            _dumps(extra) if extra else None,
        )
        self.rows.append(row)
        self.positions.append(position)
        self.no_model += model is None
        self.cache_apart += cache_apart
        self.reasoning_apart += reasoning_apart

    # -- structure and events ---------------------------------------------------------------------
    def _agent(
        self, trace_id: str, span_id: str, parent_span_id: str, op: str, start: int, end: int,
        error: bool, a: dict[str, Any], wu: str | None, workflow: Any, task_type: Any, team: Any,
        position: int,
    ) -> None:  # fmt: skip
        """An agent or workflow run describes its work unit (the earliest-starting one wins)."""
        if wu is None:
            return
        known = self.work_units.get(wu)
        if known is not None and known["_start"] <= start:
            return
        attrs = {
            "operation": op,
            "span_id": span_id,
            "trace_id": trace_id,
            "parent_span_id": parent_span_id or None,
            "gen_ai.agent.name": a.get("gen_ai.agent.name"),
            "gen_ai.agent.id": a.get("gen_ai.agent.id"),
        }
        unit = {
            "_start": start,
            "_position": position,
            "work_unit_id": wu,
            "workflow": _str(workflow),
            "task_type": _str(task_type) or _str(a.get("gen_ai.agent.name")),
            "user_id": _str(a.get("user.id") or a.get("enduser.id")),
            "team": _str(team),
            "started_at": start // 1000,
            "ended_at": end // 1000,
            "status": "failed" if error else "completed",
            "derived": False,
            "attributes": _dumps({k: v for k, v in attrs.items() if v is not None}),
        }
        self._unit_writes.append((wu, known))
        self.work_units[wu] = unit

    def _tool(
        self, trace_id: str, span_id: str, parent_span_id: str, start: int, end: int, error: bool,
        a: dict[str, Any], wu: str | None, position: int,
    ) -> None:  # fmt: skip
        """A tool execution is an event of its work unit: a ``tool_call`` signal (1 ok, 0 failed)."""
        attrs = {
            "gen_ai.tool.name": a.get("gen_ai.tool.name"),
            "gen_ai.tool.call.id": a.get("gen_ai.tool.call.id"),
            "span_id": span_id,
            "parent_span_id": parent_span_id or None,
            "duration_ms": (end - start) / 1e6,
        }
        signal = {
            "signal_id": f"{trace_id}-{span_id}",
            "work_unit_id": wu,
            "ts": start // 1000,
            "kind": "tool_call",
            "value": 0.0 if error else 1.0,
            "actor": _str(a.get("gen_ai.tool.name")),
            "source": self.options.source,
            "attributes": _dumps({k: v for k, v in attrs.items() if v is not None}),
            "span_id": span_id,
        }
        self.signals.append(signal)
        self.signal_positions.append(position)

    def _evaluations(
        self, trace_id: str, span_id: str, a: dict[str, Any],
        events: list[tuple[str, Any, dict[str, Any]]], position: int, span_start: int | None,
        wu: str | None = None,
    ) -> None:  # fmt: skip
        """``gen_ai.evaluation.result`` events -> signals: ``rated``, or the kind config maps the name to.

        An event without a readable time takes the span's start.
        """
        for i, (ev_name, ev_time, ev) in enumerate(events):
            if ev_name != EVALUATION_EVENT:
                continue
            if not isinstance(ev, dict):
                raise SpanError(f"event {i} ({EVALUATION_EVENT}): attributes not in OTLP shape")
            unit = wu
            if unit is None:
                unit = _str(a.get("yieldmeter.work_unit.id") or a.get("gen_ai.conversation.id") or trace_id)
            eval_name = _str(ev.get("gen_ai.evaluation.name"))
            value = ev.get("gen_ai.evaluation.score.value")
            attrs: dict[str, Any] = {"gen_ai.evaluation.name": eval_name, "span_id": span_id}
            if value is not None:
                try:
                    value = float(value)
                except (TypeError, ValueError, OverflowError):
                    attrs["unreadable_score"] = _str(value)
                    value = None
            label = ev.get("gen_ai.evaluation.score.label")
            if label is not None:
                attrs["gen_ai.evaluation.score.label"] = label
            if self.capture and ev.get("gen_ai.evaluation.explanation") is not None:
                attrs["gen_ai.evaluation.explanation"] = ev["gen_ai.evaluation.explanation"]
            ts_ns = _time_ns(ev_time)
            if ts_ns is None:
                if ev_time not in (None, "", 0, "0"):
                    attrs["unreadable_time"] = _str(ev_time)
                ts_ns = span_start  # the span's time; none either: conform rejects "ts: missing"
            self.signals.append(
                {
                    "signal_id": f"{trace_id}-{span_id}-eval-{i}",
                    "work_unit_id": unit,
                    "ts": ts_ns // 1000 if ts_ns is not None else None,
                    "kind": self.score_signals.get(eval_name or "", "rated"),
                    "value": value,
                    "actor": None,
                    "source": self.options.source,
                    "attributes": _dumps(attrs),
                    "span_id": span_id,
                }
            )
            self.signal_positions.append(position)

    # -- output ---------------------------------------------------------------------------------
    def batch(self) -> Batch:
        """Conform what was collected into canonical tables; rejects keep their position and reason."""
        source = self.options.source
        if self._trace_level:
            self._apply_trace_level()
        n = len(self.rows)
        columns = zip(*self.rows, strict=True) if n else ([] for _ in CALL_COLUMNS)
        arrays = {
            name: pa.array(values, CALL_TYPES.get(name, pa.string()))
            for name, values in zip(CALL_COLUMNS, columns, strict=True)
        }
        batch = Batch()
        calls = conform_calls(arrays, source, self.positions)
        if self._summing_calls:
            kept, batch.summed = self._drop_sums_with_calls(calls.rows)
            calls = Conformed(kept, calls.rejects)
        batch.add("calls", calls)
        if self.signals:
            sig = pa.Table.from_pylist(self.signals, schema=_SIGNAL_SCHEMA)
            sig = sig.set_column(sig.schema.get_field_index("ts"), "ts", sig.column("ts").cast(_TS_US))
            named = ("span", "span_id")  # as the calls' rejects name their span
            batch.add(
                "signals",
                conform("signals", sig, source=source, positions=self.signal_positions, named_by=named),
            )
        if self.work_units:
            units = list(self.work_units.values())
            wu = pa.Table.from_pylist(units, schema=_WORK_UNIT_SCHEMA)
            for col in ("started_at", "ended_at"):
                wu = wu.set_column(wu.schema.get_field_index(col), col, wu.column(col).cast(_TS_US))
            positions = [u["_position"] for u in units]
            batch.add("work_units", conform("work_units", wu, source=source, positions=positions))
        if self.bad_positions:
            batch.rejects = make_rejects_first(
                make_rejects("calls", source, self.bad_positions, self.bad_reasons, self.bad_raw),
                batch.rejects,
            )
        batch.ignored = self.ignored
        batch.no_model = self.no_model
        batch.notes.extend(self._notes())
        return batch

    def _langfuse_trace(self, trace_id: Any, a: dict[str, Any]) -> None:
        """Note the trace-level attributes a Langfuse span carries (user, session, ``langfuse.trace.*``
        and the linkage in the trace's metadata), to give the calls of its trace in :meth:`batch`."""
        trace_level = {k: v for k, v in a.items() if type(k) is str and k.startswith("langfuse.trace.")}
        user = a.get("user.id") or a.get("langfuse.user.id")
        session = a.get("session.id") or a.get("langfuse.session.id")
        if not trace_level and user is None and session is None:
            return
        try:
            trace_id = _hex_id(trace_id, 16, "trace_id")
        except SpanError:
            return  # a span with no trace names none; its own rejection, if any, says why
        found: dict[str, Any] = {}
        if user is not None:
            found["user_id"] = _str(user)
        if session is not None:
            found["session_id"] = _str(session)
        if trace_level:
            _, workflow, task_type, team = _langfuse_linkage(trace_level, None, None, None, None)
            for column, v in (("workflow", workflow), ("task_type", task_type), ("team", team)):
                if v is not None:
                    found[column] = _str(v)
            for k, v in trace_level.items():
                if not self._is_content(k):
                    found[k] = v
        self._trace_level.append((trace_id, found))

    def _apply_trace_level(self) -> None:
        """Give each call the trace-level attributes (see :meth:`_langfuse_trace`) of its trace
        that it lacks: Langfuse applies them trace-wide. Only spans of one batch are seen."""
        by_trace: dict[str, dict[str, Any]] = {}
        for trace_id, found in self._trace_level:
            known = by_trace.setdefault(trace_id, {})
            for k, v in found.items():
                known.setdefault(k, v)  # the first span that sets one wins
        at = {name: CALL_COLUMNS.index(name) for name in _TRACE_LEVEL_COLUMNS}
        t_col, a_col = CALL_COLUMNS.index("trace_id"), CALL_COLUMNS.index("attributes")
        for i, row in enumerate(self.rows):
            found = by_trace.get(row[t_col])
            if not found:
                continue
            new = list(row)
            for name, col in at.items():
                if new[col] is None and name in found:
                    new[col] = found[name]
            extra_keys = [k for k in found if k not in at]
            if extra_keys:
                attrs = orjson.loads(row[a_col]) if row[a_col] else {}
                for k in extra_keys:
                    attrs.setdefault(k, found[k])
                new[a_col] = _dumps(attrs)
            self.rows[i] = tuple(new)

    def _drop_sums_with_calls(self, calls: pa.Table) -> tuple[pa.Table, pa.Table]:
        """The conformed calls but the remote agents' spans (or framework steps') with a call of the
        batch under them: their usage is that call's (the calls' own spans reached here), so they
        are structure only (:func:`~yieldmeter.ingest.otlp_common.split_sums_with_calls`), and
        the counts they added to the notes are taken back. A call quarantined by conform is no
        call under them: they stay calls, so the usage is counted while the call waits.
        """
        kept, dropped = split_sums_with_calls(calls)
        if dropped.num_rows:
            added: dict[str, list[tuple[int, int, int]]] = {}
            for call_id, counts in self._summing_calls:
                added.setdefault(call_id, []).append(counts)
            for call_id in dropped.column("call_id").to_pylist():
                if added.get(call_id):
                    no_model, cache_apart, reasoning_apart = added[call_id].pop()
                    self.no_model -= no_model
                    self.cache_apart -= cache_apart
                    self.reasoning_apart -= reasoning_apart
        self._summing_calls = []
        return kept, as_summed(dropped)

    def _notes(self) -> list[str]:
        notes = []
        if self.no_model:
            notes.append(
                f"{self.no_model} GenAI span(s) carry no model "
                "(gen_ai.request.model / gen_ai.response.model): "
                "landed as unpriced calls"
            )
        if self.cache_apart:
            notes.append(
                f"{self.cache_apart} span(s) report more cache read + write tokens than input tokens: "
                "read as an instrumentation that counts cached tokens apart from input, and added to "
                "input_tokens (the conventions count them inside; see docs/telemetry.md)"
            )
        if self.reasoning_apart:
            notes.append(
                f"{self.reasoning_apart} span(s) report more reasoning tokens than output tokens: "
                "read as counted apart from output, and added to output_tokens"
            )
        return notes
