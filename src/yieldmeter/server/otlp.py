"""OTLP/HTTP trace receiver and the Langfuse-compatible endpoints.

- ``POST /v1/traces``: OTLP/HTTP, binary protobuf or JSON, optional gzip.
- ``POST /api/public/otel/v1/traces``: the same, where the Langfuse SDK sends
  its spans (HTTP Basic auth with the public and secret key).
- ``POST /api/public/scores``: Langfuse scores (one object, or a list as the
  v3+ SDK batches them) -> ``signals``.

Answers follow the OTLP specification: the response in the request's content
type, ``partial_success.rejected_spans`` with a message naming the first
reasons, 400 for an unreadable body, 413 beyond the body limit, 415 for
another content type, 503 with ``Retry-After`` when the write queue is full.
A request is acknowledged only after its rows were committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from yieldmeter.ingest.base import Batch
from yieldmeter.ingest.conform import conform, make_rejects, stable_id
from yieldmeter.ingest.otlp import UnreadableRequest, rejected_spans
from yieldmeter.server.context import HttpError, ServerContext, read_body
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
    code = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14}.get(status, 13)
    if kind == "protobuf":
        msg = message.encode()
        return b"\x08" + _varint(code) + b"\x12" + _varint(len(msg)) + msg, PROTOBUF
    return orjson.dumps({"code": code, "message": message}), JSON


def error_response(kind: str, err: HttpError) -> Response:
    body, ctype = _status_body(kind, err.status, err.message)
    return Response(body, status_code=err.status, media_type=ctype, headers=err.headers)


def with_org(batch: Batch, org: str) -> Batch:
    """The batch with every row's ``org`` set to the org of the ingest key."""
    if org == "default":
        return batch
    for name, t in batch.tables.items():
        if "org" in t.column_names:
            i = t.schema.get_field_index("org")
            batch.tables[name] = t.set_column(i, "org", pa.array([org] * t.num_rows, pa.string()))
    return batch


async def commit(ctx: ServerContext, batch: Batch, source: str, fmt: str) -> Any:
    """Hand ``batch`` to the writer and wait until it is durable."""
    try:
        future = ctx.writer.submit_batch(batch, source=source, fmt=fmt)
    except (WriterBusy, WriterStopped) as exc:
        raise HttpError(
            503, f"{exc}; retry later", {"Retry-After": str(ctx.settings.retry_after_s)}
        ) from None
    return await settled(ctx, future)


async def settled(ctx: ServerContext, future: Any) -> Any:
    """The writer's result; a failed write (rolled back, nothing half-written) is a retryable 503."""
    try:
        return await asyncio.wrap_future(future)
    except Exception as exc:
        log.error("write failed, answered 503: %s", exc)
        retry = {"Retry-After": str(ctx.settings.retry_after_s)}
        raise HttpError(
            503, f"the write failed and was rolled back ({type(exc).__name__}); retry", retry
        ) from None


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
def scores_to_batch(
    scores: list[Any], *, score_signals: dict[str, str], capture_content: bool, source: str, now: datetime
) -> tuple[Batch, list[str | None]]:
    """Langfuse score objects -> ``signals`` rows; returns the batch and each score's error (or None).

    The work unit is filled in by the writer from the call the score points at
    (see :func:`link_scores`). kind = ``score_signals[name]``, else ``rated``.
    value: numeric and boolean scores as numbers (boolean 1/0); categorical
    and text scores keep their label in ``attributes`` (text only with
    content capture on).
    """
    rows: list[dict[str, Any]] = []
    errors: list[str | None] = []
    positions: list[int] = []
    bad_pos, bad_reason, bad_raw = [], [], []
    for i, s in enumerate(scores, 1):
        err = _score_error(s)
        if err is None:
            value, label = _score_value(s)
            if value is _BAD:
                err = (
                    f"value: {s.get('value')!r} is not a number for a {s.get('dataType') or 'NUMERIC'} score"
                )
        if err is not None:
            errors.append(err)
            bad_pos.append(i)
            bad_reason.append(f"score {i}: {err}")
            bad_raw.append(orjson.dumps(s, default=str).decode() if isinstance(s, dict) else repr(s))
            continue
        errors.append(None)
        name = str(s["name"])
        attrs: dict[str, Any] = {
            "name": name,
            "dataType": s.get("dataType") or "NUMERIC",
            "traceId": s.get("traceId"),
            "observationId": s.get("observationId"),
            "configId": s.get("configId"),
            "environment": s.get("environment"),
        }
        if label is not None and (s.get("dataType") != "TEXT" or capture_content):
            attrs["label"] = label
        if capture_content and s.get("comment"):
            attrs["comment"] = s["comment"]
        sid = s.get("id") or stable_id(
            "langfuse-score", s.get("traceId"), s.get("observationId"), name, s.get("value")
        )
        rows.append(
            {
                "signal_id": str(sid),
                "work_unit_id": s.get("traceId") or s.get("observationId"),
                "ts": s.get("timestamp") or now.isoformat(),
                "kind": score_signals.get(name, "rated"),
                "value": value,
                "actor": None,
                "source": source,
                "attributes": orjson.dumps({k: v for k, v in attrs.items() if v is not None}).decode(),
                "_trace": s.get("traceId"),
                "_observation": s.get("observationId"),
            }
        )
        positions.append(i)
    batch = Batch()
    if rows:
        table = pa.Table.from_pylist(rows)
        batch.add("signals", conform("signals", table, source=source, positions=positions))
        batch.tables["_links"] = table.select(["signal_id", "_trace", "_observation"])
    if bad_pos:
        batch.rejects = make_rejects("signals", source, bad_pos, bad_reason, bad_raw)
    return batch, errors


_BAD = object()


def _score_error(s: Any) -> str | None:
    if not isinstance(s, dict):
        return f"expected a JSON object, got {type(s).__name__}"
    if not s.get("name") or not isinstance(s.get("name"), str):
        return "name: missing"
    if "value" not in s or s["value"] is None:
        return "value: missing"
    if not s.get("traceId") and not s.get("observationId"):
        return "needs traceId or observationId (session and dataset-run scores have no work unit)"
    return None


def _score_value(s: dict[str, Any]) -> tuple[Any, Any]:
    v = s["value"]
    dtype = str(s.get("dataType") or "").upper()
    if dtype in ("CATEGORICAL", "TEXT"):
        return None, str(v)
    if dtype == "BOOLEAN" and isinstance(v, str):
        low = v.strip().lower()
        if low in ("true", "1"):
            return 1.0, None
        if low in ("false", "0"):
            return 0.0, None
    if isinstance(v, bool):
        return float(v), None
    if isinstance(v, int | float):
        return float(v), None
    if isinstance(v, str) and not dtype:
        try:
            return float(v), None
        except ValueError:
            return None, v  # a categorical score sent without its dataType
    return _BAD, None


def link_scores(ws: Workspace, batch: Batch) -> Batch:
    """Point each score at the work unit of the call it names (run on the writer thread).

    A score for an observation takes that call's work unit; a trace score takes
    the work unit of the trace's calls; a trace not seen yet keeps the trace id,
    which is the work unit of a trace without other linkage.
    """
    links = batch.tables.pop("_links", None)
    signals = batch.tables.get("signals")
    if links is None or signals is None or signals.num_rows == 0:
        return batch
    cur = ws.store.cursor()
    cur.register("_links", links)
    try:
        found = cur.execute(
            """
            SELECT l.signal_id,
                   coalesce(
                     (SELECT any_value(c.work_unit_id) FROM calls c WHERE c.span_id = l._observation),
                     (SELECT mode(c.work_unit_id) FROM calls c WHERE c.trace_id = l._trace)) AS unit
            FROM _links l
            """
        ).to_arrow_table()
    finally:
        cur.unregister("_links")
    mapping = dict(zip(found.column("signal_id").to_pylist(), found.column("unit").to_pylist(), strict=True))
    ids = signals.column("signal_id").to_pylist()
    units = [
        mapping.get(s) or u for s, u in zip(ids, signals.column("work_unit_id").to_pylist(), strict=True)
    ]
    i = signals.schema.get_field_index("work_unit_id")
    batch.tables["signals"] = signals.set_column(i, "work_unit_id", pa.array(units, pa.string()))
    return batch


def scores_endpoint(ctx: ServerContext) -> Callable[[Request], Awaitable[Response]]:
    async def create_scores(request: Request) -> Response:
        try:
            org = ctx.authenticate(request)
            body = await read_body(request, ctx.settings.body_limit)
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise HttpError(400, f"not valid JSON: {exc}") from None
            single = isinstance(doc, dict)
            scores = [doc] if single else doc
            if not isinstance(scores, list):
                raise HttpError(400, "expected a score object or a list of them")
            cfg = ctx.workspace.config
            batch, errors = scores_to_batch(
                scores,
                score_signals=dict(cfg.score_signals),
                capture_content=cfg.privacy.capture_content,
                source="langfuse-scores",
                now=datetime.now(UTC),
            )
            batch = with_org(batch, org)
            try:
                future = ctx.writer.submit(
                    lambda ws: ws.ingest_batches(
                        [link_scores(ws, batch)], source="langfuse-scores", fmt="langfuse"
                    )
                )
            except (WriterBusy, WriterStopped) as exc:
                raise HttpError(
                    503, f"{exc}; retry later", {"Retry-After": str(ctx.settings.retry_after_s)}
                ) from None
            await settled(ctx, future)
        except HttpError as err:
            return JSONResponse({"message": err.message}, status_code=err.status, headers=err.headers)
        conform_bad = _conform_errors(batch)
        messages = [e for e in errors if e] + conform_bad
        if single:
            if messages:
                return JSONResponse({"message": messages[0]}, status_code=400)
            return JSONResponse({"id": batch.tables["signals"].column("signal_id")[0].as_py()})
        if messages:
            accepted = len(scores) - len(messages)
            return JSONResponse(
                {
                    "accepted": accepted,
                    "rejected": len(messages),
                    "errors": [{"message": m} for m in messages],
                },
                status_code=207,
            )
        return JSONResponse({"message": "Accepted"}, status_code=202)

    return create_scores


def _conform_errors(batch: Batch) -> list[str]:
    rej = batch.rejects
    if rej.num_rows == 0:
        return []
    from_conform = rej.filter(pc.invert(pc.starts_with(rej.column("reason"), "score ")))
    positions = from_conform.column("position").to_pylist()
    reasons = from_conform.column("reason").to_pylist()
    return [f"score {p}: {r}" for p, r in zip(positions, reasons, strict=True)]


def routes(ctx: ServerContext) -> list[BaseRoute]:
    """The OTLP and Langfuse ingest routes."""
    return [
        Route("/v1/traces", traces_endpoint(ctx, "otlp"), methods=["POST"]),
        Route("/api/public/otel/v1/traces", traces_endpoint(ctx, "langfuse-otel"), methods=["POST"]),
        Route("/api/public/scores", scores_endpoint(ctx), methods=["POST"]),
    ]
