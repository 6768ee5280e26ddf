"""Rung 2 of the data-parallel ladder: the same training with DistributedDataParallel.

    torchrun --nproc-per-node=2 scripts/train_ddp.py --data DATA.npz --out OUT [--steps 20 ...]

Each process trains on its own shard (DistributedSampler) with batch/world samples per step; DDP
averages the gradients, so every rank takes the step a single process would take on the whole
batch. Every rank writes OUT/rank{r}.npz (for the lesson's proof); only rank 0 writes model.pt.
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
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from course_utils.dist import backend, device as rank_device  # NCCL + cuda:LOCAL_RANK only with a GPU per rank


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=64, help="global batch size")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate for a batch of 64")
    p.add_argument("--warmup", type=int, default=5, help="steps of linear learning-rate warm-up")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def load(path):
    with np.load(path) as f:
        x, y = torch.tensor(f["x"]), torch.tensor(f["y"])
    return TensorDataset(x, y, torch.arange(len(x)))  # each sample's index: proof of who saw what


def make_model(seed):
    torch.manual_seed(seed)  # every process builds the same initial weights
    return nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))


def lr_at(step, args):
    """Linear scaling rule (lr grows with the global batch) with a linear warm-up."""
    return args.lr * args.batch / 64 * min(1.0, (step + 1) / args.warmup)


def main():
    args = parse_args()
    dist.init_process_group(backend())  # "nccl" with a GPU per rank, else "gloo"
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))  # set by torchrun
    device = rank_device()  # cuda:LOCAL_RANK, or cpu when there are fewer GPUs than ranks
    data = load(args.data)
    model = DDP(make_model(args.seed).to(device), device_ids=[local_rank] if device.type == "cuda" else None)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    seen, losses, step, epoch = [], [], 0, 0
    sampler = DistributedSampler(data, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(data, batch_size=args.batch // world_size, sampler=sampler, drop_last=True)
    while step < args.steps:
        sampler.set_epoch(epoch)  # a new shuffle every epoch, the same on every rank
        for x, y, idx in loader:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, args)
            opt.zero_grad()
            loss = loss_fn(model(x.to(device)), y.to(device))
            loss.backward()  # DDP all-reduces (averages) the gradients here
            opt.step()
            seen.append(idx.numpy())
            losses.append(loss.item())
            step += 1
            if step == args.steps:
                break
        epoch += 1
    out = Path(args.out)
    params = {n: p.detach().cpu().numpy() for n, p in model.module.state_dict().items()}
    np.savez(out / f"rank{rank}.npz", seen=np.stack(seen), losses=np.array(losses), **params)
    if rank == 0:  # one checkpoint, written once
        torch.save(model.module.state_dict(), out / "model.pt")
    print(f"rank {rank}: {step} steps, last loss {losses[-1]:.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
