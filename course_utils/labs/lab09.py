"""Checks for lab 09: pipeline schedules on a clock — GPipe, the bubble, activations in flight, 1F1B, interleaved.

    from course_utils.labs import lab09 as check
    check.q1(gpipe)               # gpipe(p, m) -> [(tick, stage, "F"/"B", mb), ...]
    check.q2(bubble_fraction)     # bubble_fraction(schedule, p) -> float
    check.q3(peak_in_flight)      # peak_in_flight(schedule, p) -> [int] * p
    check.q4(one_f_one_b)         # one_f_one_b(p, m) -> schedule
    check.q5(interleaved)         # interleaved(p, m, v) -> [(tick, stage, op, mb, chunk), ...]

Conventions (``course_utils.pipeline``'s, lesson 16's): every op lasts one tick; a stage runs one op
per tick; F of micro-batch j on (virtual) stage k after F on k − 1, B on k after B on k + 1 (the last
one after its own F); chunk c of stage s is virtual stage c·p + s. The schedule checks validate the
student's schedule itself on hidden random p and m (several draws per call, so a schedule written
for one (p, m) fails), then measure its bubble 1 − busy / (p · span) and its peak micro-batches in
flight per stage (held from the start of F to the end of B) with the checker's own code, and compare
them with the formulas. q2 and q3 run the student's measures on hidden schedules, several of them
not GPipe or 1F1B (delayed, shifted, a missing backward), so a formula that ignores the schedule fails.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction
from types import ModuleType

import numpy as np

from course_utils import pipeline
from course_utils.labs import NotDone, Wrong, as_array, call, exercise, rng

MAX_OPS = 20_000  # more entries than this is no schedule of these sizes (and would be slow to read)


ANSWER_HELPERS = ("orders_1f1b", "orders_interleaved")  # exercise answers besides reference_* (see labs.call)


# --- references ------------------------------------------------------------------------------------

def reference_place(orders, p, v=1, slack=None):
    """Ticks for per-stage orders of (op, mb[, chunk]): each op as soon as its stage is free and the ops
    it needs are done (plus ``slack()`` extra ticks, for the delayed hidden schedules)."""
    done, free, pos, out = {}, [0] * p, [0] * p, []
    while any(pos[s] < len(orders[s]) for s in range(p)):
        moved = False
        for s in range(p):
            while pos[s] < len(orders[s]):
                op, j, c = (*orders[s][pos[s]], 0)[:3]
                k = c * p + s
                if op == "F":
                    need = [("F", (k - 1) % p, j, (k - 1) // p)] if k else []
                else:
                    need = [("B", (k + 1) % p, j, (k + 1) // p)] if k < p * v - 1 else [("F", s, j, c)]
                if not all(n in done for n in need):
                    break
                t = max([free[s]] + [done[n] for n in need]) + (slack() if slack else 0)
                out.append(pipeline.Op(t, s, op, j, c))
                done[(op, s, j, c)] = free[s] = t + 1
                pos[s] += 1
                moved = True
        if not moved:
            raise RuntimeError("deadlock in a reference order")
    return out


def reference_gpipe(p, m):
    return [pipeline.Op(s + j, s, "F", j) for s in range(p) for j in range(m)] + \
           [pipeline.Op(m + p - 1 + j + p - 1 - s, s, "B", j) for s in range(p) for j in range(m)]


def orders_1f1b(p, m):
    orders = []
    for s in range(p):
        warm = min(p - 1 - s, m)
        order = [("F", j) for j in range(warm)]
        for j in range(m - warm):
            order += [("F", warm + j), ("B", j)]
        orders.append(order + [("B", j) for j in range(m - warm, m)])
    return orders


def reference_1f1b(p, m):
    return [pipeline.Op(*o[:4]) for o in reference_place(orders_1f1b(p, m), p)]


def orders_interleaved(p, m, v):
    """Megatron-LM's order: forwards through the chunks in groups of p micro-batches, backwards through
    the chunks in reverse; 2(p − 1 − s) + (v − 1)p warm-up forwards on stage s (m a multiple of p)."""
    def fwd(k):
        return (k // (p * v)) * p + k % p, (k // p) % v

    def bwd(k):
        return (k // (p * v)) * p + k % p, v - 1 - (k // p) % v

    orders, n = [], m * v
    for s in range(p):
        warm = min(2 * (p - 1 - s) + (v - 1) * p, n)
        order = [("F", *fwd(k)) for k in range(warm)]
        for i in range(n - warm):
            order += [("F", *fwd(warm + i)), ("B", *bwd(i))]
        orders.append(order + [("B", *bwd(i)) for i in range(n - warm, n)])
    return orders


def reference_interleaved(p, m, v):
    return reference_place(orders_interleaved(p, m, v), p, v)


def interleaved_limit(p, m, v, s):
    """Most micro-batch chunks interleaved 1F1B keeps on stage s: its warm-up forwards plus one."""
    return min(v * m, 2 * (p - 1 - s) + (v - 1) * p + 1)


def reference_bubble(schedule, p):
    ticks = [o[0] for o in schedule]
    return 1 - len(schedule) / (p * (max(ticks) - min(ticks) + 1))


def reference_peak(schedule, p):
    return pipeline.peak_in_flight([tuple(o) for o in schedule], p)


# --- reading a student's schedule ------------------------------------------------------------------

def _whole(v, what):
    """An int from an int-like value (ints, NumPy ints, floats like 3.0); Wrong for NaN, 2.5, str, bool."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)):
        raise Wrong(f"{what} should be a whole number, got {type(v).__name__} {_short(v)}")
    if isinstance(v, (float, np.floating)) and not (math.isfinite(v) and v == int(v)):
        raise Wrong(f"{what} should be a whole number, got {_short(v)}")
    if abs(int(v)) > 10**9:
        raise Wrong(f"{what} {_short(v)} is far too large for a schedule of this size")
    return int(v)


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def read_schedule(value, what: str, p: int, m: int, v: int = 1) -> list:
    """The student's schedule as a list of Op (ticks and indices as ints), or Wrong saying what is off."""
    if value is None:
        raise Wrong(f"{what} returned None — did you forget `return`?")
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (str, bytes, dict, set, frozenset)) or not hasattr(value, "__iter__"):
        raise Wrong(f"{what} should return a list of ops (tick, stage, op, mb{', chunk' if v > 1 else ''}), "
                    f"got a {type(value).__name__}")
    try:
        entries = list(itertools.islice(iter(value), MAX_OPS + 1))
    except Exception as err:  # a generator that raises
        raise Wrong(f"reading what {what} returned raised {type(err).__name__}") from None
    expected = 2 * p * m * v
    if len(entries) > MAX_OPS:
        raise Wrong(f"{what} returned more than {MAX_OPS} ops; a schedule has 2·p·{'v·' if v > 1 else ''}m = "
                    f"{expected} (one F and one B per micro-batch{' and chunk' if v > 1 else ''} on every stage)")
    if not entries:
        raise Wrong(f"{what} returned an empty schedule; it should have {expected} ops")
    ops = []
    sizes = (5,) if v > 1 else (4, 5)
    for i, e in enumerate(entries):
        if isinstance(e, np.ndarray):
            e = e.tolist()
        if not isinstance(e, (tuple, list)) or len(e) not in sizes:
            kind = f"a {type(e).__name__}" + (f" of length {len(e)}" if isinstance(e, (tuple, list)) else "")
            form = "(tick, stage, op, mb, chunk)" if v > 1 else "(tick, stage, op, mb)"
            raise Wrong(f"{what}, entry {i}: {kind} {_short(e)}; every op should be a tuple {form}")
        at = f"{what}, entry {i} {_short(tuple(e))}"
        tick = _whole(e[0], f"{at}: the tick")
        stage = _whole(e[1], f"{at}: the stage")
        op = e[2]
        if not isinstance(op, str) or op not in ("F", "B"):
            raise Wrong(f"{at}: the op should be \"F\" or \"B\", got {_short(op)}")
        mb = _whole(e[3], f"{at}: the micro-batch")
        chunk = _whole(e[4], f"{at}: the chunk") if len(e) == 5 else 0
        ops.append(pipeline.Op(tick, stage, op, mb, chunk))
    return ops


def _problems(ops, p, m, v, where) -> None:
    bad = pipeline.problems(ops, p, m, v)
    if bad:
        first = bad[0] if v > 1 else bad[0].replace(" (chunk 0)", "")
        more = f" (and {len(bad) - 1} more problem{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise Wrong(f"{where}: {first}{more}")


def _bubble_exact(ops, p) -> tuple[Fraction, int]:
    span = max(o.tick for o in ops) - min(o.tick for o in ops) + 1
    return 1 - Fraction(len(ops), p * span), span


def _draws(g, count, p_range, m_of_p, avoid=((4, 8),)):
    """``count`` different (p, m) pairs; p from p_range, m from m_of_p(p); never only the avoided ones."""
    pairs, tries = [], 0
    while len(pairs) < count and tries < 1000:
        tries += 1
        p = int(g.integers(p_range[0], p_range[1] + 1))
        ms = m_of_p(p)
        m = int(ms[int(g.integers(len(ms)))])
        if (p, m) not in pairs and (p, m) not in avoid:
            pairs.append((p, m))
    return pairs


def _uses_library(fn, names) -> bool:
    """Does ``fn`` call course_utils.pipeline's own measure instead of computing it?"""
    code, glob = getattr(fn, "__code__", None), getattr(fn, "__globals__", {})
    if fn in [getattr(pipeline, n) for n in names]:
        return True
    if code is None:
        return False
    used = set(code.co_names)
    for name in used:
        obj = glob.get(name)
        if obj is pipeline or (isinstance(obj, ModuleType) and obj.__name__ == "course_utils" and "pipeline" in used):
            return bool(used & set(names))
        if any(obj is getattr(pipeline, n) for n in names):
            return True
    return False


# --- q1 ----------------------------------------------------------------------------------------------

@exercise("q1 gpipe", hint=("GPipe: every stage runs all m forwards, then all m backwards; a forward can start "
                            "once the stage before has finished that micro-batch's forward, a backward once "
                            "the stage after has finished its backward — and one op per stage per tick",
                            "forward j reaches stage s after s ticks, so it can run at tick s + j; the last "
                            "stage's first backward can start once its last forward is done (tick m + p − 1), "
                            "and stage s runs each backward p − 1 − s ticks after the last stage runs it"))
def q1(gpipe):
    g = rng()
    pairs = _draws(g, 3, (2, 6), lambda p: range(2, 13))
    wide = int(g.integers(3, 7))
    pairs += [(int(g.integers(2, 7)), 1), (wide, int(g.integers(2, wide)))]  # also m = 1, and fewer than p
    for p, m in pairs:
        where = f"gpipe({p}, {m})"
        ops = read_schedule(call(gpipe, p, m, what=where), where, p, m)
        _problems(ops, p, m, 1, where)
        for s in range(p):
            last_f = max(o.tick for o in ops if o.stage == s and o.op == "F")
            first_b = min(o for o in ops if o.stage == s and o.op == "B")
            if first_b.tick < last_f:
                raise Wrong(f"{where}: stage {s} runs the backward of micro-batch {first_b.mb} at tick "
                            f"{first_b.tick}, before its last forward (tick {last_f}): GPipe runs all m "
                            "forwards on a stage first (that mix is 1F1B, exercise 4)")
        bubble, span = _bubble_exact(ops, p)
        formula = Fraction(p - 1, m + p - 1)
        if bubble != formula:
            raise Wrong(f"{where} is valid but lasts {span} ticks: its bubble is {float(bubble):.3f}, GPipe's is "
                        f"(p−1)/(m+p−1) = {float(formula):.3f} in 2(m+p−1) = {2 * (m + p - 1)} ticks — some "
                        "op starts later than it could")
        peak = reference_peak(ops, p)
        if peak[0] != m:  # follows from the checks above; kept as the stated outcome
            raise Wrong(f"{where}: stage 0 holds {peak[0]} micro-batches at once, GPipe holds all m = {m}")
    return "valid for hidden p and m; bubble = (p−1)/(m+p−1) exactly; stage 0 holds all m micro-batches at once"


# --- hidden schedules for q2 and q3 -------------------------------------------------------------------

def _sequential(p, m):
    """No pipelining: micro-batch j goes through every stage and back before j + 1 starts."""
    ops, t = [], 0
    for j in range(m):
        ops += [pipeline.Op(t + s, s, "F", j) for s in range(p)]
        ops += [pipeline.Op(t + p + (p - 1 - s), s, "B", j) for s in range(p)]
        t += 2 * p
    return ops


def hidden_schedules(g):
    """(description, p, schedule as plain tuples): GPipe, 1F1B and odd ones whose bubble is not the formula."""
    cases = []
    p, m = int(g.integers(2, 7)), int(g.integers(1, 13))
    cases.append((f"GPipe, p = {p}, m = {m}", p, reference_gpipe(p, m)))
    p = int(g.integers(2, 7))
    m = int(g.integers(p, 13))
    cases.append((f"1F1B, p = {p}, m = {m}", p, reference_1f1b(p, m)))
    p = int(g.integers(2, 6))
    m = int(g.integers(p, 11))
    slack = lambda: int(g.integers(0, 3)) if g.random() < 0.3 else 0  # noqa: E731
    orders = orders_1f1b(p, m) if g.random() < 0.5 else [[("F", j) for j in range(m)] + [("B", j) for j in range(m)]
                                                           for _ in range(p)]
    cases.append((f"valid schedule with random delays, p = {p}, m = {m}", p,
                  reference_place(orders, p, slack=slack)))
    p, m = int(g.integers(2, 6)), int(g.integers(2, 6))
    cases.append((f"sequential (no pipelining), p = {p}, m = {m}", p, _sequential(p, m)))
    p, m = int(g.integers(2, 7)), int(g.integers(2, 13))
    shift = int(g.choice([-5, -3, -1, 2, 5, 7, 11, 17]))  # never 0: a bubble that assumes tick 0 fails
    shuffled = [o._replace(tick=o.tick + shift) for o in reference_gpipe(p, m)]
    g.shuffle(shuffled)
    cases.append((f"GPipe, p = {p}, m = {m}, starting at tick {shift}, ops in random order", p, shuffled))
    p = int(g.integers(2, 6))
    m = int(g.integers(p, 11))
    ops = reference_1f1b(p, m)
    gone = ops[int(g.integers(len(ops)))]
    while gone.op != "B" or gone.stage == 0:
        gone = ops[int(g.integers(len(ops)))]
    cases.append((f"broken 1F1B, p = {p}, m = {m}, without the backward of micro-batch {gone.mb} on stage "
                  f"{gone.stage}", p, [o for o in ops if o != gone]))
    return [(d, p, [tuple(o[:4]) for o in sched]) for d, p, sched in cases]


# --- q2 ----------------------------------------------------------------------------------------------

@exercise("q2 bubble_fraction", hint=("the bubble is the idle share of p stages over the whole span of the "
                                      "schedule, read from the schedule itself — whatever schedule it is",
                                      "each op keeps its stage busy one tick; the span runs from the first "
                                      "tick to the end of the last op (last tick + 1); the bubble is one minus "
                                      "the number of ops over p times the span"))
def q2(bubble_fraction):
    if _uses_library(bubble_fraction, ("bubble_fraction", "busy_idle", "intervals")):
        raise Wrong("your function calls course_utils.pipeline's own measure: compute the bubble yourself")
    g = rng()
    for desc, p, sched in hidden_schedules(g) + hidden_schedules(g)[:3]:
        got = call(bubble_fraction, list(sched), p, what=f"bubble_fraction(schedule, {p})")
        arr = as_array(got, "bubble_fraction")
        if arr.shape != ():
            raise Wrong(f"bubble_fraction should return one number, got shape {arr.shape}")
        val = float(arr)
        if not math.isfinite(val):
            raise Wrong(f"bubble_fraction returned {val} for a {desc}")
        ref = reference_bubble(sched, p)
        if abs(val - ref) > 1e-9:
            raise Wrong(f"for a {desc}: your bubble is {val:.4g}, the schedule's is {ref:.4g}")
    return "equals 1 − busy / (p · span) on hidden GPipe, 1F1B, delayed, shifted and broken schedules"


# --- q3 ----------------------------------------------------------------------------------------------

@exercise("q3 peak_in_flight", hint=("a stage keeps a micro-batch's activations from the start of its forward "
                                     "until its backward on that stage is done; count, tick by tick, how many "
                                     "it holds, and keep the largest count of each stage",
                                     "on stage s at tick t, micro-batch j is in flight when F_j's tick ≤ t ≤ "
                                     "B_j's tick (both on stage s); return one maximum per stage, p numbers"))
def q3(peak_in_flight):
    if _uses_library(peak_in_flight, ("peak_in_flight", "in_flight", "intervals")):
        raise Wrong("your function calls course_utils.pipeline's own measure: count the micro-batches yourself")
    g = rng()
    cases = [c for c in hidden_schedules(g) if not c[0].startswith("broken")] + hidden_schedules(g)[:3]
    for desc, p, sched in cases:
        got = call(peak_in_flight, list(sched), p, what=f"peak_in_flight(schedule, {p})")
        arr = as_array(got, "peak_in_flight")
        if arr.shape != (p,):
            raise Wrong(f"peak_in_flight should return p = {p} numbers (one per stage), got shape {arr.shape} "
                        f"for a {desc}")
        if not np.all(np.isfinite(arr.astype(np.float64))):
            raise Wrong(f"peak_in_flight returned NaN or inf for a {desc}")
        ref = reference_peak(sched, p)
        if not np.array_equal(arr.astype(np.float64), np.array(ref, dtype=np.float64)):
            shown = [int(x) if float(x).is_integer() else float(x) for x in arr.tolist()]
            raise Wrong(f"for a {desc}: your peaks per stage are {shown}, the schedule's are {ref}")
    return "equals the counted peak per stage on hidden GPipe, 1F1B, delayed and shifted schedules"


# --- q4 ----------------------------------------------------------------------------------------------

@exercise("q4 one_f_one_b", hint=("1F1B: a stage starts a backward as soon as it can, so it never holds more "
                                  "than the micro-batches still travelling down and back up the pipeline; "
                                  "first a few forwards to fill the pipeline, then alternate, then finish the "
                                  "backwards — and give each op the first tick at which it may run",
                                  "stage s: p − 1 − s warm-up forwards, then m − (p − 1 − s) pairs (next "
                                  "forward, oldest backward), then the remaining backwards; place each op at "
                                  "the later of the tick its stage is free and the end of the ops it needs"))
def q4(one_f_one_b):
    g = rng()
    pairs = _draws(g, 4, (2, 6), lambda p: range(p, 13)) + _draws(g, 1, (2, 6), lambda p: [p])
    for p, m in pairs:
        where = f"one_f_one_b({p}, {m})"
        ops = read_schedule(call(one_f_one_b, p, m, what=where), where, p, m)
        _problems(ops, p, m, 1, where)
        bubble, span = _bubble_exact(ops, p)
        formula = Fraction(p - 1, m + p - 1)
        if bubble != formula:
            raise Wrong(f"{where} is valid but lasts {span} ticks: its bubble is {float(bubble):.3f}, 1F1B's is "
                        f"GPipe's (p−1)/(m+p−1) = {float(formula):.3f} in 2(m+p−1) = {2 * (m + p - 1)} ticks — "
                        "some op starts later than it could")
        peak = reference_peak(ops, p)
        for s in range(p):
            if peak[s] > min(m, p - s):
                raise Wrong(f"{where} is valid with the right bubble, but stage {s} holds {peak[s]} micro-batches "
                            f"at once; 1F1B holds at most p − s = {p - s}"
                            + (" (holding all m is GPipe's memory)" if peak[s] == m else ""))
    return "valid for hidden p and m ≥ p; bubble = (p−1)/(m+p−1); stage s holds at most p − s micro-batches"


# --- q5 ----------------------------------------------------------------------------------------------

@exercise("q5 interleaved", hint=("with v chunks per stage a micro-batch visits the p stages v times (chunk c of "
                                  "stage s is virtual stage c·p + s); run 1F1B over the p·v virtual stages, with "
                                  "micro-batches moving through the chunks in groups of p, and more warm-up "
                                  "forwards than plain 1F1B",
                                  "on every stage the forwards take micro-batches 0 … p − 1 through chunk 0, "
                                  "the same group through chunk 1, …, chunk v − 1, then the next group of p; the "
                                  "backwards take the same groups through the chunks in reverse; "
                                  "2(p − 1 − s) + (v − 1)·p warm-up forwards, alternate, then the remaining "
                                  "backwards; place every op as early as its stage and the ops it needs allow"))
def q5(interleaved):
    g = rng()
    draws, seen = [], set()
    while len(draws) < 4:
        p, v = int(g.integers(2, 5)), int(g.integers(2, 4))
        ks = [k for k in (1, 2, 3) if k * p <= 12]
        k = ks[-1] if not draws else ks[int(g.integers(len(ks)))]  # the first draw has the most micro-batches
        if (p, k * p, v) not in seen:
            seen.add((p, k * p, v))
            draws.append((p, k * p, v))
    for p, m, v in draws:
        where = f"interleaved({p}, {m}, {v})"
        ops = read_schedule(call(interleaved, p, m, v, what=where), where, p, m, v)
        _problems(ops, p, m, v, where)
        bubble, span = _bubble_exact(ops, p)
        formula = Fraction(p - 1, v * m + p - 1)
        if bubble != formula:
            raise Wrong(f"{where} is valid but lasts {span} ticks: its bubble is {float(bubble):.3f}, interleaved "
                        f"1F1B's is (p−1)/(v·m+p−1) = {float(formula):.3f} in 2(v·m+p−1) = "
                        f"{2 * (v * m + p - 1)} ticks — some op starts later than it could")
        peak = reference_peak(ops, p)
        for s in range(p):
            limit = interleaved_limit(p, m, v, s)
            if peak[s] > limit:
                raise Wrong(f"{where} is valid with the right bubble, but stage {s} holds {peak[s]} micro-batch "
                            f"chunks at once; interleaved 1F1B holds at most its warm-up forwards + 1 = {limit}"
                            + (" (holding all v·m is interleaved GPipe's memory)" if peak[s] == v * m else ""))
    return ("valid for hidden p, v and m (a multiple of p); bubble = (p−1)/(v·m+p−1); at most "
            "2(p−1−s)+(v−1)p+1 chunks in flight on stage s")


__all__ = ["q1", "q2", "q3", "q4", "q5", "NotDone"]
