"""Build the course website into book/_build/html from the stored notebooks (nothing is re-executed).

Usage: python tools/build_book.py   (what `make book` runs; `make book` installs book/node_modules first)
The pages and their order come from the course map in README.md: part by part, each written lesson,
and each lab (starter, then its solutions) after the last lesson that names it. The notebooks are copied
into book/_build/src (with notebooks/scripts/ and the labs' helper files, which the lessons link to),
Sphinx + myst-nb renders them with their stored outputs, and MathJax 3, require.js and the widget HTML
manager are copied from book/node_modules into the site: no page loads anything from a CDN.
The site works from any static web server: `python -m http.server -b 127.0.0.1 -d book/_build/html`.
"""
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
SRC = BOOK / "_build" / "src"
HTML = BOOK / "_build" / "html"
NODE = BOOK / "node_modules"
LINK = re.compile(r"\[`([^`]+)`\]\(([^)]+)\)")
# what the pages load, trimmed, into _static/npm/ as in node_modules: MathJax's one combined TeX +
# CommonHTML file and its woff2 fonts, require.js, and the widget manager with its icon fonts
VENDOR = [
    "mathjax/es5/tex-chtml-full.js",
    "mathjax/es5/output/chtml/fonts/woff-v2",
    "requirejs/require.js",
    "@jupyter-widgets/html-manager/dist/embed-amd.js",
]
WIDGET_FONTS = ("*.woff2", "*.woff")  # what browsers pick; .eot/.ttf/.svg are for old ones


def course_map(readme: Path = ROOT / "README.md") -> list[tuple[str, list[str]]]:
    """[(part title, [page paths relative to the repository, in reading order]), ...] from the map."""
    text = readme.read_text(encoding="utf-8").split("## The course map", 1)[1]
    rows: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    parts: list[tuple[str, list[str]]] = []
    last_row_of_lab: dict[str, int] = {}
    lessons: list[tuple[int, str, str]] = []  # (row, part, notebook)
    part = ""
    for i, row in enumerate(rows[2:]):
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        part = cells[0] or part
        notebook = LINK.fullmatch(cells[1])
        if notebook:  # a written lesson (a planned one is not a link)
            lessons.append((i, part, notebook.group(2)))
        for _, href in LINK.findall(cells[3]):
            last_row_of_lab[str(Path(href).parent)] = i
    for i, part_title, notebook in lessons:
        if not parts or parts[-1][0] != part_title:
            parts.append((part_title, []))
        parts[-1][1].append(notebook)
        for lab, last in sorted(last_row_of_lab.items()):
            if last == i:
                parts[-1][1].extend(str(p.relative_to(ROOT)) for p in lab_notebooks(ROOT / lab))
    # a lab named only in planned rows has no lesson to follow: it cannot exist yet (test_course_map)
    return parts


def lab_notebooks(lab: Path) -> list[Path]:
    return [lab / "starter.ipynb"] + sorted(lab.glob("solution*.ipynb"))


def toc_entry(page: str) -> str:
    """A toctree line; a lab solution whose title is the starter's gets "— solution" in the navigation."""
    target = str(Path(page).with_suffix(""))
    if not Path(page).name.startswith("solution"):
        return target
    cells = json.loads((ROOT / page).read_text(encoding="utf-8"))["cells"]
    heading = next((line for c in cells if c["cell_type"] == "markdown"
                    for line in "".join(c["source"]).splitlines() if line.startswith("# ")), "")
    title = heading[2:].strip()
    if not title or re.search(r"solution|answers", title, re.I):
        return target
    keras = " (Keras)" if "keras" in Path(page).stem else ""
    return f"{title} — solution{keras} <{target}>"


def stage(parts: list[tuple[str, list[str]]]) -> None:
    """Copy the pages (and the files they link to) into SRC and write its index.md with the map as toctrees."""
    shutil.rmtree(SRC, ignore_errors=True)
    SRC.mkdir(parents=True)
    shutil.copytree(ROOT / "notebooks" / "scripts", SRC / "notebooks" / "scripts",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "notebooks" / "results", SRC / "notebooks" / "results")  # result files 17 links to
    for doc in (SRC / "notebooks" / "scripts").glob("*.md"):  # guides the lessons link to (CLUSTER.md):
        doc.write_text("---\norphan: true\n---\n" + doc.read_text(encoding="utf-8"), encoding="utf-8")
    for _, pages in parts:
        for page in pages:
            (SRC / page).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / page, SRC / page)
            for helper in (ROOT / page).parent.glob("*.py"):  # labs' harnesses, linked from their text
                shutil.copy2(helper, (SRC / page).parent / helper.name)
    toctrees = []
    for title, pages in parts:
        entries = "\n".join(toc_entry(p) for p in pages)
        toctrees.append(f"```{{toctree}}\n:caption: Part {title}\n:maxdepth: 1\n\n{entries}\n```\n")
    intro = (BOOK / "index.md").read_text(encoding="utf-8")
    (SRC / "index.md").write_text(intro.rstrip() + "\n\n" + "\n".join(toctrees), encoding="utf-8")


def vendor() -> None:
    """Copy the trimmed npm files into the site's _static/npm/."""
    dest = HTML / "_static" / "npm"
    dist = "@jupyter-widgets/html-manager/dist"
    fonts = [f.name for pattern in WIDGET_FONTS for f in (NODE / dist).glob(pattern)]
    for name in VENDOR:
        src, dst = NODE / name, dest / name
        if not src.exists():
            sys.exit(f"missing book/node_modules/{name}: run `make book` (it runs npm ci in book/ first)")
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    # the widget modules' style sheets ask for their icon fonts next to the module: @jupyter-widgets/base
    # and /controls in @jupyter-widgets/, the manager's own in its dist/ (book/conf.py sets require's baseUrl)
    for folder in ("@jupyter-widgets", dist):
        for font in fonts:
            shutil.copy2(NODE / dist / font, dest / folder / font)


def build() -> Path:
    start = time.perf_counter()
    parts = course_map()
    stage(parts)
    shutil.rmtree(HTML, ignore_errors=True)
    # -W: any warning (a broken link, a page missing from the navigation) fails the build
    subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going",
                    "-c", str(BOOK), str(SRC), str(HTML)], check=True)
    vendor()
    pages = sum(len(p) for _, p in parts)
    size = sum(f.stat().st_size for f in HTML.rglob("*") if f.is_file()) / 2**20
    print(f"built {pages} pages into {HTML.relative_to(ROOT)} ({size:.0f} MB) in {time.perf_counter() - start:.0f} s")
    return HTML


if __name__ == "__main__":
    build()
