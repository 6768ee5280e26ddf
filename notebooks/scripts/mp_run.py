"""Lesson 15 in one launch: the two-stage model, its timeline and memory, two parallel branches and
the tensor-parallel MLP, on 2 ranks (gloo on CPU, NCCL on GPUs).

    torchrun --nproc-per-node=2 scripts/mp_run.py --data DATA.npz --out OUT [--width 512 --steps 6]

Each rank writes OUT/mp_rank{r}.json; nothing else is written.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import mp_stages
import mp_tensor
from course_utils.dist import backend, device


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--width", type=int, default=512, help="hidden width of the two-stage MLP")
    p.add_argument("--split", type=int, default=4, help="stage 0 = layers[:split]")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=6, help="timed Adam steps")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--branch-width", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--d-ff", type=int, default=512)
    p.add_argument("--tp-batch", type=int, default=32)
    args = p.parse_args()

    dist.init_process_group(backend())
    rank, dev = dist.get_rank(), device()
    data = np.load(args.data)
    x, y = torch.tensor(data["x"][:args.batch]), torch.tensor(data["y"][:args.batch])

    res = {"stages": mp_stages.run(x, y, args.width, args.split, args.steps, args.lr, dev)}
    print(f"stages done: params vs single device max |Δ| {res['stages']['params vs single device']:.1e}", flush=True)
    res["branches"] = mp_stages.branches(x, args.branch_width, args.repeats, dev)
    res["tensor"] = mp_tensor.run(args.tp_batch, args.d_model, args.d_ff, dev)
    print(f"tensor parallel done: Megatron output max |Δ| {res['tensor']['megatron']['output']:.1e}", flush=True)
    Path(args.out, f"mp_rank{rank}.json").write_text(json.dumps(res))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
