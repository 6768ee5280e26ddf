"""Rung 1 of the data-parallel ladder: one process trains a small MLP on the digits.

    python scripts/train_single.py --data DATA.npz --out OUT [--steps 20 --batch 64 --lr 0.1]

DATA.npz holds x (N, 64) float32 and y (N,) int64. Writes OUT/rank0.npz (final parameters, the
sample indices of every step, the losses) and the checkpoint OUT/model.pt.
train_ddp.py is this file with a handful of lines changed; the lesson shows the diff.
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


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
    rank = 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load(args.data)
    model = make_model(args.seed).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    seen, losses, step, epoch = [], [], 0, 0
    while step < args.steps:
        gen = torch.Generator().manual_seed(args.seed + epoch)
        order = torch.randperm(len(data), generator=gen).tolist()  # the shuffle DistributedSampler makes
        loader = DataLoader(data, batch_size=args.batch, sampler=order, drop_last=True)
        for x, y, idx in loader:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, args)
            opt.zero_grad()
            loss = loss_fn(model(x.to(device)), y.to(device))
            loss.backward()
            opt.step()
            seen.append(idx.numpy())
            losses.append(loss.item())
            step += 1
            if step == args.steps:
                break
        epoch += 1
    out = Path(args.out)
    params = {n: p.detach().cpu().numpy() for n, p in model.state_dict().items()}
    np.savez(out / f"rank{rank}.npz", seen=np.stack(seen), losses=np.array(losses), **params)
    torch.save(model.state_dict(), out / "model.pt")
    print(f"rank {rank}: {step} steps, last loss {losses[-1]:.3f}")


if __name__ == "__main__":
    main()
