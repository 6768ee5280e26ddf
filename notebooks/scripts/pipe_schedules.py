"""Everything lesson 16 runs on two processes, in one launch (each launch costs seconds to start).

    torchrun --nproc-per-node=2 scripts/pipe_schedules.py --data DATA.npz --out OUT [--batch 64 --micro 4]

1. GPipe by hand (pipe_by_hand.step), with the right and the wrong loss scaling -> OUT/hand_rank{r}.npz
2. torch.distributed.pipelining: ScheduleGPipe, Schedule1F1B (one stage per rank) and
   ScheduleInterleaved1F1B (two stages per rank, four in all) on the same model and batch; each rank
   saves its stages' gradients -> OUT/lib_rank{r}.npz (keys "<schedule>/<name in the model>")
3. Timelines: every stage wrapped in course_utils.pipeline.Timeline.wrap, for each schedule and number
   of micro-batches m, with a calibrated workload (each stage sleeps --tick seconds per forward and per
   backward; its real compute is tiny) and with real compute (--width wide layers, no sleep). Each
   setting runs 1 warm-up step and --repeats timed steps; the activation bytes each stage holds
   (saved_tensors_hooks) are tracked in the calibrated runs. Rank 0 writes OUT/timelines.json.

On CPUs the ranks use gloo; with a GPU per rank, NCCL and that GPU (course_utils.dist.backend/device),
and every time stamp first waits for the GPU's queued work (torch.cuda.synchronize).
"""
import argparse
import json

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe, ScheduleInterleaved1F1B

from course_utils.bench import synced_clock
from course_utils.dist import backend, device
from course_utils.pipeline import Timeline
from pipe_by_hand import step as hand_step
from pipe_common import Calibrated, LiveActivations, Tracked, load, make_model, stages

SCHEDULES = {"GPipe": ScheduleGPipe, "1F1B": Schedule1F1B, "Interleaved1F1B": ScheduleInterleaved1F1B}


def local_stages(model, name, rank, world):
    """(global stage index, module) pairs this rank runs: 1 stage per rank, or 2 for interleaved."""
    if name == "Interleaved1F1B":
        pieces = stages(model, 2 * world)
        return [(c * world + rank, pieces[c * world + rank]) for c in range(2)]
    return [(rank, stages(model, world)[rank])]


def run_step(name, mods, rank, world, x, y, m):
    n = 2 * world if name == "Interleaved1F1B" else world
    pipe = [PipelineStage(mod, i, n, y.device) for i, mod in mods]
    loss = nn.functional.cross_entropy  # a mean per micro-batch; scale_grads=True divides the sum by m
    sched = SCHEDULES[name](pipe if name == "Interleaved1F1B" else pipe[0], n_microbatches=m, loss_fn=loss)

    def go():
        first = any(i == 0 for i, _ in mods)
        last = any(i == n - 1 for i, _ in mods)
        args = (x.clone(),) if first else ()  # a fresh input every step
        sched.step(*args, target=y if last else None)
    return go


def gradients(x, y, m, rank, world):
    out = {}
    for name in SCHEDULES:
        model = make_model().to(y.device)
        mods = local_stages(model, name, rank, world)
        run_step(name, mods, rank, world, x, y, m)()
        for _, mod in mods:  # a slice of nn.Sequential keeps the model's names ("4.weight", ...)
            out.update({f"{name}/{k}": p.grad.cpu().numpy() for k, p in mod.named_parameters()})
    return out


def timelines(args, rank, world, mode, dev):
    """For each schedule and m: a list of runs, each {records, act_peak, act_per_mb} (rank 0 gathers)."""
    results = {}
    for name in SCHEDULES:
        for m in args.ms:
            if name != "GPipe" and m < world or (mode == "real" and name == "Interleaved1F1B"):
                continue  # 1F1B needs m >= p; real compute: GPipe and 1F1B only
            torch.manual_seed(0)
            timeline = Timeline()
            if mode == "calibrated":
                x, y = torch.randn(8 * m, 64), torch.randint(0, 10, (8 * m,))
                base = make_model()
                tick = args.tick / (2 if name == "Interleaved1F1B" else 1)  # a chunk is half a stage
            else:
                w = args.width
                x, y = torch.randn(32 * m, w), torch.randint(0, 10, (32 * m,))
                base = nn.Sequential(nn.Linear(w, w), nn.Tanh(), nn.Linear(w, w), nn.Tanh(), nn.Linear(w, w),
                                     nn.Tanh(), nn.Linear(w, 10))  # stage 0: 2 layers; stage 1: 1 + head
            base, x, y = base.to(dev), x.to(dev), y.to(dev)
            mods, wrapped, trackers = local_stages(base, name, rank, world), [], []
            for i, mod in mods:
                tracker = LiveActivations(mod.parameters())
                inner = Tracked(Calibrated(mod, tick, tick) if mode == "calibrated" else mod, tracker)
                wrapped.append((i, timeline.wrap(inner, stage=i % world, chunk=i // world, clock=synced_clock(dev))))
                trackers.append(tracker)
            go = run_step(name, wrapped, rank, world, x, y, m)
            runs = []
            for r in range(1 + args.repeats):
                for _, mod in wrapped:
                    mod.reset()
                for t in trackers:
                    t.reset()
                timeline.records.clear()
                dist.barrier()
                go()
                if r:  # the first step is a warm-up
                    runs.append(dict(records=timeline.to_list(), act_peak=[t.peak for t in trackers],
                                     act_per_mb=[t.per_forward for t in trackers], act_left=[t.live for t in trackers]))
            gathered = [None] * world
            dist.all_gather_object(gathered, runs)
            if rank == 0:
                results[f"{name}/{m}"] = [dict(records=sum((g[k]["records"] for g in gathered), []),
                                               act_peak=[g[k]["act_peak"] for g in gathered],
                                               act_per_mb=[g[k]["act_per_mb"] for g in gathered],
                                               act_left=[g[k]["act_left"] for g in gathered])
                                          for k in range(args.repeats)]
            if rank == 0:
                print(f"{mode}: {name}, m = {m} done", flush=True)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--micro", type=int, default=4, help="micro-batches in the gradient checks")
    ap.add_argument("--ms", type=int, nargs="+", default=[1, 2, 4, 8], help="micro-batch counts timed")
    ap.add_argument("--tick", type=float, default=0.04, help="calibrated seconds per stage forward / backward")
    ap.add_argument("--width", type=int, default=256, help="layer width of the real-compute runs")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    dist.init_process_group(backend())  # gloo on CPUs; NCCL when each rank has a GPU
    rank, world, dev = dist.get_rank(), dist.get_world_size(), device()
    torch.set_num_threads(1)
    x, y = (t.to(dev) for t in load(args.data, args.batch))

    hand = {}
    for variant in ("global", "wrong"):
        stage = stages(make_model().to(dev), world)[rank]
        log = []
        hand_step(stage, rank, x, y, args.micro, variant, log)
        hand.update({f"{variant}/{k}": p.grad.cpu().numpy() for k, p in stage.named_parameters()})
        hand[f"{variant}/sent by rank {rank}"] = np.array(len(log))
    np.savez(f"{args.out}/hand_rank{rank}.npz", **hand)
    print(f"GPipe by hand: rank {rank} sent {len(log)} {'activations' if rank == 0 else 'gradients'} per step",
          flush=True)

    np.savez(f"{args.out}/lib_rank{rank}.npz", **gradients(x, y, args.micro, rank, world))
    print(f"pipelining: rank {rank} saved the gradients of 3 schedules", flush=True)

    out = {"tick": args.tick, "world": world, "repeats": args.repeats}
    for mode in ("calibrated", "real"):
        out[mode] = timelines(args, rank, world, mode, dev)
    if rank == 0:
        with open(f"{args.out}/timelines.json", "w") as f:
            json.dump(out, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
