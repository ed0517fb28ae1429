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
import shutil
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.finops_data import call, ingest, make_workspace, utc
from tests.loopback import free_port
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
    ws.finops.evaluate_alerts(utc(2026, 11, 11))  # 12 / 10: the budget's alert fires, hard
    ws.finops.evaluate_alerts(utc(2026, 11, 11, 1))  # no change: nothing sent
    assert len(handler.received) == 1
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
    doc = json.loads(handler.received[0][1])
    assert (doc["alert"]["kind"], doc["alert"]["severity"], doc["details"]["hard_breached"]) == (
        "budget",
        "hard",
        True,
    )
    assert doc["event"] == "fired" and doc["details"]["amount"] == 10.0 and doc["alert"]["scope"] == "alpha"
    # The breach ends (the window moves past the call): "resolved".
    ws.finops.evaluate_alerts(utc(2026, 11, 20))
    events = [json.loads(b)["event"] for _, b in handler.received[1:]]
    assert events == ["resolved"]


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
    port = free_port()  # aiosmtpd cannot start on port 0
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


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, signed by its own key (it is its own CA)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: cannot make a certificate for the STARTTLS test")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert


def test_email_over_starttls_with_login(tmp_path: Path, monkeypatch):
    """A real SMTP server on loopback that offers STARTTLS and refuses AUTH before TLS: the alert goes
    through TLS (certificate verified against its CA file) and logs in with the password from the
    environment; a wrong password is a failed delivery, recorded with the server's answer."""
    controller_mod = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.smtp import AuthResult, LoginPassword

    key, cert = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    logins: list[tuple[str, bool]] = []

    class Handler:
        def __init__(self) -> None:
            self.messages: list[tuple[str, bool, bytes]] = []

        async def handle_DATA(self, server, session, envelope):
            login = session.auth_data.login.decode() if session.authenticated else ""
            self.messages.append((login, session.ssl is not None, envelope.content))
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"yieldmeter",
            b"pa55word",
        )
        logins.append((mechanism, session.ssl is not None))
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    handler = Handler()
    port = free_port()
    controller = controller_mod.Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
        authenticator=authenticator, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    try:
        monkeypatch.setenv("YM_TEST_SMTP_PASSWORD", "pa55word")
        ws = make_workspace(
            tmp_path / "ws",
            "alerts:\n  evaluate_on_ingest: false\n  channels: [email]\n  email:\n    host: 127.0.0.1\n"
            f"    port: {port}\n    starttls: true\n    ca_file: {cert}\n    username: yieldmeter\n"
            "    password_env: YM_TEST_SMTP_PASSWORD\n    from: yieldmeter@example.com\n"
            "    to: [finops@example.com]\n",
        )
        ingest(ws, "calls", [call(utc(2026, 11, 10), 12.0)])
        ws.finops.add_budget("team", "alpha", "rolling:7d", 10.0)
        ws.finops.evaluate_alerts(utc(2026, 11, 11))
        assert [(r["channel"], r["ok"]) for r in ws.finops.deliveries().to_pylist()] == [("email", True)]
        [(login, over_tls, content)] = handler.messages
        assert (login, over_tls) == ("yieldmeter", True) and logins[0][1] is True
        msg = email.message_from_bytes(content, policy=email.policy.default)
        assert msg["Subject"].startswith("[yieldmeter HARD fired] team alpha has used 120%")
        # A wrong password: the server refuses the login, the delivery records it, the alert stands.
        monkeypatch.setenv("YM_TEST_SMTP_PASSWORD", "wrong")
        ws.finops.evaluate_alerts(utc(2026, 11, 20))  # resolved: one more email to send
        last = ws.finops.deliveries().to_pylist()[0]
        assert (last["event"], last["ok"]) == ("resolved", False) and "535" in last["error"]
        assert len(handler.messages) == 1
    finally:
        controller.stop()


def test_email_settings_refuse_a_password_in_clear_text():
    from yieldmeter.config import ConfigError
    from yieldmeter.finops.settings import alert_settings

    base = {"host": "smtp.example.com", "from": "a@example.com", "to": ["b@example.com"], "username": "u"}
    with pytest.raises(ConfigError, match=r"alerts\.email.*password_env"):
        alert_settings({"email": {**base, "starttls": True}})
    with pytest.raises(ConfigError, match=r"alerts\.email.*starttls"):
        alert_settings({"email": {**base, "password_env": "P"}})
