"""Who listens where while a launch runs: every listener of a course launch must be on loopback.

A background thread polls the LISTEN sockets while the launch runs: those of the machine's own network
namespace that belong to the launch's processes (found by a tag in their environment), and those of the
network namespace each launch process lives in (read from /proc/PID/net/tcp{,6}). JupyterLab's listener
is tested in tests/test_lab_server.py.

TensorFlow's gRPC server (``tf.distribute.Server``, started from ``TF_CONFIG`` by MultiWorkerMirroredStrategy
and by the workers and parameter servers of a ParameterServerStrategy cluster) listens on all interfaces
(``*:P``) even when the cluster names 127.0.0.1, and TensorFlow has no option to bind it (FIELD_NOTES,
"What listens where"). ``course_utils.dist`` therefore runs TF launches in a network namespace with only
``lo``: there the servers' ``*:P`` is seen, in the machine's namespace nothing. Without that namespace
(``confine=False``, or no root) a notice says so — and the test checks the notice is true: ``*:P``.
"""
import ipaddress
import os
import socket
import threading
import uuid
from pathlib import Path

import psutil
import pytest

from course_utils import netns
from course_utils.dist import DistError, tf_ps_cluster, tf_workers, torchrun
from tests.helpers import IN_CI, need

pytestmark = pytest.mark.timeout(240)

TORCH_SCRIPT = '''
import os, time
import torch.distributed as dist
from course_utils.dist import backend
dist.init_process_group(backend())
print("MASTER_PORT", os.environ["MASTER_PORT"], flush=True)
dist.barrier()
print("ready", flush=True)
time.sleep(4)  # the test looks at the sockets now
dist.barrier()
dist.destroy_process_group()
os._exit(0)
'''

TF_SCRIPT = '''
import json, os, time
import course_utils  # quiet TensorFlow; triton first
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # starts this worker's gRPC server from TF_CONFIG
config = json.loads(os.environ["TF_CONFIG"])
print("ADDRESS", config["cluster"]["worker"][config["task"]["index"]], flush=True)
time.sleep(4)
os._exit(0)
'''


def _tagged(tag: str) -> set[int]:
    pids = set()
    for p in psutil.process_iter():
        try:
            if p.environ().get("COURSE_TEST_TAG") == tag:
                pids.add(p.pid)
        except (psutil.Error, OSError):
            pass
    return pids


def _netns(pid: int) -> str | None:
    """The network namespace of ``pid`` (None where /proc has none: macOS)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _listening_in_netns_of(pid: int) -> set:
    """LISTEN sockets (ip, port) of the network namespace process ``pid`` is in (/proc/PID/net)."""
    found = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for row in Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            if state == "0A":  # TCP_LISTEN
                hexip, hexport = local.split(":")
                raw = bytes.fromhex(hexip)  # the kernel prints each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add((socket.inet_ntop(family, raw), int(hexport, 16)))
    return found


class Listeners:
    """Poll LISTEN sockets until stopped. ``seen``: {(ip, port)} of the tagged processes in this machine's
    namespace; ``inside``: {(ip, port)} of every other namespace a tagged process is in; ``netns``: those
    namespaces; ``interfaces``: the interfaces those namespaces have."""

    def __init__(self, tag: str):
        self.tag, self.seen, self.inside, self.netns, self.interfaces = tag, set(), set(), set(), set()
        self._stop, self.mine = threading.Event(), _netns(os.getpid())
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            pids = _tagged(self.tag)
            if pids:
                for c in psutil.net_connections(kind="inet"):
                    if c.pid in pids and c.status == psutil.CONN_LISTEN:
                        self.seen.add((c.laddr.ip, c.laddr.port))
                for pid in pids:
                    try:
                        ns = _netns(pid)
                        if ns is not None and ns != self.mine:
                            self.inside |= _listening_in_netns_of(pid)
                            self.netns.add(ns)
                            dev = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
                            self.interfaces |= {line.split(":")[0].strip() for line in dev}
                    except OSError:  # the process ended meanwhile
                        pass
            self._stop.wait(0.3)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def non_loopback(seen: set) -> list:
    return sorted(f"{ip}:{port}" for ip, port in seen if not ipaddress.ip_address(ip).is_loopback)


@pytest.fixture
def tag():
    value = uuid.uuid4().hex
    yield value
    assert _tagged(value) == set(), "processes of the launch are still running"


@pytest.fixture(scope="module", autouse=True)
def can_see_sockets():
    try:
        psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        pytest.skip("psutil cannot list this machine's sockets (needs root on macOS)")


def test_torchrun_launch_listens_on_loopback_only(tmp_path, tag):
    script = tmp_path / "listen_torch.py"
    script.write_text(TORCH_SCRIPT)
    with Listeners(tag) as watch:
        res = torchrun(script, nprocs=2, timeout=150, env={"COURSE_TEST_TAG": tag}, stream=False)
    port = int(next(s for s in res.lines[0] if s.startswith("MASTER_PORT")).split()[1])
    assert ("127.0.0.1", port) in watch.seen, f"the rendezvous store was not seen listening: {watch.seen}"
    assert non_loopback(watch.seen) == [], f"listening beyond loopback: {non_loopback(watch.seen)}"


def need_namespaces():
    """Skip (fail under CI) where a loopback-only network namespace cannot be made."""
    need("ip", "TF launches are confined to a network namespace made with iproute2")
    need("nsenter", "the TF processes enter that namespace with nsenter (util-linux)")
    why = netns.unavailable()
    if why:
        message = f"cannot confine TF launches to a loopback-only network namespace: {why}"
        if IN_CI:
            pytest.fail(f"{message} (CI must allow it)", pytrace=False)
        pytest.skip(message)


def tf_ports(res, keys) -> set:
    """The gRPC ports the TF processes were given (each prints its own address)."""
    return {int(next(s for s in res.lines[k] if s.startswith("ADDRESS")).rsplit(":", 1)[1]) for k in keys}


def check_confined(watch, ports):
    print(f"inside the launch's namespace {sorted(watch.netns)} ({sorted(watch.interfaces)}): listening on "
          f"{sorted(watch.inside)}; in the machine's namespace: {sorted(watch.seen)}")
    if not ports <= {port for _, port in watch.inside}:  # a broken test: the servers were never seen
        pytest.fail(f"the TF gRPC ports {sorted(ports)} were not seen listening in the launch's namespace: "
                    f"{watch.inside}")
    wildcard = {port for ip, port in watch.inside if ip in ("0.0.0.0", "::")}
    assert ports <= wildcard, f"TensorFlow now binds its servers to an address ({watch.inside}): revisit dist"
    assert watch.interfaces == {"lo"}, f"the launch's namespace has more than lo: {watch.interfaces}"
    assert len(watch.netns) == 1, watch.netns  # one namespace for the whole launch
    assert watch.seen == set(), f"listening in the machine's own namespace: {watch.seen}"
    assert netns.leftovers("cutf") == [], "the launch's namespace was not removed"


def test_tf_workers_launch_is_confined_to_loopback(tmp_path, tag, capsys):
    need_namespaces()
    script = tmp_path / "listen_tf.py"
    script.write_text(TF_SCRIPT)
    with Listeners(tag) as watch:
        res = tf_workers(script, nworkers=2, timeout=180, env={"COURSE_TEST_TAG": tag}, stream=False)
    assert "notice" not in capsys.readouterr().err  # confined: nothing to warn about
    print(f"tf_workers launch: {res.seconds:.1f} s")
    check_confined(watch, tf_ports(res, (0, 1)))


PS_CHIEF = '''
import json, os, time
import course_utils
import tensorflow as tf
config = json.loads(os.environ["TF_CONFIG"])
strategy = tf.distribute.ParameterServerStrategy(tf.distribute.cluster_resolver.TFConfigClusterResolver())
coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
with strategy.scope():
    v = tf.Variable(0.0)
coordinator.schedule(tf.function(lambda: v.assign_add(1.0)))
coordinator.join()
print("variable on", v.device, "value", float(v.numpy()), flush=True)
for kind, addresses in config["cluster"].items():
    for i, address in enumerate(addresses):
        print("ADDRESS", kind if kind == "chief" else f"{kind} {i}", address, flush=True)
time.sleep(3)  # the test looks at the sockets now
os._exit(0)
'''


def test_tf_ps_cluster_is_confined_to_loopback(tmp_path, tag):
    need_namespaces()
    script = tmp_path / "listen_ps.py"
    script.write_text(PS_CHIEF)
    with Listeners(tag) as watch:
        res = tf_ps_cluster(script, workers=2, ps=1, timeout=180, env={"COURSE_TEST_TAG": tag}, stream=False)
    print(f"tf_ps_cluster launch: {res.seconds:.1f} s")
    assert "variable on /job:ps/replica:0/task:0/device:CPU:0 value 1.0" in res.lines["chief"], res.lines["chief"]
    addresses = [s.split()[-1] for s in res.lines["chief"] if s.startswith("ADDRESS")]
    assert len(addresses) == 4 and all(a.startswith("127.0.0.1:") for a in addresses), addresses
    servers = {int(s.rsplit(":", 1)[1]) for s in res.lines["chief"] if s.startswith("ADDRESS") and " chief " not in s}
    assert len(servers) == 3  # worker 0, worker 1, ps 0
    check_confined(watch, servers)


def test_unconfined_tf_launch_says_it_listens_on_all_interfaces_and_does(tmp_path, tag, capsys):
    """The fallback (confine=False; what "auto" does without root or iproute2): one notice, a working
    launch — and the notice is true: TensorFlow's servers listen on *:P in the machine's namespace."""
    script = tmp_path / "listen_tf.py"
    script.write_text(TF_SCRIPT)
    with Listeners(tag) as watch:
        res = tf_workers(script, nworkers=2, timeout=180, env={"COURSE_TEST_TAG": tag}, stream=False,
                         confine=False)
    err = capsys.readouterr().err
    assert err.count("notice: TensorFlow's gRPC servers listen on ALL network interfaces") == 1, err
    assert "no option to bind them to 127.0.0.1" in err and "confine=False" in err, err
    ports = tf_ports(res, (0, 1))
    if not ports <= {port for _, port in watch.seen}:
        pytest.fail(f"the TF workers' gRPC ports {sorted(ports)} were not seen listening: {watch.seen}")
    assert ports <= {int(s.rsplit(":", 1)[1]) for s in non_loopback(watch.seen)}, \
        f"TensorFlow now listens on loopback only ({watch.seen}): the notice and the confinement can go"
    print(f"unconfined: listening in the machine's namespace on {sorted(watch.seen)}")
    assert watch.netns == set()  # it really ran in the machine's namespace


def test_confine_auto_falls_back_and_true_refuses_without_namespaces(tmp_path, monkeypatch, capsys):
    script = tmp_path / "ok.py"
    script.write_text("print('ok')\n")
    monkeypatch.setattr(netns, "unavailable", lambda: "creating network namespaces needs root")
    res = tf_workers(script, nworkers=2, timeout=60, stream=False)
    assert res.lines[0] == ["ok"] and res.lines[1] == ["ok"]
    err = capsys.readouterr().err
    assert err.count("notice:") == 1 and "(creating network namespaces needs root)" in err, err
    with pytest.raises(DistError, match="confine=True, but no loopback-only network namespace"):
        tf_ps_cluster(script, timeout=60, stream=False, confine=True)
    with pytest.raises(ValueError, match="confine must be"):
        tf_workers(script, confine="yes")
