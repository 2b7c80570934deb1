"""The committed notebooks are what their generators write.

``tests/notebooks/make_fixtures.py`` (the flagship and its one-line variations) and
``make_shapes.py`` (notebooks of other shapes) are run into a temporary directory; every
notebook they write must equal the committed one, compared as parsed JSON. Nothing needs
normalising: the generators fix each cell's id.
"""

import importlib
import json
from pathlib import Path

import pytest
from conftest import NOTEBOOKS, ROOT

REGENERATE = {"make_fixtures": ".venv/bin/python tests/notebooks/make_fixtures.py",
              "make_shapes": ".venv/bin/python tests/notebooks/make_shapes.py {stem}"}


def regenerate(into: Path) -> dict[Path, tuple[str, Path]]:
    """Run both generators with their output moved under ``into``:
    ``{path relative to the repository: (generator, the file it wrote)}``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(NOTEBOOKS))  # make_shapes imports make_fixtures by name
        fixtures = importlib.import_module("make_fixtures")
        shapes = importlib.import_module("make_shapes")
        mp.setattr(fixtures, "ROOT", into / "make_fixtures")
        mp.setattr(fixtures, "HERE", into / "make_fixtures" / "tests" / "notebooks")
        mp.setattr(shapes, "HERE", into / "make_shapes" / "tests" / "notebooks")
        fixtures.main()
        shapes.main()
    return {path.relative_to(into / generator): (generator, path)
            for generator in REGENERATE for path in sorted((into / generator).rglob("*.ipynb"))}


def difference(committed: dict, generated: dict) -> str:
    """Where two notebooks first differ: the notebook's metadata, or a cell and its field."""
    if committed.get("metadata") != generated.get("metadata"):
        return "the notebook's metadata"
    mine, theirs = committed.get("cells", []), generated.get("cells", [])
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if a != b:
            field = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
            return f"cell {i} ({b.get('id', 'no id')}): {field}"
    if len(mine) != len(theirs):
        return f"{len(mine)} cells committed, {len(theirs)} generated"
    return next(k for k in sorted(set(committed) | set(generated))
                if committed.get(k) != generated.get(k))


def test_every_committed_notebook_is_what_its_generator_writes(tmp_path):
    written = regenerate(tmp_path)
    assert len(written) > 30 and Path("notebooks/breast_cancer.ipynb") in written
    problems = []
    for relative, (generator, path) in written.items():
        committed = ROOT / relative
        how = REGENERATE[generator].format(stem=relative.stem)
        if not committed.exists():
            problems.append(f"{relative}: {generator}.py writes it, but it is not committed; "
                            f"run {how} and commit it")
            continue
        mine, theirs = json.loads(committed.read_text()), json.loads(path.read_text())
        if mine != theirs:
            problems.append(f"{relative}: differs from what {generator}.py writes, at "
                            f"{difference(mine, theirs)}; regenerate it: {how}")
    for orphan in sorted(set(NOTEBOOKS.glob("*.ipynb")) - {ROOT / r for r in written}):
        problems.append(f"{orphan.relative_to(ROOT)}: no generator writes it; add it to "
                        "tests/notebooks/make_fixtures.py or make_shapes.py")
    assert not problems, (f"{len(problems)} notebook(s) out of step with their generator, "
                          "commands for the repository root:\n" + "\n".join(problems))


def test_a_changed_notebook_is_located():
    cells = [{"id": "nb-0", "source": "x = 1"}, {"id": "nb-1", "source": "y = 2"}]
    edited = [cells[0], {**cells[1], "source": "y = 3"}]
    assert difference({"cells": cells}, {"cells": edited}) == "cell 1 (nb-1): source"
    assert difference({"cells": cells}, {"cells": cells[:1]}) == "2 cells committed, 1 generated"
    assert difference({"metadata": {}}, {"metadata": {"kernelspec": {}}}) == \
        "the notebook's metadata"
