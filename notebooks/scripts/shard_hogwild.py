"""Hogwild: lock-free asynchronous SGD on one machine, the model's parameters in shared memory.

    python scripts/shard_hogwild.py --data DATA.npz --out OUT [--workers 2 --steps 300]

The parent builds the model and calls ``model.share_memory()``: the parameter tensors move to shared
memory, so every worker process sees the SAME numbers. Workers are forked on Linux (fast: they inherit
the imported torch; torch.set_num_threads(1) before any work keeps a forked child from hanging in
the parent's thread pool) and spawned elsewhere (a fresh interpreter that imports this file: the
reason the worker lives in a script, not in a notebook cell). Each worker draws its own
mini-batches and updates the shared parameters in place with plain SGD, without any lock: updates from
two workers may interleave, one may overwrite part of another's (Hogwild's bet: with sparse or small
updates this rarely hurts). No gradient is ever sent anywhere, no worker waits for another.
Writes OUT/hogwild.json: each worker's batch losses and when it computed them (seconds since the
workers were started), and the full-data loss before and after.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
from torch import nn


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=300, help="SGD steps per worker")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    return p.parse_args()


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))


def worker(rank, model, x, y, args, losses, times, start):
    torch.set_num_threads(1)  # workers × threads must not exceed the cores
    g = torch.Generator().manual_seed(rank)  # every worker its own sequence of mini-batches
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)  # updates the shared tensors in place
    for step in range(args.steps):
        idx = torch.randint(len(x), (args.batch,), generator=g)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()  # no lock, no communication: write straight into shared memory
        losses[rank * args.steps + step] = loss.item()
        times[rank * args.steps + step] = time.time() - start


def full_loss(model, x, y):
    with torch.no_grad():
        return nn.functional.cross_entropy(model(x), y).item()


def main():
    args = parse_args()
    torch.set_num_threads(1)
    with np.load(args.data) as f:
        x, y = torch.tensor(f["x"]), torch.tensor(f["y"])
    model = make_model()
    model.share_memory()  # parameters now live in shared memory
    losses = torch.zeros(args.workers * args.steps).share_memory_()
    times = torch.zeros(args.workers * args.steps, dtype=torch.float64).share_memory_()
    before = full_loss(model, x, y)
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    mp.start_processes(worker, args=(model, x, y, args, losses, times, time.time()), nprocs=args.workers,
                       start_method=method)
    after = full_loss(model, x, y)
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    Path(args.out, "hogwild.json").write_text(json.dumps({
        "workers": args.workers, "steps": args.steps, "loss_before": before, "loss_after": after,
        "accuracy": accuracy, "losses": losses.view(args.workers, args.steps).tolist(),
        "seconds": times.view(args.workers, args.steps).tolist(),
        "shared": all(p.is_shared() for p in model.parameters())}))
    print(f"Hogwild, {args.workers} processes × {args.steps} steps: full-data loss {before:.3f} -> {after:.3f}")


if __name__ == "__main__":
    sys.exit(main())
