"""What DDP(model) does before any training: it broadcasts rank 0's parameters to every rank.

    torchrun --nproc-per-node=2 scripts/ddp_broadcast.py --out OUT [--seed 0]

Every rank builds the model with its OWN seed (seed + rank), so the ranks start with different
weights, as they would if a script forgot to seed. Rank r writes OUT/broadcast{r}.npz with its
parameters (one flat vector) before and after wrapping the model in DDP. On CPUs the ranks use gloo;
with a GPU per rank, NCCL and that GPU (course_utils.dist.backend / device).
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.nn.utils import parameters_to_vector

from course_utils.dist import backend, device


def make_model(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))


def flat(model):
    return parameters_to_vector(model.parameters()).detach().cpu().numpy()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    dist.init_process_group(backend())  # gloo on CPUs; NCCL when each rank has a GPU
    rank = dist.get_rank()
    model = make_model(args.seed + rank).to(device())  # a different initialisation on every rank
    before = flat(model)
    ddp = DDP(model)  # the constructor broadcasts rank 0's parameters and buffers
    after = flat(ddp.module)
    np.savez(Path(args.out) / f"broadcast{rank}.npz", before=before, after=after)
    print(f"rank {rank}: first weight before DDP {before[0]:+.4f}, after {after[0]:+.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
