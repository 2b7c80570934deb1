"""``%load_ext nb2prod``: the ``%%n2p`` cell magic (alias ``%%nb2prod``) and ``%n2p``.

The magic is a spelling of the markers, not a second implementation: ``%%n2p model``
runs the cell, then applies ``nb2prod.core.markers.model`` to the one function the cell
defined (found from the cell's AST, before it runs) and rebinds it, so ``fn.__n2p__`` is
the very spec ``@n2p.model`` attaches. ``export`` and ``skip`` run the cell unchanged:
they are build-time facts (what goes to the exported module, what a build never runs),
and exploring interactively is what a skipped cell is for.

With the extension loaded, a ``#| n2p: word`` first line is rewritten to ``%%n2p word``
before the cell runs, so directives mark in the kernel too. Cell tags cannot: a kernel
never sees cell metadata, so a tag-marked function is unmarked in an interactive session
(``save_model`` then finds no ``@n2p.model``) and marked only in ``nb2prod build``, which
runs every spelling as the magic (see ``execute.py``).

The cell body runs in the user's namespace, compiled by us rather than by a nested
``run_cell``, so an exception in it fails the cell once, with one traceback, exactly as
it would without the magic; line numbers count the ``%%n2p`` line, as the notebook does.
"""

from __future__ import annotations

import ast
import shlex
from typing import TYPE_CHECKING, Any, Callable

from IPython.core.magic import Magics, line_cell_magic, magics_class

from nb2prod.build import directives
from nb2prod.build.directives import Word
from nb2prod.core import markers
from nb2prod.core.errors import MarkerError, Nb2prodError, UsageError

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

NAMES = ("n2p", "nb2prod")


def _short(exc: Nb2prodError) -> Nb2prodError:
    # A mistake in how the magic is used: show the message (what, how to fix), not a
    # traceback through IPython's magic machinery that says nothing about the cell.
    # IPython looks the hook up on the instance; no exception type declares it.
    exc._render_traceback_ = lambda: [f"{type(exc).__name__}: {exc}"]  # type: ignore[attr-defined]
    return exc


@magics_class
class N2pMagics(Magics):
    """``%%n2p WORD`` marks or classifies a cell; ``%n2p status`` shows the readiness panel."""

    @line_cell_magic
    def n2p(self, line: str, cell: str | None = None) -> Any:
        """%%n2p export|skip|model|fallback|guardrail|check (cell); %n2p status (line)."""
        __tracebackhide__ = True  # IPython hides this frame in tracebacks
        if cell is None:
            return self._line(line)
        try:
            word = directives.word_named(line, f"%%n2p {line.strip()}".strip())
            target = self._target(word, cell)
        except Nb2prodError as exc:
            raise _short(exc) from None
        result = self._run(cell)
        if target is not None:
            try:
                self._mark(word, target)
            except Nb2prodError as exc:
                raise _short(exc) from None
        return result

    @property
    def _shell(self) -> InteractiveShell:
        """The shell the magics are registered with (``Magics.shell`` is None only for a
        ``Magics`` made without one, which IPython never does when it registers them)."""
        assert self.shell is not None
        return self.shell

    def _line(self, line: str) -> None:
        try:
            words = shlex.split(line.split("#", 1)[0])  # quoted paths may hold spaces
        except ValueError as exc:
            raise _short(UsageError(f"%n2p {line.strip()}: {exc}", fix="close the quote")) from None
        if not words:
            print(usage())
            return
        action = LINE_WORDS.get(words[0])
        if action is None:
            hint = (
                f"{words[0]} is a cell word: write %%n2p {words[0]} as the first line of the cell"
                if words[0] in directives.WORDS
                else f"use %n2p {' or %n2p '.join(LINE_WORDS)}, or a cell word "
                f"({directives.valid_words()}) as %%n2p WORD"
            )
            raise _short(
                MarkerError(
                    f"%n2p {words[0]}: unknown line word; valid line "
                    f"words: {', '.join(LINE_WORDS)}",
                    fix=hint,
                )
            )
        try:
            action(self._shell.user_ns, words[1:])
        except Nb2prodError as exc:
            raise _short(exc) from None

    def _target(self, word: Word, cell: str) -> str | None:
        """The one function a marking word applies to, checked before the cell runs."""
        if word.marks is None:
            return None
        try:
            tree = ast.parse(self._shell.transform_cell(cell))
        except SyntaxError:
            return None  # running the cell reports it, located, as Python would
        names = directives.functions_of(tree)
        problem = directives.one_function(f"%%n2p {word.name}", names)
        if problem:
            raise MarkerError(problem, fix=directives.one_function_fix(word))
        return names[0]

    def _run(self, cell: str) -> Any:
        """Run ``cell`` in the user's namespace; return its last expression's value."""
        __tracebackhide__ = True
        shell = self._shell
        # One blank line stands for the %%n2p line, so traceback lines match the cell's.
        source = "\n" + shell.transform_cell(cell)
        # registered in linecache under this cell's number: tracebacks show "Cell In[n]".
        # prompt_count is it in every IPython (9 counts the cell up before running it).
        filename = shell.compile.cache(source, shell.displayhook.prompt_count)
        tree = shell.transform_ast(ast.parse(source, filename))
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, filename, "exec"), shell.user_global_ns, shell.user_ns)
        if last is None:
            return None
        expression = ast.Expression(last.value)
        return eval(compile(expression, filename, "eval"), shell.user_global_ns, shell.user_ns)

    def _mark(self, word: Word, name: str) -> None:
        """Apply ``@n2p.<word>`` to the function the cell defined and rebind it."""
        assert word.marks is not None  # _target finds a function only for a marking word
        fn = self._shell.user_ns.get(name)
        held = markers.spec_of(fn)
        if held is not None and held.kind != word.marks:
            raise MarkerError(
                f"%%n2p {word.name} marks {name}(), which is already "
                f"@n2p.{held.kind}; a function takes one marker",
                fix=f"keep either %%n2p {word.name} or @n2p.{held.kind}",
            )
        self._shell.user_ns[name] = getattr(markers, word.marks)(fn)


def status(namespace: dict[str, Any], args: list[str]) -> None:
    """``%n2p status [NOTEBOOK]``: the readiness panel (``nb2prod.authoring.panel``): markers, the
    last saved model's checks and gate, the checklist (static for ``NOTEBOOK``), Build."""
    from nb2prod.authoring import panel

    if len(args) > 1:
        raise UsageError(
            f"%n2p status takes one notebook path at most, got {len(args)} words: {' '.join(args)}",
            fix='quote a path with spaces: %n2p status "my notebook.ipynb"',
        )
    panel.show(namespace, args[0] if args else None)


# Line words: name -> what it does with the user's namespace and the words after it.
LINE_WORDS: dict[str, Callable[[dict[str, Any], list[str]], None]] = {"status": status}


def usage() -> str:
    """What ``%n2p`` with no word prints."""
    cells = "\n".join(f"  %%n2p {w.name:<10} {w.help}" for w in directives.WORDS.values())
    return (
        f"usage: %%n2p WORD as a cell's first line, one of:\n{cells}\n"
        f"       %n2p status [NOTEBOOK]  the readiness panel: markers, checks, gate, "
        f"checklist, Build\n"
        f"The same words work as a first-line comment (#| n2p: export) and as cell "
        f"tags (n2p-export); tags apply at build time only."
    )


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%n2p``/``%%n2p`` (and the ``nb2prod`` alias) and the directive rewrite."""
    ipython.register_magics(N2pMagics)
    for kind in ("line", "cell"):
        ipython.magics_manager.register_alias("nb2prod", "n2p", kind)
    if directives.comment_as_magic not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(directives.comment_as_magic)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove what ``load_ipython_extension`` registered."""
    for kind in ("line", "cell"):
        for name in NAMES:
            ipython.magics_manager.magics[kind].pop(name, None)
    if directives.comment_as_magic in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(directives.comment_as_magic)
