"""Throughput of a small CNN: one process with 1 and C threads, DDP with 2 processes of 1 and C threads.

    torchrun --nproc-per-node=2 scripts/ddp_throughput.py --out OUT [--batch 64 --steps 2 --repeats 7]

One launch measures four settings in turn (processes × threads per process; C = the cores here):
  1 × 1  rank 0 alone (DDP on a one-process group; rank 1 waits at a barrier)
  1 × C  the same with C threads: one process using the whole machine, the honest baseline
  2 × 1  both ranks, DDP over the default group
  2 × C  both ranks with C threads each: more threads than cores (oversubscribed)
Each setting is timed with course_utils.bench.measure: --warmup untimed repeats, then --repeats timed
ones of --steps training steps each, a barrier before each repeat; a repeat lasts as long as its
slowest rank. Rank 0 writes OUT/throughput.json: every repeat as images/s of all processes together.
Inputs are random: speed does not depend on the pixel values.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from course_utils.bench import Timing, measure


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 5 * 5, 10))


def throughput(model, group, batch, steps, args):
    """Images/s of the whole group: forward + backward + SGD on random 28×28 images, per repeat."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def train():
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    t = measure(train, warmup=args.warmup, repeats=args.repeats, before=lambda: dist.barrier(group))
    slowest = torch.tensor(t.samples)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX, group=group)  # the group is as fast as its slowest rank
    images = batch * steps * dist.get_world_size(group)
    return Timing(tuple(slowest.tolist()), warmup=args.warmup).per(images, "images/s").to_dict()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=64, help="images per process per step")
    p.add_argument("--steps", type=int, default=2, help="training steps per timed repeat")
    p.add_argument("--warmup", type=int, default=2, help="untimed repeats first")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats")
    p.add_argument("--oversubscribed-steps", type=int, default=1, help="it is slow: fewer steps")
    args = p.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    alone = dist.new_group([0])  # every rank must take part in creating a group
    results = {"cores": cores, "world": world, "batch": args.batch, "torchrun_threads": torch.get_num_threads()}
    for threads in (1, cores):
        torch.set_num_threads(threads)
        if rank == 0:
            results[f"1x{threads}"] = throughput(DDP(make_model(), process_group=alone), alone,
                                                 args.batch, args.steps, args)
        dist.barrier()
        print(f"1 x {threads} done")
    for threads in (1, cores):
        torch.set_num_threads(threads)
        steps = args.steps if threads * world <= cores else args.oversubscribed_steps
        results[f"{world}x{threads}"] = throughput(DDP(make_model()), None, args.batch, steps, args)
        print(f"{world} x {threads} done")
    if rank == 0:
        Path(args.out, "throughput.json").write_text(json.dumps(results))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
