import os
import signal

import pytest
import torch

from course_utils import env
from tests.helpers import run_python


def test_import_sets_quiet_tensorflow_variables_and_loads_triton_first():
    out = run_python("import sys, os, course_utils\n"
                     "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], os.environ['TF_ENABLE_ONEDNN_OPTS'],"
                     " 'triton' in sys.modules, 'tensorflow' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "0", "True", "False"]


BOTH_FRAMEWORKS = """
import tensorflow as tf, torch, torchvision, keras
m = torch.nn.Linear(3, 1); opt = torch.optim.Adam(m.parameters())   # Adam loads triton lazily
m(torch.ones(2, 3)).sum().backward(); opt.step()
k = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]); k.compile("adam", "mse")
k.fit(tf.ones((4, 3)), tf.ones((4, 1)), verbose=0)
print("ok")
"""


def test_both_frameworks_in_one_process_after_course_utils():
    out = run_python("import course_utils\n" + BOTH_FRAMEWORKS)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    assert out.stdout.strip() == "ok"
    assert "oneDNN custom operations" not in out.stderr and "cpu_feature_guard" not in out.stderr


def test_tensorflow_before_triton_still_crashes_so_the_preload_is_needed():
    """The hazard course_utils guards against (FIELD_NOTES): TF first, then torch loads triton."""
    out = run_python(BOTH_FRAMEWORKS)
    if out.returncode == 0:
        pytest.skip("TensorFlow-before-triton no longer crashes with these wheels; the preload may be removable")
    assert out.returncode == -signal.SIGSEGV, f"unexpected failure: {out.stderr[-1000:]}"


def test_warns_when_tensorflow_was_imported_first():
    out = run_python("import warnings; warnings.simplefilter('error')\nimport tensorflow\n"
                     "try:\n    import course_utils\nexcept RuntimeWarning as w:\n    print('warned:', w)")
    assert "warned: TensorFlow was imported before course_utils" in out.stdout, out.stderr[-1000:]


def test_seed_everything_repeats_random_streams():
    import numpy as np
    env.seed_everything(3)
    a = (np.random.rand(3), torch.rand(3))
    env.seed_everything(3)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert env.seeded_frameworks()[:3] == ["python", "numpy", "torch"]


def test_torch_devices_map_onto_cpu_or_gpus():
    devs = env.devices(3)
    assert len(devs) == 3 and all(isinstance(d, torch.device) for d in devs)
    k = torch.cuda.device_count()
    assert [str(d) for d in devs] == ([f"cuda:{i % k}" for i in range(3)] if k else ["cpu"] * 3)


@pytest.mark.parametrize("gpus", [0, 1, 2, 4])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_plan_tf_devices_never_collapses_replicas(n, gpus):
    names = env.plan_tf_devices(n, gpus)
    assert len(names) == n and len(set(names)) == n  # n distinct devices: MirroredStrategy keeps n replicas
    expected = "GPU" if gpus >= n else "CPU"
    assert names == [f"/{expected}:{i}" for i in range(n)]


def test_plan_tf_devices_on_a_one_gpu_machine_uses_logical_cpus():
    assert env.plan_tf_devices(4, 1) == ["/CPU:0", "/CPU:1", "/CPU:2", "/CPU:3"]  # not /GPU:0 four times
    assert env.plan_tf_devices(1, 1) == ["/GPU:0"]
    with pytest.raises(ValueError):
        env.plan_tf_devices(0, 1)


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=2, framework="mxnet")])
def test_devices_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        env.devices(**bad)


def test_tensorflow_logical_devices_and_a_clear_error_when_too_late():
    out = run_python(
        "import course_utils; from course_utils.env import devices\n"
        "print(devices(4, 'tensorflow'))\n"
        "import tensorflow as tf\n"
        "print(len(tf.config.list_logical_devices('CPU')))\n"
        "print(devices(2, 'tensorflow'))\n"  # fewer than configured: fine
        "try:\n    devices(8, 'tensorflow')\nexcept RuntimeError as e:\n    print('error:', e)\n")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "['/CPU:0', '/CPU:1', '/CPU:2', '/CPU:3']"
    assert lines[1] == "4"
    assert lines[2] == "['/CPU:0', '/CPU:1']"
    assert lines[3].startswith("error: TensorFlow is already running with 4 CPU device(s)")
    assert out.stderr.strip() == "", out.stderr  # quiet: no C++ log lines


def test_report_lists_versions_hardware_and_simulated_devices():
    table = env.report(simulated=4)
    assert {"python", "torch", "tensorflow", "keras", "cpu cores", "gpus (torch)"} <= set(table.index)
    assert table.loc["torch", "value"] == torch.__version__.split("+")[0]
    assert table.loc["cpu cores", "value"] == os.cpu_count()
    if not torch.cuda.is_available():
        assert table.loc["4 lesson devices", "value"] == "4 × cpu (simulated)"
        assert table.loc["gpus (torch)", "value"] == "none"
