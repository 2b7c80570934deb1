"""Results as data: what one expectation found in one DataFrame.

Both the compiled validator and the Great Expectations runner return these, with GE's
semantics: ``success`` is the batch verdict (``mostly`` applied), ``unexpected_rows``
are the 0-based positions of the rows that broke the expectation (GE's
``unexpected_index_list`` for a DataFrame with a RangeIndex), whatever ``success`` is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nb2prod.core.spec import SEVERITIES

__all__ = ["SEVERITIES", "ExpectationResult", "ValidationResult"]


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation's verdict on one DataFrame."""

    index: int  # position of the expectation in the suite
    type: str  # GE snake_case type, e.g. "expect_column_values_to_be_between"
    column: str | None  # None for table-level expectations
    severity: str  # one of SEVERITIES
    success: bool  # GE's batch verdict, ``mostly`` applied
    unexpected_rows: tuple[int, ...] = ()
    unexpected_values: tuple[Any, ...] = ()  # the offending values, same order, may be capped
    expected: str = ""  # human text: "between 0 and 60", "in {'a', 'b'}"
    element_count: int = 0

    def describe(self) -> str:
        """This failure on one line, e.g.

        ``expect_column_values_to_be_between(mean radius): 3 row(s), e.g. 71.2;
        expected between 0 and 60``.
        """
        where = f"({self.column})" if self.column else ""
        sample = ", ".join(repr(v) for v in self.unexpected_values[:3])
        return (
            f"{self.type}{where}: {len(self.unexpected_rows)} row(s)"
            + (f", e.g. {sample}" if sample else "")
            + (f"; expected {self.expected}" if self.expected else "")
        )


@dataclass(frozen=True)
class ValidationResult:
    """Every expectation's verdict, in suite order, plus what could not be checked."""

    results: tuple[ExpectationResult, ...] = ()
    skipped: tuple[str, ...] = field(default=())  # expectation types this validator cannot run

    @property
    def success(self) -> bool:
        """True when every expectation succeeded."""
        return all(r.success for r in self.results)

    def failed(self, severity: str | None = None) -> list[ExpectationResult]:
        """Expectations that failed, optionally only those of one severity."""
        return [
            r
            for r in self.results
            if not r.success and (severity is None or r.severity == severity)
        ]
