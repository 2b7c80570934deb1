"""Reads a notebook with nbformat into cells a person can find: numbers, tags, Python AST.

No execution happens here. IPython syntax (magics, ``!shell`` escapes) is blanked line by
line so line numbers in errors still match what the user sees in the notebook. Each cell's
n2p directive is resolved here, once, from all three spellings (``%%n2p``, ``#| n2p:``,
tags; see ``directives.py``), so a conflict fails on reading, located to the cell.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from nb2prod.build import directives
from nb2prod.build.directives import Directive
from nb2prod.core.errors import MarkerError, NotebookError, UsageError

INJECTED_TAG = "injected-parameters"
PARAMETERS_TAG = "parameters"
# `%magic`, `!shell`, `x = !shell`, `x = %magic`: not Python; never exported.
_IPYTHON_LINE = re.compile(r"^\s*([%!]|[\w.]+\s*=\s*[%!])")


@dataclass(frozen=True)
class Cell:
    """One code cell: where it is (``label``), its tags, its Python (IPython-free) and its
    n2p directive, if any (``directive.name`` is ``"export"``, ``"skip"``, ``"model"``...)."""

    index: int  # position in the file, 0-based
    label: str  # "cell 3" (1-based, as a person counts) or "injected parameters"
    source: str
    python: str
    tags: tuple[str, ...] = ()
    tree: ast.Module | None = None
    syntax_error: SyntaxError | None = None
    directive: Directive | None = None

    @property
    def skipped(self) -> bool:
        """True when builds and retrains do not run this cell (``n2p skip``)."""
        return self.directive is not None and not self.directive.word.runs_at_build

    @property
    def lines(self) -> list[str]:
        """The Python source split into lines (1-based line n is ``lines[n-1]``)."""
        return self.python.splitlines()


@dataclass
class Notebook:
    """A read notebook: its path, sha256 and code cells in order."""

    path: Path
    sha256: str
    cells: list[Cell] = field(default_factory=list)

    def where(self, cell: Cell, line: int | None = None) -> str:
        """``notebook.ipynb: cell 7, line 3``."""
        at = f"{self.path.name}: {cell.label}"
        return f"{at}, line {line}" if line else at

    @property
    def run_cells(self) -> list[Cell]:
        """The cells a build runs: every code cell but the skipped ones."""
        return [c for c in self.cells if not c.skipped]

    @property
    def parameters_cell(self) -> Cell | None:
        """The cell tagged ``parameters`` (papermill's convention), if any."""
        return next((c for c in self.cells if PARAMETERS_TAG in c.tags), None)


def python_of(source: str) -> str:
    """``source`` with IPython-only lines blanked; a ``%%`` cell magic blanks the cell,
    except ``%%n2p``, whose body is Python (only its magic line is blanked)."""
    lines = source.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if first.lstrip().startswith("%%") and not directives.magic_line(source):
        return "\n" * len(lines)
    return "\n".join("" if _IPYTHON_LINE.match(ln) else ln for ln in lines)


def read(path: str | Path) -> Notebook:
    """Read ``path``; a missing file, a non-notebook or invalid JSON is a ``UsageError``."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}", fix="check the path to the notebook")
    if path.is_dir() or path.suffix != ".ipynb":
        raise UsageError(
            f"{path} is not a notebook (.ipynb file)",
            fix="pass a Jupyter notebook, e.g. notebooks/breast_cancer.ipynb",
        )
    raw = path.read_bytes()
    try:
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except (ValueError, UnicodeDecodeError, json.JSONDecodeError, KeyError) as exc:
        raise UsageError(
            f"{path} is not valid notebook JSON ({str(exc).splitlines()[0]})",
            fix="open it in Jupyter and save it again, or restore it from git",
        ) from None
    notebook = Notebook(path=path, sha256=hashlib.sha256(raw).hexdigest())
    number = 0
    for index, cell in enumerate(nb.cells):
        tags = tuple(cell.get("metadata", {}).get("tags", []))
        if INJECTED_TAG in tags:
            label = "injected parameters"
        else:
            number += 1
            label = f"cell {number}"
        if cell.cell_type == "code":
            notebook.cells.append(code_cell(path.name, index, label, cell.source, tags))
    return notebook


def code_cell(name: str, index: int, label: str, source: str, tags: tuple[str, ...] = ()) -> Cell:
    """One code cell of notebook ``name``: its directive resolved, its Python parsed."""
    try:
        directive = directives.resolve(source, tags)
    except MarkerError as exc:
        where = f"{name}: {label}" + (f", {exc.where}" if exc.where else "")
        raise NotebookError(exc.what, where=where, fix=exc.fix) from None
    python = python_of(source)
    try:
        tree, error = ast.parse(python), None
    except SyntaxError as exc:
        tree, error = None, exc
    return Cell(index, label, source, python, tags, tree, error, directive)


def from_sources(path: Path, sources: list[tuple[str, str]]) -> Notebook:
    """A notebook made of ``(label, source)`` pairs, e.g. a kernel's input history."""
    notebook = Notebook(
        path=path, sha256=hashlib.sha256("\n".join(s for _, s in sources).encode()).hexdigest()
    )
    notebook.cells = [
        code_cell(path.name, i, label, source) for i, (label, source) in enumerate(sources)
    ]
    return notebook
