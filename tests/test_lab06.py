"""Lab 06 checks: the solution passes (several random draws), the starter is "not done yet", and the named
shortcuts fail with one ✘ line — a hard-coded placement, first fit or worst fit handed in as best fit, an
over-capacity placement, best fit handed in as the exact optimum, a policy that ignores the state (the
first job, a random one, FCFS as SJF), SJF by total size handed in as SRPT — and no return value ever
makes a check raise."""
import sys

import numpy as np
import pytest

from course_utils import sched
from course_utils.labs import lab06
from course_utils.sched import GPU, Job
from tests.helpers import ROOT, check_line, failed, notebook_namespace, raisers

LAB = ROOT / "labs" / "lab06_gpu_scheduling"
SKIP = ("check.q", "plt.", "tqdm(", "print(")  # the check calls, the pictures, the demos that print
SOL = notebook_namespace(LAB / "solution.ipynb", skip=SKIP)
DRAWS = 3  # hidden inputs differ on every call
QS = [(lab06.q1, "fits"), (lab06.q2, "best_fit"), (lab06.q3, "min_gpus"), (lab06.q4, "sjf"), (lab06.q5, "srpt")]


def passes(capsys, q, fn):
    for _ in range(DRAWS):
        ok, line = check_line(capsys, q, fn)
        assert ok and line.startswith("✔"), line


def fails(capsys, q, fn, *messages):
    for _ in range(DRAWS):
        out = failed(capsys, q(fn))
        assert any(m in out for m in messages), out


# --- the solution and the starter --------------------------------------------------------------------

@pytest.mark.parametrize("q, name", QS)
def test_solution_passes(capsys, q, name):
    passes(capsys, q, SOL[name])


def test_the_checker_references_pass_too(capsys):  # wrapped: handed in as they are, they are refused
    passes(capsys, lab06.q1, lambda job, free: lab06.reference_fits(job, free))
    passes(capsys, lab06.q2, lambda jobs, gpus: lab06.reference_place(jobs, gpus))
    passes(capsys, lab06.q3, lambda jobs, gpu, n: lab06.exact_min_gpus(jobs, gpu, n)[0])
    passes(capsys, lab06.q4, lambda q, now, state: sched.sjf(q, now, state))
    passes(capsys, lab06.q5, lambda q, now, state: sched.srpt(q, now, state))


def test_course_functions_handed_in_are_refused(capsys):
    for q, ref in [(lab06.q1, lab06.reference_fits), (lab06.q4, sched.sjf), (lab06.q5, sched.srpt)]:
        assert not q(ref)
        assert "course's own" in capsys.readouterr().out


def test_starter_is_not_done(capsys):
    ns = notebook_namespace(LAB / "starter.ipynb", skip=SKIP)
    for q, name in QS:
        failed(capsys, q(ns[name]), "not done yet")


def test_starter_stores_no_answer():
    import json
    nb = json.loads((LAB / "starter.ipynb").read_text(encoding="utf-8"))
    outputs = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                      for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    assert "✔" not in outputs and "not done yet" in outputs


# --- the hidden instances are what the checks say -----------------------------------------------------

def test_perfect_packings_have_the_stated_optimum_and_best_fit_misses_one():
    g = np.random.default_rng(0)
    for _ in range(3):
        cases = lab06.min_gpu_instances(g)
        assert any(lab06.gpus_used(lab06.reference_place(lab06.decreasing(j), [lab06.BIG] * len(j))) > k
                   for j, k, _ in cases)
        for jobs, k, n_slots in cases:
            assign, optimum = lab06.exact_min_gpus(jobs, lab06.BIG, n_slots)
            assert optimum == k == lab06.gpus_used(assign)
            assert lab06.gpus_used(SOL["min_gpus"](jobs, lab06.BIG, n_slots)) == k


def test_placement_instances_separate_the_rules():
    cases = lab06.placement_instances(np.random.default_rng(1))
    for rule in ("first", "worst"):
        assert any(not np.array_equal(lab06.reference_place(j, gp), lab06.reference_place(j, gp, rule))
                   for j, gp in cases)
    assert any((lab06.reference_place(j, gp) == -1).any() for j, gp in cases)  # a job that fits nowhere


def test_solution_best_fit_is_the_reference_and_feasible():
    g = np.random.default_rng(2)
    for _ in range(20):
        gpus = [lab06.GPU_TYPES[t] for t in g.integers(0, 3, 5)]
        jobs = lab06._jobs(g, 14)
        a = np.array(SOL["best_fit"](jobs, gpus))
        assert np.array_equal(a, lab06.reference_place(jobs, gpus))
        assert sched.feasible(jobs, gpus, a)


def test_policies_rank_srpt_sjf_fcfs():
    for jobs, fc, sj, sr in lab06._stream_cases(np.random.default_rng(3), True):
        assert sr < sj < fc


# --- shortcuts that must fail: placement -----------------------------------------------------------------

FIXED_JOBS = lab06._jobs(np.random.default_rng(4), 12)
FIXED = [int(a) for a in lab06.reference_place(FIXED_JOBS, [lab06.BIG] * 4)]


def first_fit(jobs, gpus):
    return lab06.reference_place(jobs, gpus, "first")


def worst_fit(jobs, gpus):
    return lab06.reference_place(jobs, gpus, "worst")


def best_fit_sorted(jobs, gpus):  # sorts the jobs itself: right rule, wrong order
    order = lab06.decreasing(list(reversed(jobs)))
    a = lab06.reference_place(order, gpus)
    out = [-1] * len(jobs)
    for job, g in zip(order, a):
        out[jobs.index(job)] = int(g)
    return out


def memory_only(jobs, gpus):  # best fit that forgets compute: goes over capacity
    free = [g.mem for g in gpus]
    out = []
    for job in jobs:
        ok = [k for k in range(len(gpus)) if job.mem <= free[k]]
        k = min(ok, key=lambda k: free[k] - job.mem) if ok else -1
        if k >= 0:
            free[k] -= job.mem
        out.append(k)
    return out


def all_on_gpu0(jobs, gpus):
    return [0] * len(jobs)


def force_everything(jobs, gpus):  # a job that fits nowhere forced onto the largest GPU
    a = lab06.reference_place(jobs, gpus)
    return [0 if x == -1 else int(x) for x in a]


def never_place(jobs, gpus):
    return [-1] * len(jobs)


def test_first_and_worst_fit_differ_from_best_fit_on_the_hidden_instances(capsys):
    fails(capsys, lab06.q2, first_fit, "first fit", "tightest")
    fails(capsys, lab06.q2, worst_fit, "worst fit", "tightest")


@pytest.mark.parametrize("wrong, messages", [
    (lambda jobs, gpus: FIXED, ("entries for", "GPU index is", "over capacity", "tightest", "unplaced")),
    (best_fit_sorted, ("tightest", "over capacity", "unplaced")),
    (memory_only, ("over capacity in compute", "memory alone", "first fit")),
    (all_on_gpu0, ("over capacity", "first fit", "tightest")),
    (force_everything, ("over capacity",)),
    (never_place, ("reported unplaced",)),
])
def test_q2_shortcuts_fail(capsys, wrong, messages):
    fails(capsys, lab06.q2, wrong, *messages)


def best_fit_as_min(jobs, gpu, n_slots):  # the heuristic handed in as the exact optimum
    order = lab06.decreasing(jobs)
    a = lab06.reference_place(order, [gpu] * n_slots)
    out = [-1] * len(jobs)
    for job, g in zip(order, a):
        out[jobs.index(job)] = int(g)
    return out


def one_job_per_gpu(jobs, gpu, n_slots):
    return [-1] * len(jobs)


def min_over_capacity(jobs, gpu, n_slots):  # k slots, jobs dealt round-robin: the right count, over capacity
    k = int(np.ceil(sum(j.mem for j in jobs if j.mem <= gpu.mem) / gpu.mem))
    return [i % k if j.mem <= gpu.mem else -1 for i, j in enumerate(jobs)]


@pytest.mark.parametrize("wrong, messages", [
    (best_fit_as_min, ("suffice",)),
    (one_job_per_gpu, ("unplaced",)),
    (min_over_capacity, ("over the GPU",)),
    (lambda jobs, gpu, n: [0 if j.mem <= gpu.mem else -1 for j in jobs], ("over the GPU",)),
    (lambda jobs, gpu, n: [0] * len(jobs), ("larger than a GPU", "over the GPU")),
    (lambda jobs, gpu, n: lab06.exact_min_gpus(jobs, gpu, n)[0][:-1], ("entries for",)),
])
def test_q3_shortcuts_fail(capsys, wrong, messages):
    fails(capsys, lab06.q3, wrong, *messages)


# --- shortcuts that must fail: fits and policies -----------------------------------------------------------

@pytest.mark.parametrize("wrong, messages", [
    (lambda job, free: job.mem <= free[0], ("compute is short",)),
    (lambda job, free: job.compute <= free[1], ("memory is short",)),
    (lambda job, free: job.mem < free[0] and job.compute < free[1], ("exactly full",)),
    (lambda job, free: True, ("short",)),
    (lambda job, free: int(job.mem <= free[0] and job.compute <= free[1]), ("True or False",)),
])
def test_q1_shortcuts_fail(capsys, wrong, messages):
    fails(capsys, lab06.q1, wrong, *messages)


def first(queue, now, state):
    return queue[0]


def random_job(queue, now, state):
    return queue[np.random.default_rng().integers(len(queue))]


def longest(queue, now, state):
    return max(queue, key=lambda j: j.duration)


def sjf_total(queue, now, state):  # non-pre-emptive SJF handed in as SRPT: by total size
    return min(queue, key=lambda j: (j.duration, j.arrival))


@pytest.mark.parametrize("wrong, messages", [
    (first, ("the same as FCFS",)),
    (lambda q, now, state: sched.fcfs(q, now, state), ("the same as FCFS",)),
    (random_job, ("reference's",)),
    (longest, ("reference's",)),
    (lambda q, now, state: min(q, key=lambda j: j.gpus), ("reference's",)),                 # fewest GPUs first
])
def test_q4_state_blind_policies_fail(capsys, wrong, messages):
    fails(capsys, lab06.q4, wrong, *messages)


@pytest.mark.parametrize("wrong, messages", [
    (sjf_total, ("choose by remaining work",)),
    (first, ("reference's",)),
    (random_job, ("reference's",)),
    (lambda q, now, state: min(q, key=lambda j: j.arrival - state["remaining"][j.id]), ("reference's",)),
])
def test_q5_shortcuts_fail(capsys, wrong, messages):
    fails(capsys, lab06.q5, wrong, *messages)


# --- odd return values never raise ------------------------------------------------------------------------

class Weird:
    def __len__(self):
        raise RuntimeError("no length")

    def __iter__(self):
        raise RuntimeError("no iteration")


ODD_ASSIGN = [None, 3, 2.5, float("nan"), "0 1 2", b"x", {0: 1}, {1, 2}, [], [None], [[0]], np.zeros((2, 2)),
              np.array(["0"]), Weird(), object(), [float("nan")] * 40, [0.5] * 40, [True] * 40, [99] * 40,
              [-2] * 40, ["0"] * 40, [10**30] * 40, (x for x in [0, 0])]


@pytest.mark.parametrize("value", ODD_ASSIGN, ids=range(len(ODD_ASSIGN)))
def test_odd_placements_give_one_line(capsys, value):
    for q, fn in [(lab06.q2, lambda jobs, gpus: value), (lab06.q3, lambda jobs, gpu, n: value)]:
        ok, line = check_line(capsys, q, fn)
        assert not ok and line.startswith("✘") and "hint:" in line, line


ODD_CHOICES = [None, 0, -1, 10**9, 2.5, float("nan"), "job", [], Job(10**6), object(), Weird(),
               Job(0, duration=1.0), True]


@pytest.mark.parametrize("value", ODD_CHOICES, ids=range(len(ODD_CHOICES)))
@pytest.mark.parametrize("q", [lab06.q1, lab06.q4, lab06.q5])
def test_odd_choices_give_one_line(capsys, q, value):
    ok, line = check_line(capsys, q, lambda *args: value)
    assert not ok and line.startswith("✘"), line


def test_policy_mutating_the_state_gives_one_line(capsys):
    def greedy_clear(queue, now, state):
        state["remaining"].clear()
        return queue[0]
    ok, line = check_line(capsys, lab06.q5, greedy_clear)
    assert not ok and line.startswith("✘"), line


@pytest.mark.parametrize("q", [q for q, _ in QS])
@pytest.mark.parametrize("fn", [None, 3, "best_fit", lambda: 0, lambda *a: 1 / 0, lambda *a: sys.exit(1),
                                lambda *a: a[0].nonexistent] + raisers())
def test_not_a_function_or_raising(capsys, q, fn):
    ok, line = check_line(capsys, q, fn)
    assert not ok and line.startswith("✘") and "could not be checked" not in line, line


def test_hints_start_conceptual_then_concrete(capsys):
    lab06.q2.wrong_attempts = 0
    first_line = failed(capsys, lab06.q2(worst_fit))
    second_line = failed(capsys, lab06.q2(worst_fit))
    assert first_line.split("hint:")[1] != second_line.split("hint:")[1]
    assert "smallest spare" in second_line and "smallest spare" not in first_line
    lab06.q2.wrong_attempts = 0


def test_gpu_objects_compare_by_value():  # why the lab keeps GPUs by position, not as dict keys
    assert GPU("A100-80GB", 80, 100) == GPU("A100-80GB", 80, 100)
    assert len({GPU("A100-80GB", 80, 100): 1, GPU("A100-80GB", 80, 100): 2}) == 1


@pytest.mark.parametrize("seed", range(200))
def test_every_draw_of_q2_catches_sorting_the_jobs(seed):
    """q2's hidden inputs are fresh on every run, so the shortcut must fail on every draw, not most."""
    g = np.random.default_rng(seed)
    assert any(not np.array_equal(best_fit_sorted(j, gp), lab06.reference_place(j, gp))
               for j, gp in lab06.placement_instances(g))
