"""The canonical store on a real DuckDB file: idempotence, quarantine, transactions, migrations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yieldmeter.app.workspace import Workspace
from yieldmeter.config import Config
from yieldmeter.ingest.base import Batch
from yieldmeter.ingest.conform import conform
from yieldmeter.schema import SCHEMA_VERSION
from yieldmeter.store.duckdb_store import Store

FAULTY_CSV = """\
call_id,ts,provider,model,input_tokens,output_tokens,cached_input_tokens,status,work_unit_id
ok-1,2025-03-01T10:00:00Z,openai,gpt-4o,100,10,0,ok,wu-1
ok-2,2025-03-01T10:01:00Z,openai,gpt-4o,100,10,0,ok,wu-1
,2025-03-01T10:02:00Z,openai,gpt-4o,100,10,0,ok,wu-1
bad-ts,yesterday-ish,openai,gpt-4o,100,10,0,ok,wu-1
neg,2025-03-01T10:03:00Z,openai,gpt-4o,-5,10,0,ok,wu-1
enum,2025-03-01T10:04:00Z,openai,gpt-4o,100,10,0,maybe,wu-1
cache,2025-03-01T10:05:00Z,openai,gpt-4o,100,10,101,ok,wu-1
half,2025-03-01T10:06:00Z,openai,gpt-4o,12.5,10,0,ok,wu-1
ok-1,2025-03-01T10:00:00Z,openai,gpt-4o,100,10,0,ok,wu-1
ok-3,2025-03-01T10:07:00Z,openai,gpt-4o,,,,,wu-2
"""


def test_every_row_is_landed_duplicate_or_quarantined(tmp_path: Path) -> None:
    src = tmp_path / "calls.csv"
    src.write_text(FAULTY_CSV)
    with Workspace.init(tmp_path / "ws") as ws:
        s = ws.ingest_paths([src]).files[0]
        # 10 data rows: ok-1, ok-2, ok-3 land; the second ok-1 is a duplicate; 6 are faulty
        assert (s.read, s.landed, s.duplicates, s.quarantined) == (10, 3, 1, 6)
        assert s.accounted
        reasons = {r["position"]: r["reason"] for r in ws.quarantine().to_pylist()}
        assert reasons == {
            3: "call_id: missing",
            4: "ts: cannot read as a timestamp",
            5: "input_tokens: negative",
            6: "status: not one of ok, error",
            7: "cached_input_tokens + cache_write_tokens: exceeds input_tokens",
            8: "input_tokens: cannot read as a whole number",
        }
        assert all(r["source"] == str(src) for r in ws.quarantine().to_pylist())
        # absent columns take their defaults: 0 tokens, 1 request, status ok
        row = ws.store.query_arrow("SELECT * FROM calls WHERE call_id = 'ok-3'").to_pylist()[0]
        assert (row["input_tokens"], row["output_tokens"], row["request_count"], row["status"]) == (
            0,
            0,
            1,
            "ok",
        )
        # the work units the calls reference were derived from them
        wu = ws.store.query_arrow("SELECT * FROM work_units ORDER BY work_unit_id").to_pylist()
        assert [(w["work_unit_id"], w["derived"]) for w in wu] == [("wu-1", True), ("wu-2", True)]

        before = ws.store.counts()
        again = ws.ingest_paths([src]).files[0]
        assert (again.landed, again.duplicates, again.quarantined) == (0, 4, 6)
        assert ws.store.counts() == before  # nothing changed, quarantine included


def test_a_bad_row_is_one_quarantine_row_and_another_at_the_same_place_is_another(tmp_path: Path) -> None:
    """Two requests each with a bad span 0 (same source, position and reason, other content) are
    two quarantine rows; the same bad row sent again is still one."""

    def rejects(raw: str) -> pa.Table:
        bad = conform("calls", pa.table({"call_id": ["c"], "ts": [raw]}), source="otlp")
        assert bad.rejects.num_rows == 1
        return bad.rejects

    with Workspace.init(tmp_path) as ws:
        empty = pa.table({"call_id": pa.array([], pa.string())})
        for raw in ("not a time", "not a time either", "not a time"):
            ws.store.write("calls", conform("calls", empty, source="otlp").rows, rejects(raw))
        rows = ws.quarantine().to_pylist()
        assert sorted(json.loads(r["raw"])["ts"] for r in rows) == ["not a time", "not a time either"]


def test_changed_row_replaces_and_described_unit_wins(tmp_path: Path) -> None:
    with Workspace.init(tmp_path) as ws:
        calls = pa.table(
            {"call_id": ["a"], "ts": ["2025-03-01T00:00:00Z"], "work_unit_id": ["u"], "team": ["x"]}
        )
        ws.ingest_batches([_batch("calls", calls)], source="t")
        ws.ingest_batches([_batch("calls", calls.set_column(3, "team", pa.array(["y"])))], source="t")
        assert ws.store.query_arrow("SELECT team FROM calls").to_pylist() == [{"team": "y"}]
        unit = pa.table({"work_unit_id": ["u"], "workflow": ["claims"], "owner": ["o"]})
        r = ws.ingest_batches([_batch("work_units", unit)], source="t")
        assert r.updated == 1
        rows = ws.store.query_arrow("SELECT workflow, derived FROM work_units").to_pylist()
        assert rows == [{"workflow": "claims", "derived": False}]


def _batch(table: str, data: pa.Table):  # type: ignore[no-untyped-def]
    from yieldmeter.ingest.base import Batch

    return Batch.of(table, conform(table, data, source="t"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "", None]), st.integers(-3, 5), st.sampled_from(["ok", "x"])
        ),
        max_size=25,
    )
)
def test_accounting_invariant_holds_for_any_batch(rows: list[tuple[str | None, int, str]]) -> None:
    store = Store.open(None)
    data = pa.table(
        {
            "call_id": [r[0] for r in rows],
            "ts": ["2025-01-01T00:00:00Z"] * len(rows),
            "input_tokens": [r[1] for r in rows],
            "status": [r[2] for r in rows],
        },
        schema=pa.schema(
            [
                ("call_id", pa.string()),
                ("ts", pa.string()),
                ("input_tokens", pa.int64()),
                ("status", pa.string()),
            ]
        ),
    )
    for _ in range(2):  # and again: the second time everything good is a duplicate
        c = conform("calls", data, source="prop")
        r = store.write("calls", c.rows, c.rejects)
        assert r.read == len(rows)
        assert r.landed + r.duplicates + r.quarantined == len(rows)
    assert store.count("calls") == len({r[0] for r in rows if r[0] and r[1] >= 0 and r[2] == "ok"})


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "call_id": st.text(min_size=1, max_size=3),
                "ts": st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
                "duration_ms": st.floats(allow_nan=True, allow_infinity=True),
                "reported_cost": st.floats(allow_nan=True, allow_infinity=True),
                "input_tokens": st.integers(-(2**63), 2**63 - 1),
                "work_unit_id": st.sampled_from(["u1", "u2"]),
            }
        ),
        min_size=1,
        max_size=8,
    )
)
def test_extreme_values_are_quarantined_not_a_failed_write(rows: list[dict[str, object]]) -> None:
    """Any value the API's JSON can carry either lands or is quarantined with its reason; the write
    (work-unit derivation included, which adds duration to ts) never fails on it. Found by
    schemathesis: a 3.4e38 ms duration once overflowed the derivation's BIGINT cast."""
    ws = Workspace(Path("."), config=Config(), store=Store.open(None))
    data = pa.Table.from_pylist(rows)
    r = ws.ingest_batches([_batch("calls", data)], source="prop")
    assert r.landed + r.duplicates + r.quarantined == len(rows)


def test_implausible_duration_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    calls = pa.table(
        {
            "call_id": ["ok", "huge"],
            "ts": ["2025-03-01T00:00:00Z"] * 2,
            "duration_ms": [1200.0, 3.4e38],
            "work_unit_id": ["u", "u"],
        }
    )
    with Workspace.init(tmp_path) as ws:
        s = ws.ingest_batches([_batch("calls", calls)], source="t")
        assert (s.landed, s.quarantined) == (1, 1)
        assert ws.quarantine().column("reason").to_pylist() == ["duration_ms: over 2.592e+09"]


def test_implausible_token_count_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    """Two rows of 2**62 tokens on one work unit would overflow a 64-bit sum in scoring: a row over
    a quadrillion tokens is quarantined, the rest lands and scores."""
    calls = pa.table(
        {
            "call_id": ["ok", "huge", "huge-too"],
            "ts": ["2025-03-01T00:00:00Z"] * 3,
            "input_tokens": pa.array([1200, 2**62, 2**62], pa.int64()),
            "work_unit_id": ["u", "u", "u"],
        }
    )
    with Workspace.init(tmp_path) as ws:
        s = ws.ingest_batches([_batch("calls", calls)], source="t")
        assert (s.landed, s.quarantined) == (1, 2)
        assert ws.quarantine().column("reason").to_pylist() == ["input_tokens: over 1e+15"] * 2


def test_implausible_times_kinds_and_orders_are_quarantined_with_their_reason() -> None:
    """Rows a REST client or a hand-made file can send that no real usage has: each is refused
    with the first rule it breaks, and the good row of each table lands."""

    def signals(*ts: object) -> pa.Table:
        n = len(ts)
        return pa.table({"signal_id": [f"s{i}" for i in range(n)], "work_unit_id": ["u"] * n,
                         "kind": ["rated"] * n, "ts": list(ts)})  # fmt: skip

    out = "ts: not between 1990-01-01 and 2100-01-01 (a unit or clock error?)"
    c = conform(
        "signals", signals("2025-03-05T10:00:00Z", "0001-01-01T00:00Z", "9999-12-31T00:00Z"), source="t"
    )
    assert c.rows.column("signal_id").to_pylist() == ["s0"]
    assert c.rejects.column("reason").to_pylist() == [out] * 2
    c = conform("signals", signals(1741168800, 12345), source="t")  # 2025-03-05 10:00; 1970-01-01 03:25
    assert c.rows.column("signal_id").to_pylist() == ["s0"]
    assert c.rejects.column("reason").to_pylist() == [out]
    assert conform("signals", signals(True), source="t").rejects.column("reason").to_pylist() == [
        "ts: cannot read as a timestamp"  # true is not epoch second 1
    ]
    scored = signals("2025-03-05T10:00:00Z").append_column("value", pa.array([True]))
    assert conform("signals", scored, source="t").rows.column("value").to_pylist() == [1.0]  # a score
    calls = pa.table(
        {
            "call_id": ["ok", "bool", "object"],
            "ts": ["2025-03-05T10:00:00Z"] * 3,
            "input_tokens": pa.array([10, None, 10], pa.int64()),
            "output_tokens": pa.array([None, True, None], pa.bool_()),
            "model": pa.array([None, None, {"x": 1}], pa.struct([("x", pa.int64())])),
            "attributes": pa.array([{"x": 1}, None, None], pa.struct([("x", pa.int64())])),
        }
    )
    c = conform("calls", calls, source="t")
    assert c.rejects.column("reason").to_pylist() == [
        "output_tokens: cannot read as a whole number",  # a bool is not a count
        "model: cannot read as text",  # an object is not a name
    ]
    assert c.rows.column("attributes").to_pylist() == ['{"x": 1}']  # there an object is JSON text

    effort = pa.Table.from_pylist(
        [
            {"effort_id": "ok", "work_unit_id": "u", "ts": "2025-03-05", "minutes": 90.0},
            {"effort_id": "huge", "work_unit_id": "u", "ts": "2025-03-05", "minutes": 1e300},
        ]
    )
    assert conform("effort", effort, source="t").rejects.column("reason").to_pylist() == [
        "minutes: over 525600"  # a year of minutes
    ]
    outcomes = pa.Table.from_pylist(
        [
            {"outcome_id": "ok", "period_start": "2025-03-01", "period_end": "2025-04-01"},
            {"outcome_id": "back", "period_start": "2025-04-01", "period_end": "2025-03-01"},
        ]
    )
    c = conform("outcomes", outcomes, source="t")
    assert c.rejects.column("reason").to_pylist() == ["period_end: before period_start"]


def test_a_store_another_process_holds_is_named_with_what_to_do(tmp_path: Path) -> None:
    from yieldmeter.store.duckdb_store import StoreInUse

    db = tmp_path / "held.duckdb"
    Store.open(db).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(db)!r}); print('held', flush=True)"
            "; sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreInUse) as err:
            Store.open(db)
        assert str(db) in str(err.value) and f"PID {holder.pid}" in str(err.value)
        assert "yieldmeter serve" in str(err.value)
    finally:
        holder.communicate("", timeout=30)


def test_a_killed_ingest_leaves_all_or_nothing(tmp_path: Path) -> None:
    """A process killed inside a write transaction leaves no part of that batch."""
    db = tmp_path / "store.duckdb"
    script = textwrap.dedent(
        f"""
        import os, signal
        import pyarrow as pa
        from yieldmeter.store.duckdb_store import Store
        from yieldmeter.ingest.conform import conform
        s = Store.open({str(db)!r})
        def batch(prefix, n):
            t = pa.table({{"call_id": [f"{{prefix}}{{i}}" for i in range(n)],
                          "ts": ["2025-01-01T00:00:00Z"] * n}})
            return conform("calls", t, source="kill").rows
        s.write("calls", batch("first-", 1000))          # acknowledged: must survive
        with s.transaction() as con:                      # killed half-way: must vanish
            con.register("_b", batch("second-", 5000))
            con.execute("INSERT INTO calls SELECT * FROM _b")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    con = duckdb.connect(str(db))
    ids = [r[0] for r in con.execute("SELECT call_id FROM calls").fetchall()]
    assert len(ids) == 1000 and all(i.startswith("first-") for i in ids)


def _calls(ids: list[str], tokens: list[int], units: list[str], minutes: list[int]) -> pa.Table:
    ts = [f"2025-03-01T10:{m:02d}:00Z" for m in minutes]
    data = pa.table({"call_id": ids, "ts": ts, "input_tokens": tokens, "work_unit_id": units})
    return conform("calls", data, source="t").rows


def test_one_batch_mixes_new_identical_changed_and_repeated_ids(tmp_path: Path) -> None:
    """The upsert's accounting, by hand, and the derived units committed with the batch.

    First batch: a, b (unit u) and c (unit v), all new. Second batch: b identical,
    c changed (3 -> 30 tokens), d new (unit w) and d again with 40 tokens (the last d wins, as
    it would from a later batch: the first d landed and was replaced), a not sent:
    read 4 = landed 3 (c updated, both d) + duplicates 1 (b); updated 2 (c, the first d).
    A third batch, b and b again unchanged, from another file: both duplicates.
    """
    store = Store.open(tmp_path / "store.duckdb")
    first = _calls(["a", "b", "c"], [1, 2, 3], ["u", "u", "v"], [0, 5, 9])
    r = store.write_batch({"calls": first}, derive_units=True)["calls"]
    assert (r.read, r.landed, r.updated, r.duplicates) == (3, 3, 0, 0)

    second = _calls(["b", "c", "d", "d"], [2, 30, 4, 40], ["u", "v", "w", "w"], [5, 9, 20, 21])
    r = store.write_batch({"calls": second}, derive_units=True)["calls"]
    assert (r.read, r.landed, r.updated, r.duplicates) == (4, 3, 2, 1)
    tokens = dict(store.con.execute("SELECT call_id, input_tokens FROM calls").fetchall())
    assert tokens == {"a": 1, "b": 2, "c": 30, "d": 40}
    r = store.write_batch({"calls": second}, derive_units=True)["calls"]
    assert (r.read, r.landed, r.updated, r.duplicates) == (4, 0, 0, 4)  # sent again: nothing changes
    # d as stored (40), then 50: the first d changes nothing (a duplicate), the second replaces it
    third = _calls(["d", "d"], [40, 50], ["w", "w"], [21, 21])
    r = store.write_batch({"calls": third}, derive_units=True)["calls"]
    assert (r.read, r.landed, r.updated, r.duplicates) == (2, 1, 1, 1)
    again = _calls(["b", "b"], [2, 2], ["u", "u"], [5, 5])
    again = again.set_column(again.schema.get_field_index("source"), "source", pa.array(["copy.csv"] * 2))
    r = store.write_batch({"calls": again}, derive_units=True)["calls"]
    assert (r.read, r.landed, r.updated, r.duplicates) == (2, 0, 0, 2)
    # the stored row as it was (these rows carry no source of their own): not rewritten
    assert store.con.execute("SELECT source FROM calls WHERE call_id = 'b'").fetchall() == [(None,)]

    # derived in the write's own transaction: u spans a (10:00) to b (10:05), w is d alone
    units = store.query_arrow(
        "SELECT work_unit_id, derived, strftime(started_at, '%H:%M') AS s, strftime(ended_at, '%H:%M') AS e "
        "FROM work_units ORDER BY work_unit_id"
    ).to_pylist()
    assert [(u["work_unit_id"], u["derived"], u["s"], u["e"]) for u in units] == [
        ("u", True, "10:00", "10:05"),
        ("v", True, "10:09", "10:09"),
        ("w", True, "10:21", "10:21"),
    ]
    store.close()


def test_a_failed_derivation_rolls_back_the_whole_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls and the work units derived from them commit together or not at all."""
    store = Store.open(tmp_path / "store.duckdb")

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("derivation failed")

    monkeypatch.setattr(store, "_derive_work_units", fail)
    with pytest.raises(RuntimeError, match="derivation failed"):
        store.write_batch({"calls": _calls(["a"], [1], ["u"], [0])}, derive_units=True)
    assert store.count("calls") == 0 and store.count("work_units") == 0
    store.close()


_UNIT_COLUMNS = (
    "work_unit_id, parent_id, workflow, task_type, user_id, team, started_at, ended_at, status, derived, org"
)


def _units(store: Store) -> list[tuple]:
    return store.con.execute(f"SELECT {_UNIT_COLUMNS} FROM work_units ORDER BY work_unit_id").fetchall()


_BATCH_CALLS = st.lists(
    st.tuples(
        st.integers(0, 11),  # the call: its unit is fixed by it (a call never moves to another unit)
        st.integers(0, 59),  # the minute: re-sent calls may move, later batches may be earlier
        st.sampled_from(["triage", "draft", None]),
        st.sampled_from(["ok", "error"]),
        st.sampled_from(["ann", "bob"]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(_BATCH_CALLS, min_size=1, max_size=5),
    described_at=st.integers(0, 5),
    underived_at=st.integers(0, 5),
)
def test_units_derived_batch_by_batch_are_those_derived_from_every_call(
    batches: list[list[tuple]], described_at: int, underived_at: int
) -> None:
    """A batch's derivation reads only the calls from its earliest time, or its units' stored
    start, on (DuckDB then skips older row groups). Whatever the batches, the units it leaves
    are those a derivation from every call makes (``derive_work_units()``): for units that
    span batches, a later batch with earlier calls, calls re-sent at another time, a unit an
    input described (before its batch ``described_at``), and calls written without deriving
    their units (before the batch ``underived_at``: from then on every call is read)."""
    store = Store.open(None)
    for n, batch in enumerate(batches):
        if n == described_at:
            described = conform("work_units", pa.table({"work_unit_id": ["u1"]}), source="t")
            store.write("work_units", described.rows)
        if n == underived_at:
            store.write("calls", _calls(["early"], [1], ["u2"], [0]))
        data = pa.table(
            {
                "call_id": [f"c{c}" for c, *_ in batch],
                "ts": [f"2025-03-01T10:{m:02d}:00Z" for _, m, *_ in batch],
                "work_unit_id": [f"u{c % 4}" for c, *_ in batch],
                "workflow": [w for *_, w, _, _ in batch],
                "status": [s for *_, s, _ in batch],
                "user_id": [u for *_, u in batch],
            }
        )
        store.write_batch({"calls": conform("calls", data, source="t").rows}, derive_units=True)
    # the early call's unit is derived with it once a later batch brings it more calls
    later = {f"u{c % 4}" for batch in batches[underived_at:] for c, *_ in batch}
    unseen = {"u2"} if underived_at < len(batches) and "u2" not in later else set()
    by_batches = [u for u in _units(store) if u[0] not in unseen]
    store.derive_work_units()  # every derived unit again, from all its calls
    assert by_batches == [u for u in _units(store) if u[0] not in unseen]
    store.close()


def test_a_batch_reads_calls_from_its_units_start_unless_calls_went_underived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The time a batch's derivation reads calls from: the earlier of the batch's first call
    (10:20) and the stored start of a unit it extends (u, derived from 10:05); none while
    calls were written without deriving their units, until a whole derivation."""
    store = Store.open(tmp_path / "store.duckdb")
    seen: list[object] = []
    derive = store._derive_work_units

    def spy(con: object, units: object, **kwargs: object) -> None:
        seen.append(kwargs.get("since"))
        derive(con, units, **kwargs)

    monkeypatch.setattr(store, "_derive_work_units", spy)
    store.write_batch({"calls": _calls(["a"], [1], ["u"], [5])}, derive_units=True)
    store.write_batch({"calls": _calls(["b", "c"], [1, 1], ["u", "v"], [30, 20])}, derive_units=True)
    assert [t.strftime("%H:%M") for t in seen] == ["10:05", "10:05"]
    store.write("calls", _calls(["d"], [1], ["w"], [0]))  # no units derived: w has a call, no row
    store.write_batch({"calls": _calls(["e"], [1], ["w"], [40])}, derive_units=True)
    assert seen[-1] is None
    assert store.con.execute(
        "SELECT strftime(started_at, '%H:%M') FROM work_units WHERE work_unit_id = 'w'"
    ).fetchone() == ("10:00",)
    store.derive_work_units()
    store.write_batch({"calls": _calls(["f"], [1], ["w"], [50])}, derive_units=True)
    assert seen[-1].strftime("%H:%M") == "10:00"
    store.close()


def test_extending_a_derived_unit_needs_no_pytz() -> None:
    """A batch that extends a derived unit reads the unit's stored start as Arrow: DuckDB turns a
    TIMESTAMPTZ into Python datetimes only with pytz, which is not among yieldmeter's dependencies
    (pandas 2 brings it, pandas 3 does not). Run where pytz cannot be imported: u starts at
    10:05, then a call at 10:01 extends it."""
    script = textwrap.dedent(
        """
        import sys
        import pyarrow as pa
        from yieldmeter.ingest.conform import conform
        from yieldmeter.store.duckdb_store import Store
        sys.modules["pytz"] = None  # what is imported now must do without it
        def calls(ids, minutes):
            ts = [f"2025-03-01T10:{m:02d}:00Z" for m in minutes]
            return conform("calls", pa.table({"call_id": ids, "ts": ts, "work_unit_id": ["u"] * len(ids)}),
                           source="t").rows
        s = Store.open(None)
        s.write_batch({"calls": calls(["a"], [5])}, derive_units=True)
        s.write_batch({"calls": calls(["b"], [1])}, derive_units=True)
        print(s.con.execute("SELECT strftime(started_at, '%H:%M') FROM work_units").fetchall())
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[('10:01',)]"


def _around_append_calls(store: Store) -> None:
    store.append("calls", _calls(["early"], [1], ["u"], [0]))


def _around_replace_calls(store: Store) -> None:
    stored = store.read_table("calls")
    store.replace("calls", pa.concat_tables([stored, _calls(["early"], [1], ["u"], [0])]))


def _around_replace_work_units(store: Store) -> None:  # the described row of v goes
    store.replace("work_units", store.read_table("work_units").filter(pc.field("work_unit_id") != "v"))


def _around_derived_input(store: Store) -> None:  # an exported derived row, started later
    row = conform("work_units", pa.table({"work_unit_id": ["u"], "derived": [True]}), source="t").rows
    row = row.set_column(
        row.schema.get_field_index("started_at"), "started_at", _calls(["x"], [0], ["u"], [30]).column("ts")
    )
    store.write("work_units", row)


@pytest.mark.parametrize(
    "around", [_around_append_calls, _around_replace_calls, _around_replace_work_units, _around_derived_input]
)
def test_writes_around_derivation_make_the_next_batch_read_every_call(
    around: Callable[[Store], None],
) -> None:
    """Calls or work units written other than by a deriving batch (appended, replaced, a
    described unit taken away, an input row that says it was derived) leave the units unsure:
    the next batch then reads every call of its units, so its rows are those a whole
    derivation makes, and ``derive_if_unsure`` makes them all once and reads from the units'
    start again."""
    store = Store.open(None)
    described = conform("work_units", pa.table({"work_unit_id": ["v"], "workflow": ["kept"]}), source="t")
    store.write("work_units", described.rows)
    store.write_batch({"calls": _calls(["a", "b"], [1, 1], ["u", "v"], [10, 10])}, derive_units=True)
    around(store)
    store.write_batch({"calls": _calls(["c", "d"], [1, 1], ["u", "v"], [40, 40])}, derive_units=True)
    by_batches = _units(store)
    assert store.derive_if_unsure() and not store.derive_if_unsure()
    assert by_batches == _units(store)
    store.close()


def test_a_store_an_older_version_wrote_reads_every_call_until_derived_whole(tmp_path: Path) -> None:
    """Migration 4: calls an older version stored may have no derived unit (it wrote some
    without deriving them), so a store that holds calls is unsure: a batch reads every call
    of its units, and the ingest's follow-up derives every unit once, after which batches
    read from their units' start again."""
    ws = Workspace.open(tmp_path, create=True)
    ws.store.write_batch({"calls": _calls(["a"], [1], ["u"], [0])}, derive_units=True)
    ws.store.con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    ws.store.con.execute("DELETE FROM work_units")  # as an older version could leave it
    ws.close()
    ws = Workspace.open(tmp_path)
    assert ws.store._underived()
    ws.ingest_batches([Batch(tables={"calls": _calls(["b"], [1], ["u"], [30])})], source="t")
    start = ws.store.con.execute("SELECT strftime(started_at, '%H:%M') FROM work_units").fetchall()
    assert start == [("10:00",)]  # a's time: every call of u was read
    assert not ws.store._underived()  # derived whole after the ingest
    ws.close()


class _Statements:
    """The store's connection, recording each statement it runs."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.sql: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)

    def execute(self, sql: str, *args: object) -> duckdb.DuckDBPyConnection:
        self.sql.append(sql)
        return self._con.execute(sql, *args)


def test_fresh_ids_skip_the_id_column_and_a_resend_reads_it(tmp_path: Path) -> None:
    """Ids whose hash the store has not seen are new without reading the stored id column
    (the semi join); a re-send, whose hashes it has, is looked up there and counted."""
    store = Store.open(tmp_path / "store.duckdb")
    spy = store.con = _Statements(store.con)
    store.write_batch({"calls": _calls(["a", "b"], [1, 2], ["u", "u"], [0, 1])}, derive_units=True)
    spy.sql.clear()
    r = store.write_batch({"calls": _calls(["c", "d"], [3, 4], ["v", "v"], [2, 3])}, derive_units=True)
    assert r["calls"].landed == 2 and not any("SEMI JOIN" in q for q in spy.sql)
    r = store.write_batch({"calls": _calls(["d", "e"], [4, 5], ["v", "v"], [3, 4])}, derive_units=True)
    assert (r["calls"].landed, r["calls"].duplicates) == (1, 1) and any("SEMI JOIN" in q for q in spy.sql)
    store.close()


def test_id_hashes_hold_every_hash_added_across_merges() -> None:
    """The hashes gather in a small sorted array merged into the large one once it outgrows an
    eighth of it (and 65,536): every hash added, before or after a merge, is found, and one
    never added is not. 200,000 stored, then 100 writes of 1,000: the 66th takes the small
    array to 66,000 (past 65,536, itself past 200,000 / 8), merged into 266,000; the last 34
    stay small (34,000 is under both 65,536 and 266,000 / 8)."""
    import numpy as np

    from yieldmeter.store.duckdb_store import _KeyHashes

    rng = np.random.default_rng(7)
    every = rng.integers(0, np.iinfo(np.uint64).max, size=400_000, dtype=np.uint64, endpoint=True)
    assert len(np.unique(every)) == len(every)
    stored, later, never = every[:200_000], every[200_000:300_000], every[300_000:]
    keys = _KeyHashes(stored, token=None)
    merged_at = []
    for part in np.split(later, 100):
        base = len(keys.base)
        keys.add(part)
        if len(keys.base) != base:
            merged_at.append(len(keys.base))
    assert merged_at == [266_000] and len(keys.recent) == 34_000
    assert keys.may_hold(stored).all() and keys.may_hold(later).all()
    assert not keys.may_hold(never).any()
    assert not _KeyHashes(np.zeros(0, np.uint64), None).may_hold(never[:5]).any()


def test_ids_written_around_the_hashes_are_still_found(tmp_path: Path) -> None:
    """The hashes of stored ids are kept only while every write to calls went through them:
    rows appended by another path, or by another store object on the same file, are found
    as stored (a duplicate, never a second row with the id), and ids of a write that rolled
    back land when sent again."""
    path = tmp_path / "store.duckdb"
    store = Store.open(path)
    assert store.write("calls", _calls(["a"], [1], ["u"], [0])).landed == 1  # the hashes are made
    store.append("calls", _calls(["b"], [2], ["u"], [1]))
    assert store.write("calls", _calls(["b"], [2], ["u"], [1])).duplicates == 1
    other = Store(duckdb.connect(str(path)), path)  # a second object on the same file
    assert other.write("calls", _calls(["c"], [3], ["u"], [2])).landed == 1
    assert store.write("calls", _calls(["c"], [3], ["u"], [2])).duplicates == 1
    other.con.close()

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("derivation failed")

    derive = store._derive_batch_units
    store._derive_batch_units = fail  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):  # rolled back after its ids were hashed
        store.write_batch({"calls": _calls(["d"], [4], ["u"], [3])}, derive_units=True)
    store._derive_batch_units = derive  # type: ignore[method-assign]
    assert store.write("calls", _calls(["d"], [4], ["u"], [3])).landed == 1
    ids = [r[0] for r in store.con.execute("SELECT call_id FROM calls ORDER BY call_id").fetchall()]
    assert ids == ["a", "b", "c", "d"]
    store.close()


def test_migration_adds_missing_columns_and_records_version(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    # a store written by an older yieldmeter: calls without the later columns
    con.execute("CREATE TABLE calls (call_id VARCHAR, ts TIMESTAMPTZ, model VARCHAR)")
    con.execute("INSERT INTO calls VALUES ('old', '2025-01-01 00:00:00+00', 'gpt-4o')")
    con.close()
    store = Store.open(db)
    row = store.query_arrow("SELECT * FROM calls").to_pylist()[0]
    assert row["call_id"] == "old" and row["request_count"] == 1 and row["input_tokens"] == 0
    assert store.meta("schema_version") == str(SCHEMA_VERSION)


def test_migration_3_names_stored_focus_items_by_their_charge(tmp_path: Path) -> None:
    """A store written before schema 3 holds FOCUS items under ids that hashed the whole billing
    row. Opening it gives each the id a fresh import gives (its charge's), so importing the same
    file again lands nothing; other cost items keep theirs."""
    fixtures = Path(__file__).parent / "fixtures" / "focus"
    files = sorted(fixtures.glob("*.csv"))
    with Workspace.init(tmp_path / "fresh") as ws:
        ws.ingest_paths(files)
        fresh = ws.store.query_arrow("SELECT item_id, amount FROM cost_items ORDER BY item_id").to_pylist()
    with Workspace.init(tmp_path / "old") as ws:
        ws.ingest_paths(files)
        platform = pa.table({"item_id": ["platform-1"], "period_start": ["2025-05-01"],
                             "period_end": ["2025-06-01"], "amount": [10.0]})  # fmt: skip
        ws.store.write("cost_items", conform("cost_items", platform, source="t").rows)
        con = ws.store.con
        con.execute("UPDATE cost_items SET item_id = 'old-' || md5(item_id) WHERE item_id <> 'platform-1'")
        con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        root, db = ws.root, ws.store.path
    assert len(fresh) == 208  # 200 rows of the FOCUS 1.0 sample and 8 of the AI samples
    store = Store.open(db)
    try:
        migrated = store.query_arrow("SELECT item_id, amount FROM cost_items ORDER BY item_id").to_pylist()
        assert store.meta("schema_version") == str(SCHEMA_VERSION)
    finally:
        store.close()
    assert sorted(migrated, key=lambda r: r["item_id"]) == sorted(
        [*fresh, {"item_id": "platform-1", "amount": 10.0}], key=lambda r: r["item_id"]
    )
    with Workspace.open(root) as ws:
        again = ws.ingest_paths(files)
        assert (again.total("landed"), again.total("duplicates")) == (0, 208)


def test_jsonl_and_parquet_inputs(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    lines = [
        {"signal_id": "s1", "work_unit_id": "u", "ts": "2025-03-01T00:00:00Z", "kind": "accepted"},
        "this is not json",
        {"signal_id": "s2", "work_unit_id": "u", "ts": "2025-03-01T00:00:00Z", "kind": "made_up_kind"},
        [1, 2],
    ]
    (tmp_path / "signals.jsonl").write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    )
    pq.write_table(
        pa.table(
            {"effort_id": ["e1"], "work_unit_id": ["u"], "ts": ["2025-03-01T00:00:00Z"], "minutes": [4.5]}
        ),
        tmp_path / "effort.parquet",
    )
    with Workspace.init(tmp_path / "ws") as ws:
        s = ws.ingest_paths([tmp_path / "signals.jsonl", tmp_path / "effort.parquet"])
        sig, eff = s.files
        assert (sig.read, sig.landed, sig.quarantined) == (4, 2, 2)
        # unknown signal kinds are kept, never dropped
        assert ws.store.query_arrow("SELECT kind FROM signals ORDER BY kind").column("kind").to_pylist() == [
            "accepted",
            "made_up_kind",
        ]
        assert {r["position"] for r in ws.quarantine().to_pylist()} == {2, 4}
        assert (eff.read, eff.landed) == (1, 1)


def test_open_without_workspace_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="yieldmeter init"):
        Workspace.open(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="uses a POSIX signal")
def test_store_is_reopened_after_crash(tmp_path: Path) -> None:
    """After a kill the file opens cleanly and takes new writes."""
    test_a_killed_ingest_leaves_all_or_nothing(tmp_path)
    store = Store.open(tmp_path / "store.duckdb")
    c = conform("calls", pa.table({"call_id": ["new"], "ts": ["2025-01-02T00:00:00Z"]}), source="t")
    assert store.write("calls", c.rows).landed == 1


def test_keep_copy_records_its_stamp_and_skips_when_busy_or_stale(tmp_path: Path) -> None:
    """A kept copy replaces the table with the temporary one and records its stamp; a copy is
    skipped (nothing written, the old copy and stamp stay) while another write holds the store and
    when the data changed since it was computed (``current()`` false inside the transaction)."""
    import threading

    store = Store.open(tmp_path / "s.duckdb")
    store.con.execute("CREATE TEMP TABLE made AS SELECT * FROM range(3) t(x)")
    assert store.kept_stamp("_kept_x") is None
    assert store.keep_copy("_kept_x", "made", "v1", current=lambda: True)
    assert store.kept_stamp("_kept_x") == "v1"
    assert store.con.execute('SELECT count(*) FROM main."_kept_x"').fetchone() == (3,)

    store.con.execute("CREATE OR REPLACE TEMP TABLE made AS SELECT * FROM range(5) t(x)")
    assert not store.keep_copy("_kept_x", "made", "v2", current=lambda: False)  # stale: skipped
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.transaction():
            held.set()
            release.wait(10)

    other = threading.Thread(target=hold)
    other.start()
    held.wait(10)
    try:
        assert not store.keep_copy("_kept_x", "made", "v2", current=lambda: True)  # busy: skipped
    finally:
        release.set()
        other.join()
    assert store.kept_stamp("_kept_x") == "v1"
    assert store.con.execute('SELECT count(*) FROM main."_kept_x"').fetchone() == (3,)
    assert store.keep_copy("_kept_x", "made", "v2", current=lambda: True)
    assert store.kept_stamp("_kept_x") == "v2"
    assert store.con.execute('SELECT count(*) FROM main."_kept_x"').fetchone() == (5,)


def test_a_long_query_draws_nothing_on_the_terminal(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """DuckDB draws a progress bar on standard output (the process's file descriptor, past
    Python) for a query that runs longer than ``progress_bar_time``; the store's connection
    turns it off, so a re-score of a large store draws nothing inside a server's log or the
    CLI's own output. Here the bar's delay is 0 ms (which also turns the bar on), so without the
    store's setting this query draws it (checked by removing the setting)."""
    store = Store.open(tmp_path / "s.duckdb")
    store.con.execute("SET progress_bar_time = 0")
    store.con.execute("SELECT count(*) FROM range(100000000) t(i) WHERE i % 7 = 3").fetchall()
    store.close()
    out, err = capfd.readouterr()
    assert "%" not in out and "%" not in err


def test_the_store_s_tables_are_bound_once_per_schema(tmp_path: Path) -> None:
    """``Workspace.tables()`` reuses the tables it bound while the store's schema is the same,
    a table dropped and made again with the same columns included (a kept copy), and binds them
    again when a column or a table comes or goes: a query never reads a stale schema."""
    with Workspace.init(tmp_path) as ws:
        first = ws.tables()
        assert ws.tables() is first
        con = ws.store.con
        con.execute("CREATE TABLE unit_values AS SELECT 'u1' AS work_unit_id, 2.5 AS unit_value")
        bound = ws.tables()
        assert bound is not first and bound.unit_values is not None
        con.execute("DROP TABLE unit_values")
        con.execute("CREATE TABLE unit_values AS SELECT 'u2' AS work_unit_id, 4.0 AS unit_value")
        assert ws.tables() is bound  # the same columns: the bound table reads the new rows
        assert ws.tables().unit_values.to_pyarrow().to_pylist() == [{"work_unit_id": "u2", "unit_value": 4.0}]
        con.execute("ALTER TABLE calls ADD COLUMN extra_note VARCHAR")
        again = ws.tables()
        assert again is not bound and "extra_note" in again.calls.columns
