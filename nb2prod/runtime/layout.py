"""The audit rows' layout and how they are written: the request's records as one table
(``table`` / ``records_of``), a compiled driver-level ``FastInsert``, and the check that
existing tables have the columns nb2prod writes (``check_layout``).
"""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter
from typing import Any, Mapping, Sequence

import sqlalchemy as sa

from nb2prod.runtime.spool import AuditError


def table(records: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """Records as ``{"columns": [...], "rows": [[...], ...]}``: each name once, not once
    per row (100 flagship rows: 30 KB of JSON instead of 75 KB to encode and write). A
    field some records lack is null in their rows; ``records_of`` turns it back."""
    if not records:
        return {"columns": [], "rows": []}
    columns = list(records[0])
    if len(columns) > 1 and all(len(r) == len(columns) for r in records):
        try:  # the service's case: every record has the same fields
            return {"columns": columns, "rows": list(map(itemgetter(*columns), records))}
        except KeyError:
            pass
    columns = list(dict.fromkeys(k for r in records for k in r))
    return {"columns": columns, "rows": [[r.get(c) for c in columns] for r in records]}


def records_of(stored: dict[str, list], rows: Sequence[int] | None = None) -> list[dict]:
    """``table``'s records back as dicts (only the positions ``rows``, if given)."""
    columns, values = stored["columns"], stored["rows"]
    picked = values if rows is None else [values[i] for i in rows]
    return [dict(zip(columns, row)) for row in picked]


class FastInsert:
    """``INSERT`` of many rows through the driver, compiled once: SQLAlchemy's per-execution
    work (compiling, one bind-processor call per column per row) cost more than the write.
    Values go through the dialect's own bind processors, so what is stored is what
    ``conn.execute(table.insert(), rows)`` stores; ``created_at`` (one per request) is
    processed once per call."""

    def __init__(self, table: sa.Table, dialect: sa.Dialect, keys: list[str]):
        # only the columns rows carry: the review queue's id comes from the database
        compiled = table.insert().compile(dialect=dialect, column_keys=keys)
        self.sql = str(compiled)
        self.positional = compiled.positional
        self.names = list(compiled.positiontup if compiled.positional else compiled.params)
        self.columns = [compiled.binds[n].key if n in compiled.binds else n for n in self.names]
        self.processors = [table.c[c].type.bind_processor(dialect) for c in self.columns]

    def params(self, rows: list[dict[str, Any]]) -> list[Any]:
        """The driver's parameters for ``rows`` (JSON-ready dicts, ``created_at`` in ISO
        text), for ``cursor.executemany(self.sql, ...)``."""
        stamps: dict[str, Any] = {}  # ISO text -> processed datetime, once per request
        params = []
        for row in rows:
            values = []
            for column, process in zip(self.columns, self.processors):
                value = row.get(column)
                if column == "created_at":
                    if value not in stamps:
                        when = datetime.fromisoformat(value)
                        stamps[value] = process(when) if process else when
                    values.append(stamps[value])
                else:
                    values.append(process(value) if process else value)
            params.append(tuple(values) if self.positional else dict(zip(self.names, values)))
        return params


def check_layout(engine: sa.Engine, metadata: sa.MetaData, where: str) -> None:
    """Refuse tables that exist with other columns (an earlier nb2prod's per-row audit
    table, another program's table): inserts would fail on every request."""
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in have]
        if missing:
            raise AuditError(
                f"table {table.name} exists without column(s) {missing}: it was made by an "
                "earlier nb2prod (one audit row per predicted row) or by another program",
                where=where, fix=f"rename it (ALTER TABLE {table.name} RENAME TO "
                f"{table.name}_old), or use another database or table prefix")
