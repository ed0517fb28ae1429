"""The REST API over a real `yieldmeter serve` process on loopback: auth, problem details, ingest, privacy."""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.loopback import stored
from tests.server_process import create_keys, example_workspace, serve, serve_process

Keys = dict[str, str]


def min_group_size(root: Path, n: int) -> None:
    cfg = root / "yieldmeter.yaml"
    cfg.write_text(cfg.read_text().replace("min_group_size: 1", f"min_group_size: {n}"))


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Keys]]:
    """A server with one key per scope (and one to revoke), teams of fewer than 2 people private.

    The example teams: risk (ana, ben) and support (cara, dev) have 2 people each; finance (eve)
    and comms (finn) one each, so a reader without the people scope sees those two merged.
    """
    root = example_workspace(tmp_path_factory.mktemp("closed"))
    min_group_size(root, 2)
    keys = create_keys(root)
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.server.auth import KeyStore

    with Workspace.open(root) as ws:
        info, _ = KeyStore(ws).create("to-revoke", ["read"])
    keys["victim_id"] = info.key_id
    with serve(root) as base:
        yield base, keys


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with no keys (open on loopback), and teams below the minimum group size of 5."""
    root = example_workspace(tmp_path_factory.mktemp("open"))
    cfg = root / "yieldmeter.yaml"
    cfg.write_text(cfg.read_text().replace("min_group_size: 1", "min_group_size: 5"))
    with serve(root) as base:
        yield base


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# One request per endpoint family; the scope it needs; the key that lacks that scope.
DECISION = [
    {
        "decision_id": "d-auth",
        "date": "2025-03-25T00:00:00Z",
        "subject": "fraud-review",
        "change": "kept",
        "rationale": "yield",
        "evidence": "risk-report",
    }
]
OTLP = {"resourceSpans": []}
MARCH = {"period_start": "2025-03-01T00:00:00Z", "period_end": "2025-04-01T00:00:00Z"}
REQUESTS = [
    # (family, method, path, json body, scope, key without the scope)
    ("ingest:records", "POST", "/api/v1/decisions", DECISION, "ingest", "read"),
    (
        "ingest:work_units",
        "POST",
        "/api/v1/work_units",
        [{"work_unit_id": "auth-wu", "workflow": "fraud-review", "team": "risk", "user_id": "ana"}],
        "ingest",
        "read",
    ),
    (
        "ingest:cost_items",
        "POST",
        "/api/v1/cost_items",
        [{"item_id": "auth-ci", **MARCH, "amount": 1.0, "category": "platform", "team": "risk"}],
        "ingest",
        "read",
    ),
    (
        "ingest:outcomes",
        "POST",
        "/api/v1/outcomes",
        [{"outcome_id": "auth-o", "workflow": "fraud-review", **MARCH, "metric": "checks"}],
        "ingest",
        "read",
    ),
    # a budget is an admin setting, here as on /finops/budgets: an ingest key may not set one
    (
        "admin:budgets",
        "POST",
        "/api/v1/budgets",
        [{"scope_kind": "team", "scope": "risk", "period": "month", "amount": 100.0}],
        "admin",
        "ingest",
    ),
    (
        "ingest:sdk",
        "POST",
        "/api/v1/signals",
        [{"work_unit_id": "fr-wu-3", "kind": "accepted", "ts": "2025-03-03T10:00:00Z"}],
        "ingest",
        "read",
    ),
    ("ingest:otlp", "POST", "/v1/traces", OTLP, "ingest", "read"),
    ("read:status", "GET", "/api/v1/status", None, "read", "ingest"),
    ("read:unpriced", "GET", "/api/v1/unpriced", None, "read", "ingest"),
    ("read:quarantine", "GET", "/api/v1/quarantine", None, "read", "ingest"),
    ("read:spend", "GET", "/api/v1/spend?by=team", None, "read", "ingest"),
    ("read:value", "GET", "/api/v1/value/funnel", None, "read", "ingest"),
    ("read:view", "GET", "/api/v1/views/overview", None, "read", "ingest"),
    ("read:report", "GET", "/api/v1/reports/board", None, "read", "ingest"),
    ("read:work_unit", "GET", "/api/v1/work_units/fr-wu-1", None, "read", "ingest"),
    ("read:export", "GET", "/api/v1/export/spend?format=csv", None, "read", "ingest"),
    ("read:dashboard", "GET", "/", None, "read", "ingest"),
    ("read:dashboard_unit", "GET", "/work-units/fr-wu-1", None, "read", "ingest"),
    ("read:board_pack", "GET", "/reports/board.pdf", None, "read", "ingest"),
    ("read:finops_budgets", "GET", "/api/v1/finops/budgets", None, "read", "ingest"),
    ("read:finops_alerts", "GET", "/api/v1/finops/alerts?status=all", None, "read", "ingest"),
    ("read:finops_forecast", "GET", "/api/v1/finops/forecast?by=team", None, "read", "ingest"),
    ("read:finops_showback", "GET", "/api/v1/finops/showback?period=2025-03", None, "read", "ingest"),
    # the FOCUS export names every team however small: a read key without people is refused
    ("people:finops_export", "GET", "/api/v1/finops/export/focus?period=2025-03", None, "people", "read"),
    (
        "admin:finops_budget",
        "POST",
        "/api/v1/finops/budgets",
        {"scope_kind": "team", "scope": "support", "period": "month", "amount": 50.0},
        "admin",
        "people",
    ),
    ("admin:finops_evaluate", "POST", "/api/v1/finops/alerts/evaluate", None, "admin", "people"),
    ("people:benchmarks", "GET", "/api/v1/value/benchmarks?by=user", None, "people", "read"),
    ("people:view", "GET", "/api/v1/views/people", None, "people", "read"),
    ("people:dashboard", "GET", "/people", None, "people", "read"),
    ("people:spend", "GET", "/api/v1/spend?by=user_id", None, "people", "read"),
    ("admin:keys", "GET", "/api/v1/keys", None, "admin", "people"),
    (
        "admin:keys_create",
        "POST",
        "/api/v1/keys",
        {"name": "auth-made", "scopes": ["read"]},
        "admin",
        "people",
    ),
    ("admin:keys_revoke", "DELETE", "/api/v1/keys/{victim_id}", None, "admin", "people"),
]


@pytest.mark.parametrize(
    ("family", "method", "path", "body", "scope", "lacking"), REQUESTS, ids=[r[0] for r in REQUESTS]
)
def test_auth_for_every_scope_and_family(
    closed: tuple[str, Keys], family: str, method: str, path: str, body: object, scope: str, lacking: str
) -> None:
    base, keys = closed
    url = base + path.format(victim_id=keys["victim_id"])

    def call(headers: dict[str, str]) -> httpx.Response:
        return httpx.request(method, url, json=body, headers=headers, timeout=60)

    api = path.startswith("/api/")
    for headers in ({}, bearer("ym_00000000_not-a-key"), bearer(keys["revoked"]), bearer("garbage")):
        r = call(headers)
        assert r.status_code == 401, (family, headers, r.text)
        if path == "/v1/traces":  # a google.rpc.Status: UNAUTHENTICATED
            assert r.json()["code"] == 16
        if api:
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["status"] == 401
    r = call(bearer(keys[lacking]))
    assert r.status_code == 403, (family, r.text)
    if path == "/v1/traces":  # PERMISSION_DENIED
        assert r.json()["code"] == 7
    if api:
        assert scope in r.json()["detail"]
    for holder in (scope, "admin"):
        r = call(bearer(keys[holder]))
        assert r.status_code in (200, 201), (family, holder, r.text)
    # a browser sends the key as the password of HTTP Basic
    r = call({"Authorization": "Basic " + base64.b64encode(f"me:{keys[scope]}".encode()).decode()})
    assert r.status_code in (200, 201)
    if path.startswith("/api/v1/") and method == "POST" and "finops" not in path and "keys" not in path:
        assert r.json()["rejected"] == [] and r.json()["unknown_fields"] == [], r.json()


def test_open_server_needs_no_key_on_loopback_and_hides_small_teams(open_server: str) -> None:
    r = httpx.get(f"{open_server}/api/v1/status", timeout=60)
    assert r.status_code == 200
    assert r.json()["tables"]["calls"] == 13
    # min_group_size 5: every example team has fewer people, so no team row is shown, by API or dashboard
    b = httpx.get(f"{open_server}/api/v1/value/benchmarks?by=team", timeout=60).json()
    assert b["rows"] == [] and b["hidden_groups"] > 0
    for query in ("by=team&normalise=true", "by=team&workflow=fraud-review"):
        v = httpx.get(f"{open_server}/api/v1/value/value-per-token?{query}", timeout=60)
        assert v.status_code == 200 and v.json()["rows"] == [], (query, v.text)
    view = httpx.get(f"{open_server}/api/v1/views/benchmarks", timeout=60).json()
    bench = next(s for s in view["sections"] if s["key"] == "benchmarks")
    assert bench["tables"][0]["rows"] == []
    page = httpx.get(f"{open_server}/benchmarks", timeout=60).text
    assert "hidden" in page


def test_refuses_other_addresses_without_keys(tmp_path: Path) -> None:
    root = example_workspace(tmp_path / "ws")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "yieldmeter.cli.main",
            "serve",
            "-w",
            str(root),
            "--host",
            "0.0.0.0",
            "--port",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "refusing to listen on 0.0.0.0 without API keys" in " ".join(done.stderr.split())


def test_problem_details_for_every_4xx(closed: tuple[str, Keys]) -> None:
    base, keys = closed
    h = bearer(keys["admin"])
    # the last member: the input a 400 names in its `field` member, so a client can point at it
    cases = [
        ("GET", "/api/v1/spend?period=2025-13", None, 400, "period"),
        ("GET", "/api/v1/spend?by=colour", None, 400, "by"),
        ("GET", "/api/v1/value/nothing", None, 404, None),
        ("GET", "/api/v1/reports/intern", None, 404, None),
        ("GET", "/api/v1/reports/board?format=docx", None, 400, "format"),
        ("GET", "/api/v1/work_units/no-such-unit", None, 404, None),
        ("GET", "/api/v1/quarantine?limit=0", None, 400, "limit"),
        ("GET", "/api/v1/no-such-endpoint", None, 404, None),
        ("DELETE", "/api/v1/spend", None, 405, None),
        # across workflows: refused, with the reason
        ("GET", "/api/v1/value/value-per-token", None, 400, "workflow"),
        ("GET", "/api/v1/value/value-per-token?workflow=fraud-review&by=colour", None, 400, "by"),
        ("GET", "/api/v1/value/benchmarks?by=colour", None, 400, "by"),
        ("GET", "/api/v1/value/funnel?normalise=maybe", None, 400, "normalise"),
        ("GET", "/api/v1/finops/forecast?by=colour", None, 400, "by"),
        ("GET", "/api/v1/finops/forecast?at=yesterday", None, 400, "at"),
        ("GET", "/api/v1/export/scores?period=2025-01", None, 400, "period"),
        ("POST", "/api/v1/keys", {"name": "x", "scopes": ["root"]}, 400, "scopes"),
        ("POST", "/api/v1/keys", {"name": " ", "scopes": ["read"]}, 400, "name"),
        ("GET", "/api/v1/finops/budgets?at=0500-01-01", None, 400, "at"),
        ("POST", "/api/v1/finops/alerts/evaluate?at=2999-01-01", None, 400, "at"),
        ("POST", "/api/v1/finops/budgets", {"scope_kind": "team", "scope": "x"}, 400, "amount"),
        ("DELETE", "/api/v1/keys/nope", None, 404, None),
        ("POST", "/api/v1/keys", {"name": "x" * (70 * 1024), "scopes": ["read"]}, 413, None),
        # a NUL reached DuckDB as a filter literal it cannot parse (a 500)
        ("GET", "/api/v1/spend?team=%00", None, 400, None),
        ("GET", "/api/v1/value/funnel?workflow=a%00b", None, 400, None),
        ("GET", "/api/v1/work_units/%00", None, 400, None),
        ("GET", "/?model=%1f", None, 400, None),
        ("GET", "/api/v1/spend?period=2025-01&period=2025-02", None, 400, "period"),  # the last one won
    ]
    for method, path, body, status, field in cases:
        r = httpx.request(method, base + path, json=body, headers=h, timeout=60)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), path
        doc = r.json()
        assert doc["status"] == status and doc["title"] and doc["detail"], path
        assert doc.get("field") == field, (path, doc)
        if status == 413:  # the limit in words a person reads (it said "larger than 0 MiB")
            assert doc["detail"] == "request body larger than 64 KiB", doc
    r = httpx.post(f"{base}/api/v1/decisions", content=b"{not json", headers=h, timeout=30)
    assert r.status_code == 400 and r.json()["detail"].startswith("not valid JSON")
    big = gzip.compress(b"[" + b" " * (17 * 1024 * 1024) + b"]")
    r = httpx.post(
        f"{base}/api/v1/decisions",
        content=big,
        timeout=30,
        headers={**h, "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")


def test_ingest_is_acknowledged_when_durable_and_shows_at_once(closed: tuple[str, Keys]) -> None:
    base, keys = closed
    h = bearer(keys["ingest"])
    row = [
        {
            "decision_id": "d-board-1",
            "date": "2025-03-21T00:00:00Z",
            "subject": "board-analysis",
            "change": "expanded the analyst pilot",
            "rationale": "answer used in the board paper",
            "evidence": "board-minutes-2025-03-20",
        },
        {"decision_id": "d-bad", "subject": "no date"},
    ]
    r = httpx.post(f"{base}/api/v1/decisions", json=row, headers=h, timeout=60)
    assert r.status_code == 200
    assert r.json()["landed"] == 1 and len(r.json()["rejected"]) == 1
    assert r.json()["rejected"][0]["position"] == 2
    again = httpx.post(f"{base}/api/v1/decisions", json=row[:1], headers=h, timeout=60).json()
    assert again == {"landed": 0, "duplicates": 1, "rejected": [], "unknown_fields": []}
    view = httpx.get(f"{base}/api/v1/views/decisions", headers=bearer(keys["read"]), timeout=60).json()
    rows = view["sections"][0]["tables"][0]["rows"]
    assert any(r["decision_id"] == "d-board-1" for r in rows)
    board = httpx.get(f"{base}/api/v1/reports/board", headers=bearer(keys["read"]), timeout=60).json()
    decisions = next(s for s in board["sections"] if s["key"] == "decisions")
    assert any(r["subject"] == "board-analysis" for r in decisions["tables"][0]["rows"])


def test_people_fields_need_the_people_scope(closed: tuple[str, Keys]) -> None:
    base, keys = closed
    as_read = httpx.get(f"{base}/api/v1/work_units/fr-wu-1", headers=bearer(keys["read"]), timeout=60).json()
    as_people = httpx.get(
        f"{base}/api/v1/work_units/fr-wu-1", headers=bearer(keys["people"]), timeout=60
    ).json()
    assert as_read["work_unit"]["user_id"] == "(hidden)"
    assert all(s["actor"] in (None, "(hidden)") for s in as_read["signals"])
    assert as_people["work_unit"]["user_id"] == "ana"
    assert [c["call_id"] for c in as_people["calls"]] == ["fr-1"]
    assert any("accepted" in w for w in as_people["why"])


def test_keys_over_the_api(closed: tuple[str, Keys]) -> None:
    base, keys = closed
    admin = bearer(keys["admin"])
    made = httpx.post(
        f"{base}/api/v1/keys", json={"name": "ci", "scopes": ["read"]}, headers=admin, timeout=30
    )
    assert made.status_code == 201
    new = made.json()
    assert new["key"].startswith(f"ym_{new['key_id']}_") and new["scopes"] == ["read"]
    listed = httpx.get(f"{base}/api/v1/keys", headers=admin, timeout=30).json()
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert httpx.get(f"{base}/api/v1/status", headers=bearer(new["key"]), timeout=60).status_code == 200
    gone = httpx.delete(f"{base}/api/v1/keys/{new['key_id']}", headers=admin, timeout=30)
    assert gone.status_code == 200 and gone.json()["active"] is False
    assert httpx.get(f"{base}/api/v1/status", headers=bearer(new["key"]), timeout=60).status_code == 401


def test_exports_and_formats(closed: tuple[str, Keys]) -> None:
    base, keys = closed
    h = bearer(keys["read"])
    csv_text = httpx.get(f"{base}/api/v1/export/scores?format=csv", headers=h, timeout=60).text
    assert csv_text.splitlines()[0].startswith("work_unit_id,workflow,score")
    # scores are per work unit and listed per workflow: a period, team or model narrows nothing, and
    # a file cannot say so; two workflows named give the scores of either
    for query in ("period=2024", "team=risk", "model=gpt-4o"):
        r = httpx.get(f"{base}/api/v1/export/scores?{query}", headers=h, timeout=60)
        assert r.status_code == 400 and "per workflow" in r.json()["detail"], query
    every = {r["workflow"] for r in csv.DictReader(io.StringIO(csv_text))}
    two = sorted(every)[:2]
    got = httpx.get(
        f"{base}/api/v1/export/scores?format=csv&workflow={two[0]}&workflow={two[1]}", headers=h, timeout=60
    ).text
    assert {r["workflow"] for r in csv.DictReader(io.StringIO(got))} == set(two)
    lines = httpx.get(f"{base}/api/v1/export/spend?format=jsonl&period=2025-03", headers=h, timeout=60).text
    assert lines.count("\n") >= 5 and '"user_id"' not in lines  # per-person column only with people
    # nothing in scope: a CSV of its header alone (it was a bare newline)
    for export in ("spend", "benchmarks", "scores"):
        empty = httpx.get(f"{base}/api/v1/export/{export}?format=csv&workflow=nowf", headers=h, timeout=60)
        assert empty.status_code == 200 and len(empty.text.splitlines()) == 1, (export, empty.text)
        assert "workflow" in empty.text.splitlines()[0].split(","), (export, empty.text)
    # the stored unit values (the example workspace is scored at its import), one workflow asked for
    values = httpx.get(f"{base}/api/v1/export/unit-values?format=jsonl", headers=h, timeout=60).text
    rows = [json.loads(line) for line in values.splitlines()]
    assert rows and {"workflow", "unit_value", "source"} <= set(rows[0])
    one = httpx.get(
        f"{base}/api/v1/export/unit-values?format=csv&workflow={rows[0]['workflow']}", headers=h, timeout=60
    ).text.splitlines()
    assert one[0].startswith("workflow,") and len(one) == 2 and one[1].startswith(rows[0]["workflow"] + ",")
    none = httpx.get(f"{base}/api/v1/export/unit-values?workflow=nope", headers=h, timeout=60).text
    assert none.splitlines() == [one[0]]  # no workflow of that name: the header alone
    r = httpx.get(f"{base}/api/v1/export/unit-values?team=claims", headers=h, timeout=60)
    assert r.status_code == 400 and "per workflow" in r.json()["detail"]
    md = httpx.get(f"{base}/api/v1/reports/cfo?format=md", headers=h, timeout=60)
    assert md.headers["content-type"].startswith("text/markdown") and "## Named benefit owners" in md.text
    spec = httpx.get(f"{base}/api/v1/openapi.json", timeout=30).json()
    assert spec["openapi"].startswith("3.1") and "/api/v1/reports/{role}" in spec["paths"]
    assert "/v1/traces" in spec["paths"]


def test_opentelemetry_exporter_sends_its_ingest_key(closed: tuple[str, Keys]) -> None:
    """An OTLP/HTTP exporter sending `Authorization: Bearer <key>` (what OTEL_EXPORTER_OTLP_HEADERS sets)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    base, keys = closed
    results: list[SpanExportResult] = []

    class Recording(SpanExporter):
        def __init__(self, key: str) -> None:
            self.inner = OTLPSpanExporter(
                endpoint=f"{base}/v1/traces", headers={"Authorization": f"Bearer {key}"}, timeout=30
            )

        def export(self, spans):  # type: ignore[no-untyped-def]
            result = self.inner.export(spans)
            results.append(result)
            return result

    for key in (keys["ingest"], keys["read"]):
        provider = TracerProvider(resource=Resource.create({"service.name": "claims-api"}))
        provider.add_span_processor(SimpleSpanProcessor(Recording(key)))
        with provider.get_tracer("test").start_as_current_span(
            "chat gpt-4o-mini",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 10,
                "yieldmeter.work_unit.id": "otel-auth-1",
            },
        ):
            pass
        provider.shutdown()
    assert results == [SpanExportResult.SUCCESS, SpanExportResult.FAILURE]  # the read key may not ingest
    stored(base)  # answered from the spool: the commit follows
    unit = httpx.get(f"{base}/api/v1/work_units/otel-auth-1", headers=bearer(keys["read"]), timeout=60)
    assert unit.status_code == 200 and len(unit.json()["calls"]) == 1


def test_revoking_the_last_key_keeps_the_server_closed(tmp_path: Path) -> None:
    """Open mode is for a workspace that never had a key: revoking every key must not reopen it."""
    from starlette.testclient import TestClient

    from yieldmeter.app.workspace import Workspace
    from yieldmeter.server.app import create_app
    from yieldmeter.server.auth import KeyStore, ServerRefused, check_bind

    root = example_workspace(tmp_path / "ws")
    with Workspace.open(root) as ws:
        info, key = KeyStore(ws).create("only-admin", ["admin"])
    app = create_app(root)
    with TestClient(app) as c:
        assert c.get("/api/v1/keys").status_code == 401
        assert c.get("/api/v1/keys", headers=bearer(key)).status_code == 200
        assert c.delete(f"/api/v1/keys/{info.key_id}", headers=bearer(key)).status_code == 200
        for headers in ({}, bearer(key)):
            r = c.get("/api/v1/keys", headers=headers)
            assert r.status_code == 401, r.text
        assert c.get("/api/v1/unpriced").status_code == 401
        r = c.post("/v1/traces", content=b"{}", headers={"content-type": "application/json"})
        assert r.status_code == 401  # the OTLP receiver too: nobody ingests without a key
        ring = app.state.ctx.api_keys
        assert ring.required and not ring.usable
        with pytest.raises(ServerRefused):
            check_bind("0.0.0.0", ring)  # nobody could get in: refuse rather than serve a locked door
        check_bind("127.0.0.1", ring)


def test_unit_values_export_before_the_first_scoring_run_says_so(tmp_path: Path) -> None:
    """A workspace never scored has no stored unit values: 409 naming the command, not an empty file."""
    from starlette.testclient import TestClient

    from yieldmeter.app.workspace import Workspace
    from yieldmeter.server.app import create_app

    Workspace.init(tmp_path / "ws").close()
    key = create_keys(tmp_path / "ws")["read"]
    with TestClient(create_app(tmp_path / "ws")) as c:
        r = c.get("/api/v1/export/unit-values", headers=bearer(key))
        assert r.status_code == 409 and "`yieldmeter score`" in r.json()["detail"], r.text


def test_small_teams_are_merged_for_readers_and_refused_as_filters(closed: tuple[str, Keys]) -> None:
    """privacy.min_group_size 2: finance (eve) and comms (finn) are one person each. A read key
    never sees either alone, by the API or the dashboard; a people key does. Together they would
    be one "(other teams)" row, but every call of comms is unpriced: the row's cost would be
    eve's alone, so it is left out."""
    base, keys = closed
    read, people = bearer(keys["read"]), bearer(keys["people"])

    def teams(rows: list[dict[str, object]]) -> dict[object, dict[str, object]]:
        return {r["team"]: r for r in rows}

    as_read = teams(httpx.get(f"{base}/api/v1/spend?by=team&period=2025-03", headers=read, timeout=60).json())
    as_people = teams(
        httpx.get(f"{base}/api/v1/spend?by=team&period=2025-03", headers=people, timeout=60).json()
    )
    assert {"finance", "comms"} <= set(as_people) and not {"finance", "comms"} & set(as_read)
    assert set(as_read) == {"risk", "support"}  # no "(other teams)": it would be eve's cost
    assert as_people["comms"]["fully_loaded_cost"] is None and as_people["finance"]["fully_loaded_cost"] > 0
    assert as_read["risk"] == pytest.approx(as_people["risk"])  # summed in another order
    # grouped by team with another dimension, the same rule
    rows = httpx.get(f"{base}/api/v1/spend?by=team,model", headers=read, timeout=60).json()
    assert not {"finance", "comms"} & {r["team"] for r in rows}
    # a dimension named twice is grouped by once (it was a 500: a duplicate column)
    twice = httpx.get(f"{base}/api/v1/spend?by=team,model,team", headers=read, timeout=60)
    assert twice.status_code == 200
    assert [(r["team"], r["model"], r["calls"]) for r in twice.json()] == [
        (r["team"], r["model"], r["calls"]) for r in rows
    ]
    # a filter naming a small team would show one person: refused without the people scope
    for path in (
        "/api/v1/spend?team=finance",
        "/api/v1/value/funnel?team=finance",
        "/api/v1/views/overview?team=finance",
        "/api/v1/reports/finops?team=finance",
        "/api/v1/export/spend?team=comms",
    ):
        r = httpx.get(base + path, headers=read, timeout=60)
        assert r.status_code == 403, (path, r.text)
        detail = r.json()["detail"]
        assert "people" in detail and "min_group_size" in detail and "--" not in detail, detail
        assert httpx.get(base + path, headers=people, timeout=60).status_code == 200, path
    # the FinOps report's spend by team, and the Spend page's
    report = httpx.get(f"{base}/api/v1/reports/finops", headers=read, timeout=60).json()
    by_team = next(s for s in report["sections"] if s["key"] == "spend_by_team")
    shown = {r["team"] for r in by_team["tables"][0]["rows"]}
    assert not {"(other teams)", "finance", "comms"} & shown
    assert "hidden" in by_team["tables"][0]["caption"]
    page = httpx.get(f"{base}/spend", headers=read, timeout=60).text
    assert "2 teams with fewer than 2 people" in page and '<option value="finance"' not in page
    assert '<option value="finance"' in httpx.get(f"{base}/spend", headers=people, timeout=60).text
    refused = httpx.get(f"{base}/?team=finance", headers=read, timeout=60)
    assert refused.status_code == 403 and "min_group_size" in refused.text
    assert httpx.get(f"{base}/?team=risk", headers=read, timeout=60).status_code == 200


def test_record_tables_over_http(closed: tuple[str, Keys]) -> None:
    """work_units, cost_items, budgets and outcomes posted over HTTP: good rows land and show; a row
    without its id is rejected and quarantined, naming the field; unknown fields are reported."""
    base, keys = closed
    ingest, admin, read = bearer(keys["ingest"]), bearer(keys["admin"]), bearer(keys["read"])

    def post(table: str, rows: object, headers: dict[str, str]) -> dict[str, object]:
        r = httpx.post(f"{base}/api/v1/{table}", json=rows, headers=headers, timeout=60)
        assert r.status_code == 200, (table, r.text)
        return r.json()  # type: ignore[no-any-return]

    post("decisions", [], ingest)  # a write through the API: the next read is fresh, not a cached view
    before = httpx.get(f"{base}/api/v1/status", headers=read, timeout=60).json()["tables"]
    got = post(
        "work_units",
        [
            {"work_unit_id": "http-wu-1", "workflow": "support-reply", "team": "support", "colour": "red"},
            {"a": 1},
        ],
        ingest,
    )
    assert got["landed"] == 1 and got["unknown_fields"] == ["a", "colour"]
    assert got["rejected"] == [{"position": 2, "reason": "work_unit_id: missing"}]
    unit = httpx.get(f"{base}/api/v1/work_units/http-wu-1", headers=read, timeout=60)
    assert unit.status_code == 200 and unit.json()["work_unit"]["workflow"] == "support-reply"
    got = post("cost_items", [{"item_id": "http-ci-1", **MARCH, "amount": 12.5}, {"amount": 3}], ingest)
    assert got["landed"] == 1 and got["rejected"][0]["reason"] == "item_id: missing"
    got = post(
        "outcomes",
        [{"outcome_id": "http-o-1", "workflow": "support-reply", **MARCH, "metric": "csat"}],
        ingest,
    )
    assert got["landed"] == 1
    after = httpx.get(f"{base}/api/v1/status", headers=read, timeout=60).json()["tables"]
    for table in ("work_units", "cost_items", "outcomes"):
        assert after[table] == before[table] + 1, table
    quarantined = httpx.get(f"{base}/api/v1/quarantine", headers=read, timeout=60).json()
    reasons = {(q["table_name"], q["reason"]) for q in quarantined}
    assert {("work_units", "work_unit_id: missing"), ("cost_items", "item_id: missing")} <= reasons
    # the rows as they came (they may name a person) only for a key that may see people
    assert all(q["raw"] is None for q in quarantined)
    seen = httpx.get(f"{base}/api/v1/quarantine", headers=bearer(keys["people"]), timeout=60).json()
    rows = [json.loads(q["raw"]) for q in seen if q["table_name"] == "work_units" and q["raw"]]
    assert {"a": 1} in rows  # every field as posted, unknown ones too
    # budgets: admin only (an ingest key is refused), identity from scope and period
    assert httpx.post(f"{base}/api/v1/budgets", json=[], headers=ingest, timeout=60).status_code == 403
    budget = {"scope_kind": "workflow", "scope": "support-reply", "period": "month", "amount": 40.0}
    assert post("budgets", [budget], admin)["landed"] == 1
    post("budgets", [{**budget, "amount": 45.0}], admin)  # the same budget (scope and period): updated
    listed = httpx.get(f"{base}/api/v1/finops/budgets", headers=read, timeout=60).json()
    mine = [b for b in listed if b["scope_kind"] == "workflow" and b["scope"] == "support-reply"]
    assert [b["amount"] for b in mine] == [45.0]
    # the same budget set through /finops/budgets is the same budget too (one id however written)
    r = httpx.post(
        f"{base}/api/v1/finops/budgets", json={**budget, "amount": 50.0}, headers=admin, timeout=60
    )
    assert r.status_code == 201, r.text
    listed = httpx.get(f"{base}/api/v1/finops/budgets", headers=read, timeout=60).json()
    mine = [b for b in listed if b["scope_kind"] == "workflow" and b["scope"] == "support-reply"]
    assert [b["amount"] for b in mine] == [50.0]


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_acknowledged_write_survives_a_kill_and_slow_bodies_time_out(tmp_path: Path) -> None:
    """A decision acknowledged over HTTP is in the store after SIGKILL, and the server's decode
    processes do not outlive it; a body trickled slower than server.body_timeout_s is answered 408
    (problem details) and the connection closed."""
    root = example_workspace(tmp_path / "ws")
    with (root / "yieldmeter.yaml").open("a") as fh:
        fh.write("\nserver:\n  body_timeout_s: 1\n")
    row = {**DECISION[0], "decision_id": "d-kill", "subject": "survives a kill"}
    with serve_process(root) as (base, proc):
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /api/v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 200\r\n\r\n[{"
            )
            t0 = time.monotonic()
            answer = b""
            while chunk := sock.recv(65536):  # the server closes the connection after its answer
                answer += chunk
            waited = time.monotonic() - t0
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer
        assert b"application/problem+json" in head and b"did not arrive within 1 s" in body
        assert 0.5 < waited < 10
        r = httpx.post(f"{base}/api/v1/decisions", json=[row], timeout=60)
        assert r.status_code == 200 and r.json()["landed"] == 1
        helpers = _children(proc.pid)  # the decode processes and multiprocessing's tracker
        assert helpers
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no checkpoint: only what was committed
        proc.wait(20)
    # nothing is left behind: the decode processes end within a second of their server, and the
    # tracker with them (they idled for ever, reparented, before)
    deadline = time.monotonic() + 15
    while (alive := [p for p in helpers if Path(f"/proc/{p}").exists()]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, alive
    from yieldmeter.app.workspace import Workspace

    with Workspace.open(root) as ws:
        rows = ws.store.query_arrow("SELECT subject FROM decisions WHERE decision_id = 'd-kill'").to_pylist()
    assert rows == [{"subject": "survives a kill"}]


def test_an_export_reads_the_same_from_the_command_line_and_the_api(tmp_path: Path) -> None:
    """One writer per format: the CLI's benchmark export lacked two columns, listed scores in
    another order, wrote times and whole numbers differently and quoted otherwise. Each export,
    in each format, now has the same header and cells from `yieldmeter export` and from
    /api/v1/export (open mode: the people scope granted, as the local command has it); a float
    is compared to 12 digits, as two computations of a parallel sum may differ in the last bit."""
    from starlette.testclient import TestClient
    from typer.testing import CliRunner

    from yieldmeter.cli.main import build_app
    from yieldmeter.server.app import create_app

    root = example_workspace(tmp_path / "ws")
    runner, app = CliRunner(), build_app()
    with TestClient(create_app(root)) as c:
        for name, args, query in (
            ("scores", [], ""),
            ("benchmarks", ["--by", "team"], "&by=team"),
            ("unit-values", [], ""),
        ):
            for fmt in ("csv", "jsonl"):
                api = c.get(f"/api/v1/export/{name}?format={fmt}{query}")
                assert api.status_code == 200, api.text
                cli = runner.invoke(app, ["export", name, *args, "--format", fmt, "-w", str(root)])
                assert cli.exit_code == 0, cli.output
                assert len(api.text.splitlines()) > 1, (name, fmt)  # rows, not a header alone
                assert _cells(cli.stdout, fmt) == _cells(api.text, fmt), (name, fmt)


def _cells(text: str, fmt: str) -> list[list[object]]:
    """The header and cells of an export, floats rounded to 12 significant digits: two
    computations of one figure may differ in the last bit (a parallel sum's order)."""
    rows = [list(r) for r in csv.reader(io.StringIO(text))] if fmt == "csv" else []
    if fmt == "jsonl":
        docs = [json.loads(line) for line in text.splitlines()]
        rows = [list(docs[0])] + [
            [json.dumps(v) if isinstance(v, list | dict) else v for v in d.values()] for d in docs
        ]

    def cell(v: object) -> object:
        if isinstance(v, bool) or v is None:
            return v
        try:
            return float(f"{float(v):.12g}") if "." in str(v) or "e" in str(v) else v  # type: ignore[arg-type]
        except ValueError:
            return v

    return [[cell(v) for v in r] for r in rows]
