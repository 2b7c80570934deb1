"""Markers: ``@n2p.model``, ``@n2p.fallback``, ``@n2p.guardrail``, ``@n2p.check``.

A marker validates the function, attaches a ``MarkerSpec`` as ``fn.__n2p__`` and returns
the function unchanged, so it behaves the same in the notebook, under papermill and in
the exported module. Mistakes fail at decoration time with a message that says how to
fix the code.

Resolution order (one place): the served runtime and ``save_model`` find marked
functions by scanning a namespace (``collect``); a notebook holds at most one model
and one fallback, any number of guardrails and checks, applied in definition order.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from nb2prod.core.errors import MarkerError
from nb2prod.core.spec import SEVERITIES, MarkerSpec

ATTR = "__n2p__"

# kind -> (parameter names the function must take, options the marker accepts)
_SIGNATURES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "model": (("model", "X"), {}),
    "fallback": (("X",), {}),
    "guardrail": (("X", "result"), {}),
    "check": (("X",), {"severity": "reject"}),
}
_SINGLE = ("model", "fallback")
# (module, kind) -> the function currently holding a one-per-notebook marker
_registry: dict[tuple[str, str], Callable[..., Any]] = {}


def _validate_options(kind: str, options: dict[str, Any]) -> None:
    allowed = _SIGNATURES[kind][1]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) or "none"
        raise MarkerError(
            f"@n2p.{kind} got unknown option(s) {', '.join(unknown)}; valid options: {valid}",
            fix=f"remove {', '.join(unknown)} from @n2p.{kind}(...)",
        )
    if "severity" in options and options["severity"] not in SEVERITIES:
        raise MarkerError(
            f"@n2p.{kind}(severity={options['severity']!r}) is not a known "
            f"severity; valid: {', '.join(SEVERITIES)}",
            fix=f"use severity={SEVERITIES[0]!r}",
        )


def _validate_function(kind: str, fn: Any) -> None:
    params = _SIGNATURES[kind][0]
    example = f"@n2p.{kind}\ndef my_{kind}({', '.join(params)}): ..."
    if not inspect.isfunction(fn) or fn.__name__ == "<lambda>":
        raise MarkerError(
            f"@n2p.{kind} marks a function defined with def, got {fn!r}",
            fix=f"write it as\n{example}",
        )
    if fn.__qualname__ != fn.__name__:
        raise MarkerError(
            f"@n2p.{kind} function {fn.__qualname__}() is nested; it must be "
            "defined at the top level of a cell so it can be exported",
            fix="move the def out of the enclosing function or class",
        )
    positional = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(positional) != len(params):
        got = ", ".join(p.name for p in positional) or "nothing"
        raise MarkerError(
            f"@n2p.{kind} function {fn.__name__}() must take "
            f"{len(params)} argument(s) ({', '.join(params)}), it takes {got}",
            fix=f"change the signature to def {fn.__name__}({', '.join(params)})",
        )


def _still_bound(fn: Callable[..., Any]) -> bool:
    """Whether ``fn``'s name in its module's namespace still refers to ``fn``."""
    return fn.__globals__.get(fn.__name__) is fn


def _register(kind: str, fn: Callable[..., Any]) -> None:
    if kind not in _SINGLE:
        return
    key = (fn.__module__, kind)
    held = _registry.get(key)
    # A re-run cell redefines the same name: replace. A renamed function whose old
    # name is gone from the namespace is also a replacement, not a second marker.
    if held is not None and held.__name__ != fn.__name__ and _still_bound(held):
        raise MarkerError(
            f"a second @n2p.{kind}: {fn.__name__}() — the notebook already "
            f"has {held.__name__}(); a notebook has exactly one {kind} function",
            fix=f"remove @n2p.{kind} from one of them (or `del {held.__name__}` if it is obsolete)",
        )
    _registry[key] = fn


def _marker(kind: str) -> Callable[..., Any]:
    defaults = _SIGNATURES[kind][1]

    def marker(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        _validate_options(kind, options)
        if fn is None:  # used with parentheses: @n2p.check(severity="warn")
            return lambda f: marker(f, **options)
        _validate_function(kind, fn)
        spec = MarkerSpec(kind, fn.__name__, **{**defaults, **options})
        _register(kind, fn)
        setattr(fn, ATTR, spec)
        return fn

    marker.__name__ = kind
    marker.__qualname__ = kind
    marker.__doc__ = (
        f"Mark ``def f({', '.join(_SIGNATURES[kind][0])})`` as the notebook's "
        f"{kind}. Attaches a spec and returns the function unchanged."
    )
    return marker


model = _marker("model")
fallback = _marker("fallback")
guardrail = _marker("guardrail")
check = _marker("check")


@dataclass
class Marked:
    """The marked functions found in one namespace, in definition order."""

    model: Callable[..., Any] | None = None
    fallback: Callable[..., Any] | None = None
    guardrails: list[Callable[..., Any]] = field(default_factory=list)
    checks: list[Callable[..., Any]] = field(default_factory=list)


def spec_of(fn: Any) -> MarkerSpec | None:
    """The spec a marker attached to ``fn``, or None."""
    return getattr(fn, ATTR, None) if inspect.isfunction(fn) else None


def collect(namespace: dict[str, Any]) -> Marked:
    """Find marked functions in a module's or a notebook's global namespace."""
    found = Marked()
    seen: set[int] = set()
    for value in list(namespace.values()):
        spec = spec_of(value)
        if spec is None or id(value) in seen:
            continue
        seen.add(id(value))
        if spec.kind in _SINGLE:
            held = getattr(found, spec.kind)
            if held is not None:
                raise MarkerError(
                    f"two @n2p.{spec.kind} functions: {held.__name__}() and {value.__name__}()",
                    fix=f"keep @n2p.{spec.kind} on exactly one function",
                )
            setattr(found, spec.kind, value)
        else:
            getattr(found, spec.kind + "s").append(value)
    return found
