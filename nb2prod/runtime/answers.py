"""What nb2prod's endpoints take and answer, as pydantic models: the schemas of
``/docs.json`` (``openapi.py``), checked by the tests against real answers.

They are documentation: no route validates what it returns against them (an answer is
never refused for its own shape), so they cost the request path nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, WithJsonSchema

from nb2prod.runtime.audit import ReviewItem

# BentoML keeps only a Union's first member in the schema: describe the label ourselves.
# A label is never null, a list or an object (runtime/feedback.py refuses them).
Label = Annotated[
    Union[bool, int, float, str],
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
            "description": "the true label, of the kind the model predicts: one of its "
            "classes (text, a number or a boolean), or a finite number for a regressor",
        }
    ),
]


class Error(BaseModel):
    """Every refusal: what went wrong and how to fix it; ``detail``, when there is one,
    lists each problem (a 400's: ``loc`` — "records", row, column —, ``type``, ``msg`` and
    the ``value`` sent; a 422's: the row, check and value)."""

    error: str
    detail: Optional[list[dict[str, Any]]] = None


class Answer(BaseModel):
    """One row's answer: the prediction (null while it waits for review), who gave it, why
    the model did not (null when it did), and what warn-level checks found."""

    prediction: Any
    source: Literal["model", "fallback", "pending_review"]
    reason: Optional[str]
    warnings: list[dict[str, Any]]


class Predictions(BaseModel):
    """One answer per record, in order; ``request_id`` names them for feedback and review."""

    request_id: str
    model_version: str
    predictions: list[Answer]


class FeedbackRecorded(BaseModel):
    """The label was joined to that answer; ``new`` is false when it replaced an earlier one."""

    request_id: str
    row: int
    new: bool
    model_version: str


class Gate(BaseModel):
    """The evaluation gate's verdict for one metric, as the build saw it."""

    metric: str
    value: Optional[float]
    threshold: str
    passed: bool


class Quality(BaseModel):
    """Live quality from feedback: accuracy (classifier) or MAE (regressor); ``value`` is
    null until a label has come in."""

    kind: str
    metric: str
    value: Optional[float]
    n: int


class Captured(BaseModel):
    """A module-level value the notebook code uses, taken from the training run."""

    name: str
    type: str
    bytes: int
    cell: str


class ModelInfo(BaseModel):
    """The served version: metrics, gate, lineage, captured values and live quality."""

    name: str
    model_version: str
    metrics: dict[str, Optional[float]]
    gate: list[Gate]
    notebook_sha256: Optional[str]
    parameters: dict[str, Any]
    trained_at: str
    built_at: str
    nb2prod_version: str
    captured: list[Captured]
    live_quality: Optional[Quality]


class FeatureDrift(BaseModel):
    """One feature's population stability index over the window; null while it is empty."""

    kind: str
    psi: Optional[float]
    status: str


class DriftReport(BaseModel):
    """Per-feature PSI, threshold and status; ``status`` is ``off`` (and nothing else is
    set) when drift monitoring is switched off."""

    status: Literal["ok", "drift", "insufficient_data", "off"]
    rows: Optional[int] = None
    window: Optional[int] = None
    observed: Optional[int] = None
    threshold: Optional[float] = None
    min_rows: Optional[int] = None
    drifting: list[str] = []
    features: dict[str, FeatureDrift]
    workers: Optional[int] = None  # with several workers: how many windows are merged


class Worker(BaseModel):
    """One worker process of the serve and the version it serves."""

    pid: int
    model_version: Optional[str]


class NotReloaded(Worker):
    """A worker that did not say it serves the new version in time, and why if it knows."""

    error: Optional[str] = None


class Pending(BaseModel):
    """The review queue, oldest first."""

    pending: list[ReviewItem]  # the audit log's own record: one definition of its fields


class Verdict(BaseModel):
    """A person's label for a review item; it becomes the row's feedback."""

    label: Label


class Resolved(BaseModel):
    """The review item resolved, and the answer its label was joined to."""

    item: int
    request_id: str
    row: int
    resolved: bool


class Reloaded(BaseModel):
    """What the reload did: from which version to which, or why nothing changed."""

    reloaded: bool
    model_version: str
    previous: Optional[str] = None
    message: Optional[str] = None
    workers: list[Worker] = []  # every worker of this serve (this one first)
    not_reloaded: list[NotReloaded] = []  # empty when every worker serves model_version
