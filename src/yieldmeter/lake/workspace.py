"""A Workspace whose metrics run on a lake, through DuckDB or Spark.

:func:`open_on_engine` is what ``cli.common.workspace()`` calls when an
engine or a lake is chosen. The result is a plain :class:`Workspace` (same
services, same reports) with ``backend`` set to the engine's Ibis backend; the
few Workspace methods that read the store directly are answered from the lake
instead, and writing methods refuse with the declared reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from yieldmeter.app.workspace import Workspace
from yieldmeter.config import CONFIG_FILE, Config, load_config
from yieldmeter.lake.engines import EngineGap, EngineSettings, connect
from yieldmeter.schema import TABLES
from yieldmeter.store.duckdb_store import Store


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
        raise EngineGap(
            f"this workspace reads the lake {self.settings.lake}; ingest into it with "
            f"`yieldmeter ingest FILES --to-lake {self.settings.lake}`"
        )

    def ingest_paths(self, *args: Any, **kwargs: Any) -> Any:
        return self.ingest_batches()

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
    config = load_config(root / CONFIG_FILE)
    backend = connect(settings)
    if settings.engine == "duckdb":
        # The store shares the lake's DuckDB connection, so store-side helpers (temporary tables
        # for materialised intermediates, status counts) see the lake's views.
        store = Store(backend.con, None)
        store._ibis = backend  # one Ibis backend object per connection, or Ibis sees two backends
    else:
        store = Store.open(None)
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
    root = Path(path).expanduser().resolve()
    config_path = root / CONFIG_FILE
    section = load_config(config_path).engine if config_path.exists() else {}
    settings = EngineSettings.resolve(engine=engine, lake=lake, master=master, config=section)
    if settings.lake is None:
        return Workspace.open(root, create=create)
    return open_on_engine(root, settings)
