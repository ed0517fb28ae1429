"""The REST API over a real `yieldmeter serve` process on loopback: auth, problem details, ingest, privacy."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server_process import create_keys, example_workspace, serve

Keys = dict[str, str]


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Keys]]:
    """A server with one key per scope."""
    root = example_workspace(tmp_path_factory.mktemp("closed"))
    keys = create_keys(root)
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
REQUESTS = [
    # (family, method, path, json body, scope, key without the scope)
    ("ingest:records", "POST", "/api/v1/decisions", DECISION, "ingest", "read"),
    (
        "ingest:sdk",
        "POST",
        "/api/v1/signals",
        [{"work_unit_id": "fr-wu-3", "kind": "accepted", "ts": "2025-03-03T10:00:00Z"}],
        "ingest",
        "read",
    ),
    ("ingest:otlp", "POST", "/v1/traces", OTLP, "ingest", "read"),
    ("read:spend", "GET", "/api/v1/spend?by=team", None, "read", "ingest"),
    ("read:value", "GET", "/api/v1/value/funnel", None, "read", "ingest"),
    ("read:view", "GET", "/api/v1/views/overview", None, "read", "ingest"),
    ("read:report", "GET", "/api/v1/reports/board", None, "read", "ingest"),
    ("read:work_unit", "GET", "/api/v1/work_units/fr-wu-1", None, "read", "ingest"),
    ("read:export", "GET", "/api/v1/export/spend?format=csv", None, "read", "ingest"),
    ("read:dashboard", "GET", "/", None, "read", "ingest"),
    ("read:dashboard_unit", "GET", "/work-units/fr-wu-1", None, "read", "ingest"),
    ("people:benchmarks", "GET", "/api/v1/value/benchmarks?by=user", None, "people", "read"),
    ("people:view", "GET", "/api/v1/views/people", None, "people", "read"),
    ("people:dashboard", "GET", "/people", None, "people", "read"),
    ("people:spend", "GET", "/api/v1/spend?by=user_id", None, "people", "read"),
    ("admin:keys", "GET", "/api/v1/keys", None, "admin", "people"),
]


@pytest.mark.parametrize(
    ("family", "method", "path", "body", "scope", "lacking"), REQUESTS, ids=[r[0] for r in REQUESTS]
)
def test_auth_for_every_scope_and_family(
    closed: tuple[str, Keys], family: str, method: str, path: str, body: object, scope: str, lacking: str
) -> None:
    base, keys = closed
    url = base + path

    def call(headers: dict[str, str]) -> httpx.Response:
        return httpx.request(method, url, json=body, headers=headers, timeout=60)

    api = path.startswith("/api/")
    for headers in ({}, bearer("ym_00000000_not-a-key"), bearer(keys["revoked"]), bearer("garbage")):
        r = call(headers)
        assert r.status_code == 401, (family, headers, r.text)
        if api:
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["status"] == 401
    r = call(bearer(keys[lacking]))
    assert r.status_code == 403, (family, r.text)
    if api:
        assert scope in r.json()["detail"]
    for holder in (scope, "admin"):
        r = call(bearer(keys[holder]))
        assert r.status_code in (200, 201), (family, holder, r.text)
    # a browser sends the key as the password of HTTP Basic
    r = call(
        {"Authorization": "Basic " + __import__("base64").b64encode(f"me:{keys[scope]}".encode()).decode()}
    )
    assert r.status_code in (200, 201)


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
    cases = [
        ("GET", "/api/v1/spend?period=2025-13", None, 400),
        ("GET", "/api/v1/spend?by=colour", None, 400),
        ("GET", "/api/v1/value/nothing", None, 404),
        ("GET", "/api/v1/reports/intern", None, 404),
        ("GET", "/api/v1/reports/board?format=docx", None, 400),
        ("GET", "/api/v1/work_units/no-such-unit", None, 404),
        ("GET", "/api/v1/quarantine?limit=0", None, 400),
        ("GET", "/api/v1/no-such-endpoint", None, 404),
        ("DELETE", "/api/v1/spend", None, 405),
        ("GET", "/api/v1/value/value-per-token", None, 400),  # across workflows: refused, with the reason
        ("POST", "/api/v1/keys", {"name": "x", "scopes": ["root"]}, 400),
        ("DELETE", "/api/v1/keys/nope", None, 400),
    ]
    for method, path, body, status in cases:
        r = httpx.request(method, base + path, json=body, headers=h, timeout=60)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), path
        doc = r.json()
        assert doc["status"] == status and doc["title"] and doc["detail"], path
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
    assert again == {"landed": 0, "duplicates": 1, "rejected": []}
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
    lines = httpx.get(f"{base}/api/v1/export/spend?format=jsonl&period=2025-03", headers=h, timeout=60).text
    assert lines.count("\n") >= 5 and '"user_id"' not in lines  # per-person column only with people
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
