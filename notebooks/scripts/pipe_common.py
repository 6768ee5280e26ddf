"""What the pipeline scripts share: the model, its cut into stages, the data, and a calibrated workload.

The model is a 4-layer MLP on 8×8 digits, built from seed 0 so every process (and the notebook) starts
from the same weights: ``Linear(64,H) Tanh Linear(H,H) Tanh Linear(H,H) Tanh Linear(H,10)``.
``stages(model, n)`` cuts it into n consecutive pieces at the Tanh boundaries (n = 2 or 4).
"""
import time

import numpy as np
import torch
from torch import nn


def make_model(hidden=32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 10))


CUTS = {1: [0, 7], 2: [0, 4, 7], 4: [0, 2, 4, 6, 7]}  # module indices where the stages begin / end


def stages(model, n):
    c = CUTS[n]
    return [model[c[i]:c[i + 1]] for i in range(n)]


def load(path, batch):
    d = np.load(path)
    return torch.tensor(d["x"][:batch]), torch.tensor(d["y"][:batch])


class Busy(torch.autograd.Function):
    """A calibrated stage workload: sleep ``fwd`` seconds in the forward, ``bwd`` in the backward.
    Sleeping processes do not compete for the cores, so the timeline shows the schedule itself."""

    @staticmethod
    def forward(ctx, x, fwd, bwd):
        ctx.bwd = bwd
        time.sleep(fwd)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        time.sleep(ctx.bwd)
        return grad, None, None


class Calibrated(nn.Module):
    def __init__(self, inner, fwd, bwd):
        super().__init__()
        self.inner, self.fwd, self.bwd = inner, fwd, bwd

    def forward(self, x):
        return Busy.apply(self.inner(x), self.fwd, self.bwd)


class LiveActivations:
    """Bytes autograd holds for backward (saved_tensors_hooks) for the micro-batches of this step, and
    their peak. A saved block counts (numel × element size; a block saved twice counts once) from the
    forward that saves it until autograd frees it after its backward. ``reset()`` starts a new step:
    blocks still alive from an earlier step no longer count. Parameters are not activations."""

    def __init__(self, params):
        self.skip = {p.data_ptr() for p in params}
        self.step, self.holders = 0, {}  # (step, address, bytes) -> saved references alive
        self.reset()

    def reset(self):
        self.step += 1
        self.live = self.peak = 0
        self.per_forward = []  # bytes saved by each forward (one micro-batch)

    def hooks(self):
        tracker = self

        class Held:
            def __init__(self, t):
                self.t, self.key = t, (tracker.step, t.data_ptr(), t.numel() * t.element_size())
                if tracker.holders.get(self.key, 0) == 0:
                    tracker.live += self.key[2]
                    tracker.per_forward[-1] += self.key[2]
                    tracker.peak = max(tracker.peak, tracker.live)
                tracker.holders[self.key] = tracker.holders.get(self.key, 0) + 1

            def __del__(self):
                tracker.holders[self.key] -= 1
                if tracker.holders[self.key] == 0:
                    del tracker.holders[self.key]
                    if self.key[0] == tracker.step:
                        tracker.live -= self.key[2]

        def pack(t):
            return t if t.data_ptr() in self.skip else Held(t)

        def unpack(h):
            return h.t if isinstance(h, Held) else h

        return torch.autograd.graph.saved_tensors_hooks(pack, unpack)


class Tracked(nn.Module):
    """Runs ``inner`` with the LiveActivations hooks on; one entry in ``per_forward`` per call."""

    def __init__(self, inner, tracker):
        super().__init__()
        self.inner, self.tracker = inner, tracker

    def forward(self, x):
        if x.device.type == "meta":
            return self.inner(x)
        self.tracker.per_forward.append(0)
        with self.tracker.hooks():
            return self.inner(x)
