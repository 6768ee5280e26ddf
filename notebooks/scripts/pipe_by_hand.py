"""GPipe by hand: two processes, one stage each, micro-batches sent with dist.send / dist.recv.

    torchrun --nproc-per-node=2 scripts/pipe_by_hand.py --data DATA.npz --out OUT [--batch 64 --micro 4]

Rank 0 runs the first half of the MLP (pipe_common.make_model), rank 1 the second half and the loss.
GPipe: all m forwards (rank 0 sends each micro-batch's activation as soon as it is computed), then all
m backwards (rank 1 sends each activation's gradient back). Gradients accumulate in .grad over the m
micro-batches and are saved after the step, for two ways of scaling the loss:
  global: each micro-batch's summed loss / the GLOBAL batch size (the right one)
  wrong:  each micro-batch's mean loss, summed over micro-batches (divides by the micro-batch size)
Each rank writes OUT/hand_rank{r}.npz (its stage's gradients per variant) and prints its messages.
On CPUs the ranks use gloo; with a GPU per rank, NCCL and that GPU (course_utils.dist.backend/device).
"""
import argparse

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from course_utils.dist import backend, device
from pipe_common import load, make_model, stages


def step(stage, rank, x, y, m, variant, log):
    b = x.shape[0] // m
    held = []  # what each micro-batch keeps for its backward: (output or loss, input)
    for j in range(m):  # phase 1: every forward
        if rank == 0:
            a = stage(x[j * b:(j + 1) * b])
            dist.send(a.detach(), 1)
            log.append(("send", "activation", j, a.numel() * a.element_size()))
            held.append((a, None))
        else:
            h = torch.empty(b, stage[0].in_features, device=y.device)
            dist.recv(h, 0)
            h.requires_grad_()
            out = stage(h)
            target = y[j * b:(j + 1) * b]
            if variant == "global":
                loss = nn.functional.cross_entropy(out, target, reduction="sum") / x.shape[0]
            else:
                loss = nn.functional.cross_entropy(out, target)  # a micro-batch mean
            held.append((loss, h))
    for j in range(m):  # phase 2: every backward (GPipe: only after all forwards)
        if rank == 1:
            loss, h = held[j]
            loss.backward()
            dist.send(h.grad, 0)
            log.append(("send", "gradient", j, h.grad.numel() * h.grad.element_size()))
        else:
            a, _ = held[j]
            g = torch.empty_like(a)
            dist.recv(g, 1)
            a.backward(g)
        held[j] = None  # this micro-batch's activations can go


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--micro", type=int, default=4)
    args = ap.parse_args()
    dist.init_process_group(backend())  # gloo on CPUs; NCCL when each rank has a GPU
    rank, dev = dist.get_rank(), device()
    torch.set_num_threads(1)
    x, y = (t.to(dev) for t in load(args.data, args.batch))
    result = {}
    for variant in ("global", "wrong"):
        stage = stages(make_model().to(dev), 2)[rank]
        log = []
        step(stage, rank, x, y, args.micro, variant, log)
        for name, p in stage.named_parameters():
            result[f"{variant}/{name}"] = p.grad.cpu().numpy()
        sent = [e for e in log]
        print(f"{variant}: rank {rank} sent {len(sent)} {'activations' if rank == 0 else 'gradients'} "
              f"of {sent[0][3]} bytes each" if sent else f"{variant}: rank {rank} sent nothing", flush=True)
        result[f"{variant}/sent"] = np.array(len(sent))
    np.savez(f"{args.out}/hand_rank{rank}.npz", **result)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
