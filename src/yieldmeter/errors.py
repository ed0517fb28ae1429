"""The errors that are the caller's to fix, apart from yieldmeter's own faults.

:class:`InputError` is what the domain raises for input a person gave that cannot be
used (a period, a filter value, a choice, a budget): its message says what was wrong and
what to give instead. Surfaces answer it as their caller's mistake (HTTP 400 problem
details, a CLI message). Any other exception is a fault of yieldmeter or of its stored
state (HTTP 500, logged), never blamed on the request.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input a person gave that cannot be used; the message names it and says what to give."""


class UnknownName(LookupError):
    """A name or id the caller gave that does not exist (HTTP 404); the message says where to find
    the ones that do."""
