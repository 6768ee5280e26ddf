"""`make slides` builds an offline reveal.js deck for every lesson, and each really renders (headless Chromium).

All decks are built once (one `make slides` for notebooks/*.ipynb, timed) and served from 127.0.0.1; one
Chromium loads them one after another. Each deck must have one horizontal slide per cell whose slideshow
metadata says "slide" (and one more vertical slide per "subslide"), show the lesson's title, be styled by
reveal.js and its theme, and load everything locally: any request off 127.0.0.1 is aborted and fails the test.
"""
import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, need, only_local, serve

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SLIDES = ROOT / "slides"
BUILD_S: dict[str, float] = {}


def slide_counts(notebook: Path) -> tuple[int, int]:
    """(cells starting a horizontal slide, cells starting a vertical subslide) from the slideshow metadata."""
    kinds = [c.get("metadata", {}).get("slideshow", {}).get("slide_type", "-")
             for c in json.loads(notebook.read_text(encoding="utf-8"))["cells"]]
    return kinds.count("slide"), kinds.count("subslide")


@pytest.fixture(scope="module")
def decks():
    need("npm", "`make slides` installs reveal.js and friends from the npm registry")
    start = time.monotonic()
    out = subprocess.run(["make", "--no-print-directory", "slides", "SLIDES=" + " ".join(
        str(n.relative_to(ROOT)) for n in NOTEBOOKS)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    BUILD_S["all"] = time.monotonic() - start
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    print(f"\n`make slides` built {len(NOTEBOOKS)} decks in {BUILD_S['all']:.1f} s")
    with serve(SLIDES) as url:
        yield url.rstrip("/")


@pytest.fixture(scope="module")
def browser(decks):
    chromium = need("chromium", "the slide test opens the decks in Debian's chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def test_every_lesson_has_a_deck(decks):
    built = {p.name for p in SLIDES.glob("*.slides.html")}
    assert {f"{n.stem}.slides.html" for n in NOTEBOOKS} <= built


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem[:2] for n in NOTEBOOKS])
def test_deck_refers_to_no_cdn(decks, notebook):
    html = (SLIDES / f"{notebook.stem}.slides.html").read_text(encoding="utf-8")
    for cdn in ("unpkg.com", "cdnjs.cloudflare.com", "cdn.jsdelivr.net", "googleapis.com"):
        assert cdn not in html


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem[:2] for n in NOTEBOOKS])
def test_deck_renders_offline_in_chromium(decks, browser, notebook):
    slides, subslides = slide_counts(notebook)
    outside, failed = [], []
    page = browser.new_page()

    page.route("**/*", only_local(outside))
    page.on("requestfailed", lambda r: failed.append(r.url))
    try:
        page.goto(f"{decks}/{notebook.stem}.slides.html")
        page.wait_for_selector(".reveal.ready", timeout=60_000)  # reveal.js adds `ready` once initialised
        horizontal = page.locator(".reveal .slides > section").count()
        total = page.locator(".reveal .slides section:not(.stack)").count()
        title = page.locator(".reveal .slides section.present h1").first.text_content()
        styled = page.evaluate("[getComputedStyle(document.querySelector('.reveal .slides')).position,"
                               " getComputedStyle(document.querySelector('.reveal')).fontFamily]")
        page.keyboard.press("ArrowRight")
        page.wait_for_function("location.hash === '#/1'", timeout=10_000)  # history: true puts the slide in the URL
        second = page.locator(".reveal .slides section.present").first.text_content()
        page.wait_for_function("window.MathJax && MathJax.isReady", timeout=60_000)
    finally:
        page.close()
    assert outside == [], f"the deck tried to reach the network: {outside}"
    assert [u for u in failed if not u.endswith("favicon.ico")] == [], f"requests failed: {failed}"
    assert title.startswith(f"{notebook.stem[:2]} · "), title
    assert horizontal == slides, f"{horizontal} horizontal slides, {slides} cells of slide_type 'slide'"
    assert total >= slides + subslides, f"{total} slides for {slides} slides + {subslides} subslides"
    assert styled[0] == "absolute" and "Source Sans Pro" in styled[1]  # reveal.css + theme: not unstyled
    assert second.strip(), "the second slide is empty"
    if notebook.stem == "00_start_here":
        assert "Learning goals" in second
