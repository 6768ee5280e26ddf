"""Synchronous data parallelism across processes: MultiWorkerMirroredStrategy with a Keras 3 model.

Launched by notebook 13 through ``course_utils.dist.tf_workers``, which gives every process its
TF_CONFIG (the cluster of workers on 127.0.0.1 and this worker's index):

    python tf_multiworker.py --init init.npz --out DIR [--steps 10] [--batch 64] [--lr 0.1] [--try-fit]

Every worker loads the same initial weights, then trains ``--steps`` SGD steps with a *custom loop*:
for each global batch of ``--batch`` digits, worker i takes its slice of the batch, computes the
gradient of its share of the mean loss, and the strategy sums the gradients over all workers
(an all-reduce) before the update. Each worker saves its final weights to DIR/worker{i}.npz.

Then, as a negative control, it trains the same steps again from the same weights with the classic
mistake: each worker's loss is the mean over its *own* slice (the per-replica batch) instead of the
global batch, so the summed gradient is N times too large. Those weights go to
DIR/worker{i}_per_replica_mean.npz; the notebook shows they differ from one device.

One replica per worker: the course's TensorFlow is the CPU build, where MultiWorkerMirroredStrategy
gives each worker one CPU device. (With several GPUs per worker, feed the batches through
``strategy.distribute_datasets_from_function`` instead of slicing by hand; the script refuses to run.)

With ``--try-fit`` it then tries Keras 3's ``model.fit`` under the same strategy, which fails with
Keras 3 + TF 2.x (keras-team/keras#20585, tensorflow/tensorflow#72388), and prints the error's first
line. Output: lines starting with ``RESULT `` are JSON for the notebook.
"""
import argparse
import json
import os
import re

import course_utils  # noqa: F401  (first: quiet TensorFlow logs, safe import order)
import numpy as np
import tensorflow as tf

tf.get_logger().setLevel("ERROR")
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG; before any other TF op

import keras  # noqa: E402

from course_utils.data import digits  # noqa: E402


def make_model():
    """The notebook's model: 64 pixels -> 32 ReLU -> 10 logits."""
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--init", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--try-fit", action="store_true")
    args = p.parse_args()
    config = json.loads(os.environ["TF_CONFIG"])
    task, nworkers = config["task"]["index"], len(config["cluster"]["worker"])
    n = strategy.num_replicas_in_sync                      # replicas in the whole cluster
    if n != nworkers:
        raise SystemExit(f"{n} replicas for {nworkers} workers: this script slices the batch for one "
                         "replica per worker (use distribute_datasets_from_function for several)")
    data = digits(8)
    x = data.x_train.reshape(-1, 64)[: args.steps * args.batch]
    y = data.y_train[: args.steps * args.batch]

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    share = args.batch // n                                  # this worker's rows of every global batch

    def train(per_replica_mean=False):
        """--steps SGD steps from the initial weights; returns the model and the losses."""
        with strategy.scope():
            model = make_model()
            model.set_weights(list(np.load(args.init).values()))
            optimizer = keras.optimizers.SGD(args.lr)
            optimizer.build(model.trainable_variables)      # build inside the scope (Keras 3)

        @tf.function
        def train_step(xb, yb):
            def replica_step(xb, yb):
                with tf.GradientTape() as tape:
                    per_example = loss_fn(yb, model(xb, training=True))
                    if per_replica_mean:                     # the mistake: mean over this worker's rows only
                        loss = tf.reduce_mean(per_example)
                    else:                                    # right: sum / global batch
                        loss = tf.nn.compute_average_loss(per_example, global_batch_size=args.batch)
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))  # all-reduce (sum) inside
                return loss, tf.shape(xb)[0]
            loss, rows = strategy.run(replica_step, args=(xb, yb))
            return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),   # over every worker
                    strategy.experimental_local_results(rows)[0],                  # rows this worker used
                    strategy.reduce(tf.distribute.ReduceOp.SUM, rows, axis=None))   # rows of the global batch

        losses, rows_here, rows_all = [], set(), set()
        for step in range(args.steps):
            lo = step * args.batch + task * share            # this worker's slice of the global batch
            loss, here, total = train_step(tf.constant(x[lo: lo + share]), tf.constant(y[lo: lo + share]))
            losses.append(float(loss))
            rows_here.add(int(here))
            rows_all.add(int(total))
        return model, losses, sorted(rows_here), sorted(rows_all)

    model, losses, rows_here, rows_all = train()
    np.savez(os.path.join(args.out, f"worker{task}.npz"), *model.get_weights())
    one = lambda values: values[0] if len(values) == 1 else values  # noqa: E731  (every step the same)
    print(f"worker {task}/{n}: {args.steps} steps on {one(rows_here)} of every {one(rows_all)} examples, "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}", flush=True)
    print("RESULT " + json.dumps({"task": task, "replicas": n, "rows_per_worker": rows_here,
                                  "rows_per_step": rows_all, "losses": [round(v, 6) for v in losses]}), flush=True)
    broken, *_ = train(per_replica_mean=True)
    np.savez(os.path.join(args.out, f"worker{task}_per_replica_mean.npz"), *broken.get_weights())

    if args.try_fit:
        try:
            with strategy.scope():
                fitted = make_model()
                fitted.compile(optimizer=keras.optimizers.SGD(args.lr),
                               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            fitted.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)
            fit = {"fit": "ok"}
        except Exception as err:  # the upstream bug: report its first line, exit cleanly
            message = re.sub(r"\{.*\}", "{...}", str(err), flags=re.S).strip().splitlines()[0]
            fit = {"fit": "failed", "error": f"{type(err).__name__}: {message[:200]}"}
        print("RESULT " + json.dumps(fit), flush=True)


if __name__ == "__main__":
    main()
