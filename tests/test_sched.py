"""course_utils.sched: workload statistics, the simulator against queueing theory, placement, the RL env."""
import itertools
import math
import warnings

import numpy as np
import pytest

from course_utils.sched import (GPU, Job, QueueEnv, agent_policy, best_fit, fcfs, feasible, greedy,
                                lognormal_params, make_jobs, metrics, place_milp, placed_value, priority,
                                simulate, sjf, srpt)


def test_lognormal_matches_the_helios_median_and_mean():
    mu, sigma = lognormal_params(206, 6652)
    assert math.exp(mu) == pytest.approx(206)
    assert math.exp(mu + sigma ** 2 / 2) == pytest.approx(6652)
    d = np.array([j.duration for j in make_jobs(50_000, np.random.default_rng(0))])
    assert np.median(d) == pytest.approx(206, rel=0.05)


def test_make_jobs_stream():
    jobs = make_jobs(500, np.random.default_rng(1), n_gpus=4)
    arr = [j.arrival for j in jobs]
    assert arr == sorted(arr) and {j.gpus for j in jobs} <= {1, 2, 4} and len({j.id for j in jobs}) == 500


def test_simulate_by_hand_fcfs_sjf_and_preemption():
    jobs = [Job(0, 0.0, 10.0), Job(1, 1.0, 5.0), Job(2, 2.0, 1.0)]
    r = simulate(jobs, 1, fcfs)
    assert list(r["finish"]) == [10, 15, 16]
    r = simulate(jobs, 1, sjf)
    assert list(r["finish"]) == [10, 16, 11]
    r = simulate(jobs, 1, srpt, preemptive=True)   # job 1 waits for job 2, job 0 resumes last
    assert list(r["finish"]) == [16, 7, 3] and list(r["start"]) == [0, 1, 2]
    assert metrics(r)["wait"] == pytest.approx(((16 - 10) + (6 - 5) + (1 - 1)) / 3)


def test_never_more_gpus_than_the_cluster_and_work_is_conserved():
    jobs = make_jobs(300, np.random.default_rng(2), load=0.9, n_gpus=4)
    for pol, pre in [(fcfs, False), (sjf, False), (srpt, True), (priority, True)]:
        r = simulate(jobs, 4, pol, preemptive=pre)
        assert np.all(r["finish"] - r["arrival"] >= r["duration"] * (1 - 1e-9))
        if not pre:   # without pre-emption each job runs in one piece: count busy GPUs at every start
            for t in r["start"]:
                busy = (r["start"] <= t) & (r["finish"] > t)
                assert r["gpus"][busy].sum() <= 4
    with pytest.raises(ValueError):
        simulate([Job(0, 0, 1, gpus=8)], 4, fcfs)


@pytest.mark.parametrize("seed", range(3))
def test_fcfs_wait_matches_pollaczek_khinchine(seed):
    rng, lam, n = np.random.default_rng(seed), 0.7, 60_000   # M/D/1, service 1 s, load 0.7
    jobs = [Job(i, a, 1.0) for i, a in enumerate(np.cumsum(rng.exponential(1 / lam, n)))]
    pk = lam * 1.0 / (2 * (1 - lam))                         # λ E[S²] / (2 (1 − ρ))
    assert metrics(simulate(jobs, 1, fcfs))["wait"] == pytest.approx(pk, rel=0.05)


def test_srpt_sjf_fcfs_order_on_a_heavy_tailed_stream():
    jobs = make_jobs(1000, np.random.default_rng(3), load=0.7, n_gpus=8)
    jct = {name: metrics(simulate(jobs, 8, p, preemptive=pre))["jct"]
           for name, p, pre in [("fcfs", fcfs, False), ("sjf", sjf, False), ("srpt", srpt, True)]}
    assert jct["srpt"] <= jct["sjf"] <= jct["fcfs"]


def test_admission_control_rejects_and_shortens_waits():
    jobs = make_jobs(1000, np.random.default_rng(4), load=0.9, n_gpus=8)
    admit = lambda j, queue, state: sum(q.duration * q.gpus for q in queue) < 1e5
    a, b = metrics(simulate(jobs, 8, fcfs)), metrics(simulate(jobs, 8, fcfs, admit=admit))
    assert b["rejected"] > 0 and b["done"] + b["rejected"] == 1000 and b["wait"] < a["wait"]


GPUS = [GPU("big", 80, 300), GPU("small", 24, 100)]


def tiny(seed, n=7):
    r = np.random.default_rng(seed)
    return [Job(i, mem=float(r.uniform(2, 40)), compute=float(r.uniform(10, 150)),
                priority=int(r.integers(1, 10))) for i in range(n)]


@pytest.mark.parametrize("seed", range(4))
def test_milp_equals_brute_force_and_beats_greedy(seed):
    jobs = tiny(seed)
    brute = max(placed_value(jobs, GPUS, np.array(a)) for a in itertools.product(range(-1, 2), repeat=len(jobs)))
    assign, res = place_milp(jobs, GPUS)
    assert res.status == 0 and feasible(jobs, GPUS, assign)
    assert placed_value(jobs, GPUS, assign) == brute
    for rule in ("best_fit", "worst_fit"):
        g = greedy(jobs, GPUS, rule)
        assert feasible(jobs, GPUS, g) and placed_value(jobs, GPUS, g) <= brute
    assert np.array_equal(best_fit(jobs, GPUS), greedy(jobs, GPUS, "best_fit"))


def test_feasible_rejects_overflow_and_bad_shapes():
    jobs = [Job(0, mem=50, compute=10, priority=1), Job(1, mem=50, compute=10, priority=1)]
    assert not feasible(jobs, GPUS, [0, 0]) and placed_value(jobs, GPUS, [0, 0]) == -math.inf
    assert feasible(jobs, GPUS, [0, -1]) and not feasible(jobs, GPUS, [0]) and not feasible(jobs, GPUS, [0, 2])


def test_env_passes_check_env_and_fcfs_actions_reproduce_the_simulator():
    from gymnasium.utils.env_checker import check_env
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(QueueEnv(), skip_render_check=True)
    for seed in range(3):
        jobs = make_jobs(64, np.random.default_rng(seed), load=0.9, n_gpus=2, gpu_counts=(1,), gpu_probs=(1,))
        env = QueueEnv()
        env.reset(options={"jobs": jobs})
        total, done = 0.0, False
        while not done:
            _, r, done, _, _ = env.step(0)
            total += r
        res = simulate(jobs, 2, fcfs)
        ratio = (res["finish"] - res["arrival"]) / np.maximum(res["duration"], 10.0)
        assert -total == pytest.approx(ratio.mean())
        assert np.mean(env.slowdowns) == pytest.approx(metrics(res)["slowdown"])
        assert metrics(simulate(jobs, 2, agent_policy(lambda o: 0)))["slowdown"] == pytest.approx(metrics(res)["slowdown"])
        last = metrics(simulate(jobs, 2, agent_policy(lambda o: 7)))
        assert last["done"] == 64
