"""Engines: the Ibis backend the metrics run on, chosen by name.

* ``duckdb`` on the workspace file (the default), or on a lake (views over
  the Parquet datasets, in an in-memory DuckDB);
* ``spark`` (PySpark) on a lake: each canonical table is a temporary view
  over its Parquet dataset, in a Spark session whose master comes from
  ``--spark-master``, ``YIELDMETER_SPARK_MASTER``, the ``engine:`` section of
  ``yieldmeter.yaml`` (``master:``), else ``local[*]``.

Either way the backend's tables are exactly the canonical tables, so every
metric (written once, in Ibis) runs unchanged. What does not work on an engine
is declared in :data:`UNSUPPORTED`, and nowhere else: :func:`require` turns a
gap into a clear message, and the shared engine tests mark the same cases as
strict expected failures, so a gap that starts working fails the tests until
its line here is removed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from yieldmeter.lake.layout import Lake, LakeError, lake_schemas

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ENGINES = ("duckdb", "spark")
#: Tables a lake may lack; absent, they are not registered (``Tables.scores`` is then None and
#: the value engine scores in memory, exactly as on a store that was never scored).
OPTIONAL_TABLES = ("scores",)
DEFAULT_MASTER = "local[*]"

#: Spark settings for a small local session; a cluster's own settings win (see docs/scale-out.md).
LOCAL_SPARK_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
}

#: (engine, capability) -> why it does not work there. The one place engine gaps live.
#: Capabilities are Workspace / service method names (``spend``, ``value.funnel``...) or commands.
UNSUPPORTED: dict[tuple[str, str], str] = {
    ("spark", "value.waste"): (
        "the example list per waste kind is an ordered string aggregation (group_concat with order_by, "
        "metrics/waste.py), which Ibis 12 does not compile for PySpark; run waste on DuckDB over the lake "
        "(--engine duckdb --lake PATH)"
    ),
    ("spark", "ingest"): (
        "Spark reads a lake and never writes the workspace store; write adapter output to the lake with "
        "`yieldmeter ingest PATH --to-lake LAKE` or normalise raw telemetry with `yieldmeter spark normalise`"
    ),
}


class EngineGap(RuntimeError):
    """A capability that an engine does not offer (see :data:`UNSUPPORTED`)."""


def gap(engine: str, capability: str) -> str | None:
    """Why ``capability`` does not run on ``engine``, or None when it does."""
    return UNSUPPORTED.get((engine, capability))


def require(engine: str, capability: str) -> None:
    """Raise :class:`EngineGap` with the declared reason when ``capability`` is a gap of ``engine``."""
    reason = gap(engine, capability)
    if reason is not None:
        raise EngineGap(f"`{capability}` is not supported on the {engine} engine: {reason}")


@dataclass(frozen=True)
class EngineSettings:
    """Which engine, on what data, with which Spark master and settings."""

    engine: str = "duckdb"
    lake: str | None = None
    master: str = DEFAULT_MASTER
    spark_conf: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.engine == "spark" and not self.lake:
            raise ValueError(
                "the spark engine reads a lake: pass --lake PATH (or set YIELDMETER_LAKE, or `lake:` in the "
                "engine: section of yieldmeter.yaml); write one with `yieldmeter lake export PATH`"
            )

    @property
    def on_lake(self) -> bool:
        return self.lake is not None

    @classmethod
    def resolve(
        cls,
        *,
        engine: str | None = None,
        lake: str | None = None,
        master: str | None = None,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> EngineSettings:
        """Settings from, first to last: the arguments, the environment, the ``engine:`` config section.

        Environment: ``YIELDMETER_ENGINE``, ``YIELDMETER_LAKE``, ``YIELDMETER_SPARK_MASTER``.
        Config section keys: ``name`` (or ``engine``), ``lake``, ``master``, ``spark_conf`` (a mapping).
        """
        env = os.environ if env is None else env
        config = config or {}
        unknown = set(config) - {"name", "engine", "lake", "master", "spark_conf"}
        if unknown:
            raise ValueError(
                f"yieldmeter.yaml engine: unknown key(s) {', '.join(sorted(unknown))}; "
                "known: name, lake, master, spark_conf"
            )
        name = (
            engine or env.get("YIELDMETER_ENGINE") or config.get("name") or config.get("engine") or "duckdb"
        )
        lake = lake or env.get("YIELDMETER_LAKE") or config.get("lake")
        master = master or env.get("YIELDMETER_SPARK_MASTER") or config.get("master") or DEFAULT_MASTER
        conf = {str(k): str(v) for k, v in (config.get("spark_conf") or {}).items()}
        return cls(str(name), str(lake) if lake else None, str(master), conf)


# -- Spark session ---------------------------------------------------------------------------
def spark_session(master: str = DEFAULT_MASTER, conf: Mapping[str, str] | None = None) -> SparkSession:
    """The process's Spark session (created on first use, then shared: a start costs ~10 s)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise EngineGap(
            "the spark engine needs PySpark and a Java 17+ runtime: pip install 'yieldmeter[spark]' "
            "(and apt-get install default-jre-headless)"
        ) from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.master(master).appName("yieldmeter")
    settings = dict(LOCAL_SPARK_CONF) if master.startswith("local") else {"spark.sql.session.timeZone": "UTC"}
    if master.startswith("local"):
        # a handful of shuffle partitions: the default 200 costs seconds per stage on small data
        settings["spark.sql.shuffle.partitions"] = "8"
        # Python workers (mapInArrow in `spark normalise`) run this interpreter, which has yieldmeter
        settings["spark.pyspark.python"] = sys.executable
        settings["spark.pyspark.driver.python"] = sys.executable
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


# -- backends ----------------------------------------------------------------------------------
def _spark_type(t: Any) -> str:
    import pyarrow as pa

    if pa.types.is_string(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_integer(t):
        return "bigint"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_date(t):
        return "date"
    raise TypeError(f"no Spark type for {t}")


def register_spark(session: SparkSession, lake: Lake) -> None:
    """One temporary view per lake table, with exactly the canonical columns (missing ones as nulls)."""
    from pyspark.sql import functions as F

    for name, schema in lake_schemas().items():
        if name in OPTIONAL_TABLES and not lake.has_data(name):
            continue
        ddl = ", ".join(f"`{f.name}` {_spark_type(f.type)}" for f in schema)
        if lake.has_data(name):
            # The declared schema, not an inferred one: no schema-inference job per table, and a
            # column that older files lack reads as null.
            df = session.read.schema(ddl).option("basePath", lake.url(name)).parquet(lake.url(name))
            df = df.select(*[F.col(f"`{f.name}`") for f in schema])
        else:
            df = session.createDataFrame([], ddl)
        df.createOrReplaceTempView(name)


def register_duckdb(con: Any, lake: Lake) -> None:
    """One view per lake table in a DuckDB connection (ibis backend), exactly the canonical columns."""
    from yieldmeter.store.duckdb_store import duck_type

    for name, schema in lake_schemas().items():
        if name in OPTIONAL_TABLES and not lake.has_data(name):
            continue
        q = '"' + name.replace('"', '""') + '"'
        if lake.has_data(name):
            files = ", ".join("'" + f.replace("'", "''") + "'" for f in lake.files(name))
            src = f"read_parquet([{files}], hive_partitioning = false, union_by_name = true)"
            present = set(
                con.raw_sql(f"DESCRIBE SELECT * FROM {src}").fetch_arrow_table().column(0).to_pylist()
            )
            cols = ", ".join(
                f'CAST("{f.name}" AS {duck_type(f.type)}) AS "{f.name}"'
                if f.name in present
                else f'CAST(NULL AS {duck_type(f.type)}) AS "{f.name}"'
                for f in schema
            )
            con.raw_sql(f"CREATE OR REPLACE VIEW {q} AS SELECT {cols} FROM {src}")
        else:
            con.create_table(name, obj=schema.empty_table(), temp=False, overwrite=True)


def connect(settings: EngineSettings) -> Any:
    """The Ibis backend for ``settings`` on its lake (the workspace's own store needs no call here)."""
    if settings.lake is None:
        raise LakeError("no lake given: the duckdb engine on the workspace file uses the workspace's store")
    lake = Lake(settings.lake)
    if not lake.exists():
        raise LakeError(
            f"no yieldmeter lake at {settings.lake} (no _manifest.json): write one with "
            "`yieldmeter lake export PATH` or `yieldmeter ingest FILES --to-lake PATH`"
        )
    lake.check_version()
    import ibis

    if settings.engine == "spark":
        session = spark_session(settings.master, settings.spark_conf)
        register_spark(session, lake)
        return ibis.pyspark.connect(session)
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    register_duckdb(con, lake)
    return con


def materialise(con: Any, name: str, expr: Any) -> Any:
    """Compute ``expr`` once into a session-scoped table of ``con`` and return it as an Ibis table.

    DuckDB: a temporary table. Spark: Ibis has no temporary tables there, so a temporary view
    cached in the session (computed on first use, kept in executor memory).
    """
    if getattr(con, "name", "") == "pyspark":
        table = con.create_view(name, expr, overwrite=True)
        con._session.catalog.cacheTable(name)
        return table
    return con.create_table(name, obj=expr, temp=True, overwrite=True)
