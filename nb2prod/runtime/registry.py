"""Which model version is in production, and how it got there: one small file per model.

``$BENTOML_HOME/nb2prod/<name>/registry.json`` lives next to BentoML's model store, so a
retrain job and the services that reload from it need one shared volume, not two::

    {"name": "breast_cancer", "production": "breast_cancer:v3",
     "history": [{"version": "breast_cancer:v1", "action": "promote", ...}, ...],
     "notes": {"breast_cancer:v4": {"status": "rejected", "reasons": [...], ...}}}

``history`` is every move of the pointer, oldest first (``Promotion``: version, bento,
time, user, reason, metrics, notebook sha256, parameters, data sha256); the last entry
is production. ``notes`` records what retrain concluded about versions it did not promote.

Every change is a read-modify-write under an exclusive ``flock`` on ``registry.lock``,
so two retrains cannot lose each other's update, and is written to a temporary file that
is fsynced and then ``os.replace``d over the old one: a crash at any point leaves the old
file or the new one, never a torn one. Readers take no lock.

In the notebook, ``score_champion(evaluate)`` scores the production model with the
notebook's own evaluation on the candidate's holdout (see its docstring).
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from nb2prod.core import settings
from nb2prod.core.errors import GateError, ModelStoreError
from nb2prod.runtime import store
from nb2prod.runtime.store import home

FILE = "registry.json"
LOCK = "registry.lock"
# Set by ``nb2prod retrain`` for the papermill kernel: the production version to score,
# and the file score_champion writes its metrics to.


class NotPromoted(GateError):
    """A version was judged and refused; production is unchanged.

    Exit code 3, so a scheduler can tell "no better model today" from "the job broke" (1).
    """

    exit_code = 3


class ProductionMoved(NotPromoted):
    """Production changed between judging a version and moving the pointer to it."""


@dataclass(frozen=True)
class Promotion:
    """One move of the production pointer, a promotion or a rollback, with its lineage."""

    version: str
    action: str  # "promote" | "rollback"
    at: str
    user: str
    reason: str | None = None
    replaced: str | None = None  # the production version before this one
    bento: str | None = None  # the bento built pinned to ``version``
    code_sha256: str | None = None  # of that bento's exported notebook code
    artifact_sha256: str | None = None  # of the model file: a reload loads only this file
    metrics: dict[str, float] = field(default_factory=dict)
    notebook_sha256: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    data_sha256: str | None = None
    run: str | None = None  # the retrain run directory, if a retrain made it
    forced: bool = False  # promoted with --force over a failed judgement


def now() -> str:
    """The time a move or a note is stamped with: UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def promotion_to(
    tag: str, *, reason: str | None, bento: str, code_sha256: str, **lineage: Any
) -> Promotion:
    """A promotion of ``tag`` made now by this user, with the pins its contract records
    (a reload checks them); ``lineage`` adds or overrides fields (data, run, forced...)."""
    from nb2prod.runtime.loading import load_version  # BentoML: only when a move is made

    contract, _ = load_version(tag)
    recorded: dict[str, Any] = {
        "artifact_sha256": contract.artifact_sha256,
        "metrics": contract.metrics,
        "notebook_sha256": contract.notebook_sha256,
        "parameters": contract.parameters,
    }
    return Promotion(
        version=tag,
        action="promote",
        at=now(),
        user=getpass.getuser(),
        reason=reason,
        bento=bento,
        code_sha256=code_sha256,
        **{**recorded, **lineage},
    )


@dataclass(frozen=True)
class Registry:
    """One model name's history and notes, as stored; ``production`` is the last move."""

    name: str
    history: tuple[Promotion, ...] = ()
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def production(self) -> Promotion | None:
        """The current production version's record, or None before the first promotion."""
        return self.history[-1] if self.history else None

    def status(self, version: str) -> str:
        """``production``, ``previous`` (was production), ``rejected`` or ``candidate``."""
        if self.production and version == self.production.version:
            return "production"
        if any(p.version == version for p in self.history):
            return "previous"
        return self.notes.get(version, {}).get("status", "candidate")

    def rollback_target(self) -> Promotion | None:
        """The version production had before the current one was promoted.

        Promotions push onto a stack and rollbacks pop it, so rolling back twice goes two
        versions back rather than undoing the first rollback.
        """
        stack: list[Promotion] = []
        for move in self.history:
            if move.action == "rollback" and stack:
                stack.pop()
                stack[-1:] = [move]
            else:
                stack.append(move)
        return stack[-2] if len(stack) > 1 else None

    def to_json(self) -> dict[str, Any]:
        """The stored form (``production`` repeated at the top for readers in a hurry)."""
        return {
            "name": self.name,
            "production": self.production.version if self.production else None,
            "history": [asdict(p) for p in self.history],
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Registry":
        """Inverse of ``to_json``; unknown keys in a history entry are ignored."""
        known = {f.name for f in fields(Promotion)}
        history = tuple(
            Promotion(**{k: v for k, v in p.items() if k in known}) for p in data.get("history", ())
        )
        return cls(data["name"], history, dict(data.get("notes", {})))


def read(name: str) -> Registry:
    """The registry of ``name`` as last written (empty when nothing was ever promoted)."""
    path = home(name) / FILE
    try:
        return Registry.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return Registry(name)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelStoreError(
            f"{path} is not a readable registry ({exc})",
            fix="restore it from a backup: nb2prod replaces it atomically, "
            "so something else wrote to it",
        ) from None


def production(name: str) -> str | None:
    """The production model tag of ``name`` (e.g. ``breast_cancer:v3``), or None.

    This is what a running service's ``POST /admin/reload`` asks for.
    """
    current = read(name).production
    return current.version if current else None


@contextmanager
def _locked(name: str) -> Iterator[Path]:
    folder = home(name)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a") as lock:
        # released when the file is closed, including by the kernel when we crash
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder


def change(name: str, edit: Callable[[Registry], Registry]) -> Registry:
    """Apply ``edit`` to the current registry under the lock and store the result."""
    with _locked(name) as folder:
        new = edit(read(name))
        _write(folder / FILE, json.dumps(new.to_json(), indent=1) + "\n")
    return new


def _write(path: Path, text: str) -> None:
    # Only the lock holder writes, so a temporary file found here was left by a crash.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # make the rename itself durable
    finally:
        os.close(folder)


def promote(name: str, move: Promotion, expected: str | None) -> Registry:
    """Make ``move.version`` production, if production is still ``expected``.

    The check and the move happen under one lock (compare-and-swap): a version judged
    against one production never replaces another. Raises ``ProductionMoved`` otherwise.
    """

    def edit(registry: Registry) -> Registry:
        current = registry.production.version if registry.production else None
        if current != expected:
            raise ProductionMoved(
                f"production of {name} moved from {expected or 'none'} to {current or 'none'} "
                f"while {move.version} was being judged; it was not promoted",
                fix=f"retrain again, or `nb2prod promote {name} {move.version}` to judge it "
                "against the new production",
            )
        return replace(registry, history=registry.history + (replace(move, replaced=current),))

    return change(name, edit)


def note(name: str, version: str, **facts: Any) -> Registry:
    """Record what was concluded about ``version`` (``status``, ``reasons``, ``run``...)."""
    return change(name, lambda r: replace(r, notes={**r.notes, version: facts}))


def score_champion(evaluate: Callable[[Any], Mapping[str, float]]) -> dict[str, float] | None:
    """Score the production model with the notebook's own ``evaluate``, under retrain.

    Call it in the evaluation cell, next to the candidate's own scoring::

        def evaluate(model):
            proba = model.predict_proba(X_test)[:, 1]
            return {"roc_auc": roc_auc_score(y_test, proba)}

        scores = evaluate(model)
        score_champion(evaluate)

    Under ``nb2prod retrain`` (which names the production version in ``NB2PROD_CHAMPION``)
    this loads that version, sha256-checked, calls ``evaluate`` on it and hands the
    metrics to retrain: champion and challenger are scored on the same holdout by the
    same code, and the training code still exists once. Elsewhere (in Jupyter, under
    ``nb2prod build``) it does nothing and returns None, so a build never depends on what
    is in production. A champion that cannot be scored (its inputs changed, say) is
    reported to retrain, never raised into the candidate's run.
    """
    tag = settings.current().champion
    if not tag:
        return None
    from nb2prod.runtime.loading import load_model, load_version

    try:
        contract, path = load_version(tag)
        scored = evaluate(load_model(path, contract.artifact_sha256))  # its own code too
        floats = {k: float(v) for k, v in scored.items()}
        metrics: dict[str, float] | None = floats
        found: dict[str, Any] = {"version": tag, "metrics": floats}
        print(
            f"nb2prod: production {tag} on this holdout: "
            + ", ".join(f"{k} = {v:.4g}" for k, v in floats.items())
        )
    except Exception as exc:  # the candidate's run must not fail because of production
        metrics, found = None, {"version": tag, "error": f"{type(exc).__name__}: {exc}"}
        print(f"nb2prod: production {tag} could not be scored on this holdout: {found['error']}")
    champion_file = settings.current().champion_file
    if champion_file:
        Path(champion_file).write_text(json.dumps(found))
    return metrics


@dataclass(frozen=True)
class Version:
    """One stored model version as ``nb2prod models`` lists it."""

    version: str
    created_at: str
    status: str
    metrics: dict[str, float]
    gate_passed: bool
    reasons: tuple[str, ...] = ()


def versions(name: str) -> list[Version]:
    """Every version of ``name`` in the BentoML store, oldest first, with its status."""
    import bentoml
    from bentoml.exceptions import NotFound

    from nb2prod.runtime.loading import load_version

    registry = read(name)
    try:
        stored = sorted(store.listed(name), key=lambda m: m.creation_time)
    except NotFound:
        stored = []
    if not stored:
        known = sorted({m.tag.name for m in bentoml.models.list()})
        raise ModelStoreError(
            f"no model versions named {name!r} in the BentoML store "
            f"({os.environ.get('BENTOML_HOME', '~/bentoml')})",
            fix=f"known names: {', '.join(known) or 'none'}; save one "
            "with nb2prod build or nb2prod retrain",
        )
    rows = []
    for model in stored:
        tag = str(model.tag)
        try:
            contract, _ = load_version(tag)
        except ModelStoreError:
            continue  # not saved by nb2prod: nothing to judge it by
        rows.append(
            Version(
                tag,
                contract.created_at,
                registry.status(tag),
                contract.metrics,
                contract.gate_passed,
                tuple(registry.notes.get(tag, {}).get("reasons", ())),
            )
        )
    return rows
