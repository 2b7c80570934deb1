"""The served flagship against a hostile client, over raw HTTP (httpx would normalise
``..``): a key that forges a log line or floods it, dot-segment admin paths, admin bodies
that are not JSON or nest too deep, and labels that are no class."""

import http.client
import json
import os

import pytest

from nb2prod.runtime.loading import load_version
from nb2prod.serve import Server

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
TOKEN = "test-admin-token-1234"
FORGED = "\n[ERROR] FORGED LOG LINE"


@pytest.fixture(scope="module")
def server(flagship_build, tmp_path_factory):
    db = tmp_path_factory.mktemp("audit") / "audit.db"
    env = {
        **os.environ,
        "NB2PROD_AUDIT_URL": f"sqlite:///{db}",
        "NB2PROD_ADMIN_TOKEN": TOKEN,
        "NB2PROD_MAX_BODY_BYTES": str(3 * 2**20),
    }
    served = Server(flagship_build["bento_tag"], env=env)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()
        served.log.unlink(missing_ok=True)


def send(server, method, path, body=b"", headers=None):
    """``method path`` exactly as given, over a raw connection: (status, parsed body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {"content-length": str(len(body)), **(headers or {})}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        r = conn.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw.decode(errors="replace")
    finally:
        conn.close()


ADMIN = {"authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}


def test_a_key_that_forges_or_floods_a_log_line_gives_one_bounded_line(server, flagship_build):
    example = dict(load_version(flagship_build["model_tag"])[0].examples[0])
    before = len(server.output().splitlines())
    for key in ("mean radius" + FORGED, "k" * 2**20):
        body = json.dumps({"records": [{**example, key: 1}]}).encode()
        status, _ = send(server, "POST", "/predict", body, JSON)
        assert status in (400, 422), status  # refused as the client's error, not a 5xx
    # the access log writes the path percent-decoded: %0A would be a line break
    assert send(server, "GET", "/model%0A%5BERROR%5D%20FORGED%20LOG%20LINE")[0] == 404
    lines = server.output().splitlines()[before:]
    assert not any(line.lstrip().startswith("[ERROR] FORGED") for line in lines), lines
    assert all(len(line) < 2000 for line in lines), max(map(len, lines))
    # the forged key (refused request's line) and path (access log), each escaped in one line
    assert sum("FORGED" in line for line in lines) <= 2


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/admin/review/../reload"),
        ("POST", "/admin/reload/../review"),
        ("GET", "/admin/review/%2e%2e/reload"),
        ("GET", "/admin//review"),
    ],
)
def test_admin_paths_match_exactly(server, method, path):
    status, body = send(server, method, path, headers=ADMIN)
    assert status == 404, body
    assert "paths are matched exactly" in body["error"]  # neither route it names answered


def test_admin_posts_take_json_or_nothing_and_any_unparsable_body_is_400(server):
    plain = send(
        server,
        "POST",
        "/admin/review/1",
        b'{"label": "benign"}',
        {**ADMIN, "content-type": "text/plain"},
    )
    assert plain[0] == 415 and "application/json" in plain[1]["error"]
    deep = send(
        server,
        "POST",
        "/admin/review/1",
        b'{"label": ' + b"[" * 10000 + b"]" * 10000 + b"}",
        {**ADMIN, **JSON},
    )
    assert deep == (400, {"error": "the request body is nested too deeply to parse"})
    assert send(server, "POST", "/admin/reload", b"", ADMIN)[0] == 200  # no body: fine


def test_feedback_labels_must_be_a_class_of_the_model(server, flagship_build):
    example = dict(load_version(flagship_build["model_tag"])[0].examples[0])
    status, answer = send(
        server, "POST", "/predict", json.dumps({"records": [example]}).encode(), JSON
    )
    assert status == 200, answer
    request_id = answer["request_id"]

    def feedback(label):
        return send(
            server,
            "POST",
            "/feedback",
            json.dumps({"request_id": request_id, "label": label}).encode(),
            JSON,
        )

    status, body = feedback("definitely-not-a-class")
    assert status == 400, body
    assert "'benign', 'malignant'" in body["error"]
    status, body = feedback("x" * 100_000)
    assert status == 400 and len(json.dumps(body)) < 1000, body
    assert feedback("malignant")[0] == 200
