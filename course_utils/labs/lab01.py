"""Checks for lab 01: one neuron, a loss, its gradient by hand, and a gradient-descent loop.

The neuron is ``p = sigmoid(X @ w + b)`` (X: (N, D), w: (D,), b: a number, p: (N,)), trained with
the mean binary cross-entropy. Every check draws fresh random sizes and values (N ≠ D, so a
missing transpose cannot pass) and compares with the reference written here.

    from course_utils.labs import lab01 as check
    check.q1(neuron_forward); check.q2(bce_loss); check.q3(gradient)
    check.q4(gradient_descent); check.q5(gradient_descent, lr=LR, steps=STEPS)
"""
from __future__ import annotations

import numpy as np

from course_utils.labs import Wrong, as_array, call, exercise, expect_close, expect_tuple, rng

TARGET_LOSS = 0.1    # q5: the loss gradient descent must reach on the hidden dataset
MAX_STEPS = 1000     # q5: ... within at most this many steps


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference_forward(X, w, b):
    return sigmoid(X @ w + b)


def reference_bce(p, y):
    return float(np.mean(-y * np.log(p) - (1 - y) * np.log(1 - p)))


def reference_gradient(X, y, w, b):
    error = reference_forward(X, w, b) - y          # dLoss/dz for sigmoid + cross-entropy, per example
    return X.T @ error / len(y), float(error.mean())


def reference_gradient_descent(X, y, lr, steps):
    w, b, losses = np.zeros(X.shape[1]), 0.0, []
    for _ in range(steps):
        losses.append(reference_bce(reference_forward(X, w, b), y))
        dw, db = reference_gradient(X, y, w, b)
        w, b = w - lr * dw, b - lr * db
    return w, b, losses


def _problem(g: np.random.Generator):
    """Random X (N, D) with N ≠ D, weights, a bias and 0/1 labels."""
    d = int(g.integers(2, 6))
    n = int(g.integers(d + 3, d + 12))
    X = g.normal(size=(n, d))
    w, b = g.normal(size=d), float(g.normal())
    y = (g.random(n) < 0.5).astype(float)
    return X, y, w, b


def _dataset(g: np.random.Generator, n: int = 200):
    """A hidden 2-D classification set: two Gaussian clouds 5 apart, centred 3 from the origin."""
    direction, centre = g.normal(size=2), g.normal(size=2)
    direction, centre = direction / np.linalg.norm(direction), 3 * centre / np.linalg.norm(centre)
    y = (g.random(n) < 0.5).astype(float)
    X = g.normal(size=(n, 2)) + np.outer(2 * y - 1, 2.5 * direction) + centre
    return X, y


def _scalar(value, what: str) -> float:
    got = as_array(value, what)
    if got.size != 1:
        raise Wrong(f"{what} has shape {got.shape}, expected a single number (take the mean)")
    got = float(got.reshape(()))
    if not np.isfinite(got):
        raise Wrong(f"{what} is NaN or inf")
    return got


@exercise("q1 neuron forward",
          hint=("a neuron weighs its inputs, adds its bias, and squashes that sum into (0, 1) with the sigmoid; "
                "do it for all N rows of X at once",
                "X is (N, D) and w is (D,): one matrix-vector product gives all N weighted sums at once; add b to "
                "each and apply the sigmoid, 1 / (1 + e^(-z)), element by element"))
def q1(neuron_forward):
    g, what = rng(), "neuron_forward(X, w, b)"
    for _ in range(3):
        X, _, w, b = _problem(g)
        got = call(neuron_forward, X.copy(), w.copy(), b, what=what)
        arr = as_array(got, what)
        if arr.shape == (len(X),) and np.all(np.isfinite(arr)):
            if np.allclose(arr, X @ w + b):
                raise Wrong(f"{what} returns the weighted sum z; apply the sigmoid activation to it")
            if np.allclose(arr, sigmoid(X @ w)):
                raise Wrong(f"{what} ignores the bias b")
            if np.allclose(arr, sigmoid(-(X @ w + b))):
                raise Wrong(f"{what} has a sign error: sigmoid(z) = 1 / (1 + exp(-z))")
        expect_close(arr, reference_forward(X, w, b), what)
    return "outputs are correct on random inputs"


@exercise("q2 binary cross-entropy",
          hint=("per example: minus the log of the probability the neuron gave to the true class (p for class "
                "1, 1 - p for class 0); the loss is one number, the average over the examples",
                "take the log of p where y is 1 and the log of 1 - p where y is 0, negate, and average over the N "
                "examples: one number"))
def q2(bce_loss):
    g, what = rng(), "bce_loss(p, y)"
    for _ in range(3):
        n = int(g.integers(4, 15))
        p, y = g.uniform(0.05, 0.95, size=n), (g.random(n) < 0.5).astype(float)
        y[:2] = [0.0, 1.0]  # both classes appear
        got = _scalar(call(bce_loss, p.copy(), y.copy(), what=what), what)
        ref = reference_bce(p, y)
        if np.isclose(got, -ref):
            raise Wrong(f"{what} has the wrong sign: log(p) < 0, so the loss needs a minus in front")
        if np.isclose(got, ref * n):
            raise Wrong(f"{what} sums over the examples; take the mean instead")
        expect_close(got, ref, what)
    return "the loss is correct on random predictions"


@exercise("q3 gradient by hand",
          hint=("chain rule: for the sigmoid with cross-entropy, the loss's derivative with respect to z is just "
                "prediction minus target, per example; then follow the weighted sum z back to w and b, averaged over "
                "the examples",
                "call e the predictions minus the targets (N numbers): the weight gradient weighs each example's "
                "inputs by its e and averages over the examples, a (D,) vector; the bias gradient is the average "
                "of e, a number"))
def q3(gradient):
    g, what = rng(), "gradient(X, y, w, b)"
    for _ in range(3):
        X, y, w, b = _problem(g)
        dw, db = expect_tuple(call(gradient, X.copy(), y.copy(), w.copy(), b, what=what), what, 2)
        dw_ref, db_ref = reference_gradient(X, y, w, b)
        got = as_array(dw, "dw")
        if got.shape == dw_ref.shape and np.all(np.isfinite(got)):
            if np.allclose(got, -dw_ref):
                raise Wrong("dw has the wrong sign: the error is prediction - target, p - y")
            if np.allclose(got, dw_ref * len(y)):
                raise Wrong("dw is N times too large: divide by the number of examples (the loss is a mean)")
        expect_close(dw, dw_ref, "dw")
        expect_close(_scalar(db, "db"), db_ref, "db")
    return "dw and db match the exact gradient on random inputs"


@exercise("q4 gradient-descent loop",
          hint=("each step: measure where you are (the loss), ask which way is uphill (the gradient), take a step "
                "of size lr the other way; start from all zeros",
                "start from zero weights and a zero bias; in each step record the loss, compute both gradients, and "
                "move each parameter by lr times its gradient, downhill"))
def q4(gradient_descent):
    g, what = rng(), "gradient_descent(X, y, lr, steps)"
    for _ in range(2):
        X, y = _dataset(g, n=int(g.integers(30, 60)))
        lr, steps = float(g.uniform(0.2, 1.0)), int(g.integers(5, 20))
        w, b, losses = expect_tuple(call(gradient_descent, X.copy(), y.copy(), lr, steps, what=what), what, 3)
        w_ref, b_ref, losses_ref = reference_gradient_descent(X, y, lr, steps)
        losses = as_array(losses, "losses")
        if losses.shape != (steps,):
            raise Wrong(f"losses has shape {losses.shape}, expected ({steps},): one loss per step")
        if np.all(np.isfinite(losses)) and np.allclose(losses[:-1], losses_ref[1:]):
            raise Wrong("losses are shifted by one step: record the loss *before* each update")
        if steps > 1 and np.isfinite(losses[0]) and not losses[-1] <= losses[0] + 1e-9:  # NaN/inf too
            raise Wrong("the loss goes up: step against the gradient, w = w - lr·dw")
        expect_close(w, w_ref, "final w")
        expect_close(_scalar(b, "final b"), b_ref, "final b")
        expect_close(losses, losses_ref, "losses")
    return "the loop matches the reference step for step"


@exercise("q5 fit to a target loss",
          hint=("too small a learning rate crawls, too large one overshoots: try a few values and watch the loss "
                "curve below",
                f"a learning rate between 0.1 and 10 with a few hundred steps (at most {MAX_STEPS}) should reach "
                f"{TARGET_LOSS}"))
def q5(gradient_descent, lr=None, steps=None):
    what = "gradient_descent(X, y, lr, steps)"
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not np.isfinite(lr) or lr <= 0:
        raise Wrong(f"lr must be a positive number, got {lr!r}")
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise Wrong(f"steps must be a whole number from 1 to {MAX_STEPS}, got {steps!r}")
    g = rng()
    for _ in range(3):
        X, y = _dataset(g)
        w, b, _ = expect_tuple(call(gradient_descent, X.copy(), y.copy(), float(lr), int(steps), what=what), what, 3)
        w = as_array(w, "final w")
        if w.shape != (2,):
            raise Wrong(f"final w has shape {w.shape}, expected (2,)")
        if not np.all(np.isfinite(w)) or not np.isfinite(as_array(b, "final b")).all():
            raise Wrong("the weights became NaN or inf: the learning rate is far too large")
        with np.errstate(all="ignore"):
            loss = reference_bce(np.clip(reference_forward(X, w, _scalar(b, "final b")), 1e-12, 1 - 1e-12), y)
        if loss > TARGET_LOSS:
            raise Wrong(f"the loss after {steps} steps is {loss:.3f}, above the target {TARGET_LOSS}")
    return f"the loss reaches the target {TARGET_LOSS} on 3 hidden datasets"
