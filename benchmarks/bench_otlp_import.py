"""OTLP JSON file import benchmark: 1,000,000 spans as the Collector's file exporter writes them.

Three figures on the same bytes, in the same run:

* raw parse: ``orjson.loads`` of every line, nothing else (the limit any
  Python importer of this format has to live with), and Arrow's JSON reader
  parsing the same 16 MB chunks to the columnar reader's schema, nothing else
  (the limit of the columnar reader);
* adapter: ``yieldmeter.ingest.otlp_json.read`` -> conformed Arrow batches, with
  batches of plain spans read as columns (the default, ``otlp_columnar``) and
  with every span mapped one by one (``span_by_span_*``, its baseline);
* import: ``Workspace.ingest_paths`` end to end (adapter, store upsert,
  derived work units, model map, and the one re-score at the end), in a
  fresh child process so its peak memory (``ru_maxrss``) is its own; the
  peak before the re-score and the re-score's time are reported apart. It
  runs four times: with ``ingest.decode_workers: 0`` (the default, one
  process whose reader runs a batch ahead of the store's writes on a thread of
  its own: the import figures), the same with every span mapped one by one
  (``span_by_span_import_*``, the columnar reader's baseline), the same with the
  read-ahead turned off (the ``no_read_ahead_*`` figures, its baseline), and
  with ``auto`` (lines decoded in worker
  processes: the ``workers_*`` figures, with the largest worker's peak
  memory beside the importer's and, as an upper bound, their sum).

Target (issue 3): import >= 150,000 spans/s with peak memory under 1 GiB, on
2 cores. Writes ``benchmarks/results/otlp_import.json``. ``BENCH_OTLP_SPANS``
sets the span count (default 1,000,000; one in ten is a non-GenAI span the
importer counts as ignored).
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

N_SPANS = int(os.environ.get("BENCH_OTLP_SPANS", 1_000_000))
RESULTS = Path(__file__).parent / "results" / "otlp_import.json"


def _child(path: str, ws_dir: str, workers: str, read_ahead: str = "yes", columnar: str = "yes") -> None:
    """Run in a fresh process: import ``path`` into a new workspace, print figures as JSON.

    ``workers`` is the workspace's ``ingest.decode_workers`` (``0``: all in this process);
    ``read_ahead`` ``no`` turns the import's read-ahead off, ``columnar`` ``no`` the columnar
    reader (the baselines they are measured against).
    """
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.config import CONFIG_FILE
    from yieldmeter.ingest.base import ReadAhead

    if read_ahead == "no":
        ReadAhead.pays = staticmethod(lambda: False)  # type: ignore[method-assign]
    if columnar == "no":
        _span_by_span()

    Path(ws_dir).mkdir(parents=True)
    Path(ws_dir, CONFIG_FILE).write_text(f"ingest:\n  decode_workers: {workers}\n")
    ws = Workspace.init(ws_dir)
    # where the peak comes from: the import itself, or the one re-score at its end
    before_rescore: dict[str, float] = {}
    flush = Workspace.flush_after_ingest

    def timed_flush(self: Workspace) -> None:
        before_rescore["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        flush(self)
        before_rescore["rescore_s"] = time.perf_counter() - t0

    Workspace.flush_after_ingest = timed_flush  # type: ignore[method-assign]
    t = time.perf_counter()
    summary = ws.ingest_paths([path])
    seconds = time.perf_counter() - t
    calls = ws.store.count("calls")
    ws.close()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "workers": ws.read_options(path).decode_workers,
                "seconds": seconds,
                "calls": calls,
                "landed": summary.total("landed"),
                "ignored": summary.total("ignored"),
                "peak_rss_mib": peak_kib / 1024,
                # the largest decode process (0 when none ran)
                "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "peak_rss_before_rescore_mib": before_rescore.get("peak_mib"),
                "rescore_seconds": before_rescore.get("rescore_s"),
            }
        )
    )


def _span_by_span() -> None:
    """Every OTLP JSON batch mapped span by span, as before the columnar reader."""
    from yieldmeter.ingest import otlp_json

    otlp_json.read_chunk = lambda *args: None  # type: ignore[assignment]


def main() -> None:
    import orjson
    import pyarrow.json as arrow_json

    from otlp_spans import json_lines
    from yieldmeter.ingest import otlp_columnar, otlp_json
    from yieldmeter.ingest.base import ReadOptions
    from yieldmeter.ingest.otlp_json import read

    load_at_start = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "traces.jsonl"
        t = time.perf_counter()
        with path.open("wb") as fh:
            for line in json_lines(N_SPANS):
                fh.write(line)
        size = path.stat().st_size
        print(f"wrote {N_SPANS:,} spans, {size / 1e6:,.0f} MB, in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        with path.open("rb") as fh:
            for line in fh:
                orjson.loads(line)
        parse_s = time.perf_counter() - t

        t = time.perf_counter()
        with path.open("rb") as fh:
            for chunk, _ in otlp_json._chunks(fh):
                arrow_json.read_json(
                    io.BytesIO(chunk),
                    read_options=arrow_json.ReadOptions(block_size=1 << 20),
                    parse_options=arrow_json.ParseOptions(
                        explicit_schema=otlp_columnar.SCHEMA, unexpected_field_behavior="ignore"
                    ),
                )
        arrow_parse_s = time.perf_counter() - t

        def adapter() -> tuple[float, int]:
            t = time.perf_counter()
            rows = 0
            with path.open("rb") as fh:
                for batch in read(fh, ReadOptions(source=str(path))):
                    rows += batch.tables["calls"].num_rows
            return time.perf_counter() - t, rows

        adapter_s, rows = adapter()
        columnar = otlp_json.read_chunk
        _span_by_span()
        span_by_span_s, span_by_span_rows = adapter()
        otlp_json.read_chunk = columnar

        def child_run(workers: str, read_ahead: str = "yes", columnar: str = "yes") -> dict:
            ws = str(Path(tmp) / f"ws-{workers}-{read_ahead}-{columnar}")
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path), ws, workers, read_ahead, columnar],
                check=True,
                capture_output=True,
                text=True,
            )
            return json.loads(out.stdout.strip().splitlines()[-1])

        child = child_run("0")  # the default: one process, the next batch read while one is written
        by_span = child_run("0", "yes", "no")  # the baseline: every span mapped one by one
        serial = child_run("0", "no")  # the baseline: read, then write, in turn
        parallel = child_run("auto")  # ingest.decode_workers: auto

    result = {
        "benchmark": "otlp_import",
        "spans": N_SPANS,
        "bytes": size,
        "cpu_count": os.cpu_count(),
        "raw_parse_spans_per_s": N_SPANS / parse_s,
        "arrow_parse_spans_per_s": N_SPANS / arrow_parse_s,
        "adapter_spans_per_s": N_SPANS / adapter_s,
        "adapter_calls": rows,
        "span_by_span_adapter_spans_per_s": N_SPANS / span_by_span_s,
        "columnar_to_span_by_span_adapter_ratio": span_by_span_s / adapter_s,
        "span_by_span_adapter_calls": span_by_span_rows,
        "import_spans_per_s": N_SPANS / child["seconds"],
        "import_seconds": child["seconds"],
        "import_calls_stored": child["calls"],
        "import_ignored_spans": child["ignored"],
        "import_peak_rss_mib": child["peak_rss_mib"],
        "import_peak_rss_before_rescore_mib": child["peak_rss_before_rescore_mib"],
        "import_rescore_seconds": child["rescore_seconds"],
        "span_by_span_import_spans_per_s": N_SPANS / by_span["seconds"],
        "columnar_to_span_by_span_import_ratio": by_span["seconds"] / child["seconds"],
        "span_by_span_import_peak_rss_mib": by_span["peak_rss_mib"],
        "no_read_ahead_import_spans_per_s": N_SPANS / serial["seconds"],
        "read_ahead_to_no_read_ahead_ratio": serial["seconds"] / child["seconds"],
        "no_read_ahead_peak_rss_mib": serial["peak_rss_mib"],
        "workers_decode_workers": parallel["workers"],
        "workers_import_spans_per_s": N_SPANS / parallel["seconds"],
        "workers_to_default_ratio": child["seconds"] / parallel["seconds"],
        "workers_importer_peak_rss_mib": parallel["peak_rss_mib"],
        "workers_importer_peak_rss_before_rescore_mib": parallel["peak_rss_before_rescore_mib"],
        "workers_largest_worker_peak_rss_mib": parallel["worker_peak_rss_mib"],
        # the processes run together until the re-score, which runs after they have ended
        "workers_peak_rss_all_processes_mib": max(
            parallel["peak_rss_before_rescore_mib"] + parallel["workers"] * parallel["worker_peak_rss_mib"],
            parallel["peak_rss_mib"],
        ),
        "import_to_raw_parse_ratio": (N_SPANS / child["seconds"]) / (N_SPANS / parse_s),
        "adapter_to_raw_parse_ratio": (N_SPANS / adapter_s) / (N_SPANS / parse_s),
        "import_to_arrow_parse_ratio": arrow_parse_s / child["seconds"],
        "adapter_to_arrow_parse_ratio": arrow_parse_s / adapter_s,
        "load_average_at_start": load_at_start,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "target_spans_per_s": 150_000,
        "target_peak_mib": 1024,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k:>28}: {v:,.2f}" if isinstance(v, float) else f"{k:>28}: {v}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(*sys.argv[2:7])
    else:
        main()
