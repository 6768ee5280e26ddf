"""Honest timing: warm-up first, wait for the device, repeat, and report the spread, not one number.

    from course_utils.bench import measure, torch_sync
    t = measure(lambda: model(x), warmup=2, repeats=7, sync=torch_sync(x.device))
    print(t)                # 12.3 ms median (IQR 11.9 ms–12.8 ms, 7 repeats after 2 warm-up)
    t.median, t.spread, t.samples   # seconds; spread = (first quartile, third quartile)
    t.interval(), t.trimmed_mean()  # 95 % bootstrap interval of the median; MLPerf-style trimmed mean
    rate = t.per(len(x), "images/s")  # the same repeats as a throughput: 64 / each sample

What comes back is the same on CPU and GPU: a ``Timing`` holding every timed repeat (seconds, wall
clock, ``time.perf_counter``). The difference is what "done" means. On a CPU a PyTorch or NumPy call
has finished when it returns. On a GPU (PyTorch/CUDA) or with TensorFlow a call returns as soon as the
work is *queued*: without a ``sync`` the clock measures the queueing, not the work. ``torch_sync``
waits for the GPU (``torch.cuda.synchronize``; a no-op on CPU), ``fetch`` copies TensorFlow results to
NumPy (``.numpy()``), which waits for them on any device.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable


def _fmt(value: float, unit: str) -> str:
    if unit == "s":  # pick ms / µs so a time reads naturally
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if abs(value) >= scale or name == "µs":
                return f"{value / scale:.3g} {name}"
    return f"{value:,.0f} {unit}" if abs(value) >= 1000 else f"{value:.3g} {unit}"


@dataclass(frozen=True)
class Timing:
    """Repeated measurements and their statistics.

    ``samples`` are in the order measured, warm-up excluded (seconds for ``measure``; ``unit`` says).
    Spread is the interquartile range (IQR): ``spread == (q1, q3)``, the first and third quartiles,
    NumPy's default linear interpolation; ``min``/``max`` give the full range.
    """
    samples: tuple[float, ...]
    unit: str = "s"
    warmup: int = 0

    def __post_init__(self):
        values = tuple(float(v) for v in self.samples)
        if not values or not all(math.isfinite(v) for v in values):
            raise ValueError(f"Timing needs at least one sample, all finite numbers; got {values}")
        object.__setattr__(self, "samples", values)

    def quantile(self, q: float) -> float:
        """Linear interpolation between the closest ranks (NumPy's default method)."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile q must be in [0, 1], got {q}")
        values, pos = sorted(self.samples), (self.n - 1) * q
        lo, hi = math.floor(pos), math.ceil(pos)
        return values[lo] + (values[hi] - values[lo]) * (pos - lo)

    n = property(lambda self: len(self.samples), doc="how many timed repeats")
    median = property(lambda self: self.quantile(0.5))
    mean = property(lambda self: statistics.fmean(self.samples))
    q1 = property(lambda self: self.quantile(0.25), doc="first quartile")
    q3 = property(lambda self: self.quantile(0.75), doc="third quartile")
    min = property(lambda self: min(self.samples))
    max = property(lambda self: max(self.samples))

    def interval(self, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
        """Bootstrap percentile interval of the median (see ``bootstrap_ci``)."""
        return bootstrap_ci(self.samples, level, resamples, seed)

    def trimmed_mean(self, drop: int = 1) -> float:
        """MLPerf-style "olympic" mean: drop the ``drop`` lowest and highest samples (see ``trimmed_mean``)."""
        return trimmed_mean(self.samples, drop)

    @property
    def spread(self) -> tuple[float, float]:
        """The interquartile range as (q1, q3): the middle half of the samples lies in it."""
        return self.q1, self.q3

    def per(self, items: float, unit: str = "items/s") -> "Timing":
        """Each sample as a rate, ``items / seconds`` (e.g. images/s); statistics are then of rates."""
        if any(s <= 0 for s in self.samples):
            raise ValueError("a rate needs every time sample > 0")
        return Timing(tuple(items / s for s in self.samples), unit, self.warmup)

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON: the samples and the summary statistics (interval: 95 % bootstrap)."""
        lo, hi = self.interval() if self.n > 1 else (self.median, self.median)
        return dict(samples=list(self.samples), unit=self.unit, warmup=self.warmup, median=self.median,
                    q1=self.q1, q3=self.q3, mean=self.mean, min=self.min, max=self.max, ci_lo=lo, ci_hi=hi,
                    trimmed_mean=self.trimmed_mean() if self.n > 2 else self.mean)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Timing":
        return cls(tuple(d["samples"]), d.get("unit", "s"), d.get("warmup", 0))

    def __str__(self) -> str:
        u = self.unit
        return (f"{_fmt(self.median, u)} median (IQR {_fmt(self.q1, u)}–{_fmt(self.q3, u)}, "
                f"{self.n} repeats after {self.warmup} warm-up)")


def _values(samples) -> list[float]:
    values = [float(v) for v in samples]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"need at least one sample, all finite numbers; got {samples!r}")
    return values


def bootstrap_ci(samples, level: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median: draw ``resamples`` samples of the same size with
    replacement, take each one's median, return the (1-level)/2 and (1+level)/2 quantiles of those.
    Seeded, so the same samples give the same interval. With few samples it is wide — as it should be."""
    import numpy as np
    values = np.asarray(_values(samples))
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise ValueError(f"resamples must be an integer >= 100, got {resamples!r}")
    draws = np.random.default_rng(seed).choice(values, size=(resamples, values.size), replace=True)
    medians = np.median(draws, axis=1)
    lo, hi = np.quantile(medians, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def trimmed_mean(samples, drop: int = 1) -> float:
    """MLPerf Training's "olympic" scoring: sort, drop the ``drop`` fastest and ``drop`` slowest
    results, average the rest. Needs more than ``2 * drop`` samples."""
    values = sorted(_values(samples))
    if isinstance(drop, bool) or not isinstance(drop, int) or drop < 0 or len(values) <= 2 * drop:
        raise ValueError(f"trimmed_mean drops {drop!r} from each end: needs an integer drop >= 0 and more "
                         f"than {2 * drop if isinstance(drop, int) else '2*drop'} samples, got {len(values)}")
    kept = values[drop:len(values) - drop]
    return statistics.fmean(kept)


def measure(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 7,
            sync: Callable[[Any], Any] | None = None, before: Callable[[], Any] | None = None,
            clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed; return a ``Timing``.

    ``sync(result)`` runs inside the timed region after each call, so the clock stops only when the
    work is really done (``torch_sync(device)`` on a GPU, ``fetch`` for TensorFlow; None = nothing to
    wait for, right for CPU PyTorch/NumPy). ``before()`` runs before every call, outside the timed
    region (fresh inputs, a ``dist.barrier()`` so all ranks start together). ``clock`` is for tests.
    """
    if not callable(fn):
        raise TypeError(f"measure needs a function to call, got {type(fn).__name__}")
    for name, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    samples = []
    for i in range(warmup + repeats):
        if before is not None:
            before()
        start = clock()
        result = fn()
        if sync is not None:
            sync(result)
        elapsed = clock() - start
        if i >= warmup:
            samples.append(elapsed)
    return Timing(tuple(samples), "s", warmup)


def _cuda(device):
    """(torch.device or None, whether it is a GPU): ``device`` None means "the GPU, if there is one"."""
    import torch
    dev = torch.device(device) if device is not None else None
    return dev, (dev.type == "cuda" if dev is not None else torch.cuda.is_available())


def torch_sync(device=None) -> Callable[[Any], None]:
    """A ``sync`` that waits for the GPU: ``torch.cuda.synchronize(device)`` when ``device`` is a CUDA
    device (or None with a GPU present); on a CPU it does nothing (CPU ops finish before they return)."""
    import torch
    dev, on_gpu = _cuda(device)
    return (lambda result: torch.cuda.synchronize(dev)) if on_gpu else (lambda result: None)


def synced_clock(device=None) -> Callable[[], float]:
    """``time.perf_counter`` that first waits for ``device``'s queued GPU work (as ``torch_sync``), for
    time stamps of asynchronous work; on a CPU, ``time.perf_counter`` itself."""
    dev, on_gpu = _cuda(device)
    if not on_gpu:
        return time.perf_counter
    sync = torch_sync(dev)

    def clock() -> float:
        sync(None)
        return time.perf_counter()
    return clock


def fetch(result: Any) -> None:
    """A ``sync`` for TensorFlow (and anything with ``.numpy()``): copy every tensor in ``result``
    (nested lists, tuples, dicts) to NumPy, which waits until it has been computed."""
    if isinstance(result, dict):
        result = list(result.values())
    if isinstance(result, (list, tuple)):
        for item in result:
            fetch(item)
    elif hasattr(result, "numpy"):
        result.numpy()
