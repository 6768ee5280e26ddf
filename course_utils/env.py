"""The machine a lesson runs on: quiet framework start-up, seeds, devices, an environment report.

Call ``quiet_frameworks()`` before TensorFlow is imported (``import course_utils`` does it for
you). It silences TensorFlow's C++ and Python logs and loads triton first: with these wheels,
TensorFlow loaded before triton crashes the process as soon as torch touches triton
(tensorflow/tensorflow#124205).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import platform
import random
import sys
import warnings

import numpy as np

TF_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def quiet_frameworks() -> None:
    """Make TensorFlow quiet and safe to use next to torch in one process.

    Safe to call many times. Sets the TensorFlow log variables (only if the user has not set
    them), loads triton before TensorFlow when both are installed, and lowers TensorFlow's
    Python logger to ERROR if TensorFlow is already imported.
    """
    for key, value in TF_QUIET.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS on GPUs
    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        if "tensorflow" in sys.modules:
            warnings.warn("TensorFlow was imported before course_utils: if torch loads triton later "
                          "the kernel may crash. Import course_utils first, then restart the kernel.",
                          RuntimeWarning, stacklevel=2)
        else:
            import triton  # noqa: F401  (must precede TensorFlow, see the module docstring)
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].get_logger().setLevel("ERROR")
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and every framework already imported; make them deterministic.

    Import torch / tensorflow / keras first: a framework imported later is not seeded.
    Returns None (so a notebook cell ending with it shows nothing); ``seeded_frameworks()``
    after it tells what was seeded.
    """
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if "torch" in sys.modules:
        import torch
        torch.manual_seed(seed)  # also seeds every CUDA device
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        import keras
        keras.utils.set_random_seed(seed)  # python, numpy and the backend (tf/torch/jax)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf
            tf.config.experimental.enable_op_determinism()


def seeded_frameworks() -> list[str]:
    """What ``seed_everything`` seeds right now: python, numpy and the frameworks already imported."""
    imported = [name for name in ("torch", "keras") if name in sys.modules]
    if "tensorflow" in sys.modules and "keras" not in imported:
        imported.append("keras")
    return ["python", "numpy", *imported]


def gpu_count() -> int:
    """Number of CUDA GPUs torch can use (0 on a CPU-only machine); imports torch."""
    import torch
    return torch.cuda.device_count()


def devices(n: int, framework: str = "torch") -> list:
    """``n`` devices for a lesson that needs ``n``, real where possible, simulated otherwise.

    framework="torch" (devices used inside ONE process, e.g. a model split over stages): a list
    of ``torch.device`` — ``cuda:i % k`` when k GPUs exist (so two stages may share one GPU, which
    is fine in one process), else ``cpu`` n times. For launched ranks use ``course_utils.dist``.
    framework="tensorflow": a list of device names, decided by ``plan_tf_devices``: the first n
    GPUs ``/GPU:0 .. /GPU:n-1`` when at least n exist; otherwise — no GPU, or fewer than n — n
    *logical* CPU devices ``/CPU:0 .. /CPU:n-1`` (never ``/GPU:i % k``: MirroredStrategy would
    collapse repeated names into fewer replicas). With some GPUs but too few, a one-line notice
    says so. Logical CPU devices must be created before TensorFlow runs its first op (restart
    the kernel otherwise).
    """
    if n < 1:
        raise ValueError(f"devices(n): n must be >= 1, got {n}")
    if framework == "torch":
        import torch
        k = torch.cuda.device_count()
        return [torch.device(f"cuda:{i % k}") if k else torch.device("cpu") for i in range(n)]
    if framework in ("tensorflow", "tf", "keras"):
        return _tf_devices(n)
    raise ValueError(f"devices(): framework must be 'torch' or 'tensorflow', got {framework!r}")


def plan_tf_devices(n: int, n_gpus: int) -> list[str]:
    """The TensorFlow device names for ``n`` replicas on a machine with ``n_gpus`` GPUs (pure).

    ``n_gpus >= n``: ``/GPU:0 .. /GPU:n-1``, one replica per physical GPU. Otherwise ``/CPU:0 ..
    /CPU:n-1`` (logical CPU devices): n distinct devices, so a MirroredStrategy over them really
    has n replicas. (Splitting one GPU into n logical GPUs would also give n replicas, but needs a
    per-replica memory limit guessed for every card; the CPU devices behave the same everywhere.)
    """
    if n < 1 or n_gpus < 0:
        raise ValueError(f"plan_tf_devices: need n >= 1 and n_gpus >= 0, got {n}, {n_gpus}")
    kind = "GPU" if n_gpus >= n else "CPU"
    return [f"/{kind}:{i}" for i in range(n)]


def _tf_devices(n: int) -> list[str]:
    quiet_frameworks()
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    names = plan_tf_devices(n, len(gpus))
    if names[0].startswith("/GPU"):
        return names
    if gpus:
        print(f"[course_utils.env] {len(gpus)} GPU(s) for {n} TensorFlow devices: using {n} logical CPU "
              "devices instead", file=sys.stderr, flush=True)
    cpu = tf.config.list_physical_devices("CPU")[0]
    have = tf.config.get_logical_device_configuration(cpu) or []
    if len(have) < n:
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError as err:
            raise RuntimeError(f"TensorFlow is already running with {max(len(have), 1)} CPU device(s); "
                               f"call devices({n}, 'tensorflow') before any TensorFlow op "
                               "(restart the kernel and run it first).") from err
    return names


def _version(module: str) -> str:
    if importlib.util.find_spec(module) is None:
        return "not installed"
    from importlib.metadata import PackageNotFoundError, version
    for dist in {"tensorflow": ["tensorflow", "tensorflow-cpu"]}.get(module, [module]):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "installed"


def report(simulated: int | None = None):
    """The environment as a two-column pandas DataFrame (item, value).

    Lists Python, the framework versions (read from package metadata, so TensorFlow is not
    imported), CPU cores, the GPUs torch sees (``none`` on CPU) and, if ``simulated`` is given,
    how that many lesson devices are mapped (e.g. ``4 × cpu`` or ``cuda:0, cuda:1, cuda:0, cuda:1``).
    """
    import pandas as pd
    import torch
    rows = [("python", platform.python_version()), ("platform", platform.platform(terse=True)),
            ("cpu cores", os.cpu_count())]
    rows += [(m, _version(m)) for m in ("torch", "torchvision", "tensorflow", "keras", "jax", "numpy")]
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    rows.append(("gpus (torch)", ", ".join(gpus) if gpus else "none"))
    rows.append(("cuda available", torch.cuda.is_available()))
    if simulated:
        devs = [str(d) for d in devices(simulated, "torch")]
        rows.append((f"{simulated} lesson devices",
                     f"{simulated} × cpu (simulated)" if set(devs) == {"cpu"} else ", ".join(devs)))
    return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")
