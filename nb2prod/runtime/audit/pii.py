"""Personal data in audited rows: each PII column hashed or dropped before storage.

``pii={"name": "drop", "email": "hash"}`` removes a column or stores
``"sha256:" + HMAC-SHA256(salt, value)`` instead; the salt (a secret of 16+ characters;
hashing without one is refused) is what ``AuditLog.open`` passes: its ``salt=``, else
``$NB2PROD_PII_SALT`` (``settings.current().pii_salt``). Raw
values never reach the database or the spool: they are scrubbed from predictions and check
warnings too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Mapping

from nb2prod.core.jsontext import jsonable
from nb2prod.core.settings import ENV_PII_SALT
from nb2prod.runtime.audit.errors import AuditError

MIN_SALT = 16

_DROPPED = object()
_JSON_SCALARS = frozenset({int, bool, type(None)})  # JSON as they are; str: see scrub
PII_ACTIONS = {
    "drop": lambda policy, value: _DROPPED,
    "hash": lambda policy, value: None if value is None else policy.digest(value),
}


@dataclass(frozen=True)
class PiiPolicy:
    """Per-column PII handling, ``{"column": "hash" | "drop"}``, and the hashing salt."""

    columns: Mapping[str, str]
    salt: bytes = b""

    @classmethod
    def build(cls, pii: Mapping[str, str] | None, salt: str | None) -> "PiiPolicy":
        """Validate ``pii`` and ``salt`` (None or "": no salt, refused when a column is
        hashed)."""
        pii = dict(pii or {})
        bad = {c: a for c, a in pii.items() if a not in PII_ACTIONS}
        if bad:
            raise AuditError(
                f"unknown PII action(s) {bad}",
                where="AuditLog.open(pii=...)",
                fix=f"use one of {sorted(PII_ACTIONS)} per column",
            )
        salt = salt or ""
        if "hash" in pii.values() and len(salt) < MIN_SALT:
            raise AuditError(
                f"PII column(s) {sorted(c for c, a in pii.items() if a == 'hash')}"
                f" are to be hashed but the salt is "
                f"{'missing' if not salt else 'shorter than 16 characters'}",
                where=f"${ENV_PII_SALT}",
                fix=f"set {ENV_PII_SALT} to a secret "
                f"of at least {MIN_SALT} random characters, the same for every "
                "worker",
            )
        return cls(pii, salt.encode())

    def digest(self, value: Any) -> str:
        """``sha256:<hex>``: HMAC-SHA256 keyed with the salt (a salted, unpeelable sha256)."""
        text = value if isinstance(value, str) else json.dumps(value)
        return "sha256:" + hmac.new(self.salt, text.encode(), hashlib.sha256).hexdigest()

    def clean(self, record: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict[str, str]]:
        """The record, PII hashed or dropped; and ``{raw: replacement}`` to scrub.

        Without PII columns the record is returned as it is: this runs for every audited
        row, and ``jsontext.dumps`` makes numpy values and NaN JSON when it is stored."""
        if not self.columns:
            return record, {}
        # Plain types skip jsonable(). (v - v == 0 holds for finite floats only.)
        out = {
            k: v
            if type(v) in _JSON_SCALARS or type(v) is str or (type(v) is float and v - v == 0)
            else jsonable(v)
            for k, v in record.items()
        }
        secrets: dict[str, str] = {}
        for key, action in self.columns.items():
            if key not in out:
                continue
            value = out[key]
            kept = PII_ACTIONS[action](self, value)
            if kept is _DROPPED:
                del out[key]
            else:
                out[key] = kept
            if isinstance(value, str) and value:
                secrets[value] = str(kept) if kept is not _DROPPED else f"[{key} dropped]"
        return out, secrets

    def scrub(self, value: Any, secrets: Mapping[str, str]) -> Any:
        """``value`` with raw PII strings replaced, PII columns' check values hidden, and
        NaN/infinity as null (PostgreSQL refuses them in JSON)."""
        if type(value) in _JSON_SCALARS:
            return value
        if isinstance(value, str):
            for raw, replacement in secrets.items():
                # Short values only whole: a 2-letter name is no reason to rewrite every word.
                if value == raw or (len(raw) >= 3 and raw in value):
                    value = value.replace(raw, replacement)
            return value
        if isinstance(value, list):
            return [self.scrub(v, secrets) for v in value]
        if isinstance(value, dict):
            out = {k: self.scrub(v, secrets) for k, v in value.items()}
            if out.get("column") in self.columns and "value" in out:  # a check's warning
                out["value"] = "[pii]"
            return out
        return jsonable(value)
