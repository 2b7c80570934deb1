"""The build story: read → check → execute → extract → render → package → register.

Each stage is one named function call; ``build`` reads top to bottom like the list above.
The first build of a model name makes its version production (registry history: "first
build"), so the first deployment is what ``nb2prod models`` and ``POST /admin/reload``
call production; later builds are candidates until ``nb2prod promote``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from nb2prod.build import execute, extract, notebook, packaging, scan
from nb2prod.core.errors import BuildError, GateError, NotebookError
from nb2prod.core.settings import ENV_PII_SALT as SALT_ENV
from nb2prod.runtime import registry
from nb2prod.runtime.loading import CODE, load_version

T = TypeVar("T")


@dataclass(frozen=True)
class BuildResult:
    """What a successful build produced."""

    out: Path
    model_tag: str
    bento_tag: str
    seconds: float
    production: str | None = None  # the name's production version after the build


class Progress:
    """Prints one line per stage with its duration; ``quiet`` silences it."""

    def __init__(self, total: int, echo: Callable[[str], None] = print):
        self.total, self.done, self.echo = total, 0, echo
        self.started = time.perf_counter()

    def stage(self, title: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one stage, printing ``[n/total] title … 1.2s``."""
        self.done += 1
        t0 = time.perf_counter()
        self.echo(f"[{self.done}/{self.total}] {title} …")
        result = fn(*args, **kwargs)
        self.echo(f"      done in {time.perf_counter() - t0:.1f}s")
        return result

    @property
    def elapsed(self) -> float:
        """Seconds since the build started."""
        return time.perf_counter() - self.started


def build(
    path: str | Path,
    out: str | Path | None = None,
    parameters: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
) -> BuildResult:
    """Build ``path`` into a tested bento; raise an ``Nb2prodError`` saying what failed."""
    parameters = parameters or {}
    progress = Progress(7, echo)
    nb = progress.stage("reading the notebook", notebook.read, path)
    progress.stage("checking markers and exported code", _check, nb, parameters)
    out = Path(out) if out else Path("build") / nb.path.stem
    out.mkdir(parents=True, exist_ok=True)
    executed, saved = progress.stage(
        "running the notebook in a fresh kernel (papermill)",
        execute.run,
        nb,
        out.resolve() / "executed.ipynb",
        parameters,
        out.resolve() / ".saved_models.jsonl",
    )
    model_tag = _model_from(nb, saved)
    progress.stage(
        "checking the reference data against the input contract",
        _check_reference,
        nb,
        model_tag,
        out,
        echo,
    )
    exported = progress.stage(
        "collecting the code and values save_model exported",
        exported_code,
        executed,
        model_tag,
        echo,
    )
    progress.stage(
        "rendering the service",
        packaging.render,
        out,
        model_tag,
        exported,
        nb.path,
        notebook_imports(nb),
    )
    bento_tag = progress.stage(
        "testing and building the bento (bentoml build)", packaging.package, out
    )
    production = _register(out, model_tag, bento_tag)
    for line in _closing(model_tag, bento_tag, production, progress.elapsed):
        echo(line)
    return BuildResult(out, model_tag, bento_tag, progress.elapsed, production)


def notebook_imports(nb: notebook.Notebook) -> list[str]:
    """The top-level modules every cell that runs imports: the bento pins them all, so
    its image can run ``nb2prod retrain`` on the notebook too (README: scheduling)."""
    return sorted(
        {m for cell in nb.run_cells if cell.tree for m in packaging.imported_modules(cell.tree)}
    )


def _check(nb: notebook.Notebook, parameters: dict[str, Any]) -> None:
    execute.check_parameters(nb, parameters)  # the same refusals as retrain: names, types
    extract.extract(nb)  # fail on export problems before spending a kernel run


def _model_from(nb: notebook.Notebook, saved: list[dict[str, Any]]) -> str:
    if not saved:
        raise NotebookError(
            "the notebook ran but n2p.save_model(...) was never called "
            "(is the call inside an if, or in a skipped cell?)",
            where=nb.path.name,
            fix="call n2p.save_model(...) at the top level",
        )
    tag = saved[-1]["tag"]
    contract, _ = load_version(tag)
    failed = [g.describe() for g in contract.gate if not g.passed]
    if failed:
        raise GateError(
            f"model {tag} does not meet its gate: {'; '.join(failed)}",
            where=nb.path.name,
            fix="improve the model, or change gate=... in save_model if the threshold is wrong",
        )
    return tag


def _check_reference(
    nb: notebook.Notebook, model_tag: str, out: Path, echo: Callable[[str], None]
) -> None:
    """save_model validated the reference data (real GE, in the kernel): enforce its verdict."""
    from nb2prod.checks import validation  # pandas: not for the refusals before a run

    contract, path = load_version(model_tag)
    report = validation.read(path)
    if report is None:
        return
    shutil.copyfile(path / validation.REPORT_HTML, out / validation.REPORT_HTML)
    for severity in ("fallback", "warn"):
        for line in validation.failures(report, severity):
            echo(f"      {severity}: {line}")
    if contract.unsupported:
        echo(
            f"      warning: {', '.join(contract.unsupported)} cannot be compiled for "
            "requests; they run only when whole data sets are validated"
        )
    rejected = validation.failures(report, "reject")
    if rejected:
        raise BuildError(
            "the reference data fails reject-level checks:\n"
            + "\n".join(f"  - {line}" for line in rejected),
            where=f"{nb.path.name}: save_model(reference=...)",
            fix=f"fix the data or the check; the full report is {out / validation.REPORT_HTML}",
        )


def exported_code(
    executed: notebook.Notebook, model_tag: str, echo: Callable[[str], None] = print
) -> extract.Exported:
    """The code ``save_model`` sliced from the run and stored with the version, and the
    values it captured, each named with its type, size and cell."""
    contract, path = load_version(model_tag)
    if not (path / CODE).exists():
        raise BuildError(
            f"model {model_tag} was saved without its notebook code",
            where=executed.path.name,
            fix="save it from the notebook with "
            "n2p.save_model(...), not from a script or another module",
        )
    for value in contract.captured:
        echo(
            f"      captured {value['name']} ({value['type']}, {value['bytes']:,} bytes, "
            f"from {value['cell']})"
        )
    for module in contract.modules:
        echo(f"      with {module} (beside the notebook)")
    return extract.Exported(
        (path / CODE).read_text(),
        scan.marked_kinds(executed),
        captured={v["name"]: v["cell"] for v in contract.captured},
    )


FIRST_BUILD = "first build"  # the history's reason for a production no promotion made


def _register(out: Path, model_tag: str, bento_tag: str) -> str:
    """Make ``model_tag`` production when its name has none yet (with the lineage a
    promotion records, so a reload checks the same pins); return production after it."""
    contract, _ = load_version(model_tag)
    current = registry.production(contract.name)
    if current is not None:
        return current
    move = registry.promotion_to(
        model_tag, reason=FIRST_BUILD, bento=bento_tag, code_sha256=packaging.code_sha256(out)
    )
    try:
        registry.promote(contract.name, move, expected=None)
    except registry.ProductionMoved:  # another build or a retrain got there first
        pass
    return registry.production(contract.name) or model_tag


def _closing(model_tag: str, bento_tag: str, production: str, seconds: float) -> list[str]:
    """The build's last lines: what it made, its status, what serving needs, how to serve."""
    from nb2prod.runtime.audit import MIN_SALT, home_url  # SQLAlchemy: ~0.2 s to import

    contract, _ = load_version(model_tag)
    name = contract.name
    lines = [f"built {bento_tag} (model {model_tag}) in {seconds:.1f}s"]
    if production == model_tag:
        lines.append(f"{model_tag} is production of {name} ({FIRST_BUILD})")
    else:
        lines += [
            f"{model_tag} is a candidate; production of {name} stays {production}",
            f"promote it with:  nb2prod promote {name} {model_tag.split(':', 1)[1]}",
        ]
    hashed = sorted(c for c, how in contract.pii.items() if how == "hash")
    lines.append(
        "serving needs: "
        + (
            f"{SALT_ENV} ({MIN_SALT}+ characters, the same on every worker; pii hashing of "
            f"{', '.join(hashed)})"
            if hashed
            else "no secret"
        )
    )
    lines.append(
        "optional: NB2PROD_ADMIN_TOKEN (admin endpoints such as /admin/reload; off "
        f"without it), NB2PROD_AUDIT_URL (default {home_url(name)})"
    )
    return lines + [f"serve it with:  bentoml serve {bento_tag}"]
