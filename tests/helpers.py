"""Small helpers shared by the tests."""
import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def run_python(code: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter of this venv; capture output."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def need(tool: str, why: str) -> str:
    """Path of a command-line tool; skip (or, under CI, fail) when it is missing."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed: {why}"
        if IN_CI:
            pytest.fail(f"{message} (CI must install it)", pytrace=False)
        pytest.skip(message)
    return path


# --- lab-checker tests ---

def notebook_namespace(path: Path, skip: tuple[str, ...] = ("check.q",)) -> dict:
    """Run a lab notebook's code cells (except those containing any text in `skip`); return the namespace."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    namespace: dict = {}
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "code" and not any(s in src for s in skip):
            exec(compile(src, path.name, "exec"), namespace)
    return namespace


def failed(capsys, result, *expected) -> str:
    """Assert a check failed with one clean ✘ line (no traceback) containing every `expected` text.

    A wrong answer comes with a hint; "not done yet" shows only the instruction (no hint)."""
    out = capsys.readouterr().out
    assert not result, out
    assert out.startswith("✘") and "Traceback" not in out, out
    assert ("hint:" in out) != ("not done yet" in out), out
    for text in expected:
        assert text in out, out
    return out


def check_line(capsys, check_fn, *answers) -> tuple[bool, str]:
    """Run a check; assert it printed at most one line (+ hint) and no traceback; return (passed, line)."""
    result = check_fn(*answers)
    line = capsys.readouterr().out
    assert line.count("\n") <= 2 and "Traceback" not in line
    return bool(result), line


def stub(*args):
    """A starter's unfinished exercise."""
    raise NotImplementedError


@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port, no request log); yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def only_local(outside: list[str]):
    """A playwright route handler: requests to 127.0.0.1 (and data:/blob:) go through; every other
    request is aborted and its URL appended to ``outside``."""
    def route(r):
        url = r.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname == "127.0.0.1":
            r.continue_()
        else:
            outside.append(url)
            r.abort()
    return route


def raisers() -> list:
    """Student functions that raise what careless checker code meets: a failed float→int, an
    overflow, a missing key, even ``sys.exit``."""
    def raiser(exc):
        def answer(*args):
            raise exc
        return answer
    return [raiser(e) for e in (ValueError("cannot convert float NaN to integer"), OverflowError(), KeyError(1),
                                SystemExit(2))]


def every_answer_gives_one_line(capsys, q, answers) -> None:
    """Each answer (and each of ``raisers()``) gets one ✘ line from ``q``: never a traceback, never the
    core's 'could not be checked' (which would mean a bug in the checker)."""
    for answer in list(answers) + raisers():
        ok, out = q(answer), capsys.readouterr().out
        assert not ok and out.startswith("✘") and "Traceback" not in out, out
        assert "could not be checked" not in out, out


def leftovers(tag: str) -> list[int]:
    """PIDs of live (not zombie) processes whose environment has COURSE_TEST_TAG=tag: after a launch, none."""
    import psutil
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("COURSE_TEST_TAG") == tag and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p.pid)
        except (psutil.Error, OSError):
            pass
    return found
