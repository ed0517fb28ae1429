"""A small OpenAI-compatible streaming server for the endpoint benchmark tests.

It behaves like a serving engine in the ways the benchmark measures: prefill
time grows with the prompt, every output token takes one decode step, a
decode step gets slower as more sequences share it, and the final chunk
reports usage. Run it as a process::

    python tests/openai_server.py --port 8123 --step-ms 2 --model test-model
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def build_app(model: str, step_ms: float, prefill_ms_per_token: float) -> Starlette:
    active = {"n": 0}

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": model, "object": "model"}]})

    async def complete(request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        if body.get("model") != model:
            return JSONResponse(
                {"error": {"message": f"model {body.get('model')!r} not found"}}, status_code=404
            )
        chat = request.url.path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        prompt_tokens = len(prompt.split())
        max_tokens = int(body.get("max_tokens") or 16)
        created = int(time.time())

        def chunk(text: str | None, usage: dict[str, int] | None = None) -> str:
            if chat:
                choices = (
                    [] if text is None else [{"index": 0, "delta": {"content": text}, "finish_reason": None}]
                )
                obj = "chat.completion.chunk"
            else:
                choices = [] if text is None else [{"index": 0, "text": text, "finish_reason": None}]
                obj = "text_completion"
            event: dict[str, Any] = {
                "id": "cmpl-test",
                "object": obj,
                "created": created,
                "model": model,
                "choices": choices,
            }
            if usage:
                event["usage"] = usage
            return f"data: {json.dumps(event)}\n\n"

        async def stream() -> AsyncIterator[str]:
            active["n"] += 1
            try:
                await asyncio.sleep(prompt_tokens * prefill_ms_per_token / 1000)
                for i in range(max_tokens):
                    # A decode step shared by more sequences takes longer, as on a GPU at larger batch.
                    await asyncio.sleep(step_ms * (1 + active["n"] / 32) / 1000)
                    yield chunk(f" t{i}")
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": max_tokens,
                    "total_tokens": prompt_tokens + max_tokens,
                }
                yield chunk(None, usage)
                yield "data: [DONE]\n\n"
            finally:
                active["n"] -= 1

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", complete, methods=["POST"]),
            Route("/v1/completions", complete, methods=["POST"]),
        ]
    )


@contextmanager
def running_server(model: str = "test-model", step_ms: float = 2.0) -> Iterator[str]:
    """Start this server as a process on a free loopback port; yields its base URL."""
    import httpx

    from tests.loopback import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__)),
            "--port",
            str(port),
            "--model",
            model,
            "--step-ms",
            str(step_ms),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(url + "/v1/models", timeout=0.5)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                    raise RuntimeError(f"test server did not start: {err}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="test-model")
    ap.add_argument("--step-ms", type=float, default=2.0)
    ap.add_argument("--prefill-ms-per-token", type=float, default=0.02)
    a = ap.parse_args()
    uvicorn.run(
        build_app(a.model, a.step_ms, a.prefill_ms_per_token),
        host="127.0.0.1",
        port=a.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
