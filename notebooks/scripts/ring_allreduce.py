"""A ring all-reduce written with send/recv, checked and timed against dist.all_reduce.

    torchrun --nproc-per-node=2 scripts/ring_allreduce.py --out OUT [--sizes 1000 100000 ...] [--verbose]

Rank 0 writes OUT/ring.json: for every size, the largest error of both methods against a float64
reference, the bytes each rank sent, and the median time of both methods.
"""
import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist


def ring_all_reduce(t, verbose=False):
    """Sum ``t`` over all ranks, in place: reduce-scatter, then all-gather. Returns bytes sent."""
    rank, n = dist.get_rank(), dist.get_world_size()
    chunks = list(t.tensor_split(n))  # n views into t
    right, left = (rank + 1) % n, (rank - 1) % n
    sent = 0
    for phase in ("reduce-scatter", "all-gather"):
        for s in range(n - 1):
            if phase == "reduce-scatter":  # after n-1 steps chunk (rank+1)%n holds the full sum
                send_i, recv_i = (rank - s) % n, (rank - s - 1) % n
            else:  # pass the finished chunks once around the ring
                send_i, recv_i = (rank + 1 - s) % n, (rank - s) % n
            if verbose:
                print(f"{phase} step {s}: rank {rank} sends chunk {send_i} to rank {right}, "
                      f"receives chunk {recv_i} from rank {left}")
            request = dist.isend(chunks[send_i], right)  # non-blocking: the ring never waits on itself
            incoming = torch.empty_like(chunks[recv_i])
            dist.recv(incoming, left)
            if phase == "reduce-scatter":
                chunks[recv_i] += incoming
            else:
                chunks[recv_i].copy_(incoming)
            request.wait()
            sent += chunks[send_i].numel() * chunks[send_i].element_size()
    return sent


def naive_all_reduce(t, group):
    """Everyone sends first, then receives: with blocking send this waits forever (deadlock)."""
    rank, n = dist.get_rank(), dist.get_world_size()
    incoming = torch.empty_like(t)
    dist.send(t, (rank + 1) % n, group=group)
    dist.recv(incoming, (rank - 1) % n, group=group)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000, 4_000_000])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--verbose", action="store_true", help="print every send/recv of a small example")
    p.add_argument("--naive", action="store_true", help="also try the naive send-then-recv version")
    args = p.parse_args()
    dist.init_process_group("gloo")  # send/recv of CPU tensors; NCCL would need GPU tensors
    rank, n = dist.get_rank(), dist.get_world_size()
    if args.verbose:
        ring_all_reduce(torch.arange(2.0 * n) * (rank + 1), verbose=True)
    rows = []
    for size in args.sizes:
        inputs = [torch.randn(size, generator=torch.Generator().manual_seed(r)) for r in range(n)]
        exact = torch.stack([x.double() for x in inputs]).sum(0)  # every rank can compute it
        ours, lib = inputs[rank].clone(), inputs[rank].clone()
        sent = ring_all_reduce(ours)
        dist.all_reduce(lib)
        rows.append(dict(size=size, bytes=size * 4, sent=sent,
                         err_ring=(ours.double() - exact).abs().max().item(),
                         err_lib=(lib.double() - exact).abs().max().item(),
                         t_ring=timed(lambda: ring_all_reduce(inputs[rank].clone()), args.repeats),
                         t_lib=timed(lambda: dist.all_reduce(inputs[rank].clone()), args.repeats)))
    result = dict(world_size=n, rows=rows)
    if args.naive:  # a separate group with a short timeout, so the deadlock ends in 3 s
        group = dist.new_group(timeout=timedelta(seconds=3))
        start = time.perf_counter()
        try:
            naive_all_reduce(torch.ones(10), group)
            result["naive"] = "finished"
        except RuntimeError as err:
            reason = str(err).splitlines()[0].split("] ")[-1][:80]  # drop gloo's source-file prefix
            result["naive"] = f"gave up after {time.perf_counter() - start:.1f} s: {reason}"
        print(f"rank {rank} naive version: {result['naive']}")
    if rank == 0:
        Path(args.out, "ring.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
