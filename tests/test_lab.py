"""JupyterLab in a real browser: start the server on 127.0.0.1 with a token, drive Debian's headless
Chromium with Playwright (never a downloaded browser), open ``00_explore`` and ``01_frequency``, run all
cells from the Run menu, and check the outputs hold images and widgets and no error.

The notebooks run as copies in ``build/lab-*`` (git-ignored; the committed notebooks are never opened),
on a small world and table made there; ``01_frequency`` gets fast parameters injected as papermill
injects them. Screenshots go to ``$CLIPF_ARTIFACTS`` (default ``build/test-artifacts``).

``make test`` skips this test when Chromium or Playwright is missing; ``make test-lab`` sets
``CLIPF_LAB=1``, under which anything missing is a failure.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("CLIPF_LAB", "") not in ("", "0")
CHROMIUM = os.environ.get("CLIPF_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Chromium on a closed machine: no sandbox (root), no GPU, and none of its own network traffic
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("CLIPF_ARTIFACTS") or REPO / "build" / "test-artifacts")
CELL_TIMEOUT_S = int(
    os.environ.get("CLIPF_LAB_TIMEOUT", 240)
)  # one notebook's "Run All Cells", on 2 CPU cores
EXPLORER_CAPTION = "a tiny purple heart beside the old lighthouse at dawn"

pytestmark = pytest.mark.lab


def _missing() -> list[str]:
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(f"Chromium ({CHROMIUM}; Debian: apt-get install chromium)")
    for module in ("playwright", "jupyterlab", "ipywidgets"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"python package {module}")
    return missing


@pytest.fixture(scope="module")
def prerequisites():
    missing = _missing()
    if missing:
        message = "the JupyterLab browser test needs " + ", ".join(missing)
        if REQUIRED:
            pytest.fail(message + " (CLIPF_LAB is set: `make test-lab` must run it)", pytrace=False)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder: Path) -> None:
    """JupyterLab user settings of the test: every cell in the DOM (no windowing), no news / update
    checks (no network)."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for rel, value in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(json.dumps(value))


def _copies(work: Path) -> dict[str, Path]:
    """The two notebooks copied into ``work``, with a small world and table made there."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from clipf import explore

    world = explore.ensure_world(root=work, n_train=256)
    explore.table_for(world).save(work / "freq.json")
    params = {
        "00_explore": {"world": str(world), "table": str(work / "freq.json")},
        "01_frequency": {
            "profile": "smoke",
            "table": str(work / "freq.json"),
            "split": str(world / "train"),
            "n_samples": 60,
            "threshold": 1e-2,
            "text_tokens": [4, 8],
            "out": str(work / "frequency"),
            "figures": str(work / "figures"),
        },
    }
    out = {}
    for name, values in params.items():
        nb = parameterize_notebook(load_notebook_node(str(REPO / "notebooks" / f"{name}.ipynb")), values)
        out[name] = work / f"{name}.ipynb"
        nbformat.write(nb, out[name])
    return out


@pytest.fixture(scope="module")
def lab(prerequisites, tmp_path_factory):
    """A JupyterLab server at the repository root: (base url, token, notebook copies, work folder)."""
    work = Path(REPO / "build" / f"lab-{secrets.token_hex(4)}")
    work.mkdir(parents=True)
    home = tmp_path_factory.mktemp("jupyter")
    _settings(home / "settings")
    notebooks = _copies(work)
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"),  # the project's kernel first
        "IPYTHONDIR": str(home / "ipython"),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    argv = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO}",
        f"--LabApp.user_settings_dir={home / 'settings'}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    if os.geteuid() == 0:  # CI runs as root
        argv.append("--allow-root")
    log = open(work / "server.log", "w")  # noqa: SIM115 (closed at teardown)
    server = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"JupyterLab did not start:\n{(work / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, token, notebooks, work
    finally:
        try:
            req = urllib.request.Request(f"{base}/api/shutdown", method="POST")
            req.add_header("Authorization", f"token {token}")
            urllib.request.urlopen(req, timeout=10).close()
            server.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "server.log", ARTIFACTS / "lab-server.log")
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(lab, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


# JS: the state of the notebook's code cells in the DOM
CELLS_STATE = """() => {
  const prompts = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')];
  const texts = prompts.map(p => p.textContent.trim());
  const status = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
  return {texts, status: status ? status.getAttribute('data-status') : null};
}"""


def _open(page, base: str, token: str, rel: str) -> None:
    """Open a notebook and wait until its kernel is up and idle (a "Select Kernel" dialog, which
    JupyterLab may show for a notebook opened right after the server started, is answered with the
    notebook's own kernel, as a user would)."""
    page.goto(f"{base}/lab/tree/{rel}?token={token}")
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    status = page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle"))
    deadline, calm = time.monotonic() + 90, 0
    while calm < 4:  # two seconds with an idle kernel and no dialog
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{rel}: the kernel did not start (screenshot: {_shoot(page, 'kernel.png')})"
            )
        if dialog.count():
            dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
            calm = 0
        else:
            calm = calm + 1 if status.count() else 0
        page.wait_for_timeout(500)


def _run_all(page) -> float:
    """Run > Run All Cells, then wait until every code cell has an execution count and the kernel is idle."""
    start = time.monotonic()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    deadline = start + CELL_TIMEOUT_S
    while time.monotonic() < deadline:
        state = page.evaluate(CELLS_STATE)
        done = state["texts"] and all(re.fullmatch(r"\[\d+\]:", t) for t in state["texts"])
        if done and state["status"] == "idle":
            return time.monotonic() - start
        page.wait_for_timeout(500)
    shot = _shoot(page, "run-all-timeout.png")
    raise AssertionError(f"Run All Cells did not finish in {CELL_TIMEOUT_S} s: {state} (screenshot: {shot})")


def _errors(page) -> list[str]:
    """Error output and stderr with a traceback in the open notebook; JupyterLab's error dialogs."""
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    texts = panel.locator(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    ).all_inner_texts()
    bad = [t for t in texts if re.search(r"Traceback|^\w*(Error|Exception)\b", t, re.M)]
    bad += page.locator(".jp-Dialog-content").all_inner_texts()
    return bad


def _shoot(target, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    target.screenshot(path=str(path))
    return path


def test_explorer_runs_in_jupyterlab_and_its_widgets_answer(lab, browser):
    base, token, notebooks, work = lab
    page = browser.new_page()
    page.set_viewport_size({"width": 1400, "height": 2400})  # the whole explorer on one screenshot
    _open(page, base, token, notebooks["00_explore"].relative_to(REPO).as_posix())
    seconds = _run_all(page)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    assert not _errors(page), _errors(page)
    assert panel.locator(".jp-OutputArea-output img").count() >= 2  # survival figure, world images
    ui = panel.locator(".jp-OutputArea-output .widget-vbox").first
    ui.wait_for(timeout=30_000)
    assert "Error displaying widget" not in panel.inner_text()
    view = ui.locator(".clipf-x")
    for name in ("truncate", "block", "random", "shuffle", "syntax", "frequency"):
        assert view.locator("h4", has_text=re.compile(f"^{name}$")).count() == 1
    # the widgets call back into the kernel: a new caption is masked and shown
    ui.locator(".widget-textarea textarea").fill(EXPLORER_CAPTION)
    view.locator(".w", has_text="lighthouse").first.wait_for(timeout=30_000)
    ui.scroll_into_view_if_needed()
    _shoot(ui, "explorer.png")
    _shoot(page, "00_explore.png")
    print(f"00_explore: Run All Cells in {seconds:.1f} s")
    page.close()


def test_study_notebook_runs_in_jupyterlab(lab, browser):
    base, token, notebooks, work = lab
    page = browser.new_page()
    _open(page, base, token, notebooks["01_frequency"].relative_to(REPO).as_posix())
    seconds = _run_all(page)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    _shoot(page, "01_frequency.png")
    assert not _errors(page), _errors(page)
    kinds = panel.locator(".jp-OutputArea-output").evaluate_all("els => els.map(e => e.dataset.mimeType)")
    as_text = panel.locator(".jp-OutputArea-output", has_text=re.compile(r"^<Figure size")).count()
    assert not as_text, (
        f"{as_text} figure(s) shown as text ('<Figure size ...>'), not drawn: the matplotlib backend in the "
        "kernel is not the inline one (a module calling matplotlib.use('Agg') inside Jupyter?)"
    )
    assert kinds.count("image/png") >= 4, kinds  # Zipf, P_mask, keep rates, kept frequencies
    assert (work / "frequency" / "keep_rates.csv").exists()  # it wrote where it was told, not into the repo
    print(f"01_frequency: Run All Cells in {seconds:.1f} s")
    page.close()
