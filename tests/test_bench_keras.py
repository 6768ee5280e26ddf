"""notebooks/scripts/bench_keras.py: one real run on 2 replicas (tiny config) writes a complete,
consistent row; bad arguments fail fast with a clear message and a non-zero exit."""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils import study

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "notebooks" / "scripts" / "bench_keras.py"
RUN_TIMEOUT = 300  # about 40 s on a quiet 2-core machine (most of it tracing the step); generous when busy
pytestmark = pytest.mark.timeout(RUN_TIMEOUT + 60)

TINY = dict(model="EfficientNetB0", workers=2, batch=2, steps=1, warmup=1, repeats=5)


def bench(*args: str, timeout: int = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_keras") / "row.json"
    args = [x for k, v in TINY.items() for x in (f"--{k}", str(v))]
    res = bench(*args, "--out", str(out))
    assert res.returncode == 0, f"bench_keras.py failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return out, res


def test_row_is_complete(tiny):
    out, res = tiny
    (row,) = json.loads(out.read_text())
    assert out.with_suffix(".csv").is_file()
    assert {"framework", "model", "strategy", "workers", "images_per_step", "steps_per_repeat", "warmup", "repeats",
            "seconds", "images_per_s", "memory", "fingerprint", "batch_per_worker", "device", "input",
            "num_replicas_in_sync", "threads_note", "memory_note", "onednn", "startup_s", "warmup_s",
            "wall_s"} <= set(row)
    assert (row["framework"], row["model"], row["strategy"]) == ("keras", "EfficientNetB0", "mirrored")
    assert row["device"] == "cpu" and row["input"].startswith("1x32x32") and row["onednn"] is True
    assert "images/s median" in res.stdout


def test_two_replicas_really_ran(tiny):
    (row,) = json.loads(tiny[0].read_text())
    assert row["workers"] == 2 and row["num_replicas_in_sync"] == 2
    assert row["per_replica_rows"] == [TINY["batch"]] * 2      # counted inside each replica
    assert row["variable_copies"] == 2                          # one mirrored copy per device
    assert row["images_per_step"] == TINY["batch"] * 2 and row["batch_per_worker"] == TINY["batch"]


def test_statistics_match_the_samples(tiny):
    (row,) = json.loads(tiny[0].read_text())
    seconds = row["seconds"]
    assert len(seconds) == row["repeats"] == TINY["repeats"] and row["warmup"] == TINY["warmup"]
    assert row["steps_per_repeat"] == TINY["steps"] and all(s > 0 for s in seconds)
    rates = [row["images_per_step"] * row["steps_per_repeat"] / s for s in seconds]
    t = row["images_per_s"]
    assert t["median"] == pytest.approx(statistics.median(rates))
    assert t["ci_lo"] <= t["median"] <= t["ci_hi"]
    assert t["trimmed_mean"] == pytest.approx(statistics.fmean(sorted(rates)[1:-1]))
    assert row["warmup_s"] > 0 and row["startup_s"] > 0 and row["wall_s"] >= row["startup_s"] + sum(seconds)


def test_fingerprint_and_memory(tiny):
    (row,) = json.loads(tiny[0].read_text())
    fp = row["fingerprint"]
    assert fp["threads_per_worker"] == 1 and fp["keras"] and fp["course_commit"]
    study.check_comparable([row, dict(row)])                   # a fingerprint the harness accepts
    mem = row["memory"]
    assert mem["params"] > 10_000_000                          # EfficientNetB0: about 4 M float32 weights
    assert mem["grads"] == mem["params"] and mem["params"] <= mem["optimizer"] < mem["params"] + 64
    assert mem["peak_rss"] > 2 * mem["params"]
    assert mem["activations"] is None and "activations" in row["memory_note"]


@pytest.mark.parametrize("args, message", [
    (["--model", "ResNeXt50"], "invalid choice: 'ResNeXt50'"),
    (["--model", "ResNet50", "--repeats", "3"], "--repeats must be >= 5"),
    (["--model", "ResNet50", "--workers", "0"], "--workers must be >= 1"),
])
def test_bad_arguments_fail_clearly(tmp_path, args, message):
    res = bench(*args, "--out", str(tmp_path / "row.json"), timeout=60)
    assert res.returncode != 0
    assert message in res.stderr
    assert not (tmp_path / "row.json").exists()
