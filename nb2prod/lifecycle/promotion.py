"""What a model version must pass to become production, and the moves that make it so.

``JUDGES`` is the registry of judgements, one small function each, used alike by
``nb2prod retrain`` and ``nb2prod promote``. Every judgement runs, so a refusal lists all
its reasons at once:

- the data the version was trained on passes production's suite (real GE, run inside
  ``save_model`` under retrain) and its own reject-level checks;
- its input schema (``contract.columns``: names, types, categories) is production's,
  because a running service can reload a model, not a new request schema;
- it meets the notebook's gate;
- it is not worse than production on each gate metric, beyond ``tolerance`` (absolute,
  in the metric's unit; the gate's direction says which way is worse). Production is
  scored on the candidate's holdout by the notebook's own ``score_champion(evaluate)``;
  a notebook without it is compared with production's stored metrics, measured on
  production's own holdout, and the report says so.

A move (promote, rollback) first builds and tests the bento pinned to the version
(``packaging.py``), then moves the pointer (``registry.promote``): a failure before the
move leaves production as it was; a bento built for a move that did not happen is deleted.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from nb2prod.build import packaging
from nb2prod.build import pipeline as build
from nb2prod.checks import validation
from nb2prod.core.errors import UsageError
from nb2prod.core.spec import Contract, schema_changes
from nb2prod.runtime import registry
from nb2prod.runtime.loading import load_version
from nb2prod.runtime.registry import NotPromoted, Promotion

CHAMPION_FILE = "champion.json"  # what score_champion found, in the retrain run directory
OWN_HOLDOUT = (
    "its own holdout (stored metrics; add score_champion(evaluate) to compare on the same data)"
)


@dataclass(frozen=True)
class Judgement:
    """One judgement of a version: what was checked, the verdict, what a person must see."""

    check: str
    passed: bool
    details: tuple[str, ...] = ()
    fix: str | None = None


@dataclass(frozen=True)
class Case:
    """A version to judge, with production (None before the first promotion)."""

    candidate: Contract
    path: Path
    champion: Contract | None
    production_metrics: dict[str, float]
    scored_on: str
    tolerance: float
    note: str | None = None  # why production could not be scored on the candidate's holdout


def _production_suite(case: Case) -> Judgement:
    report = validation.read(case.path, "validation-production")
    if case.champion is None or report is None:
        return Judgement(
            "data vs. production's checks", True, ("no production suite to check against",)
        )
    failed = tuple(_short(line) for line in validation.failures(report, "reject"))
    return Judgement("data vs. production's checks", not failed, failed, _data_fix(case.path))


def _own_checks(case: Case) -> Judgement:
    report = validation.read(case.path)
    failed = tuple(_short(line) for line in validation.failures(report, "reject")) if report else ()
    return Judgement("data vs. its own checks", not failed, failed, _data_fix(case.path))


def _data_fix(path: Path) -> str:
    return (
        f"fix the data, or the check if the world changed; the full reports are "
        f"{validation.REPORT_HTML} and validation-production.html in {path}"
    )


def _schema(case: Case) -> Judgement:
    if case.champion is None:
        return Judgement("input schema", True, ("no production schema to compare with",))
    changes = schema_changes(case.champion.columns, case.candidate.columns)
    return Judgement(
        "input schema",
        not changes,
        changes,
        "new inputs make a new service, not a new model: run `nb2prod build` on the "
        "notebook, deploy that bento, then `nb2prod promote NAME VERSION --force`",
    )


def _gate(case: Case) -> Judgement:
    failed = tuple(g.describe() for g in case.candidate.gate if not g.passed)
    return Judgement(
        "the notebook's gate",
        not failed,
        failed,
        "improve the model, or change gate=... in save_model if the threshold is wrong",
    )


def _not_worse(case: Case) -> Judgement:
    if case.champion is None:
        return Judgement("not worse than production", True, ("no production yet",))
    details, worse = [case.note] if case.note else [], False
    for g in case.candidate.gate:
        theirs = case.production_metrics.get(g.metric)
        if theirs is None or g.value is None:
            details.append(f"{g.metric}: production has no value to compare with")
            continue
        lower_is_better = g.threshold.direction == "at_most"
        margin = (theirs - g.value) if lower_is_better else (g.value - theirs)
        worse = worse or margin < -case.tolerance
        verdict = (
            "better"
            if margin > 0
            else "equal"
            if margin == 0
            else (
                f"worse by {-margin:.4g}"
                + (" (within tolerance)" if margin >= -case.tolerance else "")
            )
        )
        details.append(f"{g.metric} {g.value:.4g} vs. {theirs:.4g}: {verdict}")
    if not case.candidate.gate:
        details.append("the gate names no metric, so nothing is compared")
    return Judgement(
        "not worse than production",
        not worse,
        (*details, f"production scored on {case.scored_on}, tolerance {case.tolerance:g}"),
        "keep production, or pass --tolerance if the difference is noise",
    )


JUDGES: tuple[Callable[[Case], Judgement], ...] = (
    _production_suite,
    _own_checks,
    _schema,
    _gate,
    _not_worse,
)


def _short(text: str, limit: int = 160) -> str:
    """First line, cut at ``limit``: a judgement names the problem, the report has it all."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def case_of(
    candidate: str, champion: str | None, scored: dict[str, Any] | None, tolerance: float
) -> Case:
    """Load both contracts; take production's metrics on the candidate's holdout when
    ``scored`` (what score_champion wrote) is about this production, else its stored ones."""
    contract, path = load_version(candidate)
    if champion is None:
        return Case(contract, path, None, {}, "", tolerance)
    theirs, _ = load_version(champion)
    if scored and scored.get("version") == champion and "metrics" in scored:
        return Case(contract, path, theirs, scored["metrics"], "the candidate's holdout", tolerance)
    note = (
        f"production could not be scored on the candidate's holdout ({_short(scored['error'])})"
        if scored and scored.get("version") == champion and "error" in scored
        else None
    )
    return Case(contract, path, theirs, theirs.metrics, OWN_HOLDOUT, tolerance, note)


def judge(
    candidate: str, champion: str | None, scored: dict[str, Any] | None, tolerance: float = 0.0
) -> tuple[Judgement, ...]:
    """Every judgement in ``JUDGES`` of ``candidate`` against production ``champion``."""
    case = case_of(candidate, champion, scored, tolerance)
    return tuple(check(case) for check in JUDGES)


def champion_scores(run: Path) -> dict[str, Any] | None:
    """What score_champion wrote during a retrain run, or None if the notebook never called it."""
    path = run / CHAMPION_FILE
    return json.loads(path.read_text()) if path.exists() else None


def comparison(
    candidate: str, champion: str | None, scored: dict[str, Any] | None
) -> dict[str, Any]:
    """Candidate and production metrics side by side, with where production was scored."""
    case = case_of(candidate, champion, scored, 0.0)
    names = list(dict.fromkeys([*case.candidate.metrics, *case.production_metrics]))
    return {
        "candidate": candidate,
        "production": champion,
        "production_scored_on": case.scored_on or None,
        "rows": [
            {
                "metric": n,
                "candidate": case.candidate.metrics.get(n),
                "production": case.production_metrics.get(n),
            }
            for n in names
        ],
    }


def format_comparison(table: dict[str, Any]) -> list[str]:
    """``metric  candidate  production`` lines (production's column only when there is one)."""
    if not table or not table.get("rows"):
        return []
    show = lambda v: "-" if v is None else f"{v:.4f}"
    lines = [
        f"{'metric':<14}{'candidate':>12}" + (f"{'production':>12}" if table["production"] else "")
    ]
    for row in table["rows"]:
        lines.append(
            f"{row['metric']:<14}{show(row['candidate']):>12}"
            + (f"{show(row['production']):>12}" if table["production"] else "")
        )
    if table["production"]:
        lines.append(
            f"(candidate {table['candidate']}; production {table['production']}, "
            f"scored on {table['production_scored_on']})"
        )
    return lines


def format_judgements(verdict: tuple[Judgement, ...] | list[Judgement]) -> list[str]:
    """One ``ok``/``FAIL`` line per judgement."""
    return [
        f"{'ok  ' if j.passed else 'FAIL'} {j.check}"
        + (f": {'; '.join(j.details)}" if j.details else "")
        for j in verdict
    ]


def refusal(
    version: str, champion: str | None, verdict: tuple[Judgement, ...], where: str | None = None
) -> NotPromoted:
    """The error for a version that failed judgements, listing each one and its fix."""
    failed = [j for j in verdict if not j.passed]
    return NotPromoted(
        f"{version} is not promoted; production stays {champion or 'empty'}:\n"
        + "\n".join(f"  - {j.check}: {'; '.join(j.details)}" for j in failed),
        where=where,
        fix=" / ".join(dict.fromkeys(j.fix for j in failed if j.fix)),
    )


def move_pointer(name: str, move: Promotion, expected: str | None) -> Promotion:
    """``registry.promote``, deleting the bento built for it if production moved meanwhile;
    returns the move as stored."""
    try:
        return registry.promote(name, move, expected).history[-1]
    except registry.ProductionMoved:
        if move.bento:
            packaging.delete_bento(move.bento)
        raise


def promote(
    name: str,
    version: str,
    *,
    force: bool = False,
    reason: str | None = None,
    tolerance: float = 0.0,
    echo: Callable[[str], None] = print,
) -> Promotion:
    """Make ``version`` production of ``name``: the retrain judgements (``--force``
    overrules them), a tested bento rebuilt pinned to it, then the pointer moved.

    Production is judged on the version's own holdout when its retrain scored this same
    production there; otherwise the stored metrics are compared (and the report says so).
    """
    progress = build.Progress(3, echo)
    tag = _tag(name, version)
    known = registry.read(name)
    champion = known.production.version if known.production else None
    if tag == champion:
        raise UsageError(f"{tag} is already production of {name}", fix=f"see nb2prod models {name}")
    noted = known.notes.get(tag, {})
    verdict = progress.stage(
        f"judging {tag} against production {champion or '(none)'}",
        judge,
        tag,
        champion,
        noted.get("champion"),
        tolerance,
    )
    for line in format_comparison(
        comparison(tag, champion, noted.get("champion"))
    ) + format_judgements(verdict):
        echo(f"      {line}")
    failed = not all(j.passed for j in verdict)
    if failed and not force:
        raise refusal(tag, champion, verdict)
    bento, code = progress.stage(
        f"testing and building a bento pinned to {tag}",
        packaging.rebuild,
        name,
        tag,
        noted.get("build"),
    )
    move = registry.promotion_to(
        tag,
        reason=reason,
        bento=bento,
        code_sha256=code,
        data=noted.get("data"),
        data_sha256=noted.get("data_sha256"),
        run=noted.get("run"),
        forced=failed,
    )
    move = progress.stage("moving the production pointer", move_pointer, name, move, champion)
    echo(
        f"{tag} is production of {name}"
        + (" (forced over failed judgements)" if failed else "")
        + f"\nserve it with:  bentoml serve {bento}   (running services: POST /admin/reload)"
    )
    return move


def rollback(
    name: str, *, reason: str | None = None, echo: Callable[[str], None] = print
) -> Promotion:
    """Make the version production had before the current one production again, with a
    bento rebuilt pinned to it. No judgement: it was production before."""
    progress = build.Progress(2, echo)
    known = registry.read(name)
    if known.production is None:
        raise UsageError(
            f"{name} has no production version, so there is nothing to roll back",
            fix=f"see `nb2prod models {name}`; promote one with `nb2prod promote {name} VERSION`",
        )
    current, target = known.production.version, known.rollback_target()
    if target is None:
        raise UsageError(
            f"{name} had no production version before {current}, so there is "
            "nothing to roll back to",
            fix=f"promote another version instead: `nb2prod promote {name} VERSION`",
        )
    bento, code = progress.stage(
        f"testing and building a bento pinned to {target.version}",
        packaging.rebuild,
        name,
        target.version,
        known.notes.get(target.version, {}).get("build"),
    )
    contract, _ = load_version(target.version)
    move = replace(
        target,
        action="rollback",
        at=registry.now(),
        user=getpass.getuser(),
        reason=reason,
        bento=bento,
        code_sha256=code,
        artifact_sha256=contract.artifact_sha256,
        forced=False,
    )
    move = progress.stage(
        f"moving the production pointer back from {current}", move_pointer, name, move, current
    )
    echo(
        f"rolled {name} back from {current} to {target.version}\nserve it with:  "
        f"bentoml serve {bento}   (running services: POST /admin/reload)"
    )
    return move


def _tag(name: str, version: str) -> str:
    """``v3`` or ``name:v3`` (or ``name:latest``) as the stored tag; a clear error if absent."""
    tag = version if ":" in version else f"{name}:{version}"
    if tag.split(":", 1)[0] != name:
        raise UsageError(f"{version} is not a version of {name}", fix=f"see nb2prod models {name}")
    return f"{name}:{load_version(tag)[1].name}"  # the store's folder is the version


def format_versions(rows: list[registry.Version]) -> list[str]:
    """``nb2prod models`` as lines: version, status, gate, metrics, why it was refused."""
    lines = []
    for row in rows:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in row.metrics.items())
        gate = "gate ok" if row.gate_passed else "gate FAILED"
        lines.append(f"{row.version:<40}{row.status:<11}{gate:<12}{metrics}")
        lines += [f"    {reason}" for reason in row.reasons]
    return lines
