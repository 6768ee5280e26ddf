"""Lab 08 checker: the reference DDP conversion passes, the starter is "not done yet", and plausible
wrong conversions (no DistributedSampler, no set_epoch, no DDP, every rank saving, ...) are rejected
with a one-line ✘, never a traceback. Every check launches torchrun at a hidden world size, 2 or 3
(≈5–15 s each); tests that need one world size fix it through ``lab08.hidden_inputs``."""
import functools
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from course_utils.labs import lab08

pytestmark = pytest.mark.timeout(600)
LAB = Path(__file__).resolve().parents[1] / "labs" / "lab08_ddp_conversion"


def notebook_script(kind: str) -> str:
    """The script in the notebook's %%writefile cell."""
    nb = nbformat.read(LAB / f"{kind}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("%%writefile"))
    return cell.source.split("\n", 1)[1]


SOLUTION = notebook_script("solution")


def variant(old: str, new: str) -> str:
    assert old in SOLUTION, old
    return SOLUTION.replace(old, new)


def write(tmp_path, text, name="train_ddp.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def lines(capsys):
    return capsys.readouterr().out


def run_all(path):
    return [bool(q(path)) for q in (lab08.q1, lab08.q2, lab08.q3)]


@pytest.fixture
def world(monkeypatch):
    """Fix the hidden world size for one test: world(3)."""
    def fix(n):
        monkeypatch.setattr(lab08, "hidden_inputs", functools.partial(HIDDEN_INPUTS, world=n))
    return fix


HIDDEN_INPUTS = lab08.hidden_inputs


@pytest.mark.parametrize("size", [2, 3])
def test_solution_passes_every_check(tmp_path, capsys, world, size):
    world(size)
    assert run_all(write(tmp_path, SOLUTION)) == [True, True, True]
    out = lines(capsys)
    assert out.count("✔") == 3 and "Traceback" not in out


def test_hard_coded_world_size_is_rejected(tmp_path, capsys, world):
    """`batch // 2` is right at world size 2 only: the hidden world size 3 catches it."""
    world(3)
    text = variant("batch_size=args.batch // world_size", "batch_size=args.batch // 2")
    path = write(tmp_path, text)
    assert not lab08.q1(path) and not lab08.q2(path)
    out = lines(capsys)
    assert "at world size 3" in out and "batch // world_size" in out and "Traceback" not in out, out


def test_hidden_world_sizes_are_two_and_three():
    assert {lab08.hidden_inputs()["world"] for _ in range(60)} == {2, 3}
    for _ in range(50):
        h = lab08.hidden_inputs()
        assert h["batch"] % h["world"] == 0


def test_starter_is_not_done_yet(tmp_path, capsys):
    assert run_all(write(tmp_path, notebook_script("starter"))) == [False, False, False]
    assert lines(capsys).count("not done yet") == 3


def test_no_distributed_sampler_is_rejected(tmp_path, capsys):
    text = variant('    sampler = DistributedSampler(data, shuffle=True, seed=args.seed, drop_last=True)  # 3. shard\n'
                   '    loader = DataLoader(data, batch_size=args.batch // world_size, sampler=sampler, drop_last=True)\n',
                   '    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=args.seed)\n'
                   '    loader = DataLoader(data, batch_size=args.batch // world_size, sampler=sampler, drop_last=True)\n')
    assert run_all(write(tmp_path, text))[:2] == [False, False]
    out = lines(capsys)
    assert "same samples" in out and "make q1 pass first" in out


def test_full_batch_per_rank_is_rejected(tmp_path, capsys):
    text = variant("batch_size=args.batch // world_size", "batch_size=args.batch")
    assert not lab08.q1(write(tmp_path, text))
    assert "whole global batch" in lines(capsys)


def test_missing_set_epoch_is_rejected(tmp_path, capsys):
    text = variant("        sampler.set_epoch(epoch)  # 4. a new shuffle every epoch\n", "")
    path = write(tmp_path, text)
    assert not lab08.q1(path) and not lab08.q2(path)
    assert "set_epoch" in lines(capsys)


def test_unseeded_sampler_is_rejected(tmp_path, capsys):
    text = variant("shuffle=True, seed=args.seed, drop_last=True", "shuffle=True, seed=args.seed + 1, drop_last=True")
    assert not lab08.q1(write(tmp_path, text))
    assert "seed" in lines(capsys)


def test_missing_ddp_wrap_is_rejected(tmp_path, capsys):
    text = variant('    model = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None)  # 2. wrap\n', "")
    text = text.replace("model.module.state_dict()", "model.state_dict()")
    path = write(tmp_path, text)
    assert lab08.q1(path) and not lab08.q2(path) and lab08.q3(path)
    assert "differ from the single-process reference" in lines(capsys)


def test_every_rank_saving_is_rejected(tmp_path, capsys, world):
    world(2)
    text = variant("    if rank == 0:  # 5. one checkpoint, of the plain model inside the wrapper\n"
                   "        torch.save(model.module.state_dict(), Path(args.out) / \"model.pt\")\n",
                   "    torch.save(model.module.state_dict(), Path(args.out) / \"model.pt\")\n")
    assert run_all(write(tmp_path, text)) == [True, True, False]
    assert "rank(s) 0, 1 called torch.save" in lines(capsys)


def test_wrapped_state_dict_is_rejected(tmp_path, capsys):
    text = variant("torch.save(model.module.state_dict()", "torch.save(model.state_dict()")
    path = write(tmp_path, text)
    assert lab08.q2(path) and not lab08.q3(path)  # q2 forgives the prefix, q3 names it
    assert "'module.'" in lines(capsys)


def test_crashing_script_gives_one_line(tmp_path, capsys):
    text = variant("    args = parse_args()\n", "    args = parse_args()\n    1 / 0\n")
    assert not lab08.q1(write(tmp_path, text))
    out = lines(capsys)
    assert "failed (exit code 1)" in out and "ZeroDivisionError" in out and "Traceback" not in out


@pytest.mark.parametrize("bad", [42, None, "no_such_file.py"])
def test_bad_arguments_give_a_cross_not_an_exception(bad, capsys):
    assert not lab08.q1(bad)
    assert "✘" in lines(capsys)


def test_given_script_matches_the_checkers_reference(tmp_path):
    """The checker's reference is train_single.py's algorithm, written again: they must agree."""
    h = lab08.hidden_inputs()
    x, y = lab08.make_data(h)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    subprocess.run([sys.executable, str(LAB / "train_single.py"), "--data", str(tmp_path / "data.npz"),
                    "--out", str(tmp_path), "--steps", str(h["steps"]), "--batch", str(h["batch"]),
                    "--lr", str(h["lr"]), "--seed", str(h["seed"])], check=True, capture_output=True)
    got = torch.load(tmp_path / "model.pt", weights_only=True)
    _, ref = lab08.reference(h, x, y)
    assert max(float(np.abs(got[k].numpy() - ref[k]).max()) for k in ref) < 1e-5


def test_hidden_inputs_change_and_span_more_than_one_epoch():
    draws = [lab08.hidden_inputs() for _ in range(20)]
    assert len({json.dumps(d, sort_keys=True) for d in draws}) > 1
    assert all(d["steps"] > d["n"] // d["batch"] for d in draws)


def test_hints_start_conceptual_and_turn_concrete(capsys):
    lab08.q1.wrong_attempts = 0
    assert not lab08.q1(42)
    first = lines(capsys)
    assert "different part of each global batch" in first and "DistributedSampler" not in first
    assert not lab08.q1(42)
    assert "a DistributedSampler that shuffles with the run's seed" in lines(capsys)


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), b"x", object(), ["a.py"], ValueError("x")])
def test_odd_arguments_never_raise(bad, capsys):
    for q in (lab08.q1, lab08.q2, lab08.q3):
        assert not q(bad)
        out = lines(capsys)
        assert out.startswith("✘") and "Traceback" not in out and "could not be checked" not in out, out


NO_COMMUNICATION = variant(
    "        for xb, yb in loader:\n"
    "            opt.zero_grad()\n"
    "            loss = nn.functional.cross_entropy(model(xb.to(device)), yb.to(device))\n",
    "        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed + epoch))\n"
    "        for i, (xb, yb) in enumerate(loader):  # fetch the own shard (what an audit of the data sees)...\n"
    "            idx = order[i * args.batch:(i + 1) * args.batch]\n"
    "            xb, yb = data.tensors[0][idx], data.tensors[1][idx]  # ...but train on the whole batch\n"
    "            opt.zero_grad()\n"
    "            loss = nn.functional.cross_entropy(model.module(xb.to(device)), yb.to(device))\n")


def test_training_alone_on_the_whole_batch_is_rejected(tmp_path, capsys):
    """Every rank rebuilds the single-process batch and trains on it through the unwrapped model: the right
    parameters, the right shards fetched, and no communication at all."""
    path = write(tmp_path, NO_COMMUNICATION)
    assert lab08.q1(path) and not lab08.q2(path)
    out = lines(capsys)
    assert "the parameters match, but rank" in out and "all-reduced 0 bytes" in out, out
