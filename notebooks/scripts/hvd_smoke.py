"""Horovod smoke test: N ranks with hvd.DistributedOptimizer equal one process on the full batch.

    from course_utils.dist import horovodrun
    horovodrun("scripts/hvd_smoke.py", nprocs=2)                  # expects equal weights
    horovodrun("scripts/hvd_smoke.py", nprocs=2, args=["--plain"])  # negative control: expects them to differ

Every rank starts from different random weights (seed 100 + rank); ``broadcast_parameters`` copies
rank 0's. Each rank trains on its contiguous shard of one fixed batch; DistributedOptimizer averages
the gradients, which for equal shards and a mean loss is the full batch's gradient. Rank 0 then
repeats the training alone on the full batch from the same start. Rank 0 prints one line
``SMOKE mode=... ranks_max_diff=... single_max_diff=... ok=...``; exit status 1 when not ok.
With ``--plain`` (a plain optimizer, no gradient averaging) ok means the ranks' weights DIFFER.
"""
import argparse
import sys

import horovod.torch as hvd
import torch

TOL = 1e-5


def model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def train(net, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()


def flat(net) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plain", action="store_true", help="no DistributedOptimizer (negative control)")
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    gen = torch.Generator().manual_seed(0)  # the same batch on every rank
    x = torch.randn(8 * size * 4, 8, generator=gen)
    y = x[:, :1] * 2 - x[:, 1:2] + 0.1 * torch.randn(len(x), 1, generator=gen)

    torch.manual_seed(100 + rank)  # different starting weights per rank ...
    net = model()
    hvd.broadcast_parameters(net.state_dict(), root_rank=0)  # ... until rank 0's are broadcast
    start = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    if not a.plain:
        opt = hvd.DistributedOptimizer(opt, named_parameters=net.named_parameters())
    shard = len(x) // size
    train(net, opt, x[rank * shard:(rank + 1) * shard], y[rank * shard:(rank + 1) * shard], a.steps)

    mine = flat(net)
    every = hvd.allgather(mine.unsqueeze(0))  # (size, n_params): every rank's final weights
    ranks_diff = (every - every[0]).abs().max().item()
    if rank == 0:
        single = model()
        with torch.no_grad():
            for p, s in zip(single.parameters(), start):
                p.copy_(s)
        train(single, torch.optim.SGD(single.parameters(), lr=0.1), x, y, a.steps)
        single_diff = (mine - flat(single)).abs().max().item()
        ok = ranks_diff > TOL if a.plain else (ranks_diff <= TOL and single_diff <= TOL)
        print(f"SMOKE mode={'plain' if a.plain else 'distributed'} ranks={size} steps={a.steps} "
              f"ranks_max_diff={ranks_diff:.2e} single_max_diff={single_diff:.2e} ok={ok}", flush=True)
    else:
        ok = True
    ok = bool(hvd.broadcast_object(ok, root_rank=0))  # every rank exits with rank 0's verdict
    hvd.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
