"""Count the collectives a training step makes, and the bytes each rank sends for them.

Imported by the shard_*.py scripts of lesson 14. ``CommLog`` wraps the torch.distributed functions that
sharded training calls from Python (all_reduce, broadcast, all_gather_single, reduce_scatter_single) so
every call is recorded with its op and the size of the *whole* tensor it works on. DDP's built-in
all-reduce runs in C++ where no wrapper sees it; registering the equivalent Python communication hook
(``default_hooks.allreduce_hook``: the same averaging) sends it through ``dist.all_reduce``.

Bytes each rank sends, for a tensor of S bytes on N ranks with the bandwidth-optimal (ring) algorithms
of lessons 11-12: all-reduce 2(N-1)/N·S, reduce-scatter (N-1)/N·S, all-gather (N-1)/N·S, and a broadcast
(N-1)/N·S on average (a pipelined chain: every rank but the last forwards the S bytes once).
"""
import torch.distributed as dist

RING_FACTOR = {"all_reduce": 2, "reduce_scatter": 1, "all_gather": 1, "broadcast": 1}  # × (N-1)/N · S
WRAPPED = {"all_reduce": "all_reduce", "broadcast": "broadcast", "all_gather_single": "all_gather",
           "reduce_scatter_single": "reduce_scatter"}


def _size(args, kwargs):
    """Bytes of the whole tensor: the largest tensor argument (all-gather: the output, reduce-scatter:
    the input, all-reduce and broadcast: the only one)."""
    tensors = [a for a in (*args, *kwargs.values()) if hasattr(a, "element_size")]
    return max(t.numel() * t.element_size() for t in tensors)


class CommLog:
    """``with CommLog() as log:`` records ``(op, bytes of the whole tensor)`` for every wrapped call,
    except calls on the process groups in ``ignore`` (e.g. a group used only to measure)."""

    def __init__(self, ignore=()):
        self.calls, self.ignore, self._saved = [], list(ignore), {}

    def record(self, op, nbytes):
        self.calls.append((op, nbytes))

    def __enter__(self):
        for name, op in WRAPPED.items():
            original = getattr(dist, name)
            self._saved[name] = original

            def wrapper(*args, _original=original, _name=name, _op=op, **kwargs):
                if not any(kwargs.get("group") is g for g in self.ignore):
                    self.record(_op, _size(args, kwargs))
                return _original(*args, **kwargs)
            setattr(dist, name, wrapper)
        return self

    def __exit__(self, *exc):
        for name, original in self._saved.items():
            setattr(dist, name, original)

    def summary(self, world):
        """{op: {"calls": k, "bytes": sum of S, "sent": bytes each rank sends}} and a "total" sent."""
        out = {}
        for op, nbytes in self.calls:
            row = out.setdefault(op, {"calls": 0, "bytes": 0, "sent": 0})
            row["calls"] += 1
            row["bytes"] += nbytes
            row["sent"] += RING_FACTOR[op] * (world - 1) * nbytes // world
        out["total"] = sum(row["sent"] for row in out.values())
        return out
