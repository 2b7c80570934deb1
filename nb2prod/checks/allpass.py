"""The common request in one step: a frame that passes every compiled check.

Most requests pass the whole suite, and most of a drafted suite is decided by the
frame's layout (columns present, their dtypes) or by each float column's null flag
and extremes. ``AllPass.build`` looks at one layout once: it keeps the verdicts that
depend on the layout only (they must all pass) and gathers the value checks into
vectors of bounds. ``passes`` then decides every check with three numpy reductions
over the float block and two comparisons, instead of one Python call per check.

It only ever vouches for a pass, with the same sufficient conditions each check's own
``quick`` path uses; anything else (a failure, a NaN extreme, a check it does not know)
falls back to running the checks one by one, which find the rows and values to report.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from nb2prod.checks.frame import _Frame


class AllPass:
    """Whether a frame of one layout passes every check; see the module doc."""

    def __init__(self, null_checked: list[int], between: list[tuple[int, Any, Any, bool, bool]]):
        self.null_checked = np.array(null_checked, dtype=np.intp)
        k = np.array([b[0] for b in between], dtype=np.intp)
        lo = np.array([-np.inf if b[1] is None else b[1] for b in between], dtype=float)
        hi = np.array([np.inf if b[2] is None else b[2] for b in between], dtype=float)
        strict_lo = np.array([b[1] is not None and b[3] for b in between], dtype=bool)
        strict_hi = np.array([b[2] is not None and b[4] for b in between], dtype=bool)
        self.empty = not null_checked and not between
        # Split by strictness once, so ``passes`` is two comparisons per side.
        self.lo_ge = (k[~strict_lo], lo[~strict_lo])
        self.lo_gt = (k[strict_lo], lo[strict_lo])
        self.hi_le = (k[~strict_hi], hi[~strict_hi])
        self.hi_lt = (k[strict_hi], hi[strict_hi])

    @classmethod
    def build(cls, checks: Sequence[Any], frame: _Frame) -> "AllPass | None":
        """The fast path for ``frame``'s layout, or None when this layout cannot have one
        (a layout check fails, a checked column is not a float in the block, a check
        type without a vectorised form)."""
        if not frame.n:
            return None
        null_checked: list[int] = []
        between: list[tuple[int, Any, Any, bool, bool]] = []
        for check in checks:
            fast = getattr(check.evaluate, "fast", None)
            if fast is None:
                return None
            kind = fast[0]
            if kind in ("layout", "type"):
                j = frame.positions.get(check.column) if check.column is not None else None
                if kind == "type" and (
                    j is None
                    or fast[1]
                    and getattr(frame.dtype(j).type, "__name__", "") == "object_"
                ):
                    return None  # an object column is checked value by value
                ok, rows = check.evaluate(frame)
                if not ok or len(rows):
                    return None
                continue
            j = frame.positions.get(check.column)
            k = None if j is None else frame.block_index(j)
            if k is None:
                return None
            if kind == "not_null":
                null_checked.append(k)
            else:
                between.append((k, *fast[1:]))
        return cls(null_checked, between)

    def passes(self, frame: _Frame) -> bool:
        """True when every check passes on ``frame`` (of the layout this was built for)."""
        if self.empty:
            return True
        null, low, high = frame.extremes()
        if null[self.null_checked].any():
            return False
        # NaN extremes (an all-null column) compare False: no pass is vouched for.
        k, bound = self.lo_ge
        if not (low[k] >= bound).all():
            return False
        k, bound = self.lo_gt
        if not (low[k] > bound).all():
            return False
        k, bound = self.hi_le
        if not (high[k] <= bound).all():
            return False
        k, bound = self.hi_lt
        return bool((high[k] < bound).all())
