"""The dashboard: server-rendered pages over the same views as ``/api/v1/views``.

Pages are Jinja templates shipped in the package; charts are inline SVG drawn
on the server; the one stylesheet and the one small script are served from
``/static`` (nothing from a CDN: it works air-gapped). Every page takes the
filters ``period``, ``team``, ``workflow``, ``model`` as query parameters (the
pickers choose one value each; a URL may repeat a parameter for several).

Access: the ``read`` scope for every page, ``people`` for the people page and
for names on a work unit page. A browser sends the key as the password of
HTTP Basic (any user name) when the server asks for one.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any

from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from yieldmeter.app.reports import ROLES, ReportFilters
from yieldmeter.reports.charts import draw
from yieldmeter.reports.model import fmt
from yieldmeter.server.api import attach, filters_of, redact
from yieldmeter.server.auth import AuthError, Principal
from yieldmeter.server.context import ServerContext
from yieldmeter.server.problems import Problem, to_problem
from yieldmeter.server.views import VIEWS, build, cache_key, warm

#: Pages in the navigation, in order: (view name, path, label).
NAV = (
    ("overview", "/", "Overview"),
    ("spend", "/spend", "Spend"),
    ("funnel", "/funnel", "Conversion chain"),
    ("benchmarks", "/benchmarks", "Teams & patterns"),
    ("people", "/people", "People"),
    ("waste", "/waste", "Waste"),
    ("unpriced", "/unpriced", "Unpriced models"),
    ("routing", "/routing", "Routing"),
    ("budgets", "/budgets", "Budgets"),
    ("alerts", "/alerts", "Alerts"),
    ("forecast", "/forecast", "Forecast"),
    ("anomalies", "/anomalies", "Anomalies"),
    ("decisions", "/decisions", "Decisions"),
)


#: Rendered pages kept beside their cached sections (cleared beyond this many).
RENDERED_MAX = 256


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader(
            [
                PackageLoader("yieldmeter.server", "templates"),
                PackageLoader("yieldmeter.reports", "templates"),
            ]
        ),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["chart"] = lambda c, width=640: Markup(draw(c, width))
    env.filters["fmt"] = fmt
    return env


def page(
    name: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    html = environment().get_template(name).render(nav=NAV, roles=ROLES, **context)
    return HTMLResponse(html, status_code=status_code, headers=headers)


def error_page(exc: BaseException) -> Response:
    """The problem of an exception, as a page a person can read (with the same status)."""
    resp = to_problem(exc)
    import orjson

    detail = orjson.loads(bytes(resp.body)).get("detail", "")
    # what the status needs besides the body: Allow (405), Retry-After (503)
    headers = {k: v for k, v in resp.headers.items() if k.lower() in ("allow", "retry-after")}
    if resp.status_code == 401:
        headers["WWW-Authenticate"] = 'Basic realm="yieldmeter (any user name, the API key as password)"'
    return page(
        "error.html",
        resp.status_code,
        headers,
        code=resp.status_code,
        detail=detail,
        active=None,
        principal=None,
        options=None,
        filters=ReportFilters(),
        query="",
    )


def routes(ctx: ServerContext) -> list[BaseRoute]:
    attach(ctx)
    reads = ctx.reads
    warm(reads, open_mode=not ctx.api_keys.required)
    rendered: dict[tuple[Any, ...], tuple[Any, Any, bytes]] = {}

    def who(request: Request, scope: str = "read") -> Principal:
        return ctx.api_keys.require(request, scope)  # type: ignore[no-any-return]

    async def options(people: bool) -> dict[str, list[str]]:
        return await reads.view(("options", people), lambda ws: ws.reports.options(people))  # type: ignore[no-any-return]

    filters = filters_of

    def view_page(name: str) -> Any:
        v = VIEWS[name]

        async def handler(request: Request) -> Response:
            try:
                p = who(request)
                f = filters(request, p)
                if not p.can(v.scope):
                    raise AuthError(403, f"the {v.title} page needs the {v.scope!r} scope")
                sections = await reads.view(cache_key(name, f), lambda ws: build(name, ws.reports, f))
                opts = await options(f.people)
            except Exception as exc:
                return error_page(exc)
            # the same cached sections render to the same page: keep the HTML beside them
            rkey = (name, f.key(), p.key_id, request.url.query)
            hit = rendered.get(rkey)
            if hit is not None and hit[0] is sections and hit[1] is opts:
                return HTMLResponse(hit[2])
            resp = page(
                "view.html",
                active=name,
                title=v.title,
                sections=sections,
                filters=f,
                options=opts,
                principal=p,
                query=request.url.query,
            )
            if len(rendered) > RENDERED_MAX:
                rendered.clear()
            rendered[rkey] = (sections, opts, bytes(resp.body))
            return resp

        return handler

    async def work_unit(request: Request) -> Response:
        try:
            p = who(request)
            wid = request.path_params["work_unit_id"]
            view = await reads.run(lambda ws: ws.reports.work_unit(wid))
        except Exception as exc:
            return error_page(exc)
        people = p.can("people")
        view.work_unit = redact(view.work_unit, people)
        view.signals = [redact(r, people) for r in view.signals]
        view.effort = [redact(r, people) for r in view.effort]
        return page(
            "work_unit.html",
            active=None,
            unit=view,
            principal=p,
            options=None,
            filters=ReportFilters(),
            query="",
        )

    async def report(request: Request) -> Response:
        from yieldmeter.reports.render import render

        try:
            p = who(request)
            role, ext = request.path_params["role"], request.path_params["ext"]
            if role not in ROLES or ext not in ("pdf", "html", "md", "json"):
                raise Problem(
                    404, f"no report {role}.{ext}; roles: {', '.join(ROLES)}; formats pdf, html, md, json"
                )
            f = filters(request, p)
            rep = await reads.view(("role", role, f.key()), lambda ws: ws.reports.role(role, f))
            body = await reads.run(lambda ws: render(rep, ext))
        except Exception as exc:
            return error_page(exc)
        media = {
            "pdf": "application/pdf",
            "html": "text/html; charset=utf-8",
            "md": "text/markdown; charset=utf-8",
            "json": "application/json",
        }[ext]
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'inline; filename="yieldmeter-{role}.{ext}"'},
        )

    async def to_overview(request: Request) -> Response:
        return RedirectResponse("/" + (f"?{request.url.query}" if request.url.query else ""), status_code=307)

    out: list[BaseRoute] = [Route(path, view_page(name), methods=["GET"]) for name, path, _ in NAV]
    out += [
        Route("/overview", to_overview, methods=["GET"]),
        Route("/work-units/{work_unit_id:path}", work_unit, methods=["GET"]),
        Route("/reports/{role}.{ext}", report, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(files("yieldmeter.server") / "static")), name="static"),
    ]
    return out
