"""Alert delivery against real receivers on loopback: an HTTP server and an SMTP server.

The webhook's signature is checked the way a receiver would: HMAC-SHA256 of
"<timestamp>.<body>" under the shared secret (yieldmeter.finops.delivery).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.finops_data import call, ingest, make_workspace, utc
from yieldmeter.finops.delivery import verify_signature

SECRET = "s3cret-for-tests"


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def receiver():
    class Handler(_Receiver):
        received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
        status = 200

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, Handler
    server.shutdown()
    server.server_close()


def test_webhook_is_signed_and_sent_once_per_event(tmp_path: Path, receiver, monkeypatch):
    server, handler = receiver
    monkeypatch.setenv("YM_TEST_HOOK_SECRET", SECRET)
    url = f"http://127.0.0.1:{server.server_port}/hook"
    ws = make_workspace(
        tmp_path / "ws",
        "alerts:\n  evaluate_on_ingest: false\n  channels: [webhook]\n"
        f"  webhook:\n    url: {url}\n    secret_env: YM_TEST_HOOK_SECRET\n",
    )
    ingest(ws, "calls", [call(utc(2026, 11, 10), 12.0)])
    ws.finops.add_budget("team", "alpha", "rolling:7d", 10.0)
    ws.finops.evaluate_alerts(utc(2026, 11, 11))  # 12 / 10: soft and hard fire
    ws.finops.evaluate_alerts(utc(2026, 11, 11, 1))  # no change: nothing sent
    assert len(handler.received) == 2
    for headers, body in handler.received:
        ts, sig = headers["x-yieldmeter-timestamp"], headers["x-yieldmeter-signature"]
        # Recompute the HMAC by hand, as a receiver in another language would.
        expected = (
            "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        )
        assert sig == expected
        assert verify_signature(SECRET.encode(), ts, body, sig)
        assert not verify_signature(b"wrong", ts, body, sig)
        assert not verify_signature(SECRET.encode(), ts, body + b" ", sig)
        assert abs(int(ts) - time.time()) < 60
    kinds = sorted(json.loads(b)["alert"]["kind"] for _, b in handler.received)
    assert kinds == ["budget_hard", "budget_soft"]
    doc = json.loads(handler.received[0][1])
    assert doc["event"] == "fired" and doc["details"]["amount"] == 10.0 and doc["alert"]["scope"] == "alpha"
    # The breach ends (the window moves past the call): one "resolved" each.
    ws.finops.evaluate_alerts(utc(2026, 11, 20))
    events = [json.loads(b)["event"] for _, b in handler.received[2:]]
    assert events == ["resolved", "resolved"]


def test_failed_webhook_is_recorded_not_hidden(tmp_path: Path, receiver):
    server, handler = receiver
    handler.status = 500
    url = f"http://127.0.0.1:{server.server_port}/hook"
    ws = make_workspace(
        tmp_path / "ws",
        "alerts:\n  evaluate_on_ingest: false\n  channels: [log, webhook]\n"
        f"  webhook:\n    url: {url}\n    secret: x\n",
    )
    ingest(ws, "calls", [call(utc(2026, 11, 10), 9.0)])
    ws.finops.add_budget("team", "alpha", "rolling:7d", 10.0)
    ws.finops.evaluate_alerts(utc(2026, 11, 11))
    rows = {r["channel"]: r for r in ws.finops.deliveries().to_pylist()}
    assert rows["log"]["ok"] is True
    assert rows["webhook"]["ok"] is False and "500" in rows["webhook"]["error"]
    assert ws.finops.alerts("firing").num_rows == 1  # the alert stands even though delivery failed
    # The receiver recovers: the next evaluation delivers the same event again, once.
    handler.status = 200
    ws.finops.evaluate_alerts(utc(2026, 11, 11, 1))
    ws.finops.evaluate_alerts(utc(2026, 11, 11, 2))
    hook = [r for r in ws.finops.deliveries().to_pylist() if r["channel"] == "webhook"]
    assert sorted(r["ok"] for r in hook) == [False, True]
    assert len(handler.received) == 2  # one failed, one delivered


def test_email_through_a_local_smtp_server(tmp_path: Path):
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")

    class Handler:
        def __init__(self) -> None:
            self.messages: list[tuple[str, list[str], bytes]] = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    handler = Handler()
    with socket.socket() as s:  # a free loopback port (aiosmtpd cannot start on port 0)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = aiosmtpd.Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        ws = make_workspace(
            tmp_path / "ws",
            "alerts:\n  evaluate_on_ingest: false\n  channels: [email]\n  email:\n    host: 127.0.0.1\n"
            f"    port: {port}\n    from: yieldmeter@example.com\n    to: [finops@example.com]\n",
        )
        ingest(ws, "calls", [call(utc(2026, 11, 10), 8.5)])
        ws.finops.add_budget("team", "alpha", "rolling:7d", 10.0)
        ws.finops.evaluate_alerts(utc(2026, 11, 11))
    finally:
        controller.stop()
    assert len(handler.messages) == 1
    sender, rcpts, content = handler.messages[0]
    assert sender == "yieldmeter@example.com" and rcpts == ["finops@example.com"]
    msg = email.message_from_bytes(content, policy=email.policy.default)
    # 8.5 / 10 = 85%: the soft threshold (80%) is crossed, the hard one (100%) is not.
    assert msg["Subject"].startswith(
        "[yieldmeter SOFT fired] team alpha has used 85% of its rolling:7d budget"
    )
    assert "spent: 8.5" in msg.get_content()
