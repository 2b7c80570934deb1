"""Finding what a notebook marks, statically: marker decorators, marking directives, and
``save_model`` calls, each located to its cell. Nothing runs here; ``extract`` builds on it.
"""

from __future__ import annotations

import ast
from typing import NamedTuple

from nb2prod.build import directives
from nb2prod.build.notebook import Cell, Notebook
from nb2prod.core.errors import NotebookError
from nb2prod.core.spec import KINDS

MINIMAL_EXAMPLE = """\
import nb2prod as n2p

@n2p.model
def predict(model, X):
    return model.predict(X)

n2p.save_model("my_model", model, reference=X_train)"""


class MarkedDef(NamedTuple):
    """A marked top-level function; ``decorate`` when a cell directive marks it."""

    kind: str
    cell: Cell
    node: ast.FunctionDef | ast.AsyncFunctionDef
    decorate: bool = False


def marker_kind(decorator: ast.expr, aliases: dict[str, str]) -> str | None:
    """``"model"`` for ``@n2p.model``/``@n2p.model(...)``/``@model`` (imported from nb2prod)."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        if aliases.get(target.value.id) == "nb2prod" and target.attr in KINDS:
            return target.attr
    if isinstance(target, ast.Name):
        marker = aliases.get(target.id, "")
        return marker.split(".", 1)[1] if marker.startswith("nb2prod.") else None
    return None


def nb2prod_aliases(nb: Notebook) -> dict[str, str]:
    """Names bound to nb2prod: ``{"n2p": "nb2prod", "model": "nb2prod.model"}``."""
    aliases: dict[str, str] = {}
    for cell in nb.run_cells:
        for node in ast.walk(cell.tree) if cell.tree else []:
            if isinstance(node, ast.Import):
                aliases.update(
                    {a.asname or a.name: "nb2prod" for a in node.names if a.name == "nb2prod"}
                )
            elif isinstance(node, ast.ImportFrom) and node.module == "nb2prod":
                aliases.update({a.asname or a.name: f"nb2prod.{a.name}" for a in node.names})
    return aliases


def _directive_target(nb: Notebook, cell: Cell) -> tuple[str, str] | None:
    """(function, marker kind): the one function a marking directive applies to, and the
    kind it marks; a located error unless the cell defines exactly one function."""
    word = cell.directive.word if cell.directive else None
    if word is None or word.marks is None or cell.tree is None:
        return None
    names = directives.functions_of(cell.tree)
    problem = directives.one_function(str(cell.directive), names)
    if problem:
        raise NotebookError(problem, where=nb.where(cell), fix=directives.one_function_fix(word))
    return names[0], word.marks


def find_marked(nb: Notebook) -> list[MarkedDef]:
    """Every top-level function carrying an nb2prod marker (decorator or cell directive),
    with its kind and cell, in notebook order. Skipped cells do not count."""
    aliases = nb2prod_aliases(nb)
    found = []
    for cell in nb.run_cells:
        target = _directive_target(nb, cell)
        for node in cell.tree.body if cell.tree else []:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            kinds = [k for dec in node.decorator_list if (k := marker_kind(dec, aliases))]
            found += [MarkedDef(kind, cell, node) for kind in kinds]
            if target is None:
                continue
            name, marks = target
            if node.name != name or marks in kinds:
                continue
            if kinds:
                raise NotebookError(
                    f"{cell.directive} marks {node.name}(), which is already "
                    f"@n2p.{kinds[0]}; a function takes one marker",
                    where=nb.where(cell, node.lineno),
                    fix=f"keep either {cell.directive} or @n2p.{kinds[0]}",
                )
            found.append(MarkedDef(marks, cell, node, decorate=True))
    return found


def save_model_calls(nb: Notebook) -> list[tuple[Cell, ast.Call]]:
    """Every ``n2p.save_model(...)`` (or imported ``save_model(...)``) call a build runs."""
    aliases = nb2prod_aliases(nb)
    calls = []
    for cell in nb.run_cells:
        for node in ast.walk(cell.tree) if cell.tree else []:
            if isinstance(node, ast.Call):
                f = node.func
                if (
                    isinstance(f, ast.Attribute)
                    and f.attr == "save_model"
                    and isinstance(f.value, ast.Name)
                    and aliases.get(f.value.id) == "nb2prod"
                ):
                    calls.append((cell, node))
                elif isinstance(f, ast.Name) and aliases.get(f.id) == "nb2prod.save_model":
                    calls.append((cell, node))
    return calls


def calls_save_model(nb: Notebook) -> bool:
    """True when some cell a build runs calls ``n2p.save_model(...)``."""
    return bool(save_model_calls(nb))


def check_syntax(nb: Notebook) -> None:
    """A located ``NotebookError`` for the first cell a build runs that is not Python."""
    for cell in nb.run_cells:
        if cell.syntax_error is not None:
            err = cell.syntax_error
            raise NotebookError(
                f"syntax error: {err.msg}",
                where=nb.where(cell, err.lineno),
                fix="fix the line (it would fail in Jupyter too)",
            )


def check_ready(nb: Notebook) -> list[MarkedDef]:
    """Static checks before anything runs: syntax, a model marker, a save_model call."""
    check_syntax(nb)
    marked = find_marked(nb)
    kinds = [m.kind for m in marked]
    if not marked:
        raise NotebookError(
            "the notebook has no nb2prod markers; a build needs at least an "
            "@n2p.model function and a call to n2p.save_model",
            where=nb.path.name,
            fix=f"add, after training:\n{MINIMAL_EXAMPLE}",
        )
    if "model" not in kinds:
        raise NotebookError(
            "the notebook has no @n2p.model function",
            where=nb.path.name,
            fix=f"mark the serving function:\n{MINIMAL_EXAMPLE}",
        )
    if not calls_save_model(nb):
        raise NotebookError(
            "the notebook never calls n2p.save_model(...), so no model "
            "version is written for the service",
            where=nb.path.name,
            fix='after training, add: n2p.save_model("my_model", model, reference=X_train)',
        )
    return marked


def marked_kinds(nb: Notebook, marked: list[MarkedDef] | None = None) -> dict[str, list[str]]:
    """``{"model": ["predict"], "guardrail": [...]}``: the marked functions by kind
    (``marked``: what ``find_marked(nb)`` already found)."""
    kinds: dict[str, list[str]] = {}
    for m in find_marked(nb) if marked is None else marked:
        kinds.setdefault(m.kind, []).append(m.node.name)
    return kinds
