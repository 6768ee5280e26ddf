"""Rung 3 of the data-parallel ladder: DDP with gradient accumulation over --accum micro-batches.

    torchrun --nproc-per-node=2 scripts/train_ddp_accum.py --data DATA.npz --out OUT --accum 2

A step still uses --batch samples in all, but each rank feeds them as --accum micro-batches of
batch/(world*accum), so the activations of only one micro-batch are in memory at a time. Inside
model.no_sync() DDP skips the all-reduce and gradients just add up locally; the last micro-batch
synchronises once. Same outputs as train_ddp.py, plus "traffic": a DDP communication hook counts,
per micro-batch, the all-reduce calls (one per gradient bucket) and the gradient elements they carry.
--sync-every-micro-batch drops no_sync() (the negative control: same result, more all-reduces).
"""
from contextlib import nullcontext
import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
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
    p.add_argument("--accum", type=int, default=2, help="micro-batches per optimizer step")
    p.add_argument("--sync-every-micro-batch", action="store_true", help="no no_sync(): all-reduce each time")
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
    traffic = []  # per micro-batch: [all-reduce calls, gradient elements all-reduced]

    def counting_allreduce(state, bucket):  # DDP calls this once per gradient bucket to be reduced
        traffic[-1][0] += 1
        traffic[-1][1] += bucket.buffer().numel()
        return default_hooks.allreduce_hook(state, bucket)  # then do what DDP does by default

    model.register_comm_hook(None, counting_allreduce)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    seen, losses, step, epoch = [], [], 0, 0
    sampler = DistributedSampler(data, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(data, batch_size=args.batch // (world_size * args.accum), sampler=sampler,
                        drop_last=True)
    while step < args.steps:
        sampler.set_epoch(epoch)  # a new shuffle every epoch, the same on every rank
        step_idx, step_loss = [], 0.0
        usable = len(loader) // args.accum * args.accum  # skip an incomplete last step
        for i, (x, y, idx) in enumerate(loader):
            if i == usable:
                break
            last = (i + 1) % args.accum == 0
            sync = last or args.sync_every_micro_batch  # all-reduce only on the last one
            traffic.append([0, 0])
            with nullcontext() if sync else model.no_sync():
                loss = loss_fn(model(x.to(device)), y.to(device)) / args.accum
                loss.backward()  # gradients add up in .grad
            step_idx.append(idx.numpy())
            step_loss += loss.item()
            if not last:
                continue
            for group in opt.param_groups:
                group["lr"] = lr_at(step, args)
            opt.step()
            opt.zero_grad()
            seen.append(np.concatenate(step_idx))
            losses.append(step_loss)
            step_idx, step_loss = [], 0.0
            step += 1
            if step == args.steps:
                break
        epoch += 1
    out = Path(args.out)
    params = {n: p.detach().cpu().numpy() for n, p in model.module.state_dict().items()}
    np.savez(out / f"rank{rank}.npz", seen=np.stack(seen), losses=np.array(losses),
             traffic=np.array(traffic).reshape(step, args.accum, 2), **params)
    if rank == 0:  # one checkpoint, written once
        torch.save(model.module.state_dict(), out / "model.pt")
    print(f"rank {rank}: {step} steps, last loss {losses[-1]:.3f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
