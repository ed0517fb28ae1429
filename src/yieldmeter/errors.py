"""The errors that are the caller's to fix, apart from yieldmeter's own faults.

:class:`InputError` is what the domain raises for input a person gave that cannot be
used (a period, a filter value, a choice, a budget): its message says what was wrong and
what to give instead. Surfaces answer it as their caller's mistake (HTTP 400 problem
details, a CLI message). Any other exception is a fault of yieldmeter or of its stored
state (HTTP 500, logged), never blamed on the request.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Input a person gave that cannot be used; the message names it and says what to give.

    ``field`` names the input that was wrong where one is (a query parameter such as ``period``
    or ``by``, a budget's field): the API's 400 answer carries it as a ``field`` member, so a
    client can point at it without parsing the message. A class may set a default for it.
    """

    field: str = ""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        if field is not None:
            self.field = field


class UnknownName(LookupError):
    """A name or id the caller gave that does not exist (HTTP 404); the message says where to find
    the ones that do."""


def read_text_file(path: Path, error: type[Exception]) -> str:
    """A configuration file's text, in UTF-8. A file that is not UTF-8 text, or is a folder,
    raises ``error`` with a message naming the file (and the line of the first bad byte)."""
    if path.is_dir():
        raise error(f"{path}: a folder, not a file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None
