"""Lab 08's starting point: a single-process training script. Your job: make it DDP.

    python train_single.py --data DATA.npz --out OUT --steps 30 --batch 64 --lr 0.1 --seed 0

DATA.npz holds x (N, D) float32 and y (N,) int64; the checkpoint goes to OUT/model.pt.
--batch is the GLOBAL batch size: with N processes each one should take batch // N per step.
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
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=64, help="global batch size")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def make_model(n_features, n_classes, seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_features, 32), nn.Tanh(), nn.Linear(32, n_classes))


def main():
    args = parse_args()
    with np.load(args.data) as f:
        x, y = torch.tensor(f["x"]), torch.tensor(f["y"])
    data = TensorDataset(x, y)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = make_model(x.shape[1], int(y.max()) + 1, args.seed).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    step, epoch = 0, 0
    while step < args.steps:
        # shuffle with seed + epoch: the same order DistributedSampler(seed=...) makes after set_epoch(epoch)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed + epoch)).tolist()
        loader = DataLoader(data, batch_size=args.batch, sampler=order, drop_last=True)
        for xb, yb in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xb.to(device)), yb.to(device))
            loss.backward()
            opt.step()
            step += 1
            if step == args.steps:
                break
        epoch += 1
    torch.save(model.state_dict(), Path(args.out) / "model.pt")
    print(f"trained {step} steps over {epoch} epoch(s), last loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
