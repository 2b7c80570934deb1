"""Builds the BentoML service class for one notebook build.

Generated ``service.py`` is a few lines that call ``make_service``; what a request goes
through lives in ``serving.py`` and ``predict.py``, tested once. Start-up problems (a
missing or changed model or code file, an audit database never reached) stop ``bentoml
serve`` with one line saying what to fix, before any worker starts. A worker closes
connections that send their request too slowly (``connections.py``), stops on its own
when its arbiter is gone (``watchdog.py``) and keeps its event loop and model threads on
one CPU (``affinity.py``).
"""

import faulthandler
import gc
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable

import anyio
import bentoml
from pydantic import Field

from nb2prod.core import settings
from nb2prod.core.errors import ModelStoreError, Nb2prodError, ServiceError
from nb2prod.runtime import affinity, balance, connections, logs, metrics, registry, watchdog
from nb2prod.runtime.answers import Label
from nb2prod.runtime.app import attach, error_response
from nb2prod.runtime.audit import open_audit
from nb2prod.runtime.loading import PROFILE, SUITE, load_version, sha256_of, verify_artifact
from nb2prod.runtime.openapi import DocumentedService
from nb2prod.runtime.records import record_type
from nb2prod.runtime.reload import Current, Reloader
from nb2prod.runtime.rows import FloatBodies
from nb2prod.runtime.siblings import Siblings
from nb2prod.runtime.wire import (
    FEEDBACK,
    MAX_RECORDS,
    DirectRoute,
    encode,
    predict_request,
)

if TYPE_CHECKING:  # imported where a worker needs them: see make_service
    from nb2prod.runtime.predict import Policy
    from nb2prod.runtime.serving import Serving

log = logging.getLogger("nb2prod")


def policy_from(contract: Any, now: settings.Settings) -> "Policy":
    """The contract's serving policy; ``NB2PROD_TIMEOUT_S`` / ``NB2PROD_MIN_CONFIDENCE``
    override it for one deployment (``none`` switches the deadline off)."""
    from nb2prod.runtime.predict import Policy

    timeout = contract.timeout_s if now.timeout_s is None else (now.timeout_s or None)
    floor = contract.min_confidence if now.min_confidence is None else now.min_confidence
    return Policy(timeout_s=timeout, min_confidence=floor, low_confidence=contract.low_confidence)


def _check_start(
    class_name: str, model_tag: str, model_sha256: str, code_path: Path, code_sha256: str
) -> tuple[Any, Path]:
    """Refuse to start, with a message and no traceback, on a missing or changed model or
    code, or an audit database never reached from here (one reached before but away now
    is no reason: the workers start on the spool, ``serving.open_audit``)."""
    try:
        _check_code(code_path, code_sha256)
        contract, path = load_version(model_tag)
        if contract.artifact_sha256 != model_sha256:
            raise ModelStoreError(
                f"model {model_tag}'s contract names sha256 "
                f"{contract.artifact_sha256[:12]}…, the build pinned "
                f"{model_sha256[:12]}…",
                fix="run nb2prod build again",
            )
        if contract.code_sha256 and code_sha256 != contract.code_sha256:
            raise ModelStoreError(
                f"the exported notebook code of this bento is not the code "
                f"model {model_tag} was saved with (it was changed after "
                "the build)",
                fix="run nb2prod build again",
            )
        verify_artifact(path, model_sha256)
        audit = open_audit(settings.current(), contract, model_tag)  # a bad setting stops here
        if audit is not None:
            audit.close()
    except Nb2prodError as exc:  # one line, what and fix: a log shows it whole, grep finds it
        said = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise SystemExit(f"nb2prod: cannot serve {class_name}: {said}") from None
    return contract, path


def _check_code(code_path: Path, code_sha256: str) -> None:
    """The bento's notebook code is the file the build wrote, or ``ModelStoreError``."""
    try:
        same = sha256_of(code_path) == code_sha256
    except OSError:
        same = False
    if not same:
        raise ModelStoreError(
            f"{code_path.name}, the bento's notebook code, is missing or was changed after "
            f"the build (its sha256 is not {code_sha256[:12]}…, which service.py pins)",
            fix=f"restore {code_path.name} or run nb2prod build again",
        )


def make_service(
    *,
    class_name: str,
    code_path: str | Path,
    code_sha256: str,
    model_tag: str,
    model_sha256: str,
    built_at: str,
    module: str,
) -> Any:
    """The BentoML service for the notebook code in ``code_path`` serving ``model_tag``.

    ``model_sha256`` and ``code_sha256`` are the hashes the build pinned; the service
    refuses to start when the model file or the code file differs, or when the code is
    not the code the version was saved with. Each model version served gets its own
    instance of the code module, with that version's captured values (``loading.py``).
    """
    if watchdog.worker_index() is None:  # a worker's is turned on by _settle, once ready
        gc.enable()  # generated service.py turned the collector off while nb2prod loaded
    code_path = Path(code_path)
    contract, path = _check_start(class_name, model_tag, model_sha256, code_path, code_sha256)
    source = code_path.read_text(encoding="utf-8")
    logs.install()  # refused requests: one line, no traceback, no input values
    # Before BentoML's worker configures uvicorn, which happens after this import.
    connections.install(settings.current().read_timeout_s)
    arbiter = watchdog.arbiter()  # now: the arbiter may die while the model loads
    balance.install(watchdog.worker_index(), arbiter, settings.current().balance)
    Record = record_type(contract.columns, class_name)
    current = Current()  # this worker's Serving, shared with the HTTP app
    start = settings.current()
    workers = start.workers or contract.workers

    frames: list[Any] = []  # the FrameMaker, made once: a reload keeps the columns

    def open_serving(tag: str, contract: Any, path: Path) -> "Serving":
        # Here, not at the top: only a worker predicts. `bentoml serve`'s arbiter imports
        # this module too, to define the service, and pandas and the checks would add
        # ~0.3 s to its start before any worker starts (bench/results/cold_start.md).
        from nb2prod.checks.compiled import CompiledSuite
        from nb2prod.core.markers import collect
        from nb2prod.runtime.loading import load_version_parts
        from nb2prod.runtime.predict import Predictor
        from nb2prod.runtime.schema import FrameMaker
        from nb2prod.runtime.serving import Serving

        if not frames:
            frames.append(FrameMaker(contract.columns))
        suite = path / SUITE
        profile = path / PROFILE
        now = settings.current()
        code, model = load_version_parts(path, contract, source=source, name=code_path.stem)
        predictor = Predictor(
            model,
            collect(vars(code)),
            CompiledSuite(json.loads(suite.read_text())) if suite.exists() else None,
            on_failures=lambda failures: metrics.count_failures(tag, failures),
            policy=policy_from(contract, now),
            version=tag,
        )
        return Serving(
            model_tag=tag,
            contract=contract,
            predictor=predictor,
            to_frame=frames[0],
            profile=json.loads(profile.read_text()) if profile.exists() else None,
            settings=now,
            built_at=built_at,
        )

    reloader = Reloader(current, open_serving, code_sha256)
    siblings = Siblings(contract.name, current, reloader, start.registry_poll_s)

    def __init__(self: Any) -> None:
        # a worker killed by a signal (SIGSEGV in a native library, SIGBUS on a database
        # file that turned immutable under its memory map) says so in the log, with the
        # Python stack it died in; BentoML only starts another one, silently
        faulthandler.enable()
        watchdog.watch(arbiter)
        current.swap(open_serving(model_tag, contract, path))
        _announce(current.serving)
        _say_if_not_production(contract.name, model_tag)
        siblings.start()  # this worker's state for the others, and its watcher thread
        _settle()
        affinity.pin(settings.current().cpu_pin, watchdog.worker_index())

    def predict(self: Any, records: list) -> Any:  # the answer, or an error's response
        """Predict for 1..N records; each answer says whether the model or the fallback gave it."""
        try:
            with current.use() as serving:
                return serving.predict(records)
        except ServiceError as exc:
            return error_response(exc)

    def feedback(self: Any, request_id: str, label: Label, row: int = 0) -> Any:
        """The true label for a row of an earlier request (a repeat replaces it)."""
        try:
            with current.use() as serving:
                return serving.record_feedback(request_id, label, row)
        except ServiceError as exc:
            return error_response(exc)

    # Real objects, not strings: BentoML builds the request schema from them.
    predict.__annotations__ = {
        "records": Annotated[list[Record], Field(min_length=1, max_length=MAX_RECORDS)],  # type: ignore[valid-type]
        "return": dict,
    }
    feedback.__annotations__ = {
        "request_id": Annotated[str, Field(min_length=1, max_length=64)],
        "label": Label,
        "row": Annotated[int, Field(ge=0, le=MAX_RECORDS - 1)],
        "return": dict,
    }

    cls = type(
        class_name,
        (),
        {
            "__module__": module,
            "__doc__": f"nb2prod service for model {model_tag}.",
            "bento_model": bentoml.models.BentoModel(model_tag),
            "__init__": __init__,
            "serving": property(lambda self: current.serving, doc="the Serving answering now"),
            "predict": bentoml.api(predict),
            "feedback": bentoml.api(feedback),
        },
    )
    # BENTOML_CONFIG_OPTIONS="services.<Class>.workers=N" still wins: these are defaults
    svc = bentoml.service(
        cls, traffic={"timeout": 30}, workers=workers, service_class=DocumentedService
    )

    def on_current(method: str) -> Callable[..., Any]:
        def handle(**args: Any) -> Any:
            with current.use() as serving:  # a reload meanwhile closes it only afterwards
                return getattr(serving, method)(**args)

        return handle

    handlers = {name: on_current(name) for name in ("info", "pending_review", "resolve_review")}
    # drift and reload answer for every worker of the serve, not only the one called
    handlers["drift_report"] = siblings.drift_report
    handlers["reload"] = siblings.reload
    fast = FloatBodies(contract.columns, MAX_RECORDS)  # a reload keeps the columns
    attach(svc, handlers, start.max_body_bytes, _direct(current, Record, class_name, fast))
    return svc


def _direct(
    current: Current, record: type, class_name: str, fast: FloatBodies
) -> dict[str, DirectRoute]:
    """What ``wire.Direct`` answers itself: per route, its body's validator, the coroutine
    for a small body and the function (run in a thread) for a large one; for
    ``/predict``, the cheaper decoder of large all-float bodies (``fast``), if it fits."""

    async def predict_inline(body: dict) -> bytes:
        with current.use() as serving:
            return encode(await serving.apredict(body["records"]))

    def predict_threaded(body: dict) -> bytes:
        with current.use() as serving:
            return encode(serving.predict(body["records"]))

    def feedback(body: dict) -> bytes:
        with current.use() as serving:
            return encode(
                serving.record_feedback(body["request_id"], body["label"], body.get("row", 0))
            )

    async def feedback_inline(body: dict) -> bytes:  # it reads and writes the audit database
        return await anyio.to_thread.run_sync(feedback, body)

    return {
        "/predict": DirectRoute(
            predict_request(record, class_name),
            predict_inline,
            predict_threaded,
            fast.decode if fast.usable else None,
        ),
        "/feedback": DirectRoute(FEEDBACK, feedback_inline, feedback),
    }


def _settle() -> None:
    """Take what start-up made (modules, the model and its values) out of the cyclic garbage
    collector's sight: it lives as long as the worker, and a full collection that scans
    it costs ~100 ms, added to whichever request it lands in (a deadline of 0.5 s could
    not be kept). A reload lets the collector see it again (``reload.py``).

    Only the young generations are collected first: a full collection here found nothing
    to free in the flagship's worker and cost ~80 ms of its start (bench/cold_start.py);
    whatever older cycle start-up left stays, once, for the worker's life. Generated
    ``service.py`` turned the collector off while the worker started; it is on again
    from here."""
    gc.collect(1)
    gc.freeze()
    gc.enable()


def _announce(serving: "Serving") -> None:
    """The worker's one start-up line. BentoML's server logging shows WARNING and up from
    other loggers; ours shows INFO too, unless the operator has set its level."""
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    log.info("%s", serving.startup_line())


def _say_if_not_production(name: str, tag: str) -> None:
    """Warn when the registry has promoted another version than the one this bento pins."""
    try:
        production = registry.production(name)
    except Nb2prodError as exc:
        log.warning("cannot read the model registry: %s", exc)
        return
    if production is not None and production != tag:
        log.warning(
            "this service pins %s, but production of %s is %s: POST /admin/reload "
            "or serve the bento built for it",
            tag,
            name,
            production,
        )
