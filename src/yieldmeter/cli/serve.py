"""``yieldmeter serve``: the whole server: dashboard, REST API, role reports, OTLP and record ingest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from yieldmeter.cli.common import WorkspaceOpt, console, fail, listen, run_server


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8765,
        ws_path: WorkspaceOpt = Path("."),
    ) -> None:
        """Serve the dashboard, the REST API, the role reports and telemetry ingest.

        Dashboard at /; REST API under /api/v1 (OpenAPI: /api/v1/openapi.json).

        Role reports and the board pack at /reports/{role}.pdf, e.g. /reports/board.pdf.

        Ingest: OTLP/HTTP traces (/v1/traces), Langfuse SDK, the SDK record API.

        With no API key it runs open on 127.0.0.1 only; elsewhere it needs keys (yieldmeter keys).
        """
        from yieldmeter.app.workspace import NoWorkspace
        from yieldmeter.cli.common import ENGINE_CHOICE
        from yieldmeter.config import ConfigError
        from yieldmeter.lake.engines import EngineGap
        from yieldmeter.lake.workspace import require_own_store
        from yieldmeter.server.app import create_app
        from yieldmeter.store.duckdb_store import StoreUnavailable

        try:
            # the server writes and reads the workspace's own store: an engine or lake chosen for it
            # (--engine/--lake, YIELDMETER_ENGINE/YIELDMETER_LAKE, `engine:`) is refused, not ignored
            require_own_store(
                ws_path, "serve", engine=ENGINE_CHOICE.get("engine"), lake=ENGINE_CHOICE.get("lake")
            )
            app_ = create_app(ws_path)
        except (NoWorkspace, ConfigError, FileNotFoundError, EngineGap, ValueError, StoreUnavailable) as exc:
            fail(str(exc))
        from yieldmeter.server.auth import ServerRefused, check_bind

        ring = app_.state.ctx.api_keys
        if ring is not None:
            try:
                check_bind(host, ring)
            except ServerRefused as exc:
                fail(str(exc))
        # after the key check (an open server must not listen beyond loopback), before the banner
        socks = listen(host, port)
        base = f"http://{host}:{socks[0].getsockname()[1]}"  # the port given, or the one --port 0 got
        console().print(
            f"yieldmeter serving [bold]{app_.state.ctx.workspace.root}[/]\n"
            f"  OTLP/HTTP traces:   {base}/v1/traces  (protobuf or JSON, gzip)\n"
            f"  Langfuse SDK host:  {base}  (LANGFUSE_HOST / base_url)\n"
            f"  records (SDK):      {base}/api/v1/signals | outcomes | effort\n"
            f"  REST API:           {base}/api/v1  (OpenAPI: {base}/api/v1/openapi.json)\n"
            f"  dashboard:          {base}/"
            + ("" if ring is None or ring.required else "  (open: no API keys, loopback only)"),
            highlight=False,
        )
        # Idle keep-alive connections close after 5 s; shutdown waits at most 10 s for requests.
        run_server(app_, socks, timeout_keep_alive=5, timeout_graceful_shutdown=10)
