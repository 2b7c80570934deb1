"""The build story: read → check → execute → extract → render → verify → package → register.

Each stage is one named function call; ``build`` reads top to bottom like the list above.
The first build of a model name makes its version production (registry history: "first
build"), so the first deployment is what ``nb2prod models`` and ``POST /admin/reload``
call production; later builds are candidates until ``nb2prod promote``.
"""

from __future__ import annotations

import ast
import getpass
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

from . import __version__, execute, extract, notebook, registry, scan, validation
from .errors import BuildError, GateError, NotebookError
from .render import class_name, pinned_packages, render
from .runtime.pii import MIN_SALT, SALT_ENV
from .runtime.loading import CODE
from .store import load_version

T = TypeVar("T")


@dataclass(frozen=True)
class BuildResult:
    """What a successful build produced."""

    out: Path
    model_tag: str
    bento_tag: str
    seconds: float
    production: str | None = None  # the name's production version after the build


class Progress:
    """Prints one line per stage with its duration; ``quiet`` silences it."""

    def __init__(self, total: int, echo: Callable[[str], None] = print):
        self.total, self.done, self.echo = total, 0, echo
        self.started = time.perf_counter()

    def stage(self, title: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one stage, printing ``[n/total] title … 1.2s``."""
        self.done += 1
        t0 = time.perf_counter()
        self.echo(f"[{self.done}/{self.total}] {title} …")
        result = fn(*args, **kwargs)
        self.echo(f"      done in {time.perf_counter() - t0:.1f}s")
        return result

    @property
    def elapsed(self) -> float:
        """Seconds since the build started."""
        return time.perf_counter() - self.started


def build(path: str | Path, out: str | Path | None = None,
          parameters: dict[str, Any] | None = None,
          echo: Callable[[str], None] = print) -> BuildResult:
    """Build ``path`` into a tested bento; raise an ``Nb2prodError`` saying what failed."""
    parameters = parameters or {}
    progress = Progress(8, echo)
    nb = progress.stage("reading the notebook", notebook.read, path)
    progress.stage("checking markers and exported code", _check, nb, parameters)
    out = Path(out) if out else Path("build") / nb.path.stem
    out.mkdir(parents=True, exist_ok=True)
    executed, saved = progress.stage("running the notebook in a fresh kernel (papermill)",
                                     execute.run, nb, out.resolve() / "executed.ipynb",
                                     parameters, out.resolve() / ".saved_models.jsonl")
    model_tag = _model_from(nb, saved)
    progress.stage("checking the reference data against the input contract",
                   _check_reference, nb, model_tag, out, echo)
    exported = progress.stage("collecting the code and values save_model exported",
                              exported_code, executed, model_tag, echo)
    progress.stage("rendering the service", _render, nb, out, model_tag, exported)
    progress.stage("running the generated tests", _verify, out)
    bento_tag = progress.stage("building the bento (bentoml build)", _package, out)
    _finish_manifest(out, bento_tag)
    production = _register(out, model_tag, bento_tag)
    for line in _closing(model_tag, bento_tag, production, progress.elapsed):
        echo(line)
    return BuildResult(out, model_tag, bento_tag, progress.elapsed, production)


def _check(nb: notebook.Notebook, parameters: dict[str, Any]) -> None:
    execute.check_parameters(nb, parameters)  # the same refusals as retrain: names, types
    extract.extract(nb)  # fail on export problems before spending a kernel run


def _model_from(nb: notebook.Notebook, saved: list[dict[str, Any]]) -> str:
    if not saved:
        raise NotebookError("the notebook ran but n2p.save_model(...) was never called "
                            "(is the call inside an if, or in a skipped cell?)",
                            where=nb.path.name, fix="call n2p.save_model(...) at the top level")
    tag = saved[-1]["tag"]
    contract, _ = load_version(tag)
    failed = [g.describe() for g in contract.gate if not g.passed]
    if failed:
        raise GateError(f"model {tag} does not meet its gate: {'; '.join(failed)}",
                        where=nb.path.name,
                        fix="improve the model, or change gate=... in save_model if the "
                            "threshold is wrong")
    return tag


def _check_reference(nb: notebook.Notebook, model_tag: str, out: Path,
                     echo: Callable[[str], None]) -> None:
    """save_model validated the reference data (real GE, in the kernel): enforce its verdict."""
    contract, path = load_version(model_tag)
    report = validation.read(path)
    if report is None:
        return
    shutil.copyfile(path / validation.REPORT_HTML, out / validation.REPORT_HTML)
    for severity in ("fallback", "warn"):
        for line in validation.failures(report, severity):
            echo(f"      {severity}: {line}")
    if contract.unsupported:
        echo(f"      warning: {', '.join(contract.unsupported)} cannot be compiled for "
             "requests; they run only when whole data sets are validated")
    rejected = validation.failures(report, "reject")
    if rejected:
        raise BuildError("the reference data fails reject-level checks:\n"
                         + "\n".join(f"  - {line}" for line in rejected),
                         where=f"{nb.path.name}: save_model(reference=...)",
                         fix=f"fix the data or the check; the full report is "
                             f"{out / validation.REPORT_HTML}")


def exported_code(executed: notebook.Notebook, model_tag: str,
                  echo: Callable[[str], None] = print) -> extract.Exported:
    """The code ``save_model`` sliced from the run and stored with the version, and the
    values it captured, each named with its type, size and cell."""
    contract, path = load_version(model_tag)
    if not (path / CODE).exists():
        raise BuildError(f"model {model_tag} was saved without its notebook code",
                         where=executed.path.name, fix="save it from the notebook with "
                         "n2p.save_model(...), not from a script or another module")
    for value in contract.captured:
        echo(f"      captured {value['name']} ({value['type']}, {value['bytes']:,} bytes, "
             f"from {value['cell']})")
    for module in contract.modules:
        echo(f"      with {module} (beside the notebook)")
    return extract.Exported((path / CODE).read_text(), scan.marked_kinds(executed),
                            captured={v["name"]: v["cell"] for v in contract.captured})


def _render(nb: notebook.Notebook, out: Path, model_tag: str,
            exported: extract.Exported) -> None:
    contract, _ = load_version(model_tag)
    name = contract.name
    context = {
        "name": name, "class_name": class_name(name), "notebook": nb.path.name,
        "notebook_sha256": nb.sha256, "model_tag": model_tag,
        "model_sha256": contract.artifact_sha256, "version": __version__,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # The whole notebook's imports, not just the exported code's: the bento's image
        # can then run `nb2prod retrain` on the notebook too (README: scheduling).
        "packages": pinned_packages(_imported_modules(exported.source) + [
            m for cell in nb.run_cells if cell.tree for m in _imported_modules(cell.tree)]),
    }
    render(out, context, exported.source)
    manifest = {
        "name": name, "class_name": context["class_name"], "model_tag": model_tag,
        "model_sha256": contract.artifact_sha256, "notebook": str(nb.path),
        "notebook_sha256": nb.sha256, "parameters": contract.parameters,
        "marked": exported.marked, "captured": list(contract.captured),
        "modules": sorted(contract.modules),
        "metrics": contract.metrics, "checks": contract.checks,
        "unsupported_checks": list(contract.unsupported),
        "gate": [{"metric": g.metric, "value": g.value, "threshold": g.threshold.describe(),
                  "passed": g.passed} for g in contract.gate],
        "built_at": context["built_at"], "nb2prod_version": __version__, "bento_tag": None,
    }
    (out / "nb2prod.json").write_text(json.dumps(manifest, indent=1))


def _imported_modules(source: str | ast.Module) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(source) if isinstance(source, str) else source):
        if isinstance(node, ast.Import):
            modules += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.append(node.module.split(".")[0])
    return modules


def _env() -> dict[str, str]:
    return {**os.environ, "BENTOML_DO_NOT_TRACK": "true",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


Runner = Callable[[list[str], Path], subprocess.CompletedProcess]
# The generated tests need no pytest plugins; autoloading the environment's (nbval,
# hypothesis...) costs seconds of start-up.
TEST_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
# bentoml build imports the service: it must not open (and create) an audit database.
BENTO_ENV = {"NB2PROD_AUDIT_URL": "off"}


def python_m(extra_env: dict[str, str]) -> Runner:
    """``python -m ARGV`` in a new interpreter of this environment, in directory ``cwd``."""
    def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *argv], cwd=cwd,
                              env={**_env(), **extra_env}, capture_output=True, text=True)
    return run


def _verify(out: Path, run: Runner | None = None) -> None:
    proc = (run or python_m(TEST_ENV))(["pytest", "-q", "-p", "no:cacheprovider", "tests"], out)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise BuildError(f"the generated tests failed:\n{tail}", where=str(out / "tests"),
                         fix=f"run `pytest {out / 'tests'}` to see every failure")


def _package(out: Path, run: Runner | None = None) -> str:
    out = out.resolve()  # the runner works in ``out``: a relative path would not be found
    proc = (run or python_m(BENTO_ENV))(["bentoml", "build", str(out), "-f",
                                         str(out / "bentofile.yaml"), "--output", "tag"], out)
    tags = [ln.split("__tag__:", 1)[1].strip() for ln in proc.stdout.splitlines()
            if "__tag__:" in ln]
    if proc.returncode != 0 or not tags:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BuildError(f"bentoml build failed:\n{tail}", where=str(out / "bentofile.yaml"),
                         fix="read the message above; the build directory is left for inspection")
    return tags[-1]


def _finish_manifest(out: Path, bento_tag: str) -> None:
    path = out / "nb2prod.json"
    manifest = json.loads(path.read_text())
    manifest["bento_tag"] = bento_tag
    path.write_text(json.dumps(manifest, indent=1))


FIRST_BUILD = "first build"  # the history's reason for a production no promotion made


def _register(out: Path, model_tag: str, bento_tag: str) -> str:
    """Make ``model_tag`` production when its name has none yet (with the lineage a
    promotion records, so a reload checks the same pins); return production after it."""
    from .packaging import code_sha256  # packaging is built on this module

    contract, _ = load_version(model_tag)
    current = registry.production(contract.name)
    if current is not None:
        return current
    move = registry.Promotion(
        version=model_tag, action="promote", reason=FIRST_BUILD, user=getpass.getuser(),
        at=datetime.now(timezone.utc).isoformat(timespec="seconds"), bento=bento_tag,
        code_sha256=code_sha256(out), artifact_sha256=contract.artifact_sha256,
        metrics=contract.metrics, notebook_sha256=contract.notebook_sha256,
        parameters=contract.parameters)
    try:
        registry.promote(contract.name, move, expected=None)
    except registry.ProductionMoved:  # another build or a retrain got there first
        pass
    return registry.production(contract.name) or model_tag


def _closing(model_tag: str, bento_tag: str, production: str, seconds: float) -> list[str]:
    """The build's last lines: what it made, its status, what serving needs, how to serve."""
    from .runtime.audit import home_url

    contract, _ = load_version(model_tag)
    name = contract.name
    lines = [f"built {bento_tag} (model {model_tag}) in {seconds:.1f}s"]
    if production == model_tag:
        lines.append(f"{model_tag} is production of {name} ({FIRST_BUILD})")
    else:
        lines += [f"{model_tag} is a candidate; production of {name} stays {production}",
                  f"promote it with:  nb2prod promote {name} {model_tag.split(':', 1)[1]}"]
    hashed = sorted(c for c, how in contract.pii.items() if how == "hash")
    lines.append("serving needs: " + (
        f"{SALT_ENV} ({MIN_SALT}+ characters, the same on every worker; pii hashing of "
        f"{', '.join(hashed)})" if hashed else "no secret"))
    lines.append("optional: NB2PROD_ADMIN_TOKEN (admin endpoints such as /admin/reload; off "
                 f"without it), NB2PROD_AUDIT_URL (default {home_url(name)})")
    return lines + [f"serve it with:  bentoml serve {bento_tag}"]
