"""The versioned REST API under ``/api/v1``: reads of every report, record ingest, exports, keys.

Every route is declared once in :func:`endpoints` with its scope and
parameters; the same table builds the routes and the OpenAPI document
(``GET /api/v1/openapi.json``, :mod:`yieldmeter.server.openapi`). Handlers
parse, call the Workspace services on a reader thread (:mod:`.reads`) or hand
rows to the single writer, and format; errors are problem details.

Ingest answers only after the rows are committed (durable).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from yieldmeter.app.exports import benchmark_export, csv_bytes, jsonl_bytes, score_export
from yieldmeter.app.reports import ROLES, ReportFilters
from yieldmeter.reports.model import rows_of
from yieldmeter.server.auth import KeyRing, KeyStore, Principal
from yieldmeter.server.context import ADMIN_BODY_LIMIT, ServerContext, read_body
from yieldmeter.server.problems import Problem, guard
from yieldmeter.server.reads import Reads
from yieldmeter.server.views import VIEWS, build, cache_key

PREFIX = "/api/v1"
#: Record bodies are JSON lists of rows; 16 MiB is ~50k rows, send more in several requests.
RECORD_BODY_LIMIT = 16 * 1024 * 1024
#: Tables posted here (signals, outcomes, effort are served by ``ingest_api``), with the scope each
#: needs: a budget is an admin setting (as on ``/finops/budgets``), the rest are data.
API_TABLES: dict[str, str] = {
    "work_units": "ingest",
    "calls": "ingest",
    "cost_items": "ingest",
    "budgets": "admin",
    "decisions": "ingest",
}
VALUE_REPORTS = (
    "funnel",
    "yields",
    "coverage",
    "value-per-token",
    "benchmarks",
    "patterns",
    "waste",
    "scores",
)
EXPORTS = ("scores", "benchmarks", "spend", "unit-values")
FILTER_PARAMS = ("period", "team", "workflow", "model")


@dataclass
class Endpoint:
    """One operation: its route and what the OpenAPI document says of it."""

    method: str
    path: str
    scope: str | None
    summary: str
    handler: Callable[[Request, Principal], Awaitable[Response]]
    tag: str
    query: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)  # name, schema, description
    body: dict[str, Any] | None = None
    ok: dict[str, Any] = field(default_factory=lambda: {"application/json": {"schema": {"type": "object"}}})
    #: path parameter -> the values it takes (an enum in the OpenAPI document)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: the status a success answers
    status: int = 200
    #: further answers this operation gives, beyond those every operation may: status -> when
    errors: dict[int, str] = field(default_factory=dict)


def attach(ctx: ServerContext) -> None:
    """Give the context its key ring and read pool (once; the dashboard module calls it too)."""
    if ctx.api_keys is None:
        ctx.api_keys = KeyRing(KeyStore(ctx.workspace), legacy_ingest=bool(ctx.settings.ingest_keys))
    if ctx.reads is None:
        ctx.reads = Reads(ctx.workspace)


# -- parsing -------------------------------------------------------------------------------------
def filters_of(request: Request, p: Principal) -> ReportFilters:
    """The filters of the query, and whether the caller may see people (its ``people`` scope)."""
    q = request.query_params
    if len(q.getlist("period")) > 1:
        raise Problem(
            400,
            "period given more than once: one period per request (START..END spans several)",
            field="period",
        )
    return ReportFilters.of(
        q.get("period"),
        q.getlist("team"),
        q.getlist("workflow"),
        q.getlist("model"),
        people=p.can("people"),
    )


def choice(request: Request, name: str, options: tuple[str, ...], default: str) -> str:
    value = request.query_params.get(name, default)
    if value not in options:
        raise Problem(400, f"{name}={value!r} is not one of {', '.join(options)}", field=name)
    return value


def flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise Problem(400, f"{name} must be true or false", field=name)
    return value in ("true", "1", "yes")


def integer(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise Problem(400, f"{name} must be an integer", field=name) from None
    if not lo <= v <= hi:
        raise Problem(400, f"{name} must be between {lo} and {hi}", field=name)
    return v


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, default=str, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


def _clean(obj: Any) -> Any:
    from yieldmeter.reports.model import plain

    return plain(obj)


#: The fields that name a person: hidden from a caller without the ``people`` scope.
PERSON_FIELDS = ("user_id", "actor", "person")


def redact(row: dict[str, Any], people: bool) -> dict[str, Any]:
    """:data:`PERSON_FIELDS` hidden unless the caller holds the ``people`` scope."""
    return (
        row
        if people
        else {k: ("(hidden)" if k in PERSON_FIELDS and v is not None else v) for k, v in row.items()}
    )


# -- handlers --------------------------------------------------------------------------------------
def build_endpoints(ctx: ServerContext) -> list[Endpoint]:
    reads: Reads = ctx.reads

    async def status(request: Request, p: Principal) -> Response:
        info = await reads.view(("status",), lambda ws: ws.status())
        return json_response(_clean(info))

    async def spend(request: Request, p: Principal) -> Response:
        from yieldmeter.metrics.spend import DIMENSIONS

        f = filters_of(request, p)
        by = [d.strip() for d in request.query_params.get("by", "").split(",") if d.strip()]
        bad = [d for d in by if d not in DIMENSIONS]
        if bad:
            raise Problem(
                400, f"by={','.join(bad)}: not a dimension; choose from {', '.join(DIMENSIONS)}", field="by"
            )
        if "user_id" in by and not p.can("people"):
            raise PermissionError("spend by person is a per-person view")
        rows = await reads.view(("spend", tuple(by), f.key()), lambda ws: rows_of(ws.reports.spend(by, f)))
        return json_response(rows)

    async def unpriced(request: Request, p: Principal) -> Response:
        f = filters_of(request, p)
        return json_response(
            await reads.view(("unpriced", f.key()), lambda ws: rows_of(ws.reports.unpriced(f)))
        )

    async def quarantine(request: Request, p: Principal) -> Response:
        limit = integer(request, "limit", 50, 1, 10_000)
        rows = rows_of(await reads.run(lambda ws: ws.quarantine(limit)))
        if not p.can("people"):
            # a refused row as it came may name its person (user_id, enduser.id): the reason, file
            # and place say what to fix; the row itself is for a key that may see people
            rows = [{**r, "raw": None} for r in rows]
        return json_response(rows)

    async def value_report(request: Request, p: Principal) -> Response:
        name = request.path_params["report"]
        if name not in VALUE_REPORTS:
            raise Problem(404, f"no value report {name!r}; choose from {', '.join(VALUE_REPORTS)}")
        f = filters_of(request, p)
        wf, w = f.workflow, f.window()
        by = request.query_params.get("by")
        people = p.can("people")
        normalise = flag(request, "normalise")
        scope = {"workflows": f.workflows, "teams": f.teams, "models": f.models}

        def compute(ws: Any) -> Any:
            ws.reports.check_privacy(f)
            v = ws.value
            if name == "funnel":
                return {"rows": rows_of(v.funnel(wf, w, **scope)), "scope": scope_note(name, f)}
            if name == "yields":
                y = v.yields(wf, w, workflows=f.workflows)
                return {
                    "rows": rows_of(y.yields),
                    "strategic": rows_of(y.strategic),
                    "strategic_evidence": rows_of(y.strategic_evidence),
                    "notes": y.notes,
                    "scope": scope_note(name, f),
                }
            if name == "coverage":
                c = v.coverage(wf, w, **scope, people=people)  # small teams merged without people
                return {
                    "total": _clean(c.total),
                    "rows": rows_of(c.by_workflow),
                    "largest_uncovered": rows_of(c.largest_uncovered),
                    "notes": c.notes,
                }
            if name == "value-per-token":
                return {
                    "rows": rows_of(
                        v.value_per_token(wf, w, by or "model", normalise=normalise, people=people, **scope)
                    )
                }
            if name == "benchmarks":
                b = v.benchmarks(wf, w, by or "team", people=people, **scope)
                return {"rows": rows_of(b.rows), "hidden_groups": b.hidden_groups, "notes": b.notes}
            if name == "patterns":
                return {"rows": rows_of(v.patterns(wf, w, **scope))}
            if name == "waste":
                return {"rows": rows_of(v.waste(wf, w, **scope))}
            return {
                "rows": [redact(r, people) for r in rows_of(v.scores(wf))],
                "scope": scope_note(name, f),
            }

        key = ("value", name, f.key(), by, people, normalise)
        return json_response(await reads.view(key, compute))

    async def view(request: Request, p: Principal) -> Response:
        name = request.path_params["view"]
        v = VIEWS.get(name)
        if v is None:
            raise Problem(404, f"no view {name!r}; choose from {', '.join(VIEWS)}")
        if not p.can(v.scope):
            raise Problem(403, f"the {name!r} view needs the {v.scope!r} scope")
        f = filters_of(request, p)
        sections = await reads.view(cache_key(name, f), lambda ws: build(name, ws.reports, f))
        return json_response(
            {
                "view": name,
                "title": v.title,
                "filters": f.label,
                "sections": [_clean(_asdict(s)) for s in sections],
            }
        )

    async def role_report(request: Request, p: Principal) -> Response:
        from yieldmeter.reports.render import FORMATS, render

        role = request.path_params["role"]
        if role not in ROLES:
            raise Problem(404, f"no report for role {role!r}; choose from {', '.join(ROLES)}")
        fmt = choice(request, "format", FORMATS, "json")
        f = filters_of(request, p)
        report = await reads.view(("role", role, f.key()), lambda ws: ws.reports.role(role, f))
        body = await reads.run(lambda ws: render(report, fmt))
        media = {
            "json": "application/json",
            "md": "text/markdown; charset=utf-8",
            "html": "text/html; charset=utf-8",
            "pdf": "application/pdf",
        }[fmt]
        headers = {"Content-Disposition": f'inline; filename="yieldmeter-{role}.{fmt}"'}
        return Response(body, media_type=media, headers=headers)

    async def work_unit(request: Request, p: Principal) -> Response:
        wid = request.path_params["work_unit_id"]
        view = await reads.run(lambda ws: ws.reports.work_unit(wid))
        people = p.can("people")
        d = _clean(view.to_dict())
        d["work_unit"] = redact(d["work_unit"], people)
        d["facts"] = redact(d["facts"], people)
        for k in ("signals", "effort", "calls"):
            d[k] = [redact(r, people) for r in d[k]]
        return json_response(d)

    async def export(request: Request, p: Principal) -> Response:
        name = request.path_params["name"]
        if name not in EXPORTS:
            raise Problem(404, f"no export {name!r}; choose from {', '.join(EXPORTS)}")
        fmt = choice(request, "format", ("csv", "jsonl"), "csv")
        if name in ("unit-values", "scores"):
            # a value per workflow, scores listed per workflow: a period, team or model would narrow
            # nothing, and a file has no place to say so (the JSON view of scores says it in `scope`)
            other = [k for k in ("period", "team", "model") if k in request.query_params]
            if other:
                what = "unit values are per workflow" if name == "unit-values" else "scores are per workflow"
                raise Problem(400, f"{what}: {', '.join(other)} does not apply", field=other[0])
        f = filters_of(request, p)
        people = p.can("people")
        by = request.query_params.get("by", "team")

        def compute(ws: Any) -> pa.Table:
            ws.reports.check_privacy(f)
            if name == "scores":
                table = ws.value.scores(f.workflow)
                if len(f.workflows) > 1:  # any of several named
                    table = table.filter(pc.is_in(table.column("workflow"), value_set=pa.array(f.workflows)))
                return score_export(table)  # per work unit: no field names a person
            if name == "benchmarks":
                scope = {"workflows": f.workflows, "teams": f.teams, "models": f.models}
                return benchmark_export(
                    ws.value.benchmarks(f.workflow, f.window(), by, people=people, **scope).rows
                )
            if name == "unit-values":  # what one success of each workflow is worth, and how it is known
                values = ws.value.unit_values(f.workflows)
                if not values.num_rows and not (f.workflows and ws.value.unit_values().num_rows):
                    # none at all (an unmatched workflow answers the header alone): as the CLI says it
                    raise Problem(409, "no unit values stored yet: run `yieldmeter score` first")
                return values
            from yieldmeter.metrics.spend import GRAIN

            dims = [d for d in GRAIN if d != "user_id" or people]
            return ws.reports.spend(dims, f)

        # the CLI's writers: a file reads the same from `yieldmeter export` and from here
        table = await reads.run(compute)
        if fmt == "jsonl":
            body, media = jsonl_bytes(table), "application/x-ndjson"
        else:
            body, media = csv_bytes(table), "text/csv; charset=utf-8"
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="yieldmeter-{name}.{fmt}"'},
        )

    def records(table_name: str) -> Callable[[Request, Principal], Awaitable[Response]]:
        async def post(request: Request, p: Principal) -> Response:
            from yieldmeter.ingest.base import with_org
            from yieldmeter.server.ingest_api import records_to_batch, unknown_fields
            from yieldmeter.server.otlp import commit

            limit = ADMIN_BODY_LIMIT if API_TABLES[table_name] == "admin" else RECORD_BODY_LIMIT
            body = await read_body(request, limit)
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise Problem(400, f"not valid JSON: {exc}") from None
            source = request.headers.get("x-yieldmeter-source") or "api"
            unknown = unknown_fields(table_name, doc)
            if table_name == "budgets":
                from yieldmeter.finops.budgets import check_budget_rows

                # the check of every budget write (as /finops/budgets): a bad period, scope kind,
                # basis or threshold is a 400 naming the row and field, and nothing is written
                doc = check_budget_rows(doc)
            # these tables need their ids (a budget's comes from its scope and period): a row
            # without one is rejected and quarantined, never stored under an invented id
            batch = with_org(records_to_batch(table_name, doc, source, derive_ids=False), p.org)
            summary = await commit(ctx, batch, source, "api")
            reads.bump()
            rej = batch.rejects
            rejected = [
                {"position": a, "reason": b}
                for a, b in zip(
                    rej.column("position").to_pylist(), rej.column("reason").to_pylist(), strict=True
                )
            ]
            return json_response(
                {
                    "landed": summary.landed,
                    "duplicates": summary.duplicates,
                    "rejected": rejected,
                    "unknown_fields": unknown,
                }
            )

        return post

    async def keys_list(request: Request, p: Principal) -> Response:
        store = ctx.api_keys.store
        return json_response([k.to_dict() for k in await reads.run(lambda ws: store.all_keys())])

    async def keys_create(request: Request, p: Principal) -> Response:
        body = await read_body(request, ADMIN_BODY_LIMIT)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Problem(400, f"not valid JSON: {exc}") from None
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("name"), str)
            or not isinstance(doc.get("scopes"), list)
            or not all(isinstance(s, str) for s in doc["scopes"])
        ):
            raise Problem(400, 'expected {"name": "...", "scopes": ["read", ...]}')
        org = doc.get("org", "default")
        if not isinstance(org, str) or not org:
            raise Problem(400, "org must be a non-empty string")
        store = ctx.api_keys.store
        info, key = await _write(ctx, lambda ws: store.create(doc["name"], doc["scopes"], org))
        ctx.api_keys.reload()
        return json_response({**info.to_dict(), "key": key}, status=201)

    async def keys_revoke(request: Request, p: Principal) -> Response:
        key_id = request.path_params["key_id"]
        store = ctx.api_keys.store
        try:
            info = await _write(ctx, lambda ws: store.revoke(key_id))
        except LookupError:
            raise Problem(404, f"no key {key_id!r}; GET /api/v1/keys lists the key ids") from None
        ctx.api_keys.reload()
        return json_response(info.to_dict())

    f_params: list[tuple[str, dict[str, Any], str]] = [
        ("period", {"type": "string"}, "2025, 2025-Q1, 2025-03, 2025-03-05 or START..END (END exclusive)"),
        ("team", {"type": "array", "items": {"type": "string"}}, "teams (repeat)"),
        ("workflow", {"type": "array", "items": {"type": "string"}}, "workflows (repeat)"),
        ("model", {"type": "array", "items": {"type": "string"}}, "models (repeat)"),
    ]
    fmt_param: tuple[str, dict[str, Any], str] = (
        "format",
        {"type": "string", "enum": ["md", "html", "pdf", "json"]},
        "output format",
    )
    eps = [
        Endpoint(
            "GET", "/status", "read", "What the store holds: rows per table, span, totals", status, "read"
        ),
        Endpoint(
            "GET",
            "/spend",
            "read",
            "Model, allocated, effort and fully loaded cost",
            spend,
            "read",
            [("by", {"type": "string"}, "comma-separated dimensions"), *f_params],
        ),
        Endpoint(
            "GET",
            "/unpriced",
            "read",
            "Models no price matches, with their volume",
            unpriced,
            "read",
            f_params,
        ),
        Endpoint(
            "GET",
            "/quarantine",
            "read",
            "Rows that could not be stored, with the reason (the row as it came only with 'people')",
            quarantine,
            "read",
            [("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "rows")],
        ),
        Endpoint(
            "GET",
            "/value/{report}",
            "read",
            "A report of the value engine as JSON",
            value_report,
            "read",
            [
                ("by", {"type": "string"}, "benchmarks: team|user; value-per-token: a dimension"),
                ("normalise", {"type": "boolean"}, "value-per-token across workflows as percentiles"),
                *f_params,
            ],
            choices={"report": VALUE_REPORTS},
        ),
        Endpoint(
            "GET",
            "/views/{view}",
            "read",
            "A dashboard view as sections (figures, charts, tables)",
            view,
            "read",
            f_params,
            choices={"view": tuple(VIEWS)},
        ),
        Endpoint(
            "GET",
            "/reports/{role}",
            "read",
            "A role report: board, cfo, cio, coo, finops, product",
            role_report,
            "read",
            [fmt_param, *f_params],
            ok={
                "application/json": {"schema": {"type": "object"}},
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
                "text/html": {"schema": {"type": "string"}},
                "text/markdown": {"schema": {"type": "string"}},
            },
            choices={"role": ROLES},
        ),
        Endpoint(
            "GET",
            "/work_units/{work_unit_id}",
            "read",
            "One work unit: calls, signals, effort, score, why",
            work_unit,
            "read",
        ),
        Endpoint(
            "GET",
            "/export/{name}",
            "read",
            "Export scores, benchmarks, spend or unit values as CSV or JSON lines",
            export,
            "read",
            [
                ("format", {"type": "string", "enum": ["csv", "jsonl"]}, "file format"),
                ("by", {"type": "string", "enum": ["team", "user"]}, "benchmarks by"),
                *f_params,
            ],
            ok={
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
            choices={"name": EXPORTS},
            errors={409: "unit-values: none stored yet (run `yieldmeter score`)"},
        ),
        Endpoint(
            "GET",
            "/keys",
            "admin",
            "API keys (never the keys themselves)",
            keys_list,
            "admin",
            ok={"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
        ),
        Endpoint(
            "POST",
            "/keys",
            "admin",
            "Create an API key; the answer holds the key, shown once",
            keys_create,
            "admin",
            body={
                "type": "object",
                "required": ["name", "scopes"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "scopes": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["ingest", "read", "people", "admin"]},
                    },
                    "org": {"type": "string", "minLength": 1},
                },
            },
            ok={"application/json": {"schema": {"type": "object"}}},
            status=201,
        ),
        Endpoint("DELETE", "/keys/{key_id}", "admin", "Revoke an API key", keys_revoke, "admin"),
    ]
    for name, scope in API_TABLES.items():
        eps.append(
            Endpoint(
                "POST",
                f"/{name}",
                scope,
                f"Ingest {name} rows (a JSON list of objects)"
                + ("; budgets are an admin setting" if scope == "admin" else ""),
                records(name),
                "ingest",
                body=records_schema(name),
                ok={"application/json": {"schema": RECORDS_ANSWER}},
            )
        )
    return eps


#: The answer to a records POST.
RECORDS_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["landed", "duplicates", "rejected", "unknown_fields"],
    "properties": {
        "landed": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"position": {"type": "integer"}, "reason": {"type": "string"}},
            },
        },
        "unknown_fields": {"type": "array", "items": {"type": "string"}},
    },
}


def scope_note(report: str, f: ReportFilters) -> str:
    """What of the filters a value report does not honour (empty: it honours them all)."""
    from yieldmeter.app.sections import not_filtered

    if report == "yields":
        return not_filtered(f, ("team", "model"), "benefit comes from outcomes, which name a workflow only")
    if report == "funnel":
        return not_filtered(
            f,
            ("team", "model"),
            "outcomes name a workflow only, so value is null",
            figures="Measured value is",
        )
    if report == "scores":
        asked = [n for n, v in (("period", f.period), ("team", f.teams), ("model", f.models)) if v]
        return (
            f"Scores are not filtered by {' or '.join(asked)}: they are listed per workflow." if asked else ""
        )
    return ""


def records_schema(table_name: str) -> dict[str, Any]:
    """JSON schema of a list of canonical rows of ``table_name``."""
    from yieldmeter.schema import table

    spec = table(table_name)
    props: dict[str, Any] = {}
    for c in spec.columns:
        t = str(c.type)
        if t.startswith("timestamp") or t.startswith("date"):
            props[c.name] = {"type": "string", "format": "date-time"}
        elif t in ("double", "float"):
            props[c.name] = {"type": "number"}
        elif t.startswith("int"):
            props[c.name] = {"type": "integer"}
        elif t == "bool":
            props[c.name] = {"type": "boolean"}
        else:
            props[c.name] = {"type": "string"}
    return {"type": "array", "items": {"type": "object", "properties": props}}


async def _write(ctx: ServerContext, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(workspace)`` on the single writer and wait until it committed."""
    import asyncio

    from yieldmeter.server.writer import WriterBusy, WriterStopped

    try:
        fut = ctx.writer.submit(fn)
    except (WriterBusy, WriterStopped) as exc:
        raise Problem(503, f"{exc}; retry later", {"Retry-After": "1"}) from None
    return await asyncio.wrap_future(fut)


def _asdict(obj: Any) -> Any:
    from dataclasses import asdict

    return asdict(obj)


def authorised(ctx: ServerContext, ep: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        p = ctx.api_keys.require(request, ep.scope) if ep.scope else ctx.api_keys.principal(request)
        return await ep.handler(request, p)

    return guard(handler)


def routes(ctx: ServerContext) -> list[BaseRoute]:
    from yieldmeter.server.openapi import document

    attach(ctx)
    eps = build_endpoints(ctx)
    doc = document(eps, PREFIX)

    async def openapi(request: Request) -> Response:
        return JSONResponse(doc)

    out: list[BaseRoute] = [Route(f"{PREFIX}/openapi.json", openapi, methods=["GET"])]
    out += [Route(PREFIX + ep.path, authorised(ctx, ep), methods=[ep.method]) for ep in eps]
    return out
