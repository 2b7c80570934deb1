"""A worker's event loop and model threads on one CPU of its own (``runtime/affinity.py``):
CPUs claimed once each across processes, the other threads given every CPU back, and
the off switch. Served with two workers in ``test_workers.py``."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from nb2prod.core import settings
from nb2prod.runtime import affinity

CPUS = sorted(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="pinning needs 2 CPUs or more")


def test_each_cpu_is_claimed_once_until_its_holder_lets_go(tmp_path):
    first = affinity.claim([0, 1], 0, tmp_path)
    second = affinity.claim([0, 1], 0, tmp_path)  # prefers 0 too: takes the free one
    assert first is not None and second is not None
    assert (first[0], second[0]) == (0, 1)
    assert affinity.claim([0, 1], 1, tmp_path) is None  # all taken: no CPU, no pinning
    os.close(first[1])  # the holder ends (a process's files close even after kill -9)
    again = affinity.claim([0, 1], 1, tmp_path)
    assert again is not None and again[0] == 0
    os.close(second[1]), os.close(again[1])


def test_a_claim_is_held_against_other_processes_and_freed_when_they_end(tmp_path):
    hold = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from nb2prod.runtime.affinity import claim
        print(claim([0, 1], 1, Path({str(tmp_path)!r}))[0], flush=True)
        sys.stdin.read()
        """
    )
    other = subprocess.Popen(
        [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "1"
        mine = affinity.claim([0, 1], 1, tmp_path)
        assert mine is not None and mine[0] == 0
        os.close(mine[1])
    finally:
        other.kill()
        other.wait()
    freed = affinity.claim([0, 1], 1, tmp_path)
    assert freed is not None and freed[0] == 1
    os.close(freed[1])


def test_pinning_is_on_by_default_and_only_in_a_serve_worker():
    assert settings.Settings.from_env({}).cpu_pin is True
    assert settings.Settings.from_env({"NB2PROD_CPU_PIN": "off"}).cpu_pin is False
    assert affinity.pin(False, 1) is None  # switched off
    assert affinity.pin(True, None) is None  # not a bentoml serve worker (this process)
    assert os.sched_getaffinity(0) == set(CPUS)


@needs_two
def test_the_loop_and_model_threads_share_a_cpu_and_the_rest_get_all_back(tmp_path):
    # in a process of its own: pinning this one would pin the test run
    script = textwrap.dedent(
        """
        import json, os, threading, time
        from concurrent.futures import ThreadPoolExecutor
        from nb2prod.runtime import affinity

        pinning = affinity.pin(True, 2)  # worker 2: prefers the second CPU
        model = ThreadPoolExecutor(1, thread_name_prefix="nb2prod-model")
        model_tid = model.submit(threading.get_native_id).result()
        started = threading.Event()
        other = threading.Thread(target=lambda: started.wait(), name="a-library-thread")
        other.start()  # started by the pinned loop: inherits its CPU, until the sweep
        time.sleep(affinity.SWEEP_S * 2.5)
        print(json.dumps({
            "cpu": pinning.cpu,
            "main": sorted(os.sched_getaffinity(threading.main_thread().native_id)),
            "model": sorted(os.sched_getaffinity(model_tid)),
            "other": sorted(os.sched_getaffinity(other.native_id)),
        }))
        started.set()
        """
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["cpu"] == CPUS[1]
    assert got["main"] == got["model"] == [CPUS[1]]
    assert got["other"] == CPUS
    assert (tmp_path / f"nb2prod-cpu-{os.getuid()}" / f"{CPUS[1]}.lock").exists()


@needs_two
def test_a_thread_given_its_own_cpus_is_left_alone(tmp_path):
    script = textwrap.dedent(
        """
        import json, os, threading, time
        from nb2prod.runtime import affinity

        pinning = affinity.pin(True, 1)  # the first CPU
        mine, go = {}, threading.Event()

        def chosen():  # a library that binds its own threads (OMP_PROC_BIND, say)
            os.sched_setaffinity(0, pinning.allowed - {pinning.cpu})
            mine["tid"] = threading.get_native_id()
            go.wait()

        t = threading.Thread(target=chosen)
        t.start()
        pinning.sweep()
        time.sleep(0.1)
        print(json.dumps(sorted(os.sched_getaffinity(mine["tid"]))))
        go.set()
        """
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == CPUS[1:]  # not the pinned set: not widened
