"""AST slicing: from a notebook to the module a service imports.

The exported module holds the imports, the marked functions, the classes and functions
the pickled model refers to, and every helper function, class and literal constant they
reference, transitively, in notebook order; nothing that loads data or trains. Any other
module-level value they use (a regex, a dataclass instance, medians learned from data)
is not source: it is listed in ``Exported.captured`` and taken by value from the run
(``capture.py``). Problems (a name no cell defines, a class without source) are
collected and raised once, located to cell and line.

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
from typing import Iterator

from nb2prod.build.notebook import Cell, Notebook
from nb2prod.build.scan import check_ready, marked_kinds, nb2prod_aliases
from nb2prod.core.errors import ExportError, Nb2prodError

_STATIC_CALLS = {
    "dict",
    "list",
    "set",
    "frozenset",
    "tuple",
    "range",
    "float",
    "int",
    "str",
    "bool",
}


@dataclass
class Binding:
    """A top-level name and the statement that last binds it."""

    name: str
    cell: Cell
    node: ast.stmt
    kind: str  # "import" | "def" | "const" | "computed"
    decorator: str = ""  # "@n2p.model" when a cell directive, not the source, marks it


@dataclass
class Exported:
    """The extracted module's source and what it contains."""

    source: str
    marked: dict[str, list[str]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    captured: dict[str, str] = field(default_factory=dict)  # name -> the cell computing it
    problems: list[Nb2prodError] = field(default_factory=list)  # with extract(strict=False)


def _bindings(cells: list[Cell]) -> dict[str, Binding]:
    found: dict[str, Binding] = {}
    for cell in cells:
        for node in cell.tree.body if cell.tree else []:
            for name, kind, stmt in _binds(node):
                found[name] = Binding(name, cell, stmt, kind)
    return found


def _binds(node: ast.stmt) -> Iterator[tuple[str, str, ast.stmt]]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            if alias.name == "*":
                continue
            single: ast.stmt = (
                ast.ImportFrom(names=[alias], module=node.module, level=node.level)
                if isinstance(node, ast.ImportFrom)
                else ast.Import(names=[alias])
            )
            ast.copy_location(single, node)
            yield (alias.asname or alias.name.split(".")[0]), "import", single
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield node.name, "def", node
    elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        # ``A, B = 3, 40`` and ``A = B = 0`` bind names only; ``d["k"] = ...`` changes a value
        plain = all(_only_names(t) for t in targets)
        for target in targets:
            for name in _stored(target):
                yield name, "const" if plain else "computed", node
    else:  # loops, with, if/try blocks, augmented assignment: a runtime value
        for sub in ast.walk(node):
            if isinstance(sub, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                yield sub.name, "computed", node
            elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                yield sub.id, "computed", node
            elif isinstance(sub, (ast.Import, ast.ImportFrom)):  # try: import orjson as json
                for alias in sub.names:
                    yield (alias.asname or alias.name.split(".")[0]), "computed", node


def _stored(target: ast.AST) -> list[str]:
    return [
        n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    ]


def _only_names(target: ast.AST) -> bool:
    """True for ``x``, ``a, b`` and ``(a, [b, c])``: targets that only bind names."""
    if isinstance(target, (ast.Tuple, ast.List)):
        return all(_only_names(t) for t in target.elts)
    return isinstance(target, ast.Name)


# What a literal constant may be made of: literals, containers of them, operators, names
# of other literal constants, and calls of a few builtins (``frozenset({"a", "b"})``).
_LITERAL_NODES = (
    ast.Constant,
    ast.Tuple,
    ast.List,
    ast.Set,
    ast.Dict,
    ast.UnaryOp,
    ast.BinOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Name,
    ast.Call,
    ast.Subscript,
    ast.Slice,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.keyword,
    ast.Starred,
    ast.expr_context,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)


def _static_value(node: ast.AST) -> tuple[bool, set[str]]:
    """Is ``node`` written with literals only (see ``_LITERAL_NODES``)? And the names it
    uses, which must be literal constants too for the value to be exported as source."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if not isinstance(sub, _LITERAL_NODES):
            return False, names
        if isinstance(sub, ast.Call):
            if not (isinstance(sub.func, ast.Name) and sub.func.id in _STATIC_CALLS):
                return False, names
        elif isinstance(sub, ast.Name):
            names.add(sub.id)
    return True, names


def _referenced_globals(source: str) -> set[str]:
    """Global names a top-level def/class uses, including decorators and defaults."""
    table = symtable.symtable(source, "<cell>", "exec")
    names = {
        s.get_name()
        for s in table.get_symbols()
        if s.is_referenced() and not s.is_assigned() and not s.is_imported()
    }
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        stack.extend(child.get_children())
        if isinstance(child, symtable.Function):
            names.update(child.get_globals())
        else:  # class body: a referenced name it does not bind is looked up globally
            names.update(
                s.get_name()
                for s in child.get_symbols()
                if s.is_referenced() and not s.is_assigned() and s.is_global()
            )
    return names


def _first_use(node: ast.stmt, name: str) -> int:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id == name and isinstance(sub.ctx, ast.Load):
            return sub.lineno
    return node.lineno


def _segment(cell: Cell, node: ast.stmt) -> str:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(cell.lines[start - 1 : node.end_lineno])


def _assigned(binding: Binding) -> ast.expr:
    """The value a ``"const"`` binding assigns: ``_binds`` makes one only of an assignment
    with a value."""
    node = binding.node
    assert isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None
    return node.value


def _literal(binding: Binding, bindings: dict[str, Binding], seen: frozenset = frozenset()) -> bool:
    """True when ``binding`` is a constant written with literals, through names of other
    literal constants only: it can go as source. Anything else is captured by value."""
    if binding.kind != "const":
        return False
    static, names = _static_value(_assigned(binding))
    seen = seen | {binding.name}
    return static and all(  # a name seen on the way is a cycle (``x = x + 1``): run time
        dep not in seen
        and (_literal(bindings[dep], bindings, seen) if dep in bindings else hasattr(builtins, dep))
        for dep in names
    )


def _export_roots(nb: Notebook) -> list[Binding]:
    """Every definition of the cells marked ``export`` (their values are captured)."""
    roots: dict[str, Binding] = {}
    for cell in nb.run_cells:
        if cell.directive is not None and cell.directive.word.exports:
            roots.update(_bindings([cell]))
    return list(roots.values())


def _marker_import(nb: Notebook, bindings: dict[str, Binding]) -> tuple[str, Binding | None]:
    """The name nb2prod is imported as, for the decorator lines directives add, and the
    import to export with it (None: the module needs an ``import nb2prod as n2p`` line)."""
    for name, target in nb2prod_aliases(nb).items():
        if target == "nb2prod" and bindings.get(name) and bindings[name].kind == "import":
            return name, bindings[name]
    return ("n2p" if "n2p" not in bindings else "nb2prod"), None


def _referred_roots(
    nb: Notebook, names: list[str], bindings: dict[str, Binding], problems: list[Nb2prodError]
) -> list[Binding]:
    """The definitions of the classes and functions the saved model (or a captured value)
    refers to by name: they go as source, like marked code."""
    found = []
    for name in names:
        target = bindings.get(name.split(".")[0])
        if target is not None and target.kind == "def":
            found.append(target)
            continue
        made = (
            f", but {target.cell.label} makes it at run time"
            if target
            else ", but no cell a build runs defines it with def or class (made by exec, or "
            "imported from a module that is not importable?)"
        )
        problems.append(
            Nb2prodError(
                f"the saved model (or a value it needs) refers to {name} from the "
                f"notebook{made}, so the service could not load it",
                where=nb.where(target.cell, target.node.lineno) if target else nb.path.name,
                fix=f"define {name} with def/class at the top level of a cell, or put it in an "
                "installed package the service imports",
            )
        )
    return found


def _shadowed(nb: Notebook, chosen: dict[str, Binding]) -> list[Nb2prodError]:
    """A name both imported and defined: the service would get one of them, the notebook
    may have used the other (which wins depends on cell order and re-runs)."""
    imported: dict[str, Cell] = {}
    defined: dict[str, tuple[Cell, ast.stmt]] = {}
    for cell in nb.run_cells:
        for node in cell.tree.body if cell.tree else []:
            for name, kind, stmt in _binds(node):
                if kind == "import":
                    imported.setdefault(name, cell)
                else:
                    defined.setdefault(name, (cell, stmt))
    return [
        Nb2prodError(
            f"{name} is imported in {imported[name].label} and defined in "
            f"{defined[name][0].label}: the exported code cannot have both",
            where=nb.where(defined[name][0], defined[name][1].lineno),
            fix=f"rename one of them (e.g. def my_{name} ...), and use that name",
        )
        for name in sorted(chosen)
        if name in imported and name in defined
    ]


def extract(
    nb: Notebook,
    origin: Notebook | None = None,
    refers_to: list[str] | tuple[str, ...] = (),
    strict: bool = True,
) -> Exported:
    """Slice the notebook into a standalone module; raise ``ExportError`` listing problems.

    ``origin`` is the notebook ``nb`` was executed from, named in the module's header: the
    code of two runs of one notebook is then byte-identical unless the code differs (a
    running service reloads a new model only for the same code). ``refers_to`` names the
    notebook's classes and functions the pickled model refers to: they are exported too.
    Values that are not literal constants are listed in ``Exported.captured``. With
    ``strict=False`` problems are returned in ``Exported.problems`` instead, so a caller
    can add its own and report them all at once."""
    marked = check_ready(nb)
    bindings = _bindings(nb.run_cells)
    skipped = _bindings([c for c in nb.cells if c.skipped])
    problems: list[Nb2prodError] = []
    alias, alias_import = _marker_import(nb, bindings)
    roots = _export_roots(nb) + _referred_roots(nb, list(refers_to), bindings, problems)
    if alias_import and any(m.decorate for m in marked):
        roots.append(alias_import)
    roots += [
        Binding(m.node.name, m.cell, m.node, "def", f"@{alias}.{m.kind}" if m.decorate else "")
        for m in marked
    ]
    # A root is chosen as given (a marked one with its decorator line), even if another
    # root uses it; marked roots come last so they win over an export cell's plain def.
    chosen = {b.name: b for b in roots if b.kind in ("def", "import") or _literal(b, bindings)}
    captured = {b.name: b for b in roots if b.name not in chosen}
    todo = list(chosen.values())
    while todo:
        binding = todo.pop()
        name = binding.name
        if binding.kind == "import":
            continue
        if binding.kind == "def":
            used = _referenced_globals(_segment(binding.cell, binding.node))
        else:  # a literal constant: chosen only through _literal
            used = _static_value(_assigned(binding))[1]
        for dep in sorted(used - {name}):
            target = bindings.get(dep)
            line = _first_use(binding.node, dep)
            if target is None and dep in skipped:
                cell = skipped[dep].cell
                problems.append(
                    Nb2prodError(
                        f"{name} uses {dep}, which no cell a build runs defines: only "
                        f"{cell.label} does, and it is marked {cell.directive}",
                        where=nb.where(binding.cell, line),
                        fix=f"define {dep} in a cell that runs, or remove the skip from "
                        f"{cell.label}",
                    )
                )
            elif target is None:
                if not hasattr(builtins, dep):
                    problems.append(
                        Nb2prodError(
                            f"{name} uses {dep}, which no cell defines (it may exist only in "
                            "your interactive session: a build starts from a fresh kernel)",
                            where=nb.where(binding.cell, line),
                            fix=f"define or import {dep} in the notebook",
                        )
                    )
            elif target.kind not in ("def", "import") and not _literal(target, bindings):
                captured.setdefault(dep, target)  # its value comes from the run, pickled
            elif dep not in chosen:
                chosen[dep] = target
                todo.append(target)
    problems += _shadowed(nb, chosen)
    if problems and strict:
        raise ExportError(problems)
    needs_import = alias_import is None and any(m.decorate for m in marked)
    extra = (
        [f"import nb2prod as {alias}" if alias != "nb2prod" else "import nb2prod"]
        if needs_import
        else []
    )
    return Exported(
        _render(nb, chosen, extra, origin or nb),
        marked_kinds(nb, marked),
        sorted(chosen),
        {n: b.cell.label for n, b in sorted(captured.items())},
        problems,
    )


def _render(
    nb: Notebook, chosen: dict[str, Binding], extra_imports: list[str], origin: Notebook
) -> str:
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
    header = (
        f'"""Exported by nb2prod from {origin.path.name} '
        f'(sha256 {origin.sha256[:12]}). Do not edit: rebuild."""\n'
    )
    return header + "\n".join(imports) + "\n\n\n" + "\n\n\n".join(body) + "\n"
