"""Several workers of one ``bentoml serve``, and replicas sharing one BENTOML_HOME, served
for real: one drift report for the service, a reload that reaches every worker, replicas
that follow a promotion by themselves; no request fails meanwhile."""

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import psutil
import pytest
from conftest import FLAGSHIP, built, nb2prod
from test_drift import PROFILE, draw, feed

from nb2prod.authoring.save import _policy
from nb2prod.core import settings
from nb2prod.core.errors import Nb2prodError
from nb2prod.core.spec import Contract
from nb2prod.runtime import affinity, registry
from nb2prod.runtime.answers import DriftReport, Reloaded
from nb2prod.runtime.drift import DriftMonitor
from nb2prod.runtime.loading import load_version
from nb2prod.runtime.siblings import Siblings, run_dir
from nb2prod.serve import Server

NAME = "breast_cancer"
TOKEN = "workers-admin-token-1234"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
FRESH = httpx.Limits(max_keepalive_connections=0)  # a new connection, so any worker answers


# --- fast: the parts, in this process ---------------------------------------------------


def test_merged_windows_report_what_one_window_of_all_the_rows_would():
    rows = draw(1_200, seed=3, shift=0.6)
    one, two, whole = (DriftMonitor(PROFILE, window=2_000, min_rows=200) for _ in range(3))
    feed(one, rows[:500], batch=50)
    feed(two, rows[500:], batch=50)
    feed(whole, rows, batch=50)
    merged = one.merged([two.snapshot()])
    expected = whole.report()
    assert merged["workers"] == 2 and merged["window"] == 4_000
    assert {k: merged[k] for k in ("status", "rows", "observed", "drifting", "features")} == {
        k: expected[k] for k in ("status", "rows", "observed", "drifting", "features")
    }
    DriftReport.model_validate(merged)
    # a snapshot of another profile (another version's bins) is left out
    assert one.merged([{"counts": [1, 2], "rows": 2, "observed": 2}])["rows"] == 500


def test_a_feature_still_drifting_is_warned_about_again_only_after_remind_s(caplog):
    monitor = DriftMonitor(PROFILE, window=1_000, min_rows=200, check_every=20, remind_s=0.2)
    with caplog.at_level(logging.WARNING, logger="nb2prod"):
        feed(monitor, draw(2_000, seed=8, shift=1.0), batch=100)  # 20 evaluations
        assert len(caplog.records) == 1
        time.sleep(0.25)
        feed(monitor, draw(300, seed=9, shift=1.0), batch=100)
    assert len(caplog.records) == 2 and "still" in caplog.records[1].getMessage()


def test_features_entering_drift_together_share_one_warning(caplog):
    monitor = DriftMonitor(PROFILE, window=1_000, min_rows=200, check_every=20)
    same = pd.concat([draw(1, seed=4)] * 1_000, ignore_index=True)  # one row, over and over
    with caplog.at_level(logging.WARNING, logger="nb2prod"):
        feed(monitor, same, batch=500)
        feed(monitor, same, batch=500)
    drifting = monitor.report()["drifting"]
    assert len(drifting) >= 3 and len(caplog.records) == 1
    assert all(repr(name) in caplog.records[0].getMessage() for name in drifting)


def test_workers_and_registry_poll_are_deployment_settings():
    now = settings.Settings.from_env({"NB2PROD_WORKERS": "3", "NB2PROD_REGISTRY_POLL_S": "0"})
    assert (now.workers, now.registry_poll_s) == (3, 0.0)
    assert (
        settings.Settings.from_env({}).workers,
        settings.Settings.from_env({}).registry_poll_s,
    ) == (None, 5.0)
    for env, value in (("NB2PROD_WORKERS", "0"), ("NB2PROD_REGISTRY_POLL_S", "-1")):
        with pytest.raises(Nb2prodError, match=env):
            settings.Settings.from_env({env: value})


@pytest.mark.parametrize("workers", [0, 1.5, True, "2"])
def test_save_model_refuses_a_number_of_workers_that_is_not_a_count(workers):
    with pytest.raises(Nb2prodError, match="workers=") as caught:
        _policy((), None, None, "fallback", None, None, workers)
    assert "workers=2" in caught.value.fix


def test_a_contract_saved_before_workers_existed_serves_with_one():
    saved = {"name": "m", "columns": [], "artifact_sha256": "ab" * 32}
    assert Contract.from_json(saved).workers == 1
    assert Contract.from_json({**saved, "workers": 3}).workers == 3


def test_files_of_dead_workers_are_dropped_and_a_lone_worker_reloads_alone(tmp_path):
    siblings = Siblings("nobody", current=None, reloader=lambda: {"model_version": "x:1"}, poll_s=0)
    assert siblings.reload() == {"model_version": "x:1"}  # not started: this process only
    assert run_dir("nobody", arbiter=42).parts[-3:-1] == ("nobody", "run")
    assert run_dir("nobody", arbiter=42).name.endswith("-42")
    siblings.dir = tmp_path
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = siblings.dir / f"worker-{int(gone.stdout)}.json"
    dead.write_text(json.dumps({"model_version": "x:0"}))
    live = siblings.dir / f"worker-{os.getppid()}.json"  # a live process: pytest's parent
    live.write_text(json.dumps({"model_version": "x:1", "drift": None}))
    assert [(s.pid, s.model_version) for s in siblings.siblings()] == [(os.getppid(), "x:1")]
    assert not dead.exists()


# --- served: 2 workers, 2 replicas --------------------------------------------------------


@pytest.fixture(scope="module")
def versions(flagship_build, tmp_path_factory):
    """Two versions of the flagship from the same code: the first build's and one trained
    with another C; each with its own bento pinned to it."""
    second = built(FLAGSHIP, tmp_path_factory.mktemp("second") / NAME, "-p", "C", "0.5")
    assert second["model_tag"] != flagship_build["model_tag"]
    # tests before these (retrain, promotion) may have moved production to a third version
    if registry.production(NAME) != flagship_build["model_tag"]:
        promote(flagship_build["model_tag"])
    return {m["model_tag"]: m["bento_tag"] for m in (flagship_build, second)}


def now_and_next(versions):
    """The production version, the bento pinned to it, and the other version."""
    production = registry.production(NAME)
    other = next(v for v in versions if v != production)
    return production, versions[production], other


def promote(version):
    proc = nb2prod("promote", NAME, version.split(":")[1], "--force", "--reason", "test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert registry.production(NAME) == version


def move_pointer(versions, version, expected):
    """What ``nb2prod promote`` does last, without the bento it builds first (a minute)."""
    code = load_version(version)[0].code_sha256
    move = registry.promotion_to(version, reason="test", bento=versions[version], code_sha256=code)
    registry.promote(NAME, move, expected=expected)


class Load:
    """Threads posting /predict until stopped, each on fresh connections: every answer's
    time, status and version."""

    def __init__(self, urls, records, threads=2):
        self.answers, self._stop = [], threading.Event()
        self._threads = [
            threading.Thread(target=self._post, args=(urls[i % len(urls)], records))
            for i in range(threads)
        ]

    def _post(self, url, records):
        with httpx.Client(base_url=url, timeout=30, limits=FRESH) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    r = client.post("/predict", json={"records": records})
                    self.answers.append((sent, url, r.status_code, r.json().get("model_version")))
                except httpx.HTTPError as exc:
                    self.answers.append((sent, url, repr(exc), None))
                time.sleep(0.02)  # busy, and leaving the promotion some CPU

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join()

    def failed(self):
        return [a for a in self.answers if a[2] != 200]


def env_for(tmp_path, **extra):
    return {
        **os.environ,
        "NB2PROD_ADMIN_TOKEN": TOKEN,
        "NB2PROD_AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
        **extra,
    }


@pytest.fixture(scope="module")
def two_workers(versions, tmp_path_factory):
    """One ``bentoml serve`` of the bento pinned to production, with NB2PROD_WORKERS=2."""
    _, bento, _ = now_and_next(versions)
    tmp = tmp_path_factory.mktemp("workers")
    # TMPDIR: CPU claims of its own (runtime/affinity.py), not those of other tests' serves
    env = env_for(tmp, NB2PROD_WORKERS="2", TMPDIR=str(tmp))
    server = Server(bento, env=env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.e2e
def test_two_workers_answer_drift_for_the_whole_service(two_workers, versions):
    production = registry.production(NAME)
    record = load_version(production)[0].examples[0]  # one record, over and over: drift
    with httpx.Client(base_url=two_workers.url, timeout=30, limits=FRESH) as client:
        for _ in range(20):
            assert client.post("/predict", json={"records": [record] * 40}).status_code == 200
        time.sleep(1.5)  # each worker writes its window's counts within a second
        reports = [client.get("/drift").json() for _ in range(12)]
    assert all(r == reports[0] for r in reports), "GET /drift differs between workers"
    report = DriftReport.model_validate(reports[0])
    assert report.workers == 2 and report.observed == report.rows == 800
    assert report.status == "drift" and "mean radius" in report.drifting


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs 2 CPUs or more")
def test_two_workers_keep_their_loop_and_model_threads_on_a_cpu_each(two_workers, versions):
    allowed = sorted(os.sched_getaffinity(0))
    record = load_version(registry.production(NAME))[0].examples[0]

    def ask(_: int) -> int:
        with httpx.Client(base_url=two_workers.url, timeout=30, limits=FRESH) as client:
            return client.post("/predict", json={"records": [record]}).status_code

    with ThreadPoolExecutor(8) as pool:  # concurrent connections: both workers answer
        assert set(pool.map(ask, range(80))) == {200}
    time.sleep(2.5 * affinity.SWEEP_S)  # threads started since have been swept
    loops = []
    for worker in psutil.Process(two_workers.proc.pid).children(recursive=True):
        masks = [sorted(os.sched_getaffinity(t.id)) for t in worker.threads()]
        loop = sorted(os.sched_getaffinity(worker.pid))  # the main thread runs the loop
        assert len(loop) == 1, f"worker {worker.pid}'s event loop is on CPUs {loop}"
        assert masks.count(loop) >= 2, "the model's thread is not on the loop's CPU"
        assert all(m in (loop, allowed) for m in masks), masks
        assert allowed in masks, "no thread has every CPU back (the sweep did not run)"
        loops.append(loop[0])
    assert len(loops) == 2 and len(set(loops)) == 2, f"the workers share a CPU: {loops}"


@pytest.mark.slow
@pytest.mark.e2e
def test_keep_alive_connections_opened_at_once_are_shared_between_the_workers(two_workers):
    # What a client pool or a load balancer does: a few connections, opened together and
    # kept. uvloop alone hands them all to whichever worker wakes first (runtime/balance.py).
    port = int(two_workers.url.rsplit(":", 1)[1])
    ask = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n".encode()
    for _ in range(3):
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        try:
            for c in conns:
                c.sendall(ask)
            for c in conns:
                assert c.recv(4096).startswith(b"HTTP/1.1 200")
            held = sorted(
                sum(1 for k in w.net_connections("tcp")
                    if k.laddr.port == port and k.status == psutil.CONN_ESTABLISHED)
                for w in psutil.Process(two_workers.proc.pid).children(recursive=True)
                if "worker-id" in " ".join(w.cmdline()))
        finally:
            for c in conns:
                c.close()
        assert held in ([4, 4], [3, 5]), f"connections per worker: {held}"
        time.sleep(0.3)  # each worker has published that it holds none again


@pytest.mark.slow
@pytest.mark.e2e
def test_a_reload_reaches_both_workers_under_load_without_a_failed_request(two_workers, versions):
    production, _, other = now_and_next(versions)
    records = list(load_version(production)[0].examples)[:2]
    with Load([two_workers.url], records) as load:
        time.sleep(1.0)
        move_pointer(versions, other, production)  # the service does not poll (conftest)
        r = httpx.post(f"{two_workers.url}/admin/reload", headers=ADMIN, timeout=30)
        reloaded_at = time.monotonic()
        time.sleep(1.5)
    assert r.status_code == 200, r.text
    answer = Reloaded.model_validate(r.json())
    assert answer.reloaded and answer.model_version == other and answer.previous == production
    assert len(answer.workers) == 2 and answer.not_reloaded == []
    assert {w.model_version for w in answer.workers} == {other}
    assert load.failed() == [], "a request failed during the reload"
    after = [version for sent, _, _, version in load.answers if sent > reloaded_at]
    assert len(after) > 10 and set(after) == {other}
    assert load.answers[0][3] == production
    again = httpx.post(f"{two_workers.url}/admin/reload", headers=ADMIN, timeout=30).json()
    assert again["reloaded"] is False and {w["model_version"] for w in again["workers"]} == {other}


@pytest.mark.slow
@pytest.mark.e2e
def test_two_replicas_follow_a_promotion_within_seconds_without_a_failed_request(
    versions, tmp_path
):
    production, bento, other = now_and_next(versions)
    env = env_for(tmp_path, NB2PROD_REGISTRY_POLL_S="1")
    replicas = [Server(bento, env=env) for _ in range(2)]
    try:
        for replica in replicas:
            replica.wait_ready()
        records = list(load_version(production)[0].examples)[:2]
        with Load([r.url for r in replicas], records) as load:
            time.sleep(1.0)
            promote(other)
            promoted_at = time.monotonic()
            time.sleep(4.0)
        assert load.failed() == [], "a request failed while the replicas reloaded"
        for replica in replicas:
            mine = [(sent, v) for sent, url, _, v in load.answers if url == replica.url]
            assert mine[0][1] == production
            # from some moment on, every answer of this replica is the new version
            last_old = max(sent for sent, v in mine if v != other)
            print(
                f"replica {replica.url}: last old answer sent {last_old - promoted_at:+.2f}s "
                f"after nb2prod promote exited; {len(mine)} answers"
            )
            assert mine[-1][1] == other and last_old - promoted_at < 3.0, (
                f"{replica.url} still answered {production} {last_old - promoted_at:.1f}s "
                "after the promotion"
            )
            assert httpx.get(f"{replica.url}/model").json()["model_version"] == other
    finally:
        for replica in replicas:
            replica.stop()
