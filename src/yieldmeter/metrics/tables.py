"""The canonical tables as Ibis expressions: what every metric is written against.

A metric is a function of :class:`Tables` that returns an Ibis expression; it
never touches a connection, so it can be compiled, printed and explained
without running, and runs unchanged on DuckDB or Spark.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import ibis.expr.types as ir

from yieldmeter.schema import TABLES


@dataclass(frozen=True)
class Tables:
    calls: ir.Table
    work_units: ir.Table
    signals: ir.Table
    effort: ir.Table
    outcomes: ir.Table
    workflows: ir.Table
    cost_items: ir.Table
    prices: ir.Table
    budgets: ir.Table
    decisions: ir.Table
    #: (provider, model) as seen in calls -> catalog (price_provider, price_model); see pricing.catalog
    model_map: ir.Table
    #: per work unit interaction value scores, written by the scoring step
    scores: ir.Table | None = None
    #: per workflow the unit value the scores rest on, written with them (scoring.unit_value)
    unit_values: ir.Table | None = None

    @classmethod
    def from_backend(cls, con: Any) -> Tables:
        """Bind to the tables of an Ibis backend (DuckDB file, Spark session...)."""
        names = {f.name for f in fields(cls)}
        present = set(con.list_tables())
        kwargs = {}
        for name in names:
            if name in present:
                kwargs[name] = con.table(name)
            elif name in TABLES:
                raise LookupError(f"table {name!r} is missing from the store; run `yieldmeter init`")
        return cls(**kwargs)
