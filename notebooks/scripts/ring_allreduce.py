"""A ring all-reduce written with send/recv, checked, byte-counted and timed against dist.all_reduce.

    torchrun --nproc-per-node=N scripts/ring_allreduce.py --out OUT [--sizes 1200 120000 ...]
             [--time] [--verbose] [--naive]

For every size: the largest error of the ring, of the ring stopped after reduce-scatter (a broken
variant, the negative control) and of dist.all_reduce against a float64 reference; the bytes each
rank handed to send/isend (counted by a wrapper around them) for the ring and for the direct
exchange (every rank sends its whole tensor to every other rank). With --time, both all-reduces are
timed with course_utils.bench.measure (warm-up, repeats, a barrier before each; per repeat the
slowest rank's time). Rank 0 writes OUT/ring_N.json (N = world size).
"""
import argparse
import contextlib
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from course_utils.bench import Timing, measure

PHASES = ("reduce-scatter", "all-gather")


def ring_all_reduce(t, verbose=False, phases=PHASES):
    """Sum ``t`` over all ranks, in place: reduce-scatter, then all-gather."""
    rank, n = dist.get_rank(), dist.get_world_size()
    chunks = list(t.tensor_split(n))  # n views into t
    right, left = (rank + 1) % n, (rank - 1) % n
    for phase in phases:
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


def direct_all_reduce(t):
    """The direct exchange: send the whole tensor to every other rank and add what arrives."""
    rank, n = dist.get_rank(), dist.get_world_size()
    requests = [dist.isend(t, peer) for peer in range(n) if peer != rank]
    total = t.clone()
    for peer in (p for p in range(n) if p != rank):
        incoming = torch.empty_like(t)
        dist.recv(incoming, peer)
        total += incoming
    for r in requests:
        r.wait()
    t.copy_(total)


def naive_all_reduce(t, group):
    """Everyone sends first, then receives: with blocking send this waits forever (deadlock)."""
    rank, n = dist.get_rank(), dist.get_world_size()
    incoming = torch.empty_like(t)
    dist.send(t, (rank + 1) % n, group=group)
    dist.recv(incoming, (rank - 1) % n, group=group)


@contextlib.contextmanager
def counting_sends(counter):
    """Count the bytes of every tensor handed to dist.send / dist.isend while the block runs."""
    originals = dist.send, dist.isend

    def wrap(send):
        def counted(tensor, *args, **kwargs):
            counter["bytes"] += tensor.numel() * tensor.element_size()
            return send(tensor, *args, **kwargs)
        return counted

    dist.send, dist.isend = map(wrap, originals)
    try:
        yield counter
    finally:
        dist.send, dist.isend = originals


def bytes_sent(fn, t):
    with counting_sends({"bytes": 0}) as counter:
        fn(t)
    return counter["bytes"]


def timing(fn, source, warmup, repeats):
    """Time fn(buffer) with buffer reset to source before each call; the slowest rank per repeat."""
    buffer = source.clone()
    t = measure(lambda: fn(buffer), warmup=warmup, repeats=repeats,
                before=lambda: (buffer.copy_(source), dist.barrier()))
    slowest = torch.tensor(t.samples)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    return Timing(tuple(slowest.tolist()), warmup=warmup).to_dict()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_200, 120_000, 1_200_000, 4_800_000])
    p.add_argument("--time", action="store_true", help="time the ring against dist.all_reduce")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
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
        exact = sum(x.double() for x in inputs)  # every rank can compute it
        ours, half, lib = (inputs[rank].clone() for _ in range(3))
        row = dict(size=size, bytes=size * 4, sent_ring=bytes_sent(ring_all_reduce, ours),
                   sent_direct=bytes_sent(direct_all_reduce, inputs[rank].clone()))
        ring_all_reduce(half, phases=PHASES[:1])  # the broken variant: no all-gather
        dist.all_reduce(lib)
        owned = (rank + 1) % n  # the chunk this rank completed during reduce-scatter
        row.update(err_ring=(ours.double() - exact).abs().max().item(),
                   err_lib=(lib.double() - exact).abs().max().item(),
                   err_half=(half.double() - exact).abs().max().item(),
                   err_half_owned=(half.double() - exact).tensor_split(n)[owned].abs().max().item())
        for key in ("err_half", "err_half_owned"):  # the worst rank decides
            worst = torch.tensor(row[key])
            dist.all_reduce(worst, op=dist.ReduceOp.MAX)
            row[key] = worst.item()
        if args.time:
            row["t_ring"] = timing(ring_all_reduce, inputs[rank], args.warmup, args.repeats)
            row["t_lib"] = timing(dist.all_reduce, inputs[rank], args.warmup, args.repeats)
            print(f"size {size:>10,}: timed")
        rows.append(row)
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
        Path(args.out, f"ring_{n}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
