"""Spend sections of the report service, and the privacy rule for small teams.

:class:`SpendSections` (inherited by :class:`~yieldmeter.app.reports.ReportService`) turns
spend (:mod:`yieldmeter.metrics.spend`, over the value service's materialised cost lines)
into sections: totals and trend, spend by a dimension, the model mix, unpriced models. A cost
whose every call is unpriced reads ``"unpriced"``, never $0.

Privacy: for a viewer without ``people``, spend grouped by team merges teams with fewer than
``privacy.min_group_size`` people into one :data:`OTHER_TEAMS` row (:class:`TeamPrivacy`), and
a team filter naming such a team is refused (:meth:`SpendSections.check_privacy`). The same
:meth:`SpendSections.privacy_of` decides it for every other view by team: attribution coverage,
the FinOps forecast by team, team anomalies and showback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from yieldmeter.app.sections import NotAvailable, ValueSections, _usd, cost_unknown, show_unknown_cost
from yieldmeter.metrics.spend import Filters
from yieldmeter.reports.model import UNPRICED, Chart, Column, Kpi, Section, TableData, fmt, rows_of

if TYPE_CHECKING:
    from yieldmeter.app.reports import ReportFilters
    from yieldmeter.app.workspace import Workspace

#: The row small teams are merged into for a viewer who may not see people.
OTHER_TEAMS = "(other teams)"


def _is_team(lines: ir.Table, teams: tuple[str | None, ...]) -> ir.BooleanValue:
    """Whether a line's team is one of ``teams`` (None: the lines with no team)."""
    named = [t for t in teams if t is not None]
    cond = lines.team.isin(named) if named else ibis.literal(False)
    return cond | lines.team.isnull() if None in teams else cond


def _added_up(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Spend rows of a partition added up (every measure is additive). Model cost counts priced
    calls only, and is None when every call is unpriced, as :func:`yieldmeter.metrics.spend.spend`
    answers for a total; fully loaded cost is its three parts added up."""
    keys = ("calls", "input_tokens", "output_tokens", "unpriced_calls", "allocated_cost", "effort_cost")
    out: dict[str, Any] = {k: sum(r.get(k) or 0 for r in rows) for k in keys}
    out["model_cost"] = sum(r.get("model_cost") or 0.0 for r in rows)
    out["fully_loaded_cost"] = out["model_cost"] + out["allocated_cost"] + out["effort_cost"]
    if cost_unknown(out["calls"], out["unpriced_calls"]):
        out["model_cost"] = out["fully_loaded_cost"] = None
    return out


def _shown_spend(row: dict[str, Any]) -> dict[str, Any]:
    """A spend row to show: model and fully loaded cost read "unpriced" when every call is unpriced."""
    known = not cost_unknown(row.get("calls"), row.get("unpriced_calls"))
    return show_unknown_cost(row, ("model_cost", "fully_loaded_cost"), known=known)


@dataclass(frozen=True)
class TeamPrivacy:
    """Which teams a spend view merges, under ``privacy.min_group_size``.

    A team is *small* when it has at least one person and fewer than ``minimum`` distinct
    people (``user_id`` of its calls and effort) in the filters' period, workflows and models.
    Small teams are shown together as one :data:`OTHER_TEAMS` row; when even that row holds
    fewer than ``minimum`` people it is hidden (``hidden``).
    """

    minimum: int
    small: tuple[str | None, ...] = ()
    merged_people: int = 0

    @property
    def hidden(self) -> bool:
        return bool(self.small) and self.merged_people < self.minimum

    def note(self) -> str:
        if not self.small:
            return ""
        n = len(self.small)
        if self.hidden:
            return (
                f"{n} team{'s' if n > 1 else ''} with fewer than {self.minimum} people "
                "(privacy.min_group_size) hidden: even together they are too few to show."
            )
        return (
            f"{n} team{'s' if n > 1 else ''} with fewer than {self.minimum} people "
            f"(privacy.min_group_size) shown together as {OTHER_TEAMS}."
        )


def relabel_small_teams(t: ir.Table, privacy: TeamPrivacy) -> ir.Table:
    """``t`` (any table with a ``team`` column: cost lines, spend events) with the small teams of
    ``privacy`` read as :data:`OTHER_TEAMS`, so whatever is grouped by team next sees them as one.
    When ``privacy.hidden``, the caller leaves the :data:`OTHER_TEAMS` rows of its result out."""
    if not privacy.small:
        return t
    return t.mutate(team=ibis.ifelse(_is_team(t, privacy.small), ibis.literal(OTHER_TEAMS), t.team))


def merge_small_teams(rows: pa.Table, privacy: TeamPrivacy) -> pa.Table:
    """``rows`` (one per team, or per cost centre and team) with the small teams of ``privacy``
    added up into one :data:`OTHER_TEAMS` row (its other text columns null), or left out when
    even together they are too few; a ``share`` column is added up like the amounts."""
    if not privacy.small:
        return rows
    teams = rows.column("team").to_pylist()
    small = [t in privacy.small for t in teams]
    keep = rows.filter(pa.array([not s for s in small]))
    if privacy.hidden:
        return keep
    merged = rows.filter(pa.array(small))
    if not merged.num_rows:
        return keep
    other: dict[str, Any] = {}
    for field in rows.schema:
        col = merged.column(field.name)
        if field.name == "team":
            other[field.name] = OTHER_TEAMS
        elif pa.types.is_floating(field.type) or pa.types.is_integer(field.type):
            other[field.name] = pc.sum(col).as_py()
        else:
            other[field.name] = None
    return pa.concat_tables([keep, pa.Table.from_pylist([other], schema=rows.schema)])


class SpendSections(ValueSections):
    """Spend sections (totals, trend, by team, model mix, unpriced models) and the privacy rule
    for teams; :class:`~yieldmeter.app.reports.ReportService` inherits them."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        self._privacy: dict[tuple[Any, ...], tuple[TeamPrivacy, tuple[str | None, ...]]] = {}

    def refresh(self) -> None:
        self._privacy.clear()
        self.__dict__.pop("_yields", None)
        super().refresh()

    # -- privacy -------------------------------------------------------------------------------
    def team_privacy(self, f: ReportFilters, among: Iterable[str | None] | None = None) -> TeamPrivacy:
        """The small teams of the filters' scope (none for a viewer who may see people); see
        :meth:`privacy_of` for ``among``."""
        minimum = self.ws.config.privacy.min_group_size
        if f.people or minimum <= 1:
            return TeamPrivacy(minimum)
        return self.privacy_of(replace(f, teams=()).spend(), among)

    def privacy_of(
        self,
        scope: Filters,
        among: Iterable[str | None] | None = None,
        known: Iterable[str | None] | None = None,
    ) -> TeamPrivacy:
        """The small teams of ``scope`` (its period, workflows and models; its teams are ignored),
        for a viewer who may not see people: people are counted on the cost lines (calls and effort).

        The small teams are shown together as one :data:`OTHER_TEAMS` row, left out when it
        stands for fewer people than the minimum. Its people are counted over the teams whose cost
        is known, when any is: a team whose every call is unpriced adds calls and tokens to the
        row but no cost, so the row's cost must stand for enough people without it (a row of
        such teams alone shows no cost: its people are all of theirs).
        ``among``: the teams a view actually has rows for (a chargeback has none for a team whose
        every call is unpriced). Only those are merged, and the people are counted over them.
        ``known``: the teams whose figures in the view are known, where the view knows better
        (the largest uncovered spend); their cost is known only if in ``known`` too.
        """
        minimum = self.ws.config.privacy.min_group_size
        if minimum <= 1:
            return TeamPrivacy(minimum)
        key = (scope.start, scope.end, scope.workflows, scope.models)
        cached = self._privacy.get(key)
        if cached is None:
            lines = replace(scope, teams=()).apply(self.cost_lines())
            sizes = (
                lines.group_by("team")
                .aggregate(
                    people=lines.user_id.nunique(),
                    calls=lines.calls.sum(),
                    unpriced_calls=lines.unpriced_calls.sum(),
                )
                .to_pyarrow()
                .to_pylist()
            )
            few = {r["team"] for r in sizes if 0 < (r["people"] or 0) < minimum}
            few |= self._small_without_people([r["team"] for r in sizes if not r["people"]], minimum)
            small = tuple(sorted(few, key=lambda t: t or ""))
            priced = {r["team"] for r in sizes if not cost_unknown(r["calls"], r["unpriced_calls"])}
            counted = tuple(t for t in small if t in priced)
            cached = (TeamPrivacy(minimum, small, self._people(scope, counted or small)), counted)
            if len(self._privacy) >= 256:  # windows that end "now" make new keys: keep it bounded
                self._privacy.clear()
            self._privacy[key] = cached
        out, priced_small = cached
        if among is None and known is None:
            return out
        present = None if among is None else set(among)
        known_set = None if known is None else set(known)
        shown = tuple(t for t in out.small if present is None or t in present)
        counted = tuple(t for t in priced_small if t in shown and (known_set is None or t in known_set))
        if shown == out.small and counted == priced_small:
            return out
        return TeamPrivacy(minimum, shown, self._people(scope, counted or shown))

    def _small_without_people(self, teams: list[str | None], minimum: int) -> set[str | None]:
        """Of ``teams``, which have no person in the scope (only allocated cost, say, on a day
        none of them worked), those small over all the data: their cost in the scope is still
        that of their few people. A team no person ever worked in (a platform team that only
        carries cost items) is not small."""
        if not teams:
            return set()
        lines = self.cost_lines()
        lines = lines.filter(lines.team.isin([t for t in teams if t is not None]))
        sizes = lines.group_by("team").aggregate(people=lines.user_id.nunique()).to_pyarrow().to_pylist()
        return {r["team"] for r in sizes if 0 < (r["people"] or 0) < minimum}

    def _people(self, scope: Filters, teams: tuple[str | None, ...]) -> int:
        """Distinct people of ``teams`` together, on the cost lines of ``scope``."""
        if not teams:
            return 0
        lines = replace(scope, teams=()).apply(self.cost_lines())
        m = lines.filter(_is_team(lines, teams))
        return int(m.aggregate(people=m.user_id.nunique()).to_pyarrow().column("people")[0].as_py() or 0)

    def check_privacy(self, f: ReportFilters) -> None:
        """Refuse a team filter that would show fewer people than ``privacy.min_group_size``
        to a viewer who may not see people (:class:`~yieldmeter.app.value.PrivacyError`)."""
        if not f.teams:
            return
        priv = self.team_privacy(f)
        named = [t for t in f.teams if t in priv.small or (t == OTHER_TEAMS and priv.hidden)]
        if named:
            from yieldmeter.app.value import PrivacyError

            raise PrivacyError(
                f"team {', '.join(named)} (fewer than {priv.minimum} people, privacy.min_group_size)",
                cli_alternative="or filter by a larger team",
                api_alternative="or filter by a larger team",
            )

    # -- spend ---------------------------------------------------------------------------------
    def cost_lines(self) -> Any:
        """Fully loaded cost lines, materialised once by the value service when it is installed."""
        try:
            return self.service("value", "cost_lines")()
        except NotAvailable:
            return self.ws.cost_lines()

    def spend(self, by: list[str], f: ReportFilters) -> Any:
        """Same figures as ``ws.spend`` (one definition: metrics.spend), over the cached cost lines.

        Grouped by team for a viewer who may not see people, small teams are merged into
        :data:`OTHER_TEAMS` (see :class:`TeamPrivacy`); a team filter naming a small team raises
        :class:`~yieldmeter.app.value.PrivacyError`.
        """
        from yieldmeter.metrics.spend import spend

        self.check_privacy(f)
        lines = self.cost_lines()
        priv = self.team_privacy(f) if "team" in by else TeamPrivacy(0)
        out = spend(relabel_small_teams(lines, priv), by, f.spend()).to_pyarrow()
        if priv.hidden:
            out = out.filter(pc.invert(pc.fill_null(pc.equal(out.column("team"), OTHER_TEAMS), False)))
        return out

    def totals(self, f: ReportFilters) -> dict[str, Any]:
        rows = rows_of(self.spend([], f))
        return rows[0] if rows else {}

    def spend_by(self, f: ReportFilters, by: list[str]) -> list[dict[str, Any]]:
        return rows_of(self.spend(by, f))

    def trend(self, f: ReportFilters) -> Chart:
        """Model-only and fully loaded cost per day (per week, from Monday, beyond three months):
        one query by day, the weeks added up here (every measure is additive)."""
        days = sorted(
            (r for r in self.spend_by(f, ["day"]) if r["day"] is not None), key=lambda r: str(r["day"])
        )
        grain = "week" if len({str(r["day"])[:7] for r in days}) > 3 else "day"
        buckets: dict[str, list[dict[str, Any]]] = {}
        for r in days:
            day = datetime.fromisoformat(str(r["day"]))
            key = (day - timedelta(days=day.weekday())) if grain == "week" else day
            buckets.setdefault(key.date().isoformat(), []).append(r)
        rows = [{grain: k, **_added_up(v)} for k, v in buckets.items()]
        return Chart(
            "line",
            f"Spend per {grain}",
            [r[grain] for r in rows],
            series={
                "model cost": [r["model_cost"] for r in rows],
                "fully loaded cost": [r["fully_loaded_cost"] for r in rows],
            },
        )

    def options(self, people: bool = False) -> dict[str, list[str]]:
        """The teams, workflows and models the data holds (for filter pickers); without ``people``,
        no team too small to be picked (see :meth:`check_privacy`)."""
        lines = self.cost_lines()
        out = {}
        for col in ("team", "workflow", "model"):
            vals = lines.select(col).distinct().to_pyarrow().column(col).to_pylist()
            out[col] = sorted(v for v in vals if v)
        from yieldmeter.app.reports import ReportFilters

        small = set(self.team_privacy(ReportFilters(people=people)).small)
        out["team"] = [t for t in out["team"] if t not in small]
        return out

    def spend_section(self, f: ReportFilters) -> Section:
        workflows = self.spend_by(f, ["workflow"])
        t = _added_up(workflows)  # the totals: the workflows (and no workflow) partition the spend
        known = not cost_unknown(t.get("calls"), t.get("unpriced_calls"))
        flc, model = t.get("fully_loaded_cost") or 0.0, t.get("model_cost") or 0.0
        by_wf = [_shown_spend(r) for r in workflows[:12]]
        unpriced = t.get("unpriced_calls") or 0
        return Section(
            "spend",
            "AI spend",
            "What did AI cost, counting platform and people, not only tokens?",
            kpis=[
                Kpi(
                    "Fully loaded cost",
                    flc if known else UNPRICED,
                    "usd",
                    note="counts priced calls only" if unpriced and known else "",
                ),
                Kpi(
                    "Model cost (tokens only)",
                    model if known else UNPRICED,
                    "usd",
                    note=f"{fmt(model / flc, 'share')} of fully loaded" if flc and known else "",
                ),
                Kpi("Allocated platform cost", t.get("allocated_cost"), "usd"),
                Kpi("Human effort cost", t.get("effort_cost"), "usd"),
                Kpi("Calls", t.get("calls"), "count"),
                Kpi(
                    "Unpriced calls",
                    t.get("unpriced_calls"),
                    "count",
                    note="counted, never silently zero" if unpriced else "",
                ),
            ],
            charts=[
                self.trend(f),
                Chart(
                    "stacked",
                    "Fully loaded cost by workflow",
                    [r["workflow"] or "(no workflow)" for r in by_wf],
                    series={
                        "model": [r["model_cost"] for r in by_wf],
                        "allocated": [r["allocated_cost"] for r in by_wf],
                        "effort": [r["effort_cost"] for r in by_wf],
                    },
                ),
            ],
            notes=[
                f"{unpriced:,} calls have no price: their model cost is unknown and not in these sums "
                "(see Unpriced models)."
            ]
            if unpriced
            else [],
        )

    def spend_table(self, f: ReportFilters, by: str, limit: int = 15) -> TableData:
        every = self.spend_by(f, [by])
        rows = [_shown_spend(r) for r in every[:limit]]
        for r in rows:
            r[by] = r[by] if r[by] is not None else f"(no {by})"
        captions = [self.team_privacy(f).note() if by == "team" else ""]
        if len(every) > limit:
            rest = every[limit:]
            known = sum(r["fully_loaded_cost"] or 0.0 for r in rest)
            unknown = sum(1 for r in rest if r["fully_loaded_cost"] is None)
            captions.append(
                f"The {limit} largest of {len(every)} by fully loaded cost; the other {len(rest)} "
                f"spent {fmt(known, 'usd')}"
                + (f" besides {unknown} whose cost is unpriced" if unknown else "")
                + f" (`yieldmeter report spend --by {by}` lists every one)."
            )
        caption = " ".join(c for c in captions if c)
        return TableData(
            [
                Column(by, by.replace("_", " ")),
                Column("calls", "calls", "count"),
                _usd("model_cost", "model cost"),
                _usd("allocated_cost", "allocated"),
                _usd("effort_cost", "effort"),
                _usd("fully_loaded_cost", "fully loaded"),
                Column("unpriced_calls", "unpriced calls", "count"),
            ],
            rows,
            caption=caption,
        )

    def model_mix(self, f: ReportFilters) -> Section:
        """Model cost by model, largest first; models whose every call is unpriced read "unpriced"
        and come last. Effort and platform cost name no model and are not part of the mix."""
        rows = [r for r in self.spend_by(f, ["model"]) if r["model"] is not None]
        known = [r for r in rows if not cost_unknown(r["calls"], r["unpriced_calls"])]
        unknown = [r for r in rows if cost_unknown(r["calls"], r["unpriced_calls"])]
        known.sort(key=lambda r: (-(r["model_cost"] or 0.0), r["model"]))
        unknown.sort(key=lambda r: (-(r["calls"] or 0), r["model"]))
        total = sum(r["model_cost"] or 0.0 for r in known) or 1.0
        for r in known:
            r["share_of_model_cost"] = (r["model_cost"] or 0.0) / total
        shown = [*known, *({**r, "model_cost": UNPRICED, "share_of_model_cost": UNPRICED} for r in unknown)]
        notes = ["Effort and platform cost name no model: they are not part of the mix (see AI spend)."]
        if unknown:
            notes.append(
                f"{', '.join(r['model'] for r in unknown)}: no price, so the model cost is unknown "
                "(never $0); shares are of the priced model cost."
            )
        return Section(
            "model_mix",
            "Model mix",
            "Which models does the money go to?",
            charts=[
                Chart(
                    "bar",
                    "Model cost by model",
                    [r["model"] for r in shown[:12]],
                    [r["model_cost"] for r in shown[:12]],
                )
            ],
            tables=[
                TableData(
                    [
                        Column("model", "model"),
                        Column("calls", "calls", "count"),
                        _usd("model_cost", "model cost"),
                        Column("share_of_model_cost", "share", "share"),
                        Column("unpriced_calls", "unpriced calls", "count"),
                    ],
                    shown[:20],
                )
            ],
            notes=notes,
        )

    def unpriced(self, f: ReportFilters) -> Any:
        """Models that resolve to no price in the filters' scope, with their call and token volume."""
        from yieldmeter.metrics.cost import unpriced_models

        return unpriced_models(f.spend().apply(self.priced_calls(), time_col="ts")).to_pyarrow()

    def unpriced_section(self, f: ReportFilters | None = None) -> Section:
        if f is None:
            from yieldmeter.app.reports import ReportFilters

            f = ReportFilters()
        rows = rows_of(self.unpriced(f))
        notes = (
            [
                "Add a price override (prices: in yieldmeter.yaml) for each model below; until then "
                "its model cost is unknown: reports show it as 'unpriced', never as $0, and count its calls."
            ]
            if rows
            else []
        )
        return Section(
            "unpriced",
            "Unpriced models",
            "Which calls have no price, so their cost is unknown?",
            kpis=[
                Kpi("Unpriced models", len(rows), "count"),
                Kpi("Unpriced calls", sum(r["calls"] or 0 for r in rows), "count"),
            ],
            charts=[
                Chart(
                    "bar",
                    "Unpriced calls by model",
                    [f"{r['provider'] or '?'}/{r['model'] or '(no model)'}" for r in rows[:12]],
                    [r["calls"] for r in rows[:12]],
                    unit="count",
                )
            ],
            tables=[
                TableData(
                    [
                        Column("provider", "provider"),
                        Column("model", "model"),
                        Column("calls", "calls", "count"),
                        Column("input_tokens", "input tokens", "count"),
                        Column("output_tokens", "output tokens", "count"),
                        Column("workflows", "workflows", "count"),
                    ],
                    rows,
                )
            ],
            notes=notes,
        )
