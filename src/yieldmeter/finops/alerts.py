"""Alert state: each alert fires once per breach and resolves when the breach ends.

An evaluation takes the breaches true *now* (from :mod:`.rules`) and the alert
state table ``finops_alerts``:

- a breach whose ``rule_key`` has no firing alert opens one (event ``fired``);
- a breach whose ``rule_key`` is already firing only refreshes ``last_seen``,
  ``value`` and ``message`` (no event: one notification per breach) — unless
  its severity changed: soft to hard is event ``escalated`` (a budget crossed
  its hard threshold: the alert becomes hard, and its scope is a hard stop),
  hard to soft is ``de-escalated`` (a rolling window moved past some spend);
- a firing alert whose ``rule_key`` is not breached any more is closed with
  ``resolved_at`` (event ``resolved``);
- the same rule breached again later opens a new alert (a new ``alert_id``).

Events go to the channels (log, webhook, email). A soft alert's events go to
``soft_channels`` only, when that is set (``alerts.soft_channels`` in
``yieldmeter.yaml``, e.g. ``[]`` to mute soft deliveries and keep them on the
dashboard); a hard alert's events (fired, escalated, resolved) go to every
channel, always. Every attempt is a row of
``finops_alert_deliveries`` with its error, so a failed webhook is visible. A
failed delivery is tried again at the next evaluations, up to ``MAX_ATTEMPTS``
tries in all.
The dashboard reads the state table.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from yieldmeter.errors import InputError
from yieldmeter.ingest.conform import stable_id

#: how far ahead of this machine's clock an evaluation time may be (another machine's clock)
FUTURE_SLACK = timedelta(minutes=5)

_TS = pa.timestamp("us", tz="UTC")
ALERTS_TABLE = "finops_alerts"
DELIVERIES_TABLE = "finops_alert_deliveries"
ALERTS_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),
        ("rule_key", pa.string()),
        ("kind", pa.string()),
        ("severity", pa.string()),
        ("scope_kind", pa.string()),
        ("scope", pa.string()),
        ("status", pa.string()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("message", pa.string()),
        ("details", pa.string()),
        ("first_seen", _TS),
        ("last_seen", _TS),
        ("resolved_at", _TS),
    ]
)
DELIVERIES_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),
        ("event", pa.string()),
        ("channel", pa.string()),
        ("ts", _TS),
        ("ok", pa.bool_()),
        ("error", pa.string()),
    ]
)

#: Tries per alert event and channel (the first one included) before a delivery is given up.
MAX_ATTEMPTS = 3
#: Serialises evaluations in one process (ingest hook and the serve scheduler).
_EVALUATING = threading.Lock()


@dataclass(frozen=True)
class Breach:
    """A rule that is breached now. ``rule_key`` identifies the rule and its scope."""

    rule_key: str
    kind: str
    severity: str
    scope_kind: str
    scope: str
    value: float
    threshold: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Transition:
    event: str  # fired | escalated | de-escalated | resolved
    alert: dict[str, Any]


SEVERITY_RANK = {"soft": 0, "hard": 1}


def transitions(
    state: list[dict[str, Any]], breaches: list[Breach], now: datetime
) -> tuple[list[dict[str, Any]], list[Transition]]:
    """The new state rows and the events, from the old state and the breaches now (pure)."""
    now = now.astimezone(UTC)
    rows = [dict(r) for r in state]
    firing = {r["rule_key"]: r for r in rows if r["status"] == "firing"}
    events: list[Transition] = []
    seen: set[str] = set()
    for b in breaches:
        if b.rule_key in seen:
            continue
        seen.add(b.rule_key)
        current = firing.get(b.rule_key)
        details = json.dumps(b.details, sort_keys=True, default=str)
        if current is not None:
            before = current["severity"]
            current.update(last_seen=now, value=b.value, message=b.message, details=details)
            if b.severity != before:
                current.update(severity=b.severity, threshold=b.threshold, kind=b.kind)
                up = SEVERITY_RANK.get(b.severity, 0) > SEVERITY_RANK.get(before, 0)
                events.append(Transition("escalated" if up else "de-escalated", current))
            continue
        row = {
            "alert_id": stable_id(b.rule_key, now.isoformat()),
            "rule_key": b.rule_key,
            "kind": b.kind,
            "severity": b.severity,
            "scope_kind": b.scope_kind,
            "scope": b.scope,
            "status": "firing",
            "value": b.value,
            "threshold": b.threshold,
            "message": b.message,
            "details": details,
            "first_seen": now,
            "last_seen": now,
            "resolved_at": None,
        }
        rows.append(row)
        events.append(Transition("fired", row))
    for key, r in firing.items():
        if key not in seen:
            r.update(status="resolved", resolved_at=now)
            events.append(Transition("resolved", r))
    return rows, events


Channel = Callable[[str, dict[str, Any]], None]


def routes(
    alert: dict[str, Any], channels: dict[str, Channel], soft_channels: Sequence[str] | None
) -> list[str]:
    """The channels an alert's events go to: every channel for a hard alert, ``soft_channels`` for soft."""
    if alert.get("severity") == "hard" or soft_channels is None:
        return list(channels)
    return [name for name in channels if name in soft_channels]


def evaluate(
    store: Any,
    breaches: list[Breach],
    now: datetime,
    channels: dict[str, Channel],
    soft_channels: Sequence[str] | None = None,
) -> list[Transition]:
    """Apply the breaches to the state table, then deliver the events; returns the events.

    The state moves forward in time only (:class:`~yieldmeter.errors.InputError`, which the
    API answers with 400): an evaluation earlier than the latest one the state holds is refused,
    since it would resolve and fire alerts again, to every channel, each time it alternated
    with a current one; so is one ahead of the clock, after which every evaluation until then
    would be refused.
    """
    if now > datetime.now(UTC) + FUTURE_SLACK:
        raise InputError(
            f"alerts are evaluated as of now or a time already past, not {now.isoformat()}", field="at"
        )
    with _EVALUATING:
        ensure_tables(store)
        state = store.ibis.table(ALERTS_TABLE).to_pyarrow().to_pylist()
        latest = max(
            (t for r in state for t in (r["last_seen"], r["resolved_at"]) if t is not None), default=None
        )
        if latest is not None and now < latest:
            raise InputError(
                f"alerts were last evaluated as of {latest.isoformat()}: an evaluation as of "
                f"{now.isoformat()} would undo that state and deliver its changes again "
                "(to look back without changing anything: `yieldmeter budgets list --at`)",
                field="at",
            )
        rows, events = transitions(state, breaches, now)
        if events or breaches:
            store.replace(ALERTS_TABLE, pa.Table.from_pylist(rows, schema=ALERTS_SCHEMA))
        todo = [
            (ev.event, ev.alert, name) for ev in events for name in routes(ev.alert, channels, soft_channels)
        ]
        todo += _retries(store, rows, channels)
        deliveries = []
        for event, alert, name in todo:
            ok, error = True, None
            try:
                channels[name](event, alert)
            except Exception as exc:  # a channel failing must not stop the others
                ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
            deliveries.append(
                {
                    "alert_id": alert["alert_id"],
                    "event": event,
                    "channel": name,
                    "ts": datetime.now(UTC),
                    "ok": ok,
                    "error": error,
                }
            )
        if deliveries:
            store.append(DELIVERIES_TABLE, pa.Table.from_pylist(deliveries, schema=DELIVERIES_SCHEMA))
        return events


def _retries(
    store: Any, rows: list[dict[str, Any]], channels: dict[str, Channel]
) -> list[tuple[str, dict[str, Any], str]]:
    """Failed deliveries to try again: no success yet, fewer than MAX_ATTEMPTS tries, channel still on."""
    d = store.ibis.table(DELIVERIES_TABLE)
    g = d.group_by(["alert_id", "event", "channel"]).aggregate(tries=d.count(), delivered=d.ok.any())
    g = g.filter(~g.delivered & (g.tries < MAX_ATTEMPTS))
    by_id = {r["alert_id"]: r for r in rows}
    out = []
    for r in g.to_pyarrow().to_pylist():
        alert = by_id.get(r["alert_id"])
        if alert is not None and r["channel"] in channels:
            out.append((r["event"], alert, r["channel"]))
    return out


def ensure_tables(store: Any) -> None:
    store.ensure_table(ALERTS_TABLE, ALERTS_SCHEMA)
    store.ensure_table(DELIVERIES_TABLE, DELIVERIES_SCHEMA)
