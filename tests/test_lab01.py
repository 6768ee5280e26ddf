"""Lab 01's checks: the notebook's solution passes, the starter is "not done yet", wrong answers fail."""
import json

import numpy as np
import pytest

from course_utils.labs import lab01 as check
from tests.helpers import ROOT, every_answer_gives_one_line

LAB = ROOT / "labs" / "lab01_neuron_and_gradient_descent"


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def exercises(name: str) -> dict:
    """Run the cells tagged `exercise` of a lab notebook; return what they define."""
    nb = json.loads((LAB / name).read_text(encoding="utf-8"))
    namespace = {"np": np, "sigmoid": sigmoid}
    for cell in nb["cells"]:
        if "exercise" in cell.get("metadata", {}).get("tags", []):
            exec("".join(cell["source"]), namespace)
    return namespace


@pytest.fixture(scope="module")
def solution():
    return exercises("solution.ipynb")


@pytest.fixture(scope="module")
def starter():
    return exercises("starter.ipynb")


def run_all(ns):
    return [check.q1(ns["neuron_forward"]), check.q2(ns["bce_loss"]), check.q3(ns["gradient"]),
            check.q4(ns["gradient_descent"]), check.q5(ns["gradient_descent"], lr=ns["LR"], steps=ns["STEPS"])]


def test_the_solution_passes_every_check_every_time(solution, capsys):
    for _ in range(5):  # fresh hidden inputs on every call
        assert all(run_all(solution))
    out = capsys.readouterr().out
    assert "✘" not in out and out.count("✔") == 25


def test_the_starter_is_not_done_yet(starter, capsys):
    assert not any(run_all(starter))
    out = capsys.readouterr().out
    assert out.count("✘") == 5 and out.count("not done yet") == 5 and "Traceback" not in out


def rejected(result, capsys, expected: str) -> str:
    out = capsys.readouterr().out
    assert not result, out
    assert out.startswith("✘") and "hint:" in out and "Traceback" not in out and out.count("\n") == 2, out
    assert expected in out, out
    return out


@pytest.mark.parametrize("answer, expected", [
    (lambda X, w, b: sigmoid(X @ w), "ignores the bias"),
    (lambda X, w, b: sigmoid(-(X @ w + b)), "sign error"),
    (lambda X, w, b: X @ w + b, "apply the sigmoid"),
    (lambda X, w, b: sigmoid(X.T @ w + b), "raised ValueError"),            # missing/extra transpose
    (lambda X, w, b: sigmoid(X @ w + b)[:, None], "has shape"),
    (lambda X, w, b: np.full(len(X), np.nan), "NaN"),
    (lambda X, w, b: 0.5 * np.ones(len(X)), "is off by"),                    # a hard-coded answer
])
def test_q1_rejects_wrong_forward_passes(answer, expected, capsys):
    rejected(check.q1(answer), capsys, expected)


@pytest.mark.parametrize("answer, expected", [
    (lambda p, y: np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), "wrong sign"),
    (lambda p, y: np.sum(-y * np.log(p) - (1 - y) * np.log(1 - p)), "sums over the examples"),
    (lambda p, y: np.mean(-y * np.log(p)), "is off by"),                      # forgot the (1 - y) term
    (lambda p, y: -y * np.log(p) - (1 - y) * np.log(1 - p), "single number"),  # no mean
    (lambda p, y: "0.5", "expected numbers"),
])
def test_q2_rejects_wrong_losses(answer, expected, capsys):
    rejected(check.q2(answer), capsys, expected)


def _grad(transform):
    def gradient(X, y, w, b):
        e = sigmoid(X @ w + b) - y
        return transform(X, e)
    return gradient


@pytest.mark.parametrize("answer, expected", [
    (_grad(lambda X, e: (X.T @ -e / len(e), -e.mean())), "wrong sign"),
    (_grad(lambda X, e: (X.T @ e, e.sum())), "N times too large"),
    (_grad(lambda X, e: (X @ e / len(e), e.mean())), "raised ValueError"),        # missing transpose
    (_grad(lambda X, e: (e @ X.T / len(e), e.mean())), "raised ValueError"),
    (_grad(lambda X, e: (X.T @ e / len(e), e / len(e))), "single number"),       # db not summed
    (_grad(lambda X, e: X.T @ e / len(e)), "tuple of 2"),                        # forgot db
    (_grad(lambda X, e: (X.T @ (e * 0.25) / len(e), e.mean())), "is off by"),   # sigmoid' twice
])
def test_q3_rejects_wrong_gradients(answer, expected, capsys):
    rejected(check.q3(answer), capsys, expected)


def _gd(update_sign=1.0, record_after=False, use_lr=True):
    @np.errstate(all="ignore")  # gradient *ascent* drives the loss to log(0)
    def gradient_descent(X, y, lr, steps):
        w, b, losses = np.zeros(X.shape[1]), 0.0, []
        for _ in range(steps):
            if not record_after:
                losses.append(check.reference_bce(sigmoid(X @ w + b), y))
            dw, db = check.reference_gradient(X, y, w, b)
            step = lr if use_lr else 1.0
            w, b = w - update_sign * step * dw, b - update_sign * step * db
            if record_after:
                losses.append(check.reference_bce(sigmoid(X @ w + b), y))
        return w, b, losses
    return gradient_descent


@pytest.mark.parametrize("answer, expected", [
    (_gd(update_sign=-1.0), "the loss goes up"),
    (_gd(record_after=True), "shifted by one step"),
    (_gd(use_lr=False), "is off by"),
    (lambda X, y, lr, steps: (np.zeros(2), 0.0), "tuple of 3"),
    (lambda X, y, lr, steps: (np.zeros(X.shape[1]), 0.0, [0.69]), "losses has shape"),
])
def test_q4_rejects_wrong_loops(answer, expected, capsys):
    rejected(check.q4(answer), capsys, expected)


def test_q5_rejects_bad_learning_rates_and_step_counts(solution, capsys):
    gd = solution["gradient_descent"]
    rejected(check.q5(gd, lr=0.001, steps=50), capsys, "above the target")         # far too slow
    rejected(check.q5(gd, lr=2.0, steps=5000), capsys, "at most 1000")
    rejected(check.q5(gd, lr=-1.0, steps=100), capsys, "positive number")
    rejected(check.q5(gd, lr="big", steps=100), capsys, "positive number")
    rejected(check.q5(gd, lr=1.0, steps=2.5), capsys, "whole number")


@pytest.mark.parametrize("q", [check.q1, check.q2, check.q3, check.q4])
def test_bad_types_and_crashes_give_one_line(q, capsys):
    for answer, expected in [(42, "to be a function"), (lambda *a: None, "None"),
                             (lambda *a: 1 / 0, "raised ZeroDivisionError")]:
        rejected(q(answer), capsys, expected)


class _Weird:
    def __array__(self, *args, **kwargs):
        raise ValueError("cannot convert float NaN to integer")


ODD = [None, np.nan, np.inf, -np.inf, "text", b"x", object(), _Weird(), [1, "a"], [[1.0], [1.0, 2.0]], {"a": 1},
       ValueError("x"), 1j, True, np.ones((2, 2, 2)), np.array(["a"]), np.full(7, np.nan), np.ones(0)]


@pytest.mark.parametrize("q, arity", [(check.q1, 3), (check.q2, 2), (check.q3, 4), (check.q4, 4)])
def test_any_return_value_or_exception_gives_one_line(q, arity, capsys):
    """Never a traceback, and never a checker bug ('could not be checked'), whatever comes back."""
    answers = [lambda *a, v=v: v for v in ODD]
    answers += [lambda *a, v=v: (v, v) for v in ODD] + [lambda *a, v=v: (v, v, v) for v in ODD]
    answers += [lambda *a, v=v: (np.zeros(3), v, [v]) for v in ODD]
    every_answer_gives_one_line(capsys, q, answers)


def test_q5_any_lr_and_steps_give_one_line(solution, capsys):
    for lr, steps in [(np.nan, 100), (np.inf, 100), ("1", 100), (None, None), (1.0, np.nan), (1.0, 2.5),
                      (1.0, "100"), (object(), 10), (1j, 10), (1.0, -3), (1.0, True)]:
        ok, out = check.q5(solution["gradient_descent"], lr=lr, steps=steps), capsys.readouterr().out
        assert not ok and out.startswith("✘") and "Traceback" not in out and "could not be checked" not in out, out


def test_hints_start_conceptual_and_turn_concrete(capsys):
    check.q3.wrong_attempts = 0
    wrong = lambda X, y, w, b: (np.zeros(len(w)), 0.0)  # noqa: E731
    assert not check.q3(wrong)
    first = capsys.readouterr().out
    assert "chain rule" in first and "weighs each example" not in first
    assert not check.q3(wrong)
    assert "weighs each example's inputs by its e" in capsys.readouterr().out
