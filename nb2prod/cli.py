"""The command line: a thin typer layer over the programmatic API.

This is the one place that turns ``Nb2prodError``s into messages and exit codes; no
traceback reaches a user unless they ask for one with ``--debug``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import typer

from .errors import Nb2prodError, UsageError

T = TypeVar("T")
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Take a Jupyter notebook to a tested BentoML service.")


def _run(fn: Callable[[], T], debug: bool) -> T:
    try:
        return fn()
    except Nb2prodError as exc:
        if debug:
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        raise typer.Exit(130)
    except Exception as exc:  # a bug in nb2prod, not the user's fault
        if debug:
            raise
        typer.secho(f"internal error: {type(exc).__name__}: {exc}\n  this is a bug in nb2prod; "
                    "rerun with --debug for the traceback and report it", fg=typer.colors.RED,
                    err=True)
        raise typer.Exit(70)


def _parameters(args: List[str]) -> dict:
    """``-p NAME VALUE`` pairs (typer has no two-value options, so they arrive as extras)."""
    from .execute import parse_value

    parameters, rest = {}, list(args)
    while rest:
        flag = rest.pop(0)
        if flag not in ("-p", "--parameter") or len(rest) < 2:
            raise UsageError(f"unexpected argument(s): {' '.join([flag] + rest)}",
                             fix="override parameters as -p NAME VALUE, e.g. -p C 0.5")
        name, value = rest.pop(0), rest.pop(0)
        parameters[name] = parse_value(value)
    return parameters


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def build(
    ctx: typer.Context,
    notebook: Path = typer.Argument(..., help="The notebook to build, e.g. notebooks/breast_cancer.ipynb"),
    out: Optional[Path] = typer.Option(None, "--out", help="Build directory (default: build/<notebook name>)"),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """Run the notebook fresh, extract the marked code, test it and build a bento.

    Override the notebook's parameters with -p NAME VALUE (repeatable).
    """
    from . import build as build_module

    _run(lambda: build_module.build(notebook, out, _parameters(ctx.args), echo=typer.echo),
         debug)


_COLOURS = {"ok": typer.colors.GREEN, "missing": typer.colors.RED,
            "advice": typer.colors.YELLOW, "unchecked": None}


@app.command()
def doctor(
    notebook: Path = typer.Argument(..., help="The notebook to check"),
    run: bool = typer.Option(False, "--run", help="Also run the notebook (papermill, in a "
                             "temporary directory) and report what save_model recorded"),
    as_json: bool = typer.Option(False, "--json", help="Print the checklist as JSON"),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """Check a notebook for production readiness: markers, checks, gate, examples...

    Static by default (nothing runs). Exits 1 when a required item is missing.
    """
    from . import doctor as doctor_module

    report = _run(lambda: doctor_module.diagnose(notebook, run=run), debug)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=1))
    else:
        typer.echo(f"{notebook.name}: production readiness"
                   + (" (static: add --run to execute it)" if not run else ""))
        for item in report.items:
            colour = _COLOURS[doctor_module.status_of(item)]
            for n, line in enumerate(doctor_module.format_item(item)):
                typer.secho(line, fg=colour if n == 0 else None)
        typer.secho(doctor_module.summary(report.items),
                    fg=typer.colors.GREEN if report.ready else typer.colors.RED)
    if not report.ready:
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print nb2prod's version."""
    from . import __version__

    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="nb2prod")


if __name__ == "__main__":
    sys.exit(main())
