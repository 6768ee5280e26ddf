"""Lab 09 checks: the solution passes (several random draws), the starter is "not done yet", and the named
shortcuts fail with one ✘ line — a schedule written for one (p, m), right counts with a broken
dependency, two ops in one tick, a missing or doubled backward, GPipe handed in as 1F1B, a bubble
formula that never reads the schedule — and no return value ever makes a check raise."""
import math
import sys
from fractions import Fraction

import numpy as np
import pytest

from course_utils import pipeline
from course_utils.labs import lab09
from course_utils.pipeline import Op
from tests.helpers import ROOT, check_line, failed, notebook_namespace, raisers

LAB = ROOT / "labs" / "lab09_pipeline_schedules"
SKIP = ("check.q", "plt.", "draw(", "print(err)")  # the check calls, the pictures, the printed error
SOL = notebook_namespace(LAB / "solution.ipynb", skip=SKIP)
DRAWS = 4  # hidden inputs differ on every call


def passes(capsys, q, fn):
    for _ in range(DRAWS):
        ok, line = check_line(capsys, q, fn)
        assert ok and line.startswith("✔"), line


# --- the solution and the starter --------------------------------------------------------------------

@pytest.mark.parametrize("q, name", [(lab09.q1, "gpipe"), (lab09.q2, "bubble_fraction"),
                                     (lab09.q3, "peak_in_flight"), (lab09.q4, "one_f_one_b"),
                                     (lab09.q5, "interleaved")])
def test_solution_passes(capsys, q, name):
    passes(capsys, q, SOL[name])


def test_the_checker_references_pass_too(capsys):  # wrapped: handed in as they are, they are refused
    passes(capsys, lab09.q1, lambda p, m: lab09.reference_gpipe(p, m))
    passes(capsys, lab09.q4, lambda p, m: lab09.reference_1f1b(p, m))
    passes(capsys, lab09.q5, lambda p, m, v: lab09.reference_interleaved(p, m, v))
    passes(capsys, lab09.q2, lambda s, p: lab09.reference_bubble(s, p))


def test_the_checker_references_handed_in_directly_are_refused(capsys):
    for q, ref in [(lab09.q1, lab09.reference_gpipe), (lab09.q2, lab09.reference_bubble)]:
        assert not q(ref)
        assert "course's own" in capsys.readouterr().out


def test_starter_is_not_done(capsys):
    ns = notebook_namespace(LAB / "starter.ipynb", skip=SKIP)
    for q, name in [(lab09.q1, "gpipe"), (lab09.q2, "bubble_fraction"), (lab09.q3, "peak_in_flight"),
                    (lab09.q4, "one_f_one_b"), (lab09.q5, "interleaved")]:
        failed(capsys, q(ns[name]), "not done yet")


def test_solution_formulas_hold_on_many_sizes():
    """The solution's schedules: valid, bubble and peaks as the lab says, for every small size."""
    for p in range(2, 7):
        for m in range(1, 13):
            g = SOL["gpipe"](p, m)
            assert not pipeline.problems(g, p, m)
            assert Fraction(SOL["bubble_fraction"](g, p)).limit_denominator(1000) == Fraction(p - 1, m + p - 1)
            assert SOL["peak_in_flight"](g, p) == [m] * p
            if m >= p:
                o = SOL["one_f_one_b"](p, m)
                assert not pipeline.problems(o, p, m) and SOL["peak_in_flight"](o, p) == [p - s for s in range(p)]
    for p in (2, 3, 4):
        for v in (2, 3):
            for m in (p, 2 * p, 3 * p):
                sched = SOL["interleaved"](p, m, v)
                assert not pipeline.problems(sched, p, m, v)
                assert math.isclose(SOL["bubble_fraction"](sched, p), (p - 1) / (v * m + p - 1))
                assert SOL["peak_in_flight"](sched, p) == [lab09.interleaved_limit(p, m, v, s) for s in range(p)]


# --- shortcuts that must fail: schedules ---------------------------------------------------------------

FIXED = lab09.reference_gpipe(4, 8)


def hard_coded(p, m):  # written once for p = 4, m = 8
    return list(FIXED)


def hard_coded_1f1b(p, m):
    return lab09.reference_1f1b(4, 8)


def gpipe_early_backward(p, m):  # right counts, but stage 0 starts its backwards a tick too soon
    return [o._replace(tick=o.tick - 1) if o.op == "B" and o.stage == 0 else o for o in lab09.reference_gpipe(p, m)]


def gpipe_forward_too_soon(p, m):  # every forward in the same tick on all stages
    return [o._replace(tick=o.mb) if o.op == "F" else o for o in lab09.reference_gpipe(p, m)]


def gpipe_two_in_a_tick(p, m):  # the last forward squeezed into the tick of the one before
    return [o._replace(tick=o.tick - 1) if o.op == "F" and o.mb == m - 1 and m > 1 else o
            for o in lab09.reference_gpipe(p, m)]


def gpipe_missing_backward(p, m):
    return [o for o in lab09.reference_gpipe(p, m) if not (o.op == "B" and o.mb == 0 and o.stage == p - 1)]


def gpipe_duplicate_backward(p, m):
    sched = lab09.reference_gpipe(p, m)
    return sched + [sched[-1]._replace(tick=sched[-1].tick + 5)]


def gpipe_forward_as_backward(p, m):  # the right number of ops, but no backward on the last stage
    return [o._replace(op="F") if o.op == "B" and o.stage == p - 1 else o for o in lab09.reference_gpipe(p, m)]


def gpipe_slow(p, m):  # valid, one tick of idle added before the backwards
    return [o._replace(tick=o.tick + 1) if o.op == "B" else o for o in lab09.reference_gpipe(p, m)]


def sequential(p, m):  # valid, no pipelining at all
    return lab09._sequential(p, m)


@pytest.mark.parametrize("wrong, message", [
    (hard_coded, ("out of range", "appears")),
    (gpipe_early_backward, "before"),
    (gpipe_forward_too_soon, "before"),
    (gpipe_two_in_a_tick, "two ops at once"),
    (gpipe_missing_backward, "appears 0 times"),
    (gpipe_duplicate_backward, "appears 2 times"),
    (gpipe_forward_as_backward, "appears"),
    (gpipe_slow, "later than it could"),
    (sequential, ("later than it could", "GPipe runs all m forwards")),
    (lambda p, m: lab09.reference_1f1b(p, m), "GPipe runs all m forwards"),                  # 1F1B handed in as GPipe
])
def test_q1_shortcuts_fail(capsys, wrong, message):
    for _ in range(DRAWS):
        out = failed(capsys, lab09.q1(wrong))
        messages = message if isinstance(message, tuple) else (message,)
        assert any(m in out for m in messages), out


def long_warm_up(p, m):  # 1F1B with one warm-up forward too many on every stage
    orders = []
    for s in range(p):
        warm = min(p - s, m)
        order = [("F", j) for j in range(warm)]
        for j in range(m - warm):
            order += [("F", warm + j), ("B", j)]
        orders.append(order + [("B", j) for j in range(m - warm, m)])
    return lab09.reference_place(orders, p)


@pytest.mark.parametrize("wrong, message", [
    (hard_coded_1f1b, ("out of range", "appears")),
    (lambda p, m: lab09.reference_gpipe(p, m), "holding all m is GPipe's memory"),                # GPipe handed in as 1F1B: memory too high
    (long_warm_up, ("at once", "later than it could")),
    (gpipe_early_backward, "before"),
    (gpipe_two_in_a_tick, "two ops at once"),
    (gpipe_missing_backward, "appears 0 times"),
    (lambda p, m: [o._replace(tick=o.tick + (o.op == "B")) for o in lab09.reference_1f1b(p, m)],
     ("later than it could", "two ops at once", "before")),
])
def test_q4_shortcuts_fail(capsys, wrong, message):
    for _ in range(DRAWS):
        out = failed(capsys, lab09.q4(wrong))
        messages = message if isinstance(message, tuple) else (message,)
        assert any(m in out for m in messages), out


def interleaved_gpipe(p, m, v):  # all forwards through all chunks, then all backwards: valid, bubble right, memory v·m
    orders = lab09.orders_interleaved(p, m, v)
    return lab09.reference_place([[o for o in order if o[0] == "F"] + [o for o in order if o[0] == "B"]
                                  for order in orders], p, v)


@pytest.mark.parametrize("wrong, message", [
    (lambda p, m, v: lab09.reference_1f1b(p, m), ("appears 0 times", "(tick, stage, op, mb, chunk)")),
    (lambda p, m, v: [tuple(o[:4]) for o in lab09.reference_interleaved(p, m, v)], "(tick, stage, op, mb, chunk)"),
    (lambda p, m, v: [o._replace(chunk=v - 1 - o.chunk) for o in lab09.reference_interleaved(p, m, v)], "before"),
    (lambda p, m, v: lab09.reference_interleaved(4, 8, 2), ("out of range", "appears")),
    (interleaved_gpipe, "holding all v·m is interleaved GPipe's memory"),
    (lambda p, m, v: [Op(*o[:4], 0) for o in lab09.reference_1f1b(p, m)], "appears 0 times"),  # plain 1F1B
])
def test_q5_shortcuts_fail(capsys, wrong, message):
    for _ in range(DRAWS):
        out = failed(capsys, lab09.q5(wrong))
        messages = message if isinstance(message, tuple) else (message,)
        assert any(m in out for m in messages), out


def test_q5_interleaved_gpipe_has_the_right_bubble_so_only_memory_catches_it():
    sched = interleaved_gpipe(2, 4, 2)
    assert not pipeline.problems(sched, 2, 4, 2)
    assert math.isclose(lab09.reference_bubble(sched, 2), 1 / 9)
    assert lab09.reference_peak(sched, 2)[0] == 8 > lab09.interleaved_limit(2, 4, 2, 0)


# --- shortcuts that must fail: measures -----------------------------------------------------------------

def formula_bubble(schedule, p):  # reads only m from the schedule, then returns GPipe's formula
    m = max(o[3] for o in schedule) + 1
    return (p - 1) / (m + p - 1)


def bubble_from_last_tick(schedule, p):  # assumes the schedule starts at tick 0
    return 1 - len(schedule) / (p * (max(o[0] for o in schedule) + 1))


def bubble_without_end(schedule, p):  # span = last tick - first tick: forgets the last op's tick
    ticks = [o[0] for o in schedule]
    return 1 - len(schedule) / (p * (max(ticks) - min(ticks)))


def bubble_count_2pm(schedule, p):  # counts 2·p·m ops instead of the ops that are there
    ticks = [o[0] for o in schedule]
    m = len({o[3] for o in schedule})
    return 1 - 2 * p * m / (p * (max(ticks) + 1 - min(ticks)))


def test_formula_bubble_is_right_on_gpipe_only():
    """The negative control is a real shortcut: right on GPipe, wrong on the odd schedules q2 uses."""
    assert math.isclose(formula_bubble(lab09.reference_gpipe(3, 5), 3), 2 / 7)
    for desc, p, sched in lab09.hidden_schedules(np.random.default_rng(1)):
        if desc.startswith(("sequential", "broken")):
            assert not math.isclose(formula_bubble(sched, p), lab09.reference_bubble(sched, p)), desc


@pytest.mark.parametrize("wrong, message", [
    (formula_bubble, "the schedule's is"),
    (bubble_from_last_tick, "the schedule's is"),
    (bubble_without_end, ("the schedule's is", "ZeroDivisionError")),
    (bubble_count_2pm, "the schedule's is"),
    (pipeline.bubble_fraction, "course_utils.pipeline"),
    (lambda schedule, p: pipeline.bubble_fraction(schedule, p), "course_utils.pipeline"),
    (lambda schedule, p: [0.5, 0.5], "one number"),
    (lambda schedule, p: "0.3", "expected numbers"),
    (lambda schedule, p: float("nan"), "nan"),
    (lambda schedule, p: None, "None"),
    (lambda schedule, p: schedule[0].tick, "AttributeError"),  # the check passes plain tuples
])
def test_q2_shortcuts_fail(capsys, wrong, message):
    for _ in range(DRAWS):
        out = failed(capsys, lab09.q2(wrong))
        messages = message if isinstance(message, tuple) else (message,)
        assert any(m in out for m in messages), out


def peaks_off_by_one(schedule, p):  # keeps a micro-batch one tick past its backward
    f = {(o[1], o[3]): o[0] for o in schedule if o[2] == "F"}
    b = {(o[1], o[3]): o[0] for o in schedule if o[2] == "B"}
    ticks = range(min(f.values()), max(b.values()) + 2)
    return [max(sum(f[k] <= t <= b[k] + 1 for k in f if k[0] == s) for t in ticks) for s in range(p)]


def peaks_all_m(schedule, p):  # GPipe's answer for any schedule
    return [len({o[3] for o in schedule})] * p


def peaks_warmup(schedule, p):  # 1F1B's formula, whatever the schedule
    m = len({o[3] for o in schedule})
    return [min(m, p - s) for s in range(p)]


@pytest.mark.parametrize("wrong, message", [
    (peaks_all_m, "the schedule's are"),
    (peaks_warmup, "the schedule's are"),
    (peaks_off_by_one, "the schedule's are"),
    (pipeline.peak_in_flight, "course_utils.pipeline"),
    (lambda schedule, p: max(SOL["peak_in_flight"](schedule, p)), "shape"),
    (lambda schedule, p: SOL["peak_in_flight"](schedule, p)[:-1], "shape"),
    (lambda schedule, p: [float("nan")] * p, "NaN"),
    (lambda schedule, p: [str(x) for x in SOL["peak_in_flight"](schedule, p)], "expected numbers"),
    (lambda schedule, p: None, "None"),
])
def test_q3_shortcuts_fail(capsys, wrong, message):
    for _ in range(DRAWS):
        out = failed(capsys, lab09.q3(wrong))
        messages = message if isinstance(message, tuple) else (message,)
        assert any(m in out for m in messages), out


def test_q3_off_by_one_is_a_real_mistake():
    sched = lab09.reference_1f1b(4, 8)
    assert peaks_off_by_one(sched, 4) != SOL["peak_in_flight"](sched, 4)


# --- odd return values never raise ------------------------------------------------------------------------

class Weird:
    def __len__(self):
        raise RuntimeError("no length")

    def __iter__(self):
        raise RuntimeError("no iteration")


def endless(p, m):
    while True:
        yield (0, 0, "F", 0)


ODD_SCHEDULES = [
    None, 42, 3.5, float("nan"), "F0 F1 B0 B1", b"bytes", {"tick": 0}, {1, 2}, [], [None], [1, 2, 3],
    [(0, 0, "F")], [(0, 0, "F", 0, 0, 0)], [(float("nan"), 0, "F", 0)], [(float("inf"), 0, "F", 0)],
    [(0.5, 0, "F", 0)], [("0", 0, "F", 0)], [(True, 0, "F", 0)], [(0, 0, "X", 0)], [(0, 0, 1, 0)],
    [(0, 0, "F", -1)], [(10**30, 0, "F", 0)], [(0, 99, "F", 0)], [(0, 0.0, "F", 0.0)], [(0, 0, "f", 0)],
    [(0, 0, "F", 0)] * (lab09.MAX_OPS + 5), np.zeros((4, 4)), np.array([["0", "0", "F", "0"]]), Weird(),
    [[0, 0, "F", 0]], (x for x in [(0, 0, "F", 0)]), endless(2, 2), [Op(0, 0, "F", 0, 7)], object(),
    [np.array([0, 0, 0, 0])], [(np.int64(0), np.int64(0), np.str_("F"), np.int64(0))],
]


@pytest.mark.parametrize("q", [lab09.q1, lab09.q4])
@pytest.mark.parametrize("value", ODD_SCHEDULES, ids=range(len(ODD_SCHEDULES)))
def test_odd_schedules_give_one_line(capsys, q, value):
    ok, line = check_line(capsys, q, lambda p, m: value)
    assert not ok and line.startswith("✘") and "hint:" in line, line


@pytest.mark.parametrize("value", ODD_SCHEDULES[:12] + ODD_SCHEDULES[-6:], ids=range(18))
def test_odd_interleaved_give_one_line(capsys, value):
    ok, line = check_line(capsys, lab09.q5, lambda p, m, v: value)
    assert not ok and line.startswith("✘"), line


ODD_NUMBERS = [None, "0.3", [0.1, 0.2], {"b": 1}, float("inf"), -float("nan"), 1j, object(), np.array([[0.2]]),
               (0.1,), True, Weird()]


@pytest.mark.parametrize("value", ODD_NUMBERS, ids=range(len(ODD_NUMBERS)))
@pytest.mark.parametrize("q", [lab09.q2, lab09.q3])
def test_odd_measures_give_one_line(capsys, q, value):
    ok, line = check_line(capsys, q, lambda schedule, p: value)
    assert not ok and line.startswith("✘"), line


@pytest.mark.parametrize("q", [lab09.q1, lab09.q2, lab09.q3, lab09.q4, lab09.q5])
@pytest.mark.parametrize("fn", [None, 3, "gpipe", lambda: 0, lambda *a: 1 / 0, lambda *a: sys.exit(1)] + raisers())
def test_not_a_function_or_raising(capsys, q, fn):
    ok, line = check_line(capsys, q, fn)
    assert not ok and line.startswith("✘") and "could not be checked" not in line, line


def test_hints_start_conceptual_then_concrete(capsys):
    lab09.q1.wrong_attempts = 0
    first = failed(capsys, lab09.q1(hard_coded))
    second = failed(capsys, lab09.q1(hard_coded))
    assert first.split("hint:")[1] != second.split("hint:")[1]
    assert "tick s + j" in second and "tick s + j" not in first
    lab09.q1.wrong_attempts = 0


def test_starter_stores_no_answer():
    import json
    nb = json.loads((LAB / "starter.ipynb").read_text(encoding="utf-8"))
    outputs = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                      for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert "✔" not in outputs and "not done yet" in outputs
