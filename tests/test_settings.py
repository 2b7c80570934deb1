"""The settings: every NB2PROD_* variable typed in one place, the README's table the same."""

import re
from pathlib import Path

import pytest

from nb2prod.core import settings
from nb2prod.core.errors import Nb2prodError

README = Path(__file__).resolve().parent.parent / "README.md"
NB2PROD = Path(settings.__file__).resolve().parents[1]


def test_the_readme_table_lists_every_variable_with_its_kind_and_default():
    rows = re.findall(r"^\| `(NB2PROD_\w+)` \| (\w+) \| (.+?) \| (.+) \|$", README.read_text(),
                      re.MULTILINE)
    documented = [(env, kind, default.strip("`") if default != "—" else "", meaning)
                  for env, kind, default, meaning in rows]
    assert documented == [(v.env, v.kind, v.default, v.meaning) for v in settings.VARIABLES]


def test_no_module_reads_an_nb2prod_variable_by_itself():
    # settings.py is the one reader and names them; others use its constants, in messages
    # or in the environment of a process nb2prod starts
    spelled = {}
    for path in NB2PROD.rglob("*.py"):
        if path.name == "settings.py":
            continue
        text = path.read_text()
        found = re.findall(r"environ(?:\.get)?\(?\[?\s*[\"'](NB2PROD_\w+)", text)
        found += re.findall(r"^\s*\w+ = [\"'](NB2PROD_\w+)[\"']", text, re.MULTILINE)
        if found:
            spelled[str(path.relative_to(NB2PROD))] = found
    assert spelled == {}


def test_defaults_and_types():
    now = settings.Settings.from_env({})
    assert (now.drift, now.drift_window, now.drift_threshold) == (True, 10000, 0.2)
    assert (now.admin_token, now.audit_url, now.audit, now.timeout_s) == (None, None, True, None)
    assert now.max_body_bytes == 10 * 1024 * 1024 and now.audit_sync == "NORMAL"


def test_values_are_parsed_once_typed():
    now = settings.Settings.from_env({"NB2PROD_DRIFT": "off", "NB2PROD_TIMEOUT_S": "none",
                                      "NB2PROD_MIN_CONFIDENCE": "0.7", "NB2PROD_AUDIT_URL": "off",
                                      "NB2PROD_AUDIT_SYNC": "full", "NB2PROD_PANEL": "0"})
    # "none" is no deadline, which must differ from unset (None: the notebook's deadline)
    assert (now.drift, now.timeout_s, now.min_confidence) == (False, 0.0, 0.7)
    assert (now.audit, now.audit_sync, now.panel) == (False, "FULL", False)
    assert settings.Settings.from_env({"NB2PROD_TIMEOUT_S": "2.5"}).timeout_s == 2.5


@pytest.mark.parametrize("env, value", [("NB2PROD_DRIFT_WINDOW", "many"),
                                        ("NB2PROD_TIMEOUT_S", "2s"),
                                        ("NB2PROD_AUDIT_SYNC", "sometimes")])
def test_a_bad_value_names_the_variable_the_value_and_a_valid_one(env, value):
    with pytest.raises(Nb2prodError) as caught:
        settings.Settings.from_env({env: value})
    assert caught.value.where == f"${env}" and repr(value) in caught.value.what
    assert caught.value.fix.startswith("set it to ")


def test_current_rereads_only_when_a_variable_changed(monkeypatch):
    monkeypatch.setenv("NB2PROD_DRIFT_WINDOW", "500")
    first = settings.current()
    assert first.drift_window == 500 and settings.current() is first
    monkeypatch.setenv("NB2PROD_DRIFT_WINDOW", "600")
    assert settings.current().drift_window == 600
