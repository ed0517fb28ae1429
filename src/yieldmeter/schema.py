"""The canonical tables: the data contract of DESIGN.md as Arrow schemas.

Every adapter produces Arrow tables whose column names are the ones declared
here; :func:`yieldmeter.ingest.conform.conform` casts them to these types, fills
defaults and splits off the rows that break a rule. The store creates its
tables from the same declarations, so there is one place that says what a
column is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import pyarrow as pa

#: The store's schema version: raised by each step of ``yieldmeter.store.duckdb_store.MIGRATIONS``.
SCHEMA_VERSION = 5

TS = pa.timestamp("us", tz="UTC")
STR = pa.string()
F64 = pa.float64()
I64 = pa.int64()
BOOL = pa.bool_()
DATE = pa.date32()


class ValueDimension(StrEnum):
    REVENUE = "revenue"
    MARGIN = "margin"
    LOSS_AVOIDED = "loss_avoided"
    THROUGHPUT = "throughput"
    QUALITY = "quality"
    CYCLE_TIME = "cycle_time"
    RESILIENCE = "resilience"
    CAPACITY = "capacity"
    STRATEGIC = "strategic"


class EvidenceLevel(StrEnum):
    """Weakest first; the order is meaningful (see :data:`EVIDENCE_RANK`)."""

    ANECDOTE = "anecdote"
    OBSERVATIONAL = "observational"
    BASELINE_COMPARISON = "baseline_comparison"
    CONTROLLED_EXPERIMENT = "controlled_experiment"


EVIDENCE_RANK = {level.value: rank for rank, level in enumerate(EvidenceLevel)}

EXPLICIT_SIGNALS = (
    "accepted",
    "rejected",
    "edited",
    "saved",
    "shared",
    "copied",
    "exported",
    "used_in_artifact",
    "rated",
)
IMPLICIT_SIGNALS = (
    "continued",
    "rephrased",
    "retried",
    "abandoned",
    "decision_reached",
    "referenced_later",
    "action_taken",
    "metric_moved",
    "escalated",
    "recontact",
)
LABEL_SIGNALS = ("value_confirmed", "value_denied")
KNOWN_SIGNALS = frozenset(EXPLICIT_SIGNALS + IMPLICIT_SIGNALS + LABEL_SIGNALS)

CALL_STATUSES = ("ok", "error")
#: 30 days in milliseconds: no model call runs longer; a larger duration is a unit mix-up.
MAX_CALL_DURATION_MS = 30 * 24 * 3600 * 1000.0
#: [1990-01-01, 2100-01-01): the times a row of AI usage, work or billing can carry. Before is
#: a small epoch number (seconds or a bool read as a time: 1970), after a unit error or year 9999.
PLAUSIBLE_TIMES = (datetime(1990, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
#: A year of minutes: more human time than that in one effort row is a unit mix-up (seconds?).
MAX_EFFORT_MINUTES = 365 * 24 * 60.0
#: A quadrillion tokens or requests in one row (a month of a large organisation's usage is far below it) is
#: broken input, not usage; the bound keeps every sum over rows inside a 64-bit integer.
MAX_COUNT = 10**15
WORK_UNIT_STATUSES = ("open", "completed", "failed", "abandoned")
RISK_CLASSES = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    required: bool = False
    default: object = None
    enum: tuple[str, ...] | None = None
    non_negative: bool = False
    #: Largest plausible value; above it the row is quarantined (a typo or a
    #: unit mix-up, and a value later arithmetic could not hold).
    maximum: float | None = None
    #: A time outside :data:`PLAUSIBLE_TIMES` is kept (a validity bound such as 1970 or 2200);
    #: elsewhere such a time is a unit or clock error (epoch seconds read as something else).
    any_time: bool = False
    #: An object or list given for this text column is stored as JSON text; for any other text
    #: column it is unreadable (a ``model`` that is an object is broken input, not a name).
    json_text: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    key: str
    columns: tuple[Column, ...]
    doc: str = ""
    #: Columns hashed into the key when an input row has none (tables whose
    #: natural identity is a combination, e.g. a budget's scope and period).
    derive_key_from: tuple[str, ...] = ()
    #: A derived key is ``stable_id(table, *parts)``; False: ``stable_id(*parts)`` (a budget's id
    #: is that of its scope kind, scope and period however it was written: a file, the API, a command).
    key_prefixed: bool = True
    #: A row written replaces the stored rows of the same ``derive_key_from`` under another key
    #: (one budget per scope and period, whether its id was given or derived, and a budget stored
    #: under an id of its own before is replaced by the one written after it).
    one_per_derived_key: bool = False
    #: Time column used for day partitioning in a lake and for period filters.
    time_column: str | None = None
    #: Row rules: the sum of the named columns may not exceed the bound column.
    at_most: tuple[tuple[tuple[str, ...], str], ...] = ()
    #: Row rules: ``(earlier, later)``: the later time may not come before the earlier one.
    in_order: tuple[tuple[str, str], ...] = ()
    #: ``"module:function"``: a check of the table's own rules, run by ``conform`` on every write
    #: before ids are derived (named, not imported: the contract does not depend on the code that
    #: keeps it). Called as ``function(columns, flag)``; it may normalise ``columns`` in place and
    #: flags each row it refuses with its reason (:func:`yieldmeter.ingest.conform.conform`).
    row_check: str | None = None
    column_index: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_index", {c.name: c for c in self.columns})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type) for c in self.columns])


def _c(name: str, type_: pa.DataType, **kw: object) -> Column:
    return Column(name, type_, **kw)  # type: ignore[arg-type]


ORG = _c("org", STR, default="default", doc="organisation that owns the row")
ATTRS = _c("attributes", STR, json_text=True, doc="JSON object of further attributes")

CALLS = Table(
    "calls",
    key="call_id",
    time_column="ts",
    doc="one row per model invocation, or per aggregated usage bucket (request_count > 1)",
    # OpenTelemetry accounting: input includes cached reads and cache writes,
    # output includes reasoning; a part larger than its whole is a broken row.
    at_most=(
        (("cached_input_tokens", "cache_write_tokens"), "input_tokens"),
        (("reasoning_tokens",), "output_tokens"),
        (("cache_write_1h_tokens",), "cache_write_tokens"),
    ),
    columns=(
        _c("call_id", STR, required=True),
        _c("ts", TS, required=True, doc="start of the call (UTC)"),
        _c("duration_ms", F64, non_negative=True, maximum=MAX_CALL_DURATION_MS),
        _c("source", STR, doc="where the row came from: otlp, litellm, openai-usage, ..."),
        _c("provider", STR),
        _c("model", STR),
        _c("operation", STR, default="chat"),
        _c("input_tokens", I64, default=0, non_negative=True, maximum=MAX_COUNT, doc="includes cached input"),
        _c("output_tokens", I64, default=0, non_negative=True, maximum=MAX_COUNT, doc="includes reasoning"),
        _c("cached_input_tokens", I64, default=0, non_negative=True, maximum=MAX_COUNT),
        _c("cache_write_tokens", I64, default=0, non_negative=True, maximum=MAX_COUNT),
        _c(
            "cache_write_1h_tokens",
            I64,
            default=0,
            non_negative=True,
            maximum=MAX_COUNT,
            doc="the part of cache_write_tokens written for an hour (Anthropic), priced apart",
        ),
        _c("reasoning_tokens", I64, default=0, non_negative=True, maximum=MAX_COUNT),
        _c("request_count", I64, default=1, non_negative=True, maximum=MAX_COUNT),
        _c("status", STR, default="ok", enum=CALL_STATUSES),
        _c("user_id", STR),
        _c("team", STR),
        _c("app", STR),
        _c("environment", STR),
        _c("trace_id", STR),
        _c("span_id", STR),
        _c(
            "parent_span_id",
            STR,
            doc="the span the call's span ran under (OTLP), in lowercase hex as span_id: a call's "
            "framework step or agent, or its caller",
        ),
        _c("session_id", STR),
        _c("work_unit_id", STR),
        _c("workflow", STR),
        _c("task_type", STR),
        _c("reported_cost", F64, doc="the source's own cost in USD, kept for reconciliation"),
        _c(
            "service_tier",
            STR,
            doc="the rate the provider served the call at, where not standard: batch, flex, priority, "
            "fast, ... (trimmed, lower-cased; standard and default are stored as null)",
        ),
        ORG,
        ATTRS,
    ),
    row_check="yieldmeter.ingest.service_tier:normalise_call_tiers",
)

WORK_UNITS = Table(
    "work_units",
    key="work_unit_id",
    time_column="started_at",
    doc="a unit of AI work: one interaction, agent run, completion or case",
    in_order=(("started_at", "ended_at"),),
    columns=(
        _c("work_unit_id", STR, required=True),
        _c("parent_id", STR, doc="the session this unit belongs to"),
        _c("workflow", STR),
        _c("task_type", STR),
        _c("user_id", STR),
        _c("team", STR),
        _c("owner", STR),
        _c("started_at", TS),
        _c("ended_at", TS),
        _c("status", STR, default="completed", enum=WORK_UNIT_STATUSES),
        _c("derived", BOOL, default=False, doc="true when built from its calls, not described"),
        ORG,
        ATTRS,
    ),
)

SIGNALS = Table(
    "signals",
    key="signal_id",
    time_column="ts",
    doc="an event about a work unit or its output; unknown kinds are kept",
    columns=(
        _c("signal_id", STR, required=True),
        _c("work_unit_id", STR, required=True),
        _c("ts", TS, required=True),
        _c("kind", STR, required=True),
        _c("value", F64),
        _c("actor", STR),
        _c("source", STR),
        ORG,
        ATTRS,
    ),
)

EFFORT = Table(
    "effort",
    key="effort_id",
    time_column="ts",
    doc="human time spent on a work unit",
    columns=(
        _c("effort_id", STR, required=True),
        _c("work_unit_id", STR, required=True),
        _c("ts", TS, required=True),
        _c("person", STR),
        _c("kind", STR, default="review", doc="review, correction, rework, supervision, ..."),
        _c("minutes", F64, required=True, non_negative=True, maximum=MAX_EFFORT_MINUTES),
        ORG,
        ATTRS,
    ),
)

OUTCOMES = Table(
    "outcomes",
    key="outcome_id",
    time_column="period_start",
    doc="an operating outcome measured against a baseline",
    in_order=(("period_start", "period_end"),),
    columns=(
        _c("outcome_id", STR, required=True),
        _c("workflow", STR),
        _c("work_unit_id", STR),
        _c("period_start", TS, required=True),
        _c("period_end", TS),
        _c("metric", STR),
        _c("baseline_value", F64),
        _c("observed_value", F64),
        _c("unit", STR),
        _c("value_dimension", STR, enum=tuple(v.value for v in ValueDimension)),
        _c("monetary_value", F64),
        _c("attribution_share", F64, default=1.0, non_negative=True),
        _c("evidence_level", STR, default="observational", enum=tuple(v.value for v in EvidenceLevel)),
        _c("evidence_ref", STR),
        _c("benefit_owner", STR),
        _c("redeployed", BOOL, doc="capacity outcomes: the freed capacity was actually redeployed"),
        ORG,
        ATTRS,
    ),
)

WORKFLOWS = Table(
    "workflows",
    key="workflow",
    doc="the workflow catalog, loaded from yieldmeter.yaml",
    columns=(
        _c("workflow", STR, required=True),
        _c("process", STR),
        _c("owner", STR),
        _c("team", STR),
        _c("value_dimension", STR, enum=tuple(v.value for v in ValueDimension)),
        _c("outcome_definition", STR),
        _c("unit_value", F64, non_negative=True),
        _c("baseline_cost", F64, non_negative=True),
        _c("baseline_minutes", F64, non_negative=True),
        _c("quality_threshold", F64),
        _c("risk_class", STR, enum=RISK_CLASSES),
        _c("latency_slo_ms", F64, non_negative=True),
        _c("labour_rate", F64, non_negative=True, doc="USD per hour of human effort"),
        _c("recontact_window_days", F64, default=7.0, non_negative=True),
        _c("initiative", STR),
        ORG,
    ),
)

COST_ITEMS = Table(
    "cost_items",
    key="item_id",
    time_column="period_start",
    doc="non-token cost: platform, GPUs, licences, FOCUS billing rows",
    in_order=(("period_start", "period_end"),),
    columns=(
        _c("item_id", STR, required=True),
        _c("period_start", TS, required=True),
        _c("period_end", TS, required=True),
        _c("amount", F64, required=True),
        _c("category", STR, default="platform"),
        _c("team", STR),
        _c("workflow", STR),
        _c("source", STR),
        _c("allocation", STR, doc="rule: direct, pro_rata (by model cost), or a rule name"),
        _c("provider", STR),
        _c("model", STR),
        _c("quantity", F64),
        _c("unit", STR),
        ORG,
        ATTRS,
    ),
)

PRICES = Table(
    "prices",
    key="price_id",
    doc="price of a model at a time, USD per million tokens",
    columns=(
        _c("price_id", STR, required=True),
        _c("provider", STR, required=True),
        _c("model", STR, required=True),
        _c("valid_from", TS, required=True, any_time=True),
        _c("valid_to", TS, required=True, any_time=True),
        _c("input", F64),
        _c("output", F64),
        _c("cached_input", F64),
        _c("cache_write", F64),
        _c("cache_write_1h", F64, doc="one-hour cache writes, where priced apart from cache_write"),
        _c("reasoning", F64, doc="only where reasoning output is priced apart from output"),
        _c("per_1k_requests", F64),
        _c("tier_above_input_tokens", I64, default=-1, doc="band applies when input > this"),
        _c("tier_upto_input_tokens", I64, doc="band applies when input <= this; null = no upper bound"),
        _c("seconds_of_day_from", I64, default=0, doc="time-of-day window start (UTC seconds)"),
        _c("seconds_of_day_to", I64, default=86400),
        _c(
            "service_tier",
            STR,
            default="",
            doc="'' for the standard rate, else the tier these prices are for",
        ),
        _c("source", STR, required=True, doc="genai-prices VERSION, or override"),
    ),
)

BUDGETS = Table(
    "budgets",
    key="budget_id",
    derive_key_from=("scope_kind", "scope", "period"),
    key_prefixed=False,
    one_per_derived_key=True,
    row_check="yieldmeter.finops.budgets:check_budget_columns",
    doc="a spend budget",
    columns=(
        _c("budget_id", STR, required=True),
        _c("scope_kind", STR, required=True, doc="team, workflow, user, model, provider, initiative, org"),
        _c("scope", STR, required=True),
        _c("period", STR, required=True, default="month", doc="month, quarter, year, or rolling:Nd"),
        _c("amount", F64, required=True, non_negative=True),
        _c("basis", STR, default="model_cost", enum=("model_cost", "fully_loaded_cost")),
        _c("soft_threshold", F64, default=0.8, non_negative=True),
        _c("hard_threshold", F64, default=1.0, non_negative=True),
        ORG,
    ),
)

DECISIONS = Table(
    "decisions",
    key="decision_id",
    time_column="date",
    doc="a portfolio decision taken on the evidence",
    columns=(
        _c("decision_id", STR, required=True),
        _c("date", TS, required=True),
        _c("subject", STR),
        _c("change", STR),
        _c("rationale", STR),
        _c("evidence", STR),
        _c("initiative", STR),
        ORG,
    ),
)

CAPACITY_MEASUREMENTS = Table(
    "capacity_measurements",
    key="measurement_id",
    time_column="ts",
    doc="a measured throughput of a model shape on an accelerator or an endpoint",
    columns=(
        _c("measurement_id", STR, required=True),
        _c("ts", TS, required=True),
        _c("mode", STR, required=True, enum=("local", "endpoint", "roofline")),
        _c("gpu", STR),
        _c("model_shape", STR),
        _c("precision", STR),
        _c("endpoint", STR),
        _c("batch", I64, non_negative=True),
        _c("concurrency", I64, non_negative=True),
        _c("prompt_tokens", I64, non_negative=True),
        _c("output_tokens", I64, non_negative=True),
        _c("prefill_tokens_per_s", F64, non_negative=True),
        _c("decode_tokens_per_s", F64, non_negative=True),
        _c("ttft_ms_p50", F64, non_negative=True),
        _c("latency_ms_p50", F64, non_negative=True),
        _c("latency_ms_p99", F64, non_negative=True),
        _c("roofline_decode_tokens_per_s", F64, non_negative=True),
        _c("serving_efficiency", F64, non_negative=True),
        ORG,
        ATTRS,
    ),
)

#: Tables a user can ingest into, in the order a full load should take them.
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        WORKFLOWS,
        WORK_UNITS,
        CALLS,
        SIGNALS,
        EFFORT,
        OUTCOMES,
        COST_ITEMS,
        BUDGETS,
        DECISIONS,
        PRICES,
        CAPACITY_MEASUREMENTS,
    )
}
INGESTIBLE = ("calls", "work_units", "signals", "effort", "outcomes", "cost_items", "budgets", "decisions")

#: Rejected rows, with where they came from and why.
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("quarantine_id", STR),
        pa.field("table_name", STR),
        pa.field("source", STR),
        pa.field("position", I64),
        pa.field("reason", STR),
        pa.field("raw", STR),
        pa.field("ingested_at", TS),
    ]
)

#: A framework or agent span with usage kept as structure, not as a call, because a call under it
#: counts its usage (``yieldmeter.ingest.otlp_common.split_sums_with_calls``): its place in its
#: trace, which ``Batch.summed`` hands to the store and the store keeps (``summed_spans``), so a
#: summing span above it that comes later is known to have a call under it.
SUMMED_SCHEMA = pa.schema(
    [
        pa.field("trace_id", STR),
        pa.field("span_id", STR),
        pa.field("parent_span_id", STR),
        pa.field("ts", TS),
    ]
)


def table(name: str) -> Table:
    """The declaration of table ``name``; a clear error lists the known ones."""
    try:
        return TABLES[name]
    except KeyError:
        known = ", ".join(sorted(TABLES))
        raise KeyError(f"unknown table {name!r}; known tables: {known}") from None


def empty(name: str) -> pa.Table:
    return table(name).arrow_schema.empty_table()
