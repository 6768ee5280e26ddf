"""Lab 10 checks: the solution passes (several random draws), the starter is "not done yet" and launches
nothing, and the shortcuts fail with one ✘ line — for the interval of a median: the range, the quartiles,
the samples' own quantiles, mean ± z·sd, a bootstrap of the mean, no resampling, a fixed level, no seed,
the mean for the median; for the speedup: the inverted ratio, a ratio of means, seconds without images,
no interval, one side resampled, the two intervals divided; for the project: rows without or with a
foreign fingerprint, rows from different environments, typed-in statistics, too few repeats, no warm-up,
a different model or worker count, a claim the data do not support, the inverted claim, "faster" when
the interval includes 1 and "no difference" when it does not. No return value ever makes a check raise.
One test runs the real harness briefly (two one-worker launches)."""
import copy
import math

import numpy as np
import pytest

from course_utils import bench, study
from course_utils.bench import Timing
from course_utils.labs import lab10
from tests.helpers import ROOT, check_line, every_answer_gives_one_line, failed, notebook_namespace

LAB = ROOT / "labs" / "lab10_benchmark_project"
SKIP = ("check.q", "tqdm(", "display(", "plt.", "claim = make_claim")  # checks, the runs, table, plot, claim
SOL = notebook_namespace(LAB / "solution.ipynb", skip=SKIP)
DRAWS = 3  # hidden inputs differ on every call


def passes(capsys, q, *answers, draws=DRAWS):
    for _ in range(draws):
        ok, line = check_line(capsys, q, *answers)
        assert ok and line.startswith("✔"), line


def fails(capsys, q, fn, *messages, draws=DRAWS):
    for _ in range(draws):
        out = failed(capsys, q(fn))
        assert any(m in out for m in messages), out


# --- the solution and the starter --------------------------------------------------------------------

def test_solution_passes_q1_and_q2_on_many_draws(capsys):
    passes(capsys, lab10.q1, SOL["median_interval"], draws=15)
    passes(capsys, lab10.q2, SOL["speedup"], draws=15)


def test_other_correct_bootstraps_pass(capsys):
    """The check accepts any percentile bootstrap, not one quantile rule or one way of drawing."""
    def by_sorting(samples, level=0.95, resamples=10_000, seed=0):
        x = np.asarray(samples)
        g = np.random.default_rng(seed)
        meds = np.sort(np.median(x[g.integers(0, x.size, (resamples, x.size))], axis=1))
        k = int((1 - level) / 2 * resamples)
        return float(np.median(x)), float(meds[k]), float(meds[resamples - 1 - k])

    def inverted_cdf(samples, level=0.95, resamples=10_000, seed=0):
        x = np.asarray(samples)
        meds = np.median(np.random.default_rng(seed).choice(x, (resamples, x.size)), axis=1)
        return (np.median(x), *np.quantile(meds, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf"))

    passes(capsys, lab10.q1, by_sorting)
    passes(capsys, lab10.q1, inverted_cdf)
    passes(capsys, lab10.q1, lambda x, *a: np.array(lab10.reference_interval(x, *a)))  # an array of 3 is fine


def test_the_checker_references_pass_too(capsys):  # wrapped: handed in as they are, they are refused
    passes(capsys, lab10.q1, lambda *a: lab10.reference_interval(*a))
    passes(capsys, lab10.q2, lambda *a: lab10.reference_speedup(*a))


def test_course_functions_handed_in_are_refused(capsys):
    for q, ref in [(lab10.q1, bench.bootstrap_ci), (lab10.q1, lab10.reference_interval),
                   (lab10.q2, lab10.reference_speedup)]:
        assert not q(ref)
        assert "course's own" in capsys.readouterr().out


def test_starter_is_not_done_and_launches_nothing(capsys, monkeypatch):
    launched = []
    ns = notebook_namespace(LAB / "starter.ipynb", skip=("check.q", "display(", "plt."))
    monkeypatch.setitem(ns, "run", lambda *a, **k: launched.append(a))
    capsys.readouterr()  # what the starter's cells printed
    failed(capsys, lab10.q1(ns["median_interval"]), "not done yet")
    failed(capsys, lab10.q2(ns["speedup"]), "not done yet")
    assert ns["rows"] == [] and ns["claim"] == {}
    failed(capsys, lab10.q3(ns["rows"], ns["claim"]), "not done yet")
    with pytest.raises(NotImplementedError):
        ns["measure"]("efficientnet_b0", "ddp", 2)
    assert not launched


def test_notebooks_store_no_answer_in_the_starter_and_every_check_in_the_solution():
    import json

    def outputs(kind):
        nb = json.loads((LAB / f"{kind}.ipynb").read_text(encoding="utf-8"))
        return "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                       for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
    starter, solution = outputs("starter"), outputs("solution")
    assert "✔" not in starter and "hint:" not in starter and starter.count("not done yet") == 3
    assert solution.count("✔") == 3 and "✘" not in solution


def test_hints_carry_no_answer_code():
    for q in (lab10.q1, lab10.q2, lab10.q3):
        q.wrong_attempts = 5
    for text in ("np.", "default_rng(", "quantile(", "median(", "= "):
        for q, args in ((lab10.q1, (lambda *a: None,)), (lab10.q2, (lambda *a: None,)), (lab10.q3, ([1], {}))):
            assert text not in q(*args).line.split("hint:")[1], (q.__name__, text)
    for q in (lab10.q1, lab10.q2, lab10.q3):
        q.wrong_attempts = 0


def test_hints_start_conceptual_then_concrete(capsys):
    lab10.q1.wrong_attempts = 0
    first = failed(capsys, lab10.q1(lambda x, *a: (np.median(x), min(x), max(x))))
    second = failed(capsys, lab10.q1(lambda x, *a: (np.median(x), min(x), max(x))))
    assert first.split("hint:")[1] != second.split("hint:")[1] and "quantiles" in second.split("hint:")[1]
    lab10.q1.wrong_attempts = 0


# --- q1: shortcuts for the interval of a median ---------------------------------------------------------

def _z(level):
    from statistics import NormalDist
    return NormalDist().inv_cdf((1 + level) / 2)


def boot_mean(x, level=0.95, resamples=10_000, seed=0):
    x = np.asarray(x)
    means = np.random.default_rng(seed).choice(x, (resamples, x.size)).mean(axis=1)
    return (np.median(x), *np.quantile(means, [(1 - level) / 2, (1 + level) / 2]))


def without_replacement(x, level=0.95, resamples=10_000, seed=0):  # every "resample" is the sample itself
    x = np.asarray(x)
    g = np.random.default_rng(seed)
    meds = [np.median(g.permutation(x)) for _ in range(200)]
    return (np.median(x), *np.quantile(meds, [(1 - level) / 2, (1 + level) / 2]))


def fixed_level(x, level=0.95, resamples=10_000, seed=0):
    return SOL["median_interval"](x, 0.95, resamples, seed)


def unseeded(x, level=0.95, resamples=10_000, seed=0):
    return SOL["median_interval"](x, level, resamples, seed=None)


def mean_for_median(x, level=0.95, resamples=10_000, seed=0):
    _, lo, hi = SOL["median_interval"](x, level, resamples, seed)
    return float(np.mean(x)), lo, hi


@pytest.mark.parametrize("wrong, messages", [
    (lambda x, *a: (np.median(x), min(x), max(x)), ("range of the samples",)),
    (lambda x, lv, *a: (np.median(x), *np.quantile(x, [(1 - lv) / 2, (1 + lv) / 2])), ("quantiles of the samples",)),
    (lambda x, *a: (np.median(x), *np.quantile(x, [0.25, 0.75])), ("interquartile range",)),
    (lambda x, lv, *a: (np.median(x), np.mean(x) - _z(lv) * np.std(x, ddof=1) / math.sqrt(len(x)),
                        np.mean(x) + _z(lv) * np.std(x, ddof=1) / math.sqrt(len(x))), ("mean ± z·sd/√n",)),
    (lambda x, lv, *a: (np.median(x), np.mean(x) - _z(lv) * np.std(x, ddof=1),
                        np.mean(x) + _z(lv) * np.std(x, ddof=1)), ("mean ± z·sd,", "range of the samples")),
    (boot_mean, ("bootstrap interval of the mean",)),
    (without_replacement, ("zero width",)),
    (fixed_level, ("use the level argument",)),
    (unseeded, ("same seed",)),
    (mean_for_median, ("that is the mean",)),
    (lambda x, *a: (0.1, 0.09, 0.11), ("the samples' median is",)),
    (lambda x, *a: (np.median(x), np.median(x), np.median(x)), ("zero width",)),
    (lambda x, *a: (lambda m, lo, hi: (m, hi, lo))(*SOL["median_interval"](x, *a)), ("swapped",)),
])
def test_q1_shortcuts_fail(capsys, wrong, messages):
    fails(capsys, lab10.q1, wrong, *messages)


@pytest.mark.parametrize("seed", range(100))
def test_every_draw_of_q1_rejects_the_quartiles_range_and_normal_interval(seed):
    """Fresh hidden samples on every call: n = 7 and n = 25 at 95 % are always drawn, and there these
    shortcuts miss the bootstrap window on every draw (not only most)."""
    g = np.random.default_rng(seed)
    for n in (7, 25):
        x = lab10.timing_samples(g, n)
        draws = lab10.boot_medians(x, lab10.REF_RESAMPLES, g)
        lo_ok, hi_ok = lab10.window(draws, 0.025), lab10.window(draws, 0.975)
        m, sd = np.mean(x), np.std(x, ddof=1)
        for lo, hi in [np.quantile(x, [0.25, 0.75]), (x.min(), x.max()), np.quantile(x, [0.025, 0.975]),
                       (m - 1.96 * sd / math.sqrt(n), m + 1.96 * sd / math.sqrt(n))]:
            assert not (lab10._inside(lo, lo_ok) and lab10._inside(hi, hi_ok)), (n, lo, hi)


# --- q2: shortcuts for the speedup ------------------------------------------------------------------------

def _rates(row):
    return row["images_per_step"] * row["steps_per_repeat"] / np.asarray(row["seconds"])


def one_side(a, b, level=0.95, resamples=10_000, seed=0):  # only A resampled, B's median taken as exact
    ra, rb = _rates(a), _rates(b)
    meds = np.median(np.random.default_rng(seed).choice(ra, (resamples, ra.size)), axis=1)
    lo, hi = np.quantile(meds / np.median(rb), [(1 - level) / 2, (1 + level) / 2])
    return np.median(ra) / np.median(rb), lo, hi


def divided_intervals(a, b, level=0.95, resamples=10_000, seed=0):
    _, lo_a, hi_a = SOL["median_interval"](_rates(a), level, resamples, seed)
    _, lo_b, hi_b = SOL["median_interval"](_rates(b), level, resamples, seed + 1)
    return np.median(_rates(a)) / np.median(_rates(b)), lo_a / hi_b, hi_a / lo_b


def ratio_of_means(a, b, *args):
    _, lo, hi = SOL["speedup"](a, b, *args)
    return np.mean(_rates(a)) / np.mean(_rates(b)), lo, hi


def seconds_only(a, b, *args):  # forgets that the rows process different numbers of images
    _, lo, hi = SOL["speedup"](a, b, *args)
    return np.median(b["seconds"]) / np.median(a["seconds"]), lo, hi


def unseeded_speedup(a, b, level=0.95, resamples=10_000, seed=0):
    return SOL["speedup"](a, b, level, resamples, seed=None)


@pytest.mark.parametrize("wrong, messages", [
    (lambda a, b, *r: SOL["speedup"](b, a, *r), ("how many times faster B is than A",)),
    (ratio_of_means, ("ratio of mean throughputs",)),
    (seconds_only, ("ratio of median seconds",)),
    (lambda a, b, *r: (SOL["speedup"](a, b, *r)[0],) * 3, ("zero width",)),
    (one_side, ("too narrow", "puts its ends near")),
    (divided_intervals, ("too wide", "puts its ends near")),
    (unseeded_speedup, ("same seed",)),
    (lambda a, b, *r: (a["images_per_s"]["median"] / b["images_per_s"]["median"],
                       a["images_per_s"]["ci_lo"] / b["images_per_s"]["ci_hi"],
                       a["images_per_s"]["ci_hi"] / b["images_per_s"]["ci_lo"]), ("too wide", "puts its ends near")),
    (lambda a, b, *r: (2.0, 1.5, 2.5), ("median images/s over B's",)),
])
def test_q2_shortcuts_fail(capsys, wrong, messages):
    fails(capsys, lab10.q2, wrong, *messages)


@pytest.mark.parametrize("seed", range(30))
def test_every_draw_of_q2_rejects_one_side_and_divided_intervals(seed):
    g = np.random.default_rng(seed)
    pairs = lab10.speedup_cases(g)
    for wrong in (one_side, divided_intervals):
        missed = []
        for a, b in pairs:
            draws = lab10.ratio_draws(a, b, lab10.REF_RESAMPLES, g)
            _, lo, hi = wrong(a, b, 0.95, 20_000, seed)
            missed.append(not (lab10._inside(lo, lab10.window(draws, 0.025)) and
                               lab10._inside(hi, lab10.window(draws, 0.975))))
        assert any(missed), wrong.__name__
    assert sum(a["images_per_step"] * a["steps_per_repeat"] != b["images_per_step"] * b["steps_per_repeat"]
               for a, b in pairs) >= 2  # so seconds without images fail on every draw


# --- q3: the project ----------------------------------------------------------------------------------------

FP = study.fingerprint(threads=1)


def make_row(strategy, seconds, images=8, warmup=2, fingerprint=FP, **kw):
    kw.setdefault("workers", 2)
    return study.row("pytorch", "efficientnet_b0", strategy, images_per_step=images,
                     seconds=Timing(tuple(seconds), "s", warmup), fingerprint=copy.deepcopy(fingerprint), **kw)


def noisy(g, centre, n=7, sigma=0.03):
    return centre * g.lognormal(0, sigma, n)


G = np.random.default_rng(10)
FAST = make_row("ddp", noisy(G, 0.20))          # 40 images/s
SLOW = make_row("pipeline", noisy(G, 0.30))     # about 27 images/s: clearly slower
SAME = make_row("pipeline", noisy(G, 0.20))     # indistinguishable from FAST
RATIO = lab10.reference_speedup(FAST, SLOW)[0]


def claim(faster="ddp", slower="pipeline", workers=2, speedup=RATIO):
    return dict(faster=faster, slower=slower, workers=workers, speedup=speedup)


def q3_passes(capsys, rows, c):
    ok, line = check_line(capsys, lab10.q3, rows, c)
    assert ok and line.startswith("✔"), line


def q3_fails(capsys, rows, c, *messages):
    out = failed(capsys, lab10.q3(rows, c))
    assert any(m in out for m in messages), out
    return out


def test_honest_claims_pass(capsys):
    q3_passes(capsys, [FAST, SLOW], claim())
    q3_passes(capsys, [SLOW, FAST], claim())                                     # row order does not matter
    q3_passes(capsys, [FAST, SLOW], claim(speedup=round(RATIO, 2)))
    q3_passes(capsys, [FAST, SAME], claim(None, None, speedup=None))            # no measurable difference
    q3_passes(capsys, [FAST, SAME], claim("pipeline", "ddp", speedup=None))     # names may stay


def test_the_solution_claims_what_the_data_say(capsys):
    assert SOL["make_claim"]([FAST, SLOW]) == claim()
    inverse = SOL["make_claim"]([SLOW, FAST])
    assert inverse["faster"] == "ddp" and math.isclose(inverse["speedup"], RATIO)
    assert SOL["make_claim"]([FAST, SAME])["speedup"] is None
    for rows in ([FAST, SLOW], [SLOW, FAST], [FAST, SAME], [SAME, FAST]):
        q3_passes(capsys, rows, SOL["make_claim"](rows))


def edited(row, path, value):
    r = copy.deepcopy(row)
    target = r
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return r


@pytest.mark.parametrize("rows, messages", [
    ([make_row("ddp", noisy(G, 0.2), fingerprint=None), SLOW], ("no fingerprint",)),
    ([edited(FAST, ("fingerprint", "cpu"), "AMD EPYC 7763 64-Core Processor"), SLOW], ("different environments",)),
    ([edited(FAST, ("fingerprint", "torch"), "1.13.1"), SLOW], ("different environments", "torch")),
    ([edited(FAST, ("fingerprint", "cpu"), "Another CPU"), edited(SLOW, ("fingerprint", "cpu"), "Another CPU")],
     ("not this machine's",)),
    ([edited(FAST, ("fingerprint", "cores"), 128), edited(SLOW, ("fingerprint", "cores"), 128)],
     ("not this machine's",)),
    ([edited(FAST, ("images_per_s", "median"), 60.0), SLOW], ("typed in",)),
    ([edited(FAST, ("images_per_s", "ci_lo"), 39.0), SLOW], ("typed in",)),
    ([FAST, edited(SLOW, ("images_per_s", "ci_hi"), "40")], ("typed in",)),
    ([make_row("ddp", noisy(G, 0.2, n=4)), SLOW], ("at least 5",)),
    ([edited(FAST, ("repeats",), 9), SLOW], ("at least 5", "repeats = 9")),
    ([make_row("ddp", noisy(G, 0.2), warmup=0), SLOW], ("warm-up",)),
    ([make_row("ddp", noisy(G, 0.2), workers=1), SLOW], ("differ in workers",)),
    ([edited(FAST, ("model",), "resnet50"), SLOW], ("differ in model",)),
    ([FAST, edited(SLOW, ("strategy",), "ddp")], ("both rows are",)),
    ([FAST, SLOW, SAME], ("exactly the two",)),
    ([FAST], ("exactly the two",)),
    ([FAST, edited(SLOW, ("seconds",), [])], ("at least 5",)),
    ([FAST, {k: v for k, v in SLOW.items() if k != "fingerprint"}], ("has no fingerprint",)),
])
def test_q3_fabricated_or_careless_rows_fail(capsys, rows, messages):
    q3_fails(capsys, rows, claim(), *messages)


@pytest.mark.parametrize("rows, c, messages", [
    ([FAST, SLOW], claim(speedup=RATIO * 1.5), ("outside what your data support",)),
    ([FAST, SLOW], claim(speedup=1.0), ("does not make 'ddp' faster",)),
    ([FAST, SLOW], claim(speedup=RATIO * 0.9), ("outside what your data support",)),
    ([FAST, SLOW], claim("pipeline", "ddp"), ("upside down",)),
    ([FAST, SLOW], claim("pipeline", "ddp", speedup=1 / RATIO), ("upside down",)),
    ([FAST, SLOW], claim(None, None, speedup=None), ("no measurable difference, but",)),
    ([FAST, SAME], claim(speedup=1.05), ("includes 1",)),
    ([FAST, SAME], claim("pipeline", "ddp", speedup=1.05), ("includes 1", "upside down")),
    ([FAST, SLOW], claim(workers=1), ("both rows ran 2 workers",)),
    ([FAST, SLOW], claim(faster="horovod"), ("name one of the rows' strategies",)),
    ([FAST, SLOW], claim(slower="ddp"), ("both 'ddp'",)),
    ([FAST, SLOW], {"faster": "ddp", "speedup": 1.5}, ("claim has no slower, workers",)),
    ([FAST, SLOW], "ddp is faster", ("claim is a str",)),
])
def test_q3_unsupported_claims_fail(capsys, rows, c, messages):
    q3_fails(capsys, rows, c, *messages)


# --- odd answers never raise ----------------------------------------------------------------------------

class Weird:
    def __len__(self):
        raise RuntimeError("no length")

    def __iter__(self):
        raise RuntimeError("no iteration")

    def __float__(self):
        raise RuntimeError("no float")


ODD_TRIPLES = [None, 1.0, float("nan"), "0.1 0.09 0.11", (1, 2), (1, 2, 3, 4), [None] * 3, ("a", "b", "c"),
               (float("nan"),) * 3, (float("inf"), 0, 1), (True, False, True), np.zeros((3, 3)), np.zeros(2),
               {"median": 1}, Weird(), (Weird(), 1, 2), object(), (10**400, 1, 2), (1 + 2j, 1, 2)]


def test_odd_returns_give_one_line(capsys):
    try:
        import torch
        extra = [torch.tensor([0.1, 0.09, 0.11]), (torch.tensor(0.1), torch.tensor([1.0, 2.0]), 3)]
    except ImportError:  # pragma: no cover
        extra = []
    for q in (lab10.q1, lab10.q2):
        every_answer_gives_one_line(capsys, q, [lambda *a, v=v: v for v in ODD_TRIPLES + extra])
        every_answer_gives_one_line(capsys, q, [None, 3, "median_interval", lambda: 0, lambda *a: 1 / 0,
                                                lambda *a: a[0].nonexistent])


ODD_ROWS = [None, 3, "rows", {"a": 1}, [None, None], [{}, {}], [FAST, None], [FAST, "SLOW"], (FAST, 1),
            [FAST, edited(SLOW, ("seconds",), "fast")], [FAST, edited(SLOW, ("seconds",), [float("nan")] * 7)],
            [FAST, edited(SLOW, ("seconds",), [-1.0] * 7)], [FAST, edited(SLOW, ("seconds",), [True] * 7)],
            [FAST, edited(SLOW, ("images_per_s",), None)], [FAST, edited(SLOW, ("images_per_s",), {"median": 1})],
            [FAST, edited(SLOW, ("workers",), "2")], [FAST, edited(SLOW, ("warmup",), None)],
            [FAST, edited(SLOW, ("images_per_step",), 0)], [FAST, edited(SLOW, ("fingerprint",), "here")],
            [FAST, edited(SLOW, ("fingerprint",), {"cpu": "x"})], [FAST, edited(SLOW, ("framework",), ["x"])],
            [FAST, edited(SLOW, ("images_per_s", "median"), float("nan"))], [Weird(), Weird()], Weird()]
ODD_CLAIMS = [None, 1, "x", [], {"faster": "ddp"}, claim(speedup="fast"), claim(speedup=float("nan")),
              claim(speedup=-2.0), claim(speedup=True), claim(speedup=object()), claim(workers=True),
              claim(workers="2"), claim(faster=["ddp"]), claim(faster={"a": 1}), claim(speedup=float("inf")),
              claim(speedup=10**400), claim(speedup=np.array([1.5, 2.0])), claim(None, None, speedup=1.5)]


def test_odd_projects_give_one_line(capsys):
    for rows in ODD_ROWS:
        ok, line = check_line(capsys, lab10.q3, rows, claim())
        assert not ok and line.startswith("✘") and "could not be checked" not in line, (rows, line)
    for c in ODD_CLAIMS:
        ok, line = check_line(capsys, lab10.q3, [FAST, SLOW], c)
        assert not ok and line.startswith("✘") and "could not be checked" not in line, (c, line)


def test_q3_needs_both_rows_and_claim_to_be_not_done(capsys):
    failed(capsys, lab10.q3([], {}), "not done yet")
    failed(capsys, lab10.q3(None), "not done yet")
    failed(capsys, lab10.q3([], claim()), "exactly the two")
    failed(capsys, lab10.q3([FAST, SLOW], {}), "claim has no")


# --- the real harness --------------------------------------------------------------------------------------

@pytest.mark.timeout(600)
def test_rows_from_the_real_harness_pass_with_the_solutions_claim(capsys):
    """Two short one-worker launches of notebooks/scripts/benchmark.py: its rows pass the method checks as
    they come, and the claim the solution derives from them is accepted; an edited copy is not."""
    run = SOL["run"]
    rows = [run("efficientnet_b0", s, 1, batch=2, steps=1, warmup=1, repeats=5, timeout=300) for s in ("single", "ddp")]
    q3_passes(capsys, rows, SOL["make_claim"](rows))
    q3_fails(capsys, [edited(rows[0], ("images_per_s", "median"), rows[0]["images_per_s"]["median"] * 2), rows[1]],
             SOL["make_claim"](rows), "typed in")


def _commits(n=40):
    import subprocess
    out = subprocess.run(["git", "log", "--format=%h", f"-{n}"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.split()


def test_a_course_commit_that_changed_nothing_measured_may_differ_between_rows(capsys):
    commits = _commits()
    pair = next(((a, b) for a, b in zip(commits, commits[1:]) if lab10.same_harness(a, b)), None)
    if pair is None:
        pytest.skip("no two recent commits with the same harness files")
    rows = [edited(FAST, ("fingerprint", "course_commit"), pair[0]),
            edited(SLOW, ("fingerprint", "course_commit"), pair[1])]
    q3_passes(capsys, rows, claim())


def test_a_course_commit_that_changed_the_harness_may_not(capsys):
    before = "52d3047"  # bench + study only: the harness scripts did not exist yet
    if not lab10.same_harness(before, before):
        pytest.skip("that commit is not in this history")
    assert not lab10.same_harness(FP["course_commit"], before)
    q3_fails(capsys, [edited(FAST, ("fingerprint", "course_commit"), before), SLOW], claim(),
             "different environments")
    q3_fails(capsys, [edited(FAST, ("fingerprint", "course_commit"), "unknown"), SLOW], claim(),
             "different environments")
    assert not lab10.same_harness("HEAD; rm -rf x", FP["course_commit"])
