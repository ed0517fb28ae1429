"""Alert delivery: the log, a signed webhook, and email over SMTP.

Webhook: an HTTP POST of the alert as JSON with two headers::

    X-Yieldmeter-Timestamp: 1764000000
    X-Yieldmeter-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the secret>

The timestamp is inside the signed text, so a receiver can refuse replays
older than a few minutes; :func:`verify_signature` is the receiver's check.

The dashboard channel is the alert state table itself (:mod:`.alerts`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import smtplib
import time
from email.message import EmailMessage
from typing import Any

from yieldmeter.finops.settings import EmailSettings, WebhookSettings

log = logging.getLogger("yieldmeter.alerts")

SIGNATURE_HEADER = "X-Yieldmeter-Signature"
TIMESTAMP_HEADER = "X-Yieldmeter-Timestamp"


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``timestamp.body``."""
    mac = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    key: bytes, timestamp: str, body: bytes, header: str, *, max_age_s: float | None = 300
) -> bool:
    """True when ``header`` signs ``timestamp.body`` under ``key`` (and is recent enough)."""
    if max_age_s is not None and abs(time.time() - float(timestamp)) > max_age_s:
        return False
    return hmac.compare_digest(signature(key, timestamp, body), header)


def _plain(v: Any) -> Any:
    """JSON-safe: ISO text for times, null for an unbounded figure (JSON has no Infinity)."""
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def payload(event: str, alert: dict[str, Any]) -> dict[str, Any]:
    """The JSON an alert is delivered as: ``event`` is fired or resolved."""
    plain = {k: _plain(v) for k, v in alert.items()}
    details = plain.pop("details", None)
    if isinstance(details, str):
        with contextlib.suppress(ValueError):
            details = {k: _plain(x) for k, x in json.loads(details).items()}
    return {"event": event, "alert": plain, "details": details, "source": "yieldmeter"}


def send_log(event: str, alert: dict[str, Any]) -> None:
    level = logging.WARNING if event in ("fired", "escalated") else logging.INFO
    log.log(level, "alert %s [%s] %s", event, alert.get("severity"), alert.get("message"))


def send_webhook(settings: WebhookSettings, event: str, alert: dict[str, Any]) -> None:
    """POST the signed JSON; raises on a transport error or a non-2xx answer."""
    import httpx

    body = json.dumps(payload(event, alert), sort_keys=True, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "yieldmeter-alerts"}
    key = settings.key()
    if key:
        ts = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = ts
        headers[SIGNATURE_HEADER] = signature(key, ts, body)
    r = httpx.post(settings.url, content=body, headers=headers, timeout=settings.timeout_s)
    if r.status_code // 100 != 2:
        raise RuntimeError(f"webhook {settings.url} answered {r.status_code}: {r.text[:200]}")


def send_email(settings: EmailSettings, event: str, alert: dict[str, Any]) -> None:
    """Send a plain-text email through the configured SMTP server.

    With ``starttls`` the connection is upgraded to TLS and the server's certificate is verified
    (system CAs, or ``ca_file``) before ``username`` logs in with the password from ``password_env``.
    """
    import ssl

    msg = EmailMessage()
    sev = str(alert.get("severity", "")).upper()
    msg["Subject"] = f"[yieldmeter {sev} {event}] {alert.get('message', '')}"[:200]
    msg["From"] = settings.from_addr
    msg["To"] = ", ".join(settings.to)
    doc = payload(event, alert)
    lines = [f"{k}: {v}" for k, v in doc["alert"].items() if v is not None]
    details = doc["details"] if isinstance(doc["details"], dict) else {}
    extra = [f"{k}: {v}" for k, v in details.items() if v is not None]
    msg.set_content("\n".join([f"Alert {event}.", "", *lines, "", "Details:", *extra]))
    with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s) as smtp:
        if settings.starttls:
            # verify the server's certificate and name (smtplib's default context checks neither)
            smtp.starttls(context=ssl.create_default_context(cafile=settings.ca_file))
        if settings.username:
            smtp.login(settings.username, settings.password())
        smtp.send_message(msg)
