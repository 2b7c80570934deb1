"""nb2prod's HTTP endpoints, each described once: what it takes, answers and refuses
with. ``app.py`` routes ``ENDPOINTS``; ``openapi.py`` writes both tables into
``/docs.json`` (``APIS`` are BentoML's own ``@bentoml.api`` routes, documented here only
for what BentoML cannot say of them).
"""

from nb2prod.runtime.answers import (
    DriftReport,
    FeedbackRecorded,
    ModelInfo,
    Pending,
    Predictions,
    Reloaded,
    Resolved,
    Verdict,
)
from nb2prod.runtime.openapi import Endpoint

STARTING = (503, "the service is still starting")
ADMIN_REFUSED = (
    (401, "no or the wrong bearer token"),
    (404, "admin endpoints are disabled (NB2PROD_ADMIN_TOKEN is unset or under 16 characters)"),
)
# an admin POST sends JSON or no body at all
UNPARSABLE, NOT_JSON_OR_EMPTY = (400, "the body does not parse as JSON"), (415, "not JSON")
ENDPOINTS = (
    Endpoint(
        "GET",
        "/model",
        name="info",
        summary="The served version's facts and its live quality",
        response=ModelInfo,
        errors=(STARTING,),
    ),
    Endpoint(
        "GET",
        "/drift",
        name="drift_report",
        summary="Input drift per feature over the recent window",
        response=DriftReport,
        errors=(STARTING,),
    ),
    Endpoint(
        "GET",
        "/admin/review",
        name="pending_review",
        summary="Rows waiting for a person",
        response=Pending,
        admin=True,
        errors=(*ADMIN_REFUSED, STARTING),
    ),
    Endpoint(
        "POST",
        "/admin/review/{item_id}",
        name="resolve_review",
        summary="A person's label for a review item; it becomes feedback",
        response=Resolved,
        body=Verdict,
        admin=True,
        parameters={
            "item_id": {
                "type": "integer",
                "minimum": 0,
                "maximum": 10**18 - 1,
                "description": "an id from GET /admin/review",
            }
        },
        errors=(
            (
                400,
                "not a review item id, no label, a label that is not one of the model's "
                "classes (or not a finite number, for a regressor), or not JSON",
            ),
            *ADMIN_REFUSED,
            (404, "no such review item, or the audit log is off"),
            (409, "the item was resolved already"),
            (413, "the body is too large"),
            NOT_JSON_OR_EMPTY,
            STARTING,
        ),
    ),
    Endpoint(
        "POST",
        "/admin/reload",
        name="reload",
        summary="Serve the registry's production version without a restart",
        response=Reloaded,
        admin=True,
        errors=(
            UNPARSABLE,
            *ADMIN_REFUSED,
            (409, "production is a version this service cannot serve"),
            NOT_JSON_OR_EMPTY,
            STARTING,
        ),
    ),
)

# What the BentoML APIs answer and refuse with, for the docs only: their routes, summaries
# and request schemas are BentoML's.
TOO_LARGE, NOT_JSON = (413, "over NB2PROD_MAX_BODY_BYTES"), (415, "not JSON")
APIS = (
    Endpoint(
        "POST",
        "/predict",
        name="predict",
        summary="",
        response=Predictions,
        errors=(
            (
                400,
                'not JSON, or not {"records": [...]} with 1 to 10,000 records of the '
                "contract's columns and types (a boolean is not a number, a number in a string "
                "is refused, unknown keys are refused): detail lists each problem",
            ),
            TOO_LARGE,
            NOT_JSON,
            (422, "a reject-level check refused rows: detail lists them"),
            (
                503,
                "the model could not answer and there is no fallback, or the answer could not "
                "be recorded in the audit log; or the service is still starting",
            ),
        ),
    ),
    Endpoint(
        "POST",
        "/feedback",
        name="feedback",
        summary="",
        response=FeedbackRecorded,
        errors=(
            (
                400,
                "a label that is not one of the model's classes (named in the error), or "
                "not a finite number for a regressor; or a body that is not JSON or not "
                "{request_id, label, row} (detail lists each problem)",
            ),
            (404, "no such request or row, or the audit log is off"),
            TOO_LARGE,
            NOT_JSON,
            STARTING,
        ),
    ),
)
