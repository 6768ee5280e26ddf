"""Build Horovod 0.28.1 (its last release) from source into this venv, patched for today's PyTorch.

    .venv/bin/python tools/build_horovod.py                     # what `make horovod` runs
    .venv/bin/python tools/build_horovod.py --force             # rebuild even if it already imports
    .venv/bin/python tools/build_horovod.py --record-unpatched  # also rewrite notebooks/results/horovod_build.txt

Horovod 0.28.1 sets ``CMAKE_CXX_STANDARD 14``; PyTorch >= 2.10's headers need C++20, so the sdist from
PyPI no longer compiles (upstream issue horovod#3996, fix PR #3998 never released). This tool downloads
the sdist, changes the two lines (failing loudly if upstream text differs), and installs it with Gloo
only (no MPI, TensorFlow or MXNet). On a machine with nvcc and a CUDA build of torch but no usable GPU,
Horovod would still try to build its CUDA ops: the build is forced CPU-only then. With a GPU and NCCL
it first tries ``HOROVOD_GPU_OPERATIONS=NCCL`` and falls back to CPU-only with a message if that fails.
Idempotent: skips the build when ``horovod.torch`` 0.28.1 already imports. Then runs a 2-rank smoke
test (notebooks/scripts/hvd_smoke.py). The full build log goes to build/horovod/build.log.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION = "0.28.1"
PY = sys.executable
LOG_DIR = ROOT / "build" / "horovod"
RECORD = ROOT / "notebooks" / "results" / "horovod_build.txt"
SMOKE = ROOT / "notebooks" / "scripts" / "hvd_smoke.py"
# build dependencies, pinned (the first five also pinned in constraints.txt); installed before the
# build because --no-build-isolation builds against the venv (it must see this venv's torch)
BUILD_DEPS = ["wheel==0.48.0", "setuptools==84.2.1", "packaging==26.4", "psutil==7.2.2",
              "PyYAML==6.0.4", "cloudpickle==3.1.3", "cffi==2.1.1"]
FLAGS = {"HOROVOD_WITH_PYTORCH": "1", "HOROVOD_WITH_GLOO": "1", "HOROVOD_WITHOUT_MPI": "1",
         "HOROVOD_WITHOUT_TENSORFLOW": "1", "HOROVOD_WITHOUT_MXNET": "1"}

# (file, upstream text, replacement): each upstream text must occur exactly once
CXX20 = [("CMakeLists.txt", "set(CMAKE_CXX_STANDARD 14)\n", "set(CMAKE_CXX_STANDARD 20)\n"),
         ("horovod/torch/CMakeLists.txt", "    set(CMAKE_CXX_STANDARD 14)\n", "    set(CMAKE_CXX_STANDARD 20)\n")]
CPU_ONLY = [("cmake/Modules/FindPytorch.cmake", 'string(TOUPPER "${Pytorch_CUDA}" Pytorch_CUDA)\n',
             'string(TOUPPER "${Pytorch_CUDA}" Pytorch_CUDA)\n'
             'set(Pytorch_CUDA FALSE)  # course patch: CPU-only build (no usable GPU)\n')]

# the unpatched build: gcc stops after 10 errors per file (the cascade runs to tens of thousands of
# lines and takes minutes)
UNPATCHED_EXTRA = {"CXXFLAGS": "-fmax-errors=10"}


class PatchError(RuntimeError):
    pass


def patch(src: Path, patches: list[tuple[str, str, str]]) -> list[str]:
    """Apply ``patches`` under ``src``; refuse (PatchError, nothing written) unless each upstream
    text occurs exactly once in its file. Returns the patched files."""
    new = {}
    for rel, old, repl in patches:
        text = new.get(rel) or (src / rel).read_text()
        count = text.count(old)
        if count != 1:
            raise PatchError(f"{rel}: expected {old.strip()!r} exactly once, found it {count} times: "
                             "the upstream text differs from what this patch was written for")
        new[rel] = text.replace(old, repl)
    for rel, text in new.items():
        (src / rel).write_text(text)
    return list(new)


def sh(cmd: list[str], log, env: dict | None = None, cwd: Path | None = None) -> int:
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd).returncode


def installed() -> str | None:
    """The importable horovod.torch version built with Gloo, or None."""
    code = ("import horovod, horovod.torch as h; assert h.gloo_built(); "
            "print(horovod.__version__, 'nccl' if h.nccl_built() else 'cpu')")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=ROOT)
    return r.stdout.strip() if r.returncode == 0 else None


def gpu_and_nccl() -> dict | None:
    """Env for an NCCL build when a GPU is usable and torch's NCCL (the nvidia-nccl wheel) is found."""
    code = "import torch; print(torch.cuda.is_available() and torch.cuda.device_count() > 0)"
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True)
    if r.stdout.strip() != "True" or not shutil.which("nvcc"):
        return None
    try:
        import nvidia.nccl  # noqa: the wheel torch's CUDA builds depend on
        home = Path(list(nvidia.nccl.__path__)[0])
    except ImportError:
        return None
    libs = sorted((home / "lib").glob("libnccl.so*"))
    if not (home / "include" / "nccl.h").is_file() or not libs:
        return None
    link = LOG_DIR / "nccl_lib"  # the wheel ships libnccl.so.2 only; the linker wants libnccl.so
    link.mkdir(parents=True, exist_ok=True)
    (link / "libnccl.so").unlink(missing_ok=True)
    (link / "libnccl.so").symlink_to(libs[0])
    return {"HOROVOD_GPU_OPERATIONS": "NCCL", "HOROVOD_NCCL_LINK": "SHARED",
            "HOROVOD_NCCL_INCLUDE": str(home / "include"), "HOROVOD_NCCL_LIB": str(link),
            "LD_LIBRARY_PATH": os.pathsep.join([str(home / "lib"), os.environ.get("LD_LIBRARY_PATH", "")])}


def unpack(sdist: Path, where: Path) -> Path:
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(where, filter="data")
    return where / f"horovod-{VERSION}"


def build(src: Path, log, extra: dict | None = None) -> tuple[int, float]:
    jobs = str(max(1, len(os.sched_getaffinity(0))))
    env = {**os.environ, **FLAGS, "MAKEFLAGS": f"-j{jobs}", **(extra or {})}
    start = time.perf_counter()
    code = sh([PY, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-cache-dir",
               "--force-reinstall", "-v", str(src)], log, env)
    return code, time.perf_counter() - start


def tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def key_errors(text: str, n: int = 8) -> list[str]:
    """A failed build's key lines: the first ``n`` distinct compiler errors (each preceded by the
    Horovod source whose #include led to it), then make's / CMake's error lines; paths shortened."""
    seen, errors, make, prev = set(), [], [], ""
    for line in text.splitlines():
        short = re.sub(r"/\S*/(site-packages|horovod-[\d.]+)/", r"<\1>/", line.strip())[:300]
        if re.search(r"\] Error \d|CMake Error", short) and short not in seen:
            make.append(short)
        elif re.search(r"\berror:", short) and short not in seen and len(errors) < n:
            if re.match(r"from <horovod-[\d.]+>/horovod/", prev) and prev not in errors:
                errors.append(prev)
            errors.append(short)
        seen.add(short)
        prev = short
    return errors + make


def versions() -> dict:
    torch_v = subprocess.run([PY, "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    first = lambda cmd: (subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines() or ["?"])[0]
    return {"python": platform.python_version(), "torch": torch_v, "gcc": first(["gcc", "--version"]),
            "cmake": first(["cmake", "--version"]), "nvcc": "yes" if shutil.which("nvcc") else "no"}


def smoke() -> tuple[bool, str]:
    sys.path.insert(0, str(ROOT))
    from course_utils.dist import DistError, horovodrun
    try:
        res = horovodrun(SMOKE, nprocs=2, timeout=180, stream=False)
    except DistError as err:
        return False, str(err)
    summary = [s for s in res.lines.get(0, []) if s.startswith("SMOKE")]
    return bool(summary), (summary[-1] if summary else "no SMOKE line from rank 0") + f" ({res.seconds:.1f} s)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="rebuild even when horovod already imports")
    ap.add_argument("--record-unpatched", action="store_true",
                    help=f"also build unpatched (expected to fail) and rewrite {RECORD.relative_to(ROOT)}")
    ap.add_argument("--no-smoke", action="store_true", help="skip the 2-rank smoke test")
    a = ap.parse_args(argv)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    logfile = LOG_DIR / "build.log"
    have = installed()
    if have and have.split()[0] == VERSION and not (a.force or a.record_unpatched):
        print(f"horovod {have} already imports with this torch: nothing to build")
    else:
        with open(logfile, "w") as log, tempfile.TemporaryDirectory(prefix="horovod_build_") as tmp:
            tmp = Path(tmp)
            print(f"== building horovod {VERSION} from source (log: {logfile.relative_to(ROOT)})", flush=True)
            if sh([PY, "-m", "pip", "install", "--quiet", *BUILD_DEPS], log) or \
                    sh([PY, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                        f"horovod=={VERSION}", "-d", str(tmp)], log):
                print(f"✘ could not install the build dependencies or download the sdist:\n{tail(logfile)}")
                return 1
            sdist = next(tmp.glob(f"horovod-{VERSION}.tar.gz"))
            unpatched = None
            if a.record_unpatched:
                print("   unpatched build (expected to fail) ...", flush=True)
                src = unpack(sdist, tmp / "unpatched")
                patch(src, CPU_ONLY)
                start = log.tell()
                code, secs = build(src, log, UNPATCHED_EXTRA)  # fail fast: tens of thousands of errors otherwise
                log.flush()
                unpatched = (code, secs, logfile.read_bytes()[start:].decode(errors="replace"))
                print(f"   unpatched build: exit code {code} after {secs:.0f} s", flush=True)
            gpu, code = gpu_and_nccl(), 1
            if gpu:
                print("   GPU and NCCL found: trying the NCCL build (HOROVOD_GPU_OPERATIONS=NCCL) ...", flush=True)
                src = unpack(sdist, tmp / "src")
                patch(src, CXX20)
                code, secs = build(src, log, gpu)
                if code != 0:
                    print("   ! the NCCL build failed (see the log); falling back to a CPU-only build", flush=True)
            if code != 0:
                src = unpack(sdist, tmp / "src")
                patch(src, CXX20 + CPU_ONLY)
                code, secs = build(src, log)
            if code != 0 or not installed():
                print(f"✘ the Horovod build failed (exit code {code}); last lines of {logfile}:\n{tail(logfile)}")
                return 1
            have = installed()
            print(f"✔ built horovod {have} in {secs:.0f} s ({len(os.sched_getaffinity(0))} cores)", flush=True)
    if a.no_smoke:
        return 0
    ok, line = smoke()
    print(("✔ smoke test: " if ok else "✘ smoke test failed: ") + line)
    if a.record_unpatched and unpatched:
        write_record(unpatched, secs, have, line if ok else "FAILED: " + line)
        print(f"   wrote {RECORD.relative_to(ROOT)}")
    return 0 if ok else 1


def write_record(unpatched: tuple[int, float, str], secs: float, have: str, smoke_line: str) -> None:
    code, usecs, text = unpatched
    v = versions()
    errors = key_errors(text) or ["(no error lines found: did the unpatched build succeed?)"]
    RECORD.write_text(f"""\
Horovod {VERSION} from PyPI against today's PyTorch: why benchmarks rot
Written by tools/build_horovod.py --record-unpatched on {datetime.date.today().isoformat()}.

Machine: python {v['python']}, torch {v['torch']}, {v['gcc']}, {v['cmake']}, nvcc on PATH: {v['nvcc']},
{len(os.sched_getaffinity(0))} CPU cores, load average {os.getloadavg()[0]:.1f} when written (a shared machine:
build times vary severalfold with the load).
Command (both builds):
  {' '.join(f'{k}={val}' for k, val in FLAGS.items())} \\
  python -m pip install --no-build-isolation --no-deps --no-cache-dir --force-reinstall -v horovod-{VERSION}/
  (horovod-{VERSION}/: the sdist from `pip download --no-deps --no-binary :all: horovod=={VERSION}`, unpacked)
  (both builds CPU-only: Pytorch_CUDA forced FALSE in cmake/Modules/FindPytorch.cmake)

1. Unpatched (upstream CMAKE_CXX_STANDARD 14; CXXFLAGS=-fmax-errors=10 so it stops early):
   exit code {code} after {usecs:.0f} s (Gloo and Horovod's common code compile; the first file that
   includes torch fails), {text.count("error:")} "error:" lines. The first distinct ones:
""" + "".join(f"  {e}\n" for e in errors) + f"""
2. Patched (CMAKE_CXX_STANDARD 20 in CMakeLists.txt and horovod/torch/CMakeLists.txt, as upstream
   PR #3998, never released): built in {secs:.0f} s -> horovod {have}.
3. Smoke test (notebooks/scripts/hvd_smoke.py, 2 ranks, Gloo, hvd.DistributedOptimizer):
  {smoke_line}
""")


if __name__ == "__main__":
    sys.exit(main())
