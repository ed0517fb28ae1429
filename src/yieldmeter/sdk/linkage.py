"""Work-unit linkage on the OpenTelemetry context.

``work_unit(...)`` puts ``yieldmeter.work_unit.id``, ``yieldmeter.workflow``,
``yieldmeter.task_type`` and ``yieldmeter.team`` into the W3C baggage of the
current context. :class:`WorkUnitSpanProcessor` copies them onto every span
that starts inside, so the spans of any GenAI instrumentation (openai-v2,
OpenLLMetry, OpenLIT...) reach yieldmeter already linked. Baggage also
crosses service boundaries where the baggage propagator is on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

LINKAGE_KEYS = ("yieldmeter.work_unit.id", "yieldmeter.workflow", "yieldmeter.task_type", "yieldmeter.team")


@dataclass(frozen=True)
class WorkUnit:
    """The unit of work the block runs for; pass ``id`` to ``record_signal`` and friends."""

    id: str
    workflow: str | None = None
    task_type: str | None = None
    team: str | None = None


@contextmanager
def work_unit(
    workflow: str | None = None,
    *,
    id: str | None = None,
    task_type: str | None = None,
    team: str | None = None,
) -> Iterator[WorkUnit]:
    """Run the block as one work unit of ``workflow``; a fresh id is made when none is given.

    Nested blocks start their own unit; values not given are inherited from the outer one.
    """
    unit = WorkUnit(
        id=id or uuid.uuid4().hex,
        workflow=workflow if workflow is not None else _get("yieldmeter.workflow"),
        task_type=task_type if task_type is not None else _get("yieldmeter.task_type"),
        team=team if team is not None else _get("yieldmeter.team"),
    )
    ctx = context.get_current()
    for key, value in zip(LINKAGE_KEYS, (unit.id, unit.workflow, unit.task_type, unit.team), strict=True):
        if value is not None:
            ctx = baggage.set_baggage(key, value, ctx)
    token = context.attach(ctx)
    try:
        yield unit
    finally:
        context.detach(token)


def _get(key: str) -> str | None:
    v = baggage.get_baggage(key)
    return None if v is None else str(v)


class WorkUnitSpanProcessor(SpanProcessor):
    """Copies the work-unit baggage onto each span as attributes when it starts.

    A linkage attribute the span was created with (``attributes=`` of ``start_span``) wins:
    an instrumentation that names the work unit itself is not overwritten. Attributes set
    after the span started are the span's own business (they replace the copied value)."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        own = span.attributes or {}
        for key in LINKAGE_KEYS:
            if own.get(key) is not None:
                continue
            value = baggage.get_baggage(key, parent_context)
            if value is not None:
                span.set_attribute(key, str(value))

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def instrument(tracer_provider: Any = None) -> WorkUnitSpanProcessor:
    """Add the linkage processor to ``tracer_provider`` (default: the global SDK provider)."""
    provider = tracer_provider or trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):
        raise RuntimeError(
            "the global tracer provider is not an OpenTelemetry SDK TracerProvider; "
            "set one up first (opentelemetry.sdk.trace.TracerProvider) or pass tracer_provider="
        )
    processor = WorkUnitSpanProcessor()
    provider.add_span_processor(processor)
    return processor
