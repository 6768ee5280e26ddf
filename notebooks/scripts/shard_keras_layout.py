"""Sharded parameters and optimizer state in Keras 3: keras.distribution.ModelParallel with a LayoutMap.

Launched by notebook 14 in a subprocess (one Keras backend per process; the notebook runs TensorFlow):

    python shard_keras_layout.py [--devices 2] [--steps 5] [--batch 64]

JAX backend, ``--devices`` simulated CPU devices (XLA_FLAGS, set before JAX is imported), one mesh axis
"batch". The LayoutMap shards every Dense kernel and bias along that same axis: each device holds 1/N
of every variable (rows of a kernel) and of Adam's moments for it, and a 1/N slice of every batch --
FSDP / ZeRO-3 in Keras; XLA inserts the all-gathers the matrix products need. The script trains the
same model with and without the distribution from the same weights, reports the largest difference
and every variable's per-device shard shapes. The last line, starting with ``RESULT ``, is JSON.
"""
import argparse
import json
import os
import sys

p = argparse.ArgumentParser()
p.add_argument("--devices", type=int, default=2)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--hidden", type=int, default=256)
args = p.parse_args()
os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"

import course_utils  # noqa: E402,F401  (quiet logs)
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from course_utils.data import digits  # noqa: E402


def make_model():
    """The PyTorch part's model: 64 -> hidden -> hidden -> 10, layers named so the LayoutMap finds them."""
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(args.hidden, activation="tanh", name="dense1"),
                             keras.layers.Dense(args.hidden, activation="tanh", name="dense2"),
                             keras.layers.Dense(10, name="dense3")])


def compiled(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def shards(variable):
    """{device: local shard shape} of a (JAX-backed) Keras variable."""
    return {str(s.device): list(s.data.shape) for s in variable.value.addressable_shards}


def main():
    keras.utils.set_random_seed(0)
    data = digits(8)
    n = args.steps * args.batch
    x, y = data.x_train.reshape(-1, 64)[:n], data.y_train[:n]
    mesh = keras.distribution.DeviceMesh((args.devices,), ["batch"], keras.distribution.list_devices("cpu"))
    layout_map = keras.distribution.LayoutMap(mesh)
    for name in ("dense1", "dense2", "dense3"):
        layout_map[f".*{name}/kernel"] = ("batch", None)  # shard the rows of every kernel over the devices
        layout_map[f".*{name}/bias"] = ("batch",)
    sharded = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")

    single = compiled(make_model())
    w0 = single.get_weights()
    single.fit(x, y, batch_size=args.batch, shuffle=False, epochs=1, verbose=0)
    with sharded.scope():
        model = make_model()
        model.set_weights(w0)
        compiled(model).fit(x, y, batch_size=args.batch, shuffle=False, epochs=1, verbose=0)
    err = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), model.get_weights()))
    moved = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), w0))
    variables = [{"path": v.path, "shape": list(v.shape), "shards": shards(v)} for v in model.weights]
    moments = [{"path": v.path, "shape": list(v.shape), "shards": shards(v)} for v in model.optimizer.variables
               if len(v.shape) > 0]
    per_device = {}
    for v in variables + moments:
        for device, shape in v["shards"].items():
            per_device[device] = per_device.get(device, 0) + 4 * int(np.prod(shape))
    full = sum(4 * int(np.prod(v["shape"])) for v in variables + moments)
    print(f"JAX sees {jax.device_count()} devices; ModelParallel over mesh {mesh.shape} ('batch'), "
          f"{len(variables)} variables and {len(moments)} Adam moments sharded")
    print("RESULT " + json.dumps({"devices": jax.device_count(), "max_abs_diff": err, "moved": moved,
                                  "variables": variables, "moments": moments, "bytes_per_device": per_device,
                                  "bytes_unsharded": full}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
