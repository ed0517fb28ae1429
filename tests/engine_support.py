"""Shared pieces of the engine tests: data sets, the Spark session, the report set, comparison.

Every report is a function of a Workspace returning named Arrow tables; the
engine tests run each one on the workspace's own DuckDB store, on DuckDB over
the exported lake, and on Spark over the same lake, and compare the figures.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
REL = 1e-9

#: Value service methods that are plumbing, not reports (everything else public is a report).
VALUE_NOT_REPORTS = {"tables", "cost_lines", "facts", "window", "invalidate", "score"}


def spark_available() -> str | None:
    """Why Spark tests cannot run here, or None."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install '.[spark]')"
    if shutil.which("java") is None:
        return "no java runtime (apt-get install default-jre-headless)"
    return None


def spark_session_for_tests() -> Any:
    """One local[2] session for the whole run (a start costs ~10 s)."""
    from yieldmeter.lake.engines import spark_session

    return spark_session("local[2]", {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"})


def build_example_workspace(dest: Path) -> Path:
    from yieldmeter.app.workspace import Workspace

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "yieldmeter.yaml", dest / "yieldmeter.yaml")
    with Workspace.open(dest, create=True) as ws:
        ws.ingest_paths([EXAMPLES / "data"])
    return dest


def build_simulated_workspace(dest: Path, raw: Path) -> Path:
    """A small simulated organisation (all workflows, one week) through the real ingest path."""
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.simulate.run import simulate
    from yieldmeter.simulate.scenarios import SCENARIOS, SimulationParams, min_users

    params = SimulationParams(scenario="enterprise", days=7, users=min_users(SCENARIOS["enterprise"]))
    result = simulate(raw, params)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(result.config_path, dest / "yieldmeter.yaml")
    with Workspace.open(dest, create=True) as ws:
        ws.ingest_paths(result.source_paths)
        ws.value.score()
    return dest


# -- the report set -------------------------------------------------------------------------
def _named(result: Any, name: str) -> dict[str, pa.Table]:
    """Arrow tables out of a report result (a table, or a dataclass holding tables)."""
    if isinstance(result, pa.Table):
        return {name: result}
    if is_dataclass(result):
        return {
            f"{name}.{f.name}": getattr(result, f.name)
            for f in fields(result)
            if isinstance(getattr(result, f.name), pa.Table)
        }
    if isinstance(result, dict):
        return {name: pa.Table.from_pylist([{k: v for k, v in result.items() if not isinstance(v, dict)}])}
    raise TypeError(f"{name}: cannot compare a {type(result).__name__}")


def _status(ws: Any) -> dict[str, Any]:
    info = ws.status()
    return {**info["tables"], **{f"total_{k}": v for k, v in info["totals"].items()}}


#: Workspace reports: capability name -> call.
WORKSPACE_REPORTS: dict[str, Callable[[Any], Any]] = {
    "spend": lambda ws: ws.spend(["team", "workflow", "model", "day"]),
    "spend.by_month": lambda ws: ws.spend(["month", "provider"]),
    "spend.total": lambda ws: ws.spend([]),
    "unpriced": lambda ws: ws.unpriced(),
    "priced_calls": lambda ws: ws.priced_calls().to_pyarrow(),
    "status": _status,
    "quarantine": lambda ws: ws.quarantine(1000).drop_columns(["ingested_at"]),
}


def value_reports() -> dict[str, Callable[[Any], Any]]:
    """Every public report of the value service (``ws.value``), found by introspection."""
    try:
        from yieldmeter.app.value import ValueService
    except ImportError:
        return {}
    out: dict[str, Callable[[Any], Any]] = {}
    for name in sorted(vars(ValueService)):
        if name.startswith("_") or name in VALUE_NOT_REPORTS or not callable(getattr(ValueService, name)):
            continue
        if name == "value_per_token":
            out["value.value_per_token"] = lambda ws: ws.value.value_per_token(normalise=True)
            out["value.value_per_token.workflow"] = lambda ws: ws.value.value_per_token(
                workflow=_first_workflow(ws)
            )
            continue
        out[f"value.{name}"] = lambda ws, name=name: getattr(ws.value, name)()
    return out


def _first_workflow(ws: Any) -> str | None:
    names = sorted(w.workflow for w in ws.config.workflows)
    return names[0] if names else None


def all_reports() -> dict[str, Callable[[Any], Any]]:
    return {**WORKSPACE_REPORTS, **value_reports()}


def run_report(ws: Any, name: str) -> dict[str, pa.Table]:
    return _named(all_reports()[name](ws), name)


# -- comparison -------------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.replace(tzinfo=None) if v.tzinfo is None else v.astimezone(tz=None).replace(tzinfo=None)
    return v


def _norm_rows(t: pa.Table) -> list[dict[str, Any]]:
    from datetime import UTC

    cols = {}
    for name in t.column_names:
        col = t.column(name)
        if pa.types.is_timestamp(col.type):
            # Spark hands back naive UTC, DuckDB tz-aware UTC: compare as naive UTC
            col = col.cast(pa.timestamp("us", tz="UTC")) if col.type.tz else col.cast(pa.timestamp("us"))
            vals = [
                v.astimezone(UTC).replace(tzinfo=None) if v is not None and v.tzinfo else v
                for v in col.to_pylist()
            ]
        elif pa.types.is_decimal(col.type):
            vals = [float(v) if v is not None else None for v in col.to_pylist()]
        else:
            vals = col.to_pylist()
        cols[name] = vals
    return [dict(zip(cols, row, strict=True)) for row in zip(*cols.values(), strict=True)] if cols else []


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    out = []
    for k in sorted(row):
        v = row[k]
        if isinstance(v, float):
            v = None if math.isnan(v) else float(f"{v:.6g}")
        out.append((v is None, str(v)))
    return tuple(out)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)
    return _plain(a) == _plain(b)


def assert_same_figures(expected: pa.Table, actual: pa.Table, label: str) -> None:
    """Same columns, same rows (any order), every number equal to 1e-9 relative."""
    assert expected.column_names == actual.column_names, f"{label}: columns differ"
    assert expected.num_rows == actual.num_rows, f"{label}: {expected.num_rows} rows vs {actual.num_rows}"
    e = sorted(_norm_rows(expected), key=_key)
    a = sorted(_norm_rows(actual), key=_key)
    for i, (re_, ra) in enumerate(zip(e, a, strict=True)):
        bad = [k for k in re_ if not _same(re_[k], ra[k])]
        if bad:
            pytest.fail(f"{label} row {i}: " + ", ".join(f"{k}: {re_[k]!r} != {ra[k]!r}" for k in bad))
