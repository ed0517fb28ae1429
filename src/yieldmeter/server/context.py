"""What every route of the server shares: the workspace, the writer, settings and auth.

Route modules export ``routes(ctx: ServerContext) -> list[BaseRoute]``;
:func:`yieldmeter.server.app.create_app` builds the app from a list of them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from yieldmeter.ingest.base import default_workers, usable_cores
from yieldmeter.server.decoding import DecodePool
from yieldmeter.server.spool import SPOOL_LIMIT, Spool
from yieldmeter.server.writer import CHECKPOINT_THRESHOLD, Writer

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace

#: OTLP's recommended limit is the receiver's choice; 64 MiB after decompression.
BODY_LIMIT = 64 * 1024 * 1024
#: Small JSON bodies of admin writes (keys, budgets).
ADMIN_BODY_LIMIT = 64 * 1024
#: A request body must arrive within this many seconds of the handler asking for it: a client
#: that trickles bytes (slow loris) is answered 408 and its connection closed.
BODY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class IngestKey:
    """A key pair a client sends (Langfuse public/secret key, or a bearer secret) and the org it writes as."""

    public_key: str
    secret_key: str
    org: str = "default"


@dataclass
class ServerSettings:
    """Server options; ``ingest_keys`` empty means no authentication (loopback use)."""

    ingest_keys: list[IngestKey] = field(default_factory=list)
    body_limit: int = BODY_LIMIT
    max_queue: int = 256
    retry_after_s: int = 1
    #: Processes that decode large OTLP bodies beside the event loop (0: all on the loop).
    decode_workers: int = field(default_factory=default_workers)
    #: DuckDB's WAL size before it checkpoints; see :meth:`Writer.start`.
    checkpoint_threshold: str = CHECKPOINT_THRESHOLD
    #: Seconds a request body may take to arrive (:func:`read_body`).
    body_timeout_s: float = BODY_TIMEOUT_S
    #: When an OTLP trace request is answered: ``spool`` (its rows are durable in the spool, the
    #: commit follows; :mod:`yieldmeter.server.spool`) or ``commit`` (its rows are committed).
    acknowledge: str = "spool"
    #: Batches answered from the spool and not yet committed (their size in memory), beyond which
    #: requests are answered 503.
    spool_limit: int = SPOOL_LIMIT
    #: DuckDB's threads while the server runs (None, ``auto``: :meth:`threads`).
    duckdb_threads: int | None = None

    def threads(self) -> int:
        """DuckDB's threads: ``duckdb_threads``, else the cores the decode processes leave, at
        least one. With one, a query runs on the thread that asks for it, so a re-score runs at
        the scorer thread's lower priority, not on DuckDB's own threads beside the requests."""
        return self.duckdb_threads or max(1, usable_cores() - self.decode_workers)

    @classmethod
    def from_config(cls, server: dict[str, Any]) -> ServerSettings:
        """Read the ``server:`` section of ``yieldmeter.yaml``.

        ``ingest_keys: [{public_key, secret_key, org}]``, ``body_limit_mb``, ``max_queue``,
        ``decode_workers`` (a number, or ``auto``: one per core, at most 4, none on one core),
        ``checkpoint_threshold`` (a DuckDB size such as ``256MB``), ``body_timeout_s`` (seconds
        a request body may take to arrive, default 30), ``acknowledge`` (``spool``, the
        default, or ``commit``), ``spool_limit_mb`` (default 256), ``duckdb_threads`` (a number,
        or ``auto``: the cores the decode processes leave, at least one).
        """
        keys = [IngestKey(**k) for k in server.get("ingest_keys", []) or []]
        out = cls(ingest_keys=keys)
        if "body_limit_mb" in server:
            out.body_limit = int(float(server["body_limit_mb"]) * 1024 * 1024)
        if "max_queue" in server:
            out.max_queue = int(server["max_queue"])
        workers = server.get("decode_workers", "auto")
        out.decode_workers = default_workers() if workers == "auto" else int(workers)
        if "checkpoint_threshold" in server:
            out.checkpoint_threshold = str(server["checkpoint_threshold"])
        if "body_timeout_s" in server:
            out.body_timeout_s = float(server["body_timeout_s"])
        ack = server.get("acknowledge", "spool")
        if ack not in ("commit", "spool"):
            raise ValueError(f"server.acknowledge: {ack!r} is not one of 'commit', 'spool'")
        out.acknowledge = ack
        if "spool_limit_mb" in server:
            out.spool_limit = int(float(server["spool_limit_mb"]) * 1024 * 1024)
        threads = server.get("duckdb_threads", "auto")
        if threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"server.duckdb_threads: {threads!r} is not 'auto' or a number of threads")
        out.duckdb_threads = None if threads == "auto" else threads
        return out


class HttpError(Exception):
    """An error answered with ``status`` and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class ServerContext:
    workspace: Workspace
    writer: Writer
    settings: ServerSettings
    #: API keys with scopes (:class:`yieldmeter.server.auth.KeyRing`), set by the REST API module.
    api_keys: Any = None
    #: The read pool and view cache of the REST API and dashboard (:mod:`yieldmeter.server.reads`).
    reads: Any = None
    #: Where OTLP bodies are decoded (:class:`yieldmeter.server.decoding.DecodePool`).
    decoder: DecodePool = field(default_factory=lambda: DecodePool(0))
    #: Where OTLP trace requests are acknowledged with ``acknowledge: spool`` (None: on commit).
    spool: Spool | None = None

    def authenticate(self, request: Request) -> str:
        """The org the request writes as; raises 401 when keys are configured and none matches.

        Accepts HTTP Basic ``public_key:secret_key`` (what the Langfuse SDK sends)
        or ``Authorization: Bearer <secret_key>`` (an OpenTelemetry Collector header).
        """
        if self.api_keys is not None:  # an API key with the ingest scope (yieldmeter keys create)
            from yieldmeter.server.auth import AuthError

            try:
                org = self.api_keys.ingest_org(request)
            except AuthError as exc:
                raise HttpError(exc.status, exc.message) from None
            if org is not None:
                return org
        keys = self.settings.ingest_keys
        if not keys and (self.api_keys is None or not self.api_keys.required):
            return "default"
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        public = secret = None
        if scheme.lower() == "basic":
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                public, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        elif scheme.lower() == "bearer":
            secret = value.strip()
        if secret:
            for k in keys:
                if hmac.compare_digest(k.secret_key, secret) and (public is None or public == k.public_key):
                    return k.org
        raise HttpError(
            401, "unknown or missing ingest key", {"WWW-Authenticate": 'Basic realm="yieldmeter"'}
        )

    def options(self, source: str) -> Any:
        return self.workspace.read_options(source)


def size_text(n: int) -> str:
    """A byte count for a person: ``64 KiB``, ``16 MiB``, ``512 bytes``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} bytes"


class _TooLarge(Exception):
    """The body is past its limit: answered 413 once the rest is drained (outside the read timeout)."""


#: Members a gzip body may hold: real senders concatenate a few; many tiny ones are only work.
MAX_GZIP_MEMBERS = 1000
_GZIP_PIECE = 1 << 16


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The request body, gunzipped when ``Content-Encoding: gzip``; 413 beyond ``limit`` bytes;
    408 (and the connection closed) when it has not all arrived within ``timeout`` seconds
    (default: the server's ``body_timeout_s``).

    A body found too large is a 413 however slowly it comes: the timeout covers reading up to the
    limit, not draining the rest. The drain has a timeout of its own; past it the 413 closes the
    connection instead of waiting for a client that trickles.
    """
    if timeout is None:
        ctx = getattr(request.app.state, "ctx", None) if "app" in request.scope else None
        timeout = ctx.settings.body_timeout_s if ctx is not None else BODY_TIMEOUT_S
    try:
        async with asyncio.timeout(timeout):
            return await _read_body(request, limit)
    except TimeoutError:
        raise HttpError(
            408,
            f"the request body did not arrive within {timeout:g} s; send the whole body at once",
            {"Connection": "close"},
        ) from None
    except _TooLarge:
        pass
    drained = False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            drained = await _drain(request)
    raise HttpError(
        413, f"request body larger than {size_text(limit)}", {} if drained else {"Connection": "close"}
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise HttpError(415, f"Content-Encoding {encoding!r} is not supported (use gzip or none)")
    return gunzip(body, limit)


def gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body, every member of it (``cat a.gz b.gz`` is one valid gzip stream, as RFC 1952
    allows), at most ``limit`` bytes once inflated: 413 beyond, 400 when it is not gzip, is cut
    short or holds more than :data:`MAX_GZIP_MEMBERS` members. Zero bytes after the last member
    (padding some writers add) are ignored. The body is fed in pieces, so each byte is handled
    once however many members it holds."""
    view = memoryview(body)
    parts: list[bytes] = []
    size = pos = members = 0
    while True:
        members += 1
        if members > MAX_GZIP_MEMBERS:
            raise HttpError(400, f"gzip body of more than {MAX_GZIP_MEMBERS} members")
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while not d.eof:
            if pos >= len(view):
                raise HttpError(400, "gzip body is truncated")
            piece = view[pos : pos + _GZIP_PIECE]
            try:
                out = d.decompress(piece, limit - size + 1)
            except zlib.error as exc:
                raise HttpError(400, f"body is not valid gzip: {exc}") from None
            size += len(out)
            if size > limit:  # the whole (compressed) body is read: nothing to drain
                raise HttpError(413, f"request body larger than {size_text(limit)}")
            parts.append(out)
            pos += len(piece) - len(d.unused_data)  # under the limit, no input is left unconsumed
        if not any(view[pos : pos + 2]) and not bytes(view[pos:]).strip(b"\0"):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def _drain(request: Request, cap: int = 512 * 1024 * 1024) -> bool:
    """Read and discard the rest of a refused body so the client gets the answer cleanly; False
    when it was not all read (past ``cap``, or the client hung up): close the connection then."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > cap:
                return False
    except Exception:  # the client may hang up; the answer is already decided
        return False
    return True
