"""A tested bento pinned to a model version: the build directory's generated tests and
``bentoml build``, side by side, and a rebuild from an earlier build's code.

Both commands spend most of their time importing BentoML, pandas and pytest, so a
``Packager`` starts their interpreters (and their imports) as soon as it is made: retrain
makes one before the notebook runs, whose kernel leaves a core idle, and afterwards pays
only for the work.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import build, extract, notebook
from .errors import BuildError, ModelStoreError
from .store import sha256_of

_WARM = """\
import importlib, json, os, runpy, sys
for module in sys.argv[1:]:
    importlib.import_module(module)
job = json.loads(sys.stdin.readline())
os.chdir(job["cwd"])
sys.argv = job["argv"]
runpy.run_module(job["argv"][0], run_name="__main__", alter_sys=True)
"""


class _Warm:
    """``python -m ARGV...`` whose interpreter started, and imported ``modules``, early."""

    def __init__(self, modules: tuple[str, ...], env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-c", _WARM, *modules], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def run(self, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        out, _ = self.proc.communicate(json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n")
        return subprocess.CompletedProcess(argv, self.proc.returncode, out, "")

    def close(self) -> None:
        if self.proc.poll() is None:  # never given its command
            self.proc.kill()
            self.proc.wait()


class Packager:
    """A build directory's generated tests and ``bentoml build``, run side by side in
    interpreters started when the Packager is made. Used once; ``close`` ends what
    ``package`` did not use."""

    def __init__(self) -> None:
        # The generated tests need no pytest plugins; autoloading the environment's
        # (nbval, hypothesis...) costs seconds of start-up.
        env = {**build._env(), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        self.tests = _Warm(("pytest", "starlette.testclient", "nb2prod.runtime.service"), env)
        self.bento = _Warm(("bentoml_cli.cli", "nb2prod.runtime.service"), env)

    def package(self, out: Path) -> str:
        """Test and build ``out``; the bento's tag. A bento whose tests fail is deleted."""
        with ThreadPoolExecutor(2) as pool:
            tests = pool.submit(self.tests.run, ["pytest", "-q", "-p", "no:cacheprovider",
                                                 "tests"], out)
            bento = pool.submit(self.bento.run, ["bentoml", "build", str(out), "-f",
                                                 str(out / "bentofile.yaml"), "--output", "tag"],
                                out)
            tested, built = tests.result(), bento.result()
        tags = [ln.split("__tag__:", 1)[1].strip() for ln in built.stdout.splitlines()
                if "__tag__:" in ln]
        if tested.returncode != 0:
            if built.returncode == 0 and tags:
                delete_bento(tags[-1])
            raise BuildError(f"the generated tests failed:\n{_tail(tested.stdout, 25)}",
                             where=str(out / "tests"),
                             fix=f"run `pytest {out / 'tests'}` to see every failure")
        if built.returncode != 0 or not tags:
            raise BuildError(f"bentoml build failed:\n{_tail(built.stdout, 15)}",
                             where=str(out / "bentofile.yaml"),
                             fix="read the message above; the build directory is left for "
                                 "inspection")
        build._finish_manifest(out, tags[-1])
        return tags[-1]

    def close(self) -> None:
        """End the interpreters ``package`` did not use."""
        self.tests.close()
        self.bento.close()


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


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
    packager = Packager()
    try:
        with tempfile.TemporaryDirectory(prefix=f"nb2prod-{name}-") as tmp:
            out = Path(tmp)
            build._render(nb, out, version, extract.Exported(code, manifest.get("marked", {})))
            return packager.package(out), code_sha256(out)
    finally:
        packager.close()


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
