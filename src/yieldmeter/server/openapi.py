"""The OpenAPI 3.1 document of the REST API, written from the route table of :mod:`.api`.

The operations of :mod:`.api` come from the same :class:`~.api.Endpoint` table that
builds their routes. The FinOps endpoints (:mod:`.finops_api`) and the telemetry
endpoints (OTLP, Langfuse-compatible, SDK records) are described here, so one
document covers everything a client can call under ``/api`` and ``/v1``;
``tests/test_server_openapi.py`` checks every such route of the app is in the
document and every operation of the document is a route, so neither can drift.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yieldmeter.server.api import Endpoint

PROBLEM = {
    "type": "object",
    "required": ["title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]


def _problem(desc: str) -> dict[str, Any]:
    return {
        "description": desc,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _operation(ep: Endpoint) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    for name in re.findall(r"{(\w+)}", ep.path):
        schema: dict[str, Any] = {"type": "string"}
        if name in ep.choices:
            schema["enum"] = list(ep.choices[name])
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, schema, desc in ep.query:
        p: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": desc,
        }
        if schema.get("type") == "array":
            p.update(style="form", explode=True)
        params.append(p)
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": f"{ep.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', ep.path.lower()).strip('_')}",
        "tags": [ep.tag],
        "parameters": params,
        "responses": {
            str(ep.status): {
                "description": "OK",
                "content": ep.ok,
            },
            "400": _problem("bad parameters or body"),
            "401": _problem("no or unknown API key (when the server has keys)"),
            "403": _problem(f"the key lacks the {ep.scope!r} scope"),
            "404": _problem("no such report, view or item"),
            **{str(status): _problem(when) for status, when in ep.errors.items()},
        },
    }
    if ep.scope:
        op["security"] = SECURITY
        op["description"] = f"Needs the `{ep.scope}` scope."
    if ep.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ep.body}}}
        op["responses"]["408"] = _problem("the body did not arrive within the server's body_timeout_s")
        op["responses"]["413"] = _problem("body larger than the limit")
        op["responses"]["503"] = _problem("write queue full; retry after the Retry-After seconds")
    return op


#: ``at``: the moment a FinOps figure is computed for (default: now).
_AT = ("at", {"type": "string", "format": "date-time"}, "ISO date or time (default now)")
_PERIOD = ("period", {"type": "string"}, "2025, 2025-Q1, 2025-03, 2025-03-05 or START..END")
_CSV = {"text/csv": {"schema": {"type": "string"}}}
_LIST = {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}
_OBJECT = {"application/json": {"schema": {"type": "object"}}}
BUDGET_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["scope_kind", "scope", "amount"],
    "properties": {
        "scope_kind": {"type": "string", "description": "org, team, workflow, model, initiative..."},
        "scope": {"type": "string"},
        "period": {"type": "string", "description": "month (default), quarter, year"},
        "amount": {"type": "number", "minimum": 0},
        "basis": {"type": "string", "enum": ["model_cost", "fully_loaded_cost"]},
        "soft_threshold": {"type": "number", "minimum": 0},
        "hard_threshold": {"type": "number", "minimum": 0},
    },
}
#: The FinOps operations of :mod:`.finops_api`: (method, path, scope, summary, query, body, ok, status).
FINOPS: list[tuple[str, str, str, str, list[tuple[str, dict[str, Any], str]], Any, dict[str, Any], int]] = [
    ("GET", "/budgets", "read", "Every budget's status", [_AT], None, _LIST, 200),
    ("POST", "/budgets", "admin", "Create or update a budget", [], BUDGET_BODY, _OBJECT, 201),
    (
        "GET",
        "/budgets/{budget_id}/status",
        "read",
        "One budget's status: hard_breached is the hard stop a gateway polls",
        [_AT],
        None,
        _OBJECT,
        200,
    ),
    ("GET", "/hard-stops", "read", "Budgets past their hard threshold now", [_AT], None, _LIST, 200),
    (
        "GET",
        "/budgets/{budget_id}/burn-down",
        "read",
        "A budget's daily cumulative spend, forecast and run-out day",
        [_AT],
        None,
        _OBJECT,
        200,
    ),
    (
        "GET",
        "/alerts",
        "read",
        "Alerts (firing by default)",
        [("status", {"type": "string", "enum": ["firing", "resolved", "all"]}, "which alerts")],
        None,
        _LIST,
        200,
    ),
    ("POST", "/alerts/evaluate", "admin", "Evaluate budgets and alert rules now", [_AT], None, _LIST, 200),
    ("GET", "/alerts/deliveries", "read", "Alert delivery attempts with their errors", [], None, _LIST, 200),
    (
        "GET",
        "/forecast",
        "read",
        "Spend forecast",
        [
            (
                "by",
                {"type": "string", "enum": ["team", "workflow", "model", "provider", "initiative", "org"]},
                "group by",
            ),
            ("months", {"type": "integer", "minimum": 1, "maximum": 12}, "months ahead"),
            _AT,
        ],
        None,
        _LIST,
        200,
    ),
    (
        "GET",
        "/forecast/cost-per-success",
        "read",
        "Next month's cost per successful outcome",
        [_AT],
        None,
        _LIST,
        200,
    ),
    (
        "GET",
        "/anomalies",
        "read",
        "Spend anomalies",
        [("days", {"type": "integer", "minimum": 1, "maximum": 90}, "days to look back"), _AT],
        None,
        _LIST,
        200,
    ),
    ("GET", "/showback", "read", "Showback per team", [_PERIOD], None, _LIST, 200),
    ("GET", "/reconciliation", "read", "Bills against metered cost", [_PERIOD], None, _LIST, 200),
    ("GET", "/initiatives", "read", "Spend and value per initiative", [_PERIOD], None, _LIST, 200),
    (
        "GET",
        "/decisions",
        "read",
        "Portfolio decisions",
        [("initiative", {"type": "string"}, "one initiative")],
        None,
        _LIST,
        200,
    ),
    (
        "GET",
        "/export/focus",
        "people",
        "Spend as a FOCUS CSV, every team by name (so the people scope)",
        [_PERIOD, ("version", {"type": "string"}, "FOCUS version: 1.3 (default), 1.2 or 1.0")],
        None,
        _CSV,
        200,
    ),
]


def _finops(prefix: str) -> list[Endpoint]:
    from yieldmeter.server.api import Endpoint

    async def described_only(*_: Any) -> Any:  # the routes live in finops_api; this only documents them
        raise NotImplementedError

    return [
        Endpoint(
            method, f"/finops{path}", scope, summary, described_only, "finops", query, body, ok, status=status
        )
        for method, path, scope, summary, query, body, ok, status in FINOPS
    ]


def _telemetry(prefix: str) -> dict[str, Any]:
    from yieldmeter.server.api import records_schema

    paths: dict[str, Any] = {}
    for name in ("signals", "outcomes", "effort"):
        paths[f"{prefix}/{name}"] = {
            "post": {
                "summary": f"Ingest {name} rows (SDK record API)",
                "tags": ["ingest"],
                "security": SECURITY,
                "operationId": f"post_api_v1_{name}",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": records_schema(name)}},
                },
                "responses": {
                    "200": {
                        "description": "committed",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "400": {"description": "unreadable body"},
                    "401": {"description": "no or unknown key"},
                    "403": {"description": "key lacks the ingest scope"},
                    "413": {"description": "too large"},
                    "503": {"description": "write queue full"},
                },
            }
        }
    otlp = {
        "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"type": "object"}},
    }
    json_body = {"application/json": {"schema": {"type": "object"}}}
    paths["/api/public/otel/v1/traces"] = _ingest_post(
        "Langfuse-compatible OTLP/HTTP traces (what the Langfuse SDK exports)",
        "post_api_public_otel_v1_traces",
        otlp,
        ("200", "ExportTraceServiceResponse", None),
        otlp=True,
    )
    scores = _ingest_post(
        "Langfuse-compatible scores (a score object or a list of them)",
        "post_api_public_scores",
        {"application/json": {"schema": {"type": ["object", "array"]}}},
        ("200", "one score stored: its id", json_body),
    )
    scores["post"]["responses"].update(
        {
            "202": {"description": "a list of scores, every one stored", "content": json_body},
            "207": {"description": "a list of scores, some refused: each one's reason", "content": json_body},
        }
    )
    paths["/api/public/scores"] = scores
    paths["/api/public/ingestion"] = _ingest_post(
        "Langfuse-compatible ingestion API (SDK v3/v4 scores): score-create events -> signals",
        "post_api_public_ingestion",
        json_body,
        ("207", "successes and errors per event", json_body),
    )
    paths["/api/public/projects"] = {
        "get": {
            "summary": "Langfuse-compatible: the key's project, named after its org (the SDK's auth_check)",
            "tags": ["ingest"],
            "security": SECURITY,
            "operationId": "get_api_public_projects",
            "responses": {
                "200": {"description": "{data: [the project]}", "content": json_body},
                "401": {"description": "no or unknown key"},
                "403": {"description": "key lacks the ingest scope"},
            },
        }
    }
    paths["/v1/traces"] = _ingest_post(
        "OTLP/HTTP traces (protobuf or JSON, optional gzip): OpenTelemetry GenAI spans",
        "post_v1_traces",
        otlp,
        ("200", "ExportTraceServiceResponse", None),
        otlp=True,
    )
    return paths


def _ingest_post(
    summary: str,
    operation_id: str,
    content: dict[str, Any],
    ok: tuple[str, str, dict[str, Any] | None],
    *,
    otlp: bool = False,
) -> dict[str, Any]:
    """A telemetry ingest operation: ``ok`` is (status, description, content or None)."""
    status, description, ok_content = ok
    responses: dict[str, Any] = {
        status: {"description": description, **({"content": ok_content} if ok_content else {})},
        "400": {"description": "unreadable"},
        "401": {"description": "no or unknown key"},
        "403": {"description": "key lacks the ingest scope"},
    }
    responses["413"] = {"description": "too large"}
    if otlp:
        responses["415"] = {"description": "not OTLP"}
    responses["503"] = {"description": "write queue full"}
    return {
        "post": {
            "summary": summary,
            "tags": ["ingest"],
            "security": SECURITY,
            "operationId": operation_id,
            "requestBody": {"required": True, "content": content},
            "responses": responses,
        }
    }


def document(endpoints: list[Endpoint], prefix: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for ep in [*endpoints, *_finops(prefix)]:
        paths.setdefault(prefix + ep.path, {})[ep.method.lower()] = _operation(ep)
    paths.update(_telemetry(prefix))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "yieldmeter API",
            "version": "1",
            "description": "AI value management: spend, value reports, role reports, record ingest and keys. "
            "Errors are RFC 9457 problem details.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API key: ym_<id>_<secret>"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "any user name, the API key as password",
                },
            },
        },
    }
