"""Keras 3's own distribution API, keras.distribution.DataParallel, on the JAX backend.

Launched by notebook 13 in a subprocess (one Keras backend per process; the notebook runs TensorFlow):

    python jax_data_parallel.py [--devices 4] [--steps 10] [--batch 64] [--epochs 10]

It simulates ``--devices`` CPU devices with XLA_FLAGS=--xla_force_host_platform_device_count (set
before JAX is imported), then (1) trains the same model for ``--steps`` SGD steps from the same
weights with and without DataParallel and reports the largest weight difference, with two facts that
show the run really was distributed (the shapes of one batch's shards, one per device) and a negative
control (one device with the learning rate times the device count: what summing per-device *mean*
gradients instead of averaging them would give, which must differ), (2) trains for
``--epochs`` under DataParallel and reports the test accuracy. The global batch must divide by the
device count, the last batch included, so the data are trimmed to whole batches; (3) shows the
error a last batch that does not divide gives. The last line,
starting with ``RESULT ``, is JSON for the notebook.
"""
import argparse
import json
import os
import sys

p = argparse.ArgumentParser()
p.add_argument("--devices", type=int, default=4)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--epochs", type=int, default=10)
args = p.parse_args()
os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"

import course_utils  # noqa: E402,F401  (quiet logs)
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from course_utils.data import digits  # noqa: E402


def make_model():
    """The notebook's model: 64 pixels -> 32 ReLU -> 10 logits."""
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])


def compiled(model, lr=0.1):
    model.compile(optimizer=keras.optimizers.SGD(lr), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def main():
    keras.utils.set_random_seed(0)
    data = digits(8)
    n_train = len(data.x_train) // args.batch * args.batch          # whole batches only
    x, y = data.x_train.reshape(-1, 64)[:n_train], data.y_train[:n_train]
    x_test, y_test = data.x_test.reshape(-1, 64), data.y_test
    steps = slice(0, args.steps * args.batch)
    devices = keras.distribution.list_devices("cpu")
    dp = keras.distribution.DataParallel(devices=devices)

    single = compiled(make_model())
    w0 = single.get_weights()
    single.fit(x[steps], y[steps], batch_size=args.batch, shuffle=False, epochs=1, verbose=0)
    too_big = compiled(make_model(), lr=0.1 * len(devices))  # negative control: gradient summed, not averaged
    too_big.set_weights(w0)
    too_big.fit(x[steps], y[steps], batch_size=args.batch, shuffle=False, epochs=1, verbose=0)
    err_control = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), too_big.get_weights()))
    with dp.scope():
        parallel = make_model()
        parallel.set_weights(w0)
        compiled(parallel).fit(x[steps], y[steps], batch_size=args.batch, shuffle=False, epochs=1, verbose=0)
        kernel = parallel.layers[0].kernel.value
        err = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), parallel.get_weights()))
        batch_layout = dp.get_data_layout((args.batch, 64)).axes
        sharded = keras.distribution.distribute_tensor(x[: args.batch], dp.get_data_layout((args.batch, 64)))
        shard_rows = sorted(int(s.data.shape[0]) for s in sharded.addressable_shards)
        compiled(parallel).fit(x, y, batch_size=args.batch, epochs=args.epochs, verbose=0)
        accuracy = float(parallel.evaluate(x_test[: len(x_test) // args.batch * args.batch],
                                           y_test[: len(y_test) // args.batch * args.batch],
                                           batch_size=args.batch, verbose=0)[1])
        try:  # a last batch that does not divide by the device count
            odd = args.batch + args.devices * 2 + 1
            parallel.fit(x[:odd], y[:odd], batch_size=args.batch, epochs=1, verbose=0)
            indivisible = "ok"
        except Exception as exc:
            indivisible = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:150]}"
    print(f"JAX sees {jax.device_count()} devices; DataParallel mesh {dp.device_mesh.shape}, "
          f"batch layout {batch_layout}, kernel on {len(kernel.sharding.device_set)} devices (replicated)")
    print("RESULT " + json.dumps({"devices": jax.device_count(), "max_abs_diff": err, "test_accuracy": accuracy,
                                  "control_diff": err_control, "shard_rows": shard_rows,
                                  "batch_layout": list(batch_layout),
                                  "kernel_devices": len(kernel.sharding.device_set),
                                  "indivisible_batch": indivisible}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
