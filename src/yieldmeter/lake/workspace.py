"""A Workspace whose metrics run on a lake, through DuckDB or Spark.

:func:`open_on_engine` is what ``cli.common.workspace()`` calls when an
engine or a lake is chosen. The result is a plain :class:`Workspace` (same
services, same reports) with ``backend`` set to the engine's Ibis backend; the
few Workspace methods that read the store directly are answered from the lake
instead, and writing methods refuse with the declared reason
(:data:`yieldmeter.lake.engines.UNSUPPORTED`, through :func:`require`): ingest,
scoring, alert state, and any other write to the workspace store
(:class:`LakeStore`), which here is a scratch store that would vanish with the
process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa

from yieldmeter.app.finops import FinOpsService
from yieldmeter.app.workspace import NoWorkspace, Workspace
from yieldmeter.config import CONFIG_FILE, Config, load_config
from yieldmeter.lake.engines import EngineSettings, connect, require
from yieldmeter.schema import TABLES
from yieldmeter.store.duckdb_store import Store


class LakeStore(Store):
    """The scratch store of a lake workspace: reads and temporary tables, never a kept write.

    Every method that would write rows (which nothing would keep: the store is in memory, or
    the lake's DuckDB views) raises the declared ``store.write`` gap of the engine instead of
    reporting success; a capability with its own declaration (ingest, scoring, alerts) is
    refused before it gets here.
    """

    engine: str | None = None

    def _refuse(self) -> None:
        if self.engine is not None:
            require(self.engine, "store.write")

    @staticmethod
    def _mark_written(con: Any, names: Any) -> None:
        """Nothing: the scratch store has no ``meta`` and keeps nothing derived from its writes."""

    def _underived(self) -> bool:
        """Always: with no ``meta`` to say otherwise, a batch's units are derived from all their calls."""
        return True

    def _set_underived(self, con: Any, underived: bool) -> None:
        """Nothing: the scratch store has no ``meta``."""

    def derive_if_unsure(self) -> bool:
        """Nothing: the scratch store keeps no work units of its own."""
        return False

    def _key_hashes(self, con: Any) -> None:
        """None: with no ``meta`` to say whether they are current, ids are looked up in the table."""
        return None

    def write(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse()
        return super().write(*args, **kwargs)

    def write_batch(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse()
        return super().write_batch(*args, **kwargs)

    def replace(self, name: str, rows: pa.Table) -> None:
        self._refuse()
        super().replace(name, rows)

    def append(self, name: str, rows: pa.Table) -> None:
        self._refuse()
        super().append(name, rows)

    def derive_work_units(self, *args: Any, **kwargs: Any) -> int:
        self._refuse()
        return super().derive_work_units(*args, **kwargs)


class LakeFinOps(FinOpsService):
    """FinOps over a lake: budgets, forecasts, anomalies, showback...; alert state is declared a gap."""

    def _refuse(self) -> None:
        require(self.ws.engine, "finops.alerts")  # type: ignore[attr-defined]

    def evaluate_alerts(self, now: datetime | None = None) -> Any:
        self._refuse()
        return super().evaluate_alerts(now)

    def evaluate_on_ingest(self) -> None:
        """Nothing: a lake workspace never ingests (and keeps no alert state)."""

    def alerts(self, status: str | None = "firing", limit: int = 200, *, people: bool = True) -> pa.Table:
        self._refuse()
        return super().alerts(status, limit, people=people)

    def deliveries(self, limit: int = 200) -> pa.Table:
        self._refuse()
        return super().deliveries(limit)


class LakeWorkspace(Workspace):
    """A Workspace reading a lake. ``engine`` names the engine for gap messages."""

    def __init__(
        self, root: Path, config: Config, store: Store, backend: Any, settings: EngineSettings
    ) -> None:
        super().__init__(root, config, store, backend=backend)
        self.settings = settings

    @property
    def engine(self) -> str:
        return self.settings.engine

    def sync_reference(self) -> None:
        """The lake carries its own workflows, prices and model map (written with the data)."""

    def ingest_batches(self, *args: Any, **kwargs: Any) -> Any:
        require(self.engine, "ingest")

    def ingest_paths(self, *args: Any, **kwargs: Any) -> Any:
        require(self.engine, "ingest")

    @cached_property
    def finops(self) -> FinOpsService:
        return LakeFinOps(self)

    def status(self) -> dict[str, Any]:
        info = super().status()
        info["engine"] = self.engine
        info["lake"] = self.settings.lake
        return info

    def table_counts(self) -> dict[str, int]:
        be = self.backend
        return {name: int(be.table(name).count().to_pyarrow().as_py()) for name in [*TABLES, "quarantine"]}

    def quarantine(self, limit: int = 50) -> pa.Table:
        q = self.backend.table("quarantine")
        return q.order_by([q.ingested_at.desc(), q.source, q.position]).limit(limit).to_pyarrow()


def open_on_engine(path: Path | str, settings: EngineSettings) -> Workspace:
    """The workspace at ``path`` (its ``yieldmeter.yaml`` when present) reading ``settings.lake``.

    Without a lake, the duckdb engine is the workspace's own store: plain :meth:`Workspace.open`.
    """
    if settings.lake is None:
        return Workspace.open(path)
    root = Path(path).expanduser().resolve()
    if not (root / CONFIG_FILE).is_file():
        # the lake holds the rows; labour rates, privacy and budgets' settings are the
        # workspace's: a mistyped --workspace must not report with the defaults
        raise NoWorkspace(
            f"no yieldmeter workspace at {root} (no {CONFIG_FILE}): a report over a lake takes its "
            f"settings from the workspace's {CONFIG_FILE}; pass --workspace, or run `yieldmeter init {root}`"
        )
    config = load_config(root / CONFIG_FILE)
    backend = connect(settings)
    store: LakeStore
    if settings.engine == "duckdb":
        # The store shares the lake's DuckDB connection, so store-side helpers (temporary tables
        # for materialised intermediates, status counts) see the lake's views.
        store = LakeStore(backend.con, None)
        store._ibis = backend  # one Ibis backend object per connection, or Ibis sees two backends
    else:
        store = LakeStore.open(None)  # type: ignore[assignment]
    store.engine = settings.engine  # from here on, a write is refused with the declared reason
    ws = LakeWorkspace(root, config, store, backend, settings)
    ws.store.counts = ws.table_counts  # type: ignore[method-assign]
    return ws


def open_workspace(
    path: Path | str,
    *,
    create: bool = False,
    engine: str | None = None,
    lake: str | None = None,
    master: str | None = None,
) -> Workspace:
    """The workspace at ``path`` on the engine chosen by the arguments, the environment or the config.

    With no engine choice anywhere this is exactly :meth:`Workspace.open`.
    """
    settings = engine_settings(path, engine=engine, lake=lake, master=master)
    if settings.lake is None:
        return Workspace.open(Path(path).expanduser().resolve(), create=create)
    return open_on_engine(path, settings)


def engine_settings(
    path: Path | str,
    *,
    engine: str | None = None,
    lake: str | None = None,
    master: str | None = None,
    env: Mapping[str, str] | None = None,
) -> EngineSettings:
    """The engine chosen for the workspace at ``path`` by the arguments, the environment or its config."""
    config_path = Path(path).expanduser().resolve() / CONFIG_FILE
    section = load_config(config_path).engine.settings() if config_path.exists() else None
    return EngineSettings.resolve(engine=engine, lake=lake, master=master, config=section, env=env)


def require_own_store(
    path: Path | str,
    capability: str,
    *,
    engine: str | None = None,
    lake: str | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Raise the declared gap when ``capability`` (``serve``) is asked of a workspace on a lake.

    An engine choice of ``spark``, or any lake, is the engine's gap; ``duckdb`` with no lake is
    the workspace's own store, where everything runs.
    """
    try:
        settings = engine_settings(path, engine=engine, lake=lake, env=env)
    except ValueError:
        # `spark` without a lake is no valid choice for reports either; for this capability the
        # declared gap is the answer that says what to do
        chosen = engine or (os.environ if env is None else env).get("YIELDMETER_ENGINE")
        if chosen:
            require(chosen, capability)
        raise
    if settings.lake is not None or settings.engine != "duckdb":
        require(settings.engine, capability)
