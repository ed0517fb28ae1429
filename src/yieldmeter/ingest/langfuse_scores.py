"""Langfuse scores -> ``signals``: the bodies posted to ``/api/public/scores`` and the
``score-create`` events of ``/api/public/ingestion``.

Pure, like every adapter: score objects in, a :class:`Batch` and one outcome
per score out. A score that cannot be read is rejected with its position and
reason and never stops the others: every value is checked (and typed) here,
so building the Arrow table cannot fail on a mix of types.

Mapping: kind = ``score_signals[name]`` (config), else ``rated`` (a false boolean score of a
mapped name is ``rejected`` for ``accepted``, else ``not_<kind>``: see :func:`_kind`); value:
numeric and boolean scores as numbers (boolean 1/0), categorical and text
scores keep their label in ``attributes`` (text only with content capture
on); the work unit is the trace id (the receiver then points it at the work
unit of the call or trace the score names); ``ts`` the score's
``timestamp``, else the ingestion event's, else now.

The ingestion API (Langfuse SDK v3 and v4 send scores there) takes a batch of
event envelopes ``{id, type, timestamp, body}``; as Langfuse Cloud does since
2026-11-16, only ``score-create`` events are accepted: traces and
observations arrive over OpenTelemetry (``/api/public/otel/v1/traces``), so
every other event type is answered with an error naming that route, and
nothing of it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from yieldmeter.errors import InputError
from yieldmeter.ingest.base import Batch
from yieldmeter.ingest.conform import concat_rejects, conform, make_rejects, parse_timestamp, stable_id
from yieldmeter.ingest.records import CONTENT_NOT_KEPT

SOURCE = "langfuse-scores"
#: The event types of the Langfuse ingestion API; only ``score-create`` is taken.
INGESTION_EVENT_TYPES = frozenset(
    {
        "trace-create",
        "score-create",
        "span-create",
        "span-update",
        "generation-create",
        "generation-update",
        "event-create",
        "sdk-log",
        "observation-create",
        "observation-update",
    }
)
_ID_FIELDS = ("id", "traceId", "observationId", "sessionId", "datasetRunId", "configId", "environment")
_TS = pa.timestamp("us", tz="UTC")
_SCHEMA = pa.schema(
    [
        ("signal_id", pa.string()),
        ("work_unit_id", pa.string()),
        ("ts", _TS),
        ("kind", pa.string()),
        ("value", pa.float64()),
        ("actor", pa.string()),
        ("source", pa.string()),
        ("attributes", pa.string()),
    ]
)
_LINKS = pa.schema([("signal_id", pa.string()), ("_trace", pa.string()), ("_observation", pa.string())])


@dataclass
class ScoreBatch:
    """The signals of a list of scores, and each score's error (``None`` when it was taken)."""

    batch: Batch
    errors: list[str | None]
    #: signal id per score (``None`` for a rejected one), in the order posted
    ids: list[str | None] = field(default_factory=list)


def scores_to_batch(
    scores: list[Any],
    *,
    score_signals: dict[str, str],
    capture_content: bool,
    now: datetime,
    source: str = SOURCE,
    default_ts: list[Any] | None = None,
) -> ScoreBatch:
    """Score objects -> ``signals`` rows (and the ``_links`` the receiver resolves work units with).

    ``default_ts[i]`` is the time of score ``i`` when it carries no ``timestamp`` (the
    ingestion event's); without either the score is stamped ``now``.
    """
    rows: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    errors: list[str | None] = []
    ids: list[str | None] = []
    positions: list[int] = []
    bad_pos: list[int] = []
    bad_reason: list[str] = []
    bad_raw: list[str] = []
    for i, s in enumerate(scores, 1):
        fallback = default_ts[i - 1] if default_ts is not None else None
        try:
            row = _score_row(s, score_signals, capture_content, source, fallback, now)
        except ScoreError as exc:
            err = str(exc)
        except Exception as exc:  # a score of any shape is that score's error, never the request's
            err = f"unreadable score ({type(exc).__name__}: {exc})"
        else:
            errors.append(None)
            ids.append(row["signal_id"])
            links.append(
                {
                    "signal_id": row["signal_id"],
                    "_trace": row.pop("_trace"),
                    "_observation": row.pop("_observation"),
                }
            )
            rows.append(row)
            positions.append(i)
            continue
        errors.append(err)
        ids.append(None)
        bad_pos.append(i)
        bad_reason.append(f"score {i}: {err}")
        bad_raw.append(_raw(s, capture_content))
    batch = Batch()
    if rows:
        table = pa.Table.from_pylist(rows, schema=_SCHEMA)
        conformed = conform("signals", table, source=source, positions=positions)
        batch.add("signals", conformed)
        batch.tables["_links"] = pa.Table.from_pylist(links, schema=_LINKS)
        # a score conform refused (a value out of range...) is that score's error too
        rej = conformed.rejects
        for p, r in zip(rej.column("position").to_pylist(), rej.column("reason").to_pylist(), strict=True):
            errors[p - 1] = str(r)
            ids[p - 1] = None
    if bad_pos:
        batch.rejects = concat_rejects(
            [make_rejects("signals", source, bad_pos, bad_reason, bad_raw), batch.rejects]
        )
    return ScoreBatch(batch, errors, ids)


class ScoreError(InputError):
    """A score that cannot be stored; the message says which field and why."""


def _score_row(
    s: Any, score_signals: dict[str, str], capture: bool, source: str, fallback_ts: Any, now: datetime
) -> dict[str, Any]:
    if not isinstance(s, dict):
        raise ScoreError(f"expected a JSON object, got {type(s).__name__}")
    name = s.get("name")
    if not name or not isinstance(name, str):
        raise ScoreError("name: missing")
    if s.get("value") is None:
        raise ScoreError("value: missing")
    for k in _ID_FIELDS:
        if s.get(k) is not None and not isinstance(s[k], str):
            raise ScoreError(f"{k}: expected a string, got {type(s[k]).__name__}")
    trace, observation = s.get("traceId") or None, s.get("observationId") or None
    if trace is None and observation is None:
        raise ScoreError("needs traceId or observationId (session and dataset-run scores have no work unit)")
    dtype = s.get("dataType")
    if dtype is not None and not isinstance(dtype, str):
        raise ScoreError(f"dataType: expected a string, got {type(dtype).__name__}")
    value, label = _score_value(s["value"], (dtype or "").upper(), capture)
    stamp = s.get("timestamp") if s.get("timestamp") is not None else fallback_ts
    ts = parse_timestamp(stamp) if stamp is not None else now
    if ts is None:
        raise ScoreError(f"timestamp: cannot read {stamp!r} as a time")
    attrs: dict[str, Any] = {
        "name": name,
        "dataType": dtype or "NUMERIC",
        "traceId": trace,
        "observationId": observation,
        "configId": s.get("configId"),
        "environment": s.get("environment"),
    }
    if label is not None and ((dtype or "").upper() not in _TEXT_TYPES or capture):
        attrs["label"] = label
    if capture and isinstance(s.get("comment"), str) and s["comment"]:
        attrs["comment"] = s["comment"]
    sid = s.get("id") or stable_id("langfuse-score", trace, observation, name, s.get("value"))
    return {
        "signal_id": sid,
        "work_unit_id": trace or observation,
        "ts": ts,
        "kind": _kind(
            score_signals.get(name, "rated"),
            value,
            (dtype or "").upper() == "BOOLEAN" or isinstance(s["value"], bool),
        ),
        "value": value,
        "actor": None,
        "source": source,
        "attributes": orjson.dumps({k: v for k, v in attrs.items() if v is not None}).decode(),
        "_trace": trace,
        "_observation": observation,
    }


#: What a false boolean score of a name ``score_signals`` maps records instead of the mapped kind.
_WHEN_FALSE = {"accepted": "rejected"}


def _kind(mapped: str, value: float | None, boolean: bool) -> str:
    """The signal kind of a score: the kind its name maps to, except for a boolean score that
    is false (a thumbs-down on ``helpful: accepted``): that did not happen, so it records the
    opposite event where there is one (``rejected``), else ``not_<kind>`` (``not_escalated``),
    a kind of its own that is kept and reported but weighs nothing: neither the event nor a
    bad rating (a rating of 0 would have read "not escalated" as the worst score)."""
    if boolean and value == 0.0 and mapped != "rated":
        return _WHEN_FALSE.get(mapped, f"not_{mapped}")
    return mapped


#: score types whose value is free text (a comment, a corrected output): kept with content capture only
_TEXT_TYPES = ("TEXT", "CORRECTION")


def _score_value(v: Any, dtype: str, capture: bool) -> tuple[float | None, str | None]:
    """(value, label): numbers for NUMERIC and BOOLEAN scores, a label for the others. A reason
    quotes a text value only where content is captured (it may be a comment)."""
    if dtype in ("CATEGORICAL", *_TEXT_TYPES):
        if isinstance(v, dict | list):
            raise ScoreError(f"value: expected text for a {dtype} score, got {type(v).__name__}")
        return None, str(v)
    if dtype == "BOOLEAN" and isinstance(v, str):
        low = v.strip().lower()
        if low in ("true", "1"):
            return 1.0, None
        if low in ("false", "0"):
            return 0.0, None
    if isinstance(v, bool):
        return float(v), None
    if isinstance(v, int | float):
        try:
            return float(v), None
        except OverflowError:
            raise ScoreError(f"value: {v} is too large for a number") from None
    if isinstance(v, str) and not dtype:
        try:
            return float(v), None
        except ValueError:
            return None, v  # a categorical score sent without its dataType
    shown = repr(v)
    if not capture and isinstance(v, str | dict | list):  # it may be a comment or an output
        shown = {str: "text", dict: "an object", list: "a list"}[type(v)]
    raise ScoreError(f"value: {shown} is not a number for a {dtype or 'NUMERIC'} score"[:300])


def _raw(s: Any, capture: bool) -> str:
    """What the quarantine keeps of a refused score: without its comment, metadata and a value
    that is not a number (text, an object, a list) unless content is captured."""
    if not capture and isinstance(s, dict):
        s = {
            k: CONTENT_NOT_KEPT
            if v not in (None, "")
            and (k in ("comment", "metadata") or (k == "value" and isinstance(v, str | dict | list)))
            else v
            for k, v in s.items()
        }
    try:
        return orjson.dumps(s, default=str).decode()[:4000]
    except TypeError:
        return repr(s)[:4000]


@dataclass
class IngestionBatch:
    """A Langfuse ingestion request split into its score events and the answers for the rest.

    ``scores[i]`` is the body of the event ``event_ids[i]``; ``answers`` holds, per event
    position, the error answer of an event that is not taken (``None`` for a score).
    """

    scores: list[Any]
    score_ts: list[Any]
    score_positions: list[int]
    event_ids: list[str]
    answers: list[dict[str, Any] | None]


def ingestion_events(doc: Any) -> IngestionBatch:
    """Split an ingestion request body ``{batch: [events], metadata}``; raises :class:`ScoreError`
    when the body is not one (the route answers 400, as Langfuse does for an invalid body)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("batch"), list):
        raise ScoreError("expected an object with a batch list of events")
    out = IngestionBatch([], [], [], [], [])
    for i, ev in enumerate(doc["batch"]):
        ev_id = ev.get("id") if isinstance(ev, dict) else None
        ev_id = ev_id if isinstance(ev_id, str) and ev_id else f"event-{i}"
        out.event_ids.append(ev_id)
        kind = ev.get("type") if isinstance(ev, dict) else None
        if kind == "score-create":
            out.answers.append(None)
            out.scores.append(ev.get("body"))
            out.score_ts.append(ev.get("timestamp"))
            out.score_positions.append(i)
            continue
        if not isinstance(ev, dict):
            message = f"expected an event object, got {type(ev).__name__}"
        elif kind in INGESTION_EVENT_TYPES:
            message = (
                f"{kind} events are not accepted: only score-create events are (as on Langfuse Cloud "
                "since 2026-11-16); send traces and observations over OpenTelemetry to "
                "/api/public/otel/v1/traces"
            )
        else:
            message = f"type: {kind!r} is not a Langfuse ingestion event type"[:300]
        out.answers.append({"id": ev_id, "status": 400, "message": message, "error": "InvalidRequestError"})
    return out
