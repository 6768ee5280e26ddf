"""Ring all-reduce on torch.distributed (gloo): reduce-scatter, then all-gather, with isend + recv."""
import torch
import torch.distributed as dist


def ring_allreduce(tensor, verbose=False):
    """Sum a 1-D tensor over all ranks, in place, sending only to the right neighbour."""
    # TODO: rank, world, right and left neighbours; chunks = torch.tensor_split(tensor, world)
    # TODO: reduce-scatter then all-gather, world - 1 steps each, with the chunk indices of the
    #       NumPy version; per step: dist.isend to the right, dist.recv from the left, wait(), add / copy
    raise NotImplementedError


if __name__ == "__main__":  # the demo: torchrun --nproc-per-node=N my_ring.py
    torch.set_num_threads(1)
    dist.init_process_group("gloo")                          # CPU tensors: gloo works everywhere
    rank = dist.get_rank()
    x = torch.arange(8, dtype=torch.float64) * (rank + 1)    # every rank starts with different numbers
    expected = x.clone()
    dist.all_reduce(expected)                                # the library's answer
    try:
        ring_allreduce(x, verbose=True)
        print(f"ring result {x.tolist()}; max |ring - dist.all_reduce| = {(x - expected).abs().max().item():.1e}")
    except NotImplementedError:
        print("ring_allreduce is not written yet")
    dist.destroy_process_group()
