"""Renders a build directory from templates. Templates stay thin: logic lives in runtime."""

from __future__ import annotations

import importlib.metadata as md
import shutil
from pathlib import Path
from string import Template
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"
PACKAGE = Path(__file__).resolve().parents[2]  # the nb2prod package directory
# What a served process imports, and nothing else: authoring, build and lifecycle stay
# out of the bento (tests/test_layers.py proves a served process never imports them).
SERVED = ("__init__.py", "core", "checks", "runtime")
# template -> path in the build directory ("{name}" is the notebook's model name)
OUTPUTS = {
    "service.py.tmpl": "service.py",
    "bentofile.yaml.tmpl": "bentofile.yaml",
    "tests/test_service.py.tmpl": "tests/test_service.py",
}
# Besides the notebook's imports, the bento installs nb2prod's own requirements (its copy
# of nb2prod's runtime is not on an index): SQLAlchemy and psycopg for the audit log...
OWN = "nb2prod"


def _own_requirements() -> list[tuple[str, str]]:
    """(distribution, extras) of nb2prod's requirements, extras like ``[binary]`` kept."""
    from packaging.requirements import Requirement

    wanted = []
    for text in md.requires(OWN) or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            wanted.append((req.name, f"[{','.join(sorted(req.extras))}]" if req.extras else ""))
    return wanted


def class_name(name: str) -> str:
    """``breast_cancer`` -> ``BreastCancer`` (the service class)."""
    words = [w for w in name.replace("-", "_").replace(".", "_").split("_") if w]
    text = "".join(w[:1].upper() + w[1:] for w in words) or "Service"
    return text if text[0].isalpha() else "S" + text


def pinned_packages(modules: list[str]) -> list[str]:
    """``dist==version`` for the runtime and each top-level module the code imports."""
    owners = md.packages_distributions()
    dists = dict(_own_requirements())
    for module in modules:
        dists.update((d, dists.get(d, "")) for d in owners.get(module, []) if d.lower() != OWN)
    pins = []
    for dist in sorted(dists, key=str.lower):
        try:
            # A local label (torch's "2.13.0+cpu") names a build no package index has:
            # pin the release, which an image's pip can find.
            pins.append(f"{dist}{dists[dist]}=={md.version(dist).split('+')[0]}")
        except md.PackageNotFoundError:
            continue
    return pins


def render(out: Path, context: dict[str, Any], code: str) -> None:
    """Write service.py, the code module, bentofile.yaml, tests/ and nb2prod's runtime."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{context['name']}_code.py").write_text(code, encoding="utf-8")  # as pinned
    packages = "\n".join(f"    - {p}" for p in context["packages"])
    for template, target in OUTPUTS.items():
        text = Template((TEMPLATES / template).read_text()).substitute(
            {**context, "packages": packages}
        )
        (out / target).parent.mkdir(parents=True, exist_ok=True)
        (out / target).write_text(text)
    # The bento carries the exact nb2prod runtime that built it: it is not on a package index.
    shutil.rmtree(out / "nb2prod", ignore_errors=True)
    (out / "nb2prod").mkdir()
    for part in SERVED:
        if (PACKAGE / part).is_dir():
            shutil.copytree(
                PACKAGE / part,
                out / "nb2prod" / part,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        else:
            shutil.copyfile(PACKAGE / part, out / "nb2prod" / part)
