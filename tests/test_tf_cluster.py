"""MultiWorkerMirroredStrategy across two pretend hosts (network namespaces), not just 127.0.0.1;
a ParameterServerStrategy cluster of separate processes launched by course_utils.dist.tf_ps_cluster.

scripts/tf_multiworker.py runs unchanged: it reads the cluster from TF_CONFIG, which here names the
namespaces' own addresses (10.77.x.1 and 10.77.x.2). TensorFlow's gRPC server listens on every
interface whatever TF_CONFIG says; inside a namespace that has only `lo` and the veth end, that is
still reachable only from these two hosts. Both workers must end with identical weights, equal to
one worker training on the whole batch; the per-replica-mean mistake must differ.

Then lesson 13's parameter-server training, scripts/tf_ps_train.py, as the chief of a cluster that
``tf_ps_cluster`` starts: a chief (the ClusterCoordinator), two worker processes and a parameter server,
confined to a network namespace with only `lo`. The variables live on the ps task, every scheduled
step runs, the staleness counter passes its two controls. And the launcher's own promises: a chief
that fails, a server that dies while the chief runs, and a chief that hangs each raise a clear
DistError naming the process; no process or namespace is left.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest

from course_utils import netns
from course_utils.dist import DistError, tf_ps_cluster
from tests.helpers import ROOT, leftovers, need
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


PS_TRAIN = ROOT / "notebooks" / "scripts" / "tf_ps_train.py"


def launch_tag() -> str:
    return uuid.uuid4().hex


def test_parameter_server_strategy_cluster_of_separate_processes(tmp_path):
    """Lesson 13's script as the chief of a real cluster: chief + 2 workers + 1 ps, each its own process."""
    rng = np.random.default_rng(0)
    init = tmp_path / "init.npz"
    np.savez(init, rng.normal(0, 0.2, (64, 32)).astype("float32"), np.zeros(32, "float32"),
             rng.normal(0, 0.2, (32, 10)).astype("float32"), np.zeros(10, "float32"))
    tag = launch_tag()
    res = tf_ps_cluster(PS_TRAIN, workers=2, ps=1, timeout=TIMEOUT, env={"COURSE_TEST_TAG": tag},
                        cwd=ROOT / "notebooks", args=["--init", init, "--out", tmp_path, "--steps", 200,
                                                      "--control-steps", 60, "--try-fit"])
    result = json.loads((tmp_path / "ps_result.json").read_text())
    stale = {name: float(np.mean(np.array(s) > 0)) for name, s in result["staleness"].items()}
    print(f"ParameterServerStrategy, chief + 2 workers + 1 ps (separate processes): {res.seconds:.1f} s; "
          f"stale {stale}; accuracy {result['accuracy']:.3f}; counter {result['counter']}, "
          f"optimizer.iterations {result['iterations']}")
    assert sorted(res.lines) == ["chief", "ps 0", "worker 0", "worker 1"], sorted(res.lines)
    for name in ("worker 0", "worker 1", "ps 0"):  # every server ran, as its own task
        assert any(line.startswith(f"serving {name} at 127.0.0.1:") for line in res.lines[name]), res.lines[name]
    assert result["workers"] == 2 and result["ps"] == 1
    assert result["variable_devices"] == ["/job:ps/replica:0/task:0/device:CPU:0"], result  # variables on the ps
    assert result["counter"] == 200 and len(result["losses"]) == 200  # every scheduled step ran on a worker
    assert stale["one at a time"] == 0 and stale["forced overlap"] >= 0.4, stale  # the counter's two controls
    assert result["accuracy"] >= 0.8, result["accuracy"]
    assert result["fit"] == "failed", result  # keras#18624, as lesson 13 shows
    assert leftovers(tag) == [], "processes of the cluster are still running"
    assert netns.leftovers("cutf") == []


FAKE_CHIEF = '''
import json, os, signal, sys, time
import psutil
mode = sys.argv[1]
print("chief up", flush=True)
if mode == "fail":
    raise RuntimeError("the chief's training failed")
if mode == "kill-ps":  # a parameter server dies while the chief still runs
    me = os.environ["COURSE_DIST_LAUNCH"]
    for _ in range(600):
        for p in psutil.process_iter():
            try:
                env = p.environ()
            except psutil.Error:
                continue
            if env.get("COURSE_DIST_LAUNCH") == me and '"type": "ps"' in env.get("TF_CONFIG", ""):
                time.sleep(2)
                p.kill()
                time.sleep(120)
        time.sleep(0.1)
time.sleep(1000)  # "hang"
'''


@pytest.mark.parametrize("mode, expected, rank", [
    ("fail", "chief failed (exit code 1)", "chief"),
    ("kill-ps", "ps 0 stopped before chief finished (killed by signal 9)", "ps 0"),
    ("hang", "timed out after 20 s; still running: chief", "chief"),
])
def test_tf_ps_cluster_failures_are_clear_and_leave_nothing(tmp_path, mode, expected, rank):
    script = tmp_path / "chief.py"
    script.write_text(FAKE_CHIEF)
    tag = launch_tag()
    start = time.monotonic()
    with pytest.raises(DistError) as info:
        tf_ps_cluster(script, args=[mode], timeout=20 if mode == "hang" else 120, stream=False,
                      env={"COURSE_TEST_TAG": tag})
    assert expected in str(info.value), str(info.value)
    assert info.value.rank == rank
    if mode == "fail":
        assert "RuntimeError: the chief's training failed" in str(info.value)
    assert time.monotonic() - start < 90
    assert leftovers(tag) == [], "processes of the cluster are still running"
    assert netns.leftovers("cutf") == []
