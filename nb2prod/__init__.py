"""nb2prod: mark a notebook's model, fallback, guardrails and checks; build a service.

    import nb2prod as n2p

    @n2p.model
    def predict(model, X): ...

    checks = n2p.expect(X_train)   # the input contract, drafted from data
    n2p.save_model("breast_cancer", model, reference=X_train, gate={"roc_auc": 0.95},
                   checks=checks)

The exported notebook code imports this package in the served process too, so it loads
only core (and checks, on first use of ``expect``); ``save_model`` and the magics load
the authoring layer when called (a bento does not carry it).
"""

from typing import Any

from nb2prod.core.markers import check, fallback, guardrail, model
from nb2prod.core.spec import at_least, at_most
from nb2prod.core.version import __version__


def __getattr__(name: str) -> Any:
    """``n2p.expect`` and ``n2p.Suite`` load pandas and the suite module when first used:
    the CLI and a served process that never draft a suite start faster."""
    if name in ("expect", "Suite"):
        from nb2prod.checks import suite

        return getattr(suite, name)
    raise AttributeError(f"module 'nb2prod' has no attribute {name!r}")


def save_model(*args: Any, **kwargs: Any) -> str:
    """Write a model version with its contract; see ``nb2prod.authoring.save.save_model``.

    In an interactive kernel the readiness panel then shows under the cell."""
    from nb2prod.authoring.panel import (
        after_save,  # BentoML and IPython: only when called
    )
    from nb2prod.authoring.save import save_model as _save_model

    tag = _save_model(*args, **kwargs)
    after_save(tag)
    return tag


def score_champion(evaluate: Any) -> dict[str, float] | None:
    """Under ``nb2prod retrain``, score production with ``evaluate``; see
    ``nb2prod.runtime.registry.score_champion``."""
    from nb2prod.runtime.registry import score_champion as _score

    return _score(evaluate)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nb2prod``: see ``nb2prod.authoring.magics``."""
    from nb2prod.authoring.magics import (
        load_ipython_extension as _load,  # IPython on demand
    )

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nb2prod``: see ``nb2prod.authoring.magics``."""
    from nb2prod.authoring.magics import unload_ipython_extension as _unload

    _unload(ipython)


__all__ = [
    "model",
    "fallback",
    "guardrail",
    "check",
    "save_model",
    "at_most",
    "at_least",
    "expect",
    "Suite",
    "score_champion",
    "__version__",
]
