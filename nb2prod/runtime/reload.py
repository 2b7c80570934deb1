"""``POST /admin/reload``: serve the registry's production version without a restart.

A service is built for one model version and one copy of the notebook's code. Reload
asks the registry (``nb2prod.runtime.registry``, next to the model store) which version is
production, and when that is another version *of the same code and input schema* it
loads the model, checks its file against the sha256 pinned at promotion, and swaps it in.
Anything else (other code, other inputs, a model this machine's store lacks) is refused
with what to deploy instead; the running version keeps serving.

The swap is one assignment under a lock. Requests that started on the old version finish
on it; its audit log is closed when the last of them is done, so no request in flight
fails because of a reload.
"""

from __future__ import annotations

import gc
import logging
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from nb2prod.core.errors import Conflict, Nb2prodError, ServiceError, Unavailable
from nb2prod.core.spec import schema_changes
from nb2prod.runtime import registry
from nb2prod.runtime.loading import load_version, verify_artifact

log = logging.getLogger("nb2prod")


class Current:
    """The Serving that answers new requests, and the count of requests on each one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._serving: Any = None
        self._busy: dict[int, int] = {}  # id(serving) -> requests in flight
        self._retired: dict[int, Any] = {}  # replaced, closing once idle

    @property
    def serving(self) -> Any:
        """The Serving new requests get; ``Unavailable`` while the worker is still starting."""
        if self._serving is None:
            raise Unavailable("the service is still starting")
        return self._serving

    @contextmanager
    def use(self) -> Iterator[Any]:
        """The current Serving, kept open until the block ends even if a reload replaces it."""
        with self._lock:
            serving = self.serving
            self._busy[id(serving)] = self._busy.get(id(serving), 0) + 1
        try:
            yield serving
        finally:
            with self._lock:
                key = id(serving)
                left = self._busy.pop(key) - 1
                if left:
                    self._busy[key] = left
                done = not left and self._retired.pop(key, None) is not None
            if done:
                serving.close()

    def swap(self, new: Any) -> Any:
        """Make ``new`` current; the old one closes now if idle, else after its last request."""
        with self._lock:
            old, self._serving = self._serving, new
            idle = old is not None and id(old) not in self._busy
            if old is not None and not idle:
                self._retired[id(old)] = old
        if idle:
            old.close()
        return old


class Reloader:
    """Loads the registry's production version into ``current`` on request.

    ``open_serving(tag, contract, path)`` makes a Serving (the same function the worker
    starts with); ``code_sha256`` is the sha256 of the code this service was built with.
    """

    def __init__(self, current: Current, open_serving: Callable[..., Any], code_sha256: str):
        self.current, self.open_serving, self.code_sha256 = current, open_serving, code_sha256
        self._one_at_a_time = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        """Reload; the answer says from which version to which, or why nothing changed.
        ``Conflict`` (409) when production is a version this service cannot serve."""
        with self._one_at_a_time:
            running = self.current.serving
            name, before = running.contract.name, running.model_tag
            move = _production(name)
            if move.version == before:
                return {
                    "reloaded": False,
                    "model_version": before,
                    "message": f"{before} is already production of {name}",
                }
            contract, path = self._check(move, running)
            self.current.swap(self.open_serving(move.version, contract, path))
            gc.unfreeze()  # the start-up version, frozen by service._settle, may be freed now
            log.warning("reloaded %s: now serving %s (was %s)", name, move.version, before)
            return {"reloaded": True, "model_version": move.version, "previous": before}

    def _check(self, move: registry.Promotion, running: Any) -> tuple[Any, Any]:
        """The version's contract and files, if this service can serve it; else ``Conflict``."""
        deploy = (
            f"deploy its bento instead: bentoml serve {move.bento}"
            if move.bento
            else "deploy a bento built for it"
        )
        if move.code_sha256 and move.code_sha256 != self.code_sha256:
            raise Conflict(
                f"production {move.version} was built from other notebook code "
                f"than this service runs; {deploy}"
            )
        try:
            contract, path = load_version(move.version)
            if move.artifact_sha256 and move.artifact_sha256 != contract.artifact_sha256:
                raise Conflict(
                    f"model {move.version} in the store is not the file that was "
                    "promoted (sha256 differs); promote it again"
                )
            verify_artifact(path, contract.artifact_sha256)
        except Nb2prodError as exc:  # the detail names server paths: log it, don't send it
            log.error("reload: cannot load %s: %s", move.version, exc)
            raise Conflict(
                f"cannot load production {move.version} from this service's model "
                f"store (missing or changed; see the server log); {deploy}"
            ) from None
        changes = schema_changes(running.contract.columns, contract.columns)
        if changes:
            raise Conflict(
                f"production {move.version} takes other inputs ({'; '.join(changes)}); {deploy}"
            )
        return contract, path


def _production(name: str) -> registry.Promotion:
    try:
        move = registry.read(name).production
    except Nb2prodError as exc:
        log.error("reload: %s", exc)
        # the service's fault, not the request's: the base class, 500
        raise ServiceError("cannot read the model registry; see the server log") from None
    if move is None:
        log.error("reload: no production version in %s", registry.home(name))
        raise Conflict(
            f"the model registry has no production version of {name}: promote "
            f"one with `nb2prod promote {name} VERSION` (the service reads the "
            "registry of its BENTOML_HOME)"
        )
    return move
