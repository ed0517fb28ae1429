"""What the OTLP readers share besides the mapping: span values, resources, ids, the request's outcome.

:mod:`yieldmeter.ingest.otlp` maps spans with these; the JSON and protobuf
readers and the receiver use :class:`Resource`, :class:`UnreadableRequest`,
:func:`paused_gc` and :func:`rejected_spans` (re-exported there).
"""

from __future__ import annotations

import base64
import binascii
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from yieldmeter.errors import InputError
from yieldmeter.ingest.otlp_semconv import SUMMING_OPERATIONS, SpanError
from yieldmeter.schema import SUMMED_SCHEMA

if TYPE_CHECKING:
    from yieldmeter.ingest.base import Batch


def summing_calls(calls: pa.Table) -> pa.Array:
    """Whether each call is a summing call (:data:`SUMMING_OPERATIONS`): a remote agent's or a
    framework step's, whose usage may be the sum of calls under it."""
    ops = calls.column("operation").combine_chunks()
    return pc.fill_null(pc.is_in(ops, value_set=pa.array(SUMMING_OPERATIONS)), False)


def call_parents(*tables: pa.Table) -> pa.Array:
    """The call ids (``trace_id-parent_span_id``) of the spans above the rows of ``tables`` (calls,
    or summing spans kept as structure, :data:`SUMMED_SCHEMA`): a summing call whose id is here
    has a call under it. Rows without a parent add none."""
    ids = [
        chunk
        for t in tables
        for chunk in pc.binary_join_element_wise(t.column("trace_id"), t.column("parent_span_id"), "-").chunks
    ]
    return pc.drop_null(pa.chunked_array(ids, pa.string()).combine_chunks())


def sums_with_calls(calls: pa.Table, under: pa.Array | None = None) -> pa.Array:
    """Whether each call is a summing call with a call under it: among ``calls``, or named by
    ``under`` (the call ids above other calls, :func:`call_parents` of rows read elsewhere)."""
    above = call_parents(calls)
    if under is not None:
        above = pa.concat_arrays([above, under.cast(pa.string())])
    found = pc.is_in(calls.column("call_id").combine_chunks(), value_set=above)
    return pc.fill_null(pc.and_(summing_calls(calls), found), False)


def split_sums_with_calls(calls: pa.Table, under: pa.Array | None = None) -> tuple[pa.Table, pa.Table]:
    """``calls`` without the summing calls with a call under them (:func:`sums_with_calls`), and
    those: their usage is the calls' under them, so they are structure only. A chain of them
    (step > step > chat) goes whole, as each has a call under it."""
    drop = sums_with_calls(calls, under)
    if not pc.any(drop).as_py():
        return calls, calls.slice(0, 0)
    return calls.filter(pc.invert(drop)), calls.filter(drop)


def as_summed(calls: pa.Table) -> pa.Table:
    """What is kept of summing calls kept as structure: their place in their traces
    (:data:`SUMMED_SCHEMA`)."""
    return calls.select(SUMMED_SCHEMA.names).cast(SUMMED_SCHEMA)


#: 2100-01-01 in ns: a later time is a clock or unit error (and beyond int64 microseconds soon after)
MAX_TIME_NS = 4_102_444_800 * 10**9


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector paused while spans are decoded and mapped.

    Decoding allocates millions of short-lived containers (a dict per attribute
    value in OTLP JSON) that hold no cycles; the collector traversing them cost
    about a third of the import (measured at 100k spans). Reference counting
    still frees everything; the collector runs again as soon as the block ends.
    """
    if not gc.isenabled():  # someone else paused it: leave it to them
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Resource:
    """What a span inherits from its resource: service, environment and linkage defaults."""

    __slots__ = ("app", "environment", "fallback")

    def __init__(self, attrs: dict[str, Any]) -> None:
        self.app = _str(attrs.get("service.name"))
        self.environment = _str(
            attrs.get("deployment.environment.name") or attrs.get("deployment.environment")
        )
        # Linkage set once per process (OTEL_RESOURCE_ATTRIBUTES=yieldmeter.team=...).
        self.fallback = {
            k: _str(attrs[k])
            for k in ("yieldmeter.workflow", "yieldmeter.team", "yieldmeter.task_type")
            if attrs.get(k) is not None
        }


def _dumps(v: Any) -> str:
    """``v`` as JSON text, whatever a span carried: keys that are not strings (a malformed
    kvlist), integers beyond 64 bits and nesting deeper than JSON writers take are written
    as text instead of failing."""
    try:
        return orjson.dumps(v, default=str).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return orjson.dumps(_plain(v, 0), default=str).decode()


_INT64 = 2**63


def _plain(v: Any, depth: int) -> Any:
    if depth > 64:
        return _dumps_repr(v)
    if isinstance(v, dict):
        return {(k if type(k) is str else str(k)): _plain(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x, depth + 1) for x in v]
    if type(v) is int and not -_INT64 <= v < _INT64:
        return str(v)
    return v


def _dumps_repr(v: Any) -> str:
    return repr(v)[:200]


def _str(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, list | dict):
        return _dumps(v)
    return str(v)


def _time_ns(v: Any) -> int | None:
    """A span or event time in ns, or None when missing, unreadable or out of range."""
    try:
        t = int(v) if v not in (None, "") else 0
    except (TypeError, ValueError, OverflowError):
        return None
    return t if 0 < t <= MAX_TIME_NS else None


def make_rejects_first(first: pa.Table, rest: pa.Table) -> pa.Table:
    return pa.concat_tables([first, rest]) if rest.num_rows else first


_HEX = frozenset("0123456789abcdef")


def _hex_id(value: Any, size: int, name: str) -> str:
    """A lowercase hex id of ``size`` bytes; base64 (old JSON exporters) is converted."""
    if isinstance(value, str) and len(value) == size * 2:
        low = value.lower()
        if _HEX.issuperset(low) and low.strip("0"):
            return low
    if isinstance(value, str) and value:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == size and raw.strip(b"\0"):
            return raw.hex()
    raise SpanError(f"{name}: missing or not {size * 2} hex digits ({value!r})")


class UnreadableRequest(InputError):
    """A request body that is not an OTLP trace export; the message says why."""


def rejected_spans(batch: Batch) -> tuple[int, str]:
    """How many spans a batch rejected, and a message naming the first reasons (for partial_success).

    A span counts once whatever part of it was rejected: the span itself (``calls``), an
    evaluation or tool-call signal made from it (``signals``), or the work unit an agent
    span describes (``work_units``); every reject of a decoded request carries its span's
    position.
    """
    rej = batch.rejects
    if rej.num_rows == 0:
        return 0, ""
    positions = rej.column("position").to_pylist()
    spans = len({p for p in positions if p is not None}) + sum(p is None for p in positions)
    reasons = rej.column("reason").to_pylist()
    first = [
        f"{t}: {r}" if t != "calls" else str(r)
        for t, r in zip(rej.column("table_name").to_pylist(), reasons, strict=True)
    ][:3]
    more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
    return spans, "; ".join(first) + more
