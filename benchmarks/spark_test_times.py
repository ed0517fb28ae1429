"""How long the Spark part of the test suite takes: the figure CI has to keep under 10 minutes.

    python benchmarks/spark_test_times.py [--from JUNIT_XML]

Runs ``tests/test_engines.py`` and ``tests/test_lake_spark.py`` (both engines, so the DuckDB
reference figures are computed in the DuckDB cases, as in ``make test``) with a JUnit report, and
writes ``benchmarks/results/spark_tests.json``: every ``spark``-marked case with its seconds
(setup, call and teardown: the shared session's start and the lakes' registration land in the
first Spark case), their sum, the slowest ten, and the machine's load while it ran.
``--from`` reads the JUnit report of a run made otherwise (e.g. in CI) instead of running pytest.

Not named ``bench_*``: ``make bench`` does not run it (it runs the Spark tests for minutes).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "spark_tests.json"
FILES = ("tests/test_engines.py", "tests/test_lake_spark.py")


def is_spark(classname: str, name: str) -> bool:
    """Whether a JUnit case is a ``spark``-marked test (the engine cases on Spark, the normalise tests)."""
    return classname.endswith("test_lake_spark") or "-spark-" in name


def cases(junit: Path) -> list[dict[str, Any]]:
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                status = child.tag
            elif child.tag == "skipped":
                status = "xfailed" if "xfail" in (child.get("type") or "") else "skipped"
        out.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "spark": is_spark(case.get("classname") or "", case.get("name") or ""),
                "seconds": float(case.get("time") or 0.0),
                "status": status,
            }
        )
    return out


def summary(all_cases: list[dict[str, Any]], wall: float | None, load: list[float] | None) -> dict[str, Any]:
    spark = [c for c in all_cases if c["spark"]]
    total = sum(c["seconds"] for c in spark)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before_after": load,
        "wall_seconds_both_files": wall,
        "spark_cases": len(spark),
        "spark_seconds": total,
        "spark_minutes": total / 60,
        "spark_failed": [c["test"] for c in spark if c["status"] in ("failure", "error")],
        "slowest": sorted(spark, key=lambda c: -c["seconds"])[:10],
        "cases": spark,
    }


def main(args: list[str]) -> None:
    wall = load = None
    if args[:1] == ["--from"]:
        junit = Path(args[1])
    else:
        junit = Path(tempfile.mkdtemp()) / "junit.xml"
        before = list(os.getloadavg())
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "pytest", "-q", *FILES, "-p", "no:cacheprovider", f"--junitxml={junit}"]
        subprocess.run(cmd, cwd=ROOT, check=False)
        wall = time.perf_counter() - t
        load = before + list(os.getloadavg())
    doc = summary(cases(junit), wall, load)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{doc['spark_cases']} Spark cases, {doc['spark_seconds']:.0f} s; wrote {RESULTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
