"""Count the bytes a PyTorch training step keeps, by category: parameters, gradients, optimizer state,
activations saved for the backward pass.

    from course_utils.memory import breakdown, SavedActivations
    with SavedActivations(model) as saved:
        loss = loss_fn(model(x), y)
    loss.backward(); opt.step()
    breakdown(model, opt, saved.bytes)   # {"parameters": ..., "gradients": ..., "optimizer state": ..., ...}

Every count is ``numel × element_size`` of the tensors this process holds, summed — exact and the same
on CPU and GPU, and independent of the allocator (``torch.cuda.memory_allocated`` would add caching and
alignment on a GPU, and is 0 on a CPU). Sharded tensors count their *local* shard only: a DTensor
(FSDP2) counts ``to_local()``, so the numbers are per process (per rank). Views of one storage are
counted once in ``SavedActivations``; a parameter saved for backward is not an activation.
"""
from __future__ import annotations

from typing import Iterable


def _local(t):
    """The part of ``t`` this process holds: a DTensor's local shard, else ``t`` itself."""
    return t.to_local() if hasattr(t, "to_local") else t


def tensor_bytes(tensors: Iterable) -> int:
    """Sum of ``numel × element_size`` over ``tensors`` (None entries, e.g. missing gradients, count 0)."""
    total = 0
    for t in tensors:
        if t is not None:
            t = _local(t)
            total += t.numel() * t.element_size()
    return total


def parameter_bytes(model) -> int:
    return tensor_bytes(model.parameters())


def gradient_bytes(model) -> int:
    """Bytes of the ``.grad`` tensors currently held (0 after ``zero_grad(set_to_none=True)``)."""
    return tensor_bytes(p.grad for p in model.parameters())


def optimizer_state_bytes(optimizer, moments_only: bool = False) -> int:
    """Bytes of every tensor in ``optimizer.state`` (Adam: ``exp_avg``, ``exp_avg_sq`` and a scalar ``step``
    per parameter). ``moments_only=True`` skips 0-dimensional tensors (the step counters). Empty until the
    first ``step()``: PyTorch creates the state lazily. Works for ``ZeroRedundancyOptimizer`` (its local
    shard's optimizer) and for FSDP2 (DTensor state counts its local shard)."""
    inner = getattr(optimizer, "optim", optimizer)  # ZeroRedundancyOptimizer wraps the local optimizer
    tensors = [v for state in inner.state.values() for v in state.values() if hasattr(v, "numel")]
    if moments_only:
        tensors = [t for t in tensors if _local(t).dim() > 0]
    return tensor_bytes(tensors)


class SavedActivations:
    """Context manager counting the bytes autograd saves for the backward pass inside the block.

    Each storage counts once (a tensor saved by two operations, or two views of it, is one block of
    memory); storages that belong to ``exclude`` (a model's parameters) are not activations.
    ``bytes`` holds the total after the block, ``count`` the number of distinct storages and
    ``tensors`` one ``(shape, dtype, bytes)`` row per storage, in the order autograd saved them.
    """

    def __init__(self, exclude=None):
        import torch
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._skip = {_local(p).untyped_storage().data_ptr() for p in (exclude.parameters() if hasattr(
            exclude, "parameters") else exclude or [])}
        self._seen: dict[int, tuple] = {}

    def _pack(self, t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in self._skip and storage.data_ptr() not in self._seen:
            self._seen[storage.data_ptr()] = (tuple(t.shape), str(t.dtype).replace("torch.", ""), storage.nbytes())
        return t

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)

    @property
    def tensors(self) -> list[tuple]:
        return list(self._seen.values())

    @property
    def bytes(self) -> int:
        return sum(row[2] for row in self._seen.values())

    @property
    def count(self) -> int:
        return len(self._seen)


def breakdown(model, optimizer=None, activations: int = 0) -> dict[str, int]:
    """Bytes per category for this process: parameters, gradients, optimizer state, activations, total."""
    parts = {"parameters": parameter_bytes(model), "gradients": gradient_bytes(model),
             "optimizer state": optimizer_state_bytes(optimizer) if optimizer is not None else 0,
             "activations": activations}
    parts["total"] = sum(parts.values())
    return parts
