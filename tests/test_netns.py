"""course_utils.netns: the namespaced hosts the cluster tests and the TF launches use.

``hosts(1, link=True)`` used to fail (its veth's other end was sent to a bridge namespace that only
``n > 2`` created); ``loopback_only()`` is the namespace ``course_utils.dist`` confines TF launches to.
Needs root and iproute2: skipped locally without them, a failure under CI.
"""
import subprocess

import pytest

from course_utils import netns
from tests.helpers import IN_CI, need

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def namespaces():
    need("ip", "network namespaces are made with iproute2")
    need("nsenter", "commands enter them with nsenter (util-linux)")
    why = netns.unavailable()
    if why:
        if IN_CI:
            pytest.fail(f"cannot create network namespaces: {why} (CI must allow it)", pytrace=False)
        pytest.skip(f"cannot create network namespaces: {why}")


def inside(host, *cmd) -> str:
    return subprocess.run(host.wrap(list(cmd)), capture_output=True, text=True, timeout=30, check=True).stdout


def interfaces(host) -> set[str]:
    return {line.split(":")[1].strip().split("@")[0] for line in inside(host, "ip", "-o", "link").splitlines()}


@pytest.mark.parametrize("n", [1, 2, 3])
def test_linked_hosts_get_an_address_on_pe0(n):
    with netns.hosts(n, link=True, prefix="cunt") as hosts:
        assert len(hosts) == n and len({h.addr for h in hosts}) == n
        for h in hosts:
            assert interfaces(h) == {"lo", "pe0"}
            assert f"inet {h.addr}/24" in inside(h, "ip", "-o", "-4", "addr", "show", "pe0")
        if n > 1:  # the hosts reach each other: a listener on host 2, a connection from host 1
            server = subprocess.Popen(hosts[1].wrap(["python3", "-c", (
                "import socket; s = socket.create_server(('%s', 7777)); print('up', flush=True); "
                "c, _ = s.accept(); c.sendall(b'hello')") % hosts[1].addr]), stdout=subprocess.PIPE, text=True)
            assert server.stdout.readline().strip() == "up"
            got = inside(hosts[0], "python3", "-c", "import socket; print(socket.create_connection(('%s', 7777), "
                         "timeout=5).recv(5).decode())" % hosts[1].addr)
            assert got.strip() == "hello"
            server.wait(10)
    assert netns.leftovers("cunt") == []


def test_loopback_only_has_lo_up_and_nothing_else():
    with netns.loopback_only(prefix="cunt") as host:
        assert host.addr is None and interfaces(host) == {"lo"}
        assert "UP" in inside(host, "ip", "-o", "link", "show", "lo")
        assert "127.0.0.1" in inside(host, "ip", "-o", "-4", "addr", "show", "lo")
        name = host.name
    assert netns.leftovers("cunt") == [] and name not in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True).stdout
