"""A model version's code, captured values and model, loaded together, for one version.

Besides ``model.joblib``, a model version holds ``code.py`` (the exported notebook code),
``captured.pkl`` (the module-level values that code uses and that are not literal
constants: a compiled regex, medians learned from the training data, a lookup table) and
``modules/`` (Python files that sat beside the notebook), each pinned by sha256 in its
contract.

The pickles refer to the notebook's own classes and functions as ``__main__.<name>``,
because that is where they lived in the kernel. Here ``__main__`` means the version's
code module (``_Unpickler.find_class``), and every version gets a module instance of its
own with its own values bound in it: a reload swaps model, code and values together,
while requests in flight finish on the old trio.

Values that need none of the notebook's classes are bound before the code runs, so a
default argument or a class attribute may use them; the others right after.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import sys
from contextlib import nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any

import joblib
from joblib import numpy_pickle

from nb2prod.core.errors import ModelStoreError
from nb2prod.core.spec import Contract
from nb2prod.runtime import store

ARTIFACT = "model.joblib"
CODE = "code.py"
CAPTURED = "captured.pkl"
MODULES = "modules"  # Python modules that sat beside the notebook (helpers.py)
CONTRACT = "contract.json"
SUITE = "suite.json"  # Great Expectations suite JSON, loadable by plain GE
PROFILE = "profile.json"  # the reference profile drift is measured against
FORMAT = 1  # of captured.pkl: {"format", "values": {name: pickle}, "needs_code": [name]}


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack(values: dict[str, bytes], needs_code: set[str]) -> bytes:
    """``captured.pkl``'s bytes: each value pickled on its own, so each loads on its own."""
    return pickle.dumps(
        {"format": FORMAT, "values": values, "needs_code": sorted(needs_code)}, protocol=5
    )


def _resolve(code: ModuleType | None, module: str, name: str) -> Any:
    """``__main__.<name>`` in ``code``; a located error when it is not there."""
    if code is None:
        raise ModelStoreError(f"{module}.{name} is needed before the exported code exists")
    value: Any = code
    for part in name.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ModelStoreError(
                f"the saved model needs {name} from the notebook, but the exported code "
                f"({getattr(code, '__file__', code.__name__)}) has no {name}",
                fix="rebuild: nb2prod build exports what the model refers to",
            ) from None
    return value


class _Unpickler(pickle.Unpickler):
    """Plain unpickling, with ``__main__`` read as ``code``."""

    def __init__(self, data: bytes, code: ModuleType | None):
        super().__init__(io.BytesIO(data))
        self.code = code

    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__":
            return _resolve(self.code, module, name)
        return super().find_class(module, name)


class _JoblibUnpickler(numpy_pickle.NumpyUnpickler):
    """joblib's unpickler (arrays stored beside the pickle), with ``__main__`` as ``code``."""

    code: ModuleType | None = None

    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__":
            return _resolve(self.code, module, name)
        return super().find_class(module, name)


def load_artifact(path: Path, code: ModuleType | None) -> Any:
    """``joblib.load(path)`` with the notebook's names resolved in ``code``."""
    if code is None:
        return joblib.load(path)
    with open(path, "rb") as fh:
        # joblib.load's own steps (1.5+): detect compression, then unpickle
        with numpy_pickle._validate_fileobject_and_memmap(fh, str(path), None) as (fobj, _):
            unpickler = _JoblibUnpickler(str(path), fobj, ensure_native_byte_order=True)
            unpickler.code = code
            return unpickler.load()


def _same_as_imported(folder: Path, modules: dict[str, str]) -> None:
    """Python imports a module once per process: another version's ``helpers.py``,
    already imported, would stand in for this one's. Refuse when their files differ."""
    for relative, sha256 in modules.items():
        top = relative.split("/")[0].removesuffix(".py")
        origin = getattr(sys.modules.get(top), "__file__", None)
        if not origin:
            continue
        base = Path(origin).resolve().parent  # .../modules for helpers.py
        if "/" in relative:  # .../modules/features/__init__.py: two levels up
            base = base.parent
        there = base / relative
        if there != (folder / relative).resolve() and (
            not there.exists() or sha256_of(there) != sha256
        ):
            raise ModelStoreError(
                f"this process has imported another {relative} than the "
                f"one version {folder.parent.name} was saved with",
                fix="start a new process (serve the bento built for it)",
            )


def add_modules(folder: Path) -> None:
    """Make the modules that sat beside the notebook importable (the version's copies)."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def code_module(source: str, name: str, filename: str, captured: bytes | None) -> ModuleType:
    """A fresh module running ``source`` with the captured values bound in it."""
    stored = pickle.loads(captured) if captured else {"values": {}, "needs_code": []}
    late = set(stored["needs_code"])
    module = ModuleType(name)
    module.__file__ = filename
    for key, data in stored["values"].items():
        if key not in late:
            setattr(module, key, _Unpickler(data, None).load())
    # Registered so that code pickling the notebook's functions by name finds them
    # (the newest version's module: pickling is not part of answering a request).
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    for key in sorted(late):
        setattr(module, key, _Unpickler(stored["values"][key], module).load())
    return module


def load_version_parts(
    path: Path, contract: Any, *, source: str | None = None, name: str = "nb2prod_notebook"
) -> tuple[ModuleType, Any]:
    """The code module and the model of the version stored in ``path``, every file checked
    against the sha256 its ``contract`` pins. ``source``: the code to run instead of the
    version's own ``code.py`` (a bento's copy), which must be the same code."""

    def pinned(file: str, sha256: str | None, read: bool = True) -> bytes | None:
        target = path / file
        if not sha256:
            return None
        if not target.exists() or sha256_of(target) != sha256:
            raise ModelStoreError(
                f"{target} is missing or was changed after the model was "
                "saved (its sha256 differs from the contract's)",
                fix="restore the model version or run nb2prod build again",
            )
        return target.read_bytes() if read else None

    modules = getattr(contract, "modules", None) or {}
    for relative, sha256 in modules.items():
        pinned(f"{MODULES}/{relative}", sha256, read=False)
    if modules:
        _same_as_imported(path / MODULES, modules)
        add_modules(path / MODULES)
    own = pinned(CODE, getattr(contract, "code_sha256", None))
    captured = pinned(CAPTURED, getattr(contract, "captured_sha256", None))
    if source is None:
        source = own.decode() if own is not None else ""
    elif own is not None and hashlib.sha256(source.encode()).hexdigest() != contract.code_sha256:
        raise ModelStoreError(
            f"model version {path.name} was saved with other notebook code than this service runs",
            fix="serve the bento built for it",
        )
    module = code_module(source, name, str(path / CODE), captured)
    pinned(ARTIFACT, contract.artifact_sha256, read=False)
    return module, load_artifact(path / ARTIFACT, module)


def load_version(tag: str) -> tuple[Contract, Path]:
    """The contract and directory of a stored model version; a clear error if absent."""
    import bentoml
    from bentoml.exceptions import NotFound

    name, _, version = tag.partition(":")
    # resolving "latest" lists every version; a finished exact version is never rewritten
    listing = version in ("", "latest")
    try:
        with store.locked(name, shared=True) if listing else nullcontext():
            stored = bentoml.models.get(tag)
    except NotFound:
        raise ModelStoreError(
            f"model {tag} is not in the BentoML model store "
            f"({os.environ.get('BENTOML_HOME', '~/bentoml')})",
            fix="run the notebook (or nb2prod build) to save it, or set "
            "BENTOML_HOME to the store that has it",
        ) from None
    path = Path(stored.path)
    try:
        contract = Contract.from_json(json.loads((path / CONTRACT).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelStoreError(
            f"model {tag} has no readable {CONTRACT} ({exc})",
            fix="save it with n2p.save_model(...)",
        ) from None
    return contract, path


def load_model(path: Path, sha256: str) -> Any:
    """The model of the version stored in ``path``, only if its file has the pinned
    sha256; the notebook classes and functions it refers to come from the version's own
    exported code."""
    verify_artifact(path, sha256)
    contract = Contract.from_json(json.loads((path / CONTRACT).read_text()))
    return load_version_parts(path, contract)[1]


def verify_artifact(path: Path, sha256: str) -> None:
    """Raise ``ModelStoreError`` unless ``model.joblib`` has the pinned sha256."""
    actual = sha256_of(path / ARTIFACT)
    if actual != sha256:
        raise ModelStoreError(
            f"{path / ARTIFACT} has sha256 {actual[:12]}…, but this build "
            f"pinned {sha256[:12]}…; the model file was changed after the build",
            fix="restore the model version or run nb2prod build again",
        )
