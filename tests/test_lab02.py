"""Lab 02 (backprop MLP): the reference solution passes, the starter does not, wrong answers are caught."""
import numpy as np
import pytest

from course_utils.labs import lab02 as check
from tests.helpers import ROOT, every_answer_gives_one_line, failed, notebook_namespace

LAB = ROOT / "labs" / "lab02_backprop_mlp"


@pytest.fixture(scope="module")
def solution():
    return notebook_namespace(LAB / "solution.ipynb", skip=("check.q", "if trained"))


@pytest.fixture(scope="module")
def starter():
    return notebook_namespace(LAB / "starter.ipynb", skip=("check.q", "if trained"))


@pytest.mark.parametrize("name, fn", [("q1", "forward"), ("q2", "softmax_cross_entropy"),
                                      ("q3", "loss_and_grads"), ("q4", "train")])
def test_solution_passes_and_starter_is_not_done(solution, starter, capsys, name, fn):
    passed = getattr(check, name)(solution[fn])
    out = capsys.readouterr().out
    assert passed and out.startswith("✔") and out.count("\n") == 1, out
    failed(capsys, getattr(check, name)(starter[fn]), "not done yet")


def test_solution_passes_repeatedly_on_fresh_inputs(solution):
    for _ in range(5):
        assert check.q1(solution["forward"]) and check.q2(solution["softmax_cross_entropy"])
        assert check.q3(solution["loss_and_grads"])
    for _ in range(3):                           # a new secret order and class renaming each time
        assert check.q4(solution["train"])


# --- q1: forward -------------------------------------------------------------------------------

def test_q1_rejects_plausible_mistakes(capsys):
    def no_relu(X, W1, b1, W2, b2):
        h = X @ W1 + b1
        return h, h @ W2 + b2

    def no_bias(X, W1, b1, W2, b2):
        h = np.maximum(X @ W1, 0)
        return h, h @ W2 + b2

    def transposed(X, W1, b1, W2, b2):
        h = np.maximum(X @ W1.T + b1, 0)
        return h, h @ W2 + b2

    def softmaxed(X, W1, b1, W2, b2):
        h = np.maximum(X @ W1 + b1, 0)
        z = np.exp(h @ W2 + b2)
        return h, z / z.sum(1, keepdims=True)

    failed(capsys, check.q1(no_relu), "apply the ReLU")
    failed(capsys, check.q1(no_bias), "h is off by")
    failed(capsys, check.q1(transposed), "raised ValueError")
    failed(capsys, check.q1(softmaxed), "logits is off by")


def test_q1_hard_coded_answer_fails(capsys):
    g = np.random.default_rng(0)
    frozen = (np.abs(g.normal(size=(6, 16))), g.normal(size=(6, 3)))
    out = failed(capsys, check.q1(lambda *args: frozen))  # the hidden shapes are random: usually "shape",
    assert "shape" in out or "off by" in out, out           # "off by" when they happen to match


# --- q2: softmax cross-entropy -----------------------------------------------------------------

def test_q2_rejects_plausible_mistakes(solution, capsys):
    ref = solution["softmax_cross_entropy"]

    def sign_error(logits, y):
        loss, d = ref(logits, y)
        return loss, -d

    def not_averaged(logits, y):
        loss, d = ref(logits, y)
        return loss, d * len(y)

    def naive_exp(logits, y):
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        d = p.copy()
        d[np.arange(len(y)), y] -= 1
        return -np.log(p[np.arange(len(y)), y]).mean(), d / len(y)

    def summed_loss(logits, y):
        loss, d = ref(logits, y)
        return loss * len(y), d

    def per_example_loss(logits, y):
        loss, d = ref(logits, y)
        return np.full(len(y), loss), d

    failed(capsys, check.q2(sign_error), "wrong sign")
    failed(capsys, check.q2(not_averaged), "N times too large")
    with np.errstate(over="ignore", invalid="ignore"):
        failed(capsys, check.q2(naive_exp), "large logits")
    failed(capsys, check.q2(summed_loss), "loss is off by")
    failed(capsys, check.q2(per_example_loss), "one number")


# --- q3: backward ------------------------------------------------------------------------------

def test_q3_rejects_plausible_mistakes(solution, capsys):
    forward, sce = solution["forward"], solution["softmax_cross_entropy"]

    def grads(X, y, W1, b1, W2, b2, mask=True, transpose=True, sign=1.0):
        h, logits = forward(X, W1, b1, W2, b2)
        loss, d = sce(logits, y)
        dW2 = h.T @ d if transpose else d.T @ h
        dz = (d @ W2.T) * ((h > 0) if mask else 1.0)
        return loss, sign * (X.T @ dz), sign * dz.sum(0), sign * dW2, sign * d.sum(0)

    failed(capsys, check.q3(lambda *a: grads(*a, mask=False)), "dW1 is off by")
    failed(capsys, check.q3(lambda *a: grads(*a, transpose=False)), "a transpose is missing")
    failed(capsys, check.q3(lambda *a: grads(*a, sign=-1.0)), "wrong sign")
    failed(capsys, check.q3(lambda *a: grads(*a)[:4]), "tuple of 5")


# --- q4: training ------------------------------------------------------------------------------

def test_q4_rejects_untrained_or_broken_networks(solution, capsys):
    train = solution["train"]
    x, y = solution["X_train"], solution["y_train"]
    stored = train(x, y)                         # weights learnt for the usual class names
    failed(capsys, check.q4(lambda X, y: stored), "test accuracy")
    failed(capsys, check.q4(lambda X, y: train(X, y, epochs=0)), "test accuracy")
    failed(capsys, check.q4(lambda X, y: tuple(p * np.nan for p in train(X, y, epochs=1))), "NaN")
    failed(capsys, check.q4(lambda X, y: tuple(p.T for p in train(X, y, epochs=1))), "shape")


# --- bad types, shapes, NaN: one ✘ line each, never an exception --------------------------------

@pytest.mark.parametrize("name", ["q1", "q2", "q3", "q4"])
@pytest.mark.parametrize("answer, expected", [
    (42, "to be a function"),
    (lambda *a: None, "tuple of"),
    (lambda *a: "text", "tuple of"),
    (lambda *a: 1 / 0, "raised ZeroDivisionError"),
])
def test_bad_answers_give_one_line(capsys, name, answer, expected):
    failed(capsys, getattr(check, name)(answer), expected)


def test_nan_and_wrong_dtype_are_reported(capsys):
    def nan_forward(X, W1, b1, W2, b2):
        return np.full((len(X), W1.shape[1]), np.nan), np.full((len(X), W2.shape[1]), np.nan)

    def string_forward(X, W1, b1, W2, b2):
        return np.array(["a"] * len(X)), None

    failed(capsys, check.q1(nan_forward), "NaN")
    failed(capsys, check.q1(string_forward), "expected numbers")
    failed(capsys, check.q3(lambda *a: (np.nan, None, None, None, None)), "NaN")


class _Weird:
    def __array__(self, *args, **kwargs):
        raise ValueError("cannot convert float NaN to integer")


ODD = [None, np.nan, np.inf, "text", b"x", object(), _Weird(), [1, "a"], [[1.0], [1.0, 2.0]], {"a": 1},
       ValueError("x"), 1j, True, np.ones((2, 2, 2)), np.array(["a"]), np.full(7, np.nan), np.ones(0)]


@pytest.mark.parametrize("name, n", [("q1", 2), ("q2", 2), ("q3", 5), ("q4", 4)])
def test_any_return_value_or_exception_gives_one_line(capsys, name, n):
    """Never a traceback, and never a checker bug ('could not be checked'), whatever comes back."""
    q = getattr(check, name)
    answers = [lambda *a, v=v: v for v in ODD] + [lambda *a, v=v: (v,) * n for v in ODD]
    answers += [lambda *a, v=v: (np.zeros(3),) * (n - 1) + (v,) for v in ODD]
    every_answer_gives_one_line(capsys, q, answers)


def test_hints_start_conceptual_and_turn_concrete(capsys):
    check.q1.wrong_attempts = 0
    wrong = lambda X, W1, b1, W2, b2: (X @ W1 + b1, (X @ W1 + b1) @ W2 + b2)  # noqa: E731  (no ReLU)
    assert not check.q1(wrong)
    first = capsys.readouterr().out
    assert "zeroes the negatives" in first and "element-wise maximum" not in first
    assert not check.q1(wrong)
    assert "element-wise maximum with 0" in capsys.readouterr().out
