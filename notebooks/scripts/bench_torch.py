"""One configuration of the benchmark study (lesson 17), run by every process of one launch.

    python scripts/bench_torch.py --model resnet50 --strategy single --batch 16 --out row.json
    torchrun --nproc-per-node=2 scripts/bench_torch.py --model resnet50 --strategy ddp --out row.json
    torchrun --nproc-per-node=2 scripts/bench_torch.py --model resnet50 --strategy pipeline --out row.json
    horovodrun -np 2 -H localhost:2 python scripts/bench_torch.py --model resnet50 --strategy horovod ...

(``benchmark.py`` next to this file picks the right launcher: ``course_utils.dist.torchrun`` /
``horovodrun`` on 127.0.0.1, with a timeout and no processes left behind.)

What every strategy does the same way, so that their numbers can be compared:
- the model: a torchvision model with random weights (``weights=None``), 10 classes, and its first
  convolution rebuilt to take 1 channel (grey digits) instead of 3 — nothing else changed;
- the data: the offline digits framed as 28×28 MNIST images; each data-parallel rank draws its batches
  from its own half (shard) of the training set, with its own seed;
- the optimizer: SGD with momentum 0.9 (one momentum buffer per parameter, so optimizer state =
  parameter bytes);
- the clock: ``course_utils.bench.measure`` runs ``--warmup`` untimed repeats, then ``--repeats``
  timed ones, each ``--steps`` training steps, all ranks starting together (a barrier before each
  repeat). The repeat counts as long as its SLOWEST rank took: an all-reduce with MAX over the ranks'
  times — a step is not done before every rank is done;
- memory, the maximum over the ranks: peak resident memory of the process (``peak_rss``), bytes of
  parameters, gradients, optimizer state, and of the activations saved for the backward pass by the
  first forward pass (one batch; in the pipeline one micro-batch through this rank's stage); on a GPU
  also ``torch.cuda.max_memory_allocated`` and ``max_memory_reserved`` (the thesis's "allocated" and
  "cached").
Rank 0 writes ``--out``: a JSON list with one row made by ``course_utils.study.row``. The row also says
how busy the machine was: ``load_avg_1min`` and ``cores_busy`` (CPU time / wall time of the least busy
rank while measuring: 1.0 = it had its core all the time). Other processes on the same cores slow a row
down several-fold; these two fields tell a slow strategy from a busy machine.
"""
import argparse
import json
import os
import resource
import time

import numpy as np
import torch
import torch.distributed as dist
import torchvision
from torch import nn

from course_utils import bench, study
from course_utils import dist as course_dist
from course_utils.data import digits
from course_utils.memory import SavedActivations, gradient_bytes, optimizer_state_bytes, parameter_bytes

MODELS = ("resnet50", "resnext50_32x4d", "efficientnet_b0")
STRATEGIES = ("single", "ddp", "horovod", "pipeline")
INPUT = "1x28x28 digits"
LR, MOMENTUM = 0.01, 0.9


# --- the model -------------------------------------------------------------------------------------

def build_model(name):
    """A torchvision model, random weights, 10 classes, first convolution taking 1 channel.

    Only the first convolution changes (3 -> 1 input channels, same kernel, stride and padding); the
    rest is torchvision's own network. Its stem is built for 224×224 photos: ResNet's stride-2 7×7
    convolution and stride-2 max-pool turn a 28×28 digit into 7×7 maps (EfficientNet's stride-2 stem
    into 14×14), and later stages shrink them to 1×1. That keeps a training step affordable on a CPU;
    it is not how one would design a network for 28×28 images (accuracy is not measured here).
    """
    torch.manual_seed(0)  # every rank starts from the same weights (DDP and Horovod also broadcast them)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10)
    if name.startswith("efficientnet"):
        owner, attr = model.features[0], "0"  # features[0] = Conv2dNormActivation(conv, bn, SiLU)
    else:
        owner, attr = model, "conv1"
    old = getattr(owner, attr)
    new = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")  # as torchvision initialises it
    setattr(owner, attr, new)
    return model


def split_in_two(model, name):
    """The model as two consecutive nn.Modules (pipeline stages), cut between its children.

    The cut balances the measured compute of a step at 28×28 on a CPU: at 2×2 and 1×1 maps the
    wide late blocks cost most (their weights, not their pixels), so the cut sits late.
    ResNet / ResNeXt: stem + layer1..layer3 | layer4 + pool + fc.
    EfficientNet-B0: features[:6] | features[6:] + pool + classifier.
    """
    if name.startswith("efficientnet"):
        first = model.features[:6]
        second = nn.Sequential(model.features[6:], model.avgpool, nn.Flatten(1), model.classifier)
    else:
        first = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                              model.layer1, model.layer2, model.layer3)
        second = nn.Sequential(model.layer4, model.avgpool, nn.Flatten(1), model.fc)
    return first, second


class CountFirstForward(nn.Module):
    """Runs ``inner``; its first real forward pass (a warm-up, untimed) also counts the bytes autograd
    saves for the backward pass (``course_utils.memory.SavedActivations``)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.activation_bytes = None

    def forward(self, x):
        if self.activation_bytes is not None or x.device.type == "meta":  # meta: shape inference
            return self.inner(x)
        with SavedActivations(self.inner) as saved:
            out = self.inner(x)
        self.activation_bytes = saved.bytes
        return out


# --- the data --------------------------------------------------------------------------------------

class Batches:
    """Random batches (without replacement inside a batch) from shard ``shard`` of ``shards`` of the
    digits' training split, with its own seeded generator; the tensors sit on ``device``."""

    def __init__(self, batch, shard, shards, device, seed=0):
        split = digits(size=28)
        self.x = torch.tensor(np.asarray(split.x_train)).unsqueeze(1)[shard::shards].to(device)
        self.y = torch.tensor(np.asarray(split.y_train))[shard::shards].to(device)
        if batch > len(self.x):
            raise SystemExit(f"--batch {batch} is larger than this rank's {len(self.x)} training images")
        self.batch = batch
        self.generator = torch.Generator().manual_seed(seed + shard)

    def next(self):
        idx = torch.randperm(len(self.x), generator=self.generator)[:self.batch].to(self.x.device)
        return self.x[idx], self.y[idx]


# --- the strategies: each returns (one training step, the modules this rank trains, optimizer) --------

def data_parallel(args, model, device, rank, world, wrap):
    """single, ddp, horovod: every rank holds the whole model and its own batch of ``--batch``."""
    model = CountFirstForward(model.to(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    trained = model
    if wrap == "ddp":
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    elif wrap == "horovod":
        import horovod.torch as hvd
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)
    data = Batches(args.batch, rank, world, device)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        x, y = data.next()
        optimizer.zero_grad()  # gradients to None (PyTorch's default; Horovod's optimizer takes no argument)
        loss = loss_fn(model(x), y)
        loss.backward()  # DDP all-reduces gradient buckets during backward; Horovod in its hooks
        optimizer.step()  # Horovod's DistributedOptimizer waits for its all-reduces here
        return loss
    return step, [trained], optimizer


def pipeline(args, model, device, rank, world):
    """Two stages on two ranks, torch.distributed.pipelining's GPipe schedule: the batch of ``--batch``
    images is cut into ``--microbatches`` micro-batches; rank 0 runs stage 0, rank 1 stage 1 + the loss."""
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe
    if world != 2:
        raise SystemExit(f"the pipeline strategy has 2 stages, so it needs exactly 2 ranks, got {world}")
    module = CountFirstForward(split_in_two(model, args.model)[rank].to(device))
    stage = PipelineStage(module, rank, world, device)
    # the loss is a mean per micro-batch; the schedule divides the summed gradients by the micro-batch count
    schedule = ScheduleGPipe(stage, n_microbatches=args.microbatches, loss_fn=nn.functional.cross_entropy)
    optimizer = torch.optim.SGD(module.parameters(), lr=LR, momentum=MOMENTUM)
    data = Batches(args.batch, 0, 1, device)  # both ranks draw the same batches: rank 0 the images, rank 1 the labels

    def step():
        x, y = data.next()
        optimizer.zero_grad()
        if rank == 0:
            schedule.step(x)
        else:
            schedule.step(target=y)
        optimizer.step()
    return step, [module], optimizer


# --- main ------------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=MODELS, default="resnet50")
    ap.add_argument("--strategy", choices=STRATEGIES, default="single")
    ap.add_argument("--batch", type=int, default=16, help="images per worker per step (pipeline: through the pipe)")
    ap.add_argument("--steps", type=int, default=1, help="training steps per timed repeat")
    ap.add_argument("--warmup", type=int, default=2, help="untimed repeats first")
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats")
    ap.add_argument("--microbatches", type=int, default=4, help="pipeline: micro-batches per step")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process")
    ap.add_argument("--out", required=True, help="JSON file for the result row (rank 0 writes it)")
    args = ap.parse_args(argv)
    if args.strategy == "pipeline" and (args.batch % args.microbatches or args.batch // args.microbatches < 2):
        ap.error(f"--batch {args.batch} must split into --microbatches {args.microbatches} equal micro-batches "
                 "of at least 2 images (BatchNorm needs more than one value per channel at 1×1 maps)")
    if args.batch < 2:
        ap.error("--batch must be at least 2 (BatchNorm in training mode needs 2 images at 1×1 maps)")
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    # who am I, where do I run, how do the ranks talk
    hvd = None
    if args.strategy == "single":
        rank, world, device = 0, 1, course_dist.device(0, 1)
    elif args.strategy == "horovod":
        import horovod.torch as hvd
        hvd.init()
        rank, world = hvd.rank(), hvd.size()
        device = course_dist.device(hvd.local_rank(), hvd.local_size())
        if device.type == "cuda" and not hvd.cuda_built():  # `make horovod` without CUDA: CPU tensors only
            print("[bench_torch] this Horovod was built without CUDA: training on the CPU", flush=True)
            device = torch.device("cpu")
    else:  # ddp, pipeline: launched by torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR ...
        dist.init_process_group(course_dist.backend())
        rank, world = dist.get_rank(), dist.get_world_size()
        device = course_dist.device()

    def barrier():
        if hvd is not None:
            hvd.barrier()
        elif dist.is_initialized():
            dist.barrier(device_ids=[device.index] if device.type == "cuda" else None)

    def slowest(values, dtype):
        """Element-wise maximum over the ranks (each rank passes its own list of numbers)."""
        t = torch.tensor(values, dtype=dtype)
        if hvd is not None:
            return hvd.allreduce(t, op=hvd.Max).tolist()
        if dist.is_initialized():
            t = t.to(device)  # NCCL reduces GPU tensors only
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.cpu().tolist()

    if args.strategy == "pipeline":  # keeps only this rank's stage: the other half is freed before training
        step, modules, optimizer = pipeline(args, build_model(args.model), device, rank, world)
    else:
        step, modules, optimizer = data_parallel(args, build_model(args.model), device, rank, world, args.strategy)

    def repeat():
        for _ in range(args.steps):
            step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cpu, wall = time.process_time(), time.perf_counter()
    timing = bench.measure(repeat, warmup=args.warmup, repeats=args.repeats,
                           sync=bench.torch_sync(device), before=barrier)
    busy = (time.process_time() - cpu) / (time.perf_counter() - wall)  # cores this process kept busy
    seconds = slowest(list(timing.samples), torch.float64)  # each repeat: the slowest rank's time
    least_busy = -slowest([-busy], torch.float64)[0]  # the minimum over the ranks

    mine = {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
            "params": sum(parameter_bytes(m) for m in modules),
            "grads": sum(gradient_bytes(m) for m in modules),
            "optimizer": optimizer_state_bytes(optimizer),
            "activations": sum(m.activation_bytes or 0 for m in modules)}
    if device.type == "cuda":
        mine["gpu_max_allocated"] = torch.cuda.max_memory_allocated(device)
        mine["gpu_max_reserved"] = torch.cuda.max_memory_reserved(device)
    memory = dict(zip(mine, (int(v) for v in slowest(list(mine.values()), torch.int64))))

    if rank == 0:
        pipe = args.strategy == "pipeline"
        row = study.row(
            "pytorch", args.model, args.strategy, workers=world,
            images_per_step=args.batch if pipe else args.batch * world,
            seconds=bench.Timing(tuple(seconds), "s", args.warmup), steps_per_repeat=args.steps,
            memory=memory, fingerprint=study.fingerprint(threads=torch.get_num_threads()),
            device=device.type, batch_per_worker=args.batch, microbatches=args.microbatches if pipe else None,
            input=INPUT, optimizer=f"SGD(lr={LR}, momentum={MOMENTUM})",
            load_avg_1min=round(os.getloadavg()[0], 2),  # other processes on the cores make timings slow and noisy
            # CPU time / wall time while measuring, the least busy rank: 1 thread busy all the time gives 1.0;
            # below it the rank waited — for a peer (communication, pipeline bubble) or for a core that
            # other processes held
            cores_busy=round(least_busy, 2),
            note=(f"2 stages (one per rank), GPipe schedule, {args.microbatches} micro-batches; "
                  "batch_per_worker = the batch through the pipe") if pipe else "")
        with open(args.out, "w") as f:
            json.dump([row], f, indent=1)
        t = row["images_per_s"]
        print(f"{args.model} {args.strategy} x{world} on {device.type}: {t['median']:.1f} images/s median "
              f"(95 % interval {t['ci_lo']:.1f}-{t['ci_hi']:.1f}), peak RSS {memory['peak_rss'] / 2**20:.0f} MiB",
              flush=True)

    if hvd is not None:
        hvd.shutdown()
    elif dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
