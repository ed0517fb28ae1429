"""Shared pieces of the engine tests: data sets, the Spark session, the report set, comparison.

Every report is a function of a Workspace returning named Arrow tables; the
engine tests run each one on the workspace's own DuckDB store, on DuckDB over
the exported lake, and on Spark over the same lake, and compare the figures.

Reports that return objects rather than tables (role reports, budgets burn-down,
the routing policy, the capacity plan) are flattened by :func:`figures` into
one table of (item, number, text) rows, so every figure they show is compared.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, fields, is_dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
REL = 1e-9

#: Value service methods that are plumbing, not reports (everything else public is a report):
#: ``units`` and ``lines`` return the materialised Ibis tables the reports read.
VALUE_NOT_REPORTS = {"tables", "cost_lines", "facts", "window", "invalidate", "score", "units", "lines"}
#: The section text of a capability an engine declares unsupported (``SectionsBase.guarded``).
ENGINE_GAP_SECTION = "unavailable on this engine"


def _java_major() -> int | None:
    """The major version of the ``java`` on PATH (None: none, or unreadable)."""
    import re
    import subprocess

    java = shutil.which("java")
    if java is None:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if m is None:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def spark_available() -> str | None:
    """Why Spark tests cannot run here, or None.

    In CI (``CI`` set) nothing may be missing: the Spark tests must run there, so instead of a
    reason to skip this raises, and the test run fails saying what to install.
    """
    reason = None
    try:
        import pyspark  # noqa: F401
    except ImportError:
        reason = "pyspark is not installed (pip install '.[spark]')"
    else:
        major = _java_major()
        if major is None:
            reason = "no java runtime (apt-get install default-jre-headless; make system-deps)"
        elif major < 17:
            reason = f"java {major} found; PySpark 4 needs Java 17+ (apt-get install default-jre-headless)"
    if reason is not None and os.environ.get("CI"):
        raise RuntimeError(f"CI is set, so the Spark tests must run, but {reason}")
    return reason


#: The tests' Spark settings. Spark compiles each query's whole stages to Java and plans them
#: again as they run (adaptive execution): on the suite's small data that is most of a query's
#: time. The tests read the figures, not the speed, so they run the plans interpreted and as
#: planned (the same results, by Spark's contract): the Spark cases of ``test_engines`` took 73 s
#: instead of 108-127 s on the examples. ``benchmarks/bench_spark.py`` runs Spark's defaults.
SPARK_TEST_SETTINGS = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
}


def spark_session_for_tests() -> Any:
    """One local[2] session for the whole run (a start costs ~10 s)."""
    from yieldmeter.lake.engines import spark_session

    return spark_session("local[2]", SPARK_TEST_SETTINGS)


def build_example_workspace(dest: Path) -> Path:
    from yieldmeter.app.workspace import Workspace

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "yieldmeter.yaml", dest / "yieldmeter.yaml")
    with Workspace.open(dest, create=True) as ws:
        ws.ingest_paths([EXAMPLES / "data"])
    return dest


def build_simulated_workspace(dest: Path, raw: Path) -> Path:
    """A small simulated organisation (all workflows, eight days) through the real ingest path.

    Eight days, not seven: the weekly outcome reports then cover two periods, so the claims and
    fraud unit values are measured from outcomes (with their error) on every engine.
    """
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.simulate.run import simulate
    from yieldmeter.simulate.scenarios import SCENARIOS, SimulationParams, min_users

    params = SimulationParams(scenario="enterprise", days=8, users=min_users(SCENARIOS["enterprise"]))
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
    """The reports every data set runs: the Workspace's and every public one of the value service."""
    return {**WORKSPACE_REPORTS, **value_reports()}


# -- role reports, FinOps, routing, capacity and exports -----------------------------------------
def report_now(ws: Any) -> datetime:
    """A fixed "now" for a data set: the day after its last call (the same on every engine)."""
    if "_engine_test_now" not in ws.__dict__:
        last = ws.tables().calls.ts.max().to_pyarrow().as_py()
        last = last.replace(tzinfo=UTC) if last.tzinfo is None else last.astimezone(UTC)
        ws.__dict__["_engine_test_now"] = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(
            days=1
        )
    return ws.__dict__["_engine_test_now"]  # type: ignore[no-any-return]


def _role(role: str) -> Callable[[Any], Any]:
    """The role report over every call up to :func:`report_now`: a period that has ended, so the
    sections that depend on the time (forecasts, budgets) are evaluated as of its end, not as of
    the clock, and the reference and the engine run agree."""

    def run(ws: Any) -> Any:
        from yieldmeter.app.reports import ReportFilters

        return ws.reports.role(role, ReportFilters.of(period=f"..{report_now(ws):%Y-%m-%d}"))

    return run


def _left_sections(ws: Any) -> Any:
    """The sections of the FinOps and CFO role reports that no other report builds: named benefit
    owners (CFO) and spend by team, small teams merged (FinOps), as those reports build them.
    Spark runs these instead of the two whole reports (``tests/test_engines.py``: SPARK_LEAVES)."""
    from yieldmeter.app import role_sections as rs
    from yieldmeter.app.reports import ReportFilters
    from yieldmeter.reports.model import Report
    from yieldmeter.reports.roles import _spend_by_team

    svc = ws.reports
    f = ReportFilters.of(period=f"..{report_now(ws):%Y-%m-%d}")
    svc.check_privacy(f)
    owners = svc.guarded("owners", "Named benefit owners", lambda: rs.owners_section(svc, f))
    return Report("left", "", "", f.label, "", "", [owners, _spend_by_team(svc, f)])


def _role_reports() -> dict[str, Callable[[Any], Any]]:
    try:
        from yieldmeter.app.reports import ROLES
    except ImportError:
        return {}
    return {**{f"role.{r}": _role(r) for r in ROLES}, "role.left_sections": _left_sections}


def _burn_down(ws: Any) -> dict[str, Any]:
    now = report_now(ws)
    return {b.budget_id: ws.finops.burn_down(b.budget_id, now) for b in ws.finops.budget_list()}


def _export_focus(ws: Any) -> pa.Table:
    """The FOCUS export as the file it writes (read back), never the path it wrote to."""
    import pyarrow.csv as pacsv

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "focus.csv"
        ws.finops.export_focus(out)
        return pacsv.read_csv(out)


def _route(ws: Any) -> dict[str, Any]:
    """What `yieldmeter route` shows and writes: the table, the totals, the policy, the LiteLLM config."""
    import yaml

    return {
        "table": ws.routing.table(),
        "totals": ws.routing.totals(),
        "frontier": ws.routing.frontier(),
        "policy": json.loads(ws.routing.policy_json()),
        "litellm": yaml.safe_load(ws.routing.litellm_yaml()),
    }


def _capacity_plan(ws: Any) -> Any:
    from yieldmeter.app.capacity import Scope

    # one workflow every data set prices whole (a plan refuses unpriced calls' rent)
    return ws.capacity.plan(Scope(workflow="fraud-review")).to_dict()


def _export_scores(ws: Any) -> pa.Table:
    from yieldmeter.cli.value import SCORE_EXPORT

    return ws.value.scores().select(SCORE_EXPORT)


def _export_benchmarks(ws: Any) -> pa.Table:
    from yieldmeter.cli.value import BENCHMARK_EXPORT

    return ws.value.benchmarks(by="team").rows.select(BENCHMARK_EXPORT)


#: Reports built on the value measures and the Workspace: per role, FinOps, routing, capacity, exports.
SERVICE_REPORTS: dict[str, Callable[[Any], Any]] = {
    "finops.forecast": lambda ws: ws.finops.forecast("team", report_now(ws)),
    "finops.forecast_cpso": lambda ws: ws.finops.forecast_cpso(report_now(ws)),
    "finops.anomalies": lambda ws: ws.finops.anomalies(report_now(ws)),
    "finops.showback": lambda ws: ws.finops.showback(),
    "finops.reconciliation": lambda ws: ws.finops.reconciliation(),
    "finops.initiatives": lambda ws: ws.finops.initiatives(),
    "finops.budgets": lambda ws: ws.finops.budgets(report_now(ws)),
    "finops.burn_down": _burn_down,
    "route": _route,
    "capacity.plan": _capacity_plan,
    "export.focus": _export_focus,
    "export.benchmarks": _export_benchmarks,
    "export.scores": _export_scores,
}


def service_reports() -> dict[str, Callable[[Any], Any]]:
    return {**_role_reports(), **SERVICE_REPORTS}


def every_report() -> dict[str, Callable[[Any], Any]]:
    return {**all_reports(), **service_reports()}


def run_report(ws: Any, name: str) -> dict[str, pa.Table]:
    """The report's figures as named tables; an error is a result too (both sides must agree)."""
    try:
        result = every_report()[name](ws)
    except Exception as exc:
        from yieldmeter.lake.engines import EngineGap

        if isinstance(exc, EngineGap):
            raise
        if name not in service_reports():
            raise
        # a report that fails on the reference must fail the same way on every engine
        return {f"{name}.error": pa.table({"error": [f"{type(exc).__name__}: {exc}"]})}
    if hasattr(result, "sections") and hasattr(result, "role"):
        return {f"{name}.{s.key}": figures(asdict(s), exclude=("generated_at",)) for s in result.sections}
    if isinstance(result, pa.Table) or (is_dataclass(result) and not hasattr(result, "sections")):
        tables = _named(result, name)
        if tables:
            return tables
    return {name: figures(result, exclude=("generated_at", "path"))}


_ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?$")


def figures(obj: Any, exclude: tuple[str, ...] = ()) -> pa.Table:
    """Every value in ``obj`` (dicts, lists, dataclasses, tables) as (item, number, text) rows.

    ``item`` is the value's path (``kpis[0].value``); numbers go in ``number`` (compared to
    1e-9 relative), everything else in ``text``; keys in ``exclude`` (a timestamp of the
    run, a temporary path) are left out.
    """
    rows: list[tuple[str, float | None, str | None]] = []

    def walk(path: str, v: Any) -> None:
        if isinstance(v, pa.Table):
            v = v.to_pylist()
        elif is_dataclass(v) and not isinstance(v, type):
            v = v.to_dict() if hasattr(v, "to_dict") else asdict(v)
        if isinstance(v, dict):
            for k in v:
                if k not in exclude:
                    walk(f"{path}.{k}" if path else str(k), v[k])
        elif isinstance(v, list | tuple):
            for i, x in enumerate(v):
                walk(f"{path}[{i}]", x)
        elif isinstance(v, bool) or v is None:
            rows.append((path, None, None if v is None else str(v)))
        elif isinstance(v, int | float):
            rows.append((path, float(v), None))
        elif isinstance(v, datetime):
            rows.append((path, None, _plain(v).isoformat()))
        elif isinstance(v, date):
            rows.append((path, None, v.isoformat()))
        elif isinstance(v, str) and _ISO_UTC.match(v):
            # a time a report already wrote as text: Spark's naive UTC and DuckDB's aware UTC agree
            rows.append((path, None, _plain(datetime.fromisoformat(v)).isoformat()))
        else:
            rows.append((path, None, str(v)))

    walk("", obj)
    return pa.table(
        {
            "item": pa.array([r[0] for r in rows], pa.string()),
            "number": pa.array([r[1] for r in rows], pa.float64()),
            "text": pa.array([r[2] for r in rows], pa.string()),
        }
    )


def engine_gap_of(table: pa.Table) -> str | None:
    """The reason text when ``table`` is a flattened section an engine declared unavailable."""
    if "item" not in table.column_names:
        return None
    for item, text in zip(table.column("item").to_pylist(), table.column("text").to_pylist(), strict=True):
        if item == "unavailable" and text and text.startswith(ENGINE_GAP_SECTION):
            return str(text)
    return None


def without_gap_notes(table: pa.Table, reasons: set[str]) -> tuple[pa.Table, int]:
    """``table`` (a flattened section) less its notes that name one of the declared gap
    ``reasons`` (a section built without a part its engine lacks says so in a note, e.g. a
    lake's budgets without the alert state), later notes renumbered; and how many were dropped."""
    if "item" not in table.column_names:
        return table, 0
    items, texts = table.column("item").to_pylist(), table.column("text").to_pylist()
    keep, renamed, dropped = [], [], 0
    for i, (item, text) in enumerate(zip(items, texts, strict=True)):
        m = re.fullmatch(r"notes\[(\d+)\]", item or "")
        if m and text and any(r in text for r in reasons):
            dropped += 1
            continue
        keep.append(i)
        renamed.append(f"notes[{int(m.group(1)) - dropped}]" if m else item)
    if not dropped:
        return table, 0
    out = table.take(pa.array(keep, pa.int64()))
    return out.set_column(out.column_names.index("item"), "item", pa.array(renamed, pa.string())), dropped


# -- comparison -------------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    """A datetime as naive UTC (Spark hands back naive UTC, DuckDB aware UTC)."""
    if isinstance(v, datetime):
        return v if v.tzinfo is None else v.astimezone(UTC).replace(tzinfo=None)
    return v


def _norm_rows(t: pa.Table) -> list[dict[str, Any]]:
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
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str) and a != b and a[:1] in "{[" and b[:1] in "{[":
        # figures inside a JSON text column (FOCUS AllocatedMethodDetails): compared as figures
        try:
            return _same(json.loads(a), json.loads(b))
        except ValueError:
            return False
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
