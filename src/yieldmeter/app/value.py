"""The value engine as a service: one method per report (``ws.value``).

Every surface (CLI, REST API, dashboard, reports) calls these methods and
formats what they return: Arrow tables, or small dataclasses of Arrow tables.
They hold the measure definitions of :mod:`yieldmeter.metrics` and
:mod:`yieldmeter.scoring`; this module only binds them to a workspace, caches
the shared intermediate results of one session, and applies the privacy rules.

Privacy: per-person rows (benchmarks or value per token by user) need
``people=True`` (the CLI's ``--people``, an API key's ``people`` scope); team rows
hide teams with fewer distinct people in the workflow than ``privacy.min_group_size``.

Scope: besides the period and one ``workflow``, the measures defined per work unit
or per cost line (funnel, coverage, waste, patterns, benchmarks, value per token)
take ``workflows``, ``teams`` and ``models`` (keyword arguments; empty: any). A work
unit is in scope when its workflow, team and model (the model of its largest call)
are among those named; a cost line when its workflow, team and model are. They
filter the materialised facts and cost lines, so a filtered report reuses the
session's intermediate tables instead of recomputing them. Outcomes carry no team
or model: yields, and the funnel's measured value, honour only the workflows.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from yieldmeter.errors import InputError
from yieldmeter.metrics import benchmarks as bm
from yieldmeter.metrics import coverage as cov
from yieldmeter.metrics import funnel as fn
from yieldmeter.metrics import value as vl
from yieldmeter.metrics import waste as ws_
from yieldmeter.metrics import yields as yl
from yieldmeter.metrics.period import Window
from yieldmeter.metrics.tables import Tables
from yieldmeter.metrics.units import unit_facts
from yieldmeter.scoring.unit_value import UnitValue

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace
    from yieldmeter.scoring.engine import ScoringResult

log = logging.getLogger(__name__)
BENCHMARK_SUBJECTS = {"user": "user_id", "team": "team"}
#: The intermediate tables another service may hand over already made (:attr:`ValueService.shared`):
#: they depend on the data only, never on a report's period or filters.
SHAREABLE = frozenset({"lines", "value_lines", "facts"})
#: The intermediate tables kept in the workspace's store between sessions (:meth:`ValueService._kept`):
#: the unit facts, the cost lines they are made from, and the cost lines at the full grain (spend
#: views, and the people per team behind every privacy rule), and the pattern segments and value
#: per token percentiles of the last scope asked for. Kept as ``_kept_value_<name>``, trusted while
#: the writes recorded for the tables they read, the configuration, the code (and for segments and
#: percentiles the scope) are unchanged.
KEPT = frozenset({"lines", "value_lines", "facts", "segments", "percentiles"})
#: Tables whose writes leave the kept tables as they are (alert state, deliveries, API keys, the
#: store's record of the framework steps kept as structure).
NOT_VALUE_INPUTS = frozenset({"finops_alerts", "finops_alert_deliveries", "api_keys", "summed_spans"})
#: ``shared(name, make)``: the table ``name`` as Arrow, made by ``make`` unless already made.
Shared = Callable[[str, Callable[[], pa.Table]], pa.Table]
#: the unit facts a pattern segment is computed from, and those the pattern sums read
_SEGMENT_OUTPUTS = (
    "workflow",
    "work_unit_id",
    "expected_value",
    "tokens",
    "successful",
    "fully_loaded_cost",
    "calls",
    "unpriced_calls",
    "bucket",
)
_SEGMENT_INPUTS = (
    *_SEGMENT_OUTPUTS,
    "parent_id",
    "input_tokens",
    "tool_use",
    "first_accept_at",
    "started_at",
    "model",
)


class PrivacyError(PermissionError):
    """A per-person view asked for without the privilege to see people.

    ``view`` says what was asked for in words every surface shares; ``str(exc)`` is the
    command line's message (with its ``--people`` flag), and :meth:`detail` words it for
    another surface (the REST API: an API key with the ``people`` scope).
    """

    def __init__(self, view: str, *, cli_alternative: str = "", api_alternative: str = "") -> None:
        self.view = view
        self.cli_alternative = cli_alternative
        self.api_alternative = api_alternative
        super().__init__(self.detail("--people", cli_alternative))

    def detail(self, privilege: str, alternative: str | None = None) -> str:
        """The message with ``privilege`` naming how this surface grants per-person views."""
        alt = self.api_alternative if alternative is None else alternative
        return f"{self.view} is a per-person view: it needs {privilege}" + (f"; {alt}" if alt else "")


@dataclass(frozen=True)
class YieldReport:
    yields: pa.Table  # per workflow and family
    strategic: pa.Table  # per workflow: strategic score 0-5, confidence
    strategic_evidence: pa.Table  # the outcomes behind the strategic scores
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """Yields and strategic scores as one list of rows (for the CLI and JSON)."""
        out = self.yields.to_pylist()
        for r in self.strategic.to_pylist():
            out.append(
                {
                    "workflow": r["workflow"],
                    "family": "strategic",
                    "outcomes": r["evidence_items"],
                    "strategic_score": r["strategic_score"],
                    "strategic_low": r["strategic_low"],
                    "strategic_high": r["strategic_high"],
                    "strategic_confidence": r["confidence"],
                }
            )
        return out


@dataclass(frozen=True)
class CoverageReport:
    by_workflow: pa.Table  # the (all) row first, then workflows by uncovered spend
    largest_uncovered: pa.Table  # by workflow, team and app (small teams merged without people)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> dict[str, Any]:
        rows = self.by_workflow.filter(pc.equal(self.by_workflow.column("workflow"), "(all)")).to_pylist()
        return rows[0] if rows else {}


@dataclass(frozen=True)
class BenchmarkReport:
    rows: pa.Table
    hidden_groups: int = 0
    notes: list[str] = field(default_factory=list)


class ValueService:
    """Value reports over one workspace. Intermediate tables are cached for the life of the service."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._tables: Tables | None = None
        self._lines: ir.Table | None = None
        self._value_lines: ir.Table | None = None
        self._facts: ir.Table | None = None
        #: per workflow (relative se, degrees of freedom) of measured unit values; and those of
        #: scores made in memory, where no ``unit_values`` table is stored
        self._uncertainty: dict[str, tuple[float, int]] | None = None
        self._memory_unit_values: list[UnitValue] | None = None
        #: per-unit tables of one scope (period, workflows, teams, models): ``segments`` (patterns) and
        #: ``percentiles`` (normalised value per token), each for the last scope asked for
        self._scoped: dict[str, tuple[tuple[Any, ...], ir.Table]] = {}
        self.notes: list[str] = []
        #: Set by a server's read pool so its reader threads share one copy of the :data:`SHAREABLE`
        #: tables per data refresh instead of each computing its own (None: computed here).
        self.shared: Shared | None = None
        #: Whether the :data:`KEPT` tables are read from and written to the store (a server's reader
        #: threads, which never write, set it off and share their tables instead).
        self.keep = True
        self._kept_key: str | None = None

    # -- shared inputs ------------------------------------------------------------------
    def invalidate(self) -> None:
        self._tables = self._lines = self._value_lines = self._facts = None
        self._uncertainty = self._memory_unit_values = None
        self._scoped = {}
        self._kept_key = None

    def tables(self) -> Tables:
        if self._tables is None:
            self._tables = self.ws.tables()
        return self._tables

    def cost_lines(self) -> ir.Table:
        """Fully loaded cost lines at the full grain (:mod:`yieldmeter.metrics.spend`), materialised once."""
        if self._lines is None:
            from yieldmeter.metrics.spend import cost_lines

            rates = self.ws.config.labour_rates
            self._lines = self._materialise("lines", lambda: cost_lines(self.tables(), rates))
        return self._lines

    def _value_cost_lines(self) -> ir.Table:
        """The same cost lines at the grain the value reports read (day, team, workflow, app)."""
        if self._value_lines is None:
            from yieldmeter.metrics.spend import MEASURES, VALUE_GRAIN, cost_lines

            def make() -> ir.Table:
                if self._lines is not None:
                    # the full grain is materialised already (a spend report asked for it): summing
                    # it gives the same cells (metrics.spend: the parts add up across any partition)
                    # without pricing and allocating every call a second time
                    full = self._lines
                    sums = {m: full[m].sum() for m in (*MEASURES, "fully_loaded_cost")}
                    return full.group_by(list(VALUE_GRAIN)).aggregate(**sums)
                return cost_lines(self.tables(), self.ws.config.labour_rates, VALUE_GRAIN)

            self._value_lines = self._materialise("value_lines", make)
        return self._value_lines

    def facts(self) -> ir.Table:
        """Per work unit facts (see :mod:`yieldmeter.metrics.units`), materialised once."""
        if self._facts is None:
            from yieldmeter.metrics.cost import priced_calls

            t = self.tables()

            def make() -> ir.Table:
                scores = t.scores
                if scores is None:
                    from yieldmeter.scoring.engine import score_tables

                    result = score_tables(t)
                    scores = ibis.memtable(result.scores)
                    self._memory_unit_values = result.unit_values
                    self.notes.append(
                        "work units were scored in memory: run `yieldmeter score` to store scores"
                    )
                lines = self._value_cost_lines()
                return unit_facts(t, priced_calls(t), lines, self.ws.config.labour_rates, scores)

            # facts on scores made in memory are this session's only (the note above says so)
            self._facts = self._materialise("facts", make, keep=t.scores is not None)
        return self._facts

    def unit_values(self, workflows: Sequence[str] = ()) -> pa.Table:
        """What one success of each workflow is worth, and whether it was measured from outcome
        periods or declared (``UNIT_VALUES_SCHEMA``, by workflow): the last scoring run's stored
        table (empty before the first); on a lake, which stores no scores, the values its
        in-memory scoring used. ``workflows``: those only, where given."""
        t = self.tables()
        if t.scores is None and getattr(self.ws, "engine", None) is not None:
            values = self._memory_unit_values_table(t)
        else:
            values = self._stored_unit_values(t)
        if workflows:
            wanted = pa.array(list(workflows), pa.string())
            values = values.filter(pc.is_in(values.column("workflow"), value_set=wanted))
        return values

    def _stored_unit_values(self, t: Tables) -> pa.Table:
        from yieldmeter.scoring.schema import UNIT_VALUES_SCHEMA

        if t.unit_values is None:  # never scored, or scored before unit values were measured
            return UNIT_VALUES_SCHEMA.empty_table()
        return t.unit_values.order_by("workflow").to_pyarrow().select(UNIT_VALUES_SCHEMA.names)

    def _memory_unit_values_table(self, t: Tables) -> pa.Table:
        from yieldmeter.scoring.schema import UNIT_VALUES_SCHEMA

        self.facts()  # scored in memory, with their unit values
        if self._memory_unit_values is None:  # facts shared by a server's read pool
            from yieldmeter.scoring.engine import score_tables

            self._memory_unit_values = score_tables(t).unit_values
        rows = [{**u.row(), "scored_at": None} for u in self._memory_unit_values]
        return pa.Table.from_pylist(rows, schema=UNIT_VALUES_SCHEMA).sort_by("workflow")

    def value_uncertainty(self) -> dict[str, tuple[float, int]]:
        """Per workflow whose unit value was measured from outcome periods: its relative standard
        error and degrees of freedom, which the benchmarks' intervals carry (none for a declared
        value: nothing measures its error). Where no scores are stored, from the values the
        in-memory scoring used."""
        if self._uncertainty is None:
            t = self.tables()
            table = self._memory_unit_values_table(t) if t.scores is None else self._stored_unit_values(t)
            self._uncertainty = {
                str(r["workflow"]): (float(r["relative_se"]), int(r["periods"]) - 1)
                for r in table.select(["workflow", "relative_se", "periods"]).to_pylist()
                if r["relative_se"] is not None and (r["periods"] or 0) > 1
            }
        return self._uncertainty

    @staticmethod
    def window(period: str | Window | None) -> Window:
        """A window from ``--period`` text (YYYY, YYYY-Qn, YYYY-MM, YYYY-MM-DD, START..END)."""
        if isinstance(period, Window):
            return period
        from yieldmeter.app.periods import period_bounds

        start, end = period_bounds(period)
        return Window(start, end, period or "all")

    # -- scoring ---------------------------------------------------------------------------
    def score(self) -> ScoringResult:
        """Score every work unit, store the scores and return the models and their calibration."""
        engine = getattr(self.ws, "engine", None)  # a lake workspace names its engine
        if engine is not None:
            from yieldmeter.lake.engines import require

            require(engine, "value.score")  # the declared gap: a lake keeps no scores
        from yieldmeter.scoring.engine import score_workspace

        result = score_workspace(self.ws)
        self.invalidate()
        return result

    def scores(self, workflow: str | None = None) -> pa.Table:
        """The stored scores (empty when none were computed yet); on a lake without stored scores,
        the scores its reports use, scored in memory (storing them is a declared gap there)."""
        from yieldmeter.scoring.schema import SCORES_SCHEMA

        s = self.tables().scores
        if s is None:
            if getattr(self.ws, "engine", None) is None:
                return SCORES_SCHEMA.empty_table()
            from yieldmeter.scoring.engine import score_tables

            s = ibis.memtable(score_tables(self.tables()).scores)
        if workflow is not None:
            s = s.filter(s.workflow == workflow)
        return s.order_by([ibis.desc("score"), "work_unit_id"]).to_pyarrow()

    # -- scope ---------------------------------------------------------------------------------
    def units(
        self,
        workflows: Sequence[str] = (),
        teams: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> ir.Table:
        """The materialised unit facts of the work units in scope (see the module docstring)."""
        f = self.facts()
        for col, vals in (("workflow", workflows), ("team", teams), ("model", models)):
            if vals:
                f = f.filter(f[col].isin(list(vals)))
        return f

    def lines(
        self,
        workflows: Sequence[str] = (),
        teams: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> ir.Table:
        """The materialised cost lines in scope: the value grain, or the full grain for a model
        (the value grain has no model column; both give the same sums over their dimensions)."""
        lines = self.cost_lines() if models else self._value_cost_lines()
        for col, vals in (("workflow", workflows), ("team", teams), ("model", models)):
            if vals:
                lines = lines.filter(lines[col].isin(list(vals)))
        return lines

    @staticmethod
    def _workflows(workflow: str | None, workflows: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted({*workflows, *([workflow] if workflow else [])}))

    # -- reports -----------------------------------------------------------------------------
    def funnel(
        self,
        workflow: str | None = None,
        period: str | Window | None = None,
        *,
        workflows: Sequence[str] = (),
        teams: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> pa.Table:
        """The conversion chain per workflow and month with the cost at each stage.

        With ``teams`` or ``models``, the calls, units and cost are those in scope; the
        measured ``value`` (outcomes, defined per workflow) and ``value_per_success`` are null.
        """
        wfs = self._workflows(workflow, workflows)
        out = fn.funnel(
            self.tables(),
            self.units(wfs, teams, models),
            self.lines(wfs, teams, models),
            self.window(period),
            workflow,
        ).to_pyarrow()
        if teams or models:
            # months and workflows only the outcomes brought in have nothing in scope
            some = pc.or_(
                pc.or_(pc.greater(out.column("calls"), 0), pc.greater(out.column("work_units"), 0)),
                pc.greater(out.column("fully_loaded_cost"), 0.0),
            )
            out = out.filter(some)
            for col in ("value", "value_per_success"):
                i = out.schema.get_field_index(col)
                out = out.set_column(i, col, pa.nulls(out.num_rows, pa.float64()))
        return out

    def yields(
        self,
        workflow: str | None = None,
        period: str | Window | None = None,
        *,
        workflows: Sequence[str] = (),
    ) -> YieldReport:
        """Workflow, revenue, risk and capacity yields with bands; strategic scores with evidence.

        Benefit comes from outcomes, which name a workflow but no team or model: yields are
        per workflow (``workflows`` narrows them, the ``(all)`` rows included), never per team.
        """
        t, w = self.tables(), self.window(period)
        wfs = self._workflows(workflow, workflows)
        lines = self.lines(wfs)
        if wfs:
            t = replace(t, outcomes=t.outcomes.filter(t.outcomes.workflow.isin(list(wfs))))
        y = yl.yields(t, lines, w, workflow).to_pyarrow()
        y = y.append_column("evidence_mix", pa.array(_evidence_mix(y), pa.string()))
        notes = []
        if y.num_rows and pc.sum(y.column("capacity_not_redeployed")).as_py():
            notes.append("capacity outcomes not redeployed are excluded: hours saved are not a benefit")
        if y.num_rows and pc.sum(y.column("outcomes_without_value")).as_py():
            notes.append("outcomes without a monetary value add nothing to a yield's numerator")
        return YieldReport(
            y,
            yl.strategic(t, w, workflow).to_pyarrow(),
            yl.strategic_evidence(t, w, workflow).to_pyarrow(),
            notes,
        )

    def coverage(
        self,
        workflow: str | None = None,
        period: str | Window | None = None,
        limit: int = 10,
        *,
        workflows: Sequence[str] = (),
        teams: Sequence[str] = (),
        models: Sequence[str] = (),
        people: bool = False,
    ) -> CoverageReport:
        """Attribution coverage with its three parts and the largest uncovered spend (spend in scope).

        The largest uncovered spend names teams: without ``people``, teams with fewer people than
        ``privacy.min_group_size`` (in the period, workflows and models) are shown together as
        ``(other teams)``, or left out when even together too few, with a note saying so
        (:class:`~yieldmeter.app.spend_sections.TeamPrivacy`, the rule of every view by team).
        """
        from yieldmeter.app.spend_sections import OTHER_TEAMS, relabel_small_teams
        from yieldmeter.metrics.spend import Filters

        t, w = self.tables(), self.window(period)
        wfs = self._workflows(workflow, workflows)
        lines = self.lines(wfs, teams, models)
        uncovered, notes = lines, []
        if not people:
            # merged over the teams that have uncovered spend to list: a small team with none (its
            # workflows covered) must not make one team's rows look like a group
            # (its people counted over the teams whose listed spend is known: the merged row's
            # figures are theirs alone)
            listed = cov.uncovered_spend(t, lines, w).select("team", "spend").to_pyarrow()
            teams, spends = listed.column("team").to_pylist(), listed.column("spend").to_pylist()
            known = {team for team, s in zip(teams, spends, strict=True) if s is not None}
            scope = Filters(w.start, w.end, (), wfs, tuple(models))
            priv = self.ws.reports.privacy_of(scope, among=set(teams), known=known)
            uncovered = relabel_small_teams(lines, priv)
            if priv.hidden:
                uncovered = uncovered.filter(uncovered.team.isnull() | (uncovered.team != OTHER_TEAMS))
            notes = [priv.note()] if priv.small else []
        return CoverageReport(
            cov.coverage(t, lines, w, workflow).to_pyarrow(),
            cov.largest_uncovered(t, uncovered, w, limit).to_pyarrow(),
            notes,
        )

    def value_per_token(
        self,
        workflow: str | None = None,
        period: str | Window | None = None,
        by: str = "model",
        *,
        normalise: bool = False,
        people: bool = False,
        workflows: Sequence[str] = (),
        teams: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> pa.Table:
        """Value per token inside one workflow by ``by``; across workflows only normalised.

        Raises :class:`~yieldmeter.metrics.value.CrossWorkflowComparison` when several workflows
        would be compared raw.
        """
        if by == "user_id" and not people:
            raise PrivacyError("value per token by person")
        w = self.window(period)
        units = self.units(self._workflows(workflow, workflows), teams, models)
        if normalise:
            vl.check_dimension(by)  # before the ranks are computed
            # the per-unit ranks (a window over every unit of the scope), read by every grouping
            p = self._per_scope(
                "percentiles", w, workflow, workflows, teams, models, lambda: vl.unit_percentiles(units, w)
            )
            est = vl.mean_percentiles(p, by).to_pyarrow()
            if by == "team":  # the same units as ranked
                est = self._hide_small_teams(est, p.mutate(team=p.team.fill_null("(none)")), ["team"])[0]
                est = est.sort_by([("mean_percentile", "descending"), ("team", "ascending")])
            return est
        if by not in vl.VPT_DIMENSIONS or by == "workflow":
            raise InputError(
                f"cannot group value per token by {by!r} inside a workflow; "
                f"choose from {', '.join(d for d in vl.VPT_DIMENSIONS if d != 'workflow')}",
                field="by",
            )
        f = vl.value_units(units, w)
        if workflow is None:
            present = sorted(f.select("workflow").distinct().to_pyarrow().column("workflow").to_pylist())
            if len(present) > 1:
                raise vl.CrossWorkflowComparison(present)
            workflow = present[0] if present else None
        if workflow is not None:
            f = f.filter(f.workflow == workflow)
        f = f.mutate(**{by: f[by].fill_null("(none)")})
        est = self._estimate(f, ["workflow", by], ["workflow"])
        if by == "team":
            est = self._hide_small_teams(est, f, ["workflow", "team"])[0]
        return est.sort_by([("value_per_token", "descending"), (by, "ascending")])

    def benchmarks(
        self,
        workflow: str | None = None,
        period: str | Window | None = None,
        by: str = "team",
        *,
        people: bool = False,
        workflows: Sequence[str] = (),
        teams: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> BenchmarkReport:
        """Per user or team inside each workflow: shrunk value per token, success rate, cost per success.

        ``teams``: by team, the rows of those teams (each still measured against its whole
        workflow); by user, the people of those teams' work units.
        """
        if by not in BENCHMARK_SUBJECTS:
            raise InputError(f"benchmarks are by user or team, not {by!r}", field="by")
        if by == "user" and not people:
            raise PrivacyError(
                "benchmarks by person", cli_alternative="try --by team", api_alternative="try by=team"
            )
        col = BENCHMARK_SUBJECTS[by]
        units = self.units(self._workflows(workflow, workflows), teams if by == "user" else (), models)
        f = vl.value_units(units, self.window(period))
        if workflow is not None:
            f = f.filter(f.workflow == workflow)
        f = f.mutate(subject=f[col].fill_null("(none)"))
        est = self._estimate(f, ["workflow", "subject"], ["workflow"])
        hidden = 0
        notes: list[str] = []
        if by == "team":
            est, hidden = self._hide_small_teams(est, f, ["workflow", "subject"])
            if hidden:
                notes.append(
                    f"{hidden} team rows hidden: fewer than {self.ws.config.privacy.min_group_size} "
                    "people (privacy.min_group_size)"
                )
            if teams:
                est = est.filter(pc.is_in(est.column("subject"), value_set=pa.array(list(teams))))
        # ties (equal shrunk estimates) in the subject's order: every surface and run lists them alike
        est = est.sort_by(
            [("workflow", "ascending"), ("value_per_token", "descending"), ("subject", "ascending")]
        )
        return BenchmarkReport(est, hidden, notes)

    def patterns(
        self,
        workflow: str | None = None,
        period: str | Window | None = None,
        *,
        workflows: Sequence[str] = (),
        teams: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> pa.Table:
        """Segments (model, session length, iterations, prompt size, tool use, time to first acceptance)
        ranked by value per token against their workflow's mean (of the units in scope), with intervals."""
        w = self.window(period)

        def make() -> ir.Table:
            f = vl.value_units(self.units(self._workflows(workflow, workflows), teams, models), w)
            # six dimensions read one narrow table (unpivoted below)
            seg = bm.with_segments(f.select(*_SEGMENT_INPUTS))
            return seg.select(*_SEGMENT_OUTPUTS, *bm.PATTERN_DIMENSIONS)

        segments = self._per_scope("segments", w, workflow, workflows, teams, models, make)
        seg = bm.segment_frames(segments, segmented=True)
        # a unit value's error scales every segment and the workflow mean alike, so it cancels in the
        # lift: not drawn here (the lift bands divide by the point mean)
        est = self._estimate(
            seg, ["workflow", "dimension", "segment"], ["workflow", "dimension"], unit_value_error=False
        )
        m = est.column("workflow_value_per_token")
        lift = pc.divide(est.column("value_per_token"), m)
        est = est.append_column("lift", lift)
        est = est.append_column("lift_low", pc.divide(est.column("value_per_token_low"), m))
        est = est.append_column("lift_high", pc.divide(est.column("value_per_token_high"), m))
        # ties (segments shrunk all the way to the mean have lift 1.0 exactly) in a fixed order, not
        # in the order an engine returned the groups: a report's top rows are the same on every engine
        order = [("workflow", "ascending"), ("lift", "descending"), ("dimension", "ascending")]
        return est.sort_by([*order, ("segment", "ascending")])

    def waste(
        self,
        workflow: str | None = None,
        period: str | Window | None = None,
        *,
        workflows: Sequence[str] = (),
        teams: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> pa.Table:
        """Expensive loops, unused outputs, rework and accepted-but-not-resolved, with spend at stake.

        With ``teams`` or ``models``, the units in scope are reported; a loop is still judged
        against its whole workflow's calls per unit.
        """
        engine = getattr(self.ws, "engine", None)  # a lake workspace names its engine
        if engine is not None:
            from yieldmeter.lake.engines import require

            require(engine, "value.waste")  # a declared gap answers with its reason, not a compile error
        wfs = self._workflows(workflow, workflows)
        keep = self.units(wfs, teams, models).select("work_unit_id") if (teams or models) else None
        return ws_.waste(self.units(wfs), self.window(period), workflow, keep=keep).to_pyarrow()

    # -- helpers ---------------------------------------------------------------------------------
    def _per_scope(
        self,
        name: str,
        window: Window,
        workflow: str | None,
        workflows: Sequence[str],
        teams: Sequence[str],
        models: Sequence[str],
        make: Callable[[], ir.Table],
    ) -> ir.Table:
        """The per-unit table ``name`` of one scope, computed once for the last scope asked for and
        kept in the store for that scope, like the facts it comes from (never when the scores were
        made in memory: those are this session's only)."""
        key = (window.start, window.end, self._workflows(workflow, workflows), tuple(teams), tuple(models))
        held = self._scoped.get(name)
        if held is None or held[0] != key:
            stored = self.tables().scores is not None
            held = (key, self._materialise(name, make, keep=stored, scope=repr(key)))
            self._scoped[name] = held
        return held[1]

    def _materialise(
        self, name: str, make: Callable[[], ir.Table], *, keep: bool = True, scope: str = ""
    ) -> ir.Table:
        """Compute the expression ``make()`` builds once into a temporary table of the store's
        backend (gone at close); a :data:`KEPT` table is read from the store when a current copy is
        kept there for the same ``scope`` (what the expression depends on besides the data), and
        kept there once computed (see :meth:`_kept`). ``make`` is called only when the table is
        computed: building the expression of the unit facts alone takes a quarter of a second."""
        from yieldmeter.lake.engines import materialise

        backend = self.ws.backend
        table_name = f"_value_{name}_{id(self):x}"
        if getattr(backend, "name", "") != "duckdb":
            # a lake's Spark: a cached temporary view, replaced when recomputed
            return materialise(backend, table_name, make())
        if self.shared is not None and name in SHAREABLE:
            # made once (as Arrow) for every reader of the same data, read here through a view
            arrow = self.shared(name, lambda: make().to_pyarrow())
            with contextlib.suppress(Exception):  # none registered yet under this name
                backend.con.unregister(table_name)
            backend.con.register(table_name, arrow)
            return backend.table(table_name)
        # a lake (DuckDB over Parquet files) has no store of its own to keep tables in
        kept = keep and self.keep and name in KEPT and getattr(self.ws, "engine", None) is None
        if kept and (current := self._kept(name, scope)) is not None:
            return current
        # dropped, then created: overwriting a DuckDB table through Ibis writes every row twice
        # (into a scratch table, then a copy)
        backend.drop_table(table_name, database=("temp", "main"), force=True)
        made = backend.create_table(table_name, obj=make(), temp=True)
        if kept:
            self._keep(name, table_name, scope)
        return made

    # -- intermediate tables kept in the store -------------------------------------------------
    def _kept_fingerprint(self) -> str:
        """What a kept table was made from: the last write of every table it may read (the store's
        ``written`` records), the configuration (labour rates, unit values, thresholds) and the
        code of the measures. Any change makes a new fingerprint, and the kept table is made again."""
        import hashlib
        import json

        store = self.ws.store
        written = {k: v for k, v in store.written().items() if k not in NOT_VALUE_INPUTS}
        # the row counts too: an edit made around yieldmeter (the duckdb shell) records no write,
        # but one that adds or removes rows is seen (one that only changes values is not)
        counts = {k: v for k, v in store.counts().items() if k not in NOT_VALUE_INPUTS}
        h = hashlib.sha256(json.dumps([written, counts], sort_keys=True).encode())
        h.update(self.ws.config.model_dump_json().encode())
        h.update(_code_fingerprint().encode())
        return h.hexdigest()

    def _kept(self, name: str, scope: str = "") -> ir.Table | None:
        """The kept copy of ``name`` when it is current (made from the data, configuration and code
        of now, for ``scope``); else None."""
        if self._kept_key is None:
            self._kept_key = self._kept_fingerprint()
        table = f"_kept_value_{name}"
        if self.ws.store.kept_stamp(table) != f"{self._kept_key}|{scope}":
            return None
        try:
            return self.ws.backend.table(table)
        except Exception:  # recorded but gone (dropped by hand): made again
            return None

    def _keep(self, name: str, made: str, scope: str = "") -> None:
        """Keep the temporary table ``made`` (``name`` of this session) in the store, recorded with
        the fingerprint it was made from; skipped when another write holds the store, or when the
        data changed since this session read it (the copy would be of old data)."""
        key = self._kept_key
        if key is None:
            return
        self.ws.store.keep_copy(
            f"_kept_value_{name}", made, f"{key}|{scope}", current=lambda: self._kept_fingerprint() == key
        )

    def _hide_small_teams(self, est: pa.Table, f: ir.Table, keys: list[str]) -> tuple[pa.Table, int]:
        """``est`` with a ``people`` column (distinct people of ``f`` per ``keys``), rows of groups
        below ``privacy.min_group_size`` dropped; returns it and how many were dropped."""
        sizes = f.group_by(keys).aggregate(people=f.user_id.nunique()).to_pyarrow()
        lookup = dict(
            zip(
                zip(*(sizes.column(k).to_pylist() for k in keys), strict=True),
                sizes.column("people").to_pylist(),
                strict=True,
            )
        )
        rows = zip(*(est.column(k).to_pylist() for k in keys), strict=True)
        est = est.append_column("people", pa.array([lookup.get(r, 0) for r in rows], pa.int64()))
        small = pc.less(est.column("people"), self.ws.config.privacy.min_group_size)
        return est.filter(pc.invert(small)), int(pc.sum(small).as_py() or 0)

    def _estimate(
        self, f: ir.Table, keys: list[str], partition: list[str], *, unit_value_error: bool = True
    ) -> pa.Table:
        error = self.value_uncertainty() if unit_value_error else None
        if "bucket" not in f.columns:
            sums = bm.group_sums(f, keys).to_pyarrow()
            buckets = bm.bucket_sums(f, keys).to_pyarrow()
            return bm.estimate(sums, buckets, keys, partition, value_uncertainty=error)
        # one pass: the group sums per bootstrap batch, then added up per group (every sum is
        # additive), instead of a second scan of the units for the group sums
        buckets = bm.group_sums(f, [*keys, "bucket"]).to_pyarrow()
        measures = [c for c in buckets.column_names if c not in (*keys, "bucket")]
        sums = buckets.group_by(keys, use_threads=False).aggregate([(m, "sum") for m in measures])
        sums = sums.select([*keys, *(f"{m}_sum" for m in measures)]).rename_columns([*keys, *measures])
        return bm.estimate(sums, buckets, keys, partition, value_uncertainty=error)


def _evidence_mix(y: pa.Table) -> list[str | None]:
    out: list[str | None] = []
    levels = yl.LEVELS
    cols = {lv: y.column(f"share_{lv}").to_pylist() for lv in levels}
    for i in range(y.num_rows):
        parts = [f"{lv} {cols[lv][i]:.0%}" for lv in reversed(levels) if cols[lv][i]]
        out.append(", ".join(parts) if parts else None)
    return out


@functools.cache
def _code_fingerprint() -> str:
    """The versions of yieldmeter, the price data, DuckDB, Ibis and Arrow, and the source of the
    modules that define the kept tables (measures, pricing, scoring, this service, the schema): a
    kept table made by other code is made again."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    import yieldmeter

    root = Path(yieldmeter.__file__).parent
    h = hashlib.sha256(yieldmeter.__version__.encode())
    for package in ("genai-prices", "duckdb", "ibis-framework", "pyarrow"):  # how queries compile and run
        with contextlib.suppress(PackageNotFoundError):
            h.update(f"{package} {version(package)}".encode())
    files = [p for sub in ("metrics", "pricing", "scoring") for p in sorted((root / sub).rglob("*.py"))]
    for path in [*files, root / "app" / "value.py", root / "schema.py"]:
        h.update(path.read_bytes())
    return h.hexdigest()
