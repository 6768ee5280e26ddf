"""Checks for lab 02: forward and backward passes of a 2-layer MLP in NumPy.

The MLP is ``h = relu(X @ W1 + b1)``, ``logits = h @ W2 + b2``, trained with the mean softmax
cross-entropy. Every check draws fresh random sizes and values (so a hard-coded answer fails) and
compares with an independent reference: NumPy for the forward pass, ``torch.autograd`` for the
gradients, the real digits test set for the trained network (trained in a secret order, with the
ten classes renamed).

    from course_utils.labs import lab02 as check
    check.q1(forward); check.q2(softmax_cross_entropy); check.q3(loss_and_grads); check.q4(train)
"""
from __future__ import annotations

import numpy as np

from course_utils.labs import Wrong, as_array, call, exercise, expect_close, expect_tuple, rng

TARGET_ACCURACY = 0.95  # q4: test accuracy the trained MLP must reach on the digits (8×8)


def _problem(g: np.random.Generator, hidden: int | None = None):
    """Random sizes with N, D, H, C all different (a missing transpose cannot go unnoticed)."""
    n, d = int(g.integers(5, 9)), int(g.integers(10, 14))
    h = hidden or int(g.integers(15, 19))
    c = int(g.integers(3, 5))
    x = g.normal(size=(n, d))
    w1, b1 = g.normal(size=(d, h)) / np.sqrt(d), g.normal(size=h) * 0.5
    w2, b2 = g.normal(size=(h, c)) / np.sqrt(h), g.normal(size=c) * 0.5
    y = g.integers(0, c, size=n)
    return x, y, w1, b1, w2, b2


def reference_forward(x, w1, b1, w2, b2):
    h = np.maximum(x @ w1 + b1, 0.0)
    return h, h @ w2 + b2


@exercise("q1 forward", hint=("two layers: an affine map, a non-linearity that zeroes the negatives, another affine "
                               "map; the scores stay raw (no probabilities here)",
                               "the first affine map (W1, b1) takes X from (N, D) to (N, H); ReLU keeps the positive "
                               "entries and zeroes the rest (an element-wise maximum with 0); the second (W2, b2) "
                               "takes that to (N, C), with no softmax"))
def q1(forward):
    g = rng()
    for _ in range(3):
        x, _, w1, b1, w2, b2 = _problem(g)
        h_ref, logits_ref = reference_forward(x, w1, b1, w2, b2)
        h, logits = expect_tuple(call(forward, x.copy(), w1.copy(), b1.copy(), w2.copy(), b2.copy(),
                                what="forward(X, W1, b1, W2, b2)"), "forward(X, W1, b1, W2, b2)", 2)
        got = as_array(h, "h")
        if got.shape == h_ref.shape and np.all(np.isfinite(got)) and np.allclose(got, x @ w1 + b1):
            raise Wrong("h has negative entries: apply the ReLU, h = max(0, X @ W1 + b1)")
        expect_close(h, h_ref, "h")
        expect_close(logits, logits_ref, "logits")
    return "h and logits are correct on random inputs"


def reference_softmax_cross_entropy(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y]).mean()
    dlogits = p.copy()
    dlogits[np.arange(n), y] -= 1
    return loss, dlogits / n


@exercise("q2 softmax cross-entropy",
          hint=("softmax turns each row of scores into probabilities, the loss averages minus the log-probability "
                "of the true class, and its gradient per row is 'predicted minus true', scaled for the mean; "
                "softmax does not change when a row is shifted by a constant, which keeps the exponentials from overflowing",
                "subtract each row's maximum before exponentiating; the probabilities are the exponentials over "
                "their row's sum; the loss averages minus the log-probability of each row's true class; the "
                "gradient is the probabilities minus the one-hot targets, divided by N"))
def q2(softmax_cross_entropy):
    g = rng()
    what = "softmax_cross_entropy(logits, y)"
    for scale in (1.0, 3.0):
        n, c = int(g.integers(5, 12)), int(g.integers(3, 8))
        logits, y = g.normal(size=(n, c)) * scale, g.integers(0, c, size=n)
        loss_ref, d_ref = reference_softmax_cross_entropy(logits, y)
        loss, d = expect_tuple(call(softmax_cross_entropy, logits.copy(), y.copy(), what=what), what, 2)
        loss = as_array(loss, "loss")
        if loss.size != 1:
            raise Wrong(f"loss should be one number (the mean over the batch), got shape {loss.shape}")
        expect_close(loss.reshape(()), loss_ref, "loss")
        got = as_array(d, "dlogits")
        if got.shape == d_ref.shape and np.allclose(got, -d_ref):
            raise Wrong("dlogits has the wrong sign: it is softmax − one_hot, not one_hot − softmax")
        if got.shape == d_ref.shape and np.allclose(got, d_ref * n):
            raise Wrong("dlogits is N times too large: the loss is a mean, so divide by N")
        expect_close(d, d_ref, "dlogits")
    big = logits + 1000.0  # large logits: naive np.exp overflows to inf
    loss_ref, d_ref = reference_softmax_cross_entropy(big, y)
    loss, d = expect_tuple(call(softmax_cross_entropy, big, y.copy(), what=what), what, 2)
    for value, ref, name in ((loss, loss_ref, "loss"), (d, d_ref, "dlogits")):
        arr = as_array(value, name)
        if arr.size == np.size(ref) and not np.all(np.isfinite(arr)):
            raise Wrong(f"{name} is NaN/inf for large logits (around 1000): subtract the row max before np.exp")
        expect_close(arr.reshape(np.shape(ref)), ref, f"{name} for large logits")
    return "loss and dlogits are correct, and stable for large logits"


def _torch_reference(x, y, w1, b1, w2, b2):
    """Loss and gradients by torch.autograd (float64): the independent reference for q3."""
    import torch
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
         for k, v in (("W1", w1), ("b1", b1), ("W2", w2), ("b2", b2))}
    h = torch.relu(torch.tensor(x) @ t["W1"] + t["b1"])
    loss = torch.nn.functional.cross_entropy(h @ t["W2"] + t["b2"], torch.tensor(y))
    loss.backward()
    return loss.item(), [t[k].grad.numpy() for k in ("W1", "b1", "W2", "b2")]


@exercise("q3 backward",
          hint=("go back layer by layer from dlogits: a matrix product sends the gradient back through the "
                "transposed matrix, a bias collects it from every example of the batch, and the ReLU lets it "
                "through only where it was active",
                "a gradient has the shape of its variable: the last weight's gradient is the hidden activations, "
                "transposed, times dlogits, (H, C); a bias gradient sums over the batch; the ReLU passes the "
                "gradient only where its input was positive"))
def q3(loss_and_grads):
    g = rng()
    what = "loss_and_grads(X, y, W1, b1, W2, b2)"
    for _ in range(3):
        x, y, w1, b1, w2, b2 = _problem(g)
        loss_ref, grads_ref = _torch_reference(x, y, w1, b1, w2, b2)
        out = expect_tuple(call(loss_and_grads, x.copy(), y.copy(), w1.copy(), b1.copy(), w2.copy(), b2.copy(),
                         what=what), what, 5)
        loss = as_array(out[0], "loss")
        if loss.size != 1:
            raise Wrong(f"loss should be one number, got shape {loss.shape}")
        expect_close(loss.reshape(()), loss_ref, "loss")
        for value, ref, name in zip(out[1:], grads_ref, ("dW1", "db1", "dW2", "db2")):
            got = as_array(value, name)
            if got.shape == ref.T.shape and got.shape != ref.shape:
                raise Wrong(f"{name} has shape {got.shape}, expected {ref.shape}: a transpose is missing")
            if got.shape == ref.shape and np.allclose(got, -ref, atol=1e-8) and np.abs(ref).max() > 1e-8:
                raise Wrong(f"{name} has the wrong sign (that is the gradient of −loss)")
            expect_close(got, ref, name, rtol=1e-4, atol=1e-7)
    return "loss and all four gradients match torch.autograd on random inputs"


def _digits():
    from course_utils.data import digits
    d = digits(8)
    flat = lambda a: np.asarray(a, dtype=np.float64).reshape(len(a), -1)  # noqa: E731
    return flat(d.x_train), np.asarray(d.y_train), flat(d.x_test), np.asarray(d.y_test)


@exercise("q4 training", hint=("many small gradient steps with your loss_and_grads, on shuffled minibatches, "
                                "for several epochs; the hidden size and the learning rate decide whether the "
                                "test accuracy clears the target",
                                "minibatch SGD on batches reshuffled every epoch, each of the four parameters "
                                "moved against its gradient; a learning rate around 0.5 decaying linearly to 0, "
                                "about 30 epochs and 64 hidden units"))
def q4(train):
    x_train, y_train, x_test, y_test = _digits()
    g = rng()
    order = g.permutation(len(x_train))  # a secret order and secretly renamed classes:
    rename = g.permutation(10)           # weights learnt (or stored) for the usual labels fail
    what = "train(X, y)"
    params = expect_tuple(call(train, x_train[order], rename[y_train[order]], what=what), what, 4)
    d, c = x_train.shape[1], 10
    arrays = [as_array(p, name) for p, name in zip(params, ("W1", "b1", "W2", "b2"))]
    w1, b1, w2, b2 = arrays
    hidden = w1.shape[1] if w1.ndim == 2 else -1
    shapes = {"W1": (d, hidden), "b1": (hidden,), "W2": (hidden, c), "b2": (c,)}
    for arr, (name, shape) in zip(arrays, shapes.items()):
        if arr.shape != shape:
            raise Wrong(f"{name} has shape {arr.shape}, expected {shape} (W1 is (64, hidden))")
        if not np.all(np.isfinite(arr)):
            raise Wrong(f"{name} contains NaN or inf: the learning rate is probably too large")
    test = g.permutation(len(x_test))
    _, logits = reference_forward(x_test[test], *[a.astype(np.float64) for a in arrays])
    accuracy = float((logits.argmax(axis=1) == rename[y_test[test]]).mean())
    if accuracy < TARGET_ACCURACY:
        raise Wrong(f"test accuracy {accuracy:.3f} < {TARGET_ACCURACY}")
    return f"test accuracy >= {TARGET_ACCURACY} (trained on the digits in a secret order, classes renamed)"
