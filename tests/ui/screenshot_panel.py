"""Screenshot the readiness panel in a real JupyterLab, driven by headless Chromium.

Not part of the test suite (it needs a browser); it makes ``docs/panel.png``.

Set-up, once::

    .venv/bin/pip install -e '.[ui]'                  # jupyterlab and playwright (Python)
    apt-get update && apt-get install -y chromium     # the browser; no `playwright install`

Run::

    .venv/bin/python tests/ui/screenshot_panel.py              # run all, shoot the panel
    .venv/bin/python tests/ui/screenshot_panel.py --build      # also click Build, wait
    .venv/bin/python tests/ui/screenshot_panel.py --out /tmp/panel.png --chromium /path

What it does: copies the flagship notebook into a temporary directory (JupyterLab saves
outputs into the notebooks it opens; the repository's copy stays untouched), starts
JupyterLab there on 127.0.0.1 with a private BentoML home, Jupyter settings and token,
opens the notebook in Chromium (Playwright, ``executable_path``: Playwright's own browser
download is not used), runs all cells (Run > Run All Cells), waits for the panel that
``n2p.save_model`` shows, optionally clicks Build and waits for the serve command, and
screenshots the ``save_model`` cell with its panel. Everything it started is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "notebooks" / "breast_cancer.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# No news or update checks: no network here, and their toast could cover the panel.
SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False}}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(folder: Path, port: int, token: str, log: Path) -> subprocess.Popen:
    """JupyterLab serving ``folder`` on 127.0.0.1, in its own process group."""
    for name, value in SETTINGS.items():
        path = folder / ".lab-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    env = {**os.environ, "BENTOML_HOME": str(folder / ".bentoml"), "BENTOML_DO_NOT_TRACK": "true",
           "JUPYTER_CONFIG_DIR": str(folder / ".jupyter"),
           "JUPYTER_DATA_DIR": str(folder / ".data"),
           "JUPYTER_RUNTIME_DIR": str(folder / ".runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(folder / ".lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(folder / ".workspaces"),
           # the python3 kernelspec runs `python` from PATH: make it this interpreter
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={folder}", *(["--allow-root"] if os.geteuid() == 0 else [])],
            cwd=folder, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(url: str, lab: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Wait for the server's API; fail with its log if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({lab.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer in {timeout}s:\n{log.read_text()[-3000:]}")


def stop(lab: subprocess.Popen) -> None:
    """Stop JupyterLab and its kernels (its process group)."""
    if lab.poll() is None:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()


def shoot(base: str, token: str, out: Path, chromium: str, build: bool) -> None:
    """Open the notebook, run all, wait for the panel (and the build), screenshot it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 2200})
            page.goto(f"{base}/lab/tree/{FLAGSHIP.name}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            # menus clicked before the kernel is up do nothing: wait for "... | Idle"
            page.get_by_text("| Idle").first.wait_for(timeout=120_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            panel = page.locator(".nb2prod-panel").first
            panel.wait_for(timeout=600_000)  # the notebook trains, checks, saves
            if build:
                panel.locator("button", has_text="Build").click()
                panel.get_by_text("serve it with").wait_for(timeout=900_000)
            cell = page.locator(".jp-Cell", has=page.locator(".nb2prod-panel")).first
            cell.scroll_into_view_if_needed()
            page.wait_for_timeout(500)  # let the last widget update paint
            out.parent.mkdir(parents=True, exist_ok=True)
            cell.screenshot(path=str(out))
        finally:
            browser.close()


def main() -> int:
    """Parse the options, run JupyterLab and the browser, write the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "panel.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--build", action="store_true", help="click Build and wait for it")
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        print(f"no Chromium at {args.chromium}: apt-get install -y chromium, or pass "
              "--chromium PATH", file=sys.stderr)
        return 2
    port, token = free_port(), secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="nb2prod-ui-") as tmp:
        folder = Path(tmp)
        shutil.copy(FLAGSHIP, folder / FLAGSHIP.name)
        log = folder / "jupyterlab.log"
        lab = start_lab(folder, port, token, log)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(f"{base}/api/status?token={token}", lab, log)
            shoot(base, token, args.out.resolve(), args.chromium, args.build)
        finally:
            stop(lab)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
