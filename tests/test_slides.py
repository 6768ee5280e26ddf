"""`make slides` builds offline reveal.js decks that really render (headless Chromium)."""
import functools
import http.server
import subprocess
import threading
from urllib.parse import urlparse

import pytest

from tests.helpers import ROOT, need

DECK = ROOT / "slides" / "00_start_here.slides.html"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def deck():
    need("npm", "`make slides` installs reveal.js and friends from the npm registry")
    out = subprocess.run(["make", "--no-print-directory", "slides", "SLIDES=notebooks/00_start_here.ipynb"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    html = DECK.read_text(encoding="utf-8")
    handler = functools.partial(QuietHandler, directory=str(DECK.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield html, f"http://127.0.0.1:{server.server_address[1]}/{DECK.name}"
    server.shutdown()
    server.server_close()


def test_deck_refers_to_no_cdn(deck):
    html, _ = deck
    for cdn in ("unpkg.com", "cdnjs.cloudflare.com", "cdn.jsdelivr.net", "googleapis.com"):
        assert cdn not in html


def test_deck_renders_offline_in_chromium(deck):
    chromium = need("chromium", "the slide test opens the deck in Debian's chromium")
    _, url = deck
    from playwright.sync_api import sync_playwright
    outside, failed = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()

        def only_local(route):
            host = urlparse(route.request.url).hostname
            if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(url)
        page.wait_for_selector(".reveal.ready", timeout=30_000)  # reveal.js adds `ready` once initialised
        total = page.locator(".reveal .slides section:not(.stack)").count()
        title = page.locator(".reveal .slides section.present h1").first.text_content()
        styled = page.evaluate("[getComputedStyle(document.querySelector('.reveal .slides')).position,"
                               " getComputedStyle(document.querySelector('.reveal')).fontFamily]")
        page.keyboard.press("ArrowRight")
        page.wait_for_function("location.hash === '#/1'", timeout=10_000)  # history: true puts the slide in the URL
        second = page.locator(".reveal .slides section.present").first.text_content()
        page.wait_for_function("window.MathJax && MathJax.isReady", timeout=30_000)
        browser.close()
    assert outside == [], f"the deck tried to reach the network: {outside}"
    assert [u for u in failed if not u.endswith("favicon.ico")] == [], f"requests failed: {failed}"
    assert title.startswith("00 · Start here")
    assert total >= 10, f"only {total} slides"
    assert styled[0] == "absolute" and "Source Sans Pro" in styled[1]  # reveal.css + theme: not unstyled
    assert "Learning goals" in second
