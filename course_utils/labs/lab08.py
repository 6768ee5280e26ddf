"""Checks for lab 08: turn a single-process training script into a DDP script.

    from course_utils.labs import lab08 as check
    check.q1(SCRIPT)   # the ranks trained on disjoint shards that together make the right batches
    check.q2(SCRIPT)   # the checkpoint equals the single-process reference (max |Δ| <= 1e-5)
    check.q3(SCRIPT)   # only rank 0 wrote the checkpoint, and it loads into a plain model

The first check launches the script with ``torchrun`` on fresh hidden inputs: a world size (2 or
3), a random data set (its size, features and classes), seed, number of steps (always more than one
epoch), global batch (a multiple of the world size) and learning rate — nothing can be hard-coded,
not even ``batch // 2``. The later checks reuse that
launch while the file is unchanged. The script runs under a small audit wrapper that records, per
rank, which samples the ``TensorDataset`` handed out and every ``torch.save`` call; the checker
compares them with its own single-process reference (the given ``train_single.py``'s algorithm,
written again here).
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_utils.labs import NotDone, Wrong, exercise, rng

WORLDS = (2, 3)  # hidden world sizes (3 ranks on 2 cores is fine for this tiny model)
TIMEOUT = 150
HINT_SHARDS = ("every rank must see a different part of each global batch, the parts together being exactly "
               "the batch one process would use — with the same shuffle, renewed every epoch, on every rank",
               "a DistributedSampler that shuffles with the run's seed and drops the uneven tail, a per-rank "
               "batch of the global batch divided by the world size, and the sampler's set_epoch at the start "
               "of every epoch")

AUDIT = r'''
import atexit, json, os, runpy, sys
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import TensorDataset

audit = {"indices": [], "saves": [], "allreduced": 0}
_getitem, _save = TensorDataset.__getitem__, torch.save
_ddp_init, _all_reduce = DistributedDataParallel.__init__, dist.all_reduce


def ddp_init(self, *args, **kwargs):
    _ddp_init(self, *args, **kwargs)

    def counted(state, bucket):  # DDP's own gradient all-reduce (the default averaging), counted
        audit["allreduced"] += bucket.buffer().numel() * bucket.buffer().element_size()
        return allreduce_hook(state, bucket)
    self.register_comm_hook(None, counted)


def all_reduce(tensor, *args, **kwargs):  # gradients averaged by hand count too
    audit["allreduced"] += tensor.numel() * tensor.element_size()
    return _all_reduce(tensor, *args, **kwargs)


def getitem(self, index):
    audit["indices"].append(int(index))
    return _getitem(self, index)


def save(obj, f, *args, **kwargs):
    audit["saves"].append(str(f))
    return _save(obj, f, *args, **kwargs)


def write_audit():
    path = os.path.join(os.environ["LAB08_AUDIT"], "rank%s.json" % os.environ.get("RANK", 0))
    with open(path, "w") as f:
        f.write(json.dumps(audit))


TensorDataset.__getitem__, torch.save = getitem, save
DistributedDataParallel.__init__, dist.all_reduce = ddp_init, all_reduce
atexit.register(write_audit)  # also when the script calls sys.exit()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
write_audit()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)  # skip interpreter teardown: torch 2.14 + gloo sometimes aborts there after a clean run
'''


@dataclass
class Run:
    """One launch of a student script on hidden inputs, and what the checker learned from it."""
    hidden: dict
    batches: list  # the reference's global batches (index arrays), one per step
    reference: dict  # the reference's final parameters
    error: str | None = None
    not_done: bool = False
    audits: dict = field(default_factory=dict)
    checkpoint: dict | None = None


_runs: dict[tuple[str, str], Run] = {}


def hidden_inputs(world: int | None = None) -> dict:
    r = rng()
    world = int(world or r.choice(WORLDS))
    batch = world * int(r.integers(10, 23))  # a global batch that the world size divides
    while True:  # a data size where DistributedSampler's padding (drop_last=False) keeps the steps per epoch
        n = int(r.integers(300, 700))
        if n % batch and -(-n // world) // (batch // world) == n // batch:
            break
    return dict(world=world, n=n, features=int(r.integers(6, 20)), classes=int(r.integers(3, 7)), batch=batch,
                steps=n // batch + int(r.integers(3, 9)), lr=round(float(r.uniform(0.05, 0.3)), 3),
                seed=int(r.integers(0, 10_000)))


def make_data(h: dict) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng(h["seed"])
    centres = r.normal(0, 2, (h["classes"], h["features"]))
    y = r.integers(0, h["classes"], h["n"])
    y[: h["classes"]] = np.arange(h["classes"])  # every class present
    x = centres[y] + r.normal(0, 1.5, (h["n"], h["features"]))
    return x.astype(np.float32), y.astype(np.int64)


def reference(h: dict, x: np.ndarray, y: np.ndarray) -> tuple[list, dict]:
    """What train_single.py computes: SGD on batches of a seed+epoch shuffle (drop_last)."""
    import torch
    from torch import nn
    torch.manual_seed(h["seed"])
    model = nn.Sequential(nn.Linear(h["features"], 32), nn.Tanh(), nn.Linear(32, h["classes"]))
    xt, yt = torch.tensor(x), torch.tensor(y)
    batches, step, epoch = [], 0, 0
    while step < h["steps"]:
        order = torch.randperm(h["n"], generator=torch.Generator().manual_seed(h["seed"] + epoch))
        for i in range(h["n"] // h["batch"]):
            idx = order[i * h["batch"]:(i + 1) * h["batch"]]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            with torch.no_grad():
                for p, g in zip(model.parameters(), torch.autograd.grad(loss, list(model.parameters()))):
                    p -= h["lr"] * g
            batches.append(idx.numpy())
            step += 1
            if step == h["steps"]:
                break
        epoch += 1
    return batches, {k: v.numpy() for k, v in model.state_dict().items()}


def launch(script) -> Run:
    """Run ``script`` at a hidden world size on fresh hidden inputs (cached while the file is unchanged)."""
    if not isinstance(script, (str, Path)):
        raise Wrong(f"pass the path of your script (a str or Path), got {type(script).__name__}")
    path = Path(script)
    if not path.is_file():
        raise Wrong(f"no file {path} — run the %%writefile cell first")
    key = (str(path.resolve()), hashlib.sha256(path.read_bytes()).hexdigest())
    if key not in _runs:
        _runs[key] = _launch(path)
    return _runs[key]


def _launch(path: Path) -> Run:
    import torch
    from course_utils.dist import DistError, torchrun
    h = hidden_inputs()
    x, y = make_data(h)
    batches, ref = reference(h, x, y)
    run = Run(h, batches, ref)
    with tempfile.TemporaryDirectory(prefix="lab08_") as tmp:
        tmp = Path(tmp)
        (tmp / "out").mkdir()
        np.savez(tmp / "data.npz", x=x, y=y)
        (tmp / "audit.py").write_text(AUDIT)
        args = [path.resolve(), "--data", tmp / "data.npz", "--out", tmp / "out", "--steps", h["steps"],
                "--batch", h["batch"], "--lr", h["lr"], "--seed", h["seed"]]
        try:
            torchrun(tmp / "audit.py", nprocs=h["world"], args=args, timeout=TIMEOUT, env={"LAB08_AUDIT": tmp},
                     stream=False)
        except DistError as err:
            text = "\n".join(line for lines in err.lines.values() for line in lines) + str(err)
            run.not_done = "NotImplementedError" in text
            said = [s.strip() for s in str(err).splitlines() if s.strip()] or ["the launch failed"]
            run.error = said[0].removesuffix("; its last lines:") + (f" — {said[-1]}" if len(said) > 1 else "")
        for r in range(h["world"]):
            f = tmp / f"rank{r}.json"
            if f.exists():
                run.audits[r] = json.loads(f.read_text())
        if (tmp / "out" / "model.pt").exists():
            try:
                state = torch.load(tmp / "out" / "model.pt", map_location="cpu", weights_only=True)
                run.checkpoint = {k: v.numpy() for k, v in state.items()} if isinstance(state, dict) else None
            except Exception:
                run.checkpoint = None
    return run


def _completed(script) -> Run:
    run = launch(script)
    if run.not_done:
        raise NotDone
    if run.error:
        raise Wrong(f"the script failed at world size {run.hidden['world']}: {run.error}")
    if sorted(run.audits) != list(range(run.hidden["world"])):
        raise Wrong("a rank did not finish normally (no audit record)")
    return run


def _shards(run: Run) -> str:
    """Raise Wrong unless the ranks trained on disjoint shards that make the reference batches."""
    h, world = run.hidden, run.hidden["world"]
    b = h["batch"] // world
    seen = [np.array(run.audits[r]["indices"]) for r in range(world)]
    steps = h["steps"]
    for r, s in enumerate(seen):
        if len(s) == steps * h["batch"]:
            raise Wrong(f"rank {r} used {h['batch']} samples per step, the whole global batch; "
                        f"each of the {world} ranks should take {h['batch']} // world_size = {b}")
        if len(s) != steps * b:
            per = f"{len(s) / steps:.3g}" if steps else "?"
            raise Wrong(f"at world size {world}, global batch {h['batch']}: rank {r} trained on {len(s)} samples "
                        f"in {steps} steps ({per} per step), expected {b} per step = batch // world_size")
    per_step = [s.reshape(steps, b) for s in seen]
    if all(np.array_equal(per_step[0], p) for p in per_step[1:]):
        raise Wrong("every rank trained on the same samples: each rank needs its own shard")
    for t in range(steps):
        shards = [set(p[t].tolist()) for p in per_step]
        if any(shards[i] & shards[j] for i in range(world) for j in range(i)):
            raise Wrong(f"at step {t} two ranks shared samples: the shards must be disjoint")
        if set.union(*shards) != set(run.batches[t].tolist()):
            epoch_len = h["n"] // h["batch"]
            why = ("did you call sampler.set_epoch(epoch) every epoch?" if t >= epoch_len
                   else "is the shuffle seeded with seed=args.seed?")
            raise Wrong(f"at step {t} (epoch {t // epoch_len}) the ranks' shards together are not the batch the "
                        f"single-process script uses: {why}")
    return ("every rank took batch // world_size samples per step, disjoint, together exactly the "
            "single-process batches at every step (hidden world size and data, more than one epoch)")


@exercise("q1 disjoint shards", HINT_SHARDS)
def q1(script) -> str:
    return _shards(_completed(script))


@exercise("q2 same parameters as one process",
          ("N ranks on N shards equal one process on the whole batch only if their gradients are averaged "
           "before every update, and q1 passes (same data, same steps, same learning rate)",
           "wrap the model with DDP(model) so gradients are averaged across ranks, and make q1 pass first"))
def q2(script) -> str:
    run = _completed(script)
    try:
        _shards(run)
    except Wrong as wrong:
        raise Wrong(f"make q1 pass first — equal parameters prove nothing while {wrong}") from None
    if run.checkpoint is None:
        raise Wrong("no readable checkpoint OUT/model.pt (a state_dict saved with torch.save)")
    got = {k.removeprefix("module."): v for k, v in run.checkpoint.items()}
    if sorted(got) != sorted(run.reference):
        raise Wrong(f"the checkpoint has keys {sorted(got)}, expected {sorted(run.reference)}")
    for k, v in got.items():
        if v.shape != run.reference[k].shape:
            raise Wrong(f"checkpoint entry {k} has shape {v.shape}, expected {run.reference[k].shape}")
    err = max(float(np.abs(got[k] - run.reference[k]).max()) for k in got)
    if not np.isfinite(err) or err > 1e-5:
        raise Wrong(f"the final parameters differ from the single-process reference by up to {err:.2g}")
    steps = run.hidden["steps"]
    need = steps * sum(v.size * 4 for v in run.reference.values())  # every step's float32 gradients
    for r in range(run.hidden["world"]):
        sent = int(run.audits[r].get("allreduced", 0))
        if sent < need:
            raise Wrong(f"the parameters match, but rank {r} all-reduced {sent} bytes of gradients in {steps} "
                        f"steps, not the {need} that averaging every step's gradients takes: each rank must "
                        "train on its own shard and the ranks must average their gradients (DDP)")
    return "at the end of the hidden run the checkpoint equals the single-process reference (max |Δ| <= 1e-5)"


@exercise("q3 one checkpoint, from rank 0",
          ("every rank holds the same model, so one rank writes it; and the file should load into the model "
           "without the DDP wrapper",
           "only rank 0 saves, and it saves the state dict of the plain model that the DDP wrapper holds "
           "(its module)"))
def q3(script) -> str:
    run = _completed(script)
    savers = [r for r in range(run.hidden["world"]) if run.audits[r]["saves"]]
    if not savers:
        raise Wrong("no rank called torch.save: the checkpoint is missing")
    if savers != [0]:
        raise Wrong(f"rank(s) {', '.join(map(str, savers))} called torch.save; only rank 0 should write")
    if run.checkpoint is None:
        raise Wrong("OUT/model.pt is not a state_dict that torch.load(weights_only=True) can read")
    if any(k.startswith("module.") for k in run.checkpoint):
        raise Wrong("the checkpoint's keys start with 'module.': it will not load into a plain model")
    return "only rank 0 called torch.save, and model.pt loads into the plain model"
