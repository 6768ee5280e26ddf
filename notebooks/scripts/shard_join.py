"""Uneven inputs: rank r has 3 + 2r batches. With ``ddp.join()`` training finishes; without it, it hangs.

    torchrun --nproc-per-node=2 scripts/shard_join.py --data DATA.npz --out OUT [--timeout 5]

1. With join: a rank that runs out of data "joins" and shadows the others' all-reduces (it contributes
   zeros) until every rank is done. Every rank writes its final parameters; rank 0 writes OUT/join.json.
2. Without join (``--no-join``, run after 1): the rank with fewer batches goes on to the barrier before
   saving while the other waits in its next gradient all-reduce for a partner that never comes. Nothing
   can match them up, so both wait until the process group's timeout (``--timeout`` seconds; the
   default is 30 minutes) and fail with a timeout error.
Both runs use gloo on the CPU, also on GPU machines: what is shown is gloo's timeout. With NCCL a
timed-out collective is caught by NCCL's watchdog instead, which by default tears the process down.
"""
import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=32, help="per rank")
    p.add_argument("--timeout", type=float, default=5.0, help="process-group timeout in seconds")
    p.add_argument("--no-join", action="store_true", help="after the join run, try again without join")
    return p.parse_args()


def train(x, y, args, use_join):
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10)))
    start = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    n_batches = 3 + 2 * rank  # uneven: rank 0 runs out first
    rows = [slice((rank * 10 + i) * args.batch, (rank * 10 + i + 1) * args.batch) for i in range(n_batches)]

    def loop():
        for r in rows:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[r]), y[r]).backward()
            opt.step()

    if use_join:
        with model.join():  # a rank that is done shadows the collectives of the ranks still training
            loop()
    else:
        loop()
    dist.barrier()  # "everyone done? then rank 0 saves": the usual end of a training script
    return model, n_batches, start


def main():
    args = parse_args()
    dist.init_process_group("gloo", timeout=timedelta(seconds=args.timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    with np.load(args.data) as f:
        x, y = torch.tensor(f["x"]), torch.tensor(f["y"])
    model, n_batches, start = train(x, y, args, use_join=True)
    vec = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    everyone = [torch.empty_like(vec) for _ in range(world)]
    dist.all_gather(everyone, vec)
    batches = [None] * world
    dist.all_gather_object(batches, n_batches)
    if rank == 0:
        Path(args.out, "join.json").write_text(json.dumps({
            "batches": batches, "max_diff_between_ranks": max(float((v - vec).abs().max()) for v in everyone),
            "moved": float((vec - start).abs().max())}))
    print(f"with join: rank {rank} trained on {n_batches} batches and finished", flush=True)
    if args.no_join:
        began = time.perf_counter()
        print(f"without join: rank {rank} starts {n_batches} batches", flush=True)
        try:
            train(x, y, args, use_join=False)
        except Exception as exc:  # the timeout: report it in one line and fail, as an unhandled one would
            first = str(exc).strip().splitlines()[0][:160]
            print(f"without join: rank {rank} failed after {time.perf_counter() - began:.0f} s: "
                  f"{type(exc).__name__}: {first}", flush=True)
            time.sleep(1)  # let the other rank time out too before our exit closes its connections
            os._exit(1)
        print(f"without join: rank {rank} finished", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
