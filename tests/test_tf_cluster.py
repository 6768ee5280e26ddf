"""MultiWorkerMirroredStrategy across two pretend hosts (network namespaces), not just 127.0.0.1.

scripts/tf_multiworker.py runs unchanged: it reads the cluster from TF_CONFIG, which here names the
namespaces' own addresses (10.77.x.1 and 10.77.x.2). TensorFlow's gRPC server listens on every
interface whatever TF_CONFIG says; inside a namespace that has only `lo` and the veth end, that is
still reachable only from these two hosts. Both workers must end with identical weights, equal to
one worker training on the whole batch; the per-replica-mean mistake must differ.

Then a ParameterServerStrategy cluster of separate processes across the same two hosts: the chief
and worker 0 on one, worker 1 and the parameter server on the other. The chief's ClusterCoordinator
schedules steps on the workers; the variables live on the ps task. No process or namespace is left.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT, need
from tests.test_slurm import processes_mentioning, two_hosts

pytestmark = pytest.mark.timeout(600)

SCRIPT = ROOT / "notebooks" / "scripts" / "tf_multiworker.py"
PORT = 12345  # inside fresh namespaces every port is free
STEPS, BATCH, LR = 6, 64, 0.1
TIMEOUT = 300


def worker_env(config: dict) -> dict:
    env = {**os.environ, "TF_CONFIG": json.dumps(config), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2",
           "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    env.pop("MPLBACKEND", None)
    return env


def launch(hosts, init: Path, out: Path) -> list[str]:
    """One worker per (netns, address); waits for all; returns their outputs. Kills them all on failure."""
    workers = [f"{addr}:{PORT}" for _, addr in hosts]
    procs = []
    try:
        for i, (netns, _) in enumerate(hosts):
            config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
            procs.append(subprocess.Popen(
                ["nsenter", f"--net={netns}", sys.executable, str(SCRIPT), "--init", str(init), "--out", str(out),
                 "--steps", str(STEPS), "--batch", str(BATCH), "--lr", str(LR)],
                env=worker_env(config), cwd=ROOT / "notebooks", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, text=True))
        deadline = time.monotonic() + TIMEOUT
        outputs = [p.communicate(timeout=max(1, deadline - time.monotonic()))[0] for p in procs]
        for p, text in zip(procs, outputs):
            assert p.returncode == 0, f"worker exited {p.returncode}:\n{text[-3000:]}"
        return outputs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as f:
        return list(f.values())


def max_diff(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def test_multiworker_mirrored_across_two_namespaced_hosts():
    need("nsenter", "each worker runs inside its own network namespace (util-linux)")
    tag = f"tf{os.getpid() % 10000}"
    folder = Path(tempfile.mkdtemp(prefix="course_tfcluster_"))
    rng = np.random.default_rng(0)
    init = folder / "init.npz"
    np.savez(init, rng.normal(0, 0.2, (64, 32)).astype("float32"), np.zeros(32, "float32"),
             rng.normal(0, 0.2, (32, 10)).astype("float32"), np.zeros(10, "float32"))
    (folder / "two").mkdir()
    (folder / "one").mkdir()
    try:
        with two_hosts(tag) as hosts:
            start = time.monotonic()
            outputs = launch(hosts, init, folder / "two")
            seconds = time.monotonic() - start
            launch(hosts[:1], init, folder / "one")  # the reference: one worker, the whole batch
        print(f"MultiWorkerMirroredStrategy, 2 workers across namespaces: {seconds:.1f} s")
        assert "worker 0/2: 6 steps on 32 of every 64 examples" in outputs[0], outputs[0]
        assert "worker 1/2: 6 steps on 32 of every 64 examples" in outputs[1], outputs[1]
        w0, w1 = weights(folder / "two" / "worker0.npz"), weights(folder / "two" / "worker1.npz")
        one = weights(folder / "one" / "worker0.npz")
        assert all(np.array_equal(a, b) for a, b in zip(w0, w1)), "the two workers ended different"
        diff = max_diff(w0, one)
        broken = max_diff(weights(folder / "two" / "worker0_per_replica_mean.npz"), one)
        print(f"max |2 workers - 1 worker| = {diff:.2e}; per-replica-mean mistake: {broken:.2e}")
        assert diff < 1e-5
        assert broken > 1e-3  # the negative control: the wrong loss scaling is seen
        assert max_diff(w0, weights(init)) > 1e-3  # and training did move the weights
    finally:
        left = processes_mentioning(str(folder))
        shutil.rmtree(folder, ignore_errors=True)
    assert not left, f"processes left behind: {left}"
    assert not any(Path(path).exists() for path, _ in hosts)


PS_SCRIPT = '''
import json, os, time
import course_utils  # noqa: F401  (first: quiet TensorFlow logs)
import numpy as np
import tensorflow as tf

resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
if resolver.task_type in ("worker", "ps"):  # workers and parameter servers only serve
    tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type, task_index=resolver.task_id,
                         protocol="grpc", start=True).join()
strategy = tf.distribute.ParameterServerStrategy(resolver)
coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
true_w = np.random.default_rng(0).normal(size=(8, 1)).astype("float32")
with strategy.scope():
    w, b = tf.Variable(tf.zeros((8, 1))), tf.Variable(0.0)
    steps = tf.Variable(0, dtype=tf.int64)

def dataset_fn():
    x = tf.random.stateless_normal((4096, 8), seed=[1, 2])
    return tf.data.Dataset.from_tensor_slices((x, x @ true_w)).repeat().batch(32)

iterator = iter(coordinator.create_per_worker_dataset(dataset_fn))

@tf.function
def step(iterator):
    def replica(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((x @ w + b - y) ** 2)
        gw, gb = tape.gradient(loss, [w, b])
        w.assign_sub(0.1 * gw)
        b.assign_sub(0.1 * gb)
        steps.assign_add(1)
        return loss
    return strategy.run(replica, args=next(iterator))

results = [coordinator.schedule(step, args=(iterator,)) for _ in range(STEPS)]
coordinator.join()
losses = [float(r.fetch()) for r in results]
print("RESULT " + json.dumps({"device": w.device, "steps": int(steps.numpy()), "first": losses[0],
                              "last": losses[-1], "w_error": float(np.abs(w.numpy() - true_w).max())}), flush=True)
os._exit(0)
'''


def test_parameter_server_strategy_cluster_of_separate_processes():
    need("nsenter", "each task runs inside a network namespace (util-linux)")
    tag = f"tp{os.getpid() % 10000}"
    folder = Path(tempfile.mkdtemp(prefix="course_tfps_"))
    script = folder / "ps_cluster.py"
    script.write_text(PS_SCRIPT.replace("STEPS", "200"))
    servers, chief = [], None
    try:
        with two_hosts(tag) as hosts:
            (a_ns, a), (b_ns, b) = hosts
            cluster = {"chief": [f"{a}:{PORT}"], "worker": [f"{a}:{PORT + 1}", f"{b}:{PORT + 1}"],
                       "ps": [f"{b}:{PORT + 2}"]}
            tasks = [("worker", 0, a_ns), ("worker", 1, b_ns), ("ps", 0, b_ns), ("chief", 0, a_ns)]
            start = time.monotonic()
            for kind, index, netns in tasks:
                config = {"cluster": cluster, "task": {"type": kind, "index": index}}
                proc = subprocess.Popen(["nsenter", f"--net={netns}", sys.executable, str(script)],
                                        env=worker_env(config), cwd=folder, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
                servers.append(proc)
            chief = servers.pop()
            text = chief.communicate(timeout=TIMEOUT)[0]
            seconds = time.monotonic() - start
            assert chief.returncode == 0, text[-3000:]
            assert all(p.poll() is None for p in servers), "a worker or the ps died"
    finally:
        for p in servers + ([chief] if chief else []):
            if p.poll() is None:
                p.kill()
                p.wait(10)
        left = processes_mentioning(str(folder))
        shutil.rmtree(folder, ignore_errors=True)
    result = json.loads(text.split("RESULT ", 1)[1].splitlines()[0])
    print(f"ParameterServerStrategy, chief + 2 workers + 1 ps across namespaces: {seconds:.1f} s; {result}")
    assert result["device"].startswith("/job:ps/"), result  # the variables live on the parameter server
    assert result["steps"] == 200, result                    # every scheduled step ran on a worker
    assert result["last"] < result["first"] / 1000 and result["w_error"] < 1e-3, result
    assert not left, f"processes left behind: {left}"
    assert not any(Path(path).exists() for path, _ in hosts)
