"""Where an audit log lives: a SQLAlchemy URL from an argument, a setting or the model's
name (``home_url``), how it is shown (``mask``: password hidden), and the mark that a
service reached it once (``reached_mark``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import sqlalchemy as sa

from nb2prod.runtime import registry
from nb2prod.runtime.audit.errors import AuditError, describe

log = logging.getLogger("nb2prod")
HOME_DB = "audit.db"  # in registry.home(name): the default database of model ``name``


def reached_mark(name: str, tag: str) -> Path:
    """The empty file saying that a service of model ``name`` has reached the database
    ``tag`` names (a hash of its URL and table prefix): ``<home>/audit-reached-<tag>``.
    In the model's home, not the working directory, so serving leaves no file behind
    there and replicas sharing ``BENTOML_HOME`` know it too."""
    return registry.home(name) / f"audit-reached-{tag}"


def mark_reached(mark: Path, spool: Path) -> None:
    """Write ``mark`` (the database was reached) and check the spool's directory can
    take a file; a failure of either is logged: it matters only in a later outage."""
    try:
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.touch()
    except OSError as exc:
        log.warning(
            "cannot write %s (%s): a worker restarted while the audit database is away "
            "will not start",
            mark,
            exc,
        )
    if not os.access(spool.parent, os.W_OK):
        log.warning(
            "cannot create the audit spool %s (its directory is missing or not writable): "
            "during an outage requests will get 503, and a worker restarted during one will "
            "not start; create the directory or set NB2PROD_AUDIT_SPOOL to a writable file",
            spool,
        )


def mask(url: sa.URL) -> str:
    """The URL as text with its password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def home_url(name: str) -> str:
    """Model ``name``'s default audit database, ``$BENTOML_HOME/nb2prod/<name>/audit.db``."""
    return f"sqlite:///{registry.home(name) / HOME_DB}"


def resolve(url: str | os.PathLike | None, name: str) -> tuple[sa.URL, Path | None]:
    """A SQLAlchemy URL from ``url``, else ``name``'s default database; with the default,
    its folder (created: BentoML creates the home, not our part of it)."""
    text = os.fspath(url) if url is not None else None
    if text is not None and text.lower() == "off":  # serving checks first; this is the rest
        raise AuditError(
            "the audit log is off (NB2PROD_AUDIT_URL=off), so there is nothing to open",
            where="$NB2PROD_AUDIT_URL",
            fix="unset it for the model's own database, or pass a database URL",
        )
    if not text:
        home = registry.home(name)
        home.mkdir(parents=True, exist_ok=True)
        return sa.URL.create("sqlite", database=str(home / HOME_DB)), home
    if "://" not in text:  # a plain path means a SQLite file
        return sa.URL.create("sqlite", database=text), None
    try:
        return sa.make_url(text), None
    except sa.exc.ArgumentError:
        raise AuditError(
            "not a database URL",
            where=repr(text.split("@")[-1]),
            fix="use sqlite:///path/to/audit.db or "
            "postgresql+psycopg://user:password@host:5432/dbname",
        ) from None


def reason(exc: BaseException, url: sa.URL) -> str:
    """``describe(exc)`` without the URL's password, should a driver echo it."""
    text = describe(exc)
    return text.replace(str(url.password), "***") if url.password else text
