"""The audit log: every answered request, stored durably before its response is sent.

This package is the only code that knows the audit, feedback and review tables, the
database families (``sinks``) and the local spool. Everything else, ``feedback.py`` and
``review.py`` included, uses what this module exports:

- ``AuditLog.open(url, model_version=..., notebook_sha256=..., pii=...,
  sqlite_synchronous=...)`` connects (``AuditError`` when it cannot: refuse to start).
- ``AuditLog.record(request_id, inputs, answers, latency_ms=..., review=...)`` stores
  one request before it is answered: a ``RecordResult`` saying ``"database"`` or
  ``"spool"``, or ``AuditUnavailable`` (503) when neither can keep it.
- ``AuditLog.prune(older_than)`` / ``prune_log(url, name, older_than)``: delete old
  requests, never one with feedback or a pending review (``retention``; ``Pruned``).
- ``AuditLog.flush()``, ``status()``, ``close()``; ``url`` (password masked),
  ``model``, ``model_version``, ``notebook_sha256``.
- ``AuditLog.transaction(readonly=False)``: a ``Transaction`` for feedback and review,
  one database transaction. It looks up an audited request (``answered``, an
  ``Answered``), writes a label (``write_label``), reads labels back (``scores``,
  ``labelled_inputs``), and queues, lists, reads and resolves review items
  (``queue_review``, ``pending_reviews``, ``review_item`` with its ``Verdict``,
  ``resolve_review``; items are ``ReviewItem``s).
- ``open_audit(settings, contract, model_tag)``: the log a served version writes, as
  the deployment's settings say (None when auditing is off).
- ``home_url(name)``: model ``name``'s default database; ``MIN_SALT``: the shortest PII
  salt accepted.

Inside: ``log`` (``AuditLog``), ``transaction``, ``layout`` (tables and row formats),
``sinks`` (one ``Sink`` per database family), ``database`` and ``watch`` (tables made
once; a SQLite file removed while serving is noticed), ``where`` (URLs), ``failover``
and ``spool`` (records kept locally while the database is away), ``retention``
(pruning), ``pii`` and ``errors``. An import-linter contract
(``pyproject.toml``) keeps feedback and review off those modules.
"""

from nb2prod.runtime.audit.errors import AuditError, AuditUnavailable, SpoolFullError
from nb2prod.runtime.audit.log import AuditLog, RecordResult, prune_log
from nb2prod.runtime.audit.opening import open_audit
from nb2prod.runtime.audit.pii import MIN_SALT
from nb2prod.runtime.audit.retention import Pruned
from nb2prod.runtime.audit.transaction import Answered, ReviewItem, Transaction, Verdict
from nb2prod.runtime.audit.where import home_url

__all__ = [
    "MIN_SALT",
    "Answered",
    "AuditError",
    "AuditLog",
    "AuditUnavailable",
    "Pruned",
    "RecordResult",
    "ReviewItem",
    "SpoolFullError",
    "Transaction",
    "Verdict",
    "home_url",
    "open_audit",
    "prune_log",
]
