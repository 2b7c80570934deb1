"""The workers of one ``bentoml serve``, and its replicas, acting as one service.

BentoML runs each worker as a process of its own, children of one arbiter; every worker
has its own window of recent rows and its own model. So that ``GET /drift`` and ``POST
/admin/reload`` answer for the service whichever worker takes the call, each worker keeps
one small file in a run directory of its arbiter::

    $BENTOML_HOME/nb2prod/<name>/run/<host>-<arbiter pid>/
        worker-<pid>.json   {"pid", "model_version", "error", "signal", "drift"}
        reload.json         {"token", "by"}: the last reload asked of the workers

A background thread (never the request path) writes the worker's file when its content
changed, at most every ``HEARTBEAT_S``: the version it serves, the last reload error, the
last reload signal it handled and its drift window's bin counts (``DriftMonitor.snapshot``,
a few kilobytes). Files of dead processes are dropped when read.

- ``drift_report``: this worker's window and its live siblings' (those serving the same
  version), merged into one report (``DriftMonitor.merged``).
- ``reload``: this worker reloads, writes ``reload.json``, and waits up to
  ``RELOAD_WAIT_S`` until each live sibling says it serves the new version; the thread of
  every sibling looks at ``reload.json`` every ``TICK_S`` and reloads itself. The answer
  lists the workers and those that did not get there.
- replicas (other ``bentoml serve`` processes on the same ``BENTOML_HOME``): every worker
  looks at the registry every ``NB2PROD_REGISTRY_POLL_S`` seconds and reloads when the
  production pointer moved since it last looked. A service started pinned to a version
  that is not production keeps serving it until production moves (or a reload).

A reload here is ``Reloader`` (``reload.py``): its rules, and no request in flight fails.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nb2prod.core.errors import Nb2prodError, ServiceError
from nb2prod.runtime import registry
from nb2prod.runtime.reload import Current

log = logging.getLogger("nb2prod")
TICK_S = 0.2  # how often a worker looks for a reload signal
HEARTBEAT_S = 1.0  # how often it may rewrite its state file
RELOAD_WAIT_S = 5.0  # how long a reload waits for the other workers
SIGNAL = "reload.json"


@dataclass(frozen=True)
class Sibling:
    """What another worker last wrote about itself."""

    pid: int
    model_version: str | None
    error: str | None = None
    signal: str | None = None  # the last reload signal it handled
    drift: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        """As the reload answer lists it."""
        return {"pid": self.pid, "model_version": self.model_version}


def run_dir(name: str, arbiter: int | None = None) -> Path:
    """This serve's run directory: per model name, host and arbiter (the parent of its
    workers), so replicas sharing ``BENTOML_HOME`` each have their own."""
    arbiter = os.getppid() if arbiter is None else arbiter
    return registry.home(name) / "run" / f"{socket.gethostname()}-{arbiter}"


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class Siblings:
    """This worker's part in a service of several workers (see the module docstring).

    ``reloader()`` reloads this worker (``reload.Reloader``); ``poll_s`` is
    ``NB2PROD_REGISTRY_POLL_S`` (0: no polling). Until ``start()`` (the service's
    ``__init__``, in the worker) it answers for this process alone.
    """

    def __init__(self, name: str, current: Current, reloader: Callable[[], dict], poll_s: float):
        self.name, self.current, self.reloader, self.poll_s = name, current, reloader, poll_s
        self.dir: Path | None = None
        self.pid = os.getpid()
        self._error: str | None = None
        self._signal: str | None = None  # the last reload signal handled
        self._seen_signal: tuple[int, int] | None = None  # (inode, mtime) of reload.json
        self._pointer: str | None = None  # production when the registry was last read
        self._written: Any = None
        self._writing = threading.Lock()  # the request thread (reload) and the watcher write
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- start-up --------------------------------------------------------------------

    def start(self) -> None:
        """Make the run directory, write this worker's state, start the watcher thread."""
        if self._thread is not None:
            return
        self.pid = os.getpid()
        self.dir = run_dir(self.name)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            _drop_dead_runs(self.dir)
            self._seen_signal = self._signal_stamp()
        except OSError as exc:  # a read-only home: one worker still serves
            log.warning("workers cannot coordinate through %s: %s", self.dir, exc)
            self.dir = None
            return
        self._pointer = self._production()
        self._write(force=True)
        self._thread = threading.Thread(target=self._run, name="nb2prod-siblings", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watcher thread (for tests; a worker's ends with its process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    # --- the endpoints -----------------------------------------------------------------

    def drift_report(self) -> dict[str, Any]:
        """``GET /drift`` for the whole service: every live worker's window on this version."""
        with self.current.use() as serving:
            others = [
                s.drift
                for s in self.siblings()
                if s.drift is not None and s.model_version == serving.model_tag
            ]
            return serving.drift_report(others)

    def reload(self) -> dict[str, Any]:
        """``POST /admin/reload``: reload here, then in every live sibling; the answer lists
        the workers and, in ``not_reloaded``, those that did not say they got there."""
        answer = self.reloader()  # a Conflict stops here: the siblings would refuse it too
        self._error = None
        target = answer["model_version"]
        if self.dir is None:
            return answer
        token = uuid.uuid4().hex
        self._write(force=True, signal=token)
        try:
            write_json(self.dir / SIGNAL, {"token": token, "by": self.pid})
        except OSError as exc:
            log.error("reload: cannot signal the other workers: %s", exc)
        deadline = time.monotonic() + RELOAD_WAIT_S
        while True:
            others = self.siblings()
            lagging = [s for s in others if s.model_version != target]
            given_up = all(s.signal == token and s.error for s in lagging)
            if not lagging or given_up or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        answer["workers"] = [{"pid": self.pid, "model_version": target}]
        answer["workers"] += [s.public() for s in others]
        answer["not_reloaded"] = [{**s.public(), "error": s.error} for s in lagging]
        if lagging:
            log.warning(
                "reload: worker(s) %s do not serve %s yet", [s.pid for s in lagging], target
            )
        return answer

    def siblings(self) -> list[Sibling]:
        """The other live workers of this serve, as they last wrote; drops dead ones' files."""
        if self.dir is None:
            return []
        found = []
        for path in self.dir.glob("worker-*.json"):
            try:
                pid = int(path.stem.split("-", 1)[1])
            except ValueError:
                continue
            if pid == self.pid:
                continue
            if not alive(pid):
                path.unlink(missing_ok=True)
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):  # gone meanwhile
                continue
            found.append(
                Sibling(
                    pid,
                    data.get("model_version"),
                    data.get("error"),
                    data.get("signal"),
                    data.get("drift"),
                )
            )
        return sorted(found, key=lambda s: s.pid)

    # --- the watcher thread ------------------------------------------------------------

    def _run(self) -> None:
        last_poll = last_write = time.monotonic()
        self._join_siblings()
        while not self._stop.wait(TICK_S):
            try:
                self._follow_signal()
                now = time.monotonic()
                if self.poll_s and now - last_poll >= self.poll_s:
                    last_poll = now
                    self._follow_registry()
                if now - last_write >= HEARTBEAT_S:
                    last_write = now
                    self._write()
            except Exception:  # the thread must outlive any one failure; the worker serves on
                log.exception("worker coordination failed; this worker serves on")

    def _join_siblings(self) -> None:
        """A worker started (or restarted) after a reload serves what its siblings serve,
        when that is production."""
        production = self._pointer
        serving = self._tag()
        if production and serving != production:
            if any(s.model_version == production for s in self.siblings()):
                self._reload_here(None)

    def _follow_signal(self) -> None:
        stamp = self._signal_stamp()
        if stamp is None or stamp == self._seen_signal:
            return
        self._seen_signal = stamp
        assert self.dir is not None
        try:
            signal = json.loads((self.dir / SIGNAL).read_text())
        except (OSError, ValueError):
            return
        if signal.get("by") != self.pid and signal.get("token") != self._signal:
            self._reload_here(signal.get("token"))

    def _follow_registry(self) -> None:
        production = self._production()
        if production is None or production == self._pointer:
            return
        log.info("the registry's production of %s moved to %s", self.name, production)
        self._pointer = production
        if production != self._tag():
            self._reload_here(None)

    def _reload_here(self, token: str | None) -> None:
        try:
            self.reloader()
            self._error = None
        except ServiceError as exc:  # logged by the reloader's rules; said in the state file
            self._error = exc.what
            log.error("reload of this worker refused: %s", exc.what)
        if token is not None:
            self._signal = token
        self._write(force=True)

    # --- files -------------------------------------------------------------------------

    def _write(self, force: bool = False, signal: str | None = None) -> None:
        if self.dir is None:
            return
        if signal is not None:
            self._signal = signal
        try:
            serving = self.current.serving
        except ServiceError:  # still starting
            return
        drift = serving.drift.snapshot() if serving.drift is not None else None
        state = {
            "pid": self.pid,
            "model_version": serving.model_tag,
            "error": self._error,
            "signal": self._signal,
            "drift": drift,
        }
        with self._writing:
            if not force and state == self._written:
                return
            try:
                write_json(self.dir / f"worker-{self.pid}.json", state)
                self._written = state
            except OSError as exc:
                log.warning("cannot write this worker's state in %s: %s", self.dir, exc)

    def _signal_stamp(self) -> tuple[int, int] | None:
        assert self.dir is not None
        try:
            st = (self.dir / SIGNAL).stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _production(self) -> str | None:
        try:
            return registry.production(self.name)
        except Nb2prodError as exc:
            log.warning("cannot read the model registry: %s", exc)
            return self._pointer

    def _tag(self) -> str | None:
        try:
            return self.current.serving.model_tag
        except ServiceError:
            return None


def _drop_dead_runs(mine: Path) -> None:
    """Remove run directories of serves on this host whose arbiter has exited."""
    host = socket.gethostname()
    for other in mine.parent.iterdir():
        prefix, _, pid = other.name.rpartition("-")
        if other == mine or prefix != host or not pid.isdigit():
            continue
        if not alive(int(pid)):
            shutil.rmtree(other, ignore_errors=True)
