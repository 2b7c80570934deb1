"""Model versions in BentoML's store, written by one process at a time per model name.

BentoML's ``Store`` assumes one writer. ``register`` ends by reading the latest version and
``delete`` by listing every version, and either can meet a version directory that another
process is still copying in (no ``model.yaml`` yet) or removing: "does not contain a
'model.yaml'", or the model "is not found". Two retrains of one model that overlap (from
cron, say) meet it. So creating and deleting a version hold an exclusive ``flock`` on
``$BENTOML_HOME/nb2prod/<name>/store.lock``, and listing a name's versions holds it shared.

A service loading one exact version needs no lock: a finished version is never rewritten.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

LOCK = "store.lock"


def home(name: str) -> Path:
    """``$BENTOML_HOME/nb2prod/<name>`` (BentoML's default home is ``~/bentoml``): what
    nb2prod keeps of model ``name`` beside BentoML's store (registry, lock, run files)."""
    base = os.environ.get("BENTOML_HOME") or Path.home() / "bentoml"
    return Path(base) / "nb2prod" / name


@contextmanager
def locked(name: str, *, shared: bool = False) -> Iterator[None]:
    """Hold the store lock of model ``name``: exclusive to write, shared to list."""
    folder = home(name)
    if shared and not folder.is_dir():
        yield  # nothing of this name was ever written: no lock to share, none to leave
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a") as lock:
        # released when the file is closed, including by the kernel when we crash
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield


@contextmanager
def create(name: str, **options: Any) -> Iterator[Any]:
    """``bentoml.models.create(name, **options)``, stored while no other process writes it."""
    import bentoml

    with locked(name), bentoml.models.create(name, **options) as model:
        yield model


def delete(tag: str) -> None:
    """``bentoml.models.delete(tag)`` while no other process writes or lists that name."""
    import bentoml

    with locked(str(tag).split(":", 1)[0]):
        bentoml.models.delete(tag)


def listed(name: str) -> list[Any]:
    """``bentoml.models.list(name)``, never catching a version half written or removed."""
    import bentoml

    with locked(name, shared=True):
        return list(bentoml.models.list(name))
