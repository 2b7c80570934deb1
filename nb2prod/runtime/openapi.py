"""What nb2prod's own routes take and return, written into the service's ``/docs.json``.

``Endpoint`` describes one route once, for routing (``app.py``) and for the document.
BentoML documents its ``@bentoml.api`` endpoints (``/predict``, ``/feedback``) and, of the
apps mounted in a service, only FastAPI ones; ``DocumentedService`` adds the routes of a
``DocumentedApp``, so ``/docs.json`` and the bento's ``apis/openapi.yaml`` (written by
``bentoml build``) both list every nb2prod endpoint with its schemas.

The schemas come from the models in ``answers.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import bentoml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette

from nb2prod.runtime.answers import Error
from nb2prod.runtime.front import in_front
from nb2prod.runtime.wire import Direct

REF = "#/components/schemas/{model}"
TAG, TAG_DESCRIPTION = (
    "nb2prod",
    "the served version, drift, and the admin routes (review queue, reload)",
)
ADMIN_AUTH = "admin"  # the security scheme's name
ADMIN_NOTE = (
    "Needs `Authorization: Bearer $NB2PROD_ADMIN_TOKEN` (401 without it); answers "
    "404 while NB2PROD_ADMIN_TOKEN is unset."
)


@dataclass(frozen=True)
class Endpoint:
    """One nb2prod route, as routed and as documented: ``path`` may hold ``{parameters}``
    (their schemas in ``parameters``, else strings); ``name`` is its handler's key and
    operation id; ``errors`` the statuses it can refuse with, and why."""

    method: str
    path: str
    name: str
    summary: str
    response: type[BaseModel]
    body: type[BaseModel] | None = None
    admin: bool = False
    errors: tuple[tuple[int, str], ...] = ()
    parameters: Mapping[str, dict] = field(default_factory=dict)


class DocumentedApp(Starlette):
    """A Starlette app that keeps, for the docs, the ``Endpoint`` table it was built from
    and ``apis``: what the service's BentoML APIs answer (BentoML documents their
    requests, and their answers only as ``dict``)."""

    def __init__(
        self, endpoints: tuple[Endpoint, ...], apis: tuple[Endpoint, ...] = (), **options: Any
    ):
        super().__init__(**options)
        self.endpoints, self.apis = endpoints, apis


def operations(
    endpoints: tuple[Endpoint, ...], service: str, schema: Mapping[type[BaseModel], dict]
) -> dict[str, dict]:
    """OpenAPI operations for ``endpoints``, by path and method; ``schema`` gives each
    model's reference (see ``schemas``)."""
    paths: dict[str, dict] = {}
    for e in endpoints:
        op: dict[str, Any] = {
            "tags": [TAG],
            "summary": e.summary,
            "operationId": f"{service}__{e.name}",
            "responses": responses(e, schema),
        }
        names = re.findall(r"{(\w+)}", e.path)
        if names:
            op["parameters"] = [
                {
                    "name": n,
                    "in": "path",
                    "required": True,
                    "schema": e.parameters.get(n, {"type": "string"}),
                }
                for n in names
            ]
        if e.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema[e.body]}},
            }
        if e.admin:
            op["security"] = [{ADMIN_AUTH: []}]
            op["description"] = ADMIN_NOTE
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return paths


def responses(e: Endpoint, schema: Mapping[type[BaseModel], dict]) -> dict[str, dict]:
    """The endpoint's answer (200) and refusals, by status."""
    refusals: dict[str, list[str]] = {}
    for status, why in e.errors:
        refusals.setdefault(str(status), []).append(why)
    return {
        "200": _json(e.response.__doc__, schema[e.response]),
        **{s: _json("; or ".join(whys), schema[Error]) for s, whys in sorted(refusals.items())},
    }


def schemas(endpoints: Iterable[Endpoint]) -> tuple[dict[type[BaseModel], dict], dict]:
    """Each model's reference (``{"$ref": "#/components/schemas/<Model>"}``) and the
    component schemas those refer to."""
    endpoints = list(endpoints)
    models = {e.response for e in endpoints} | {e.body for e in endpoints if e.body} | {Error}
    refs, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=str)], ref_template=REF
    )
    return {m: refs[m, "validation"] for m in models}, defs["$defs"]


def _json(description: str | None, schema: dict) -> dict:
    return {
        "description": (description or "").strip(),
        "content": {"application/json": {"schema": schema}},
    }


class DocumentedService(bentoml.Service):
    """A BentoML service whose OpenAPI document also lists the routes of every
    ``DocumentedApp`` mounted in it."""

    __slots__ = ()

    def to_asgi(self, is_main: bool = True) -> Any:
        """BentoML's app, with ``wire.Direct`` in front when ``app.attach`` asked for it."""
        app = super().to_asgi(is_main=is_main)
        direct = getattr(self.inner, "__nb2prod_direct__", None)
        return app if direct is None else in_front(app, Direct, **direct)

    @property
    def openapi_spec(self) -> Any:
        """BentoML's document (``/docs.json``, the bento's ``apis/openapi.yaml``) plus ours."""
        # BentoML's OpenAPI classes are internal; they are what its generate_spec uses
        from bentoml._internal.service.openapi.specification import PathItem, Tag

        spec = super().openapi_spec
        for app, _, _ in self.mount_apps:
            if not isinstance(app, DocumentedApp):
                continue
            schema, components = schemas((*app.endpoints, *app.apis))
            paths = operations(app.endpoints, self.name, schema)
            spec.paths.update({p: PathItem(**ops) for p, ops in paths.items()})
            for api in app.apis:  # BentoML's APIs are POSTs; our refusals replace its own
                if api.path not in spec.paths:
                    continue  # a service without this API
                op = spec.paths[api.path].post
                op["responses"] = {
                    **{str(s): r for s, r in op["responses"].items()},
                    **responses(api, schema),
                }
            spec.components["schemas"].update(components)
            spec.components.setdefault("securitySchemes", {})[ADMIN_AUTH] = {
                "type": "http",
                "scheme": "bearer",
                "description": "NB2PROD_ADMIN_TOKEN; while it is unset the admin routes answer 404",
            }
            spec.tags.append(Tag(name=TAG, description=TAG_DESCRIPTION))
        return spec
