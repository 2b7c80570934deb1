"""Feedback: the true label for an audited answer, joined to it, and live quality per version.

``FeedbackLog(audit, kind=..., label_field=..., classes=...)`` stores labels next to the
audit log. ``record_feedback`` joins a label to its audited row by (request_id, row): an
unknown pair is ``UnknownRecordError`` (404); a label that cannot be compared with the
model's output is ``LabelError`` (400). A second label for the same row *replaces* the
first (labels get corrected; ``updated_at`` says when) and the result's ``new`` is False.

What a label is compared with comes from the output kind, a ``LabelKind`` in ``KINDS``:

- ``classifier``: accuracy. A label is one of ``classes``, the classes the model can
  predict (``save_model`` stores them with the version). It matches a class by JSON
  type and value: a number class takes any number of its value (class ``1`` takes ``1``
  and ``1.0``, never ``"1"`` or ``true``), a string class the same string, a boolean
  class ``true``/``false``. The label is stored as the class itself, in the class's own
  type, so ``export_feedback`` writes what retraining can use. Anything else is a 400
  naming the valid classes. A version saved before classes were stored (``classes``
  None) takes any string, integer or boolean of the predicted label's family (text vs
  number). A row scores 1 when ``label == predicted``.
- ``regressor``: mean absolute error. A label is a finite number, not a boolean, stored
  as a float; a row scores ``|label - predicted|``.

A string label is at most ``MAX_LABEL_CHARS`` characters; lists, objects and null are
never labels. Error messages show a refused label cut short, never whole.

The predicted label of a scalar prediction is the prediction itself. For a DataFrame-shaped
prediction (one dict per row) it is ``prediction[label_field]`` when ``label_field`` is
set, else the first field the kind accepts: the first string/integer/boolean field for a
classifier (``{"label": 1, "probability": 0.93}`` → ``label``), the first number for a
regressor. Each row's score is stored with the label, so ``quality`` is one SQL average.

``export_feedback`` writes the labelled, audited inputs as a data set for retraining.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from nb2prod.core.errors import BadRequest, Nb2prodError, NotFound, UsageError
from nb2prod.runtime.audit import AuditLog, Transaction

MAX_LABEL_CHARS = 256  # a class name longer than this is no class name
SHOWN_CLASSES = 20  # classes listed in a refusal; the rest are counted


class UnknownRecordError(NotFound, LookupError):
    """No audited answer (or review item) has this id: the service answers 404."""


class LabelError(BadRequest, ValueError):
    """The label cannot be compared with the model's output: the service answers 400."""


@dataclass(frozen=True)
class FeedbackResult:
    """One stored label: its row, the version that answered, whether it is new, its score."""

    request_id: str
    row: int
    model_version: str
    new: bool
    score: float
    label: Any = None  # as stored: the class itself, or a regressor's float


@dataclass(frozen=True)
class LabelKind:
    """How labels for one kind of output are checked and scored.

    ``field`` says whether a prediction field can hold the predicted label; ``label``
    takes (label, predicted, classes) and returns the label to store, or why it cannot
    be compared with the prediction (a ``_Refused``); ``score`` is one row's
    contribution to ``metric``, averaged by ``quality``.
    """

    name: str
    metric: str
    field: Callable[[Any], bool]
    label: Callable[[Any, Any, "tuple[Any, ...] | None"], Any]
    score: Callable[[Any, Any], float]


class KindRegistry:
    """Output kinds by name; ``get`` names the valid ones when asked for another."""

    def __init__(self) -> None:
        self._kinds: dict[str, LabelKind] = {}

    def register(self, kind: LabelKind) -> None:
        """Add ``kind`` under ``kind.name``."""
        self._kinds[kind.name] = kind

    def get(self, name: str) -> LabelKind:
        """The kind called ``name``, or a ``UsageError`` listing the known ones."""
        if name not in self._kinds:
            raise UsageError(
                f"unknown output kind {name!r}",
                where="FeedbackLog(kind=...)",
                fix=f"use one of {sorted(self._kinds)}",
            )
        return self._kinds[name]


def _number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float (JSON allows 10**400)
        return False


def _family(value: Any) -> str:
    return "text" if isinstance(value, str) else "a number"


def shown(value: Any, limit: int = 60) -> str:
    """A label for an error message: its repr, cut at ``limit`` characters. A list or an
    object is named by its type only (its repr can be megabytes, or nest too deep)."""
    if isinstance(value, (list, dict, tuple)):
        return {"dict": "an object", "tuple": "a list"}.get(type(value).__name__, "a list")
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _described(label: Any) -> str:
    """``str 'x'``, ``float inf``; ``a list``, ``an object``, ``null`` for JSON's others."""
    if label is None or isinstance(label, (list, dict, tuple)):
        return shown(label)
    return f"{type(label).__name__} {shown(label)}"


def _label_problem(label: Any) -> str | None:
    """Why ``label`` can be no class at all (a container, null, an over-long string)."""
    if isinstance(label, str):
        if len(label) > MAX_LABEL_CHARS:
            return f"the label is {len(label)} characters long; at most {MAX_LABEL_CHARS}"
        return None
    if isinstance(label, bool) or _number(label):
        return None
    return f"a classifier label is one class, not {_described(label)}"


def same_class(label: Any, cls: Any) -> bool:
    """True when ``label`` (as JSON decoded it) names the class ``cls``: the same JSON
    type and value (see the module doc: ``1.0`` names class ``1``, ``"1"`` does not)."""
    if isinstance(cls, bool) or isinstance(label, bool):
        return isinstance(cls, bool) and isinstance(label, bool) and cls == label
    if isinstance(cls, str) or isinstance(label, str):
        return isinstance(cls, str) and isinstance(label, str) and cls == label
    return _number(label) and float(label) == float(cls)


def listed(classes: Iterable[Any]) -> str:
    """The classes for a message: the first ``SHOWN_CLASSES``, then how many more."""
    classes = list(classes)
    text = ", ".join(shown(c) for c in classes[:SHOWN_CLASSES])
    more = len(classes) - SHOWN_CLASSES
    return f"{text}{f' and {more} more' if more > 0 else ''}"


def _class_label(label: Any, predicted: Any, classes: tuple[Any, ...] | None) -> Any:
    """The class ``label`` names (the label to store), or ``_Refused`` saying why none."""
    problem = _label_problem(label)
    if problem:
        return _Refused(problem)
    if classes is None:  # a version saved before classes were stored: check the family
        if isinstance(label, str) != isinstance(predicted, str):
            return _Refused(
                f"the label {shown(label)} is {_family(label)} but the model predicts "
                f"{_family(predicted)} (e.g. {shown(predicted)})"
            )
        return label
    for cls in classes:
        if same_class(label, cls):
            return cls
    return _Refused(
        f"the label {shown(label)} is not a class this model predicts; "
        f"the classes are {listed(classes)}"
    )


def _value_label(label: Any, predicted: Any, classes: tuple[Any, ...] | None) -> Any:
    """A regressor's label as a float (the label to store), or ``_Refused`` saying why not."""
    if not _number(label):
        return _Refused(f"a regressor label is a finite number, not {_described(label)}")
    if not _number(predicted):
        return _Refused(
            f"the audited prediction {shown(predicted)} has no number to compare the label with"
        )
    return float(label)


@dataclass(frozen=True)
class _Refused:
    """Why a label was refused (a label itself is never of this type)."""

    why: str


KINDS = KindRegistry()
KINDS.register(
    LabelKind(
        "classifier",
        "accuracy",
        field=lambda v: isinstance(v, (str, int)),  # bool is an int
        label=_class_label,
        score=lambda y, p: float(y == p),
    )
)
KINDS.register(
    LabelKind(
        "regressor",
        "mae",
        field=_number,
        label=_value_label,
        score=lambda y, p: abs(float(y) - float(p)),
    )
)


def predicted_label(prediction: Any, kind: LabelKind, label_field: str | None = None) -> Any:
    """The part of one row's prediction a label is compared with (see the module doc)."""
    if not isinstance(prediction, dict):
        return prediction
    if label_field is not None:
        if label_field not in prediction:
            raise Nb2prodError(
                f"the prediction has no field {label_field!r}",
                where=f"fields {list(prediction)}",
                fix=f"set label_field to one of {list(prediction)}",
            )
        return prediction[label_field]
    for value in prediction.values():
        if kind.field(value):
            return value
    raise Nb2prodError(
        f"no field of the prediction can be a {kind.name}'s label",
        where=f"fields {list(prediction)}",
        fix="set label_field to the field that holds the predicted label",
    )


def infer_kind(prediction: Any, label_field: str | None = None) -> str:
    """A default output kind from one example prediction, for notebooks that do not say.

    ``"regressor"`` when the value a label would be compared with is a float (or, for a
    dict, no field can be a class label), else ``"classifier"``.
    """
    if isinstance(prediction, dict) and label_field is None:
        classes = [v for v in prediction.values() if KINDS.get("classifier").field(v)]
        return "classifier" if classes else "regressor"
    value = prediction.get(label_field) if isinstance(prediction, dict) else prediction
    return "regressor" if isinstance(value, float) else "classifier"


class FeedbackLog:
    """Labels joined to the audit log, and quality per model version; see the module doc.

    ``kind`` is a name in ``KINDS`` (``"classifier"`` or ``"regressor"``); ``label_field``
    picks the predicted label out of dict-shaped predictions; ``classes`` are the classes
    a classifier's label must be one of (None: not known, see the module doc).
    """

    def __init__(
        self,
        audit: AuditLog,
        *,
        kind: str = "classifier",
        label_field: str | None = None,
        classes: Iterable[Any] | None = None,
    ):
        self.audit = audit
        self.kind = KINDS.get(kind)
        self.label_field = label_field
        self.classes = tuple(classes) if classes is not None else None

    def record_feedback(self, request_id: str, label: Any, row: int = 0) -> FeedbackResult:
        """Store the true ``label`` of ``row`` of request ``request_id``; see the module doc.

        A repeated label for the same row replaces the earlier one (``new`` is False).
        Raises ``UnknownRecordError`` (404), ``LabelError`` (400), or ``AuditUnavailable``
        (503) while the database is unreachable.
        """
        try:
            with self.audit.transaction() as tx:
                return self.record_in(tx, request_id, row, label)
        except UnknownRecordError:
            # The record may still wait in the spool (the database was away and came back
            # before the flusher ran): flush, then look once more.
            if not self.audit.flush():
                raise
        with self.audit.transaction() as tx:
            return self.record_in(tx, request_id, row, label)

    def record_in(self, tx: Transaction, request_id: str, row: int, label: Any) -> FeedbackResult:
        """``record_feedback`` inside the caller's transaction (the review queue's resolve)."""
        found = tx.answered(request_id, lock=True)  # concurrent labels for one request take turns
        if found is None or not 0 <= row < len(found.output):
            raise UnknownRecordError(
                f"no audited answer for request {request_id!r}, row {row}"
                + (f" (it has {len(found.output)} row(s))" if found is not None else ""),
                where=self.audit.url,
                fix="use the request_id a /predict response returned "
                "and a row below its number of records",
            )
        answer = found.output[row]
        predicted = predicted_label(answer.get("prediction"), self.kind, self.label_field)
        label = self.label(label, predicted, where=f"feedback for request {request_id}, row {row}")
        score = self.kind.score(label, predicted)
        new = tx.write_label(
            request_id,
            row,
            model_version=found.model_version,
            source=answer.get("source"),
            kind=self.kind.name,
            label=label,
            score=score,
        )
        return FeedbackResult(request_id, row, found.model_version, new, score, label)

    def label(self, label: Any, predicted: Any, where: str) -> Any:
        """``label`` as it is stored (see the module doc), or ``LabelError`` saying why not."""
        stored = self.kind.label(label, predicted, self.classes)
        if isinstance(stored, _Refused):
            fix = (
                f"send one of {listed(self.classes)}"
                if self.classes is not None and self.kind.name == "classifier"
                else f"send a label of the type this {self.kind.name} predicts"
            )
            raise LabelError(stored.why, where=where, fix=fix)
        return stored

    def quality(self, model_version: str) -> dict[str, Any]:
        """``{"kind", "metric", "value", "n"}`` over the labelled rows ``model_version``
        answered: accuracy for a classifier, MAE for a regressor; ``value`` is None at n=0."""
        with self.audit.transaction(readonly=True) as tx:
            n, value = tx.scores(model_version, self.kind.name)
        return {"kind": self.kind.name, "metric": self.kind.metric, "value": value, "n": n}


# -- export -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    """What ``export_feedback`` wrote: where, how many labelled rows, which format."""

    path: Path
    rows: int
    format: str


@dataclass(frozen=True)
class Writer:
    """Writes a data frame in one file format; ``needs`` any one of these modules."""

    write: Callable[[pd.DataFrame, Path], None]
    needs: tuple[str, ...] = ()

    def check(self, path: Path) -> None:
        """Refuse early, before any database work, when the format's library is missing."""
        if self.needs and not any(importlib.util.find_spec(m) for m in self.needs):
            raise UsageError(
                f"writing {path.suffix} needs {' or '.join(self.needs)}, which is not installed",
                where=str(path),
                fix=f"pip install {self.needs[0]}, or export to a .csv path",
            )


WRITERS = {  # by file extension
    ".csv": Writer(lambda frame, path: frame.to_csv(path, index=False)),
    ".parquet": Writer(
        lambda frame, path: frame.to_parquet(path, index=False), needs=("pyarrow", "fastparquet")
    ),
}


def export_feedback(
    url: str | None,
    name: str,
    out_path: str | Path,
    *,
    table_prefix: str = "nb2prod_",
    label_column: str = "label",
) -> ExportResult:
    """Write model ``name``'s labelled inputs (every version) to ``out_path``.

    ``url`` None: ``$NB2PROD_AUDIT_URL``, else the database ``name``'s services write by
    default (``audit.home_url``). One row per labelled answer, oldest first: the audited
    input columns (PII as stored: hashed or absent) plus ``label_column``. The format
    follows the extension: ``.csv``, or ``.parquet`` when pyarrow (or fastparquet) is
    installed.
    """
    out = Path(out_path)
    writer = WRITERS.get(out.suffix.lower())
    if writer is None:
        raise UsageError(
            f"cannot write {out.suffix or 'files without an extension'}",
            where=str(out),
            fix=f"end the path with one of {sorted(WRITERS)}",
        )
    writer.check(out)
    audit = AuditLog.open(url, model_version=name, table_prefix=table_prefix, flush_interval=None)
    try:
        with audit.transaction(readonly=True) as tx:
            rows = tx.labelled_inputs(name)
    finally:
        audit.close()
    frame = pd.DataFrame([record for record, _ in rows])
    if label_column in frame.columns:
        raise UsageError(
            f"the inputs already have a column {label_column!r}",
            where=str(out),
            fix="pass another label_column",
        )
    frame[label_column] = [label for _, label in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    writer.write(frame, out)
    return ExportResult(out, len(rows), out.suffix.lower().lstrip("."))
