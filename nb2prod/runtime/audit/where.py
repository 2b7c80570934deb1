"""Where an audit log lives: a SQLAlchemy URL from an argument, a setting or the model's
name (``home_url``), and how it is shown (``mask``: password hidden)."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from nb2prod.runtime import registry
from nb2prod.runtime.audit.errors import AuditError, describe

HOME_DB = "audit.db"  # in registry.home(name): the default database of model ``name``


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
