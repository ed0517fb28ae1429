"""``yieldmeter keys create|list|revoke``: API keys for the server (stored hashed).

Keys are written to the workspace's store; run these while the server is
stopped (the store has one writer), or use ``POST /api/v1/keys`` with an
admin key while it runs. A running server sees new and revoked keys within
a few seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from yieldmeter.cli.common import FormatOpt, OutputFormat, WorkspaceOpt, console, emit, fail, workspace


def register(app: typer.Typer) -> None:
    keys = typer.Typer(
        name="keys",
        help="API keys for `yieldmeter serve` (scopes: ingest, read, people, admin).",
        no_args_is_help=True,
    )
    app.add_typer(keys, name="keys")

    @keys.command("create")
    def create(
        name: Annotated[str, typer.Argument(help="Who or what uses the key, e.g. otel-collector.")],
        scope: Annotated[
            list[str],
            typer.Option("--scope", "-s", help="ingest, read, people (per-person data), admin; repeat."),
        ],
        org: Annotated[str, typer.Option("--org", help="Organisation the key writes as.")] = "default",
        ws_path: WorkspaceOpt = Path("."),
    ) -> None:
        """Create a key and print it once (only its hash is stored)."""
        from yieldmeter.server.auth import KeyStore

        scopes = [s.strip() for item in scope for s in item.split(",") if s.strip()]
        with workspace(ws_path) as ws:
            try:
                info, key = KeyStore(ws).create(name, scopes, org)
            except ValueError as exc:
                fail(str(exc))
        c = console()
        c.print(
            f"Key [bold]{info.key_id}[/] for {info.name} (scopes: {info.scopes}, org {info.org}):",
            highlight=False,
        )
        typer.echo(key)
        c.print(
            "Store it now: it is not shown again. Send it as `Authorization: Bearer <key>` "
            "(OTLP exporters: OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<key>).",
            highlight=False,
        )

    @keys.command("list")
    def list_(ws_path: WorkspaceOpt = Path("."), fmt: FormatOpt = OutputFormat.table) -> None:
        """Keys with their scopes and state (never the keys themselves)."""
        from yieldmeter.server.auth import KeyStore

        with workspace(ws_path) as ws:
            rows = [k.to_dict() for k in KeyStore(ws).all_keys()]
        for r in rows:
            r["scopes"] = ",".join(r["scopes"])
        emit(rows, fmt, title="API keys")

    @keys.command("revoke")
    def revoke(
        key_id: Annotated[str, typer.Argument(help="The key id (from `yieldmeter keys list`).")],
        ws_path: WorkspaceOpt = Path("."),
    ) -> None:
        """Revoke a key: requests with it are refused from now on."""
        from yieldmeter.server.auth import KeyStore

        with workspace(ws_path) as ws:
            try:
                info = KeyStore(ws).revoke(key_id)
            except LookupError as exc:
                fail(str(exc))
        console().print(f"Key {info.key_id} ({info.name}) revoked.", highlight=False)
