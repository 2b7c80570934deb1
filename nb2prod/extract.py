"""AST slicing: from a notebook to the module a service imports.

The exported module holds the imports, the marked functions, and every helper function,
class and constant they reference, transitively, in notebook order; nothing that loads
data or trains. A marked function that needs a value computed from data cannot be
exported: every such problem is collected and raised once, located to cell and line.

Cell directives (any spelling, see ``directives.py``) count like decorators: a marking
word (``model``, ``fallback``, ``guardrail``, ``check``) marks the cell's one function,
and the exported module gets the ``@n2p.<kind>`` line so it marks the function at import
exactly as the kernel did; ``export`` makes every definition of its cell a root; a
``skip`` cell does not exist for the extractor, because a build never runs it.
"""

from __future__ import annotations

import ast
import builtins
import symtable
from dataclasses import dataclass, field
from typing import NamedTuple

from . import directives
from .errors import ExportError, Nb2prodError, NotebookError
from .notebook import Cell, Notebook
from .spec import KINDS

_STATIC_CALLS = {"dict", "list", "set", "frozenset", "tuple", "range", "float", "int",
                 "str", "bool"}
MINIMAL_EXAMPLE = """\
import nb2prod as n2p

@n2p.model
def predict(model, X):
    return model.predict(X)

n2p.save_model("my_model", model, reference=X_train)"""


@dataclass
class Binding:
    """A top-level name and the statement that last binds it."""

    name: str
    cell: Cell
    node: ast.stmt
    kind: str  # "import" | "def" | "const" | "computed"
    decorator: str = ""  # "@n2p.model" when a cell directive, not the source, marks it


class MarkedDef(NamedTuple):
    """A marked top-level function; ``decorate`` when a cell directive marks it."""

    kind: str
    cell: Cell
    node: ast.FunctionDef
    decorate: bool = False


@dataclass
class Exported:
    """The extracted module's source and what it contains."""

    source: str
    marked: dict[str, list[str]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)


def _bindings(cells: list[Cell]) -> dict[str, Binding]:
    found: dict[str, Binding] = {}
    for cell in cells:
        for node in cell.tree.body if cell.tree else []:
            for name, kind, stmt in _binds(node):
                found[name] = Binding(name, cell, stmt, kind)
    return found


def _binds(node: ast.stmt):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            if alias.name == "*":
                continue
            single = type(node)(names=[alias], **({"module": node.module, "level": node.level}
                                                   if isinstance(node, ast.ImportFrom) else {}))
            ast.copy_location(single, node)
            yield (alias.asname or alias.name.split(".")[0]), "import", single
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield node.name, "def", node
    elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        simple = len(targets) == 1 and isinstance(targets[0], ast.Name)
        for target in targets:
            for name in _stored(target):
                yield name, "const" if simple else "computed", node
    else:  # loops, with, if/try blocks, augmented assignment: a runtime value
        for sub in ast.walk(node):
            if isinstance(sub, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                yield sub.name, "computed", node
            elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                yield sub.id, "computed", node


def _stored(target: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]


def _static_value(node: ast.AST) -> tuple[bool, set[str]]:
    """Is ``node`` built from literals (and names)? Returns the names it uses."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            if not (isinstance(sub.func, ast.Name) and sub.func.id in _STATIC_CALLS):
                return False, names
        elif isinstance(sub, (ast.comprehension, ast.Lambda, ast.NamedExpr, ast.Await,
                              ast.Yield, ast.YieldFrom)):
            return False, names
        elif isinstance(sub, ast.Name):
            names.add(sub.id)
    return True, names


def _referenced_globals(source: str) -> set[str]:
    """Global names a top-level def/class uses, including decorators and defaults."""
    table = symtable.symtable(source, "<cell>", "exec")
    names = {s.get_name() for s in table.get_symbols()
             if s.is_referenced() and not s.is_assigned() and not s.is_imported()}
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        stack.extend(child.get_children())
        if child.get_type() == "function":
            names.update(child.get_globals())
        else:  # class body: a referenced name it does not bind is looked up globally
            names.update(s.get_name() for s in child.get_symbols()
                         if s.is_referenced() and not s.is_assigned() and s.is_global())
    return names


def _first_use(node: ast.AST, name: str) -> int:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id == name and isinstance(sub.ctx, ast.Load):
            return sub.lineno
    return node.lineno


def _segment(cell: Cell, node: ast.stmt) -> str:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(cell.lines[start - 1:node.end_lineno])


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
                aliases.update({a.asname or a.name: "nb2prod" for a in node.names
                                if a.name == "nb2prod"})
            elif isinstance(node, ast.ImportFrom) and node.module == "nb2prod":
                aliases.update({a.asname or a.name: f"nb2prod.{a.name}" for a in node.names})
    return aliases


def _directive_target(nb: Notebook, cell: Cell) -> str | None:
    """The one function a marking directive applies to; a located error unless exactly one."""
    word = cell.directive.word if cell.directive else None
    if word is None or word.marks is None or cell.tree is None:
        return None
    names = directives.functions_of(cell.tree)
    problem = directives.one_function(str(cell.directive), names)
    if problem:
        raise NotebookError(problem, where=nb.where(cell), fix=directives.one_function_fix(word))
    return names[0]


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
            if node.name != target or cell.directive.word.marks in kinds:
                continue
            if kinds:
                raise NotebookError(f"{cell.directive} marks {node.name}(), which is already "
                                    f"@n2p.{kinds[0]}; a function takes one marker",
                                    where=nb.where(cell, node.lineno),
                                    fix=f"keep either {cell.directive} or @n2p.{kinds[0]}")
            found.append(MarkedDef(cell.directive.word.marks, cell, node, decorate=True))
    return found


def save_model_calls(nb: Notebook) -> list[tuple[Cell, ast.Call]]:
    """Every ``n2p.save_model(...)`` (or imported ``save_model(...)``) call a build runs."""
    aliases = nb2prod_aliases(nb)
    calls = []
    for cell in nb.run_cells:
        for node in ast.walk(cell.tree) if cell.tree else []:
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Attribute) and f.attr == "save_model" \
                        and isinstance(f.value, ast.Name) and aliases.get(f.value.id) == "nb2prod":
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
            raise NotebookError(f"syntax error: {err.msg}", where=nb.where(cell, err.lineno),
                                fix="fix the line (it would fail in Jupyter too)")


def check_ready(nb: Notebook) -> list[MarkedDef]:
    """Static checks before anything runs: syntax, a model marker, a save_model call."""
    check_syntax(nb)
    marked = find_marked(nb)
    kinds = [m.kind for m in marked]
    if not marked:
        raise NotebookError("the notebook has no nb2prod markers; a build needs at least an "
                            "@n2p.model function and a call to n2p.save_model",
                            where=nb.path.name,
                            fix=f"add, after training:\n{MINIMAL_EXAMPLE}")
    if "model" not in kinds:
        raise NotebookError("the notebook has no @n2p.model function", where=nb.path.name,
                            fix=f"mark the serving function:\n{MINIMAL_EXAMPLE}")
    if not calls_save_model(nb):
        raise NotebookError("the notebook never calls n2p.save_model(...), so no model "
                            "version is written for the service", where=nb.path.name,
                            fix='after training, add: n2p.save_model("my_model", model, '
                                'reference=X_train)')
    return marked


def _computed(binding: Binding) -> bool:
    return binding.kind == "computed" or (binding.kind == "const"
                                          and not _static_value(binding.node.value)[0])


def _export_roots(nb: Notebook, problems: list[Nb2prodError]) -> list[Binding]:
    """Every definition of the cells marked ``export``; a run-time value there is a problem."""
    roots: dict[str, Binding] = {}
    for cell in nb.run_cells:
        if cell.directive is None or not cell.directive.word.exports:
            continue
        for name, binding in _bindings([cell]).items():
            if _computed(binding):
                problems.append(Nb2prodError(
                    f"{cell.directive} exports the cell's definitions, but {name} is computed "
                    "at run time (from data or a call), so the service cannot have it",
                    where=nb.where(cell, binding.node.lineno),
                    fix=f"move {name} to a cell without {cell.directive}, or make it a "
                        "literal constant"))
            else:
                roots[name] = binding
    return list(roots.values())


def _marker_import(nb: Notebook, bindings: dict[str, Binding]) -> tuple[str, Binding | None]:
    """The name nb2prod is imported as, for the decorator lines directives add, and the
    import to export with it (None: the module needs an ``import nb2prod as n2p`` line)."""
    for name, target in nb2prod_aliases(nb).items():
        if target == "nb2prod" and bindings.get(name) and bindings[name].kind == "import":
            return name, bindings[name]
    return ("n2p" if "n2p" not in bindings else "nb2prod"), None


def extract(nb: Notebook, origin: Notebook | None = None) -> Exported:
    """Slice the notebook into a standalone module; raise ``ExportError`` listing problems.

    ``origin`` is the notebook ``nb`` was executed from, named in the module's header: the
    code of two runs of one notebook is then byte-identical unless the code differs (a
    running service reloads a new model only for the same code)."""
    marked = check_ready(nb)
    bindings = _bindings(nb.run_cells)
    skipped = _bindings([c for c in nb.cells if c.skipped])
    problems: list[Nb2prodError] = []
    alias, alias_import = _marker_import(nb, bindings)
    roots = _export_roots(nb, problems)
    if alias_import and any(m.decorate for m in marked):
        roots.append(alias_import)
    roots += [Binding(m.node.name, m.cell, m.node, "def",
                      f"@{alias}.{m.kind}" if m.decorate else "") for m in marked]
    # A root is chosen as given (a marked one with its decorator line), even if another
    # root uses it; marked roots come last so they win over an export cell's plain def.
    chosen = {b.name: b for b in roots}
    todo = list(chosen.values())
    while todo:
        binding = todo.pop()
        name = binding.name
        if binding.kind == "import":
            continue
        if binding.kind == "def":
            used = _referenced_globals(_segment(binding.cell, binding.node))
        else:
            used = _static_value(binding.node.value)[1]
        for dep in sorted(used - {name}):
            target = bindings.get(dep)
            line = _first_use(binding.node, dep)
            if target is None and dep in skipped:
                cell = skipped[dep].cell
                problems.append(Nb2prodError(
                    f"{name} uses {dep}, which no cell a build runs defines: only "
                    f"{cell.label} does, and it is marked {cell.directive}",
                    where=nb.where(binding.cell, line),
                    fix=f"define {dep} in a cell that runs, or remove the skip from {cell.label}"))
            elif target is None:
                if not hasattr(builtins, dep):
                    problems.append(Nb2prodError(
                        f"{name} uses {dep}, which no cell defines (it may exist only in "
                        "your interactive session: a build starts from a fresh kernel)",
                        where=nb.where(binding.cell, line),
                        fix=f"define or import {dep} in the notebook"))
            elif _computed(target):
                problems.append(Nb2prodError(
                    f"{name} uses {dep}, which {target.cell.label} computes at run time "
                    "(from data or a call), so the service cannot have it",
                    where=nb.where(binding.cell, line),
                    fix=f"pass it through the saved model (e.g. fit it inside a Pipeline), "
                        f"compute it inside {name}, or make {dep} a literal constant"))
            elif dep not in chosen:
                chosen[dep] = target
                todo.append(target)
    if problems:
        raise ExportError(problems)
    needs_import = alias_import is None and any(m.decorate for m in marked)
    extra = [f"import nb2prod as {alias}" if alias != "nb2prod" else "import nb2prod"] \
        if needs_import else []
    return Exported(_render(nb, chosen, extra, origin or nb), _kinds(marked),
                    sorted(chosen))


def _kinds(marked: list[MarkedDef]) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for m in marked:
        kinds.setdefault(m.kind, []).append(m.node.name)
    return kinds


def _render(nb: Notebook, chosen: dict[str, Binding], extra_imports: list[str],
            origin: Notebook) -> str:
    order = sorted(chosen.values(), key=lambda b: (b.kind != "import", b.cell.index, b.node.lineno))
    imports, body, last_cell = list(extra_imports), [], None
    for b in order:
        if b.kind == "import":
            text = ast.unparse(b.node)
            if text not in imports:
                imports.append(text)
            continue
        text = _segment(b.cell, b.node)
        if b.decorator:
            text = f"{b.decorator}\n{text}"
        if b.cell.label != last_cell:  # say where each run of code came from
            text, last_cell = f"# from {b.cell.label}\n{text}", b.cell.label
        body.append(text)
    header = (f'"""Exported by nb2prod from {origin.path.name} '
              f'(sha256 {origin.sha256[:12]}). Do not edit: rebuild."""\n')
    return header + "\n".join(imports) + "\n\n\n" + "\n\n\n".join(body) + "\n"
