"""The readiness panel: in an IPython shell, and as a widget in a real kernel (nbclient)."""

import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import FLAGSHIP, label_of
from IPython.core.interactiveshell import InteractiveShell
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from nb2prod.authoring import panel, scaffold
from nb2prod.authoring.doctor import REQUIREMENTS

REQUIRED = [r.name for r in REQUIREMENTS if r.required]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@pytest.fixture
def shell(monkeypatch):
    """A real IPython shell (no kernel) with the extension loaded and nothing saved yet."""
    monkeypatch.setattr(panel, "_last_tag", None)
    ip = InteractiveShell.instance()
    ip.reset(new_session=False)
    ip.run_line_magic("load_ext", "nb2prod")
    ip.run_cell("import nb2prod as n2p")
    yield ip
    ip.run_line_magic("unload_ext", "nb2prod")
    ip.reset(new_session=False)


def run(ip, cell):
    """Run a cell as a user would (counted); return the exception it raised, or None."""
    result = ip.run_cell(cell, store_history=True)
    return result.error_before_exec or result.error_in_exec


def test_status_before_any_marker_is_the_checklist_with_everything_missing(shell, capsys):
    assert run(shell, "%n2p status") is None
    out = capsys.readouterr().out
    assert "markers:\n  none yet: mark the serving code with @n2p.model" in out
    assert "model:\n  none saved in this kernel yet: run the n2p.save_model(...) cell" in out
    for name in REQUIRED[:-1]:  # "code exports cleanly" needs the file: unchecked
        assert f"  [missing]   {name}" in out
    assert "  [unchecked] code exports cleanly    not visible in a kernel" in out
    assert "8 required item(s) missing: model marker, save_model call, input checks, " \
           "fallback, guardrail, gate, examples, drift reference" in out
    assert "build: this notebook's path is unknown: pass it, %n2p status path/to/notebook" in out


def test_markers_are_shown_with_the_cell_that_defined_them(shell, capsys):
    assert run(shell, "x = 1") is None
    assert run(shell, "@n2p.model\ndef predict(model, X):\n    return X\n") is None
    defined = shell.execution_count - 1
    assert run(shell, "%%n2p fallback\ndef rules(X):\n    return 0\n") is None
    status = panel.gather(shell.user_ns)
    assert [(m.kind, m.name, m.where) for m in status.markers] == [
        ("model", "predict", f"In [{defined}]"), ("fallback", "rules", f"In [{defined + 1}]")]
    items = {i.name: i for i in status.items}
    assert items["model marker"].found == f"predict() in In [{defined}]"
    assert items["guardrail"].ok is False and items["guardrail"].fix.startswith("@n2p.guardrail")
    assert status.source == "this session"


def test_status_with_a_path_is_the_static_checklist_of_that_file(shell, capsys):
    assert run(shell, f"%n2p status {FLAGSHIP}") is None
    out = capsys.readouterr().out
    assert out.startswith("nb2prod readiness (checklist from the saved file breast_cancer.ipynb)")
    assert f"  [ok]        model marker            predict() in " \
           f"{label_of(FLAGSHIP, 'def predict')}" in out
    assert f"  [ok]        parameters cell tagged  {label_of(FLAGSHIP, 'min_roc_auc = ')}" in out
    assert "every required item is in place" in out
    assert f"build: nb2prod build {FLAGSHIP}" in out


@pytest.mark.parametrize("line, message", [
    ("%n2p status nope.ipynb", f"no such file: {Path.cwd() / 'nope.ipynb'}\n  how to fix"),
    ("%n2p status a.ipynb b.ipynb", "%n2p status takes one notebook path at most, got 2"),
    ('%n2p status "unclosed.ipynb', "No closing quotation"),
])
def test_bad_status_arguments_are_short_errors(shell, capsys, line, message):
    error = run(shell, line)
    assert message in str(error)
    assert "Traceback" not in capsys.readouterr().out


def test_the_notebook_path_is_discovered_where_the_kernel_can_know_it(tmp_path, monkeypatch):
    notebook = tmp_path / "mine.ipynb"
    shutil.copy(FLAGSHIP, notebook)
    monkeypatch.delenv("NB2PROD_NOTEBOOK", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert panel.discover({}) is None
    assert panel.discover({"__vsc_ipynb_file__": str(notebook)}) == notebook
    # a Jupyter server that gives the path relative to its root: found from the kernel's cwd
    monkeypatch.chdir(tmp_path)
    assert panel.discover({"__session__": "some/dir/mine.ipynb"}) == notebook
    assert panel.discover({"__session__": "some/dir/other.ipynb"}) is None
    monkeypatch.setenv("NB2PROD_NOTEBOOK", str(notebook))
    assert panel.discover({}) == notebook


def test_with_a_known_path_the_file_only_items_come_from_the_file(tmp_path, monkeypatch):
    notebook = tmp_path / "mine.ipynb"
    shutil.copy(FLAGSHIP, notebook)
    monkeypatch.setenv("NB2PROD_NOTEBOOK", str(notebook))
    status = panel.gather({})
    items = {i.name: i for i in status.items}
    assert items["parameters cell tagged"].found == label_of(notebook, "min_roc_auc = ")
    assert items["code exports cleanly"].ok is True
    assert items["model marker"].ok is False  # the live session has no markers
    assert status.source == "this session and the file mine.ipynb"


def test_after_save_outside_a_kernel_remembers_the_tag_and_shows_nothing(monkeypatch, capsys):
    monkeypatch.setattr(panel, "_last_tag", None)
    monkeypatch.delenv("NB2PROD_RUN_FILE", raising=False)
    assert panel.headless()  # no kernel here
    panel.after_save("gone:abc123")
    assert capsys.readouterr().out == ""
    saved = panel.gather({}).saved
    assert saved.tag == "gone:abc123" and "model gone:abc123 is not in the BentoML model store" \
        in saved.problem


def test_builds_and_panel_off_are_headless(monkeypatch):
    monkeypatch.setenv("NB2PROD_RUN_FILE", "/tmp/run.jsonl")
    assert panel.headless()
    monkeypatch.delenv("NB2PROD_RUN_FILE")
    monkeypatch.setenv("NB2PROD_PANEL", "off")
    assert panel.headless()


def test_build_without_a_path_says_how_to_pass_it():
    status = panel.gather({})
    if status.notebook is not None:
        pytest.skip("NB2PROD_NOTEBOOK is set in this environment")
    p = panel.Panel(status)
    assert p.build() is None
    assert p.builder.label.value == "notebook path unknown"
    assert "nb2prod cannot build: this notebook&#x27;s path is unknown: pass it, %n2p status " \
           "path/to/notebook.ipynb, or set NB2PROD_NOTEBOOK" in p.builder.result.value


def test_the_build_progress_follows_the_stages():
    p = panel.Panel(panel.gather({}))
    p.widget()
    for line in ["[1/8] reading the notebook …", "      done in 0.1s",
                 "[2/8] checking markers and exported code …", "      done in 0.0s",
                 "[3/8] running the notebook in a fresh kernel (papermill) …"]:
        p.builder.echo(line)
    assert (p.builder.progress.value, p.builder.progress.max) == (2, 8)
    assert p.builder.label.value == "3/8 running the notebook in a fresh kernel (papermill)"


def test_a_failing_build_shows_the_located_error(tmp_path, fixture_nb):
    notebook = tmp_path / "no_model.ipynb"
    shutil.copy(fixture_nb("no_model"), notebook)
    p = panel.Panel(panel.Status((), None, (), notebook, "test"))
    p.build()
    outcome = p.wait(300)
    assert outcome["returncode"] == 1
    assert outcome["error"].startswith("error: no_model.ipynb: the notebook has no @n2p.model")
    row = p.builder
    assert row.label.value == "failed: 2/7 checking markers and exported code"
    assert (row.progress.value, row.progress.bar_style) == (1, "danger")
    assert "how to fix: mark the serving function" in row.result.value
    assert not row.button.disabled


# --- the widget in a real kernel -------------------------------------------------------

def _with_panel_cells(scaffold_path: Path, out: Path) -> Path:
    """The scaffold with `%n2p status` before any marker and panel cells at the end."""
    nb = nbformat.read(scaffold_path, as_version=4)
    imports = next(i for i, c in enumerate(nb.cells) if "%load_ext nb2prod" in c.source)
    nb.cells.insert(imports + 1, new_code_cell("%n2p status"))
    nb.cells += [
        new_code_cell(f"%n2p status {scaffold_path}"),
        new_code_cell("import nb2prod.authoring.panel\nunknown = nb2prod.authoring.panel.show()\nunknown.build()"),
        new_code_cell(f"import os\nos.environ['NB2PROD_NOTEBOOK'] = {str(scaffold_path)!r}\n"
                      "built = nb2prod.authoring.panel.show()\nbuilt.build()\nbuilt.wait(900)"),
    ]
    nbformat.write(nb, out)
    return out


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The scaffold plus panel cells, executed by nbclient in a fresh kernel; the Build
    button builds the scaffold itself for real."""
    folder = tmp_path_factory.mktemp("panel")
    scaffold_path = scaffold.init("panel_iris", folder)[0]
    path = _with_panel_cells(scaffold_path, folder / "with_panel.ipynb")
    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("PATH", "")
    # the python3 kernelspec runs `python` from PATH: make it this interpreter
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), old])
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        os.environ["PATH"] = old
        nbformat.write(nb, folder / "executed.ipynb")  # to look at when a test fails
    return nb, scaffold_path


def _cell(nb, text):
    return next(c for c in nb.cells if c.cell_type == "code" and text in c.source)


def _panel_output(cell):
    """The one output that is the panel: a widget view with its text/plain beside it."""
    outputs = [o for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]
    assert len(outputs) == 1, cell.outputs
    return outputs[0]["data"]


def _states(nb, data):
    """The saved widget state of the panel and every widget inside it, in order."""
    states = nb.metadata.widgets[WIDGET_STATE]["state"]

    def walk(model_id):
        state = states[model_id]["state"]
        yield states[model_id]["model_name"], state
        for child in state.get("children", []):
            yield from walk(child.removeprefix("IPY_MODEL_"))

    return list(walk(data[WIDGET_VIEW]["model_id"]))


def _values(states, model_name):
    return [s.get("value") for name, s in states if name == model_name]


@pytest.mark.slow
def test_before_any_marker_the_kernel_panel_lists_everything_missing(executed):
    nb, _ = executed
    data = _panel_output(next(c for c in nb.cells if c.source == "%n2p status"))
    assert "8 required item(s) missing: model marker, save_model call" in data["text/plain"]
    states = _states(nb, data)
    assert states[0][0] == "VBoxModel" and "nb2prod-panel" in states[0][1]["_dom_classes"]
    content = _values(states, "HTMLModel")[0]
    assert "no @n2p.model function: the service has nothing to serve" in content
    assert "✗ missing" in content and "none yet" in content
    assert _values(states, "LabelModel") == ["notebook: path unknown"]


@pytest.mark.slow
def test_after_save_model_the_panel_shows_markers_checks_gate_and_checklist(executed):
    nb, _ = executed
    serving = _cell(nb, "@n2p.model")
    data = _panel_output(_cell(nb, "n2p.save_model("))
    text = data["text/plain"]
    count = serving.execution_count
    for kind, name in [("model", "predict"), ("fallback", "petal_rule"),
                       ("guardrail", "short_petals_are_setosa"), ("check", "positive_sizes")]:
        assert f"  {kind:<10} {name}() in In [{count}]" in text
    checks = re.search(r"panel_iris:\w+: checks on the reference data: (\d+) passed, 0 failed",
                       text)
    assert checks and int(checks[1]) > 5
    assert re.search(r"gate: accuracy = (1|0\.9\d*), needs >= 0\.9: passed", text), text
    assert "[ok]        gate                    gate= in save_model (this session)" \
        in text
    assert "[ok]        timeout set" in text and "[advice]    PII columns marked" in text
    assert "[unchecked] parameters cell tagged" in text  # nbclient gives no notebook path
    content = _values(_states(nb, data), "HTMLModel")[0]
    assert f"<code>predict()</code></td><td>In [{count}]" in content
    assert "accuracy = " in content and "needs &gt;= 0.9: passed" in content


@pytest.mark.slow
def test_status_with_a_path_in_the_kernel_is_the_static_checklist(executed):
    nb, scaffold_path = executed
    text = _panel_output(_cell(nb, f"%n2p status {scaffold_path}"))["text/plain"]
    assert "checklist from the saved file panel_iris.ipynb" in text
    assert f"[ok]        parameters cell tagged  {label_of(scaffold_path, 'min_accuracy = ')}" \
        in text
    assert "every required item is in place" in text


@pytest.mark.slow
def test_the_build_button_explains_an_unknown_path(executed):
    nb, _ = executed
    states = _states(nb, _panel_output(_cell(nb, "unknown.build()")))
    assert "notebook path unknown" in _values(states, "LabelModel")
    assert any("nb2prod cannot build" in v for v in _values(states, "HTMLModel"))


@pytest.mark.slow
def test_the_build_button_builds_the_notebook_and_shows_the_serve_command(executed):
    nb, scaffold_path = executed
    cell = _cell(nb, "built.build()")
    outcome = cell.outputs[-1]["data"]["text/plain"]
    assert "'returncode': 0" in outcome and "'bento_tag': 'panel_iris:" in outcome
    bento = re.search(r"'bento_tag': '([^']+)'", outcome)[1]
    states = _states(nb, _panel_output(cell))
    progress = next(s for name, s in states if name == "IntProgressModel")
    assert (progress["value"], progress["max"], progress["bar_style"]) == (7, 7, "success")
    assert f"built {bento}" in _values(states, "LabelModel")
    assert any(f"serve it with: <code>bentoml serve {bento} --host 127.0.0.1</code>" in v
               for v in _values(states, "HTMLModel"))
    assert (scaffold_path.parent / "build" / "panel_iris" / "nb2prod.json").exists()
