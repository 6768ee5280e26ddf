"""A real Slurm cluster for the length of a test: munge, slurmctld and slurmd started in a temp folder.

One node: the daemons in a network namespace of their own (`lo` and a veth pair with both ends
inside, so whatever listens on every interface, like torchrun's rendezvous store, is reachable from
nowhere else); a 2-process DDP job (scripts/slurm_ddp.sbatch running scripts/train_ddp.py unchanged)
must end COMPLETED with the parameters of one process.
Two nodes: two network namespaces (hosts n1 = 10.77.x.1 and n2 = 10.77.x.2, each with its own hostname),
slurmctld and one slurmd in n1, one slurmd in n2; a 2-node job must run one rank on each, identical.
Every daemon, job process and namespace is gone afterwards (checked). Skips without slurm/munge or
without the right to create network namespaces; under CI=true those are failures.
"""
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from course_utils import netns
from tests.helpers import IN_CI, ROOT, need

pytestmark = pytest.mark.timeout(900)

SCRIPTS = ROOT / "notebooks" / "scripts"
SBATCH = SCRIPTS / "slurm_ddp.sbatch"
STEPS, BATCH, LR, WARMUP, SEED = 8, 64, 0.1, 3, 0
JOB_TIMEOUT = 300  # seconds from submission to a finished job (torch imports take 10 s each under load)


def unavailable(message: str):
    if IN_CI:
        pytest.fail(f"{message} (CI must provide it)", pytrace=False)
    pytest.skip(message)


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (our temp folder appears in every daemon's and job's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


# --- pretend hosts: network namespaces ---

@contextmanager
def sandbox(tag: str):
    """One network namespace `{tag}s`: `lo` and a veth pair whose both ends stay inside; yields its path.

    The address on pe0 (10.77.255.1, inside the namespace only) is there because getaddrinfo's
    AI_ADDRCONFIG finds nothing to bind to on a host with loopback alone, and the daemons give up."""
    need("ip", "the cluster tests build network namespaces with iproute2")
    name = f"{tag}s"
    done = run(["ip", "netns", "add", name])
    if done.returncode:
        unavailable(f"cannot create a network namespace: {done.stderr.strip()}")
    try:
        for step in (["link", "set", "lo", "up"], ["link", "add", "pe0", "type", "veth", "peer", "name", "pe1"],
                     ["link", "set", "pe1", "up"], ["addr", "add", "10.77.255.1/32", "dev", "pe0"],
                     ["link", "set", "pe0", "up"]):
            done = run(["ip", "-n", name, *step])
            assert done.returncode == 0, f"ip {' '.join(step)}: {done.stderr}"
        yield f"/run/netns/{name}"
    finally:
        for pid in run(["ip", "netns", "pids", name]).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        run(["ip", "netns", "delete", name])


@contextmanager
def two_hosts(tag: str):
    """Two hosts from course_utils.netns (10.77.N.1 and .2 on `pe0`, joined by a veth pair);
    yields [(netns path, address), ...]. Removed, with what runs in them, on exit."""
    need("ip", "the two-host tests build network namespaces with iproute2")
    need("nsenter", "processes enter the namespaces with nsenter (util-linux)")
    why = netns.unavailable()
    if why:
        unavailable(f"cannot create network namespaces: {why}")
    with netns.hosts(2, prefix=tag) as hosts:
        yield [(h.path, h.addr) for h in hosts]


# --- a Slurm cluster in a temp folder ---

class Slurm:
    """munged + slurmctld + slurmd(s), in the foreground as child processes, stopped in reverse order."""

    def __init__(self, folder: Path, nodes: list[tuple[str, str, str | None]], cpus: int):
        """nodes: (hostname, address, network namespace path); slurmctld runs on the first."""
        self.dir, self.nodes, self.procs = folder, nodes, []
        self.conf = folder / "slurm.conf"
        self.munge = folder / "munge"
        self.netns = nodes[0][2]
        head, head_addr, _ = nodes[0]
        lines = [  # default ports 6817/6818: free in a fresh namespace
            "ClusterName=course", f"SlurmctldHost={head}({head_addr})",
            f"AuthInfo=socket={self.munge}/munge.socket",
            "ProctrackType=proctrack/linuxproc",  # the cgroup tracker fails without a freezer cgroup
            "TaskPlugin=task/none", "SlurmUser=root", "ReturnToService=2",
            f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool-%n",
            f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd-%n.pid",
            f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd-%n.log",
            "SlurmctldDebug=info", "SlurmdDebug=info",
        ]
        # No CommunicationParameters=NoInAddrAny: it needs the node names in DNS; the namespace confines instead.
        for name, addr, _ in nodes:
            lines.append(f"NodeName={name} NodeAddr={addr} CPUs={cpus} State=UNKNOWN")
        lines.append(f"PartitionName=debug Nodes={','.join(n for n, _, _ in nodes)} Default=YES State=UP")
        (folder / "state").mkdir()
        self.conf.write_text("\n".join(lines) + "\n")

    def _start(self, cmd, log: str, netns=None, hostname=None, **kw):
        if netns:  # this network namespace and its own hostname (nsenter --net, not `ip netns exec`)
            cmd = ["nsenter", f"--net={netns}", "unshare", "--uts", "sh", "-c",
                   f'hostname {hostname} && exec "$@"', "sh", *cmd]
        out = open(self.dir / log, "w")
        self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env={**os.environ, "SLURM_CONF": str(self.conf)}, **kw))
        out.close()

    def start(self):
        self.munge.mkdir(mode=0o755)
        shutil.chown(self.munge, "munge", "munge")
        key = self.munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        shutil.chown(key, "munge", "munge")
        m = self.munge
        self._start(["munged", "--foreground", f"--socket={m}/munge.socket", f"--key-file={key}",
                     f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"],
                    "munged.out", user="munge", group="munge")
        self._wait(lambda: (m / "munge.socket").exists(), "munged's socket")
        self._start(["slurmctld", "-D", "-f", str(self.conf)], "slurmctld.out", self.netns, self.nodes[0][0])
        for name, _, netns in self.nodes:
            self._start(["slurmd", "-D", "-f", str(self.conf)], f"slurmd-{name}.out", netns, name)
        self._wait(self._all_idle, "every node idle")

    def _wait(self, ready, what, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p.args for p in self.procs if p.poll() is not None]
            assert not dead, f"a daemon died while waiting for {what}: {dead}\n{self.logs()}"
            if ready():
                return
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def client(self, *cmd) -> subprocess.CompletedProcess:
        """A Slurm command (sbatch, squeue, ...) seen from the head node's network."""
        return subprocess.run(["nsenter", f"--net={self.netns}", *cmd], capture_output=True, text=True, timeout=60,
                              cwd=ROOT / "notebooks", env={**os.environ, "SLURM_CONF": str(self.conf),
                                   "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})

    def _all_idle(self) -> bool:
        states = self.client("sinfo", "-h", "-N", "-o", "%N %t").stdout.split()
        return len(states) == 2 * len(self.nodes) and all(s == "idle" for s in states[1::2])

    def submit(self, *args) -> str:
        done = self.client("sbatch", "--parsable", f"--output={self.dir}/job-%j.out", *args)
        assert done.returncode == 0, done.stderr + self.logs()
        return done.stdout.strip().split(";")[0]

    def wait_job(self, job: str, timeout=JOB_TIMEOUT) -> str:
        """The job's final state (COMPLETED, FAILED, ...), once it has left the queue."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.client("scontrol", "-o", "show", "job", job)
            state = re.search(r"JobState=(\S+)", done.stdout)
            if state and state.group(1) not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
                return state.group(1)
            time.sleep(1)
        self.client("scancel", job)
        raise AssertionError(f"job {job} did not finish in {timeout} s\n{self.logs()}")

    def logs(self) -> str:
        text = []
        for path in sorted(self.dir.rglob("*.out")) + sorted(self.dir.rglob("*.log")):
            text.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(text)

    def stop(self):
        """Cancel what still runs, then slurmd(s), slurmctld, munged: SIGTERM, and SIGKILL if one does not go."""
        if all(p.poll() is None for p in self.procs[:2]):  # munged and slurmctld still up
            self.client("scancel", "--full", "--user=root")
            deadline = time.monotonic() + 30
            while self.client("squeue", "-h").stdout.strip() and time.monotonic() < deadline:
                time.sleep(1)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


@contextmanager
def slurm_cluster(nodes, cpus):
    for tool, why in [("slurmctld", "the Slurm controller"), ("slurmd", "the Slurm node daemon"),
                      ("sbatch", "the Slurm client"), ("munged", "Slurm's authentication")]:
        need(tool, f"{why} (apt-get install slurmctld slurmd slurm-client munge)")
    need("nsenter", "the daemons run in network namespaces (util-linux)")
    need("unshare", "each node gets its own hostname (util-linux)")
    if os.geteuid() != 0:
        unavailable("a Slurm cluster for the test needs root (munge's key, the daemons)")
    try:
        pwd.getpwnam("munge")
    except KeyError:
        unavailable("no user 'munge' (apt-get install munge creates it)")
    folder = Path(tempfile.mkdtemp(prefix="course_slurm_"))
    folder.chmod(0o755)  # munged (user munge) must reach its own folder inside
    cluster = Slurm(folder, nodes, cpus)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        for pid in processes_mentioning(str(folder)):  # a job's process that outlived its daemons
            os.kill(pid, signal.SIGKILL)
        left = processes_mentioning(str(folder))
        shutil.rmtree(folder, ignore_errors=True)
        assert not left, f"processes left behind: {left}"


# --- the jobs ---

@pytest.fixture(scope="module")
def digits_npz():
    from course_utils.data import digits
    split = digits(8)
    folder = Path(tempfile.mkdtemp(prefix="course_slurm_data_"))
    folder.chmod(0o755)
    path = folder / "digits.npz"
    np.savez(path, x=split.x_train.reshape(-1, 64), y=split.y_train)
    yield path
    shutil.rmtree(folder, ignore_errors=True)


def train_args(data: Path, out: Path) -> list[str]:
    return ["scripts/train_ddp.py", "--data", str(data), "--out", str(out), "--steps", str(STEPS),
            "--batch", str(BATCH), "--lr", str(LR), "--warmup", str(WARMUP), "--seed", str(SEED)]


def single_process(data: Path, out: Path) -> dict:
    out.mkdir()
    args = train_args(data, out)
    args[0] = "scripts/train_single.py"
    subprocess.run([sys.executable, *args], check=True, capture_output=True, timeout=300, cwd=ROOT / "notebooks",
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return dict(np.load(out / "rank0.npz"))


def params(run: dict) -> dict:
    return {k: v for k, v in run.items() if k not in ("seen", "losses")}


def max_diff(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in params(a))


def no_leftovers(before_stepds: set[int]):
    stepds = {p for p in processes_mentioning("slurmstepd")} - before_stepds
    assert not stepds, f"slurmstepd processes left behind: {stepds}"


def test_one_node_two_process_job_equals_one_process(digits_npz, tmp_path):
    before = set(processes_mentioning("slurmstepd"))
    tag = f"sl{os.getpid() % 10000}"
    out = Path(tempfile.mkdtemp(prefix="course_slurm_out_"))
    try:
        with sandbox(tag) as ns, slurm_cluster([("n1", "127.0.0.1", ns)], cpus=2) as cluster:
            start = time.monotonic()
            job = cluster.submit("--nodes=1", "--cpus-per-task=2", "--export=ALL,NPROC=2,OMP_NUM_THREADS=1",
                                 str(SBATCH), *train_args(digits_npz, out))
            state = cluster.wait_job(job)
            seconds = time.monotonic() - start
            log = (cluster.dir / f"job-{job}.out").read_text()
            assert state == "COMPLETED", f"job {job} ended {state}\n{log}\n{cluster.logs()}"
        print(f"one node, 2 processes: submit -> COMPLETED in {seconds:.1f} s")
        ranks = [dict(np.load(out / f"rank{r}.npz")) for r in range(2)]
        assert "n1: node rank 0 of 1" in log and "rendezvous n1 (127.0.0.1:" in log, log
        assert "rank 0:" in log and "rank 1:" in log, log
        single = single_process(digits_npz, tmp_path / "single")
        for k in params(single):
            assert np.array_equal(ranks[0][k], ranks[1][k]), k  # DDP keeps the replicas identical
        diff = max_diff(single, ranks[0])
        print(f"max |DDP under Slurm - one process| = {diff:.2e}")
        assert diff < 1e-5
        # the two ranks trained on different halves of every batch (not two copies of one process)
        assert not set(ranks[0]["seen"].ravel()) & set(ranks[1]["seen"].ravel())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    no_leftovers(before)
    assert not Path(f"/run/netns/{tag}s").exists()


def test_two_node_job_runs_one_rank_per_namespaced_node(digits_npz, tmp_path):
    before = set(processes_mentioning("slurmstepd"))
    tag = f"sl{os.getpid() % 10000}"
    out = Path(tempfile.mkdtemp(prefix="course_slurm_out_"))
    try:
        with two_hosts(tag) as hosts:
            nodes = [("n1", hosts[0][1], hosts[0][0]), ("n2", hosts[1][1], hosts[1][0])]
            with slurm_cluster(nodes, cpus=1) as cluster:
                start = time.monotonic()
                job = cluster.submit("--nodes=2", "--export=ALL,NPROC=1,GLOO_SOCKET_IFNAME=pe0,OMP_NUM_THREADS=1",
                                     str(SBATCH), *train_args(digits_npz, out))
                state = cluster.wait_job(job)
                seconds = time.monotonic() - start
                log = (cluster.dir / f"job-{job}.out").read_text()
                assert state == "COMPLETED", f"job {job} ended {state}\n{log}\n{cluster.logs()}"
        print(f"two nodes, 1 process each: submit -> COMPLETED in {seconds:.1f} s")
        assert "n1: node rank 0 of 2" in log and "n2: node rank 1 of 2" in log, log  # one rank on each node
        assert "2 node(s) [n[1-2]]" in log and f"rendezvous n1 ({hosts[0][1]}:" in log, log
        ranks = [dict(np.load(out / f"rank{r}.npz")) for r in range(2)]
        for k in params(ranks[0]):
            assert np.array_equal(ranks[0][k], ranks[1][k]), k
        single = single_process(digits_npz, tmp_path / "single")
        diff = max_diff(single, ranks[0])
        print(f"max |2-node DDP - one process| = {diff:.2e}")
        assert diff < 1e-5
    finally:
        shutil.rmtree(out, ignore_errors=True)
    no_leftovers(before)
    assert not any(Path(path).exists() for path, _ in hosts)


def test_a_job_still_running_is_cancelled_and_nothing_is_left(tmp_path):
    """Leaving the cluster while a job runs (a failed test, Ctrl-C): the job and every daemon are gone."""
    before = set(processes_mentioning("slurmstepd"))
    tag = f"sl{os.getpid() % 10000}"
    marker = f"course_leftover_{os.getpid()}_{time.monotonic_ns()}"
    with sandbox(tag) as ns, slurm_cluster([("n1", "127.0.0.1", ns)], cpus=2) as cluster:
        job = cluster.submit(f"--wrap=exec python3 -c 'import time; time.sleep(600)' {marker}")
        deadline = time.monotonic() + 60
        while not processes_mentioning(marker):
            assert time.monotonic() < deadline, f"job {job} never started\n{cluster.logs()}"
            time.sleep(0.5)
        daemons = processes_mentioning(str(cluster.dir))
        assert len(daemons) >= 3  # munged, slurmctld, slurmd are running
    assert not processes_mentioning(marker), "the job's process outlived the cluster"
    assert not [pid for pid in daemons if Path(f"/proc/{pid}").exists()], "a daemon outlived the cluster"
    no_leftovers(before)
    assert not Path(f"/run/netns/{tag}s").exists()
