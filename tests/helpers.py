"""Small helpers shared by the tests."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
