"""scoring layer: the interaction value score of every work unit.

:func:`score_workspace` is what ingest calls when signals changed; the model
lives in :mod:`yieldmeter.scoring.engine` (imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.scoring.engine import ScoringResult


def score_workspace(ws: Workspace) -> ScoringResult:
    """Score every work unit of ``ws`` and replace its ``scores`` table."""
    from yieldmeter.scoring.engine import score_workspace as run

    return run(ws)
