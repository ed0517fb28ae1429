"""Record signals, outcomes and effort: to the server's REST API, or to local JSON lines.

Rows are buffered and sent in batches (``batch_size`` rows, or every
``flush_interval_s`` seconds from a background thread, and at exit). Sending
retries with exponential backoff on connection errors, 429 and 5xx (honouring
``Retry-After``); ids are made on the client, so a retried batch creates no
duplicates. Without an endpoint, rows are appended to ``<path>/<table>.jsonl``,
which ``yieldmeter ingest <path>/signals.jsonl --table signals`` imports.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("yieldmeter.sdk")

TABLES = ("signals", "outcomes", "effort")
_KEYS = {"signals": "signal_id", "outcomes": "outcome_id", "effort": "effort_id"}


class RecordError(RuntimeError):
    """Rows could not be delivered after all retries; they stay buffered for the next flush."""


def _iso(v: datetime | date | str | None) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, datetime):
        return (v if v.tzinfo else v.replace(tzinfo=UTC)).isoformat()
    return datetime(v.year, v.month, v.day, tzinfo=UTC).isoformat()


class Recorder:
    """Buffers canonical rows and delivers them; thread-safe."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        api_key: str | None = None,
        path: Path | str | None = None,
        batch_size: int = 100,
        flush_interval_s: float = 2.0,
        max_retries: int = 5,
        backoff_s: float = 0.2,
        timeout_s: float = 10.0,
        source: str = "sdk",
    ) -> None:
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.path = Path(path) if path is not None else (None if endpoint else Path("yieldmeter-records"))
        self.api_key = api_key
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.source = source
        self._buffer: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
        self._lock = threading.RLock()
        self._client: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        atexit.register(self._at_exit)

    # -- recording -----------------------------------------------------------------------------
    def record(self, table: str, row: dict[str, Any]) -> None:
        if table not in self._buffer:
            raise ValueError(f"unknown record table {table!r}; one of {', '.join(TABLES)}")
        with self._lock:
            self._buffer[table].append({k: v for k, v in row.items() if v is not None})
            full = len(self._buffer[table]) >= self.batch_size
        if full:
            self.flush()
        else:
            self._ensure_thread()

    def flush(self) -> None:
        """Deliver everything buffered; raises :class:`RecordError` when the server stays unreachable."""
        with self._lock:
            for table in TABLES:
                rows = self._buffer[table]
                if not rows:
                    continue
                # the newest record of an id wins (the store keeps the first of a batch)
                key = _KEYS[table]
                rows = list({r.get(key) or id(r): r for r in rows}.values())
                self._deliver(table, rows)
                self._buffer[table] = []

    def close(self) -> None:
        self._stop.set()
        try:
            self.flush()
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _at_exit(self) -> None:
        try:
            self.close()
        except RecordError as exc:
            log.error("yieldmeter: %s", exc)

    def _ensure_thread(self) -> None:
        if self._thread is None and self.flush_interval_s > 0:
            self._thread = threading.Thread(target=self._loop, name="yieldmeter-recorder", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except RecordError as exc:
                log.warning("yieldmeter: %s (will retry)", exc)

    # -- delivery ---------------------------------------------------------------------------
    def _deliver(self, table: str, rows: list[dict[str, Any]]) -> None:
        if self.endpoint is None:
            assert self.path is not None
            self.path.mkdir(parents=True, exist_ok=True)
            with (self.path / f"{table}.jsonl").open("a", encoding="utf-8") as fh:
                for r in rows:
                    fh.write(json.dumps(r, default=str) + "\n")
            return
        import httpx

        if self._client is None:
            headers = {"x-yieldmeter-source": self.source}
            if self.api_key:
                headers["authorization"] = f"Bearer {self.api_key}"
            self._client = httpx.Client(timeout=self.timeout_s, headers=headers)
        url = f"{self.endpoint}/api/v1/{table}"
        delay = self.backoff_s
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                resp = self._client.post(url, content=json.dumps(rows, default=str),
                                         headers={"content-type": "application/json"})  # fmt: skip
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 300:
                    rejected = resp.json().get("rejected") or []
                    for r in rejected:
                        log.warning(
                            "yieldmeter rejected a %s row %s: %s", table, r.get("position"), r.get("reason")
                        )
                    return
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code not in (408, 429) and resp.status_code < 500:
                    raise RecordError(f"{url} refused {len(rows)} {table} rows: {last}")
                retry_after = resp.headers.get("retry-after")
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            if attempt < self.max_retries:
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise RecordError(f"could not deliver {len(rows)} {table} rows to {url} after retries ({last})")


_default: Recorder | None = None
_default_lock = threading.Lock()


def configure(endpoint: str | None = None, **kwargs: Any) -> Recorder:
    """Set the recorder the ``record_*`` functions use (endpoint: the server's base URL)."""
    global _default
    with _default_lock:
        if _default is not None:
            _default.close()
        _default = Recorder(endpoint, **kwargs)
        return _default


def _recorder() -> Recorder:
    """The configured recorder; else one from ``YIELDMETER_ENDPOINT`` / ``YIELDMETER_API_KEY`` /
    ``YIELDMETER_RECORDS_PATH`` (read on first use, never at import)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Recorder(
                os.environ.get("YIELDMETER_ENDPOINT") or None,
                api_key=os.environ.get("YIELDMETER_API_KEY") or None,
                path=os.environ.get("YIELDMETER_RECORDS_PATH") or None,
            )
        return _default


def flush() -> None:
    _recorder().flush()


def record_signal(
    work_unit_id: str,
    kind: str,
    value: float | None = None,
    *,
    actor: str | None = None,
    ts: datetime | str | None = None,
    attributes: dict[str, Any] | None = None,
    signal_id: str | None = None,
) -> str:
    """Record that ``kind`` happened to a work unit (accepted, used_in_artifact...); returns its id."""
    sid = signal_id or uuid.uuid4().hex
    _recorder().record(
        "signals",
        {
            "signal_id": sid,
            "work_unit_id": work_unit_id,
            "ts": _iso(ts) or datetime.now(UTC).isoformat(),
            "kind": kind,
            "value": value,
            "actor": actor,
            "attributes": json.dumps(attributes) if attributes else None,
        },
    )
    return sid


def record_outcome(
    workflow: str,
    metric: str,
    *,
    period_start: datetime | date | str,
    period_end: datetime | date | str | None = None,
    observed_value: float | None = None,
    baseline_value: float | None = None,
    unit: str | None = None,
    value_dimension: str | None = None,
    monetary_value: float | None = None,
    attribution_share: float | None = None,
    evidence_level: str | None = None,
    evidence_ref: str | None = None,
    benefit_owner: str | None = None,
    work_unit_id: str | None = None,
    outcome_id: str | None = None,
) -> str:
    """Record an operating outcome against its baseline; returns its id.

    The default id is derived from workflow, metric, period and work unit, so
    recording the same month's outcome again replaces it instead of adding one.
    """
    from yieldmeter.ingest.conform import stable_id

    start = _iso(period_start)
    oid = outcome_id or stable_id("outcome", workflow, metric, start, work_unit_id)
    _recorder().record(
        "outcomes",
        {
            "outcome_id": oid,
            "workflow": workflow,
            "work_unit_id": work_unit_id,
            "period_start": start,
            "period_end": _iso(period_end),
            "metric": metric,
            "baseline_value": baseline_value,
            "observed_value": observed_value,
            "unit": unit,
            "value_dimension": value_dimension,
            "monetary_value": monetary_value,
            "attribution_share": attribution_share,
            "evidence_level": evidence_level,
            "evidence_ref": evidence_ref,
            "benefit_owner": benefit_owner,
        },
    )
    return oid


def record_effort(
    work_unit_id: str,
    minutes: float,
    *,
    kind: str = "review",
    person: str | None = None,
    ts: datetime | str | None = None,
    effort_id: str | None = None,
) -> str:
    """Record human minutes spent on a work unit (review, correction, rework...); returns its id."""
    eid = effort_id or uuid.uuid4().hex
    _recorder().record(
        "effort",
        {
            "effort_id": eid,
            "work_unit_id": work_unit_id,
            "ts": _iso(ts) or datetime.now(UTC).isoformat(),
            "person": person,
            "kind": kind,
            "minutes": minutes,
        },
    )
    return eid
