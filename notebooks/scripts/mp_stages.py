"""Model parallelism across two processes: one stage each, activations forward and gradients back.

Imported by mp_run.py (lesson 15). Rank 0 holds the first layers of an MLP (stage 0), rank 1 the
rest and the loss (stage 1). One training step:

    rank 0: h = stage0(x); send(h)            rank 1: recv(h); h.requires_grad_()
                                                      loss = CE(stage1(h), y); loss.backward()
    rank 0: recv(g); h.backward(g)                    send(h.grad)          # g = dloss/dh

Autograd never crosses the process boundary by itself: rank 1 must ask for the gradient of its
input and send it, and rank 0 must continue the backward pass from it. ``send_grad=False`` is the
negative control that forgets this: stage 0 then gets no gradient at all.
"""
import contextlib
import time

import torch
import torch.distributed as dist
from torch import nn

from course_utils.memory import SavedActivations, breakdown

clock = time.perf_counter  # on Linux one clock for every process of the machine


def make_mlp(width, depth=3, seed=0):
    """64 -> width (tanh) ... -> 10: ``depth`` hidden layers; the same weights in every process."""
    torch.manual_seed(seed)
    layers, d = [], 64
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.Tanh()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, 10))


def train_step(stage, x, y, rank, dev, send_grad=True, timeline=None, i=0, saved=None):
    """One forward + backward of the two-stage model; returns the loss on rank 1, None on rank 0.
    ``timeline`` (a course_utils.pipeline.Timeline) gets one F and one B interval per stage;
    ``saved`` (a SavedActivations) counts what this stage keeps for its backward pass."""
    record = timeline.add if timeline is not None else (lambda *a: None)
    with saved if saved is not None else contextlib.nullcontext():
        if rank == 0:
            t0 = clock()
            h = stage(x.to(dev))
            record(0, t0, clock(), "F", i)
            dist.send(h.detach(), dst=1)                      # activations forward
        else:
            h = torch.empty(len(x), stage[0].in_features, device=dev)
            dist.recv(h, src=0)
            h.requires_grad_(send_grad)                       # we want dloss/dh ... (control: we forget)
            t0 = clock()
            loss = nn.functional.cross_entropy(stage(h), y.to(dev))
            record(1, t0, clock(), "F", i)
    if rank == 0:
        if send_grad:
            g = torch.empty_like(h)
            dist.recv(g, src=1)                               # the gradient comes back ...
            t0 = clock()
            h.backward(g)                                     # ... and the backward pass goes on here
            record(0, t0, clock(), "B", i)
        return None
    t0 = clock()
    loss.backward()
    record(1, t0, clock(), "B", i)
    if send_grad:
        dist.send(h.grad, dst=0)                              # ... and send it back
    return loss.item()


def reference_grads(width, split, x, y):
    """Gradients of the unsplit model on one device (this process), stage by stage."""
    full = make_mlp(width)
    nn.functional.cross_entropy(full(x), y).backward()
    return [[p.grad.clone() for p in full[:split].parameters()], [p.grad.clone() for p in full[split:].parameters()]]


def run(x, y, width, split, steps, lr, dev):
    """Everything lesson 15 measures on the two stages; returns this rank's results (plain values)."""
    from course_utils.pipeline import Timeline
    rank = dist.get_rank()
    full = make_mlp(width)
    stage = (full[:split] if rank == 0 else full[split:]).to(dev)
    out = {"rank": rank, "device": str(dev), "params": sum(p.numel() for p in stage.parameters())}

    # 1. gradients of one step equal the unsplit model's, and the control that forgets to send them back
    ref = reference_grads(width, split, x, y)[rank]
    for name, send in (("model parallel", True), ("control: gradient not sent back", False)):
        for p in stage.parameters():  # zeros, so that a gradient that never arrives reads as 0
            p.grad = torch.zeros_like(p)
        train_step(stage, x, y, rank, dev, send_grad=send)
        out[name] = max((p.grad.cpu() - r).abs().max().item() for p, r in zip(stage.parameters(), ref))
        out[name + " |grad|"] = max(p.grad.abs().max().item() for p in stage.parameters())
        dist.barrier()

    # 2. memory: parameters, gradients, Adam's state and saved activations of this stage, after a step
    opt = torch.optim.Adam(stage.parameters(), lr=lr)
    opt.zero_grad(set_to_none=True)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    saved = SavedActivations(stage)  # entered by train_step around the forward pass
    loss = train_step(stage, x, y, rank, dev, saved=saved)
    opt.step()
    out["memory"] = breakdown(stage, opt, saved.bytes)
    out["saved tensors"] = saved.tensors
    if dev.type == "cuda":  # what the allocator reports: after the step, and the peak during it
        torch.cuda.synchronize(dev)
        out["cuda allocated"] = [torch.cuda.memory_allocated(dev), torch.cuda.max_memory_allocated(dev)]
    else:
        out["cuda allocated"] = None  # a CPU has no such counter
    dist.barrier()

    # 3. the naive schedule's timeline: `steps` more Adam steps, every F and B stamped
    timeline = Timeline()
    losses = [loss]
    for i in range(steps):
        opt.zero_grad(set_to_none=True)
        losses.append(train_step(stage, x, y, rank, dev, timeline=timeline, i=i))
        opt.step()
    out["timeline"] = timeline.to_list()
    out["losses"] = losses if rank == 1 else None

    # 4. the same 1 + steps Adam steps on one device: the parameters must agree
    single = make_mlp(width).to(dev)
    opt1 = torch.optim.Adam(single.parameters(), lr=lr)
    for _ in range(steps + 1):
        opt1.zero_grad()
        nn.functional.cross_entropy(single(x.to(dev)), y.to(dev)).backward()
        opt1.step()
    mine = single[:split] if rank == 0 else single[split:]
    out["params vs single device"] = max((p - q).abs().max().item() for p, q in zip(stage.parameters(), mine.parameters()))
    start = make_mlp(width)
    start = start[:split] if rank == 0 else start[split:]
    out["params moved"] = max((p.cpu() - q).abs().max().item() for p, q in zip(stage.parameters(), start.parameters()))
    return out


def branches(x, width, repeats, dev):
    """Two independent branches, one per rank, at the same time; rank 0 adds their outputs.
    Returns the intervals each branch ran and (rank 0) the max |Δ| from one process running both."""
    rank = dist.get_rank()
    torch.manual_seed(1)
    pair = [make_mlp(width, depth=2, seed=s) for s in (1, 2)]
    mine = pair[rank].to(dev)
    intervals = []
    with torch.no_grad():
        mine(x.to(dev))                       # warm-up
        for _ in range(repeats):
            dist.barrier()
            t0 = clock()
            z = mine(x.to(dev))
            intervals.append((t0, clock()))
            if rank == 1:
                dist.send(z, dst=0)
            else:
                other = torch.empty_like(z)
                dist.recv(other, src=1)
                z = z + other
        diff, sequential = None, []
        if rank == 0:
            pair = [m.to(dev) for m in pair]
            for _ in range(repeats):
                t0 = clock()
                ref = pair[0](x.to(dev)) + pair[1](x.to(dev))
                sequential.append(clock() - t0)
            diff = (ref - z).abs().max().item()
        dist.barrier()
    return {"intervals": intervals, "max_diff": diff, "sequential": sequential}
