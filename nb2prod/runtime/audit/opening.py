"""The audit log a served model version writes, opened from the deployment's settings."""

from __future__ import annotations

from typing import Any

from nb2prod.core.settings import Settings
from nb2prod.runtime.audit.log import AuditLog


def open_audit(settings: Settings, contract: Any, model_tag: str) -> AuditLog | None:
    """The audit log for this version, or None when ``NB2PROD_AUDIT_URL=off``.

    ``AuditError`` only when the database was never reached from here (no spool file
    yet): a worker restarted during an outage starts on the spool (``start_on_spool``).
    ``NB2PROD_AUDIT_RETAIN_DAYS`` has it prune old requests hourly."""
    if not settings.audit:
        return None
    return AuditLog.open(
        settings.audit_url,
        model_version=model_tag,
        notebook_sha256=contract.notebook_sha256,
        pii=contract.pii,
        sqlite_synchronous=settings.audit_sync,
        start_on_spool=True,
        retain_days=settings.audit_retain_days,
    )
