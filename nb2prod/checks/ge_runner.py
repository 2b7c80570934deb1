"""Batch validation with real Great Expectations 1.24, for build and retrain time.

``validate(df, suite)`` runs a whole data set through GE and returns the same
``ValidationResult`` the compiled request-path validator returns. GE is imported inside
the call (it takes seconds to import) and every call gets its own ephemeral context:
GE contexts are not thread-safe, and nothing is written to disk.

What GE is given is our suite JSON unchanged but for two things, both on a copy:
``id`` becomes ``nb2prod-<index>`` so results map back to suite order (GE reorders them);
GE's own ``severity`` becomes ``warning`` for our ``warn`` and ``critical`` for
``reject``/``fallback`` so GE tools rank failures as we do (GE's severity changes no
verdict; ours stays in ``meta.nb2prod``). Expectations the compiled validator lists as
unsupported run here like any other. GE's "Calculating Metrics" progress bars are
switched off through the context's ``progress_bars`` setting.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd

from nb2prod.checks.compiled import MAX_VALUES, SuiteError, expected_text
from nb2prod.checks.results import SEVERITIES, ExpectationResult, ValidationResult

_GE_SEVERITY = {"warn": "warning", "reject": "critical", "fallback": "critical"}
_ID = "nb2prod-{}"


def severity_of(expectation: dict) -> str:
    """Our severity of one expectation: ``meta.nb2prod.severity``, ``reject`` by default."""
    severity = ((expectation.get("meta") or {}).get("nb2prod") or {}).get("severity", "reject")
    if severity not in SEVERITIES:
        raise SuiteError(
            f"meta.nb2prod.severity {severity!r} is not one of {SEVERITIES}",
            where=f"expectation {expectation.get('type')}",
            fix="use reject, fallback or warn",
        )
    return severity


def ge_suite_dict(suite: dict) -> dict:
    """The suite as handed to GE: a copy with our ids and GE severities (see module doc)."""
    ours = copy.deepcopy(suite)
    for i, expectation in enumerate(ours.get("expectations", [])):
        expectation["id"] = _ID.format(i)
        expectation["severity"] = _GE_SEVERITY[severity_of(expectation)]
    return ours


def _context() -> Any:
    """An ephemeral, in-memory GE context with progress bars off."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def validate(df: pd.DataFrame, suite: dict) -> ValidationResult:
    """Validate ``df`` against ``suite`` with real GE; one result per expectation, in order.

    Rows are 0-based positions (the frame is validated with a fresh RangeIndex). An
    expectation GE could not evaluate (a missing column, values it cannot compare)
    fails with no rows, as GE reports it; ``run`` also returns GE's error messages.
    Raises ``SuiteError`` when GE refuses an expectation (unknown type, bad arguments)
    rather than letting GE drop it with a log line.
    """
    return run(df, suite)[0]


def run(df: pd.DataFrame, suite: dict) -> tuple[ValidationResult, dict[int, str]]:
    """``validate``, plus ``{index: message}`` for each expectation where GE raised."""
    import great_expectations as gx

    given = ge_suite_dict(suite)
    expectations = given.get("expectations", [])
    where = f"suite {suite.get('name')!r}"
    try:
        ge_suite = gx.ExpectationSuite(
            **{
                k: v
                for k, v in given.items()
                if k in ("name", "expectations", "meta", "notes", "id")
            }
        )
    except Exception as e:  # pydantic's ValidationError names the argument at fault
        raise SuiteError(
            f"Great Expectations refuses the suite: {e}",
            where=where,
            fix="correct the expectation's arguments in the notebook",
        ) from e
    kept = {e.id for e in ge_suite.expectations}
    dropped = [
        f"{i} ({x.get('type')})" for i, x in enumerate(expectations) if _ID.format(i) not in kept
    ]
    if dropped:
        raise SuiteError(
            f"Great Expectations does not know expectation(s) {', '.join(dropped)}",
            where=where,
            fix="use a type from great_expectations.expectations (snake_case)",
        )

    frame = df.reset_index(drop=True)
    batch = (
        _context()
        .data_sources.add_pandas("nb2prod")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    outcome = batch.validate(ge_suite, result_format="COMPLETE")
    by_id = {r.expectation_config.id: r for r in outcome.results}
    ge = [by_id[_ID.format(i)] for i in range(len(expectations))]
    errors = {i: message for i, r in enumerate(ge) if (message := _error(r)) is not None}
    results = tuple(_result(i, x, r, len(frame)) for i, (x, r) in enumerate(zip(expectations, ge)))
    return ValidationResult(results), errors


def _error(ge: Any) -> str | None:
    """GE's exception message for one result, or None when GE did not raise.

    GE files an expectation's own exception under ``exception_info`` directly and a
    metric's exceptions under one key per metric."""
    info = ge.exception_info or {}
    found = [info] if "raised_exception" in info else list(info.values())
    messages = dict.fromkeys(
        str(x.get("exception_message"))
        for x in found
        if isinstance(x, dict) and x.get("raised_exception")
    )
    return "; ".join(messages) if messages else None


def _result(index: int, expectation: dict, ge: Any, rows: int) -> ExpectationResult:
    """GE's ExpectationValidationResult as ours."""
    found = ge.result or {}
    positions = tuple(int(i) for i in found.get("unexpected_index_list") or ())
    return ExpectationResult(
        index=index,
        type=expectation["type"],
        column=expectation["kwargs"].get("column"),
        severity=severity_of(expectation),
        success=bool(ge.success),
        unexpected_rows=positions,
        unexpected_values=tuple(found.get("unexpected_list") or ())[:MAX_VALUES],
        expected=expected_text(expectation),
        element_count=rows,
    )
