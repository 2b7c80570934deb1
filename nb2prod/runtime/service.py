"""Builds the BentoML service class for one notebook build.

Generated ``service.py`` is a few lines that call ``make_service``; everything a served
notebook does lives here and in ``predict.py``, tested once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import bentoml
from pydantic import Field
from starlette.responses import JSONResponse

from ..errors import ModelStoreError, Nb2prodError
from ..markers import collect
from ..checks.compiled import CompiledSuite
from ..store import SUITE, load_artifact, load_version, verify_artifact
from . import metrics
from .http import Endpoints
from .predict import NoFallbackError, Policy, Predictor, RequestRejected
from .schema import FrameMaker, record_type

MAX_RECORDS = 10_000


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


def make_service(*, class_name: str, code: ModuleType, model_tag: str, model_sha256: str,
                 built_at: str, module: str) -> Any:
    """The BentoML service for ``code``'s marked functions serving model ``model_tag``.

    ``model_sha256`` is the artifact hash the build pinned; the service refuses to start
    when the stored file differs.
    """
    try:  # refuse to start, with a message and no traceback, on a missing or changed model
        contract, path = load_version(model_tag)
        if contract.artifact_sha256 != model_sha256:
            raise ModelStoreError(f"model {model_tag}'s contract names sha256 "
                                  f"{contract.artifact_sha256[:12]}…, the build pinned "
                                  f"{model_sha256[:12]}…", fix="run nb2prod build again")
        verify_artifact(path, model_sha256)
    except Nb2prodError as exc:
        raise SystemExit(f"nb2prod: cannot serve {class_name}: {exc}") from None
    marked = collect(vars(code))
    to_frame = FrameMaker(contract.columns)
    Record = record_type(contract.columns, class_name)
    suite = json.loads((path / SUITE).read_text()) if (path / SUITE).exists() else None

    def __init__(self: Any) -> None:
        self.predictor = Predictor(
            load_artifact(path, model_sha256), marked,
            CompiledSuite(suite) if suite else None,
            on_failures=lambda failures: metrics.count_failures(model_tag, failures),
            policy=policy_from(contract))

    def predict(self: Any, records: list) -> dict:
        """Predict for 1..N records; each answer says whether the model or the fallback gave it."""
        try:
            answers = self.predictor.predict(to_frame(records))
        except RequestRejected as exc:
            return JSONResponse({"error": f"{len(exc.errors)} check failure(s): the request "
                                          "is refused", "detail": exc.errors}, status_code=422)
        except NoFallbackError as exc:
            return JSONResponse({"error": exc.message}, status_code=503)
        metrics.count_answers(model_tag, answers)
        return {"request_id": uuid.uuid4().hex, "model_version": model_tag,
                "predictions": answers}

    # Real objects, not strings: BentoML builds the request schema from them.
    predict.__annotations__ = {
        "records": Annotated[list[Record], Field(min_length=1, max_length=MAX_RECORDS)],  # type: ignore[valid-type]
        "return": dict}

    cls = type(class_name, (), {
        "__module__": module, "__doc__": f"nb2prod service for model {model_tag}.",
        "bento_model": bentoml.models.BentoModel(model_tag),
        "__init__": __init__, "predict": bentoml.api(predict)})
    svc = bentoml.service(cls, traffic={"timeout": 30})
    info = {
        "name": contract.name, "model_version": model_tag, "metrics": contract.metrics,
        "gate": [{"metric": g.metric, "value": g.value, "threshold": g.threshold.describe(),
                  "passed": g.passed} for g in contract.gate],
        "notebook_sha256": contract.notebook_sha256, "parameters": contract.parameters,
        "trained_at": contract.created_at, "built_at": built_at,
        "nb2prod_version": contract.nb2prod_version}
    svc.add_asgi_middleware(Endpoints, get_routes={"/model": lambda: info}, admin_routes={})
    return svc


def load_code(path: str | Path) -> ModuleType:
    """Import the exported notebook module from a file next to ``service.py``."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
