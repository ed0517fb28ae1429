"""OTLP/HTTP trace receiver and the Langfuse-compatible endpoints.

- ``POST /v1/traces``: OTLP/HTTP, binary protobuf or JSON, optional gzip.
- ``POST /api/public/otel/v1/traces``: the same, where the Langfuse SDK sends
  its spans (HTTP Basic auth with the public and secret key).
- ``POST /api/public/scores``: Langfuse scores (one object, or a list as the
  v5 SDK batches them) -> ``signals``.
- ``POST /api/public/ingestion``: the Langfuse ingestion API, where the v3 and
  v4 SDKs send their scores (``score-create`` events) -> ``signals``; other
  event types are answered as Langfuse Cloud answers them now (an error per
  event naming the OTLP route) and nothing of them is stored.

Answers follow the OTLP specification: the response in the request's content
type, ``partial_success.rejected_spans`` with a message naming the first
reasons, 400 for an unreadable body, 413 beyond the body limit, 415 for
another content type, 503 with ``Retry-After`` when the write queue is full.
A request is acknowledged only once durable: by default (``server.acknowledge:
spool``) once its rows are in the spool (:mod:`yieldmeter.server.spool`), with
``commit`` once they were committed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from yieldmeter.ingest.base import Batch, with_org
from yieldmeter.ingest.langfuse_scores import SOURCE as SCORES_SOURCE
from yieldmeter.ingest.langfuse_scores import ScoreBatch, ScoreError, ingestion_events, scores_to_batch
from yieldmeter.ingest.otlp import UnreadableRequest, rejected_spans
from yieldmeter.server.context import HttpError, ServerContext, read_body
from yieldmeter.server.spool import SpoolFull
from yieldmeter.server.writer import WriterBusy, WriterStopped

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace

log = logging.getLogger("yieldmeter.server")
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_PROTOBUF_TYPES = {"application/x-protobuf", "application/protobuf", "application/octet-stream"}


def _content_kind(request: Request) -> str:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in _PROTOBUF_TYPES:
        return "protobuf"
    if ctype == JSON:
        return "json"
    raise HttpError(415, f"Content-Type {ctype or '(none)'!r} is not OTLP: use {PROTOBUF} or {JSON}")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _status_body(kind: str, status: int, message: str) -> tuple[bytes, str]:
    """A ``google.rpc.Status`` (code, message) in the request's encoding."""
    # google.rpc.Code: INVALID_ARGUMENT 3, DEADLINE_EXCEEDED 4, PERMISSION_DENIED 7,
    # RESOURCE_EXHAUSTED 8, INTERNAL 13, UNAVAILABLE 14, UNAUTHENTICATED 16
    code = {400: 3, 401: 16, 403: 7, 408: 4, 413: 8, 415: 3, 429: 8, 503: 14}.get(status, 13)
    if kind == "protobuf":
        msg = message.encode()
        return b"\x08" + _varint(code) + b"\x12" + _varint(len(msg)) + msg, PROTOBUF
    return orjson.dumps({"code": code, "message": message}), JSON


def error_response(kind: str, err: HttpError) -> Response:
    body, ctype = _status_body(kind, err.status, err.message)
    return Response(body, status_code=err.status, media_type=ctype, headers=err.headers)


def unavailable(ctx: ServerContext, message: str) -> HttpError:
    """A 503 the client retries after the server's ``Retry-After``."""
    return HttpError(503, message, {"Retry-After": str(ctx.settings.retry_after_s)})


async def commit(
    ctx: ServerContext,
    batch: Batch,
    source: str,
    fmt: str,
    prepare: Callable[[Workspace, Batch], Batch] | None = None,
) -> Any:
    """Hand ``batch`` to the writer and wait until it is durable (``prepare``: see
    :meth:`~yieldmeter.server.writer.Writer.submit_batch`)."""
    try:
        future = ctx.writer.submit_batch(batch, source=source, fmt=fmt, prepare=prepare)
    except (WriterBusy, WriterStopped) as exc:
        raise unavailable(ctx, f"{exc}; retry later") from None
    return await settled(ctx, future)


async def settled(ctx: ServerContext, future: Any) -> Any:
    """The writer's result; a failed write (rolled back, nothing half-written) is a retryable 503."""
    try:
        return await asyncio.wrap_future(future)
    except Exception as exc:
        log.error("write failed, answered 503: %s", exc)
        message = f"the write failed and was rolled back ({type(exc).__name__}); retry"
        raise unavailable(ctx, message) from None


async def spooled(ctx: ServerContext, batch: Batch, *, source: str, org: str, capture_content: bool) -> None:
    """Hand ``batch`` to the writer and wait until it is durable in the spool (not for the commit,
    which follows; ``server.acknowledge: spool``, see :mod:`yieldmeter.server.spool`)."""
    assert ctx.spool is not None
    try:
        entry = ctx.spool.reserve(batch.nbytes)
    except SpoolFull as exc:
        raise unavailable(ctx, f"{exc}; retry later") from None
    try:
        future = ctx.writer.submit_batch(batch, source=source, fmt="otlp", retry=True)
    except (WriterBusy, WriterStopped) as exc:
        ctx.spool.release(entry)
        raise unavailable(ctx, f"{exc}; retry later") from None
    # the writer may commit before the record is on disk: the spool counts it either way
    future.add_done_callback(functools.partial(ctx.spool.settled, entry))
    ctx.spool.append(entry, batch, source=source, org=org, capture_content=capture_content)
    try:
        await asyncio.wrap_future(entry.durable)
    except OSError as exc:  # the writer commits it still; a retry is a recognised duplicate
        raise unavailable(ctx, f"the spool could not be written ({exc.strerror or exc}); retry") from None


def traces_endpoint(ctx: ServerContext, source: str) -> Callable[[Request], Awaitable[Response]]:
    async def export_traces(request: Request) -> Response:
        kind = "json"
        try:
            kind = _content_kind(request)
            org = ctx.authenticate(request)
            body = await read_body(request, ctx.settings.body_limit)
            options = ctx.options(source)
            try:
                batch = await ctx.decoder.decode(kind, body, options)
            except UnreadableRequest as exc:
                raise HttpError(400, str(exc)) from None
            if ctx.spool is not None:
                await spooled(
                    ctx,
                    with_org(batch, org),
                    source=source,
                    org=org,
                    capture_content=options.capture_content,
                )
            else:
                await commit(ctx, with_org(batch, org), source, "otlp")
        except HttpError as err:
            return error_response(kind, err)
        rejected, message = rejected_spans(batch)
        return _export_response(kind, rejected, message)

    return export_traces


def _export_response(kind: str, rejected: int, message: str) -> Response:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTracePartialSuccess,
        ExportTraceServiceResponse,
    )

    if kind == "protobuf":
        resp = ExportTraceServiceResponse()
        if rejected or message:
            resp.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
            )
        return Response(resp.SerializeToString(), media_type=PROTOBUF)
    doc: dict[str, Any] = {}
    if rejected or message:
        doc["partialSuccess"] = {"rejectedSpans": str(rejected), "errorMessage": message}
    return Response(orjson.dumps(doc), media_type=JSON)


# -- Langfuse scores ------------------------------------------------------------------------------
async def store_scores(
    ctx: ServerContext, org: str, scores: list[Any], default_ts: list[Any] | None = None
) -> ScoreBatch:
    """Map Langfuse score objects (:mod:`yieldmeter.ingest.langfuse_scores`) and commit them."""
    cfg = ctx.workspace.config
    result = scores_to_batch(
        scores,
        score_signals=dict(cfg.score_signals),
        capture_content=cfg.privacy.capture_content,
        now=datetime.now(UTC),
        default_ts=default_ts,
    )
    batch = with_org(result.batch, org)
    if batch.rows or batch.rejects.num_rows:
        await commit(ctx, batch, SCORES_SOURCE, "langfuse", prepare=lambda ws, b: link_scores(ws, b, org))
    return result


def link_scores(ws: Workspace, batch: Batch, org: str) -> Batch:
    """Point each score at the work unit of the call it names (run on the writer thread).

    A score for an observation takes that call's work unit; a trace score takes
    the work unit of the trace's calls; a trace not seen yet keeps the trace id,
    which is the work unit of a trace without other linkage. Only the calls of the
    ingest key's ``org`` are looked at (:meth:`~yieldmeter.store.duckdb_store.Store.score_work_units`).
    """
    links = batch.tables.pop("_links", None)
    signals = batch.tables.get("signals")
    if links is None or signals is None or signals.num_rows == 0:
        return batch
    found = ws.store.score_work_units(links, org)
    mapping = dict(zip(found.column("signal_id").to_pylist(), found.column("unit").to_pylist(), strict=True))
    ids = signals.column("signal_id").to_pylist()
    units = [
        mapping.get(s) or u for s, u in zip(ids, signals.column("work_unit_id").to_pylist(), strict=True)
    ]
    i = signals.schema.get_field_index("work_unit_id")
    batch.tables["signals"] = signals.set_column(i, "work_unit_id", pa.array(units, pa.string()))
    return batch


async def _json_body(ctx: ServerContext, request: Request) -> tuple[str, Any]:
    org = ctx.authenticate(request)
    body = await read_body(request, ctx.settings.body_limit)
    try:
        return org, orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"not valid JSON: {exc}") from None


def scores_endpoint(ctx: ServerContext) -> Callable[[Request], Awaitable[Response]]:
    async def create_scores(request: Request) -> Response:
        try:
            org, doc = await _json_body(ctx, request)
            single = isinstance(doc, dict)
            scores = [doc] if single else doc
            if not isinstance(scores, list):
                raise HttpError(400, "expected a score object or a list of them")
            result = await store_scores(ctx, org, scores)
        except HttpError as err:
            return JSONResponse({"message": err.message}, status_code=err.status, headers=err.headers)
        if single:
            if result.errors[0] is not None:
                return JSONResponse({"message": result.errors[0]}, status_code=400)
            return JSONResponse({"id": result.ids[0]})
        messages = [f"score {i}: {e}" for i, e in enumerate(result.errors, 1) if e is not None]
        if messages:
            return JSONResponse(
                {
                    "accepted": len(scores) - len(messages),
                    "rejected": len(messages),
                    "errors": [{"message": m} for m in messages],
                },
                status_code=207,
            )
        return JSONResponse({"message": "Accepted"}, status_code=202)

    return create_scores


def ingestion_endpoint(ctx: ServerContext) -> Callable[[Request], Awaitable[Response]]:
    """``POST /api/public/ingestion``: a 207 with ``successes`` and ``errors`` per event, as Langfuse."""

    async def ingestion_batch(request: Request) -> Response:
        try:
            org, doc = await _json_body(ctx, request)
            try:
                events = ingestion_events(doc)
            except ScoreError as exc:
                raise HttpError(400, str(exc)) from None
            result = await store_scores(ctx, org, events.scores, default_ts=events.score_ts)
        except HttpError as err:
            return JSONResponse({"message": err.message}, status_code=err.status, headers=err.headers)
        answers = list(events.answers)
        for k, pos in enumerate(events.score_positions):
            err = result.errors[k]
            ev_id = events.event_ids[pos]
            answers[pos] = (
                {"id": ev_id, "status": 201}
                if err is None
                else {"id": ev_id, "status": 400, "message": err, "error": "InvalidRequestError"}
            )
        return JSONResponse(
            {
                "successes": [a for a in answers if a is not None and a["status"] == 201],
                "errors": [a for a in answers if a is not None and a["status"] != 201],
            },
            status_code=207,
        )

    return ingestion_batch


def projects_endpoint(ctx: ServerContext) -> Callable[[Request], Awaitable[Response]]:
    """``GET /api/public/projects``: the project of the key, as Langfuse answers it. The SDK's
    ``auth_check()`` (which Langfuse's docs suggest at start-up) asks for it and fails when
    there is none; here the project is the org the key writes as."""

    async def get_projects(request: Request) -> Response:
        try:
            org = ctx.authenticate(request)
        except HttpError as err:
            return JSONResponse({"message": err.message}, status_code=err.status, headers=err.headers)
        project = {"id": org, "name": org, "organization": {"id": org, "name": org}, "metadata": {}}
        return JSONResponse({"data": [project]})

    return get_projects


def routes(ctx: ServerContext) -> list[BaseRoute]:
    """The OTLP and Langfuse ingest routes."""
    return [
        Route("/v1/traces", traces_endpoint(ctx, "otlp"), methods=["POST"]),
        Route("/api/public/otel/v1/traces", traces_endpoint(ctx, "langfuse-otel"), methods=["POST"]),
        Route("/api/public/scores", scores_endpoint(ctx), methods=["POST"]),
        Route("/api/public/ingestion", ingestion_endpoint(ctx), methods=["POST"]),
        Route("/api/public/projects", projects_endpoint(ctx), methods=["GET"]),
    ]
