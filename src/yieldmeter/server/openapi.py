"""The OpenAPI 3.1 document of the REST API, written from the route table of :mod:`.api`.

The telemetry endpoints (OTLP, Langfuse-compatible, SDK records) are listed
too, so one document describes everything a client can call.
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
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
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
            "200" if ep.method != "POST" or ep.tag != "admin" else "201": {
                "description": "OK",
                "content": ep.ok,
            },
            "400": _problem("bad parameters or body"),
            "401": _problem("no or unknown API key (when the server has keys)"),
            "403": _problem(f"the key lacks the {ep.scope!r} scope"),
            "404": _problem("no such report, view or item"),
        },
    }
    if ep.scope:
        op["security"] = SECURITY
        op["description"] = f"Needs the `{ep.scope}` scope."
    if ep.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ep.body}}}
        op["responses"]["413"] = _problem("body larger than the limit")
        op["responses"]["503"] = _problem("write queue full; retry after the Retry-After seconds")
    return op


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
    paths["/v1/traces"] = {
        "post": {
            "summary": "OTLP/HTTP traces (protobuf or JSON, optional gzip): OpenTelemetry GenAI spans",
            "tags": ["ingest"],
            "security": SECURITY,
            "operationId": "post_v1_traces",
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            },
            "responses": {
                "200": {"description": "ExportTraceServiceResponse"},
                "400": {"description": "unreadable"},
                "401": {"description": "no or unknown key"},
                "403": {"description": "key lacks the ingest scope"},
                "413": {"description": "too large"},
                "415": {"description": "not OTLP"},
                "503": {"description": "write queue full"},
            },
        }
    }
    return paths


def document(endpoints: list[Endpoint], prefix: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for ep in endpoints:
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
