"""FinOps REST endpoints under ``/api/v1/finops``: budgets, alerts, forecasts, anomalies, chargeback.

Reads run on the read pool (``read`` scope); writes (a budget, an evaluation)
go through the single writer (``admin`` scope) and answer once committed.
Privacy: without the ``people`` scope, budgets on a person (scope kind ``user``)
or on a team below ``privacy.min_group_size``, and their alerts, are left out
(one budget's status or burn-down: 403), teams below ``privacy.min_group_size``
are merged into ``(other teams)`` in the
forecast by team, anomalies and showback, and the FOCUS export (exact teams) is
refused with 403.
Handlers parse, call ``ws.finops`` and format; errors are problem details.

=======  ========================================  =====================================================
method   path                                      what
=======  ========================================  =====================================================
GET      /finops/budgets                           every budget's status (``at`` ISO time optional)
POST     /finops/budgets                           create/update ``{scope_kind, scope, period, amount, ...}``
GET      /finops/budgets/{budget_id}/status        one budget's status; ``hard_breached`` is the hard stop
GET      /finops/budgets/{budget_id}/burn-down     daily cumulative spend, forecast, run-out day
GET      /finops/hard-stops                        the budgets past their hard threshold (for a gateway)
GET      /finops/alerts                            ``status`` firing (default), resolved or all
POST     /finops/alerts/evaluate                   evaluate now; the alerts that fired or resolved
GET      /finops/alerts/deliveries                 delivery attempts with errors
GET      /finops/forecast                          ``by`` team|workflow|model|provider|initiative|org
GET      /finops/forecast/cost-per-success         next month's cost per successful outcome
GET      /finops/anomalies                         ``days`` (1-90)
GET      /finops/showback                          ``period``
GET      /finops/reconciliation                    ``period``
GET      /finops/initiatives                       ``period``
GET      /finops/decisions                         ``initiative``
GET      /finops/export/focus                      CSV; ``period``, ``version`` 1.3|1.2|1.0 (``people``)
=======  ========================================  =====================================================
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from yieldmeter.server.context import ADMIN_BODY_LIMIT, ServerContext, read_body

PREFIX = "/api/v1/finops"


def _rows(data: Any) -> Any:
    from yieldmeter.reports.model import rows_of

    return rows_of(data)


def _at(request: Request) -> datetime | None:
    from yieldmeter.server.problems import Problem

    raw = request.query_params.get("at")
    if not raw:
        return None
    from yieldmeter.app.periods import check_year

    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(400, f"at={raw!r} is not an ISO date or time", field="at") from None
    return check_year(dt if dt.tzinfo else dt.replace(tzinfo=UTC), f"at={raw!r}", "at")


def routes(ctx: ServerContext) -> list[BaseRoute]:
    from yieldmeter.server.api import _write, attach, choice, integer, json_response
    from yieldmeter.server.problems import Problem, guard

    attach(ctx)
    reads = ctx.reads

    def endpoint(
        scope: str, fn: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            ctx.api_keys.require(request, scope)
            # the domain's input errors are a 400, an unknown budget a 404, anything else a 500
            # (problems.to_problem)
            return await fn(request)

        return guard(handler)

    def people(request: Request) -> bool:
        """Whether the caller may see people: per-person budgets, teams below privacy.min_group_size."""
        return bool(ctx.api_keys.principal(request).can("people"))

    async def budgets(request: Request) -> Response:
        at, p = _at(request), people(request)
        return json_response(await reads.run(lambda ws: _rows(ws.finops.budgets(at, people=p))))

    async def add_budget(request: Request) -> Response:
        import orjson

        try:
            doc = orjson.loads(await read_body(request, ADMIN_BODY_LIMIT))  # 413 beyond 64 KiB
        except orjson.JSONDecodeError as exc:
            raise Problem(400, f"not valid JSON: {exc}") from None
        shape = 'expected {"scope_kind": ..., "scope": ..., "amount": ..., "period": "month"}'
        if not isinstance(doc, dict):
            raise Problem(400, shape)
        missing = [k for k in ("scope_kind", "scope", "amount") if k not in doc]
        if missing:
            raise Problem(400, f"{', '.join(missing)} missing: {shape}", field=missing[0])
        keys = ("basis", "soft_threshold", "hard_threshold")
        kw = {k: doc[k] for k in keys if k in doc}
        # the values go as sent: add_budget checks them (budgets.check_budget), a 400 naming the field
        bid = await _write(
            ctx,
            lambda ws: ws.finops.add_budget(
                doc["scope_kind"], doc["scope"], doc.get("period", "month"), doc["amount"], **kw
            ),
        )
        reads.bump()
        return json_response({"budget_id": bid}, status=201)

    async def budget_status(request: Request) -> Response:
        # an unknown id is a 404; a budget on a person without the people scope a 403
        bid, at, p = request.path_params["budget_id"], _at(request), people(request)
        return json_response(
            _rows([await reads.run(lambda ws: ws.finops.budget_status(bid, at, people=p))])[0]
        )

    async def hard_stops(request: Request) -> Response:
        at, p = _at(request), people(request)
        return json_response(await reads.run(lambda ws: _rows(ws.finops.hard_stops(at, people=p))))

    async def burn_down(request: Request) -> Response:
        bid, at, p = request.path_params["budget_id"], _at(request), people(request)
        return json_response(await reads.run(lambda ws: ws.finops.burn_down(bid, at, people=p)))

    async def alerts(request: Request) -> Response:
        status = choice(request, "status", ("firing", "resolved", "all"), "firing")
        wanted, p = None if status == "all" else status, people(request)
        return json_response(await reads.run(lambda ws: _rows(ws.finops.alerts(wanted, people=p))))

    async def evaluate(request: Request) -> Response:
        at = _at(request)
        events = await _write(ctx, lambda ws: ws.finops.evaluate_alerts(at))
        reads.bump()
        return json_response([{"event": e.event, **_rows([e.alert])[0]} for e in events])

    async def deliveries(request: Request) -> Response:
        return json_response(await reads.run(lambda ws: _rows(ws.finops.deliveries())))

    async def forecast(request: Request) -> Response:
        by = choice(request, "by", ("team", "workflow", "model", "provider", "initiative", "org"), "team")
        months, at, p = integer(request, "months", 3, 1, 12), _at(request), people(request)
        return json_response(
            await reads.run(lambda ws: _rows(ws.finops.forecast(by, at, months=months, people=p)))
        )

    async def forecast_cpso(request: Request) -> Response:
        at = _at(request)
        return json_response(await reads.run(lambda ws: _rows(ws.finops.forecast_cpso(at))))

    async def anomalies(request: Request) -> Response:
        days, at, p = integer(request, "days", 14, 1, 90), _at(request), people(request)
        return json_response(await reads.run(lambda ws: _rows(ws.finops.anomalies(at, days=days, people=p))))

    def by_period(method: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            period = request.query_params.get("period")
            return json_response(await reads.run(lambda ws: _rows(getattr(ws.finops, method)(period))))

        return handler

    async def showback(request: Request) -> Response:
        # teams below privacy.min_group_size are merged unless the key may see people
        period, p = request.query_params.get("period"), people(request)
        return json_response(await reads.run(lambda ws: _rows(ws.finops.showback(period, people=p))))

    async def decisions(request: Request) -> Response:
        initiative = request.query_params.get("initiative")
        return json_response(await reads.run(lambda ws: _rows(ws.finops.decisions(initiative))))

    async def export_focus(request: Request) -> Response:
        period = request.query_params.get("period")
        version = choice(request, "version", ("1.3", "1.2", "1.0"), "1.3")

        def build(ws: Any) -> bytes:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "focus.csv"
                ws.finops.export_focus(path, period, version=version)
                return path.read_bytes()

        body = await reads.run(build)
        name = f"yieldmeter-focus-{version}-{period or 'all'}.csv".replace("..", "_")
        return Response(
            body, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    from yieldmeter.server.openapi import FINOPS

    # each route's scope is the one its OpenAPI entry documents (one declaration of both): the
    # FOCUS export names every team however small, so it documents and requires ``people``
    scopes = {(op[0], op[1]): op[2] for op in FINOPS}
    table: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
        ("GET", "/budgets", budgets),
        ("POST", "/budgets", add_budget),
        ("GET", "/budgets/{budget_id}/status", budget_status),
        ("GET", "/budgets/{budget_id}/burn-down", burn_down),
        ("GET", "/hard-stops", hard_stops),
        ("GET", "/alerts", alerts),
        ("POST", "/alerts/evaluate", evaluate),
        ("GET", "/alerts/deliveries", deliveries),
        ("GET", "/forecast", forecast),
        ("GET", "/forecast/cost-per-success", forecast_cpso),
        ("GET", "/anomalies", anomalies),
        ("GET", "/showback", showback),
        ("GET", "/reconciliation", by_period("reconciliation")),
        ("GET", "/initiatives", by_period("initiatives")),
        ("GET", "/decisions", decisions),
        ("GET", "/export/focus", export_focus),
    ]
    return [
        Route(PREFIX + path, endpoint(scopes[(method, path)], fn), methods=[method])
        for method, path, fn in table
    ]
