"""The read pool's view cache: stale while telemetry streams in, fresh at once after an API write."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pyarrow as pa

from yieldmeter.app.workspace import Workspace
from yieldmeter.ingest.conform import conform
from yieldmeter.server.reads import Reads


def _signal(ws: Workspace, n: int) -> None:
    rows = conform(
        "signals",
        pa.Table.from_pylist(
            [
                {
                    "signal_id": f"s-new-{n}",
                    "work_unit_id": "fr-wu-3",
                    "ts": "2025-03-03T10:00:00Z",
                    "kind": "accepted",
                }
            ]
        ),
        source="test",
    )
    ws.store.write("signals", rows.rows)


def test_stale_while_revalidate_and_read_your_writes(example_workspace: Path) -> None:
    with Workspace.open(example_workspace) as ws:
        reads = Reads(ws, min_refresh_s=0.0, version_every_s=0.0)
        computed: list[int] = []

        def count(w: Workspace) -> int:
            n = w.store.count("signals")
            computed.append(n)
            return n

        async def scenario() -> None:
            first = await reads.view("signals", count)
            assert await reads.view("signals", count) == first  # unchanged data: served from the cache
            assert computed == [first]
            _signal(ws, 1)  # telemetry landed (row counts changed)
            assert await reads.view("signals", count) == first  # the stale view, at once
            deadline = time.monotonic() + 20
            while await reads.view("signals", count) != first + 1:  # ... refreshed in the background
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            _signal(ws, 2)
            reads.bump()  # a write through the REST API: its author reads it back at once
            assert await reads.view("signals", count) == first + 2

        try:
            asyncio.run(scenario())
        finally:
            reads.close()
