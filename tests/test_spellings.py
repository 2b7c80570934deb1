"""Three spellings, one spec: decorators, ``%%n2p`` magics, ``#| n2p:`` directives and
``n2p-`` tags build the same service; ``export`` and ``skip`` mean the same in each."""

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest
from conftest import NB2PROD, NOTEBOOKS
from nbformat.v4 import new_code_cell, new_notebook

from nb2prod.build.directives import SKIPPED_SOURCE
from nb2prod.build.execute import PREPARED, prepare
from nb2prod.build.extract import extract
from nb2prod.build.notebook import read
from nb2prod.core.errors import ExportError, NotebookError

WAYS = ("decorators", "magics", "directives", "tags")
CELL_WAYS = ("magics", "directives", "tags")  # the spellings that can say export and skip


def spelled(way):
    return NOTEBOOKS / f"spelled_{way}.ipynb"


def without_header(source):
    """The exported module minus its first line (it names the notebook and its sha256)."""
    return source.split("\n", 1)[1]


def notebook_of(tmp_path, *cells, name="scratch"):
    """A notebook of ``(source, tags)`` or plain-source cells."""
    made = []
    for cell in cells:
        source, tags = cell if isinstance(cell, tuple) else (cell, [])
        made.append(new_code_cell(textwrap.dedent(source).strip("\n")))
        if tags:
            made[-1].metadata["tags"] = tags
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(new_notebook(cells=made), path)
    return path


def spell(way, word, source):
    """``source`` with ``word`` written in one cell-level spelling: a ``(source, tags)`` cell."""
    source = textwrap.dedent(source).strip("\n")
    return {"magics": (f"%%n2p {word}\n{source}", []),
            "directives": (f"#| n2p: {word}\n{source}", []),
            "tags": (source, [f"n2p-{word}"])}[way]


SETUP = "import nb2prod as n2p\nimport math"
SAVE = "n2p.save_model('m', None, reference=None)"


def test_the_four_spellings_export_the_same_code_and_marks():
    exported = {way: extract(read(spelled(way))) for way in WAYS}
    sources = {way: without_header(e.source) for way, e in exported.items()}
    assert len(set(sources.values())) == 1, sources
    assert len({json.dumps(e.marked, sort_keys=True) for e in exported.values()}) == 1
    assert exported["tags"].marked == {"check": ["worst_at_least_mean"], "model": ["predict"],
                                       "fallback": ["size_rule"],
                                       "guardrail": ["large_mass_not_benign"]}


def test_a_directive_marked_function_is_marked_when_the_exported_module_is_imported(tmp_path):
    (tmp_path / "tagged_code.py").write_text(extract(read(spelled("tags"))).source)
    script = ("import tagged_code\nfrom nb2prod.core.markers import collect\n"
              "m = collect(vars(tagged_code))\n"
              "print(m.model.__name__, m.fallback.__name__, [f.__name__ for f in m.checks])")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["predict", "size_rule", "['worst_at_least_mean']"]


def test_a_notebook_without_an_nb2prod_import_gets_one_in_the_exported_module(tmp_path):
    path = notebook_of(tmp_path, "from nb2prod import save_model",
                       spell("tags", "model", "def predict(model, X):\n    return X"),
                       "save_model('m', None, reference=None)")
    source = extract(read(path)).source
    assert "import nb2prod as n2p\n" in source and "@n2p.model\ndef predict" in source


@pytest.mark.parametrize("way", CELL_WAYS)
def test_export_sends_every_definition_of_the_cell_used_or_not(tmp_path, way):
    path = notebook_of(tmp_path, SETUP, spell(way, "export", """
        import json
        UNITS = "mm"
        def describe(v):
            return f"{math.floor(v)} {UNITS}"
        class Unused:
            pass
    """), spell(way, "model", "def predict(model, X):\n    return X"), SAVE)
    exported = extract(read(path))
    for present in ("import json", 'UNITS = "mm"', "def describe", "class Unused",
                    "import math"):  # math: not in the export cell, but describe uses it
        assert present in exported.source, present
    assert exported.marked == {"model": ["predict"]}


@pytest.mark.parametrize("way", CELL_WAYS)
def test_an_export_cell_may_compute_values_from_data(tmp_path, way):
    path = notebook_of(tmp_path, SETUP, spell(way, "export", """
        LIMIT = 3
        rows = open("rows.txt").read().split()[:LIMIT]
    """), spell(way, "model", "def predict(model, X):\n    return X"), SAVE)
    exported = extract(read(path))
    assert "LIMIT = 3" in exported.source and "open(" not in exported.source
    assert exported.captured == {"rows": "cell 2"}  # taken by value from the run


@pytest.mark.parametrize("way", CELL_WAYS)
def test_a_name_only_a_skipped_cell_defines_is_reported_as_skipped(tmp_path, way):
    path = notebook_of(tmp_path, SETUP, spell(way, "skip", "CUTOFF = 0.5"),
                       "@n2p.model\ndef predict(model, X):\n    return X > CUTOFF", SAVE)
    with pytest.raises(ExportError) as e:
        extract(read(path))
    assert "predict uses CUTOFF, which no cell a build runs defines: only cell 2 does, " \
           "and it is marked" in str(e.value)
    assert "how to fix: define CUTOFF in a cell that runs, or remove the skip" in str(e.value)


def test_a_save_model_call_in_a_skipped_cell_does_not_count(tmp_path):
    path = notebook_of(tmp_path, SETUP, "@n2p.model\ndef predict(model, X):\n    return X",
                       spell("tags", "skip", SAVE))
    with pytest.raises(NotebookError, match="never calls n2p.save_model"):
        extract(read(path))


@pytest.mark.parametrize("way", CELL_WAYS)
def test_a_marking_word_needs_exactly_one_function_located_to_the_cell(tmp_path, way):
    path = notebook_of(tmp_path, SETUP, spell(way, "model", """
        def a(model, X):
            return X
        def b(model, X):
            return X
    """), SAVE)
    with pytest.raises(NotebookError) as e:
        extract(read(path))
    spelled_as = {"magics": "%%n2p model", "directives": "#| n2p: model",
                  "tags": "tag n2p-model"}[way]
    assert f"scratch.ipynb: cell 2: {spelled_as} needs exactly one function in the cell, " \
           "found 2: a, b" in str(e.value)


def test_a_directive_and_a_different_decorator_on_one_function_conflict(tmp_path):
    marked = spell("directives", "fallback", "@n2p.model\ndef predict(model, X):\n    return X")
    path = notebook_of(tmp_path, SETUP, marked, SAVE)
    with pytest.raises(NotebookError, match=r"cell 2, line 3: #\| n2p: fallback marks predict\(\), "
                                            r"which is already @n2p.model"):
        extract(read(path))


def test_conflicting_spellings_name_the_cell():
    with pytest.raises(NotebookError) as e:
        read(NOTEBOOKS / "spelling_conflict.ipynb")
    assert str(e.value).startswith(
        "spelling_conflict.ipynb: cell 6: conflicting nb2prod directives: '#| n2p: export' says "
        "export, 'tag n2p-skip' says skip; a cell takes one word")


def test_the_same_word_in_two_spellings_is_fine(tmp_path):
    path = notebook_of(tmp_path, ("%%n2p export\nX = 1", ["n2p-export", "nb2prod-export"]),
                       ("#| nb2prod: skip\nY = 1", ["n2p-skip"]))
    first, second = read(path).cells
    assert first.directive.spelled == ("%%n2p export", "tag n2p-export", "tag nb2prod-export")
    assert second.directive.name == "skip" and second.skipped


@pytest.mark.parametrize("cell, message", [
    (("#| n2p: exprot\nX = 1", []), "cell 1: #| n2p: exprot: unknown word 'exprot'; valid "
                                    "words: export, skip, model, fallback, guardrail, check"),
    (("X = 1", ["n2p-modle"]), "cell 1: tag n2p-modle: unknown word 'modle'; valid words"),
    (("X = 1\n#| n2p: export", []), "cell 1, line 2: '#| n2p: export' is not the cell's first "
                                    "line, and a directive only counts there"),
])
def test_bad_directives_are_located_and_list_the_valid_words(tmp_path, cell, message):
    with pytest.raises(NotebookError) as e:
        read(notebook_of(tmp_path, cell))
    assert f"scratch.ipynb: {message}" in str(e.value)


def test_the_build_runs_a_prepared_copy_with_the_same_cells(tmp_path):
    path = spelled("tags")
    before = path.read_bytes()
    nb = read(path)
    prepared, arguments = prepare(nb, tmp_path)
    assert prepared == tmp_path / PREPARED and path.read_bytes() == before
    assert arguments == ["--IPKernelApp.extra_extensions=nb2prod"]
    raw, copy = nbformat.read(path, as_version=4), nbformat.read(prepared, as_version=4)
    assert len(raw.cells) == len(copy.cells)
    by_word = {c.directive.name: c for c in nb.cells if c.directive}
    assert copy.cells[by_word["skip"].index].source == SKIPPED_SOURCE
    assert copy.cells[by_word["model"].index].source.startswith("%%n2p model\ndef predict(")
    assert copy.cells[by_word["export"].index].source.startswith("%%n2p export\nMALIGNANT")
    # a notebook that loads the extension itself needs no kernel argument
    assert prepare(read(spelled("magics")), tmp_path)[1] == []
    assert prepare(read(spelled("decorators")), tmp_path) == (spelled("decorators"), [])


# --- real builds: each spelling through `nb2prod build` (about 12 s each) --------------

@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Build each spelling once, two at a time (a build waits on its kernel and on
    ``bentoml build`` as much as it computes); the build directories by spelling."""
    root = tmp_path_factory.mktemp("spellings")
    outs = {way: root / way for way in WAYS}

    def build(way):
        return subprocess.run([*NB2PROD, "build", str(spelled(way)), "--out", str(outs[way])],
                              capture_output=True, text=True)

    with ThreadPoolExecutor(2) as pool:
        for way, proc in zip(WAYS, pool.map(build, WAYS)):
            assert proc.returncode == 0, f"{way}:\n{proc.stdout}{proc.stderr}"
    return outs


@pytest.mark.slow
def test_every_spelling_builds_the_same_service(builds):
    code = {way: without_header((out / f"spelled_{way}_code.py").read_text())
            for way, out in builds.items()}
    marked = {way: json.loads((out / "nb2prod.json").read_text())["marked"]
              for way, out in builds.items()}
    for way in WAYS[1:]:
        assert code[way] == code["decorators"], way
        assert marked[way] == marked["decorators"], way
    assert marked["decorators"]["model"] == ["predict"]


@pytest.mark.slow
@pytest.mark.parametrize("way", CELL_WAYS)
def test_a_skipped_cell_never_runs_in_a_build(builds, way):
    # the skipped cell would raise (it reads a file only its author has): the build passed
    executed = nbformat.read(builds[way] / "executed.ipynb", as_version=4)
    text = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "this output must not appear in a build" not in text
    assert any(c.source == SKIPPED_SOURCE for c in executed.cells)
    assert len([c for c in executed.cells if "injected-parameters" not in
                c.metadata.get("tags", [])]) == len(nbformat.read(spelled(way), 4).cells)
