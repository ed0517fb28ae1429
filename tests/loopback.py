"""A real uvicorn server on a free loopback port, in a thread, for tests."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

# Ports handed out lie below the kernel's ephemeral range (32768-60999 on Linux by default), in
# a block of 500 per pytest-xdist worker. A port the kernel picks (bind to 0) can be taken
# between the check and the server's own bind: by another worker's pick, or as the local port of
# any outgoing connection. CI lost a run to that ("address already in use"). Here no other worker
# and no outgoing connection draws from this process's block. Where the ephemeral range leaves no
# room below it, ports are the kernel's picks again.
_BLOCK = 500
_FIRST = 10000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_blocks = (_ephemeral_start() - _FIRST) // _BLOCK
_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
_base = _FIRST + (int(_worker) if _worker.isdigit() else 0) % max(_blocks, 1) * _BLOCK
_offsets = itertools.count(os.getpid() % _BLOCK)


def free_port() -> int:
    """A loopback port nothing listens on, from this test worker's own block (see above)."""
    if _blocks < 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    for _ in range(_BLOCK):
        port = _base + next(_offsets) % _BLOCK
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {_base}-{_base + _BLOCK - 1}")


@contextmanager
def serving(app: Any, port: int | None = None) -> Iterator[str]:
    """Run ``app`` on 127.0.0.1:<port, or a free one> until the block ends; yields the base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def stored(client: Any, timeout: float = 30) -> None:
    """Wait until what the server acknowledged is in the store: the default ``acknowledge:
    spool`` answers an OTLP request once its rows are in the spool, before their commit. ``client``
    is a test client or a server's base URL."""
    deadline = time.monotonic() + timeout
    while True:
        if isinstance(client, str):
            health = httpx.get(f"{client}/healthz", timeout=10).json()
        else:
            health = client.get("/healthz").json()
        if not health.get("spool", {}).get("unsettled") and not health["writes_retrying"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"acknowledged spans not stored within {timeout:g} s: {health}")
        time.sleep(0.01)
