"""schemathesis against the OpenAPI document of a real `yieldmeter serve`: no server error (5xx) found;
and the document and the app's routes list the same operations, so neither can drift."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.server_process import create_keys, example_workspace, serve

STATE: dict[str, str] = {}
#: Generated cases per operation. The landing gate replays 8 fixed ones (37 operations x 15 took a
#: minute and a half on two shared cores, cut to keep the whole suite under its 20 minutes);
#: `make fuzz` (the explore profile) draws 30 fresh ones.
EXAMPLES = 8 if settings().derandomize else 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = example_workspace(tmp_path_factory.mktemp("fuzz"))
    STATE["admin"] = create_keys(root)["admin"]
    with serve(root) as base:
        STATE["base"] = base
        yield base


def test_no_server_errors(server: str) -> None:
    """Every operation, DELETE included: a generated key id revokes nothing (ids are 8 random hex
    digits, never the fuzzer's own key's in practice), and the fuzzer checks it still gets in."""
    schema = schemathesis.openapi.from_url(f"{server}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {STATE['admin']}"}
    seen: dict[str, int] = {}
    t0 = time.monotonic()
    for result in schema.get_all_operations():
        op = result.ok()
        seen[f"{op.method.upper()} {op.path}"] = 0

        @given(case=op.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=server, headers=headers, timeout=120)
            case.validate_response(response, checks=[not_a_server_error])
            seen[f"{case.method.upper()} {case.path}"] += 1

        fuzz()
    assert len(seen) >= 35, sorted(seen)
    assert {
        "DELETE /api/v1/keys/{key_id}",
        "POST /api/v1/finops/budgets",
        "GET /api/v1/finops/forecast",
    } <= set(seen)
    assert all(n >= 1 for n in seen.values()), seen
    print(f"{sum(seen.values())} cases over {len(seen)} operations in {time.monotonic() - t0:.0f} s")


def test_path_parameters_are_enums_so_cases_reach_the_handlers(server: str) -> None:
    import httpx

    doc = httpx.get(f"{server}/api/v1/openapi.json", timeout=30).json()
    enums = {
        p["name"]: p["schema"].get("enum")
        for ops in doc["paths"].values()
        for op in ops.values()
        for p in op.get("parameters", [])
        if p["in"] == "path"
    }
    for name in ("report", "view", "role", "name"):
        assert enums[name], name
    assert "overview" in enums["view"] and "board" in enums["role"] and "funnel" in enums["report"]


def test_every_route_is_documented_and_every_operation_is_a_route(tmp_path: Path) -> None:
    """The app's routes under /api and /v1 and the OpenAPI operations are the same set."""
    from starlette.routing import Route

    from yieldmeter.server.app import create_app

    app = create_app(example_workspace(tmp_path / "ws"))
    routes = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and re.match(r"^/(api|v1)/", route.path)
        for method in (route.methods or set()) - {"HEAD"}
    }
    routes.discard(("GET", "/api/v1/openapi.json"))  # the document itself
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        spec = client.get("/api/v1/openapi.json").json()
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "operations in the document that no route serves"
    assert len(routes) >= 35
