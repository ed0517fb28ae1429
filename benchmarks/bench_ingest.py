"""Tabular import: memory stays bounded whatever the file's size, and the rate against the parser.

    python benchmarks/bench_ingest.py [--rows 400000]

For CSV (and a JSON array of the same rows) at N and 3N rows, each import runs in a fresh child
process (``Workspace.ingest_paths`` into a new store, what ``yieldmeter ingest`` runs) so its peak
memory (``ru_maxrss``) is its own. Figures, all from the same run:

* ``peak_ratio_3n_over_n``: peak memory at 3N rows over the peak at N. Memory bounded by the
  batch, not the file, keeps it near 1 (issue 2: "memory stays bounded whatever the file size");
  a reader that holds the file would be near 3.
* ``rows_per_s`` beside ``parse_rows_per_s``: the import against pyarrow's CSV parser alone on
  the same bytes (the limit of a CSV import), as a ratio.
* ``peak_mib_before_rescore``: the import's peak before the re-score that follows it (scoring
  reads every work unit of the store, so its memory grows with the store, not with the file).
* ``adapter_*``: the reader alone (batches built and dropped, no store), which is what holds
  the file's rows; the import's own peak adds DuckDB's buffer pool, which grows with the store
  (it caches the tables it probes for duplicates) up to DuckDB's memory limit, not with the file.
* the baseline process: a child that imports yieldmeter and opens a new workspace, ingesting
  nothing, so the peaks can be read net of what the interpreter and libraries hold (a child's
  ``ru_maxrss`` includes its parent's size at the fork: this script keeps itself small).

Writes ``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "ingest.json"

CHILD = """
import json, resource, sys, time
from pathlib import Path
from yieldmeter.app.workspace import Workspace
from yieldmeter.ingest.base import ReadOptions, open_binary
from yieldmeter.ingest.registry import detect_format
mode, target, files = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.perf_counter()
landed = 0
before_followup = {}
if mode == "adapter":  # the reader alone: batches built and dropped, nothing written
    for f in files:
        with open_binary(Path(f)) as stream:
            for batch in detect_format(Path(f)).read(stream, ReadOptions(source=f)):
                landed += batch.rows
else:
    follow_up = Workspace.flush_after_ingest

    def measured(self):  # the re-score after the import reads the whole store, not the file
        before_followup["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        before_followup["seconds"] = time.perf_counter() - t0
        follow_up(self)

    Workspace.flush_after_ingest = measured
    ws = Workspace.init(target)
    if files:
        landed = ws.ingest_paths(files).total("landed")
    ws.close()
print(json.dumps({
    "seconds": time.perf_counter() - t0,
    "landed": landed,
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "peak_mib_before_rescore": before_followup.get("peak_mib"),
    "seconds_before_rescore": before_followup.get("seconds"),
}))
"""


def write_calls(path: Path, n: int, seed: int = 1) -> None:
    """``n`` calls as CSV (about 150 bytes a row), written in slices so the writer stays small."""
    rng = np.random.default_rng(seed)
    models = ["gpt-4o", "gpt-4o-mini", "claude-3-5-haiku-20241022", "acme-summariser"]
    with path.open("w") as fh:
        fh.write("call_id,ts,provider,model,input_tokens,output_tokens,work_unit_id,team,workflow\n")
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            tok_in = rng.lognormal(7, 1, m).astype(int)
            tok_out = rng.lognormal(5, 1, m).astype(int)
            model = rng.integers(0, len(models), m)
            sec = rng.integers(0, 30 * 86400, m)
            fh.writelines(
                f"c{start + i},2025-03-{1 + s // 86400:02d}T{s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:"
                f"{s % 60:02d}Z,openai,{models[k]},{a},{b},wu-{(start + i) // 4},team-{k},wf-{k % 3}\n"
                for i, (s, k, a, b) in enumerate(zip(sec, model, tok_in, tok_out, strict=True))
            )


def csv_to_json_array(src: Path, dst: Path) -> None:
    """The same rows as one JSON array, written a batch at a time. This process stays small: a
    child's ``ru_maxrss`` starts from its parent's size at the fork, so a parent holding the rows
    would show in every child's peak."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    reader = pacsv.open_csv(src, convert_options=pacsv.ConvertOptions(column_types={"ts": pa.string()}))
    with dst.open("w") as fh:
        fh.write("[\n")
        sep = ""
        for batch in reader:
            for r in batch.to_pylist():
                fh.write(sep + json.dumps(r))
                sep = ",\n"
        fh.write("\n]\n")


def run_child(mode: str, ws: Path, *files: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(ws), *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def parse_rate(path: Path) -> float:
    """Rows per second of pyarrow's CSV reader alone on the file (one thread, as the import)."""
    import pyarrow.csv as pacsv

    t0 = time.perf_counter()
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(use_threads=False))
    rows = sum(b.num_rows for b in reader)
    return rows / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400_000, help="N: the smaller file's rows")
    args = ap.parse_args()
    n = args.rows
    result: dict[str, object] = {
        "benchmark": "ingest",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        result["baseline_peak_mib"] = run_child("import", d / "ws-base")["peak_mib"]
        for kind in ("csv", "json"):
            figures: dict[str, object] = {}
            for label, rows in (("n", n), ("3n", 3 * n)):
                src = d / f"calls-{rows}.csv"
                if not src.exists():
                    write_calls(src, rows)
                path = src
                if kind == "json":
                    path = d / f"calls-{rows}.json"
                    csv_to_json_array(src, path)
                r = run_child("import", d / f"ws-{kind}-{label}", path)
                a = run_child("adapter", d / "unused", path)
                figures[label] = {
                    "rows": rows,
                    "bytes": path.stat().st_size,
                    "landed": r["landed"],
                    "seconds": round(r["seconds"], 3),
                    "rows_per_s": round(rows / r["seconds"]),
                    "peak_mib": round(r["peak_mib"], 1),
                    "peak_mib_before_rescore": round(r["peak_mib_before_rescore"] or r["peak_mib"], 1),
                    "rescore_seconds": round(r["seconds"] - (r["seconds_before_rescore"] or r["seconds"]), 3),
                    "adapter_rows_per_s": round(a["landed"] / a["seconds"]),
                    "adapter_peak_mib": round(a["peak_mib"], 1),
                }
                if kind == "csv":
                    figures[label]["parse_rows_per_s"] = round(parse_rate(path))  # type: ignore[index]
                    figures[label]["import_to_parse_ratio"] = round(  # type: ignore[index]
                        figures[label]["rows_per_s"] / figures[label]["parse_rows_per_s"],  # type: ignore[index]
                        4,
                    )
                path.unlink() if kind == "json" else None
            small, big = figures["n"], figures["3n"]
            figures["peak_ratio_3n_over_n"] = round(big["peak_mib"] / small["peak_mib"], 3)  # type: ignore[index]
            figures["peak_before_rescore_ratio_3n_over_n"] = round(
                big["peak_mib_before_rescore"] / small["peak_mib_before_rescore"],  # type: ignore[index]
                3,
            )
            figures["adapter_peak_ratio_3n_over_n"] = round(
                big["adapter_peak_mib"] / small["adapter_peak_mib"],  # type: ignore[index]
                3,
            )
            base = float(result["baseline_peak_mib"])  # type: ignore[arg-type]
            figures["net_peak_ratio_3n_over_n"] = round(
                (big["peak_mib"] - base) / (small["peak_mib"] - base),  # type: ignore[index]
                3,
            )
            result[kind] = figures
            print(kind, json.dumps(figures, indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
