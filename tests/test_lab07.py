"""Lab 07 checks: the reference passes, the starter is "not done yet", plausible wrong answers fail.

The torch.distributed exercise (q5) is tested with the script cells of the lab's own notebooks
(the solution's and the starter's ``%%writefile my_ring.py``) and with broken variants of it.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from course_utils.labs import lab07
from course_utils.labs.lab07 import Ring

LAB = Path(__file__).resolve().parent.parent / "labs" / "lab07_ring_allreduce"


def out_of(capsys):
    return capsys.readouterr().out


def stub(*_):
    raise NotImplementedError


# --- reference answers (what the solution notebook writes) -------------------------------------------

def chunk_bounds(size, n):
    return lab07.reference_chunk_bounds(size, n)


def make_ring_phase(index, add):
    """One ring phase: n - 1 steps, worker r sends chunk index(r, s, n) right; the receiver adds or copies."""
    def phase(buffers, net):
        n = len(buffers)
        bounds = chunk_bounds(len(buffers[0]), n)
        for s in range(n - 1):
            for r in range(n):
                lo, hi = bounds[index(r, s, n)]
                got = net.send(r, (r + 1) % n, buffers[r][lo:hi])
                if add:
                    buffers[(r + 1) % n][lo:hi] += got
                else:
                    buffers[(r + 1) % n][lo:hi] = got
    return phase


def make_reduce_scatter(index=lambda r, s, n: (r - s) % n, add=True):
    return make_ring_phase(index, add)


def make_all_gather(index=lambda r, s, n: (r + 1 - s) % n, add=False):
    return make_ring_phase(index, add)


reduce_scatter, all_gather = make_reduce_scatter(), make_all_gather()


def ring_allreduce(buffers, net):
    reduce_scatter(buffers, net)
    all_gather(buffers, net)


# --- q1 -----------------------------------------------------------------------------------------------

def numpy_chunk_bounds(size, n):
    sizes = [len(c) for c in np.array_split(np.arange(size), n)]
    ends = np.cumsum(sizes)
    return list(zip(ends - sizes, ends))


def test_q1_reference_and_numpy_pass(capsys):
    assert lab07.q1(chunk_bounds) and lab07.q1(numpy_chunk_bounds)
    out_of(capsys)


@pytest.mark.parametrize("wrong, message", [
    # ceil-sized chunks (torch.chunk's way): wrong sizes, or overlapping/empty ends for small sizes
    (lambda size, n: [(c * (-(-size // n)), min(size, (c + 1) * (-(-size // n)))) for c in range(n)], ("expected", "cover")),
    (lambda size, n: [(c * (size // n), (c + 1) * (size // n)) for c in range(n)], "cover"),  # drops the rest
    (lambda size, n: [(c * size // n, (c + 1) * size // n) for c in range(n - 1)], "chunks, expected"),
    (lambda size, n: None, "list of (start, stop) pairs"),
    (42, "function"),
])
def test_q1_wrong(capsys, wrong, message):
    for _ in range(5):  # hidden inputs differ each call
        assert not lab07.q1(wrong)
        out = out_of(capsys)
        messages = message if isinstance(message, tuple) else (message,)
        assert any(m in out for m in messages) and out.startswith("✘") and "Traceback" not in out, out


# --- q2 / q3 -----------------------------------------------------------------------------------------

def test_q2_q3_reference_pass(capsys):
    for _ in range(5):
        assert lab07.q2(reduce_scatter) and lab07.q3(all_gather) and lab07.q4(ring_allreduce)
    assert "✔ q2" in out_of(capsys)


def summed_without_sending(buffers, net):
    total = np.sum(buffers, axis=0)
    for b in buffers:
        b[:] = total


def sends_whole_buffer(buffers, net):
    n = len(buffers)
    for s in range(n - 1):
        for r in range(n):
            net.send(r, (r + 1) % n, buffers[r])
    summed_without_sending(buffers, net)


def wrong_neighbour(buffers, net):
    net.send(0, 2 % len(buffers) if len(buffers) > 2 else 0, buffers[0][:1])


@pytest.mark.parametrize("wrong, message", [
    (make_reduce_scatter(index=lambda r, s, n: (r - s + 1) % n), "chunk index"),   # off by one
    (make_reduce_scatter(add=False), "not the full sum"),                            # copies instead of adding
    (summed_without_sending, "sent nothing"),
    (sends_whole_buffer, "elements, expected"),
    (wrong_neighbour, "right neighbour"),
    (lambda buffers, net: None, "did not change"),
    (stub, "not done yet"),
])
def test_q2_wrong(capsys, wrong, message):
    for _ in range(5):  # hidden inputs differ each call
        assert not lab07.q2(wrong)
        out = out_of(capsys)
        assert message in out and "Traceback" not in out, out


@pytest.mark.parametrize("wrong, message", [
    (make_all_gather(add=True), "overwrite"),
    (make_all_gather(index=lambda r, s, n: (r - s) % n), ("is wrong in chunk", "overwrite")),    # off by one
    (summed_without_sending, ("is wrong in chunk", "overwrite")),   # the junk chunks get summed in
    (stub, "not done yet"),
])
def test_q3_wrong(capsys, wrong, message):
    for _ in range(5):  # hidden inputs differ each call
        assert not lab07.q3(wrong)
        out = out_of(capsys)
        messages = message if isinstance(message, tuple) else (message,)
        assert any(m in out for m in messages) and "Traceback" not in out, out


# --- q4 -----------------------------------------------------------------------------------------------

def test_q4_reference_passes_and_bytes_are_counted(capsys):
    assert lab07.q4(ring_allreduce)
    net = Ring(4)
    buffers = [np.ones(1000) * r for r in range(4)]
    ring_allreduce(buffers, net)
    assert net.sent.tolist() == [2 * 3 * 1000 * 8 // 4] * 4
    out_of(capsys)


def nan_result(buffers, net):
    ring_allreduce(buffers, net)
    buffers[0][0] = np.nan


def to_float64(buffers, net):
    ring_allreduce(buffers, net)
    buffers[0] = buffers[0].astype(np.float64)  # float32 buffers silently become float64


@pytest.mark.parametrize("wrong, message", [
    (reduce_scatter, "did you run the all-gather"),                                        # skips the all-gather
    (lambda b, n: (make_reduce_scatter(index=lambda r, s, k: (r - s + 1) % k)(b, n), all_gather(b, n)), "off by"),
    (summed_without_sending, "sent nothing"),
    (nan_result, "NaN"),
    (lambda b, n: 1 / 0, "ZeroDivisionError"),
    (to_float64, "dtype"),
    (lambda b, n: b.__setitem__(0, b[0][:1]), "shape"),
    (lambda b, n: b.__setitem__(0, "done"), "expected numbers"),
    (stub, "not done yet"),
])
def test_q4_wrong(capsys, wrong, message):
    for _ in range(5):  # hidden inputs differ each call
        assert not lab07.q4(wrong)
        out = out_of(capsys)
        lines = 1 if wrong is stub else 2  # a wrong answer: the line and a hint; "not done yet": the line only
        assert message in out and out.count("\n") == lines and "Traceback" not in out, out


def np_sum_with_zero_messages(buffers, net):
    """The shortcut: compute np.sum directly, then send messages of the right sizes filled with zeros."""
    n = len(buffers)
    bounds = chunk_bounds(len(buffers[0]), n)
    total = np.sum(buffers, axis=0)
    for s in range(2 * (n - 1)):
        for r in range(n):
            lo, hi = bounds[(r - s) % n]
            net.send(r, (r + 1) % n, np.zeros(hi - lo, dtype=buffers[r].dtype))
    for b in buffers:
        b[:] = total


def np_sum_with_total_messages(buffers, net):
    """np.sum directly, then the finished chunks sent around in both phases (no partial sums travel)."""
    n = len(buffers)
    total = np.sum(buffers, axis=0).astype(buffers[0].dtype)
    for b in buffers:
        b[:] = total
    make_ring_phase(lambda r, s, k: (r - s) % k, add=False)(buffers, net)   # the reduce-scatter's chunks...
    make_all_gather()(buffers, net)                                         # ...but no partial sums in them


def test_q4_np_sum_with_fake_messages_fails(capsys):
    for fake, words in ((np_sum_with_zero_messages, "only zeros"), (np_sum_with_total_messages, "matches no step")):
        for _ in range(3):
            assert not lab07.q4(fake)
            out = out_of(capsys)
            assert words in out and "Traceback" not in out, out


def test_q2_q3_fake_messages_fail(capsys):
    def q2_fake(buffers, net):
        np_sum_with_zero_messages(buffers, Ring(len(buffers)))  # sums on the side
        n = len(buffers)
        bounds = chunk_bounds(len(buffers[0]), n)
        for s in range(n - 1):
            for r in range(n):
                lo, hi = bounds[(r - s) % n]
                net.send(r, (r + 1) % n, np.zeros(hi - lo))

    def q3_fake(buffers, net):
        n = len(buffers)
        bounds = chunk_bounds(len(buffers[0]), n)
        owned = [buffers[r][slice(*bounds[(r + 1) % n])].copy() for r in range(n)]
        for s in range(n - 1):
            for r in range(n):
                lo, hi = bounds[(r + 1 - s) % n]
                net.send(r, (r + 1) % n, np.zeros(hi - lo))
        for b in buffers:
            for r in range(n):
                b[slice(*bounds[(r + 1) % n])] = owned[r]

    assert not lab07.q2(q2_fake) and "only zeros" in out_of(capsys)
    assert not lab07.q3(q3_fake) and "only zeros" in out_of(capsys)


def test_q4_message_log_records_payload_copies():
    net = Ring(3)
    chunk = np.arange(3.0)
    net.send(0, 1, chunk)
    chunk[:] = -1  # changing the buffer afterwards does not change what was sent
    assert net.log[0][0] == 0 and net.log[0][1].tolist() == [0.0, 1.0, 2.0]


def test_q4_rejects_a_hard_coded_answer(capsys):
    def hard_coded(buffers, net):
        for b in buffers:
            b[:] = 0.0

    assert not lab07.q4(hard_coded)
    assert "✘" in out_of(capsys)


# --- q5: torch.distributed, launched with torchrun --------------------------------------------------

def script_cell(notebook: str) -> str:
    nb = json.loads((LAB / notebook).read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if src.startswith("%%writefile my_ring.py"):
            return src.split("\n", 1)[1]
    raise AssertionError(f"no %%writefile my_ring.py cell in {notebook}")


def write(tmp_path, source, name="my_ring.py"):
    path = tmp_path / name
    path.write_text(source)
    return str(path)


def test_q5_solution_passes_starter_is_not_done(tmp_path, capsys):
    assert lab07.q5(write(tmp_path, script_cell("solution.ipynb")), nprocs=2)
    assert lab07.q5(write(tmp_path, script_cell("starter.ipynb"), "stub.py"), nprocs=3) is not None
    out = out_of(capsys)
    assert "✔ q5" in out and "✘ q5 ring on torch.distributed: not done yet" in out, out


@pytest.mark.parametrize("change, message", [
    # skips the all-gather: the ranks hold only their own summed chunk
    (('for phase in ("reduce-scatter", "all-gather"):', 'for phase in ("reduce-scatter",):'), "differs from dist.all_reduce"),
    # calls the library instead of sending chunks
    (("    rank, world = dist.get_rank(), dist.get_world_size()\n",
      "    dist.all_reduce(tensor)\n    return tensor\n    rank, world = dist.get_rank(), dist.get_world_size()\n"),
     "called a collective (allreduce)"),
    # sends the whole tensor every step: right answer, too many bytes
    (("request = dist.isend(chunks[send_c], right)",
      "request = dist.isend(tensor.clone(), right); dist.recv(tensor.clone(), left); "
      "request.wait(); request = dist.isend(chunks[send_c], right)"), "sent"),
])
def test_q5_wrong(tmp_path, capsys, change, message):
    source = script_cell("solution.ipynb")
    assert change[0] in source
    assert not lab07.q5(write(tmp_path, source.replace(*change)), nprocs=2)
    out = out_of(capsys)
    assert message in out and out.count("\n") == 2 and "Traceback" not in out, out


def test_q5_bad_path_and_type(capsys):
    assert not lab07.q5("no_such_file.py")
    assert not lab07.q5(3)
    out = out_of(capsys)
    assert "not found" in out and "path of your script" in out
    for bad in (None, float("nan"), object(), b"x", ["my_ring.py"], ValueError("x")):
        assert not lab07.q5(bad)
        out = out_of(capsys)
        assert out.startswith("✘") and "Traceback" not in out and "could not be checked" not in out, out


@pytest.mark.parametrize("body, message", [
    ("    return torch.full_like(tensor, float('nan'))\n", "(NaN)"),
    ("    return 'done'\n", "differs from dist.all_reduce"),   # not a tensor: the tensor itself is checked
    ("    raise ValueError('cannot convert float NaN to integer')\n", "raised ValueError"),
])
def test_q5_odd_results_and_errors_give_one_line(tmp_path, capsys, body, message):
    source = script_cell("solution.ipynb")
    head = "    rank, world = dist.get_rank(), dist.get_world_size()\n"
    assert not lab07.q5(write(tmp_path, source.replace(head, body + head)), nprocs=2)
    out = out_of(capsys)
    assert message in out and "Traceback" not in out and "could not be checked" not in out, out


ISEND = "request = dist.isend(chunks[send_c], right)      # non-blocking: everyone sends at once\n"
EXCHANGE = ("            request = dist.isend(chunks[send_c], right)      # non-blocking: everyone sends at once\n"
            "            incoming = torch.empty_like(chunks[recv_c])\n"
            "            dist.recv(incoming, left)\n"
            "            request.wait()\n")


@pytest.mark.parametrize("change", [
    # an imported name: counted all the same
    ("import torch.distributed as dist\n", "import torch.distributed as dist\nfrom torch.distributed import isend\n",
     "dist.isend(chunks", "isend(chunks"),
    # batch_isend_irecv with P2POp
    (EXCHANGE, "            incoming = torch.empty_like(chunks[recv_c])\n"
               "            ops = [dist.P2POp(dist.isend, chunks[send_c], right), dist.P2POp(dist.irecv, incoming, left)]\n"
               "            for request in dist.batch_isend_irecv(ops):\n"
               "                request.wait()\n"),
])
def test_q5_every_way_of_sending_is_counted(tmp_path, capsys, change):
    source = script_cell("solution.ipynb")
    for old, new in zip(change[::2], change[1::2]):
        assert old in source
        source = source.replace(old, new)
    assert lab07.q5(write(tmp_path, source), nprocs=2), out_of(capsys)
    out_of(capsys)


@pytest.mark.parametrize("collective", [
    "from torch.distributed import all_reduce\n    all_reduce(tensor)",
    "out = torch.empty(world * tensor.numel(), dtype=tensor.dtype)\n    dist.all_gather_into_tensor(out, tensor)",
    "dist.broadcast(tensor, 0)",
])
def test_q5_other_collectives_are_refused(tmp_path, capsys, collective):
    source = script_cell("solution.ipynb")
    head = "    rank, world = dist.get_rank(), dist.get_world_size()\n"
    source = source.replace(head, head + f"    {collective}\n")
    assert not lab07.q5(write(tmp_path, source), nprocs=2)
    out = out_of(capsys)
    assert "called a collective" in out and out.count("\n") == 2 and "Traceback" not in out, out


def test_q5_a_deadlock_gets_the_friendly_message(tmp_path, capsys):
    source = script_cell("solution.ipynb").replace(
        EXCHANGE, "            dist.send(chunks[send_c], right)                 # blocking: every rank waits here\n"
                  "            incoming = torch.empty_like(chunks[recv_c])\n"
                  "            dist.recv(incoming, left)\n")
    assert "dist.send(" in source
    assert not lab07.q5(write(tmp_path, source), nprocs=2)
    out = out_of(capsys)
    assert "deadlock" in out and "blocking send before any recv" in out and "Traceback" not in out, out


def test_q5_sending_past_the_neighbour_is_refused(tmp_path, capsys):
    # at world 3 a rank sending one (empty) message to its LEFT neighbour breaks the ring rule
    source = script_cell("solution.ipynb").replace(
        "    return tensor\n",
        "    empty = torch.zeros(0, dtype=tensor.dtype)\n"
        "    request = dist.isend(empty, left)\n"
        "    dist.recv(empty.clone(), right)\n"
        "    request.wait()\n"
        "    return tensor\n", 1)
    assert not lab07.q5(write(tmp_path, source), nprocs=3)
    out = out_of(capsys)
    assert "sends only to its right neighbour" in out and "Traceback" not in out, out


def test_q5_no_seed_is_left_to_redraw_other_ranks_tensors(tmp_path, capsys):
    """The target's own sampler: the student's module looks for the seed in argv and the secrets folder."""
    source = script_cell("solution.ipynb").replace(
        "def ring_allreduce(tensor, verbose=False):\n",
        "import sys, os\nLEAK = [a for a in sys.argv[2:] if os.path.isdir(a) and os.listdir(a)]\n"
        "def ring_allreduce(tensor, verbose=False):\n    assert not LEAK, LEAK\n", 1)
    assert lab07.q5(write(tmp_path, source), nprocs=2), out_of(capsys)
    out_of(capsys)


def test_q4_hints_start_conceptual_and_turn_concrete(capsys):
    lab07.q4.wrong_attempts = 0
    assert not lab07.q4(stub) and "hint" not in out_of(capsys)     # not done yet: no hint at all
    assert not lab07.q4(reduce_scatter)
    first = out_of(capsys)
    assert "two phases you already wrote" in first and "same buffers" not in first
    assert not lab07.q4(reduce_scatter)
    assert "your reduce-scatter, then your all-gather, both on the same buffers" in out_of(capsys)


class Weird:
    def __array__(self, *args, **kwargs):
        raise ValueError("cannot convert float NaN to integer")


ODD_VALUES = [None, np.nan, np.inf, "text", b"x", object(), Weird(), [1, "a"], {"a": 1}, ValueError("x"), 1j, True]


def test_q1_odd_return_values_never_raise(capsys):
    odd = ODD_VALUES + [[(0, np.nan)], [(0, np.inf)], [(0.5, 1.5)], [(0, 1, 2)], [[0, None]], iter([(0, 1)])]
    for value in odd:
        ok, line = lab07.q1(lambda size, n, v=value: v), out_of(capsys)
        assert not ok and line.startswith("✘") and "Traceback" not in line and "could not be checked" not in line, (value, line)


@pytest.mark.parametrize("q", [lab07.q2, lab07.q3, lab07.q4])
def test_q2_to_q4_odd_buffers_and_messages_never_raise(capsys, q):
    def replace_with(value):
        def fn(buffers, net):
            buffers[0] = value
        return fn

    def send_odd(value):
        def fn(buffers, net):
            net.send(0, 1, value)
        return fn

    def raiser(exc):
        def fn(buffers, net):
            raise exc
        return fn

    answers = [replace_with(v) for v in ODD_VALUES + [np.ones((2, 2)), np.array(["a", "b"]), np.full(3, np.nan)]]
    answers += [send_odd(v) for v in ODD_VALUES + [np.array(["a"]), np.array([1j])]]
    answers += [raiser(e) for e in (ValueError("cannot convert float NaN to integer"), OverflowError(), KeyError(1),
                                    SystemExit(1))]
    answers += [lambda b, n: b.clear(), lambda b, n: b.append(np.ones(3)), 42, None]
    for answer in answers:
        ok, line = q(answer), out_of(capsys)
        assert not ok and line.startswith("✘") and "Traceback" not in line and "could not be checked" not in line, line


def test_q5_one_whole_tensor_at_world_two_is_not_a_ring(tmp_path, capsys):
    """At N = 2, 2(N-1)/N·S = S: sending the whole tensor once has the ring's bytes, not its messages."""
    source = script_cell("solution.ipynb")
    head = "    rank, world = dist.get_rank(), dist.get_world_size()\n"
    swap = ("    request = dist.isend(tensor.clone(), (dist.get_rank() + 1) % dist.get_world_size())\n"
            "    incoming = torch.empty_like(tensor)\n"
            "    dist.recv(incoming, (dist.get_rank() - 1) % dist.get_world_size())\n"
            "    request.wait()\n"
            "    tensor += incoming\n"
            "    return tensor\n")
    assert head in source
    assert not lab07.q5(write(tmp_path, source.replace(head, swap + head)), nprocs=2)
    out = out_of(capsys)
    assert "sent 1 message(s)" in out and "a ring sends 2(N-1) = 2" in out and out.count("\n") == 2, out
