"""The readiness panel: what a notebook has for production, shown in the notebook itself.

``%n2p status`` shows it, and so does every ``n2p.save_model(...)`` in an interactive
kernel. Each part comes from where it is known:

- markers: ``markers.collect`` on the kernel's namespace. "In [7]" is the execution
  count IPython recorded for the cell that defined the function (its code's file name,
  mapped by the kernel's compiler); it is left out when unknown (an imported function).
- checks on the reference data and the gate: the contract and ``validation.json`` of the
  last model version ``save_model`` wrote in this kernel (``after_save`` keeps its tag).
- the checklist: ``doctor``'s requirements. With a path (``%n2p status NB.ipynb``) it is
  the static checklist of that file. Otherwise it is judged from the live markers and
  the last saved contract; what only the file shows (the parameters tag, whether the
  code exports) comes from the file when its path is known, and is "unchecked" if not.
- a Build button (``panel_build``): ``nb2prod build`` on the notebook file, from a
  thread, one progress step per stage, then the bento tag and the serve command, or the
  located error.

The panel displays as one bundle with two views: the widget for Jupyter, and the same
content as text/plain, which headless runs (nbclient, nbval, papermill) keep in the
notebook. Builds, retrains and ``nb2prod test`` set ``NB2PROD_RUN_FILE``: no panel there.
"""

from __future__ import annotations

import html
import inspect
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from IPython import get_ipython
from IPython.display import display

from nb2prod.authoring import doctor
from nb2prod.authoring.capture import (
    discover,  # the notebook's path, when the kernel can know it
)
from nb2prod.authoring.doctor import Item
from nb2prod.build.notebook import read
from nb2prod.core import markers, settings
from nb2prod.core.errors import Nb2prodError

FILE_ONLY = ("parameters cell tagged", "code exports cleanly")
PATH_HINT = "%n2p status path/to/notebook.ipynb, or nb2prod doctor NOTEBOOK in a terminal"
BUILD_HINT = (
    "this notebook's path is unknown: pass it, %n2p status path/to/notebook.ipynb, "
    "or set NB2PROD_NOTEBOOK=path/to/notebook.ipynb before starting Jupyter"
)
_last_tag: str | None = None  # the tag the last save_model in this process returned


@dataclass(frozen=True)
class Marker:
    """One marked function: kind, name and the cell that defined it ("In [7]" or "")."""

    kind: str
    name: str
    where: str = ""

    def label(self) -> str:
        """``predict() in In [7]``, or ``predict()`` when the cell is unknown."""
        return f"{self.name}() in {self.where}" if self.where else f"{self.name}()"


@dataclass(frozen=True)
class Saved:
    """The last saved model version: its checks on the reference data and its gate."""

    tag: str
    passed: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # severity -> failed checks
    failures: tuple[str, ...] = ()
    gate: tuple[Any, ...] = ()  # GateResult
    report: Path | None = None  # validation.html
    problem: str = ""  # why the version could not be read
    captured: tuple[dict[str, Any], ...] = ()  # values taken from the run: name, type, ...


@dataclass(frozen=True)
class Status:
    """Everything the panel shows; ``source`` says where the checklist comes from."""

    markers: tuple[Marker, ...]
    saved: Saved | None
    items: tuple[Item, ...]
    notebook: Path | None
    source: str
    marker_problem: str = ""


def gather(namespace: dict[str, Any], notebook: str | Path | None = None) -> Status:
    """The panel's content for a kernel namespace; ``notebook`` asks for the static
    checklist of that file (a missing or broken file raises, as ``nb2prod doctor`` would)."""
    found, problem = _markers(namespace)
    saved, contract = _saved(_last_tag)
    path: Path | None
    if notebook is not None:
        path = Path(notebook).expanduser().resolve()
        items = doctor.checklist(read(path))
        source = f"the saved file {path.name}"
    else:
        path = discover(namespace)
        items = _live_checklist(found, contract, _last_tag, path)
        source = "this session" + (f" and the file {path.name}" if path else "")
    return Status(found, saved, tuple(items), path, source, problem)


def _markers(namespace: dict[str, Any]) -> tuple[tuple[Marker, ...], str]:
    try:
        found = markers.collect(namespace)
    except Nb2prodError as exc:  # two @n2p.model functions: show the problem, not a crash
        return (), str(exc)
    fns = [found.model, found.fallback, *found.guardrails, *found.checks]
    return tuple(
        Marker(spec.kind, fn.__name__, _cell_of(fn))
        for fn in fns
        if fn is not None and (spec := markers.spec_of(fn)) is not None
    ), ""


def _cell_of(fn: Any) -> str:
    # IPython names each cell's code after a hash and maps that name to the cell's
    # execution count (what tracebacks print as "Cell In[7]"); a private map, so be lenient.
    shell = get_ipython()
    numbers = getattr(getattr(shell, "compile", None), "_filename_map", None) or {}
    number = numbers.get(getattr(getattr(fn, "__code__", None), "co_filename", None))
    return f"In [{number}]" if number else ""


def _saved(tag: str | None) -> tuple[Saved | None, Any]:
    if tag is None:
        return None, None
    from nb2prod.checks import validation
    from nb2prod.runtime.loading import load_version

    try:
        contract, path = load_version(tag)
    except Nb2prodError as exc:  # deleted since (nb2prod doctor --run, bentoml models delete)
        return Saved(tag, problem=exc.what), None
    report = validation.read(path) or {"results": [], "rows": 0}
    failed = Counter(r["severity"] for r in report["results"] if not r["success"])
    lines = tuple(
        f"{severity}: {line}"
        for severity in failed
        for line in validation.failures(report, severity)
    )
    page = path / validation.REPORT_HTML
    return Saved(
        tag,
        len(report["results"]) - sum(failed.values()),
        dict(failed),
        lines,
        contract.gate,
        page if page.exists() else None,
        captured=contract.captured,
    ), contract


def _live_checklist(
    found: tuple[Marker, ...], contract: Any, tag: str | None, path: Path | None
) -> list[Item]:
    facts = doctor.Facts()
    for m in found:
        facts.marked.setdefault(m.kind, []).append(m.label())
    if contract is not None:
        facts.save_model = _keywords(contract)
        facts.save_model_at = "this session"
    from_file = _file_items(path)
    items = [doctor.evaluate(r, facts) for r in doctor.REQUIREMENTS]
    return [from_file.get(i.name, i) for i in items] + [from_file["code exports cleanly"]]


def _keywords(contract: Any) -> frozenset[str]:
    """The save_model keywords a contract shows were given (a default timeout looks
    the same as none given: it is reported as not chosen)."""
    from nb2prod.authoring.save import save_model

    default = inspect.signature(save_model).parameters["timeout_s"].default
    given = {
        "reference": True,
        "gate": bool(contract.gate),
        "examples": bool(contract.examples),
        "checks": contract.checks > 0,
        "pii": bool(contract.pii),
        "timeout_s": contract.timeout_s != default,
    }
    return frozenset(k for k, v in given.items() if v)


def _file_items(path: Path | None) -> dict[str, Item]:
    """What only the notebook file shows: its parameters tag, whether its code exports."""
    ok, fix = None, PATH_HINT
    missing = "not visible in a kernel, and the notebook's path is unknown"
    if path is not None:
        try:
            nb = read(path)
            facts = doctor.facts_of(nb)
            tagged = next(r for r in doctor.REQUIREMENTS if r.name == FILE_ONLY[0])
            return {
                FILE_ONLY[0]: doctor.evaluate(tagged, facts),
                FILE_ONLY[1]: doctor.export_item(nb, facts),
            }
        except Nb2prodError as exc:
            ok, missing, fix = False, str(exc), "fix the notebook file, then %n2p status again"
    # the parameters tag is advice, exporting is required (as in doctor's checklist)
    return {
        name: Item(name, name != FILE_ONLY[0], ok, missing=missing, fix=fix) for name in FILE_ONLY
    }


def as_text(status: Status) -> str:
    """The panel as plain text: what headless runs keep, and what a terminal shows."""
    lines = [f"nb2prod readiness (checklist from {status.source})", "markers:"]
    lines += [f"  {m.kind:<10} {m.label()}" for m in status.markers] or [
        "  none yet: mark the serving code with @n2p.model, @n2p.fallback, @n2p.guardrail, "
        "@n2p.check"
    ]
    if status.marker_problem:
        lines.append(f"  problem: {status.marker_problem}")
    lines += ["model:", *(f"  {line}" for line in _model_lines(status.saved)), "checklist:"]
    lines += [ln for item in status.items for ln in doctor.format_item(item)]
    lines.append(doctor.summary(list(status.items)))
    lines.append(
        f"build: nb2prod build {status.notebook}" if status.notebook else f"build: {BUILD_HINT}"
    )
    return "\n".join(lines)


def _model_lines(saved: Saved | None) -> list[str]:
    """The last saved version: its checks on the reference data, then its gate."""
    if saved is None or saved.problem:
        return [
            f"{saved.tag}: {saved.problem}"
            if saved
            else "none saved in this kernel yet: run the n2p.save_model(...) cell"
        ]
    by = ", ".join(f"{n} {severity}" for severity, n in saved.failed.items())
    gates = "; ".join(f"{g.describe()}: {'passed' if g.passed else 'FAILED'}" for g in saved.gate)
    return [
        f"{saved.tag}: checks on the reference data: {saved.passed} passed, "
        f"{sum(saved.failed.values())} failed" + (f" ({by})" if by else ""),
        *(f"  {line}" for line in saved.failures),
        *(
            f"captured for the service: {v['name']} ({v['type']}, {v['bytes']:,} bytes, "
            f"{v['cell']})"
            for v in saved.captured
        ),
        f"gate: {gates or 'none (no gate= in save_model)'}",
    ]


_COLOURS = {
    "ok": "--jp-success-color1, #1a7f37",
    "missing": "--jp-error-color1, #cf222e",
    "advice": "--jp-warn-color1, #9a6700",
    "unchecked": "--jp-ui-font-color2, #6e7781",
}
_SIGNS = {"ok": "✓", "missing": "✗", "advice": "!", "unchecked": "?"}
_STYLE = (
    "<style>.n2p{font-size:13px;line-height:1.5} .n2p td{padding:0 10px 0 0;"
    "vertical-align:top} .n2p td:nth-child(-n+2){white-space:nowrap} "
    ".n2p h4{margin:6px 0 0;font-size:13px} .n2p code{white-space:pre}"
    + "".join(f" .n2p .{k}{{color:var({v})}}" for k, v in _COLOURS.items())
    + "</style>"
)


def _e(text: Any) -> str:
    return html.escape(str(text))


def as_html(status: Status) -> str:
    """The panel's content (all but the Build row) as HTML for an ``ipywidgets.HTML``."""
    verdict = "missing" if any(i.required and i.ok is False for i in status.items) else "ok"
    parts = [
        f"<b>nb2prod · production readiness</b> &nbsp;<span class={verdict}>"
        f"{_e(doctor.summary(list(status.items)))}</span><br><span class=unchecked>"
        f"checklist from {_e(status.source)}</span>",
        "<h4>Markers</h4>",
    ]
    rows = [
        (m.kind, f"<code>{_e(m.name)}()</code>", _e(m.where or "cell unknown"))
        for m in status.markers
    ]
    parts.append(_table(rows) if rows else "<span class=unchecked>none yet</span>")
    if status.marker_problem:
        parts.append(f"<pre class=missing>{_e(status.marker_problem)}</pre>")
    saved, lines = status.saved, [_e(line) for line in _model_lines(status.saved)]
    if saved is not None and not saved.problem:  # the gate line, coloured by its verdict
        verdict = "ok" if all(g.passed for g in saved.gate) else "missing"
        lines[-1] = f"<span class={verdict if saved.gate else 'unchecked'}>{lines[-1]}</span>"
        if saved.report:
            lines.append(f"<span class=unchecked>report: {_e(saved.report)}</span>")
    parts += ["<h4>Model</h4>", "<br>".join(lines)]
    parts += ["<h4>Checklist</h4>", _table([_item_row(item) for item in status.items])]
    return f"{_STYLE}<div class=n2p>{''.join(parts)}</div>"


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    return (
        "<table>"
        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
        + "</table>"
    )


def _item_row(item: Item) -> tuple[str, str, str]:
    state = doctor.status_of(item)
    sign = f"<span class={state}>{_SIGNS[state]} {state}</span>"
    if item.ok:
        return sign, _e(item.name), _e(item.found)
    return (
        sign,
        _e(item.name),
        _e(item.missing) + (f"<br><code>{_e(item.fix)}</code>" if item.fix else ""),
    )


class Panel:
    """One displayed panel: its ``Status``, and its widgets once displayed in a kernel."""

    def __init__(self, status: Status):
        self.status = status
        self.builder: Any = None  # the Build row (``panel_build.BuildRow``)
        self._box: Any = None

    def text(self) -> str:
        """The text/plain view."""
        return as_text(self.status)

    def widget(self) -> Any:
        """The ipywidgets view (created once): the content, then the Build row."""
        if self._box is None:
            import ipywidgets as w

            from nb2prod.authoring.panel_build import BuildRow

            self.builder = BuildRow(self.status.notebook, BUILD_HINT)
            self._box = w.VBox([w.HTML(value=as_html(self.status)), *self.builder.widgets()])
            self._box.add_class("nb2prod-panel")
        return self._box

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = self.widget()._repr_mimebundle_() if _in_kernel() else {}
        return {**bundle, "text/plain": self.text()}

    def build(self) -> threading.Thread | None:
        """What the Build button does (see ``panel_build``); ``wait`` joins the build."""
        self.widget()
        return self.builder.start()

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait for the running build; return its outcome (tags, or the error)."""
        return self.builder.wait(timeout) if self.builder else None


def _in_kernel() -> bool:
    return getattr(get_ipython(), "kernel", None) is not None


def headless() -> bool:
    """True where nobody would look at a panel: under ``nb2prod build``/``retrain``/``test``
    (``NB2PROD_RUN_FILE`` is set), with ``NB2PROD_PANEL=0``, or outside a Jupyter kernel."""
    now = settings.current()
    return bool(now.run_file) or not _in_kernel() or not now.panel


def show(namespace: dict[str, Any] | None = None, notebook: str | Path | None = None) -> Panel:
    """Display the panel for ``namespace`` (default: the kernel's) and return it."""
    shell = get_ipython()
    if namespace is None:
        namespace = shell.user_ns if shell is not None else {}
    panel = Panel(gather(namespace, notebook))
    if shell is None:
        print(panel.text())
    else:
        display(panel)
    return panel


def after_save(tag: str) -> None:
    """Called by ``save_model`` with the tag it wrote: remember it and, in an interactive
    kernel, show the panel under the cell."""
    global _last_tag
    _last_tag = tag
    if headless():
        return
    try:
        show()
    except Exception as exc:  # the model is saved: a panel problem must not fail the cell
        print(
            f"nb2prod: the readiness panel failed ({type(exc).__name__}: {exc}); model "
            f"{tag} is saved; %n2p status shows the panel"
        )
