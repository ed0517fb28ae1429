"""schemathesis against the OpenAPI document of a real `yieldmeter serve`: no server error (5xx) found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.server_process import create_keys, example_workspace, serve

STATE: dict[str, str] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = example_workspace(tmp_path_factory.mktemp("fuzz"))
    STATE["admin"] = create_keys(root)["admin"]
    with serve(root) as base:
        STATE["base"] = base
        yield base


def test_no_server_errors(server: str) -> None:
    """Every operation (DELETE excepted: it would revoke the fuzzer's own key), a few generated cases each."""
    schema = schemathesis.openapi.from_url(f"{server}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {STATE['admin']}"}
    seen = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.method.upper() == "DELETE":
            continue
        seen += 1

        @given(case=op.as_strategy())
        @settings(max_examples=4, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(base_url=server, headers=headers, timeout=60)
            case.validate_response(response, checks=[not_a_server_error])

        fuzz()
    assert seen >= 15
