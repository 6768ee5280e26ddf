"""Tensor parallelism across processes: column- and row-parallel linear layers and the Megatron MLP.

Imported by mp_run.py (lesson 15). A linear layer y = x Wᵀ (W: out × in) is split over N ranks

  - by columns of the output (rows of W): rank r computes y_r = x W_rᵀ, a slice of y's features;
  - by rows of the input (columns of W):  rank r computes x_r W_rᵀ, a partial sum; y = Σ_r.

The Megatron MLP, z = GeLU(x Aᵀ + a) Bᵀ + b, splits A by columns and B by rows, so GeLU runs on
each rank's slice and only one all-reduce is needed per pass. Two conjugate functions mark where:

  f: forward identity,   backward all-reduce  (before the column-parallel layer)
  g: forward all-reduce, backward identity    (after the row-parallel layer)

Every all-reduce goes through ``all_reduce`` below, which records its size in ``LOG``.
"""
import torch
import torch.distributed as dist
from torch import nn

LOG = []  # (where, bytes of the tensor) for every all-reduce


def all_reduce(t, where):
    LOG.append((where, t.numel() * t.element_size()))
    dist.all_reduce(t)
    return t


class F(torch.autograd.Function):
    """f: identity forward; backward sums the input gradient over the ranks (each rank's slice of the
    layer contributes part of dL/dx). ``reduce=False`` is the negative control that forgets it."""

    @staticmethod
    def forward(ctx, x, reduce=True):
        ctx.reduce = reduce
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return (all_reduce(grad.clone(), "f backward") if ctx.reduce else grad), None


class G(torch.autograd.Function):
    """g: all-reduce forward (sum the partial outputs); identity backward (every rank needs all of dL/dz)."""

    @staticmethod
    def forward(ctx, x):
        return all_reduce(x.clone(), "g forward")

    @staticmethod
    def backward(ctx, grad):
        return grad


def megatron_mlp(x, A, a, B, b, reduce_backward=True):
    """This rank's part of z = GeLU(x Aᵀ + a) Bᵀ + b; A, a: its rows of A (column-parallel);
    B: its columns of B (row-parallel); b is added once, after the sum."""
    h = nn.functional.gelu(nn.functional.linear(F.apply(x, reduce_backward), A, a))
    return G.apply(nn.functional.linear(h, B)) + b


def run(batch, d_model, d_ff, dev):
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same full weights and data on every rank
    x = torch.randn(batch, d_model, device=dev)
    lin1, lin2 = nn.Linear(d_model, d_ff).to(dev), nn.Linear(d_ff, d_model).to(dev)
    w = torch.randn(batch, d_model, device=dev)  # loss = Σ w ⊙ z: a gradient that is not all ones
    cols = slice(rank * d_ff // world, (rank + 1) * d_ff // world)
    out = {"rank": rank}

    # column-parallel linear alone: rank r owns output features `cols`; all-gather to compare
    y_r = nn.functional.linear(x, lin1.weight[cols], lin1.bias[cols])
    parts = [torch.empty_like(y_r) for _ in range(world)]
    dist.all_gather(parts, y_r.detach().contiguous())
    out["column max diff"] = (torch.cat(parts, 1) - lin1(x)).abs().max().item()

    # row-parallel linear alone: rank r owns input features `mine`; all-reduce the partial sums.
    # Cut in the middle (as the Megatron MLP does) and, to see that the cut matters, at 3/8
    h = torch.randn(batch, d_ff, device=dev)
    for name, cut in (("row max diff", d_ff // 2), ("row max diff, cut at 3/8", 3 * d_ff // 8)):
        mine = slice(0, cut) if rank == 0 else slice(cut, d_ff) if rank == 1 else slice(0, 0)
        z_r = nn.functional.linear(h[:, mine], lin2.weight[:, mine]).detach()
        dist.all_reduce(z_r)
        out[name] = (z_r + lin2.bias - lin2(h)).abs().max().item()

    # the Megatron MLP: forward and every gradient against the unsplit MLP
    xf = x.clone().requires_grad_()
    zf = lin2(nn.functional.gelu(lin1(xf)))
    (w * zf).sum().backward()
    for name, reduce in (("megatron", True), ("control: f without all-reduce", False)):
        A = lin1.weight[cols].detach().clone().requires_grad_()
        a = lin1.bias[cols].detach().clone().requires_grad_()
        B = lin2.weight[:, cols].detach().clone().requires_grad_()
        b = lin2.bias.detach().clone().requires_grad_()
        xs = x.clone().requires_grad_()
        LOG.clear()
        z = megatron_mlp(xs, A, a, B, b, reduce_backward=reduce)
        (w * z).sum().backward()
        out[name] = {
            "output": (z - zf).abs().max().item(),
            "dA": (A.grad - lin1.weight.grad[cols]).abs().max().item(),
            "da": (a.grad - lin1.bias.grad[cols]).abs().max().item(),
            "dB": (B.grad - lin2.weight.grad[:, cols]).abs().max().item(),
            "db": (b.grad - lin2.bias.grad).abs().max().item(),
            "dx": (xs.grad - xf.grad).abs().max().item(),
            "all-reduces": list(LOG),
        }
    out["weight bytes per rank"] = sum(t.numel() * t.element_size() for t in (A, a, B, b))
    out["weight bytes unsplit"] = sum(p.numel() * p.element_size() for p in (*lin1.parameters(), *lin2.parameters()))
    return out
