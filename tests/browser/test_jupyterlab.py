"""What a person sees in JupyterLab: notebooks 03, 05 and 08 run in a real browser and their widgets respond.

Debian's chromium driven by Playwright (``executable_path``; Playwright's own browser download is not reachable),
JupyterLab on 127.0.0.1 with a token, the smoke preset. Every widget is driven the way a person would (arrow keys on
a slider, a choice in a dropdown) and after each input its picture must be drawn (opaque pixels) and different. The
lab may make no request outside 127.0.0.1. 08's widget cell is re-run :data:`REPEATS` times so that a blank first
render (the race of JupyterLab's comm subshell thread with the cell's own drawing) would be caught if it returned.
Screenshots of each widget state go to ``runs/smoke/browser/screens/`` (not committed).

Run with ``make test`` (after the unit tests and nbval) or ``python -m pytest tests/browser``.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from overthink_lib.config import ROOT

CHROMIUM = "/usr/bin/chromium"
WORK = ROOT / "runs" / "smoke" / "browser"
SCREENS = WORK / "screens"
NOTEBOOKS = ("03_anytime_and_budgeted.ipynb", "05_gradcam.ipynb", "08_policy_network.ipynb")
REPEATS = 10  # 08's widget cell re-run: its first render must be drawn every time
RUN_ALL_TIMEOUT_MS = int(os.environ.get("BROWSER_RUN_ALL_TIMEOUT_MS", 240_000))
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _opaque_share(png: bytes) -> float:
    """Share of pixels that are neither transparent nor (near) white: 0 for a blank or transparent image."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"), dtype=np.float32) / 255
    return float(((img[..., 3] > 0.5) & (img[..., :3].min(-1) < 0.95)).mean())


@pytest.fixture(scope="module")
def lab():
    """JupyterLab on 127.0.0.1 with a token, on copies of the notebooks parameterised for the smoke preset."""
    import papermill

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (make browser-deps, or apt-get install chromium)"
        )
    if WORK.exists():
        shutil.rmtree(WORK)
    SCREENS.mkdir(parents=True)
    for name in NOTEBOOKS:  # parameters injected, nothing executed: the browser runs them
        papermill.execute_notebook(
            str(ROOT / "notebooks" / name),
            str(WORK / name),
            parameters={"preset": "smoke"},
            prepare_only=True,
            cwd=str(ROOT / "notebooks"),
        )
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(WORK / "lab-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(WORK / "lab-workspaces"),
        "JUPYTER_RUNTIME_DIR": str(WORK / "runtime"),
    }
    news = WORK / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "would you like news?" toast over the widgets
    log = open(WORK / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={ROOT}",
            "--LabApp.news_url=",
            "--ServerApp.port_retries=0",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
        + (["--allow-root"] if os.getuid() == 0 else []),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"JupyterLab did not start: see {WORK / 'jupyterlab.log'}")
                time.sleep(0.5)
        yield base, token
    finally:
        proc.terminate()  # by its PID, not by name
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


class Session:
    """One page on one notebook, with every console error and every request outside 127.0.0.1 recorded."""

    def __init__(self, browser, base: str, token: str, notebook: str):
        self.context = browser.new_context(viewport={"width": 1500, "height": 1000})
        self.page = self.context.new_page()
        self.console_errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.page.on("pageerror", lambda e: self.console_errors.append(f"page error: {e}"))

        def route(r):
            host = urlparse(r.request.url).hostname
            if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                return r.continue_()
            self.outside.append(r.request.url)
            return r.abort()

        self.context.route("**/*", route)
        rel = (WORK / notebook).relative_to(ROOT).as_posix()
        self.page.goto(f"{base}/lab/tree/{rel}?token={token}&reset", wait_until="domcontentloaded")
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=90_000)
        try:  # a fresh lab may ask which kernel to start: the notebook's own (Python 3), as a person would pick
            self.page.wait_for_selector(".jp-Dialog .jp-mod-accept", timeout=8_000)
            self.page.click(".jp-Dialog .jp-mod-accept")
        except Exception:
            pass
        self.page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget; return w && "
            "w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel "
            "&& w.sessionContext.session.kernel.status === 'idle'; }",
            timeout=90_000,
        )

    def command(self, command_id: str):
        """A JupyterLab command by id, through the lab's own command registry (as the menu would)."""
        # not awaited in the page: run-all's promise can outlive the run, and page.evaluate has no timeout
        self.page.evaluate("id => { window.jupyterapp.commands.execute(id); }", command_id)

    def run_all(self):
        self.page.evaluate(
            "() => { window.jupyterapp.shell.currentWidget.content.widgets.forEach("
            "c => c.model.type === 'code' && (c.model.executionCount = null)); }"
        )
        self.command("notebook:run-all-cells")
        self.wait_idle()

    def wait_idle(self, timeout_ms: int = RUN_ALL_TIMEOUT_MS):
        # the notebook's model, not the DOM (JupyterLab may not render cells scrolled out of view)
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self._wait_executed(timeout_ms)
        except PlaywrightTimeout:
            self.page.screenshot(path=str(SCREENS / "timeout.png"), full_page=True)
            state = self.page.evaluate(
                "() => window.jupyterapp.shell.currentWidget.content.widgets.map("
                "c => [c.model.type, c.model.executionCount, c.model.executionState])"
            )
            raise AssertionError(
                f"the notebook did not finish in {timeout_ms / 1000:.0f} s; cells (type, count, "
                f"state): {state}; screenshot {SCREENS / 'timeout.png'}; text:\n"
                f"{self.notebook_text()[-3000:]}"
            ) from None

    def _wait_executed(self, timeout_ms: int):
        self.page.wait_for_function(
            """() => {
                const nb = window.jupyterapp.shell.currentWidget.content;
                const code = nb.widgets.filter(c => c.model.type === 'code' && c.model.sharedModel.getSource().trim());
                return code.length > 0 && code.every(c => c.model.executionCount !== null
                                                          && c.model.executionState !== 'running');
            }""",
            timeout=timeout_ms,
        )

    def notebook_text(self) -> str:
        return self.page.inner_text(".jp-Notebook")

    def assert_clean(self):
        text = self.notebook_text()
        for bad in ("Traceback", "Error displaying widget", "Loading widget", "Loading widgets"):
            assert bad not in text, f"the notebook shows {bad!r}:\n{_around(text, bad)}"
        assert not self.outside, f"requests outside 127.0.0.1: {self.outside}"
        assert not self.console_errors, f"console errors: {self.console_errors}"

    def images(self):
        return self.page.locator(".jp-Notebook img.widget-image")

    def image_state(self, k: int = 0) -> tuple[str, float]:
        """(the widget image's src, its share of drawn pixels), waiting until it has a picture."""
        img = self.images().nth(k)
        img.scroll_into_view_if_needed()
        self.page.wait_for_function(
            "el => el.complete && el.naturalWidth > 0", arg=img.element_handle(), timeout=60_000
        )
        return img.get_attribute("src"), _opaque_share(img.screenshot())

    def wait_changed(self, k: int, before: str):
        self.page.wait_for_function(
            "([el, before]) => el.getAttribute('src') !== before && el.complete",
            arg=[self.images().nth(k).element_handle(), before],
            timeout=60_000,
        )

    def shot(self, name: str, k: int = 0):
        box = self.images().nth(k).locator("xpath=ancestor::div[contains(@class,'jp-OutputArea-output')][1]")
        box.screenshot(path=str(SCREENS / f"{name}.png"))

    def box(self):
        """The explorer's whole widget (controls and image)."""
        return self.images().nth(0).locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]")

    def first_render(self, shot: str, what: str) -> str:
        """Run All, then the one explorer's first picture must be drawn; returns its src."""
        self.run_all()
        self.assert_clean()
        assert self.images().count() == 1, f"the {what} did not render one image"
        src, drawn = self.image_state()
        assert drawn > 0.02, f"the {what}'s first picture is blank ({drawn:.3f} of pixels drawn)"
        self.shot(shot)
        return src

    def after_input(self, before: str, shot: str) -> str:
        """After an input the picture must change and be drawn; returns the new src."""
        self.wait_changed(0, before)
        src, drawn = self.image_state()
        assert drawn > 0.02, f"blank picture after an input ({shot})"
        self.shot(shot)
        return src

    def close(self):
        self.context.close()


def _around(text: str, needle: str, width: int = 400) -> str:
    i = text.find(needle)
    return text[max(0, i - width) : i + width]


def _drag_slider(s: Session, slider, presses: int = 3, key: str = "ArrowRight"):
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    for _ in range(presses):
        handle.press(key)
    handle.dispatch_event("keyup")


@pytest.fixture
def session(lab, browser, request):
    s = Session(browser, *lab, request.param)
    yield s
    s.close()


@pytest.mark.parametrize("session", ["03_anytime_and_budgeted.ipynb"], indirect=True)
def test_03_threshold_explorer_responds(session):
    s = session
    src = s.first_render("03-first", "threshold explorer")
    sliders = s.box().locator(".widget-slider")
    assert sliders.count() >= 2
    for k in range(sliders.count()):  # every threshold slider, by keyboard
        _drag_slider(s, sliders.nth(k), key="ArrowLeft", presses=15)
        src = s.after_input(src, f"03-slider-T{k + 1}")
    s.box().locator("select").first.select_option("entropy")  # the criterion dropdown
    s.after_input(src, "03-criterion-entropy")
    s.assert_clean()


@pytest.mark.parametrize("session", ["05_gradcam.ipynb"], indirect=True)
def test_05_sample_browser_responds(session):
    s = session
    src = s.first_render("05-first", "overthought-sample browser")
    slider = s.box().locator(".widget-slider").first
    for step in range(2):
        _drag_slider(s, slider, presses=1)
        src = s.after_input(src, f"05-sample-{step + 1}")
    assert "(<Figure" not in s.notebook_text(), "a redraw printed a tuple"
    s.assert_clean()


@pytest.mark.parametrize("session", ["08_policy_network.ipynb"], indirect=True)
def test_08_lambda_slider_first_render_every_time(session):
    s = session
    s.run_all()
    s.assert_clean()
    assert s.images().count() == 1, "the λ explorer did not render one image"
    text = s.notebook_text()
    assert "(<Figure" not in text, "a redraw printed a tuple"
    box = s.box()
    assert box.locator(".widget-label").first.inner_text().strip() == "λ"
    assert float(box.locator(".widget-readout").first.inner_text()) == pytest.approx(5.0)
    drawn_first = []
    cell = s.images().nth(0).locator("xpath=ancestor::div[contains(@class,'jp-CodeCell')][1]")
    for k in range(REPEATS):  # a fresh widget each time: its first render must be whole
        if k:
            cell.locator(".jp-InputArea-editor").click()
            s.command("notebook:run-cell")
            s.wait_idle(60_000)
        src, drawn = s.image_state()
        drawn_first.append(drawn)
        if k == 0:
            s.shot("08-first")
    blank = [round(d, 3) for d in drawn_first if d <= 0.02]
    assert not blank, f"08's first render was blank in {len(blank)} of {REPEATS} runs: {drawn_first}"
    slider = s.box().locator(".widget-slider").first
    _drag_slider(s, slider, presses=20)
    s.after_input(src, "08-lambda-moved")
    readout = float(slider.locator(".widget-readout").first.inner_text())
    assert readout > 5.0, f"λ readout {readout} after moving right"
    s.assert_clean()
    print(
        f"08 first render drawn in {len(drawn_first) - len(blank)} of {REPEATS} runs "
        f"(drawn shares {[round(d, 3) for d in drawn_first]})"
    )
