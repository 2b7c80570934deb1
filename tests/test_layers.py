"""The layers hold: contracts, no import cycles, and a served bento that carries and
imports only the runtime (README: "How the code is laid out")."""

import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
UPPER = ("nb2prod.authoring", "nb2prod.build", "nb2prod.lifecycle", "nb2prod.cli")
MACHINERY = ("papermill", "nbformat", "nbclient", "ipywidgets", "great_expectations", "IPython")


def test_the_import_contracts_hold():
    proc = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles_function_level_imports_included():
    # grimp reads every import statement, those inside functions too
    graph = grimp.build_graph("nb2prod", include_external_packages=False)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "loop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from loop import b\n")
    (package / "b.py").write_text("from loop import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("loop", cache_dir=None)) == [["loop.a", "loop.b"]]


SERVED = """
import json, sys
from bentoml._internal.service.loader import import_service
from starlette.testclient import TestClient
from nb2prod.runtime.loading import load_version

manifest = json.load(open("nb2prod.json"))
contract, _ = load_version(manifest["model_tag"])
app = import_service("service:" + manifest["class_name"], working_dir=".").to_asgi()
with TestClient(app) as client:
    answer = client.post("/predict", json={"records": list(contract.examples[:2])})
    model = client.get("/model")
import nb2prod
print(json.dumps({"status": [answer.status_code, model.status_code],
                  "nb2prod": nb2prod.__file__,
                  "modules": sorted(m for m in sys.modules if m.startswith("nb2prod") or
                                    m.split(".")[0] in %r)}))
""" % (MACHINERY,)


@pytest.mark.slow
@pytest.mark.e2e
def test_a_served_bento_carries_and_imports_only_the_runtime(flagship_build):
    import bentoml

    src = Path(bentoml.bentos.get(flagship_build["bento_tag"]).path) / "src"
    assert sorted(p.name for p in (src / "nb2prod").iterdir()) == [
        "__init__.py", "checks", "core", "runtime"]
    proc = subprocess.run([sys.executable, "-c", SERVED], cwd=src, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["status"] == [200, 200]
    assert Path(seen["nb2prod"]).is_relative_to(src)  # the bento's copy, not the repository's
    assert [m for m in seen["modules"] if m.startswith(UPPER) or "." not in m
            and m in MACHINERY] == []
    assert "nb2prod.runtime.service" in seen["modules"]  # the check looked at a real process
