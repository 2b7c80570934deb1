"""The audit log: every answered request, stored durably before its response is sent."""

from nb2prod.runtime.audit.errors import AuditError, AuditUnavailable, SpoolFullError
from nb2prod.runtime.audit.log import AuditLog, RecordResult, home_url

__all__ = ["AuditError", "AuditLog", "AuditUnavailable", "RecordResult", "SpoolFullError",
           "home_url"]
