"""The yieldmeter HTTP server: an app factory that mounts route modules.

``create_app(path)`` opens the workspace, starts the single writer thread and
builds a Starlette app from :data:`ROUTE_MODULES`; each module exposes
``routes(ctx) -> list[BaseRoute]``. A later module (REST API, dashboard) is
added by appending its name, or by passing ``route_modules``.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from yieldmeter.config import STORE_DIR
from yieldmeter.server.context import ServerContext, ServerSettings
from yieldmeter.server.decoding import DecodePool
from yieldmeter.server.spool import Spool, replay
from yieldmeter.server.writer import Writer

log = logging.getLogger("yieldmeter.server")

#: The spool's directory, beside the store (replayed at every start; written with
#: ``server.acknowledge: spool``).
SPOOL_DIR = Path(STORE_DIR) / "spool"

#: Modules whose ``routes(ctx)`` make up the server, in order.
ROUTE_MODULES: list[str] = [
    "yieldmeter.server.otlp",
    "yieldmeter.server.ingest_api",
    "yieldmeter.server.api",
    "yieldmeter.server.finops_api",
    "yieldmeter.server.dashboard",
]

#: Modules the server needs only on first use, imported before it serves requests: an import
#: holds the interpreter for its whole run, and every request waits on it (the scoring engine's
#: SciPy took half a second, on the first re-score under load).
PRELOADED = (
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    "yieldmeter.scoring.engine",
)

#: Apps of this process that are serving: the objects frozen by the first are unfrozen by the last.
_serving = 0
_serving_lock = threading.Lock()


def _freeze() -> None:
    """Freeze what is alive now out of the garbage collector's full passes: it lives as long as
    the server. A full pass over it took 150 to 530 ms with the scorer running, and every request
    waited on it. Garbage is collected first, unless another app of the process is serving."""
    global _serving
    with _serving_lock:
        if not _serving:
            gc.collect()
        gc.freeze()
        _serving += 1


def _unfreeze() -> None:
    """The last app of the process to stop makes what was frozen collectable again."""
    global _serving
    with _serving_lock:
        _serving -= 1
        if not _serving:
            gc.unfreeze()


def _health(ctx: ServerContext, spool: Spool) -> list[BaseRoute]:
    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "write_queue": ctx.writer.depth,
                "writes_retrying": ctx.writer.retrying,  # acknowledged (spool) writes that failed
                "decode": ctx.decoder.stats(),
                "spool": spool.stats(),  # what was replayed at start, whatever acknowledge says
                "ingest": ctx.writer.totals.as_dict(),  # since start: spans ignored, calls without model...
            }
        )

    return [Route("/healthz", health, methods=["GET"])]


def create_app(
    workspace_path: Path | str,
    *,
    settings: ServerSettings | None = None,
    route_modules: Sequence[str] | None = None,
    create: bool = False,
) -> Starlette:
    """A Starlette app serving the workspace at ``workspace_path``.

    The workspace is opened now (so a wrong path fails before listening); the
    writer thread starts with the app and stops, after draining, with it.
    ``settings`` default to the ``server:`` section of ``yieldmeter.yaml``.
    """
    from yieldmeter.app.workspace import Workspace

    ws = Workspace.open(workspace_path, create=create)
    # the writer's value service (alert rules after each flush) keeps no tables in the store: a
    # copy of the unit facts per flush would stall ingest, and the readers share theirs in memory
    ws.value.keep = False
    settings = settings or ServerSettings.from_config(ws.config.server)
    writer = Writer(
        ws,
        max_queue=settings.max_queue,
        checkpoint_threshold=settings.checkpoint_threshold,
        duckdb_threads=settings.threads(),
    )
    # what a run answered from the spool and did not commit is replayed at start whatever the
    # setting; the spool then takes new requests only with acknowledge: spool
    spooling = Spool(ws.root / SPOOL_DIR, limit=settings.spool_limit)
    spool = spooling if settings.acknowledge == "spool" else None
    ctx = ServerContext(
        workspace=ws,
        writer=writer,
        settings=settings,
        decoder=DecodePool(settings.decode_workers),
        spool=spool,
    )
    routes: list[BaseRoute] = _health(ctx, spooling)
    for name in route_modules if route_modules is not None else ROUTE_MODULES:
        routes.extend(importlib.import_module(name).routes(ctx))
    # the REST API's routes gave the context its key ring: an API key closes the ingest endpoints too
    if not settings.ingest_keys and (ctx.api_keys is None or not ctx.api_keys.required):
        log.warning(
            "no API key and no ingest_keys in yieldmeter.yaml (server:): ingest endpoints accept any client"
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for name in PRELOADED:
            importlib.import_module(name)
        replay(spooling, ws, writer.totals)  # before serving: what an earlier run answered
        if spool is not None:
            spool.start()
        writer.start()
        ctx.decoder.start()
        from yieldmeter.finops.scheduler import start_for_server

        alerts = start_for_server(ctx)  # budgets and alert rules every alerts.schedule_seconds
        _freeze()
        try:
            yield
        finally:
            try:
                if alerts is not None:
                    alerts.stop()
                ctx.decoder.stop()
                if ctx.reads is not None:  # before the store: its cursors close with it
                    ctx.reads.close()
                writer.stop()
                if spool is not None:  # after the writer: every record it committed is settled
                    spool.close()
                ws.close()
            finally:
                _unfreeze()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.ctx = ctx
    from yieldmeter.server.problems import install

    install(app)  # unknown paths and wrong methods answer as problem details
    return app
