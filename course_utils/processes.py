"""Start, watch and reliably stop the worker processes of one launch (used by ``course_utils.dist``).

Every process of a launch carries an environment marker, so clean-up finds all of them — the
launcher, its workers, and anything they started — even after a parent died. Also: free ports on
127.0.0.1 and how many threads each worker may use.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import socket
import subprocess
import sys

import psutil

HOST = "127.0.0.1"
MARKER = "COURSE_DIST_LAUNCH"  # every process of a launch inherits it, so leftovers can be found


def quiet():  # "with quiet():" skips a process that is already gone (or not ours)
    return contextlib.suppress(psutil.Error, OSError, KeyError, subprocess.TimeoutExpired)


# --- ports and threads ----------------------------------------------------------------

def free_ports(n: int = 1, host: str = HOST) -> list[int]:
    """``n`` different ports that are free on ``host`` right now (the OS picks them)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host: str = HOST) -> int:
    """One free port on ``host``."""
    return free_ports(1, host)[0]


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def cores() -> int:
    """CPU cores this process may use (respects taskset / container limits where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def threads_per_worker(nworkers: int) -> int:
    """max(1, cores // nworkers): workers × threads never exceeds the cores."""
    return max(1, cores() // max(1, nworkers))


# --- processes -----------------------------------------------------------------------------------

_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # runs in the child before exec: SIGTERM it when the kernel dies
    _LIBC.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def spawn(cmd: list[str], env: dict, cwd: str | None) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                            start_new_session=True,
                            preexec_fn=_die_with_parent if _LIBC else None)


def pump(proc: subprocess.Popen, key, out: queue.Queue) -> None:
    for line in proc.stdout:
        out.put((key, line.rstrip("\n")))
    out.put((key, None))


def marked_processes(launch_id: str) -> list[psutil.Process]:
    """Live processes whose environment carries this launch's marker (empty once cleaned up)."""
    found = []
    for p in psutil.process_iter():
        with quiet():
            if p.environ().get(MARKER) == launch_id and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
    return found


def kill_all(procs: list[subprocess.Popen], launch_id: str, grace: float = 3.0) -> None:
    """SIGTERM every process of the launch (groups, descendants, marked strays), then SIGKILL."""
    family = {p.pid: p for p in marked_processes(launch_id)}
    for proc in procs:
        with quiet():
            root = psutil.Process(proc.pid)
            family.update({p.pid: p for p in [root, *root.children(recursive=True)]})
        with quiet():
            os.killpg(proc.pid, signal.SIGTERM)  # torchrun forwards it to its workers
    for p in family.values():
        with quiet():
            p.terminate()
    _, alive = psutil.wait_procs(list(family.values()), timeout=grace)
    for p in alive + marked_processes(launch_id):
        with quiet():
            p.kill()
    psutil.wait_procs(alive, timeout=grace)
    for proc in procs:
        with quiet():
            proc.wait(timeout=grace)
        proc.stdout.close()
