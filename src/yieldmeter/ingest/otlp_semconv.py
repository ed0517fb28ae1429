"""The OpenTelemetry GenAI semantic conventions as yieldmeter reads them: names and spellings.

Every spelling the field uses is listed here once (current, legacy,
OpenLLMetry, OpenLIT, Langfuse), with the helpers that read token counts and
Langfuse usage JSON. :mod:`yieldmeter.ingest.otlp` maps spans with them.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Any

import orjson

MODEL_OPERATIONS = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings", "completion", "embedding", "generation"}
)
#: Agent and tool spans: kept as work-unit structure and tool-call signals, not as calls
#: (agent spans often carry their children's usage, which would count tokens twice); only a
#: span that is shown to be a remote agent's (:func:`remote_agent`) is a call as well.
AGENT_OPERATIONS = frozenset({"invoke_agent", "invoke_workflow", "create_agent"})
#: Providers (semconv's names) that run agents as a hosted service: Bedrock Agents, Azure AI
#: Foundry agents, OpenAI's Assistants, Vertex AI Agent Engine.
HOSTED_AGENT_PROVIDERS = frozenset(
    {"aws.bedrock", "azure.ai.inference", "azure.ai.openai", "openai", "gcp.vertex_ai", "gcp.gen_ai"}
)
TOOL_OPERATIONS = frozenset({"execute_tool"})
#: Framework steps around model calls, whose model calls usually have spans of their own: not
#: calls (ignored and counted) unless they report usage or a cost (:func:`carries_usage`), as
#: OpenLIT's LangChain ``framework`` span of an LLM whose provider is not instrumented does.
#: Semconv's retrieval and memory operations, Spring AI's ``framework`` (chat client, advisors,
#: its tool calls), OpenLIT's ``workflow``, ``retrieve`` and ``vectordb``. Any other operation
#: the mapping does not know is a call when it carries a model, token usage or a cost (a newer
#: kind of inference), else ignored.
NON_MODEL_OPERATIONS = frozenset(
    {
        "retrieval",
        "search_memory",
        "upsert_memory",
        "delete_memory",
        "create_memory_store",
        "delete_memory_store",
        "framework",
        "workflow",
        "retrieve",
        "vectordb",
    }
)
#: Operations of calls whose usage may be the sum of calls under them: a remote agent's client
#: span, a framework step reporting usage. The mapping keeps such a span as structure when a
#: call of the same request sits under it; the store does the same across requests and files
#: (``Store.write_batch``), and the lake inside each file (``split_sums_with_calls`` in
#: :mod:`yieldmeter.ingest.otlp_common`).
SUMMING_OPERATIONS = tuple(sorted(AGENT_OPERATIONS | NON_MODEL_OPERATIONS))
EVALUATION_EVENT = "gen_ai.evaluation.result"

#: Per span, above this many tokens of one kind the count is not believed (no model has such a window).
MAX_SPAN_TOKENS = 100_000_000

_GENAI_MARKERS = (
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.provider.name",
    "gen_ai.system",
    "langfuse.observation.type",
)
_LEGACY_REQUEST_TYPES = {"completion": "text_completion", "embedding": "embeddings", "chat": "chat"}
_LANGFUSE_TYPES = {"generation": "chat", "embedding": "embeddings"}
_LANGFUSE_STRUCTURE = {"agent": "invoke_agent", "tool": "execute_tool", "chain": "invoke_workflow"}

_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens")
#: Cache and reasoning tokens are parts of the input and output counts on the same span (the
#: conventions), except where :data:`PROVIDER_CACHE_KEYS` says it depends on the provider. The
#: apart rule in ``SpanRows._call`` covers the rest.
_CACHE_READ = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.prompt_tokens_details.cache_read",  # OpenLIT
    "ai.usage.inputTokenDetails.cacheReadTokens",  # Vercel AI SDK v6
    "ai.usage.cachedInputTokens",  # Vercel AI SDK v5 (v6 writes both)
)
_CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.prompt_tokens_details.cache_write",  # OpenLIT
    "ai.usage.inputTokenDetails.cacheWriteTokens",  # Vercel AI SDK v6
    "gen_ai.usage.cache_write_input_tokens",  # Strands Agents
)
#: The service tier the call was served at (:mod:`yieldmeter.pricing.tiers`): the response's
#: first (what the provider used), then the request's (``flex`` is served as asked or refused).
#: semconv's current and older names, and OpenLIT's.
SERVICE_TIER_KEYS = (
    "openai.response.service_tier",
    "gen_ai.openai.response.service_tier",
    "gen_ai.response.service_tier",
    "openai.request.service_tier",
    "gen_ai.openai.request.service_tier",
    "gen_ai.request.service_tier",
)
#: Anthropic's cache writes kept for an hour, a part of the cache writes (priced at their own
#: rate), as instrumentations that pass Anthropic's ``cache_creation`` through spell them
_CACHE_WRITE_1H = (
    "gen_ai.usage.cache_creation.ephemeral_1h_input_tokens",
    "gen_ai.usage.cache_creation.ephemeral_1h.input_tokens",
)
#: Spellings that pass the provider's own cache counts through, beside its own input count
#: (``gen_ai.usage.input_tokens``): the Vercel AI SDK v5's ``cachedInputTokens`` (v6 reads
#: ``inputTokenDetails`` first, whose input is the total) and OpenLIT's ``prompt_tokens_details``.
#: Where the provider reports its input without the cached tokens (:func:`cache_counted_apart`:
#: Anthropic, Bedrock) the cache counts are apart and are added to the input; where it reports
#: them inside (OpenAI, Gemini...) they are parts of it.
PROVIDER_CACHE_KEYS = frozenset(
    {
        "ai.usage.cachedInputTokens",
        "gen_ai.usage.prompt_tokens_details.cache_read",
        "gen_ai.usage.prompt_tokens_details.cache_write",
    }
)
_REASONING = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.completion_tokens_details.reasoning",  # OpenLIT
    "ai.usage.outputTokenDetails.reasoningTokens",  # Vercel AI SDK v6
    "ai.usage.reasoningTokens",  # Vercel AI SDK v5
)

#: What makes a span of an operation the mapping does not know a model call: a model, or usage.
_MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "langfuse.observation.model.name")
_USAGE_KEYS = (
    *_INPUT,
    *_OUTPUT,
    *_CACHE_READ,
    *_CACHE_WRITE,
    *_REASONING,
    "langfuse.observation.usage_details",
)


#: Strands Agents names itself the provider (``strands-agents``) and passes its model
#: provider's cache counts through (``gen_ai.usage.cache_read_input_tokens``,
#: ``cache_write_input_tokens``) beside that provider's input count: Bedrock's Converse counts
#: (its default model provider) are apart from the input; its OpenAI and LiteLLM providers' are
#: inside it. Which one ran shows in the model id: the Bedrock models that cache prompts are
#: Anthropic's and Amazon's (``us.anthropic.claude-...-v1:0``, ``amazon.nova-pro-v1:0``), or an
#: inference profile's ARN. Other vendor-dotted ids are not told apart: Strands' OpenAI
#: provider reaches ``openai.gpt-oss-120b`` on Bedrock's OpenAI-compatible endpoint, with
#: ``prompt_tokens`` (cache inside). Those are left to the rule from the numbers.
STRANDS_PROVIDER = "strands-agents"
_BEDROCK_MODEL_ID = re.compile(
    r"^(?:arn:aws[a-z-]*:bedrock:|(?:(?:us|eu|apac|us-gov|global|au|jp|ca)\.)?(?:anthropic|amazon)\.)"
)


def strands_bedrock(provider: Any, model: Any) -> bool:
    """Whether a Strands Agents span reports a Bedrock model's usage, whose cache counts are
    apart from its input (:data:`STRANDS_PROVIDER`)."""
    return (
        isinstance(provider, str)
        and provider.strip().lower() == STRANDS_PROVIDER
        and isinstance(model, str)
        and _BEDROCK_MODEL_ID.match(model.strip().lower()) is not None
    )


def cache_counted_apart(provider: Any, model: Any) -> bool:
    """Whether a provider reports its input tokens without the cached ones: Anthropic's API
    (``anthropic``, the AI SDK's ``anthropic.messages``, ``vertex.anthropic.messages``), Bedrock's
    Converse API for any model (``aws.bedrock``, the AI SDK's ``amazon-bedrock``), and Claude on
    Vertex AI. OpenAI, Azure OpenAI and Gemini count the cached tokens inside the input."""
    if not isinstance(provider, str):
        return False
    p = provider.lower()
    if "anthropic" in p or "bedrock" in p:
        return True
    return ("vertex" in p or p.startswith("gcp")) and isinstance(model, str) and "claude" in model.lower()


def first_key(a: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` with a value: the spelling :func:`_tokens` reads."""
    for k in keys:
        if a.get(k) is not None:
            return k
    return None


def remote_agent(a: dict[str, Any], kind: Any) -> bool:
    """Whether an ``invoke_agent`` span is a remote agent's, whose model calls send no spans here.

    Span kind ``CLIENT`` alone says little: semconv asks for it on every agent span unless
    the agent is known to run in process, and Strands (up to 1.12) sends its in-process agents
    as client spans carrying the run's summed usage. Positive evidence is needed as well: the
    remote endpoint (``server.address``, as semconv's invoke agent client span records it), or
    a hosted-agent provider (:data:`HOSTED_AGENT_PROVIDERS`) together with the agent's id
    (``gen_ai.agent.id``, which calling a hosted agent needs)."""
    if kind not in (3, "SPAN_KIND_CLIENT"):
        return False
    if a.get("server.address"):
        return True
    provider = a.get("gen_ai.provider.name") or a.get("gen_ai.system")
    return (
        isinstance(provider, str)
        and provider in HOSTED_AGENT_PROVIDERS
        and a.get("gen_ai.agent.id") is not None
    )


def carries_usage(a: dict[str, Any]) -> bool:
    """Whether a span reports spend: token usage or a reported cost (``gen_ai.usage.cost``)."""
    return any(a.get(k) is not None for k in _USAGE_KEYS) or a.get("gen_ai.usage.cost") is not None


def carries_call(a: dict[str, Any]) -> bool:
    """Whether a span of an operation not known to be a model call still is one: it names a
    model, or reports token usage or a cost."""
    return any(a.get(k) for k in _MODEL_KEYS) or carries_usage(a)


#: Attributes the mapping consumes into columns; they are not repeated in ``attributes``.
_CONSUMED = frozenset(
    {
        *_INPUT,
        *_OUTPUT,
        *_CACHE_READ,
        *_CACHE_WRITE,
        *_CACHE_WRITE_1H,
        *_REASONING,
        *SERVICE_TIER_KEYS,
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.system",
        "gen_ai.response.model",
        "gen_ai.request.model",
        "gen_ai.conversation.id",
        "yieldmeter.work_unit.id",
        "yieldmeter.workflow",
        "yieldmeter.task_type",
        "yieldmeter.team",
        "user.id",
        "enduser.id",
        "session.id",
        "langfuse.observation.type",
        "langfuse.observation.model.name",
        "langfuse.observation.usage_details",
        "langfuse.observation.cost_details",
        "langfuse.user.id",
        "langfuse.session.id",
        "gen_ai.usage.cost",
        "gen_ai.usage.total_tokens",
        "llm.usage.total_tokens",
        "llm.request.type",
    }
)
#: Prompt and completion text (and tool arguments/results): dropped unless capture_content.
#: :func:`is_content_key` is the rule; these names are the ones it is tested against.
_CONTENT_KEYS = frozenset(
    {
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.evaluation.explanation",
        "langfuse.observation.input",
        "langfuse.observation.output",
        "input.value",
        "output.value",
        "llm.prompts",
        "traceloop.entity.input",
        "traceloop.entity.output",
        # Vercel AI SDK: the prompt's tool definitions (ai.prompt and ai.prompt.messages are
        # caught by their last part; ai.prompt.format and ai.prompt.toolChoice are settings)
        "ai.prompt.tools",
        # Vercel AI SDK embed/embedMany: the values embedded and their vectors
        "ai.value",
        "ai.values",
        "ai.embedding",
        "ai.embeddings",
    }
)
_CONTENT_PREFIXES = (
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "gen_ai.content.",
    "llm.prompts.",
    "llm.completions.",
    "llm.input_messages",
    "llm.output_messages",
    "input.",
    "output.",
)
#: Namespaces where a name part below says the value is text a person or a model wrote
#: (``spring.ai``: Spring AI's own ``spring.ai.chat.client.*`` and ``spring.ai.tool.*``).
_CONTENT_NAMESPACES = frozenset(
    {"gen_ai", "llm", "langfuse", "traceloop", "ai", "openinference", "retrieval", "embedding", "spring.ai"}
)
#: Name parts that mark text: ``langfuse.trace.input``, ``langfuse.experiment.item.expected_output``,
#: ``gen_ai.content.completion``, ``ai.response.text``, ``llm.input_messages.0.message.content``...
_CONTENT_WORDS = frozenset(
    {
        "prompt",
        "prompts",
        "completion",
        "completions",
        "input",
        "output",
        "expected_output",
        "messages",
        "input_messages",
        "output_messages",
        "system_instructions",
        "system_instruction",
        "system_prompt",  # Strands' gen_ai.agent.system_prompt
        "system_message",
        "instructions",
        "explanation",
        "arguments",
        "args",
        "result",
        "content",
        "text",
        "documents",
        "query",
        "params",  # spring.ai.chat.client.user.params / system.params / advisor.params
        "toolCalls",  # ai.response.toolCalls, ai.result.toolCalls (the calls' arguments)
        "tool_calls",  # OpenLIT gen_ai.response.tool_calls
        "reasoning",  # ai.response.reasoning: the model's reasoning text
        "reasoningDetails",
        "object",  # ai.response.object, ai.result.object: generateObject's output
    }
)


@functools.lru_cache(maxsize=4096)
def is_content_key(key: str) -> bool:
    """Whether an attribute named ``key`` holds prompt, completion or tool text.

    The rule: a name listed in ``_CONTENT_KEYS``; or one under a content prefix
    (``gen_ai.prompt.``, ``gen_ai.content.``, ``llm.input_messages``, ``input.``...); or,
    in a GenAI namespace (``gen_ai``, ``llm``, ``langfuse``, ``traceloop``, ``ai``,
    ``spring.ai``...), a name whose last part (or the part before a list index,
    ``gen_ai.prompt.0``) is a word of ``_CONTENT_WORDS``. So ``langfuse.trace.input`` and
    ``langfuse.experiment.item.expected_output`` are content, while
    ``gen_ai.usage.input_tokens`` and ``gen_ai.output.type`` are not. A name with a
    ``usage`` or ``token_count`` part (``gen_ai.usage.completion_tokens_details.reasoning``,
    ``ai.usage.promptTokens``, OpenInference's ``llm.token_count.completion_details.reasoning``)
    is a count, never content. A new spelling of the same
    idea is caught without being listed.
    """
    if key in _CONTENT_KEYS or key.startswith(_CONTENT_PREFIXES):
        return True
    parts = key.split(".")
    if len(parts) < 2 or "usage" in parts or "token_count" in parts:
        return False
    if parts[0] not in _CONTENT_NAMESPACES and (
        len(parts) < 3 or f"{parts[0]}.{parts[1]}" not in _CONTENT_NAMESPACES
    ):
        return False
    last = parts[-1]
    if last.isdigit() and len(parts) > 2:
        last = parts[-2]
    return last in _CONTENT_WORDS


_PROVIDER_BY_HOST = (
    ("openai.azure.com", "azure.ai.openai"),
    ("api.openai.com", "openai"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("bedrock-runtime", "aws.bedrock"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.groq.com", "groq"),
    ("api.deepseek.com", "deepseek"),
)


class SpanError(Exception):
    """A span that cannot be mapped; the message names the attribute and why."""


def _tokens(attrs: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for k in keys:
        v = attrs.get(k)
        if v is None:
            continue
        if type(v) is int:
            n = v
        else:
            try:
                f = float(v)
                if isinstance(v, bool) or f != int(f):
                    raise ValueError
                n = int(f)
            except (TypeError, ValueError, OverflowError):
                raise SpanError(f"{k}: not a whole number ({v!r})") from None
        if n < 0:
            raise SpanError(f"{k}: negative ({n})")
        if n > MAX_SPAN_TOKENS:
            raise SpanError(
                f"{k}: {n:,} is more tokens than any model takes in one call (limit {MAX_SPAN_TOKENS:,})"
            )
        return n
    return None


def _json_obj(v: Any, key: str) -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    if isinstance(v, str | bytes):
        try:
            out = orjson.loads(v)
        except orjson.JSONDecodeError:
            raise SpanError(f"{key}: not a JSON object") from None
        if isinstance(out, dict):
            return out
    raise SpanError(f"{key}: not a JSON object")


#: nested usage breakdowns (see :func:`langfuse_usage`): which count each is a part of
_USAGE_DETAILS = {
    "prompt_tokens_details": "input",
    "input_tokens_details": "input",
    "input_token_details": "input",
    "completion_tokens_details": "output",
    "output_tokens_details": "output",
    "output_token_details": "output",
}
_DETAIL_PARTS = {
    "input": {
        "cached_tokens": "cache_read",
        "cache_read": "cache_read",
        "cache_creation": "cache_write",
        "ephemeral_1h_input_tokens": "cache_write_1h",  # LangChain's Anthropic breakdown
    },
    "output": {"reasoning_tokens": "reasoning", "reasoning": "reasoning"},
}


def langfuse_usage(usage: dict[str, Any], key: str = "usage_details") -> tuple[int, int, int, int, int, int]:
    """Canonical (input, output, cache read, cache write, reasoning, one-hour cache write) from
    Langfuse ``usage_details``.

    Langfuse keeps every usage type as its own bucket (``input`` *excludes*
    ``input_cached_tokens`` / ``cache_read_input_tokens``; ``output`` excludes
    ``output_reasoning_tokens``), and ``total`` is their sum. When ``total``
    shows that ``input`` already held the cached tokens, they are not added again.

    Usage passed through as a provider or framework reports it (Langfuse's OpenAI and LangChain
    integrations do) nests its breakdowns: ``prompt_tokens_details.cached_tokens``,
    ``completion_tokens_details.reasoning_tokens`` (OpenAI chat), ``input_tokens_details`` /
    ``output_tokens_details`` (the Responses API), ``input_token_details.cache_read`` /
    ``cache_creation`` and ``output_token_details.reasoning`` (LangChain). Their counts are
    inclusive, the breakdowns parts of them; other parts (audio, predictions) stay inside, as
    do breakdowns of another name.

    One-hour cache writes (Langfuse's ``input_cache_creation_1h`` bucket, LangChain's
    ``ephemeral_1h_input_tokens``, nested or flattened by Langfuse's LangChain handler to
    ``input_ephemeral_1h_input_tokens``) are a part of the cache writes. That handler takes the
    flattened split from ``input`` as well as the writes' sum, clamping at 0: the input is then
    what ``total`` holds beside the output.
    """
    nums: dict[str, int] = {}
    parts: dict[str, int] = {}
    nested = False
    for k, v in usage.items():
        if v is None:
            continue
        if isinstance(v, dict):
            side = _USAGE_DETAILS.get(k)
            if side is None:  # a breakdown of another kind: its parts sit inside the counts
                continue
            nested = True
            for part, n in v.items():
                kind = _DETAIL_PARTS[side].get(part)
                if kind is not None and n is not None:
                    parts[kind] = parts.get(kind, 0) + (_tokens({f"{k}.{part}": n}, (f"{k}.{part}",)) or 0)
            continue
        nums[k] = _tokens({k: v}, (k,)) or 0
    if nested:  # inclusive counts, their parts inside
        inp = nums.get("prompt_tokens", nums.get("input_tokens", nums.get("input", 0)))
        out = nums.get("completion_tokens", nums.get("output_tokens", nums.get("output", 0)))
        hour = parts.get("cache_write_1h", 0)
        write = max(parts.get("cache_write", 0), hour)
        return inp, out, parts.get("cache_read", 0), write, parts.get("reasoning", 0), hour
    inp = nums.get("input", nums.get("prompt_tokens", nums.get("input_tokens", 0)))
    out = nums.get("output", nums.get("completion_tokens", nums.get("output_tokens", 0)))
    cache_read = sum(
        v for k, v in nums.items() if k.startswith("input_") and "cache" in k and "creation" not in k
    )
    cache_read += nums.get("cache_read_input_tokens", 0)
    # LangChain's Anthropic breakdown as Langfuse's handler flattens it: the writes' split by
    # lifetime (input_ephemeral_5m_input_tokens, input_ephemeral_1h_input_tokens), beside their sum
    split = {k: v for k, v in nums.items() if "ephemeral_" in k}
    writes = [k for k in nums if ("cache_creation" in k or "cache_write" in k) and k not in split]
    cache_write = sum(nums[k] for k in writes) or sum(split.values())
    hour = sum(nums[k] for k in writes if k.endswith("_1h")) or sum(v for k, v in split.items() if "1h" in k)
    other_in = sum(
        v
        for k, v in nums.items()
        if k.startswith("input_") and "cache" not in k and k != "input_tokens" and k not in split
    )
    reasoning = sum(v for k, v in nums.items() if k.startswith("output_") and "reasoning" in k)
    other_out = sum(
        v
        for k, v in nums.items()
        if k.startswith("output_") and "reasoning" not in k and k != "output_tokens"
    )
    extras_in = cache_read + cache_write + other_in
    extras_out = reasoning + other_out
    total = nums.get("total")
    if total is not None and total == inp + out and (extras_in or extras_out):
        return inp, out, cache_read, cache_write, reasoning, hour  # input/output already inclusive
    if split and total is not None and total > inp + extras_in + out + extras_out:
        # the handler took the split from input as well as the sum (clamping at 0): input is
        # what the total holds beside the output
        return total - out - extras_out, out + extras_out, cache_read, cache_write, reasoning, hour
    return inp + extras_in, out + extras_out, cache_read, cache_write, reasoning, hour


def _langfuse_linkage(
    a: dict[str, Any], wu: Any, workflow: Any, task_type: Any, team: Any
) -> tuple[Any, ...]:
    """Linkage a Langfuse user put in trace or observation metadata (flattened or as JSON)."""
    found: dict[str, Any] = {}
    for prefix in ("langfuse.observation.metadata", "langfuse.trace.metadata"):
        blob = a.get(prefix)
        if isinstance(blob, str) and blob.startswith("{"):
            try:
                meta = orjson.loads(blob)
            except orjson.JSONDecodeError:
                meta = {}
            if isinstance(meta, dict):
                for k in (
                    "yieldmeter.work_unit.id",
                    "yieldmeter.workflow",
                    "yieldmeter.task_type",
                    "yieldmeter.team",
                ):
                    if k in meta:
                        found.setdefault(k, meta[k])
        for k in (
            "yieldmeter.work_unit.id",
            "yieldmeter.workflow",
            "yieldmeter.task_type",
            "yieldmeter.team",
        ):
            v = a.get(f"{prefix}.{k}")
            if isinstance(v, str) and v.startswith('"'):  # the SDK JSON-encodes each metadata value
                with contextlib.suppress(orjson.JSONDecodeError):
                    v = orjson.loads(v)
            if v is not None:
                found.setdefault(k, v)
    return (
        wu or found.get("yieldmeter.work_unit.id"),
        workflow or found.get("yieldmeter.workflow"),
        task_type or found.get("yieldmeter.task_type"),
        team or found.get("yieldmeter.team"),
    )


def _provider_from_host(host: Any) -> str | None:
    if not isinstance(host, str):
        return None
    for needle, provider in _PROVIDER_BY_HOST:
        if needle in host:
            return provider
    return None
