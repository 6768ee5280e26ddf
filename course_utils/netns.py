"""Pretend hosts on one Linux machine: network namespaces joined by a virtual cable (veth).

    from course_utils.netns import hosts, unavailable
    if (why := unavailable()) is None:
        with hosts(2) as (h1, h2):                   # two "machines", 10.77.N.1 and 10.77.N.2
            subprocess.run(h1.wrap(["ip", "addr"]))  # runs inside h1's network namespace

Each host is a namespace with ``lo`` and one interface named ``pe0`` (the same name on every host, so
one ``GLOO_SOCKET_IFNAME=pe0`` / ``NCCL_SOCKET_IFNAME=pe0`` serves them all). Two hosts are joined by a
veth pair; one host, or more than two, are joined by a bridge living in an extra, hidden namespace.
``hosts(1, link=False)`` (or ``loopback_only()``) gives one namespace with only ``lo``: a sandbox where
a program that listens on every interface is still reachable only from inside it.

The addresses (10.77.N.x/24, N chosen per call so two test runs do not clash) exist only inside these
namespaces: nothing here talks to the machine's real network. On leaving the ``with`` block — normally,
on an exception, or on Ctrl-C — every process still running in the namespaces is killed (SIGKILL) and
the namespaces are deleted, which also removes their interfaces.

Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN), ``ip`` from iproute2 and ``nsenter`` from util-linux.
``unavailable()`` says why not, as a sentence fit for ``pytest.skip``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass

IFNAME = "pe0"  # the interface name every host sees
NETNS_DIR = "/run/netns"


@dataclass(frozen=True)
class Host:
    """One namespaced host: ``name`` (as ``ip netns list`` shows it), its ``addr`` (None without a link)."""
    name: str
    addr: str | None
    ifname: str | None = IFNAME

    @property
    def path(self) -> str:
        return f"{NETNS_DIR}/{self.name}"

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` run inside this host's network namespace (``nsenter --net``: only the network
        changes; the file system, /sys and the process tree are the machine's)."""
        return ["nsenter", f"--net={self.path}", "--", *map(str, cmd)]

    def pids(self) -> list[int]:
        """Processes whose network namespace is this host's."""
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


def unavailable() -> str | None:
    """None when namespaces can be made here; else why not (one sentence)."""
    if os.name != "posix" or not os.path.isdir("/proc/self/ns"):
        return "network namespaces need Linux"
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            pkg = "iproute2" if tool == "ip" else "util-linux"
            return f"`{tool}` not found (apt-get install {pkg})"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (run as root, as CI does)"
    probe = f"cuprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    if made.returncode != 0:
        return f"`ip netns add` failed here: {made.stderr.strip() or made.returncode}"
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _subnet() -> int:
    """A third octet N for 10.77.N.0/24 that no namespace of this machine uses right now."""
    used = set()
    out = subprocess.run(["ip", "-all", "netns", "exec", "ip", "-4", "-o", "addr"], capture_output=True,
                         text=True).stdout
    for word in out.split():
        if word.startswith("10.77."):
            used.add(int(word.split(".")[2]))
    start = os.getpid() % 250
    return next(((start + i) % 250 + 1 for i in range(250) if (start + i) % 250 + 1 not in used), 1)


def _kill_inside(names: list[str], grace: float = 3.0) -> None:
    """SIGKILL every process in these namespaces and wait (bounded) until they are gone."""
    deadline = time.monotonic() + grace
    while True:
        pids = []
        for name in names:
            out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
            pids += [int(p) for p in out.split()]
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def remove(names: list[str]) -> None:
    """Kill what runs in the namespaces ``names``, then delete them (missing ones are fine)."""
    existing = [n for n in names if os.path.exists(f"{NETNS_DIR}/{n}")]
    _kill_inside(existing)
    for name in existing:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@contextlib.contextmanager
def hosts(n: int = 2, link: bool = True, prefix: str = "cu"):
    """``n`` namespaced hosts as a list of ``Host``; removed (with their processes) on exit.

    ``link=True``: hosts i = 1..n get 10.77.N.i/24 on ``pe0`` and can reach each other. ``link=False``:
    each host has only ``lo`` (``addr`` and ``ifname`` are None).
    """
    why = unavailable()
    if why:
        raise RuntimeError(f"cannot create network namespaces: {why}")
    if n < 1 or (link and n > 200):
        raise ValueError(f"hosts(n): need 1 <= n <= 200, got {n}")
    tag = uuid.uuid4().hex[:6]
    names = [f"{prefix}{tag}h{i + 1}" for i in range(n)]
    bridge_ns = f"{prefix}{tag}br"
    made: list[str] = []
    prev = signal.getsignal(signal.SIGTERM)
    # a SIGTERM (pytest-timeout, CI cancel) unwinds through the finally below instead of leaking
    if prev in (signal.SIG_DFL, None) and _main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        net = _subnet() if link else None
        for name in names:
            _ip("netns", "add", name)
            made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        result = [Host(name, None, None) for name in names]
        if link:
            if n != 2:  # one host, or three and more: each veth's other end goes on a bridge
                _ip("netns", "add", bridge_ns)
                made.append(bridge_ns)
                _ip("-n", bridge_ns, "link", "add", "br0", "type", "bridge")
                _ip("-n", bridge_ns, "link", "set", "br0", "up")
            for i, name in enumerate(names):
                a, b = f"{prefix}{tag}a{i}", f"{prefix}{tag}b{i}"  # temporary names (<= 15 chars)
                if n == 2 and i == 1:
                    continue  # the pair made for host 1 already has its other end in host 2
                _ip("link", "add", a, "type", "veth", "peer", "name", b)
                _ip("link", "set", a, "netns", name)
                _ip("-n", name, "link", "set", a, "name", IFNAME)
                other = names[1] if n == 2 else bridge_ns
                _ip("link", "set", b, "netns", other)
                if n == 2:
                    _ip("-n", other, "link", "set", b, "name", IFNAME)
                else:
                    _ip("-n", other, "link", "set", b, "master", "br0")
                    _ip("-n", other, "link", "set", b, "up")
            for i, name in enumerate(names):
                addr = f"10.77.{net}.{i + 1}"
                _ip("-n", name, "addr", "add", f"{addr}/24", "dev", IFNAME)
                _ip("-n", name, "link", "set", IFNAME, "up")
                result[i] = Host(name, addr)
        yield result
    finally:
        remove(made)
        if signal.getsignal(signal.SIGTERM) is _raise_interrupt:
            signal.signal(signal.SIGTERM, prev)


@contextlib.contextmanager
def loopback_only(prefix: str = "culo"):
    """One namespace with only ``lo`` (up), as a ``Host``; removed with what runs in it on exit.

    What it is for: a program that listens on every interface (``*:P``) is, in there, reachable only
    from processes inside the same namespace — nothing on any network can connect to it."""
    with hosts(1, link=False, prefix=prefix) as (host,):
        yield host


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def leftovers(prefix: str = "cu") -> list[str]:
    """Namespaces with this prefix that still exist (for tests: should be empty after a ``with``)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]
