"""``yieldmeter lake export``: a workspace's store written to a lake.

Every canonical table, the resolved ``model_map``, the ``scores`` and their
``unit_values`` when the workspace has them, and the ``quarantine`` are
written; each table's earlier files are replaced, so an export is a snapshot
and running it twice gives the same lake. A workspace that was never scored
leaves the lake no ``scores``: ones an earlier export wrote would describe
other work units.

The export writes only into a new or empty folder, or into a lake of a schema
this yieldmeter knows (:meth:`Lake.check_writable`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from yieldmeter.lake.layout import Lake, lake_schemas

if TYPE_CHECKING:
    from yieldmeter.app.workspace import Workspace

EXPORT_SOURCE = "export"


@dataclass
class ExportSummary:
    lake: str
    tables: dict[str, int] = field(default_factory=dict)
    files: int = 0

    def rows(self) -> list[dict[str, object]]:
        return [{"table": k, "rows": v} for k, v in self.tables.items()]


def export_workspace(ws: Workspace, lake_uri: str) -> ExportSummary:
    """Write every table of ``ws``'s store to the lake at ``lake_uri`` (replacing what the lake held)."""
    from yieldmeter.pricing.book import fingerprint

    lake = Lake(lake_uri)
    lake.check_writable()
    summary = ExportSummary(lake=lake.uri)
    present = set(ws.store.ibis.list_tables())
    for name, schema in lake_schemas().items():
        if name in present:
            # every column is there: opening the workspace added what an older yieldmeter lacked
            cols = ", ".join('"' + c + '"' for c in schema.names)
            rows = ws.store.query_arrow(f'SELECT {cols} FROM "{name}"')
        elif name == "unit_values" and "scores" in present:
            # scores from before unit values were measured: no lake's older unit values beside them
            rows = schema.empty_table()
        else:
            lake.drop_table(name)  # a snapshot: what the workspace lacks, the lake lacks too
            continue
        report = lake.replace_table(name, rows, EXPORT_SOURCE)
        summary.tables[name] = report.rows
        summary.files += report.files
    lake.refresh_manifest(
        list(lake_schemas()),
        prices_fingerprint=fingerprint(ws.config.prices),
        written_by="yieldmeter lake export",
    )
    return summary
