"""The formats ``yieldmeter ingest --format`` knows, found by name or by content.

Each entry names the module that defines a ``FORMAT`` (:class:`~yieldmeter.ingest.base.Format`);
modules are imported on first use, so nothing happens at import.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import BinaryIO, NamedTuple

from yieldmeter.errors import InputError
from yieldmeter.ingest.base import Format, open_binary, read_head

#: Detection order matters: the most specific formats first, plain tables last.
FORMAT_MODULES: dict[str, str] = {
    "otlp-json": "yieldmeter.ingest.otlp_json",
    "otlp-proto": "yieldmeter.ingest.otlp_protobuf",
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


#: How much of a file detection reads.
HEAD_BYTES = 65_536


def detect_format(path: Path, *, head_bytes: int = HEAD_BYTES) -> Format:
    """The first format whose ``detect`` accepts the head of ``path``."""
    opened = open_format(path, "auto", head_bytes=head_bytes)
    opened.stream.close()
    return opened.format


class Opened(NamedTuple):
    """A file opened to be read (see :func:`open_format`)."""

    format: Format
    #: the file's bytes from its start (decompressed), to hand to ``format.read``
    stream: BinaryIO
    #: nothing but white space in the file's first bytes: an empty file, whatever its format
    blank: bool


def open_format(path: Path, fmt: str = "auto", *, head_bytes: int = HEAD_BYTES) -> Opened:
    """Open ``path`` once (:func:`~yieldmeter.ingest.base.open_binary`) and the format to read it
    with: ``fmt``, or with ``auto`` the first whose ``detect`` accepts its first bytes. The stream
    starts at the file's start again: a pipe is read once, and a file cut short inside its first
    bytes gives those bytes to the reader before the cut."""
    chosen = None if fmt == "auto" else get_format(fmt)
    stream = open_binary(path)
    try:
        head, stream = read_head(stream, head_bytes)
        blank = not head.strip()
        if chosen is not None:
            return Opened(chosen, stream, blank)
        for candidate in available_formats():
            if candidate.name != "table" and candidate.detect(head, path.name):
                return Opened(candidate, stream, blank)
        from yieldmeter.ingest.otlp_json import other_signal

        why = other_signal(head)
        if why is not None:  # not a table, though no format took it: say what it is
            raise UnknownFormat(why)
        return Opened(get_format("table"), stream, blank)
    except BaseException:
        stream.close()
        raise
