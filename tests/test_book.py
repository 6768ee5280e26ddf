"""`make book` builds the course website offline, and every page of it works offline (headless Chromium).

The site is built once (`make book`), served on 127.0.0.1, and every page is loaded with all non-local
requests blocked and counted: none may be attempted, no local request may fail (a 404 counts), every
image must load, math must be typeset by MathJax 3, stored widgets (progress bars) must render, every
internal link must resolve, each page must offer its own notebook for download, and the pages must be
exactly the course map's lessons and labs, in the map's order.
"""
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from tests.helpers import ROOT, need, only_local, serve
from tests.test_course_map import map_table, parse

HTML = ROOT / "book" / "_build" / "html"


def expected_pages() -> list[tuple[str, str]]:
    """(part, page) in reading order from README's course map: each written lesson, and each lab
    (starter, then its solutions) after the last row that names it."""
    rows = map_table((ROOT / "README.md").read_text(encoding="utf-8"), "## The course map")
    entries, parts, part = parse(rows, ROOT), [], ""
    for row in rows:
        part = row.strip().strip("|").split("|")[0].strip() or part
        parts.append(part)
    last_row = {target.parent: i for i, e in enumerate(entries) for _, target in e["lab_links"]}
    pages = []
    for i, e in enumerate(entries):
        if e["written"]:
            pages.append((parts[i], str(e["target"].relative_to(ROOT).with_suffix(""))))
            for lab in sorted(d for d, last in last_row.items() if last == i):
                for nb in [lab / "starter.ipynb"] + sorted(lab.glob("solution*.ipynb")):
                    pages.append((parts[i], str(nb.relative_to(ROOT).with_suffix(""))))
    return pages


@pytest.fixture(scope="module")
def site():
    need("npm", "`make book` installs MathJax, require.js and the widget manager from the npm registry")
    start = time.perf_counter()
    out = subprocess.run(["make", "--no-print-directory", "book"], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(f"make book: {time.perf_counter() - start:.0f} s; {out.stdout.strip().splitlines()[-1]}")
    with serve(HTML) as url:
        yield url


def test_site_refers_to_no_cdn(site):
    for page in HTML.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        for cdn in ("unpkg.com", "cdnjs.cloudflare.com", "cdn.jsdelivr.net", "googleapis.com", "mystmd.org"):
            assert cdn not in html, f"{page.relative_to(HTML)} refers to {cdn}"


def test_navigation_is_the_course_map(site):
    from bs4 import BeautifulSoup
    soup = BeautifulSoup((HTML / "index.html").read_text(encoding="utf-8"), "html.parser")
    nav = []
    for wrapper in soup.select("div.toctree-wrapper"):
        caption = wrapper.select_one(".caption-text").get_text()
        for a in wrapper.select("a.reference.internal"):
            nav.append((caption.removeprefix("Part "), a["href"].removesuffix(".html")))
    assert nav == expected_pages()
    built = sorted(str(p.relative_to(HTML).with_suffix("")) for d in ("notebooks", "labs")
                   for p in (HTML / d).rglob("*.html"))
    guides = sorted(f"notebooks/scripts/{p.stem}" for p in (ROOT / "notebooks" / "scripts").glob("*.md"))
    assert built == sorted([page for _, page in nav] + guides), \
        "the site has pages the course map does not list (besides the guides in notebooks/scripts/)"


def test_every_page_offers_its_own_notebook(site):
    for _, page in expected_pages():
        html = (HTML / f"{page}.html").read_text(encoding="utf-8")
        name = Path(page).name + ".ipynb"
        href = "../" * page.count("/") + f"_sources/{page}.ipynb"
        assert f'href="{href}"' in html, f"{page}: no download link to {name}"
        # the very file the build copied from the repository (compared with that copy, not with the
        # repository, which may have changed since the build)
        source = ROOT / "book" / "_build" / "src" / f"{page}.ipynb"
        assert (HTML / "_sources" / f"{page}.ipynb").read_bytes() == source.read_bytes()


def test_every_page_works_offline_in_chromium(site):
    chromium = need("chromium", "the book test opens every page in Debian's chromium")
    from playwright.sync_api import sync_playwright
    pages = ["index"] + [page for _, page in expected_pages()]
    outside, failed, links, report = [], [], set(), {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        tab = browser.new_page()

        tab.route("**/*", only_local(outside))
        tab.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
        tab.on("response", lambda r: r.status >= 400 and failed.append(f"{r.url} ({r.status})"))
        for page in pages:
            tab.goto(site + page + ".html", wait_until="load")
            has_math = tab.locator("span.math, div.math").count() > 0
            if has_math:
                tab.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise",
                                      timeout=30_000)
                typeset = tab.evaluate("MathJax.startup.promise.then(() =>"
                                       " document.querySelectorAll('mjx-container').length)")
                assert typeset > 0, f"{page}: math not typeset"
            views = tab.locator("script[type='application/vnd.jupyter.widget-view+json']").count()
            if views:
                tab.wait_for_function(f"document.querySelectorAll('.jupyter-widgets.widget-inline-hbox,"
                                      f" .jupyter-widgets.widget-hbox').length >= {views}", timeout=30_000)
            tab.wait_for_load_state("networkidle")
            images = tab.evaluate("Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0])")
            assert all(ok for _, ok in images), f"{page}: images not loaded: {[s for s, ok in images if not ok]}"
            links.update((page, h) for h in tab.evaluate("Array.from(document.querySelectorAll('a[href]'))"
                                                         ".map(a => a.href)"))
            report[page] = (len(images), has_math, views)
        browser.close()
    print(f"{len(report)} pages: {sum(n for n, _, _ in report.values())} images, math on"
          f" {sum(m for _, m, _ in report.values())} pages, {sum(v for _, _, v in report.values())} widget views,"
          f" {len(outside)} external requests, {len(failed)} failed local requests, {len(links)} links")
    assert outside == [], f"pages tried to reach the network: {outside[:5]} ({len(outside)} requests)"
    assert failed == [], f"local requests failed: {failed[:10]}"
    broken = []
    for page, href in links:
        url = urlparse(href)
        if url.hostname == "127.0.0.1":
            path = HTML / unquote(url.path).lstrip("/")
            if not (path.is_file() or (path / "index.html").is_file()):
                broken.append(f"{page} → {url.path}")
    assert broken == [], f"internal links to missing files: {broken}"
    assert sum(n for n, _, _ in report.values()) > 50, "the lessons' figures are missing"
    assert sum(m for _, m, _ in report.values()) >= 5, "too few pages with typeset math"
    assert sum(v for _, _, v in report.values()) >= 10, "too few pages with rendered widgets"
