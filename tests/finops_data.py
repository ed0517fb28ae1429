"""Builders for the FinOps tests: a real workspace (DuckDB file) with hand-made rows.

Prices are overrides so every cost is easy to compute by hand:
model ``m-small`` (provider acme) costs 1 USD per million input tokens and
2 USD per million output tokens; ``m-large`` 10 and 20.
So a call of 1,000,000 input tokens on m-small costs exactly 1.00 USD.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from yieldmeter.app.workspace import Workspace
from yieldmeter.ingest.base import Batch
from yieldmeter.ingest.conform import conform

PRICES = """\
prices:
  - model: m-small
    provider: acme
    input: 1.0
    output: 2.0
    valid_from: 2020-01-01T00:00:00Z
  - model: m-large
    provider: acme
    input: 10.0
    output: 20.0
    valid_from: 2020-01-01T00:00:00Z
"""

M = 1_000_000


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def make_workspace(root: Path, extra_config: str = "") -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    if "alerts:" not in extra_config:
        # Tests evaluate alerts at fixed times; ingest would evaluate at the wall clock's now.
        extra_config += "alerts:\n  evaluate_on_ingest: false\n"
    (root / "yieldmeter.yaml").write_text(PRICES + extra_config, encoding="utf-8")
    return Workspace.open(root, create=True)


_counter = {"n": 0}


def call(ts: datetime, usd: float, *, model: str = "m-small", **kw: Any) -> dict[str, Any]:
    """A call costing ``usd`` (input tokens only: usd x 1M on m-small, usd x 100k on m-large)."""
    _counter["n"] += 1
    per_token = 1.0 if model == "m-small" else 10.0
    row = {
        "call_id": kw.pop("call_id", f"c{_counter['n']}"),
        "ts": ts,
        "provider": "acme",
        "model": model,
        "input_tokens": round(usd * M / per_token),
        "output_tokens": 0,
        "team": "alpha",
        "workflow": "triage",
    }
    row.update(kw)
    return row


def ingest(ws: Workspace, table: str, rows: list[dict[str, Any]]) -> None:
    conformed = conform(table, pa.Table.from_pylist(rows), source="test")
    assert conformed.rejects.num_rows == 0, conformed.rejects.to_pylist()
    ws.ingest_batches([Batch.of(table, conformed)], source="test")
