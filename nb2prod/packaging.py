"""A tested bento pinned to a model version: a build directory's generated tests and
``bentoml build``, run side by side, and a rebuild from an earlier build's code.

The stages themselves are ``nb2prod build``'s (``build._render``, ``_verify``,
``_package``): a bento made by promote, rollback or retrain is made exactly like one
made by build.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import build, extract, notebook
from .errors import ModelStoreError
from .store import sha256_of


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
    """A ``build.Runner`` whose interpreter started, and imported ``modules``, when made:
    ``python -m ARGV`` then costs only the work. Runs one command."""

    def __init__(self, modules: tuple[str, ...], extra_env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-c", _WARM, *modules],
                                     env={**build._env(), **extra_env}, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

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
        self.tests = _Warm(("pytest", "starlette.testclient", "_bentoml_impl.server.app",
                            "nb2prod.runtime.service", *([f"joblib:{like}"] if like else [])),
                           build.TEST_ENV)
        self.bento = _Warm(("bentoml_cli.cli", "nb2prod.runtime.service"), build.BENTO_ENV)

    def package(self, out: Path) -> str:
        """Test and build ``out``; the bento's tag. A bento whose tests fail is deleted."""
        with ThreadPoolExecutor(2) as pool:  # both only read the directory
            tests = pool.submit(build._verify, out, self.tests)
            bento = pool.submit(build._package, out, self.bento)
            failure = tests.exception()
            if failure is not None:
                if bento.exception() is None:
                    delete_bento(bento.result())
                raise failure
            tag = bento.result()
        build._finish_manifest(out, tag)
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
    nb = notebook.Notebook(Path(manifest["notebook"]), manifest["notebook_sha256"])
    code = (source / f"{manifest['name']}_code.py").read_text()
    with tempfile.TemporaryDirectory(prefix=f"nb2prod-{name}-") as tmp:
        out = Path(tmp)
        build._render(nb, out, version, extract.Exported(code, manifest.get("marked", {})))
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
    raise ModelStoreError(f"found no build of {version}: neither a retrain run's build/ nor "
                          "a bento pinned to it", fix="make one with `nb2prod build NOTEBOOK`, "
                                                      "then promote the version it saves")


def delete_bento(tag: str) -> None:
    """Remove a bento that must not be served (its tests failed, or its move did not happen)."""
    import bentoml

    bentoml.bentos.delete(tag)
