"""A kernel that dies as it starts (a port taken between jupyter_client choosing it and
the kernel binding it) is started again, since no cell ran; one that keeps dying is a
located error, not an internal one."""

import socket

import nbformat
import pytest

from nb2prod.build import execute
from nb2prod.core.errors import ExecutionError


def _notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("answer = 6 * 7\nprint(answer)")]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_a_kernel_whose_port_was_taken_is_started_again(tmp_path, capfd):
    import papermill

    source, output = _notebook(tmp_path / "n.ipynb"), tmp_path / "out.ipynb"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    calls = []

    def run():
        # the first kernel is told to bind the port another process holds, as in the race
        port = [f"--IPKernelApp.control_port={taken.getsockname()[1]}"] if not calls else []
        calls.append(port)
        papermill.execute_notebook(
            str(source),
            str(output),
            kernel_name="python3",
            progress_bar=False,
            extra_arguments=["--IPKernelApp.log_level=ERROR", *port],
        )

    try:
        execute._starting_kernels(run)
    finally:
        taken.close()
    assert len(calls) == 2
    assert "the kernel died as it started" in capfd.readouterr().err
    assert nbformat.read(output, as_version=4).cells[0].outputs[0]["text"] == "42\n"


def test_a_kernel_that_keeps_dying_is_a_located_error_after_a_few_tries(capfd):
    calls = []

    def run():
        calls.append(1)
        raise RuntimeError("Kernel died before replying to kernel_info")

    with pytest.raises(ExecutionError, match="died as it started, 3 times") as caught:
        execute._starting_kernels(run)
    assert len(calls) == execute.KERNEL_START_TRIES == 3
    assert "ipykernel_launcher" in str(caught.value)
    assert capfd.readouterr().err.count("starting another") == 2


def test_other_runtime_errors_are_not_retried():
    calls = []

    def run():
        calls.append(1)
        raise RuntimeError("something else")

    with pytest.raises(RuntimeError, match="something else"):
        execute._starting_kernels(run)
    assert calls == [1]
