"""Builds the BentoML service class for one notebook build.

Generated ``service.py`` is a few lines that call ``make_service``; what a request goes
through lives in ``serving.py`` and ``predict.py``, tested once. Start-up problems (a
missing or changed model file, an unreachable audit database) stop ``bentoml serve``
with one line saying what to fix, before any worker starts.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Union

import bentoml
from pydantic import Field, WithJsonSchema
from starlette.responses import JSONResponse

from ..checks.compiled import CompiledSuite
from ..errors import ModelStoreError, Nb2prodError
from ..markers import collect
from ..store import PROFILE, SUITE, load_artifact, load_version, verify_artifact
from . import metrics
from .http import Endpoints, HTTPError
from .predict import Policy, Predictor
from .schema import FrameMaker, record_type
from .serving import Serving, Settings, open_audit

MAX_RECORDS = 10_000
# BentoML keeps only a Union's first member in the schema: describe the label ourselves.
Label = Annotated[Union[bool, int, float, str], WithJsonSchema({
    "description": "the true label, of the kind the model predicts: text, a number or a "
                   "boolean"})]


def policy_from(contract: Any) -> Policy:
    """The contract's serving policy; ``NB2PROD_TIMEOUT_S`` / ``NB2PROD_MIN_CONFIDENCE``
    override it for one deployment (``none`` switches the deadline off)."""
    timeout = os.environ.get("NB2PROD_TIMEOUT_S")
    floor = os.environ.get("NB2PROD_MIN_CONFIDENCE")
    return Policy(
        timeout_s=contract.timeout_s if timeout is None
        else (None if timeout.lower() == "none" else float(timeout)),
        min_confidence=contract.min_confidence if floor is None else float(floor),
        low_confidence=contract.low_confidence)


def _check_start(class_name: str, model_tag: str, model_sha256: str) -> tuple[Any, Path]:
    """Refuse to start, with a message and no traceback, on a missing or changed model or
    an unreachable audit database."""
    try:
        contract, path = load_version(model_tag)
        if contract.artifact_sha256 != model_sha256:
            raise ModelStoreError(f"model {model_tag}'s contract names sha256 "
                                  f"{contract.artifact_sha256[:12]}…, the build pinned "
                                  f"{model_sha256[:12]}…", fix="run nb2prod build again")
        verify_artifact(path, model_sha256)
        audit = open_audit(Settings.from_env(), contract, model_tag)
        if audit is not None:
            audit.close()
    except Nb2prodError as exc:
        raise SystemExit(f"nb2prod: cannot serve {class_name}: {exc}") from None
    return contract, path


def make_service(*, class_name: str, code: ModuleType, model_tag: str, model_sha256: str,
                 built_at: str, module: str) -> Any:
    """The BentoML service for ``code``'s marked functions serving model ``model_tag``.

    ``model_sha256`` is the artifact hash the build pinned; the service refuses to start
    when the stored file differs.
    """
    contract, path = _check_start(class_name, model_tag, model_sha256)
    marked = collect(vars(code))
    to_frame = FrameMaker(contract.columns)
    Record = record_type(contract.columns, class_name)
    suite = json.loads((path / SUITE).read_text()) if (path / SUITE).exists() else None
    profile = json.loads((path / PROFILE).read_text()) if (path / PROFILE).exists() else None
    live: dict[str, Serving] = {}  # the worker's Serving, shared with the HTTP middleware

    def __init__(self: Any) -> None:
        predictor = Predictor(
            load_artifact(path, model_sha256), marked, CompiledSuite(suite) if suite else None,
            on_failures=lambda failures: metrics.count_failures(model_tag, failures),
            policy=policy_from(contract))
        self.serving = live["serving"] = Serving(
            model_tag=model_tag, contract=contract, predictor=predictor, to_frame=to_frame,
            profile=profile, settings=Settings.from_env())

    def predict(self: Any, records: list) -> dict:
        """Predict for 1..N records; each answer says whether the model or the fallback gave it."""
        status, body = self.serving.predict(records)
        return body if status == 200 else JSONResponse(body, status_code=status)

    def feedback(self: Any, request_id: str, label: Label, row: int = 0) -> dict:
        """The true label for a row of an earlier request (a repeat replaces it)."""
        status, body = self.serving.record_feedback(request_id, label, row)
        return body if status == 200 else JSONResponse(body, status_code=status)

    # Real objects, not strings: BentoML builds the request schema from them.
    predict.__annotations__ = {
        "records": Annotated[list[Record], Field(min_length=1, max_length=MAX_RECORDS)],  # type: ignore[valid-type]
        "return": dict}
    feedback.__annotations__ = {"request_id": Annotated[str, Field(min_length=1, max_length=64)],
                                "label": Label, "row": Annotated[int, Field(ge=0, le=MAX_RECORDS - 1)],
                                "return": dict}

    cls = type(class_name, (), {
        "__module__": module, "__doc__": f"nb2prod service for model {model_tag}.",
        "bento_model": bentoml.models.BentoModel(model_tag), "__init__": __init__,
        "predict": bentoml.api(predict), "feedback": bentoml.api(feedback)})
    svc = bentoml.service(cls, traffic={"timeout": 30})
    static = {
        "name": contract.name, "model_version": model_tag, "metrics": contract.metrics,
        "gate": [{"metric": g.metric, "value": g.value, "threshold": g.threshold.describe(),
                  "passed": g.passed} for g in contract.gate],
        "notebook_sha256": contract.notebook_sha256, "parameters": contract.parameters,
        "trained_at": contract.created_at, "built_at": built_at,
        "nb2prod_version": contract.nb2prod_version}

    def serving() -> Serving:
        if "serving" not in live:
            raise HTTPError(503, "the service is still starting")
        return live["serving"]

    svc.add_asgi_middleware(
        Endpoints,
        get_routes={"/model": lambda: serving().info(static),
                    "/drift": lambda: serving().drift_report()},
        admin_routes={("GET", "/admin/review"): lambda b, r: serving().pending_review(b, r),
                      ("POST", "/admin/review"): lambda b, r: serving().resolve_review(b, r)})
    return svc


def load_code(path: str | Path) -> ModuleType:
    """Import the exported notebook module from a file next to ``service.py``."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
