# ruff: noqa: E501  (hand-written SQL reads best unwrapped)
"""The value reports' figures computed two other ways, for bench_value.py to time against.

- :func:`sql_figures`: hand-written DuckDB SQL, as an analyst tuning for this one
  database would write it (temporary tables, FILTER clauses, arg_max).
- :func:`pandas_figures`: pandas on data frames already in memory.

Both compute, from the canonical tables and the stored scores: priced calls,
pro rata allocation per workflow and day, effort cost, per unit facts and
success, the funnel per workflow and month, coverage per workflow, yields per
workflow and family, waste per workflow and category, and the sums behind
benchmarks (per team) and patterns (six dimensions) including the bootstrap
batch sums. The shrinkage and bootstrap (numpy on those sums) are the same in
all three and are not repeated here. Pricing covers what the benchmark data use:
one price row per model, no tiers, no time-of-day windows, no cached tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

ACCEPT = ("accepted", "edited", "saved", "shared", "copied", "exported", "used_in_artifact")
ACTION = ("decision_reached", "action_taken", "metric_moved", "referenced_later")
POSITIVE = (
    "accepted",
    "edited",
    "saved",
    "shared",
    "copied",
    "exported",
    "used_in_artifact",
    "rated",
    "decision_reached",
    "referenced_later",
    "action_taken",
    "metric_moved",
)
TOOLS = ("execute_tool", "tool", "tool_call", "function_call")


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


SQL = f"""
CREATE OR REPLACE TEMP TABLE b_pc AS
SELECT c.work_unit_id, coalesce(c.workflow, '(unassigned)') AS workflow, c.team, c.app, c.ts,
       date_trunc('day', c.ts) AS day, c.model, c.operation, c.request_count, c.input_tokens, c.output_tokens,
       c.duration_ms, (c.input_tokens * p."input" + c.output_tokens * p.output) / 1e6 AS model_cost
FROM calls c
LEFT JOIN model_map mm ON mm.provider = coalesce(c.provider, '') AND mm.model = c.model
LEFT JOIN prices p ON p.provider = mm.price_provider AND p.model = mm.price_model
     AND c.ts >= p.valid_from AND c.ts < p.valid_to;

CREATE OR REPLACE TEMP TABLE b_wd AS
SELECT workflow, day, sum(coalesce(model_cost, 0)) AS mc, sum(request_count) AS calls,
       sum(input_tokens + output_tokens) AS tokens
FROM b_pc GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE b_alloc AS
WITH scoped AS (
  SELECT i.item_id, i.amount, w.workflow, w.day, w.mc
  FROM cost_items i JOIN b_wd w
    ON w.day >= date_trunc('day', i.period_start) AND w.day < i.period_end
   AND (i.workflow IS NULL OR i.workflow = w.workflow) AND w.mc > 0
  WHERE coalesce(i.category, '') <> 'ai_tokens'
)
SELECT workflow, day, sum(share) AS allocated
FROM (SELECT workflow, day, amount * mc / sum(mc) OVER (PARTITION BY item_id) AS share FROM scoped)
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE b_eff AS
SELECT e.work_unit_id, date_trunc('day', e.ts) AS day, coalesce(u.workflow, '(unassigned)') AS workflow,
       sum(e.minutes) AS minutes, sum(e.minutes / 60.0 * coalesce(wf.labour_rate, 60.0)) AS ecost
FROM effort e LEFT JOIN work_units u USING (work_unit_id) LEFT JOIN workflows wf ON wf.workflow = u.workflow
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE b_units AS
WITH uc AS (
  SELECT pc.work_unit_id, sum(pc.request_count) AS calls, sum(pc.input_tokens) AS inp,
         sum(pc.input_tokens + pc.output_tokens) AS tokens, sum(coalesce(pc.model_cost, 0)) AS mc,
         sum(coalesce(pc.model_cost, 0) * coalesce(a.allocated / w.mc, 0)) AS alloc,
         max(pc.duration_ms) AS maxdur, min(pc.ts) AS first_ts,
         arg_max(pc.model, pc.input_tokens + pc.output_tokens) AS model,
         bool_or(pc.operation IN {_in(TOOLS)}) AS tool_use
  FROM b_pc pc LEFT JOIN b_wd w USING (workflow, day) LEFT JOIN b_alloc a USING (workflow, day)
  WHERE pc.work_unit_id IS NOT NULL GROUP BY 1
), sg AS (
  SELECT work_unit_id,
         count(*) FILTER (kind IN {_in(ACCEPT)}) AS n_acc, count(*) FILTER (kind IN {_in(ACTION)}) AS n_act,
         count(*) FILTER (kind IN {_in(POSITIVE)}) AS n_pos, count(*) FILTER (kind = 'accepted') AS n_expl,
         count(*) FILTER (kind = 'rejected') AS n_rej, count(*) FILTER (kind = 'escalated') AS n_esc,
         min(ts) FILTER (kind IN {_in(ACCEPT)}) AS first_acc
  FROM signals GROUP BY 1
), rc AS (
  SELECT s.work_unit_id, count(*) AS n_rc
  FROM signals s JOIN sg USING (work_unit_id) JOIN work_units u USING (work_unit_id)
  LEFT JOIN workflows wf ON wf.workflow = u.workflow
  WHERE s.kind = 'recontact' AND sg.first_acc IS NOT NULL
    AND epoch(s.ts) - epoch(sg.first_acc) BETWEEN 0 AND coalesce(wf.recontact_window_days, 7) * 86400
  GROUP BY 1
), ef AS (SELECT work_unit_id, sum(minutes) AS minutes, sum(ecost) AS ecost FROM b_eff GROUP BY 1),
lo AS (SELECT work_unit_id, count(*) AS n_out FROM outcomes WHERE work_unit_id IS NOT NULL GROUP BY 1),
f AS (
  SELECT u.work_unit_id, coalesce(u.workflow, '(unassigned)') AS workflow, u.team, u.user_id, u.parent_id,
         u.status, coalesce(u.started_at, uc.first_ts) AS started_at, coalesce(uc.calls, 0) AS calls,
         coalesce(uc.inp, 0) AS inp, coalesce(uc.tokens, 0) AS tokens, coalesce(uc.model, '(none)') AS model,
         coalesce(uc.tool_use, false) AS tool_use,
         coalesce(uc.mc, 0) + coalesce(uc.alloc, 0) + coalesce(ef.ecost, 0) AS flc,
         coalesce(ef.minutes, 0) AS minutes, coalesce(ef.ecost, 0) AS ecost, wf.baseline_minutes,
         coalesce(sg.n_acc, 0) > 0 AS accepted,
         coalesce(sg.n_act, 0) > 0 OR coalesce(lo.n_out, 0) > 0 AS acted, coalesce(sg.n_pos, 0) AS n_pos,
         coalesce(rc.n_rc, 0) AS n_rc, sg.first_acc, s.expected_value,
         CASE WHEN s.label IS NOT NULL THEN s.label = 1 WHEN s.score IS NOT NULL
              THEN s.score >= coalesce(wf.quality_threshold, 50) ELSE false END
         AND (wf.latency_slo_ms IS NULL OR uc.maxdur IS NULL OR uc.maxdur <= wf.latency_slo_ms)
         AND coalesce(sg.n_esc, 0) = 0 AND (coalesce(sg.n_rej, 0) = 0 OR coalesce(sg.n_acc, 0) > 0)
         AND CASE WHEN wf.risk_class = 'critical' THEN coalesce(ef.minutes, 0) > 0
                  WHEN wf.risk_class = 'high' THEN coalesce(ef.minutes, 0) > 0 OR coalesce(sg.n_expl, 0) > 0
                  ELSE true END AS meets
  FROM work_units u LEFT JOIN uc USING (work_unit_id) LEFT JOIN sg USING (work_unit_id)
  LEFT JOIN rc USING (work_unit_id) LEFT JOIN ef USING (work_unit_id) LEFT JOIN lo USING (work_unit_id)
  LEFT JOIN workflows wf ON wf.workflow = u.workflow LEFT JOIN scores s USING (work_unit_id)
)
SELECT *, accepted AND meets AND (acted OR NOT bool_or(acted) OVER (PARTITION BY workflow)) AS successful,
       bool_or(acted) OVER (PARTITION BY workflow) AS tracks
FROM f;
"""

FUNNEL = """
WITH cost AS (
  SELECT workflow, strftime(day, '%Y-%m') AS month, sum(calls) AS calls, sum(mc) AS mc FROM b_wd GROUP BY ALL
), al AS (SELECT workflow, strftime(day, '%Y-%m') AS month, sum(allocated) AS al FROM b_alloc GROUP BY ALL),
ef AS (SELECT workflow, strftime(day, '%Y-%m') AS month, sum(ecost) AS ec FROM b_eff GROUP BY ALL),
un AS (
  SELECT workflow, strftime(started_at, '%Y-%m') AS month, count(*) AS work_units,
         count(*) FILTER (accepted) AS accepted_outputs, count(*) FILTER (accepted AND acted) AS actions,
         count(*) FILTER (successful) AS successful_outcomes, bool_or(tracks) AS tracks
  FROM b_units GROUP BY ALL
), keys AS (
  SELECT workflow, month FROM cost UNION SELECT workflow, month FROM un UNION SELECT workflow, month FROM ef
)
SELECT k.workflow, k.month, coalesce(cost.calls, 0) AS calls, coalesce(un.work_units, 0) AS work_units,
       coalesce(un.accepted_outputs, 0) AS accepted_outputs,
       CASE WHEN un.tracks THEN un.actions END AS actions, coalesce(un.successful_outcomes, 0) AS successful_outcomes,
       coalesce(cost.mc, 0) + coalesce(al.al, 0) + coalesce(ef.ec, 0) AS fully_loaded_cost,
       (coalesce(cost.mc, 0) + coalesce(al.al, 0) + coalesce(ef.ec, 0)) / nullif(un.successful_outcomes, 0)
         AS cost_per_successful_outcome
FROM keys k LEFT JOIN cost USING (workflow, month) LEFT JOIN al USING (workflow, month)
LEFT JOIN ef USING (workflow, month) LEFT JOIN un USING (workflow, month)
"""

COVERAGE = """
WITH spend AS (
  SELECT workflow, sum(flc) AS spend FROM (
    SELECT workflow, sum(mc) AS flc FROM b_wd GROUP BY 1 UNION ALL
    SELECT workflow, sum(allocated) FROM b_alloc GROUP BY 1 UNION ALL
    SELECT workflow, sum(ecost) FROM b_eff GROUP BY 1) GROUP BY 1
), parts AS (
  SELECT coalesce(wf.workflow, o.workflow) AS workflow,
         (wf.baseline_cost IS NOT NULL OR wf.baseline_minutes IS NOT NULL OR coalesce(o.b, false)) AS hb,
         (wf.owner IS NOT NULL OR coalesce(o.ow, false)) AS ho, coalesce(o.ev, false) AS he
  FROM workflows wf FULL JOIN (
    SELECT workflow, bool_or(baseline_value IS NOT NULL) AS b, bool_or(benefit_owner IS NOT NULL) AS ow,
           bool_or(coalesce(evidence_level, 'observational') <> 'anecdote' AND (monetary_value IS NOT NULL OR
               (observed_value IS NOT NULL AND baseline_value IS NOT NULL AND observed_value <> baseline_value)))
           AS ev
    FROM outcomes WHERE workflow IS NOT NULL GROUP BY 1) o ON o.workflow = wf.workflow
)
SELECT s.workflow, s.spend, coalesce(hb, false) AS has_baseline, coalesce(ho, false) AS has_owner,
       coalesce(he, false) AS has_evidence, coalesce(hb AND ho AND he, false) AS covered
FROM spend s LEFT JOIN parts p USING (workflow)
"""

YIELDS = """
SELECT coalesce(o.workflow, '(unassigned)') AS workflow,
  CASE WHEN coalesce(o.value_dimension, wf.value_dimension) IN ('revenue', 'margin') THEN 'revenue'
       WHEN coalesce(o.value_dimension, wf.value_dimension) = 'loss_avoided' THEN 'risk'
       WHEN coalesce(o.value_dimension, wf.value_dimension) = 'capacity' THEN 'capacity'
       WHEN coalesce(o.value_dimension, wf.value_dimension) = 'strategic' THEN 'strategic'
       ELSE 'workflow' END AS family,
  sum(CASE WHEN coalesce(o.value_dimension, wf.value_dimension) = 'capacity' AND NOT coalesce(o.redeployed, false)
           THEN 0 ELSE o.monetary_value * greatest(least(coalesce(o.attribution_share, 1), 1), 0) END) AS benefit,
  count(*) AS outcomes
FROM outcomes o LEFT JOIN workflows wf ON wf.workflow = o.workflow GROUP BY ALL
"""

WASTE = """
WITH med AS (
  SELECT workflow, coalesce(median(calls) FILTER (accepted), median(calls)) AS med FROM b_units GROUP BY 1
), th AS (
  SELECT workflow, greatest(20, med + 10 * coalesce(median(abs(calls - med)) FILTER (accepted),
                                                    median(abs(calls - med)))) AS loop_min
  FROM b_units JOIN med USING (workflow) GROUP BY workflow, med
), w AS (
  SELECT workflow, work_unit_id, flc,
         NOT accepted AND NOT acted AND calls >= th.loop_min AS loop,
         accepted AND n_rc > 0 AS unresolved,
         CASE WHEN baseline_minutes IS NOT NULL AND minutes > baseline_minutes
              THEN ecost * (minutes - baseline_minutes) / minutes ELSE 0 END AS rework, accepted, n_pos, status
  FROM b_units JOIN th USING (workflow)
), x AS (SELECT *, NOT accepted AND n_pos = 0 AND NOT loop AND coalesce(status, 'completed') <> 'open' AS unused
         FROM w)
SELECT workflow, sum(flc) FILTER (loop) AS loop_spend, count(*) FILTER (loop) AS loop_units,
       sum(flc) FILTER (unused) AS unused_spend, sum(rework) AS rework_spend,
       sum(flc) FILTER (unresolved) AS unresolved_spend,
       sum(CASE WHEN loop OR unused OR unresolved THEN flc ELSE rework END) AS total_spend,
       arg_max(work_unit_id, flc, 3) FILTER (loop) AS loop_examples
FROM x GROUP BY 1
"""

SEGMENTS = """
CREATE OR REPLACE TEMP TABLE b_seg AS
SELECT workflow, work_unit_id, coalesce(expected_value, 0) AS v, tokens::DOUBLE AS k, successful, flc,
       team, model,
       CASE WHEN sn <= 1 THEN '1' WHEN sn <= 5 THEN '2-5' WHEN sn <= 20 THEN '6-20' ELSE '21+' END AS session_length,
       CASE WHEN calls <= 1 THEN '1' WHEN calls <= 3 THEN '2-3' WHEN calls <= 10 THEN '4-10' ELSE '11+' END
         AS iterations,
       CASE WHEN inp / greatest(calls, 1) <= 1000 THEN '<=1k' WHEN inp / greatest(calls, 1) <= 4000 THEN '1k-4k'
            WHEN inp / greatest(calls, 1) <= 16000 THEN '4k-16k' ELSE '>16k' END AS prompt_size,
       CASE WHEN tool_use THEN 'tools' ELSE 'no tools' END AS tool_use,
       CASE WHEN first_acc IS NULL THEN 'never accepted'
            WHEN (epoch(first_acc) - epoch(started_at)) / 60 <= 1 THEN '<=1 min'
            WHEN (epoch(first_acc) - epoch(started_at)) / 60 <= 10 THEN '1-10 min'
            WHEN (epoch(first_acc) - epoch(started_at)) / 60 <= 60 THEN '10-60 min' ELSE '>1 h' END
         AS time_to_first_acceptance,
       abs(hash(work_unit_id)) % 32 AS bucket
FROM (SELECT *, count(*) OVER (PARTITION BY coalesce(parent_id, work_unit_id)) AS sn FROM b_units)
"""


def _group_sql(keys: str) -> str:
    return (
        f"SELECT {keys}, count(*) AS n, sum(v) AS value, sum(k) AS tokens, count(*) FILTER (successful) AS s, "
        f"sum(flc) AS cost, sum(v * v) AS svv, sum(k * k) AS skk, sum(v * k) AS svk FROM b_seg GROUP BY ALL"
    )


def _bucket_sql(keys: str) -> str:
    return (
        f"SELECT {keys}, bucket, count(*) AS n, sum(v) AS value, sum(k) AS tokens, "
        f"count(*) FILTER (successful) AS s, sum(flc) AS cost FROM b_seg GROUP BY ALL"
    )


PATTERN_DIMENSIONS = (
    "model",
    "session_length",
    "iterations",
    "prompt_size",
    "tool_use",
    "time_to_first_acceptance",
)


def sql_figures(con: Any) -> dict[str, Any]:
    """Every figure by hand-written SQL; returns the funnel rows and the sizes of the rest."""
    con.execute(SQL)
    out: dict[str, Any] = {"funnel": con.execute(FUNNEL).to_arrow_table().to_pylist()}
    out["coverage"] = con.execute(COVERAGE).to_arrow_table().num_rows
    out["yields"] = con.execute(YIELDS).to_arrow_table().num_rows
    out["waste"] = con.execute(WASTE).to_arrow_table().num_rows
    con.execute(SEGMENTS)
    sizes = 0
    for keys in ["workflow, team", *(f"workflow, {d}" for d in PATTERN_DIMENSIONS)]:
        sizes += con.execute(_group_sql(keys)).to_arrow_table().num_rows
        sizes += con.execute(_bucket_sql(keys)).to_arrow_table().num_rows
    out["group_rows"] = sizes
    return out


def pandas_figures(f: dict[str, pd.DataFrame], models: list[tuple[str, str, float, float]]) -> dict[str, Any]:
    """Every figure with pandas on frames already in memory (the same definitions as the SQL)."""
    calls, units, signals, effort = f["calls"], f["work_units"], f["signals"], f["effort"]
    wf, outcomes, items, scores = f["workflows"], f["outcomes"], f["cost_items"], f["scores"]
    price = pd.DataFrame(models, columns=["provider", "model", "p_in", "p_out"])
    c = calls.merge(price, on=["provider", "model"], how="left")
    c["model_cost"] = (c.input_tokens * c.p_in + c.output_tokens * c.p_out) / 1e6
    c["workflow"] = c.workflow.fillna("(unassigned)")
    c["day"] = c.ts.dt.floor("D")
    c["tokens"] = c.input_tokens + c.output_tokens
    wd = c.groupby(["workflow", "day"], as_index=False).agg(
        mc=("model_cost", "sum"), calls=("request_count", "sum")
    )
    # allocation, pro rata on model cost per item
    rows = []
    for it in items.itertuples():
        m = (wd.day >= it.period_start.floor("D")) & (wd.day < it.period_end) & (wd.mc > 0)
        if isinstance(it.workflow, str):
            m &= wd.workflow == it.workflow
        part = wd[m]
        rows.append(
            part.assign(allocated=it.amount * part.mc / part.mc.sum())[["workflow", "day", "allocated"]]
        )
    alloc = pd.concat(rows).groupby(["workflow", "day"], as_index=False).allocated.sum()
    wd = wd.merge(alloc, on=["workflow", "day"], how="left")
    wd["uplift"] = (wd.allocated / wd.mc).fillna(0.0)
    c = c.merge(wd[["workflow", "day", "uplift"]], on=["workflow", "day"], how="left")
    c["alloc"] = c.model_cost.fillna(0) * c.uplift.fillna(0)
    c["is_tool"] = c.operation.isin(TOOLS)
    linked = c[c.work_unit_id.notna()]
    g = linked.groupby("work_unit_id")
    uc = g.agg(
        calls=("request_count", "sum"),
        inp=("input_tokens", "sum"),
        tokens=("tokens", "sum"),
        mc=("model_cost", "sum"),
        alloc=("alloc", "sum"),
        maxdur=("duration_ms", "max"),
        tool_use=("is_tool", "any"),
    )
    uc["model"] = linked.loc[g.tokens.idxmax(), ["work_unit_id", "model"]].set_index("work_unit_id").model
    e = effort.merge(units[["work_unit_id", "workflow"]], on="work_unit_id", how="left").merge(
        wf[["workflow", "labour_rate"]], on="workflow", how="left"
    )
    e["ecost"] = e.minutes / 60.0 * e.labour_rate.fillna(60.0)
    e["day"] = e.ts.dt.floor("D")
    ef = e.groupby("work_unit_id").agg(minutes=("minutes", "sum"), ecost=("ecost", "sum"))
    s = signals
    sg = (
        pd.DataFrame(
            {
                "n_acc": s.kind.isin(ACCEPT),
                "n_act": s.kind.isin(ACTION),
                "n_pos": s.kind.isin(POSITIVE),
                "n_expl": s.kind == "accepted",
                "n_rej": s.kind == "rejected",
                "n_esc": s.kind == "escalated",
                "work_unit_id": s.work_unit_id,
            }
        )
        .groupby("work_unit_id")
        .sum()
    )
    sg["first_acc"] = s[s.kind.isin(ACCEPT)].groupby("work_unit_id").ts.min()
    u = (
        units.set_index("work_unit_id")
        .join(uc)
        .join(ef)
        .join(sg)
        .join(scores.set_index("work_unit_id")[["score", "label", "expected_value"]])
    )
    u = u.reset_index().merge(wf, on="workflow", how="left", suffixes=("", "_wf"))
    rc = s[s.kind == "recontact"][["work_unit_id", "ts"]].merge(
        u[["work_unit_id", "first_acc", "recontact_window_days"]], on="work_unit_id"
    )
    d = (rc.ts - rc.first_acc).dt.total_seconds()
    rc = rc[rc.first_acc.notna() & (d >= 0) & (d <= rc.recontact_window_days.fillna(7) * 86400)]
    u = u.merge(rc.groupby("work_unit_id").size().rename("n_rc"), on="work_unit_id", how="left")
    for col in (
        "calls",
        "inp",
        "tokens",
        "mc",
        "alloc",
        "minutes",
        "ecost",
        "n_acc",
        "n_act",
        "n_pos",
        "n_expl",
        "n_rej",
        "n_esc",
        "n_rc",
    ):
        u[col] = u[col].fillna(0)
    u["flc"] = u.mc + u.alloc + u.ecost
    u["accepted"] = u.n_acc > 0
    u["acted"] = u.n_act > 0
    quality = np.where(u.label.notna(), u.label == 1, u.score >= u.quality_threshold.fillna(50))
    latency = u.latency_slo_ms.isna() | u.maxdur.isna() | (u.maxdur <= u.latency_slo_ms)
    risk = np.select(
        [u.risk_class == "critical", u.risk_class == "high"],
        [u.minutes > 0, (u.minutes > 0) | (u.n_expl > 0)],
        True,
    )
    clean = (u.n_esc == 0) & ((u.n_rej == 0) | u.accepted)
    tracks = u.groupby("workflow").acted.transform("any")
    u["successful"] = u.accepted & quality & latency & risk & clean & (u.acted | ~tracks)
    u["month"] = u.started_at.dt.strftime("%Y-%m")
    un = (
        u.groupby(["workflow", "month"])
        .agg(
            work_units=("work_unit_id", "size"),
            accepted_outputs=("accepted", "sum"),
            successful_outcomes=("successful", "sum"),
        )
        .reset_index()
    )
    wd["month"] = wd.day.dt.strftime("%Y-%m")
    cost = (
        wd.groupby(["workflow", "month"])
        .agg(calls=("calls", "sum"), mc=("mc", "sum"), al=("allocated", "sum"))
        .reset_index()
    )
    e["month"] = e.day.dt.strftime("%Y-%m")
    ecm = (
        e.assign(workflow=e.workflow.fillna("(unassigned)"))
        .groupby(["workflow", "month"])
        .ecost.sum()
        .reset_index()
    )
    fun = cost.merge(un, on=["workflow", "month"], how="outer").merge(
        ecm, on=["workflow", "month"], how="outer"
    )
    fun["fully_loaded_cost"] = fun.mc.fillna(0) + fun.al.fillna(0) + fun.ecost.fillna(0)
    fun["cost_per_successful_outcome"] = fun.fully_loaded_cost / fun.successful_outcomes.replace(0, np.nan)
    # coverage, yields, waste, benchmark and pattern sums
    spend = fun.groupby("workflow").fully_loaded_cost.sum()
    cov = spend.to_frame().join(
        wf.set_index("workflow")[["owner", "baseline_minutes", "baseline_cost"]], how="left"
    )
    ev = (
        outcomes[(outcomes.evidence_level != "anecdote") & outcomes.monetary_value.notna()]
        .groupby("workflow")
        .size()
    )
    cov["covered"] = (
        cov.owner.notna()
        & (cov.baseline_minutes.notna() | cov.baseline_cost.notna())
        & cov.index.isin(ev.index)
    )
    o = outcomes.merge(wf[["workflow", "value_dimension"]], on="workflow", how="left", suffixes=("", "_wf"))
    dim = o.value_dimension.fillna(o.value_dimension_wf)
    o["family"] = np.select(
        [dim.isin(["revenue", "margin"]), dim == "loss_avoided", dim == "capacity", dim == "strategic"],
        ["revenue", "risk", "capacity", "strategic"],
        "workflow",
    )
    o["benefit"] = np.where(
        (o.family == "capacity") & ~o.redeployed.fillna(False).astype(bool),
        0.0,
        o.monetary_value * o.attribution_share.fillna(1).clip(0, 1),
    )
    ylds = o.groupby(["workflow", "family"]).benefit.sum()
    # loop: calls >= max(20, median + 10 x MAD) of the workflow's accepted units (all when none)
    ref = u[u.accepted].groupby("workflow").calls
    med = ref.median().reindex(u.workflow.unique()).fillna(u.groupby("workflow").calls.median())
    u["dev"] = (u.calls - u.workflow.map(med)).abs()
    mad = (
        u[u.accepted]
        .groupby("workflow")
        .dev.median()
        .reindex(med.index)
        .fillna(u.groupby("workflow").dev.median())
    )
    loop = ~u.accepted & ~u.acted & (u.calls >= np.maximum(20.0, u.workflow.map(med + 10 * mad)))
    unused = ~u.accepted & (u.n_pos == 0) & ~loop & (u.status.fillna("completed") != "open")
    unresolved = u.accepted & (u.n_rc > 0)
    rework = np.where(
        u.baseline_minutes.notna() & (u.minutes > u.baseline_minutes),
        u.ecost * (u.minutes - u.baseline_minutes) / u.minutes.replace(0, np.nan),
        0.0,
    )
    u["waste"] = np.where(loop | unused | unresolved, u.flc, rework)
    waste = u.groupby("workflow").waste.sum()
    sn = u.groupby(u.parent_id.fillna(u.work_unit_id)).work_unit_id.transform("size")
    u["session_length"] = pd.cut(sn, [0, 1, 5, 20, np.inf], labels=["1", "2-5", "6-20", "21+"])
    u["iterations"] = pd.cut(u.calls, [-1, 1, 3, 10, np.inf], labels=["1", "2-3", "4-10", "11+"])
    u["prompt_size"] = pd.cut(
        u.inp / u.calls.clip(lower=1),
        [-1, 1000, 4000, 16000, np.inf],
        labels=["<=1k", "1k-4k", "4k-16k", ">16k"],
    )
    u["tool_use"] = np.where(u.tool_use.fillna(False).astype(bool), "tools", "no tools")
    tta = (u.first_acc - u.started_at).dt.total_seconds() / 60
    u["time_to_first_acceptance"] = np.where(
        u.first_acc.isna(),
        "never accepted",
        pd.cut(tta, [-np.inf, 1, 10, 60, np.inf], labels=["<=1 min", "1-10 min", "10-60 min", ">1 h"]).astype(
            str
        ),
    )
    u["v"] = u.expected_value.fillna(0)
    u["k"] = u.tokens.astype(float)
    u["vv"], u["kk"], u["vk"] = u.v * u.v, u.k * u.k, u.v * u.k
    u["bucket"] = pd.util.hash_pandas_object(u.work_unit_id, index=False).values % 32
    u["model"] = u.model.fillna("(none)")
    sizes = 0
    for d in ("team", *PATTERN_DIMENSIONS):
        gs = u.groupby(["workflow", d], observed=True).agg(
            n=("v", "size"),
            value=("v", "sum"),
            tokens=("k", "sum"),
            s=("successful", "sum"),
            cost=("flc", "sum"),
            svv=("vv", "sum"),
            skk=("kk", "sum"),
            svk=("vk", "sum"),
        )
        bs = u.groupby(["workflow", d, "bucket"], observed=True).agg(
            n=("v", "size"),
            value=("v", "sum"),
            tokens=("k", "sum"),
            s=("successful", "sum"),
            cost=("flc", "sum"),
        )
        sizes += len(gs) + len(bs)
    return {
        "funnel": fun[["workflow", "month", "work_units", "successful_outcomes"]]
        .fillna(0)
        .astype({"work_units": int, "successful_outcomes": int})
        .to_dict("records"),
        "coverage": len(cov),
        "yields": len(ylds),
        "waste": len(waste),
        "group_rows": sizes,
    }
