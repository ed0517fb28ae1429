"""FinOpsService: budgets, alerts, forecasts, anomalies, showback/chargeback, initiatives.

The only thing the CLI, the REST API, the dashboard and the reports call for
FinOps. It reads the workspace's tables through Ibis (:mod:`yieldmeter.finops`)
and writes only its own tables (alert state and deliveries).

Privacy: the reads take ``people`` (the per-person privilege: the CLI, a local operator,
has it; the API passes its key's ``people`` scope, the dashboard and reports their
filters'). Without it, budgets on a person (scope kind ``user``) or on a team with fewer
people than ``privacy.min_group_size`` (its spend is theirs) and their alerts are left
out, one such budget's status or burn-down raises
:class:`~yieldmeter.app.value.PrivacyError`, and teams with fewer people than
``privacy.min_group_size`` are merged into ``(other teams)`` (or left out when even
together too few) in the forecast by team, team anomalies and showback
(:class:`~yieldmeter.app.spend_sections.TeamPrivacy`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from yieldmeter.app.spend_sections import OTHER_TEAMS, TeamPrivacy, relabel_small_teams
from yieldmeter.finops import alerts as al
from yieldmeter.finops import budgets as bd
from yieldmeter.finops import delivery, rules
from yieldmeter.finops.events import spend_events
from yieldmeter.finops.settings import AlertSettings, ChargebackSettings, alert_settings, chargeback_settings
from yieldmeter.metrics.spend import Filters

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace

log = logging.getLogger("yieldmeter.finops")


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


class FinOpsService:
    """FinOps over one workspace. Settings are validated when first used."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._settings: AlertSettings | None = None
        self._chargeback: ChargebackSettings | None = None
        self._last_ingest_eval: float | None = None

    # -- settings and shared inputs ---------------------------------------------------------
    @property
    def settings(self) -> AlertSettings:
        if self._settings is None:
            self._settings = alert_settings(self.ws.config)
        return self._settings

    @property
    def chargeback_settings(self) -> ChargebackSettings:
        if self._chargeback is None:
            self._chargeback = chargeback_settings(self.ws.config)
        return self._chargeback

    def events(self) -> ir.Table:
        """Spend events (see :mod:`yieldmeter.finops.events`)."""
        return spend_events(self.ws.tables(), self.ws.config)

    def budget_list(self, *, people: bool = True) -> list[bd.Budget]:
        """The budgets (the table's and the initiatives'); without ``people``, none on a person or
        on a small team (:meth:`private_budget`)."""
        out = bd.load_budgets(self.ws.tables().budgets, self.ws.config)
        if people:
            return out
        small = self._small_teams()
        return [b for b in out if not self._private(b, small)]

    def _small_teams(self) -> frozenset[str | None]:
        """The teams with fewer people than ``privacy.min_group_size`` (over all the data)."""
        return frozenset(self.team_privacy(None, None, people=False).small)

    @staticmethod
    def _private(b: bd.Budget, small: frozenset[str | None]) -> bool:
        return bd.on_person(b.scope_kind) or (b.scope_kind == "team" and b.scope in small)

    def private_budget(self, b: bd.Budget) -> bool:
        """Whether ``b``'s spend is per-person data: a budget on a person (scope kind ``user``), or
        on a team with fewer people than ``privacy.min_group_size`` (its spend is theirs)."""
        return self._private(b, self._small_teams())

    def person_budgets(self) -> int:
        """How many budgets are set on a person or on a small team: what a viewer without the
        per-person privilege is not shown."""
        small = self._small_teams()
        return sum(self._private(b, small) for b in self.budget_list())

    def _budget(self, budget_id: str, people: bool) -> bd.Budget:
        """One budget by id: :class:`~yieldmeter.finops.budgets.UnknownBudget` naming the command
        that lists the ids, or :class:`~yieldmeter.app.value.PrivacyError` for a budget on a person
        asked for without ``people``."""
        budgets = [b for b in self.budget_list() if b.budget_id == budget_id]
        if not budgets:
            raise bd.UnknownBudget(f"no budget {budget_id!r}; `yieldmeter budgets list` shows the ids")
        if not people and self.private_budget(budgets[0]):
            from yieldmeter.app.value import PrivacyError

            on = "a person" if bd.on_person(budgets[0].scope_kind) else "a team below privacy.min_group_size"
            raise PrivacyError(f"budget {budget_id!r} is set on {on}: its status")
        return budgets[0]

    # -- budgets -----------------------------------------------------------------------------
    def budgets(self, now: datetime | None = None, *, people: bool = True) -> pa.Table:
        """Every budget with its window, spend, share used, state, projection, run-out day and the
        unpriced calls its spend could not count (see the module doc for ``people``)."""
        return bd.budget_status(self.events(), self.budget_list(people=people), _now(now), self.settings.tz)

    def budget_status(
        self, budget_id: str, now: datetime | None = None, *, people: bool = True
    ) -> dict[str, Any]:
        """One budget's status, for a gateway to poll: ``hard_breached`` is the hard stop.

        Raises :class:`~yieldmeter.finops.budgets.UnknownBudget` naming the command that lists the ids.
        """
        now = _now(now)
        budget = self._budget(budget_id, people)
        row = bd.budget_status(self.events(), [budget], now, self.settings.tz).to_pylist()[0]
        return {**row, "evaluated_at": now}

    def hard_stops(self, now: datetime | None = None, *, people: bool = True) -> pa.Table:
        """The budgets past their hard threshold now: scope, how far, and when the window resets."""
        status = self.budgets(now, people=people)
        keep = ("budget_id", "scope_kind", "scope", "period", "used", "spent", "amount", "window_end")
        return status.filter(status.column("hard_breached")).select(list(keep))

    def add_budget(
        self,
        scope_kind: str,
        scope: str,
        period: str,
        amount: float,
        *,
        basis: str = "model_cost",
        soft_threshold: float = 0.8,
        hard_threshold: float = 1.0,
    ) -> str:
        """Create or update a budget (identity: scope kind, scope and period); returns its id.

        The values are checked as every budget write is (:func:`yieldmeter.finops.budgets.check_budget`:
        period and scope kind lower-cased first); :class:`~yieldmeter.finops.budgets.BadBudget`
        names the field that cannot be used, and nothing is written.
        """
        from yieldmeter.ingest.base import Batch
        from yieldmeter.ingest.conform import conform, stable_id

        given = {
            "scope_kind": scope_kind,
            "scope": scope,
            "period": period,
            "amount": amount,
            "basis": basis,
            "soft_threshold": soft_threshold,
            "hard_threshold": hard_threshold,
        }
        row = bd.check_budget(given)
        row["budget_id"] = stable_id(row["scope_kind"], row["scope"], row["period"])
        conformed = conform("budgets", pa.Table.from_pylist([row]), source="yieldmeter budgets add")
        if conformed.rejects.num_rows:
            raise bd.BadBudget("budget: " + "; ".join(conformed.rejects.column("reason").to_pylist()))
        self.ws.ingest_batches([Batch.of("budgets", conformed)], source="yieldmeter budgets add")
        return str(row["budget_id"])

    def unseen_scope(self, scope_kind: str, scope: str) -> str | None:
        """A note when no spend names ``scope`` (a budget for a team with no calls yet, or a
        typo: it would never burn), with the closest names that have spend; None otherwise."""
        import difflib

        from yieldmeter.finops.events import SCOPE_COLUMNS

        column = SCOPE_COLUMNS.get(scope_kind.strip().lower())
        if column is None:
            return None
        ev = self.events()
        names = ev.select(name=ev[column]).filter(ev[column].notnull()).distinct().to_pyarrow()
        known = [str(n) for n in names.column("name").to_pylist()]
        if scope in known:
            return None
        close = difflib.get_close_matches(scope, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return (
            f"no spend names {scope_kind} {scope!r} yet: the budget burns once it does (a budget set "
            f"ahead of its spend), else it never will{hint}"
        )

    # -- alerts ------------------------------------------------------------------------------
    def breaches(self, now: datetime | None = None) -> list[al.Breach]:
        """Every budget and unit-economics rule breached at ``now``."""
        now = _now(now)
        ev = self.events()
        out = rules.budget_breaches(bd.budget_status(ev, self.budget_list(), now, self.settings.tz))
        for rule in self.settings.rules:
            try:
                out.extend(rules.unit_breaches(rule, self.ws.value, ev, now))
            except ImportError as exc:  # the value engine is optional for budget alerts
                log.warning("rule %s skipped: %s", rule.kind, exc)
        return out

    def channels(self) -> dict[str, al.Channel]:
        """The delivery channels that are both chosen and configured."""
        s = self.settings
        out: dict[str, al.Channel] = {}
        if "log" in s.channels:
            out["log"] = delivery.send_log
        if "webhook" in s.channels and s.webhook is not None:
            hook = s.webhook
            out["webhook"] = lambda event, alert: delivery.send_webhook(hook, event, alert)
        if "email" in s.channels and s.email is not None:
            mail = s.email
            out["email"] = lambda event, alert: delivery.send_email(mail, event, alert)
        return out

    def evaluate_alerts(self, now: datetime | None = None) -> list[al.Transition]:
        """Evaluate every rule, update the alert state and deliver what fired or resolved (as of
        ``now``: not before the state's latest evaluation, nor in the future; :func:`.alerts.evaluate`)."""
        now = _now(now)
        soft = self.settings.soft_channels
        return al.evaluate(self.ws.store, self.breaches(now), now, self.channels(), soft)

    def evaluate_on_ingest(self) -> None:
        """Evaluate after an ingest when budgets or rules exist, at most every ``ingest_min_interval_s``.

        Never raises: an ingest must not fail because an alert could not be evaluated.
        """
        import time

        try:
            s = self.settings
            if not s.evaluate_on_ingest:
                return
            now = time.monotonic()
            if self._last_ingest_eval is not None and now - self._last_ingest_eval < s.ingest_min_interval_s:
                return
            has_budgets = self.ws.store.count("budgets") > 0 or any(
                i.budget is not None for i in self.ws.config.initiatives
            )
            if not (has_budgets or s.rules):
                return
            self._last_ingest_eval = now
            self.evaluate_alerts()
        except Exception:
            log.exception("alert evaluation after ingest failed")

    def alerts(self, status: str | None = "firing", limit: int = 200, *, people: bool = True) -> pa.Table:
        """Alerts from the state table (``status`` firing, resolved, or None for all), newest first;
        without ``people``, none on a person or on a small team (the rule of :meth:`private_budget`,
        over the alert table's scope columns)."""
        al.ensure_tables(self.ws.store)
        t = self.ws.store.ibis.table(al.ALERTS_TABLE)
        if status:
            t = t.filter(t.status == status)
        if not people:
            t = t.filter(~t.scope_kind.fill_null("").isin(list(bd.PERSON_SCOPES)))
            small = [s for s in self._small_teams() if s is not None]
            if small:
                t = t.filter(~((t.scope_kind.fill_null("") == "team") & t.scope.isin(small)))
        return t.order_by([t.last_seen.desc(), t.alert_id]).limit(limit).to_pyarrow()

    def deliveries(self, limit: int = 200) -> pa.Table:
        al.ensure_tables(self.ws.store)
        t = self.ws.store.ibis.table(al.DELIVERIES_TABLE)
        return t.order_by([t.ts.desc()]).limit(limit).to_pyarrow()

    # -- privacy of teams --------------------------------------------------------------------
    def team_privacy(self, start: datetime | None, end: datetime | None, *, people: bool) -> TeamPrivacy:
        """The teams below ``privacy.min_group_size`` in [start, end) (none with ``people``)."""
        if people:
            return TeamPrivacy(0)
        return self.ws.reports.privacy_of(Filters(start, end))

    def forecast_privacy(self, now: datetime | None = None, *, people: bool = True) -> TeamPrivacy:
        """The small teams of a forecast by team: those of the history it is fitted on."""
        from yieldmeter.finops.forecast import HISTORY_DAYS

        now = _now(now)
        return self.team_privacy(now - timedelta(days=HISTORY_DAYS + 1), now, people=people)

    def anomaly_privacy(
        self, now: datetime | None = None, *, days: int = 14, people: bool = True
    ) -> TeamPrivacy:
        """The small teams of the anomalies: those of the days the detectors read (baseline included)."""
        from yieldmeter.finops.anomalies import lookback

        start, end = lookback(_now(now), days)
        return self.team_privacy(start, end, people=people)

    # -- forecasts, anomalies, showback, initiatives (see the modules) -------------------------
    def forecast(
        self, by: str = "team", now: datetime | None = None, *, months: int = 3, people: bool = True
    ) -> pa.Table:
        """Spend per ``by`` for the rest of this month and the next ``months`` months, with intervals
        and the unpriced calls each key's figures could not count.

        By team without ``people``: small teams are forecast together as ``(other teams)``
        (:meth:`forecast_privacy`), or left out when even together too few.
        """
        from yieldmeter.finops.forecast import spend_forecast

        now = _now(now)
        priv = self.forecast_privacy(now, people=people) if by == "team" else TeamPrivacy(0)
        ev = relabel_small_teams(self.events(), priv)
        out = spend_forecast(ev, by, now, self.settings.tz, months=months)
        if priv.hidden:
            out = out.filter(pc.not_equal(out.column("key"), OTHER_TEAMS))
        return out

    def forecast_cpso(self, now: datetime | None = None) -> pa.Table:
        """Cost per successful outcome per workflow, next month, from forecasts of cost and successes."""
        from yieldmeter.finops.forecast import cpso_forecast

        return cpso_forecast(self.ws.value.facts(), _now(now), self.settings.tz)

    def burn_down(
        self, budget_id: str, now: datetime | None = None, *, people: bool = True
    ) -> dict[str, Any]:
        """A budget's daily cumulative spend, its forecast to the window's end, and the run-out day."""
        from yieldmeter.finops.forecast import burn_down

        return burn_down(self.events(), self._budget(budget_id, people), _now(now), self.settings.tz)

    def anomalies(self, now: datetime | None = None, *, days: int = 14, people: bool = True) -> pa.Table:
        """Spend and token spikes, runaway agents and model-mix changes of the last ``days`` days.

        Without ``people``, the team spikes are those of the teams as a viewer may see them: small
        teams together as ``(other teams)`` (:meth:`anomaly_privacy`), or left out when even
        together too few.
        """
        from yieldmeter.finops.anomalies import detect

        now = _now(now)
        priv = self.anomaly_privacy(now, days=days, people=people)
        out = detect(relabel_small_teams(self.events(), priv), self.ws.tables(), now, days=days)
        if priv.hidden:
            other = pc.and_(
                pc.equal(out.column("dimension"), "team"), pc.equal(out.column("key"), OTHER_TEAMS)
            )
            out = out.filter(pc.invert(other))
        return out

    def showback(self, period: str | None = None, *, people: bool = True) -> pa.Table:
        """Fully loaded cost per cost centre and team, split into direct and shared (allocated) parts.

        ``people`` false (a viewer without the per-person privilege): teams with fewer people than
        ``privacy.min_group_size`` in the period are added up into one ``(other teams)`` row, or
        left out when even together they are too few: the rule of every spend view
        (:class:`~yieldmeter.app.spend_sections.TeamPrivacy`).
        """
        return self.showback_noted(period, people=people)[0]

    def showback_noted(self, period: str | None = None, *, people: bool = True) -> tuple[pa.Table, str]:
        """:meth:`showback` and the note that says which teams were merged or hidden ("" if none)."""
        from yieldmeter.app.periods import period_bounds
        from yieldmeter.app.spend_sections import merge_small_teams
        from yieldmeter.finops.showback import showback

        unpriced = self.unpriced_by_team(period)
        rows = showback(self._allocated(period))
        # the chargeback charges known amounts: a team's calls without a list price are counted
        # beside its model cost, which leaves them out (never read as $0 of cost)
        counts = [unpriced.get(team, 0) for team in rows.column("team").to_pylist()]
        rows = rows.append_column("unpriced_calls", pa.array(counts, pa.int64()))
        if people:
            return rows, ""
        # the people are counted over the teams that have a row here: a small team with no cost to
        # charge (every call unpriced) must not make a lone team's row look like a group
        start, end = period_bounds(period)
        teams = rows.column("team").to_pylist()
        privacy = self.ws.reports.privacy_of(Filters(start, end), among=teams)
        return merge_small_teams(rows, privacy), privacy.note()

    def unpriced_by_team(self, period: str | None = None) -> dict[str | None, int]:
        """Calls of the period without a list price, per team (None: no team); what the
        chargeback cannot charge."""
        from yieldmeter.app.periods import period_bounds

        start, end = period_bounds(period)
        ev = self.events()
        ev = ev.filter(ev.unpriced_calls > 0)
        if start is not None:
            ev = ev.filter(ev.ts >= ibis.literal(start))
        if end is not None:
            ev = ev.filter(ev.ts < ibis.literal(end))
        counts = ev.group_by("team").aggregate(n=ev.unpriced_calls.sum()).to_pyarrow()
        return dict(zip(counts.column("team").to_pylist(), counts.column("n").to_pylist(), strict=True))

    def _allocated(self, period: str | None) -> pa.Table:
        from yieldmeter.app.periods import period_bounds
        from yieldmeter.finops.showback import allocate

        start, end = period_bounds(period)
        return allocate(self.events(), self.chargeback_settings, start, end)

    def export_focus(
        self, path: Path | str, period: str | None = None, *, version: str = "1.3"
    ) -> dict[str, Any]:
        """Write the allocation as FOCUS rows (CSV, or Parquet by suffix); returns row count and totals."""
        from yieldmeter.finops.focus_export import focus_rows, write

        table = focus_rows(self._allocated(period), self.chargeback_settings, version=version)
        write(table, Path(path))
        import pyarrow.compute as pc

        return {
            "path": str(path),
            "rows": table.num_rows,
            "version": version,
            "billed_cost": float(pc.sum(table.column("BilledCost")).as_py() or 0.0),
        }

    def reconciliation(self, period: str | None = None) -> pa.Table:
        """Provider bills (imported FOCUS / usage cost items) against yieldmeter's priced calls."""
        from yieldmeter.app.periods import period_bounds
        from yieldmeter.finops.reconcile import bill_items, reconcile
        from yieldmeter.pricing.resolve import resolve

        start, end = period_bounds(period)
        items = bill_items(self.ws.tables(), start, end)
        # each bill line's model through the resolver the calls' went through (model_map), so a
        # dated snapshot on the bill meets the calls of its model
        named = items.select(provider=items.provider.fill_null(""), model=items.model.fill_null(""))
        pairs = named.distinct().to_pyarrow().to_pylist()
        overrides = self.ws.config.prices
        aliases = pa.Table.from_pylist(
            [
                {**p, "price_model": resolve(p["provider"] or None, p["model"], overrides).price_model}
                for p in pairs
            ],
            schema=pa.schema(
                [("provider", pa.string()), ("model", pa.string()), ("price_model", pa.string())]
            ),
        )
        return reconcile(self.ws.tables(), start, end, aliases)

    def initiatives(self, period: str | None = None) -> pa.Table:
        """Spend, benefit and yield per initiative, with owner, budget and decisions."""
        from yieldmeter.finops.initiatives import rollup

        return rollup(self, period)

    def undeclared_initiatives(self) -> list[dict[str, Any]]:
        """Decisions naming an initiative nobody declared, each with the problem in words."""
        from yieldmeter.finops.initiatives import undeclared

        return undeclared(self)

    def decisions(self, initiative: str | None = None) -> pa.Table:
        """The decision register, optionally for one initiative."""
        d = self.ws.tables().decisions
        if initiative:
            d = d.filter(d.initiative == initiative)
        return d.order_by([d.date.desc(), d.decision_id]).to_pyarrow()
