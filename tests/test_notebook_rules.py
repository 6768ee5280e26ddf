"""The notebook rules of COURSE.md §4, enforced on every stored notebook (reads JSON only)."""
import json
import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "labs").glob("lab*/solution*.ipynb"))
STARTERS = sorted((ROOT / "labs").glob("lab*/starter.ipynb"))
BOTH = {"torch", "keras"}
FRAMEWORKS = {"01": BOTH, "03": BOTH, "04": BOTH, "05": BOTH, "06": BOTH, "07": BOTH, "08": BOTH, "09": BOTH,
              "12": {"torch"}, "13": {"keras"}, "14": BOTH, "15": BOTH, "16": BOTH, "17": BOTH}
IMPORTS = {"torch": r"^\s*(import|from) torch\b", "keras": r"^\s*(import|from) (keras|tensorflow)\b"}
NOISE = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d\d|oneDNN custom operations|cpu_feature_guard|WARNING:tensorflow|"
                   r"INFO:tensorflow|Traceback \(most recent call last\)|\w+Warning: ", re.M)
MAX_BYTES = 6_000_000


def source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def load(path: Path) -> dict:
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb.get("nbformat") == 4, "not nbformat 4"
    return nb


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code" and source(c).strip()]


def markdown(nb) -> str:
    return "\n".join(source(c) for c in nb["cells"] if c["cell_type"] == "markdown")


def heading(nb, words: str) -> bool:
    return re.search(rf"^#+ .*{words}", markdown(nb), re.M | re.I) is not None


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def common_problems(path: Path, nb: dict) -> list[str]:
    problems = []
    if path.stat().st_size > MAX_BYTES:
        problems.append(f"file is larger than {MAX_BYTES // 1_000_000} MB")
    for i, cell in enumerate(code_cells(nb), 1):
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                problems.append(f"code cell {i} has an error output ({out.get('ename')})")
            if out["output_type"] == "stream" and NOISE.search("".join(out["text"])):
                problems.append(f"code cell {i}: log noise, a warning or a traceback in {out['name']}")
    if not heading(nb, "learning goals"):
        problems.append("no 'Learning goals' heading")
    code = "\n".join(source(c) for c in code_cells(nb))
    if re.search(r"/home/\w+/|/Users/\w+/|/root/|/work/", code):
        problems.append("machine-specific absolute path in code")
    tf_at = re.search(IMPORTS["keras"], code, re.M)
    cu_at = re.search(r"^\s*import course_utils\b|^\s*from course_utils\b", code, re.M)
    if tf_at and (not cu_at or cu_at.start() > tf_at.start()):
        problems.append("TensorFlow/Keras imported before course_utils (triton must load first)")
    return problems


def executed_problems(nb: dict) -> list[str]:
    problems = []
    counts = [c.get("execution_count") for c in code_cells(nb)]
    if any(n is None for n in counts):
        problems.append(f"{sum(n is None for n in counts)} code cells never executed")
    elif counts != list(range(1, len(counts) + 1)):
        problems.append("execution counts are not 1..N (not a clean Restart & Run All)")
    checked = [c for c in code_cells(nb) if source(c).lstrip().startswith("# NBVAL_CHECK_OUTPUT") and c.get("outputs")]
    if len(checked) < 3:
        problems.append(f"only {len(checked)} cells start with # NBVAL_CHECK_OUTPUT and have output (need >= 3)")
    return problems


@pytest.mark.parametrize("path", LESSONS, ids=rel)
def test_lesson_follows_the_rules(path):
    nb = load(path)
    problems = common_problems(path, nb) + executed_problems(nb)
    missing_slides = sum(not c.get("metadata", {}).get("slideshow", {}).get("slide_type") for c in nb["cells"])
    if missing_slides:
        problems.append(f"{missing_slides} cells without slideshow metadata (slide_type)")
    if not nb["cells"] or nb["cells"][0].get("metadata", {}).get("slideshow", {}).get("slide_type") != "slide":
        problems.append("the first cell does not start a slide")
    if not path.name.startswith("00"):
        for words in ("review questions", "exercises"):
            if not heading(nb, words):
                problems.append(f"no '{words}' heading")
        if not any("image/png" in o.get("data", {}) for c in code_cells(nb) for o in c.get("outputs", [])):
            problems.append("no stored picture (image/png output)")
    code = "\n".join(source(c) for c in code_cells(nb))
    for fw in sorted(FRAMEWORKS.get(path.name[:2], set())):
        if not re.search(IMPORTS[fw], code, re.M):
            problems.append(f"does not use {fw} (the syllabus says this lesson shows it)")
    assert not problems, f"{rel(path)}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", SOLUTIONS, ids=rel)
def test_lab_solution_follows_the_rules(path):
    nb = load(path)
    problems = common_problems(path, nb) + executed_problems(nb)
    if not (path.parent / "starter.ipynb").exists():
        problems.append("no starter.ipynb next to the solution")
    assert not problems, f"{rel(path)}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", STARTERS, ids=rel)
def test_lab_starter_follows_the_rules(path):
    nb = load(path)
    problems = common_problems(path, nb)
    if any("NBVAL_CHECK_OUTPUT" in source(c) for c in code_cells(nb)):
        problems.append("a starter must not carry NBVAL_CHECK_OUTPUT cells (its checks fail until solved)")
    if "NotImplementedError" not in "\n".join(source(c) for c in code_cells(nb)):
        problems.append("no TODO left for the student (no NotImplementedError)")
    assert not problems, f"{rel(path)}:\n  " + "\n  ".join(problems)


def test_the_start_notebook_exists():
    assert (ROOT / "notebooks" / "00_start_here.ipynb").exists()
