"""Throughput of a small CNN with DDP at world size 1 and 2, with and without thread oversubscription.

    torchrun --nproc-per-node=2 scripts/ddp_throughput.py --out OUT [--batch 64 --steps 10]

One launch measures four settings in turn (processes × threads per process):
  1 × 1  rank 0 alone, DDP on a one-process group (rank 1 waits at a barrier)
  1 × C  the same with C threads (C = the cores this machine has)
  2 × 1  both ranks, DDP over the default group
  2 × C  both ranks with C threads each: more threads than cores (oversubscribed)
Rank 0 writes OUT/throughput.json with images/s for each. Inputs are random: speed does not
depend on the pixel values.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 5 * 5, 10))


def images_per_second(model, batch, steps, warmup=1):
    """Forward + backward + SGD step on random 28×28 images; returns this process's images/s."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=64, help="images per process per step")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--oversubscribed-steps", type=int, default=2, help="it is slow: fewer steps")
    args = p.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    alone = dist.new_group([0])  # every rank must take part in creating a group
    results = {"cores": cores, "torchrun_threads": torch.get_num_threads()}
    for threads in (1, cores):
        torch.set_num_threads(threads)
        if rank == 0:
            results[f"1x{threads}"] = images_per_second(DDP(make_model(), process_group=alone),
                                                        args.batch, args.steps)
        dist.barrier()
        print(f"1 x {threads} done")
    for threads in (1, cores):
        torch.set_num_threads(threads)
        steps = args.steps if threads * world <= cores else args.oversubscribed_steps
        mine = torch.tensor(images_per_second(DDP(make_model()), args.batch, steps))
        dist.all_reduce(mine)  # the total over all ranks
        results[f"{world}x{threads}"] = mine.item()
        print(f"{world} x {threads} done")
    if rank == 0:
        Path(args.out, "throughput.json").write_text(json.dumps(results))
        print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in results.items()}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
