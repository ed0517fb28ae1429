"""Shared fixtures: the example workspace, built through the real ingest path."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests replay the same examples on every machine, so a landing gate never fails by the
# luck of the draw; `make fuzz` (--hypothesis-profile=explore) draws fresh ones, and what it finds
# becomes a fixed test.
settings.register_profile("replay", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("replay")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def example_workspace(tmp_path: Path) -> Iterator[Path]:
    """A fresh workspace holding the example dataset (examples/), ingested for real."""
    from yieldmeter.app.workspace import Workspace

    shutil.copy(EXAMPLES / "yieldmeter.yaml", tmp_path / "yieldmeter.yaml")
    with Workspace.open(tmp_path, create=True) as ws:
        ws.ingest_paths([EXAMPLES / "data"])
    yield tmp_path
