"""What the serving benchmarks share: the flagship build, payloads, servers, figures.

``build`` runs ``nb2prod build`` on notebooks/breast_cancer.ipynb into a temporary
BENTOML_HOME; ``payloads`` makes request bodies from the model's stored examples;
``BARE_SERVICE`` is a hand-written BentoML service answering the same JSON from the same
``model.joblib``; ``Process`` runs any server command like ``nb2prod.serve.Server`` runs
``bentoml serve``; ``answers`` reduces a response to (diagnosis, probability) pairs so
servers of different shapes can be checked against each other before timing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from nb2prod.serve import Server, free_port

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "breast_cancer.ipynb"
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent

BARE_SERVICE = '''\
"""Bare BentoML baseline for the benchmarks: same model, same answers, no nb2prod."""
import uuid

import bentoml
import joblib
import pandas as pd

TAG = {tag!r}


@bentoml.service(traffic={{"timeout": 30}})
class Bare:
    bento_model = bentoml.models.BentoModel(TAG)

    def __init__(self):
        self.model = joblib.load(self.bento_model.path_of("model.joblib"))

    @bentoml.api
    def predict(self, records: list[dict]) -> dict:
        p = self.model.predict_proba(pd.DataFrame(records))[:, 1]
        answers = [{{"prediction": {{"diagnosis": "malignant" if q >= 0.5 else "benign",
                                     "probability_malignant": round(q, 4)}},
                    "source": "model", "reason": None}} for q in p.tolist()]
        return {{"request_id": uuid.uuid4().hex, "model_version": TAG, "predictions": answers}}
'''


def build(home: Path, out: Path, env: dict, source: Path = ROOT) -> dict:
    """Run ``nb2prod build`` on the flagship notebook with the nb2prod in ``source`` (a
    checkout); return its nb2prod.json manifest."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "python"), "-m", "nb2prod.cli", "build",
         str(source / "notebooks" / "breast_cancer.ipynb"), "--out", str(out)],
        cwd=source, env={**env, "PYTHONPATH": str(source)}, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"nb2prod build failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    manifest = json.loads((out / "nb2prod.json").read_text())
    print(f"built {manifest['bento_tag']} (model {manifest['model_tag']}) "
          f"in {time.perf_counter() - t0:.1f}s")
    return manifest


class Flagship:
    """The flagship built into a temporary BENTOML_HOME under ``tmp``, and what the
    benchmarks need from it: the environment, tags, the model file, the contract.

    With ``reuse`` (a directory), the build goes there and is used again by the next
    benchmark, as long as nb2prod's source, the notebook and pyproject.toml are what
    they were when it was made (:func:`source_stamp`); otherwise it is made anew.
    """

    def __init__(self, tmp: Path, reuse: Path | None = None):
        self.tmp = tmp
        base = Path(reuse).resolve() if reuse else tmp
        self.out, stamp_file, stamp = base / "build", base / "source.stamp", source_stamp()
        self.env = {**os.environ, "BENTOML_HOME": str(base / "home"),
                    "BENTOML_DO_NOT_TRACK": "true"}
        if reuse and stamp_file.exists() and stamp_file.read_text() == stamp:
            self.manifest = json.loads((self.out / "nb2prod.json").read_text())
            print(f"reusing the build in {base} ({self.manifest['bento_tag']})")
        else:
            shutil.rmtree(base / "home", ignore_errors=True)
            shutil.rmtree(self.out, ignore_errors=True)
            self.manifest = build(base / "home", self.out, self.env)
            if reuse:
                stamp_file.write_text(stamp)
        self.bento_tag, self.model_tag = self.manifest["bento_tag"], self.manifest["model_tag"]
        name, version = self.model_tag.split(":", 1)
        self.model_dir = base / "home" / "models" / name / version
        self.model_file = self.model_dir / "model.joblib"
        self.contract = json.loads((self.model_dir / "contract.json").read_text())

    def service_class(self) -> str:
        """The BentoML service class name in the build's service.py (for its config)."""
        source = (self.out / "service.py").read_text()
        # generated: `Name = make_service(class_name="Name", ...)`; hand-written: a class
        found = re.search(r'class_name="(\w+)"', source) or re.search(
            r"@bentoml\.service\b[^\n]*\n(?:@[^\n]*\n)*class (\w+)", source)
        if not found:
            sys.exit(f"no service class (make_service or @bentoml.service) in "
                     f"{self.out / 'service.py'}")
        return found.group(1)

    def bare(self) -> Path:
        """A directory holding the bare BentoML service (``service:Bare``)."""
        where = self.tmp / "bare"
        where.mkdir(exist_ok=True)
        (where / "service.py").write_text(BARE_SERVICE.format(tag=self.model_tag))
        return where

    def nb2prod(self, name: str, extra: dict | None = None) -> Server:
        """``bentoml serve`` of the build, defaults on, auditing into its own SQLite file.

        Its own TMPDIR too: the CPUs its workers claim (nb2prod/runtime/affinity.py) are
        claimed as on a machine it has to itself, not taken by another server of the same
        benchmark, which is idle while this one is measured."""
        where = self.tmp / name
        where.mkdir(exist_ok=True)
        env = {**self.env, "NB2PROD_AUDIT_URL": f"sqlite:///{where / 'audit.db'}",
               "TMPDIR": str(where), **(extra or {})}
        return Server(self.bento_tag, cwd=where, env=env, log=self.tmp / f"{name}.log")


def source_stamp() -> str:
    """What a build depends on here: the commit, and any change to nb2prod/, notebooks/
    or pyproject.toml not committed (a hash; different whenever the build could be)."""
    git = ["git", "-C", str(ROOT)]
    paths = ["--", "nb2prod", "notebooks", "pyproject.toml"]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    diff = subprocess.run([*git, "diff", "HEAD", *paths], capture_output=True).stdout
    untracked = subprocess.run([*git, "ls-files", "--others", "--exclude-standard", *paths],
                               capture_output=True).stdout
    for name in untracked.decode().split():
        diff += name.encode() + (ROOT / name).read_bytes()
    return head.strip() + ":" + hashlib.sha256(diff).hexdigest()


def add_reuse_option(ap) -> None:
    """``--reuse-build DIR``: build the flagship there once, for several benchmarks."""
    ap.add_argument("--reuse-build", metavar="DIR", type=Path,
                    help="keep the flagship's build in DIR and use it again while nb2prod's "
                    "source is unchanged (make bench shares one between its benchmarks)")


def records(contract: dict, n: int, seed: int = 20240601) -> list[dict]:
    """``n`` rows: the stored examples, perturbed deterministically, passing the checks."""
    rng, examples, rows = random.Random(seed), contract["examples"], []
    for i in range(n):
        row = {k: round(v * rng.uniform(0.97, 1.03), 6)
               for k, v in examples[i % len(examples)].items()}
        row["worst radius"] = max(row["worst radius"], row["mean radius"])  # the row check
        rows.append(row)
    return rows


def payloads(contract: dict, n: int = 100) -> dict[int, bytes]:
    """1-row and n-row request bodies: the stored examples, perturbed deterministically."""
    return {1: json.dumps({"records": contract["examples"][:1]}).encode(),
            n: json.dumps({"records": records(contract, n)}).encode()}


class Process(Server):
    """Any server command on a free 127.0.0.1 port (``{port}`` in ``argv``), in its own
    process group, ready when GET ``ready`` answers 200; stopped like ``Server``."""

    def __init__(self, argv: list[str], ready: str, cwd: Path, env: dict, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready, self.log = ready, Path(log)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [a.format(port=self.port) for a in argv], cwd=cwd, env=env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 90) -> None:
        """Wait for GET ``ready`` to answer 200; raise with the output if the server exits."""
        wait_for(self, self.ready, timeout)


def wait_for(server: Server, path: str = "/readyz", timeout: float = 90,
             poll: float = 0.3) -> float:
    """Poll ``path`` until it answers 200; return the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited ({server.proc.returncode}):\n{server.output()}")
        try:
            with urllib.request.urlopen(f"{server.url}{path}", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic()
        except OSError:
            time.sleep(poll)
    raise TimeoutError(f"{server.url}{path} not ready after {timeout}s:\n{server.output()[-3000:]}")


def answers(body: bytes) -> list[tuple[str, float]]:
    """(diagnosis, probability) per row of an nb2prod/bare response, or an MLflow one
    (``{"predictions": [{"diagnosis": ..., ...}]}``). nb2prod rows must come from the model."""
    rows = json.loads(body)["predictions"]
    out = []
    for row in rows:
        if "prediction" in row:
            if row.get("source", "model") != "model":
                raise ValueError(f"answered by {row['source']}, not the model: {row}")
            row = row["prediction"]
        out.append((row["diagnosis"], float(row["probability_malignant"])))
    return out


def disagreement(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> list[int]:
    """Rows where two answer lists differ (label, or probability by more than 1e-4)."""
    if len(a) != len(b):
        return list(range(max(len(a), len(b))))
    return [i for i, (x, y) in enumerate(zip(a, b)) if x[0] != y[0] or abs(x[1] - y[1]) > 1e-4]


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list, in milliseconds."""
    s = sorted(values)
    return 1000 * s[min(len(s) - 1, max(0, int(q * len(s) + 0.5) - 1))]


def machine(load: tuple) -> dict:
    """This machine, the versions that matter, and the load average before a run."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor()) \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    import bentoml
    return {"nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "cpu": cpu, "python": platform.python_version(), "platform": platform.platform(),
            "bentoml": bentoml.__version__, "loadavg_at_start": [round(x, 2) for x in load],
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def machine_md(info: dict) -> str:
    """The machine as markdown list items."""
    return (f"- date: {info['date']}\n- nproc: {info['nproc']} ({info['cpu']})\n"
            f"- load average (1/5/15 min) at start: {info['loadavg_at_start']}, "
            f"at end: {info['loadavg_at_end']}\n"
            f"- python: {info['python']}, bentoml {info['bentoml']}, {info['platform']}\n")


def write(name: str, data: dict, markdown: str) -> None:
    """bench/results/NAME.json and NAME.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    print(f"\nwrote {RESULTS / (name + '.json')} and {RESULTS / (name + '.md')}")


def workdir() -> tempfile.TemporaryDirectory:
    """The temporary directory a benchmark builds and serves in."""
    return tempfile.TemporaryDirectory(prefix="nb2prod-bench-")
