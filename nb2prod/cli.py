"""The command line: a thin typer layer over the programmatic API.

This is the one place that turns ``Nb2prodError``s into messages and exit codes; no
traceback reaches a user unless they ask for one with ``--debug``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Callable, List, Optional, TypeVar

import typer

from nb2prod.core.errors import Nb2prodError, UsageError

T = TypeVar("T")
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Take a Jupyter notebook to a tested BentoML service.",
)


def _run(fn: Callable[[], T], debug: bool) -> T:
    try:
        return fn()
    except Nb2prodError as exc:
        if debug:
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(exc.exit_code) from exc
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug in nb2prod, not the user's fault
        if debug:
            raise
        typer.secho(
            f"internal error: {type(exc).__name__}: {exc}\n  this is a bug in nb2prod; "
            "rerun with --debug for the traceback and report it",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(70) from exc


def _parameters(args: List[str]) -> dict:
    """``-p NAME VALUE`` pairs (typer has no two-value options, so they arrive as extras)."""
    from nb2prod.build.execute import parse_value

    parameters, rest = {}, list(args)
    while rest:
        flag = rest.pop(0)
        if flag not in ("-p", "--parameter") or len(rest) < 2:
            raise UsageError(
                f"unexpected argument(s): {' '.join([flag] + rest)}",
                fix="override parameters as -p NAME VALUE, e.g. -p C 0.5",
            )
        name, value = rest.pop(0), rest.pop(0)
        parameters[name] = parse_value(value)
    return parameters


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def build(
    ctx: typer.Context,
    notebook: Path = typer.Argument(
        ..., help="The notebook to build, e.g. notebooks/breast_cancer.ipynb"
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Build directory (default: build/<notebook name>)"
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """Run the notebook fresh, extract the marked code, test it and build a bento.

    Override the notebook's parameters with -p NAME VALUE (repeatable).
    """
    from nb2prod.build import pipeline as build_module

    _run(lambda: build_module.build(notebook, out, _parameters(ctx.args), echo=typer.echo), debug)


_COLOURS = {
    "ok": typer.colors.GREEN,
    "missing": typer.colors.RED,
    "advice": typer.colors.YELLOW,
    "unchecked": None,
}


@app.command()
def doctor(
    notebook: Path = typer.Argument(..., help="The notebook to check"),
    run: bool = typer.Option(
        False,
        "--run",
        help="Also run the notebook (papermill, in a "
        "temporary directory) and report what save_model recorded",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the checklist as JSON"),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """Check a notebook for production readiness: markers, checks, gate, examples...

    Static by default (nothing runs). Exits 1 when a required item is missing.
    """
    from nb2prod.authoring import doctor as doctor_module

    report = _run(lambda: doctor_module.diagnose(notebook, run=run), debug)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=1))
    else:
        typer.echo(
            f"{notebook.name}: production readiness"
            + (" (static: add --run to execute it)" if not run else "")
        )
        for item in report.items:
            colour = _COLOURS[doctor_module.status_of(item)]
            for n, line in enumerate(doctor_module.format_item(item)):
                typer.secho(line, fg=colour if n == 0 else None)
        typer.secho(
            doctor_module.summary(report.items),
            fg=typer.colors.GREEN if report.ready else typer.colors.RED,
        )
    if not report.ready:
        raise typer.Exit(1)


feedback_app = typer.Typer(no_args_is_help=True, help="Labels sent to POST /feedback.")
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(
    name: str = typer.Argument(..., help="The model name, e.g. breast_cancer"),
    out: Path = typer.Option(..., "--out", help="Where to write: file.csv or file.parquet"),
    db: Optional[str] = typer.Option(
        None,
        "--db",
        help="The audit database URL (default: "
        "$NB2PROD_AUDIT_URL, else the one the service of NAME "
        "writes: $BENTOML_HOME/nb2prod/NAME/audit.db)",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """Write every labelled input of NAME (all versions) as a data set retraining can use."""
    from nb2prod.runtime.feedback import export_feedback

    result = _run(lambda: export_feedback(db, name, out), debug)
    typer.echo(f"wrote {result.rows} labelled row(s) to {result.path}")


audit_app = typer.Typer(no_args_is_help=True, help="The audit log of answered requests.")
app.add_typer(audit_app, name="audit")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w``: a positive number and a unit."""
    number, unit = text.strip()[:-1], text.strip()[-1:].lower()
    try:
        seconds = float(number) * _UNITS[unit]
    except (KeyError, ValueError):
        seconds = -1
    if not seconds > 0:
        raise UsageError(
            f"--older-than {text!r} is not a duration",
            fix="give a positive number and a unit: s, m, h, d or w, e.g. --older-than 30d",
        )
    return timedelta(seconds=seconds)


@audit_app.command("prune")
def audit_prune(
    name: str = typer.Argument(..., help="The model name, e.g. breast_cancer"),
    older_than: str = typer.Option(
        ..., "--older-than", help="Remove requests older than this: 30d, 12h, 2w..."
    ),
    db: Optional[str] = typer.Option(
        None,
        "--db",
        help="The audit database URL (default: $NB2PROD_AUDIT_URL, else "
        "$BENTOML_HOME/nb2prod/NAME/audit.db)",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """Delete NAME's audited requests older than --older-than, except those with feedback
    or a pending review; on SQLite, then return the WAL's space to the disk."""
    from nb2prod.runtime.audit import prune_log

    result = _run(lambda: prune_log(db, name, _duration(older_than)), debug)
    typer.echo(result.summary())


@app.command()
def init(
    name: str = typer.Argument(..., help="The model's name, e.g. churn: lowercase, digits, _"),
    directory: Optional[Path] = typer.Option(
        None, "--dir", help="Where to write (default: ./NAME)"
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """Scaffold NAME.ipynb, a complete annotated notebook that builds, and a README."""
    from nb2prod.authoring import scaffold

    written = _run(lambda: scaffold.init(name, directory), debug)
    for path in written:
        typer.echo(f"wrote {path}")
    notebook = written[0]
    typer.echo(f"next:  jupyter lab {notebook}     (or: nb2prod build {notebook})")


@app.command("test")
def notebook_tests(
    notebook: Path = typer.Argument(..., help="The notebook to test"),
    build_dir: Optional[Path] = typer.Option(
        None,
        "--build",
        help="The build directory whose tests to run (default: build/<notebook name>)",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """Run the notebook with nbval (--nbval-lax) and the built service's tests.

    Exits 1 when either part fails; no build yet is reported, not failed.
    """
    from nb2prod.build import testing

    report = _run(lambda: testing.run(notebook, build_dir, echo=typer.echo), debug)
    for part in report.parts:
        if not part.ok:
            typer.echo(
                f"--- {part.name}: the end of pytest's output\n{testing.failure_output(part)}",
                err=True,
            )
    typer.secho(report.summary(), fg=typer.colors.GREEN if report.ok else typer.colors.RED)
    if not report.ok:
        raise typer.Exit(1)


def _say(as_json: bool) -> Callable[[str], None]:
    """Progress goes to stderr under --json, so stdout is only the JSON document."""
    return (lambda line: typer.echo(line, err=True)) if as_json else typer.echo


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def retrain(
    ctx: typer.Context,
    notebook: Path = typer.Argument(..., help="The notebook that trains the model"),
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        help="New training data: sets the parameter marked '# n2p: data' (else data_path)",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Run directory (default: runs/<name>/<UTC time>)"
    ),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why: kept in the history"),
    tolerance: float = typer.Option(
        0.0, "--tolerance", help="How much worse than production a gate metric may be (absolute)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run's report as JSON"),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """Re-run the notebook on new data; promote its model only if it passes production's
    checks, the gate, and is not worse than production. Exit 3: not promoted.

    Override the notebook's parameters with -p NAME VALUE (repeatable).
    """
    from nb2prod.lifecycle import retrain as retrain_module

    show = (lambda report: typer.echo(json.dumps(report.to_json(), indent=1))) if as_json else None
    _run(
        lambda: retrain_module.retrain(
            notebook,
            _parameters(ctx.args),
            data=data,
            out=out,
            reason=reason,
            tolerance=tolerance,
            echo=_say(as_json),
            on_report=show,
        ),
        debug,
    )


@app.command()
def models(
    name: str = typer.Argument(..., help="The model name, e.g. breast_cancer"),
    as_json: bool = typer.Option(False, "--json", help="Print the versions as JSON"),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """List NAME's versions: metrics and status (production, previous, candidate, rejected)."""
    from dataclasses import asdict

    from nb2prod.lifecycle import promotion
    from nb2prod.runtime import registry

    rows = _run(lambda: registry.versions(name), debug)
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        for line in promotion.format_versions(rows):
            typer.echo(line)


@app.command()
def promote(
    name: str = typer.Argument(..., help="The model name, e.g. breast_cancer"),
    version: str = typer.Argument(..., help="The version to promote (see nb2prod models NAME)"),
    force: bool = typer.Option(False, "--force", help="Promote even if judgements fail"),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why: kept in the history"),
    tolerance: float = typer.Option(0.0, "--tolerance", help="As for retrain"),
    as_json: bool = typer.Option(False, "--json", help="Print the promotion as JSON"),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """Make VERSION production: retrain's judgements, a bento rebuilt, the pointer moved."""
    from dataclasses import asdict

    from nb2prod.lifecycle import promotion

    move = _run(
        lambda: promotion.promote(
            name, version, force=force, reason=reason, tolerance=tolerance, echo=_say(as_json)
        ),
        debug,
    )
    if as_json:
        typer.echo(json.dumps(asdict(move), indent=1))


@app.command()
def rollback(
    name: str = typer.Argument(..., help="The model name, e.g. breast_cancer"),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why: kept in the history"),
    as_json: bool = typer.Option(False, "--json", help="Print the rollback as JSON"),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks"),
) -> None:
    """Make the previous production version production again, with its bento rebuilt."""
    from dataclasses import asdict

    from nb2prod.lifecycle import promotion

    move = _run(lambda: promotion.rollback(name, reason=reason, echo=_say(as_json)), debug)
    if as_json:
        typer.echo(json.dumps(asdict(move), indent=1))


@app.command()
def version() -> None:
    """Print nb2prod's version."""
    from nb2prod.core.version import __version__

    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="nb2prod")


if __name__ == "__main__":
    main()
