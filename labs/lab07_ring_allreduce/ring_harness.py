"""Run a student's ``ring_allreduce(tensor)`` on every rank and compare it with ``dist.all_reduce``.

Launched by ``course_utils.labs.lab07.q5`` through torchrun (you do not run it yourself):

    ring_harness.py STUDENT_FILE SECRETS_DIR DEADLINE_S SIZE [SIZE ...]

Each rank reads its own secret seed from ``SECRETS_DIR/rank<R>`` and deletes the file; after a
barrier no seed is left anywhere, and every rank has drawn its hidden float64 tensors. Only then
is the student's file imported, with the process group's point-to-point sends counted and its
collectives forbidden at the lowest Python level (``ProcessGroup`` methods), so every way of
calling them — ``dist.isend``, ``dist.send``, ``batch_isend_irecv``, ``from torch.distributed
import isend`` — goes through the count. The reference sum (the library's ``all_reduce``) is
computed after the student's function returned. A watchdog ends a rank that spends more than
DEADLINE_S in the student's function (a deadlock) long before the process group's own timeout.
Each rank prints one line ``RESULT {json}``.
"""
import datetime
import importlib.util
import json
import os
import sys
import threading
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.distributed_c10d import ProcessGroup

COLLECTIVES = [name for name in (
    "allreduce", "allreduce_coalesced", "allgather", "allgather_coalesced", "_allgather_base",
    "allgather_into_tensor_coalesced", "all_gather_single", "all_gather_single_coalesced", "reduce_scatter",
    "_reduce_scatter_base", "reduce_scatter_single", "reduce_scatter_single_coalesced",
    "reduce_scatter_tensor_coalesced", "broadcast", "reduce", "gather", "gather_into_tensor", "gather_single",
    "scatter", "alltoall", "alltoall_base", "all_to_all_single") if hasattr(ProcessGroup, name)]
PG_TIMEOUT_S = 300  # far longer than the watchdog's deadline: the student sees the friendly message


def emit(report):
    print("RESULT " + json.dumps(report), flush=True)


def main():
    path, secrets, deadline = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    sizes = [int(s) for s in sys.argv[4:]]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=PG_TIMEOUT_S))
    rank, world = dist.get_rank(), dist.get_world_size()
    report = {"rank": rank, "cases": [], "notdone": False, "error": None, "collective": None,
              "deadlock": False, "peers": []}
    mine = secrets / f"rank{rank}"
    generator = torch.Generator().manual_seed(int(mine.read_text()))
    mine.unlink()
    inputs = [torch.randn(size, generator=generator, dtype=torch.float64) for size in sizes]
    del generator
    dist.barrier()  # every rank has read and deleted its seed: none is left to find

    state = {"active": False, "sent": 0, "messages": []}
    real = {name: getattr(ProcessGroup, name) for name in ["send", *COLLECTIVES]}

    def send(self, tensors, dst, *args, **kwargs):
        if state["active"]:
            state["sent"] += sum(t.numel() * t.element_size() for t in tensors)
            state["messages"] += [t.numel() for t in tensors]  # elements per message
            if dst not in report["peers"]:
                report["peers"].append(int(dst))
        return real["send"](self, tensors, dst, *args, **kwargs)

    def forbidden(name):
        def call(self, *args, **kwargs):
            if state["active"]:
                report["collective"] = report["collective"] or name
                raise RuntimeError(f"lab 07: the collective {name} is not allowed here — send the chunks yourself")
            return real[name](self, *args, **kwargs)
        return call

    ProcessGroup.send = send
    for name in COLLECTIVES:
        setattr(ProcessGroup, name, forbidden(name))

    def hung():
        report["deadlock"] = True
        emit(report)
        os._exit(0)  # the other ranks are stuck too; their own watchdogs end them

    try:
        ring_allreduce = load(path)
        for size, x in zip(sizes, inputs):
            original = x.clone()
            state.update(active=True, sent=0, messages=[])
            watchdog = threading.Timer(deadline, hung)
            watchdog.daemon = True
            watchdog.start()
            try:
                out = ring_allreduce(x)
            finally:
                watchdog.cancel()
                state["active"] = False
            result = out if isinstance(out, torch.Tensor) and out.shape == x.shape else x
            reference = original.clone()
            dist.all_reduce(reference)  # the library's answer (allowed again: the student's call is over)
            err = (result.double() - reference).abs().max().item()
            report["cases"].append({"size": size, "err": err if err == err else None, "sent": state["sent"],
                                    "messages": state["messages"]})
            if report["collective"]:
                break
    except NotImplementedError:
        report["notdone"] = True
    except Exception as exc:  # the student's bug: reported in one line by the checker
        text = str(exc).strip()
        report["error"] = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    emit(report)
    if not (report["error"] or report["collective"]):  # a failed rank may leave its peers waiting
        dist.destroy_process_group()


def load(path):
    spec = importlib.util.spec_from_file_location("student_ring", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ring_allreduce


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
