"""The yieldmeter Python SDK: link instrumented LLM calls to work, and record what came of it.

::

    from yieldmeter.sdk import instrument, work_unit, record_signal

    instrument()                                   # once, after the OpenTelemetry SDK is set up
    with work_unit("claims-triage", task_type="classify") as wu:
        client.chat.completions.create(...)        # any GenAI instrumentation: spans carry the linkage
    record_signal(wu.id, "accepted")

``work_unit`` and ``instrument`` need ``opentelemetry-sdk``; the ``record_*``
functions need only ``httpx`` (or nothing, when they write a local file).
Names are imported on first use, so ``import yieldmeter.sdk`` does nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "work_unit": "yieldmeter.sdk.linkage",
    "WorkUnit": "yieldmeter.sdk.linkage",
    "WorkUnitSpanProcessor": "yieldmeter.sdk.linkage",
    "instrument": "yieldmeter.sdk.linkage",
    "LINKAGE_KEYS": "yieldmeter.sdk.linkage",
    "Recorder": "yieldmeter.sdk.recorder",
    "RecordError": "yieldmeter.sdk.recorder",
    "configure": "yieldmeter.sdk.recorder",
    "record_signal": "yieldmeter.sdk.recorder",
    "record_outcome": "yieldmeter.sdk.recorder",
    "record_effort": "yieldmeter.sdk.recorder",
    "flush": "yieldmeter.sdk.recorder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'yieldmeter.sdk' has no attribute {name!r}")
