"""Validation reports and suite tables (``nb2prod.checks.report``)."""

import re

import pytest

from nb2prod.checks.report import render_html, summary_text, verdict
from nb2prod.checks.results import ExpectationResult, ValidationResult

BETWEEN = "expect_column_values_to_be_between"


def result(index, type_, column, severity, success, rows=(), values=(), expected=""):
    return ExpectationResult(index=index, type=type_, column=column, severity=severity,
                             success=success, unexpected_rows=tuple(rows),
                             unexpected_values=tuple(values), expected=expected,
                             element_count=200)


@pytest.fixture
def mixed():
    """A pass, a reject failure with hostile text, a warn failure, a table-level failure."""
    return ValidationResult(results=(
        result(0, "expect_column_to_exist", "mean radius", "reject", True),
        result(1, BETWEEN, "mean radius", "warn", False, rows=range(12),
               values=[71.2, 80.5, 99.0, 100.1, 120.0, 130.0, 140.0], expected="between 0 and 60"),
        result(2, "expect_column_values_to_be_in_set", "city", "reject", False, rows=[4],
               values=["<script>alert(1)</script>"], expected="in {'Oslo', 'Paris'}"),
        result(3, "expect_table_columns_to_match_set", None, "reject", False,
               expected="columns {'a', 'b'}"),
        result(4, "expect_column_values_to_be_in_set", "smoker", "fallback", True),
    ), skipped=("expect_column_kl_divergence_to_be_less_than",))


def test_verdict_says_failed_only_for_reject_level_failures(mixed):
    assert verdict(mixed)[0] == "failed"
    assert verdict(mixed)[1] == "3 of 5 expectation(s) failed (2 reject, 1 warn)"
    only_warn = ValidationResult(results=mixed.results[:2])
    assert verdict(only_warn)[0] == "passed with warnings"
    passing = ValidationResult(results=(mixed.results[0], mixed.results[4]))
    assert verdict(passing) == ("passed", "all 2 expectation(s) passed")


def test_report_header_has_title_source_rows_verdict_and_severity_counts(mixed):
    page = render_html(mixed, title="breast_cancer <build>", rows=200, source="X_train & co")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>breast_cancer &lt;build&gt;</title>" in page
    assert "source: X_train &amp; co" in page and "200 row(s)" in page
    assert "FAILED: 3 of 5 expectation(s) failed" in page and "v-failed" in page
    counts = re.findall(r"<tr><td>(\w+)</td><td class='num'>(\d+)</td>"
                        r"<td class='num'>(\d+)</td></tr>", page)
    assert counts == [("reject", "3", "2"), ("fallback", "1", "0"), ("warn", "1", "1")]


def test_report_lists_failures_first_with_reject_highlighted(mixed):
    page = render_html(mixed, title="t", rows=200)
    order = [int(i) for i in re.findall(r"<tr[^>]*><td class='num'>(\d+)</td><td class='status",
                                        page)]
    assert order == [2, 3, 1, 0, 4]   # reject failures, warn failure, then passes
    assert page.count("class='fail-reject'") == 2 and page.count("class='fail-warn'") == 1
    row = re.search(r"<tr class='fail-warn'>.*?</tr>", page).group(0)
    assert "12 (6.0%)" in row and "between 0 and 60" in row
    assert "71.2, 80.5, 99.0, 100.1, 120.0, … +2 more" in row
    table_row = re.search(r"<tr[^>]*><td class='num'>3</td>.*?</tr>", page).group(0)
    assert "(table)" in table_row and "—" in table_row


def test_report_escapes_offending_values_and_has_no_script_or_external_asset(mixed):
    page = render_html(mixed, title="<script>x</script>", rows=200, source="<img src=x>")
    assert "<script" not in page.lower()
    assert "&#x27;&lt;script&gt;alert(1)&lt;/script&gt;&#x27;" in page
    assert "&lt;img src=x&gt;" in page and "<img" not in page
    assert "in {&#x27;Oslo&#x27;, &#x27;Paris&#x27;}" in page
    plain = render_html(mixed, title="t", rows=200, source="X_train")
    assert not re.search(r"<(script|link|img|iframe)|(src|href)\s*=|@import|url\(", plain)


def test_report_lists_skipped_expectation_types(mixed):
    page = render_html(mixed, title="t", rows=200)
    assert "<h2>Not checked</h2>" in page
    assert "<li><code>expect_column_kl_divergence_to_be_less_than</code></li>" in page
    clean = render_html(ValidationResult(results=mixed.results[:1]), title="t", rows=0)
    assert "Not checked" not in clean and "PASSED: all 1 expectation(s) passed" in clean


def test_summary_text_groups_failures_by_severity(mixed):
    lines = summary_text(mixed).splitlines()
    assert lines[0] == "failed: 3 of 5 expectation(s) failed (2 reject, 1 warn)"
    assert lines[1] == "reject (2):"
    assert lines[2] == f"  [2] {mixed.results[2].describe()}"
    assert lines[3] == f"  [3] {mixed.results[3].describe()}"
    assert lines[4] == "warn (1):"
    assert lines[5].startswith(f"  [1] {BETWEEN}(mean radius): 12 row(s), e.g. 71.2")
    assert lines[6] == "not checked (unsupported): expect_column_kl_divergence_to_be_less_than"
    assert len(lines) == 7


def test_summary_text_when_everything_passed(mixed):
    assert summary_text(ValidationResult(results=mixed.results[:1])) == \
        "passed: all 1 expectation(s) passed"
