"""Every ``NB2PROD_*`` environment variable: its type, default and meaning, read in one place.

``current()`` is the settings in force for this process: read from the environment once,
and again only when one of the variables changed (tests and ``nb2prod build`` set some
for a while). A bad value is an ``Nb2prodError`` naming the variable, the value and a
valid one, never a traceback from ``int()``.

Two kinds: **deployment** settings are for the operator of ``bentoml serve`` (and the
README's configuration table lists exactly these, tested); **internal** ones are set by
``nb2prod build`` / ``retrain`` for the kernels and tests they start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from nb2prod.core.errors import Nb2prodError

DEPLOYMENT, INTERNAL = "deployment", "internal"
OFF = ("0", "off", "false", "no")


@dataclass(frozen=True)
class Variable:
    """One environment variable: name, kind, default (as text) and meaning."""

    env: str
    kind: str
    default: str
    meaning: str


def _text(value: str) -> str | None:
    return value or None


def _switch(value: str) -> bool:
    return value.strip().lower() not in OFF


def _optional_seconds(value: str) -> float | None:
    # None is "not set: the notebook's value"; "none" must differ from it, so it is 0.0,
    # which a Policy already reads as "no deadline"
    if not value:
        return None
    return 0.0 if value.strip().lower() == "none" else float(value)


def _seconds_or_off(value: str) -> float | None:
    # None: no limit ("none", "off" or 0); else a positive number of seconds
    if value.strip().lower() in ("none", *OFF):
        return None
    seconds = float(value)
    if seconds <= 0:
        raise ValueError(value)
    return seconds


def _optional_float(value: str) -> float | None:
    return float(value) if value else None


def _days(value: str) -> float | None:
    if value.strip().lower() in ("", *OFF):
        return None
    days = float(value)
    if not days > 0:
        raise ValueError(value)
    return days


def _workers(value: str) -> int | None:
    # None is "not set: the notebook's save_model(workers=...)"
    if not value:
        return None
    n = int(value)
    if n < 1:
        raise ValueError(value)
    return n


def _seconds(value: str) -> float:
    seconds = float(value)
    if not seconds >= 0:  # also refuses nan
        raise ValueError(value)
    return seconds


def _sync(value: str) -> str:
    value = value.strip().upper() or "NORMAL"
    if value not in ("NORMAL", "FULL"):
        raise ValueError(value)
    return value


# field name -> (variable, parser, a valid example for the error message)
_SPEC: dict[str, tuple[Variable, Callable[[str], Any], str]] = {
    "admin_token": (
        Variable(
            "NB2PROD_ADMIN_TOKEN",
            DEPLOYMENT,
            "",
            "bearer token for `/admin/*`; unset: admin endpoints answer 404",
        ),
        _text,
        "a secret",
    ),
    "audit_url": (
        Variable(
            "NB2PROD_AUDIT_URL",
            DEPLOYMENT,
            "",
            "audit database: a SQLAlchemy URL or SQLite path, `off` disables the audit log; "
            "unset: `$BENTOML_HOME/nb2prod/<name>/audit.db`",
        ),
        _text,
        "sqlite:///audit.db",
    ),
    "audit_sync": (
        Variable(
            "NB2PROD_AUDIT_SYNC",
            DEPLOYMENT,
            "NORMAL",
            "SQLite `synchronous`: `NORMAL` survives a killed process, `FULL` also a power cut "
            "(one fsync per request)",
        ),
        _sync,
        "NORMAL or FULL",
    ),
    "audit_spool": (
        Variable(
            "NB2PROD_AUDIT_SPOOL",
            DEPLOYMENT,
            "",
            "file for audit records while the database is unreachable; unset: one per database, "
            "beside the default database, else in the working directory",
        ),
        _text,
        "/var/lib/nb2prod/spool.jsonl",
    ),
    "audit_retain_days": (
        Variable(
            "NB2PROD_AUDIT_RETAIN_DAYS",
            DEPLOYMENT,
            "off",
            "days the service keeps audited requests, pruned hourly (never one with feedback "
            "or a pending review); `off`: kept forever",
        ),
        _days,
        "30 or off",
    ),
    "pii_salt": (
        Variable(
            "NB2PROD_PII_SALT",
            DEPLOYMENT,
            "",
            "secret (16+ characters, the same on every worker) for columns "
            "`save_model(pii=...)` hashes; required when one is hashed",
        ),
        _text,
        "a secret",
    ),
    "timeout_s": (
        Variable(
            "NB2PROD_TIMEOUT_S",
            DEPLOYMENT,
            "",
            "the model's deadline in seconds, over the notebook's `timeout_s=`; `none` turns "
            "it off",
        ),
        _optional_seconds,
        "2.5 or none",
    ),
    "min_confidence": (
        Variable(
            "NB2PROD_MIN_CONFIDENCE",
            DEPLOYMENT,
            "",
            "confidence below which the fallback answers, over the notebook's `min_confidence=`",
        ),
        _optional_float,
        "0.7",
    ),
    "drift": (
        Variable("NB2PROD_DRIFT", DEPLOYMENT, "on", "`off` turns drift monitoring off"),
        _switch,
        "on or off",
    ),
    "drift_window": (
        Variable(
            "NB2PROD_DRIFT_WINDOW",
            DEPLOYMENT,
            "10000",
            "rows of recent requests drift is measured on",
        ),
        int,
        "10000",
    ),
    "drift_threshold": (
        Variable(
            "NB2PROD_DRIFT_THRESHOLD",
            DEPLOYMENT,
            "0.2",
            "PSI above which a feature counts as drifted",
        ),
        float,
        "0.2",
    ),
    "max_body_bytes": (
        Variable(
            "NB2PROD_MAX_BODY_BYTES",
            DEPLOYMENT,
            str(10 * 1024 * 1024),
            "largest request body accepted (413 above it)",
        ),
        int,
        "10485760",
    ),
    "read_timeout_s": (
        Variable(
            "NB2PROD_READ_TIMEOUT_S",
            DEPLOYMENT,
            "10",
            "seconds a client has to send a whole request (headers and body) once connected "
            "or answered, else the connection is closed; `none` turns it off",
        ),
        _seconds_or_off,
        "10 or none",
    ),
    "log_summary_s": (
        Variable(
            "NB2PROD_LOG_SUMMARY_S",
            DEPLOYMENT,
            "60",
            "a failure's traceback is logged once per model version; repeats are counted "
            "and summed up in one line at most this often (seconds)",
        ),
        float,
        "60",
    ),
    "workers": (
        Variable(
            "NB2PROD_WORKERS",
            DEPLOYMENT,
            "",
            "worker processes of `bentoml serve`, over the notebook's `save_model(workers=)` "
            "(default 1)",
        ),
        _workers,
        "2",
    ),
    "cpu_pin": (
        Variable(
            "NB2PROD_CPU_PIN",
            DEPLOYMENT,
            "on",
            "each worker keeps its event loop and model threads on a CPU of its own (other "
            "threads use all CPUs); `off` leaves every thread to the scheduler",
        ),
        _switch,
        "on or off",
    ),
    "balance": (
        Variable(
            "NB2PROD_BALANCE",
            DEPLOYMENT,
            "on",
            "the workers share new connections evenly (a worker holding more leaves one to a "
            "sibling for up to 20 ms); `off`: whichever worker wakes first accepts them all",
        ),
        _switch,
        "on or off",
    ),
    "registry_poll_s": (
        Variable(
            "NB2PROD_REGISTRY_POLL_S",
            DEPLOYMENT,
            "5",
            "seconds between a worker's looks at the registry: when production moves to a "
            "version it can serve, it reloads; `0` turns it off",
        ),
        _seconds,
        "5 or 0",
    ),
    "panel": (
        Variable(
            "NB2PROD_PANEL",
            DEPLOYMENT,
            "on",
            "`0` / `off`: no readiness panel after `save_model` in a notebook",
        ),
        _switch,
        "on or off",
    ),
    # Set by nb2prod for the kernels and tests it starts.
    "run_file": (
        Variable(
            "NB2PROD_RUN_FILE",
            INTERNAL,
            "",
            "build/retrain: the file save_model reports each saved tag to",
        ),
        _text,
        "a path",
    ),
    "notebook_sha256": (
        Variable(
            "NB2PROD_NOTEBOOK_SHA256",
            INTERNAL,
            "",
            "build/retrain: sha256 of the notebook being run",
        ),
        _text,
        "64 hex digits",
    ),
    "parameters": (
        Variable(
            "NB2PROD_PARAMETERS", INTERNAL, "", "build/retrain: the papermill parameters, as JSON"
        ),
        _text,
        '{"C": 1.0}',
    ),
    "production_suite": (
        Variable(
            "NB2PROD_PRODUCTION_SUITE",
            INTERNAL,
            "",
            "retrain: production's suite.json, which the new reference data must pass too",
        ),
        _text,
        "a path",
    ),
    "executed": (
        Variable(
            "NB2PROD_EXECUTED",
            INTERNAL,
            "",
            "build/retrain: the notebook papermill writes as it runs",
        ),
        _text,
        "a path",
    ),
    "notebook": (
        Variable("NB2PROD_NOTEBOOK", INTERNAL, "", "build/retrain: the notebook the run came from"),
        _text,
        "a path",
    ),
    "champion": (
        Variable(
            "NB2PROD_CHAMPION",
            INTERNAL,
            "",
            "retrain: the production version the candidate is judged against",
        ),
        _text,
        "name:version",
    ),
    "champion_file": (
        Variable(
            "NB2PROD_CHAMPION_FILE",
            INTERNAL,
            "",
            "retrain: where the kernel writes production's scores on the new holdout",
        ),
        _text,
        "a path",
    ),
}
VARIABLES: tuple[Variable, ...] = tuple(v for v, _, _ in _SPEC.values())

ENV_RUN_FILE = _SPEC["run_file"][0].env
ENV_NOTEBOOK_SHA = _SPEC["notebook_sha256"][0].env
ENV_PARAMETERS = _SPEC["parameters"][0].env
ENV_PRODUCTION_SUITE = _SPEC["production_suite"][0].env
ENV_EXECUTED = _SPEC["executed"][0].env
ENV_NOTEBOOK = _SPEC["notebook"][0].env
ENV_CHAMPION = _SPEC["champion"][0].env
ENV_CHAMPION_FILE = _SPEC["champion_file"][0].env
ENV_PII_SALT = _SPEC["pii_salt"][0].env
ENV_AUDIT_URL = _SPEC["audit_url"][0].env
ENV_ADMIN_TOKEN = _SPEC["admin_token"][0].env
ENV_MAX_BODY_BYTES = _SPEC["max_body_bytes"][0].env


@dataclass(frozen=True)
class Settings:
    """The value of every ``NB2PROD_*`` variable (see ``VARIABLES`` for their meaning)."""

    admin_token: str | None
    audit_url: str | None
    audit_sync: str
    audit_spool: str | None
    audit_retain_days: float | None  # None: never pruned by the service
    pii_salt: str | None
    timeout_s: float | None  # None: the notebook's deadline; 0.0 (``none``): no deadline
    min_confidence: float | None
    drift: bool
    drift_window: int
    drift_threshold: float
    max_body_bytes: int
    read_timeout_s: float | None  # None: no deadline for receiving a request
    log_summary_s: float
    workers: int | None  # None: the notebook's save_model(workers=...)
    cpu_pin: bool
    balance: bool
    registry_poll_s: float  # 0: do not poll
    panel: bool
    run_file: str | None
    notebook_sha256: str | None
    parameters: str | None
    production_suite: str | None
    executed: str | None
    notebook: str | None
    champion: str | None
    champion_file: str | None

    @property
    def audit(self) -> bool:
        """False when ``NB2PROD_AUDIT_URL=off``."""
        return (self.audit_url or "").lower() != "off"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Parse every variable; ``Nb2prodError`` naming the first bad one."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (var, parse, example) in _SPEC.items():
            raw = environ.get(var.env, "")
            text = raw if raw != "" else var.default
            try:
                values[name] = parse(text)
            except ValueError:
                raise Nb2prodError(
                    f"{var.env}={raw!r} is not valid ({var.meaning})",
                    where=f"${var.env}",
                    fix=f"set it to {example}, or unset it for the default",
                ) from None
        return cls(**values)


_cache: tuple[tuple[str | None, ...], Settings] | None = None
_NAMES = tuple(f.name for f in fields(Settings))
assert set(_NAMES) == set(_SPEC), "every setting has one variable"


def current() -> Settings:
    """The settings in force: read once, re-read only when a variable changed."""
    global _cache
    key = tuple(os.environ.get(v.env) for v in VARIABLES)
    if _cache is None or _cache[0] != key:
        _cache = (key, Settings.from_env())
    return _cache[1]
