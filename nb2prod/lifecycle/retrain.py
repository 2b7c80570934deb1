"""The retrain story: plan → run → render → judge → package → promote.

``nb2prod retrain notebook.ipynb --data new.csv`` runs the notebook again with papermill,
in a fresh kernel, exactly as ``nb2prod build`` does (the notebook itself is the training
job), and promotes the model it saves only if every judgement in ``JUDGES`` passes: its
data passes production's suite and its own checks, its input schema is production's, it
meets the notebook's gate, and it is not worse than production on its own holdout.

``--data PATH`` sets the notebook's data parameter: the parameters-cell assignment whose
line ends with ``# n2p: data``, else the one named ``data_path``. Its sha256 (of the file,
or of every file in a directory) goes into the history as the data fingerprint.

Promotion rebuilds the bento pinned to the new version, then moves the production
pointer (``registry.py``); a running service switches on ``POST /admin/reload``. Anything
that fails leaves production as it was. The run directory (``runs/<name>/<time>/`` or
``--out``) keeps the executed notebook, ``build/`` and ``report.json``/``report.md``. A
refused candidate stays in the BentoML store, noted ``rejected`` in the registry, so the
evidence survives and ``nb2prod promote --force`` can still overrule the judgement.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from nb2prod.build import execute, extract, notebook, packaging, scan
from nb2prod.build import pipeline as build
from nb2prod.build.execute import check_parameters, parameters_of
from nb2prod.core.errors import Nb2prodError, NotebookError, UsageError
from nb2prod.core.settings import ENV_CHAMPION, ENV_CHAMPION_FILE, ENV_PRODUCTION_SUITE
from nb2prod.lifecycle import promotion
from nb2prod.lifecycle.promotion import Judgement
from nb2prod.runtime import registry
from nb2prod.runtime.loading import (
    ARTIFACT,
    SUITE,
    load_version,
    sha256_of,
    verify_artifact,
)
from nb2prod.runtime.registry import NotPromoted

DATA_NAME = "data_path"
_DATA_MARK = re.compile(r"#\s*n2p:\s*data\b")


@dataclass(frozen=True)
class Plan:
    """What a retrain will do, settled before a kernel starts."""

    nb: notebook.Notebook
    name: str
    parameters: dict[str, Any]
    data: str | None
    data_sha256: str | None
    champion: str | None  # the production version when the run started
    run: Path


@dataclass
class Report:
    """The record of one retrain, written to the run directory whatever happens."""

    name: str
    notebook: str
    notebook_sha256: str
    run: str
    parameters: dict[str, Any]
    data: str | None
    data_sha256: str | None
    champion: str | None
    started_at: str
    outcome: str = "failed"  # "promoted" | "rejected" | "failed"
    candidate: str | None = None
    comparison: dict[str, Any] = field(default_factory=dict)
    judgements: list[Judgement] = field(default_factory=list)
    bento: str | None = None
    error: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``--json`` prints)."""
        return asdict(self)

    def write(self) -> None:
        """``report.json`` for machines, ``report.md`` for people."""
        run = Path(self.run)
        (run / "report.json").write_text(json.dumps(self.to_json(), indent=1) + "\n")
        (run / "report.md").write_text(
            "\n".join(
                [f"# Retrain of {self.name}: {self.outcome}", ""]
                + describe(self)
                + [
                    "",
                    f"- notebook: {self.notebook} (sha256 {self.notebook_sha256[:12]}…)",
                    f"- parameters: {json.dumps(self.parameters)}",
                    f"- data: {self.data or 'the notebook default'}"
                    + (f" (sha256 {self.data_sha256[:12]}…)" if self.data_sha256 else ""),
                    f"- started {self.started_at}, {self.seconds:.1f}s",
                ]
            )
            + "\n"
        )


def retrain(
    path: str | Path,
    parameters: dict[str, Any] | None = None,
    *,
    data: str | Path | None = None,
    out: str | Path | None = None,
    reason: str | None = None,
    tolerance: float = 0.0,
    echo: Callable[[str], None] = print,
    on_report: Callable[[Report], None] | None = None,
) -> Report:
    """Retrain ``path`` and promote the new model only if every judgement passes.

    Raises ``NotPromoted`` (exit code 3) when the candidate is refused, another
    ``Nb2prodError`` when a stage fails; production is unchanged in both cases.
    """
    progress = build.Progress(7, echo)
    nb = progress.stage("reading the notebook", notebook.read, path)
    plan = progress.stage(
        "checking parameters, data and production", _plan, nb, dict(parameters or {}), data, out
    )
    report = Report(
        plan.name,
        str(nb.path),
        nb.sha256,
        str(plan.run),
        plan.parameters,
        plan.data,
        plan.data_sha256,
        plan.champion,
        registry.now(),
    )
    # The packager's interpreters warm up while the kernel runs (which leaves a core idle).
    packager = packaging.Packager(_artifact(plan.champion))
    try:
        executed, candidate = progress.stage(
            "running the notebook in a fresh kernel (papermill, retrain mode)", _execute, plan
        )
        report.candidate = candidate
        built = progress.stage(
            "rendering the service from the code save_model exported",
            _render,
            plan,
            executed,
            candidate,
        )
        progress.stage(
            "judging: data, schema, gate, production",
            _judge,
            plan,
            candidate,
            built,
            tolerance,
            report,
            echo,
        )
        report.bento = progress.stage(
            "testing and building the bento (bentoml build)", packager.package, built
        )
        progress.stage(
            "moving the production pointer", _promote, plan, candidate, built, report.bento, reason
        )
        report.outcome = "promoted"
    except Nb2prodError as exc:
        report.outcome = "rejected" if isinstance(exc, NotPromoted) else "failed"
        report.error = str(exc)
        raise
    finally:
        packager.close()
        report.seconds = round(progress.elapsed, 2)
        report.write()
        if on_report:
            on_report(report)
    echo(
        f"promoted {report.candidate} to production of {plan.name} in {report.seconds:.1f}s"
        f"\nserve it with:  bentoml serve {report.bento}   (running services: POST "
        "/admin/reload)"
    )
    return report


def _plan(
    nb: notebook.Notebook,
    parameters: dict[str, Any],
    data: str | Path | None,
    out: str | Path | None,
) -> Plan:
    key = data_parameter(nb)
    if data is not None:
        if key is None:
            raise UsageError(
                f"{nb.path.name} has no data parameter, so --data has nowhere to go",
                where=nb.where(nb.parameters_cell) if nb.parameters_cell else None,
                fix=f"in the cell tagged 'parameters' add `{DATA_NAME} = None  "
                "# n2p: data` and load the data from it in the data cell",
            )
        if key in parameters:
            raise UsageError(f"--data and -p {key} both set the data", fix="give one of them")
        if not Path(data).exists():
            raise UsageError(f"no such data file: {data}", fix="check the path given to --data")
        parameters[key] = str(Path(data).resolve())
    check_parameters(nb, parameters)
    extract.extract(nb)  # export problems fail before a kernel is spent on them
    name = model_name(nb)
    source = parameters.get(key, parameters_of(nb).get(key, (None,))[0]) if key else None
    # papermill runs in the notebook's folder: a relative path is relative to it
    located = nb.path.parent / source if isinstance(source, str) else None
    return Plan(
        nb,
        name,
        parameters,
        str(located) if located else None,
        fingerprint(located) if located and located.exists() else None,
        registry.production(name),
        _run_dir(out, name),
    )


def data_parameter(nb: notebook.Notebook) -> str | None:
    """The parameter ``--data`` sets: the one marked ``# n2p: data``, else ``data_path``."""
    known = parameters_of(nb)
    lines = nb.parameters_cell.lines if nb.parameters_cell else []
    marked = [n for n, (_, line) in known.items() if _DATA_MARK.search(lines[line - 1])]
    return marked[0] if marked else DATA_NAME if DATA_NAME in known else None


def model_name(nb: notebook.Notebook) -> str:
    """The model name the notebook's ``save_model("name", ...)`` call saves under."""
    names = {
        call.args[0].value
        for _, call in scan.save_model_calls(nb)
        if call.args
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
    }
    if len(names) != 1:
        raise NotebookError(
            "retrain needs the model name, written as a string in one "
            f"n2p.save_model(...) call; found {sorted(names) or 'none'}",
            where=nb.path.name,
            fix='e.g. n2p.save_model("breast_cancer", model, ...)',
        )
    return names.pop()


def fingerprint(path: Path) -> str:
    """sha256 of a data file, or of every file (relative name and content) in a folder."""
    if not path.is_dir():
        return sha256_of(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path)}\0{sha256_of(item)}\n".encode())
    return digest.hexdigest()


def _run_dir(out: str | Path | None, name: str) -> Path:
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        return Path(out).resolve()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):  # two retrains started in the same second get two folders
        run = Path("runs") / name / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run.mkdir(parents=True)
            return run.resolve()
        except FileExistsError:
            continue
    raise UsageError(f"runs/{name}/{stamp}* all exist", fix="pass --out DIR")


def _execute(plan: Plan) -> tuple[notebook.Notebook, str]:
    """The papermill run, told which production version to score and validate against."""
    suite = ""
    if plan.champion:
        suite_path = load_version(plan.champion)[1] / SUITE
        suite = str(suite_path) if suite_path.exists() else ""
    env = {
        ENV_PRODUCTION_SUITE: suite,
        ENV_CHAMPION: plan.champion or "",
        ENV_CHAMPION_FILE: str(plan.run / promotion.CHAMPION_FILE),
    }
    with execute._environment(env):
        executed, saved = execute.run(
            plan.nb, plan.run / "executed.ipynb", plan.parameters, plan.run / ".saved_models.jsonl"
        )
    if not saved:
        raise NotebookError(
            "the notebook ran but n2p.save_model(...) was never called "
            "(is the call inside an if, or in a skipped cell?)",
            where=plan.nb.path.name,
            fix="call n2p.save_model(...) at the top level",
        )
    tag = saved[-1]["tag"]
    if not tag.startswith(plan.name + ":"):
        raise NotebookError(
            f"the notebook saved {tag}, not a version of {plan.name}",
            where=plan.nb.path.name,
            fix="save one model name per notebook",
        )
    return executed, tag


def _render(plan: Plan, executed: notebook.Notebook, candidate: str) -> Path:
    """The candidate's build directory, kept with the run so promote can package it later."""
    out = plan.run / "build"
    packaging.render(
        out,
        candidate,
        build.exported_code(executed, candidate),
        plan.nb.path,
        build.notebook_imports(plan.nb),
    )
    return out


def _judge(
    plan: Plan,
    candidate: str,
    built: Path,
    tolerance: float,
    report: Report,
    echo: Callable[[str], None],
) -> None:
    scored = promotion.champion_scores(plan.run)
    verdict = promotion.judge(candidate, plan.champion, scored, tolerance)
    report.judgements = list(verdict)
    report.comparison = promotion.comparison(candidate, plan.champion, scored)
    failed = [j for j in verdict if not j.passed]
    registry.note(
        plan.name,
        candidate,
        status="rejected" if failed else "candidate",
        reasons=[f"{j.check}: {'; '.join(j.details)}" for j in failed],
        run=str(plan.run),
        build=str(built),
        champion=scored,
        data=plan.data,
        data_sha256=plan.data_sha256,
        at=registry.now(),
    )
    for line in describe(report):
        echo(f"      {line}")
    if failed:
        raise promotion.refusal(candidate, plan.champion, verdict, str(plan.run / "report.md"))


def _artifact(tag: str | None) -> Path | None:
    """The model file of ``tag``, if there is one and it has its pinned sha256 (it is
    unpickled)."""
    if tag is None:
        return None
    try:
        contract, path = load_version(tag)
        verify_artifact(path, contract.artifact_sha256)
    except Nb2prodError:
        return None
    return path / ARTIFACT


def _promote(plan: Plan, candidate: str, built: Path, bento: str, reason: str | None) -> None:
    move = registry.promotion_to(
        candidate,
        reason=reason,
        bento=bento,
        code_sha256=packaging.code_sha256(built),
        notebook_sha256=plan.nb.sha256,
        parameters=plan.parameters,
        data=plan.data,
        data_sha256=plan.data_sha256,
        run=str(plan.run),
    )
    promotion.move_pointer(plan.name, move, plan.champion)


def describe(report: Report) -> list[str]:
    """The side-by-side metrics and each judgement, as lines for a person."""
    lines = promotion.format_comparison(report.comparison)
    lines += promotion.format_judgements(report.judgements)
    if report.error and report.outcome == "failed":
        lines.append(f"FAIL {report.error.splitlines()[0]}")
    return lines
