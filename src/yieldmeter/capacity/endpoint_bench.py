"""Endpoint benchmark: load-test an OpenAI-compatible server at rising concurrency.

Works against vLLM, TGI, SGLang, llama.cpp's server and anything else that
speaks ``/v1/chat/completions`` (or ``/v1/completions``) with streaming. Each
request replays a (prompt tokens, output tokens) pair drawn from the
workspace's observed token profile; every prompt starts with a unique nonce
so a prefix cache cannot make prefill free.

Per concurrency level: output and total tokens/s over the level's wall time,
time to first token (TTFT) and end-to-end latency percentiles, failures.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np

from yieldmeter.capacity.specs import CapacityError

# Common short English words: about one token each in Llama, GPT and Mistral tokenizers.
_WORD_TEXT = (
    "the of and to in is was for on that with as by at from his her which or had are not but be "
    "this have one all were when there can an your more so what about out if up time them some "
    "would make like him into has two look see way could people than first water been call who "
    "its now find long "
)
_WORDS = _WORD_TEXT.split()


@dataclass(frozen=True)
class EndpointLevel:
    endpoint: str
    model: str
    concurrency: int
    requests: int
    failed: int
    duration_s: float
    prompt_tokens: int  # total over the level's successful requests
    output_tokens: int
    output_tokens_per_s: float
    total_tokens_per_s: float
    requests_per_s: float
    ttft_ms_p50: float | None
    ttft_ms_p99: float | None
    latency_ms_p50: float | None
    latency_ms_p90: float | None
    latency_ms_p99: float | None
    errors: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["errors"] = list(self.errors)
        return d


@dataclass
class _Outcome:
    ok: bool
    prompt_tokens: int = 0
    output_tokens: int = 0
    ttft_s: float | None = None
    latency_s: float = 0.0
    error: str = ""


def base_url(url: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1`` all mean the same server."""
    u = url.strip().rstrip("/")
    if not u.startswith(("http://", "https://")):
        u = "http://" + u
    return u[: -len("/v1")] if u.endswith("/v1") else u


def make_prompt(tokens: int, rng: random.Random) -> str:
    """About ``tokens`` tokens of text, starting with a nonce that defeats prefix caching."""
    nonce = f"{rng.getrandbits(48):012x}"
    start = rng.randrange(len(_WORDS))
    words = [_WORDS[(start + i * 7) % len(_WORDS)] for i in range(max(0, tokens - 1))]
    return nonce + " " + " ".join(words)


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values) * 1e3, q)) if values else None


def _unreachable(url: str, exc: Exception) -> CapacityError:
    reason = type(exc).__name__
    detail = str(exc) or reason
    return CapacityError(
        f"cannot reach the endpoint at {url}: {detail} ({reason}). "
        "Check that the server is running and the address and port are right."
    )


async def _preflight(client: httpx.AsyncClient, url: str, model: str | None) -> str:
    """Fail fast on an unreachable server; find the served model when none was named."""
    try:
        resp = await client.get(f"{url}/v1/models")
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError) as exc:
        raise _unreachable(url, exc) from None
    if resp.status_code in (502, 503, 504):
        raise CapacityError(f"cannot reach the endpoint at {url}: a gateway answered HTTP {resp.status_code}")
    if resp.status_code in (401, 403):
        raise CapacityError(
            f"the endpoint at {url} refused the request (HTTP {resp.status_code}): pass --api-key"
        )
    if model:
        return model
    if resp.status_code == 200:
        try:
            data = resp.json().get("data") or []
        except (json.JSONDecodeError, AttributeError):
            data = []
        if data and isinstance(data[0], dict) and data[0].get("id"):
            return str(data[0]["id"])
    raise CapacityError(
        f"the endpoint at {url} lists no model at /v1/models (HTTP {resp.status_code}): is it an "
        "OpenAI-compatible server? Pass --model NAME if it serves one without listing it."
    )


async def _one(
    client: httpx.AsyncClient,
    url: str,
    model: str,
    api: str,
    prompt_tokens: int,
    output_tokens: int,
    rng: random.Random,
    ignore_eos: bool,
) -> _Outcome:
    prompt = make_prompt(prompt_tokens, rng)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": output_tokens,
        "stream": True,
        "temperature": 0.0,
        "stream_options": {"include_usage": True},
    }
    if ignore_eos:
        body["ignore_eos"] = True  # vLLM, SGLang, llama.cpp: generate exactly max_tokens
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
        path = "/v1/chat/completions"
    else:
        body["prompt"] = prompt
        path = "/v1/completions"
    t0 = time.perf_counter()
    ttft = None
    chunks = 0
    usage: dict[str, Any] = {}
    try:
        async with client.stream("POST", url + path, json=body) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode(errors="replace")[:200]
                return _Outcome(False, error=f"HTTP {resp.status_code}: {text}")
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    event = json.loads(payload)
                except json.JSONDecodeError:
                    continue
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    text = delta.get("content") or choice.get("text") or ""
                    if text:
                        chunks += 1
                        if ttft is None:
                            ttft = time.perf_counter() - t0
    except httpx.HTTPError as exc:
        return _Outcome(False, error=f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - t0
    return _Outcome(
        True,
        prompt_tokens=int(usage.get("prompt_tokens") or prompt_tokens),
        output_tokens=int(usage.get("completion_tokens") or chunks),
        ttft_s=ttft,
        latency_s=latency,
    )


async def _level(
    client: httpx.AsyncClient,
    url: str,
    model: str,
    api: str,
    concurrency: int,
    n_requests: int,
    profile: Sequence[tuple[int, int]],
    rng: random.Random,
    ignore_eos: bool,
) -> EndpointLevel:
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for i in range(n_requests):
        queue.put_nowait(profile[i % len(profile)])
    outcomes: list[_Outcome] = []

    async def worker() -> None:
        while True:
            try:
                p, o = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            outcomes.append(await _one(client, url, model, api, p, o, rng, ignore_eos))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    ok = [o for o in outcomes if o.ok]
    p_tok = sum(o.prompt_tokens for o in ok)
    o_tok = sum(o.output_tokens for o in ok)
    ttfts = [o.ttft_s for o in ok if o.ttft_s is not None]
    lats = [o.latency_s for o in ok]
    return EndpointLevel(
        endpoint=url,
        model=model,
        concurrency=concurrency,
        requests=len(outcomes),
        failed=len(outcomes) - len(ok),
        duration_s=wall,
        prompt_tokens=p_tok,
        output_tokens=o_tok,
        output_tokens_per_s=o_tok / wall if wall else 0.0,
        total_tokens_per_s=(p_tok + o_tok) / wall if wall else 0.0,
        requests_per_s=len(ok) / wall if wall else 0.0,
        ttft_ms_p50=_percentile(ttfts, 50),
        ttft_ms_p99=_percentile(ttfts, 99),
        latency_ms_p50=_percentile(lats, 50),
        latency_ms_p90=_percentile(lats, 90),
        latency_ms_p99=_percentile(lats, 99),
        errors=tuple(dict.fromkeys(o.error for o in outcomes if not o.ok))[:3],
    )


async def _run(
    url: str,
    model: str | None,
    api: str,
    concurrencies: Sequence[int],
    requests_per_level: int | None,
    profile: Sequence[tuple[int, int]],
    api_key: str | None,
    connect_timeout: float,
    request_timeout: float,
    ignore_eos: bool,
    seed: int,
    log: Callable[[str], None],
) -> list[EndpointLevel]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = httpx.Timeout(request_timeout, connect=connect_timeout)
    limits = httpx.Limits(
        max_connections=max(concurrencies) + 4, max_keepalive_connections=max(concurrencies) + 4
    )
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits) as client:
        pre = httpx.Timeout(connect_timeout, connect=connect_timeout)
        async with httpx.AsyncClient(timeout=pre, headers=headers) as probe:
            served = await _preflight(probe, url, model)
        levels = []
        for c in concurrencies:
            n = requests_per_level or max(2 * c, 8)
            log(f"concurrency {c}: {n} requests to {url} ({served})")
            level = await _level(client, url, served, api, c, n, profile, rng, ignore_eos)
            if level.failed == level.requests:
                raise CapacityError(
                    f"every request to {url} failed at concurrency {c}: "
                    f"{'; '.join(level.errors) or 'no detail'}"
                )
            levels.append(level)
    return levels


def run_endpoint_bench(
    url: str,
    *,
    model: str | None = None,
    api: str = "chat",
    concurrencies: Sequence[int] = (1, 2, 4, 8, 16, 32),
    requests_per_level: int | None = None,
    profile: Sequence[tuple[int, int]] = ((512, 256),),
    api_key: str | None = None,
    connect_timeout: float = 3.0,
    request_timeout: float = 300.0,
    ignore_eos: bool = True,
    seed: int = 0,
    log: Callable[[str], None] = lambda _m: None,
) -> list[EndpointLevel]:
    """One :class:`EndpointLevel` per concurrency; an unreachable server fails within ``connect_timeout``."""
    if api not in ("chat", "completions"):
        raise CapacityError(f"unknown API {api!r}; use chat or completions")
    if not concurrencies or min(concurrencies) < 1:
        raise CapacityError("concurrency levels must each be at least 1")
    if not profile or any(p < 1 or o < 1 for p, o in profile):
        raise CapacityError("the token profile needs (prompt tokens, output tokens) pairs of at least 1")
    return asyncio.run(
        _run(
            base_url(url),
            model,
            api,
            list(concurrencies),
            requests_per_level,
            list(profile),
            api_key,
            connect_timeout,
            request_timeout,
            ignore_eos,
            seed,
            log,
        )
    )
