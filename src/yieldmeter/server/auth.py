"""API keys with scopes, stored hashed, and the rule of when the server may run open.

A key reads ``ym_<key_id>_<secret>``; the store keeps the key id, its name,
scopes and org, and the SHA-256 of the whole key (a key is 192 random bits,
so a fast hash is enough; the key itself is shown once, at creation).

Scopes:

- ``ingest``: write telemetry and records (OTLP, ``POST /api/v1/...``);
- ``read``: reports, spend, the dashboard (teams, never single people);
- ``people``: per-person views (implies ``read``);
- ``admin``: everything, including keys (implies all).

Clients send a key as ``Authorization: Bearer <key>`` (what an OpenTelemetry
exporter sends with ``OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<key>``)
or as the password of HTTP Basic (what a browser asks for).

With no key at all (and no ``ingest_keys`` in ``yieldmeter.yaml``) the server
is *open*: one person on their own machine, every scope granted. It then
refuses to listen on any address but loopback (:func:`check_bind`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from yieldmeter.errors import InputError, UnknownName

if TYPE_CHECKING:
    from starlette.requests import Request

    from yieldmeter.app.workspace import Workspace

SCOPES: tuple[str, ...] = ("ingest", "read", "people", "admin")
#: What each scope grants besides itself.
IMPLIES: dict[str, tuple[str, ...]] = {"admin": SCOPES, "people": ("read",)}
TABLE = "api_keys"
SCHEMA = pa.schema(
    [
        pa.field("key_id", pa.string()),
        pa.field("name", pa.string()),
        pa.field("scopes", pa.string()),  # comma-separated
        pa.field("org", pa.string()),
        pa.field("key_hash", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        pa.field("revoked_at", pa.timestamp("us", tz="UTC")),
    ]
)
#: Keys created or revoked by another process (the CLI) are seen within this many seconds.
RELOAD_S = 5.0


class AuthError(Exception):
    """401 (no or unknown key) or 403 (a key without the scope)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ServerRefused(RuntimeError):
    """The server would listen beyond loopback with no key to protect it."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's id and name, or ``open`` when the server runs without keys."""

    key_id: str
    name: str
    scopes: frozenset[str]
    org: str = "default"

    def can(self, scope: str) -> bool:
        return scope in self.scopes


OPEN = Principal("open", "open (no keys configured, loopback only)", frozenset(SCOPES))


def expand(scopes: list[str] | tuple[str, ...] | str) -> frozenset[str]:
    """The scopes a key holds, with what each implies."""
    items = [s.strip() for s in scopes.split(",")] if isinstance(scopes, str) else list(scopes)
    unknown = [s for s in items if s and s not in SCOPES]
    if unknown:
        raise InputError(
            f"unknown scope {', '.join(unknown)}; choose from {', '.join(SCOPES)}", field="scopes"
        )
    out: set[str] = set()
    for s in items:
        if s:
            out.add(s)
            out.update(IMPLIES.get(s, ()))
    return frozenset(out)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key_id(key: str) -> str | None:
    parts = key.split("_")
    return parts[1] if len(parts) == 3 and parts[0] == "ym" and parts[1] else None


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    name: str
    scopes: str
    org: str
    created_at: datetime | None
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": self.scopes.split(","),
            "org": self.org,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "active": self.revoked_at is None,
        }


class KeyStore:
    """The ``api_keys`` table of a workspace: create, list, revoke (writes go through the caller's writer)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        ws.store.ensure_table(TABLE, SCHEMA)

    def _rows(self) -> list[dict[str, Any]]:
        # the store reads on a cursor of its own: the key ring reloads from the event loop while
        # the writer thread holds the workspace's connection
        return self.ws.store.read_table(TABLE, order_by="created_at").to_pylist()  # type: ignore[no-any-return]

    def all_keys(self) -> list[KeyInfo]:
        return [
            KeyInfo(r["key_id"], r["name"], r["scopes"], r["org"], r["created_at"], r["revoked_at"])
            for r in self._rows()
        ]

    def hashes(self) -> dict[str, tuple[str, Principal]]:
        """key_id -> (hash, principal) of the active keys."""
        return self.ring()[0]

    def ring(self) -> tuple[dict[str, tuple[str, Principal]], bool]:
        """The active keys (as :meth:`hashes`), and whether any key was ever made (revoked ones count)."""
        rows = self._rows()
        active = {
            r["key_id"]: (r["key_hash"], Principal(r["key_id"], r["name"], expand(r["scopes"]), r["org"]))
            for r in rows
            if r["revoked_at"] is None
        }
        return active, bool(rows)

    def create(self, name: str, scopes: list[str] | str, org: str = "default") -> tuple[KeyInfo, str]:
        """A new key; returns its description and the key itself (shown once, never stored)."""
        granted = [s.strip() for s in (scopes.split(",") if isinstance(scopes, str) else scopes) if s.strip()]
        expand(granted)
        if not granted:
            raise InputError(f"a key needs at least one scope ({', '.join(SCOPES)})", field="scopes")
        if not name.strip():
            raise InputError("a key needs a name (who or what uses it)", field="name")
        key_id = secrets.token_hex(4)
        key = f"ym_{key_id}_{secrets.token_urlsafe(24).replace('_', '-')}"
        now = datetime.now(UTC)
        row: dict[str, Any] = {
            "key_id": key_id,
            "name": name.strip(),
            "scopes": ",".join(granted),
            "org": org,
            "key_hash": hash_key(key),
            "created_at": now,
            "revoked_at": None,
        }
        self.ws.store.append(TABLE, pa.Table.from_pylist([row], schema=SCHEMA))
        return KeyInfo(key_id, row["name"], row["scopes"], org, now, None), key

    def revoke(self, key_id: str) -> KeyInfo:
        rows = self._rows()
        hit = [r for r in rows if r["key_id"] == key_id]
        if not hit:
            raise UnknownName(f"no key {key_id!r}; `yieldmeter keys list` shows the ids")
        for r in rows:
            if r["key_id"] == key_id and r["revoked_at"] is None:
                r["revoked_at"] = datetime.now(UTC)
        self.ws.store.replace(TABLE, pa.Table.from_pylist(rows, schema=SCHEMA))
        r = next(r for r in rows if r["key_id"] == key_id)
        return KeyInfo(r["key_id"], r["name"], r["scopes"], r["org"], r["created_at"], r["revoked_at"])


def token_of(request: Request) -> str | None:
    """The key a request carries: ``Bearer <key>``, or the password of HTTP Basic."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            _, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or None
    return None


class KeyRing:
    """The server's view of the keys: cached in memory, reloaded every few seconds.

    ``legacy_ingest`` counts ``ingest_keys`` from ``yieldmeter.yaml`` (checked by the OTLP
    receiver itself): they make the server closed too. Once a key was made, the server
    stays closed when every key is revoked: revoking the last key answers 401 to
    everyone, never reopens the server to anyone who can reach it.
    """

    def __init__(self, store: KeyStore, *, legacy_ingest: bool = False) -> None:
        self.store = store
        self.legacy_ingest = legacy_ingest
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[str, Principal]] = {}
        self._closed = False  # a key was made at some point (active or revoked)
        self._loaded = 0.0
        self._reloading = False
        self.reload()

    def reload(self) -> None:
        keys, made = self.store.ring()
        with self._lock:
            self._keys = keys
            self._closed = self._closed or made
            self._loaded = time.monotonic()

    def _current(self) -> dict[str, tuple[str, Principal]]:
        """The known keys; past :data:`RELOAD_S` a background thread rereads them (requests never wait)."""
        if time.monotonic() - self._loaded > RELOAD_S:
            with self._lock:
                start = not self._reloading and time.monotonic() - self._loaded > RELOAD_S
                self._reloading = self._reloading or start
            if start:
                threading.Thread(target=self._background_reload, name="yieldmeter-keys", daemon=True).start()
        return self._keys

    def _background_reload(self) -> None:
        try:
            self.reload()
        except Exception:  # a busy store: keep the last known keys, try again later
            self._loaded = time.monotonic()
        finally:
            self._reloading = False

    @property
    def required(self) -> bool:
        """True once any key was made (even if all are revoked now): every request must then carry one."""
        return bool(self._current()) or self._closed or self.legacy_ingest

    @property
    def usable(self) -> bool:
        """True when some client can get in: an active key, or ``ingest_keys`` in the config."""
        return bool(self._current()) or self.legacy_ingest

    def principal(self, request: Request) -> Principal:
        """Who calls; :class:`AuthError` 401 when keys are required and none matches."""
        if not self.required:
            return OPEN
        token = token_of(request)
        if not token:
            raise AuthError(401, "this server needs an API key: send `Authorization: Bearer <key>`")
        key_id = _key_id(token)
        entry = self._current().get(key_id or "")
        if entry is None or not hmac.compare_digest(entry[0], hash_key(token)):
            raise AuthError(401, "unknown or revoked API key")
        return entry[1]

    def require(self, request: Request, scope: str) -> Principal:
        """The caller, who must hold ``scope`` (403 otherwise)."""
        p = self.principal(request)
        if not p.can(scope):
            raise AuthError(
                403, f"the key {p.key_id!r} lacks the {scope!r} scope (it has: {', '.join(sorted(p.scopes))})"
            )
        return p

    def ingest_org(self, request: Request) -> str | None:
        """For the OTLP receiver: the org of an API key with ``ingest`` scope; ``default`` when open;
        None when the request carries no API key (the receiver then checks its own ``ingest_keys``)."""
        if not self.required:
            return "default"
        token = token_of(request)
        if not token or _key_id(token) is None:
            return None
        return self.require(request, "ingest").org


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, ring: KeyRing) -> None:
    """Refuse to serve beyond loopback when no key protects the server (or every key was revoked)."""
    if not is_loopback(host) and not ring.usable:
        raise ServerRefused(
            f"refusing to listen on {host} without API keys: anyone who can reach it could read and write "
            "the workspace. Create a key first (`yieldmeter keys create NAME --scope admin`), or serve on "
            "127.0.0.1."
        )
