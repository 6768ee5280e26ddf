"""The course map in README.md and in notebooks/00_start_here.ipynb tells written lessons from planned ones.

A written lesson is a link to its notebook; a planned one is its name in backticks marked *(planned)*,
with no link anywhere in its row. Every notebook and every lab that exists must be linked from both maps
(so a new notebook fails here until the maps list it), every link must point at a file that exists, and
the two maps must list the same lessons, in the same order, with the same status and labs.
"""
import json
import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

README = ROOT / "README.md"
START = ROOT / "notebooks" / "00_start_here.ipynb"
LESSON = re.compile(r"^\d\d_\w+$")
LINK = re.compile(r"\[`([^`]+)`\]\(([^)]+)\)")
PLANNED = re.compile(r"^`(\d\d_\w+)` \*\(planned\)\*$")
LAB_NAME = re.compile(r"`(lab\d\d)`")


def map_table(markdown: str, heading: str) -> list[str]:
    """The rows (as text) of the first table after `heading`, without its header and separator."""
    after = markdown.split(heading, 1)
    assert len(after) == 2, f"no heading {heading!r}"
    rows = []
    for line in after[1].splitlines():
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    assert len(rows) > 2 and rows[0].startswith("| part | notebook"), f"no course-map table after {heading!r}"
    return rows[2:]


def parse(rows: list[str], base: Path) -> list[dict]:
    """One dict per row: lesson name, written or planned, the links and the labs it names."""
    entries = []
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert len(cells) == 4, f"a map row must have 4 columns: {row}"
        _, notebook, _, lab = cells
        links = LINK.findall(row)
        written = LINK.fullmatch(notebook)
        planned = PLANNED.fullmatch(notebook)
        assert written or planned, f"neither a link nor `NN_name` *(planned)*: {notebook!r}"
        name = written.group(1) if written else planned.group(1)
        assert LESSON.match(name), f"not a lesson name: {name!r}"
        entries.append({
            "name": name,
            "written": bool(written),
            "target": (base / written.group(2)).resolve() if written else None,
            "labs": LAB_NAME.findall(lab),
            "lab_links": [(text, (base / href).resolve()) for text, href in LINK.findall(lab)],
            "links": links,
            "row": row,
        })
    return entries


@pytest.fixture(scope="module")
def maps() -> dict[str, list[dict]]:
    readme = map_table(README.read_text(encoding="utf-8"), "## The course map")
    cells = json.loads(START.read_text(encoding="utf-8"))["cells"]
    text = "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                     for c in cells if c["cell_type"] == "markdown")
    start = map_table(text, "## The map of the course")
    return {"README.md": parse(readme, README.parent), "00_start_here": parse(start, START.parent)}


def existing_notebooks() -> list[str]:
    return sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def existing_labs() -> list[str]:
    return sorted(p.name for p in (ROOT / "labs").glob("lab[0-9][0-9]_*") if p.is_dir())


def test_the_map_parser_tells_written_from_planned(tmp_path):
    rows = ["| 0 | [`00_a`](00_a.ipynb) | x | [`lab01`](labs/lab01_x/starter.ipynb) |",
            "| | `01_b` *(planned)* | y | `lab02` |"]
    a, b = parse(rows, tmp_path)
    assert (a["name"], a["written"], a["labs"], len(a["lab_links"])) == ("00_a", True, ["lab01"], 1)
    assert (b["name"], b["written"], b["labs"], b["links"]) == ("01_b", False, ["lab02"], [])
    for bad in ["| | `01_b` | y | |", "| | 01_b *(planned)* | y | |", "| | [01_b](01_b.ipynb) | y | |"]:
        with pytest.raises(AssertionError):
            parse([bad], tmp_path)


@pytest.mark.parametrize("where", ["README.md", "00_start_here"])
def test_every_link_in_the_map_exists(maps, where):
    for e in maps[where]:
        if e["written"]:
            assert e["target"].is_file(), f"{where}: {e['name']} links to a missing file {e['target']}"
            assert e["target"].stem == e["name"], f"{where}: {e['name']} links to {e['target'].name}"
        for text, target in e["lab_links"]:
            assert target.is_file(), f"{where}: {text} in the row of {e['name']} links to a missing {target}"
            assert target.parent.name.startswith(text + "_"), f"{where}: {text} links into {target.parent.name}"


@pytest.mark.parametrize("where", ["README.md", "00_start_here"])
def test_planned_rows_are_marked_and_not_linked(maps, where):
    on_disk = set(existing_notebooks())
    for e in maps[where]:
        if not e["written"]:
            assert not e["links"], f"{where}: planned {e['name']} has a link: {e['row']}"
            assert e["name"] not in on_disk, f"{where}: {e['name']} exists but is marked planned: link it instead"
            for lab in e["labs"]:
                assert not list((ROOT / "labs").glob(f"{lab}_*")), f"{where}: {lab} exists but is not linked"
        else:
            assert sorted(e["labs"]) == sorted(t for t, _ in e["lab_links"]), \
                f"{where}: every lab in the row of written {e['name']} must be a link: {e['row']}"


@pytest.mark.parametrize("where", ["README.md", "00_start_here"])
def test_every_notebook_and_lab_on_disk_is_linked(maps, where):
    linked = {e["name"] for e in maps[where] if e["written"]}
    missing = [nb for nb in existing_notebooks() if nb not in linked]
    assert not missing, f"{where}: notebooks not linked from the course map: {missing}"
    linked_labs = {target.parent.name for e in maps[where] for _, target in e["lab_links"]}
    missing = [lab for lab in existing_labs() if lab not in linked_labs]
    assert not missing, f"{where}: labs not linked from the course map: {missing}"


@pytest.mark.parametrize("where", ["README.md", "00_start_here"])
def test_lessons_are_numbered_in_order_once(maps, where):
    numbers = [int(e["name"][:2]) for e in maps[where]]
    assert numbers == sorted(set(numbers)), f"{where}: lesson numbers out of order or repeated: {numbers}"


def test_readme_and_start_notebook_show_the_same_map(maps):
    def summary(where):
        return [(e["name"], "written" if e["written"] else "planned", tuple(e["labs"])) for e in maps[where]]
    assert summary("README.md") == summary("00_start_here")
