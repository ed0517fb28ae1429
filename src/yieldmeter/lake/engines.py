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
gap into a clear message (a report section says "unavailable on this engine"),
``yieldmeter lake engines`` lists the table, and the shared engine tests mark
the same cases as strict expected failures, so a gap that starts working fails
the tests until its line here is removed.

The Spark master: ``--spark-master`` / ``YIELDMETER_SPARK_MASTER`` / ``master:``
in the config when given; else the one ``spark-submit`` (or ``pyspark``) chose
for this driver, never overridden; else ``MASTER`` / ``SPARK_MASTER`` from the
environment; else ``local[*]`` (see :func:`choose_master`).
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
OPTIONAL_TABLES = ("scores", "unit_values")
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
#: Every gap concerns a workspace reading a lake (``--lake``): ``duckdb`` is DuckDB over the lake,
#: ``spark`` is Spark over it. DuckDB on the workspace's own file is the reference and has none.
#: Capabilities are Workspace / service method names (``spend``, ``value.funnel``...) or commands.
_NO_STORE = (
    "a workspace reading a lake has no store of its own, so what the command writes would vanish "
    "with the process; "
)
#: How to reach the workspace's own store when a lake was chosen: no --engine/--lake; a lake that
#: yieldmeter.yaml or YIELDMETER_LAKE names is put aside by an empty one.
_OWN_STORE = (
    "(no --engine/--lake; `--lake ''` puts aside a lake that yieldmeter.yaml or YIELDMETER_LAKE names)"
)
UNSUPPORTED: dict[tuple[str, str], str] = {
    ("spark", "value.waste"): (
        "the example list per waste kind is DuckDB's top-n aggregate min_by(arg, key, n) (metrics/waste.py), "
        "which yieldmeter does not translate for Spark; run waste on DuckDB over the lake "
        "(--engine duckdb --lake PATH)"
    ),
    **{
        (engine, "ingest"): (
            f"{engine} over a lake reads it and never writes it through the workspace (this includes "
            "`budgets add`, which records a budget as an ingest); write adapter output to the lake with "
            "`yieldmeter ingest PATH --to-lake LAKE`, normalise raw telemetry with `yieldmeter spark "
            "normalise`, or ingest into the workspace's own store " + _OWN_STORE
        )
        for engine in ENGINES
    },
    **{
        (engine, "value.score"): (
            "scores are not stored on a lake: each report run over it scores the work units in memory "
            "(the same model `yieldmeter score` stores), so there is nothing to run ahead; "
            "`yieldmeter score` stores scores in a workspace's own store"
        )
        for engine in ENGINES
    },
    **{
        (engine, "finops.alerts"): (
            "alert state (what fired, when, what was delivered) lives in the workspace's own store, not "
            "in the lake; evaluate and list alerts on the workspace " + _OWN_STORE + ", where `serve` "
            "and ingests keep it; budgets, forecasts and anomalies do run on the lake"
        )
        for engine in ENGINES
    },
    **{
        (engine, "serve"): (
            "the server receives telemetry into the workspace's own store and answers the dashboard and "
            "the REST API from it; serve the workspace without --engine/--lake (YIELDMETER_ENGINE, "
            "YIELDMETER_LAKE, `engine:` in yieldmeter.yaml), and run reports over the lake with "
            "`yieldmeter --engine ENGINE --lake PATH report ...`"
        )
        for engine in ENGINES
    },
    **{
        (engine, "store.write"): (
            _NO_STORE + "this covers API keys (`keys create|revoke`) and capacity measurements "
            "(`capacity bench`): run those on the workspace " + _OWN_STORE
        )
        for engine in ENGINES
    },
}


class EngineGap(RuntimeError):
    """A capability that an engine does not offer (see :data:`UNSUPPORTED`).

    ``reason`` is the declared text alone (what a report section shows), ``str(exc)`` names the
    capability and the engine too.
    """

    def __init__(self, message: str, *, engine: str = "", capability: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.engine = engine
        self.capability = capability
        self.reason = reason or message


def gap(engine: str, capability: str) -> str | None:
    """Why ``capability`` does not run on ``engine``, or None when it does."""
    return UNSUPPORTED.get((engine, capability))


def require(engine: str, capability: str) -> None:
    """Raise :class:`EngineGap` with the declared reason when ``capability`` is a gap of ``engine``."""
    reason = gap(engine, capability)
    if reason is not None:
        raise EngineGap(
            f"`{capability}` is not supported on the {engine} engine over a lake: {reason}",
            engine=engine,
            capability=capability,
            reason=reason,
        )


@dataclass(frozen=True)
class EngineSettings:
    """Which engine, on what data, with which Spark master and settings."""

    engine: str = "duckdb"
    lake: str | None = None
    #: None: not configured; :func:`choose_master` decides when the session starts
    master: str | None = None
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
        An empty value (``--lake ''``, ``YIELDMETER_LAKE=``) chooses no lake, over a lake that a
        later source names: the workspace's own store.
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
        lake = next(
            (v for v in (lake, env.get("YIELDMETER_LAKE"), config.get("lake")) if v is not None), None
        )
        master = master or env.get("YIELDMETER_SPARK_MASTER") or config.get("master")
        # a YAML true is Spark's "true", not Python's "True"
        conf = {
            str(k): str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in (config.get("spark_conf") or {}).items()
        }
        return cls(str(name), str(lake) if lake else None, str(master) if master else None, conf)


# -- Spark session ---------------------------------------------------------------------------
#: Set in a Python driver that ``spark-submit`` or the ``pyspark`` shell started: the JVM is
#: already up with the master and settings they were given.
LAUNCHED_BY_SPARK = "PYSPARK_GATEWAY_PORT"


def choose_master(
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """The master to set on the session builder, or None to leave it to ``spark-submit``.

    First to last: ``master`` (``--spark-master``, ``YIELDMETER_SPARK_MASTER``, ``master:`` in
    the config), ``spark.master`` in the configured ``spark_conf``; then, under ``spark-submit``
    (or ``pyspark``), None: its ``--master yarn`` / ``k8s://...`` stands and is never overridden;
    then ``MASTER`` or ``SPARK_MASTER`` from the environment; else ``local[*]``.
    """
    env = os.environ if env is None else env
    if master:
        return master
    if conf and conf.get("spark.master"):
        return conf["spark.master"]
    if env.get(LAUNCHED_BY_SPARK):
        return None
    return env.get("MASTER") or env.get("SPARK_MASTER") or DEFAULT_MASTER


def session_settings(master: str | None, conf: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings a new session gets: a cluster's own settings win, a local one gets small-data ones."""
    local = master is not None and master.startswith("local")
    settings = dict(LOCAL_SPARK_CONF) if local else {"spark.sql.session.timeZone": "UTC"}
    if local:
        # a handful of shuffle partitions: the default 200 costs seconds per stage on small data
        settings["spark.sql.shuffle.partitions"] = "8"
        # Python workers (mapInArrow in `spark normalise`) run this interpreter, which has yieldmeter
        settings["spark.pyspark.python"] = sys.executable
        settings["spark.pyspark.driver.python"] = sys.executable
    settings.update(conf or {})
    return settings


def spark_session(
    master: str | None = None, conf: Mapping[str, str] | None = None, *, env: Mapping[str, str] | None = None
) -> SparkSession:
    """The process's Spark session (created on first use, then shared: a start costs ~10 s).

    The master is :func:`choose_master`'s: a driver started by ``spark-submit --master yarn``
    keeps yarn unless a master is configured for yieldmeter explicitly.
    """
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
    chosen = choose_master(master, conf, env)
    builder = SparkSession.builder.appName("yieldmeter")
    if chosen is not None:
        builder = builder.master(chosen)
    settings = session_settings(chosen, conf)
    if chosen is not None and chosen.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def lake_session(session: SparkSession) -> SparkSession:
    """A session of its own for one lake: the same SparkContext (executors, cache), its own views.

    A lake's tables are temporary views named like the canonical tables, so two lakes read in one
    session would replace each other's views (and a lake without ``scores`` would see the other
    lake's). The child gets the parent's SQL settings that can be set at run time (a platform's
    session, e.g. object-store credentials, keeps working).
    """
    child = session.newSession()
    for key, value in session.conf.getAll.items():
        if session.conf.isModifiable(key):
            child.conf.set(key, value)
    return child


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
            session.catalog.dropTempView(name)  # one an earlier registration left
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
            files = ", ".join("'" + lake.data_url(f).replace("'", "''") + "'" for f in lake.files(name))
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
        session = lake_session(spark_session(settings.master, settings.spark_conf))
        register_spark(session, lake)
        return spark_backend(session)
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    con.raw_sql("SET enable_progress_bar_print = false")  # as the store's: nothing drawn on the terminal
    register_duckdb(con, lake)
    return con


def spark_backend(session: SparkSession) -> Any:
    """The Ibis backend on ``session``, made to answer as DuckDB does where Ibis 12 differs.

    * Timestamps are UTC instants, as on DuckDB: Spark's ``TIMESTAMP`` is an instant shown in
      the session time zone (UTC here), but Ibis types it naive, so results came back naive
      and code comparing them with aware datetimes (FinOps runaway agents) failed on Spark
      only. Tables of this backend type them ``timestamp('UTC')``; the SQL is the same.
    * ``Table.cache()`` registers the in-memory tables it reads (``ibis.memtable``: labour
      rates, scores scored in memory) before compiling, as every other execution path does;
      Ibis 12 forgot, and a cached FinOps intermediate failed with TABLE_OR_VIEW_NOT_FOUND.
    """
    import ibis
    import ibis.expr.datatypes as dt

    con = ibis.pyspark.connect(session)
    get_schema = con.get_schema
    create = con._create_cached_table

    def utc_schema(*args: Any, **kwargs: Any) -> Any:
        schema = get_schema(*args, **kwargs)
        return ibis.schema(
            {
                name: dt.Timestamp(timezone="UTC", nullable=t.nullable)
                if t.is_timestamp() and t.timezone is None
                else t
                for name, t in schema.items()
            }
        )

    def create_cached_table(name: str, expr: Any) -> Any:
        con._run_pre_execute_hooks(expr)
        return create(name, expr)

    con.get_schema = utc_schema
    con._create_cached_table = create_cached_table
    return con


def materialise(con: Any, name: str, expr: Any) -> Any:
    """Compute ``expr`` once into a session-scoped table of ``con`` and return it as an Ibis table.

    DuckDB: a temporary table. Spark: a temporary view of a cached DataFrame, computed here
    (a ``count`` fills the cache). The view is made from the DataFrame, so it holds the
    resolved plan, not SQL text: the in-memory tables Ibis registered for ``expr`` (labour
    rates, scores scored in memory) may be dropped later without breaking it. A view made
    with ``CREATE TEMPORARY VIEW ... AS <sql>`` re-reads its SQL on every use and failed
    with TABLE_OR_VIEW_NOT_FOUND once Ibis had dropped such a table.
    """
    if getattr(con, "name", "") == "pyspark":
        session = con._session
        if session.catalog.tableExists(name):
            session.catalog.uncacheTable(name)  # the previous result of the same name
        con._run_pre_execute_hooks(expr)  # registers the expression's in-memory tables
        df = session.sql(con.compile(expr)).cache()
        df.count()
        df.createOrReplaceTempView(name)
        return con.table(name)
    return con.create_table(name, obj=expr, temp=True, overwrite=True)
