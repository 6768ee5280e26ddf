"""What DDP does inside: gradient buckets, all-reduce overlapping the backward pass, compression hooks.

    torchrun --nproc-per-node=2 scripts/shard_buckets.py --data DATA.npz --out OUT [--layers 6 --width 512]

Part 1, buckets: for each ``--caps`` value (MB), DDP(model, bucket_cap_mb=cap) with a communication hook
that timestamps every bucket: when DDP hands it over (its gradients are ready) and when its all-reduce
has finished; a hook on every layer's weight timestamps when its gradient is ready.
Iteration 0 is recorded too: DDP starts with one bucket and rebuilds the buckets after it.
Part 2, compression: the same model trained ``--steps`` SGD steps with each built-in hook (plain
all-reduce, fp16, bf16, PowerSGD rank 1). In every step the hook's averaged gradient is compared with
the exact average, all-reduced on a separate process group, and the bytes each hook all-reduces are
counted (shard_comm.CommLog). Rank 0 writes OUT/buckets.json.
On CPUs the ranks use gloo; with a GPU per rank, NCCL and that GPU (course_utils.dist.backend / device).
There the time stamps are the host's: when the autograd engine and NCCL's completion callbacks run.
"""
import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel as DDP

from course_utils.dist import backend, device
from shard_comm import CommLog


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="npz with x (N, 64) float32 and y (N,) int64")
    p.add_argument("--out", required=True)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--batch", type=int, default=64, help="per rank")
    p.add_argument("--caps", type=float, nargs="+", default=[0.25, 1, 4, 25])
    p.add_argument("--iterations", type=int, default=4, help="per bucket cap")
    p.add_argument("--steps", type=int, default=12, help="per compression hook")
    return p.parse_args()


def make_model(args):
    """64 pixels -> width -> ... -> width -> 10 classes: ``--layers`` Linear layers, Tanh between them."""
    torch.manual_seed(0)
    sizes = [64] + [args.width] * (args.layers - 1) + [10]
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def batch(args, data, step):
    """Rank r's rows of global batch ``step`` (wrapping around the data set)."""
    x, y = data
    start = (step * dist.get_world_size() + dist.get_rank()) * args.batch % (len(x) - args.batch)
    return x[start:start + args.batch], y[start:start + args.batch]


def timed_hook(events, start):
    """Wrap the default all-reduce hook: log when a bucket is handed over and when its all-reduce ends."""
    def hook(state, bucket):
        called = time.perf_counter() - start[0]
        nbytes = bucket.buffer().numel() * bucket.buffer().element_size()
        fut = default_hooks.allreduce_hook(state, bucket)

        def done(f):
            events.append({"iteration": start[1], "bucket": bucket.index(), "bytes": nbytes,
                           "called": called, "done": time.perf_counter() - start[0]})
            return f.value()
        return fut.then(done)
    return hook


def bucket_runs(args, data):
    runs = {}
    for cap in args.caps:
        model = make_model(args).to(data[0].device)
        ddp = DDP(model, bucket_cap_mb=cap)
        events, start, layers = [], [0.0, 0], []
        ddp.register_comm_hook(None, timed_hook(events, start))
        for i, layer in enumerate(m for m in model if isinstance(m, nn.Linear)):
            layer.weight.register_post_accumulate_grad_hook(
                lambda p, i=i: layers.append((start[1], i, time.perf_counter() - start[0])))
        opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
        iterations = []
        for it in range(args.iterations):
            x, y = batch(args, data, it)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(ddp(x), y)
            start[:] = [time.perf_counter(), it]
            loss.backward()  # returns once every bucket's all-reduce is done
            iterations.append({"iteration": it, "backward_end": time.perf_counter() - start[0]})
            opt.step()
        runs[f"{cap:g}"] = {"events": events, "iterations": iterations,
                          "layers": [{"iteration": it, "layer": i, "grad_ready": t} for it, i, t in layers]}
    return runs


def measuring_hook(hook, state, exact_group, errors):
    """Run ``hook`` and compare its result with the exact average, all-reduced on ``exact_group``."""
    def wrapped(_, bucket):
        exact = bucket.buffer().clone()
        dist.all_reduce(exact, group=exact_group)
        exact /= dist.get_world_size()
        fut = hook(state, bucket)

        def compare(f):
            out = f.value()
            out = out[0] if isinstance(out, list) else out
            errors.append(float((out - exact).norm() / exact.norm()))
            return out
        return fut.then(compare)
    return wrapped


def compression_runs(args, data):
    exact_group = dist.new_group()  # measurements only: its traffic is not counted
    hooks = {"all-reduce (exact)": lambda: (default_hooks.allreduce_hook, None),
             "fp16": lambda: (default_hooks.fp16_compress_hook, None),
             "bf16": lambda: (default_hooks.bf16_compress_hook, None),
             "PowerSGD rank 1": lambda: (powerSGD_hook.powerSGD_hook, powerSGD_hook.PowerSGDState(
                 process_group=None, matrix_approximation_rank=1, start_powerSGD_iter=2))}
    runs = {}
    for name, make in hooks.items():
        hook, state = make()
        ddp = DDP(make_model(args).to(data[0].device), bucket_cap_mb=25)
        errors, losses = [], []
        ddp.register_comm_hook(None, measuring_hook(hook, state, exact_group, errors))
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        log = CommLog(ignore=[exact_group])
        for step in range(args.steps):
            x, y = batch(args, data, step)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(ddp(x), y)
            with log if step == args.steps - 1 else contextlib.nullcontext():  # count the bytes of the last step
                loss.backward()
            opt.step()
            losses.append(loss.item())
        runs[name] = {"errors": errors, "losses": losses, "sent": log.summary(dist.get_world_size())["total"],
                      "allreduce_bytes": sum(n for _, n in log.calls)}
    return runs


def main():
    args = parse_args()
    dist.init_process_group(backend())  # gloo on CPUs; NCCL when each rank has a GPU
    dev = device()
    with np.load(args.data) as f:
        data = torch.tensor(f["x"]).to(dev), torch.tensor(f["y"]).to(dev)
    result = {"world": dist.get_world_size(), "model_bytes": sum(
        p.numel() * p.element_size() for p in make_model(args).parameters()),
        "buckets": bucket_runs(args, data), "compression": compression_runs(args, data)}
    if dist.get_rank() == 0:
        Path(args.out, "buckets.json").write_text(json.dumps(result))
        print("buckets per iteration:", {cap: [sum(e["iteration"] == it for e in run["events"])
                                               for it in range(args.iterations)]
                                         for cap, run in result["buckets"].items()}, flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
