"""Checks for lab 06: GPU scheduling — greedy vs optimal placement, SJF and SRPT queues.

    from course_utils.labs import lab06 as check
    check.q1(fits)         # fits(job, free) -> bool: job.mem <= free[0] and job.compute <= free[1]
    check.q2(best_fit)     # best_fit(jobs, gpus) -> [GPU index or -1 per job], jobs placed in list order
    check.q3(min_gpus)     # min_gpus(jobs, gpu, n_slots) -> [slot or -1 per job] on the fewest GPUs (exact)
    check.q4(sjf)          # sjf(queue, now, state) -> a job of queue (course_utils.sched's policy interface)
    check.q5(srpt)         # srpt(queue, now, state) -> a job of queue, run with pre-emption

Jobs are ``course_utils.sched.Job`` (``mem`` GB, ``compute`` in % of one GPU's compute, whole numbers) and
GPUs ``course_utils.sched.GPU(name, mem, compute)``. **Best fit** puts each job, in the order given, on the
GPU where it fits (memory and compute) and leaves the least spare capacity, spare = (mem left / GPU mem) +
(compute left / GPU compute) after placing it; ties go to any of the tied GPUs. q2 replays the student's
assignment job by job on hidden instances (heterogeneous GPUs, a job that fits nowhere, always instances
where first fit and worst fit choose differently), so over-capacity, first fit, worst fit, a sorted order
or a hard-coded answer fail at the first job where they differ. The objective of q3 is the **number of
GPUs used** to place every job that fits a GPU at all; its hidden instances are perfect packings (k GPUs
cut into random pieces, so k is the exact optimum: the pieces fill exactly k GPUs' memory) on which best
fit needs more, and ``exact_min_gpus`` (scipy.optimize.milp) confirms the optimum in the tests.
q4 and q5 run the student's choice function inside ``course_utils.sched.simulate`` on hidden job streams
and compare the mean completion time with the references' (to 1e-9), and SRPT ≤ SJF < FCFS.
"""
from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np

from course_utils import sched
from course_utils.labs import NotDone, Wrong, call, exercise, rng  # noqa: F401  (NotDone: re-exported)
from course_utils.sched import GPU, Job

GPU_TYPES = [GPU("A100-80GB", 80, 100), GPU("A100-40GB", 40, 100), GPU("L4", 24, 30)]
BIG = GPU("A100-80GB", 80, 100)


# --- references ------------------------------------------------------------------------------------

ANSWER_HELPERS = ("spare_after", "exact_min_gpus")  # exercise answers besides reference_* (see labs.call)


def reference_fits(job, free) -> bool:
    return job.mem <= free[0] and job.compute <= free[1]


def spare_after(job, free, gpu) -> float:
    """Share of the GPU's memory plus share of its compute left once the job is on it."""
    return (free[0] - job.mem) / gpu.mem + (free[1] - job.compute) / gpu.compute


def reference_place(jobs, gpus, rule: str = "best") -> np.ndarray:
    """Jobs in list order, each onto a GPU where it fits: "best" (least spare left), "first" (lowest
    index), "worst" (most spare left); -1 where none fits. Ties: the lowest index."""
    free = [[g.mem, g.compute] for g in gpus]
    assign = np.full(len(jobs), -1)
    for i, job in enumerate(jobs):
        ok = [g for g in range(len(gpus)) if reference_fits(job, free[g])]
        if not ok:
            continue
        spare = [spare_after(job, free[g], gpus[g]) for g in ok]
        g = ok[0] if rule == "first" else ok[int(np.argmin(spare) if rule == "best" else np.argmax(spare))]
        assign[i] = g
        free[g][0] -= job.mem
        free[g][1] -= job.compute
    return assign


def size(job, gpu=BIG) -> float:
    return job.mem / gpu.mem + job.compute / gpu.compute


def decreasing(jobs):
    """Largest first (memory share + compute share of an A100-80GB): best fit *decreasing*'s order."""
    return sorted(jobs, key=lambda j: (-size(j), j.id))


def gpus_used(assign) -> int:
    return len({int(a) for a in assign if a >= 0})


def exact_min_gpus(jobs, gpu, n_slots):
    """The fewest identical GPUs that hold every job that fits one, by scipy.optimize.milp (HiGHS):
    binary x[i, g] (job i in slot g) and y[g] (slot g used); minimise sum y; each placeable job in one
    slot; memory and compute of slot g at most y[g] times the GPU's. Returns (assign, optimum)."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    idx = [i for i, j in enumerate(jobs) if j.mem <= gpu.mem and j.compute <= gpu.compute]
    n, m = len(idx), n_slots
    nv = n * m + m
    rows, lo, hi = [], [], []
    for a in range(n):
        r = np.zeros(nv)
        r[a * m:(a + 1) * m] = 1
        rows.append(r), lo.append(1), hi.append(1)
    for g in range(m):
        for field, cap in (("mem", gpu.mem), ("compute", gpu.compute)):
            r = np.zeros(nv)
            r[g:n * m:m] = [getattr(jobs[i], field) for i in idx]
            r[n * m + g] = -cap
            rows.append(r), lo.append(-np.inf), hi.append(0)
    for g in range(m - 1):  # symmetry: use slots in order
        r = np.zeros(nv)
        r[n * m + g], r[n * m + g + 1] = -1, 1
        rows.append(r), lo.append(-np.inf), hi.append(0)
    c = np.r_[np.zeros(n * m), np.ones(m)]
    res = milp(c, constraints=LinearConstraint(np.array(rows), lo, hi), integrality=np.ones(nv),
               bounds=Bounds(0, 1))
    assign = np.full(len(jobs), -1)
    x = res.x[:n * m].reshape(n, m).round()
    for a, i in enumerate(idx):
        assign[i] = int(x[a].argmax())
    return assign, int(round(res.fun))


# --- reading a student's answer ----------------------------------------------------------------------

def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(v, what) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating)):
        raise Wrong(f"{what} should be a whole number, got {type(v).__name__} {_short(v)}")
    if isinstance(v, (float, np.floating)) and not (math.isfinite(v) and v == int(v)):
        raise Wrong(f"{what} should be a whole number, got {_short(v)}")
    return int(v)


def read_assign(value, n: int, m: int, what: str) -> list[int]:
    """One whole number in -1..m-1 per job, or Wrong saying what is off."""
    if value is None:
        raise Wrong(f"{what} returned None — did you forget `return`?")
    if hasattr(value, "detach") or (hasattr(value, "numpy") and callable(value.numpy)):
        try:
            value = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value.numpy())
        except Exception:
            raise Wrong(f"{what} returned a {type(value).__name__}, expected a list of GPU indices") from None
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise Wrong(f"{what} returned an array of shape {value.shape}, expected one GPU index per job ({n})")
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise Wrong(f"{what} should return a list of GPU indices (one per job), got a {type(value).__name__}")
    if len(value) != n:
        raise Wrong(f"{what} returned {len(value)} entries for {n} jobs: one GPU index (or -1) per job")
    out = []
    for i, v in enumerate(value):
        a = _whole(v, f"{what}, entry {i}")
        if not -1 <= a < m:
            raise Wrong(f"{what}, entry {i} is {a}: a GPU index is 0..{m - 1}, or -1 for not placed")
        out.append(a)
    return out


def _jobs(g, n, mem=(2, 60), compute=(5, 80), start=0):
    return [Job(start + i, mem=int(g.integers(mem[0], mem[1] + 1)), compute=int(g.integers(compute[0], compute[1] + 1)))
            for i in range(n)]


def _describe(job) -> str:
    return f"job {job.id} ({job.mem} GB, {job.compute}% compute)"


# --- q1 ----------------------------------------------------------------------------------------------

def fit_cases(g):
    """(job, free, answer): random ones, exact equality in both, and over in exactly one resource."""
    cases = []
    for _ in range(12):
        job = _jobs(g, 1)[0]
        free = (int(g.integers(0, 81)), int(g.integers(0, 101)))
        cases.append((job, free))
    job = _jobs(g, 1)[0]
    cases += [(job, (job.mem, job.compute)),                                        # exactly full: fits
              (job, (job.mem + int(g.integers(1, 20)), job.compute - 1)),           # memory yes, compute no
              (job, (job.mem - 1, job.compute + int(g.integers(1, 20)))),           # compute yes, memory no
              (job, (job.mem + 0.5, job.compute + 0.5)),
              (job, np.array([job.mem, job.compute + 3.0]))]                        # free as an array
    order = g.permutation(len(cases))
    return [(cases[k][0], cases[k][1], reference_fits(*cases[k])) for k in order]


@exercise("q1 fits", hint=("a job fits a GPU only when every resource it needs is available — memory and "
                           "compute are separate limits; a job that exactly fills what is left still fits",
                           "the job fits when its memory is at most the free memory (the first entry of "
                           "free) and its compute at most the free compute (the second); answer True or False"))
def q1(fits):
    g = rng()
    for job, free, want in fit_cases(g):
        where = f"fits({_describe(job)}, free = ({free[0]:g} GB, {free[1]:g}%))"
        got = call(fits, job, free, what=where)
        if not isinstance(got, (bool, np.bool_)):
            raise Wrong(f"{where} returned {type(got).__name__} {_short(got)}, expected True or False")
        if bool(got) != want:
            why = ("both fit (exactly full counts)" if want else
                   "memory is short" if job.mem > free[0] else "compute is short")
            raise Wrong(f"{where} returned {bool(got)}, expected {want}: {why}")
    return "right on hidden jobs, including an exact fit and a shortage in only one resource"


# --- q2 ----------------------------------------------------------------------------------------------

def _placed_sorted(jobs, gpus) -> np.ndarray:
    """Best fit run on the jobs sorted largest first, reported in the order given."""
    order = decreasing(jobs)
    where = dict(zip((j.id for j in order), reference_place(order, gpus)))
    return np.array([where[j.id] for j in jobs])


def placement_instances(g):
    """(jobs, gpus) in placement order; always one where first fit and one where worst fit differ from best
    fit, and a shuffled one where sorting the jobs first changes where they go."""
    for _ in range(200):
        cases = []
        for k in range(4):
            gpus = [GPU_TYPES[int(t)] for t in g.integers(0, len(GPU_TYPES), int(g.integers(3, 7)))]
            jobs = _jobs(g, int(g.integers(8, 17)))
            if k == 1:  # one job fits no GPU
                jobs.append(Job(len(jobs), mem=int(g.integers(81, 120)), compute=int(g.integers(5, 50))))
            jobs = decreasing(jobs) if k < 3 else [jobs[i] for i in g.permutation(len(jobs))]
            cases.append((jobs, gpus))
        best = [reference_place(j, gp) for j, gp in cases]
        if any(not np.array_equal(b, reference_place(j, gp, "first")) for b, (j, gp) in zip(best, cases)) and \
           any(not np.array_equal(b, reference_place(j, gp, "worst")) for b, (j, gp) in zip(best, cases)) and \
           not np.array_equal(best[3], _placed_sorted(*cases[3])):
            return cases
    raise RuntimeError("no instance where the rules differ")  # never seen


def _names(gpus) -> str:
    return "[" + ", ".join(gp.name for gp in gpus) + "]"


@exercise("q2 best_fit", hint=("best fit takes the jobs in the order given and puts each on the GPU where it "
                               "fits that it fills most tightly — not the first GPU that fits (first fit), "
                               "not the emptiest (worst fit); a job that fits nowhere is reported, not forced",
                               "keep what is free on each GPU; for each job, among the GPUs where it fits, "
                               "pick the one with the smallest spare: the memory left after the job as a share "
                               "of the GPU's memory plus the compute left as a share of its compute; subtract "
                               "the job there; -1 when none fits"))
def q2(best_fit):
    g = rng()
    for jobs, gpus in placement_instances(g):
        where = f"best_fit({len(jobs)} jobs, GPUs {_names(gpus)})"
        assign = read_assign(call(best_fit, list(jobs), list(gpus), what=where), len(jobs), len(gpus), where)
        free = [[gp.mem, gp.compute] for gp in gpus]
        for i, (job, a) in enumerate(zip(jobs, assign)):
            ok = [k for k in range(len(gpus)) if reference_fits(job, free[k])]
            at = f"{where}: {_describe(job)}, number {i} in the order given"
            if a == -1:
                if ok:
                    raise Wrong(f"{at} is reported unplaced, but it fits GPU {ok[0]}")
                continue
            if a not in ok:
                short = "memory" if job.mem > free[a][0] else "compute"
                raise Wrong(f"{at} is put on GPU {a} ({gpus[a].name}), which has only "
                            f"{free[a][0]:g} GB and {free[a][1]:g}% left: over capacity in {short}")
            spare = {k: spare_after(job, free[k], gpus[k]) for k in ok}
            tight = min(spare.values())
            if spare[a] > tight + 1e-9:
                by_mem = min(free[k][0] - job.mem for k in ok)
                rule = (" (that is the tightest by memory alone: the spare counts compute too)"
                        if free[a][0] - job.mem <= by_mem + 1e-9 and a != ok[0] else
                        " (that is first fit)" if a == ok[0] else
                        " (that is worst fit)" if spare[a] >= max(spare.values()) - 1e-9 else "")
                best = min(ok, key=lambda k: spare[k])
                raise Wrong(f"{at} goes to GPU {a}, leaving spare {spare[a]:.2f}{rule}; GPU {best} would leave "
                            f"{tight:.2f} — best fit takes the tightest GPU where the job fits")
            free[a][0] -= job.mem
            free[a][1] -= job.compute
    return ("feasible and tightest-fit at every step on hidden instances (mixed GPUs, a job that fits nowhere, "
            "instances where first fit and worst fit choose differently)")


# --- q3 ----------------------------------------------------------------------------------------------

def _cut(g, total, parts) -> list[int]:
    """``total`` as ``parts`` positive whole numbers in random proportions."""
    cuts = np.sort(g.choice(np.arange(1, total), parts - 1, replace=False))
    return [int(x) for x in np.diff(np.r_[0, cuts, total])]


def perfect_packing(g, k, gpu=BIG, start=0):
    """Jobs that fill exactly k GPUs (each GPU's memory and compute cut into 2-4 pieces), shuffled."""
    jobs = []
    for _ in range(k):
        parts = int(g.integers(2, 5))
        for mem, comp in zip(_cut(g, gpu.mem, parts), g.permutation(_cut(g, gpu.compute, parts))):
            jobs.append(Job(start + len(jobs), mem=mem, compute=int(comp)))
    return [jobs[i] for i in g.permutation(len(jobs))]


def min_gpu_instances(g):
    """(jobs, k, n_slots): perfect packings of k GPUs; at least one on which best fit decreasing needs more."""
    for _ in range(500):
        cases = []
        for extra in (False, False, True):
            k = int(g.integers(2, 5))
            jobs = perfect_packing(g, k)
            if extra:  # a job too large for any GPU: it stays unplaced
                jobs.append(Job(len(jobs), mem=int(g.integers(81, 120)), compute=int(g.integers(5, 60))))
            bfd = reference_place(decreasing(jobs), [BIG] * len(jobs))
            cases.append((jobs, k, max(gpus_used(bfd), k + 1)))
        if any(gpus_used(reference_place(decreasing(j), [BIG] * len(j))) > k for j, k, _ in cases):
            return cases
    raise RuntimeError("best fit never missed")  # never seen


@exercise("q3 min_gpus", hint=("the fewest GPUs is an integer program: a yes/no variable for each job on each "
                               "GPU slot and one for each slot being used; minimise the slots used, with "
                               "every job in exactly one slot and each slot's memory and compute within the GPU's",
                               "one vector for scipy.optimize.milp holds a 0/1 integer variable per (job, slot) "
                               "and one per slot; one row per job makes its variables sum to exactly one; per "
                               "slot, the memory of its jobs minus the GPU's memory times 'slot used' must not "
                               "exceed zero, and the same for compute; minimise the slots used; leave out "
                               "(as -1) jobs that fit no GPU"))
def q3(min_gpus):
    g = rng()
    for jobs, k, n_slots in min_gpu_instances(g):
        where = f"min_gpus({len(jobs)} jobs, {BIG.name}, n_slots={n_slots})"
        assign = read_assign(call(min_gpus, list(jobs), BIG, n_slots, what=where), len(jobs), n_slots, where)
        for i, (job, a) in enumerate(zip(jobs, assign)):
            if a == -1 and reference_fits(job, (BIG.mem, BIG.compute)):
                raise Wrong(f"{where}: {_describe(job)} (entry {i}) is unplaced, but it fits an empty GPU")
            if a != -1 and not reference_fits(job, (BIG.mem, BIG.compute)):
                raise Wrong(f"{where}: {_describe(job)} (entry {i}) is placed, but it is larger than a GPU")
        for s in range(n_slots):
            on = [j for j, a in zip(jobs, assign) if a == s]
            mem, comp = sum(j.mem for j in on), sum(j.compute for j in on)
            if mem > BIG.mem or comp > BIG.compute:
                raise Wrong(f"{where}: slot {s} holds {mem} GB and {comp}% compute, over the GPU's "
                            f"{BIG.mem} GB / {BIG.compute}%")
        used = gpus_used(assign)
        if used > k:
            raise Wrong(f"{where} uses {used} GPUs; {k} suffice (the jobs fill exactly {k} GPUs' memory) — "
                        "a heuristic such as best fit is not the exact optimum")
    return "feasible and exactly the fewest GPUs on hidden instances where best fit decreasing needs more"


# --- q4, q5: queue policies inside course_utils.sched.simulate ----------------------------------------

def streams(g, count=3, n=120):
    return [sched.make_jobs(n, g, load=0.9, n_gpus=4, gpu_counts=(1, 2, 4), gpu_probs=(0.7, 0.2, 0.1))
            for _ in range(count)]


def as_policy(fn, what):
    """The student's choice function as the simulator's policy: read-only views, a job of the queue back."""
    def choose(queue, now, state):
        view = {"remaining": MappingProxyType(state["remaining"]), "free": state["free"],
                "queue": tuple(state["queue"])}
        pick = call(fn, list(queue), now, view, what=what)
        if not isinstance(pick, Job):
            raise Wrong(f"{what} returned {type(pick).__name__} {_short(pick)}, expected one of the jobs in queue")
        for job in queue:
            if job == pick:
                return job
        raise Wrong(f"{what} returned job {pick.id}, which is not in queue (the waiting jobs that fit the idle GPUs)")
    return choose


def mean_jct(jobs, policy, preemptive) -> float:
    return sched.metrics(sched.simulate(jobs, 4, policy, preemptive=preemptive))["jct"]


def _stream_cases(g, preemptive):
    """Streams on which the reference differs clearly from FCFS (and SRPT from SJF, for q5)."""
    out = []
    for _ in range(50):
        jobs = streams(g, 1)[0]
        fc, sj = mean_jct(jobs, sched.fcfs, False), mean_jct(jobs, sched.sjf, False)
        sr = mean_jct(jobs, sched.srpt, True) if preemptive else None
        if sj < fc * (1 - 1e-6) and (sr is None or sr < sj * (1 - 1e-6)):
            out.append((jobs, fc, sj, sr))
        if len(out) == 3:
            return out
    raise RuntimeError("no stream where the policies differ")  # never seen


def _check_policy(fn, name, preemptive, ref_index):
    g = rng()
    for s, case in enumerate(_stream_cases(g, preemptive)):
        jobs, fc, sj, sr = case
        want = case[ref_index]
        where = f"{name}(queue, now, state) on hidden stream {s + 1} ({len(jobs)} jobs, 4 GPUs)"
        got = mean_jct(jobs, as_policy(fn, name), preemptive)
        if not math.isclose(got, want, rel_tol=1e-9):
            same_fc = math.isclose(got, fc, rel_tol=1e-9)
            rel = (" — the same as FCFS: the choice ignores the jobs' sizes" if same_fc else
                   " — the same as non-pre-emptive SJF: choose by remaining work" if sr is not None and
                   math.isclose(got, mean_jct(jobs, sched.sjf, True), rel_tol=1e-9) else "")
            raise Wrong(f"{where}: mean completion time {got:.1f} s, the reference's is {want:.1f} s{rel}")
    return got


@exercise("q4 sjf", hint=("shortest job first looks at the jobs that wait and starts the one with the least "
                          "work in total; a choice that ignores the jobs (always the first, a random one) is FCFS "
                          "or worse",
                          "of the waiting jobs, the one with the least total work (on a tie, the one that "
                          "arrived first)"))
def q4(sjf):
    _check_policy(sjf, "sjf", False, 2)
    return "same mean completion time as the reference SJF (to 1e-9) on hidden streams, lower than FCFS's"


@exercise("q5 srpt", hint=("with pre-emption the simulator hands every running job back at each arrival or "
                           "completion; SRPT then picks by the work still to do, not by the job's total size",
                           "of the waiting jobs, the one with the least work still to do — the state the "
                           "simulator passes says what is left of each — on a tie, the one that arrived first"))
def q5(srpt):
    _check_policy(srpt, "srpt", True, 3)
    return ("same mean completion time as the reference SRPT (to 1e-9) on hidden streams, "
            "with pre-emption: SRPT < SJF < FCFS on each")
