"""How checks look to people: suite tables, validation reports, terminal summaries.

- ``render_html``  a standalone HTML validation report (inline CSS, no scripts, no
                   external assets) to keep next to a build or a retrain.
- ``summary_text`` the terminal's version: one line per failed expectation, by severity.
- ``suite_text`` / ``suite_html`` the table a ``Suite`` shows as its repr (headless and
                   papermill output) and in Jupyter.

Everything that comes from data or from the user (values, column names, titles, the
source) is HTML-escaped: a report about bad input must not execute that input.
"""

from __future__ import annotations

from html import escape
from typing import Any

from nb2prod.checks.results import SEVERITIES, ExpectationResult, ValidationResult

SUITE_HEADER = ("#", "column", "check", "parameters", "severity", "origin")
_SUITE_CAPS = (5, 28, 40, 64, 8, 10)  # widest cell per column in the text table
_SAMPLE = 5  # offending values shown per expectation

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222}
h1{margin-bottom:.2em} .meta{color:#555;margin-top:0}
.verdict{font-size:1.2em;font-weight:bold;padding:.4em .8em;display:inline-block;border-radius:4px}
.v-passed{background:#e6f4ea;color:#1e6b34} .v-warned{background:#fff4e0;color:#8a5300}
.v-failed{background:#fde7e9;color:#a1001c}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f5f5f5} td.num{text-align:right} code{font-size:12px}
tr.fail-reject{background:#fde7e9} tr.fail-reject td.status{color:#a1001c;font-weight:bold}
tr.fail-fallback td.status,tr.fail-warn td.status{color:#8a5300;font-weight:bold}
td.status.ok{color:#1e6b34}
"""


def verdict(result: ValidationResult) -> tuple[str, str]:
    """``(label, sentence)``: ``failed`` if a reject-level expectation failed,
    ``passed with warnings`` if only fallback/warn ones did, else ``passed``."""
    failed = result.failed()
    if not failed:
        return "passed", f"all {len(result.results)} expectation(s) passed"
    counts = ", ".join(f"{len(result.failed(s))} {s}" for s in SEVERITIES if result.failed(s))
    label = "failed" if result.failed("reject") else "passed with warnings"
    return label, f"{len(failed)} of {len(result.results)} expectation(s) failed ({counts})"


def summary_text(result: ValidationResult) -> str:
    """A verdict line, then each failed expectation's ``describe()`` grouped by severity."""
    label, sentence = verdict(result)
    lines = [f"{label}: {sentence}"]
    for severity in SEVERITIES:
        failed = result.failed(severity)
        if failed:
            lines.append(f"{severity} ({len(failed)}):")
            lines += [f"  [{r.index}] {r.describe()}" for r in failed]
    if result.skipped:
        lines.append(f"not checked (unsupported): {', '.join(result.skipped)}")
    return "\n".join(lines)


def render_html(result: ValidationResult, *, title: str, rows: int, source: str = "") -> str:
    """A standalone HTML report: verdict, counts per severity, every expectation
    (failures first, reject-level highlighted), and the expectation types not checked."""
    label, sentence = verdict(result)
    css_class = {"passed": "v-passed", "failed": "v-failed"}.get(label, "v-warned")
    meta = " · ".join(
        x
        for x in (
            f"source: {escape(source)}" if source else "",
            f"{rows:,} row(s)",
            f"{len(result.results)} expectation(s)",
        )
        if x
    )
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='meta'>{meta}</p>",
        f"<p class='verdict {css_class}'>{escape(label.upper())}: {escape(sentence)}</p>",
        _severity_table(result),
        "<h2>Expectations</h2>",
        _results_table(result, rows),
    ]
    if result.skipped:
        items = "".join(f"<li><code>{escape(s)}</code></li>" for s in result.skipped)
        parts += [
            "<h2>Not checked</h2>",
            "<p>These expectation types are not supported by "
            "this validator, so nothing was checked for them:</p>",
            f"<ul>{items}</ul>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def _severity_table(result: ValidationResult) -> str:
    body = "".join(
        f"<tr><td>{s}</td><td class='num'>{sum(r.severity == s for r in result.results)}</td>"
        f"<td class='num'>{len(result.failed(s))}</td></tr>"
        for s in SEVERITIES
    )
    return (
        "<table><thead><tr><th>severity</th><th>expectations</th><th>failed</th></tr>"
        f"</thead><tbody>{body}</tbody></table>"
    )


def _order(result: ValidationResult) -> list[ExpectationResult]:
    """Failures first (reject, fallback, warn), then passes, each in suite order."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(result.results, key=lambda r: (r.success, rank.get(r.severity, 99), r.index))


def _results_table(result: ValidationResult, rows: int) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "#",
            "status",
            "severity",
            "expectation",
            "column",
            "failing rows",
            "sample values",
            "expected",
        )
    )
    body = []
    for r in _order(result):
        failing = len(r.unexpected_rows)
        if r.success:
            count = str(failing) if failing else "0"
        elif failing:
            share = f" ({failing / rows:.1%})" if rows else ""
            count = f"{failing:,}{share}"
        else:
            count = "—"  # a table-level failure: no single row is at fault
        sample = ", ".join(repr(v) for v in r.unexpected_values[:_SAMPLE])
        more = len(r.unexpected_values) - _SAMPLE
        if more > 0:
            sample += f", … +{more} more"
        css = "" if r.success else f" class='fail-{escape(r.severity)}'"
        status = (
            "<td class='status ok'>passed</td>" if r.success else "<td class='status'>FAILED</td>"
        )
        body.append(
            f"<tr{css}><td class='num'>{r.index}</td>{status}<td>{escape(r.severity)}</td>"
            f"<td><code>{escape(r.type)}</code></td><td>{escape(r.column or '(table)')}</td>"
            f"<td class='num'>{count}</td><td><code>{escape(sample)}</code></td>"
            f"<td>{escape(r.expected)}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def class_name(type_: str) -> str:
    """``expect_column_values_to_be_between`` -> ``ExpectColumnValuesToBeBetween``."""
    return "".join(part.capitalize() for part in type_.split("_"))


def _clip(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[: cap - 1] + "…"


def _shorten(values: list[Any], keep: int = 6) -> str:
    shown = ", ".join(repr(v) for v in values[:keep])
    return f"[{shown}, … +{len(values) - keep} more]" if len(values) > keep else f"[{shown}]"


def _suite_rows(suite: Any) -> tuple[str, list[tuple[str, ...]]]:
    """A headline and one row of strings per expectation (see ``SUITE_HEADER``)."""
    items = list(suite)
    counts = ", ".join(f"{s} {sum(e.severity == s for e in items)}" for s in SEVERITIES)
    rows: list[tuple[str, ...]] = [
        (
            str(i),
            "(table)" if e.column is None else str(e.column),
            class_name(e.type),
            ", ".join(
                f"{k}={_shorten(v) if isinstance(v, list) else repr(v)}"
                for k, v in e.kwargs.items()
                if k != "column"
            ),
            e.severity,
            "drafted" if e.drafted else "hand-added",
        )
        for i, e in enumerate(items)
    ]
    return f"Suite {suite.name!r}: {len(items)} expectation(s) — {counts}", rows


def suite_text(suite: Any) -> str:
    """A plain-text table of a ``Suite``, one line per expectation, under a headline."""
    headline, rows = _suite_rows(suite)
    cells = [[_clip(c, cap) for c, cap in zip(r, _SUITE_CAPS)] for r in [SUITE_HEADER, *rows]]
    widths = [max(len(r[k]) for r in cells) for k in range(len(SUITE_HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join([headline, *lines])


def suite_html(suite: Any) -> str:
    """The same table as HTML for Jupyter; severities colored, every cell escaped."""
    headline, rows = _suite_rows(suite)
    cell = "padding:2px 8px;text-align:left;border-bottom:1px solid #ddd"
    colors = {"reject": "#a1001c", "fallback": "#8a5300", "warn": "#555"}
    head = "".join(f"<th style='{cell}'>{h}</th>" for h in SUITE_HEADER)
    body = []
    for r in rows:
        tds = []
        for k, value in enumerate(r):
            style = cell + (
                f";color:{colors[value]};font-weight:bold" if k == 4 and value in colors else ""
            )
            tds.append(f"<td style='{style}'>{escape(value)}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    return (
        f"<div><p><b>{escape(headline)}</b></p>"
        "<table style='border-collapse:collapse;font-size:12px'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )
