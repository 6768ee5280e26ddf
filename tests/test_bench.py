"""course_utils.bench: the statistics on known samples, warm-up not counted, sync inside the clock."""
import numpy as np
import pytest

from course_utils.bench import Timing, fetch, measure, synced_clock, torch_sync


class FakeClock:
    """Each call to fn takes the next duration from a list; the clock only moves when fn runs."""

    def __init__(self, durations):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def __call__(self):
        return self.now

    def fn(self):
        self.now += self.durations[self.calls]
        self.calls += 1
        return self.calls


def test_statistics_are_exact_on_known_samples():
    t = Timing((5.0, 1.0, 4.0, 2.0, 3.0, 10.0))
    assert t.n == 6
    assert t.median == 3.5
    assert t.mean == pytest.approx(25 / 6)
    assert t.min == 1.0 and t.max == 10.0
    assert t.spread == (t.q1, t.q3) == (2.25, 4.75)  # linear interpolation, NumPy's default
    for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
        assert t.quantile(q) == pytest.approx(np.quantile(t.samples, q))


def test_odd_count_median_is_a_sample():
    assert Timing((0.3, 0.1, 0.2)).median == 0.2
    assert Timing((7.0,)).spread == (7.0, 7.0)


def test_warmup_calls_run_but_are_not_counted():
    clock = FakeClock([100.0, 50.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # two slow warm-up calls first
    t = measure(clock.fn, warmup=2, repeats=5, clock=clock)
    assert clock.calls == 7
    assert t.samples == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert t.warmup == 2 and t.median == 3.0 and t.spread == (2.0, 4.0)


def test_sync_is_inside_the_clock_and_before_is_outside():
    clock = FakeClock([1.0] * 4)
    seen = []

    def sync(result):  # e.g. waiting for the GPU: costs 0.5 s and must be timed
        seen.append(result)
        clock.now += 0.5

    def before():  # e.g. a barrier or fresh inputs: costs 9 s and must not be timed
        clock.now += 9.0

    t = measure(clock.fn, warmup=1, repeats=3, sync=sync, before=before, clock=clock)
    assert t.samples == (1.5, 1.5, 1.5)
    assert seen == [1, 2, 3, 4]  # sync receives fn's result, warm-up included


def test_rates():
    r = Timing((0.5, 0.25, 1.0)).per(100, "images/s")
    assert r.samples == (200.0, 400.0, 100.0) and r.median == 200.0 and r.unit == "images/s"
    with pytest.raises(ValueError, match="> 0"):
        Timing((0.0, 1.0)).per(10)


@pytest.mark.parametrize("kwargs", [dict(repeats=0), dict(repeats=-3), dict(repeats=2.5), dict(repeats=True),
                                    dict(warmup=-1), dict(warmup=None)])
def test_bad_counts_give_a_clear_error(kwargs):
    with pytest.raises(ValueError, match="repeats|warmup"):
        measure(lambda: None, **kwargs)


def test_bad_input():
    with pytest.raises(TypeError, match="function"):
        measure(42)
    with pytest.raises(ValueError, match="at least one sample"):
        Timing(())
    with pytest.raises(ValueError, match="finite numbers"):
        Timing((1.0, float("nan")))
    with pytest.raises(ValueError, match="quantile"):
        Timing((1.0,)).quantile(1.5)


def test_str_and_round_trip():
    t = Timing((0.0121, 0.0123, 0.0125, 0.0119, 0.0130), warmup=2)
    assert str(t) == "12.3 ms median (IQR 12.1 ms–12.5 ms, 5 repeats after 2 warm-up)"
    assert str(Timing((2e-6,))) == "2 µs median (IQR 2 µs–2 µs, 1 repeats after 0 warm-up)"
    assert str(Timing((1234.5, 99.5, 2000.0), "images/s")) == (
        "1,234 images/s median (IQR 667 images/s–1,617 images/s, 3 repeats after 0 warm-up)")
    back = Timing.from_dict(t.to_dict())
    assert back == t and t.to_dict()["median"] == 0.0123


def test_real_clock_measures_something():
    t = measure(lambda: sum(range(1000)), warmup=1, repeats=5)
    assert t.n == 5 and all(s > 0 for s in t.samples) and t.min <= t.median <= t.max


def test_torch_sync_is_a_noop_on_cpu_and_fetch_calls_numpy():
    torch_sync("cpu")(None)  # returns without touching CUDA
    calls = []

    class Tensor:
        def numpy(self):
            calls.append(1)

    fetch({"a": Tensor(), "b": [Tensor(), (Tensor(), 3)]})
    assert len(calls) == 3


def test_torch_sync_waits_for_the_gpu(monkeypatch):
    import torch
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    torch_sync("cuda:0")("result")  # a CUDA device: synchronize it (patched: works without a GPU too)
    torch_sync("cpu")("result")     # a CPU device: nothing to wait for
    assert calls == [torch.device("cuda:0")]


def test_synced_clock_waits_for_the_gpu_before_reading_the_time(monkeypatch):
    import time

    import torch
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    assert synced_clock("cpu") is time.perf_counter  # a CPU: the plain clock, nothing to wait for
    clock = synced_clock("cuda:0")
    first, second = clock(), clock()
    assert calls == [torch.device("cuda:0")] * 2 and second >= first
