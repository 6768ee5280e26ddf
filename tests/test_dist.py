"""course_utils.dist: launching torchrun / TensorFlow workers from a notebook, and cleaning up.

Every scenario ends by checking that no process of the launch is left (each test tags its workers
with a unique environment variable and looks for it in every live process).
"""
import _thread
import json
import os
import signal
import socket
import threading
import time
import uuid

import pytest

from course_utils import dist
from course_utils.dist import DistError, LaunchResult, tf_workers, torchrun
from tests.helpers import leftovers

pytestmark = pytest.mark.timeout(180)

WORKER = '''
import json, os, sys, time
rank = int(os.environ.get("RANK", json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", -1)))
mode = sys.argv[1]
print(json.dumps({k: os.environ.get(k) for k in
                  ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS", "TF_CONFIG")}))
print("stderr line", file=sys.stderr)
if mode == "fail" and rank == 1:
    raise ValueError("boom on rank 1")
if mode == "hang" and rank == 1:
    print("hanging", flush=True)
    time.sleep(1000)
if mode == "sleep":
    print("sleeping", flush=True)
    time.sleep(1000)
print("done")
'''


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return str(path)


@pytest.fixture
def tag():
    """A unique tag for this test's processes; after the test none may be alive."""
    value = uuid.uuid4().hex
    yield {"COURSE_TEST_TAG": value}
    assert leftovers(value) == [], "processes of the launch are still running"


def settings(lines):
    return json.loads(next(line for line in lines if line.startswith("{")))


def test_free_ports_are_distinct_and_free():
    ports = dist.free_ports(4)
    assert len(set(ports)) == 4
    assert not any(dist.port_in_use(p) for p in ports)


def test_threads_never_oversubscribe():
    n = dist.cores()
    for workers in (1, 2, 3, n, 2 * n):
        t = dist.threads_per_worker(workers)
        assert t >= 1 and (workers * t <= n or t == 1)


def test_backend_and_device_match_the_machine():
    import torch
    if torch.cuda.is_available():
        assert dist.backend(0, 1) == "nccl" and dist.device(0, 1).type == "cuda"
    else:
        assert dist.backend() == "gloo" and str(dist.device(3)) == "cpu"


@pytest.mark.parametrize("gpus", [0, 1, 2, 4])
@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_plan_devices_gives_each_nccl_rank_its_own_gpu_or_uses_gloo_on_cpu(workers, gpus):
    plan = dist.plan_devices(workers, gpus)
    assert len(plan) == workers
    if gpus >= workers:
        assert plan == [("nccl", f"cuda:{i}") for i in range(workers)]
    else:
        assert plan == [("gloo", "cpu")] * workers
    assert len({b for b, _ in plan}) == 1  # one process group, one backend
    for b, d in plan:  # backend and device agree
        assert (b == "nccl") == d.startswith("cuda:")
        assert not d.startswith("cuda:") or int(d[5:]) < gpus  # never a GPU that does not exist
    gpu_devices = [d for _, d in plan if d != "cpu"]
    assert len(gpu_devices) == len(set(gpu_devices))  # NCCL refuses two ranks on one GPU


def test_plan_devices_cases_named_in_the_issue():
    assert dist.plan_devices(2, 1) == [("gloo", "cpu"), ("gloo", "cpu")]  # not cuda:0 twice under NCCL
    assert dist.plan_devices(1, 1) == [("nccl", "cuda:0")]
    assert dist.plan_devices(2, 4) == [("nccl", "cuda:0"), ("nccl", "cuda:1")]


@pytest.mark.parametrize("bad", [(0, 1), (2, -1)])
def test_plan_devices_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        dist.plan_devices(*bad)


@pytest.mark.parametrize("gpus,world,rank,expected", [
    (1, 2, 1, ("gloo", "cpu", False)),   # the 1-GPU machine with 2 ranks: no cuda:1, no NCCL
    (1, 2, 0, ("gloo", "cpu", True)),    # rank 0 says why, once
    (2, 2, 1, ("nccl", "cuda:1", False)),
    (0, 4, 3, ("gloo", "cpu", False)),   # CPU-only: silent
])
def test_backend_device_and_set_device_on_a_pretend_gpu_machine(monkeypatch, capsys, gpus, world, rank, expected):
    """The torch-facing wrappers, with the GPU count faked: no GPU is needed."""
    import torch
    pinned = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_device", pinned.append)
    monkeypatch.setattr(dist, "_NOTICE_SHOWN", False)
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(world))
    b, d = dist.backend(), dist.device()
    assert (b, str(d)) == expected[:2]
    assert pinned == ([rank, rank] if b == "nccl" else [])  # torch.cuda.set_device(local_rank)
    notice = capsys.readouterr().err
    assert ("using gloo on the CPU for every rank" in notice) == expected[2]
    assert notice.count("\n") <= 1  # one line, even though backend() and device() were both called


def test_normal_run_streams_every_rank_with_a_prefix(script, tag, capsys):
    res = torchrun(script, nprocs=2, args=["ok"], timeout=120, env=tag)
    assert isinstance(res, LaunchResult) and res.returncode == 0 and res.seconds > 0
    assert sorted(res.lines) == [0, 1]
    for rank in (0, 1):
        env = settings(res.lines[rank])
        assert env["RANK"] == str(rank) and env["WORLD_SIZE"] == "2"
        assert env["MASTER_ADDR"] == "127.0.0.1"
        assert env["OMP_NUM_THREADS"] == str(dist.threads_per_worker(2))
        assert "stderr line" in res.lines[rank] and "done" in res.lines[rank]  # stdout and stderr are separate streams
    out = capsys.readouterr().out
    assert "[rank 0] done" in out and "[rank 1] done" in out


def test_worker_that_raises_fails_fast_with_its_error(script, tag, capsys):
    start = time.perf_counter()
    with pytest.raises(DistError) as info:
        torchrun(script, nprocs=2, args=["fail"], timeout=120, env=tag)
    message = str(info.value)
    assert info.value.rank == 1
    assert message.startswith("rank 1 failed")
    assert "ValueError: boom on rank 1" in message
    assert "torch.distributed.elastic" not in message  # the launcher's own traceback is not shown
    assert time.perf_counter() - start < 60
    assert "[rank 1] ValueError: boom on rank 1" in capsys.readouterr().out


def test_hung_worker_times_out_and_is_named(script, tag):
    start = time.perf_counter()
    with pytest.raises(DistError) as info:
        torchrun(script, nprocs=2, args=["hang"], timeout=20, env=tag, stream=False)
    assert time.perf_counter() - start < 20 + 15
    assert info.value.rank == 1
    assert "timed out after 20 s" in str(info.value) and "rank 1" in str(info.value)


def test_interrupt_kills_the_whole_launch(script, tag):
    # Ctrl-C is a KeyboardInterrupt here even where SIGINT came in ignored (a shell's background job),
    # in which case interrupt_main would do nothing
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(8.0, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            torchrun(script, nprocs=2, args=["sleep"], timeout=120, env=tag, stream=False)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, handler)


def test_port_in_use_is_refused_clearly_and_avoided(script, tag):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert dist.port_in_use(port)
        with pytest.raises(DistError, match="already in use"):
            torchrun(script, nprocs=2, args=["ok"], port=port, env=tag)
        assert port not in dist.free_ports(8)


def test_two_launches_at_once_do_not_collide(script, tag):
    results, errors = {}, []

    def launch(name):
        try:
            results[name] = torchrun(script, nprocs=2, args=["ok"], timeout=150, env=tag, stream=False)
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=launch, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    ports = {settings(results[n].lines[0])["MASTER_PORT"] for n in "ab"}
    assert len(ports) == 2


def test_missing_script_is_a_clear_error(tmp_path):
    with pytest.raises(DistError, match="script not found"):
        torchrun(tmp_path / "nope.py", nprocs=2)


def test_tf_workers_get_their_own_tf_config(script, tag, capsys):
    res = tf_workers(script, nworkers=2, args=["ok"], timeout=60, env=tag)
    configs = [json.loads(settings(res.lines[i])["TF_CONFIG"]) for i in (0, 1)]
    assert [c["task"] for c in configs] == [{"type": "worker", "index": 0}, {"type": "worker", "index": 1}]
    workers = configs[0]["cluster"]["worker"]
    assert workers == configs[1]["cluster"]["worker"] and len(set(workers)) == 2
    assert all(w.startswith("127.0.0.1:") for w in workers)
    assert "[worker 1] done" in capsys.readouterr().out


def test_tf_worker_that_raises_stops_the_others(script, tag):
    with pytest.raises(DistError) as info:
        tf_workers(script, nworkers=3, args=["fail"], timeout=60, env=tag, stream=False)
    assert info.value.rank == 1 and "ValueError: boom on rank 1" in str(info.value)


def test_tf_worker_that_hangs_times_out(script, tag):
    with pytest.raises(DistError, match="still running: worker 1"):
        tf_workers(script, nworkers=2, args=["hang"], timeout=5, env=tag, stream=False)


def test_launch_env_does_not_leak_into_the_notebook():
    before = dict(os.environ)
    dist._worker_env(2, None, {"X_TEST": 1})
    assert dict(os.environ) == before
