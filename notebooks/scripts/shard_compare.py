"""DDP, ZeRO-1 by hand, ZeroRedundancyOptimizer and FSDP2 on the same model, data and Adam steps.

    torchrun --nproc-per-node=2 scripts/shard_compare.py --data DATA.npz --out OUT [--steps 8 --hidden 256]

Every method starts from the same weights and takes ``--steps`` Adam steps on the same global batches
(rank r takes rows r·b .. (r+1)·b of each global batch of N·b). For each method, every rank records
  - its final parameters' largest difference from DDP's (all ranks, full tensors);
  - the bytes it holds per category after a step (course_utils.memory; DTensors count their local shard);
  - the collectives of the last step and the bytes it sends for them (shard_comm.CommLog);
  - for FSDP2, each parameter's global shape and the shape of the local DTensor shard.
Rank 0 writes OUT/compare.json for the notebook. On CPUs the ranks use gloo; with a GPU per rank, NCCL
and that GPU (course_utils.dist.backend / device).
"""
import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel as DDP

from course_utils.dist import backend, device
from course_utils.memory import SavedActivations, gradient_bytes, optimizer_state_bytes, parameter_bytes
from shard_comm import CommLog
from shard_zero1 import Zero1Adam


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=64, help="global batch")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    return p.parse_args()


def make_model(hidden):
    torch.manual_seed(0)  # the same initial weights on every rank and for every method
    return nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, 10))


def train(method, args, x, y):
    rank, world = dist.get_rank(), dist.get_world_size()
    model = make_model(args.hidden).to(x.device)
    log = CommLog()
    if method in ("DDP", "ZeroRedundancyOptimizer"):
        model = DDP(model)
        model.register_comm_hook(None, allreduce_hook)  # the same averaging, through dist.all_reduce: counted
        if method == "DDP":
            opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        else:
            from torch.distributed.optim import ZeroRedundancyOptimizer
            opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam, lr=args.lr)
    elif method.startswith("ZeRO-1"):
        opt = Zero1Adam(model.parameters(), lr=args.lr, gather="skip" not in method)
    else:  # FSDP2: shard every Linear, then the root
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        mesh = init_device_mesh(x.device.type, (world,))
        reshard = "False" not in method
        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer, mesh=mesh, reshard_after_forward=reshard)
        fully_shard(model, mesh=mesh, reshard_after_forward=reshard)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    b = args.batch // world
    for step in range(args.steps):
        rows = slice(step * args.batch + rank * b, step * args.batch + (rank + 1) * b)
        opt.zero_grad()
        with log if step == args.steps - 1 else contextlib.nullcontext():  # count the last step only
            xb, yb = x[rows].clone(), y[rows].clone()  # a batch of its own, as a DataLoader gives (a view
            with SavedActivations(model) as saved:      # would keep, and count, the whole data set)
                loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
    extra_grad = 0
    if isinstance(opt, Zero1Adam):
        extra_grad = opt.mine.grad.numel() * opt.mine.grad.element_size()  # the averaged gradient slice
        state, moments = optimizer_state_bytes(opt.adam), optimizer_state_bytes(opt.adam, moments_only=True)
    else:
        state, moments = optimizer_state_bytes(opt), optimizer_state_bytes(opt, moments_only=True)
    memory = {"parameters": parameter_bytes(model), "gradients": gradient_bytes(model) + extra_grad,
              "optimizer state": state}
    inner = model.module if isinstance(model, DDP) else model
    shards = []
    full = {}
    for name, p in inner.named_parameters():
        if hasattr(p, "full_tensor"):  # a DTensor: FSDP2
            shards.append({"name": name, "global": list(p.shape), "local": list(p.to_local().shape),
                           "placement": str(p.placements[0])})
            full[name] = p.full_tensor().detach().cpu().numpy()  # a collective: every rank calls it
        else:
            full[name] = p.detach().cpu().numpy()
    return {"memory": memory, "moments": moments, "activations": saved.bytes, "comm": log.summary(world), "shards": shards,
            "loss": loss.item(), "numel": sum(v.size for v in full.values())}, full


METHODS = ["DDP", "ZeRO-1 by hand", "ZeRO-1, skip all-gather (control)", "ZeroRedundancyOptimizer",
           "FSDP2", "FSDP2, reshard_after_forward=False"]


def main():
    args = parse_args()
    dist.init_process_group(backend())  # gloo on CPUs; NCCL when each rank has a GPU
    rank, world, dev = dist.get_rank(), dist.get_world_size(), device()
    with np.load(args.data) as f:
        x, y = torch.tensor(f["x"]).to(dev), torch.tensor(f["y"]).to(dev)
    results, reference, init = {}, None, make_model(args.hidden).state_dict()
    for method in METHODS:
        result, full = train(method, args, x, y)
        if reference is None:
            reference = full
            result["moved"] = max(float(np.abs(full[k] - init[k].numpy()).max()) for k in full)
        result["max_diff_vs_ddp"] = max(float(np.abs(full[k] - reference[k]).max()) for k in full)
        results[method] = result
        if rank == 0:
            print(f"{method}: max |Δ| vs DDP {result['max_diff_vs_ddp']:.1e}", flush=True)
    everyone = [None] * world
    dist.all_gather_object(everyone, results)
    if rank == 0:
        summary = {"world": world, "methods": METHODS, "per_rank": everyone}
        Path(args.out, "compare.json").write_text(json.dumps(summary))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
