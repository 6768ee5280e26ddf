"""Run a student's ``ring_allreduce(tensor)`` on every rank and compare it with ``dist.all_reduce``.

Launched by ``course_utils.labs.lab07.q5`` through torchrun (you do not run it yourself):

    ring_harness.py STUDENT_FILE SEED SIZE [SIZE ...]

For each size every rank draws its own random float64 tensor, sums a copy with the library's
``dist.all_reduce`` (the reference), then calls the student's function on the tensor while
``dist.send`` / ``dist.isend`` are wrapped to count the bytes this rank sends. Each rank prints one
line ``RESULT {json}`` — the error and the bytes per size, or why the student's code could not run.
"""
import datetime
import importlib.util
import json
import os
import sys

import torch
import torch.distributed as dist


def load(path):
    spec = importlib.util.spec_from_file_location("student_ring", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ring_allreduce


def main():
    path, seed, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
    rank = dist.get_rank()
    report = {"rank": rank, "cases": [], "notdone": False, "error": None, "used_all_reduce": False}
    real = {name: getattr(dist, name) for name in ("send", "isend", "all_reduce")}
    sent = [0]

    def counting(name):
        def wrapped(tensor, *args, **kwargs):
            sent[0] += tensor.numel() * tensor.element_size()
            return real[name](tensor, *args, **kwargs)
        return wrapped

    def forbidden(*args, **kwargs):
        report["used_all_reduce"] = True
        return real["all_reduce"](*args, **kwargs)

    try:
        ring_allreduce = load(path)
        for i, size in enumerate(sizes):
            g = torch.Generator().manual_seed(seed + 1000 * i + rank)
            x = torch.randn(size, generator=g, dtype=torch.float64)
            reference = x.clone()
            real["all_reduce"](reference)
            sent[0] = 0
            dist.send, dist.isend, dist.all_reduce = counting("send"), counting("isend"), forbidden
            try:
                out = ring_allreduce(x)
            finally:
                dist.send, dist.isend, dist.all_reduce = real["send"], real["isend"], real["all_reduce"]
            result = out if isinstance(out, torch.Tensor) and out.shape == x.shape else x
            err = (result.double() - reference).abs().max().item()
            report["cases"].append({"size": size, "err": err if err == err else None, "sent": sent[0]})
    except NotImplementedError:
        report["notdone"] = True
    except Exception as exc:  # the student's bug: reported in one line by the checker
        report["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    print("RESULT " + json.dumps(report), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
