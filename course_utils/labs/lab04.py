"""Checks for lab 04 — one LSTM step by hand, a whole sequence, and a sequence task.

    from course_utils.labs import lab04 as check
    check.q1(lstm_step)          # one step == nn.LSTMCell with the same weights
    check.q2(lstm_forward)       # a whole sequence == nn.LSTM with the same weights
    check.q3(predict)            # your trained model solves the "sign of the sum" task

Gate order everywhere is PyTorch's: input, forget, candidate (g), output — the rows of ``W_ih``
and ``W_hh`` in four blocks of H.
"""
from __future__ import annotations

import numpy as np

from course_utils.labs import Wrong, as_array, call, exercise, expect_close, rng

SEQ_LEN = 20  # length of the q3 task sequences


def _torch():
    import torch
    return torch


def _params(g: np.random.Generator, n_in: int, hidden: int):
    """Random float32 LSTM weights (W_ih, W_hh, b_ih, b_hh) as NumPy arrays, scaled like PyTorch's init."""
    s = 1 / np.sqrt(hidden)
    shapes = [(4 * hidden, n_in), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,)]
    return [g.uniform(-s, s, size=shape).astype(np.float32) for shape in shapes]


def _variants(x, h, c, W_ih, W_hh, b_ih, b_hh):
    """Plausible wrong LSTM steps (NumPy, float64), for targeted hints."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    z = x @ W_ih.T + h @ W_hh.T + b_ih + b_hh
    i, f, g, o = np.split(z, 4, axis=1)
    out = {}
    c1 = sig(i) * c + sig(f) * np.tanh(g)
    out["the input and forget gates are swapped (PyTorch's order is i, f, g, o)"] = (sig(o) * np.tanh(c1), c1)
    c2 = sig(f) * c + sig(i) * np.tanh(g)
    out["h = o · c: the tanh on the new cell state is missing"] = (sig(o) * c2, c2)
    out["the candidate g uses a sigmoid instead of tanh"] = (
        sig(o) * np.tanh(sig(f) * c + sig(i) * sig(g)), sig(f) * c + sig(i) * sig(g))
    i2, f2, o2, g2 = np.split(z, 4, axis=1)  # Keras/TF-style "i, f, o, g" mix-up
    c3 = sig(f2) * c + sig(i2) * np.tanh(g2)
    out["the gates are read in the order i, f, o, g; PyTorch uses i, f, g, o"] = (sig(o2) * np.tanh(c3), c3)
    zb = x @ W_ih.T + h @ W_hh.T + b_ih
    i, f, g, o = np.split(zb, 4, axis=1)
    c4 = sig(f) * c + sig(i) * np.tanh(g)
    out["b_hh is missing: PyTorch adds both biases"] = (sig(o) * np.tanh(c4), c4)
    return out


def _pair(result, what):
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Wrong(f"{what} should return a pair (h, c), got {type(result).__name__}")
    return result


def _diagnose(h, x, h0, c0, params):
    for name, (hv, _) in _variants(*(a.astype(np.float64) for a in (x, h0, c0, *params))).items():
        if h.shape == hv.shape and np.allclose(h, hv, rtol=1e-4, atol=1e-5):
            raise Wrong(f"h is wrong: {name}")


@exercise("Q1 one LSTM step", hint="z = x @ W_ih.T + h @ W_hh.T + b_ih + b_hh; split z in 4 (i, f, g, o); "
          "c' = σ(f)·c + σ(i)·tanh(g); h' = σ(o)·tanh(c')")
def q1(lstm_step):
    torch = _torch()
    g = rng()
    batch, n_in, hidden = int(g.integers(1, 6)), int(g.integers(2, 7)), int(g.integers(2, 7))
    params = _params(g, n_in, hidden)
    x, h0, c0 = (g.normal(size=s).astype(np.float32) for s in [(batch, n_in), (batch, hidden), (batch, hidden)])
    cell = torch.nn.LSTMCell(n_in, hidden)
    with torch.no_grad():
        for p, value in zip([cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh], params):
            p.copy_(torch.tensor(value))
        h_ref, c_ref = cell(torch.tensor(x), (torch.tensor(h0), torch.tensor(c0)))
    args = [torch.tensor(a) for a in (x, h0, c0, *params)]
    h, c = _pair(call(lstm_step, *args, what="lstm_step"), "lstm_step")
    h_arr = as_array(h, "h")
    if h_arr.shape == tuple(h_ref.shape) and np.all(np.isfinite(h_arr)):
        if not np.allclose(h_arr, h_ref.numpy(), rtol=1e-4, atol=1e-5):
            _diagnose(h_arr, x, h0, c0, params)
    expect_close(h, h_ref.numpy(), "h", rtol=1e-4, atol=1e-5)
    expect_close(c, c_ref.numpy(), "c", rtol=1e-4, atol=1e-5)
    return "matches nn.LSTMCell with the same weights on hidden random inputs and sizes"


@exercise("Q2 a whole sequence", hint="start from (h0, c0), call your lstm_step for t = 0..T-1, collect every h "
          "in a list and torch.stack it: hs has shape (T, B, H); return hs, (h_T, c_T)")
def q2(lstm_forward):
    torch = _torch()
    g = rng()
    steps, batch, n_in, hidden = (int(g.integers(2, 9)), int(g.integers(1, 5)), int(g.integers(2, 6)),
                                  int(g.integers(2, 6)))
    params = _params(g, n_in, hidden)
    xs = g.normal(size=(steps, batch, n_in)).astype(np.float32)
    h0, c0 = (g.normal(size=(batch, hidden)).astype(np.float32) for _ in range(2))
    lstm = torch.nn.LSTM(n_in, hidden)
    with torch.no_grad():
        for p, value in zip([lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0], params):
            p.copy_(torch.tensor(value))
        hs_ref, (h_ref, c_ref) = lstm(torch.tensor(xs), (torch.tensor(h0)[None], torch.tensor(c0)[None]))
    out = call(lstm_forward, *[torch.tensor(a) for a in (xs, h0, c0, *params)], what="lstm_forward")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Wrong(f"lstm_forward should return (hs, (h_T, c_T)), got {type(out).__name__}")
    hs, last = out
    h_T, c_T = _pair(last, "the second item of lstm_forward's result")
    hs_arr = as_array(hs, "hs")
    if hs_arr.shape == (batch, steps, hidden) and steps != batch:
        raise Wrong(f"hs has shape {hs_arr.shape} (B, T, H): stack the steps on axis 0 to get (T, B, H)")
    expect_close(hs, hs_ref.numpy(), "hs", rtol=1e-4, atol=1e-5)
    expect_close(h_T, h_ref[0].numpy(), "h_T", rtol=1e-4, atol=1e-5)
    expect_close(c_T, c_ref[0].numpy(), "c_T", rtol=1e-4, atol=1e-5)
    return "matches nn.LSTM with the same weights on a hidden random sequence"


def make_task(n: int, seed: int | None = None):
    """The q3 task: ``xs`` (SEQ_LEN, n, 1) float32 tensor, ``y`` (n,) int64 tensor of 0/1.

    Each sequence is SEQ_LEN numbers drawn from N(0, 1); the label is 1 when their sum is
    positive. The last step alone predicts it only ~57 % of the time; the LSTM must
    accumulate the evidence in its cell state over the whole sequence.
    """
    torch = _torch()
    values = np.random.default_rng(seed).normal(size=(SEQ_LEN, n, 1)).astype(np.float32)
    y = (values.sum(axis=(0, 2)) > 0).astype(np.int64)
    return torch.tensor(values), torch.tensor(y)


@exercise("Q3 the sign of the sum", hint="train longer or with a larger learning rate (Adam, 1e-2), read "
          "the answer from h_T with a linear layer, and return 0/1 labels (e.g. (logit > 0).long())")
def q3(predict, accuracy: float = 0.9):
    torch = _torch()
    n = 500
    xs, y = make_task(n, seed=int(rng().integers(2**31)))
    with torch.no_grad():
        out = call(predict, xs, what="predict")
    labels = as_array(out, "predict")
    if labels.shape != (n,):
        raise Wrong(f"predict returned shape {labels.shape}, expected ({n},): one 0/1 label per sequence")
    if not np.all(np.isfinite(labels.astype(np.float64))):
        raise Wrong("predict returned NaN or inf")
    if not np.all(np.isin(labels, [0, 1])):
        raise Wrong("predict should return labels 0 or 1 (threshold your logits or probabilities)")
    acc = float((labels == y.numpy()).mean())
    if acc < accuracy:
        raise Wrong(f"accuracy {acc:.2f} on {n} hidden sequences, need >= {accuracy}")
    return f"accuracy >= {accuracy} on {n} hidden sequences"
