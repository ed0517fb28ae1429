"""The formats ``yieldmeter ingest --format`` knows, found by name or by content.

Each entry names the module that defines a ``FORMAT`` (:class:`~yieldmeter.ingest.base.Format`);
modules are imported on first use, so nothing happens at import.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from yieldmeter.errors import InputError
from yieldmeter.ingest.base import Format, open_binary

#: Detection order matters: the most specific formats first, plain tables last.
FORMAT_MODULES: dict[str, str] = {
    "otlp-json": "yieldmeter.ingest.otlp_json",
    "litellm": "yieldmeter.ingest.litellm",
    "langfuse": "yieldmeter.ingest.langfuse",
    "openai-usage": "yieldmeter.ingest.openai_usage",
    "anthropic-usage": "yieldmeter.ingest.anthropic_usage",
    "focus": "yieldmeter.ingest.focus",
    "table": "yieldmeter.ingest.tabular",
}


class UnknownFormat(InputError):
    pass


def get_format(name: str) -> Format:
    if name not in FORMAT_MODULES:
        raise UnknownFormat(f"unknown format {name!r}; known formats: auto, {', '.join(FORMAT_MODULES)}")
    module = importlib.import_module(FORMAT_MODULES[name])
    return module.FORMAT  # type: ignore[no-any-return]


def available_formats() -> list[Format]:
    out = []
    for name in FORMAT_MODULES:
        try:
            out.append(get_format(name))
        except ModuleNotFoundError:
            continue  # a format whose module is not built yet
    return out


def detect_format(path: Path, *, head_bytes: int = 65_536) -> Format:
    """The first format whose ``detect`` accepts the head of ``path``."""
    with open_binary(path) as fh:
        head = fh.read(head_bytes)
    for fmt in available_formats():
        if fmt.name != "table" and fmt.detect(head, path.name):
            return fmt
    return get_format("table")
