"""runtime/loading.py: a version's code, captured values and model, loaded together."""

import pickle
import subprocess
import sys
from dataclasses import dataclass

import joblib
import pytest

from nb2prod.core.errors import ModelStoreError
from nb2prod.runtime.loading import (
    ARTIFACT,
    CAPTURED,
    CODE,
    code_module,
    load_artifact,
    load_version_parts,
    pack,
    sha256_of,
)

CODE_SOURCE = '''
class Scale:
    def __init__(self, k):
        self.k = k

    def apply(self, v):
        return v * self.k + OFFSET


def with_default(v, table=TABLE):  # a default argument that uses a captured value
    return table[v]
'''


@dataclass
class Contract:
    artifact_sha256: str
    code_sha256: str | None = None
    captured_sha256: str | None = None
    modules: dict | None = None


class Scale:  # pickled as the kernel does: a class of __main__
    def __init__(self, k):
        self.k = k


Scale.__module__ = "__main__"
Scale.__qualname__ = "Scale"


def version(tmp_path, offset, *, k=2):
    """A model version in ``tmp_path``: code.py, captured.pkl and a model of ``__main__``'s class."""
    sys.modules["__main__"].Scale = Scale  # so pickle finds __main__.Scale, as in a kernel
    try:
        joblib.dump(Scale(k), tmp_path / ARTIFACT)
    finally:
        del sys.modules["__main__"].Scale
    (tmp_path / CODE).write_text(CODE_SOURCE)
    (tmp_path / CAPTURED).write_bytes(pack({"OFFSET": pickle.dumps(offset),
                                            "TABLE": pickle.dumps({"a": 1})}, set()))
    return Contract(*(sha256_of(tmp_path / f) for f in (ARTIFACT, CODE, CAPTURED)))


def test_the_model_is_an_instance_of_the_versions_own_code_with_its_own_values(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    code_one, model_one = load_version_parts(one, version(one, offset=10))
    code_two, model_two = load_version_parts(two, version(two, offset=20))
    assert type(model_one) is code_one.Scale and type(model_two) is code_two.Scale
    assert model_one.apply(1) == 12 and model_two.apply(1) == 22  # each with its values
    assert code_one.with_default("a") == 1  # bound before the code ran


def test_a_changed_file_is_refused(tmp_path):
    contract = version(tmp_path, offset=1)
    (tmp_path / CAPTURED).write_bytes(pack({"OFFSET": pickle.dumps(666)}, set()))
    with pytest.raises(ModelStoreError, match="captured.pkl is missing or was changed"):
        load_version_parts(tmp_path, contract)


def test_other_code_than_the_versions_is_refused(tmp_path):
    contract = version(tmp_path, offset=1)
    with pytest.raises(ModelStoreError, match="saved with other notebook code"):
        load_version_parts(tmp_path, contract, source=CODE_SOURCE + "\n# edited\n")


def test_a_name_the_code_lacks_is_a_located_error(tmp_path):
    version(tmp_path, offset=1)
    empty = code_module("X = 1", "empty_code", "empty_code.py", None)
    with pytest.raises(ModelStoreError, match="needs Scale from the notebook, but the exported "
                                              "code .*empty_code.py. has no Scale"):
        load_artifact(tmp_path / ARTIFACT, empty)


def test_a_served_process_imports_no_build_machinery():
    script = ("import sys, nb2prod.runtime.service; print(sorted(m for m in ('nbformat', "
              "'papermill', 'nbclient', 'ipywidgets', 'great_expectations', 'IPython') "
              "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_version_with_another_copy_of_a_module_already_imported_is_refused(tmp_path):
    def with_helper(folder, text):
        folder.mkdir()
        contract = version(folder, offset=1)
        (folder / "modules").mkdir()
        (folder / "modules" / "beside_helper.py").write_text(text)
        contract.modules = {"beside_helper.py": sha256_of(folder / "modules" / "beside_helper.py")}
        return contract

    one = with_helper(tmp_path / "one", "K = 1\n")
    same = with_helper(tmp_path / "same", "K = 1\n")
    other = with_helper(tmp_path / "other", "K = 2\n")
    try:
        load_version_parts(tmp_path / "one", one)
        import beside_helper  # noqa: F401 - imported from version one's modules/
        load_version_parts(tmp_path / "same", same)  # the same file: fine
        with pytest.raises(ModelStoreError, match="imported another beside_helper.py"):
            load_version_parts(tmp_path / "other", other)
    finally:
        sys.modules.pop("beside_helper", None)
        sys.path[:] = [p for p in sys.path if not p.startswith(str(tmp_path))]
