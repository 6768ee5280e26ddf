"""Checks for lab 10: a benchmarking mini-project — the interval of a median, a speedup with its
interval, and a claim that the student's own fingerprinted measurements support.

    from course_utils.labs import lab10 as check
    check.q1(median_interval)   # median_interval(samples, level, resamples, seed) -> (median, lo, hi)
    check.q2(speedup)           # speedup(row_a, row_b, level, resamples, seed) -> (ratio, lo, hi)
    check.q3(rows, claim)       # the two result rows of the project and the claim about them

**q1** calls the student's function on hidden timing-like samples (right-skewed, with slow outliers,
7 to 25 repeats, levels 0.95, 0.9 and 0.8) with ``resamples=20_000``. The median must be the samples'
median; each end of the interval must lie where a percentile bootstrap of the median puts that
quantile: between the reference's (1 − level)/2 ∓ 0.01 quantiles of 100 000 bootstrap medians (the
Monte-Carlo error of 20 000 resamples is about a tenth of that). The range (min, max), the quartiles,
the samples' own quantiles, mean ± z·sd and a bootstrap of the mean all fall outside on every draw
(n = 7 and n = 25 are always among the hidden sizes: there the quartiles never pass). The same seed
must give the same interval twice (probed with 100 resamples: bootstrap quantiles of a median are sample
values, so with many resamples an unseeded function would often repeat itself by chance).

**q2**: the speedup of A over B is the ratio of median throughputs,
``median(images_A / seconds_A) / median(images_B / seconds_B)`` with images = ``images_per_step ×
steps_per_repeat`` of that row — how many times more images per second A trains than B (with an odd
number of repeats it equals ``images_A · median(seconds_B) / (images_B · median(seconds_A))``). Its
interval resamples each row's repeats on its own (they are independent measurements) and takes the
percentiles of the ratio of the resampled medians; judged as in q1. The hidden rows (``study.row``)
have odd repeat counts, speedups far from 1 and often different images per repeat, so the inverted
ratio, a ratio of means, seconds without images, no interval, resampling one side only and dividing
the two rows' intervals all fail.

**q3** judges method, not numbers: the two rows made by the course harness (``study.row``), the same
framework, model and workers, two strategies; at least ``MIN_WARMUP`` warm-up and ``MIN_REPEATS``
timed repeats; the median and the interval in each row equal what its raw seconds give (typed-in or
edited statistics fail); fingerprints present, equal across the rows (``study.check_comparable``; the
course commit alone may differ when git shows that nothing the harness runs changed between the two
commits — ``same_harness``) and equal to this machine's (``study.fingerprint``, compared on
``MACHINE_KEYS``: versions, Python, CPU, cores, GPU and driver — so rows copied from another machine
fail); and the claim consistent with the raw data: the right direction, the claimed speedup above 1
and inside the 95 % interval of the ratio, "faster" only when that interval excludes 1, "no measurable
difference" (``speedup=None``) only when it includes 1 (near the edges, where Monte-Carlo noise
decides, both are accepted). A student who types in raw seconds could still fabricate a study: the
check judges the method, not honesty.
"""
from __future__ import annotations

import copy
import math
import subprocess
from statistics import NormalDist

import numpy as np

from course_utils import study
from course_utils.bench import Timing
from course_utils.labs import NotDone, Wrong, call, exercise, expect_tuple, rng

RESAMPLES = 20_000          # what the checks ask the student's functions for
REF_RESAMPLES = 100_000     # the reference's bootstrap distribution
PROBE_RESAMPLES = 100       # two calls with one seed must agree: with few resamples, unseeded ones never do
SLACK = 0.01                # in probability: an end may sit between the p − SLACK and p + SLACK quantiles
MIN_WARMUP, MIN_REPEATS = 1, 5
MACHINE_KEYS = ("python", "platform", "cpu", "cores", "gpu", "driver", *study.PACKAGES)
HARNESS_PATHS = tuple(f"notebooks/scripts/{name}.py" for name in ("benchmark", "bench_torch", "bench_keras")) + tuple(
    f"course_utils/{name}.py" for name in ("__init__", "bench", "study", "dist", "processes", "data", "memory", "env"))
ROW_KEYS = ("framework", "model", "strategy", "workers", "images_per_step", "steps_per_repeat", "warmup",
            "repeats", "seconds", "images_per_s", "fingerprint")


# --- references --------------------------------------------------------------------------------------

ANSWER_HELPERS = ("boot_medians", "ratio_draws")  # exercise answers besides reference_* (see labs.call)


def boot_medians(values, resamples: int, g: np.random.Generator) -> np.ndarray:
    """The median of each of ``resamples`` samples drawn with replacement, of the same size."""
    values = np.asarray(values, dtype=float)
    return np.median(g.choice(values, size=(resamples, values.size), replace=True), axis=1)


def reference_interval(samples, level=0.95, resamples=10_000, seed=0):
    """(median, lo, hi): the percentile bootstrap of the median, as ``course_utils.bench.bootstrap_ci``."""
    medians = boot_medians(samples, resamples, np.random.default_rng(seed))
    lo, hi = np.quantile(medians, [(1 - level) / 2, (1 + level) / 2])
    return float(np.median(samples)), float(lo), float(hi)


def rates(row) -> np.ndarray:
    """Images per second of each timed repeat of a result row."""
    return row["images_per_step"] * row["steps_per_repeat"] / np.asarray(row["seconds"], dtype=float)


def ratio_draws(row_a, row_b, resamples: int, g: np.random.Generator) -> np.ndarray:
    """Bootstrap ratios of median throughput, A over B, each row's repeats resampled on their own."""
    return boot_medians(rates(row_a), resamples, g) / boot_medians(rates(row_b), resamples, g)


def reference_speedup(row_a, row_b, level=0.95, resamples=10_000, seed=0):
    """(ratio, lo, hi): how many times more images/s A trains than B, and its bootstrap interval."""
    ratio = float(np.median(rates(row_a)) / np.median(rates(row_b)))
    lo, hi = np.quantile(ratio_draws(row_a, row_b, resamples, np.random.default_rng(seed)),
                         [(1 - level) / 2, (1 + level) / 2])
    return ratio, float(lo), float(hi)


def window(draws, q: float) -> tuple[float, float]:
    """Where a Monte-Carlo estimate of the q quantile of ``draws`` may land: the q ∓ SLACK quantiles."""
    lo, hi = np.quantile(draws, [max(q - SLACK, 0.0), min(q + SLACK, 1.0)])
    return float(lo), float(hi)


def _inside(value, bounds) -> bool:
    tol = 1e-9 * max(1.0, abs(bounds[0]), abs(bounds[1]))
    return bounds[0] - tol <= value <= bounds[1] + tol


# --- reading answers ---------------------------------------------------------------------------------

def _number(v, what) -> float:
    if isinstance(v, (bool, np.bool_, str, bytes)) or v is None:
        raise Wrong(f"{what} is {_short(v)}, expected a number")
    if hasattr(v, "detach"):
        v = v.detach().cpu()
    try:
        x = float(v)
    except Exception:
        raise Wrong(f"{what} is a {type(v).__name__}, expected a number") from None
    if not math.isfinite(x):
        raise Wrong(f"{what} is {x}, expected a finite number")
    return x


def read_triple(value, where: str, names=("median", "lo", "hi")) -> tuple[float, float, float]:
    """Three finite numbers (centre, lo, hi) with lo <= hi, or Wrong."""
    if value is None:
        raise Wrong(f"{where} returned None — did you forget `return`?")
    if isinstance(value, np.ndarray) and value.shape == (3,):
        value = value.tolist()
    expect_tuple(value, where, 3)
    got = tuple(_number(v, f"{where}: the {n}") for v, n in zip(value, names))
    if got[1] > got[2]:
        raise Wrong(f"{where} returned lo = {got[1]:.4g} > hi = {got[2]:.4g}: the ends are swapped")
    return got


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _near(a, b, rtol=1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12)


def _pair_near(got, ref, rtol=1e-3) -> bool:
    return _near(got[0], ref[0], rtol) and _near(got[1], ref[1], rtol)


# --- q1: the interval of a median --------------------------------------------------------------------

def timing_samples(g: np.random.Generator, n: int) -> np.ndarray:
    """Seconds per repeat as a busy machine gives them: lognormal jitter and one or two slow outliers."""
    x = g.uniform(0.02, 2.0) * g.lognormal(0.0, g.uniform(0.03, 0.15), n)
    slow = g.choice(n, int(g.integers(1, 3)), replace=False)
    x[slow] *= g.uniform(1.5, 4.0, slow.size)
    return x


def _level_matters(x, level, g) -> bool:
    """True when no end of the 95 % interval could pass for an end at ``level`` (their windows are apart)."""
    draws, p = boot_medians(x, REF_RESAMPLES, g), (1 - level) / 2
    return any(window(draws, q)[1] < window(draws, q95)[0] or window(draws, q95)[1] < window(draws, q)[0]
               for q, q95 in ((p, 0.025), (1 - p, 0.975)))


def interval_cases(g: np.random.Generator) -> list[tuple[np.ndarray, float]]:
    """(samples, level): n = 7 and 25 at 0.95, an odd and an even size between at 0.9 and 0.8, shuffled.
    The 0.9 and 0.8 samples are drawn until their interval differs from the 95 % one (ignoring the level
    must fail: with few, discrete samples the quantiles of the bootstrap medians can coincide)."""
    cases = [(timing_samples(g, 7), 0.95), (timing_samples(g, 25), 0.95)]
    for sizes, level in ((np.arange(9, 24, 2), 0.9), (np.arange(8, 25, 2), 0.8)):
        while True:
            x = timing_samples(g, int(g.choice(sizes)))
            if _level_matters(x, level, g):
                break
        cases.append((x, level))
    return [cases[k] for k in g.permutation(len(cases))]


def _diagnose_interval(lo, hi, x, level) -> str:
    """What a wrong interval looks like, if it is one of the usual shortcuts ("" if none)."""
    p = (1 - level) / 2
    m, sd, n = float(np.mean(x)), float(np.std(x, ddof=1)), len(x)
    z = NormalDist().inv_cdf(1 - p)
    known = [((x.min(), x.max()), "that is the range of the samples (min, max)"),
             (tuple(np.quantile(x, [p, 1 - p])), "those are quantiles of the samples themselves: how much one "
              "repeat varies, not how well the median is known"),
             (tuple(np.quantile(x, [0.25, 0.75])), "that is the interquartile range of the samples"),
             ((m - z * sd / math.sqrt(n), m + z * sd / math.sqrt(n)), "that is mean ± z·sd/√n, a normal-theory "
              "interval of the mean"),
             ((m - z * sd, m + z * sd), "that is mean ± z·sd, the spread of single repeats")]
    for ends, why in known:
        if _pair_near((lo, hi), ends):
            return why
    if _near(lo, hi):
        return "an interval of zero width: draw each resample with replacement"
    return ""


@exercise("q1 median_interval", hint=(
    "the interval says how well the median of these repeats is known: resample the repeats with replacement "
    "many times, take the median of each resample, and read the interval off the spread of those medians",
    "make a generator from the seed; draw resamples samples of the same size as the data, with replacement; "
    "take the median of each; the ends are the (1 − level)/2 and (1 + level)/2 quantiles of those medians, and "
    "the first value is the data's own median"))
def q1(median_interval):
    g = rng()
    for x, level in interval_cases(g):
        seed = int(g.integers(2**31))
        where = f"median_interval({len(x)} samples, level={level}, resamples={RESAMPLES}, seed={seed})"
        got = read_triple(call(median_interval, [float(v) for v in x], level, RESAMPLES, seed, what=where), where)
        median = float(np.median(x))
        if not _near(got[0], median, 1e-9):
            why = (" — that is the mean; an outlier pulls the mean, not the median"
                   if _near(got[0], np.mean(x)) else "")
            raise Wrong(f"{where}: the median is {got[0]:.6g}, the samples' median is {median:.6g}{why}")
        draws = boot_medians(x, REF_RESAMPLES, g)
        p = (1 - level) / 2
        lo_ok, hi_ok = window(draws, p), window(draws, 1 - p)
        if not (_inside(got[1], lo_ok) and _inside(got[2], hi_ok)):
            at_95 = level != 0.95 and _inside(got[1], window(draws, 0.025)) and _inside(got[2], window(draws, 0.975))
            found = ["that is the 95 % interval: use the level argument"] if at_95 else []
            found += [d for d in [_diagnose_interval(got[1], got[2], x, level)] if d]  # samples can make two coincide
            why = " — " + "; or ".join(found) if found else ""
            if not why:
                means = boot_means(x, g)
                if _inside(got[1], window(means, p)) and _inside(got[2], window(means, 1 - p)):
                    why = " — that is a bootstrap interval of the mean: take the median of each resample"
            raise Wrong(f"{where} returned the interval ({got[1]:.4g}, {got[2]:.4g}); a percentile bootstrap of "
                        f"the median puts its ends near ({np.quantile(draws, p):.4g}, "
                        f"{np.quantile(draws, 1 - p):.4g}){why}")
        probe = [read_triple(call(median_interval, [float(v) for v in x], level, PROBE_RESAMPLES, seed, what=where),
                             where) for _ in range(2)]
        if probe[0] != probe[1]:
            raise Wrong(f"{where}: two calls with the same seed (and resamples={PROBE_RESAMPLES}) gave different "
                        "intervals — draw the resamples from np.random.default_rng(seed), so a result can be "
                        "reproduced")
    return ("the median and a percentile-bootstrap interval of it, right on hidden skewed samples with outliers "
            "(7 to 25 repeats, three levels), reproducible with the seed")


def boot_means(values, g: np.random.Generator) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return g.choice(values, size=(REF_RESAMPLES, values.size), replace=True).mean(axis=1)


# --- q2: a speedup and its interval ------------------------------------------------------------------

def hidden_row(g, strategy: str, speed: float, workers: int = 2) -> dict:
    """A result row (``study.row``) of ``speed`` images/s, odd repeats, skewed noise and an outlier."""
    images, steps = int(g.choice([8, 16, 32, 64])), int(g.choice([1, 2, 5]))
    n = int(g.choice([5, 7, 9, 11]))
    seconds = images * steps / speed * g.lognormal(0.0, g.uniform(0.04, 0.1), n)
    seconds[int(g.integers(n))] *= g.uniform(1.3, 2.5)
    return study.row("pytorch", "resnet50", strategy, workers=workers, images_per_step=images,
                     seconds=Timing(tuple(seconds), "s", 2), steps_per_repeat=steps)


def speedup_cases(g) -> list[tuple[dict, dict]]:
    """Pairs of rows; A is 1.3–3× faster or slower than B; at least two pairs differ in images per repeat."""
    while True:
        pairs = []
        for k in range(4):
            factor = g.uniform(1.3, 3.0) ** (1 if k % 2 else -1)
            base = g.uniform(20, 400)
            pairs.append((hidden_row(g, "ddp", base * factor), hidden_row(g, "pipeline", base)))
        if sum(a["images_per_step"] * a["steps_per_repeat"] != b["images_per_step"] * b["steps_per_repeat"]
               for a, b in pairs) >= 2:
            return pairs


def _diagnose_ratio(got, a, b, ref) -> str:
    ra, rb = rates(a), rates(b)
    sa, sb = np.asarray(a["seconds"]), np.asarray(b["seconds"])
    known = [(1 / ref, "that is how many times faster B is than A: A's throughput goes on top"),
             (float(np.mean(ra) / np.mean(rb)), "that is a ratio of mean throughputs: an outlier moves a mean, "
              "use the medians"),
             (float(np.median(sb) / np.median(sa)), "that is a ratio of median seconds: the rows process different "
              "numbers of images per repeat (images_per_step × steps_per_repeat) — compare images per second"),
             (float(np.median(sa) / np.median(sb)), "that is a ratio of median seconds, upside down — compare "
              "images per second"),
             (float(np.mean(sb) / np.mean(sa)), "that is a ratio of mean seconds — compare median images per second")]
    for value, why in known:
        if _near(got, value, 1e-6):
            return f" — {why}"
    return ""


@exercise("q2 speedup", hint=(
    "how many times faster A is: its median images per second over B's; the uncertainty comes from both rows, "
    "so resample each row's repeats on its own and look at the spread of the ratio",
    "turn each row's seconds into images per second (images per step × steps per repeat, over each repeat's "
    "seconds); the speedup is the ratio of the two medians; for the interval, resample each row's rates with "
    "replacement on its own, take the ratio of the two medians each time, and read off the quantiles"))
def q2(speedup):
    g = rng()
    for a, b in speedup_cases(g):
        seed = int(g.integers(2**31))
        where = (f"speedup(row A: {a['repeats']} repeats of {a['images_per_step'] * a['steps_per_repeat']} images, "
                 f"row B: {b['repeats']} repeats of {b['images_per_step'] * b['steps_per_repeat']} images, "
                 f"level=0.95, resamples={RESAMPLES}, seed={seed})")
        got = read_triple(call(speedup, copy.deepcopy(a), copy.deepcopy(b), 0.95, RESAMPLES, seed, what=where), where,
                          ("ratio", "lo", "hi"))
        ratio = float(np.median(rates(a)) / np.median(rates(b)))
        if not _near(got[0], ratio, 1e-6):
            raise Wrong(f"{where}: the speedup is {got[0]:.4g}; A's median images/s over B's is {ratio:.4g}"
                        + _diagnose_ratio(got[0], a, b, ratio))
        draws = ratio_draws(a, b, REF_RESAMPLES, g)
        lo_ok, hi_ok = window(draws, 0.025), window(draws, 0.975)
        if not (_inside(got[1], lo_ok) and _inside(got[2], hi_ok)):
            if _near(got[1], got[2]):
                why = " — an interval of zero width: resample the repeats"
            elif got[1] < lo_ok[0] and got[2] > hi_ok[1]:
                why = (" — too wide: dividing the ends of the two rows' intervals (lo_A/hi_B, hi_A/lo_B) assumes "
                       "both are off in opposite directions at once; resample the ratio itself")
            elif got[1] > lo_ok[1] and got[2] < hi_ok[0]:
                why = " — too narrow: both rows are measurements that vary; resample each of them"
            else:
                why = ""
            raise Wrong(f"{where} returned the interval ({got[1]:.4g}, {got[2]:.4g}); a bootstrap of the ratio "
                        f"(both rows resampled) puts its ends near ({np.quantile(draws, 0.025):.4g}, "
                        f"{np.quantile(draws, 0.975):.4g}){why}")
        probe = [read_triple(call(speedup, copy.deepcopy(a), copy.deepcopy(b), 0.95, PROBE_RESAMPLES, seed,
                                  what=where), where, ("ratio", "lo", "hi")) for _ in range(2)]
        if probe[0] != probe[1]:
            raise Wrong(f"{where}: two calls with the same seed (and resamples={PROBE_RESAMPLES}) gave different "
                        "intervals — draw from np.random.default_rng(seed), so a result can be reproduced")
    return ("A's median images/s over B's and a bootstrap interval with both rows resampled, right on hidden rows "
            "(different batch sizes and repeat counts, A faster and slower)")


# --- q3: the project --------------------------------------------------------------------------------

def _row_problem(i: int, r) -> str | None:
    """Why row ``i`` is not a result row of the course harness, or None."""
    if not isinstance(r, dict):
        return f"row {i} is a {type(r).__name__}, expected a result row (the dict that run(...) returns)"
    missing = [k for k in ROW_KEYS if k not in r]
    if missing:
        return f"row {i} has no {', '.join(missing)}: pass the rows as the harness (course_utils.study.row) makes them"
    for key in ("framework", "model", "strategy"):
        if not isinstance(r[key], str):
            return f"row {i}: {key} is {_short(r[key])}, expected a name (str)"
    for key in ("workers", "images_per_step", "steps_per_repeat", "warmup", "repeats"):
        v = r[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if key == "warmup" else 1):
            return f"row {i}: {key} is {v!r}, expected a whole number"
    if not isinstance(r["images_per_s"], dict) or not {"median", "ci_lo", "ci_hi"} <= set(r["images_per_s"]):
        return f"row {i}: images_per_s has no median, ci_lo and ci_hi — the statistics of the row are missing"
    s = r["seconds"]
    if not isinstance(s, (list, tuple)) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   and math.isfinite(v) and v > 0 for v in s):
        return f"row {i}: seconds should be the list of per-repeat times (positive numbers)"
    return None


def _label(r) -> str:
    return f"{r['strategy']} ({r['workers']} worker{'s' if r['workers'] != 1 else ''})"


def same_harness(commit_a, commit_b) -> bool:
    """True when git knows both course commits and none of the files a measurement runs (``HARNESS_PATHS``:
    the harness scripts and the course_utils modules they use) differs between them; False otherwise."""
    if not all(isinstance(c, str) and c.isalnum() for c in (commit_a, commit_b)):
        return False
    try:
        done = subprocess.run(["git", "diff", "--quiet", commit_a, commit_b, "--", *HARNESS_PATHS], cwd=study.ROOT,
                              capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def check_method(rows) -> list[dict]:
    """The two rows, checked for method; Wrong with the first problem found."""
    if not isinstance(rows, (list, tuple)):
        raise Wrong(f"rows is a {type(rows).__name__}: pass a list of the two result rows your claim compares")
    if len(rows) != 2:
        raise Wrong(f"rows has {len(rows)} rows: pass exactly the two result rows your claim compares")
    for i, r in enumerate(rows):
        problem = _row_problem(i, r)
        if problem:
            raise Wrong(problem)
    a, b = rows
    for key in ("framework", "model", "workers"):
        if a[key] != b[key]:
            raise Wrong(f"the rows differ in {key} ({a[key]!r} vs {b[key]!r}): compare two strategies with the same "
                        "framework, model and number of workers, so the strategy is the only difference")
    if a["strategy"] == b["strategy"]:
        raise Wrong(f"both rows are {a['strategy']!r}: the project compares two different strategies")
    for i, r in enumerate(rows):
        if r["warmup"] < MIN_WARMUP:
            raise Wrong(f"row {i} ({_label(r)}) had {r['warmup']} warm-up repeats: the first steps pay for memory "
                        f"allocation and lazy set-up — run at least {MIN_WARMUP} untimed (the harness's default "
                        "is 2)")
        if r["repeats"] < MIN_REPEATS or len(r["seconds"]) != r["repeats"]:
            raise Wrong(f"row {i} ({_label(r)}) has {len(r['seconds'])} timed repeats (repeats = {r['repeats']}): "
                        f"a median and an interval need at least {MIN_REPEATS}")
    for i, r in enumerate(rows):
        stats = Timing(tuple(rates(r))).to_dict()
        for key, name in (("median", "median"), ("ci_lo", "interval's low end"), ("ci_hi", "interval's high end")):
            v = r["images_per_s"][key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not _near(float(v), stats[key], 1e-9):
                raise Wrong(f"row {i} ({_label(r)}): its {name} is {v!r} images/s, but its own seconds give "
                            f"{stats[key]:.6g} — the statistics must come from the raw samples, not be typed in")
    for i, r in enumerate(rows):
        if not isinstance(r["fingerprint"], dict) or not r["fingerprint"]:
            raise Wrong(f"row {i} ({_label(r)}) has no fingerprint: nothing says where it was measured — "
                        "measure it with the harness")
    try:
        if set(study.differences(a["fingerprint"], b["fingerprint"])) != {"course_commit"} or not same_harness(
                a["fingerprint"]["course_commit"], b["fingerprint"]["course_commit"]):
            study.check_comparable(rows)
    except study.FingerprintMismatch as err:
        what = str(err).split(" — ", 1)[-1].split(". ")[0]
        raise Wrong(f"the rows were measured in different environments: {what}") from None
    here = study.fingerprint(threads=a["fingerprint"].get("threads_per_worker"))
    diff = {k: v for k, v in study.differences(a["fingerprint"], here).items() if k in MACHINE_KEYS}
    if diff:
        what = "; ".join(f"{k}: {x!r} in the rows, {y!r} here" for k, (x, y) in diff.items())
        raise Wrong(f"the rows' fingerprint is not this machine's ({what}): measure here, or check where you measured")
    return list(rows)


def check_claim(rows, claim) -> str:
    """Is the claim what the two rows' raw seconds support? Returns a description; Wrong otherwise."""
    if not isinstance(claim, dict):
        raise Wrong(f"claim is a {type(claim).__name__}: write claim = dict(faster=..., slower=..., workers=..., "
                    "speedup=...)")
    missing = [k for k in ("faster", "slower", "workers", "speedup") if k not in claim]
    if missing:
        raise Wrong(f"claim has no {', '.join(missing)}: dict(faster=..., slower=..., workers=..., speedup=...)")
    workers = rows[0]["workers"]
    if isinstance(claim["workers"], bool) or claim["workers"] != workers:
        raise Wrong(f"claim['workers'] is {claim['workers']!r}, but both rows ran {workers} workers")
    by_name = {r["strategy"]: r for r in rows}
    names = " and ".join(repr(n) for n in by_name)
    s = claim["speedup"]
    if s is None:  # "no measurable difference"
        for key in ("faster", "slower"):
            if claim[key] is not None and (not isinstance(claim[key], str) or claim[key] not in by_name):
                raise Wrong(f"claim[{key!r}] is {_short(claim[key])}: name one of the rows' strategies, {names} "
                            "(or None)")
        a, b = rows
        draws = ratio_draws(a, b, REF_RESAMPLES, np.random.default_rng(0))
        if window(draws, 0.025)[0] > 1 or window(draws, 0.975)[1] < 1:
            ratio, lo, hi = reference_speedup(a, b)
            fast, slow, r, l, h = ((a, b, ratio, lo, hi) if ratio > 1 else (b, a, 1 / ratio, 1 / hi, 1 / lo))
            raise Wrong(f"you claim no measurable difference, but your data say {_label(fast)} is {r:.3g}× as fast as "
                        f"{_label(slow)} (95 % interval {l:.3g}–{h:.3g}, 1 is outside it): claim that")
        return "no measurable difference"
    for key in ("faster", "slower"):
        if not isinstance(claim[key], str) or claim[key] not in by_name:
            raise Wrong(f"claim[{key!r}] is {_short(claim[key])}: name one of the rows' strategies, {names}")
    if claim["faster"] == claim["slower"]:
        raise Wrong(f"claim['faster'] and claim['slower'] are both {claim['faster']!r}")
    s = _number(s, "claim['speedup']")
    fast, slow = by_name[claim["faster"]], by_name[claim["slower"]]
    ratio, lo, hi = reference_speedup(fast, slow)
    draws = ratio_draws(fast, slow, REF_RESAMPLES, np.random.default_rng(0))
    (lo_a, lo_b), (hi_a, hi_b) = window(draws, 0.025), window(draws, 0.975)
    said = f"your data: {_label(fast)} / {_label(slow)} = {ratio:.3g}× (95 % interval {lo:.3g}–{hi:.3g})"
    if hi_a < 1:
        raise Wrong(f"the claim is upside down: {claim['slower']!r} is the faster one — {said}")
    if lo_b <= 1:
        raise Wrong(f"{said}: the interval includes 1, so these repeats cannot tell the two apart — claim no "
                    "measurable difference (speedup=None), or measure more repeats")
    if s <= 1:
        raise Wrong(f"a speedup of {s:.3g}× does not make {claim['faster']!r} faster — {said}")
    if not (lo_a * (1 - 1e-9) <= s <= hi_b * (1 + 1e-9)):
        raise Wrong(f"you claim {s:.3g}×, outside what your data support — {said}")
    return "faster"


@exercise("q3 project", hint=(
    "a benchmark claim is only as good as its method: warm-up, enough repeats, statistics computed from the raw "
    "times, both rows measured here in one environment, and a claim that stays inside the interval of the ratio",
    "pass the two rows exactly as the harness returned them (warm-up and at least 5 repeats, nothing edited); "
    "take your speedup of one over the other: when its whole interval is above 1 that one is faster by the "
    "ratio, when it is below 1 the other one is, and when it contains 1 claim a speedup of None"))
def q3(rows, claim=None):
    if (rows is None or (isinstance(rows, (list, tuple)) and len(rows) == 0)) and not claim:
        raise NotDone
    rows = check_method(rows)
    check_claim(rows, claim)
    return ("warm-up done, enough repeats, median and interval recomputed from the raw seconds, fingerprints "
            "present, equal and this machine's, and the claim is what the data support")
