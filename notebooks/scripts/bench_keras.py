"""The Keras 3 (TensorFlow backend) worker of the benchmark study (lesson 17): one result row.

    python notebooks/scripts/bench_keras.py --model ResNet50 --workers 2 --batch 16 \\
        --steps 5 --warmup 2 --repeats 5 --out results/keras_resnet50_w2.json

What it trains: ``keras.applications.ResNet50`` or ``EfficientNetB0`` with ``weights=None``,
``classes=10`` and raw logits (``classifier_activation=None``). Keras has no ResNeXt (the PyTorch
worker's third model), so the study has no Keras ResNeXt rows. The input is the course's offline digits,
``course_utils.data.digits(size=28)`` framed like MNIST, padded with zeros to 32×32 — the smallest input
``keras.applications`` accepts ("Input size must be at least 32x32" below it) — with ONE channel: with
``weights=None`` both models take ``input_shape=(32, 32, 1)``. EfficientNetB0 starts with its own
``Rescaling(1/255)`` layer, so it gets the pixels as 0..255; ResNet50 gets them as 0..1.

How it trains: ``tf.distribute.MirroredStrategy`` over ``--workers`` devices from
``course_utils.env.devices(N, "tensorflow")``: the first N GPUs when at least N exist, otherwise N
*logical* CPU devices in this one process. ``--workers 1`` is a MirroredStrategy with one device: the
single-process baseline of the Keras rows. The script refuses to run unless
``strategy.num_replicas_in_sync == N`` (no silent collapse to fewer replicas). Each step is a custom
``tf.function``: ``strategy.run`` of forward, sparse categorical cross-entropy averaged over the
GLOBAL batch (``--batch`` per replica × N), gradients, and SGD with momentum, which sums the gradients
over the replicas (an all-reduce) before updating the mirrored variables. A custom loop, not ``fit``:
it is what the PyTorch worker does, and Keras 3 ``fit`` under tf.distribute has upstream bugs
(FIELD_NOTES). BatchNorm statistics stay per replica (like DDP without SyncBatchNorm).

How it is timed: ``course_utils.bench.measure`` with ``sync=course_utils.bench.fetch`` (the loss is
copied to NumPy, so the clock waits for the work): ``--warmup`` untimed repeats (the first one traces
and compiles the step), then ``--repeats`` (>= 5) timed repeats of ``--steps`` steps each. All
replicas run inside one step of one process, so the slowest replica decides every repeat by itself.

Threads: on a CPU every replica should get one core. TensorFlow has no per-device thread pool: all
logical CPU devices share one intra-op pool (threads that split ONE op) and one inter-op pool (threads
that run independent ops — here the N replicas' ops — at the same time). The defaults,
``--intra-op 1 --inter-op N``, give N threads that run the N replicas' ops side by side, no op split
over threads (a thread is not bound to one replica: TensorFlow cannot do that); the row's
``threads_note`` says what was set and ``cores_busy`` (process CPU time / wall time over the timed
repeats) shows how many cores were really used. ``OMP_NUM_THREADS`` is set to 1 unless given.

Memory (the row's ``memory``, bytes): ``peak_rss`` of the process (``ru_maxrss``; ALL replicas live in
this process); ``params`` (trainable variables), ``grads`` (= params: one gradient per trainable
variable, not measured) and ``optimizer`` (the optimizer's variables: momentum + iteration counter) for
ONE replica, comparable to one PyTorch rank — the mirrored variables exist once per device, so the
process holds N copies (``variable_copies`` in the row, counted). ``activations`` is None: TensorFlow
does not expose the tensors kept for the backward pass (``memory_note``). On GPUs ``gpu_max_allocated``
is TensorFlow's peak allocator use (max over the replicas' GPUs); ``gpu_max_reserved`` is None (TF does
not report its reserved pool; memory growth is switched on so it grows on demand).

Output: ``course_utils.study.save([row], --out)`` (JSON, and CSV next to it); the row's ``startup_s``,
``warmup_s`` and ``wall_s`` say where the run's wall time went (tracing the step is most of the warm-up;
``before_script_s`` is the interpreter's own start-up, before the script's first line),
``load_avg_1min`` how busy the machine was (other processes share the cores: timings from a loaded
machine are slow and noisy). Run as a script, the process ends with ``os._exit`` once the file is written:
freeing the model, the strategy and the traced step (TensorFlow's teardown) took 10–140 s here on the
busy 2-core machine, for nothing. Runs unchanged on a GPU node.
"""
from __future__ import annotations

import time

T_START = time.perf_counter()  # before the heavy imports: startup_s includes them

import argparse  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run from anywhere: the course's helpers are at the repository root
    sys.path.insert(0, str(ROOT))

def seconds_since_process_start() -> float | None:
    """How long this process has existed (Linux /proc; None elsewhere): interpreter start-up included."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        return float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


BEFORE_SCRIPT_S = seconds_since_process_start()  # the interpreter's own start-up, before T_START

MODELS = ("ResNet50", "EfficientNetB0")
INPUT_SIZE = 32  # keras.applications' minimum (both models refuse 28×28)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Keras 3 MirroredStrategy worker of the lesson-17 benchmark study "
                                            "(Keras has no ResNeXt).")
    p.add_argument("--model", required=True, choices=MODELS, help="keras.applications model, weights=None")
    p.add_argument("--workers", type=int, default=1, help="replicas: logical CPU devices, or GPUs when enough")
    p.add_argument("--batch", type=int, default=16, help="images per replica per step")
    p.add_argument("--steps", type=int, default=5, help="training steps per timed repeat")
    p.add_argument("--warmup", type=int, default=2, help="untimed repeats first (the first traces the step)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (>= 5)")
    p.add_argument("--out", required=True, help="result file (.json; a .csv is written next to it)")
    p.add_argument("--lr", type=float, default=0.001, help="SGD learning rate (momentum 0.9)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--onednn", choices=("on", "off"), default="on",
                   help="TensorFlow's oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS; TF's default on x86 is on)")
    p.add_argument("--intra-op", type=int, default=1, help="TF intra-op threads (threads splitting one op)")
    p.add_argument("--inter-op", type=int, default=None, help="TF inter-op threads (default: --workers)")
    args = p.parse_args(argv)
    for name, least in (("workers", 1), ("batch", 1), ("steps", 1), ("warmup", 1), ("repeats", 5),
                        ("intra_op", 1)):
        if getattr(args, name) < least:
            p.error(f"--{name.replace('_', '-')} must be >= {least}, got {getattr(args, name)}")
    if args.inter_op is None:
        args.inter_op = args.workers
    if args.inter_op < 1:
        p.error(f"--inter-op must be >= 1, got {args.inter_op}")
    return args


def variable_bytes(variables) -> int:
    """Bytes of the given Keras variables, one copy each (shape × dtype size)."""
    import numpy as np
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)


def all_copies_bytes(strategy, variables) -> tuple[int, int]:
    """(bytes, most copies of one variable) over every per-device copy of ``variables``."""
    total, most = 0, 0
    for v in variables:
        copies = strategy.experimental_local_results(getattr(v, "value", v))
        most = max(most, len(copies))
        total += sum(int(c.shape.num_elements()) * c.dtype.size for c in copies)
    return total, most


def thread_cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) each thread of this process has used so far (Linux /proc; {} elsewhere)."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for task in Path("/proc/self/task").glob("*") if Path("/proc/self/task").is_dir() else []:
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return out


def busy_threads(before: dict[int, float], after: dict[int, float]) -> list[float]:
    """Each thread's share of the CPU time used between two ``thread_cpu_seconds`` readings, largest first."""
    used = sorted((after[t] - before.get(t, 0.0) for t in after), reverse=True)
    total = sum(used)
    return [round(u / total, 3) for u in used if u > 0] if total > 0 else []


@contextlib.contextmanager
def stderr_silenced():
    """Send file descriptor 2 (C++ logs included) to /dev/null inside the block; an exception raised
    in it is still reported, after stderr is back."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv=None, exit_when_done: bool = False) -> dict:
    """Run the benchmark, save the row, return it; ``exit_when_done``: end the process right after."""
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"  # set, not inherited: see docstring
    with stderr_silenced():  # TF 2.21 prints "oneDNN custom operations are on" whatever TF_CPP_MIN_LOG_LEVEL says
        import course_utils  # noqa: F401  (before TensorFlow: quiet logs, triton first)
        import numpy as np
        import tensorflow as tf

    from course_utils import study
    from course_utils.bench import fetch, measure
    from course_utils.data import digits
    from course_utils.env import devices

    tf.get_logger().setLevel("ERROR")
    n = args.workers
    # Everything below must happen before TensorFlow runs its first op.
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    names = devices(n, "tensorflow")
    on_gpu = names[0].upper().startswith("/GPU")
    strategy = tf.distribute.MirroredStrategy(names)
    if strategy.num_replicas_in_sync != n:
        raise SystemExit(f"bench_keras: asked for {n} replicas on {names} but MirroredStrategy has "
                         f"{strategy.num_replicas_in_sync}: refusing to report a {n}-worker row")

    import keras
    keras.utils.set_random_seed(args.seed)
    global_batch = args.batch * n
    data = digits(size=28)
    pad = (INPUT_SIZE - 28) // 2
    x = np.pad(np.asarray(data.x_train), ((0, 0), (pad, pad), (pad, pad)))[..., None]
    if args.model == "EfficientNetB0":
        x = x * 255.0  # EfficientNet rescales by 1/255 inside the model
    y = np.asarray(data.y_train)
    dataset = (tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y)).repeat()
               .batch(global_batch, drop_remainder=True).prefetch(2))
    batches = iter(strategy.experimental_distribute_dataset(dataset))

    with strategy.scope():
        model = getattr(keras.applications, args.model)(
            weights=None, input_shape=(INPUT_SIZE, INPUT_SIZE, 1), classes=10, classifier_activation=None)
        optimizer = keras.optimizers.SGD(args.lr, momentum=0.9)
        optimizer.build(model.trainable_variables)  # inside the scope: one slot copy per replica
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

    def replica_step(xb, yb):
        with tf.GradientTape() as tape:
            per_example = loss_fn(yb, model(xb, training=True))
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))  # all-reduce (sum), then update
        return loss, tf.shape(xb)[0]

    @tf.function
    def train_step(xb, yb):
        loss, rows = strategy.run(replica_step, args=(xb, yb))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None), strategy.experimental_local_results(rows)

    losses, rows_seen = [], []

    def repeat():
        for _ in range(args.steps):
            loss, rows = train_step(*next(batches))
        losses.append(loss)
        rows_seen.append(rows)
        return loss

    marks = []  # (wall, cpu) at the start of every call: warm-up and timed
    threads_at = []  # per-thread CPU seconds when the timed repeats start

    def mark():
        marks.append((time.perf_counter(), time.process_time()))
        if len(marks) == args.warmup + 1:
            threads_at.append(thread_cpu_seconds())

    t_ready = time.perf_counter()
    timing = measure(repeat, warmup=args.warmup, repeats=args.repeats, sync=fetch, before=mark)
    t_end, cpu_end = time.perf_counter(), time.process_time()
    shares = busy_threads(threads_at[0], thread_cpu_seconds())
    t_timed, cpu_timed = marks[args.warmup]  # the first timed repeat starts here
    cores_busy = (cpu_end - cpu_timed) / (t_end - t_timed)
    warmup_s = t_timed - t_ready  # tracing + the warm-up repeats

    per_replica_rows = [int(r) for r in rows_seen[-1]]
    if per_replica_rows != [args.batch] * n:
        raise SystemExit(f"bench_keras: the replicas got {per_replica_rows} rows per step, expected "
                         f"{[args.batch] * n}")
    final_loss = float(losses[-1])
    if not np.isfinite(final_loss):  # still a valid timing, but say so (NaN arithmetic can be slower)
        print(f"bench_keras: warning: the loss is {final_loss} (diverged); the row says so", file=sys.stderr)

    params = variable_bytes(model.trainable_variables)
    process_bytes, copies = all_copies_bytes(strategy, model.variables + list(optimizer.variables))
    memory = {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "params": params, "grads": params,
              "optimizer": variable_bytes(optimizer.variables), "activations": None}
    if on_gpu:
        peaks = [tf.config.experimental.get_memory_info(name.strip("/"))["peak"] for name in names]
        memory.update(gpu_max_allocated=max(peaks), gpu_max_reserved=None)
    threads_note = (f"TF intra_op={args.intra_op} (threads splitting one op), inter_op={args.inter_op} (threads "
                    f"running independent ops, e.g. different replicas', at once): one pool of each for all {n} "
                    f"replica(s) of this process, no thread is bound to a replica; "
f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; timed repeats: {cores_busy:.2f} cores busy on "
                    f"average, {sum(x >= 0.1 for x in shares)} thread(s) with >= 10 % of the CPU time")
    memory_note = (f"params/grads/optimizer are for ONE replica (grads = params, not measured; optimizer = SGD "
                   f"momentum + iteration counter); the mirrored variables exist once per device: this process "
                   f"holds {copies} copies, {process_bytes} bytes of model + optimizer variables in all "
                   f"(incl. BatchNorm statistics). peak_rss is the whole process (all replicas). activations: "
                   f"not measurable (TensorFlow does not expose the tensors saved for backward).")
    if on_gpu:
        memory_note += " gpu_max_reserved: TensorFlow does not report it (memory growth on)."
    row = study.row(
        "keras", args.model, "mirrored", workers=n, images_per_step=global_batch, seconds=timing,
        steps_per_repeat=args.steps, memory=memory, fingerprint=study.fingerprint(threads=1),
        batch_per_worker=args.batch, device="cuda" if on_gpu else "cpu",
        input=f"1x{INPUT_SIZE}x{INPUT_SIZE} digits (28x28 padded)", num_replicas_in_sync=strategy.num_replicas_in_sync,
        replica_devices=" ".join(names), per_replica_rows=per_replica_rows,
        variable_copies=copies, threads_note=threads_note, cores_busy=round(cores_busy, 3),
        thread_cpu_shares=shares[:8],
        memory_note=memory_note, onednn=args.onednn == "on", final_loss=final_loss,
        loss_finite=bool(np.isfinite(final_loss)),
        note=("Keras has no ResNeXt; MirroredStrategy with one device is the single-process baseline"
              if n == 1 else "Keras has no ResNeXt; all replicas in one process"),
        before_script_s=None if BEFORE_SCRIPT_S is None else round(BEFORE_SCRIPT_S, 2),
        startup_s=round(t_ready - T_START, 3), warmup_s=round(warmup_s, 3),
        load_avg_1min=round(os.getloadavg()[0], 2))
    row["wall_s"] = round(time.perf_counter() - T_START, 3)
    out = study.save([row], args.out)
    t = row["images_per_s"]
    print(f"{args.model} {n} replica(s) x {args.batch}: {t['median']:.1f} images/s median "
          f"(95 % CI {t['ci_lo']:.1f}-{t['ci_hi']:.1f}), {timing.median / args.steps * 1e3:.0f} ms/step, "
          f"peak RSS {memory['peak_rss'] / 2**20:.0f} MiB, wall {row['wall_s']:.1f} s -> {out}", flush=True)
    if exit_when_done:  # here, while the model and the traced step are alive: freeing them takes 20 s and more
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return row


if __name__ == "__main__":
    main(exit_when_done=True)
