"""The DDP ladder's training, made to survive a lost worker: snapshots and resume under torchrun.

    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --standalone --nproc-per-node=2 --max-restarts=1 \\
        scripts/train_elastic.py --data DATA.npz --out OUT --snapshot SNAPDIR [--steps 30 --every 5]

Every ``--every`` steps the ranks gather their random-number states and rank 0 writes one snapshot
(model, optimizer, step, sampler epoch and position in the epoch, every rank's RNG) to a temporary
file and renames it over SNAPDIR/snapshot.pt: the rename is atomic, so a crash mid-write leaves the
previous snapshot intact, never a torn one. When a worker dies, torchrun (``--max-restarts``) stops
the survivors and starts every rank again; each new rank loads the last snapshot and continues from
that step, on the same batches, so the result equals a run that was never interrupted.

Why ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``: by default the workers reuse the launcher's rendezvous
TCPStore for their process group, and that store keeps the keys of the failed attempt; after a
restart the new ranks can read stale addresses and fail ("Gloo connectFullMesh failed ... Connection
refused") or hang (pytorch#135712, #167288). With the variable set, each attempt's process group gets
its own fresh store.

``--no-restore-optimizer`` (negative control) loads the model but starts a fresh optimizer: the
momentum is lost and the result differs. ``--step-delay`` slows each step so a test can kill a
worker mid-run. Each rank keeps OUT/progress{rank}.json up to date (pid, step, restart count) and
at the end writes OUT/rank{rank}.npz (final parameters, losses) and OUT/meta{rank}.json.
"""
import argparse
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--snapshot", required=True, help="folder for snapshot.pt (on a shared file system)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--every", type=int, default=5, help="snapshot every k steps")
    p.add_argument("--batch", type=int, default=64, help="global batch size")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step-delay", type=float, default=0.0, help="seconds to sleep after each step")
    p.add_argument("--no-restore-optimizer", action="store_true", help="negative control")
    return p.parse_args()


def load(path):
    with np.load(path) as f:
        x, y = torch.tensor(f["x"]), torch.tensor(f["y"])
    return TensorDataset(x, y)


def make_model(seed):
    torch.manual_seed(seed)  # every process builds the same initial weights
    # dropout draws random numbers every step: resuming equal needs the RNG state back too
    return nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Dropout(0.1), nn.Linear(64, 10))


def rng_state():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_snapshot(folder, model, opt, step, epoch, in_epoch, rank, world):
    """Collective: every rank must call it at the same step. Rank 0 writes, atomically."""
    states = [None] * world
    dist.all_gather_object(states, rng_state())  # every rank's RNG, so each resumes its own stream
    if rank == 0:
        snap = {"model": model.module.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "epoch": epoch, "in_epoch": in_epoch, "rng": states, "world": world}
        tmp = folder / f"snapshot.pt.tmp{os.getpid()}"
        torch.save(snap, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # on disk before the rename makes it the snapshot
        os.replace(tmp, folder / "snapshot.pt")  # atomic: readers see the old or the new, never half
    dist.barrier()  # nobody races ahead of a snapshot that is still being written


def write_progress(out, rank, step, restart):
    tmp = out / f"progress{rank}.json.tmp"
    tmp.write_text(json.dumps({"pid": os.getpid(), "step": step, "restart": restart}))
    os.replace(tmp, out / f"progress{rank}.json")


def main():
    args = parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))  # set by torchrun: 0, 1, ...
    out, snapdir = Path(args.out), Path(args.snapshot)
    snapdir.mkdir(parents=True, exist_ok=True)
    data = load(args.data)
    model = DDP(make_model(args.seed))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    torch.manual_seed(args.seed + 1000 + rank)  # this rank's dropout stream
    step, epoch, in_epoch, resumed_from = 0, 0, 0, None
    path = snapdir / "snapshot.pt"
    if path.exists():
        snap = torch.load(path, map_location="cpu", weights_only=False)
        if snap["world"] != world:
            raise SystemExit(f"snapshot was taken with {snap['world']} ranks, now {world}")
        model.module.load_state_dict(snap["model"])
        if not args.no_restore_optimizer:
            opt.load_state_dict(snap["optimizer"])
        step, epoch, in_epoch, resumed_from = snap["step"], snap["epoch"], snap["in_epoch"], snap["step"]
        set_rng_state(snap["rng"][rank])
        print(f"rank {rank}: restart {restart}, resumed from the snapshot of step {step}", flush=True)
    sampler = DistributedSampler(data, shuffle=True, seed=args.seed, drop_last=True)
    # its own generator: otherwise every iter(loader) draws a seed from the global RNG, and a resumed
    # run (which restores the RNG mid-epoch, then starts a new iterator) would shift the dropout masks
    loader = DataLoader(data, batch_size=args.batch // world, sampler=sampler, drop_last=True,
                        generator=torch.Generator().manual_seed(args.seed))
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    write_progress(out, rank, step, restart)
    while step < args.steps:
        sampler.set_epoch(epoch)  # the same shuffle as the first time through this epoch
        for x, y in itertools.islice(loader, in_epoch, None):  # skip the batches already trained on
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step, in_epoch = step + 1, in_epoch + 1
            if step % args.every == 0 and step < args.steps:
                save_snapshot(snapdir, model, opt, step, epoch, in_epoch, rank, world)
            write_progress(out, rank, step, restart)
            time.sleep(args.step_delay)
            if step == args.steps:
                break
        else:
            epoch, in_epoch = epoch + 1, 0
    params = {n: p.detach().numpy() for n, p in model.module.state_dict().items()}
    np.savez(out / f"rank{rank}.npz", losses=np.array(losses), **params)
    (out / f"meta{rank}.json").write_text(json.dumps({"restart": restart, "resumed_from": resumed_from,
                                                      "steps": step}))
    print(f"rank {rank}: {step} steps (restart {restart}), last loss {losses[-1]:.3f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
