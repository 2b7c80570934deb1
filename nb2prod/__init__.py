"""nb2prod: mark a notebook's model, fallback, guardrails and checks; build a service.

    import nb2prod as n2p

    @n2p.model
    def predict(model, X): ...

    checks = n2p.expect(X_train)   # the input contract, drafted from data
    n2p.save_model("breast_cancer", model, reference=X_train, gate={"roc_auc": 0.95},
                   checks=checks)
"""

from .checks.suite import Suite, expect
from .markers import check, fallback, guardrail, model
from .spec import at_least, at_most

__version__ = "0.1.0"


def save_model(*args, **kwargs):  # noqa: D103 - documented in store.save_model
    from .store import save_model as _save_model  # BentoML imports slowly: only when used

    return _save_model(*args, **kwargs)


save_model.__doc__ = "Write a model version with its contract; see ``nb2prod.store.save_model``."


def load_ipython_extension(ipython):  # noqa: D103 - documented in magics
    from .magics import load_ipython_extension as _load  # IPython only when a kernel asks

    _load(ipython)


def unload_ipython_extension(ipython):  # noqa: D103 - documented in magics
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)


load_ipython_extension.__doc__ = "``%load_ext nb2prod``: see ``nb2prod.magics``."
unload_ipython_extension.__doc__ = "``%unload_ext nb2prod``: see ``nb2prod.magics``."

__all__ = ["model", "fallback", "guardrail", "check", "save_model", "at_most", "at_least",
           "expect", "Suite", "__version__"]
