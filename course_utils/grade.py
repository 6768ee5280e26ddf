"""Grade a class: run every submitted lab notebook in a fresh kernel and tabulate its checks.

Usage::

    make grade SUBMISSIONS=submissions/                 # report in grade_report/
    python -m course_utils.grade submissions/ --out grade_report/ --timeout 120

Layout: ``submissions/<student>/<any name>.ipynb`` — one folder per student (the folder name is
the student), one notebook per lab submitted (several labs per student are fine). The lab is
detected from the notebook's ``from course_utils.labs import labNN`` import, else from ``labNN``
in the file name. Each notebook runs in a fresh kernel (the current Python), in a temporary
folder (also its ``TMPDIR``, removed afterwards) holding a copy of it and the non-notebook
files of ``labs/labNN_*/`` (the harness scripts some labs run), with one time budget for the
whole notebook (``--timeout``, default 120 s). Errors do not stop the run; afterwards the
kernel and every process it started are ended. Nothing needs the network. The report is
``grades.csv`` (one row per student, notebook and question) and ``grades.html`` (one table per
lab: students × questions, a score per student, a pass count per question).

Statuses. Per question: ``pass`` / ``fail`` (the last call of the course's check for it),
``error`` (never checked because a cell raised before or in its check cell, the check itself
raised, or the notebook stopped on timeout), ``missing`` (never called, nothing went wrong).
Per notebook: ``ok``, ``timeout``, ``kernel-died``, ``corrupt`` (not a readable notebook),
``no-lab-detected``, ``grader-error`` (the grader's own set-up cell failed).

What counts. Only calls of the real check functions, never printed text. A set-up cell the
grader puts before the student's first cell imports ``course_utils.labs.labNN`` and replaces
each ``qN`` in that (cached) module with a wrapper that, after the real check returns, appends
a record ``seq, question, pass|fail`` with an HMAC under a random key to a results file
outside the working folder. The key and the file's path reach the kernel through a one-time
file named by an environment variable; the set-up cell reads and deletes both and keeps them
only in a closure. A ``print("✔ q1 ...")``, a redefined ``check`` object, or lines written
into the results file without the key therefore earn nothing; replayed records (a repeated
``seq``) are ignored.

Threat model, honestly: this stops faking by printing, by redefining the checker, and by
forging the results file. It does not stop a determined student, whose code runs in the same
process as the checks: they can read the key out of the wrapper's closure (or ``gc``), patch
the lab module's reference functions or ``course_utils.labs.Result``, or call a check with
the lab module's own reference implementation (``check.q1(check.reference_forward)``).
Read the notebooks of suspicious passes; run the grader offline on a machine you control.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
LABS = REPO / "labs"
ENV_VAR = "COURSE_GRADE_SECRET"
IMPORT_RE = re.compile(r"course_utils\.labs(?:\s+import\s+|\.)(lab\d\d)\b")
NAME_RE = re.compile(r"lab(\d\d)", re.IGNORECASE)
QUESTION_RE = re.compile(r"q\d+")

# The grader's first cell. It must not leave the key or the file's path in any global name.
SETUP_CELL = r'''
def _course_grade_setup(module_name, env_var):
    import functools, hashlib, hmac, importlib, json, os, re
    secret_path = os.environ.pop(env_var)
    with open(secret_path) as f:
        key_hex, results_path = f.read().split("\n", 1)
    os.remove(secret_path)
    key, results_path, seq = bytes.fromhex(key_hex), results_path.strip(), [0]
    import course_utils.labs as core
    real_result = core.Result
    lab = importlib.import_module(module_name)

    def record(question, status):
        seq[0] += 1
        body = f"{seq[0]}|{question}|{status}"
        mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
        with open(results_path, "a") as out:
            out.write(json.dumps({"body": body, "mac": mac}) + "\n")

    def wrap(question, check):
        @functools.wraps(check)
        def graded(*args, **kwargs):
            try:
                result = check(*args, **kwargs)
            except BaseException:
                record(question, "error")
                raise
            ok = type(result) is real_result and vars(result).get("ok") is True
            record(question, "pass" if ok else "fail")
            return result
        return graded

    for name in dir(lab):
        if re.fullmatch(r"q\d+", name) and hasattr(getattr(lab, name), "wrong_attempts"):
            setattr(lab, name, wrap(name, getattr(lab, name)))

_course_grade_setup(MODULE, ENV_VAR)
del _course_grade_setup
'''


@dataclass
class Graded:
    student: str
    notebook: str
    lab: str | None
    status: str
    questions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def questions_of(lab: str) -> list[str]:
    """The lab's questions: the ``qN`` check functions of ``course_utils.labs.labNN``, in order."""
    import importlib
    module = importlib.import_module(f"course_utils.labs.{lab}")
    names = [n for n in dir(module) if QUESTION_RE.fullmatch(n) and hasattr(getattr(module, n), "wrong_attempts")]
    return sorted(names, key=lambda n: int(n[1:]))


def detect_lab(nb, path: Path) -> str | None:
    """``labNN`` from the notebook's ``course_utils.labs`` import, else from its file name."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            found = IMPORT_RE.search(cell.source)
            if found:
                return found.group(1)
    found = NAME_RE.search(path.name)
    return f"lab{found.group(1)}" if found else None


def lab_folder(lab: str) -> Path | None:
    folders = sorted(LABS.glob(f"{lab}_*"))
    return folders[0] if folders else None


def read_records(path: Path, key: bytes) -> dict[str, str]:
    """The last authentic status of each question from the results file (forged lines dropped)."""
    last: dict[str, str] = {}
    seen: set[str] = set()
    if not path.exists():
        return last
    for line in path.read_text(errors="replace").splitlines():
        try:
            item = json.loads(line)
            body, mac = str(item["body"]), str(item["mac"])
            want = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
            seq, question, status = body.split("|")
        except (ValueError, KeyError, TypeError):
            continue
        if hmac.compare_digest(mac, want) and seq not in seen and status in ("pass", "fail", "error"):
            seen.add(seq)
            last[question] = status
    return last


def _check_cells(nb, question: str) -> list[int]:
    pattern = re.compile(rf"\.{question}\s*\(")
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and pattern.search(c.source)]


def _errored(cell) -> bool:
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


def _kill_tree(pid: int | None) -> list:
    """Kill the processes below ``pid`` (a kernel's children); return those found."""
    import psutil
    if pid is None:
        return []
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=5)
    return children


def grade_notebook(path: Path, student: str, timeout: float = 120) -> Graded:
    """Run one submission and return its statuses (never raises for a bad submission)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    start = time.monotonic()
    graded = Graded(student, path.name, None, "ok")
    try:
        nb = nbformat.read(path, as_version=4)  # not JSON, not a notebook, an unknown format: corrupt
        nb.cells = list(nb.cells)
    except Exception:
        graded.status = "corrupt"
        return graded
    graded.lab = detect_lab(nb, path)
    if graded.lab is None or lab_folder(graded.lab) is None:
        graded.status = "no-lab-detected"
        return graded
    questions = questions_of(graded.lab)

    with tempfile.TemporaryDirectory(prefix="grade_") as private, \
            tempfile.TemporaryDirectory(prefix="grade_work_") as work:
        work_dir, private_dir = Path(work), Path(private)
        for item in lab_folder(graded.lab).iterdir():
            if item.is_file() and item.suffix != ".ipynb":
                shutil.copy2(item, work_dir / item.name)
        shutil.copy2(path, work_dir / path.name)
        key, results = secrets.token_bytes(32), private_dir / "results.jsonl"
        secret = private_dir / f"{secrets.token_hex(8)}.key"
        secret.write_text(f"{key.hex()}\n{results}")
        setup = nbformat.v4.new_code_cell(SETUP_CELL.replace(
            "MODULE", repr(f"course_utils.labs.{graded.lab}")).replace("ENV_VAR)", f"{ENV_VAR!r})"))
        nb.cells.insert(0, setup)
        deadline = start + timeout
        client = NotebookClient(nb, kernel_name="python3", allow_errors=True, record_timing=False,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no plain-TCP warning
                                shutdown_kernel="immediate", startup_timeout=max(30, int(timeout)),
                                timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
                                resources={"metadata": {"path": str(work_dir)}})
        env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
        (work_dir / "tmp").mkdir()  # the notebook's own temporary files go away with the folder
        env.update({ENV_VAR: str(secret), "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
                    "TMPDIR": str(work_dir / "tmp")})
        try:
            with client.setup_kernel(env=env):  # shuts the kernel down ("immediate") on leaving
                pid = getattr(client.km.provisioner, "pid", None)
                try:
                    for index, cell in enumerate(nb.cells):
                        client.execute_cell(cell, index)
                finally:
                    _kill_tree(pid)
        except CellTimeoutError:
            graded.status = "timeout"
        except DeadKernelError:
            graded.status = "kernel-died"
        except Exception:  # the kernel could not start, or nbclient failed: report, never crash the class
            graded.status = "kernel-died"
        if graded.status == "ok" and (_errored(nb.cells[0]) or secret.exists()):
            graded.status = "grader-error"
        records = read_records(results, key)

    cells = nb.cells[1:]
    first_error = next((i for i, c in enumerate(cells) if _errored(c)), None)
    for q in questions:
        if q in records:
            graded.questions[q] = records[q]
        elif graded.status != "ok":
            graded.questions[q] = "error"
        else:
            where = _check_cells(nbformat.from_dict({"cells": cells}), q)
            broke = first_error is not None and (not where or first_error <= max(where))
            graded.questions[q] = "error" if broke else "missing"
    graded.seconds = time.monotonic() - start
    return graded


def submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, notebook) pairs of ``folder/<student>/*.ipynb``, sorted."""
    return [(nb.parent.name, nb) for nb in sorted(folder.glob("*/*.ipynb"))
            if ".ipynb_checkpoints" not in nb.parts]


def grade_class(folder: Path, out: Path, timeout: float = 120, log=print) -> list[Graded]:
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for student, path in submissions(folder):
        graded = grade_notebook(path, student, timeout)
        passed = sum(s == "pass" for s in graded.questions.values())
        log(f"{student:>16} {path.name:<32} {graded.lab or '-':<6} {graded.status:<16} "
            f"{passed}/{len(graded.questions)}  ({graded.seconds:.1f} s)")
        results.append(graded)
    write_csv(results, out / "grades.csv")
    write_html(results, out / "grades.html")
    return results


def write_csv(results: list[Graded], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "notebook", "lab", "notebook_status", "question", "status"])
        for g in results:
            for q, status in (g.questions or {"": ""}).items():
                writer.writerow([g.student, g.notebook, g.lab or "", g.status, q, status])


COLOURS = {"pass": "#c8f7c5", "fail": "#f7c5c5", "error": "#f7e2a8", "missing": "#e0e0e0"}
SYMBOLS = {"pass": "✔", "fail": "✘", "error": "error", "missing": "missing"}


def write_html(results: list[Graded], path: Path) -> None:
    esc = html.escape
    parts = ["<!doctype html><meta charset='utf-8'><title>Grades</title>",
             "<style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:3px 8px}"
             "table{border-collapse:collapse;margin-bottom:2em}</style><h1>Grades</h1>"]
    labs = sorted({g.lab or "(no lab)" for g in results})
    for lab in labs:
        rows = [g for g in results if (g.lab or "(no lab)") == lab]
        questions = questions_of(lab) if lab.startswith("lab") else []
        parts.append(f"<h2>{esc(lab)}</h2><table><tr><th>student</th><th>notebook</th><th>status</th>"
                     + "".join(f"<th>{esc(q)}</th>" for q in questions) + "<th>score</th></tr>")
        for g in rows:
            cells = "".join(f"<td style='background:{COLOURS.get(g.questions.get(q), '#fff')}'>"
                            f"{esc(SYMBOLS.get(g.questions.get(q, ''), '-'))}</td>" for q in questions)
            score = sum(s == "pass" for s in g.questions.values())
            parts.append(f"<tr><td>{esc(g.student)}</td><td>{esc(g.notebook)}</td><td>{esc(g.status)}</td>"
                         f"{cells}<td>{score}/{len(questions)}</td></tr>")
        if questions:  # per question: how many notebooks passed it
            parts.append("<tr><th colspan=3>passed by</th>" + "".join(
                f"<th>{sum(g.questions.get(q) == 'pass' for g in rows)}/{len(rows)}</th>" for q in questions)
                + "<th></th></tr>")
        parts.append("</table>")
    path.write_text("\n".join(parts), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=Path, help="folder of <student>/<notebook>.ipynb")
    parser.add_argument("--out", type=Path, default=Path("grade_report"), help="report folder")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per notebook")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder")
    results = grade_class(args.submissions, args.out, args.timeout)
    print(f"{len(results)} notebooks graded; report in {args.out}/grades.csv and grades.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
