"""`yieldmeter serve` as a real process on a free loopback port, for the server tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.loopback import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def example_workspace(root: Path) -> Path:
    """A workspace holding the example dataset (examples/), ingested through the real path."""
    from yieldmeter.app.workspace import Workspace

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "yieldmeter.yaml", root / "yieldmeter.yaml")
    with Workspace.open(root, create=True) as ws:
        ws.ingest_paths([EXAMPLES / "data"])
    return root


def create_keys(root: Path) -> dict[str, str]:
    """One key per scope (and one revoked), created before the server starts."""
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.server.auth import KeyStore

    keys: dict[str, str] = {}
    with Workspace.open(root) as ws:
        store = KeyStore(ws)
        for scope in ("ingest", "read", "people", "admin"):
            keys[scope] = store.create(f"test-{scope}", [scope])[1]
        info, keys["revoked"] = store.create("test-revoked", ["admin"])
        store.revoke(info.key_id)
    return keys


@contextmanager
def serve(root: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Run ``yieldmeter serve`` until the block ends; yields the base URL."""
    with serve_process(root, host) as (base, _):
        yield base


@contextmanager
def serve_process(root: Path, host: str = "127.0.0.1") -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``yieldmeter serve`` until the block ends; yields the base URL and the process
    (a test may kill it; the block's end then only reaps it)."""
    port = free_port()
    log = open(root / f"serve-{port}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "yieldmeter.cli.main",
            "serve",
            "-w",
            str(root),
            "--host",
            host,
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(root / f'serve-{port}.log').read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in 60 s")
            time.sleep(0.1)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
