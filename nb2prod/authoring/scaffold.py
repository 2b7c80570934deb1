"""``nb2prod init NAME``: a new, complete, annotated notebook that builds as it is.

The notebook is the entry point for a new user, so it is the smallest one that has
everything ``nb2prod doctor`` asks for: its own data (scikit-learn's bundled iris), a
parameters cell, an ``n2p.expect`` suite, a marked check, model, fallback and guardrail,
and ``save_model`` with a gate and examples. A README beside it says how to build, test,
serve and call it.

The template is ``scaffold_templates/notebook.py.tmpl`` in the percent format editors
know (``# %%`` starts a cell, ``# %% [markdown]`` a markdown cell, ``tags=[...]`` tags
it), so it reads and diffs as code. ``{{name}}`` and ``{{title}}`` are filled in.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nb2prod.core.errors import UsageError

TEMPLATES = Path(__file__).parent / "scaffold_templates"
# The name becomes the model, the bento, the build directory and a Python module.
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TAGS = re.compile(r"tags=(\[.*?\])")


def init(name: str, directory: str | Path | None = None) -> list[Path]:
    """Write ``NAME.ipynb`` and ``README.md`` into ``directory`` (default ``./NAME``);
    return their paths. Refuses an unusable name and never overwrites a file."""
    if not _NAME.match(name):
        raise UsageError(
            f"{name!r} cannot name a model and its service: use lowercase "
            "letters, digits and '_', starting with a letter",
            fix=f"e.g. nb2prod init {_suggest(name)}",
        )
    folder = Path(directory) if directory is not None else Path(name)
    if folder.exists() and not folder.is_dir():
        raise UsageError(
            f"{folder} exists and is not a directory", fix="pass another --dir, or another name"
        )
    texts = {
        folder / f"{name}.ipynb": notebook_text(name),
        folder / "README.md": _fill((TEMPLATES / "README.md.tmpl").read_text(), name),
    }
    existing = [str(p) for p in texts if p.exists()]
    if existing:
        verb = "exists" if len(existing) == 1 else "exist"
        raise UsageError(
            f"{' and '.join(existing)} already {verb}; nb2prod init never overwrites a file",
            fix="choose another name, or another directory with --dir DIR",
        )
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():
        with open(path, "x") as fh:  # "x": fail rather than overwrite, even in a race
            fh.write(text)
    return list(texts)


def notebook_text(name: str) -> str:
    """The scaffold notebook for ``name``, as .ipynb JSON."""
    cells = [
        _cell(chunk) for chunk in _chunks(_fill((TEMPLATES / "notebook.py.tmpl").read_text(), name))
    ]
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    return nbformat.writes(nb) + "\n"


def _fill(text: str, name: str) -> str:
    return text.replace("{{name}}", name).replace("{{title}}", name.replace("_", " ").capitalize())


def _chunks(text: str) -> list[tuple[str, list[str]]]:
    """(header, lines) per ``# %%`` cell of a percent-format text."""
    chunks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            chunks.append((line, []))
        elif chunks:
            chunks[-1][1].append(line)
    return chunks


def _cell(chunk: tuple[str, list[str]]) -> nbformat.NotebookNode:
    header, lines = chunk
    body = "\n".join(lines).strip("\n")
    if "[markdown]" in header:
        return new_markdown_cell(
            "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in body.splitlines())
        )
    cell = new_code_cell(body)
    tags = _TAGS.search(header)
    if tags:
        cell.metadata["tags"] = json.loads(tags[1])
    return cell


def _suggest(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    return cleaned if cleaned[:1].isalpha() else f"model_{cleaned}".rstrip("_")
