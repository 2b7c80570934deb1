"""Processes that write one model name at once: overlapping retrains, from cron say."""

import os
import subprocess
import sys
import threading
import time

import bentoml
import pandas as pd
from sklearn.linear_model import LogisticRegression

import nb2prod as n2p
from nb2prod.runtime import store

# Each process stores versions big enough that copying one into the store takes a while,
# removes every other one, and lists the name: what save_model, nb2prod build's clean-up
# and nb2prod models do. Without the lock, BentoML's store fails most runs of this with
# "does not contain a 'model.yaml'" or "is not found".
WRITER = """
import os, sys, numpy as np
from nb2prod.runtime import store
failures = 0
for i in range(12):
    try:
        with store.create("overlap", labels={}, metadata={}) as model:
            for k in range(16):
                np.save(os.path.join(model.path, f"part{k}.npy"), np.zeros(20000))
        if i % 2:
            store.delete(str(model.tag))
        store.listed("overlap")  # reads every version's model.yaml
    except Exception as exc:
        failures += 1
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
sys.exit(failures)
"""


def test_processes_creating_and_deleting_one_name_at_once_all_succeed():
    writers = [subprocess.Popen([sys.executable, "-c", WRITER], stderr=subprocess.PIPE,
                                text=True, env=os.environ) for _ in range(4)]
    errors = [(w.wait(timeout=240), w.stderr.read()) for w in writers]
    assert errors == [(0, "")] * 4
    assert len(bentoml.models.list("overlap")) == 4 * 6  # the kept half of every process


def test_save_model_waits_while_another_process_writes_the_name(monkeypatch):
    main = type(sys)("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    exec("import nb2prod as n2p\n@n2p.model\ndef predict(model, X):\n"
         "    return X['age'] * 2\n", main.__dict__)
    frame = pd.DataFrame({"age": [30, 40, 50, 60]})
    saved = []
    with store.locked("waiting"):
        saver = threading.Thread(target=lambda: saved.append(n2p.save_model(
            "waiting", LogisticRegression(), reference=frame, metrics={"rmse": 1.0})))
        saver.start()
        time.sleep(3)  # a save takes well under a second here
        assert saver.is_alive() and not os.path.isdir(os.path.join(
            os.environ["BENTOML_HOME"], "models", "waiting"))
    saver.join(timeout=60)
    assert [str(m.tag) for m in bentoml.models.list("waiting")] == saved
