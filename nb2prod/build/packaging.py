"""Render, test and package a build directory: the one way a bento is made.

``nb2prod build``, ``retrain``, ``promote`` and ``rollback`` all call ``render`` and then
``package`` (the generated tests and ``bentoml build``, run side by side); ``rebuild``
does both for a version from an earlier build's code, for promote and rollback.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from nb2prod.build import extract
from nb2prod.build.render import class_name, pinned_packages
from nb2prod.build.render import render as render_templates
from nb2prod.core.errors import BuildError, ModelStoreError
from nb2prod.core.version import __version__
from nb2prod.runtime.loading import load_version, sha256_of


def render(
    out: Path, model_tag: str, exported: extract.Exported, notebook: Path, imports: list[str]
) -> None:
    """Stage: write the build directory for ``model_tag`` (service, code, bentofile,
    tests, a copy of nb2prod's runtime) and its manifest ``nb2prod.json``.

    ``imports`` are the top-level modules the whole notebook imports, not just the
    exported code: the bento pins them all (README: scheduling); the manifest keeps them
    so a rebuild by promote or rollback pins the same."""
    contract, _ = load_version(model_tag)
    name = contract.name
    context = {
        "name": name,
        "class_name": class_name(name),
        "notebook": notebook.name,
        "notebook_sha256": contract.notebook_sha256,
        "model_tag": model_tag,
        "model_sha256": contract.artifact_sha256,
        # pinned as the model file is: a changed <name>_code.py does not start
        "code_sha256": hashlib.sha256(exported.source.encode()).hexdigest(),
        "version": __version__,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "packages": pinned_packages(sorted(set(imported_modules(exported.source) + imports))),
    }
    render_templates(out, context, exported.source)
    manifest = {
        "name": name,
        "class_name": context["class_name"],
        "model_tag": model_tag,
        "model_sha256": contract.artifact_sha256,
        "notebook": str(notebook),
        "notebook_sha256": contract.notebook_sha256,
        "parameters": contract.parameters,
        "imports": sorted(set(imports)),
        "marked": exported.marked,
        "captured": list(contract.captured),
        "modules": sorted(contract.modules),
        "metrics": contract.metrics,
        "checks": contract.checks,
        "unsupported_checks": list(contract.unsupported),
        "gate": [
            {
                "metric": g.metric,
                "value": g.value,
                "threshold": g.threshold.describe(),
                "passed": g.passed,
            }
            for g in contract.gate
        ],
        "built_at": context["built_at"],
        "nb2prod_version": __version__,
        "bento_tag": None,
    }
    (out / "nb2prod.json").write_text(json.dumps(manifest, indent=1))


def imported_modules(source: str | ast.Module) -> list[str]:
    """The top-level modules ``source`` imports (``sklearn`` for ``from sklearn.x import y``)."""
    modules = []
    for node in ast.walk(ast.parse(source) if isinstance(source, str) else source):
        if isinstance(node, ast.Import):
            modules += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.append(node.module.split(".")[0])
    return modules


def _env() -> dict[str, str]:  # bentoml and pytest of this environment, found on PATH
    return {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }


Runner = Callable[[list[str], Path], subprocess.CompletedProcess]
# The generated tests need no pytest plugins; autoloading the environment's (nbval,
# hypothesis...) costs seconds of start-up.
TEST_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
# bentoml build imports the service: it must not open (and create) an audit database.
BENTO_ENV = {"NB2PROD_AUDIT_URL": "off"}


def python_m(extra_env: dict[str, str]) -> Runner:
    """``python -m ARGV`` in a new interpreter of this environment, in directory ``cwd``."""

    def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", *argv],
            cwd=cwd,
            env={**_env(), **extra_env},
            capture_output=True,
            text=True,
        )

    return run


def verify(out: Path, run: Runner | None = None) -> None:
    """Stage: run the build directory's generated tests; ``BuildError`` with their tail."""
    proc = (run or python_m(TEST_ENV))(["pytest", "-q", "-p", "no:cacheprovider", "tests"], out)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise BuildError(
            f"the generated tests failed:\n{tail}",
            where=str(out / "tests"),
            fix=f"run `pytest {out / 'tests'}` to see every failure",
        )


def bentoml_build(out: Path, run: Runner | None = None) -> str:
    """Stage: ``bentoml build`` the directory; the bento's tag."""
    out = out.resolve()  # the runner works in ``out``: a relative path would not be found
    proc = (run or python_m(BENTO_ENV))(
        ["bentoml", "build", str(out), "-f", str(out / "bentofile.yaml"), "--output", "tag"], out
    )
    tags = [
        ln.split("__tag__:", 1)[1].strip() for ln in proc.stdout.splitlines() if "__tag__:" in ln
    ]
    if proc.returncode != 0 or not tags:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BuildError(
            f"bentoml build failed:\n{tail}",
            where=str(out / "bentofile.yaml"),
            fix="read the message above; the build directory is left for inspection",
        )
    return tags[-1]


def finish_manifest(out: Path, bento_tag: str) -> None:
    """Record the bento's tag in the build's ``nb2prod.json``."""
    path = out / "nb2prod.json"
    manifest = json.loads(path.read_text())
    manifest["bento_tag"] = bento_tag
    path.write_text(json.dumps(manifest, indent=1))


_WARM = """\
import importlib, json, os, runpy, sys
for module in sys.argv[1:]:
    if module.startswith("joblib:"):  # a model file: loading it imports what it is made of
        importlib.import_module("joblib").load(module[7:])
    else:
        importlib.import_module(module)
job = json.loads(sys.stdin.readline())
os.chdir(job["cwd"])
sys.argv = job["argv"]
runpy.run_module(job["argv"][0], run_name="__main__", alter_sys=True)
"""


class _Warm:
    """A ``Runner`` whose interpreter started, and imported ``modules``, when made:
    ``python -m ARGV`` then costs only the work. Runs one command."""

    def __init__(self, modules: tuple[str, ...], extra_env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WARM, *modules],
            env={**_env(), **extra_env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def __call__(self, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        out, _ = self.proc.communicate(json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n")
        return subprocess.CompletedProcess(argv, self.proc.returncode, out, "")

    def close(self) -> None:
        if self.proc.poll() is None:  # never given its command
            self.proc.kill()
            self.proc.wait()


class Packager:
    """A build directory's generated tests and ``bentoml build``, run side by side by
    interpreters that start (and import BentoML, pandas, pytest: most of the time both
    take) when the Packager is made. Retrain makes one before the notebook runs, whose
    kernel leaves a core idle. Packages once; ``close`` ends what was not used."""

    def __init__(self, like: Path | None = None) -> None:
        """``like``: a model file like the one to be packaged (production's, in retrain):
        the tests' interpreter loads it early, importing its libraries (scikit-learn...)."""
        self.tests = _Warm(
            (
                "pytest",
                "starlette.testclient",
                "_bentoml_impl.server.app",
                "nb2prod.runtime.service",
                *([f"joblib:{like}"] if like else []),
            ),
            TEST_ENV,
        )
        self.bento = _Warm(("bentoml_cli.cli", "nb2prod.runtime.service"), BENTO_ENV)

    def package(self, out: Path) -> str:
        """Test and build ``out``; the bento's tag. A bento whose tests fail is deleted."""
        with ThreadPoolExecutor(2) as pool:  # both only read the directory
            tests = pool.submit(verify, out, self.tests)
            bento = pool.submit(bentoml_build, out, self.bento)
            failure = tests.exception()
            if failure is not None:
                if bento.exception() is None:
                    delete_bento(bento.result())
                raise failure
            tag = bento.result()
        finish_manifest(out, tag)
        return tag

    def close(self) -> None:
        """End the interpreters ``package`` did not use."""
        self.tests.close()
        self.bento.close()


def package(out: Path) -> str:
    """Run ``out``'s generated tests and ``bentoml build`` side by side and return the
    bento's tag; a bento whose tests fail is deleted again."""
    packager = Packager()
    try:
        return packager.package(out)
    finally:
        packager.close()


def code_sha256(out: Path) -> str:
    """sha256 of a build's exported notebook code (a service reloads only the same code)."""
    name = json.loads((out / "nb2prod.json").read_text())["name"]
    return sha256_of(out / f"{name}_code.py")


def rebuild(name: str, version: str, noted: str | None = None) -> tuple[str, str]:
    """A tested bento pinned to ``version``, rendered from the code of its own build
    (``noted``, a retrain run's build/, else the newest bento pinned to it); returns
    (bento tag, code sha256)."""
    source = _build_source(name, version, noted)
    manifest = json.loads((source / "nb2prod.json").read_text())
    code = (source / f"{manifest['name']}_code.py").read_text()
    with tempfile.TemporaryDirectory(prefix=f"nb2prod-{name}-") as tmp:
        out = Path(tmp)
        # Builds before the manifest kept "imports" pinned the exported code's imports only.
        render(
            out,
            version,
            extract.Exported(code, manifest.get("marked", {})),
            Path(manifest["notebook"]),
            manifest.get("imports", []),
        )
        return package(out), code_sha256(out)


def _build_source(name: str, version: str, noted: str | None) -> Path:
    import bentoml
    from bentoml.exceptions import NotFound

    places = [Path(noted)] if noted else []
    try:
        bentos = sorted(bentoml.bentos.list(name), key=lambda b: b.creation_time, reverse=True)
        places += [Path(b.path) / "src" for b in bentos]
    except NotFound:
        pass
    for place in places:
        manifest = place / "nb2prod.json"
        if manifest.exists() and json.loads(manifest.read_text()).get("model_tag") == version:
            return place
    raise ModelStoreError(
        f"found no build of {version}: neither a retrain run's build/ nor a bento pinned to it",
        fix="make one with `nb2prod build NOTEBOOK`, then promote the version it saves",
    )


def delete_bento(tag: str) -> None:
    """Remove a bento that must not be served (its tests failed, or its move did not happen)."""
    import bentoml

    bentoml.bentos.delete(tag)
