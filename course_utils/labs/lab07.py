"""Checks for lab 07: ring all-reduce, first over simulated workers in NumPy, then on torch.distributed.

The simulated workers talk only through a ``Ring``: ``net.send(src, dst, chunk)`` delivers a copy
of ``chunk``, counts the bytes ``src`` sent, records the message, and refuses any ``dst`` other
than the right neighbour ``(src + 1) % n``. So the byte counts the checks compare with 2(N−1)/N·S
are what the student's code really sent, counted by the checker, never a number the student
returns; and since the student's code sees every buffer (it could compute ``np.sum`` directly),
the checks also compare the content of every message with what the ring must carry: in the
reduce-scatter a worker's running partial sum of the chunk, in the all-gather the summed chunk.

Conventions (the lesson's, notebook 11): the buffer is cut like ``np.array_split`` (the first
``size % n`` chunks one element longer); in reduce-scatter step ``s`` worker ``r`` sends chunk
``(r - s) % n`` and the neighbour adds it, so worker ``r`` ends with the full sum of chunk
``(r + 1) % n``; in all-gather step ``s`` worker ``r`` sends chunk ``(r + 1 - s) % n`` and the
neighbour overwrites its copy.

    from course_utils.labs import lab07 as check
    check.q1(chunk_bounds); check.q2(reduce_scatter); check.q3(all_gather)
    check.q4(ring_allreduce); check.q5("my_ring.py")      # q5 launches torchrun

q5 runs ``ring_harness.py`` on a hidden number of ranks (2 or 3) with hidden tensors: every
point-to-point send is counted (bytes and destination) however it is made, any collective is
refused, and a watchdog reports a deadlock in one line.
"""
from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path

import numpy as np

from course_utils.labs import NotDone, Wrong, as_array, call, exercise, rng

HARNESS = Path(__file__).resolve().parents[2] / "labs" / "lab07_ring_allreduce" / "ring_harness.py"


class Ring:
    """A ring of ``n`` simulated workers: worker r may send only to worker (r + 1) % n."""

    def __init__(self, n: int):
        self.n = n
        self.sent = np.zeros(n, dtype=np.int64)  # bytes sent by each worker, counted here
        self.messages = 0
        self.log: list[tuple[int, np.ndarray]] = []  # (src, a copy of the payload), in sending order

    def send(self, src: int, dst: int, chunk) -> np.ndarray:
        """Send ``chunk`` (a NumPy array) from worker ``src`` to ``dst``; returns what ``dst`` receives (a copy)."""
        if not all(isinstance(v, (int, np.integer)) for v in (src, dst)) or not 0 <= src < self.n:
            raise ValueError(f"net.send(src, dst, chunk): src and dst must be worker numbers 0..{self.n - 1}")
        if dst != (src + 1) % self.n:
            raise ValueError(f"worker {src} may only send to its right neighbour {(src + 1) % self.n}, not {dst}")
        if not isinstance(chunk, np.ndarray):
            raise TypeError(f"net.send needs a NumPy array chunk, got {type(chunk).__name__}")
        if not (np.issubdtype(chunk.dtype, np.integer) or np.issubdtype(chunk.dtype, np.floating)):
            raise TypeError(f"net.send needs a chunk of real numbers, got dtype {chunk.dtype}")
        self.sent[src] += chunk.nbytes
        self.messages += 1
        self.log.append((int(src), chunk.copy()))
        return chunk.copy()


# --- references ------------------------------------------------------------------------------------

def reference_chunk_bounds(size: int, n: int) -> list[tuple[int, int]]:
    base, extra = divmod(size, n)
    bounds, start = [], 0
    for c in range(n):
        stop = start + base + (1 if c < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def reference_reduce_scatter(buffers, net):
    n = len(buffers)
    bounds = reference_chunk_bounds(len(buffers[0]), n)
    for s in range(n - 1):
        for r in range(n):
            lo, hi = bounds[(r - s) % n]
            buffers[(r + 1) % n][lo:hi] += net.send(r, (r + 1) % n, buffers[r][lo:hi])


def reference_all_gather(buffers, net):
    n = len(buffers)
    bounds = reference_chunk_bounds(len(buffers[0]), n)
    for s in range(n - 1):
        for r in range(n):
            lo, hi = bounds[(r + 1 - s) % n]
            buffers[(r + 1) % n][lo:hi] = net.send(r, (r + 1) % n, buffers[r][lo:hi])


def reference_ring_allreduce(buffers, net):
    reference_reduce_scatter(buffers, net)
    reference_all_gather(buffers, net)


# --- helpers ----------------------------------------------------------------------------------------

def _cases(g: np.random.Generator, count: int = 4):
    """(n, size): hidden world sizes 2..8, sizes both divisible and not divisible by n."""
    cases = []
    for i in range(count):
        n = int(g.integers(2, 9))
        size = n * int(g.integers(2, 40)) + (int(g.integers(1, n)) if i % 2 else 0)
        cases.append((n, size))
    return cases


def _buffers(g, n, size, dtype=np.float64):
    return [g.normal(size=size).astype(dtype) for _ in range(n)]


def _whole(v) -> int:
    """An int from an int-like value; ValueError for 2.5, NaN, strings, bools..."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)) or v != int(v):
        raise ValueError(v)
    return int(v)


def _run(fn, buffers, net, what):
    copies = [b.copy() for b in buffers]
    call(fn, copies, net, what=what)
    if len(copies) != len(buffers):
        raise Wrong(f"{what} changed the number of buffers from {len(buffers)} to {len(copies)}: modify each "
                    "buffer in place")
    for r, b in enumerate(copies):
        copies[r] = as_array(b, f"worker {r}'s buffer")
        if copies[r].shape != buffers[r].shape:
            raise Wrong(f"worker {r}'s buffer has shape {copies[r].shape} afterwards, expected {buffers[r].shape}")
        if not np.all(np.isfinite(copies[r])):
            raise Wrong(f"worker {r}'s buffer contains NaN or inf afterwards")
    return copies


def _check_bytes(net: Ring, expected: np.ndarray, itemsize: int, phase: str):
    if net.sent.sum() == 0:
        raise Wrong(f"your workers sent nothing through net.send: every chunk must travel through the ring ({phase})")
    for r in range(net.n):
        if net.sent[r] != expected[r]:
            raise Wrong(f"worker {r} sent {net.sent[r] // itemsize} elements, expected {expected[r] // itemsize} "
                        f"({phase}: one chunk per step, {net.n - 1} steps)")


def _expected_messages(buffers, total, phases):
    """What each worker must send, per phase: {src: [(phase, step, chunk, payload)]}.

    Reduce-scatter step s: worker r sends chunk c = (r - s) % n holding the partial sum of that
    chunk over workers r - s .. r. All-gather step s: worker r sends the summed chunk (r + 1 - s) % n.
    """
    n = len(buffers)
    bounds = reference_chunk_bounds(len(buffers[0]), n)
    expected = {r: [] for r in range(n)}
    for r in range(n):
        for s in range(n - 1):
            if "reduce-scatter" in phases:
                c = (r - s) % n
                lo, hi = bounds[c]
                partial = np.sum([np.asarray(buffers[(r - k) % n][lo:hi], dtype=np.float64) for k in range(s + 1)],
                                 axis=0)
                expected[r].append(("reduce-scatter", s, c, partial))
            if "all-gather" in phases:
                c = (r + 1 - s) % n
                lo, hi = bounds[c]
                expected[r].append(("all-gather", s, c, np.asarray(total[lo:hi], dtype=np.float64)))
    return expected


def _check_messages(net: Ring, expected: dict, tol: float, phase: str):
    """Every message must carry what the ring sends at some step (matched once each), per worker."""
    n = net.n
    for r in range(n):
        mine = [payload for src, payload in net.log if src == r]
        if len(mine) != len(expected[r]):
            raise Wrong(f"worker {r} sent {len(mine)} messages, expected {len(expected[r])} "
                        f"({phase}: one chunk per step, {n - 1} steps per phase)")
        left = list(expected[r])
        for payload in mine:
            got = payload.astype(np.float64).ravel()
            match = next((e for e in left if e[3].shape == got.shape
                          and np.allclose(got, e[3], rtol=tol, atol=tol)), None)
            if match is None:
                what = "only zeros" if got.size and not np.any(got) else f"{got.size} values"
                raise Wrong(f"worker {r} sent a message carrying {what} that matches no step of the ring: in the "
                            "reduce-scatter a message carries the sender's running sum of that chunk, in the "
                            "all-gather the finished sum — the messages themselves must do the summing")
            left.remove(match)


def _sizes(bounds):
    return np.array([hi - lo for lo, hi in bounds], dtype=np.int64)


def _expected_owner_chunk(n):
    return [(r + 1) % n for r in range(n)]


# --- q1 ----------------------------------------------------------------------------------------------

@exercise("q1 chunk_bounds", hint=("NumPy's array_split makes n pieces whose lengths differ by at most one, the longer "
                                    "ones first, each starting where the previous one stopped",
                                    "every chunk gets the whole quotient of size by n, and the first (size mod n) "
                                    "chunks one more; each chunk starts where the previous one stopped"))
def q1(chunk_bounds):
    g = rng()
    cases = _cases(g) + [(int(g.integers(5, 9)), int(g.integers(1, 4)))]  # also fewer elements than chunks
    for n, size in cases:
        got = call(chunk_bounds, size, n, what=f"chunk_bounds({size}, {n})")
        ref = reference_chunk_bounds(size, n)
        try:
            got = [tuple(_whole(v) for v in pair) for pair in got]
        except (TypeError, ValueError, OverflowError):
            raise Wrong(f"chunk_bounds({size}, {n}) should return a list of (start, stop) pairs of whole "
                        "numbers") from None
        if any(len(pair) != 2 for pair in got):
            raise Wrong(f"chunk_bounds({size}, {n}) should return (start, stop) pairs")
        if len(got) != n:
            raise Wrong(f"chunk_bounds({size}, {n}) returned {len(got)} chunks, expected {n} (one per worker)")
        if got[0][0] != 0 or got[-1][1] != size or any(a[1] != b[0] for a, b in zip(got, got[1:])):
            raise Wrong(f"chunk_bounds({size}, {n}) = {got} does not cover 0..{size} without gaps or overlaps")
        if got != ref:
            raise Wrong(f"chunk_bounds({size}, {n}) = {got}; expected {ref} (the first size % n chunks are longer)")
    return "chunks cover the buffer, sizes differ by at most one, as np.array_split"


# --- q2 ----------------------------------------------------------------------------------------------

@exercise("q2 reduce_scatter", hint=("a chunk travels around the ring and grows into a sum: each receiver adds "
                                      "its own copy to what arrives and passes the running sum on at the next step",
                                      "at the first step worker r sends its chunk number r to its right neighbour, "
                                      "which ADDS it to its own copy; at each later step a worker passes on the chunk "
                                      "it has just added to; after n - 1 steps worker r owns chunk r + 1 (mod n)"))
def q2(reduce_scatter):
    g = rng()
    for n, size in _cases(g):
        buffers = _buffers(g, n, size)
        total = np.sum(buffers, axis=0)
        net = Ring(n)
        out = _run(reduce_scatter, buffers, net, "reduce_scatter(buffers, net)")
        bounds = reference_chunk_bounds(size, n)
        done = [[np.allclose(out[r][lo:hi], total[lo:hi]) for lo, hi in bounds] for r in range(n)]
        for r, c in enumerate(_expected_owner_chunk(n)):
            if not done[r][c]:
                owns = [k for k in range(n) if done[r][k] and bounds[k][1] > bounds[k][0]]
                if all(np.allclose(b, buffers[k]) for k, b in enumerate(out)):
                    raise Wrong("the buffers did not change: add the received chunks into the buffers in place")
                if owns:
                    raise Wrong(f"with n = {n}, worker {r} holds the full sum of chunk {owns[0]}, expected chunk "
                                f"{c} = (r + 1) % n: check the chunk index of each step")
                raise Wrong(f"with n = {n}, size = {size}: worker {r}'s chunk {c} is not the full sum")
        sizes = _sizes(bounds)
        expected = np.array([size - sizes[(r + 1) % n] for r in range(n)]) * 8
        _check_bytes(net, expected, 8, "reduce-scatter")
        _check_messages(net, _expected_messages(buffers, total, ("reduce-scatter",)), 1e-9, "reduce-scatter")
    return "every worker owns one fully summed chunk; each sent (N−1)/N·S"


# --- q3 ----------------------------------------------------------------------------------------------

@exercise("q3 all_gather", hint=("now the finished chunks travel: each worker passes on the finished chunk it "
                                  "owns or received last, and the receiver replaces its copy",
                                  "at the first step worker r sends the finished chunk it owns (r + 1, mod n) to its "
                                  "right neighbour, which OVERWRITES its copy (no adding); at each later step it passes "
                                  "on the chunk it has just received; n - 1 steps"))
def q3(all_gather):
    g = rng()
    for n, size in _cases(g):
        total = g.normal(size=size)
        bounds = reference_chunk_bounds(size, n)
        buffers = _buffers(g, n, size)  # junk everywhere, except the chunk each worker owns
        for r, c in enumerate(_expected_owner_chunk(n)):
            lo, hi = bounds[c]
            buffers[r][lo:hi] = total[lo:hi]
        net = Ring(n)
        out = _run(all_gather, buffers, net, "all_gather(buffers, net)")
        for r in range(n):
            if not np.allclose(out[r], total):
                wrong = [c for c, (lo, hi) in enumerate(bounds) if not np.allclose(out[r][lo:hi], total[lo:hi])]
                added = any(np.allclose(out[r][lo:hi], total[lo:hi] + buffers[r][lo:hi]) for lo, hi in
                            (bounds[c] for c in wrong) if hi > lo)
                if added:
                    raise Wrong(f"worker {r} added a received chunk to its copy: in the all-gather, overwrite it")
                raise Wrong(f"with n = {n}, size = {size}: worker {r} is wrong in chunk(s) {wrong} afterwards")
        sizes = _sizes(bounds)
        expected = np.array([size - sizes[(r + 2) % n] for r in range(n)]) * 8
        _check_bytes(net, expected, 8, "all-gather")
        _check_messages(net, _expected_messages(buffers, total, ("all-gather",)), 1e-9, "all-gather")
    return "every worker has every summed chunk; each sent (N−1)/N·S"


# --- q4 ----------------------------------------------------------------------------------------------

@exercise("q4 ring_allreduce", hint=("the all-reduce is the two phases you already wrote, in the right order; "
                                      "every message must carry real partial sums",
                                      "your reduce-scatter, then your all-gather, both on the same buffers and the same "
                                      "network"))
def q4(ring_allreduce):
    g = rng()
    for i, (n, size) in enumerate(_cases(g, 6)):
        dtype = np.float32 if i % 3 == 2 else np.float64
        itemsize = np.dtype(dtype).itemsize
        buffers = _buffers(g, n, size, dtype)
        total = np.sum(np.array(buffers, dtype=np.float64), axis=0)
        net = Ring(n)
        out = _run(ring_allreduce, buffers, net, "ring_allreduce(buffers, net)")
        tol = 1e-4 if dtype == np.float32 else 1e-9
        bounds = reference_chunk_bounds(size, n)
        for r in range(n):
            if out[r].dtype != dtype:
                raise Wrong(f"worker {r}'s buffer changed dtype to {out[r].dtype}: keep {np.dtype(dtype).name}")
            if not np.allclose(out[r], total, rtol=tol, atol=tol):
                lo, hi = bounds[(r + 1) % n]
                if np.allclose(out[r][lo:hi], total[lo:hi], rtol=tol, atol=tol):
                    raise Wrong(f"worker {r} has only chunk {(r + 1) % n} summed: did you run the all-gather?")
                err = float(np.max(np.abs(out[r] - total)))
                raise Wrong(f"with n = {n}, size = {size}: worker {r}'s buffer is off by up to {err:.3g} from the sum")
        sizes = _sizes(bounds)
        expected = np.array([2 * size - sizes[(r + 1) % n] - sizes[(r + 2) % n] for r in range(n)]) * itemsize
        _check_bytes(net, expected, itemsize, "reduce-scatter + all-gather")
        if size % n == 0 and not np.all(net.sent == 2 * (n - 1) * size * itemsize // n):
            raise Wrong(f"n = {n}, S = {size}: counted bytes {net.sent.tolist()} differ from 2(N-1)/N·S")
        _check_messages(net, _expected_messages(buffers, total, ("reduce-scatter", "all-gather")), tol,
                        "reduce-scatter + all-gather")
    return "equals the sum for hidden N and sizes; counted bytes per worker = 2(N−1)/N·S"


# --- q5 ----------------------------------------------------------------------------------------------

DEADLINE_S = 10  # q5: a rank inside ring_allreduce longer than this is deadlocked (a correct one takes ms)
_PEER_CLOSED = ("connection closed", "connection reset", "gloo", "broken pipe", "timed out")


@exercise("q5 ring on torch.distributed",
          hint=("the same two phases as in NumPy, now with one tensor per process: each step every rank sends "
                "one chunk to its right neighbour and receives one from its left — and no rank may wait "
                "for its send to finish before it starts receiving",
                "split the tensor into world chunks (tensor_split); at each step start the send to the right "
                "neighbour with the non-blocking isend, which returns a request, receive from the left "
                "neighbour into a fresh tensor with recv, and only then wait for the request"))
def q5(path="my_ring.py", nprocs: int | None = None, timeout: float = 90):
    from course_utils.dist import DistError, torchrun
    if not isinstance(path, (str, Path)):
        raise Wrong(f"q5 takes the path of your script file, got a {type(path).__name__}")
    script = Path(path).resolve()
    if not script.is_file():
        raise Wrong(f"file {path} not found: run the %%writefile cell first")
    g = rng()
    n = int(nprocs or g.integers(2, 4))
    sizes = [n * int(g.integers(5, 50)), n * int(g.integers(5, 50)) + int(g.integers(1, n))]
    with tempfile.TemporaryDirectory(prefix="lab07_") as secrets_dir:
        for rank in range(n):  # one secret seed per rank: no rank can draw another rank's tensor
            (Path(secrets_dir) / f"rank{rank}").write_text(str(secrets.randbits(63)))
        try:
            res = torchrun(HARNESS, nprocs=n, timeout=timeout, stream=False,
                           args=[str(script), secrets_dir, DEADLINE_S, *sizes])
        except DistError as err:
            first = str(err).splitlines()[0]
            if "timed out" in first:
                raise Wrong(f"the workers hung ({first.split(';')[0]}) and the harness could not stop them") from None
            raise Wrong(f"the launch failed: {first}") from None
    reports = {}
    for rank, lines in res.lines.items():
        for line in lines:
            if line.startswith("RESULT "):
                try:
                    reports[rank] = json.loads(line[len("RESULT "):])
                except ValueError:
                    pass
    if len(reports) != n:
        raise Wrong(f"only {len(reports)} of {n} workers reported back (did your file print or exit?)")
    reps = [reports[rank] for rank in range(n)]
    if any(rep.get("notdone") for rep in reps):
        raise NotDone
    used = next((rep["collective"] for rep in reps if rep.get("collective")), None)
    if used:
        raise Wrong(f"your ring_allreduce called a collective ({used}): only point-to-point sends and "
                    "receives are allowed — send the chunks yourself")
    errors = [(rank, rep["error"]) for rank, rep in enumerate(reps) if rep.get("error")]
    own = [(rank, e) for rank, e in errors if not any(k in e.lower() for k in _PEER_CLOSED)]
    if own:
        raise Wrong(f"rank {own[0][0]}: your ring_allreduce raised {own[0][1]}")
    if any(rep.get("deadlock") for rep in reps):
        raise Wrong(f"deadlock: the ranks were still inside ring_allreduce after {DEADLINE_S} s (a correct ring "
                    "takes milliseconds). If every rank does a blocking send before any recv, every rank waits "
                    "for a neighbour that is itself waiting; the sends and receives must also pair up")
    if errors:
        raise Wrong(f"rank {errors[0][0]}: your ring_allreduce raised {errors[0][1]}")
    for rank, rep in enumerate(reps):
        strangers = [d for d in rep.get("peers", []) if d != (rank + 1) % n]
        if strangers:
            raise Wrong(f"rank {rank} sent to rank {strangers[0]}: in a ring every rank sends only to its "
                        f"right neighbour (rank + 1) % world = {(rank + 1) % n}")
        if len(rep.get("cases", [])) != len(sizes):
            raise Wrong(f"rank {rank} finished {len(rep.get('cases', []))} of {len(sizes)} hidden cases")
        for case in rep["cases"]:
            s, err, sent = case["size"], case["err"], case["sent"]
            if err is None or not err < 1e-9:
                raise Wrong(f"world {n}, size {s}: rank {rank}'s result differs from dist.all_reduce"
                            + (f" by up to {err:.3g}" if err is not None else " (NaN)"))
            exact = 2 * (n - 1) * s * 8 / n
            if s % n == 0 and sent != exact:
                raise Wrong(f"world {n}, size {s}: rank {rank} sent {sent} bytes, expected 2(N-1)/N·S = {exact:.0f}")
            if abs(sent - exact) > 2 * 8:
                raise Wrong(f"world {n}, size {s}: rank {rank} sent {sent} bytes, expected about {exact:.0f}")
            messages, chunk = case.get("messages", []), {s // n, -(-s // n)}
            if len(messages) != 2 * (n - 1) or not set(messages) <= chunk:  # at N = 2 one whole tensor has the bytes
                raise Wrong(f"world {n}, size {s}: rank {rank} sent {len(messages)} message(s) of "
                            f"{sorted(set(messages))} numbers; a ring sends 2(N-1) = {2 * (n - 1)}, one chunk "
                            f"({' or '.join(map(str, sorted(chunk)))} numbers) each")
    return "equals dist.all_reduce on hidden world sizes and tensors; bytes per rank = 2(N−1)/N·S"
