"""A real browser in JupyterLab (issue #15): open 04_heatmap_distributions, Run All, move the sigma
slider, and check that the one figure redraws in place, that no error appears, and that exploring
left the study alone (the tracked notebook, results/, git status).

Headless Debian chromium driven by selenium through chromium-driver; JupyterLab is started the way
``make lab`` starts it (repository root, spanlib.study.lab's pre-save hook), on 127.0.0.1 with a token.
Skips with the reason when chromium, chromedriver or selenium is missing (`.ci/run` installs them).
``SPANLIB_SCREENSHOT=path.png`` also saves a screenshot of the live widget (docs/images/), and
``SPANLIB_SCREENSHOT_MODEL=path.png`` one of section 3 when a model is there;
``SPANLIB_BROWSER_NOTEBOOK=path`` opens another copy of the notebook (e.g. one with ``checkpoint``
set, under outputs/interactive/): how the README's screenshots were taken.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = os.environ.get("SPANLIB_BROWSER_NOTEBOOK", "notebooks/04_heatmap_distributions.ipynb")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1600,1200"]
# what a run of notebook 04 could touch in the study (others may edit the rest of a shared checkout)
WATCHED = ("notebooks", "results", "dvc.lock")


def _browser() -> tuple[str, str]:
    chrome = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver") or next((p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
                                                   if Path(p).is_file()), None)
    if chrome is None or driver is None:
        pytest.skip("browser test needs chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    return chrome, driver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _git_status() -> list[str]:
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", *WATCHED], cwd=REPO, capture_output=True,
                             text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(out.splitlines())


def _digest(paths) -> dict[str, str]:
    files = []
    for name in paths:
        p = REPO / name
        files += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else ([p] if p.is_file() else [])
    return {f.relative_to(REPO).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in files
            if ".ipynb_checkpoints" not in f.parts}


def _wait(predicate, timeout: float, what: str, poll: float = 0.5):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = predicate()
            if last:
                return last
        except AssertionError:
            raise
        except Exception as exc:  # the page is still loading
            last = exc
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@contextlib.contextmanager
def _jupyterlab(root: Path, home: Path):
    """JupyterLab as `make lab` starts it (the pre-save hook, the news pop-up off), at ``root``,
    with its state (settings, workspaces, runtime) under ``home``; yields (url, token); the server
    and its kernels are stopped afterwards."""
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "JUPYTER_CONFIG_DIR": str(home / "config")}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--ServerApp.default_url=/lab/tree/notebooks",
           "--ContentsManager.pre_save_hook=spanlib.study.lab.pre_save_hook",  # as in the Makefile's `lab`
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
           "jupyterlab.NeverCheckForUpdate"] + (["--allow-root"] if os.geteuid() == 0 else [])
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')  # no "get notified?" toast
    log = open(home / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        def up():
            if proc.poll() is not None:
                raise AssertionError(f"JupyterLab exited ({proc.returncode}):\n{(home / 'lab.log').read_text()[-3000:]}")
            return urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5).status == 200

        try:
            up_now = up()
        except AssertionError:
            raise
        except Exception:
            up_now = False
        if not up_now:
            _wait(up, 120, "JupyterLab to start")
        yield url, token
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server, then the kernels it started
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab at the repository root, as `make lab` starts it; yields (url, token)."""
    _browser()
    pytest.importorskip("selenium", reason="browser test needs selenium (pip install -e '.[dev]')")
    with _jupyterlab(REPO, tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(scope="module")
def browser(lab, tmp_path_factory):
    chrome, driver_path = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager go online
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in CHROME_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


JS_PANEL = f"""const p = Array.from(window.jupyterapp.shell.widgets('main'))
  .find(w => w.context && w.context.path === '{NOTEBOOK}');
"""
JS_RUNNING = """return Array.from(document.querySelectorAll('.jp-Notebook .jp-InputArea-prompt'))
                  .some(p => p.textContent.includes('*'));"""
JS_ERRORS = """return Array.from(document.querySelectorAll('.jp-Notebook .jp-OutputArea-output'))
  .map(e => e.textContent)
  .filter(t => /Traceback \\(most recent call last\\)|Error displaying widget/.test(t))
  .map(t => t.slice(0, 400));"""
JS_CELL_WITH_LABEL = """const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell'));
return cells.find(c => Array.from(c.querySelectorAll('.widget-label'))
                       .some(l => l.textContent.trim() === arguments[0])) || null;"""
JS_LIVE_CELL = JS_CELL_WITH_LABEL.replace("arguments[0]", "'sigma'")


@pytest.mark.slow
def test_run_all_then_the_sigma_slider_redraws_one_figure_and_the_study_stays_clean(lab, browser):
    from selenium.common.exceptions import ElementClickInterceptedException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    start = time.monotonic()
    url, token = lab
    git_before, files_before = _git_status(), _digest(WATCHED)
    browser.get(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
    _wait(lambda: browser.execute_script(JS_PANEL + "return !!(p && p.content.widgets.length > 5"
                                         " && p.sessionContext.session && p.sessionContext.session.kernel"
                                         " && p.sessionContext.session.kernel.connectionStatus === 'connected');"),
          120, "the notebook and its kernel")
    # headless, nothing has the focus yet: click into the notebook (as a user would), then Run All
    browser.execute_script(JS_PANEL + "window.jupyterapp.shell.activateById(p.id);")
    browser.find_element(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell").click()
    _wait(lambda: browser.execute_script("return window.jupyterapp.commands.isEnabled('notebook:run-all-cells');"),
          30, "the notebook to be current")
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    _wait(lambda: browser.execute_script(JS_LIVE_CELL), 180, "the sigma slider")
    _wait(lambda: not browser.execute_script(JS_RUNNING), 300, "Run All to finish", poll=1.0)

    cell = browser.execute_script(JS_LIVE_CELL)
    images = cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")
    assert len(images) == 1, f"section 1 should show exactly one figure, got {len(images)}"
    before = images[0].get_attribute("src")
    assert before.startswith("data:image/png")

    # move sigma: the slider's handle takes the arrow keys (one step of 0.25 each)
    sigma = next(s for s in cell.find_elements(By.CSS_SELECTOR, ".widget-slider")
                 if s.find_element(By.CSS_SELECTOR, ".widget-label").text.strip() == "sigma")
    handle = sigma.find_element(By.CSS_SELECTOR, ".noUi-handle")
    # bring it to the middle of the window first: JupyterLab scrolls the notebook while outputs
    # render, and a click at the handle's old position can land on a code line above it
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
    time.sleep(0.5)
    try:
        handle.click()
    except ElementClickInterceptedException:  # still covered: give it the focus as a click would
        browser.execute_script("arguments[0].focus();", handle)
    for _ in range(4):
        handle.send_keys(Keys.ARROW_RIGHT)
    readout = sigma.find_element(By.CSS_SELECTOR, ".widget-readout").text
    _wait(lambda: (imgs := cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img"))
          and imgs[0].get_attribute("src") != before, 60, f"the figure to redraw (sigma {readout})")
    time.sleep(1.0)
    after = cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")
    assert len(after) == 1, f"one figure after moving the slider, got {len(after)}"
    assert readout != "1.00", f"the slider did not move (readout {readout})"
    if os.environ.get("SPANLIB_SCREENSHOT"):
        output = cell.find_element(By.CSS_SELECTOR, ".jp-Cell-outputWrapper")
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", output)
        time.sleep(0.5)
        output.screenshot(os.environ["SPANLIB_SCREENSHOT"])
    # section 3 (a model on a face), when this copy of spanlib has a bundled model: the landmark slider
    model_cell = browser.execute_script(JS_CELL_WITH_LABEL, "landmark")
    if model_cell is not None:
        shown = model_cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")
        assert len(shown) == 1, f"section 3 should show exactly one figure, got {len(shown)}"
        first = shown[0].get_attribute("src")
        slider = next(s for s in model_cell.find_elements(By.CSS_SELECTOR, ".widget-slider")
                      if s.find_element(By.CSS_SELECTOR, ".widget-label").text.strip() == "landmark")
        knob = slider.find_element(By.CSS_SELECTOR, ".noUi-handle")
        knob.click()
        knob.send_keys(Keys.ARROW_RIGHT)
        _wait(lambda: (imgs := model_cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img"))
              and imgs[0].get_attribute("src") != first, 60, "the model view to redraw")
        if os.environ.get("SPANLIB_SCREENSHOT_MODEL"):
            output = model_cell.find_element(By.CSS_SELECTOR, ".jp-Cell-outputWrapper")
            browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", output)
            time.sleep(0.5)
            output.screenshot(os.environ["SPANLIB_SCREENSHOT_MODEL"])
    errors = browser.execute_script(JS_ERRORS)
    assert not errors, f"error output in the notebook: {errors[:3]}"

    # save (as autosave would): the tracked notebook keeps code only, the full copy goes to scratch
    browser.execute_script(JS_PANEL + "p.context.save();")
    sidecar = REPO / "outputs" / "interactive" / "notebooks" / Path(NOTEBOOK).name
    if NOTEBOOK.startswith("notebooks/"):
        _wait(lambda: sidecar.is_file() and sidecar.stat().st_mtime > time.time() - 120, 60, "the save")
        # the saved copy reopens with static figures and the hint, not "model not found"
        browser.get(f"{url}/lab/tree/{sidecar.relative_to(REPO).as_posix()}?token={token}")
        copy_path = sidecar.relative_to(REPO).as_posix()
        reopened = _wait(lambda: browser.execute_script(
            "const p = Array.from(window.jupyterapp.shell.widgets('main'))"
            f"  .find(w => w.context && w.context.path === '{copy_path}');"
            "return p ? (Array.from(p.node.querySelectorAll('.jp-CodeCell'))"
            "  .find(c => c.textContent.includes('show_live_or_static(plot_distributions')) || null) : null;"), 60,
            "the saved copy to open")
        _wait(lambda: reopened.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img"), 30, "its static figure")
        assert "outputs/interactive/notebooks/" in reopened.text  # the hint: where the full copy is
        assert "Error displaying widget" not in reopened.text, "the saved copy shows a dead widget"
    time.sleep(1.0)
    assert _digest(WATCHED) == files_before, "exploring changed files of the study"
    assert _git_status() == git_before, "exploring changed git status"
    print(f"browser test: {time.monotonic() - start:.0f} s from opening the notebook to the checks")


# ---- Run All on every notebook, in a scratch copy of the project ----------------------------------

# Parameters each notebook gets in the copy (a cell after its parameters cell, as papermill injects):
# the copy's tiny params.yaml is read by all; 03 evaluates what 02 trained there by hand; 06 takes
# its short setting (quick), as a user trying it would. 04's section 4 stays off (train_runs False,
# as opened), and 05 loads the saved benchmarks (kernel_profiling.run "never" in the tiny params).
RUN_ALL = [
    ("01_prepare_data", {}),
    ("02_train", {}),
    ("03_evaluate", {"models_dir": "outputs/interactive/models"}),
    ("04_heatmap_distributions", {}),
    ("05_kernel_profiling", {}),
    ("06_loss_sensitivity", {"quick": True}),
    ("07_report", {}),
]
JS_NB = """const p = Array.from(window.jupyterapp.shell.widgets('main'))
  .find(w => w.context && w.context.path === arguments[0]);
"""
# done: the kernel idle, no cell queued or running, and some cell ran (or failed)
JS_UNRUN = JS_NB + """return Array.from(p.node.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'))
  .filter(e => !/\\d/.test(e.textContent)).length;"""
JS_DONE = JS_NB + """if (!p || !p.sessionContext.session || !p.sessionContext.session.kernel) return false;
const prompts = Array.from(p.node.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')).map(e => e.textContent);
return p.sessionContext.session.kernel.status === 'idle' && !prompts.some(t => t.includes('*'))
  && prompts.some(t => /\\d/.test(t));"""
# a traceback or any stderr block (warnings, text progress bars, errors) in the rendered output
JS_STDERR = JS_NB + """return Array.from(p.node.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-OutputArea-output'))
  .filter(e => e.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr'
               || /Traceback \\(most recent call last\\)|Error displaying widget/.test(e.textContent))
  .map(e => e.textContent.slice(0, 600));"""


def _scratch_project(work: Path) -> Path:
    """notebooks, committed results and saved kernel benchmarks, dvc.yaml and tiny params (as
    tests/test_notebooks.py's executed check); each notebook with its RUN_ALL parameters injected."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_notebooks import _project_copy

    _project_copy(work)
    for name, parameters in RUN_ALL:
        path = work / "notebooks" / f"{name}.ipynb"
        nb = json.loads(path.read_text())
        index = next(i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", []))
        lines = ["# injected by tests/test_browser.py"] + [f"{k} = {v!r}" for k, v in parameters.items()]
        nb["cells"].insert(index + 1, {"cell_type": "code", "id": f"injected-{index}", "metadata": {},
                                       "execution_count": None, "outputs": [], "source": "\n".join(lines)})
        path.write_text(json.dumps(nb, indent=1))
    # a probe that must be caught, so that a pass is not a detector that sees nothing
    probe = {"cells": [{"cell_type": "code", "id": "probe-0", "metadata": {}, "execution_count": None, "outputs": [],
                        "source": "import sys\nprint('probe on stderr', file=sys.stderr)"},
                       {"cell_type": "code", "id": "probe-1", "metadata": {}, "execution_count": None, "outputs": [],
                        "source": "1 / 0"}],
             "metadata": json.loads((work / "notebooks" / "01_prepare_data.ipynb").read_text())["metadata"],
             "nbformat": 4, "nbformat_minor": 5}
    (work / "probe.ipynb").write_text(json.dumps(probe, indent=1))
    return work


@pytest.fixture(scope="module")
def project_lab(tmp_path_factory):
    """JupyterLab at a scratch copy of the project (tiny params): the notebooks that prepare data,
    train and evaluate may run there without touching the study; yields (url, token, root)."""
    _browser()
    pytest.importorskip("selenium", reason="browser test needs selenium (pip install -e '.[dev]')")
    root = _scratch_project(tmp_path_factory.mktemp("project"))
    with _jupyterlab(root, tmp_path_factory.mktemp("lab")) as (url, token):
        yield url, token, root


@pytest.mark.slow
def test_run_all_on_every_notebook_shows_no_traceback_and_no_stderr(project_lab, browser):
    """Run All in JupyterLab on each notebook in turn (01 to 07, in order: 03 evaluates what 02
    trained), on tiny params in a scratch copy; no notebook may show a traceback or a stderr block."""
    from selenium.webdriver.common.by import By

    url, token, root = project_lab

    def run_all(path: str) -> tuple[list[str], int]:
        """Run All on ``path``: (its stderr blocks and tracebacks, code cells left unrun)."""
        browser.get(f"{url}/lab/tree/{path}?token={token}")
        _wait(lambda: browser.execute_script(JS_NB + "return !!(p && p.content.widgets.length > 1"
                                             " && p.sessionContext.session && p.sessionContext.session.kernel"
                                             " && p.sessionContext.session.kernel.connectionStatus === 'connected');",
                                             path), 120, f"{path} and its kernel")
        browser.execute_script(JS_NB + "window.jupyterapp.shell.activateById(p.id);", path)
        browser.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").click()
        _wait(lambda: browser.execute_script("return window.jupyterapp.commands.isEnabled('notebook:run-all-cells');"),
              30, f"{path} to be current")
        browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        time.sleep(2.0)
        _wait(lambda: browser.execute_script(JS_DONE, path), 600, f"Run All of {path}", poll=1.0)
        time.sleep(1.0)  # last outputs render
        found, unrun = browser.execute_script(JS_STDERR, path), browser.execute_script(JS_UNRUN, path)
        # shut its kernel down and close it: the next notebook starts clean
        browser.execute_script(JS_NB + "p.sessionContext.shutdown().then(() => p.dispose());", path)
        time.sleep(1.0)
        return found, unrun

    found, unrun = run_all("probe.ipynb")  # the detector sees a stderr line and a traceback
    assert len(found) == 2 and "probe on stderr" in found[0] and "ZeroDivisionError" in found[1], found
    problems, took = {}, {}
    for name, _ in RUN_ALL:
        start = time.monotonic()
        found, unrun = run_all(f"notebooks/{name}.ipynb")
        if found or unrun:
            problems[name] = {"stderr or traceback": found[:3], "cells not run": unrun}
        took[name] = round(time.monotonic() - start)
    print(f"Run All per notebook (s): {took}")
    assert not problems, f"tracebacks or stderr in the rendered output: {problems}"
    assert (root / "outputs" / "interactive" / "07_report" / "report.md").is_file()
    assert (root / "outputs" / "interactive" / "06_loss_sensitivity" / "quick" / "table8_loss_weights.md").is_file()
