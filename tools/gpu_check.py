"""`make gpu-check`: run the GPU-relevant lessons under nbval on a GPU machine and write a short report.

Usage: python tools/gpu_check.py [--out gpu_report] [--allow-cpu] [notebooks ...]
Default notebooks: 00, 09 and 12–17 (those that exist). The report (``REPORT.md`` and ``junit.xml`` in
``--out``) lists the devices PyTorch and TensorFlow see, each notebook's duration and outcome, and the
failing cells. Without a GPU it stops with a message (``--allow-cpu`` runs anyway, e.g. to compare).
"""
import argparse
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ("00", "09", "12", "13", "14", "15", "16", "17")


def default_notebooks() -> list[str]:
    return [str(p.relative_to(ROOT)) for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
            if p.name[:2] in LESSONS]


def devices() -> dict:
    """What each framework sees, from a fresh interpreter (course_utils first: triton before TF)."""
    code = ("import course_utils, torch, tensorflow as tf\n"
            "print(torch.cuda.device_count(), '|', ', '.join(torch.cuda.get_device_name(i) "
            "for i in range(torch.cuda.device_count())), '|', len(tf.config.list_physical_devices('GPU')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if out.returncode:
        return {"torch_gpus": 0, "names": "", "tf_gpus": 0, "error": out.stderr.strip().splitlines()[-1:]}
    n, names, tf_n = (s.strip() for s in out.stdout.strip().splitlines()[-1].split("|"))
    return {"torch_gpus": int(n), "names": names, "tf_gpus": int(tf_n)}


def summarise(junit: Path) -> dict[str, dict]:
    """Per notebook: seconds, cells run, failed cells (with the first line of each failure)."""
    notebooks: dict[str, dict] = defaultdict(lambda: {"seconds": 0.0, "cells": 0, "failed": []})
    for case in ET.parse(junit).getroot().iter("testcase"):
        entry = notebooks[Path(case.get("file") or case.get("classname") or "?").name]
        entry["seconds"] += float(case.get("time", 0))
        entry["cells"] += 1
        for bad in list(case.iter("failure")) + list(case.iter("error")):
            entry["failed"].append(f"{case.get('name')}: {(bad.get('message') or '').splitlines()[0][:160]}")
    return dict(notebooks)


def report(dev: dict, notebooks: dict[str, dict], wall: float) -> str:
    lines = ["# GPU check", "", f"- PyTorch sees {dev['torch_gpus']} GPU(s): {dev['names'] or '—'}",
             f"- TensorFlow sees {dev['tf_gpus']} GPU(s)", f"- wall time: {wall:.0f} s", "",
             "| notebook | cells | seconds | result |", "|---|---|---|---|"]
    for name, e in sorted(notebooks.items()):
        lines.append(f"| {name} | {e['cells']} | {e['seconds']:.1f} | {'ok' if not e['failed'] else 'FAILED'} |")
    for name, e in sorted(notebooks.items()):
        for f in e["failed"]:
            lines.append(f"- {name}: {f}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*")
    ap.add_argument("--out", default="gpu_report")
    ap.add_argument("--allow-cpu", action="store_true", help="run even when no GPU is visible")
    args = ap.parse_args(argv)
    dev = devices()
    if dev["torch_gpus"] == 0 and not args.allow_cpu:
        print("gpu-check: PyTorch sees no GPU here (run it on a GPU machine; `make gpu` first for "
              "TensorFlow's CUDA build), or pass --allow-cpu.", file=sys.stderr)
        return 2
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
                    f"--junitxml={out / 'junit.xml'}",
                    *(args.notebooks or default_notebooks())], cwd=ROOT)
    text = report(dev, summarise(out / "junit.xml"), time.perf_counter() - start)
    (out / "REPORT.md").write_text(text, encoding="utf-8")
    print(text)
    return 1 if "FAILED" in text else 0


if __name__ == "__main__":
    sys.exit(main())
