"""The value engine's intermediate tables kept in the store between sessions.

A fresh session (a new process, a new ``ValueService``) reads the unit facts and cost lines a
previous one kept, as long as nothing they are made from changed; any write to a table they may
read, a configuration change or other code makes them again. Every figure is checked against a
session that keeps nothing and computes everything from the canonical tables.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from yieldmeter.app.value import ValueService
from yieldmeter.app.workspace import Workspace


def figures(v: ValueService) -> dict[str, Any]:
    """Every value report, as rows (the figures a user sees)."""
    return {
        "funnel": v.funnel().to_pylist(),
        "coverage": v.coverage().by_workflow.to_pylist(),
        "waste": v.waste().to_pylist(),
        "patterns": v.patterns().to_pylist(),
        "benchmarks": v.benchmarks(by="team").rows.to_pylist(),
        "yields": v.yields().yields.to_pylist(),
        "normalised": v.value_per_token(by="team", normalise=True).to_pylist(),
    }


def same(a: Any, b: Any) -> bool:
    """Equal figures: numbers to 1e-9 relative (a sum's last bits follow the order DuckDB's
    threads add in, from one run to the next), everything else exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def fresh(ws: Workspace) -> ValueService:
    """A session that keeps nothing: every intermediate computed from the canonical tables."""
    v = ValueService(ws)
    v.keep = False
    return v


def recomputed(ws: Workspace) -> dict[str, Any]:
    return figures(fresh(ws))


def source_of(v: ValueService, name: str) -> str:
    """The table a session read ``name`` from (``_kept_value_<name>`` when it was a kept copy)."""
    table = v.facts() if name == "facts" else v._value_cost_lines()
    return str(table.get_name()).rsplit(".", 1)[-1]


def test_a_new_session_reads_the_kept_tables(example_workspace: Path) -> None:
    with Workspace.open(example_workspace) as ws:
        first = ValueService(ws)
        made = figures(first)
        assert source_of(first, "facts").startswith("_value_facts_")  # computed: nothing kept yet
        kept = ws.store.query_arrow(
            "SELECT key FROM meta WHERE starts_with(key, 'kept:') ORDER BY key"
        ).column("key")
        assert kept.to_pylist() == [
            # (no full-grain lines: the example's min_group_size 1 asks for no people per team)
            "kept:_kept_value_facts",
            "kept:_kept_value_percentiles",
            "kept:_kept_value_segments",
            "kept:_kept_value_value_lines",
        ]
    with Workspace.open(example_workspace) as ws:  # another process would see the same store
        again = ValueService(ws)
        assert same(figures(again), made)
        assert same(made, recomputed(ws))
        assert source_of(again, "facts") == "_kept_value_facts"
        assert source_of(again, "value_lines") == "_kept_value_value_lines"
        # segments are kept for the last scope asked for: another period makes them again, the
        # same figures as a session that keeps nothing
        assert same(
            again.patterns(period="2025-03").to_pylist(), fresh(ws).patterns(period="2025-03").to_pylist()
        )
        assert str(again._scoped["segments"][1].get_name()).rsplit(".", 1)[-1].startswith("_value_segments_")
        # so are the value per token percentiles
        assert str(again._scoped["percentiles"][1].get_name()).rsplit(".", 1)[-1] == "_kept_value_percentiles"
        by_model: dict[str, Any] = {"by": "model", "normalise": True, "period": "2025-03"}
        assert same(
            again.value_per_token(**by_model).to_pylist(), fresh(ws).value_per_token(**by_model).to_pylist()
        )
        name = again._scoped["percentiles"][1].get_name()
        assert str(name).rsplit(".", 1)[-1].startswith("_value_percentiles_")


def test_a_write_to_an_input_makes_them_again(example_workspace: Path, tmp_path: Path) -> None:
    with Workspace.open(example_workspace) as ws:
        before = figures(ValueService(ws))
    # fr-wu-2 was rejected; a later acceptance and action change its score, the funnel and waste
    extra = tmp_path / "more" / "signals.jsonl"
    extra.parent.mkdir()
    extra.write_text(
        "\n".join(
            json.dumps({"signal_id": f"late-{i}", "work_unit_id": "fr-wu-2", "ts": ts, "kind": kind})
            for i, (ts, kind) in enumerate(
                [("2025-03-03T10:00:00Z", "accepted"), ("2025-03-03T10:05:00Z", "action_taken")]
            )
        )
        + "\n"
    )
    with Workspace.open(example_workspace) as ws:
        ws.ingest_paths([extra])
        after = ValueService(ws)
        now = figures(after)
        assert same(now, recomputed(ws))
        assert not same(now, before)  # the new evidence is in the figures, not the kept copy of old data
        assert source_of(after, "facts").startswith("_value_facts_")


def test_a_configuration_change_makes_them_again(example_workspace: Path) -> None:
    with Workspace.open(example_workspace) as ws:
        before = figures(ValueService(ws))
    config = example_workspace / "yieldmeter.yaml"
    # cara's time costs 500 USD an hour: a person's rate wins over her workflow's (metrics/spend.py),
    # and it lives in the configuration only (no table is written when it changes)
    text = config.read_text()
    assert "labour_rates:\n  default: 60\n" in text
    config.write_text(
        text.replace(
            "labour_rates:\n  default: 60\n", "labour_rates:\n  default: 60\n  people:\n    cara: 500\n"
        )
    )
    with Workspace.open(example_workspace) as ws:
        v = ValueService(ws)
        now = figures(v)
        assert same(now, recomputed(ws))
        assert not same(now["funnel"], before["funnel"])
        assert source_of(v, "facts").startswith("_value_facts_")


def test_a_write_without_rescoring_and_an_edit_around_yieldmeter_make_them_again(
    example_workspace: Path,
) -> None:
    """A signal written straight to the store (no re-score follows) changes the write record; a
    row deleted with the duckdb shell records no write, but the row counts are in the fingerprint."""
    import pyarrow as pa

    from yieldmeter.ingest.conform import conform

    with Workspace.open(example_workspace) as ws:
        before = figures(ValueService(ws))
        late = [
            {
                "signal_id": "late-1",
                "work_unit_id": "fr-wu-2",
                "ts": "2025-03-03T10:00:00Z",
                "kind": "accepted",
            }
        ]
        ws.store.write("signals", conform("signals", pa.Table.from_pylist(late), source="test").rows)
        v = ValueService(ws)
        now = figures(v)
        assert source_of(v, "facts").startswith("_value_facts_")
        assert same(now, recomputed(ws)) and not same(now["funnel"], before["funnel"])
        ws.store.con.execute("DELETE FROM signals WHERE signal_id = 'late-1'")  # around the Store
        v = ValueService(ws)
        assert same(figures(v), before)
        assert source_of(v, "facts").startswith("_value_facts_")


def test_other_code_makes_them_again(example_workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yieldmeter.app.value as value

    with Workspace.open(example_workspace) as ws:
        figures(ValueService(ws))
        assert source_of(ValueService(ws), "facts") == "_kept_value_facts"
        monkeypatch.setattr(value, "_code_fingerprint", lambda: "another version of the measures")
        assert source_of(ValueService(ws), "facts").startswith("_value_facts_")


def test_writes_that_are_not_inputs_keep_them(example_workspace: Path) -> None:
    from yieldmeter.server.auth import KeyStore

    with Workspace.open(example_workspace) as ws:
        made = figures(ValueService(ws))
        KeyStore(ws).create("kept-test", ["read"])  # an API key is no input of any measure
    with Workspace.open(example_workspace) as ws:
        v = ValueService(ws)
        assert same(figures(v), made)
        assert source_of(v, "facts") == "_kept_value_facts"
