"""``nb2prod test NOTEBOOK``: the notebook under nbval, then the built service's tests.

Two parts, one summary:

1. **notebook**: ``pytest --nbval-lax`` runs every cell in a fresh kernel; a cell that
   raises fails, and only cells marked ``# NBVAL_CHECK_OUTPUT`` have their output
   compared (``# NBVAL_SKIP``, ``# NBVAL_RAISES_EXCEPTION``... are respected). The run
   reports its ``save_model`` calls through ``NB2PROD_RUN_FILE``, as a build does, and
   those model versions are deleted afterwards: a test leaves the model store as it was.
2. **service**: the generated tests of the build (``build/<name>/tests``, next to the
   working directory or the notebook, or ``--build DIR``), run as ``nb2prod build`` runs
   them. No build yet is not a failure: the part is reported as not run.

Counts come from pytest's JUnit XML, not from scraping its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nb2prod.build.notebook import read
from nb2prod.core.errors import UsageError

TAIL = 40  # lines of pytest output shown for a failed part


@dataclass
class Part:
    """One part's result; ``returncode`` is None when it did not run (``note`` says why)."""

    name: str
    target: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    returncode: int | None = None
    output: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        """True when it passed, or did not run; pytest's 5 (nothing collected) passes."""
        return self.returncode in (None, 0, 5)

    def line(self) -> str:
        """``notebook (nbval)  nb.ipynb  12 passed, 0 failed``."""
        if self.returncode is None:
            counts = f"not run: {self.note}"
        else:
            counts = f"{self.passed} passed, {self.failed} failed" + (
                f", {self.skipped} skipped" if self.skipped else ""
            )
            if not self.ok and not self.failed:
                counts += f" (pytest exited {self.returncode})"
        return f"  {self.name:<18}{self.target}: {counts}"


@dataclass
class Report:
    """Both parts; ``ok`` when neither failed."""

    notebook: str
    parts: list[Part]

    @property
    def ok(self) -> bool:
        """True when no part failed."""
        return all(p.ok for p in self.parts)

    def summary(self) -> str:
        """One line per part, then the verdict."""
        verdict = (
            "all parts passed"
            if self.ok
            else "FAILED: " + ", ".join(p.name for p in self.parts if not p.ok)
        )
        return "\n".join(
            [f"nb2prod test {self.notebook}", *(p.line() for p in self.parts), verdict]
        )


def run(
    notebook: str | Path, build: str | Path | None = None, echo: Callable[[str], None] = print
) -> Report:
    """Test ``notebook`` and its build; see the module docstring."""
    nb = read(notebook)
    service_dir = find_build(nb.path, build)
    parts = [run_notebook(nb.path, echo)]
    if service_dir is None:
        parts.append(
            Part(
                "service tests",
                f"build/{nb.path.stem}/tests",
                note=f"no build yet: run nb2prod build {notebook}, or pass --build DIR",
            )
        )
    else:
        parts.append(run_service_tests(service_dir, echo))
    return Report(str(notebook), parts)


def find_build(notebook: Path, build: str | Path | None) -> Path | None:
    """The build directory whose tests to run: ``build`` (which must exist), else
    ``build/<stem>`` under the working directory or the notebook's, else None."""
    if build is not None:
        build = Path(build)
        if not (build / "tests").is_dir():
            raise UsageError(
                f"{build} is not an nb2prod build directory (it has no tests/)",
                fix=f"pass the directory nb2prod build wrote, e.g. --build build/{notebook.stem}",
            )
        return build
    for folder in (Path("build") / notebook.stem, notebook.parent / "build" / notebook.stem):
        if (folder / "tests").is_dir():
            return folder
    return None


def run_notebook(path: Path, echo: Callable[[str], None]) -> Part:
    """Part 1: nbval, in a fresh kernel, with the model versions it saves deleted after."""
    from nb2prod.core.settings import ENV_NOTEBOOK, ENV_RUN_FILE

    echo(f"running {path.name} with nbval (--nbval-lax) …")
    with tempfile.TemporaryDirectory(prefix="nb2prod-test-") as tmp:
        run_file = Path(tmp) / "saved.jsonl"
        run_file.write_text("")
        # -c devnull: the user's pytest settings (addopts, testpaths) are not nbval's
        part = _pytest(
            "notebook (nbval)",
            str(path),
            [
                "--nbval-lax",
                "--nbval-current-env",
                "-c",
                os.devnull,
                "--rootdir",
                str(path.parent),
                str(path),
            ],
            Path.cwd(),
            # nbval keeps no input history: save_model reads the file instead
            {ENV_RUN_FILE: str(run_file), ENV_NOTEBOOK: str(path.resolve())},
            Path(tmp) / "junit.xml",
        )
        saved = [json.loads(ln)["tag"] for ln in run_file.read_text().splitlines() if ln]
    _forget(saved, echo)
    return part


def run_service_tests(folder: Path, echo: Callable[[str], None]) -> Part:
    """Part 2: the build's generated tests, run as ``nb2prod build`` runs them."""
    echo(f"running the service tests in {folder / 'tests'} …")
    with tempfile.TemporaryDirectory(prefix="nb2prod-test-") as tmp:
        return _pytest(
            "service tests", str(folder / "tests"), ["tests"], folder, {}, Path(tmp) / "junit.xml"
        )


def _pytest(
    name: str, target: str, args: list[str], cwd: Path, env: dict[str, str], junit: Path
) -> Part:
    # the kernelspec "python3" and the generated tests run `python` from PATH: this one
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "true", "PATH": path, **env},
    )
    part = Part(name, target, returncode=proc.returncode, output=proc.stdout + proc.stderr)
    if junit.exists():
        suites = ET.parse(junit).getroot()
        for suite in suites.iter("testsuite"):
            count = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
            part.failed += count["failures"] + count["errors"]
            part.skipped += count["skipped"]
            part.passed += count["tests"] - count["failures"] - count["errors"] - count["skipped"]
    return part


def _forget(tags: list[str], echo: Callable[[str], None]) -> None:
    if not tags:
        return
    from nb2prod.runtime import store

    for tag in tags:
        store.delete(tag)
    echo(f"removed the model version(s) the notebook saved: {', '.join(tags)}")


def failure_output(part: Part) -> str:
    """The last lines of a failed part's pytest output."""
    return "\n".join(part.output.strip().splitlines()[-TAIL:])
