"""ZeRO stage 1 written out: each rank keeps Adam's state for one 1/N slice of a flat parameter vector.

Imported by shard_compare.py (lesson 14). One step, on every rank:
  1. backward as usual: every rank has the full gradient of its own mini-batch;
  2. reduce-scatter the flat gradient: rank r receives the SUM over ranks of slice r only;
  3. Adam updates slice r (divided by N: the average, as DDP) -- the state exists for that slice only;
  4. all-gather the updated slices so every rank has all parameters again.
Communication: reduce-scatter + all-gather = one all-reduce's worth of bytes, the same as DDP.
"""
import torch
import torch.distributed as dist


class Zero1Adam:
    def __init__(self, params, lr=1e-3, gather=True):
        self.params = list(params)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.numel = sum(p.numel() for p in self.params)
        self.shard = -(-self.numel // self.world)  # ceil: the flat vector is padded to N equal slices
        self.lo, self.hi = self.rank * self.shard, (self.rank + 1) * self.shard
        self.gather = gather  # False only for the negative control: skip step 4
        with torch.no_grad():
            mine = self.flat([p.detach() for p in self.params])[self.lo:self.hi]
        self.mine = torch.nn.Parameter(mine.clone())  # my slice of the parameters, updated by my Adam
        self.adam = torch.optim.Adam([self.mine], lr=lr)  # so its state covers 1/N of the parameters

    def flat(self, tensors):
        out = torch.zeros(self.shard * self.world, device=tensors[0].device)
        out[:self.numel] = torch.cat([t.reshape(-1) for t in tensors])
        return out

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        grad_slice = torch.empty(self.shard, device=self.mine.device)
        dist.reduce_scatter_single(grad_slice, self.flat([p.grad for p in self.params]))  # 2. sum, my slice
        self.mine.grad = grad_slice / self.world                                          #    -> average
        self.adam.step()                                                                   # 3. update it
        full = self.flat([p.detach() for p in self.params])
        if self.gather:
            dist.all_gather_single(full, self.mine.detach())                              # 4. share slices
        else:
            full[self.lo:self.hi] = self.mine.detach()  # control: only my own slice is ever updated
        for p, values in zip(self.params, full[:self.numel].split([p.numel() for p in self.params])):
            p.copy_(values.view_as(p))
