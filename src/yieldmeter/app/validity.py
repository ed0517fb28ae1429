"""The validity report: yieldmeter's measures against the simulator's known truth.

For a workspace that ingested a simulated organisation and its ``truth.parquet``:

- ``spearman_ev``: Spearman rank correlation between each work unit's expected value
  (score x unit value) and its true value; also per workflow (``spearman_ev_within``, the
  mean over workflows, where only the signals can rank).
- ``spearman_ev_unlabelled``: ``spearman_ev`` over the units without a label of their own (a
  label settles its unit's score, so this is the ranking the signals and the calibrated model
  make); ``labelled_share``: the share of units with a label.
- ``auc_delivered``: how well ``p_value`` separates units that delivered from those that did not.
- ``kendall_user`` / ``kendall_team``: Kendall tau between the per-user (per-team) value per
  token that the benchmarks estimate and the true value per token, inside each workflow,
  averaged over workflows weighted by the number of subjects; subjects need
  :data:`MIN_UNITS` work units.
- ``interval_coverage_user`` / ``_team``: share of true values per token inside the stated
  90% intervals of the benchmarks.
- ``precision_*`` / ``recall_*``: each waste detector against the truth flags (a runaway loop,
  an output nobody used and that was not a loop, effort above the no-AI baseline, an accepted
  output whose issue came back).
- ``unpriced_share``: share of calls yieldmeter counts as unpriced, beside the true share.

Work units of the truth that are missing from the store are counted and named, never fatal.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import stats

from yieldmeter.errors import InputError

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace

MIN_UNITS = 15
INTERVAL_LEVEL = 0.90

#: (metric, target, direction) as the issue states them for the enterprise scenario.
TARGETS: dict[str, tuple[float, str]] = {
    "spearman_ev": (0.75, ">="),
    "kendall_user": (0.6, ">="),
    "interval_coverage_user": (0.85, "in 0.85-0.95"),
    "precision_expensive_loop": (0.85, ">="),
    "recall_expensive_loop": (0.8, ">="),
    "precision_unused_output": (0.85, ">="),
    "recall_unused_output": (0.8, ">="),
    "precision_rework": (0.85, ">="),
    "recall_rework": (0.8, ">="),
    "precision_accepted_not_resolved": (0.85, ">="),
    "recall_accepted_not_resolved": (0.8, ">="),
}

#: Waste category of yieldmeter -> the truth column that says the unit really is that waste.
WASTE_TRUTH = {
    "expensive_loop": "is_loop",
    "unused_output": "is_unused_not_loop",
    "rework": "is_rework",
    "accepted_not_resolved": "is_recontact",
}


class TruthError(InputError):
    """A file that is not a simulator truth file; the message says what was expected."""


@dataclass
class ValidityReport:
    scenario: str
    seed: int | None
    truth_work_units: int
    matched_work_units: int
    missing_work_units: int
    missing_sample: list[str]
    figures: dict[str, float | None]
    per_workflow: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """One row per figure with its target where the issue sets one."""
        out = []
        for name, value in self.figures.items():
            target = TARGETS.get(name)
            out.append(
                {
                    "metric": name,
                    "value": None
                    if value is None or (isinstance(value, float) and math.isnan(value))
                    else value,
                    "target": target_text(name),
                    "meets": None if target is None or value is None else _meets(name, value),
                }
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "truth_work_units": self.truth_work_units,
            "matched_work_units": self.matched_work_units,
            "missing_work_units": self.missing_work_units,
            "figures": {k: _plain(v) for k, v in self.figures.items()},
            "per_workflow": [{k: _plain(v) for k, v in r.items()} for r in self.per_workflow],
            "notes": self.notes,
        }


def _plain(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return None if math.isnan(float(v)) else round(float(v), 4)
    if isinstance(v, np.integer):
        return int(v)
    return v


def target_text(name: str) -> str | None:
    """The issue's target for figure ``name`` as a person reads it (``>= 0.75``, ``in 0.85-0.95``)."""
    target = TARGETS.get(name)
    if target is None:
        return None
    return target[1] if target[1].startswith("in ") else f"{target[1]} {target[0]}"


def _meets(name: str, value: float) -> bool:
    target, how = TARGETS[name]
    if how.startswith("in "):
        lo, hi = (float(x) for x in how[3:].split("-"))
        return lo <= value <= hi
    return value >= target


def read_truth(path: Path) -> tuple[pa.Table, dict[str, Any]]:
    """The truth table and its metadata; a clear error when ``path`` is not one."""
    if not path.exists():
        raise TruthError(f"{path}: no such file; `yieldmeter simulate --out DIR` writes DIR/truth.parquet")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TruthError(f"{path}: not a Parquet file ({exc})") from None
    meta_raw = (table.schema.metadata or {}).get(b"yieldmeter.truth")
    needed = {"level", "work_unit_id", "workflow", "subject", "true_value", "value_per_token"}
    if meta_raw is None or not needed <= set(table.column_names):
        raise TruthError(
            f"{path}: not a truth file written by `yieldmeter simulate` (columns or metadata missing)"
        )
    return table, json.loads(meta_raw)


#: Share of the work units found in both whose tokens may differ before the truth is refused
#: as another simulation's (work unit ids repeat across seeds and scenarios; token counts do not).
MISMATCH_TOLERANCE = 0.01


def _check_same_simulation(ws: Workspace, units: pa.Table, meta: dict[str, Any], path: Path) -> None:
    """Refuse a truth file written by another simulation than the one the workspace holds.

    The work units found in both must have the same tokens (input + output over their calls)
    in the truth and in the store, but for :data:`MISMATCH_TOLERANCE` of them.
    """
    calls = ws.tables().calls
    stored = (
        calls.group_by("work_unit_id")
        .aggregate(tokens=(calls.input_tokens + calls.output_tokens).sum())
        .to_pyarrow()
    )
    tokens = dict(
        zip(stored.column("work_unit_id").to_pylist(), stored.column("tokens").to_pylist(), strict=True)
    )
    both = differ = 0
    for uid, t in zip(
        units.column("work_unit_id").to_pylist(), units.column("tokens").to_pylist(), strict=True
    ):
        if uid in tokens:
            both += 1
            differ += int(tokens[uid] != t)
    if both and differ > MISMATCH_TOLERANCE * both:
        raise TruthError(
            f"{path}: the truth of another simulation ({meta.get('scenario')}, seed {meta.get('seed')}, "
            f"{meta.get('days')} days x {meta.get('users')} people): {differ:,} of the {both:,} work units "
            "found in both have other token counts in the store; pass the truth.parquet written with "
            "this workspace's data"
        )


def _level(truth: pa.Table, level: str) -> pa.Table:
    return truth.filter(pc.equal(truth.column("level"), level))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    pos, neg = label.sum(), (~label).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[label].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _align(keys: np.ndarray, index: dict[str, int]) -> np.ndarray:
    return np.array([index.get(k, -1) for k in keys.tolist()], dtype=np.int64)


def _subject_estimates(ws: Workspace, by: str) -> pa.Table:
    """Per (workflow, subject) benchmarks with :data:`INTERVAL_LEVEL` intervals, no privacy filter.

    The validity report is a privileged, synthetic-data view: it reads every person and team.
    """
    from yieldmeter.metrics import benchmarks as bm
    from yieldmeter.metrics.value import value_units

    col = {"user": "user_id", "team": "team"}[by]
    f = value_units(ws.value.facts())
    f = f.mutate(subject=f[col].fill_null("(none)"))
    keys = ["workflow", "subject"]
    return bm.estimate(
        bm.group_sums(f, keys).to_pyarrow(),
        bm.bucket_sums(f, keys).to_pyarrow(),
        keys,
        ["workflow"],
        level=INTERVAL_LEVEL,
        value_uncertainty=ws.value.value_uncertainty(),
    )


def _rank_figures(est: pa.Table, truth_subjects: pa.Table) -> tuple[float, float, int, list[dict[str, Any]]]:
    """Weighted mean Kendall tau inside workflows, interval coverage, subjects compared, per workflow."""
    t_key = [
        f"{w}\x1f{s}"
        for w, s in zip(
            truth_subjects.column("workflow").to_pylist(),
            truth_subjects.column("subject").to_pylist(),
            strict=True,
        )
    ]
    t_index = {k: i for i, k in enumerate(t_key)}
    t_vpt = np.asarray(truth_subjects.column("value_per_token").to_numpy(zero_copy_only=False), dtype=float)
    t_n = np.asarray(truth_subjects.column("n_units").to_numpy(zero_copy_only=False))
    e_key = np.array(
        [
            f"{w}\x1f{s}"
            for w, s in zip(
                est.column("workflow").to_pylist(), est.column("subject").to_pylist(), strict=True
            )
        ],
        dtype=object,
    )
    ti = _align(e_key, t_index)
    ok = ti >= 0
    ti_ok = ti[ok]
    wf = np.asarray(est.column("workflow").to_pylist(), dtype=object)[ok]
    vpt = np.asarray(est.column("value_per_token").to_numpy(zero_copy_only=False), dtype=float)[ok]
    lo = np.asarray(est.column("value_per_token_low").to_numpy(zero_copy_only=False), dtype=float)[ok]
    hi = np.asarray(est.column("value_per_token_high").to_numpy(zero_copy_only=False), dtype=float)[ok]
    truth = t_vpt[ti_ok]
    big = t_n[ti_ok] >= MIN_UNITS
    taus, weights, per_wf = [], [], []
    for w in sorted(set(wf.tolist())):
        m = (wf == w) & big & ~np.isnan(vpt)
        if m.sum() < 3:
            continue
        # Estimates all equal (every subject shrunk to the workflow mean) rank nobody: tau 0, not NaN.
        constant = bool(np.all(vpt[m] == vpt[m][0]))
        tau = 0.0 if constant else float(stats.kendalltau(vpt[m], truth[m]).statistic)
        inside = (truth[m] >= lo[m]) & (truth[m] <= hi[m])
        per_wf.append(
            {"workflow": w, "subjects": int(m.sum()), "kendall": tau, "coverage": float(inside.mean())}
        )
        if not math.isnan(tau):
            taus.append(tau)
            weights.append(int(m.sum()))
    m_all = big & ~np.isnan(lo) & ~np.isnan(hi)
    coverage = (
        float(((truth[m_all] >= lo[m_all]) & (truth[m_all] <= hi[m_all])).mean())
        if m_all.any()
        else float("nan")
    )
    tau_mean = float(np.average(taus, weights=weights)) if taus else float("nan")
    return tau_mean, coverage, int(sum(weights)), per_wf


def _delivered_mean_value(workflow: np.ndarray, delivered: np.ndarray, true_value: np.ndarray) -> np.ndarray:
    """Per unit: the mean true value of its workflow's delivered units (a workflow's real unit value)."""
    out = np.zeros(len(workflow))
    for w in set(workflow.tolist()):
        m = workflow == w
        d = m & delivered
        out[m] = float(true_value[d].mean()) if d.any() else 0.0
    return out


def _pattern_posterior(
    ws: Workspace, ids: np.ndarray, workflow: np.ndarray, delivered: np.ndarray
) -> np.ndarray:
    """Per unit: the delivered share among units of its workflow with the same set of signal kinds.

    Label signals are left out. This is the best calibrated score any scorer of these signal
    patterns could give (in sample), so it separates what the signals carry from how they are used.
    """
    from yieldmeter.schema import LABEL_SIGNALS

    t = ws.tables().signals
    t = t.filter(~t.kind.isin(LABEL_SIGNALS)).select("work_unit_id", "kind").distinct()
    s = t.order_by(["work_unit_id", "kind"]).to_pyarrow()
    g = s.group_by("work_unit_id", use_threads=False).aggregate([("kind", "list")])
    patterns = dict(
        zip(
            g.column("work_unit_id").to_pylist(),
            pc.binary_join(g.column("kind_list"), ",").to_pylist(),
            strict=True,
        )
    )
    keys = np.array(
        [f"{w}|{patterns.get(i, '')}" for w, i in zip(workflow.tolist(), ids.tolist(), strict=True)]
    )
    _, inv = np.unique(keys, return_inverse=True)
    share = np.bincount(inv, weights=delivered.astype(float)) / np.bincount(inv)
    return share[inv]


def validate(ws: Workspace, truth_path: Path) -> ValidityReport:
    """Measure the workspace's scores, benchmarks, waste and pricing against ``truth_path``."""
    from yieldmeter.metrics.waste import waste_units

    truth, meta = read_truth(Path(truth_path))
    units = _level(truth, "work_unit")
    value = ws.value
    scores = value.scores()
    if scores.num_rows == 0:
        value.score()
        scores = value.scores()
    store_ids = set(ws.tables().work_units.select("work_unit_id").to_pyarrow().column(0).to_pylist())
    t_ids = np.asarray(units.column("work_unit_id").to_pylist(), dtype=object)
    present = np.array([i in store_ids for i in t_ids.tolist()], dtype=bool)
    missing = t_ids[~present]
    _check_same_simulation(ws, units, meta, truth_path)
    s_index = {k: i for i, k in enumerate(scores.column("work_unit_id").to_pylist())}
    si = _align(t_ids, s_index)
    matched = si >= 0
    notes: list[str] = []
    if len(missing):
        notes.append(f"{len(missing):,} truth work units are not in the store; figures use the rest")

    def col(name: str, table: pa.Table = units) -> np.ndarray:
        return np.asarray(table.column(name).to_numpy(zero_copy_only=False))

    true_value = col("true_value")[matched]
    delivered = col("delivered")[matched].astype(bool)
    workflow = np.asarray(units.column("workflow").to_pylist(), dtype=object)[matched]
    ev = np.asarray(scores.column("expected_value").to_numpy(zero_copy_only=False), dtype=float)[si[matched]]
    p = np.asarray(scores.column("p_value").to_numpy(zero_copy_only=False), dtype=float)[si[matched]]
    ev = np.nan_to_num(ev)
    figures: dict[str, float | None] = {
        "spearman_ev": _spearman(ev, true_value),
        "auc_delivered": _auc(p, delivered),
    }
    # What the evidence allows: a scorer that knew each unit's delivery (upper bound), and the best
    # scorer of the stored signal patterns (the delivered share of each workflow x pattern).
    mean_value = _delivered_mean_value(workflow, delivered, true_value)
    figures["spearman_ev_ceiling_known_delivery"] = _spearman(delivered * mean_value, true_value)
    p_pattern = _pattern_posterior(ws, t_ids[matched], workflow, delivered)
    figures["spearman_ev_ceiling_signals"] = _spearman(p_pattern * mean_value, true_value)
    # How much of the ranking the labels themselves make: the same figure over unlabelled units only.
    label = np.asarray(scores.column("label").to_numpy(zero_copy_only=False), dtype=float)[si[matched]]
    has_label = ~np.isnan(label)
    figures["spearman_ev_unlabelled"] = _spearman(ev[~has_label], true_value[~has_label])
    figures["labelled_share"] = float(has_label.mean()) if len(has_label) else float("nan")
    per_workflow: list[dict[str, Any]] = []
    within, within_w = [], []
    for w in sorted(set(workflow.tolist())):
        m = workflow == w
        rho = _spearman(ev[m], true_value[m])
        per_workflow.append(
            {
                "workflow": w,
                "work_units": int(m.sum()),
                "spearman_ev": rho,
                "spearman_ev_ceiling_signals": _spearman(p_pattern[m], true_value[m]),
                "auc_delivered": _auc(p[m], delivered[m]),
                "mean_p_value": float(p[m].mean()),
                "delivered_rate": float(delivered[m].mean()),
            }
        )
        if not math.isnan(rho):
            within.append(rho)
            within_w.append(int(m.sum()))
    figures["spearman_ev_within"] = float(np.average(within, weights=within_w)) if within else float("nan")

    for by in ("user", "team"):
        est = _subject_estimates(ws, by)
        tau, coverage, n_subjects, per_wf = _rank_figures(est, _level(truth, by))
        figures[f"kendall_{by}"] = tau
        figures[f"interval_coverage_{by}"] = coverage
        figures[f"subjects_{by}"] = float(n_subjects)
        for r in per_wf:
            row = next((x for x in per_workflow if x["workflow"] == r["workflow"]), None)
            if row is not None:
                row[f"kendall_{by}"] = r["kendall"]
                row[f"coverage_{by}"] = r["coverage"]

    flags = waste_units(value.facts()).to_pyarrow()
    f_index = {k: i for i, k in enumerate(flags.column("work_unit_id").to_pylist())}
    fi = _align(t_ids, f_index)
    seen = fi >= 0
    truth_flags = {
        "is_loop": col("is_loop").astype(bool),
        "is_unused_not_loop": col("is_unused").astype(bool) & ~col("is_loop").astype(bool),
        "is_rework": col("is_rework").astype(bool),
        "is_recontact": col("is_recontact").astype(bool),
    }
    for cat, tcol in WASTE_TRUTH.items():
        flagged = np.zeros(len(t_ids), dtype=bool)
        flagged[seen] = np.asarray(flags.column(cat).to_numpy(zero_copy_only=False), dtype=bool)[fi[seen]]
        real = truth_flags[tcol] & seen
        tp = int((flagged & real).sum())
        figures[f"precision_{cat}"] = tp / int(flagged.sum()) if flagged.any() else float("nan")
        figures[f"recall_{cat}"] = tp / int(real.sum()) if real.any() else float("nan")
        figures[f"truth_{cat}"] = float(real.sum())

    totals = ws.spend().to_pylist()[0]
    calls = float(totals.get("calls") or 0)
    figures["unpriced_share"] = float(totals.get("unpriced_calls") or 0) / calls if calls else float("nan")
    figures["true_unpriced_share"] = (
        meta["unpriced_calls"] / meta["calls"] if meta.get("calls") else float("nan")
    )
    return ValidityReport(
        scenario=str(meta.get("scenario")),
        seed=meta.get("seed"),
        truth_work_units=len(t_ids),
        matched_work_units=int(matched.sum()),
        missing_work_units=len(missing),
        missing_sample=[str(x) for x in missing[:5]],
        figures=figures,
        per_workflow=per_workflow,
        notes=notes,
    )
