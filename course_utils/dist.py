"""Launch distributed training scripts from a notebook cell, and pick a backend and device in them.

    from course_utils.dist import torchrun, tf_workers, tf_ps_cluster, horovodrun, DistError
    res = torchrun("scripts/ddp_equivalence.py", nprocs=2, args=["--steps", "3"], timeout=120)
    res = tf_workers("scripts/tf_multiworker.py", nworkers=2, timeout=120)
    res = tf_ps_cluster("scripts/tf_ps_train.py", workers=2, ps=1, timeout=120)
    res = horovodrun("scripts/hvd_smoke.py", nprocs=2, timeout=120)     # after `make horovod`

They stream every worker's output into the cell, each line prefixed ``[rank 0] `` (``[worker 0] ``,
``[chief] ``, ``[ps 0] `` for TensorFlow), and return a ``LaunchResult`` once every worker has exited
with status 0 (for ``tf_ps_cluster``: once the chief has).
What they take care of, so the lesson does not have to:

- a free port on 127.0.0.1 for every launch (two notebooks on one machine never collide), torchrun's
  rendezvous store bound to 127.0.0.1, and gloo / NCCL told to use the loopback interface; TensorFlow's
  gRPC servers, which cannot be bound (they listen on ``*:P``), run in a network namespace that has
  only ``lo`` where the platform allows it (see ``tf_workers``, ``confine``);
- threads: each worker gets ``OMP_NUM_THREADS = max(1, cores // workers)`` (and the TensorFlow
  equivalents), because processes × threads above the core count is many times slower;
- failing fast and cleaning up: a worker that raises, exits non-zero or outlives ``timeout`` makes the
  call raise ``DistError`` naming that worker and showing its last lines; on any exit — success,
  error, timeout, Ctrl-C / kernel interrupt — every process of the launch is terminated (SIGTERM,
  then SIGKILL), and the launcher dies with the kernel (Linux) if the kernel itself dies.

Inside a launched script, ``backend()`` and ``device()`` follow one policy, ``plan_devices``: NCCL with
rank i on ``cuda:i`` only when every rank of this node gets a GPU of its own (``gpus >= LOCAL_WORLD_SIZE``);
otherwise gloo on the CPU for every rank — on a CPU-only machine silently, on a machine with too few GPUs
with a one-line notice from local rank 0 (NCCL refuses two ranks on one GPU, and ``cuda:1`` does not exist
on a 1-GPU machine). The two always agree: "nccl" goes with a ``cuda`` device, "gloo" with ``cpu``.
POSIX only (Linux, macOS): torchrun's process groups and signals do not exist on Windows.
"""
from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from course_utils.processes import (HOST, MARKER, cores, free_port, free_ports, kill_all,  # noqa: F401
                                    marked_processes, port_in_use, pump, quiet, spawn, threads_per_worker)

TAIL = 15  # lines of the failing worker shown in the error


class DistError(RuntimeError):
    """A launch failed. ``rank`` is the failing worker (None if the launcher itself failed) and
    ``lines`` every worker's output so far, as in ``LaunchResult.lines``."""

    def __init__(self, message: str, rank: int | None = None, lines: dict | None = None):
        super().__init__(message)
        self.rank, self.lines = rank, lines or {}

    def _render_traceback_(self) -> list[str]:  # IPython shows just the message, no launcher traceback
        return [f"\x1b[0;31mDistError\x1b[0m: {self}"]


@dataclass
class LaunchResult:
    """``lines[rank]``: that worker's output lines (stdout and stderr, without the prefix)."""
    returncode: int
    seconds: float
    lines: dict[int, list[str]]
    launcher_lines: list[str] = field(default_factory=list, repr=False)


# --- helpers for the launched scripts -----------------------------------------------------------

def plan_devices(n_workers: int, n_gpus: int) -> list[tuple[str, str]]:
    """The course's policy, as ``[(backend, device), ...]`` for local ranks 0 .. n_workers-1.

    ``n_gpus >= n_workers``: ``("nccl", "cuda:i")`` for rank i — one GPU per rank, extra GPUs unused.
    Otherwise (no GPU, or fewer GPUs than ranks): ``("gloo", "cpu")`` for every rank. A process
    group has a single backend, so the ranks cannot be split between NCCL and gloo, and NCCL refuses
    two ranks on one GPU. Pure: no torch import, so it can be tested on any machine.
    """
    if n_workers < 1 or n_gpus < 0:
        raise ValueError(f"plan_devices: need n_workers >= 1 and n_gpus >= 0, got {n_workers}, {n_gpus}")
    if n_gpus >= n_workers:
        return [("nccl", f"cuda:{i}") for i in range(n_workers)]
    return [("gloo", "cpu")] * n_workers


_NOTICE_SHOWN = False


def _plan_for_me(local_rank: int | None, world: int | None) -> tuple[str, str, int, int, int]:
    """(backend, device, local_rank, world, gpus) for this process, per ``plan_devices``."""
    import torch
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if world is None:  # ranks on this machine: torchrun sets LOCAL_WORLD_SIZE
        world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1)))
    world = max(world, local_rank + 1)
    gpus = torch.cuda.device_count()
    chosen, dev = plan_devices(world, gpus)[local_rank]
    return chosen, dev, local_rank, world, gpus


def _notice_and_pin(chosen: str, dev: str, local_rank: int, world: int, gpus: int) -> None:
    global _NOTICE_SHOWN
    if chosen == "nccl":
        import torch
        torch.cuda.set_device(int(dev.split(":")[1]))  # NCCL's communicator and "cuda" mean this GPU
    elif gpus and local_rank == 0 and not _NOTICE_SHOWN:
        _NOTICE_SHOWN = True
        print(f"[course_utils.dist] {gpus} GPU(s) for {world} ranks: using gloo on the CPU for every rank "
              "(NCCL needs one GPU per rank)", file=sys.stderr, flush=True)


def backend(local_rank: int | None = None, world: int | None = None) -> str:
    """"nccl" when every local rank gets its own GPU, else "gloo" (see ``plan_devices``).

    ``local_rank`` / ``world`` default to torchrun's ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE`` (0 and 1
    outside torchrun). On a CPU-only machine: "gloo". With "nccl" it also calls
    ``torch.cuda.set_device(local_rank)``, so call it before ``init_process_group``.
    """
    plan = _plan_for_me(local_rank, world)
    _notice_and_pin(*plan)
    return plan[0]


def device(local_rank: int | None = None, world: int | None = None):
    """This process's ``torch.device``, agreeing with ``backend()`` (see ``plan_devices``).

    With at least one GPU per local rank: ``cuda:LOCAL_RANK`` (and ``torch.cuda.set_device`` is
    called on it). Otherwise — no GPU, or fewer GPUs than ranks — ``cpu`` for every rank.
    ``local_rank`` / ``world`` default to torchrun's ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE``.
    """
    import torch
    plan = _plan_for_me(local_rank, world)
    _notice_and_pin(*plan)
    return torch.device(plan[1])


def _worker_env(nworkers: int, threads: int | None, extra: dict | None) -> dict[str, str]:
    t = str(threads or threads_per_worker(nworkers))
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)  # so scripts can import course_utils
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS=t, MKL_NUM_THREADS=t,
               TF_NUM_INTRAOP_THREADS=t, TF_NUM_INTEROP_THREADS=str(max(2, int(t))),
               TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
    env.pop("MPLBACKEND", None)  # the notebook's inline backend does not exist in a plain script
    if "lo" in psutil.net_if_addrs():  # keep gloo/NCCL traffic on the loopback interface
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        env.setdefault("NCCL_SOCKET_IFNAME", "lo")
    env.update({k: str(v) for k, v in (extra or {}).items()})
    env[MARKER] = uuid.uuid4().hex
    return env


def _tail(lines: list[str]) -> str:
    return "\n".join("    " + s for s in lines[-TAIL:]) or "    (no output)"


# --- torchrun -------------------------------------------------------------------------------------

_PREFIX = re.compile(r"^\[rank (\d+)\] ?(.*)$")


def _script(script: str | os.PathLike, cwd: str | None) -> str:
    path = Path(cwd or ".") / script
    if not path.is_file():
        raise DistError(f"script not found: {path.resolve()}")
    return str(path.resolve())


# torchrun's rendezvous store (a TCPStore in the launcher) listens on every interface ("::") whatever
# --master-addr says. TCPStore accepts an already-listening socket (master_listen_fd): this shim gives
# it one bound to the loopback address, then runs torchrun unchanged (torch.distributed.run.main).
_LOOPBACK_TORCHRUN = """
import socket, sys
import torch.distributed as d
import torch.distributed.elastic.rendezvous.static_tcp_rendezvous as static
from torch.distributed.run import main
_TCPStore, _sockets = d.TCPStore, []
def TCPStore(host_name, port, world_size=None, is_master=False, *args, **kw):
    if is_master and port and len(args) < 4 and kw.get("master_listen_fd") is None \\
            and host_name in ("127.0.0.1", "localhost"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(128)
        _sockets.append(s)  # kept open for the store's lifetime
        kw["master_listen_fd"] = s.fileno()
    return _TCPStore(host_name, port, world_size, is_master, *args, **kw)
d.TCPStore = static.TCPStore = TCPStore
sys.argv[0] = "torchrun"
main(sys.argv[1:])
"""


def torchrun(script: str | os.PathLike, nprocs: int = 2, args: list | tuple = (), timeout: float = 120,
             port: int | None = None, threads: int | None = None, env: dict | None = None,
             cwd: str | None = None, stream: bool = True) -> LaunchResult:
    """Run ``python -m torch.distributed.run --nproc-per-node=nprocs script *args`` on 127.0.0.1.

    Everything it opens listens on 127.0.0.1 only: the rendezvous store (through a socket bound to
    loopback, see ``_LOOPBACK_TORCHRUN``) and gloo (``GLOO_SOCKET_IFNAME=lo``).

    ``port`` (default: a free one) is the rendezvous port; ``threads`` per worker defaults to
    ``threads_per_worker(nprocs)``; ``env`` adds variables for the workers. Raises ``DistError``
    on a worker failure, on a timeout (naming the ranks still running) or if ``port`` is taken.
    """
    path = _script(script, cwd)
    if port is not None and port_in_use(port):
        raise DistError(f"port {HOST}:{port} is already in use (another launch or program); "
                        "leave port=None to get a free one")
    for attempt in range(2):  # a free port can be taken between our check and the launcher's bind
        chosen = port or free_port()
        with tempfile.TemporaryDirectory(prefix="course_dist_") as logs:
            cmd = [sys.executable, "-c", _LOOPBACK_TORCHRUN, "--nnodes=1", f"--nproc-per-node={nprocs}",
                   "--rdzv-backend=static", f"--master-addr={HOST}", f"--master-port={chosen}",
                   f"--log-dir={logs}", "--tee=3", "--log-line-prefix-template=[rank ${rank}] ",
                   path, *map(str, args)]
            try:
                return _run({0: cmd}, {0: _worker_env(nprocs, threads, env)}, cwd, timeout, stream,
                            "rank", nprocs)
            except DistError as err:
                if port or attempt or "address already in use" not in str(err).lower():
                    raise


def _who(label: str, key) -> str:
    return f"{label} {key}" if label else str(key)


def _run(cmds: dict[int, list[str]], envs: dict[int, dict], cwd: str | None, timeout: float,
         stream: bool, label: str, nworkers: int, main=None) -> LaunchResult:
    """Start the commands, stream their lines, enforce the timeout, always clean up. With ``main``
    (a key of ``cmds``) the launch ends when that process exits; any other one exiting first fails it."""
    launch_id, start = next(iter(envs.values()))[MARKER], time.perf_counter()
    lines: dict[int, list[str]] = {r: [] for r in range(nworkers)}
    launcher: list[str] = []
    torch_mode = label == "rank"  # one torchrun process whose output carries "[rank N] " prefixes
    out: queue.Queue = queue.Queue()
    procs: dict[int, subprocess.Popen] = {}
    try:
        for key, cmd in cmds.items():
            procs[key] = spawn(cmd, envs[key], cwd)
            threading.Thread(target=pump, args=(procs[key], key, out), daemon=True).start()
        open_streams, deadline = len(procs), start + timeout
        while open_streams:
            try:
                key, line = out.get(timeout=max(0.0, min(0.2, deadline - time.perf_counter())))
            except queue.Empty:
                key, line = None, ""
            if line is None:
                open_streams -= 1
                if not torch_mode and (procs[key].wait() != 0 or main not in (None, key)):
                    raise _failure(label, key, procs[key].returncode, lines, launcher, main)
                if key == main:
                    break
            elif key is not None:
                m = _PREFIX.match(line) if torch_mode else None
                rank, text = (int(m.group(1)), m.group(2)) if m else (None if torch_mode else key, line)
                if rank is None:
                    launcher.append(line)
                else:
                    lines.setdefault(rank, []).append(text)
                    if stream:
                        print(f"[{_who(label, rank)}] {text}", flush=True)
            if open_streams and time.perf_counter() > deadline:
                raise _timeout(label, timeout, procs, lines, launch_id)
        code = procs[main].returncode if main is not None else max((p.wait() for p in procs.values()), key=abs)
        if code != 0:
            raise _failure(label, None, code, lines, launcher)
        return LaunchResult(code, time.perf_counter() - start, lines, launcher)
    except KeyboardInterrupt:
        print(f"[dist] interrupted: stopping every {label or 'process'}", flush=True)
        raise
    finally:
        kill_all(list(procs.values()), launch_id)


def _failure(label: str, key: int | None, code: int, lines: dict, launcher: list[str], main=None) -> DistError:
    text = "\n".join(launcher)
    if key is None:  # torchrun: its summary names the first failed rank
        m = re.search(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", text, re.S)
        if m:
            key, code = int(m.group(1)), int(m.group(2))
        else:
            key = next((r for r, ls in lines.items() if any("Traceback" in s for s in ls)), None)
    if key is None:
        useful = [s for s in launcher if "Error" in s or "error" in s] or launcher
        return DistError(f"the launcher failed (exit code {code}) before any worker reported an error:\n"
                         f"{_tail(useful)}", None, lines)
    why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    what = "failed" if main in (None, key) else f"stopped before {_who(label, main)} finished"
    return DistError(f"{_who(label, key)} {what} ({why}); its last lines:\n{_tail(lines.get(key, []))}", key, lines)


def _timeout(label: str, timeout: float, procs: dict, lines: dict, launch_id: str) -> DistError:
    if label == "rank":  # find the worker processes torchrun started, by the RANK they were given
        running = set()
        for p in marked_processes(launch_id):
            with quiet():
                running.add(int(p.environ()["RANK"]))  # KeyError (the launcher itself) is skipped
        running = sorted(running)
    else:
        running = [k for k, p in procs.items() if p.poll() is None]
    rank = running[0] if running else None
    who = ", ".join(_who(label, r) for r in running) or "the launcher"
    shown = f"\n{_who(label, rank)}'s last lines:\n{_tail(lines.get(rank, []))}" if rank is not None else ""
    return DistError(f"timed out after {timeout:g} s; still running: {who} (hung in a collective, "
                     f"waiting for a peer, or just slow? raise timeout=...){shown}", rank, lines)


# --- TensorFlow workers and clusters ---------------------------------------------------------------

def tf_config(ports: list[int], index: int) -> str:
    """The TF_CONFIG of worker ``index`` in a cluster of workers on 127.0.0.1 at ``ports``."""
    return json.dumps({"cluster": {"worker": [f"{HOST}:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


@contextlib.contextmanager
def _confined(confine: bool | str):
    """Yield how to wrap a command: into a fresh network namespace with only ``lo`` (course_utils.netns),
    removed on exit with what runs in it; or, where that cannot be made (``confine="auto"``) or is not
    wanted (``False``), unchanged, after one notice. ``confine=True`` fails where it cannot be made."""
    from course_utils import netns
    if confine not in (True, False, "auto"):
        raise ValueError(f"confine must be True, False or 'auto', not {confine!r}")
    why = netns.unavailable() if confine else "confine=False"
    if why and confine is True:
        raise DistError(f"confine=True, but no loopback-only network namespace can be made here: {why}")
    if why:
        print(f"[course_utils.dist] notice: TensorFlow's gRPC servers listen on ALL network interfaces (*:port) "
              f"while this launch runs — TensorFlow has no option to bind them to {HOST}, and they run outside "
              f"a loopback-only network namespace ({why}).", file=sys.stderr, flush=True)
        yield list
        return
    with netns.loopback_only(prefix="cutf") as host:
        yield host.wrap


def tf_workers(script: str | os.PathLike, nworkers: int = 2, args: list | tuple = (), timeout: float = 120,
               threads: int | None = None, env: dict | None = None, cwd: str | None = None,
               stream: bool = True, confine: bool | str = "auto") -> LaunchResult:
    """Run ``nworkers`` copies of ``python script *args``, each with its own ``TF_CONFIG``.

    Worker i gets ``{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}`` with
    free ports on 127.0.0.1 (what MultiWorkerMirroredStrategy reads). Same streaming, timeout,
    threads and clean-up as ``torchrun``; the first worker to fail stops the others at once.

    Loopback only: TensorFlow's gRPC server (``tf.distribute.Server``, started by the strategy) listens
    on ALL interfaces (``*:P``) whatever TF_CONFIG says, and TensorFlow has no option to bind it. So with
    ``confine="auto"`` (default) or ``True`` the workers run in a fresh network namespace that has only
    ``lo`` (Linux, root, iproute2: ``course_utils.netns``), where ``*:P`` is reachable from nothing but
    the launch itself; the namespace is removed afterwards. Where that is impossible ("auto") or with
    ``confine=False``, they run on the machine's network after a one-line notice; ``True`` then raises.
    """
    path = _script(script, cwd)
    base = _worker_env(nworkers, threads, env)
    ports = free_ports(nworkers)
    with _confined(confine) as wrap:
        cmds = {i: wrap([sys.executable, "-u", path, *map(str, args)]) for i in range(nworkers)}
        envs = {i: {**base, "TF_CONFIG": tf_config(ports, i)} for i in range(nworkers)}
        return _run(cmds, envs, cwd, timeout, stream, "worker", nworkers)


# A worker or parameter server of a ParameterServerStrategy cluster only serves: the chief's
# ClusterCoordinator sends it the work. More inter-op threads than workers, or on 2 cores they deadlock.
_TF_SERVER = """
import course_utils, tensorflow as tf
r = tf.distribute.cluster_resolver.TFConfigClusterResolver()
spec = r.cluster_spec()
config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=len(spec.job_tasks("worker")) + 1)
server = tf.distribute.Server(spec, job_name=r.task_type, task_index=r.task_id, protocol="grpc", config=config)
print(f"serving {r.task_type} {r.task_id} at {spec.task_address(r.task_type, r.task_id)}", flush=True)
server.join()
"""


def tf_ps_cluster(script: str | os.PathLike, workers: int = 2, ps: int = 1, args: list | tuple = (),
                  timeout: float = 120, threads: int | None = None, env: dict | None = None,
                  cwd: str | None = None, stream: bool = True, confine: bool | str = "auto") -> LaunchResult:
    """A ``ParameterServerStrategy`` cluster of separate processes: the chief runs ``python script *args``
    (it builds the strategy and a ``ClusterCoordinator`` from ``TF_CONFIG``); ``workers`` worker and
    ``ps`` parameter-server processes run a server that waits for the chief's work (``_TF_SERVER``).

    Every process gets ``TF_CONFIG`` with the whole cluster ({"chief": [1], "worker": [...], "ps": [...]},
    free ports on 127.0.0.1) and its own task. Output lines are prefixed ``[chief]``, ``[worker i]``,
    ``[ps i]``; ``lines`` is keyed "chief", "worker 0", ..., "ps 0". The launch ends when the chief exits:
    status 0 returns, and the servers are then stopped; a chief failure, or a server exiting while the
    chief runs, raises ``DistError`` naming it; so does ``timeout``. ``confine`` as in ``tf_workers``.
    """
    path = _script(script, cwd)
    n = 1 + workers + ps
    base = _worker_env(n, threads, env)
    tasks = [("chief", 0)] + [("worker", i) for i in range(workers)] + [("ps", i) for i in range(ps)]
    ports, cluster = iter(free_ports(n)), {}
    for kind, _ in tasks:
        cluster.setdefault(kind, []).append(f"{HOST}:{next(ports)}")
    names = {("chief" if kind == "chief" else f"{kind} {i}"): (kind, i) for kind, i in tasks}
    with _confined(confine) as wrap:
        cmds = {name: wrap([sys.executable, "-u", *([path, *map(str, args)] if kind == "chief" else ["-c", _TF_SERVER])])
                for name, (kind, i) in names.items()}
        envs = {name: {**base, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": i}})}
                for name, (kind, i) in names.items()}
        return _run(cmds, envs, cwd, timeout, stream, "", 0, main="chief")


# --- Horovod -------------------------------------------------------------------------------------

# horovodrun's rendezvous server (an HTTP server in the launcher) binds ("", port), every interface.
# This shim binds it to 127.0.0.1, tags each worker line "[rank N] " and gives each worker RANK (so
# clean-up can name the ranks still running), reports the first failed rank like torchrun's "Root
# Cause" summary, then runs horovodrun unchanged (horovod.runner.launch.run_commandline).
_LOOPBACK_HOROVODRUN = """
import re, sys
import horovod.runner.gloo_run as g, horovod.runner.http.http_server as h
import horovod.runner.common.util.safe_shell_exec as s
from horovod.runner.launch import run_commandline
_find, _slot, _prefix = h.find_port, g.create_slot_env_vars, s.prefix_connection
h.find_port = lambda factory: _find(lambda addr: factory(("127.0.0.1", addr[1])))
g.create_slot_env_vars = lambda slot: {**_slot(slot), "RANK": str(slot.rank)}
class Tagged:
    def __init__(self, dst, tag): self.dst, self.tag = dst, tag
    def write(self, text): self.dst.write(self.tag + text)
    def flush(self): self.dst.flush()
s.prefix_connection = lambda src, dst, prefix, index, stamp: _prefix(
    src, dst if index is None else Tagged(dst, f"[rank {index}] "), None, None, stamp)
sys.argv[0] = "horovodrun"
try:
    run_commandline()
except RuntimeError as err:
    m = re.search(r"Process name: (\\d+)\\s+Exit code: (-?\\d+)", str(err))
    if not m:
        raise
    print(f"Root Cause (first observed failure): rank : {m[1]} exitcode : {m[2]}", flush=True)
    sys.exit(1)
"""


_SHUT_DOWN = "Horovod has been shut down"  # what the other ranks raise after one rank failed


def horovodrun(script: str | os.PathLike, nprocs: int = 2, args: list | tuple = (), timeout: float = 120,
               threads: int | None = None, env: dict | None = None, cwd: str | None = None,
               stream: bool = True) -> LaunchResult:
    """Run ``horovodrun --gloo -np N -H localhost:N --network-interface lo python -u script *args``.

    Horovod (built by ``make horovod``) with Gloo on the CPU; same streaming, timeout, threads,
    clean-up and ``DistError`` (naming the failing rank) as ``torchrun``. The script calls
    ``hvd.init()`` and reads ``hvd.rank()`` / ``hvd.size()``. Loopback only (checked in
    tests/test_horovod.py): plain horovodrun's rendezvous server listens on 0.0.0.0 whatever
    ``--network-interface`` says, so the shim binds it to 127.0.0.1; ``--network-interface lo`` gives
    the workers ``HOROVOD_GLOO_IFACE=lo``, so Gloo listens on 127.0.0.1 (nothing else listens).
    """
    path = _script(script, cwd)
    try:
        import horovod.runner.launch  # noqa: F401  (the launcher; the workers import horovod.torch)
    except ImportError as err:
        raise DistError(f"Horovod is not installed in this environment ({err}): run `make horovod`") from None
    lo = next((i for i, a in psutil.net_if_addrs().items() if any(x.address == HOST for x in a)), "lo")
    cmd = [sys.executable, "-c", _LOOPBACK_HOROVODRUN, "--gloo", "-np", str(nprocs), "-H", f"localhost:{nprocs}",
           "--network-interface", lo, "--disable-cache", sys.executable, "-u", path, *map(str, args)]
    try:
        return _run({0: cmd}, {0: _worker_env(nprocs, threads, env)}, cwd, timeout, stream, "rank", nprocs)
    except DistError as err:  # horovodrun names the first rank to EXIT; a rank that only saw Horovod
        cause = [r for r, ls in sorted(err.lines.items())  # shut down because of a peer is not the cause
                 if any("Traceback" in s for s in ls) and not any(_SHUT_DOWN in s for s in ls)]
        if err.rank is None or "timed out" in str(err) or not cause or cause[0] == err.rank:
            raise
        raise DistError(f"rank {cause[0]} failed; its last lines:\n{_tail(err.lines[cause[0]])}",
                        cause[0], err.lines) from None
