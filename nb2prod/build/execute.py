"""Runs a notebook in a fresh kernel with papermill (restart-and-run-all, always).

A notebook that uses n2p directives runs as a *prepared copy*, written next to the
output (never over the user's notebook): every spelling becomes the ``%%n2p`` magic, so
the kernel applies it exactly as an interactive session would, and a ``skip`` cell
becomes a one-line comment. Cells keep their count and order, so "cell 7" in an error
is cell 7 of the user's notebook. The kernel starts with the nb2prod extension loaded
(``--IPKernelApp.extra_extensions``) unless the notebook loads it before its first
directive: that needs no extra line in any cell, even when cell 1 is a ``%%n2p`` cell.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import nbformat

from nb2prod.build.directives import as_magic
from nb2prod.build.notebook import INJECTED_TAG, Notebook, read
from nb2prod.core import errors
from nb2prod.core.errors import ExecutionError, UsageError
from nb2prod.core.settings import (
    ENV_EXECUTED,
    ENV_NOTEBOOK,
    ENV_NOTEBOOK_SHA,
    ENV_PARAMETERS,
    ENV_RUN_FILE,
)

PREPARED = ".prepared.ipynb"
# What nb2prod raises in the kernel (save_model, markers): shown as it is, not wrapped
_OWN_ERRORS = {
    name
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, errors.Nb2prodError)
}
_LOADS_EXTENSION = re.compile(r"^\s*%(?:re)?load_ext\s+(?:.*\s)?nb2prod(?:\s|$)", re.MULTILINE)
# nbclient's words when the kernel process exits before its first reply
_DIED_AT_START = "before replying to kernel_info"
KERNEL_START_TRIES = 3
_ANY = object()  # a parameter whose default is not a literal: any value goes


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value: a Python literal when it parses as one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parameters_of(nb: Notebook) -> dict[str, tuple[Any, int]]:
    """The parameters cell's names, each with its default (a literal, else any) and line."""
    cell = nb.parameters_cell
    found: dict[str, tuple[Any, int]] = {}
    for node in cell.tree.body if cell and cell.tree else []:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        try:
            default = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError):
            default = _ANY
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = (default, node.lineno)
    return found


def check_parameters(nb: Notebook, parameters: dict[str, Any]) -> None:
    """Refuse ``-p`` values papermill would mishandle, before a kernel starts (build and
    retrain alike).

    Without a cell tagged ``parameters`` papermill injects them at the top, where the
    notebook's own assignments silently overwrite them; a name that cell does not set
    papermill only warns about; a value of another type than the cell's literal (text
    where it sets a float, and so on) would fail, or worse not fail, deep in the run.
    """
    if not parameters:
        return
    cell = nb.parameters_cell
    if cell is None:
        raise UsageError(
            f"{nb.path.name} has no cell tagged 'parameters', so -p "
            f"{', '.join(parameters)} would be overwritten by the notebook",
            fix="in Jupyter, add the tag 'parameters' to the cell that sets "
            "them (View > Cell toolbar > Tags)",
        )
    known = parameters_of(nb)
    unknown = [n for n in parameters if n not in known]
    if unknown:
        raise UsageError(
            f"unknown parameter(s) {', '.join(unknown)}; the parameters cell sets "
            f"{', '.join(known) or 'nothing'}",
            where=nb.where(cell),
            fix="use one of those names, or add NAME = <default> to that cell",
        )
    for name, value in parameters.items():
        default, line = known[name]
        if not _same_kind(default, value):
            kind = type(default).__name__
            raise UsageError(
                f"-p {name} {value!r} is a {type(value).__name__}, but the notebook "
                f"sets {name} = {default!r}, a {kind}",
                where=nb.where(cell, line),
                fix=f"pass a {kind}, e.g. -p {name} {default!r}"
                + (" (quote text: -p NAME \"'text'\")" if kind == "str" else ""),
            )


def _same_kind(default: Any, value: Any) -> bool:
    if default is _ANY or default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return type(default) is type(value)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    # papermill's kernel inherits this process's environment: that is how save_model
    # learns the notebook hash, the parameters and where to report the saved tag.
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def prepare(nb: Notebook, directory: Path) -> tuple[Path, list[str]]:
    """The notebook papermill should run, and the kernel arguments it needs.

    Without directives that is the user's notebook as it is. With them, a prepared copy
    in ``directory`` (see the module docstring) and, unless the notebook loads nb2prod's
    extension before its first directive, the argument that loads it at kernel start.
    """
    directed = [(c, c.directive) for c in nb.cells if c.directive is not None]
    if not directed:
        return nb.path, []
    raw = nbformat.read(nb.path, as_version=4)
    for cell, directive in directed:
        target = raw.cells[cell.index]
        target.source = as_magic(target.source, directive)
        if cell.skipped:
            target.outputs, target.execution_count = [], None
    prepared = directory / PREPARED
    nbformat.write(raw, prepared)
    first, _ = directed[0]
    loads = any(_LOADS_EXTENSION.search(c.source) for c in nb.cells if c.index < first.index)
    return prepared, [] if loads else ["--IPKernelApp.extra_extensions=nb2prod"]


def _starting_kernels(execute: Callable[[], None], tries: int = KERNEL_START_TRIES) -> None:
    """Run ``execute``, starting a new kernel when one dies before it answers.

    jupyter_client picks the kernel's five ports free and the kernel binds them a moment
    later: any process that opens a connection in between can take one, and the kernel
    exits with "Address already in use" before any cell ran. Trying again is safe then
    (nothing ran), and is what a user would do by hand.
    """
    for attempt in range(1, tries + 1):
        try:
            execute()
            return
        except RuntimeError as exc:
            if _DIED_AT_START not in str(exc):
                raise
            if attempt == tries:
                raise ExecutionError(
                    f"the notebook's kernel died as it started, {tries} times in a row",
                    fix="its own error is printed above; check that `python -m "
                    "ipykernel_launcher` starts with this interpreter",
                ) from None
            print(
                "      the kernel died as it started (most often: a port it was given "
                "was taken in between); starting another",
                file=sys.stderr,
            )


def run(
    nb: Notebook, output: Path, parameters: dict[str, Any], run_file: Path
) -> tuple[Notebook, list[dict[str, Any]]]:
    """Execute ``nb`` into ``output``; return the executed notebook and save_model reports."""
    check_parameters(nb, parameters)
    source, kernel_arguments = prepare(nb, output.parent)
    run_file.write_text("")
    env = {
        ENV_RUN_FILE: str(run_file),
        ENV_NOTEBOOK_SHA: nb.sha256,
        ENV_PARAMETERS: json.dumps(parameters, default=str),
        # save_model slices the code from the notebook papermill writes as it runs
        ENV_EXECUTED: str(output),
        ENV_NOTEBOOK: str(nb.path),
        # the "python3" kernelspec runs `python` from PATH: make that this interpreter
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    # papermill (and its engines) costs ~0.3 s to import: only when a notebook runs, not
    # for the checks and refusals every build makes first
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def execute() -> None:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(nb.path.parent),
            progress_bar=False,
            log_output=False,
            # the kernel's "running over TCP" notice is noise for a local build
            extra_arguments=["--IPKernelApp.log_level=ERROR", *kernel_arguments],
        )

    try:
        with _environment(env):
            _starting_kernels(execute)
    except PapermillExecutionError as exc:
        executed = read(output)
        cell = next((c for c in executed.cells if c.index == exc.cell_index), None)
        where = executed.where(cell) if cell else f"{nb.path.name}: cell {exc.cell_index + 1}"
        if exc.ename in _OWN_ERRORS:  # save_model's own refusal: already located, with its fix
            raise ExecutionError(exc.evalue) from None
        raise ExecutionError(
            f"the notebook raised {exc.ename}: {exc.evalue}",
            where=where.replace(executed.path.name, nb.path.name),
            fix="fix the cell and run it top to bottom in Jupyter (Restart "
            f"& Run All); the executed notebook is {output}",
        ) from None
    reports = [json.loads(line) for line in run_file.read_text().splitlines() if line]
    return read(output), reports


__all__ = ["run", "prepare", "parse_value", "check_parameters", "parameters_of", "INJECTED_TAG"]
