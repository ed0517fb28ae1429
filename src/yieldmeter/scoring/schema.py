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
        pa.field("unit_value", F64),  # one success of the unit (USD): own outcome, measured or declared
        pa.field("expected_value", F64),  # p_value x unit_value (USD)
        pa.field("confidence", F64),  # 0-1, from evidence level and sample size
        pa.field("confidence_level", STR),  # low, medium, high
        pa.field("model", STR),  # prior, global, workflow:<name>
        pa.field("label", I64),  # the unit's own label where it has one (1 value, 0 none)
        pa.field("top_signals", STR),  # the features that moved the score most, with their log-odds
        pa.field("scored_at", TS),
    ]
)

CALIBRATION_TABLE = "calibration"

#: One row per calibrated model of the last scoring run: its quality on held-out labels and
#: whether scores use it (written with the scores, so a re-score after ingest keeps the report).
CALIBRATION_SCHEMA = pa.schema(
    [
        pa.field("model", STR),  # global or workflow:<name>
        pa.field("used", pa.bool_()),  # scores use it (it beat the priors and its baseline)
        pa.field("labels_train", I64),
        pa.field("labels_holdout", I64),
        pa.field("log_loss", F64),  # held-out, of the labels' probability
        pa.field("brier", F64),
        pa.field("prior_log_loss", F64),  # the documented priors on the same labels
        pa.field("prior_brier", F64),
        pa.field("global_log_loss", F64),  # a workflow model's baseline: the global model
        pa.field("note", STR),
        pa.field("reliability", STR),  # JSON: [{bin_low, bin_high, n, mean_predicted, observed_rate}]
        pa.field("scored_at", TS),
    ]
)

UNIT_VALUES_TABLE = "unit_values"

#: One row per workflow of the last scoring run: the unit value its expected values rest on, and
#: whether it was measured from outcome periods or declared (:mod:`yieldmeter.scoring.unit_value`).
#: Written with the scores; the benchmarks read ``relative_se`` and ``periods`` for their intervals.
UNIT_VALUES_SCHEMA = pa.schema(
    [
        pa.field("workflow", STR),
        pa.field("unit_value", F64),  # USD per success, the one used (null: none declared or measured)
        pa.field("source", STR),  # measured, declared or none
        pa.field("declared", F64),
        pa.field("measured", F64),  # benefit of the outcome periods / expected successes in them
        pa.field("relative_se", F64),  # of the measured value, from the spread of its periods
        pa.field("periods", I64),  # outcome periods with units in them (degrees of freedom: periods - 1)
        pa.field("period_benefit", F64),  # their attributed benefit (USD)
        pa.field("expected_successes", F64),
        pa.field("own_outcome_units", I64),  # units valued by an outcome of their own
        pa.field("note", STR),
        pa.field("scored_at", TS),
    ]
)

#: The tables a scoring run writes, by name (created at the first run, given new columns when a
#: workspace opens: :meth:`yieldmeter.store.duckdb_store.Store.add_missing_columns`).
SCORING_TABLES = {
    SCORES_TABLE: SCORES_SCHEMA,
    CALIBRATION_TABLE: CALIBRATION_SCHEMA,
    UNIT_VALUES_TABLE: UNIT_VALUES_SCHEMA,
}
