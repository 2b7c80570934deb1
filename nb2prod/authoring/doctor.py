"""``nb2prod doctor``: a notebook's production-readiness checklist, as data.

The checklist is a registry of ``Requirement``s: a name, whether it is required, what is
missing when it is absent, the line to add, and a probe that looks at ``Facts``. Facts
come from the notebook's AST (``facts_of``: nothing runs) or, for the readiness panel,
from what the last ``save_model`` recorded. ``--run`` adds what a real run recorded
(``run_checklist``). Every result is an ``Item``; callers render them: the CLI as
coloured text or JSON, the panel (``%n2p status``) as rows.

An incomplete notebook is a checklist with items missing, never an exception. A broken
one (a syntax error, a misused directive) raises the same located error a build would.
"""

from __future__ import annotations

import inspect
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from nb2prod.build import extract, scan
from nb2prod.build.notebook import Notebook, read
from nb2prod.core.errors import ExecutionError, ExportError, NotebookError


@dataclass(frozen=True)
class Item:
    """One checklist result: ``found`` says what is there, ``missing`` and ``fix`` (the
    line to add) say what is not. ``ok`` is None when the item could not be checked yet
    (it depends on a missing one); ``missing`` then says on what."""

    name: str
    required: bool
    ok: bool | None
    found: str = ""
    missing: str = ""
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class Facts:
    """What the probes look at. ``save_model`` holds the keywords of the last
    ``save_model`` call (None: no call; ``open_kwargs``: it passes ``**kwargs``)."""

    marked: dict[str, list[str]] = field(default_factory=dict)  # kind -> ["predict() in cell 9"]
    save_model: frozenset[str] | None = None
    save_model_at: str = ""
    open_kwargs: bool = False
    parameters_cell: str | None = None


@dataclass(frozen=True)
class Requirement:
    """One checklist entry; ``probe`` returns what it found, or None when it is missing.

    ``keyword`` names the save_model argument the entry looks for (the probe then is
    ``_keyword(keyword)``).
    """

    name: str
    required: bool
    missing: str
    fix: str
    probe: Callable[[Facts], str | None] | None = None
    keyword: str = ""


def _marked(kind: str) -> Callable[[Facts], str | None]:
    return lambda facts: ", ".join(facts.marked.get(kind, [])) or None


def _keyword(name: str) -> Callable[[Facts], str | None]:
    def probe(facts: Facts) -> str | None:
        if facts.save_model is None:
            return None
        if name in facts.save_model:
            return f"{name}= in save_model ({facts.save_model_at})"
        if facts.open_kwargs:
            return f"perhaps: save_model ({facts.save_model_at}) passes **kwargs, not checked"
        return None

    return probe


def _checks(facts: Facts) -> str | None:
    return _marked("check")(facts) or _keyword("checks")(facts)


def _saves(facts: Facts) -> str | None:
    return f"n2p.save_model(...) in {facts.save_model_at}" if facts.save_model is not None else None


def _accepted(keyword: str, fix: str) -> str:
    # The checklist may name a save_model argument this version does not have yet: say
    # so instead of suggesting a line that would fail; and say what the default does.
    from nb2prod.authoring.save import save_model

    parameter = inspect.signature(save_model).parameters.get(keyword)
    if parameter is None:
        return f"{fix}  (not available yet: this nb2prod's save_model has no {keyword}=)"
    if parameter.default not in (parameter.empty, None):
        return f"{fix}  (without it: {keyword}={parameter.default!r})"
    return fix


SAVE = "in n2p.save_model(...)"
REQUIREMENTS: list[Requirement] = [
    Requirement(
        "model marker",
        True,
        "no @n2p.model function: the service has nothing to serve",
        "@n2p.model\ndef predict(model, X):\n    return model.predict(X)",
        _marked("model"),
    ),
    Requirement(
        "save_model call",
        True,
        "no n2p.save_model(...) call: no model version is written for the service",
        'n2p.save_model("my_model", model, reference=X_train)',
        _saves,
    ),
    Requirement(
        "input checks",
        True,
        "no @n2p.check function and no checks= in save_model: any input reaches the model",
        f"checks=n2p.expect(X_train)  {SAVE}\n"
        "or a row-wise check:\n@n2p.check\ndef complete_rows(X):\n"
        "    return X.notna().all(axis=1)",
        _checks,
    ),
    Requirement(
        "fallback",
        True,
        "no @n2p.fallback function: when the model fails, the request fails",
        "@n2p.fallback\ndef rules(X):\n    ...  # a non-AI answer with the model's output columns",
        _marked("fallback"),
    ),
    Requirement(
        "guardrail",
        True,
        "no @n2p.guardrail function: any model output is served",
        "@n2p.guardrail\ndef plausible(X, result):\n    return result.notna().all(axis=1)",
        _marked("guardrail"),
    ),
    Requirement(
        "gate",
        True,
        "no gate= in save_model: a model is saved however bad its metrics",
        f'gate={{"<metric>": <minimum>}}  {SAVE}; n2p.at_most(x) where lower is better',
        keyword="gate",
    ),
    Requirement(
        "examples",
        True,
        "no examples= in save_model: the build has no golden answers to test the service against",
        f"examples=X_test.head(5)  {SAVE}",
        keyword="examples",
    ),
    Requirement(
        "drift reference",
        True,
        "no reference= in save_model: no input schema and nothing to measure drift against",
        f"reference=X_train  {SAVE}",
        keyword="reference",
    ),
    Requirement(
        "PII columns marked",
        False,
        "no pii= in save_model: personal data columns are not declared",
        f'pii={{"<column>": "hash"}}  {SAVE}  ("hash" or "drop")',
        keyword="pii",
    ),
    Requirement(
        "timeout set",
        False,
        "no timeout_s= in save_model: the model's deadline is not chosen for this model",
        f"timeout_s=1.0  {SAVE}",
        keyword="timeout_s",
    ),
    Requirement(
        "parameters cell tagged",
        False,
        "no cell tagged 'parameters': retrain cannot override the notebook's settings",
        "tag the cell that sets C, "
        "thresholds... 'parameters' (Jupyter: View > Cell toolbar > Tags)",
        lambda facts: facts.parameters_cell,
    ),
]


def evaluate(requirement: Requirement, facts: Facts) -> Item:
    """The ``Item`` for one requirement."""
    probe = requirement.probe or _keyword(requirement.keyword)
    found = probe(facts)
    if found:
        return Item(requirement.name, requirement.required, True, found=found)
    fix = (
        _accepted(requirement.keyword, requirement.fix) if requirement.keyword else requirement.fix
    )
    return Item(requirement.name, requirement.required, False, missing=requirement.missing, fix=fix)


def facts_of(nb: Notebook) -> Facts:
    """Static facts: markers (any spelling), the last save_model call and the parameters
    cell. Raises only for a broken notebook."""
    scan.check_syntax(nb)
    facts = Facts(parameters_cell=nb.parameters_cell.label if nb.parameters_cell else None)
    for m in scan.find_marked(nb):
        facts.marked.setdefault(m.kind, []).append(f"{m.node.name}() in {m.cell.label}")
    calls = scan.save_model_calls(nb)
    if calls:
        cell, call = calls[-1]
        facts.save_model = frozenset(k.arg for k in call.keywords if k.arg)
        facts.open_kwargs = any(k.arg is None for k in call.keywords)
        facts.save_model_at = f"{cell.label}, line {call.lineno}"
    return facts


def export_item(nb: Notebook, facts: Facts) -> Item:
    """Whether the marked code exports: checked only once ``facts`` show the model
    marker and the save_model call, since the export needs both."""
    name = "code exports cleanly"
    if "model" not in facts.marked or facts.save_model is None:
        return Item(
            name,
            True,
            None,
            missing="not checked: needs the model marker and the save_model call first",
        )
    try:
        exported = extract.extract(nb)
    except (ExportError, NotebookError) as exc:
        return Item(name, True, False, missing=exc.what, fix=exc.fix or "")
    captured = (
        "; captured by value from the run: "
        + ", ".join(f"{n} ({cell})" for n, cell in exported.captured.items())
        if exported.captured
        else ""
    )
    return Item(
        name,
        True,
        True,
        found=f"{len(exported.names)} names exported: {', '.join(exported.names)}{captured}",
    )


def checklist(nb: Notebook) -> list[Item]:
    """The static checklist: AST only, nothing runs."""
    facts = facts_of(nb)
    return [evaluate(r, facts) for r in REQUIREMENTS] + [export_item(nb, facts)]


def run_checklist(nb: Notebook) -> list[Item]:
    """Run the notebook (papermill, fresh kernel, a temporary directory) and report what
    ``save_model`` recorded: the gate's verdict and the examples' answers.

    A doctor only diagnoses: the model version the run saved is read back with
    ``load_version`` and then deleted, so the model store is left as it was.
    """
    from nb2prod.build import execute
    from nb2prod.runtime.loading import load_version

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nb2prod-doctor-") as tmp:
        try:
            _, saved = execute.run(
                nb, Path(tmp) / "executed.ipynb", {}, Path(tmp) / ".saved_models.jsonl"
            )
        except ExecutionError as exc:
            return [
                Item(
                    "runs in a fresh kernel",
                    True,
                    False,
                    missing=f"{exc.where}: {exc.what}",
                    fix="fix the cell, then Restart & Run All in Jupyter",
                )
            ]
    seconds = time.perf_counter() - started
    if not saved:
        return [
            Item(
                "runs in a fresh kernel",
                True,
                False,
                missing=f"ran in {seconds:.1f}s but never called n2p.save_model(...)",
                fix="call n2p.save_model(...) at the top level of a cell that runs",
            )
        ]
    tag = saved[-1]["tag"]
    contract, _ = load_version(tag)
    _forget(tag)
    return [
        Item(
            "runs in a fresh kernel",
            True,
            True,
            found=f"ran in {seconds:.1f}s; save_model recorded {tag}",
        ),
        _gate_item(contract),
        _examples_item(contract),
    ]


def _gate_item(contract: Any) -> Item:
    name = "gate passes"
    if not contract.gate:
        return Item(
            name,
            True,
            False,
            missing="no gate, so nothing was evaluated",
            fix=f'gate={{"<metric>": <minimum>}}  {SAVE}',
        )
    failed = [g.describe() for g in contract.gate if not g.passed]
    if failed:
        return Item(
            name,
            True,
            False,
            missing=f"gate failed: {'; '.join(failed)}",
            fix="improve the model, or change gate= in save_model if the threshold is wrong",
        )
    return Item(name, True, True, found="; ".join(g.describe() for g in contract.gate) + ": passed")


def _examples_item(contract: Any) -> Item:
    name = "examples answered"
    if not contract.examples:
        return Item(
            name,
            True,
            False,
            missing="save_model recorded no examples",
            fix=f"examples=X_test.head(5)  {SAVE}",
        )
    captured = (
        "; values captured from the run: "
        + ", ".join(
            f"{v['name']} ({v['type']}, {v['bytes']:,} bytes, {v['cell']})"
            for v in contract.captured
        )
        if contract.captured
        else ""
    )
    return Item(
        name,
        True,
        True,
        found=f"{len(contract.examples)} examples answered away "
        f"from the kernel as in it; the built service must give the same "
        f"answers{captured}",
    )


def _forget(tag: str) -> None:
    from nb2prod.runtime import store

    store.delete(tag)


@dataclass
class Report:
    """A notebook's checklist; ``ready`` when every required item is ok."""

    notebook: str
    items: list[Item]
    ran: bool = False

    @property
    def ready(self) -> bool:
        """True when every required item is checked and ok."""
        return all(item.ok for item in self.items if item.required)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: notebook, ready, ran and the items."""
        return {
            "notebook": self.notebook,
            "ready": self.ready,
            "ran": self.ran,
            "items": [item.to_json() for item in self.items],
        }


def diagnose(path: str | Path, run: bool = False) -> Report:
    """The checklist for the notebook at ``path``; ``run`` executes it too."""
    nb = read(path)
    items = checklist(nb)
    if run:
        items += run_checklist(nb)
    return Report(str(path), items, ran=run)


def status_of(item: Item) -> str:
    """``ok``, ``missing`` (required), ``advice`` (advisory) or ``unchecked``."""
    if item.ok is None:
        return "unchecked"
    return "ok" if item.ok else "missing" if item.required else "advice"


def format_item(item: Item) -> list[str]:
    """An item as text lines: a status line, then what is missing and the line to add."""
    head = f"  [{status_of(item)}]".ljust(14) + item.name.ljust(24)
    if item.ok:
        return [head + item.found]
    missing = item.missing.splitlines()
    lines = [head + missing[0], *(" " * 14 + ln for ln in missing[1:])]
    fix = item.fix.splitlines()
    if fix:
        lines += [" " * 14 + "fix: " + fix[0], *(" " * 19 + ln for ln in fix[1:])]
    return lines


def summary(items: list[Item]) -> str:
    """The verdict line under a checklist."""
    missing = [i.name for i in items if i.required and i.ok is False]
    unchecked = [i.name for i in items if i.ok is None]
    if missing:
        return f"{len(missing)} required item(s) missing: {', '.join(missing)}" + (
            f" (not checked yet: {', '.join(unchecked)})" if unchecked else ""
        )
    return "every required item is in place"


def as_text(items: list[Item], title: str) -> str:
    """A checklist as plain text."""
    return "\n".join([title, *(ln for item in items for ln in format_item(item)), summary(items)])
