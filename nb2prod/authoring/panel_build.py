"""The readiness panel's Build row: a button, a progress bar, a label and the outcome.

The button runs ``nb2prod build NOTEBOOK --out <notebook dir>/build/<name>`` in a child
process, read line by line from a thread so the kernel stays free: each ``[n/8] stage …``
line moves the bar and names the stage. Success shows the bento tag and the serve
command (read from the build's ``nb2prod.json``); failure shows the CLI's message, which
says what failed, where (notebook: cell, line) and how to fix it.

Why a child process and not ``nb2prod.build.pipeline.build`` in a thread: while papermill runs,
a build sets ``NB2PROD_RUN_FILE`` (and the parameters) in its own process's environment.
In the user's kernel a ``save_model`` run meanwhile would report into that file and could
become the build's model, and the panel would think the kernel headless. The child also
keeps papermill's event loop away from the kernel's.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

_STAGE = re.compile(r"^\[(\d+)/(\d+)\] (.*?) …$")  # build.Progress: "[3/8] running … …"
_ERROR = "color:var(--jp-error-color1, #cf222e)"


class BuildRow:
    """The widgets of the Build row and the build they start (one at a time)."""

    def __init__(self, notebook: Path | None, hint: str):
        import ipywidgets as w

        self.notebook, self.hint = notebook, hint
        self.button = w.Button(
            description="Build",
            icon="cogs",
            button_style="primary",
            tooltip="nb2prod build: the saved notebook file, in a fresh "
            "kernel, into a tested bento",
        )
        self.progress = w.IntProgress(value=0, min=0, max=8, layout=w.Layout(width="200px"))
        self.label = w.Label(value=f"notebook: {notebook.name if notebook else 'path unknown'}")
        self.result = w.HTML(value="")
        self.button.on_click(lambda _: self.start())
        self.outcome: dict[str, Any] | None = None  # the last build: tags, or the error
        self._thread: threading.Thread | None = None

    def widgets(self) -> list[Any]:
        """The row (button, progress, label) and the outcome under it."""
        import ipywidgets as w

        return [w.HBox([self.button, self.progress, self.label]), self.result]

    def start(self) -> threading.Thread | None:
        """Start a build in a background thread; without a notebook path, say how to give
        one. A build already running is not started twice."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        if self.notebook is None:
            self.label.value = "notebook path unknown"
            self.result.value = f"<pre>nb2prod cannot build: {html.escape(self.hint)}</pre>"
            return None
        self.button.disabled, self.progress.value, self.progress.bar_style = True, 0, ""
        self.result.value, self.outcome = "", None
        self._thread = threading.Thread(
            target=self._run, args=(self.notebook,), name="nb2prod-build", daemon=True
        )
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait for the running build; return its outcome."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.outcome

    def echo(self, line: str) -> None:
        """One line of the build's output: a stage starts, or the stage is done."""
        stage = _STAGE.match(line)
        if stage:
            self.progress.max, self.progress.value = int(stage[2]), int(stage[1]) - 1
            self.label.value = f"{stage[1]}/{stage[2]} {stage[3]}"
        elif line.strip().startswith("done in"):
            self.progress.value += 1

    def _run(self, notebook: Path) -> None:
        out = build_dir(notebook)
        try:
            returncode, error = self._child(notebook, out)
            self._show(returncode, error, out)
        except Exception as exc:  # a bug in nb2prod: say so here, the kernel lives on
            self.outcome = {"returncode": None, "error": repr(exc)}
            self.progress.bar_style = "danger"
            self.result.value = (
                f"<pre style='{_ERROR}'>internal error (a bug in nb2prod): "
                f"{html.escape(repr(exc))}</pre>"
            )
        finally:
            self.button.disabled = False

    def _child(self, notebook: Path, out: Path) -> tuple[int, str]:
        with tempfile.TemporaryFile("w+") as errors:  # a file: a full pipe would stall it
            proc = subprocess.Popen(
                [sys.executable, "-m", "nb2prod.cli", "build", str(notebook), "--out", str(out)],
                cwd=notebook.parent,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            assert proc.stdout is not None  # stdout=PIPE: Popen always opens it
            for line in proc.stdout:
                self.echo(line.rstrip("\n"))
            proc.wait()
            errors.seek(0)
            return proc.returncode, errors.read().strip()

    def _show(self, returncode: int, error: str, out: Path) -> None:
        manifest = out / "nb2prod.json"
        if returncode != 0 or not manifest.exists():
            self.outcome = {"returncode": returncode, "error": error}
            self.progress.bar_style, self.label.value = "danger", f"failed: {self.label.value}"
            self.result.value = f"<pre style='{_ERROR}'>{html.escape(error)}</pre>"
            return
        built = json.loads(manifest.read_text())
        bento, model = built["bento_tag"], built["model_tag"]
        self.outcome = {"returncode": 0, "bento_tag": bento, "model_tag": model, "out": str(out)}
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        self.label.value = f"built {bento}"
        self.result.value = (
            f"built <code>{html.escape(bento)}</code> (model <code>"
            f"{html.escape(model)}</code>) in {html.escape(str(out))}<br>"
            f"serve it with: <code>bentoml serve {html.escape(bento)} "
            "--host 127.0.0.1</code>"
        )


def build_dir(notebook: Path) -> Path:
    """Where the Build button builds ``notebook``: ``build/<name>`` next to it."""
    return notebook.parent / "build" / notebook.stem
