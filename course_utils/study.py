"""Benchmark results you can trust later: every row carries the environment it was measured in.

    from course_utils import study
    fp = study.fingerprint(threads=1)              # versions, CPU, threads, GPU, course commit
    row = study.row("pytorch", "resnet18", "ddp", workers=2, images_per_step=64,
                    seconds=timing, memory={"peak_rss": ...}, fingerprint=fp)
    study.save([row, ...], "results/cpu.json")     # and results/cpu.csv next to it
    rows = study.load("results/cpu.json")
    study.check_comparable(rows)                   # FingerprintMismatch unless every row matches
    study.table(rows)                              # a pandas DataFrame: images/s median, 95 % CI, ...

A row is a plain dict (JSON as it is): what ran (framework, model, strategy, workers, batch sizes),
how it was timed (warm-up, the raw per-repeat seconds of the slowest rank), the summary statistics of
the throughput (median, bootstrap 95 % interval, MLPerf-style trimmed mean), memory, and the
fingerprint. The statistics are recomputed from the raw samples by ``row``; nothing is typed in.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from .bench import Timing

PACKAGES = ("torch", "torchvision", "tensorflow-cpu", "tensorflow", "keras", "horovod", "numpy")
ROOT = Path(__file__).resolve().parent.parent


class FingerprintMismatch(ValueError):
    """Rows measured in different environments were put in one comparison."""


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


MEASURING_CODE = ("course_utils", "notebooks/scripts")  # what a commit must touch to change a measurement


def _git_commit() -> str:
    """The last commit that changed the measuring code (not HEAD: lessons and docs move without changing
    a number), with "+dirty" when that code has uncommitted changes; "unknown" outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    try:
        commit = git("log", "-1", "--format=%h", "--abbrev=12", "--", *MEASURING_CODE)
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", *MEASURING_CODE)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) if commit else "unknown"


def _gpus() -> tuple[str | None, str | None]:
    """(GPU models, driver version) from nvidia-smi; (None, None) without an NVIDIA GPU."""
    if shutil.which("nvidia-smi") is None:
        return None, None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None, None
    if not out:
        return None, None
    names = [line.split(",")[0].strip() for line in out]
    return f"{len(names)}x {names[0]}" if len(set(names)) == 1 else " + ".join(names), out[0].split(",")[-1].strip()


def fingerprint(threads: int | None = None) -> dict[str, Any]:
    """What a throughput number depends on besides the code: library versions, Python, CPU model and
    cores, threads each worker may use (``threads``; default: torch's setting when torch is loaded),
    ``OMP_NUM_THREADS``, GPU model and driver when present, and the course commit of the measuring code."""
    if threads is None and "torch" in sys.modules:
        threads = sys.modules["torch"].get_num_threads()
    gpu, driver = _gpus()
    fp = {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}",
          "cpu": _cpu_model(), "cores": os.cpu_count(), "threads_per_worker": threads,
          "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "gpu": gpu, "driver": driver,
          "course_commit": _git_commit()}
    fp.update({name: _version(name) for name in PACKAGES})
    return fp


def row(framework: str, model: str, strategy: str, *, workers: int, images_per_step: int, seconds,
        steps_per_repeat: int = 1, memory: dict | None = None, fingerprint: dict | None = None,
        **extra: Any) -> dict[str, Any]:
    """One result: ``seconds`` is a ``bench.Timing`` (or raw per-repeat seconds) of ``steps_per_repeat``
    training steps of ``images_per_step`` images in all (every worker together). The throughput
    statistics are computed here from those samples."""
    timing = seconds if isinstance(seconds, Timing) else Timing(tuple(seconds))
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (workers, images_per_step, steps_per_repeat)):
        raise ValueError(f"workers, images_per_step and steps_per_repeat must be positive integers, got "
                         f"{workers!r}, {images_per_step!r}, {steps_per_repeat!r}")
    rate = timing.per(images_per_step * steps_per_repeat, "images/s")
    stats = rate.to_dict()
    return {"framework": framework, "model": model, "strategy": strategy, "workers": workers,
            "images_per_step": images_per_step, "steps_per_repeat": steps_per_repeat,
            "warmup": timing.warmup, "repeats": timing.n, "seconds": list(timing.samples),
            "images_per_s": {k: stats[k] for k in ("median", "ci_lo", "ci_hi", "trimmed_mean", "q1", "q3")},
            "memory": dict(memory or {}), "fingerprint": dict(fingerprint or {}), **extra}


def differences(a: dict, b: dict) -> dict[str, tuple]:
    """Fingerprint keys whose values differ: {key: (a's value, b's value)}."""
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_comparable(rows: Iterable[dict], allow_mixed: bool = False) -> list[dict]:
    """Return ``rows`` if they all carry the same non-empty fingerprint; otherwise raise
    ``FingerprintMismatch`` naming what differs — unless ``allow_mixed=True`` (then say so in the text)."""
    rows = list(rows)
    missing = [i for i, r in enumerate(rows) if not r.get("fingerprint")]
    if missing:
        raise FingerprintMismatch(f"rows {missing} have no fingerprint: nothing says where they were measured")
    first = rows[0]["fingerprint"] if rows else {}
    for i, r in enumerate(rows[1:], 1):
        diff = differences(first, r["fingerprint"])
        if diff and not allow_mixed:
            what = "; ".join(f"{k}: {x!r} vs {y!r}" for k, (x, y) in diff.items())
            raise FingerprintMismatch(
                f"row {i} ({r.get('model')}, {r.get('strategy')}, {r.get('workers')} workers) was measured in a "
                f"different environment from row 0 — {what}. Compare them only with allow_mixed=True, and say so.")
    return rows


def save(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write ``rows`` as JSON to ``path`` and as CSV (one flat line per row) next to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1) + "\n")
    flat = [_flatten(r) for r in rows]
    columns = list(dict.fromkeys(k for f in flat for k in f))
    with path.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(flat)
    return path


def _flatten(r: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in r.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = (" ".join(f"{x:.6g}" if isinstance(x, (int, float)) else str(x) for x in v)
                               if isinstance(v, list) else v)
    return out


def load(*paths: str | os.PathLike) -> list[dict]:
    """Rows from one or more JSON files written by ``save`` (e.g. a CPU run and a GPU node's run)."""
    rows = []
    for p in paths:
        data = json.loads(Path(p).read_text())
        if not isinstance(data, list) or not all(isinstance(r, dict) and "images_per_s" in r for r in data):
            raise ValueError(f"{p} is not a list of benchmark rows written by course_utils.study.save")
        rows += data
    return rows


def table(rows: Iterable[dict]):
    """A pandas DataFrame, one line per row: images/s median, 95 % interval, trimmed mean, memory (MiB)."""
    import pandas as pd
    lines = []
    for r in rows:
        t = r["images_per_s"]
        line = {"framework": r["framework"], "model": r["model"], "strategy": r["strategy"],
                "workers": r["workers"], "images/s (median)": t["median"], "95% CI low": t["ci_lo"],
                "95% CI high": t["ci_hi"], "trimmed mean": t["trimmed_mean"], "repeats": r["repeats"]}
        line.update({f"{k} (MiB)": v / 2**20 for k, v in r["memory"].items() if isinstance(v, (int, float))})
        lines.append(line)
    return pd.DataFrame(lines)
