"""OTLP bodies decoded in worker processes, beside the event loop and the writer.

Mapping a span's attributes to canonical rows is Python work under the GIL
(about 25 µs a span, against 1 µs to parse the protobuf). Done on the event
loop, it serialises with the HTTP handling and the writer's share of each
commit, and a large export stalls every other request while it runs. A
:class:`DecodePool` hands bodies of ``inline_below`` bytes or more to
``workers`` processes (spawned, so no thread or DuckDB handle is forked) and
gets the :class:`~yieldmeter.ingest.base.Batch` back as Arrow; small bodies
(an SDK's few spans) are decoded on the loop, where a round trip to a worker
would cost more than the work.

The adapters are pure functions of the body and the read options, so a
worker holds no state: a worker that dies (a body that exhausts its memory)
breaks only the pool, which is replaced, and that request is decoded on the
loop instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from yieldmeter.ingest.base import Batch, ReadOptions, decode_processes
from yieldmeter.ingest.otlp_json import decode_json
from yieldmeter.ingest.otlp_protobuf import decode_protobuf

log = logging.getLogger("yieldmeter.server")

#: Bodies below this many bytes (about 200 spans of protobuf) are decoded on the event loop.
INLINE_BELOW = 64 * 1024


def decode_body(kind: str, body: bytes, options: ReadOptions) -> Batch:
    """An OTLP trace export (``kind`` ``protobuf`` or ``json``) -> one :class:`Batch`."""
    return decode_protobuf(body, options) if kind == "protobuf" else decode_json(body, options)


def _ready() -> int:
    """Run in each new worker: the decoders are imported by now (this module's imports)."""
    return os.getpid()


class DecodePool:
    """``workers`` decode processes; ``workers == 0`` decodes every body on the event loop."""

    def __init__(self, workers: int, *, inline_below: int = INLINE_BELOW) -> None:
        self.workers = workers
        self.inline_below = inline_below
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        #: Bodies decoded by a worker, on the event loop, and pools replaced after a worker died.
        self.in_workers = self.on_loop = self.replaced = 0

    def start(self) -> None:
        """Start the processes; they import the decoders in the background while the server listens."""
        if self.workers > 0 and self._pool is None:
            self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = decode_processes(self.workers)
        for _ in range(self.workers):  # one job each, so every worker is spawned and warm now
            pool.submit(_ready)
        return pool

    def stop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def decode(self, kind: str, body: bytes, options: ReadOptions) -> Batch:
        """The body's batch, from a worker when it is large enough to be worth the trip."""
        pool = self._pool
        if pool is not None and len(body) >= self.inline_below:
            self.in_workers += 1  # an unreadable body is answered from the worker too
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    pool, decode_body, kind, body, options
                )
            except BrokenProcessPool:
                self.in_workers -= 1
                log.error("a decode process died (%d byte body): pool replaced, body decoded here", len(body))
                with self._lock:
                    if self._pool is pool:
                        self._pool = self._new_pool()
                        self.replaced += 1
                pool.shutdown(wait=False, cancel_futures=True)
        self.on_loop += 1
        return decode_body(kind, body, options)

    def stats(self) -> dict[str, int]:
        """What ``/healthz`` reports: the workers and where bodies were decoded since start."""
        return {
            "workers": self.workers if self._pool is not None else 0,
            "in_workers": self.in_workers,
            "on_loop": self.on_loop,
            "pools_replaced": self.replaced,
        }
