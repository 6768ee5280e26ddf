"""Synchronous vs asynchronous SGD with a hand-written parameter server (send/recv).

    torchrun --nproc-per-node=3 scripts/async_ps.py --data DATA.npz --out OUT [--grads 120 --delay 0.01]

Rank 0 is the parameter server (PS), ranks 1.. are workers. A worker loops: receive the
parameters (and their version), compute a gradient on its next batch, send it back. The PS
  sync:  waits for one gradient from every worker, averages them, steps once with the lr
         scaled by the number of workers (linear scaling rule), replies to all;
  async: applies each gradient the moment it arrives and replies to that worker only,
         so a gradient may be "stale": computed on parameters that have changed since.
The last worker is a straggler (sleeps --delay s per gradient). Both modes process the same
number of gradients. Rank 0 writes OUT/ps.json: train loss and accuracy over time, staleness.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters


def make_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))


def server(model, x, y, args, mode):
    workers = list(range(1, dist.get_world_size()))
    vec = parameters_to_vector(model.parameters()).detach()
    msg = torch.zeros(vec.numel() + 1)  # [version, values...] both ways
    version, staleness, log, done, start = 0, [], [], 0, time.perf_counter()

    def reply(worker, stop=False):
        dist.send(torch.cat([torch.tensor([-1.0 if stop else float(version)]), vec]), worker)

    def evaluate():
        with torch.no_grad():
            vector_to_parameters(vec, model.parameters())
            out = model(x)
            log.append(dict(grads=done, seconds=time.perf_counter() - start,
                            loss=nn.functional.cross_entropy(out, y).item(),
                            acc=(out.argmax(1) == y).float().mean().item()))

    for w in workers:
        reply(w)
    evaluate()
    active = set(workers)
    while active:
        if mode == "async":
            sender = dist.recv(msg)  # from whichever worker is first
            grads, arrived = [msg[1:].clone()], [(sender, int(msg[0]))]
        else:
            grads, arrived = [], []
            for w in sorted(active):  # wait for every worker, the slowest included
                dist.recv(msg, w)
                grads.append(msg[1:].clone())
                arrived.append((w, int(msg[0])))
        if done < args.grads:
            vec -= args.lr * len(grads) * torch.stack(grads).mean(0)  # linear scaling rule
            staleness += [version - v for _, v in arrived]
            done += len(grads)
            version += 1
            if done % 10 < len(grads) or done >= args.grads:
                evaluate()
        for w, _ in arrived:
            reply(w, stop=done >= args.grads)
            if done >= args.grads:
                active.discard(w)
    return dict(log=log, staleness=staleness, updates=version, seconds=time.perf_counter() - start)


def worker(model, x, y, args):
    rank, n = dist.get_rank(), dist.get_world_size()
    size = parameters_to_vector(model.parameters()).numel()
    msg = torch.zeros(size + 1)
    gen = torch.Generator().manual_seed(args.seed + rank)
    count = 0
    while True:
        dist.recv(msg, 0)
        if msg[0] < 0:
            return count
        vector_to_parameters(msg[1:], model.parameters())
        idx = torch.randint(len(x), (args.batch,), generator=gen)
        model.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        if rank == n - 1:
            time.sleep(args.delay)  # the straggler
        grad = parameters_to_vector(p.grad for p in model.parameters())
        dist.send(torch.cat([msg[:1], grad]), 0)
        count += 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--grads", type=int, default=300, help="gradients to process in each mode")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--delay", type=float, default=0.01, help="extra seconds per gradient, last worker")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    with np.load(args.data) as f:
        x, y = torch.tensor(f["x"]), torch.tensor(f["y"])
    results = {}
    for mode in ("sync", "async"):
        model = make_model(args.seed)
        if rank == 0:
            results[mode] = server(model, x, y, args, mode)
        else:
            count = worker(model, x, y, args)
            print(f"{mode}: worker {rank} computed {count} gradients")
        dist.barrier()
    if rank == 0:
        Path(args.out, "ps.json").write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
