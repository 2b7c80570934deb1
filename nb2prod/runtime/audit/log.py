"""The audit log: every answered request, stored durably before its response is sent.

One ``AuditLog`` per service process. ``AuditLog.open(url)`` connects, creates the tables
if needed and refuses to start (``AuditError``) when the database cannot be reached (the
service, ``start_on_spool``, only when it was never reached). ``record()`` writes one
request in one transaction and returns once it is committed, into the file at the path
(SQLite; ``database``, ``watch``). Old requests are pruned on request (``prune``,
``retention``).

One audit row per *request*, not per predicted row: ``input`` is the request's records
as a table, ``{"columns": [...], "rows": [[...], ...]}`` (``table``), ``output`` its
answers (``prediction``, ``source``, ``reason``, ``warnings``), a JSON array in row
order, and ``rows`` their number. A 100-row request is one insert of two JSON texts,
not 100 rows of per-row work (served, the audit log added ~0.5x a bare service's time
to a 100-row request, now ~0.1x; bench/results/serve_overhead.md). Feedback
and review still address one row, as (request_id, row); SQL reaches a row with the
database's JSON functions (README, "Audit log").

If the database goes away while serving, records go to a bounded local spool
(``failover``, ``spool``) that a background thread moves back, exactly once, when the
database returns; if the spool is full too, ``record()`` raises ``AuditUnavailable`` (503) rather
than acknowledge a record it cannot keep.

Where: the ``url`` argument, else ``$NB2PROD_AUDIT_URL``, else SQLite
``$BENTOML_HOME/nb2prod/<model name>/audit.db`` (``home_url``): next to the model's
registry, so every bento of one name, and ``nb2prod feedback export NAME``, use the same
database. Any SQLAlchemy URL works; PostgreSQL (``postgresql+psycopg://…``) in production.
How each database family is opened and written is a ``Sink`` in ``sinks.SINKS``. Every
``NB2PROD_*`` value is read through ``nb2prod.core.settings.current()``.

Durability on SQLite: WAL with ``synchronous=NORMAL`` unless ``$NB2PROD_AUDIT_SYNC`` (or
``sqlite_synchronous=``) says ``FULL``. With NORMAL a commit is in the WAL file before
``record()`` returns, so an acknowledged record survives a killed process; the WAL is
fsync'd only at checkpoints (``sinks``: every 0.5 s, in the background), so a power cut
may lose the last commits. FULL fsyncs the WAL at every commit and survives power loss
too, at one fsync per *request*, never per row: a 1-row request took 0.05 ms p50 with
NORMAL, 0.28 ms with FULL (p99 0.5 vs. 4.0 ms; bench/results/audit_spool.md, a shared
machine whose fsync is at times 4 ms at p50). A busy timeout lets threads and worker
processes share the file; write transactions take the lock up front (``BEGIN
IMMEDIATE``) so none fails midway on a stale snapshot.

PII: ``pii={"name": "drop", "email": "hash"}`` is applied to every row before it is
stored or spooled (``pii.PiiPolicy``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import sqlalchemy as sa

from nb2prod.core import settings
from nb2prod.runtime.audit import retention, where
from nb2prod.runtime.audit.database import Database
from nb2prod.runtime.audit.errors import AuditError, AuditUnavailable, DatabaseMoved, describe
from nb2prod.runtime.audit.failover import Failover
from nb2prod.runtime.audit.layout import (
    KEY,
    REQUEST_KEY,
    Tables,
    array_table,
    make_tables,
    table,
)
from nb2prod.runtime.audit.pii import PiiPolicy
from nb2prod.runtime.audit.sinks import SINKS, Sink
from nb2prod.runtime.audit.spool import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, Spool
from nb2prod.runtime.audit.transaction import Transaction
from nb2prod.runtime.audit.where import mask, reason, resolve

log = logging.getLogger("nb2prod")
# The database could not be reached or locked in time, or its file is gone (``watch``);
# anything else is a bug to surface.
UNREACHABLE = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    DatabaseMoved,
)


@dataclass(frozen=True)
class RecordResult:
    """Where one request's records went: ``"database"``, or ``"spool"`` (flushed later)."""

    request_id: str
    rows: int
    stored: str


class AuditLog:
    """A durable, thread-safe audit log over one SQLAlchemy database; see the module doc."""

    def __init__(
        self,
        engine: sa.Engine,
        sink: Sink,
        tables: Tables,
        spool: Spool,
        *,
        url: str,
        model_version: str,
        notebook_sha256: str | None,
        pii: PiiPolicy,
        flush_interval: float | None,
        retain_days: float | None = None,
    ):
        self.url = url  # password masked: safe to show
        self.model_version = model_version
        self.model = model_version.split(":", 1)[0]
        self.notebook_sha256 = notebook_sha256
        self._engine, self._sink, self._tables, self._pii = engine, sink, tables, pii
        self._failover = Failover(
            spool, self._store, unreachable=UNREACHABLE, where=url, interval=flush_interval
        )
        self._db = Database(engine, sink, tables, url=url, spool=spool.path)
        # SQLite: WAL checkpoints and the check that the file is still there, off the
        # request path
        self._stop_upkeep = sink.maintain(engine, self._db.notice_moved)
        self._stop_retention = (
            retention.every(self.prune, timedelta(days=retain_days), where=url)
            if retain_days
            else (lambda: None)
        )

    @classmethod
    def open(
        cls,
        url: str | os.PathLike | None = None,
        *,
        model_version: str,
        notebook_sha256: str | None = None,
        pii: Mapping[str, str] | None = None,
        salt: str | None = None,
        spool_path: str | os.PathLike | None = None,
        spool_max_bytes: int = DEFAULT_MAX_BYTES,
        spool_max_records: int = DEFAULT_MAX_ENTRIES,
        table_prefix: str = "nb2prod_",
        timeout: float = 5.0,
        flush_interval: float | None = 1.0,
        sqlite_synchronous: str | None = None,
        start_on_spool: bool = False,
        retain_days: float | None = None,
    ) -> "AuditLog":
        """Connect, create missing tables, flush a leftover spool; ``AuditError`` if unreachable.

        An argument left unset takes its setting (``settings.current()``): ``url``
        ``$NB2PROD_AUDIT_URL``, else the model name's own SQLite file (``home_url``; the
        name is ``model_version``'s part before the colon); ``salt`` ``$NB2PROD_PII_SALT``;
        ``sqlite_synchronous`` ``$NB2PROD_AUDIT_SYNC`` (``NORMAL`` unless set, or ``FULL``;
        see the module doc); ``spool_path`` ``$NB2PROD_AUDIT_SPOOL``, else
        ``nb2prod-audit-spool-<hash of URL+prefix>.jsonl`` next to the default database, or
        in the working directory for any other. ``url`` is a SQLAlchemy URL or a SQLite
        file path. ``timeout`` bounds connecting (PostgreSQL) and waiting for the write
        lock (SQLite). The spool is bounded by bytes and by records (one per request).
        ``flush_interval=None`` turns the background flusher off (then call ``flush()``).

        ``start_on_spool=True`` is the service's way: an outage must not become a service
        outage. The first successful open writes a mark that this database was reached
        (``where.reached_mark``: an empty file in the model's home, shared by replicas on
        one ``BENTOML_HOME``). With the mark, or a non-empty spool, a database that is
        unreachable at open (or a leftover spool that cannot be flushed) is no error: the
        log starts with records going to the spool and a background flush when the
        database answers. Without either the database was never reached, and open raises
        ``AuditError`` as without the flag. ``retain_days``
        prunes requests older than that, hourly, in a thread (``prune``).
        """
        env = settings.current()
        policy = PiiPolicy.build(pii, env.pii_salt if salt is None else salt)
        db, home = resolve(
            url if url is not None else env.audit_url, model_version.split(":", 1)[0]
        )
        shown, sink = mask(db), SINKS.get(db.get_backend_name())
        try:
            engine = sink.engine(
                db, timeout=timeout, synchronous=sqlite_synchronous or env.audit_sync
            )
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise AuditError(
                f"cannot open the audit database: {reason(exc, db)}",
                where=shown,
                fix="check the URL's dialect and install its driver "
                "(PostgreSQL: postgresql+psycopg://…, psycopg[binary])",
            ) from None
        tag = hashlib.sha256((shown + table_prefix).encode()).hexdigest()[:8]
        spool = Spool(
            spool_path or env.audit_spool or (home or Path()) / f"nb2prod-audit-spool-{tag}.jsonl",
            max_bytes=spool_max_bytes,
            max_entries=spool_max_records,
        )
        audit = cls(
            engine,
            sink,
            make_tables(table_prefix),
            spool,
            url=shown,
            model_version=model_version,
            notebook_sha256=notebook_sha256,
            pii=policy,
            flush_interval=flush_interval,
            retain_days=retain_days,
        )
        reached = where.reached_mark(model_version.split(":", 1)[0], tag)
        try:
            audit._db.prepare_at_start(timeout)
        except Exception as exc:
            if start_on_spool and isinstance(exc, UNREACHABLE) and (reached.exists() or len(spool)):
                audit._start_in_outage(exc, reason(exc, db))
                return audit
            audit.close()
            if isinstance(exc, sa.exc.DBAPIError | DatabaseMoved):
                raise AuditError(
                    f"cannot open the audit database: {reason(exc, db)}",
                    where=shown,
                    fix=sink.fix(db),
                ) from None
            raise
        if start_on_spool:
            where.mark_reached(reached, spool.path)
        if len(spool):  # left by an earlier run that lost its database
            try:
                audit.flush()
            except AuditUnavailable:
                if not start_on_spool:
                    audit.close()
                    raise
                audit._failover.start()  # the flusher retries; records meanwhile spool
        return audit

    def _start_in_outage(self, exc: BaseException, why: str) -> None:
        """Serve with the database away at start: records spool, the flusher retries."""
        self._db.failed()
        self._failover.outage(exc)
        log.warning(
            "audit database %s is unreachable at start (%s); it was reached before, so "
            "this worker starts and keeps every record in the spool %s until it answers",
            self.url,
            why,
            self._failover.spool.path,
        )

    def record(
        self,
        request_id: str,
        inputs: Sequence[Mapping[str, Any]],
        answers: Sequence[Mapping[str, Any]],
        *,
        latency_ms: float,
        review: Mapping[int, str] | None = None,
        values: Any = None,
    ) -> RecordResult:
        """Store one request durably before it is answered, in one transaction.

        ``inputs``: the request's records; ``answers``: the Predictor's rows
        (``prediction``, ``source``, ``reason``, ``warnings``); ``latency_ms``: time to
        answer. ``review`` maps row → reason for rows to queue for human review (same
        transaction). ``values``, when the caller has it, is the records' values as one
        numpy array, a row per record in the first record's key order, every record
        with those keys (``FrameMaker.array`` and ``in_order``): stored as the input
        table's rows without walking the records again (unless PII must be removed).
        Returns once committed, or fsync'd to the spool while the database is
        unreachable; raises ``AuditUnavailable`` (503) when neither is possible.
        """
        if len(inputs) != len(answers):
            raise AuditError(
                f"{len(inputs)} input row(s) but {len(answers)} answer(s)",
                where=f"request {request_id}",
                fix="pass one answer per input row",
            )
        entry = self._entry(request_id, inputs, answers, latency_ms, review or {}, values)
        try:
            stored = self._failover.write(entry)
        except sa.exc.IntegrityError:
            raise AuditError(
                f"request id {request_id!r} is already in the audit log",
                where=self.url,
                fix="give every request a new id",
            ) from None
        return RecordResult(request_id, len(inputs), stored)

    def flush(self) -> int:
        """Move spooled requests into the database, exactly once; returns how many moved.

        Raises ``AuditUnavailable`` while the database is still unreachable.
        """
        return self._failover.flush()

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Transaction]:
        """One transaction for feedback and review (``transaction.Transaction``): committed
        when the block ends, rolled back if it raises. ``readonly=True`` takes no write lock
        (SQLite). An unreachable database, or a SQLite file no longer at its path when the
        write committed, is ``AuditUnavailable`` (503)."""
        try:
            identity = self._db.prepare()
            with self._engine.connect() as conn:
                conn.execution_options(nb2prod_readonly=readonly)
                with conn.begin():
                    yield Transaction(conn, self._tables, self._sink, self._pii, self.model_version)
            if not readonly:
                self._db.check_file(identity)
        except UNREACHABLE as exc:
            self._db.failed()
            raise AuditUnavailable(
                f"the audit database is unreachable: {describe(exc)}",
                where=self.url,
                fix="restore the audit database",
            ) from None

    def prune(self, older_than: timedelta) -> retention.Pruned:
        """Delete this model's requests older than ``older_than`` (and their resolved review items),
        except those with feedback or a review still pending; on SQLite, then checkpoint
        the WAL (TRUNCATE). What was removed, kept and returned: ``retention.Pruned``.
        An unreachable database is ``AuditUnavailable``."""
        try:
            self._db.prepare()
            return retention.prune(
                self._engine,
                self._tables,
                self.model,
                datetime.now(timezone.utc) - older_than,
                sqlite_file=self._db.file,
            )
        except UNREACHABLE as exc:
            raise AuditUnavailable(
                f"cannot prune the audit log: the database is unreachable: {describe(exc)}",
                where=self.url,
                fix="restore the audit database, then prune again",
            ) from None

    def status(self) -> dict[str, Any]:
        """``{"url", "spooled", "last_error"}``: where the log writes (password masked),
        requests waiting in the spool, and the last database error (None once it answers)."""
        return {
            "url": self.url,
            "spooled": len(self._failover.spool),
            "last_error": self._failover.last_error,
        }

    def close(self) -> None:
        """Stop the flusher, try a last flush (the spool survives if it fails), disconnect."""
        self._stop_retention()
        self._failover.close()
        self._stop_upkeep()
        self._engine.dispose()

    def _store(self, entries: list[dict[str, Any]], replay: bool) -> None:
        """Insert entries in one transaction; a replay skips requests already stored.
        A SQLite file lost meanwhile raises ``DatabaseMoved``: the entries are spooled."""
        try:
            identity = self._db.prepare()
            if not replay:
                self._db.insert(
                    [(name, [r for e in entries for r in e[name]]) for name in ("audit", "review")]
                )
            else:
                with self._engine.begin() as conn:
                    for name, key in (("audit", REQUEST_KEY), ("review", KEY)):
                        rows = [r for e in entries for r in e[name]]
                        self._sink.insert_new(
                            conn,
                            getattr(self._tables, name),
                            [
                                {**r, "created_at": datetime.fromisoformat(r["created_at"])}
                                for r in rows
                            ],
                            key=key,
                        )
        except UNREACHABLE:
            self._db.failed()
            raise
        self._db.check_file(identity)  # not acknowledged (nor the spool emptied) if lost

    def _entry(
        self,
        request_id: str,
        inputs: Sequence[Mapping[str, Any]],
        answers: Sequence[Mapping[str, Any]],
        latency_ms: float,
        review: Mapping[int, str],
        values: Any = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """One request as JSON-ready rows, ``{"audit": [one], "review": [...]}``, PII removed.

        Without PII columns, the records and answers are stored as they are (``dumps``
        writes NaN as null and numpy values as JSON): no per-row work on the request path.
        """
        now = datetime.now(timezone.utc).isoformat()
        if self._pii.columns:
            cleaned = [self._pii.clean(record) for record in inputs]
            inputs = [record for record, _ in cleaned]
            values = None  # what is stored is the cleaned records
            answers = [
                self._pii.scrub(answer, secrets) for answer, (_, secrets) in zip(answers, cleaned)
            ]
        stored = table(inputs) if values is None else array_table(list(inputs[0]), values)
        audit = {
            "request_id": request_id,
            "created_at": now,
            "model": self.model,
            "model_version": self.model_version,
            "notebook_sha256": self.notebook_sha256,
            "rows": len(inputs),
            "input": stored,
            "output": answers,
            "latency_ms": float(latency_ms),
        }
        queued = [
            {
                "request_id": request_id,
                "row": i,
                "created_at": now,
                "model_version": self.model_version,
                "reason": reason,
                "input": inputs[i],
                "output": answers[i].get("prediction"),
            }
            for i, reason in sorted(review.items())
        ]
        return {"audit": [audit], "review": queued}


def prune_log(
    url: str | None, name: str, older_than: timedelta, *, table_prefix: str = "nb2prod_"
) -> retention.Pruned:
    """Prune model ``name``'s audit log (``url`` None: ``$NB2PROD_AUDIT_URL``, else the
    database its services write by default) of requests older than ``older_than``;
    ``AuditError`` when the database cannot be opened. See ``AuditLog.prune``."""
    audit = AuditLog.open(url, model_version=name, table_prefix=table_prefix, flush_interval=None)
    try:
        return audit.prune(older_than)
    finally:
        audit.close()
