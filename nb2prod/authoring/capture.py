"""In the kernel, at ``save_model``: what the service needs besides the model, found and packed.

1. **What the model refers to.** Pickling the model once more, into nothing, with a
   ``reducer_override`` that notes every class and function of ``__main__`` it meets:
   an ``AgeBands`` transformer, the function in a ``FunctionTransformer``, an
   ``nn.Module`` subclass. Those go as source (``extract(refers_to=...)``).
2. **The code.** ``extract`` slices the notebook the kernel runs (``kernel_notebook``:
   under ``nb2prod build`` the executed notebook papermill keeps writing; in Jupyter, the
   kernel's input history)
   and names every module-level value the code uses that is not a literal constant.
3. **The values.** Each is taken from ``__main__`` and pickled on its own. What it
   refers to in ``__main__`` (a frozen dataclass's class) is exported too, so the slice
   is redone until nothing new turns up. What cannot be pickled or is over the size cap
   is an error naming the value, its cell and the way out; all are reported at once.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import sqlite3
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2prod.authoring.local_modules import imported, local_files
from nb2prod.build import scan
from nb2prod.build.extract import Exported, extract
from nb2prod.build.notebook import Notebook, from_sources, read
from nb2prod.core import settings
from nb2prod.core.errors import ExportError, Nb2prodError

MAX_CAPTURED_BYTES = 4 * 1024 * 1024  # the values the notebook code uses, pickled, in all
_LOCKS = (type(threading.Lock()), type(threading.RLock()))
# (types, what such a value is, what to do instead): values the service cannot be given
_NOT_VALUES: tuple[tuple[tuple[type, ...], str, str], ...] = (
    ((io.IOBase,), "an open file", "read the file into a value (a DataFrame, a dict) and use that"),
    ((types.GeneratorType,), "a generator", "make a list of it: list(...)"),
    (_LOCKS, "a lock", "create it inside the function that needs it"),
    (
        (socket.socket, sqlite3.Connection, sqlite3.Cursor),
        "a connection",
        "query what you need into a value, or connect inside the function",
    ),
)
_CONNECTION_MODULES = ("sqlalchemy", "psycopg", "psycopg2", "pymysql", "redis", "pymongo")


@dataclass
class Packed:
    """What ``save_model`` stores besides the model: the code and the captured values."""

    @property
    def source(self) -> str:
        """The exported code, with the modules the run bound by other means imported."""
        if not self.imports:
            return self.exported.source
        header, rest = self.exported.source.split("\n", 1)
        return "\n".join([header, *self.imports, rest])

    exported: Exported
    imports: list[str] = field(default_factory=list)  # modules bound at run time, by name
    modules: dict[str, Path] = field(default_factory=dict)  # local modules, to copy along
    met: set[str] = field(default_factory=set)  # modules the captured values refer to
    values: dict[str, bytes] = field(default_factory=dict)
    needs_code: set[str] = field(default_factory=set)
    facts: list[dict[str, Any]] = field(default_factory=list)  # name, type, bytes, cell


class _Sink:
    """A file that keeps nothing and counts what was written."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


class _Finder(pickle.Pickler):
    """Pickles into ``_Sink``, noting the ``__main__`` classes and functions it meets."""

    def __init__(self, sink: Any):
        super().__init__(sink, protocol=5)
        self.found: set[str] = set()
        self.modules: set[str] = set()  # every module whose classes or functions it met

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) or isinstance(obj, types.FunctionType):
            module = getattr(obj, "__module__", None) or ""
            if module == "__main__":
                self.found.add(obj.__qualname__)
            self.modules.add(module.split(".")[0])
        return NotImplemented


def refers_to(obj: Any) -> tuple[set[str], set[str]]:
    """The ``__main__`` classes and functions pickling ``obj`` refers to, by qualified
    name, and the top-level modules of all the classes and functions it refers to."""
    finder = _Finder(_Sink())
    finder.dump(obj)
    return finder.found, finder.modules


def kernel_notebook() -> tuple[Notebook | None, Notebook | None]:
    """(the notebook this kernel runs, the notebook it came from), from the first that
    knows: ``nb2prod build``/``retrain`` (the notebook papermill writes), the kernel's own
    input history (Jupyter: what ran is what counts), the notebook file when the kernel
    can name it (VS Code, the Jupyter server, ``NB2PROD_NOTEBOOK``). (None, None)
    elsewhere: a script, a test, or a runner that keeps no history (nbval)."""
    now = settings.current()
    executed = now.executed
    if executed and Path(executed).exists():
        nb = read(executed)
        origin = Notebook(Path(now.notebook or executed), now.notebook_sha256 or nb.sha256)
        nb.path = origin.path  # errors name the user's notebook: the cells are the same
        return nb, origin
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    if shell is None or getattr(shell, "user_module", None) is not sys.modules.get("__main__"):
        return None, None
    path = discover(vars(sys.modules["__main__"]))
    history = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None) or []
    cells = [(f"In [{i}]", source) for i, source in enumerate(history) if i and source.strip()]
    if cells:
        nb = from_sources(Path(path.name if path else "notebook.ipynb"), cells)
        if scan.save_model_calls(nb):  # the history holds the cell running now
            return nb, nb
    if path is not None:
        nb = read(path)
        return nb, nb
    return None, None


def discover(namespace: dict[str, Any]) -> Path | None:
    """The notebook's path when the kernel can know it: ``NB2PROD_NOTEBOOK``, VS Code's
    ``__vsc_ipynb_file__``, or the Jupyter server's session path (``__session__``)."""
    for value in (
        settings.current().notebook,
        namespace.get("__vsc_ipynb_file__"),
        namespace.get("__session__"),
        os.environ.get("JPY_SESSION_NAME"),
    ):
        if not isinstance(value, str) or not value.endswith(".ipynb"):
            continue
        path = Path(value).expanduser()
        # older Jupyter servers give the path relative to their root, not to the kernel
        for candidate in (path, Path.cwd() / path.name):
            if candidate.is_file():
                return candidate.resolve()
    return None


def _refusal(value: Any) -> tuple[str, str] | None:
    """(what it is, the way out) when ``value`` cannot be a captured value."""
    for kinds, what, fix in _NOT_VALUES:
        if isinstance(value, kinds):
            return what, fix
    if type(value).__module__.split(".")[0] in _CONNECTION_MODULES:
        return (
            f"a {type(value).__name__} (a connection)",
            "query what you need into a value, or connect inside the function",
        )
    return None


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.1f} KiB"


def pack(
    nb: Notebook,
    origin: Notebook,
    namespace: dict[str, Any],
    model: Any,
    max_bytes: int = MAX_CAPTURED_BYTES,
) -> Packed:
    """The exported code and captured values for ``model``; ``ExportError`` lists every
    value that cannot go, located to the cell that computes it."""
    found, modules = _model_refs(model, nb)
    refs = sorted(found)
    while True:
        exported = extract(nb, origin, refers_to=refs, strict=False)
        packed, more, problems = _capture(nb, exported, namespace, max_bytes)
        if more - set(refs):  # a value holds a notebook class: export it, slice again
            refs = sorted(set(refs) | more)
        elif problems:
            raise ExportError(problems)
        else:
            packed.modules = local_files(imported(packed.source) | modules | packed.met, Path.cwd())
            return packed


def _model_refs(model: Any, nb: Notebook) -> tuple[set[str], set[str]]:
    try:
        return refers_to(model)
    except Exception as exc:  # joblib.dump would fail the same way
        raise ExportError(
            [
                Nb2prodError(
                    f"the model cannot be pickled: {type(exc).__name__}: {exc}",
                    where=nb.path.name,
                    fix="a lambda or a function defined inside another function cannot be pickled: "
                    "define it with def at the top level of a cell",
                )
            ]
        ) from None


def _capture(
    nb: Notebook, exported: Exported, namespace: dict[str, Any], max_bytes: int
) -> tuple[Packed, set[str], list[Nb2prodError]]:
    packed, problems, refs = Packed(exported), list(exported.problems), set()
    for name, label in exported.captured.items():
        at = f"{nb.path.name}: {label}"
        if name not in namespace:
            problems.append(
                Nb2prodError(
                    f"the service needs {name}, which {label} computes, but it does not exist "
                    "when save_model runs",
                    where=at,
                    fix=f"compute {name} before the save_model call",
                )
            )
            continue
        value = namespace[name]
        if isinstance(value, types.ModuleType):  # imported in a try/if block: import it too
            packed.met.add(value.__name__.split(".")[0])
            packed.imports.append(
                f"import {value.__name__}"
                if value.__name__ == name
                else f"import {value.__name__} as {name}"
            )
            continue
        refused = _refusal(value)
        if refused:
            problems.append(
                Nb2prodError(
                    f"the service needs {name}, which is {refused[0]}: it cannot be saved with "
                    "the model",
                    where=at,
                    fix=refused[1],
                )
            )
            continue
        finder = _Finder(buffer := io.BytesIO())
        try:
            finder.dump(value)
        except Exception as exc:  # any pickling failure is the user's value
            problems.append(
                Nb2prodError(
                    f"the service needs {name} ({type(value).__name__}), which cannot be pickled: "
                    f"{type(exc).__name__}: {exc}",
                    where=at,
                    fix=f"compute {name} from plain values (numbers, strings, lists, dicts, "
                    "DataFrames), or move it inside the function that uses it",
                )
            )
            continue
        packed.values[name] = buffer.getvalue()
        packed.met |= finder.modules
        if finder.found:
            packed.needs_code.add(name)
            refs |= finder.found
        packed.facts.append(
            {
                "name": name,
                "type": _type_name(value),
                "bytes": len(packed.values[name]),
                "cell": label,
            }
        )
    total = sum(len(v) for v in packed.values.values())
    if total > max_bytes:
        biggest = [
            f
            for f in sorted(packed.facts, key=lambda f: -f["bytes"])[:3]
            if f["bytes"] * 20 >= total
        ]  # the ones that matter
        problems.append(
            Nb2prodError(
                f"the values the service needs take {_size(total)}, more than the "
                f"{_size(max_bytes)} cap: "
                + ", ".join(
                    f"{f['name']} ({f['type']}, {_size(f['bytes'])}, {f['cell']})" for f in biggest
                ),
                where=nb.path.name,
                fix="use a smaller value (aggregate the data you need, e.g. medians rather than "
                "the training frame), put it inside the saved model, or raise the cap with "
                "save_model(..., max_captured_bytes=...)",
            )
        )
    return packed, refs, problems


def _type_name(value: Any) -> str:
    kind = type(value)
    if kind.__module__ == "__main__":
        return f"{kind.__name__} (a notebook class)"
    shape = getattr(value, "shape", None)
    text = (
        kind.__name__
        if kind.__module__ == "builtins"
        else f"{kind.__module__.split('.')[0]}.{kind.__name__}"
    )
    return f"{text} {tuple(shape)}" if isinstance(shape, tuple) else text
