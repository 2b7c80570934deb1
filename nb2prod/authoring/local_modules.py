"""Python modules beside the notebook (``helpers.py``, a ``features/`` package) that the
exported code imports or the pickled model refers to: they go with the model version.

A module is *local* when the kernel imported it from a file under the notebook's folder
(the kernel's working directory) and no installed distribution provides it: an editable
install of a project (``pip install -e .``) is a package the bento pins, not a file to
copy. Each local module is copied into the version's ``modules/`` folder, sha256-pinned
in its contract, and put on ``sys.path`` when the version is loaded (``runtime.loading``).
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import sys
from pathlib import Path

FOLDER = "modules"


def imported(source: str) -> set[str]:
    """The top-level modules ``source`` imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def local_files(names: set[str], root: Path) -> dict[str, Path]:
    """``{path relative to the version's modules/: file}`` for each module of ``names``
    that is local to ``root``; a package brings every ``.py`` file under it."""
    installed = md.packages_distributions()
    root = root.resolve()
    files: dict[str, Path] = {}
    for name in sorted(names - set(installed) - set(sys.builtin_module_names)):
        origin = getattr(sys.modules.get(name), "__file__", None)
        if not origin:
            continue
        path = Path(origin).resolve()
        if not path.is_relative_to(root) or "site-packages" in path.parts:
            continue
        if path.name == "__init__.py":  # a package: all of it
            top = path.parent
            files.update(
                {
                    str(f.relative_to(top.parent)): f
                    for f in sorted(top.rglob("*.py"))
                    if "__pycache__" not in f.parts
                }
            )
        else:
            files[path.name] = path
    return files
