"""Errors as RFC 9457 problem details (``application/problem+json``), for every 4xx of the API.

:func:`guard` turns the exceptions of the layers below into answers a client
can act on: what was wrong and what to do. Only the domain's input errors
(:class:`~yieldmeter.errors.InputError`: a bad period, choice, budget...) are a
400 and :class:`~yieldmeter.errors.UnknownName` a 404; any other exception is a
500 (logged with its traceback), so a fault of the server or of its stored
state is never blamed on the request.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("yieldmeter.server")

TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    408: "Request timeout",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    body = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    if status == 401:
        headers = {
            "WWW-Authenticate": 'Bearer realm="yieldmeter", Basic realm="yieldmeter"',
            **(headers or {}),
        }
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")


def to_problem(exc: BaseException) -> Response:
    """The problem-details answer for an exception of a lower layer."""
    from yieldmeter.errors import InputError, UnknownName
    from yieldmeter.server.auth import AuthError
    from yieldmeter.server.context import HttpError
    from yieldmeter.server.reads import ReadsClosed, ReadTimeout

    if isinstance(exc, Problem):
        return problem(exc.status, exc.detail, exc.headers, **exc.extra)
    if isinstance(exc, AuthError):
        return problem(exc.status, exc.message)
    if isinstance(exc, HttpError):
        return problem(exc.status, exc.message, exc.headers)
    if isinstance(exc, UnknownName):  # a work unit, a budget, a key that does not exist
        return problem(404, str(exc))
    from yieldmeter.app.value import PrivacyError
    from yieldmeter.metrics.value import CrossWorkflowComparison

    if isinstance(exc, PrivacyError):  # worded for HTTP: the privilege is a key's scope, not a flag
        return problem(403, exc.detail("an API key with the 'people' scope"))
    if isinstance(exc, CrossWorkflowComparison):
        return problem(
            400,
            f"value per token is only comparable inside one workflow; the data holds "
            f"{len(exc.workflows)} ({', '.join(exc.workflows[:5])}). Pass workflow=W to compare inside "
            "one, or normalise=true to compare percentiles within each workflow.",
            field="workflow",
        )
    if isinstance(exc, PermissionError):
        return problem(403, f"{exc} (needs an API key with the 'people' scope)")
    if isinstance(exc, ReadTimeout):
        return problem(503, f"{exc}; narrow the period or filters, or retry", {"Retry-After": "5"})
    if isinstance(exc, ReadsClosed):
        return problem(503, str(exc), {"Retry-After": "5"})
    if isinstance(exc, InputError):  # the request's own mistake: say which input, and what to give
        field = getattr(exc, "field", "")
        return problem(400, str(exc), **({"field": field} if field else {}))
    # Anything else (a ValueError or KeyError the domain did not mean for the caller, a stored
    # budget that no longer validates...) is the server's fault: a 500, logged, never a 400 that
    # blames the request and hides the fault from whoever watches for 5xx.
    log.error("request failed", exc_info=exc)
    return problem(500, "the server failed on this request; the log has the details")


Handler = Callable[[Request], Awaitable[Response]]


def guard(fn: Handler) -> Handler:
    """Wrap a handler so every failure is a problem-details answer."""

    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except Exception as exc:  # turned into the right status by to_problem
            return to_problem(exc)

    wrapped.__name__ = getattr(fn, "__name__", "handler")
    wrapped.__doc__ = fn.__doc__
    return wrapped


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no route, wrong method) as problem details; a browser asking for
    a page outside the API (a mistyped dashboard address) gets the dashboard's error page."""
    assert isinstance(exc, HTTPException)
    wants_page = "text/html" in request.headers.get("accept", "")
    if wants_page and not request.url.path.startswith(("/api/", "/v1/")):
        from yieldmeter.server.dashboard import error_page

        return error_page(Problem(exc.status_code, _page_detail(exc), dict(exc.headers or {})))
    return problem(
        exc.status_code, exc.detail or TITLES.get(exc.status_code, "Error"), dict(exc.headers or {})
    )


def _page_detail(exc: HTTPException) -> str:
    if exc.status_code == 404:
        return "There is no page at this address. The menu above lists the dashboard's pages."
    return exc.detail or TITLES.get(exc.status_code, "Error")


def install(app: Any) -> None:
    """Answer the router's own errors (unknown path, wrong method) as problem details, and
    requests whose path or query holds a control character as a 400."""
    app.add_exception_handler(HTTPException, http_exception)
    app.add_middleware(RefuseControlCharacters)


class RefuseControlCharacters:
    """A NUL or another control character in the path or a query value is a 400 naming it.

    Nothing yieldmeter names (a team, a workflow, a work unit) holds one, and a filter value
    reaches SQL as a literal, where DuckDB cannot parse a NUL: the request was a 500 before.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            from urllib.parse import parse_qsl

            query = scope.get("query_string", b"").decode("latin-1")
            where = "the path" if _has_control(scope.get("path", "")) else None
            for name, value in parse_qsl(query, keep_blank_values=True):
                if where is None and (_has_control(name) or _has_control(value)):
                    where = f"query parameter {name!r}"
            if where is not None:
                await problem(400, f"{where} holds a control character (such as NUL)")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)
