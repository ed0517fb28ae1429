"""Simulate an organisation into a folder of source files plus its hidden truth."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from yieldmeter.simulate.billing import config_text, focus_rows
from yieldmeter.simulate.catalog import MODELS
from yieldmeter.simulate.engine import MODEL_KEYS, Calls, Org, Units, generate
from yieldmeter.simulate.observe import Observed, observe
from yieldmeter.simulate.scenarios import Scenario, SimulationError, SimulationParams, check_params
from yieldmeter.simulate.writers import iso, write_focus, write_jsonl, write_otlp

TRUTH_FILE = "truth.parquet"
MANIFEST_FILE = "manifest.json"
#: Files and folders `simulate` writes; an output folder holding anything else is refused.
OWN_NAMES = ("otlp", "tables", "billing", "yieldmeter.yaml", TRUTH_FILE, MANIFEST_FILE)


@dataclass
class SimulationResult:
    out: Path
    params: SimulationParams
    counts: dict[str, int]
    seconds: float
    source_paths: list[Path] = field(default_factory=list)

    @property
    def truth_path(self) -> Path:
        return self.out / TRUTH_FILE

    @property
    def config_path(self) -> Path:
        return self.out / "yieldmeter.yaml"


def truth_table(
    scenario: Scenario, params: SimulationParams, org: Org, units: Units, calls: Calls, obs: Observed
) -> pa.Table:
    """Per work unit truth, then per (workflow, user) and (workflow, team) true value per token.

    Tokens are input + output tokens of the unit's calls (input includes cached input).
    """
    n = len(units.work_unit_id)
    tokens_in = np.bincount(calls.unit, weights=calls.input_tokens, minlength=n)
    tokens_out = np.bincount(calls.unit, weights=calls.output_tokens, minlength=n)
    priced = np.array([MODELS[k].priced for k in MODEL_KEYS])
    unpriced = np.bincount(calls.unit, weights=(~priced[calls.model]).astype(float), minlength=n)
    wf_names = np.array([w.name for w in scenario.workflows], dtype=object)
    workflow = wf_names[units.workflow]
    used = np.zeros(n, dtype=bool)
    is_loop = np.zeros(n, dtype=bool)
    is_recontact = np.zeros(n, dtype=bool)
    is_rework = np.zeros(n, dtype=bool)
    for wi, w in enumerate(scenario.workflows):
        sel = units.workflow == wi
        for s in w.states:
            m = sel & (units.state == s.name)
            used[m] = s.used
            is_loop[m] = s.is_loop
            is_recontact[m] = s.is_recontact
        if w.baseline_minutes is not None:
            is_rework[sel] = obs.true_effort_minutes[sel] > w.baseline_minutes
    tokens = tokens_in + tokens_out
    user_id = org.user_id[units.user]
    team = org.team[units.user]
    unit_cols = {
        "level": np.full(n, "work_unit", dtype=object),
        "work_unit_id": units.work_unit_id,
        "parent_id": units.parent_id,
        "workflow": workflow,
        "task_type": units.task_type,
        "user_id": user_id,
        "team": team,
        "subject": units.work_unit_id,
        "model": np.asarray(MODEL_KEYS, dtype=object)[units.model],
        "state": units.state,
        "delivered": units.delivered,
        "p_delivered": units.p_delivered,
        "true_value": units.true_value,
        "expected_true_value": units.expected_value,
        "n_units": np.ones(n, dtype=np.int64),
        "calls": units.n_calls.astype(np.int64),
        "unpriced_calls": unpriced.astype(np.int64),
        "input_tokens": tokens_in.astype(np.int64),
        "output_tokens": tokens_out.astype(np.int64),
        "tokens": tokens.astype(np.int64),
        "true_effort_minutes": obs.true_effort_minutes,
        "used": used,
        "is_loop": is_loop,
        "is_unused": ~used,
        "is_rework": is_rework,
        "is_recontact": is_recontact,
        "flagship": units.flagship,
        "value_per_token": np.divide(units.true_value, tokens, out=np.zeros(n), where=tokens > 0),
        "expected_value_per_token": np.divide(
            units.expected_value, tokens, out=np.zeros(n), where=tokens > 0
        ),
    }
    base = pa.table(unit_cols)
    parts = [base]
    for level, key in (("user", user_id), ("team", team)):
        pairs = np.char.add(np.char.add(workflow.astype(str), "\x1f"), key.astype(str))
        uniq, inv = np.unique(pairs, return_inverse=True)
        k = len(uniq)
        s_value = np.bincount(inv, weights=units.true_value, minlength=k)
        s_exp = np.bincount(inv, weights=units.expected_value, minlength=k)
        s_tok = np.bincount(inv, weights=tokens, minlength=k)
        s_n = np.bincount(inv, minlength=k)
        split = [u.split("\x1f") for u in uniq.tolist()]
        cols = {name: pa.nulls(k, base.schema.field(name).type) for name in unit_cols}
        cols.update(
            {
                "level": pa.array([level] * k),
                "workflow": pa.array([s[0] for s in split]),
                "subject": pa.array([s[1] for s in split]),
                "user_id": pa.array([s[1] if level == "user" else None for s in split], pa.string()),
                "team": pa.array([s[1] if level == "team" else None for s in split], pa.string()),
                "true_value": pa.array(s_value),
                "expected_true_value": pa.array(s_exp),
                "n_units": pa.array(s_n.astype(np.int64)),
                "tokens": pa.array(s_tok.astype(np.int64)),
                "value_per_token": pa.array(np.divide(s_value, s_tok, out=np.zeros(k), where=s_tok > 0)),
                "expected_value_per_token": pa.array(
                    np.divide(s_exp, s_tok, out=np.zeros(k), where=s_tok > 0)
                ),
            }
        )
        parts.append(pa.table(cols).cast(base.schema))
    table = pa.concat_tables(parts)
    n_calls = len(calls.unit)
    meta = {
        "scenario": scenario.name,
        "seed": params.seed,
        "days": params.days,
        "users": params.resolved_users(),
        "start": params.start.isoformat(),
        "calls": n_calls,
        "unpriced_calls": int((~priced[calls.model]).sum()),
        "tokens": int(calls.input_tokens.sum() + calls.output_tokens.sum()),
        "unpriced_tokens": int((calls.input_tokens + calls.output_tokens)[~priced[calls.model]].sum()),
    }
    return table.replace_schema_metadata({"yieldmeter.truth": json.dumps(meta)})


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SimulationError(f"--out {out} is a file; give a folder to write the simulated sources into")
    if out.is_dir() and not overwrite:
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OWN_NAMES)
        if foreign:
            raise SimulationError(
                f"--out {out} already holds other files ({', '.join(foreign[:5])}); "
                "choose an empty or new folder, or pass --overwrite to write beside them"
            )


def simulate(out: Path, params: SimulationParams, *, overwrite: bool = False) -> SimulationResult:
    """Generate the organisation of ``params`` and write its sources and truth under ``out``."""
    t0 = time.perf_counter()
    scenario = check_params(params)
    _check_out(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for old in (out / "otlp").glob("traces-*.jsonl"):
        old.unlink()
    org, units, calls = generate(scenario, params)
    obs = observe(scenario, params, org, units)
    wf_names = [w.name for w in scenario.workflows]
    services = [w.service for w in scenario.workflows]
    paths = write_otlp(out / "otlp", org, units, calls, wf_names, services, params.seed)
    owner = np.array([w.owner for w in scenario.workflows], dtype=object)
    tables = out / "tables"
    counts = {"calls": len(calls.unit)}
    counts["work_units"] = write_jsonl(
        tables / "work_units.jsonl",
        {
            "work_unit_id": units.work_unit_id,
            "parent_id": units.parent_id,
            "workflow": np.asarray(wf_names, dtype=object)[units.workflow],
            "task_type": units.task_type,
            "user_id": org.user_id[units.user],
            "team": org.team[units.user],
            "owner": owner[units.workflow],
            "started_at": iso(units.started_ns),
            "ended_at": iso(units.ended_ns),
            "status": np.full(len(units.work_unit_id), "completed", dtype=object),
        },
    )
    sig = obs.signals
    counts["signals"] = write_jsonl(
        tables / "signals.jsonl",
        {
            "signal_id": [f"sg-{i:08d}" for i in range(len(sig["unit"]))],
            "work_unit_id": units.work_unit_id[sig["unit"].astype(np.int64)],
            "ts": iso(sig["ts"]),
            "kind": sig["kind"],
            "value": sig["value"],
            "actor": sig["actor"],
            "source": sig["source"],
        },
    )
    eff = obs.effort
    counts["effort"] = write_jsonl(
        tables / "effort.jsonl",
        {
            "effort_id": [f"ef-{i:08d}" for i in range(len(eff["unit"]))],
            "work_unit_id": units.work_unit_id[eff["unit"].astype(np.int64)],
            "ts": iso(eff["ts"]),
            "person": eff["person"],
            "kind": eff["kind"],
            "minutes": eff["minutes"],
        },
    )
    outcome_cols: dict[str, list[object]] = {k: [] for k in (obs.outcomes[0] if obs.outcomes else {})}
    for row in obs.outcomes:
        for k, v in row.items():
            outcome_cols[k].append(v)
    for k in ("period_start", "period_end"):
        if k in outcome_cols:
            outcome_cols[k] = list(iso(np.asarray(outcome_cols[k], dtype=np.int64)))
    counts["outcomes"] = write_jsonl(tables / "outcomes.jsonl", outcome_cols)
    counts["cost_items"] = write_focus(out / "billing" / "focus.csv", focus_rows(scenario, params, org))
    (out / "yieldmeter.yaml").write_text(config_text(scenario, params), encoding="utf-8")
    truth = truth_table(scenario, params, org, units, calls, obs)
    pq.write_table(truth, out / TRUTH_FILE)
    meta = json.loads(truth.schema.metadata[b"yieldmeter.truth"])
    manifest = {
        "scenario": scenario.name,
        "description": scenario.description,
        "params": {
            "seed": params.seed,
            "days": params.days,
            "users": params.resolved_users(),
            "start": params.start.isoformat(),
        },
        "counts": counts,
        "truth": meta,
        "otlp_files": [p.name for p in paths],
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    sources = [
        *paths,
        *(tables / f for f in ("work_units.jsonl", "signals.jsonl", "effort.jsonl", "outcomes.jsonl")),
        out / "billing" / "focus.csv",
    ]
    return SimulationResult(out, params, counts, time.perf_counter() - t0, sources)
