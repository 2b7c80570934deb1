"""A tested bento pinned to a model version: a build directory's generated tests and
``bentoml build``, run side by side, and a rebuild from an earlier build's code.

The stages themselves are ``nb2prod build``'s (``build._render``, ``_verify``,
``_package``): a bento made by promote, rollback or retrain is made exactly like one
made by build.
"""

from __future__ import annotations

import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import build, execute, extract, notebook
from .errors import ModelStoreError
from .store import sha256_of


def package(out: Path) -> str:
    """Run ``out``'s generated tests and ``bentoml build`` side by side (both only read the
    directory) and return the bento's tag; a bento whose tests fail is deleted again."""
    # The generated tests need no pytest plugins; autoloading the environment's (nbval,
    # hypothesis...) costs seconds of start-up. Set before the threads start, not in them.
    with execute._environment({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}), \
            ThreadPoolExecutor(2) as pool:
        tests, bento = pool.submit(build._verify, out), pool.submit(build._package, out)
        failure = tests.exception()
        if failure is not None:
            if bento.exception() is None:
                delete_bento(bento.result())
            raise failure
        tag = bento.result()
    build._finish_manifest(out, tag)
    return tag


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
