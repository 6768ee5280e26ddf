"""Asynchronous training with ParameterServerStrategy: the chief (coordinator) of a cluster of processes.

Launched by notebook 13 through ``course_utils.dist.tf_ps_cluster``, which starts the worker and
parameter-server processes (they only serve) and runs this script as the chief, every process with its
TF_CONFIG (the cluster on 127.0.0.1 and its own task):

    python tf_ps_train.py --init init.npz --out DIR [--steps 300] [--control-steps 100] [--delay 0.02]
                          [--batch 64] [--lr 0.1] [--try-fit]

The chief builds the strategy and a ``ClusterCoordinator``; the model's variables and an update counter
``version`` live on the parameter server. ``ClusterCoordinator.schedule`` hands each step to whichever
worker is free; the worker reads the variables, computes a gradient on its own shuffled batch and
applies the update — without waiting for the other workers.

Staleness of an update = updates by other workers that landed between this step's read of ``version``
(before its forward pass) and its own increment (after its update). ``make_async_step`` pins that order
with control dependencies (``step_order`` checks it in the traced graph). Three runs, each from the
weights in --init:

* concurrent: --steps updates, scheduled all at once;
* forced overlap (positive control): --control-steps updates, each sleeping --delay seconds between its
  gradient and its update, so the workers' steps always overlap: about half must be stale;
* one at a time (negative control): --control-steps updates, each fetched before the next is scheduled:
  none can be stale.

With ``--try-fit`` it then tries Keras 3's ``fit`` under the strategy (keras-team/keras#18624: fails).
Writes DIR/ps_result.json (losses, staleness per run, counters, accuracy, where the variables live).
The notebook imports ``make_model``, ``make_async_step`` and ``step_order`` from here (nothing runs on
import).
"""
import argparse
import json
import os
import time

import course_utils  # noqa: F401  (first: quiet TensorFlow logs, safe import order)
import numpy as np
import tensorflow as tf

import keras  # noqa: E402

from course_utils.data import digits  # noqa: E402

loss_per_example = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")


def make_model():
    """The notebook's model: 64 pixels -> 32 ReLU -> 10 logits."""
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])


def make_async_step(model, optimizer, version, ordered=True, delay_s=0.0):
    """One worker's step: read `version`, forward, backward, update, increment `version`.

    ordered=False drops the control dependencies (the broken counter); delay_s > 0 sleeps between the
    gradient and the update (the forced-overlap control)."""
    def replica_step(xb, yb):
        seen = version.read_value()
        with tf.control_dependencies([seen] if ordered else []):  # forward (its weight reads) after `seen`
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(loss_per_example(yb, model(xb, training=True)))
            grads = tape.gradient(loss, model.trainable_variables)
        if delay_s:
            with tf.control_dependencies(grads):  # the pause starts once every gradient exists
                pause = tf.py_function(lambda: time.sleep(delay_s) or 0.0, [], tf.float32)
            with tf.control_dependencies([pause]):
                grads = [tf.identity(g) for g in grads]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        updated = [v.value.read_value() for v in model.trainable_variables]  # after the update (same resources)
        with tf.control_dependencies(updated if ordered else []):          # increment after the update
            now = version.assign_add(1)
        return loss, now - 1 - seen
    return replica_step


def ancestors(op):
    """Every op that `op` waits for, through data inputs and control inputs."""
    found, todo = set(), [op]
    while todo:
        current = todo.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent not in found:
                found.add(parent)
                todo.append(parent)
    return found


def step_order(replica_step, version):
    """Trace the step and read its graph: (forward after `seen`, increment after every update)."""
    graph = tf.function(replica_step).get_concrete_function(
        tf.TensorSpec([None, 64], tf.float32), tf.TensorSpec([None], tf.int64)).graph
    handle = {id(outer): inner for outer, inner in graph.captures}[id(version.handle)]
    ops = graph.get_operations()
    seen_op = next(op for op in ops if op.type == "ReadVariableOp" and op.inputs[0] is handle)
    increment = next(op for op in ops if op.type == "AssignAddVariableOp" and op.inputs[0] is handle)
    forward = [op for op in ops if op.type == "MatMul" and not op.name.startswith("gradient_tape")]
    updates = [op for op in ops if op.type == "AssignSubVariableOp"]
    return (len(forward) == 2 and all(seen_op in ancestors(op) for op in forward),
            len(updates) == 4 and set(updates) <= ancestors(increment))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--init", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--control-steps", type=int, default=100)
    p.add_argument("--delay", type=float, default=0.02)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--try-fit", action="store_true")
    a = p.parse_args()

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy = tf.distribute.ParameterServerStrategy(resolver)
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    n_workers = len(resolver.cluster_spec().job_tasks("worker"))
    w0 = list(np.load(a.init).values())
    data = digits(8)
    x_train, y_train = data.x_train.reshape(-1, 64), data.y_train
    x_test, y_test = data.x_test.reshape(-1, 64), data.y_test

    def worker_dataset():  # each worker shuffles on its own (no seed): workers see different batches
        return (tf.data.Dataset.from_tensor_slices((x_train, y_train))
                .shuffle(len(x_train)).repeat().batch(a.batch, drop_remainder=True))

    per_worker_batches = iter(coordinator.create_per_worker_dataset(worker_dataset))

    def train_async(steps, delay_s=0.0, one_at_a_time=False):
        """`steps` asynchronous updates from w0: model, optimizer, counter, losses, staleness."""
        with strategy.scope():
            model = make_model()
            model.set_weights(w0)
            optimizer = keras.optimizers.SGD(a.lr)
            optimizer.build(model.trainable_variables)
            version = tf.Variable(0, dtype=tf.int64)
        replica_step = make_async_step(model, optimizer, version, delay_s=delay_s)

        @tf.function
        def async_step(iterator):
            return strategy.run(replica_step, args=next(iterator))

        if one_at_a_time:  # fetch each step before scheduling the next: never two workers busy at once
            outputs = [coordinator.schedule(async_step, args=(per_worker_batches,)).fetch() for _ in range(steps)]
        else:              # schedule them all: every worker takes the next step as soon as it is free
            scheduled = [coordinator.schedule(async_step, args=(per_worker_batches,)) for _ in range(steps)]
            coordinator.join()
            outputs = [s.fetch() for s in scheduled]
        losses, staleness = map(np.array, zip(*outputs))
        return model, optimizer, version, losses, staleness

    start = time.perf_counter()
    model, optimizer, version, losses, staleness = train_async(a.steps)
    accuracy = float(np.mean(np.argmax(model(x_test, training=False), axis=1) == y_test))
    print(f"{a.steps} asynchronous updates on {n_workers} workers in {time.perf_counter() - start:.1f} s, "
          f"test accuracy {accuracy:.3f}", flush=True)
    runs = {"concurrent": staleness}
    *_, runs["forced overlap"] = train_async(a.control_steps, delay_s=a.delay)
    *_, runs["one at a time"] = train_async(a.control_steps, one_at_a_time=True)
    print(f"the two staleness controls done ({a.control_steps} updates each)", flush=True)
    result = {"workers": n_workers, "ps": len(resolver.cluster_spec().job_tasks("ps")),
              "variable_devices": sorted({v.value.device for v in model.variables} | {version.device}),
              "losses": [round(float(x), 5) for x in losses], "accuracy": accuracy,
              "staleness": {name: s.tolist() for name, s in runs.items()},
              "counter": int(version.numpy()), "iterations": int(optimizer.iterations.numpy())}
    if a.try_fit:
        with strategy.scope():
            fit_model = make_model()
            fit_model.compile(optimizer=keras.optimizers.SGD(a.lr),
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        try:
            fit_model.fit(worker_dataset(), steps_per_epoch=5, epochs=1, shuffle=False, verbose=0)
            result["fit"] = "ok"
        except Exception as err:  # the failure the notebook demonstrates
            result.update(fit="failed", error=f"{type(err).__name__}: {str(err).strip().splitlines()[0]}")
    with open(os.path.join(a.out, "ps_result.json"), "w") as f:
        json.dump(result, f)
    print("done: results in ps_result.json", flush=True)
    os._exit(0)  # the coordinator's threads would keep waiting for the servers, which the launcher stops


if __name__ == "__main__":
    main()
