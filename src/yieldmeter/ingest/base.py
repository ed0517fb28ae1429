"""What every format adapter returns: canonical Arrow rows per table, and rejects.

Adapters are pure: bytes or records in, :class:`Batch` out. They open no
connection and write nothing; the Workspace hands their batches to the store.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pyarrow as pa

from yieldmeter.ingest.conform import Conformed, concat_rejects, empty_rejects

if TYPE_CHECKING:
    from yieldmeter.config import Config


@dataclass
class Batch:
    """Canonical rows for one or more tables, plus the rows that were rejected.

    ``tables`` maps a canonical table name to rows already passed through
    :func:`yieldmeter.ingest.conform.conform`. ``ignored`` counts input records
    that are deliberately not data (e.g. non-GenAI spans), ``no_model`` the spans
    mapped to calls without a model (counted before conform and the store, so a
    rejected or repeated span counts too), and ``notes`` carries messages
    worth showing the user once.
    """

    tables: dict[str, pa.Table] = field(default_factory=dict)
    rejects: pa.Table = field(default_factory=empty_rejects)
    ignored: int = 0
    notes: list[str] = field(default_factory=list)
    no_model: int = 0

    @classmethod
    def of(cls, table_name: str, conformed: Conformed, **kw: object) -> Batch:
        return cls({table_name: conformed.rows}, conformed.rejects, **kw)  # type: ignore[arg-type]

    def add(self, table_name: str, conformed: Conformed) -> None:
        if table_name in self.tables:
            self.tables[table_name] = pa.concat_tables([self.tables[table_name], conformed.rows])
        else:
            self.tables[table_name] = conformed.rows
        self.rejects = concat_rejects([self.rejects, conformed.rejects])

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.tables.values())


@dataclass(frozen=True)
class ReadOptions:
    """Options every adapter receives."""

    source: str
    table: str | None = None  # for tabular input: which canonical table the rows are
    capture_content: bool = False  # keep prompt/completion text (off by default)
    batch_rows: int = 65_536
    score_signals: dict[str, str] = field(default_factory=dict)
    #: processes a large line-oriented file is decoded in (0: in the caller's own process)
    decode_workers: int = 0

    @classmethod
    def from_config(cls, config: Config, source: str, table: str | None = None) -> ReadOptions:
        """The options a workspace's ``yieldmeter.yaml`` sets for reading ``source``."""
        workers = config.ingest.decode_workers
        return cls(
            source=source,
            table=table,
            capture_content=config.privacy.capture_content,
            score_signals=dict(config.score_signals),
            decode_workers=default_workers() if workers == "auto" else workers,
        )


def default_workers(cpus: int | None = None) -> int:
    """Decode processes for ``auto``: one per core (none on one core), at most 4."""
    cpus = cpus or os.cpu_count() or 1
    return 0 if cpus < 2 else min(4, cpus)


#: An adapter reads a binary stream and yields batches.
Reader = Callable[[BinaryIO, ReadOptions], Iterator[Batch]]


@dataclass(frozen=True)
class Format:
    """A file format yieldmeter can import.

    ``detect`` looks at the first bytes (and the file name) and says whether
    the file is of this format; ``read`` yields batches.
    """

    name: str
    description: str
    detect: Callable[[bytes, str], bool]
    read: Reader


def open_binary(path: Path) -> BinaryIO:
    """Open a file for an adapter, transparently decompressing ``.gz``."""
    if path.suffix == ".gz":
        import gzip

        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")
