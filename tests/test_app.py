"""nb2prod's HTTP surface (runtime/app.py, runtime/openapi.py) mounted in a real BentoML
service, without a model: routes and path parameters, the admin token, the body guard,
errors as statuses, and /docs.json listing every nb2prod endpoint with its schemas."""

import json
import logging

import bentoml
import pytest
from pydantic import TypeAdapter
from starlette.testclient import TestClient
from typing_extensions import TypedDict

from nb2prod.core.errors import Conflict, ServiceError, Unavailable, Unprocessable
from nb2prod.runtime import app as http
from nb2prod.runtime import wire
from nb2prod.runtime.answers import DriftReport, ModelInfo
from nb2prod.runtime.endpoints import APIS, ENDPOINTS
from nb2prod.runtime.openapi import DocumentedService

TOKEN = "s3cret-admin-token"
MAX_BODY = 2000
INFO = {"name": "m", "model_version": "m:1", "metrics": {"auc": 0.9}, "gate": [
    {"metric": "auc", "value": 0.9, "threshold": ">= 0.8", "passed": True}],
    "notebook_sha256": "ab", "parameters": {"C": 1}, "trained_at": "t", "built_at": "b",
    "nb2prod_version": "0", "captured": [{"name": "x", "type": "int", "bytes": 3,
                                          "cell": "cell 2"}], "live_quality": None}
calls: list = []


def resolve_review(item_id, body):
    calls.append((item_id, body))
    if item_id == "7":
        raise Conflict("review item 7 was resolved already")
    return {"item": int(item_id), "request_id": "r", "row": 0, "resolved": True}


def broken():
    raise RuntimeError("a bug, /home/secret/path")


class Tiny:
    """A service with one API, answering as nb2prod's do: data, or an error response."""

    @bentoml.api
    def predict(self, records: list[dict]) -> dict:  # for the docs: Direct answers /predict
        try:
            return answer(records)
        except ServiceError as exc:
            return http.error_response(exc)

    @bentoml.api
    def feedback(self, request_id: str) -> dict:
        return {"request_id": request_id}


def answer(records):
    if records[0].get("refuse"):
        raise Unprocessable("1 check failure(s): the request is refused",
                            detail=[{"loc": ["records", 0], "check": "c"}])
    if records[0].get("away"):
        raise Unavailable("the audit database is away; retry later")
    return {"n": len(records)}


class TinyBody(TypedDict):
    records: list[dict]


def tiny_predict(body):  # what Direct answers /predict with
    return wire.encode(answer(body["records"]))


async def tiny_inline(body):
    return tiny_predict(body)


@pytest.fixture(scope="module")
def svc():
    service = bentoml.service(Tiny, service_class=DocumentedService)
    http.attach(service, {"info": lambda: INFO, "drift_report": broken,
                          "pending_review": lambda: {"pending": []},
                          "resolve_review": resolve_review,
                          "reload": lambda: {"reloaded": False, "model_version": "m:1"}},
                MAX_BODY,
                {"/predict": wire.DirectRoute(TypeAdapter(TinyBody), tiny_inline, tiny_predict)})
    return service


@pytest.fixture(scope="module")
def client(svc):
    with TestClient(svc.to_asgi()) as c:  # to_asgi() once per process
        yield c


@pytest.fixture
def admin(monkeypatch):
    monkeypatch.setenv("NB2PROD_ADMIN_TOKEN", TOKEN)
    return {"authorization": f"Bearer {TOKEN}"}


# -- routes -------------------------------------------------------------------------------

def test_get_routes_answer_beside_bentomls_own(client):
    assert client.get("/model").json() == INFO
    assert client.post("/predict", json={"records": [{}, {}]}).json() == {"n": 2}
    # (/metrics answers only in a real server: tests/test_e2e_runtime.py reads it)
    assert client.get("/readyz").status_code == 200 and client.get("/livez").status_code == 200


def test_a_wrong_method_is_405_saying_which(client):
    r = client.post("/model")
    assert (r.status_code, r.json()) == (405, {"error": "use GET /model"})
    assert client.head("/model").status_code == 200


def test_a_bug_in_a_route_is_500_at_once_logged_and_not_shown(client, caplog):
    with caplog.at_level(logging.ERROR, logger="nb2prod"):
        r = client.get("/drift")
    assert (r.status_code, r.json()) == (500, {"error": "internal error; see the server log"})
    assert "GET /drift failed" in caplog.text and "RuntimeError" in caplog.text


def test_path_parameters_and_the_body_reach_the_handler(client, admin):
    calls.clear()
    r = client.post("/admin/review/42", json={"label": "benign"}, headers=admin)
    assert r.json() == {"item": 42, "request_id": "r", "row": 0, "resolved": True}
    assert calls == [("42", {"label": "benign"})]


def test_a_served_error_from_a_route_is_its_status_and_message(client, admin):
    r = client.post("/admin/review/7", json={"label": "x"}, headers=admin)
    assert (r.status_code, r.json()) == (409, {"error": "review item 7 was resolved already"})


def test_a_body_that_is_not_json_is_400_and_an_oversized_one_413(client, admin):
    json_type = {**admin, "content-type": "application/json"}
    for body in (b"{nope", b"\xff\xfe", b'{"label": 1} trailing'):
        bad = client.post("/admin/review/1", content=body, headers=json_type)
        assert (bad.status_code, bad.json()) == (400, {"error": "the request body is not valid "
                                                                "JSON"}), body
    big = client.post("/admin/review/1", json={"label": "x" * MAX_BODY}, headers=admin)
    assert big.status_code == 413 and "NB2PROD_MAX_BODY_BYTES" in big.json()["error"]


def test_a_body_nested_too_deep_to_parse_is_400_not_500():
    deep = b'{"label": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    with pytest.raises(http.BadRequest, match="nested too deeply") as err:
        http.parse_json(deep)
    assert err.value.status == 400


def test_admin_posts_take_json_or_no_body(client, admin):
    calls.clear()
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        r = client.post("/admin/review/1", content=b'{"label": 1}',
                        headers={**admin, "content-type": kind})
        assert r.status_code == 415 and kind in r.json()["error"], r.text
    untyped = client.post("/admin/reload", content=b"x", headers=admin)
    assert untyped.status_code == 415 and "no content-type" in untyped.json()["error"]
    assert calls == []  # the handler never saw them
    assert client.post("/admin/reload", headers=admin).status_code == 200  # no body at all
    typed = client.post("/admin/review/1", content=b'{"label": 1}',
                        headers={**admin, "content-type": "application/json; charset=utf-8"})
    assert typed.status_code == 200 and calls == [("1", {"label": 1})]


def asgi(client, method, path, headers=()):
    """``method path`` sent to the app as given (httpx would normalise ``..``)."""
    async def call():
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
                 "server": ("testserver", 80),
                 "headers": [(k.encode(), v.encode()) for k, v in headers]}
        out = {"body": b""}

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            out.update(status=message["status"]) if "status" in message else None
            out["body"] += message.get("body", b"")

        await client.app(scope, receive, send)
        return out["status"], json.loads(out["body"])
    return client.portal.call(call)


@pytest.mark.parametrize("method, path", [
    ("GET", "/admin/review/../reload"), ("POST", "/admin/reload/../review"),
    ("GET", "/admin/./review"), ("GET", "/admin//review"), ("POST", "/admin/review/1/.."),
])
def test_admin_paths_match_exactly_never_normalised(client, admin, method, path):
    calls.clear()
    status, body = asgi(client, method, path, list(admin.items()))
    assert status == 404 and "paths are matched exactly" in body["error"], body
    assert calls == []
    assert asgi(client, "GET", "/admin/review", list(admin.items())) == (200, {"pending": []})


# -- the admin token ----------------------------------------------------------------------

@pytest.mark.parametrize("token", ["short", "x" * 15])
def test_a_token_under_16_characters_keeps_the_admin_routes_disabled(client, monkeypatch,
                                                                     token):
    monkeypatch.setenv("NB2PROD_ADMIN_TOKEN", token)
    r = client.get("/admin/review", headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 404
    assert r.json()["error"].startswith(f"admin endpoints are disabled: NB2PROD_ADMIN_TOKEN is "
                                        f"{len(token)} characters; it must be at least 16")
    assert http.admin_disabled("x" * 16) is None


def test_the_startup_line_says_why_the_admin_routes_are_off():
    from types import SimpleNamespace

    from nb2prod.core.settings import Settings
    from nb2prod.runtime.serving import Serving

    def line(token):
        env = {"NB2PROD_ADMIN_TOKEN": token} if token else {}
        serving = SimpleNamespace(model_tag="m:1", audit=None, drift=None,
                                  settings=Settings.from_env(env),
                                  predictor=SimpleNamespace(policy=SimpleNamespace(timeout_s=2)))
        return Serving.startup_line(serving)

    assert "admin endpoints off (NB2PROD_ADMIN_TOKEN is 5 characters; it must be at least 16" \
        in line("short")
    assert "admin endpoints off (set NB2PROD_ADMIN_TOKEN to enable them)" in line(None)
    assert "admin endpoints on;" in line("x" * 16)


def test_admin_routes_are_404_saying_how_to_enable_them_without_a_token(client, monkeypatch):
    monkeypatch.delenv("NB2PROD_ADMIN_TOKEN", raising=False)
    for r in (client.get("/admin/review", headers={"authorization": "Bearer x"}),
              client.post("/admin/reload"), client.get("/admin/anything")):
        assert r.status_code == 404, r.text
        assert r.json() == {"error": "admin endpoints are disabled: set NB2PROD_ADMIN_TOKEN "
                                     "to enable them"}


@pytest.mark.parametrize("given", [None, "", f"bearer {TOKEN}", TOKEN, "Bearer ",
                                   "Bearer " + "x" * len(TOKEN),  # right length, wrong token
                                   f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x"])
def test_without_the_right_bearer_token_admin_routes_are_401(client, admin, given):
    headers = {} if given is None else {"authorization": given}
    for r in (client.get("/admin/review", headers=headers),
              client.post("/admin/review/1", json={"label": 1}, headers=headers),
              client.post("/admin/reload", headers=headers),
              client.post("/admin/nothing", headers=headers)):
        assert r.status_code == 401, (given, r.request.url)
        assert r.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer <NB2PROD_ADMIN_TOKEN>" in r.json()["error"]


def test_the_token_is_compared_in_constant_time(client, admin, monkeypatch):
    compared = []
    real = http.hmac.compare_digest
    monkeypatch.setattr(http.hmac, "compare_digest",
                        lambda a, b: compared.append((a, b)) or real(a, b))
    assert client.get("/admin/review", headers={"authorization": "Bearer guess"}).status_code == 401
    assert client.get("/admin/review", headers=admin).json() == {"pending": []}
    assert compared == [(b"guess", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


def test_an_unknown_admin_route_is_404_listing_the_routes_once_authorized(client, admin):
    for r in (client.post("/admin/review", headers=admin), client.get("/admin", headers=admin),
              client.delete("/admin/reload", headers=admin)):
        assert r.status_code == 404
        assert "POST /admin/review/{item_id}" in r.json()["error"], r.json()


# -- the guard and BentoML's APIs ---------------------------------------------------------

def test_the_guard_refuses_non_json_and_oversized_bodies_before_bentoml_parses(client):
    r = client.post("/predict", content=b"records=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    r = client.post("/predict", json={"records": [{"x": "y" * MAX_BODY}]})
    assert r.status_code == 413 and "NB2PROD_MAX_BODY_BYTES" in r.json()["error"]


def test_the_guard_stops_a_chunked_body_at_the_limit(client):
    def chunks():
        yield b'{"records": [{"x": "'
        for _ in range(10):
            yield b"y" * 300
        yield b'"}]}'
    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    small = client.post("/predict", content=iter([b'{"records": ', b'[{}]}']),
                        headers={"content-type": "application/json"})
    assert small.json() == {"n": 1}


def test_served_errors_from_an_api_are_their_status_and_detail(client):
    r = client.post("/predict", json={"records": [{"refuse": True}]})
    assert r.status_code == 422
    assert r.json() == {"error": "1 check failure(s): the request is refused",
                        "detail": [{"loc": ["records", 0], "check": "c"}]}
    r = client.post("/predict", json={"records": [{"away": True}]})
    assert (r.status_code, r.json()) == (503, {"error": "the audit database is away; retry later"})


# -- /docs.json -----------------------------------------------------------------------------

def test_docs_json_lists_every_nb2prod_endpoint_with_its_schemas(client):
    docs = client.get("/docs.json").json()
    schemas = docs["components"]["schemas"]

    def resolved(schema):
        assert schema["$ref"].startswith("#/components/schemas/")
        return schemas[schema["$ref"].rsplit("/", 1)[1]]

    for e in (*ENDPOINTS, *APIS):
        op = docs["paths"][e.path][e.method.lower()]
        answer = resolved(op["responses"]["200"]["content"]["application/json"]["schema"])
        assert answer["title"] == e.response.__name__ and answer["properties"]
        assert {str(s) for s, _ in e.errors} <= set(op["responses"])
        assert all(resolved(op["responses"][str(s)]["content"]["application/json"]["schema"])
                   ["title"] == "Error" for s, _ in e.errors)
        assert ("security" in op) is e.admin
        assert ("requestBody" in op) is (e.body is not None or e in APIS)
    review = docs["paths"]["/admin/review/{item_id}"]["post"]
    assert [(p["name"], p["in"], p["schema"]["type"]) for p in review["parameters"]] == [
        ("item_id", "path", "integer")]
    verdict = resolved(review["requestBody"]["content"]["application/json"]["schema"])
    assert verdict["required"] == ["label"]
    assert {"401", "404", "409"} <= set(review["responses"])
    assert docs["components"]["securitySchemes"]["admin"]["scheme"] == "bearer"
    predict = docs["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]  # BentoML's own
    assert "records" in body["properties"]
    assert "400" in predict["responses"] and "/readyz" in docs["paths"]


def test_the_documented_schemas_describe_real_answers():
    ModelInfo.model_validate(INFO)
    DriftReport.model_validate({"status": "off", "features": {}})


def test_the_bentos_openapi_document_has_them_too(svc):
    # what `bentoml build` writes to apis/openapi.yaml is the same property
    paths = svc.openapi_spec.asdict()["paths"]
    assert {e.path for e in (*ENDPOINTS, *APIS)} <= set(paths)


def test_a_path_with_a_control_character_is_a_json_404(client, admin):
    # BentoML's own router matches no such path and would answer in plain text
    for path in ("/admin/review/A%0A%3F", "/model%0D", "/predict%00"):
        r = client.post(path, json={"label": 1}, headers=admin)
        assert r.status_code == 404 and r.headers["content-type"] == "application/json", path
        assert "control characters" in r.json()["error"]
