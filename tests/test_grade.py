"""Tests for course_utils.grade on real lab01 submissions written into a temporary class folder.

The whole class is graded once (one fresh kernel per notebook, a few seconds each, plus one
20 s timeout); the tests then read the statuses, the CSV and the HTML.
"""
import csv
import hashlib
import hmac
import json
from pathlib import Path

import nbformat
import psutil
import pytest

from course_utils import grade

LAB01 = Path(__file__).resolve().parent.parent / "labs" / "lab01_neuron_and_gradient_descent"
QUESTIONS = ["q1", "q2", "q3", "q4", "q5"]
TIMEOUT = 20
SLEEP = "3217"  # a child process the looping student starts in its own session: the grader must end it
pytestmark = pytest.mark.timeout(900)  # the class fixture grades ten notebooks on a loaded machine


def _index(nb, text):
    """Index of the first code cell whose source contains ``text``."""
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and text in c.source)


def _cell(source):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["slideshow"] = {"slide_type": "-"}
    return cell


def _write(folder, student, nb, name="lab01.ipynb"):
    (folder / student).mkdir(parents=True)
    nbformat.write(nb, folder / student / name)


def _class(folder: Path):
    solution = lambda: nbformat.read(LAB01 / "solution.ipynb", as_version=4)  # noqa: E731
    starter = lambda: nbformat.read(LAB01 / "starter.ipynb", as_version=4)  # noqa: E731
    _write(folder, "alice_solution", solution(), "lab01_neuron.ipynb")
    _write(folder, "bob_starter", starter(), "homework.ipynb")  # lab found from the import, not the name

    nb = solution()                                   # q5 wrong: too few steps to reach the target loss
    nb.cells[_index(nb, "LR, STEPS =")].source = "LR, STEPS = 0.01, 3"
    _write(folder, "carol_wrong_q5", nb)

    nb = solution()                                   # an infinite loop after q1's check, and a child process
    nb.cells.insert(_index(nb, "check.q1(") + 1, _cell(
        f"import subprocess\nsubprocess.Popen(['sleep', '{SLEEP}'], start_new_session=True)\nwhile True:\n    pass"))
    _write(folder, "dave_loop", nb)

    nb = starter()                                    # prints a fake ✔ instead of calling check.q1
    nb.cells[_index(nb, "check.q1(")].source = 'print("✔ q1 neuron forward: matches the reference")'
    _write(folder, "erin_fake_print", nb)

    nb = starter()                                    # a checker of their own that always says ✔
    nb.cells.insert(_index(nb, "import lab01 as check") + 1, _cell(
        "class check:\n" + "".join(f"    {q} = lambda *a, **k: print('✔ {q}')\n" for q in QUESTIONS)))
    _write(folder, "frank_own_checker", nb)

    nb = solution()                                   # the q3 check cell deleted
    del nb.cells[_index(nb, "check.q3(")]
    _write(folder, "gina_deleted_q3", nb)

    nb = solution()                                   # gradient's cell raises: q3's check never runs
    nb.cells[_index(nb, "def gradient(")].source = "raise RuntimeError('unfinished')"
    _write(folder, "hugo_error", nb)

    (folder / "ivan_corrupt").mkdir()
    (folder / "ivan_corrupt" / "lab01.ipynb").write_text("{ this is not json")

    nb = solution()                                   # tries to forge the results file by guessing
    nb.cells.insert(_index(nb, "import lab01 as check") + 1, _cell(
        "import os\nassert not [k for k in os.environ if 'GRADE' in k]\n"
        "open('results.jsonl', 'a').write('{\"body\": \"99|q1|pass\", \"mac\": \"00\"}\\n')"))
    del nb.cells[_index(nb, "check.q1(")]
    _write(folder, "jon_forger", nb)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder, out = tmp_path_factory.mktemp("class"), tmp_path_factory.mktemp("report")
    _class(folder)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    results = grade.grade_class(folder, out, timeout=TIMEOUT, log=lambda line: print(line))
    after = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    return {g.student: g for g in results}, out, after


def _statuses(graded, student):
    return [graded[0][student].questions.get(q) for q in QUESTIONS]


def test_solution_passes_everything(graded):
    assert graded[0]["alice_solution"].status == "ok"
    assert _statuses(graded, "alice_solution") == ["pass"] * 5


def test_untouched_starter_scores_zero(graded):
    assert graded[0]["bob_starter"].lab == "lab01"
    assert _statuses(graded, "bob_starter") == ["fail"] * 5


def test_one_wrong_answer_fails_only_that_question(graded):
    assert _statuses(graded, "carol_wrong_q5") == ["pass", "pass", "pass", "pass", "fail"]


def test_infinite_loop_times_out_and_keeps_earlier_checks(graded):
    dave = graded[0]["dave_loop"]
    assert dave.status == "timeout"
    assert _statuses(graded, "dave_loop") == ["pass", "error", "error", "error", "error"]
    assert dave.seconds < TIMEOUT + 30


def test_printed_tick_earns_nothing(graded):
    assert _statuses(graded, "erin_fake_print") == ["missing", "fail", "fail", "fail", "fail"]


def test_own_checker_earns_nothing(graded):
    assert _statuses(graded, "frank_own_checker") == ["missing"] * 5


def test_deleted_check_cell_is_missing(graded):
    assert _statuses(graded, "gina_deleted_q3") == ["pass", "pass", "missing", "pass", "pass"]


def test_error_before_a_check_is_error(graded):
    assert _statuses(graded, "hugo_error")[:3] == ["pass", "pass", "error"]


def test_corrupt_file_has_clear_status(graded):
    assert graded[0]["ivan_corrupt"].status == "corrupt"
    assert graded[0]["ivan_corrupt"].questions == {}


def test_secret_hidden_and_guessed_records_ignored(graded):
    assert graded[0]["jon_forger"].status == "ok"
    assert _statuses(graded, "jon_forger") == ["missing", "pass", "pass", "pass", "pass"]


def _alive(p):
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_no_process_left_behind(graded):
    assert [p for p in graded[2] if _alive(p)] == []
    assert [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", SLEEP] and _alive(p)] == []


def test_csv_and_html_name_every_student_and_question(graded):
    results, out, _ = graded
    rows = list(csv.DictReader(open(out / "grades.csv", encoding="utf-8")))
    assert {r["student"] for r in rows} == set(results)
    assert {r["question"] for r in rows if r["student"] == "alice_solution"} == set(QUESTIONS)
    assert {(r["question"], r["status"]) for r in rows if r["student"] == "carol_wrong_q5"} >= {("q5", "fail")}
    page = (out / "grades.html").read_text(encoding="utf-8")
    assert all(student in page for student in results)
    assert all(f"<th>{q}</th>" in page for q in QUESTIONS)
    assert "5/5" in page and "0/5" in page
    assert "passed by" in page


def test_forged_and_replayed_records_are_dropped(tmp_path):
    key = b"k" * 32
    mac = lambda body: hmac.new(key, body.encode(), hashlib.sha256).hexdigest()  # noqa: E731
    lines = [{"body": "1|q1|fail", "mac": mac("1|q1|fail")},
             {"body": "2|q1|pass", "mac": "0" * 64},                 # forged without the key
             {"body": "1|q2|pass", "mac": mac("1|q2|pass")},         # reuses seq 1
             {"body": "3|q3|pass", "mac": mac("3|q3|pass")}]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    assert grade.read_records(path, key) == {"q1": "fail", "q3": "pass"}


def test_lab_detection_and_questions(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("from course_utils.labs import lab03 as check")])
    assert grade.detect_lab(nb, Path("x.ipynb")) == "lab03"
    assert grade.detect_lab(nbformat.v4.new_notebook(), Path("alice_lab07.ipynb")) == "lab07"
    assert grade.detect_lab(nbformat.v4.new_notebook(), Path("x.ipynb")) is None
    assert grade.questions_of("lab01") == QUESTIONS
