"""Suite-wide test plumbing: notebook time budgets (COURSE.md §7) and a check for leftover processes.

Every notebook runs under nbval in its own kernel. Its wall time (all its cells) is summed and
reported in a table at the end; a notebook past HARD_LIMIT_S is stopped and fails. Budgets are
for the 2-core CI machine; with COURSE_STRICT_BUDGETS=1 a notebook over its budget fails too.
After the run, any process the tests started and left running fails the session.
"""
import os
import time
from collections import defaultdict
from pathlib import Path

import psutil
import pytest

HARD_LIMIT_S = 300
BUDGET_S = {"00": 60, **{n: 120 for n in ("11", "12", "13", "14", "15", "16", "17")}}  # by prefix; others: 90
STRICT = os.environ.get("COURSE_STRICT_BUDGETS") == "1"

_elapsed: dict[Path, float] = defaultdict(float)


def budget(path: Path) -> int:
    return BUDGET_S.get(path.name[:2], 90) if path.parent.name == "notebooks" else 90


def _label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    path = Path(item.nodeid.split("::")[0])
    if path.suffix == ".ipynb" and _elapsed[path] > HARD_LIMIT_S:
        pytest.fail(f"{_label(path)} has run {_elapsed[path]:.0f} s (> {HARD_LIMIT_S} s): stopped", pytrace=False)


def pytest_runtest_logreport(report):
    path = Path(report.nodeid.split("::")[0])
    if path.suffix == ".ipynb":
        _elapsed[path] += report.duration
        if STRICT and report.when == "teardown" and _elapsed[path] > budget(path):
            report.outcome = "failed"
            report.longrepr = f"{_label(path)} took {_elapsed[path]:.0f} s, budget {budget(path)} s"


def pytest_terminal_summary(terminalreporter):
    if not _elapsed:
        return
    tr = terminalreporter
    tr.section("notebook wall times (budget on the 2-core CI machine)")
    for path, seconds in sorted(_elapsed.items()):
        flag = "" if seconds <= budget(path) else "   OVER BUDGET"
        tr.write_line(f"{seconds:7.1f} s  / {budget(path):3d} s  {_label(path)}{flag}")
    tr.write_line(f"{sum(_elapsed.values()):7.1f} s  total for {len(_elapsed)} notebooks")


def pytest_sessionfinish(session):
    time.sleep(0.5)  # let kernels and launched workers finish exiting
    left = [p for p in psutil.Process().children(recursive=True) if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE]
    if left:
        names = ", ".join(f"{p.pid}:{p.name()}" for p in left)
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"ERROR: tests left {len(left)} process(es) running: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
