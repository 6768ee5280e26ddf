"""The benchmark study of lesson 17 from a terminal — or one configuration from Python.

From a terminal (the repository root), a grid of models × strategies × workers, one result row each:

    python notebooks/scripts/benchmark.py --models resnet50 efficientnet_b0 \\
        --strategies single ddp horovod pipeline mirrored --workers 1 2 --batch 16 --repeats 7 \\
        --out notebooks/results/study_cpu.json
    python notebooks/scripts/benchmark.py --quick --out /tmp/smoke.json    # a tiny smoke run (< 1 min)

From Python (a notebook, with ``notebooks/scripts`` on ``sys.path``):

    from benchmark import run
    row = run("resnet50", "ddp", 2, batch=16, steps=1, repeats=7)   # a course_utils.study row (dict)

Each configuration is one launch on 127.0.0.1 with a timeout, and nothing is left running after it:
``single`` one plain process, ``ddp`` and ``pipeline`` ``course_utils.dist.torchrun``, ``horovod``
``course_utils.dist.horovodrun`` (all PyTorch: ``bench_torch.py``), ``mirrored`` one Keras process
(``bench_keras.py``, MirroredStrategy over ``workers`` devices). Every worker process (or Keras
replica) gets 1 thread, so on the course's 2-core machine 1 -> 2 workers is the only honest scaling.
Combinations that cannot run are skipped with the reason printed (pipeline = exactly 2 workers,
single = 1 worker, Keras has no ResNeXt, Horovod not built: run ``make horovod``). The rows are saved
(``course_utils.study.save``: JSON + CSV) after every configuration, so a crash keeps what finished.
Each row also records ``launch_seconds``: the wall time of its launch, process start included.

On a GPU node: the same command. ``--workers`` defaults to 1, 2, 4, ... up to the GPUs present, each
rank gets its own GPU (NCCL) when there are enough (``course_utils.dist.plan_devices``); GPU rows carry
``gpu_max_allocated`` / ``gpu_max_reserved`` and the GPU model in their fingerprint. Use batches that
fill a GPU and more steps per repeat, and write to a file of its own, e.g.

    python notebooks/scripts/benchmark.py --batch 128 --steps 10 --out notebooks/results/study_gpu.json

then load both files in lesson 17 (``study.load``): ``study.check_comparable`` refuses to mix them in
one comparison unless told to (``allow_mixed=True``), and says which fingerprint keys differ.

Under Slurm, on one or more nodes: submit the worker itself with the course's batch script, which starts
one torchrun per node (see notebooks/scripts/CLUSTER.md, "Slurm, ready to submit"):

    export PYTHONPATH=$PWD                      # course_utils, for every rank
    sbatch --nodes=2 --export=ALL,NPROC=4 notebooks/scripts/slurm_ddp.sbatch \\
        notebooks/scripts/bench_torch.py --model resnet50 --strategy ddp --batch 128 --steps 10 \\
        --out notebooks/results/slurm_resnet50_ddp_8.json

(rank 0 writes that one-row JSON file; ``study.load`` reads it like any other.)
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:  # course_utils, when run as a script
    sys.path.insert(0, str(ROOT))

from course_utils import dist, study  # noqa: E402
from course_utils.processes import MARKER, kill_all, pump, spawn  # noqa: E402

TORCH_SCRIPT, KERAS_SCRIPT = HERE / "bench_torch.py", HERE / "bench_keras.py"
MODELS = ("resnet50", "resnext50_32x4d", "efficientnet_b0")
KERAS_MODELS = {"resnet50": "ResNet50", "efficientnet_b0": "EfficientNetB0"}  # Keras has no ResNeXt
STRATEGIES = ("single", "ddp", "horovod", "pipeline", "mirrored")
QUICK = dict(configs=[("resnet50", "single", 1), ("resnet50", "ddp", 2)], batch=4, steps=1, warmup=1, repeats=5)


@functools.cache
def horovod_available() -> bool:
    """True when ``import horovod.torch`` works (checked in a separate process: it loads torch)
    and ``course_utils.dist`` can launch it."""
    if not hasattr(dist, "horovodrun"):
        return False
    try:
        return subprocess.run([sys.executable, "-c", "import horovod.torch"], capture_output=True,
                              timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def skip_reason(model: str, strategy: str, workers: int) -> str | None:
    """Why this configuration cannot run here (None: it can)."""
    if strategy not in STRATEGIES:
        return f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})"
    if workers < 1:
        return "needs at least 1 worker"
    if strategy == "single" and workers != 1:
        return "single is one process: 1 worker"
    if strategy == "pipeline" and workers != 2:
        return "the pipeline has 2 stages, one per worker: exactly 2 workers"
    if strategy == "mirrored":
        if _keras_name(model) is None:
            return f"Keras has no {model} (keras.applications has no ResNeXt)"
        if not KERAS_SCRIPT.is_file():
            return f"{KERAS_SCRIPT.name} is not there yet"
    elif model not in MODELS:
        return f"unknown PyTorch model {model!r} (one of {', '.join(MODELS)})"
    if strategy == "horovod" and not horovod_available():
        return "Horovod is not importable here: run `make horovod`"
    return None


def _keras_name(model: str) -> str | None:
    return KERAS_MODELS.get(model) or (model if model in KERAS_MODELS.values() else None)


def _one_process(cmd: list[str], timeout: float, stream: bool, threads: int | None) -> list[str]:
    """Run one process with a timeout; its output lines. Raises ``dist.DistError`` if it fails or
    outlives ``timeout``; whatever happens, it and anything it started are stopped afterwards."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3", **{MARKER: uuid.uuid4().hex})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.pop("MPLBACKEND", None)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    lines: list[str] = []
    out: queue.Queue = queue.Queue()
    proc = spawn(cmd, env, str(ROOT))
    try:
        threading.Thread(target=pump, args=(proc, 0, out), daemon=True).start()
        deadline = time.perf_counter() + timeout
        while True:
            try:
                _, line = out.get(timeout=max(0.01, min(0.2, deadline - time.perf_counter())))
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                lines.append(line)
                if stream:
                    print(line, flush=True)
            if time.perf_counter() > deadline:
                raise dist.DistError(f"{Path(cmd[2]).name} timed out after {timeout:g} s; its last lines:\n"
                                     + "\n".join("    " + s for s in lines[-15:]), 0, {0: lines})
        if proc.wait() != 0:
            raise dist.DistError(f"{Path(cmd[2]).name} failed (exit code {proc.returncode}); its last lines:\n"
                                 + "\n".join("    " + s for s in lines[-15:]), 0, {0: lines})
        return lines
    finally:
        kill_all([proc], env[MARKER])


def run(model: str, strategy: str, workers: int = 1, *, batch: int = 16, steps: int = 1, warmup: int = 2,
        repeats: int = 7, microbatches: int = 4, timeout: float = 600, stream: bool = False) -> dict:
    """Run one configuration in fresh processes and return its result row (``course_utils.study.row``).

    ``batch`` is per worker (pipeline: the batch through the pipe, cut into ``microbatches``);
    ``steps`` training steps per timed repeat, after ``warmup`` untimed repeats. ``strategy``
    "mirrored" runs Keras (``model`` "resnet50" or "ResNet50" ...), the others PyTorch. The row gets
    ``launch_seconds``: the wall time of the launch including process start. Raises ``ValueError``
    for a configuration that cannot run here (the reason), ``dist.DistError`` if the launch fails.
    """
    reason = skip_reason(model, strategy, workers)
    if reason:
        raise ValueError(f"{model} {strategy} x{workers}: {reason}")
    common = ["--batch", batch, "--steps", steps, "--warmup", warmup, "--repeats", repeats]
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        out = Path(tmp) / "row.json"
        start = time.perf_counter()
        if strategy == "mirrored":
            args = ["--model", _keras_name(model), "--workers", workers, *common, "--out", out]
            _one_process([sys.executable, "-u", str(KERAS_SCRIPT), *map(str, args)], timeout, stream, None)
        else:
            args = ["--model", model, "--strategy", strategy, *common, "--microbatches", microbatches, "--out", out]
            if strategy == "single":
                _one_process([sys.executable, "-u", str(TORCH_SCRIPT), *map(str, args)], timeout, stream, 1)
            elif strategy == "horovod":
                dist.horovodrun(TORCH_SCRIPT, nprocs=workers, args=args, timeout=timeout, threads=1, stream=stream)
            else:  # ddp, pipeline
                dist.torchrun(TORCH_SCRIPT, nprocs=workers, args=args, timeout=timeout, threads=1, stream=stream)
        seconds = time.perf_counter() - start
        if not out.is_file():
            raise dist.DistError(f"{model} {strategy} x{workers} ended without writing its result row")
        (row,) = json.loads(out.read_text())
    row["launch_seconds"] = round(seconds, 2)
    return row


def grid(models, strategies, workers) -> list[tuple[str, str, int]]:
    return [(m, s, w) for m in models for s in strategies for w in workers]


def default_workers() -> list[int]:
    """1, 2 on a CPU machine; 1, 2, 4, ... and the number of GPUs on a GPU node."""
    import torch
    n = torch.cuda.device_count()
    if n < 2:
        return [1, 2]
    return sorted({2 ** k for k in range(n.bit_length()) if 2 ** k <= n} | {n})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="The lesson 17 benchmark study: models × strategies × workers.")
    ap.add_argument("--models", nargs="+", default=list(MODELS), metavar="MODEL",
                    help=f"PyTorch names: {', '.join(MODELS)} (mirrored uses the Keras model of that name)")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES, metavar="STRATEGY",
                    help=", ".join(STRATEGIES))
    ap.add_argument("--workers", nargs="+", type=int, help="default: 1 2 (CPU), up to the GPUs on a GPU node")
    ap.add_argument("--batch", type=int, default=16, help="images per worker per step (pipeline: through the pipe)")
    ap.add_argument("--steps", type=int, default=1, help="training steps per timed repeat")
    ap.add_argument("--warmup", type=int, default=2, help="untimed repeats first")
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats (at least 5 for the study)")
    ap.add_argument("--microbatches", type=int, default=4, help="pipeline micro-batches per step")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per configuration")
    ap.add_argument("--out", required=True, help="JSON file for the rows (a CSV is written next to it)")
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out and add to them")
    ap.add_argument("--quick", action="store_true", help="a tiny smoke run: resnet50 single and ddp x2, batch 4")
    ap.add_argument("--verbose", action="store_true", help="show every worker's output")
    args = ap.parse_args(argv)

    from tqdm.auto import tqdm
    if args.quick:
        configs = QUICK["configs"]
        for key in ("batch", "steps", "warmup", "repeats"):
            setattr(args, key, QUICK[key])
    else:
        configs = grid(args.models, args.strategies, args.workers or default_workers())
    rows = study.load(args.out) if args.append and Path(args.out).is_file() else []
    runnable = []
    for model, strategy, workers in configs:
        reason = skip_reason(model, strategy, workers)
        if reason:
            print(f"skip {model} {strategy} x{workers}: {reason}", flush=True)
        else:
            runnable.append((model, strategy, workers))
    failed = []
    bar = tqdm(runnable, desc="configurations", unit="config", file=sys.stdout)
    for model, strategy, workers in bar:
        bar.set_postfix_str(f"{model} {strategy} x{workers}")
        try:
            row = run(model, strategy, workers, batch=args.batch, steps=args.steps, warmup=args.warmup,
                      repeats=args.repeats, microbatches=args.microbatches, timeout=args.timeout,
                      stream=args.verbose)
        except (dist.DistError, ValueError, OSError) as err:
            failed.append((model, strategy, workers))
            tqdm.write(f"FAILED {model} {strategy} x{workers}: {err}", file=sys.stdout)
            continue
        rows.append(row)
        study.save(rows, args.out)  # after every row: a crash keeps what finished
        t = row["images_per_s"]
        tqdm.write(f"{row['model']} {strategy} x{workers}: {t['median']:.1f} images/s "
                   f"(95 % interval {t['ci_lo']:.1f}-{t['ci_hi']:.1f}), peak RSS "
                   f"{row['memory'].get('peak_rss', 0) / 2**20:.0f} MiB, launch {row['launch_seconds']:.1f} s",
                   file=sys.stdout)
    bar.close()
    if rows:
        study.save(rows, args.out)
        print(f"{len(rows)} rows in {args.out} (and {Path(args.out).with_suffix('.csv').name})", flush=True)
    if failed:
        print(f"{len(failed)} configuration(s) failed: " + ", ".join(f"{m} {s} x{w}" for m, s, w in failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
