"""Build one reveal.js deck per notebook into slides/, loading everything from slides/node_modules.

Usage: python tools/build_slides.py notebooks/00_start_here.ipynb [...]   (what `make slides` runs)
nbconvert's slides point at CDNs by default; here every script, style sheet and font comes from the
npm packages that `make slides` installs (slides/package.json), so a deck works with no network.
Open a deck through a local web server (`python -m http.server -b 127.0.0.1 -d slides`), or
directly as a file (then only mermaid diagrams, an ES module, are blocked by the browser).
"""
import sys
from pathlib import Path

import nbformat
from nbconvert import SlidesExporter

SLIDES = Path(__file__).resolve().parent.parent / "slides"
LIB = "node_modules"
URLS = {
    "reveal_url_prefix": f"{LIB}/reveal.js",
    "require_js_url": f"{LIB}/requirejs/require.js",
    "jquery_url": f"{LIB}/jquery/dist/jquery.min.js",
    "mathjax_url": f"{LIB}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
    "mermaid_js_url": f"./{LIB}/mermaid/dist/mermaid.esm.min.mjs",
    "font_awesome_url": f"{LIB}/font-awesome/css/font-awesome.min.css",
    "widget_renderer_url": f"{LIB}/@jupyter-widgets/html-manager/dist/embed-amd.js",
}


def exporter() -> SlidesExporter:
    missing = [u for u in URLS.values() if u and not (SLIDES / u.split("?")[0]).exists()]
    if missing:
        sys.exit(f"missing {missing[0]}: run `make slides` (it installs slides/node_modules first)")
    exporter = SlidesExporter(reveal_theme="white", reveal_transition="none", reveal_number="c/t")
    for key, url in URLS.items():  # set on the instance: mermaid_js_url is not a config trait
        setattr(exporter, key, url)
    return exporter


def build(notebook: Path, out_dir: Path = SLIDES) -> Path:
    body, _ = exporter().from_notebook_node(nbformat.read(notebook, as_version=4),
                                           resources={"metadata": {"name": notebook.stem}})
    out = out_dir / f"{notebook.stem}.slides.html"
    out.write_text(body, encoding="utf-8")
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        print(f"built {build(Path(path)).relative_to(SLIDES.parent)}")
