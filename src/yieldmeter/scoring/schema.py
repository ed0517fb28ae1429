"""The ``scores`` table: one interaction value score per work unit.

Written whole by :func:`yieldmeter.scoring.engine.score_workspace` (a re-score
replaces every row); read by the metrics through ``Tables.scores``.
"""

from __future__ import annotations

import pyarrow as pa

from yieldmeter.schema import F64, I64, STR, TS

SCORES_TABLE = "scores"

SCORES_SCHEMA = pa.schema(
    [
        pa.field("work_unit_id", STR),
        pa.field("workflow", STR),
        pa.field("score", F64),  # 0-100: 100 x p_value
        pa.field("p_value", F64),  # probability that the interaction delivered value
        pa.field("unit_value", F64),  # the workflow's unit value (USD), null when not declared
        pa.field("expected_value", F64),  # p_value x unit_value (USD)
        pa.field("confidence", F64),  # 0-1, from evidence level and sample size
        pa.field("confidence_level", STR),  # low, medium, high
        pa.field("model", STR),  # prior, global, workflow:<name>
        pa.field("label", I64),  # the unit's own label where it has one (1 value, 0 none)
        pa.field("top_signals", STR),  # the features that moved the score most, with their log-odds
        pa.field("scored_at", TS),
    ]
)
