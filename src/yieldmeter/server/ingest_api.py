"""REST ingest for what the SDK records: ``POST /api/v1/{signals,outcomes,effort}``.

The body is a JSON list of canonical rows (one object is taken as a list of
one), with the column names of :mod:`yieldmeter.schema`. On these SDK tables a
row without its id gets one derived from its content, so a client that retries
the same rows creates no duplicates; the tables of ``/api/v1/{work_units,...}``
(:mod:`.api`) need their id (a budget's is derived from its scope and period), and
a row without it is rejected and quarantined, never stored under an invented id.
The answer says what landed, per rejected row its position (1-based) and reason
(naming the field), and the fields no column of the table has (not stored)::

    {"landed": 2, "duplicates": 0, "rejected": [{"position": 3, "reason": "minutes: negative"}],
     "unknown_fields": ["colour"]}
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pyarrow as pa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from yieldmeter.ingest.base import Batch, with_org
from yieldmeter.ingest.conform import Conformed, conform, make_rejects, stable_id
from yieldmeter.schema import table
from yieldmeter.server.context import HttpError, ServerContext, read_body
from yieldmeter.server.otlp import commit

#: Tables the SDK writes through this API.
RECORD_TABLES = ("signals", "outcomes", "effort")


def rows_to_table(rows: list[dict[str, Any]], columns: list[str]) -> pa.Table:
    """Rows as an Arrow table of the known columns; a column of mixed types is kept as text for conform."""
    arrays = {}
    for col in columns:
        values = [r.get(col) for r in rows]
        if all(v is None for v in values):
            continue
        try:
            arrays[col] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed, or an integer beyond 64 bits
            arrays[col] = pa.array(
                [None if v is None else v if isinstance(v, str) else _text(v) for v in values], pa.string()
            )
    return pa.table(arrays) if arrays else pa.table({columns[0]: pa.nulls(len(rows), pa.string())})


def _text(value: Any) -> str:
    """A posted value as JSON text, for conform to read or refuse with the row's reason (the
    standard library's writer: orjson refuses an integer beyond 64 bits)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)


def unknown_fields(table_name: str, doc: Any) -> list[str]:
    """The fields of the posted rows that no column of ``table_name`` has (they are not stored)."""
    rows = [doc] if isinstance(doc, dict) else doc if isinstance(doc, list) else []
    names = set(table(table_name).names)
    return sorted({k for r in rows if isinstance(r, dict) for k in r if k not in names})


def records_to_batch(table_name: str, doc: Any, source: str, *, derive_ids: bool = True) -> Batch:
    """Canonical rows posted as JSON -> a conformed :class:`Batch`.

    ``derive_ids``: a row without its id gets one from its content (the SDK tables); otherwise
    it is rejected (``<key>: missing``) unless the table derives its key from other fields.
    """
    body = [doc] if isinstance(doc, dict) else doc
    if not isinstance(body, list):
        raise HttpError(400, f"expected a JSON list of {table_name} rows (objects), or one row")
    # an element that is not an object is that row's reject; the rows around it land
    places = [i for i, r in enumerate(body, 1) if isinstance(r, dict)]
    odd = [(i, r) for i, r in enumerate(body, 1) if not isinstance(r, dict)]
    others = make_rejects(
        table_name,
        source,
        [i for i, _ in odd],
        [f"expected an object (a {table_name} row), not {_json_kind(r)}" for _, r in odd],
        [_text(r) for _, r in odd],
    )
    rows = [body[i - 1] for i in places]
    spec = table(table_name)
    # as posted: a quarantined row keeps every field it came with, not only the canonical ones
    posted = {i: dict(r) for i, r in zip(places, rows, strict=True)}
    has_source = "source" in spec.column_index
    for r in rows:
        if "attributes" in r and not isinstance(r["attributes"], str | type(None)):
            r["attributes"] = orjson.dumps(r["attributes"]).decode()
        if derive_ids and not r.get(spec.key):
            content = orjson.dumps(r, option=orjson.OPT_SORT_KEYS, default=str)
            r[spec.key] = stable_id(table_name, content)
        if has_source and r.get("source") is None:  # where the row came from: api, sdk...
            r["source"] = source
    if not rows:
        return Batch(rejects=others)
    try:
        conformed = conform(table_name, rows_to_table(rows, spec.names), source=source, positions=places)
    except (OverflowError, TypeError, pa.ArrowException) as exc:
        # conform quarantines bad values row by row; anything it still cannot hold fails the
        # whole body: say so, as a 400
        raise HttpError(400, f"the {table_name} rows could not be read: {exc}") from None
    rejects = conformed.rejects
    if rejects.num_rows:
        # 1-based, the row's place in the body
        raw = [_text(posted[i]) for i in rejects.column("position").to_pylist()]
        rejects = rejects.set_column(rejects.schema.get_field_index("raw"), "raw", pa.array(raw, pa.string()))
    rejects = pa.concat_tables([others, rejects]).sort_by("position") if others.num_rows else rejects
    return Batch.of(table_name, Conformed(conformed.rows, rejects))


def _json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    return {str: "a string", list: "a list", int: "a number", float: "a number"}.get(type(value), "a value")


def records_endpoint(ctx: ServerContext, table_name: str) -> Callable[[Request], Awaitable[Response]]:
    async def post_records(request: Request) -> Response:
        try:
            org = ctx.authenticate(request)
            body = await read_body(request, ctx.settings.body_limit)
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise HttpError(400, f"not valid JSON: {exc}") from None
            source = request.headers.get("x-yieldmeter-source") or "api"
            unknown = unknown_fields(table_name, doc)
            batch = with_org(records_to_batch(table_name, doc, source), org)
            summary = await commit(ctx, batch, source, "api")
            if ctx.reads is not None:  # the REST API's cached views see the new rows at once
                ctx.reads.bump()
        except HttpError as err:
            from yieldmeter.server.problems import problem

            return problem(err.status, err.message, err.headers)  # RFC 9457 problem details
        rejected = [
            {"position": p, "reason": r}
            for p, r in zip(
                batch.rejects.column("position").to_pylist(),
                batch.rejects.column("reason").to_pylist(),
                strict=True,
            )
        ]
        return JSONResponse(
            {
                "landed": summary.landed,
                "duplicates": summary.duplicates,
                "rejected": rejected,
                "unknown_fields": unknown,
            },
            status_code=200,
        )

    return post_records


def routes(ctx: ServerContext) -> list[BaseRoute]:
    return [Route(f"/api/v1/{name}", records_endpoint(ctx, name), methods=["POST"]) for name in RECORD_TABLES]
