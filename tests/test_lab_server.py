"""`make lab` really serves the course: on 127.0.0.1 only, token required, 00 opens; nothing left behind."""
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import psutil
import pytest

from tests.helpers import ROOT, need


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, ConnectionError):
        return 0  # not listening (yet)


@pytest.fixture(scope="module")
def lab():
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_TOKEN": token, "BROWSER": "true"}
    proc = subprocess.Popen(["make", "--no-print-directory", "lab", f"PORT={port}", "LAB_ARGS=--no-browser"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while get(f"{base}/api/status", token) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`make lab` did not come up:\n{proc.stdout.read()[-3000:]}")
            time.sleep(0.5)
        group = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
        yield dict(base=base, token=token, port=port, proc=proc, group=group)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_requires_the_token(lab):
    assert get(f"{lab['base']}/api/contents/notebooks") == 403
    assert get(f"{lab['base']}/api/contents/notebooks", token="wrong") == 403
    assert get(f"{lab['base']}/api/contents/notebooks", lab["token"]) == 200


def test_serves_the_start_notebook(lab):
    assert get(f"{lab['base']}/api/contents/notebooks/00_start_here.ipynb", lab["token"]) == 200
    assert get(f"{lab['base']}/lab/tree/notebooks/00_start_here.ipynb?token={lab['token']}") == 200


def test_listens_on_loopback_only(lab):
    server = next(p for p in lab["group"] if "jupyter" in " ".join(p.cmdline()))
    listening = {c.laddr.ip for c in server.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == lab["port"]}
    assert listening == {"127.0.0.1"}


def test_jupyterlab_opens_the_start_notebook_in_a_browser(lab):
    chromium = need("chromium", "the JupyterLab browser test needs Debian's chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(f"{lab['base']}/lab/tree/notebooks/00_start_here.ipynb?token={lab['token']}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
        title = page.locator(".jp-Notebook .jp-MarkdownOutput h1").first.inner_text(timeout=30_000)
        tab = page.locator(".lm-TabBar-tab.jp-mod-current .lm-TabBar-tabLabel").first.inner_text()
        browser.close()
    assert title.startswith("00 · Start here")
    assert tab == "00_start_here.ipynb"


def test_stopping_leaves_no_process(lab):
    group, proc = lab["group"], lab["proc"]
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=20)
    _, alive = psutil.wait_procs(group, timeout=10)
    assert not alive, f"still running: {[p.pid for p in alive]}"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", lab["port"])) != 0
