"""The served process and its connections: a worker whose arbiter is killed exits and frees
its port; a client that sends its request too slowly is dropped while others are answered;
a bento whose notebook code was changed does not start.

Real processes and sockets throughout: a watchdog in a child whose parent is SIGKILLed,
uvicorn in this process with nb2prod's protocol, and the flagship under ``bentoml serve``.
"""

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from process_tree import kill_tree

from nb2prod.runtime.loading import load_version
from nb2prod.runtime.watchdog import arbiter
from nb2prod.serve import Server, free_port

# -- the watchdog, in real processes ---------------------------------------------------------

# A parent that starts the watched child in a session of its own (as circus does) and waits.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]],
                         start_new_session=True, stderr=open(sys.argv[3], "w"))
print(child.pid, flush=True)
time.sleep(60)
"""
CHILD = """
import os, signal, sys, time
from nb2prod.runtime.watchdog import Watchdog
if sys.argv[1] == "ignores-sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as a worker stuck in shutdown would
Watchdog(os.getppid(), grace_s=0.3, poll_s=0.05).start()
print("watching", file=sys.stderr, flush=True)
time.sleep(60)
"""


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(procs: list[psutil.Process], timeout: float) -> float:
    """Seconds until every one of ``procs`` has exited; fails after ``timeout``."""
    started = time.monotonic()
    while not all(gone(p) for p in procs):
        assert time.monotonic() - started < timeout, f"still running: {procs}"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.parametrize(
    "child, at_least, at_most", [("obeys-sigterm", 0.0, 1.5), ("ignores-sigterm", 0.3, 2.0)]
)
def test_a_watched_process_exits_when_its_parent_is_killed(child, at_least, at_most, tmp_path):
    log = tmp_path / "child.log"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD, child, str(log)], stdout=subprocess.PIPE, text=True
    )
    try:
        watched = psutil.Process(int(parent.stdout.readline()))
        while "watching" not in log.read_text():
            assert watched.is_running(), log.read_text()
            time.sleep(0.02)
        assert not gone(watched)  # its parent lives: it stays
        parent.kill()
        parent.wait()
        took = wait_gone([watched], timeout=5)
    finally:
        parent.kill()
        if not gone(watched):
            watched.kill()
    assert at_least <= took <= at_most, f"exited {took:.2f}s after its parent"
    said = log.read_text()
    assert f"the BentoML arbiter (pid {parent.pid}) is gone" in said, said
    assert ("did not stop in" in said) == (child == "ignores-sigterm"), said


def test_only_a_bentoml_worker_is_watched():
    assert arbiter() is None  # this test process is no BentoML worker


# -- the read deadline, on uvicorn in this process -------------------------------------------


async def slow_app(scope, receive, send):
    """Reads the whole body, thinks for 0.8 s (longer than the deadline), answers."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await asyncio.sleep(0.8)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=["h11", "httptools"])
def guarded_uvicorn(request, monkeypatch):
    """uvicorn serving ``slow_app`` with nb2prod's 0.5 s read deadline on each of its HTTP
    protocols; its port."""
    import uvicorn
    from uvicorn.protocols.http import auto

    from nb2prod.runtime import connections

    if request.param == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol as protocol
    else:
        pytest.importorskip("httptools")
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as protocol

    monkeypatch.setattr(auto, "AutoHTTPProtocol", auto.AutoHTTPProtocol)  # restored after
    assert connections.install(0.5, protocol)
    assert auto.AutoHTTPProtocol.__mro__[2] is protocol
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(slow_app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(5)


class Closes:
    """When the server closed each connection, watched by a thread per connection (the
    server must send nothing but the close)."""

    def __init__(self, started: float):
        self.started, self.at, self.threads = started, {}, []

    def watch(self, name: str, conn: socket.socket) -> None:
        def wait() -> None:
            conn.settimeout(10)
            try:
                data = conn.recv(1024)
            except ConnectionResetError:
                data = b""
            self.at[name] = (time.monotonic() - self.started, data)

        self.threads.append(threading.Thread(target=wait, daemon=True))
        self.threads[-1].start()

    def seconds(self) -> dict[str, float]:
        """Seconds from the start to each close; fails if one sent data or stayed open."""
        for thread in self.threads:
            thread.join(10)
        assert all(data == b"" for _, data in self.at.values()), self.at
        assert len(self.at) == len(self.threads), self.at
        return {name: round(at, 2) for name, (at, _) in self.at.items()}


REQUEST = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"


def send_slowly(conn: socket.socket, data: bytes, every_s: float = 0.1) -> None:
    """A byte every ``every_s`` seconds until the server closes: each byte received stops
    uvicorn's keep-alive timer, but must not extend the read deadline."""
    for byte in data:
        try:
            conn.sendall(bytes([byte]))
        except OSError:
            return
        time.sleep(every_s)


@pytest.mark.slow
def test_a_request_must_arrive_within_the_deadline_answering_does_not_count(guarded_uvicorn):
    port = guarded_uvicorn
    stalls = {"nothing": b"", "half the headers": REQUEST[:20], "half the body": REQUEST + b"ab"}
    closes = Closes(time.monotonic())
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(len(stalls) + 1)]
    for conn, (name, sent) in zip(conns, stalls.items()):
        conn.sendall(sent)
        closes.watch(name, conn)
    trickle = conns[-1]
    closes.watch("a byte at a time", trickle)
    threading.Thread(target=send_slowly, args=(trickle, REQUEST), daemon=True).start()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        # a whole request is answered, though the app takes longer than the deadline
        first = client.post("/", content=b"abcd")
        second = client.post("/", content=b"abcd")  # the same connection: a new deadline
    took = closes.seconds()
    for conn in conns:
        conn.close()
    assert (first.status_code, first.text, second.status_code) == (200, "ok", 200)
    assert all(0.45 <= t <= 1.2 for t in took.values()), took
    # answered, then idle: the next request's deadline runs (not uvicorn's 5 s keep-alive)
    with socket.create_connection(("127.0.0.1", port)) as idle:
        idle.settimeout(10)
        idle.sendall(REQUEST + b"abcd")
        reply = b""
        while not reply.endswith(b"0\r\n\r\n"):  # the chunked body's end
            reply += idle.recv(1024)
        answered = time.monotonic()
        assert idle.recv(1024) == b""
        assert 0.45 <= time.monotonic() - answered <= 1.2


# -- the flagship under bentoml serve -------------------------------------------------------


def workers_of(server: Server) -> list[psutil.Process]:
    """The service worker processes of ``server`` (circus starts each in its own session)."""
    found = psutil.Process(server.proc.pid).children(recursive=True)
    assert found and all(os.getsid(p.pid) != os.getpgid(server.proc.pid) for p in found)
    return found


def records(manifest: dict) -> list[dict]:
    return [dict(e) for e in load_version(manifest["model_tag"])[0].examples]


@pytest.mark.slow
@pytest.mark.e2e
def test_killing_the_arbiter_stops_its_worker_and_frees_the_port(flagship_build, tmp_path):
    first = Server(flagship_build["bento_tag"], cwd=tmp_path, log=tmp_path / "first.log")
    try:
        first.wait_ready()
        workers = workers_of(first)
        os.killpg(first.proc.pid, signal.SIGKILL)  # kill -9 -PGID: the worker is not in it
        first.proc.wait(10)
        took = wait_gone(workers, timeout=10)
    finally:
        kill_tree(first)
    print(f"workers exited {took:.2f}s after the arbiter was killed")
    assert took < 3, took
    assert "the BentoML arbiter" in first.output() and "is gone" in first.output()
    again = Server(
        flagship_build["bento_tag"], cwd=tmp_path, port=first.port, log=tmp_path / "again.log"
    )
    try:
        again.wait_ready()  # "Address already in use" would end it here
        answer = httpx.post(
            f"{again.url}/predict", json={"records": records(flagship_build)}, timeout=30
        )
        # and a worker that dies of a signal says so (faulthandler), not only restarts
        (worker,) = workers_of(again)
        worker.send_signal(signal.SIGBUS)
        wait_gone([worker], timeout=10)
        deadline = time.monotonic() + 10
        while "Fatal Python error: Bus error" not in again.output():
            assert time.monotonic() < deadline, again.output()[-3000:]
            time.sleep(0.1)
    finally:
        again.stop()
    assert answer.status_code == 200, answer.text
    assert "Current thread" in again.output()  # the stack it died in


@pytest.mark.slow
@pytest.mark.e2e
def test_a_server_whose_port_is_taken_before_it_binds_starts_on_another(
    flagship_build, tmp_path, monkeypatch
):
    # The race seen in CI: a port found free is taken by someone else before
    # ``bentoml serve`` binds it. Holding the port ourselves makes it happen every time.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    offered = iter([port])
    monkeypatch.setattr("nb2prod.serve.free_port", lambda: next(offered, None) or free_port())
    server = Server(flagship_build["bento_tag"], cwd=tmp_path, log=tmp_path / "server.log")
    try:
        server.wait_ready()
        answer = httpx.post(
            f"{server.url}/predict", json={"records": records(flagship_build)}, timeout=30
        )
    finally:
        server.stop()
        taken.close()
    assert server.attempts == 2 and server.port != port
    assert answer.status_code == 200, answer.text
    assert "Could not bind" in server.output()  # the first attempt's output is kept


STALLED = 50  # connections that send part of a request, then nothing
READ_TIMEOUT_S = 2


@pytest.mark.slow
@pytest.mark.e2e
def test_stalled_clients_are_dropped_while_requests_are_answered(flagship_build, tmp_path):
    env = {**os.environ, "NB2PROD_READ_TIMEOUT_S": str(READ_TIMEOUT_S)}
    server = Server(flagship_build["bento_tag"], cwd=tmp_path, env=env, log=tmp_path / "s.log")
    body = httpx.Request("POST", "/predict", json={"records": records(flagship_build)}).content
    head = (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    # nothing, half the headers, the headers and half the body: a third each
    parts = [b"", head[: len(head) // 2], head + body[: len(body) // 2]]
    try:
        server.wait_ready()
        with httpx.Client(
            base_url=server.url, timeout=30, headers={"content-type": "application/json"}
        ) as client:
            assert client.post("/predict", content=body).status_code == 200  # warm
            closes = Closes(time.monotonic())
            stalled = []
            for i in range(STALLED):
                conn = socket.create_connection(("127.0.0.1", server.port))
                conn.sendall(parts[i % 3])
                closes.watch(f"{i}: {len(parts[i % 3])} bytes", conn)
                stalled.append(conn)
            idle = socket.create_connection(("127.0.0.1", server.port))  # keep-alive, idle
            idle.sendall(head + body)
            reply = b""  # the head and the body may come in separate segments
            while not (b"\r\n\r\n" in reply and reply.endswith(b"}")):
                reply += idle.recv(65536)
            assert b"200 OK" in reply
            closes.watch("idle after an answer", idle)
            answered, slowest = [], 0.0
            while time.monotonic() - closes.started < READ_TIMEOUT_S + 1:
                started = time.perf_counter()
                answered.append(client.post("/predict", content=body).status_code)
                slowest = max(slowest, time.perf_counter() - started)
        took = closes.seconds()
        for conn in [*stalled, idle]:
            conn.close()
    finally:
        output = server.stop()
    idle_s = took.pop("idle after an answer")
    print(
        f"{len(took)} stalled connections closed after {min(took.values())}-"
        f"{max(took.values())}s; the idle keep-alive one after {idle_s}s; "
        f"{len(answered)} requests meanwhile, slowest {slowest * 1000:.0f} ms"
    )
    assert all(READ_TIMEOUT_S - 0.1 <= t <= READ_TIMEOUT_S + 1 for t in took.values()), took
    assert idle_s <= READ_TIMEOUT_S + 1, idle_s  # its next request has a deadline too
    assert set(answered) == {200} and len(answered) >= 10, answered
    assert "did not send a whole request within 2s" in output
    assert "Traceback" not in output, output[-3000:]


@pytest.mark.slow
@pytest.mark.e2e
def test_a_changed_code_file_in_the_bento_refuses_to_start(flagship_build, tmp_path):
    import bentoml

    name = flagship_build["name"]
    src = Path(bentoml.bentos.get(flagship_build["bento_tag"]).path) / "src"
    code = src / f"{name}_code.py"
    original = code.read_bytes()
    pinned = hashlib.sha256(original).hexdigest()
    assert f'code_sha256="{pinned}"' in (src / "service.py").read_text()  # the build pins it
    code.write_bytes(original + b"\nTHRESHOLD = 0.01  # changed after the build\n")
    server = Server(flagship_build["bento_tag"], cwd=tmp_path, log=tmp_path / "server.log")
    try:
        with pytest.raises(RuntimeError) as refused:
            server.wait_ready(timeout=60)
    finally:
        server.stop()
        code.write_bytes(original)
    said = [line for line in str(refused.value).splitlines() if "nb2prod" in line]
    assert len(said) == 1, str(refused.value)  # one line: what, where, and how to fix it
    assert f"{name}_code.py, the bento's notebook code, is missing or was changed" in said[0]
    assert f"restore {name}_code.py or run nb2prod build again" in said[0]
    assert "Traceback" not in str(refused.value)


@pytest.mark.parametrize("change", ["edited", "missing"])
def test_the_code_pin_is_checked_before_anything_else(change, tmp_path):
    from nb2prod.runtime.service import make_service

    code = tmp_path / "churn_code.py"
    code.write_text("def predict(model, X):\n    return X\n", encoding="utf-8")
    pinned = hashlib.sha256(code.read_bytes()).hexdigest()
    if change == "edited":
        code.write_text("def predict(model, X):\n    return X * 2\n", encoding="utf-8")
    else:
        code.unlink()
    with pytest.raises(SystemExit) as refused:  # before the model store is even asked
        make_service(
            class_name="Churn",
            code_path=code,
            code_sha256=pinned,
            model_tag="churn:none",
            model_sha256="0" * 64,
            built_at="",
            module="x",
        )
    said = str(refused.value)
    assert said.startswith(
        "nb2prod: cannot serve Churn: churn_code.py, the bento's notebook "
        "code, is missing or was changed after the build"
    ), said
    assert said.endswith("how to fix: restore churn_code.py or run nb2prod build again"), said
    assert "\n" not in said


def test_defining_the_service_imports_no_pandas_and_no_model_library(flagship_build, tmp_path):
    """`bentoml serve`'s arbiter imports service.py to define the service and never
    predicts: pandas and the model's libraries there cost ~0.3 s of every cold start
    (bench/cold_start.py). Its start-up checks still run: the audit database is opened."""
    import bentoml

    src = Path(bentoml.bentos.get(flagship_build["bento_tag"]).path) / "src"
    probe = (
        "import sys, service; "
        "print(sorted(m for m in ('pandas', 'sklearn', 'nb2prod.checks.compiled') "
        "if m in sys.modules))"
    )
    audit = tmp_path / "audit.db"
    env = {**os.environ, "NB2PROD_AUDIT_URL": f"sqlite:///{audit}"}
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=src, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
    assert audit.exists()  # the arbiter's check reached the audit database


def test_the_collector_is_off_while_a_worker_starts_and_on_once_it_is_ready(flagship_build):
    """service.py turns the cyclic collector off while it loads (~0.1 s of a worker's
    start); a process that only defines the service gets it back at once, a worker once
    its instance is made, with start-up's objects frozen out of its sight."""
    import bentoml

    src = Path(bentoml.bentos.get(flagship_build["bento_tag"]).path) / "src"
    defining = "import gc, service; print(gc.isenabled(), gc.get_freeze_count() > 0)"
    worker = (
        "import gc; from bentoml._internal.context import server_context; "
        "server_context.worker_index = 1; import service; before = gc.isenabled(); "
        "service.BreastCancer.inner(); print(before, gc.isenabled(), gc.get_freeze_count() > 0)"
    )
    env = {**os.environ, "NB2PROD_AUDIT_URL": "off", "NB2PROD_CPU_PIN": "off"}
    said = []
    for probe in (defining, worker):
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=src, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        said.append(done.stdout.strip().splitlines()[-1])
    assert said == ["True False", "False True True"]
