"""The benchmark study (lesson 17, issue 12): the statistics of course_utils.bench on known samples,
course_utils.study's fingerprints, refusals and files, and the harness (notebooks/scripts/benchmark.py
and bench_torch.py) on tiny configurations."""
import csv
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from course_utils import study
from course_utils.bench import Timing, bootstrap_ci, trimmed_mean

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "notebooks" / "scripts"
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def scripts_on_path():
    sys.path.insert(0, str(SCRIPTS))
    yield
    sys.path.remove(str(SCRIPTS))


# --- course_utils.bench: trimmed mean and bootstrap interval ---------------------------------------

def test_trimmed_mean_by_hand():
    samples = [4.0, 100.0, 1.0, 3.0, 2.0]  # sorted: 1 2 3 4 100
    assert trimmed_mean(samples) == pytest.approx((2 + 3 + 4) / 3)  # drop 1 and 100
    assert trimmed_mean(samples, drop=2) == 3.0  # only the middle one left
    assert trimmed_mean(samples, drop=0) == pytest.approx(22.0)  # the plain mean, pulled up by 100
    assert trimmed_mean([5.0, 1.0, 9.0, 2.0, 8.0, 7.0]) == pytest.approx((2 + 5 + 7 + 8) / 4)
    assert Timing(tuple(samples)).trimmed_mean() == trimmed_mean(samples)


@pytest.mark.parametrize("samples, drop", [([1.0, 2.0], 1), ([1.0, 2.0, 3.0, 4.0], 2), ([1.0, 2.0, 3.0], -1),
                                           ([1.0, 2.0, 3.0], 1.0), ([1.0, 2.0, 3.0], True), ([], 0),
                                           ([1.0, float("nan"), 3.0], 0)])
def test_trimmed_mean_refuses_bad_input(samples, drop):
    with pytest.raises(ValueError):
        trimmed_mean(samples, drop)


def test_bootstrap_interval_contains_the_median_and_is_seeded():
    rng = np.random.default_rng(1)
    samples = rng.lognormal(0.0, 0.3, size=9)
    lo, hi = bootstrap_ci(samples)
    assert lo <= np.median(samples) <= hi
    assert lo < hi
    assert min(samples) <= lo and hi <= max(samples)  # medians of resamples never leave the data
    assert bootstrap_ci(samples) == (lo, hi)  # the same seed, the same interval
    assert bootstrap_ci(list(samples), seed=0) == (lo, hi)
    for seed in range(1, 4):  # another seed: resampled medians are order statistics, so (nearly) the same
        other = bootstrap_ci(samples, seed=seed)
        assert other[0] <= np.median(samples) <= other[1]
    assert Timing(tuple(samples)).interval() == (lo, hi)


def test_bootstrap_interval_narrows_with_more_samples():
    rng = np.random.default_rng(2)
    population = rng.normal(10.0, 1.0, size=2000)
    widths = [np.subtract(*bootstrap_ci(population[:n])[::-1]) for n in (8, 64, 512)]
    assert widths[0] > widths[1] > widths[2] > 0
    assert bootstrap_ci(population[:512], level=0.5)[1] - bootstrap_ci(population[:512], level=0.5)[0] < widths[2]


@pytest.mark.parametrize("kwargs", [dict(samples=[]), dict(samples=[1.0, math.inf]), dict(samples=[1.0, 2.0], level=0),
                                    dict(samples=[1.0, 2.0], level=1.0), dict(samples=[1.0, 2.0], resamples=50),
                                    dict(samples=[1.0, 2.0], resamples=1000.0)])
def test_bootstrap_refuses_bad_input(kwargs):
    with pytest.raises(ValueError):
        bootstrap_ci(**kwargs)


# --- course_utils.study -----------------------------------------------------------------------------

FP_KEYS = {"python", "platform", "cpu", "cores", "threads_per_worker", "OMP_NUM_THREADS", "gpu", "driver",
           "course_commit", "torch", "torchvision", "tensorflow-cpu", "tensorflow", "keras", "horovod", "numpy"}


@pytest.fixture(scope="module")
def fp():
    return study.fingerprint(threads=1)


def test_fingerprint_has_the_keys(fp):
    assert FP_KEYS <= set(fp)
    assert fp["threads_per_worker"] == 1
    assert fp["torch"] and fp["numpy"] and fp["python"] and fp["cores"] >= 1
    assert fp["course_commit"] != ""
    json.dumps(fp)  # plain JSON


def _row(fp, strategy="ddp", workers=2, seconds=(0.5, 0.4, 1.0, 0.5, 0.25), **extra):
    return study.row("pytorch", "resnet50", strategy, workers=workers, images_per_step=16, seconds=list(seconds),
                     steps_per_repeat=2, memory={"peak_rss": 2**30}, fingerprint=fp, **extra)


def test_row_statistics_are_recomputed_from_the_samples(fp):
    r = _row(fp, note="x")
    rates = [32 / s for s in (0.5, 0.4, 1.0, 0.5, 0.25)]  # 16 images x 2 steps per repeat
    assert r["images_per_s"]["median"] == pytest.approx(statistics.median(rates)) == pytest.approx(64.0)
    assert r["images_per_s"]["trimmed_mean"] == pytest.approx((64 + 64 + 80) / 3)
    assert (r["images_per_s"]["ci_lo"], r["images_per_s"]["ci_hi"]) == pytest.approx(bootstrap_ci(rates))
    assert r["images_per_s"]["q1"] == pytest.approx(np.quantile(rates, 0.25))
    assert r["seconds"] == [0.5, 0.4, 1.0, 0.5, 0.25] and r["repeats"] == 5 and r["note"] == "x"
    timed = study.row("pytorch", "m", "single", workers=1, images_per_step=4, seconds=Timing((1.0, 2.0), "s", 3))
    assert timed["warmup"] == 3 and timed["images_per_s"]["median"] == pytest.approx(3.0)  # median of 4/s and 2/s
    for bad in (dict(workers=0), dict(workers=1.5), dict(images_per_step=0)):
        with pytest.raises(ValueError):
            study.row("pytorch", "m", "single", **{"workers": 1, "images_per_step": 4, **bad}, seconds=[1.0])


@pytest.mark.parametrize("key, value", [("torch", "1.13.0"), ("threads_per_worker", 2), ("gpu", "1x NVIDIA A100")])
def test_check_comparable_refuses_a_different_environment(fp, key, value):
    rows = [_row(fp), _row(fp, "single", 1), _row({**fp, key: value}, "pipeline")]
    with pytest.raises(study.FingerprintMismatch) as err:
        study.check_comparable(rows)
    assert key in str(err.value) and repr(value) in str(err.value) and "row 2" in str(err.value)
    assert study.check_comparable(rows, allow_mixed=True) == rows
    assert study.check_comparable(rows[:2]) == rows[:2]
    assert set(study.differences(fp, rows[2]["fingerprint"])) == {key}


def test_check_comparable_refuses_rows_without_fingerprint(fp):
    for missing in ({}, None):
        rows = [_row(fp), _row(missing)]
        with pytest.raises(study.FingerprintMismatch, match="no fingerprint"):
            study.check_comparable(rows)
        with pytest.raises(study.FingerprintMismatch, match="no fingerprint"):
            study.check_comparable(rows, allow_mixed=True)  # mixing is allowed, not knowing is not


def test_save_and_load_round_trip(fp, tmp_path):
    rows = [_row(fp, microbatches=None), _row(fp, "pipeline", microbatches=4)]
    path = study.save(rows, tmp_path / "sub" / "study.json")
    assert study.load(path) == rows
    assert study.load(path, path) == rows + rows  # e.g. a CPU file and a GPU node's file
    with (tmp_path / "sub" / "study.csv").open() as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 2
    for column in ("framework", "model", "strategy", "workers", "images_per_s.median", "images_per_s.ci_lo",
                   "images_per_s.ci_hi", "memory.peak_rss", "fingerprint.torch", "fingerprint.threads_per_worker",
                   "microbatches"):
        assert column in lines[0], column
    assert lines[1]["strategy"] == "pipeline" and lines[1]["microbatches"] == "4"
    assert [float(x) for x in lines[0]["seconds"].split()] == rows[0]["seconds"]
    assert float(lines[0]["images_per_s.median"]) == pytest.approx(rows[0]["images_per_s"]["median"])
    (tmp_path / "bad.json").write_text(json.dumps([{"model": "resnet50"}]))
    with pytest.raises(ValueError, match="not a list of benchmark rows"):
        study.load(tmp_path / "bad.json")
    table = study.table(rows)
    assert list(table["images/s (median)"]) == pytest.approx([r["images_per_s"]["median"] for r in rows])


# --- the harness: bench_torch.py and benchmark.py ----------------------------------------------------

@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0"])
def test_models_take_one_channel_and_the_two_stages_compose_to_the_model(scripts_on_path, name):
    import torch
    import bench_torch
    model = bench_torch.build_model(name).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        whole = model(x)
        first, second = bench_torch.split_in_two(model, name)
        piped = second(first(x))
    assert whole.shape == (2, 10)
    torch.testing.assert_close(piped, whole)
    n_params = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in first.parameters()) + sum(p.numel() for p in second.parameters()) == n_params


def test_skip_reasons(scripts_on_path):
    import benchmark
    assert benchmark.skip_reason("resnet50", "single", 1) is None
    assert benchmark.skip_reason("resnet50", "ddp", 2) is None
    assert "2 workers" in benchmark.skip_reason("resnet50", "pipeline", 1)
    assert "1 worker" in benchmark.skip_reason("resnet50", "single", 2)
    assert "ResNeXt" in benchmark.skip_reason("resnext50_32x4d", "mirrored", 1)
    assert "unknown" in benchmark.skip_reason("resnet18", "ddp", 1)
    if not benchmark.horovod_available():
        assert "make horovod" in benchmark.skip_reason("resnet50", "horovod", 2)
    with pytest.raises(ValueError, match="exactly 2 workers"):
        benchmark.run("resnet50", "pipeline", 3)


def _cli(*args, timeout=400):
    return subprocess.run([sys.executable, str(SCRIPTS / "benchmark.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def _comparable_but_commit(rows):
    """Rows of one run share their fingerprint; only the course commit may move if someone commits
    while the test runs (never in CI)."""
    for r in rows[1:]:
        assert set(study.differences(rows[0]["fingerprint"], r["fingerprint"])) <= {"course_commit"}


def test_cli_quick_runs_single_and_ddp(tmp_path):
    out = tmp_path / "smoke.json"
    res = _cli("--quick", "--out", out)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = study.load(out)
    assert [(r["model"], r["strategy"], r["workers"]) for r in rows] == [("resnet50", "single", 1), ("resnet50", "ddp", 2)]
    for r in rows:
        assert r["repeats"] == 5 and r["warmup"] == 1 and len(r["seconds"]) == 5 and r["batch_per_worker"] == 4
        assert r["images_per_step"] == 4 * r["workers"] and r["device"] in ("cpu", "cuda")
        assert r["fingerprint"]["threads_per_worker"] == 1 and r["launch_seconds"] > 0
        assert 0 < r["cores_busy"] < 1.5 and r["load_avg_1min"] >= 0  # one thread per worker
        assert r["images_per_s"]["ci_lo"] <= r["images_per_s"]["median"] <= r["images_per_s"]["ci_hi"]
        assert r["memory"]["params"] == r["memory"]["grads"] == r["memory"]["optimizer"] > 0  # SGD momentum
        assert r["memory"]["peak_rss"] > r["memory"]["params"] and r["memory"]["activations"] > 0
    _comparable_but_commit(rows)
    assert out.with_suffix(".csv").is_file()


def test_cli_skips_impossible_configurations_and_saves_what_ran(tmp_path):
    out = tmp_path / "grid.json"
    res = _cli("--models", "efficientnet_b0", "--strategies", "single", "pipeline", "--workers", "1",
               "--batch", 4, "--steps", 1, "--warmup", 1, "--repeats", 5, "--out", out)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "skip efficientnet_b0 pipeline x1: the pipeline has 2 stages" in res.stdout
    (row,) = study.load(out)
    assert (row["model"], row["strategy"], row["workers"], row["microbatches"]) == ("efficientnet_b0", "single", 1, None)


def test_horovod_row(scripts_on_path, tmp_path):
    import benchmark
    if not benchmark.horovod_available():
        pytest.skip("Horovod is not importable in this environment: run `make horovod`")
    row = benchmark.run("efficientnet_b0", "horovod", 2, batch=4, warmup=1, repeats=5, timeout=300)
    assert (row["strategy"], row["workers"], row["images_per_step"]) == ("horovod", 2, 8)
    assert row["fingerprint"]["horovod"] and row["memory"]["optimizer"] == row["memory"]["params"]


def test_a_launch_past_its_timeout_fails_and_leaves_no_process(scripts_on_path):
    import psutil
    import benchmark
    from course_utils.dist import DistError
    for strategy, workers in (("single", 1), ("ddp", 2)):
        with pytest.raises(DistError, match="timed out"):
            benchmark.run("efficientnet_b0", strategy, workers, batch=4, repeats=987, timeout=4)
        left = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if "bench_torch.py" in cmd and "987" in cmd:
                left.append(p.pid)
        assert left == [], f"{strategy}: processes left running: {left}"
