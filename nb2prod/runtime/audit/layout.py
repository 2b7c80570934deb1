"""The tables and their rows: the audit, feedback and review tables (``make_tables``), a
request's records as one table (``table`` / ``records_of``), a compiled driver-level
``FastInsert``, and the check that existing tables have the columns nb2prod writes
(``check_layout``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, Mapping, Sequence

import numpy as np
import sqlalchemy as sa

from nb2prod.runtime.audit.errors import AuditError

KEY = ("request_id", "row")  # a labelled or queued row: the feedback and review key
REQUEST_KEY = ("request_id",)  # the audit table's key: one row per request


# JSON, not PostgreSQL's JSONB: JSONB reorders keys, and the first field of a prediction
# matters (feedback's default label field); text JSON is also cheaper to insert.
JSON = sa.JSON()


@dataclass(frozen=True)
class Tables:
    """The audit, feedback and review tables under one name prefix."""

    metadata: sa.MetaData
    audit: sa.Table
    feedback: sa.Table
    review: sa.Table


def make_tables(prefix: str = "nb2prod_") -> Tables:
    """The three tables, named ``<prefix>audit`` (one row per request), ``<prefix>feedback``
    and ``<prefix>review`` (one row per labelled or queued row of a request)."""
    md = sa.MetaData()

    def key() -> list[sa.Column]:
        return [
            sa.Column("request_id", sa.String(64), primary_key=True),
            sa.Column("row", sa.Integer, primary_key=True, autoincrement=False),
        ]

    def when(name: str, nullable: bool = False) -> sa.Column:
        return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)  # always UTC

    audit = sa.Table(
        f"{prefix}audit",
        md,
        sa.Column("request_id", sa.String(64), primary_key=True),
        when("created_at"),
        sa.Column("model", sa.String(200), nullable=False, index=True),
        sa.Column("model_version", sa.String(200), nullable=False, index=True),
        sa.Column("notebook_sha256", sa.String(64)),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("input", JSON, nullable=False),
        sa.Column("output", JSON, nullable=False),
        sa.Column("latency_ms", sa.Float),
    )
    feedback = sa.Table(
        f"{prefix}feedback",
        md,
        *key(),
        sa.Column("model_version", sa.String(200), nullable=False, index=True),
        sa.Column("source", sa.String(16)),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("label", JSON, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        when("created_at"),
        when("updated_at", nullable=True),
    )
    review = sa.Table(
        f"{prefix}review",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("input", JSON),
        sa.Column("output", JSON),
        when("created_at"),
        sa.Column("resolved_at", sa.DateTime(timezone=True), index=True),
        sa.Column("label", JSON),
        sa.UniqueConstraint(*KEY),
    )
    return Tables(md, audit, feedback, review)


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


def array_table(columns: list[str], values: Any) -> dict[str, Any]:
    """``table``'s form from a numpy array that holds the records' values already, a row
    per record in the order of ``columns``: no walk over 10,000 dicts, and orjson writes
    the array's floats straight from memory, as it would write the same Python floats
    (NaN as null). A C-contiguous array, as orjson needs: ``ascontiguousarray`` copies
    only one that is not."""
    return {"columns": columns, "rows": np.ascontiguousarray(values)}


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
        # a positional dialect always has its order (positiontup); the others name params
        self.names = list(compiled.positiontup or () if compiled.positional else compiled.params)
        self.columns = [compiled.binds[n].key if n in compiled.binds else n for n in self.names]
        self.processors = [table.c[c].type.bind_processor(dialect) for c in self.columns]

    def params(self, rows: list[dict[str, Any]]) -> list[Any]:
        """The driver's parameters for ``rows`` (JSON-ready dicts, ``created_at`` in ISO
        text), for ``cursor.executemany(self.sql, ...)``."""
        stamps: dict[Any, Any] = {}  # ISO text -> processed datetime, once per request
        params = []
        for row in rows:
            values = []
            for column, process in zip(self.columns, self.processors):
                value = row.get(column)
                if column == "created_at":
                    if value not in stamps:
                        when = datetime.fromisoformat(str(value))
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
                where=where,
                fix=f"rename it (ALTER TABLE {table.name} RENAME TO "
                f"{table.name}_old), or use another database or table prefix",
            )
