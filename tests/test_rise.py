"""Live lectures: a lesson presented with RISE in JupyterLab really works (headless Chromium).

JupyterLab is started by the test on 127.0.0.1 with a token, on a temporary root folder that holds
COPIES of the notebooks (RISE saves a notebook when it starts; autosave is off as well), and is stopped
with no process left behind. Every request off 127.0.0.1 is aborted and counted: RISE's reveal.js theme
asks Google Fonts for two style sheets; the slide must still render without them.
"""
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import psutil
import pytest

from tests.helpers import ROOT, need, only_local

JUPYTER = Path(sys.executable).parent / "jupyter"
LESSON = ROOT / "notebooks" / "00_start_here.ipynb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str, token: str) -> int:
    try:
        request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


@contextlib.contextmanager
def jupyterlab(root: Path, settings: Path):
    """JupyterLab on 127.0.0.1:<free port> with a token, serving `root`, autosave off, app exposed to the page.

    Yields (base url, token). On exit the whole process group (server and kernels) is stopped and the
    test fails if any process of it is still alive."""
    (settings / "@jupyterlab" / "docmanager-extension").mkdir(parents=True, exist_ok=True)
    (settings / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings").write_text(
        json.dumps({"autosave": False}))
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True, exist_ok=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))  # every cell in the DOM (else only those on screen)
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_TOKEN": token, "BROWSER": "true", "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(settings / "workspaces")}
    args = [str(JUPYTER), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    log = open(settings / "lab.log", "w")
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while _status(f"{base}/api/status", token) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not come up:\n{(settings / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        server = psutil.Process(proc.pid)
        listening = {c.laddr.ip for c in server.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        assert listening == {"127.0.0.1"}, listening
        assert _status(f"{base}/api/contents", "wrong") == 403
        yield base, token
    finally:
        group = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True) \
            if proc.poll() is None else []
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        _, alive = psutil.wait_procs(group, timeout=15)
        for p in alive:
            p.kill()
        assert not alive, f"JupyterLab left processes running: {[p.pid for p in alive]}"


@contextlib.contextmanager
def chromium_context():
    """A Chromium browser context whose requests off 127.0.0.1 are aborted; yields (context, outside urls, errors)."""
    chromium = need("chromium", "the browser tests drive JupyterLab in Debian's chromium")
    from playwright.sync_api import sync_playwright
    outside: list[str] = []
    errors: list[str] = []

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", only_local(outside))
        context.on("page", lambda page: page.on("pageerror", lambda e: errors.append(str(e))))
        try:
            yield context, outside, errors
        finally:
            browser.close()


def open_notebook(context, base: str, token: str, name: str):
    """Open `name` in JupyterLab; wait until its kernel is idle and it is the current widget."""
    page = context.new_page()
    page.on("pageerror", lambda e: None)
    page.goto(f"{base}/lab/tree/{name}?reset&token={token}")  # reset: no notebook restored from a workspace
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    widget = "jupyterapp.shell.currentWidget"
    page.wait_for_function(f"window.jupyterapp && {widget} && {widget}.context && {widget}.context.path === {name!r}"
                           f" && {widget}.sessionContext.session && {widget}.sessionContext.session.kernel"
                           f" && {widget}.sessionContext.session.kernel.status === 'idle'", timeout=90_000)
    page.evaluate(f"jupyterapp.shell.activateById({widget}.id)")  # the notebook is the current widget
    try:
        page.locator(".jp-Notebook .jp-Cell").first.click(timeout=5_000)
    except Exception:  # playwright's TimeoutError: the activation above is enough
        pass
    return page


def start_rise(context, page):
    """Run RISE:slideshow; return its new tab once a reveal.js slide is on show."""
    with context.expect_page(timeout=60_000) as info:
        page.evaluate("jupyterapp.commands.execute('RISE:slideshow')")
    rise = info.value
    rise.wait_for_selector(".reveal .slides section.present", timeout=90_000)
    return rise


def hash_of(page) -> str:
    return page.evaluate("location.hash")


def press(page, key: str) -> str:
    """Press `key` in the slideshow until the slide (location.hash) changes; return the new hash.

    The key goes to the page, not to a cell: a selected markdown heading cell takes ArrowLeft/ArrowRight
    to collapse/expand its section. Right after RISE starts, a press may be lost: retried."""
    before = hash_of(page)
    for _ in range(10):
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.keyboard.press(key)
        try:
            page.wait_for_function(f"location.hash !== {before!r}", timeout=3_000)
            return hash_of(page)
        except Exception:  # playwright's TimeoutError: press again
            pass
    raise AssertionError(f"{key} did not move the slideshow from {before}")


def demo_notebook() -> nbformat.NotebookNode:
    """Three horizontal slides; the second has a vertical subslide; the third runs 6*7 on stage."""
    def md(text, kind):
        return nbformat.v4.new_markdown_cell(text, metadata={"slideshow": {"slide_type": kind}})
    code = nbformat.v4.new_code_cell("print(6 * 7)", metadata={"slideshow": {"slide_type": "slide"}})
    nb = nbformat.v4.new_notebook(cells=[md("# On stage", "slide"), md("## Second slide", "slide"),
                                         md("### Below the second", "subslide"), code])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root, settings = tmp_path_factory.mktemp("rise_root"), tmp_path_factory.mktemp("rise_settings")
    shutil.copy(LESSON, root / LESSON.name)
    nbformat.write(demo_notebook(), root / "on_stage.ipynb")
    with jupyterlab(root, settings) as (base, token):
        yield dict(root=root, base=base, token=token)


def test_a_lesson_is_a_rise_slideshow(lab):
    with chromium_context() as (context, outside, errors):
        page = open_notebook(context, lab["base"], lab["token"], LESSON.name)
        rise = start_rise(context, page)
        first_hash = hash_of(rise)
        title = rise.locator(".reveal .slides section.present h1").first.text_content(timeout=30_000)
        styled = rise.evaluate("getComputedStyle(document.querySelector('.reveal .slides')).position")
        rise.locator(".reveal").first.click()
        second_hash = press(rise, "ArrowRight")
        present = rise.locator(".reveal .slides section.present").count()
    assert first_hash == "#/slide-0-0", first_hash
    assert second_hash == "#/slide-1-0", second_hash
    assert title.startswith("00 · Start here")
    assert styled == "absolute"  # reveal.js laid the slides out
    assert present >= 1
    assert len(outside) <= 2 and all("fonts.googleapis.com" in u or "fonts.gstatic.com" in u for u in outside), outside
    print(f"\nRISE on 00: {len(outside)} external request(s) blocked: {outside}")


def test_subslides_and_a_cell_run_on_stage(lab):
    with chromium_context() as (context, outside, errors):
        page = open_notebook(context, lab["base"], lab["token"], "on_stage.ipynb")
        rise = start_rise(context, page)
        rise.locator(".reveal").first.click()
        hashes = [hash_of(rise), press(rise, "ArrowRight")]
        # the vertical subslide by its address (with no cell focused, ArrowDown did not move RISE here)
        rise.evaluate("location.hash = '#/slide-1-1'")
        rise.wait_for_function("document.getElementById('slide-1-1').classList.contains('present')", timeout=20_000)
        subslide = rise.locator("#slide-1-1").text_content()
        hashes += [hash_of(rise), press(rise, "ArrowRight")]
        cell = rise.locator(".reveal .slides section.present .jp-CodeCell").first
        cell.locator(".cm-content").evaluate("e => e.focus()")  # reveal's scaling puts a click 'outside the viewport'
        rise.keyboard.press("Shift+Enter")
        rise.wait_for_function("[...document.querySelectorAll('.jp-OutputArea-output')]"
                               ".some(e => e.textContent.trim() === '42')", timeout=90_000)
    assert "Below the second" in subslide
    assert hashes == ["#/slide-0-0", "#/slide-1-0", "#/slide-1-1", "#/slide-2-0"], hashes
    assert len(outside) <= 2 and all("fonts.googleapis.com" in u or "fonts.gstatic.com" in u for u in outside), outside
    print(f"\nRISE on a demo notebook: {len(outside)} external request(s) blocked: {outside}")
