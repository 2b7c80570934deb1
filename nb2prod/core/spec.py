"""Frozen records that describe a notebook's production contract.

Markers produce ``MarkerSpec``; ``save_model`` writes a ``Contract``; the build and the
served runtime read them back. They are plain data: no behaviour beyond (de)serialising.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("model", "fallback", "guardrail", "check")
# reject: the request is refused (422); fallback: the row is answered by the fallback
# (reason "check"); warn: the model answers and the row carries a warning.
SEVERITIES = ("reject", "fallback", "warn")


@dataclass(frozen=True)
class MarkerSpec:
    """What a marker attached to a function: its kind, name and options."""

    kind: str
    name: str
    severity: str | None = None


@dataclass(frozen=True)
class Threshold:
    """One gate entry: the metric must be ``at_least`` or ``at_most`` ``value``."""

    value: float
    direction: str = "at_least"

    def passes(self, observed: float) -> bool:
        """True when ``observed`` is on the right side of the threshold (inclusive)."""
        if self.direction == "at_most":
            return observed <= self.value
        return observed >= self.value

    def describe(self) -> str:
        """Readable form, e.g. ``>= 0.95``."""
        return f"{'<=' if self.direction == 'at_most' else '>='} {self.value}"


def at_most(value: float) -> Threshold:
    """Gate threshold for metrics where lower is better: ``{"rmse": at_most(55.0)}``."""
    return Threshold(float(value), "at_most")


def at_least(value: float) -> Threshold:
    """Gate threshold for metrics where higher is better (the default for a plain number)."""
    return Threshold(float(value), "at_least")


@dataclass(frozen=True)
class ColumnSpec:
    """One input column: its name, a JSON-level type, nullability and categories."""

    name: str
    dtype: str  # "float" | "integer" | "boolean" | "string" | "category" | "datetime"
    nullable: bool
    categories: tuple[Any, ...] | None = None

    @classmethod
    def from_json(cls, c: dict[str, Any]) -> "ColumnSpec":
        """Inverse of ``dataclasses.asdict``."""
        return cls(
            c["name"],
            c["dtype"],
            c["nullable"],
            tuple(c["categories"]) if c.get("categories") is not None else None,
        )


def schema_changes(old: tuple[ColumnSpec, ...], new: tuple[ColumnSpec, ...]) -> tuple[str, ...]:
    """Columns removed, added, retyped or given other categories, readable. Nullability
    is not compared: it is inferred from whichever rows the data has, and a reloaded
    service keeps the request schema it was built with."""
    before, after = {c.name: c for c in old}, {c.name: c for c in new}
    changes = [f"column {n!r} removed" for n in before if n not in after]
    changes += [f"column {n!r} added ({after[n].dtype})" for n in after if n not in before]
    for n in (n for n in before if n in after):
        if before[n].dtype != after[n].dtype:
            changes.append(f"column {n!r}: {before[n].dtype} -> {after[n].dtype}")
        elif before[n].categories != after[n].categories:
            changes.append(
                f"column {n!r}: categories {list(before[n].categories or ())} -> "
                f"{list(after[n].categories or ())}"
            )
    return tuple(changes)


@dataclass(frozen=True)
class GateResult:
    """The evaluation gate's verdict for one metric."""

    metric: str
    value: float | None
    threshold: Threshold
    passed: bool

    def describe(self) -> str:
        """``roc_auc = 0.93, needs >= 0.95``."""
        shown = "missing" if self.value is None else f"{self.value:.4g}"
        return f"{self.metric} = {shown}, needs {self.threshold.describe()}"


@dataclass(frozen=True)
class Contract:
    """Everything a model version promises its service; stored as ``contract.json``."""

    name: str
    columns: tuple[ColumnSpec, ...]
    artifact_sha256: str
    metrics: dict[str, float] = field(default_factory=dict)
    gate: tuple[GateResult, ...] = ()
    examples: tuple[dict[str, Any], ...] = ()
    expected: tuple[dict[str, Any], ...] = ()
    notebook_sha256: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    checks: int = 0  # expectations in the stored suite.json
    unsupported: tuple[str, ...] = ()  # expectation types only batch validation runs
    validation: dict[str, Any] = field(default_factory=dict)  # {"success", "failed": {sev: n}}
    timeout_s: float | None = 2.0  # the model call's deadline; None: no deadline
    min_confidence: float | None = None  # rows whose "confidence" is lower are not trusted
    low_confidence: str = "fallback"  # or "review": returned as pending_review
    pii: dict[str, str] = field(default_factory=dict)  # column -> "hash" | "drop"
    cost_per_call: float | None = None  # for models that call paid APIs
    # what a classifier can predict, JSON-ready (feedback labels must be one of them);
    # None: a regressor, or a version saved before classes were stored
    classes: tuple[Any, ...] | None = None
    workers: int = 1  # bentoml serve worker processes; NB2PROD_WORKERS overrides it
    code_sha256: str | None = None  # of code.py, the exported notebook code
    captured_sha256: str | None = None  # of captured.pkl, the values that code uses
    captured: tuple[dict[str, Any], ...] = ()  # per value: name, type, bytes, cell
    modules: dict[str, str] = field(default_factory=dict)  # modules/<path> -> sha256
    nb2prod_version: str = ""
    created_at: str = ""

    @property
    def gate_passed(self) -> bool:
        """True when every gate metric passed (an empty gate passes)."""
        return all(g.passed for g in self.gate)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Contract":
        """Inverse of ``to_json``."""
        cols = tuple(ColumnSpec.from_json(c) for c in data["columns"])
        gate = tuple(
            GateResult(g["metric"], g["value"], Threshold(**g["threshold"]), g["passed"])
            for g in data.get("gate", ())
        )
        rest = {k: v for k, v in data.items() if k not in ("columns", "gate")}
        rest["examples"] = tuple(rest.get("examples", ()))
        rest["expected"] = tuple(rest.get("expected", ()))
        rest["unsupported"] = tuple(rest.get("unsupported", ()))
        rest["captured"] = tuple(rest.get("captured", ()))
        if rest.get("classes") is not None:
            rest["classes"] = tuple(rest["classes"])
        return cls(columns=cols, gate=gate, **rest)
