"""Horovod 0.28.1 built by `make horovod` (tools/build_horovod.py) and course_utils.dist.horovodrun.

Builds nothing: the launch tests skip when Horovod is not installed (and fail under CI, which runs
`make horovod`). The patch tests need no build.
"""
import re
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from course_utils.dist import DistError, horovodrun
from tests.helpers import ROOT, need

sys.path.insert(0, str(ROOT / "tools"))
import build_horovod as bh  # noqa: E402

SMOKE = ROOT / "notebooks" / "scripts" / "hvd_smoke.py"


@pytest.fixture
def hvd():
    need(str(Path(sys.executable).parent / "horovodrun"), "build it with `make horovod`")


def _procs_with(token: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("HVD_TEST_TOKEN") == token:
                found.append(p)
        except (psutil.Error, OSError):
            pass
    return found


def _script(tmp_path, body: str) -> Path:
    path = tmp_path / "w.py"
    path.write_text("import sys, time\nimport torch\nimport horovod.torch as hvd\nhvd.init()\n" + body)
    return path


# --- the patch (no build needed) ------------------------------------------------------------------

def _fake_tree(root: Path, top: str = "set(CMAKE_CXX_STANDARD 14)\n") -> Path:
    (root / "horovod/torch").mkdir(parents=True)
    (root / "cmake/Modules").mkdir(parents=True)
    (root / "CMakeLists.txt").write_text("project(horovod)\n" + top + "set(CMAKE_CXX_STANDARD_REQUIRED ON)\n"
                                         '    string(PREPEND GLOO_CMAKE "set(CMAKE_CXX_STANDARD 17)\\n")\n')
    (root / "horovod/torch/CMakeLists.txt").write_text("if(x)\n    set(CMAKE_CXX_STANDARD 14)\nendif()\n")
    (root / "cmake/Modules/FindPytorch.cmake").write_text('string(TOUPPER "${Pytorch_CUDA}" Pytorch_CUDA)\n')
    return root


def test_patch_sets_cxx20_and_cpu_only(tmp_path):
    src = _fake_tree(tmp_path)
    assert sorted(bh.patch(src, bh.CXX20 + bh.CPU_ONLY)) == sorted(
        ["CMakeLists.txt", "horovod/torch/CMakeLists.txt", "cmake/Modules/FindPytorch.cmake"])
    top = (src / "CMakeLists.txt").read_text()
    assert "set(CMAKE_CXX_STANDARD 20)\n" in top and "set(CMAKE_CXX_STANDARD 14)" not in top
    assert "CMAKE_CXX_STANDARD 17" in top  # gloo's own standard is left alone
    assert "    set(CMAKE_CXX_STANDARD 20)\n" in (src / "horovod/torch/CMakeLists.txt").read_text()
    assert "set(Pytorch_CUDA FALSE)" in (src / "cmake/Modules/FindPytorch.cmake").read_text()


@pytest.mark.parametrize("top", ["set(CMAKE_CXX_STANDARD 17)\n",  # upstream changed
                                 "set(CMAKE_CXX_STANDARD 14)\nset(CMAKE_CXX_STANDARD 14)\n"])  # ambiguous
def test_patch_refuses_unexpected_upstream_text(tmp_path, top):
    src = _fake_tree(tmp_path, top)
    before = {p: p.read_text() for p in src.rglob("*") if p.is_file()}
    with pytest.raises(bh.PatchError, match="CMakeLists.txt.*upstream text differs"):
        bh.patch(src, bh.CXX20)
    assert {p: p.read_text() for p in src.rglob("*") if p.is_file()} == before  # nothing half-patched


def test_key_errors_keeps_the_compilers_messages():
    log = ("  [ 60%] Building CXX object horovod/torch/...\n"
           "  /x/site-packages/torch/include/c10/util/C++17.h:13:2: error: #error \"C++20 or later\"\n"
           "  /x/site-packages/torch/include/c10/util/C++17.h:13:2: error: #error \"C++20 or later\"\n"
           "  gmake[2]: *** [horovod/torch/CMakeFiles/x.dir/build.make:76: y.o] Error 1\n"
           "  warning: unused variable\n")
    lines = bh.key_errors(log)
    assert lines[0] == '<site-packages>/torch/include/c10/util/C++17.h:13:2: error: #error "C++20 or later"'
    assert len(lines) == 2 and "Error 1" in lines[1]


def test_missing_horovod_says_make_horovod(monkeypatch):
    monkeypatch.setitem(sys.modules, "horovod.runner.launch", None)  # import fails
    with pytest.raises(DistError, match="run `make horovod`"):
        horovodrun(SMOKE, nprocs=2, stream=False)


def test_failure_blames_the_rank_that_caused_it_not_the_first_to_exit(monkeypatch, tmp_path):
    import types
    import course_utils.dist as dist
    monkeypatch.setitem(sys.modules, "horovod.runner.launch", types.ModuleType("launch"))
    lines = {0: ["Traceback (most recent call last):", "HorovodInternalError: Horovod has been shut down. ..."],
             1: ["Traceback (most recent call last):", "ValueError: rank one breaks"]}

    def first_to_exit(*a, **k):  # horovodrun saw rank 0 exit first
        raise DistError("rank 0 failed (exit code 1)", 0, lines)
    monkeypatch.setattr(dist, "_run", first_to_exit)
    (tmp_path / "s.py").write_text("")
    with pytest.raises(DistError, match="rank 1 failed") as err:
        horovodrun(tmp_path / "s.py", stream=False)
    assert err.value.rank == 1 and "rank one breaks" in str(err.value)


# --- launches (need the build) ----------------------------------------------------------------------

def _smoke_line(res) -> dict:
    line = next(s for s in res.lines[0] if s.startswith("SMOKE"))
    return dict(kv.split("=") for kv in line.split()[1:])


def test_two_ranks_equal_one_process_and_plain_optimizer_differs(hvd):
    res = horovodrun(SMOKE, nprocs=2, timeout=180, stream=False)
    got = _smoke_line(res)
    assert got["ok"] == "True" and got["ranks"] == "2", got
    assert float(got["ranks_max_diff"]) <= 1e-5 and float(got["single_max_diff"]) <= 1e-5, got
    # negative control: without DistributedOptimizer each rank follows only its own shard
    plain = _smoke_line(horovodrun(SMOKE, nprocs=2, args=["--plain"], timeout=180, stream=False))
    assert float(plain["ranks_max_diff"]) > 1e-3 and float(plain["single_max_diff"]) > 1e-3, plain


def test_listening_sockets_are_loopback_only(hvd, tmp_path):
    script = _script(tmp_path, "hvd.allreduce(torch.ones(3))\nprint('READY', flush=True)\ntime.sleep(4)\n")
    token, listen, linked, box = uuid.uuid4().hex, {}, {}, {}

    def launch():
        try:
            box["res"] = horovodrun(script, nprocs=2, timeout=120, stream=False, env={"HVD_TEST_TOKEN": token})
        except DistError as err:
            box["err"] = err

    run = threading.Thread(target=launch)
    run.start()
    while run.is_alive():
        for p in _procs_with(token):
            try:
                env = p.environ()
                role = "rank " + env["HOROVOD_RANK"] if "HOROVOD_RANK" in env else "launcher"
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        listen.setdefault(role, set()).add((c.laddr.ip, c.laddr.port))
                    elif c.status == psutil.CONN_ESTABLISHED:
                        linked.setdefault(role, set()).add((c.laddr.ip, c.raddr.ip))
            except (psutil.Error, OSError):
                pass
        time.sleep(0.05)
    run.join()
    assert "res" in box, box  # the run itself succeeded
    print("listening:", listen, "connected:", linked)
    # the launcher's rendezvous server is seen listening. Gloo's listeners live only while the ranks
    # connect (often < 50 ms, so a poll may miss them); the connections they made stay up while the
    # ranks sleep, so both ranks are seen through them: every end of every socket is loopback.
    assert "launcher" in listen, listen
    assert {"rank 0", "rank 1"} <= set(listen) | set(linked), (listen, linked)
    ips = {ip for socks in listen.values() for ip, _ in socks} | {ip for s in linked.values() for pair in s for ip in pair}
    assert ips <= {"127.0.0.1", "::1"}, (listen, linked)


def test_missing_script_is_a_dist_error(tmp_path):
    with pytest.raises(DistError, match="script not found"):
        horovodrun(tmp_path / "nope.py", nprocs=2, stream=False)


def test_crashing_rank_is_named(hvd, tmp_path):
    script = _script(tmp_path, "if hvd.rank() == 1:\n    raise ValueError('rank one breaks')\n"
                               "hvd.allreduce(torch.ones(3))\ntime.sleep(30)\n")
    with pytest.raises(DistError) as err:
        horovodrun(script, nprocs=2, timeout=120, stream=False)
    assert err.value.rank == 1 and re.search(r"rank 1 failed", str(err.value)), str(err.value)
    assert "rank one breaks" in str(err.value)


def test_timeout_leaves_no_orphans(hvd, tmp_path):
    script = _script(tmp_path, "print('up', flush=True)\ntime.sleep(600)\n")
    token = uuid.uuid4().hex
    with pytest.raises(DistError, match="timed out") as err:
        horovodrun(script, nprocs=2, timeout=20, stream=False, env={"HVD_TEST_TOKEN": token})
    assert err.value.rank in (0, 1) and "still running: rank 0, rank 1" in str(err.value), str(err.value)
    assert _procs_with(token) == []
