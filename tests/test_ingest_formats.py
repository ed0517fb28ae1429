"""File importers, each checked against fixtures written from its public documentation.

Every expected figure is worked out by hand in the comment beside it, from
the fixture rows, following the source's documented accounting (which is
where the traps are: cached tokens inside or outside input, cents or dollars).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from yieldmeter.app.workspace import Workspace
from yieldmeter.ingest.base import Batch, ReadOptions, open_binary
from yieldmeter.ingest.conform import stable_id
from yieldmeter.ingest.registry import detect_format, get_format

FIXTURES = Path(__file__).parent / "fixtures"
FORMATS = FIXTURES / "formats"
FOCUS = FIXTURES / "focus"


def read_all(fmt: str, path: Path, **kw: object) -> Batch:
    """Every batch of ``path`` read as ``fmt``, merged into one."""
    options = ReadOptions(source=path.name, **kw)  # type: ignore[arg-type]
    with open_binary(path) as fh:  # as an import opens it
        batches = list(get_format(fmt).read(fh, options))
    out = Batch()
    for b in batches:
        for name, t in b.tables.items():
            out.tables[name] = pa.concat_tables([out.tables[name], t]) if name in out.tables else t
        out.rejects = pa.concat_tables([out.rejects, b.rejects])
        out.ignored += b.ignored
        out.notes += b.notes
    return out


def by_id(table: pa.Table, key: str) -> dict[str, dict]:
    return {r[key]: r for r in table.to_pylist()}


# -- detection ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("formats/litellm_spend_logs.csv", "litellm"),
        ("formats/langfuse_observations.jsonl", "langfuse"),
        ("formats/langfuse_api_page.json", "langfuse"),
        ("formats/openai_usage_completions.json", "openai-usage"),
        ("formats/openai_costs.json", "openai-usage"),
        ("formats/anthropic_usage_report.json", "anthropic-usage"),
        ("formats/anthropic_cost_report.json", "anthropic-usage"),
        ("focus/focus-1.0-sample.csv", "focus"),
        ("focus/ai-cached-tokens-marketplace.csv", "focus"),
    ],
)
def test_formats_are_detected_by_content(name: str, fmt: str) -> None:
    assert detect_format(FIXTURES / name).name == fmt


@pytest.mark.parametrize(
    "name",
    [
        "formats/litellm_spend_logs.csv",
        "formats/langfuse_observations.jsonl",
        "formats/langfuse_api_page.json",
        "formats/openai_usage_completions.json",
        "formats/anthropic_cost_report.json",
        "focus/focus-1.0-sample.csv",
        "otlp",
    ],
)
def test_a_byte_order_mark_is_read_past(tmp_path: Path, name: str) -> None:
    """Windows tools and some editors start UTF-8 with a byte order mark, which no JSON parser
    takes: a JSON page was refused whole, the first JSON line quarantined, an OTLP file not
    recognised. Each file with a mark (plain, and gzipped) reads as it does without."""
    import gzip

    from tests.test_ingest_otlp import CHAT, request, span

    plain = FIXTURES / name
    if name == "otlp":  # Collector file exporter lines
        plain = tmp_path / "in" / "traces.jsonl"
        plain.parent.mkdir()
        plain.write_bytes(request(span(1, CHAT)) + b"\n" + request(span(2, CHAT)) + b"\n")
    fmt = detect_format(plain).name
    expected = read_all(fmt, plain)
    data = b"\xef\xbb\xbf" + plain.read_bytes()
    marked, packed = tmp_path / plain.name, tmp_path / (plain.name + ".gz")
    marked.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    # gzip is told by its first bytes too: a name without .gz, or in capitals
    unnamed, capitals = tmp_path / ("z-" + plain.name), tmp_path / (plain.name + ".GZ")
    unnamed.write_bytes(gzip.compress(data))
    capitals.write_bytes(gzip.compress(data))
    for path in (marked, packed, unnamed, capitals):
        assert detect_format(path).name == fmt, path.name
        got = read_all(fmt, path)
        assert got.rejects.num_rows == expected.rejects.num_rows, got.rejects.to_pylist()
        for table, rows in expected.tables.items():
            assert got.tables[table].num_rows == rows.num_rows, (path.name, table)


@pytest.mark.parametrize("named", [True, False])
def test_a_pipe_is_read_as_a_file_is(tmp_path: Path, named: bool) -> None:
    """`zstdcat traces.jsonl.zst | yieldmeter ingest /dev/stdin`, what the message about a zstd
    file suggests: the first bytes are peeked at, not sought back to (a pipe cannot seek, and
    every import from one failed). Without ``--format`` the bytes detection read are read again
    by the importer: the pipe was opened a second time, past them, and its first 64 KiB (here
    the whole file) were lost with exit 0."""
    import subprocess
    import sys

    data = b"\xef\xbb\xbf" + (FORMATS / "litellm_spend_logs.csv").read_bytes()
    cli = [sys.executable, "-m", "yieldmeter.cli.main", "ingest", "/dev/stdin", "--output", "json"]
    if named:
        cli += ["--format", "litellm"]
    done = subprocess.run([*cli, "-w", str(tmp_path / "ws")], input=data, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    [summary] = json.loads(done.stdout[done.stdout.index(b"[") :])
    assert (summary["landed"], summary["quarantined"]) == (3, 2)  # as the file itself reads


def test_a_small_gzip_cut_short_lands_what_precedes_the_cut(tmp_path: Path) -> None:
    """A .gz cut short within the first bytes detection reads: detection met the cut and the whole
    file was one quarantine row; the lines before the cut land, as with ``--format``, and the
    cut is the file's error."""
    from tests.test_ingest_otlp import CHAT, request, span

    lines = b"".join(request(span(i, CHAT)) + b"\n" for i in range(1, 41))
    cut = tmp_path / "traces.jsonl.gz"
    cut.write_bytes(gzip.compress(lines)[:-40])
    results = []
    for fmt in ("auto", "otlp-json"):
        with Workspace.init(tmp_path / f"ws-{fmt}") as ws:
            [f] = ws.ingest_paths([cut], fmt=fmt).files
            results.append((f.format, f.landed, ws.store.count("calls")))
            assert f.error is not None, f
    assert results[0] == results[1] and results[0][1] > 30, results


def test_a_cut_gzip_from_a_pipe_gives_what_a_file_gives() -> None:
    """Read from a pipe, the bytes detection read are given again, then the rest: the rest was
    read 64 KiB a call, and what the call that met the cut decoded was lost (885 rows of a file's
    981 in a reviewer's run). Both give every whole line before the cut."""
    from yieldmeter.ingest.base import _Gunzip, read_head

    class Pipe(io.BufferedReader):
        def seekable(self) -> bool:
            return False

    data = b"".join(b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * (i % 97)) for i in range(20_000))
    cut = gzip.compress(data)[:-300]

    def lines_before_the_cut(stream: io.BufferedIOBase) -> int:
        n = 0
        with pytest.raises(EOFError):
            for _ in stream:
                n += 1
        return n

    from_file = lines_before_the_cut(_Gunzip(io.BufferedReader(io.BytesIO(cut))))
    head, stream = read_head(_Gunzip(Pipe(io.BytesIO(cut))), 65_536)
    assert len(head) == 65_536 and from_file > 19_000
    assert lines_before_the_cut(stream) == from_file


def test_a_file_gone_before_it_is_read_is_that_files_error(tmp_path: Path) -> None:
    """The Collector deletes its oldest rotated file while a folder is imported: the stat of the
    vanished file aborted the whole import (exit 1, no summary, the files after it not read)."""
    folder = tmp_path / "exports"
    folder.mkdir()
    src = (FORMATS / "litellm_spend_logs.csv").read_bytes()
    for name in ("a.csv", "b.csv", "c.csv"):
        (folder / name).write_bytes(src.replace(b"chatcmpl-a1", f"chatcmpl-{name}".encode()))

    def rotate(path: Path, done: int, total: int) -> None:
        if path.name == "a.csv":
            (folder / "b.csv").unlink(missing_ok=True)

    with Workspace.init(tmp_path / "ws") as ws:
        files = ws.ingest_paths([folder], progress=rotate).files
    by_name = {Path(f.source).name: f for f in files}
    assert by_name["a.csv"].read == by_name["c.csv"].read == 5  # read whole, each
    assert by_name["a.csv"].error is None and by_name["c.csv"].error is None
    assert by_name["b.csv"].error is not None and "b.csv" in by_name["b.csv"].error


def test_a_file_compressed_another_way_is_named(tmp_path: Path) -> None:
    """The Collector's file exporter compresses with zstd: the file was read as a CSV that is not
    text; it is named as compressed, with what to do."""
    path = tmp_path / "traces.jsonl.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(40)))
    with Workspace.init(tmp_path / "ws") as ws:
        [f] = ws.ingest_paths([path]).files
    assert (
        f.error == "cannot read: zstd-compressed: decompress it first (yieldmeter reads plain files and gzip)"
    )


@pytest.mark.parametrize(
    ("doc", "fmt"),
    [
        # pages of a day without usage, as the APIs answer them: buckets with empty results
        (
            {"object": "page", "has_more": False, "next_page": None,
             "data": [{"object": "bucket", "start_time": 1740787200, "end_time": 1740873600, "results": []}]},
            "openai-usage",
        ),
        (
            {"has_more": False, "next_page": None,
             "data": [{"starting_at": "2025-03-01T00:00:00Z", "ending_at": "2025-03-02T00:00:00Z",
                       "results": []}]},
            "anthropic-usage",
        ),
        ({"data": [], "meta": {"page": 1, "limit": 50, "totalItems": 0, "totalPages": 0}}, "langfuse"),
        # LiteLLM's /spend/logs/v2 page, as clients of the proxy fetch it
        ({"data": [], "total": 0, "page": 1, "page_size": 50, "total_pages": 0}, "litellm"),
    ],
)  # fmt: skip
def test_a_page_without_usage_is_still_its_format(tmp_path: Path, doc: dict, fmt: str) -> None:
    path = tmp_path / "page.json"
    path.write_text(json.dumps(doc))
    assert detect_format(path).name == fmt
    batch = read_all(fmt, path)
    assert (batch.tables, batch.rejects.num_rows, batch.ignored) == ({}, 0, 0)  # nothing to land or refuse


def test_a_langfuse_page_whose_first_observation_is_long_is_langfuse(tmp_path: Path) -> None:
    """A RAG trace's first observation carries a long input before any usage field (the API's key
    order): the page read as a canonical table, and the import failed naming the wrong option."""
    span = {"id": "o1", "traceId": "t1", "type": "SPAN", "startTime": "2025-03-01T10:00:00Z",
            "input": "retrieved passage " * 5000}  # fmt: skip
    generation = {"id": "o2", "traceId": "t1", "type": "GENERATION", "startTime": "2025-03-01T10:00:01Z",
                  "model": "gpt-4o", "usageDetails": {"input": 100, "output": 10}}  # fmt: skip
    path = tmp_path / "page.json"
    path.write_text(json.dumps({"data": [span, generation], "meta": {"page": 1}}))
    assert path.stat().st_size > 65_536  # beyond the head detection reads
    assert detect_format(path).name == "langfuse"
    b = read_all("langfuse", path)
    assert (b.tables["calls"].num_rows, b.ignored) == (1, 1)


def test_otlp_lines_whose_first_line_is_broken_are_still_otlp(tmp_path: Path) -> None:
    """A Collector file whose first line was cut short (or is a stray log line): the next lines
    say what it is, and the reader quarantines the first line with its number."""
    from tests.test_ingest_otlp import CHAT, request, span

    line = request(span(1, CHAT))
    path = tmp_path / "traces.jsonl"
    path.write_bytes(line[: len(line) // 2] + b"\n" + line + b"\n")
    assert detect_format(path).name == "otlp-json"
    with Workspace.init(tmp_path / "ws") as ws:
        [f] = ws.ingest_paths([path]).files
        assert (f.format, f.landed, f.quarantined) == ("otlp-json", 1, 1)
        assert ws.quarantine().column("position").to_pylist() == [1]


def test_the_collectors_proto_file_format_is_read(tmp_path: Path) -> None:
    """The file exporter's ``format: proto`` (each message a 4-byte big-endian length, then the
    export in protobuf) was taken for a table ("a NUL byte"), or with ``--format otlp-json`` split
    on newline bytes into hundreds of bad rows. It is read: the same calls as the same spans in
    JSON lines; a message that is no trace export, and the last one cut short by a Collector
    stopped mid-write, are quarantined with their message numbers; a second import adds nothing."""
    from tests.test_ingest_otlp import CHAT, protobuf, request, span

    def framed(body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + body

    messages = [protobuf(span(1, CHAT), span(2, CHAT)), protobuf(span(3, CHAT))]
    data = framed(messages[0]) + framed(b"\xff\xff not protobuf") + framed(messages[1])
    data += framed(protobuf(span(4, CHAT)))[:-5]  # cut inside the last message
    path = tmp_path / "traces.proto"
    path.write_bytes(data)
    lines = tmp_path / "traces.jsonl"
    lines.write_bytes(request(span(1, CHAT), span(2, CHAT)) + b"\n" + request(span(3, CHAT)) + b"\n")
    assert detect_format(path).name == "otlp-proto"
    with Workspace.init(tmp_path / "ws") as ws:
        [f] = ws.ingest_paths([path]).files
        assert (f.format, f.read, f.landed, f.quarantined) == ("otlp-proto", 5, 3, 2)
        rejects = ws.quarantine().to_pylist()
        assert sorted(r["position"] for r in rejects) == [2, 4]
        assert any("message 4: cut short" in r["reason"] for r in rejects)
        calls = ws.store.query_arrow("SELECT * EXCLUDE (source) FROM calls ORDER BY call_id")
        [again] = ws.ingest_paths([path]).files
        assert (again.landed, again.duplicates) == (0, 3)
    with Workspace.init(tmp_path / "ws-json") as ws:
        ws.ingest_paths([lines])
        assert ws.store.query_arrow("SELECT * EXCLUDE (source) FROM calls ORDER BY call_id").equals(calls)


def test_proto_files_of_other_kinds_are_named(tmp_path: Path) -> None:
    """The file exporter's other outputs in its proto layout: a metrics export parses as a trace
    export (the messages share their outer fields) and was counted as ignored spans, exit 0; its
    messages are quarantined as no trace export. With compression: zstd each message is a zstd
    frame after its length (zstdcat cannot read that): named, not 'the first line is not a CSV
    header'. A first message of 16 MiB or more is still the proto format."""
    from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, MetricsData, ResourceMetrics, ScopeMetrics

    from yieldmeter.ingest.otlp_protobuf import detect

    metrics = MetricsData(
        resource_metrics=[
            ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=[Metric(name="gen_ai.client.token.usage")])])
        ]
    ).SerializeToString()
    path = tmp_path / "metrics.proto"
    path.write_bytes(len(metrics).to_bytes(4, "big") + metrics)
    with Workspace.init(tmp_path / "ws") as ws:
        [f] = ws.ingest_paths([path]).files
        assert (f.format, f.landed, f.ignored, f.quarantined) == ("otlp-proto", 0, 0, 1)
        [reason] = ws.quarantine().column("reason").to_pylist()
        assert reason.startswith("message 1: not a trace export")
        zstd = tmp_path / "traces.zst.proto"
        zstd.write_bytes((40).to_bytes(4, "big") + b"\x28\xb5\x2f\xfd" + bytes(36))
        [f] = ws.ingest_paths([zstd]).files
        assert f.error is not None and "compression: zstd" in f.error, f.error
    big = (17 << 20).to_bytes(4, "big") + b"\x0a\x8a\x80\x80\x08" + bytes(100)
    assert detect(big, "traces.proto")


def test_an_otlp_logs_or_metrics_export_is_named(tmp_path: Path) -> None:
    """A file of resourceLogs (or resourceMetrics) lines was refused as a table ("cannot tell
    which table... pass --table"), pointing at the wrong fix; it is named for what it is. In a
    file the traces pipeline shares with a logs pipeline, the trace lines land and each log line
    is quarantined as a logs export."""
    from tests.test_ingest_otlp import CHAT, request, span

    log_line = json.dumps({"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": [{}]}]}]})
    metric_line = json.dumps({"resourceMetrics": [{"resource": {}, "scopeMetrics": []}]})
    with Workspace.init(tmp_path / "ws") as ws:
        for name, line, kind in (("logs.json", log_line, "logs"), ("metrics.json", metric_line, "metrics")):
            (tmp_path / name).write_text(line + "\n" + line + "\n")
            [f] = ws.ingest_paths([tmp_path / name]).files
            assert f.error is not None and f.error.startswith(f"an OpenTelemetry {kind} export"), f.error
        mixed = tmp_path / "shared.json"
        mixed.write_bytes(log_line.encode() + b"\n" + request(span(1, CHAT)) + b"\n")
        [f] = ws.ingest_paths([mixed]).files
        assert (f.format, f.landed, f.quarantined) == ("otlp-json", 1, 1)
        reasons = ws.quarantine().column("reason").to_pylist()
        assert any("an OTLP logs export (resourceLogs), not traces" in r for r in reasons), reasons


# -- LiteLLM --------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["csv", "json", "page"])
def test_litellm_spend_logs(tmp_path: Path, shape: str) -> None:
    path = FORMATS / "litellm_spend_logs.csv"
    if shape != "csv":  # the same rows as the JSON export of the table, or as the proxy pages them
        rows = list(csv.DictReader(path.open()))
        path = tmp_path / "spend.json"
        doc = (
            rows
            if shape == "json"
            else {"data": rows, "total": 3, "page": 1, "page_size": 50, "total_pages": 1}
        )
        path.write_text(json.dumps(doc))
        assert detect_format(path).name == "litellm"
    b = read_all("litellm", path)  # a page was one row, quarantined as "request_id: missing"
    assert b.rejects.column("position").to_pylist() == [4, 5]  # the file's two bad rows, each shape
    if shape == "page":  # JSON lines of two pages: rows numbered through the file, not by line
        lines = tmp_path / "spend.jsonl"
        lines.write_text(path.read_text() + "\n" + path.read_text() + "\n")
        assert read_all("litellm", lines).rejects.column("position").to_pylist() == [4, 5, 9, 10]
    calls = by_id(b.tables["calls"], "call_id")
    assert set(calls) == {"litellm-chatcmpl-a1", "litellm-msg_b2", "litellm-emb-c3"}

    a1 = calls["litellm-chatcmpl-a1"]
    # Trap: LiteLLM's prompt_tokens already include the 400 cached tokens -> input stays 1000, not 1400.
    assert (a1["input_tokens"], a1["cached_input_tokens"], a1["output_tokens"]) == (1000, 400, 125)
    assert a1["reported_cost"] == pytest.approx(0.00375)  # spend, kept beside yieldmeter's price
    assert a1["duration_ms"] == pytest.approx(2500)  # 10:00:02.500 - 10:00:00
    assert (a1["provider"], a1["model"], a1["operation"]) == ("openai", "gpt-4o-2024-08-06", "chat")
    assert a1["team"] == "claims-ops"  # the team alias beats the opaque team_id
    assert a1["workflow"] == "claims-triage"  # from requester metadata
    assert a1["work_unit_id"] == "sess-1"  # a session is the work unit when no explicit one
    assert json.loads(a1["attributes"])["model_group"] == "gpt-4o"

    b2 = calls["litellm-msg_b2"]
    # prompt_tokens 3000 already hold cache read 2000 + cache write 500 (LiteLLM normalises Anthropic).
    assert (b2["input_tokens"], b2["cached_input_tokens"], b2["cache_write_tokens"]) == (3000, 2000, 500)
    assert b2["status"] == "error"  # status "failure"
    assert b2["user_id"] == "customer-9"  # end_user wins over the key's user

    c3 = calls["litellm-emb-c3"]
    assert (c3["operation"], c3["input_tokens"], c3["output_tokens"]) == ("embeddings", 50, 0)

    reasons = sorted(b.rejects.column("reason").to_pylist())
    assert len(reasons) == 2
    assert "prompt_tokens: negative" in reasons[0] and reasons[0].startswith("row 4")
    assert "metadata: not valid JSON" in reasons[1] and reasons[1].startswith("row 5")


# -- Langfuse -------------------------------------------------------------------------------------
def test_langfuse_observation_export() -> None:
    b = read_all("langfuse", FORMATS / "langfuse_observations.jsonl")
    calls = by_id(b.tables["calls"], "span_id")
    assert set(calls) == {"0a1b2c3d4e5f6071", "1a1b2c3d4e5f6071", "2a1b2c3d4e5f6071"}
    assert b.ignored == 2  # one SPAN, one EVENT: not model calls

    g1 = calls["0a1b2c3d4e5f6071"]
    # Langfuse buckets are exclusive: total 1200 = 600 + 400 + 150 + 50, so
    # input = 600 + 400 cached = 1000; output = 150 + 50 reasoning = 200.
    assert (g1["input_tokens"], g1["cached_input_tokens"]) == (1000, 400)
    assert (g1["output_tokens"], g1["reasoning_tokens"]) == (200, 50)
    assert g1["reported_cost"] == pytest.approx(0.004)  # cost_details.total
    assert g1["call_id"] == "4bf92f3577b34da6a3ce929d0e0e4736-0a1b2c3d4e5f6071"  # same id as via OTLP
    assert (g1["user_id"], g1["session_id"], g1["workflow"]) == ("u-1", "chat-17", "support-answers")
    assert g1["duration_ms"] == pytest.approx(1250)
    assert "secret prompt" not in (g1["attributes"] or "")  # content off by default

    g2 = calls["1a1b2c3d4e5f6071"]
    # Anthropic-style buckets: 100 uncached + 2000 cache read + 500 cache write = 2600 input.
    assert (g2["input_tokens"], g2["cached_input_tokens"], g2["cache_write_tokens"]) == (2600, 2000, 500)
    assert g2["status"] == "error"  # level ERROR
    assert g2["work_unit_id"] == "5bf92f3577b34da6a3ce929d0e0e4736"  # per trace without other linkage

    g3 = calls["2a1b2c3d4e5f6071"]
    # Trap the other way: total 1200 = input 1000 + output 200, so input already held its 400 cached.
    assert (g3["input_tokens"], g3["cached_input_tokens"], g3["output_tokens"]) == (1000, 400, 200)

    [reason] = b.rejects.column("reason").to_pylist()
    assert reason.startswith("observation 6") and "input" in reason and "'many'" in reason


def test_langfuse_api_page_camel_case() -> None:
    b = read_all("langfuse", FORMATS / "langfuse_api_page.json")
    [row] = b.tables["calls"].to_pylist()
    assert (row["input_tokens"], row["output_tokens"], row["model"]) == (800, 200, "gpt-4o-mini")
    assert (row["user_id"], row["session_id"], row["reported_cost"]) == ("u-5", "chat-20", 0.00024)


def test_langfuse_content_kept_only_with_capture() -> None:
    b = read_all("langfuse", FORMATS / "langfuse_observations.jsonl", capture_content=True)
    attrs = by_id(b.tables["calls"], "span_id")["0a1b2c3d4e5f6071"]["attributes"]
    assert json.loads(attrs)["input"] == "the secret prompt"


def test_a_refused_record_keeps_no_prompt_or_completion_text(tmp_path: Path) -> None:
    """capture_content off: a LiteLLM row or Langfuse observation refused for another field
    (a spend of 'n/a', usage of 'lots') is quarantined without its messages, response, input or
    output, and a CSV row of the wrong width in a file with a messages column (any of its values
    may be shifted text) is not kept at all; with capture on, the quarantine keeps what came."""
    secret = "SECRET patient John Doe"
    litellm = {
        "request_id": "r-bad", "call_type": "acompletion", "spend": "n/a", "prompt_tokens": 100,
        "completion_tokens": 10, "startTime": "2025-03-01T10:00:00Z", "model": "gpt-4o",
        "messages": [{"role": "user", "content": secret}], "response": {"text": secret},
        "proxy_server_request": {"messages": [secret]},
        # the proxy logs the request body, tool calls and vector store queries in metadata too
        "metadata": {"user_api_key_alias": "claims-bot", "proxy_server_request": {"messages": [secret]},
                     "mcp_tool_call_metadata": {"arguments": {"q": secret}},
                     "vector_store_request_metadata": [{"query": secret}]},
    }  # fmt: skip
    observation = {
        "id": "o1", "traceId": "t1", "type": "GENERATION", "startTime": "2025-03-01T10:00:00Z",
        "model": "gpt-4o", "usageDetails": {"input": "lots"}, "input": secret, "output": secret,
    }  # fmt: skip
    (tmp_path / "logs.json").write_text(json.dumps([litellm]))
    (tmp_path / "obs.json").write_text(json.dumps({"data": [observation], "meta": {"page": 1}}))
    (tmp_path / "logs.csv").write_text(
        "request_id,spend,model,messages,startTime\n"
        f"r-2,0.1,gpt-4o,{secret}, with a comma,2025-03-01T10:00:00Z\n"  # a comma left unquoted
    )
    for fmt, name, content in (
        ("litellm", "logs.json", ("messages", "response", "proxy_server_request")),
        ("langfuse", "obs.json", ("input", "output")),
    ):
        [raw] = read_all(fmt, tmp_path / name).rejects.column("raw").to_pylist()
        assert secret not in raw, (fmt, raw)
        kept = json.loads(raw)
        assert all(kept[k] == "(content not kept: capture_content is off)" for k in content), kept
        assert kept["startTime"] == "2025-03-01T10:00:00Z"  # the rest, to find and mend the row
        if fmt == "litellm":
            assert kept["metadata"]["user_api_key_alias"] == "claims-bot"
            assert kept["metadata"]["proxy_server_request"] == "(content not kept: capture_content is off)"
        [raw] = read_all(fmt, tmp_path / name, capture_content=True).rejects.column("raw").to_pylist()
        assert secret in raw
    # a line that is a list of observations, not one: not kept either (its items hold the text)
    (tmp_path / "obs.jsonl").write_text(json.dumps(observation) + "\n" + json.dumps([observation]) + "\n")
    raws = read_all("langfuse", tmp_path / "obs.jsonl").rejects.column("raw").to_pylist()
    assert len(raws) == 2 and not any(secret in r for r in raws), raws
    # metadata as a CSV export holds it: JSON text in a cell, kept as text without the request
    with (tmp_path / "meta.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(
            [["request_id", "spend", "metadata"], ["r-3", "n/a", json.dumps(litellm["metadata"])]]
        )
    [raw] = read_all("litellm", tmp_path / "meta.csv").rejects.column("raw").to_pylist()
    assert secret not in raw and json.loads(json.loads(raw)["metadata"])["user_api_key_alias"] == "claims-bot"
    [reject] = read_all("litellm", tmp_path / "logs.csv").rejects.to_pylist()
    assert reject["reason"] == "row 1: expected 5 fields, found 6"
    assert (
        reject["raw"]
        == "(row not kept: its fields may be shifted, and the file has content columns: messages)"
    )


# -- OpenAI ---------------------------------------------------------------------------------------
def test_openai_usage_buckets() -> None:
    b = read_all("openai-usage", FORMATS / "openai_usage_completions.json")
    rows = sorted(b.tables["calls"].to_pylist(), key=lambda r: r["model"])
    assert len(rows) == 2
    big, mini = rows
    # Trap: OpenAI's input_tokens already include input_cached_tokens -> 10000, not 14000.
    assert (big["input_tokens"], big["cached_input_tokens"], big["output_tokens"]) == (10000, 4000, 2000)
    assert big["request_count"] == 25  # an aggregated bucket, not one call
    assert big["ts"].isoformat() == "2025-01-01T00:00:00+00:00"  # start_time 1735689600
    assert (big["provider"], big["app"]) == ("openai", "proj_claims")
    assert json.loads(mini["attributes"])["batch"] is True
    # a batch bucket is billed at the batch rate; "default" is the standard rate, stored as none
    assert (mini["service_tier"], big["service_tier"]) == ("batch", None)
    assert mini["user_id"] == "user-abc"
    [reason] = b.rejects.column("reason").to_pylist()
    assert "input_cached_tokens (1500) exceeds input_tokens (1000)" in reason


def test_openai_usage_not_counted_in_tokens_is_ignored_and_noted(tmp_path: Path) -> None:
    """The images and audio speech pages count images and characters, not tokens: they landed
    as chat calls of 0 tokens, and gpt-image-1 read as $0 in the spend report. They are ignored,
    counted, and a note says why; a moderations page is token usage and lands."""

    def page(kind: str, **fields: object) -> dict:
        result = {"object": f"organization.usage.{kind}.result", "num_model_requests": 20, **fields}
        bucket = {"object": "bucket", "start_time": 1740787200, "end_time": 1740873600, "results": [result]}
        return {"object": "page", "data": [bucket], "has_more": False}

    path = tmp_path / "usage.jsonl"
    pages = [
        page("images", images=20, model="gpt-image-1", size="1024x1024"),
        page("audio_speeches", characters=450_000, model="tts-1"),
        page("moderations", input_tokens=5000, model="omni-moderation-latest"),
    ]
    path.write_text("\n".join(json.dumps(p) for p in pages) + "\n")
    b = read_all("openai-usage", path)
    [call] = b.tables["calls"].to_pylist()
    assert (call["model"], call["operation"], call["input_tokens"]) == (
        "omni-moderation-latest",
        "moderations",
        5000,
    )
    assert b.ignored == 2 and b.rejects.num_rows == 0
    with Workspace.init(tmp_path / "ws") as ws:
        s = ws.ingest_paths([path])
    assert s.files[0].notes == [
        "usage not counted in tokens ignored (1 organization.usage.audio_speeches.result, "
        "1 organization.usage.images.result): no token price applies; import the costs page for what it cost"
    ]


def _tiers_and_costs(tmp_path: Path, page: dict) -> dict[str, tuple[str | None, float]]:
    """A usage page imported into a new workspace: each call's app -> (service tier, cost)."""
    (tmp_path / "usage.json").write_text(json.dumps(page))
    with Workspace.init(tmp_path / "ws") as ws:
        ws.ingest_paths([tmp_path / "usage.json"])
        calls = ws.priced_calls().to_pyarrow().to_pylist()
    return {r["app"]: (r["service_tier"], r["model_cost"]) for r in calls}


def test_openai_usage_is_priced_at_its_service_tier(tmp_path: Path) -> None:
    """Four gpt-5 buckets of 2026-11-02, each 1,000,000 input and 1,000,000 output tokens, priced
    by hand from genai-prices 0.2.3 (batch from 2026-10-14, flex and priority from 2026-10-12):
    default $1.25 + $10 = $11.25; batch (whatever its service_tier says) and flex $0.625 + $5 =
    $5.625; priority $2.50 + $20 = $22.50. They were all priced at $11.25."""
    tiers = [(False, "default"), (True, "default"), (False, "flex"), (False, "priority")]
    results = [
        {
            "object": "organization.usage.completions.result",
            "input_tokens": 1_000_000,
            "output_tokens": 1_000_000,
            "num_model_requests": 4,
            "project_id": f"proj_{tier}_{batch}",
            "model": "gpt-5-2025-08-07",
            "batch": batch,
            "service_tier": tier,
        }
        for batch, tier in tiers
    ]
    bucket = {"object": "bucket", "start_time": 1793577600, "end_time": 1793664000, "results": results}
    got = _tiers_and_costs(tmp_path, {"object": "page", "data": [bucket], "has_more": False})
    assert got == {
        "proj_default_False": (None, pytest.approx(11.25)),
        "proj_default_True": ("batch", pytest.approx(5.625)),
        "proj_flex_False": ("flex", pytest.approx(5.625)),
        "proj_priority_False": ("priority", pytest.approx(22.5)),
    }


def test_openai_costs_are_dollars() -> None:
    b = read_all("openai-usage", FORMATS / "openai_costs.json")
    items = b.tables["cost_items"]
    # amount.value is in dollars: 0.06 + 0.04 = 0.10 USD (not 0.001 as if cents).
    assert pc.sum(items.column("amount")).as_py() == pytest.approx(0.10)
    assert set(items.column("category").to_pylist()) == {"ai_tokens"}
    assert sorted(items.column("unit").to_pylist()) == ["input", "output"]
    assert set(items.column("model").to_pylist()) == {"gpt-4o-2024-08-06"}


# -- Anthropic ------------------------------------------------------------------------------------
def test_anthropic_usage_report_sums_input_parts() -> None:
    b = read_all("anthropic-usage", FORMATS / "anthropic_usage_report.json")
    [row] = b.tables["calls"].to_pylist()
    # Anthropic counts input apart from the cache: 1500 uncached + 200 read + 500 (5m) + 1000 (1h) = 3200.
    assert row["input_tokens"] == 3200
    assert (row["cached_input_tokens"], row["cache_write_tokens"], row["output_tokens"]) == (200, 1500, 500)
    assert (row["provider"], row["model"]) == ("anthropic", "claude-sonnet-4-20250514")
    assert json.loads(row["attributes"])["web_search_requests"] == 10
    # the hour's writes are a part of the writes, priced at their own rate (no note of understating)
    assert row["cache_write_1h_tokens"] == 1000 and b.notes == []


def test_anthropic_one_hour_cache_writes_are_priced_at_their_rate(tmp_path: Path) -> None:
    """claude-sonnet-4-20250514 on 2025-08-01, by hand from genai-prices 0.2.3: 1,500 uncached
    input x $3/M = $0.0045; 200 cache reads x $0.30/M = $0.00006; 500 five-minute writes x
    $3.75/M = $0.001875; 1,000 one-hour writes x $6/M = $0.006; 500 output x $15/M = $0.0075;
    total $0.019935. At the five-minute rate the hour's writes made $0.016185."""
    with Workspace.init(tmp_path / "ws") as ws:
        ws.ingest_paths([FORMATS / "anthropic_usage_report.json"])
        [cost] = ws.priced_calls().to_pyarrow().column("model_cost").to_pylist()
    assert cost == pytest.approx(0.019935, abs=1e-12)


def test_anthropic_usage_is_priced_at_its_tier_or_speed(tmp_path: Path) -> None:
    """claude-opus-4-8 on 2026-11-02, 1,000,000 uncached input and 1,000,000 output tokens per
    result, priced by hand from genai-prices 0.2.3: standard $5 + $25 = $30; batch (from
    2026-10-14) $2.50 + $12.50 = $15; fast mode (``speed: fast``) $10 + $50 = $60; the
    priority tier is not priced apart: $30."""
    combos = [("standard", None), ("batch", None), ("standard", "fast"), ("priority", None)]
    results = [
        {
            "model": "claude-opus-4-8",
            "service_tier": tier,
            "workspace_id": f"wrk_{tier}_{speed}",
            "uncached_input_tokens": 1_000_000,
            "output_tokens": 1_000_000,
            **({"speed": speed} if speed else {}),
        }
        for tier, speed in combos
    ]
    page = {
        "data": [
            {"starting_at": "2026-11-02T00:00:00Z", "ending_at": "2026-11-03T00:00:00Z", "results": results}
        ],
        "has_more": False,
    }
    got = _tiers_and_costs(tmp_path, page)
    assert got == {
        "wrk_standard_None": (None, pytest.approx(30.0)),
        "wrk_batch_None": ("batch", pytest.approx(15.0)),
        "wrk_standard_fast": ("fast", pytest.approx(60.0)),
        "wrk_priority_None": ("priority", pytest.approx(30.0)),
    }


def test_anthropic_results_grouped_by_account_geo_or_speed_stay_apart(tmp_path: Path) -> None:
    """A report grouped by account_id and inference_geo: four results of one bucket and model,
    1,000 + 5,000 + 7,000 + 9,000 = 22,000 input tokens. Their ids took only the older
    dimensions, so three were stored over (one call of 9,000 tokens was left); each is now a
    call, the account its user. A result without the later dimensions keeps the id it had."""
    from yieldmeter.ingest.anthropic_usage import map_usage

    def result(account: str, geo: str | None, uncached: int) -> dict:
        r = {"account_id": account, "uncached_input_tokens": uncached, "output_tokens": 100}
        return {**r, "inference_geo": geo} if geo else r

    page = {
        "data": [
            {
                "starting_at": "2025-08-01T00:00:00Z",
                "ending_at": "2025-08-02T00:00:00Z",
                "results": [
                    {**r, "model": "claude-sonnet-4-20250514", "service_tier": "standard"}
                    for r in (
                        result("user_alice", None, 1000),
                        result("user_bob", None, 5000),
                        result("user_carol", "us", 7000),
                        result("user_carol", "global", 9000),
                    )
                ],
            }
        ],
        "has_more": False,
    }
    (tmp_path / "usage.json").write_text(json.dumps(page))
    with Workspace.init(tmp_path / "ws") as ws:
        s = ws.ingest_paths([tmp_path / "usage.json"])
        assert (s.total("landed"), s.total("updated")) == (4, 0)
        got = ws.store.query_arrow(
            "SELECT user_id, input_tokens FROM calls ORDER BY input_tokens"
        ).to_pylist()
    assert [(r["user_id"], r["input_tokens"]) for r in got] == [
        ("user_alice", 1000),
        ("user_bob", 5000),
        ("user_carol", 7000),
        ("user_carol", 9000),
    ]
    older = {"_start": "2025-08-01T00:00:00Z", "model": "m", "uncached_input_tokens": 1}
    assert map_usage(older)["call_id"] == stable_id("anthropic-usage", *(older.get(d) for d in _OLDER_ID))


_OLDER_ID = ("_start", "_end", "workspace_id", "api_key_id", "model", "service_tier", "context_window")


def test_an_anthropic_count_written_as_text_is_read(tmp_path: Path) -> None:
    """A count as text ("1000") is a whole number to the mapping (a one-hour note once added up
    the raw value, and one such result lost the whole file to a TypeError)."""
    result = {"model": "claude-sonnet-4-20250514", "uncached_input_tokens": 10, "output_tokens": 5,
              "cache_creation": {"ephemeral_1h_input_tokens": "1000"}}  # fmt: skip
    bucket = {"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z", "results": [result]}
    path = tmp_path / "usage.json"
    path.write_text(json.dumps({"data": [bucket], "has_more": False}))
    b = read_all("anthropic-usage", path)
    [row] = b.tables["calls"].to_pylist()
    assert (row["input_tokens"], row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (
        1010,
        1000,
        1000,
    )
    assert b.rejects.num_rows == 0


def test_anthropic_cost_report_is_cents() -> None:
    b = read_all("anthropic-usage", FORMATS / "anthropic_cost_report.json")
    items = by_id(b.tables["cost_items"], "unit")
    # Trap: amounts are cents as decimal strings: "123.78912" -> $1.2378912, "250" -> $2.50.
    assert items["uncached_input_tokens"]["amount"] == pytest.approx(1.2378912)
    assert items["uncached_input_tokens"]["category"] == "ai_tokens"
    assert items["web_search"]["amount"] == pytest.approx(2.50)
    assert items["web_search"]["category"] == "ai_services"  # not priced by calls: counts in full cost


# -- FOCUS ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "total", "rows"),
    [
        # Totals as stated in the samples' README (BilledCost = EffectiveCost in these drafts).
        ("ai-per-token-api.csv", 94.50, 2),  # 42.00 + 52.50
        ("ai-multi-model-usage.csv", 104.50, 4),  # 50 + 50 + 2.25 + 2.25
        ("ai-cached-tokens-marketplace.csv", 47.50, 2),  # 10.00 + 37.50
    ],
)
def test_focus_ai_token_skus(name: str, total: float, rows: int) -> None:
    b = read_all("focus", FOCUS / name)
    items = b.tables["cost_items"]
    assert items.num_rows == rows and b.rejects.num_rows == 0
    assert pc.sum(items.column("amount")).as_py() == pytest.approx(total)
    assert set(items.column("category").to_pylist()) == {"ai_tokens"}


def test_focus_token_kinds_in_both_spellings() -> None:
    per_token = by_id(read_all("focus", FOCUS / "ai-per-token-api.csv").tables["cost_items"], "unit")
    # TokenType "Input"/"Output" (ServiceProviderName, FOCUS 1.3 spelling)
    assert per_token["input_tokens"]["quantity"] == 8_400_000
    assert per_token["input_tokens"]["model"] == "solora-saturn-4.8"
    assert per_token["output_tokens"]["amount"] == pytest.approx(52.50)
    assert per_token["input_tokens"]["provider"] == "Solora AI"
    cached = by_id(read_all("focus", FOCUS / "ai-cached-tokens-marketplace.csv").tables["cost_items"], "unit")
    # TokenDirection Input + TokenCacheAction Read/Write
    assert cached["cache_read_tokens"]["quantity"] == 50_000_000
    assert cached["cache_write_tokens"]["amount"] == pytest.approx(37.50)
    assert json.loads(cached["cache_read_tokens"]["attributes"])["HostProviderName"] == "Aura Web"


def test_focus_1_0_cloud_rows() -> None:
    import csv

    b = read_all("focus", FOCUS / "focus-1.0-sample.csv")
    items = b.tables["cost_items"]
    assert items.num_rows == 200 and b.rejects.num_rows == 0
    # EffectiveCost (amortised) is the amount; summed straight from the CSV for comparison.
    rows = list(csv.DictReader((FOCUS / "focus-1.0-sample.csv").open()))
    assert pc.sum(items.column("amount")).as_py() == pytest.approx(
        sum(float(r["EffectiveCost"]) for r in rows)
    )
    assert "ai_tokens" not in set(items.column("category").to_pylist())
    assert {"network", "compute", "storage"} <= set(items.column("category").to_pylist())
    assert set(items.column("provider").to_pylist()) == {"AWS"}  # ProviderName (FOCUS 1.0)
    # Row 2 by hand: Id 19384, Networking, charge period 2024-09-30 22:00, BilledCost 0.0000160599
    row = next(r for r in items.to_pylist() if json.loads(r["attributes"])["BilledCost"] == "0.00001605990")
    assert row["category"] == "network" and row["amount"] == 0.0
    assert row["period_start"].isoformat() == "2024-09-30T22:00:00+00:00"


def test_focus_rejects_non_usd_and_keeps_identical_rows_apart() -> None:
    head = (FOCUS / "ai-per-token-api.csv").read_text().splitlines()
    eur = head[1].replace(",USD,", ",EUR,")
    blank = head[1].replace(",USD,", ",,")  # read as dollars before, silently
    data = "\n".join([head[0], head[1], head[1], eur, blank]) + "\n"
    batches = list(get_format("focus").read(io.BytesIO(data.encode()), ReadOptions(source="x.csv")))
    items = batches[0].tables["cost_items"]
    assert items.num_rows == 2 and len(set(items.column("item_id").to_pylist())) == 2
    eur_reason, blank_reason = batches[0].rejects.column("reason").to_pylist()
    assert eur_reason.startswith("row 3") and "BillingCurrency 'EUR'" in eur_reason
    assert blank_reason == "row 4: BillingCurrency: missing (FOCUS requires it; amounts must be USD)"


def test_focus_rows_out_of_time_are_refused_naming_the_files_own_columns() -> None:
    """A charge period that cannot be read, is missing or ends before it starts is refused with
    the row and the FOCUS column it came from (it used to say the canonical `period_start`)."""
    head = (FOCUS / "ai-per-token-api.csv").read_text().splitlines()
    columns = head[0].split(",")
    start_at, end_at = columns.index("ChargePeriodStart"), columns.index("ChargePeriodEnd")
    billing_start_at = columns.index("BillingPeriodStart")  # read where the charge period is blank

    def with_period(start: str, end: str) -> str:
        cells = head[1].split(",")
        cells[start_at], cells[end_at] = start, end
        if not start:
            cells[billing_start_at] = ""
        return ",".join(cells)

    good = head[1].split(",")
    start, end = good[start_at], good[end_at]
    data = "\n".join(
        [head[0], head[1], with_period("soon", end), with_period(end, start), with_period("", end)]
    )
    batches = list(get_format("focus").read(io.BytesIO(data.encode() + b"\n"), ReadOptions(source="x.csv")))
    assert batches[0].tables["cost_items"].num_rows == 1
    assert batches[0].rejects.column("reason").to_pylist() == [
        "row 2: ChargePeriodStart 'soon': not a time (ISO 8601, e.g. 2026-11-01T00:00:00Z)",
        f"row 3: ChargePeriodEnd {start!r}: before ChargePeriodStart {end!r}",
        "row 4: ChargePeriodStart and BillingPeriodStart: both missing",
    ]


def test_a_restated_billing_period_replaces_its_rows(tmp_path: Path) -> None:
    """A billing period delivered again (a month-to-date export, each day with the amounts so far)
    replaces the rows stored before: the charge names a row, not its amounts. The restatement
    comes as JSON, with FOCUS 1.0's ProviderName for 1.3's ServiceProviderName and a column
    yieldmeter does not read, each of which used to make a new row."""
    import csv

    rows = list(csv.DictReader((FOCUS / "ai-per-token-api.csv").open()))
    assert [r["EffectiveCost"] for r in rows] == ["42.00", "52.50"]  # $94.50 in all
    restated = []
    for r in rows:
        r = {k: v for k, v in r.items() if v != "" or k == "ChargeClass"}
        for c in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "ConsumedQuantity"):
            r[c] = float(r[c]) * 2  # a number, as JSON carries it
        r["ProviderName"] = r.pop("ServiceProviderName")
        r.pop("HostProviderName")  # 1.0 has PublisherName
        r["PublisherName"] = "Solora AI"
        r["ChargeClass"] = ""  # a CSV-to-JSON conversion writes empty cells as ""
        r["SkuPriceDetails"] = json.loads(r["SkuPriceDetails"])
        r["x_InvoiceSection"] = "new in this delivery"
        restated.append(r)
    (tmp_path / "restated.json").write_text(json.dumps(restated))
    with Workspace.init(tmp_path / "ws") as ws:
        ws.ingest_paths([FOCUS / "ai-per-token-api.csv"])
        again = ws.ingest_paths([tmp_path / "restated.json"])
        assert (again.files[0].format, again.total("landed"), again.files[0].updated) == ("focus", 2, 2)
        [(count, total)] = ws.store.con.execute("SELECT count(*), sum(amount) FROM cost_items").fetchall()
    assert (count, total) == (2, pytest.approx(189.0))  # 84.00 + 105.00, not 94.50 + 189.00


def test_a_csv_row_of_the_wrong_width_is_quarantined_not_shifted(tmp_path: Path) -> None:
    """A download cut short (the last row ends after ChargeCategory) and a comma left unquoted
    (every later value one column to the right) landed with their values under other columns:
    a token bill became platform cost, and $10 moved to another team."""
    lines = (FOCUS / "ai-per-token-api.csv").read_text().splitlines()
    header, first, second = lines[0], lines[1], lines[2]
    cut = second[: second.index(",Usage,") + len(",Usage")]
    shifted = first.replace("Acme Corp", "Acme, Corp", 1)
    data = tmp_path / "bill.csv"
    data.write_text("\n".join([header, shifted, first, cut]) + "\n")
    width = len(header.split(","))
    with Workspace.init(tmp_path / "ws") as ws:
        s = ws.ingest_paths([data])
        reasons = ws.quarantine(10).column("reason").to_pylist()
        assert (s.total("landed"), s.total("quarantined")) == (1, 2)
    assert sorted(reasons) == [
        f"row 1: expected {width} fields, found {width + 1}",
        f"row 3: expected {width} fields, found 7",
    ]


def test_csv_fields_keep_their_line_breaks_and_trailing_empties(tmp_path: Path) -> None:
    """A user name with U+2028 in it (CSV writers leave it unquoted) was read as two rows; a
    trailing empty field, or a header's trailing empty column, holds nothing to shift and lands;
    a row too wide with bytes that are not UTF-8 is quarantined alone, the others land."""
    base = read_all("litellm", FORMATS / "litellm_spend_logs.csv")
    calls, rejects = base.tables["calls"].num_rows, base.rejects.num_rows
    assert (calls, rejects) == (3, 2)  # rows 4 and 5 of the fixture are bad on purpose
    lines = (FORMATS / "litellm_spend_logs.csv").read_bytes().splitlines()
    header, rows = lines[0], lines[1:]
    named = rows[0].replace(b",u-1,", ",Ana\u2028Lopez,".encode(), 1)
    assert named != rows[0]
    sep = tmp_path / "sep.csv"
    sep.write_bytes(b"\n".join([header, named, rows[1] + b",", *rows[2:]]) + b"\n")
    b = read_all("litellm", sep)
    assert (b.tables["calls"].num_rows, b.rejects.num_rows) == (calls, rejects)
    assert "Ana\u2028Lopez" in b.tables["calls"].column("user_id").to_pylist()
    trailing = tmp_path / "trailing.csv"
    trailing.write_bytes(b"\n".join([header + b",", *rows]) + b"\n")
    b = read_all("litellm", trailing)
    assert (b.tables["calls"].num_rows, b.rejects.num_rows) == (calls, rejects)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\n".join([header, rows[0] + b",\xff", *rows[1:]]) + b"\n")
    b = read_all("litellm", bad)
    assert (b.tables["calls"].num_rows, b.rejects.num_rows) == (calls - 1, rejects + 1)
    reasons = b.rejects.column("reason").to_pylist()
    [i] = [n for n, r in enumerate(reasons) if r.startswith("row 1:")]
    assert "fields" in reasons[i]
    # the metadata column may hold the request's text (the proxy logs its body there): the row,
    # whose values may be shifted, is kept only where content is captured
    assert b.rejects.column("raw")[i].as_py().startswith("(row not kept")
    b = read_all("litellm", bad, capture_content=True)
    [raw] = [r["raw"] for r in b.rejects.to_pylist() if r["reason"].startswith("row 1:")]
    assert "\\xff" in raw  # the byte kept, written as an escape


def test_a_correction_is_a_charge_of_its_own(tmp_path: Path) -> None:
    """A FOCUS Correction keeps the charge period of the row it corrects and arrives in a later
    billing period's file: it adds to the charge, never replaces it. A description that states
    a new price names the same charge."""
    import csv

    rows = list(csv.DictReader((FOCUS / "ai-per-token-api.csv").open()))
    correction = {
        **rows[0],
        "ChargeClass": "Correction",
        "BillingPeriodStart": "2025-06-01T00:00:00Z",
        "BillingPeriodEnd": "2025-07-01T00:00:00Z",
        "BilledCost": "-2.00",
        "EffectiveCost": "-2.00",
        "ChargeDescription": "Correction: input tokens at the contracted rate",
    }
    june = tmp_path / "june.csv"
    with june.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(correction))
        w.writeheader()
        w.writerow(correction)
    reworded = tmp_path / "may-again.csv"
    with reworded.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows([{**r, "ChargeDescription": r["ChargeDescription"] + " at $5.10"} for r in rows])
    with Workspace.init(tmp_path / "ws") as ws:
        ws.ingest_paths([FOCUS / "ai-per-token-api.csv", june])
        again = ws.ingest_paths([june, reworded])
        # the correction again is a duplicate; the reworded rows replace theirs (updated, not new)
        assert [(f.duplicates, f.updated) for f in again.files] == [(1, 0), (0, 2)]
        [(count, total)] = ws.store.con.execute("SELECT count(*), sum(amount) FROM cost_items").fetchall()
    assert (count, total) == (3, pytest.approx(92.5))  # 42.00 + 52.50 - 2.00


# -- through the workspace: re-import is idempotent ------------------------------------------------
def test_reimport_creates_no_duplicates(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    try:
        files = [
            FORMATS / "litellm_spend_logs.csv",
            FORMATS / "langfuse_observations.jsonl",
            FORMATS / "openai_usage_completions.json",
            FORMATS / "anthropic_usage_report.json",
            FOCUS / "ai-multi-model-usage.csv",
        ]
        first = ws.ingest_paths(files)
        counts = ws.store.counts()
        second = ws.ingest_paths(files)
        assert ws.store.counts() == counts
        assert second.total("landed") == 0
        assert second.total("duplicates") == first.total("landed")
        # 3 + 3 + 2 calls, plus 1 Anthropic bucket; 4 FOCUS items
        assert counts["calls"] == 9 and counts["cost_items"] == 4
        # spend kept for reconciliation beside the catalog price
        pcalls = ws.priced_calls().to_pyarrow()
        a1 = next(r for r in pcalls.to_pylist() if r["call_id"] == "litellm-chatcmpl-a1")
        assert a1["reported_cost"] == pytest.approx(0.00375) and a1["priced"]
    finally:
        ws.close()


# -- the source's own cost against yieldmeter's price ---------------------------------------------
#: An in-house model no catalog prices, with LiteLLM's spend for it: reported, never compared.
UNPRICED_ROW = (
    "request_id,call_type,spend,prompt_tokens,completion_tokens,startTime,endTime,model,"
    "custom_llm_provider,team_id,metadata,status\n"
    "in-1,acompletion,0.002,500,50,2025-03-01 13:00:00,2025-03-01 13:00:01,acme-internal-7b,acme,,"
    '"{""user_api_key_team_alias"": ""claims-ops""}",success\n'
)


def _litellm_workspace(tmp_path: Path) -> Workspace:
    extra = tmp_path / "spend_unpriced.csv"
    extra.write_text(UNPRICED_ROW)
    ws = Workspace.init(tmp_path / "ws")
    ws.ingest_paths([FORMATS / "litellm_spend_logs.csv", extra])
    return ws


def test_litellm_spend_reconciled_against_yieldmeter_price(tmp_path: Path) -> None:
    """Hand-computed from the fixture and the genai-prices catalog (USD per million tokens):

    a1  gpt-4o-2024-08-06 -> gpt-4o ($2.50 in, $1.25 cached, $10 out): 600 uncached x 2.50
        + 400 cached x 1.25 + 125 out x 10 = 3,250 -> $0.00325 against spend $0.00375: +$0.0005
    b2  claude-3-5-sonnet ($3 in, $0.30 cache read, $3.75 cache write, $15 out): 500 x 3
        + 2,000 x 0.30 + 500 x 3.75 + 300 x 15 = 8,475 -> $0.008475 against $0.0111: +$0.002625
    c3  text-embedding-3-small ($0.02): 50 x 0.02 = 1 -> $0.000001 against $0.000001: 0
    in-1  acme-internal-7b: no price -> unpriced, its $0.002 reported and nothing compared
    """
    ws = _litellm_workspace(tmp_path)
    try:
        by_model = {r["model"]: r for r in ws.reported_cost("model").to_pylist()}
        a1 = by_model["gpt-4o-2024-08-06"]
        assert (a1["reported_cost"], a1["priced_cost"]) == (pytest.approx(0.00375), pytest.approx(0.00325))
        assert a1["difference"] == pytest.approx(0.0005, abs=1e-12)
        assert a1["difference_share"] == pytest.approx(0.0005 / 0.00375)
        assert by_model["claude-3-5-sonnet-20241022"]["difference"] == pytest.approx(0.002625, abs=1e-12)
        assert by_model["text-embedding-3-small"]["difference"] == pytest.approx(0.0, abs=1e-12)
        unpriced = by_model["acme-internal-7b"]
        assert (unpriced["priced_cost"], unpriced["difference"], unpriced["unpriced_calls"]) == (
            None,
            None,
            1,
        )
        assert unpriced["reported_cost"] == pytest.approx(0.002)  # shown, never compared with $0

        by_team = {r["team"]: r for r in ws.reported_cost("team").to_pylist()}
        # claims-ops: a1 (compared) and in-1 (unpriced): only a1's cost enters the difference
        ops = by_team["claims-ops"]
        assert (ops["calls"], ops["priced_calls"], ops["unpriced_calls"]) == (2, 1, 1)
        assert ops["reported_cost"] == pytest.approx(0.00575)
        assert ops["reported_priced_cost"] == pytest.approx(0.00375)
        assert ops["difference"] == pytest.approx(0.0005, abs=1e-12)

        [day] = ws.reported_cost("day").to_pylist()
        assert day["difference"] == pytest.approx(0.0005 + 0.002625, abs=1e-12)
        assert day["priced_cost"] == pytest.approx(0.00325 + 0.008475 + 0.000001)
        with pytest.raises(ValueError, match="choose from"):
            ws.reported_cost("colour")
    finally:
        ws.close()


def test_reported_cost_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from yieldmeter.cli.main import build_app

    _litellm_workspace(tmp_path).close()
    runner, app = CliRunner(), build_app()
    r = runner.invoke(
        app, ["report", "reported-cost", "--by", "model", "-f", "json", "-w", str(tmp_path / "ws")]
    )
    assert r.exit_code == 0, r.output
    rows = {x["model"]: x for x in json.loads(r.output)}
    assert set(rows["gpt-4o-2024-08-06"]) == {
        "model",
        "calls",
        "reported_cost",
        "priced_calls",
        "unpriced_calls",
        "reported_priced_cost",
        "priced_cost",
        "difference",
        "difference_share",
    }
    assert rows["gpt-4o-2024-08-06"]["difference"] == pytest.approx(0.0005, abs=1e-12)
    r = runner.invoke(app, ["report", "reported-cost", "--by", "team", "-w", str(tmp_path / "ws")])
    assert r.exit_code == 0 and "$0.0005" in r.output and "unpriced" in r.output, r.output
    r = runner.invoke(app, ["report", "reported-cost", "--by", "colour", "-w", str(tmp_path / "ws")])
    assert r.exit_code == 1 and "choose one of model, team, day" in r.output


def test_ingest_command_names_the_format_whole(tmp_path: Path) -> None:
    """`yieldmeter ingest` prints the format it detected (or was given) on its own line, so an
    80-column terminal shows `litellm`, not `lite…`; --format chooses the reader."""
    from typer.testing import CliRunner

    from yieldmeter.cli.main import build_app

    runner, app, ws = CliRunner(), build_app(), str(tmp_path / "ws")
    path = FORMATS / "litellm_spend_logs.csv"
    r = runner.invoke(app, ["ingest", str(path), "-w", ws], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert f"{path}: litellm (detected by content)" in r.output.splitlines()
    # the same file read as the format named: nothing new lands, and the choice is said
    r = runner.invoke(app, ["ingest", str(path), "--format", "litellm", "-w", ws], env={"COLUMNS": "80"})
    assert r.exit_code == 0 and f"{path}: litellm (as --format says)" in r.output.splitlines()
    r = runner.invoke(app, ["ingest", str(path), "--format", "litellm", "-w", ws, "--output", "json"])
    [summary] = json.loads(r.stdout)  # the JSON alone
    assert (summary["format"], summary["landed"], summary["duplicates"]) == ("litellm", 0, 3)
    # a format that does not fit the file: its rows are quarantined with the reason, not guessed
    r = runner.invoke(app, ["ingest", str(path), "--format", "openai-usage", "-w", ws, "--output", "json"])
    [summary] = json.loads(r.stdout)  # the JSON alone
    assert summary["format"] == "openai-usage" and summary["landed"] == 0
    with Workspace.open(ws) as w:  # the reason says what the rows are not (not a missing field)
        reasons = set(w.quarantine(100).column("reason").to_pylist())
    assert "result 1: not a result inside a bucket of an OpenAI usage or costs page" in " ".join(reasons)
    r = runner.invoke(app, ["ingest", str(path), "--format", "langfuse", "-w", ws, "--output", "json"])
    [summary] = json.loads(r.stdout)  # no row has a type: not observations, not 5 ignored ones
    assert (summary["landed"], summary["quarantined"], summary["ignored"]) == (0, 5, 0)
    r = runner.invoke(app, ["ingest", str(path), "--format", "nope", "-w", ws])
    assert r.exit_code == 1 and "nope" in r.output


def test_a_litellm_cache_hit_buys_no_tokens(tmp_path: Path) -> None:
    """The proxy answered r1's repeat from its own cache: LiteLLM logs it with the cached
    response's usage, ``cache_hit`` True and spend 0 (the request id gets ``_cache_hit<time>``).
    No provider was called: the call lands with no tokens and costs 0, its response's counts
    in ``attributes``. r1 itself, gpt-4o at $2.50 / $10 per million: 1,000 x 2.50 + 100 x 10
    = 3,500 -> $0.0035, and the two reconcile: 0.0035 + 0 against spend 0.0035 + 0."""
    path = tmp_path / "spend.csv"
    path.write_text(
        "request_id,call_type,spend,prompt_tokens,completion_tokens,startTime,model,custom_llm_provider,"
        "cache_hit,session_id\n"
        "r1,acompletion,0.0035,1000,100,2025-03-01 10:00:00,gpt-4o,openai,False,s1\n"
        "r1_cache_hit1740823500.25,acompletion,0.0,1000,100,2025-03-01 10:05:00,gpt-4o,openai,True,s1\n"
    )
    batch = read_all("litellm", path)
    assert batch.notes == [
        "1 LiteLLM row(s) were answered from the proxy's own cache (cache_hit): no provider was called, "
        "so they landed with no tokens (the response's counts are in attributes.cache_hit_tokens)"
    ]
    [row] = [r for r in batch.tables["calls"].to_pylist() if "cache_hit" in r["call_id"]]
    assert (row["input_tokens"], row["output_tokens"], row["request_count"], row["status"]) == (0, 0, 1, "ok")
    attrs = json.loads(row["attributes"])
    assert attrs["cache_hit"] == "True" and attrs["cache_hit_tokens"] == {"input": 1000, "output": 100}
    # a pandas export writes the flag as a float: 1.0 is a hit, 0.0 is not
    floats = tmp_path / "floats.csv"
    floats.write_text(path.read_text().replace(",False,", ",0.0,").replace(",True,", ",1.0,"))
    tokens = {
        r["call_id"]: r["input_tokens"] for r in read_all("litellm", floats).tables["calls"].to_pylist()
    }
    assert tokens == {"litellm-r1": 1000, "litellm-r1_cache_hit1740823500.25": 0}
    ws = Workspace.init(tmp_path / "ws")
    try:
        ws.ingest_paths([path])
        costs = {r["call_id"]: r["model_cost"] for r in ws.priced_calls().to_pyarrow().to_pylist()}
        assert costs == {"litellm-r1": pytest.approx(0.0035), "litellm-r1_cache_hit1740823500.25": 0.0}
        [a] = ws.reported_cost("model").to_pylist()
        assert (a["calls"], a["priced_cost"], a["reported_cost"]) == (
            2,
            pytest.approx(0.0035),
            pytest.approx(0.0035),
        )
        assert a["difference"] == pytest.approx(0.0, abs=1e-12)
    finally:
        ws.close()


def test_litellm_uncached_prompt_tokens_are_recognised_and_noted(tmp_path: Path) -> None:
    """An older proxy passed Anthropic's uncached input through as prompt_tokens: 100 prompt
    tokens with 2,000 cache reads can only mean 100 + 2,000 = 2,100 input tokens."""
    path = tmp_path / "old_proxy.csv"
    path.write_text(
        "request_id,call_type,spend,prompt_tokens,completion_tokens,startTime,model,metadata\n"
        "r1,acompletion,0.001,100,10,2025-03-01 10:00:00,claude-3-5-sonnet-20241022,"
        '"{""usage_object"": {""cache_read_input_tokens"": 2000}}"\n'
        "r2,acompletion,0.001,100,10,2025-03-01 10:00:00,gpt-4o,{}\n"
    )
    options = ReadOptions(source=path.name)
    with path.open("rb") as fh:
        [batch] = list(get_format("litellm").read(fh, options))
    calls = by_id(batch.tables["calls"], "call_id")
    assert (calls["litellm-r1"]["input_tokens"], calls["litellm-r1"]["cached_input_tokens"]) == (2100, 2000)
    assert json.loads(calls["litellm-r1"]["attributes"])["tokens_counted_apart"] == "cache"
    assert calls["litellm-r2"]["input_tokens"] == 100
    assert batch.notes == [
        "1 LiteLLM row(s) report more cache read + write tokens than prompt_tokens: read as an older "
        "proxy's uncached input, and the cache tokens added to input_tokens"
    ]


def test_one_hour_cache_writes_from_litellm_and_langfuse(tmp_path: Path) -> None:
    """Anthropic's writes kept for an hour, as each passes them through: LiteLLM's
    ``prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens`` beside
    ``cache_creation_input_tokens`` (500 writes, 300 of them for an hour); Langfuse's own buckets
    ``input_cache_creation_5m`` and ``_1h`` (200 + 300 = 500 writes, 300 for an hour; input 1,000
    uncached + 500 = 1,500); LangChain's breakdown through Langfuse (``input_token_details``,
    inclusive: 2,000 input, 400 writes, 100 for an hour), and flattened by Langfuse's LangChain
    handler."""
    from yieldmeter.ingest.otlp_semconv import langfuse_usage

    usage = {
        "cache_creation_input_tokens": 500,
        "prompt_tokens_details": {"cache_creation_token_details": {"ephemeral_1h_input_tokens": 300}},
    }
    path = tmp_path / "spend.csv"
    head = ["request_id", "spend", "prompt_tokens", "completion_tokens", "startTime", "model", "metadata"]
    fields = ["r1", "0.01", "1500", "10", "2025-03-01 10:00:00", "claude-3-5-sonnet-20241022"]
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([head, [*fields, json.dumps({"usage_object": usage})]])
    [row] = read_all("litellm", path).tables["calls"].to_pylist()
    assert (row["input_tokens"], row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (1500, 500, 300)
    # the writes given only inside the details (cache_creation_tokens) are the writes too
    usage = {"prompt_tokens_details": {**usage["prompt_tokens_details"], "cache_creation_tokens": 500}}
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([head, [*fields, json.dumps({"usage_object": usage})]])
    [row] = read_all("litellm", path).tables["calls"].to_pylist()
    assert (row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (500, 300)
    flat = {"input": 1000, "input_cache_creation_5m": 200, "input_cache_creation_1h": 300, "output": 20}
    assert langfuse_usage(flat) == (1500, 20, 0, 500, 0, 300)
    nested = {
        "input_tokens": 2000,
        "output_tokens": 30,
        "input_token_details": {"cache_creation": 400, "ephemeral_1h_input_tokens": 100},
    }
    assert langfuse_usage(nested) == (2000, 30, 0, 400, 0, 100)
    # Langfuse's LangChain handler flattens that breakdown and takes every part from input, the
    # writes' split too: 10,000 input (500 read, 3,000 written: 2,000 for 5 minutes, 1,000 for an
    # hour) was stored as input 10,000 - 500 - 3,000 - 2,000 - 1,000 = 3,500; total 10,020.
    # With a 5,003 input of 5,000 one-hour writes, the input clamped at 0; total 5,033.
    langchain = {"input_cache_read": 500, "input_cache_creation": 3000, "output": 20, "total": 10_020}
    langchain |= {
        "input": 3500,
        "input_ephemeral_5m_input_tokens": 2000,
        "input_ephemeral_1h_input_tokens": 1000,
    }
    assert langfuse_usage(langchain) == (10_000, 20, 500, 3000, 0, 1000)
    clamped = {"input": 0, "input_cache_read": 0, "input_cache_creation": 5000, "output": 30, "total": 5033}
    clamped |= {"input_ephemeral_1h_input_tokens": 5000, "input_ephemeral_5m_input_tokens": 0}
    assert langfuse_usage(clamped) == (5003, 30, 0, 5000, 0, 5000)
