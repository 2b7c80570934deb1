import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nb2prod.build.notebook import python_of, read
from nb2prod.core.errors import UsageError


def test_cells_are_numbered_as_a_person_counts_them(tmp_path):
    path = tmp_path / "n.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# t"), new_code_cell("x = 1"),
                                       new_code_cell("y = 2")]), path)
    nb = read(path)
    assert [c.label for c in nb.cells] == ["cell 2", "cell 3"]
    assert nb.where(nb.cells[1], 1) == "n.ipynb: cell 3, line 1"


def test_ipython_lines_are_blanked_keeping_line_numbers():
    src = "!pip install x\nimport os\n%matplotlib inline\nfiles = !ls\ny = 1"
    assert python_of(src).splitlines() == ["", "import os", "", "", "y = 1"]
    assert python_of("%%bash\necho hi\nls").strip() == ""


def test_an_n2p_cell_magic_keeps_its_python_body():
    assert python_of("%%n2p model\ndef f(model, X):\n    return X\n%time 1").split("\n") == \
        ["", "def f(model, X):", "    return X", ""]
    assert python_of("%%nb2prod export\nX = 1").splitlines() == ["", "X = 1"]
    assert python_of("%%n2pfoo\nX = 1").strip() == ""  # another magic that starts alike


def test_each_cell_knows_its_directive_from_any_spelling(tmp_path):
    path = tmp_path / "n.ipynb"
    tagged = new_code_cell("def f(X): return X")
    tagged.metadata["tags"] = ["n2p-check", "parameters"]
    nbformat.write(new_notebook(cells=[new_code_cell("%%n2p skip\nplot()"), tagged,
                                       new_code_cell("#| n2p: export\nX = 1"),
                                       new_code_cell("x = 1")]), path)
    nb = read(path)
    assert [c.directive.name if c.directive else None for c in nb.cells] == \
        ["skip", "check", "export", None]
    assert [c.label for c in nb.run_cells] == ["cell 2", "cell 3", "cell 4"]


def test_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        read(tmp_path / "nope.ipynb")


def test_a_file_that_is_not_a_notebook_is_a_usage_error(tmp_path):
    (tmp_path / "model.py").write_text("x = 1")
    with pytest.raises(UsageError, match="is not a notebook"):
        read(tmp_path / "model.py")


def test_invalid_json_is_a_usage_error(tmp_path):
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    with pytest.raises(UsageError, match="not valid notebook JSON"):
        read(tmp_path / "broken.ipynb")
