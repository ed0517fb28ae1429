"""``yieldmeter serve``: the OTLP/HTTP receiver, Langfuse-compatible and REST ingest endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from yieldmeter.cli.common import WorkspaceOpt, console, fail


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8765,
        ws_path: WorkspaceOpt = Path("."),
    ) -> None:
        """Serve OTLP/HTTP traces (/v1/traces), Langfuse SDK ingest and the record API."""
        import uvicorn

        from yieldmeter.app.workspace import NoWorkspace
        from yieldmeter.config import ConfigError
        from yieldmeter.server.app import create_app

        try:
            app_ = create_app(ws_path)
        except (NoWorkspace, ConfigError, FileNotFoundError) as exc:
            fail(str(exc))
        from yieldmeter.server.auth import ServerRefused, check_bind

        ring = app_.state.ctx.api_keys
        if ring is not None:
            try:
                check_bind(host, ring)
            except ServerRefused as exc:
                fail(str(exc))
        base = f"http://{host}:{port}"
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
        uvicorn.run(
            app_,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=10,
        )
