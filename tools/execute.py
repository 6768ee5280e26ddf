"""Re-execute notebooks in place, each in a fresh kernel, so stored outputs are a clean Run-All.

Usage: python tools/execute.py notebooks/05_cnn.ipynb [more.ipynb ...]   (what `make execute` runs)
Cells run in order from the notebook's own folder, with PYTHONHASHSEED=0; no timing metadata is
stored, so re-running an unchanged notebook gives the same file apart from timings and addresses.
"""
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, timeout: int = 900) -> float:
    nb = nbformat.read(path, as_version=4)
    os.environ["PYTHONHASHSEED"] = "0"
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]]
    if not paths:
        sys.exit(__doc__)
    for p in paths:
        print(f"executing {p} ...", flush=True)
        print(f"  done in {execute(p):.1f} s", flush=True)
