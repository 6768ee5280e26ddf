"""GPU scheduling: jobs, a workload generator, an online cluster simulator, offline placement, an RL env.

    from course_utils.sched import Job, GPU, make_jobs, simulate, metrics, fcfs, sjf, srpt, priority
    jobs = make_jobs(2000, np.random.default_rng(0), load=0.8, n_gpus=8)   # Helios-like stream
    res = simulate(jobs, n_gpus=8, policy=srpt, preemptive=True)           # discrete-event simulation
    metrics(res)   # {"jct": mean completion time s, "wait": mean wait s, "slowdown": mean, "done", "rejected"}
    assign, result = place_milp(jobs, gpus)   # optimal placement (scipy.optimize.milp, HiGHS)

Everything runs on the CPU (pure Python + NumPy/SciPy); nothing here needs or uses a GPU.

* A **policy** is a choice function ``policy(queue, now, state) -> Job``: ``queue`` lists the waiting
  jobs that fit in the idle GPUs (arrival order), ``state["queue"]`` all waiting jobs,
  ``state["remaining"]`` maps job id -> remaining seconds of work, ``state["free"]`` = idle GPUs. The
  simulator starts the chosen job and asks again while a job fits: work-conserving (a big job can be
  overtaken by smaller ones: backfilling without reservations).
* ``preemptive=True``: at every arrival or completion all running jobs return to the queue with their
  remaining work (free pre-emption, no checkpoint cost); the policy refills the GPUs.
* ``admit(job, queue, state) -> bool`` (optional) is admission control: a rejected job never runs.
* **Placement** (offline): choose for every job a GPU of a list of ``GPU(name, mem, compute)`` or none,
  so that no GPU exceeds its memory nor its compute, maximising the total ``priority`` placed. An
  assignment is an int array, ``assign[i]`` = GPU index or -1 (not placed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

HELIOS_MEDIAN_S = 206.0   # GPU-job duration, Helios traces (Hu et al., SC'21): median 206 s ...
HELIOS_MEAN_S = 6652.0    # ... and mean 6,652 s
SLOWDOWN_FLOOR_S = 10.0   # bounded slowdown: jobs shorter than this count as this long


@dataclass(frozen=True)
class Job:
    id: int
    arrival: float = 0.0     # s
    duration: float = 1.0    # s of work
    gpus: int = 1            # GPUs it needs at once (online simulation)
    mem: float = 0.0         # GB of GPU memory (placement)
    priority: float = 0      # larger = more important (placement: the value of placing it)
    compute: float = 0.0     # compute it needs, in the GPU's units (placement)


@dataclass(frozen=True)
class GPU:
    name: str
    mem: float               # GB
    compute: float = 1.0     # compute capacity (e.g. TFLOP/s it can sustain)


def lognormal_params(median: float = HELIOS_MEDIAN_S, mean: float = HELIOS_MEAN_S) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with this median and mean: mu = ln median, sigma = sqrt(2 ln(mean/median))."""
    return math.log(median), math.sqrt(2 * math.log(mean / median))


def make_jobs(n: int, rng: np.random.Generator, load: float = 0.8, n_gpus: int = 8,
              median: float = HELIOS_MEDIAN_S, mean: float = HELIOS_MEAN_S,
              gpu_counts=(1, 2, 4, 8), gpu_probs=(0.7, 0.15, 0.1, 0.05),
              mem_range=(2.0, 40.0), n_priorities: int = 3) -> list[Job]:
    """A stream of ``n`` jobs: Poisson arrivals, lognormal durations with the given median and mean,
    GPU counts drawn from ``gpu_counts`` (assumed shares ``gpu_probs``, capped at ``n_gpus``), uniform
    memory and priority. The arrival rate makes the *expected* offered load
    E[duration·gpus] / (n_gpus · mean gap) equal ``load``."""
    mu, sigma = lognormal_params(median, mean)
    counts = np.array([min(c, n_gpus) for c in gpu_counts])
    probs = np.asarray(gpu_probs, float) / np.sum(gpu_probs)
    gap = mean * float(counts @ probs) / (n_gpus * load)
    arrivals = np.cumsum(rng.exponential(gap, n))
    durations = rng.lognormal(mu, sigma, n)
    gpus = rng.choice(counts, size=n, p=probs)
    mems = rng.uniform(*mem_range, n)
    prios = rng.integers(0, n_priorities, n)
    return [Job(i, float(a), float(d), int(g), float(m), int(p))
            for i, (a, d, g, m, p) in enumerate(zip(arrivals, durations, gpus, mems, prios))]


# ---- policies: choice functions (queue, now, state) -> job ----
def fcfs(queue, now, state):      # first come, first served
    return min(queue, key=lambda j: (j.arrival, j.id))


def sjf(queue, now, state):       # shortest job first (by total duration)
    return min(queue, key=lambda j: (j.duration, j.arrival, j.id))


def srpt(queue, now, state):      # shortest remaining processing time (use with preemptive=True)
    return min(queue, key=lambda j: (state["remaining"][j.id], j.arrival, j.id))


def priority(queue, now, state):  # highest priority first, FCFS within a priority
    return min(queue, key=lambda j: (-j.priority, j.arrival, j.id))


def simulate(jobs, n_gpus: int, policy, preemptive: bool = False, admit=None) -> dict:
    """Discrete-event simulation of ``n_gpus`` identical GPUs. Returns a dict of per-job NumPy arrays
    over the admitted jobs (``id, arrival, duration, gpus, priority, start, finish``) and ``rejected``
    (ids). ``start`` is the first time a job ran; its wait is ``finish - arrival - duration``."""
    jobs = sorted(jobs, key=lambda j: (j.arrival, j.id))
    if any(j.gpus > n_gpus or j.gpus < 1 for j in jobs):
        raise ValueError(f"every job needs between 1 and {n_gpus} GPUs")
    state = {"remaining": {j.id: j.duration for j in jobs}, "free": n_gpus}
    rem, queue, running, start, finish, rejected, admitted = state["remaining"], [], [], {}, {}, [], []
    t, i, n = 0.0, 0, len(jobs)
    while i < n or queue or running:
        t_arr = jobs[i].arrival if i < n else math.inf
        t_fin = min((t + rem[j.id] for j in running), default=math.inf)
        t_next = min(t_arr, t_fin)
        for j in running:
            rem[j.id] -= t_next - t
        t = t_next
        for j in [j for j in running if rem[j.id] <= 1e-9 * max(1.0, j.duration)]:
            rem[j.id], finish[j.id] = 0.0, t
            running.remove(j)
        while i < n and jobs[i].arrival <= t:
            j, i = jobs[i], i + 1
            state["free"] = n_gpus - sum(r.gpus for r in running)
            if admit is None or admit(j, queue, state):
                queue.append(j)
                admitted.append(j)
            else:
                rejected.append(j.id)
        if preemptive and running:
            queue = sorted(queue + running, key=lambda j: (j.arrival, j.id))
            running = []
        free = n_gpus - sum(r.gpus for r in running)
        while fits := [j for j in queue if j.gpus <= free]:
            state["free"], state["queue"] = free, queue
            j = policy(fits, t, state)
            queue.remove(j)
            running.append(j)
            free -= j.gpus
            start.setdefault(j.id, t)
    cols = {k: np.array([getattr(j, k) for j in admitted]) for k in ("id", "arrival", "duration", "gpus", "priority")}
    cols.update(start=np.array([start[j.id] for j in admitted]), finish=np.array([finish[j.id] for j in admitted]))
    return cols | {"rejected": np.array(rejected, dtype=int)}


def metrics(res: dict, floor: float = SLOWDOWN_FLOOR_S) -> dict:
    """Means over the admitted jobs: completion time (finish - arrival), waiting time (completion -
    duration), bounded slowdown max(1, completion / max(duration, floor)); counts done and rejected."""
    jct = res["finish"] - res["arrival"]
    return {"jct": float(jct.mean()), "wait": float((jct - res["duration"]).mean()),
            "slowdown": float(np.maximum(jct / np.maximum(res["duration"], floor), 1.0).mean()),
            "done": int(len(jct)), "rejected": int(len(res["rejected"]))}


# ---- offline placement: which jobs go on which GPU (memory and compute are separate limits) ----
def feasible(jobs, gpus, assign) -> bool:
    """True when ``assign`` has one entry in -1..len(gpus)-1 per job and no GPU exceeds its memory or compute."""
    a = np.asarray(assign)
    if a.shape != (len(jobs),) or a.min(initial=0) < -1 or a.max(initial=0) >= len(gpus):
        return False
    on = a >= 0
    for field in ("mem", "compute"):
        used = np.bincount(a[on], np.array([getattr(j, field) for j in jobs], float)[on], minlength=len(gpus))
        if np.any(used > np.array([getattr(g, field) for g in gpus]) + 1e-9):
            return False
    return True


def placed_value(jobs, gpus, assign) -> float:
    """Total ``priority`` of the placed jobs (the objective); -inf when the assignment is infeasible."""
    if not feasible(jobs, gpus, assign):
        return -math.inf
    return float(sum(j.priority for j, g in zip(jobs, assign) if g >= 0))


def greedy(jobs, gpus, rule: str = "best_fit") -> np.ndarray:
    """Jobs by value density (priority / (mem share + compute share)), each onto a GPU where both fit,
    chosen by ``rule``: "best_fit" = least spare capacity left (tight packing, the seed's rule, named
    for what it does), "worst_fit" = most spare capacity left (load balancing). -1 = not placed."""
    cap = np.array([[g.mem, g.compute] for g in gpus], float)
    free, assign = cap.copy(), np.full(len(jobs), -1)
    size = lambda j: j.mem / cap[:, 0].mean() + j.compute / cap[:, 1].mean()
    for i in sorted(range(len(jobs)), key=lambda i: -jobs[i].priority / size(jobs[i])):
        need = np.array([jobs[i].mem, jobs[i].compute])
        ok = np.flatnonzero(np.all(free >= need - 1e-9, axis=1))
        if len(ok):
            spare = ((free[ok] - need) / cap[ok]).sum(axis=1)
            g = ok[np.argmin(spare) if rule == "best_fit" else np.argmax(spare)]
            assign[i], free[g] = g, free[g] - need
    return assign


def best_fit(jobs, gpus) -> np.ndarray:
    return greedy(jobs, gpus, "best_fit")


def place_milp(jobs, gpus, time_limit: float = 60.0):
    """The optimal placement as an integer program solved by HiGHS (scipy.optimize.milp): binary
    x[i, g] (job i on GPU g, row-major), maximise sum priority_i x[i, g] subject to sum_g x[i, g] <= 1,
    sum_i mem_i x[i, g] <= mem_g and sum_i compute_i x[i, g] <= compute_g (separate rows).
    Returns (assign, result); ``result.status == 0`` means proven optimal."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    n, m = len(jobs), len(gpus)
    rows = np.zeros((n + 2 * m, n * m))
    for i in range(n):
        rows[i, i * m:(i + 1) * m] = 1
    for g in range(m):
        rows[n + g, g::m] = [j.mem for j in jobs]
        rows[n + m + g, g::m] = [j.compute for j in jobs]
    upper = np.r_[np.ones(n), [g.mem for g in gpus], [g.compute for g in gpus]]
    c = -np.repeat([float(j.priority) for j in jobs], m)
    res = milp(c, constraints=LinearConstraint(rows, -np.inf, upper), integrality=np.ones(n * m),
               bounds=Bounds(0, 1), options={"time_limit": time_limit})
    if res.x is None:
        return np.full(n, -1), res
    x = res.x.reshape(n, m).round()
    return np.where(x.sum(axis=1) > 0, x.argmax(axis=1), -1), res


# ---- reinforcement learning: which of the first k queued jobs starts next ----
def queue_obs(queue, k: int, mu: float, sigma: float) -> np.ndarray:
    """Observation for the first ``k`` queued jobs (arrival order): per slot [present, scaled log
    duration in [0, 1]], then the queue length / (2k) capped at 1. Shape (2k + 1,), float32."""
    obs = np.zeros(2 * k + 1, np.float32)
    for s, j in enumerate(queue[:k]):
        obs[2 * s] = 1.0
        obs[2 * s + 1] = np.clip((math.log(j.duration) - mu + 3 * sigma) / (6 * sigma), 0.0, 1.0)
    obs[-1] = min(len(queue) / (2 * k), 1.0)
    return obs


class QueueEnv(gym.Env):
    """An MDP for online scheduling on ``n_gpus`` GPUs of 1-GPU jobs (Helios-like durations).
    Decision points are the moments a GPU is idle and >= 2 jobs wait; action a starts queued job
    ``min(a, len(queue) - 1)`` (arrival order, first ``k`` visible). The cost between decisions is
    sum over jobs in the system of dt / max(duration, floor) / n_jobs: summed over an episode it is
    the mean of completion / max(duration, floor) of its ``n_jobs`` jobs. The reward is -cost, or
    -log(1 + cost) with ``log_reward`` (tames the heavy tail; no longer sums to the episode's mean)."""

    def __init__(self, n_gpus=2, k=8, n_jobs=64, load=0.9, log_reward=False):
        self.n_gpus, self.k, self.n_jobs, self.load, self.log_reward = n_gpus, k, n_jobs, load, log_reward
        self.mu, self.sigma = lognormal_params()
        self.action_space = gym.spaces.Discrete(k)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2 * k + 1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        jobs = (options or {}).get("jobs")
        self.jobs = jobs if jobs is not None else make_jobs(
            self.n_jobs, self.np_random, load=self.load, n_gpus=self.n_gpus, gpu_counts=(1,), gpu_probs=(1,))
        self.jobs = sorted(self.jobs, key=lambda j: (j.arrival, j.id))
        self.t, self.i, self.queue, self.running, self.slowdowns = 0.0, 0, [], [], []
        self.pending = self._advance()   # cost before the first choice, paid in the first step
        return self._obs(), {}

    def _obs(self):
        return queue_obs(self.queue, self.k, self.mu, self.sigma)   # same view as agent_policy

    def _start(self, j):
        self.queue.remove(j)
        self.running.append((self.t + j.duration, j))

    def _advance(self) -> float:
        cost = 0.0
        while True:
            while len(self.running) < self.n_gpus and len(self.queue) == 1:
                self._start(self.queue[0])
            if len(self.running) < self.n_gpus and len(self.queue) >= 2:
                return cost
            t_arr = self.jobs[self.i].arrival if self.i < len(self.jobs) else math.inf
            t_fin = min((f for f, _ in self.running), default=math.inf)
            if t_arr == t_fin == math.inf:
                return cost
            t_next = min(t_arr, t_fin)
            in_system = self.queue + [j for _, j in self.running]
            cost += (t_next - self.t) * sum(1 / max(j.duration, SLOWDOWN_FLOOR_S) for j in in_system)
            self.t = t_next
            for f, j in [r for r in self.running if r[0] <= self.t]:
                self.slowdowns.append(max((f - j.arrival) / max(j.duration, SLOWDOWN_FLOOR_S), 1.0))
            self.running = [r for r in self.running if r[0] > self.t]
            while self.i < len(self.jobs) and self.jobs[self.i].arrival <= self.t:
                self.queue.append(self.jobs[self.i])
                self.i += 1

    def step(self, action):
        cost, self.pending = self.pending, 0.0
        if self.queue:   # an episode without a single choice ends at its first step
            self._start(self.queue[min(int(action), len(self.queue) - 1)])
            cost += self._advance()
        done = self.i >= len(self.jobs) and not self.queue and not self.running
        cost /= self.n_jobs
        return self._obs(), -math.log1p(cost) if self.log_reward else -cost, done, False, {}


def agent_policy(predict, k: int = 8):
    """Wrap ``predict(obs) -> action`` (e.g. ``lambda o: model.predict(o, deterministic=True)[0]``)
    as a simulate() policy that sees what QueueEnv shows: the first ``k`` queued jobs."""
    mu, sigma = lognormal_params()

    def policy(queue, now, state):
        if len(queue) == 1:
            return queue[0]
        return queue[min(int(predict(queue_obs(queue, k, mu, sigma))), len(queue) - 1)]
    return policy
