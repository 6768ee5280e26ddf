"""Which launched scripts follow the GPU policy (NCCL + cuda:LOCAL_RANK when every rank has a GPU).

Lessons 12, 14, 15, 16 and 17 say which of their scripts use NCCL and the GPUs and which stay on the
CPU with gloo, and why. This reads the scripts' source: a GPU-aware script takes its backend from
``course_utils.dist.backend()`` and names no CPU device or gloo backend itself; a CPU-only one says
"gloo". Every script that starts a process group must be in one list or the other.
"""
import ast

import pytest

from tests.helpers import ROOT

SCRIPTS = ROOT / "notebooks" / "scripts"

GPU_AWARE = ["train_ddp.py", "train_ddp_accum.py", "ddp_broadcast.py", "mp_run.py", "pipe_by_hand.py",
             "pipe_schedules.py", "shard_compare.py", "shard_buckets.py", "bench_torch.py"]
CPU_ONLY = {  # script: why it stays on the CPU (the lessons say the same)
    "ring_allreduce.py": "sends CPU tensors with gloo's send/recv (lesson 12)",
    "ddp_throughput.py": "measures this CPU's processes x threads (lesson 12)",
    "async_ps.py": "a parameter server on the CPU (lesson 12)",
    "train_elastic.py": "torchrun's restarts on a CPU (lesson 12)",
    "shard_join.py": "shows gloo's timeout without join() (lesson 14)",
}
FALLBACKS = {  # a CPU device a GPU-aware script may still name, and why
    "bench_torch.py": ["device('cpu')"],  # Horovod built without CUDA takes CPU tensors only
}


def problems(source: str) -> list[str]:
    """What keeps a script's source from following the GPU policy ([] when it does)."""
    tree, found, uses_backend = ast.parse(source), [], False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "backend":
                uses_backend = True
            if name in ("init_process_group", "init_device_mesh", "device", "PipelineStage"):
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    if isinstance(arg, ast.Constant) and arg.value in ("gloo", "cpu"):
                        found.append(f"line {node.lineno}: {name}({arg.value!r})")
    if not uses_backend:
        found.append("never calls backend()")
    return found


def starts_a_group(path) -> bool:
    return "init_process_group" in path.read_text()


def test_every_script_that_starts_a_process_group_is_classified():
    launched = {p.name for p in SCRIPTS.glob("*.py") if starts_a_group(p)}
    assert launched == set(GPU_AWARE) | set(CPU_ONLY), launched ^ (set(GPU_AWARE) | set(CPU_ONLY))


@pytest.mark.parametrize("name", GPU_AWARE)
def test_gpu_aware_scripts_take_backend_and_device_from_the_policy(name):
    found = problems((SCRIPTS / name).read_text())
    assert [p for p in found if p.split(": ", 1)[-1] not in FALLBACKS.get(name, [])] == []


@pytest.mark.parametrize("name", sorted(CPU_ONLY))
def test_cpu_only_scripts_say_gloo(name):
    assert '"gloo"' in (SCRIPTS / name).read_text()


@pytest.mark.parametrize("source, expected", [
    ('dist.init_process_group("gloo")', "init_process_group('gloo')"),
    ('from course_utils.dist import backend\ndist.init_process_group(backend())\n'
     'PipelineStage(mod, 0, 2, torch.device("cpu"))', "device('cpu')"),
    ('dist.init_process_group(backend())\ninit_device_mesh("cpu", (2,))', "init_device_mesh('cpu')"),
    ('dist.init_process_group(get_backend())', "never calls backend()"),
])
def test_the_reader_catches_hard_coded_cpu_and_gloo(source, expected):
    assert any(expected in p for p in problems(source)), problems(source)
