"""``%load_ext nb2prod`` in a real IPython shell: the magic spelling makes the decorator's spec."""

import re

import pytest
from IPython.core.interactiveshell import InteractiveShell

from nb2prod.core.markers import ATTR, collect
from nb2prod.core.spec import MarkerSpec

PREDICT = "def predict(model, X):\n    return X * 2\n"


@pytest.fixture
def shell():
    """A real IPython shell with the extension loaded and an empty user namespace."""
    ip = InteractiveShell.instance()
    ip.reset(new_session=False)
    ip.run_line_magic("load_ext", "nb2prod")
    ip.run_cell("import nb2prod as n2p")
    yield ip
    ip.run_line_magic("unload_ext", "nb2prod")
    ip.reset(new_session=False)


def run(ip, cell):
    """Run a cell; return the exception it raised (None when it succeeded)."""
    result = ip.run_cell(cell)
    return result.error_before_exec or result.error_in_exec


@pytest.mark.parametrize("kind, source", [
    ("model", PREDICT),
    ("fallback", "def rule(X):\n    return 0\n"),
    ("guardrail", "def sane(X, result):\n    return True\n"),
    ("check", "def positive(X):\n    return X > 0\n"),
])
def test_each_marking_word_attaches_the_spec_the_decorator_attaches(shell, kind, source):
    name = source.split("(")[0].removeprefix("def ")
    assert run(shell, f"@n2p.{kind}\n{source}") is None
    decorated = getattr(shell.user_ns[name], ATTR)
    shell.run_cell(f"del {name}")
    assert run(shell, f"%%n2p {kind}\n{source}") is None
    fn = shell.user_ns[name]
    assert getattr(fn, ATTR) == decorated == MarkerSpec(kind, name, **(
        {"severity": "reject"} if kind == "check" else {}))
    assert fn.__module__ == "__main__"


def test_the_alias_and_the_directive_spelling_mark_too(shell):
    assert run(shell, f"%%nb2prod model\n{PREDICT}") is None
    assert collect(shell.user_ns).model is shell.user_ns["predict"]
    shell.run_cell("del predict")
    # with the extension loaded a first-line directive is the magic, so it marks in the kernel
    assert run(shell, f"#| n2p: model\n{PREDICT}") is None
    assert getattr(shell.user_ns["predict"], ATTR).kind == "model"


def test_the_marked_function_still_works_and_the_last_value_is_returned(shell):
    result = shell.run_cell(f"%%n2p model\nFACTOR = 3\n{PREDICT}predict(None, FACTOR)")
    assert result.success and result.result == 6


def test_export_and_skip_run_the_cell_unchanged(shell):
    assert run(shell, "%%n2p export\nLIMIT = 5\ndef helper(v):\n    return min(v, LIMIT)\n") is None
    assert shell.user_ns["helper"](9) == 5 and not hasattr(shell.user_ns["helper"], ATTR)
    assert run(shell, "%%n2p skip\nexplored = [1, 2, 3]") is None
    assert shell.user_ns["explored"] == [1, 2, 3]


def test_an_exception_in_the_body_fails_the_cell_with_its_own_type_and_line(shell, capsys):
    error = run(shell, "%%n2p export\nx = 1\ny = 1 / 0\n")
    assert isinstance(error, ZeroDivisionError)
    # tracebacks count the %%n2p line, as the notebook shows the cell
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    assert "----> 3 y = 1 / 0" in out


def test_unknown_word_lists_the_valid_ones(shell, capsys):
    error = run(shell, f"%%n2p modle\n{PREDICT}")
    assert "unknown word 'modle'; valid words: export, skip, model, fallback, guardrail, check" \
        in str(error)
    assert "predict" not in shell.user_ns  # refused before the cell ran
    assert "Traceback" not in capsys.readouterr().out  # a usage mistake: message, not traceback


def test_a_cell_magic_needs_one_word(shell):
    assert "needs exactly one word, found no word" in str(run(shell, f"%%n2p\n{PREDICT}"))
    assert "found 2 words (model export)" in str(run(shell, f"%%n2p model export\n{PREDICT}"))


@pytest.mark.parametrize("body, found", [
    ("def a(model, X): return X\ndef b(model, X): return X\n", "found 2: a, b"),
    ("LIMIT = 3\n", "found 0"),
])
def test_a_marking_word_needs_exactly_one_function(shell, body, found):
    error = run(shell, f"%%n2p model\n{body}")
    assert f"%%n2p model needs exactly one function in the cell, {found}" in str(error)
    assert "a" not in shell.user_ns and "LIMIT" not in shell.user_ns


def test_a_function_takes_one_marker(shell):
    error = run(shell, f"%%n2p fallback\n@n2p.model\n{PREDICT}")
    assert "predict(), which is already @n2p.model; a function takes one marker" in str(error)


def test_marker_mistakes_surface_as_the_decorator_would_report_them(shell):
    error = run(shell, "%%n2p model\ndef predict(X):\n    return X\n")
    assert "@n2p.model function predict() must take 2 argument(s) (model, X)" in str(error)


def test_line_magic_usage_status_and_unknown_word(shell, capsys):
    assert run(shell, "%n2p") is None
    assert "%%n2p export" in capsys.readouterr().out
    assert run(shell, f"%%n2p model\n{PREDICT}") is None
    assert run(shell, "%n2p status") is None
    out = capsys.readouterr().out
    assert "[ok]" in out and "predict()" in out
    assert "[missing]   fallback" in out and "fix: @n2p.fallback" in out
    assert "nb2prod doctor NOTEBOOK" in out
    error = run(shell, "%n2p model")
    assert "%n2p model: unknown line word; valid line words: status" in str(error)
    assert "write %%n2p model as the first line of the cell" in str(error)


def test_unload_removes_the_magics(shell):
    shell.run_line_magic("unload_ext", "nb2prod")
    assert "n2p" not in shell.magics_manager.magics["cell"]
    assert "nb2prod" not in shell.magics_manager.magics["line"]
    shell.run_line_magic("load_ext", "nb2prod")  # the fixture unloads again
