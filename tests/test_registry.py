"""The production pointer: compare-and-swap moves, rollback order, crashes and concurrency.

Crashes are real: a child process dies (``os._exit``) at the exact point named, holding
the lock, with the temporary file written; nothing is mocked in the process under test.
"""

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest

import nb2prod as n2p
from nb2prod.core.errors import ModelStoreError
from nb2prod.core.settings import ENV_CHAMPION, ENV_CHAMPION_FILE
from nb2prod.runtime import registry
from nb2prod.runtime.registry import ProductionMoved, Promotion

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def move(version, action="promote"):
    return Promotion(version=version, action=action, at="2024-01-01T00:00:00+00:00", user="t")


def history(name):
    return [(p.version, p.action, p.replaced) for p in registry.read(name).history]


def child(code, *args):
    """Run ``code`` in a fresh interpreter with this session's BENTOML_HOME."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_nothing_promoted_reads_as_empty():
    assert registry.production("never_promoted") is None
    assert registry.read("never_promoted").rollback_target() is None
    assert not (registry.home("never_promoted") / registry.FILE).exists()  # reading writes nothing


def test_promotions_are_compare_and_swap_and_record_what_they_replaced():
    registry.promote("cas", move("cas:v1"), expected=None)
    registry.promote("cas", move("cas:v2"), expected="cas:v1")
    with pytest.raises(ProductionMoved, match="moved from cas:v1 to cas:v2") as caught:
        registry.promote("cas", move("cas:v3"), expected="cas:v1")
    assert caught.value.exit_code == 3
    assert registry.production("cas") == "cas:v2"
    assert history("cas") == [("cas:v1", "promote", None), ("cas:v2", "promote", "cas:v1")]
    stored = json.loads((registry.home("cas") / registry.FILE).read_text())
    assert stored["production"] == "cas:v2" and stored["name"] == "cas"


def test_rollback_goes_back_one_promotion_at_a_time():
    for v, before in (("v1", None), ("v2", "v1"), ("v3", "v2")):
        registry.promote("stack", move(f"stack:{v}"), expected=before and f"stack:{before}")
    reg = registry.read("stack")
    assert reg.rollback_target().version == "stack:v2"
    registry.promote("stack", move("stack:v2", "rollback"), expected="stack:v3")
    reg = registry.read("stack")
    # twice back is v1, not "undo the rollback" (v3)
    assert reg.rollback_target().version == "stack:v1"
    assert [reg.status(f"stack:{v}") for v in ("v1", "v2", "v3", "v4")] == [
        "previous", "production", "previous", "candidate"]
    registry.promote("stack", move("stack:v1", "rollback"), expected="stack:v2")
    assert registry.read("stack").rollback_target() is None


def test_notes_mark_rejected_versions():
    registry.note("noted", "noted:v9", status="rejected", reasons=["gate: auc = 0.5"])
    reg = registry.read("noted")
    assert reg.status("noted:v9") == "rejected" and reg.production is None
    assert reg.notes["noted:v9"]["reasons"] == ["gate: auc = 0.5"]


CRASH_AT = """
import os, sys
from nb2prod.runtime import registry
point = sys.argv[1]
real = getattr(os, point)
def die(*args, **kwargs):
    if point == "fsync":
        real(*args, **kwargs)
    os._exit(9)  # the power goes out here: no cleanup, no finally, lock still held
setattr(os, point, die)
registry.promote("crashy", registry.Promotion("crashy:v2", "promote", "t", "t"), "crashy:v1")
"""


@pytest.mark.parametrize("point", ["fsync", "replace"])
def test_a_crash_mid_promotion_leaves_the_old_pointer_and_a_usable_registry(point):
    registry.promote("crashy", move("crashy:v1"), expected=None)
    before = (registry.home("crashy") / registry.FILE).read_bytes()
    proc = child(CRASH_AT, point)
    assert proc.returncode == 9, proc.stderr
    leftovers = list(registry.home("crashy").glob(".registry.json.*.tmp"))
    assert leftovers and "crashy:v2" in leftovers[0].read_text()  # it died mid-promotion
    assert (registry.home("crashy") / registry.FILE).read_bytes() == before
    assert registry.production("crashy") == "crashy:v1"
    # the dead process's lock went with it, and the next move cleans up after it
    registry.promote("crashy", move("crashy:v3"), expected="crashy:v1")
    assert registry.production("crashy") == "crashy:v3"
    assert not list(registry.home("crashy").glob(".registry.json.*.tmp"))
    (registry.home("crashy") / registry.FILE).unlink()


RACE = """
import sys
from nb2prod.runtime import registry
worker, rounds = sys.argv[1], int(sys.argv[2])
for n in range(rounds):
    while True:
        current = registry.production("raced")
        try:
            registry.promote("raced", registry.Promotion(f"raced:w{worker}n{n}", "promote",
                                                         "t", "t"), current)
            break
        except registry.ProductionMoved:
            continue  # someone else moved it between our read and our move: judge again
    registry.note("raced", f"raced:w{worker}n{n}", status="candidate")
"""


@pytest.mark.slow
def test_concurrent_promotions_lose_nothing_and_keep_the_chain():
    workers, rounds = 4, 15
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(w), str(rounds)], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for w in range(workers)]
    assert all(p.wait(120) == 0 for p in procs), [p.stderr.read() for p in procs]
    reg = registry.read("raced")
    versions = [p.version for p in reg.history]
    assert sorted(versions) == sorted(f"raced:w{w}n{n}" for w in range(workers)
                                      for n in range(rounds))
    # every move replaced exactly the version before it: no update was lost or interleaved
    assert [p.replaced for p in reg.history] == [None] + versions[:-1]
    assert len(reg.notes) == workers * rounds


def test_an_unreadable_registry_is_a_clear_error():
    registry.home("garbled").mkdir(parents=True, exist_ok=True)
    (registry.home("garbled") / registry.FILE).write_text('{"name": "garbled", "hist')
    with pytest.raises(ModelStoreError, match="is not a readable registry"):
        registry.production("garbled")


@pytest.fixture
def saved_model(monkeypatch):
    """A real model version in the session's store, saved from a notebook-like __main__."""
    import pandas as pd
    from sklearn.dummy import DummyClassifier

    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    exec("import nb2prod as n2p\n@n2p.model\ndef predict(model, X):\n"
         "    return model.predict(X)\n", main.__dict__)
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    model = DummyClassifier(strategy="constant", constant=1).fit(X, [0, 1, 1, 1])
    return n2p.save_model("champ", model, reference=X), X


def test_score_champion_scores_production_only_under_retrain(saved_model, monkeypatch, tmp_path):
    tag, X = saved_model
    evaluate = lambda model: {"ones": float((model.predict(X) == 1).mean())}  # noqa: E731
    monkeypatch.delenv(ENV_CHAMPION, raising=False)
    assert registry.score_champion(evaluate) is None  # in Jupyter and under build: nothing
    monkeypatch.setenv(ENV_CHAMPION, tag)
    monkeypatch.setenv(ENV_CHAMPION_FILE, str(tmp_path / "champion.json"))
    assert registry.score_champion(evaluate) == {"ones": 1.0}
    assert json.loads((tmp_path / "champion.json").read_text()) == {
        "version": tag, "metrics": {"ones": 1.0}}


def test_a_champion_that_cannot_be_scored_is_reported_not_raised(saved_model, monkeypatch,
                                                                   tmp_path):
    tag, _ = saved_model
    monkeypatch.setenv(ENV_CHAMPION, tag)
    monkeypatch.setenv(ENV_CHAMPION_FILE, str(tmp_path / "champion.json"))
    assert registry.score_champion(lambda model: model.predict(None)) is None
    found = json.loads((tmp_path / "champion.json").read_text())
    assert found["version"] == tag and found["error"].startswith(("TypeError", "ValueError"))


def test_versions_of_an_unknown_name_list_the_known_ones(saved_model):
    with pytest.raises(ModelStoreError, match="no model versions named 'nope'") as caught:
        registry.versions("nope")
    assert "champ" in caught.value.fix
    rows = registry.versions("champ")
    assert rows[-1].version == saved_model[0] and rows[-1].status == "candidate"
