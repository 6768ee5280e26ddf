"""Checks for lab 04 — one LSTM step by hand, a whole sequence, and the adding problem.

    from course_utils.labs import lab04 as check
    check.q1(lstm_step)                # one step == nn.LSTMCell with the same weights
    check.q2(lstm_forward)             # a whole sequence == nn.LSTM with the same weights
    check.q3(lstm_forward, cell, head) # YOUR cell, with YOUR trained weights, solves the adding problem

Every check takes ``framework="torch"`` (the default) or ``framework="keras"``:

- torch: weights ``W_ih`` (4H, I), ``W_hh`` (4H, H), ``b_ih``, ``b_hh`` (4H,), as in ``nn.LSTMCell``;
  sequences time-major (T, B, I), as ``nn.LSTM``'s default.
- keras: ``kernel`` (I, 4H), ``recurrent_kernel`` (H, 4H), one ``bias`` (4H,), as in
  ``keras.layers.LSTMCell``; sequences batch-major (B, T, I), as ``keras.layers.LSTM``.

The gate blocks are in the same order in both: input, forget, candidate (g, Keras calls it c),
output. The references are PyTorch's ``nn.LSTMCell`` / ``nn.LSTM`` (a Keras kernel is the
transposed ``W_ih`` and its bias is ``b_ih`` with ``b_hh = 0``).

Q3 does not trust predictions: it takes the weights, runs the checker's own hidden sequences
through ``nn.LSTM`` with them AND through your ``lstm_forward``, requires both to agree, and
scores your ``head`` on the final hidden state. A rule computed from the inputs directly (the
one-line answer to the adding problem) has no LSTM to hand in.
"""
from __future__ import annotations

import numpy as np

from course_utils.labs import Wrong, as_array, call, exercise, expect_close, rng

SEQ_LEN = 20        # length of the adding-problem sequences of q3
N_CHECK = 1000      # hidden sequences q3 scores
MSE_TOL = 0.02      # q3: always predicting 1 gives ~0.17, the best linear rule ~0.16, a trained LSTM < 0.005
FRAMEWORKS = ("torch", "keras")


def _torch():
    import torch
    return torch


def _framework(framework) -> str:
    if framework not in FRAMEWORKS:
        raise Wrong(f"framework must be 'torch' or 'keras', got {framework!r}")
    return framework


def _tensors(arrays, framework):
    """NumPy float32 arrays -> torch tensors or TF tensors (what the student's code receives)."""
    if framework == "torch":
        torch = _torch()
        return [torch.tensor(a) for a in arrays]
    import tensorflow as tf
    return [tf.constant(a) for a in arrays]


def _params(g: np.random.Generator, n_in: int, hidden: int, framework: str):
    """Random float32 weights in the framework's layout, and the same in PyTorch's layout."""
    s = 1 / np.sqrt(hidden)
    w_ih, w_hh, b_ih, b_hh = (g.uniform(-s, s, size=shape).astype(np.float32) for shape in
                              [(4 * hidden, n_in), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,)])
    if framework == "torch":
        return [w_ih, w_hh, b_ih, b_hh], [w_ih, w_hh, b_ih, b_hh]
    return ([np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T), b_ih + b_hh],
            [w_ih, w_hh, b_ih + b_hh, np.zeros_like(b_hh)])


def _torch_layout(params, framework):
    """Framework-layout weights (NumPy) -> PyTorch's (W_ih, W_hh, b_ih, b_hh)."""
    if framework == "torch":
        return list(params)
    kernel, recurrent, bias = params
    return [np.ascontiguousarray(kernel.T), np.ascontiguousarray(recurrent.T), bias, np.zeros_like(bias)]


def reference_lstm(xs, h0, c0, torch_params, batch_first=False):
    """hs, h_T, c_T (NumPy) from nn.LSTM with the given PyTorch-layout weights."""
    torch = _torch()
    w_ih = torch.tensor(torch_params[0])
    n_in, hidden = w_ih.shape[1], w_ih.shape[0] // 4
    lstm = torch.nn.LSTM(n_in, hidden, batch_first=batch_first)
    with torch.no_grad():
        for p, value in zip([lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0], torch_params):
            p.copy_(torch.tensor(value))
        hs, (h, c) = lstm(torch.tensor(xs), (torch.tensor(h0)[None], torch.tensor(c0)[None]))
    return hs.numpy(), h[0].numpy(), c[0].numpy()


def _variants(x, h, c, W_ih, W_hh, b_ih, b_hh):
    """Plausible wrong LSTM steps (NumPy, float64), for targeted hints."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    z = x @ W_ih.T + h @ W_hh.T + b_ih + b_hh
    i, f, g, o = np.split(z, 4, axis=1)
    out = {}
    c1 = sig(i) * c + sig(f) * np.tanh(g)
    out["the input and forget gates are swapped (the order is i, f, g, o)"] = (sig(o) * np.tanh(c1), c1)
    c2 = sig(f) * c + sig(i) * np.tanh(g)
    out["h = o · c: the tanh on the new cell state is missing"] = (sig(o) * c2, c2)
    out["the candidate g uses a sigmoid instead of tanh"] = (
        sig(o) * np.tanh(sig(f) * c + sig(i) * sig(g)), sig(f) * c + sig(i) * sig(g))
    i2, f2, o2, g2 = np.split(z, 4, axis=1)
    c3 = sig(f2) * c + sig(i2) * np.tanh(g2)
    out["the gates are read in the order i, f, o, g; the blocks are i, f, g, o"] = (sig(o2) * np.tanh(c3), c3)
    zb = x @ W_ih.T + h @ W_hh.T + b_ih
    i, f, g, o = np.split(zb, 4, axis=1)
    c4 = sig(f) * c + sig(i) * np.tanh(g)
    out["b_hh is missing: PyTorch adds both biases"] = (sig(o) * np.tanh(c4), c4)
    return out


def _pair(result, what):
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Wrong(f"{what} should return a pair (h, c), got {type(result).__name__}")
    return result


def _diagnose(h, x, h0, c0, torch_params):
    for name, (hv, _) in _variants(*(np.asarray(a, dtype=np.float64) for a in (x, h0, c0, *torch_params))).items():
        if h.shape == hv.shape and np.allclose(h, hv, rtol=1e-4, atol=1e-5):
            raise Wrong(f"h is wrong: {name}")


_Q1_HINT = ("the four gate blocks come from one affine map of x and h; three of them are squashed to (0, 1) "
            "and act as switches, one is squashed to (−1, 1) and is what gets written; the new h is a gated "
            "squash of the NEW cell state",
            "blocks in the order input, forget, candidate, output; the cell state keeps σ(forget)·c and adds "
            "σ(input)·tanh(candidate); the hidden state is σ(output)·tanh(new c); in PyTorch both biases are "
            "added and the weights are (4H, ·), so they multiply transposed")


@exercise("Q1 one LSTM step", hint=_Q1_HINT)
def q1(lstm_step, framework: str = "torch"):
    framework = _framework(framework)
    g = rng()
    batch, n_in, hidden = int(g.integers(1, 6)), int(g.integers(2, 7)), int(g.integers(2, 7))
    while len({batch, n_in, hidden}) < 3:  # all different: a wrong axis or a missing transpose shows
        batch, n_in, hidden = int(g.integers(1, 6)), int(g.integers(2, 7)), int(g.integers(2, 7))
    params, torch_params = _params(g, n_in, hidden, framework)
    x, h0, c0 = (g.normal(size=s).astype(np.float32) for s in [(batch, n_in), (batch, hidden), (batch, hidden)])
    _, h_ref, c_ref = reference_lstm(x[None], h0, c0, torch_params)
    h, c = _pair(call(lstm_step, *_tensors([x, h0, c0, *params], framework), what="lstm_step"), "lstm_step")
    h_arr = as_array(h, "h")
    if h_arr.shape == h_ref.shape and np.all(np.isfinite(h_arr.astype(np.float64))):
        if not np.allclose(h_arr.astype(np.float64), h_ref, rtol=1e-4, atol=1e-5):
            _diagnose(h_arr, x, h0, c0, torch_params)
    expect_close(h, h_ref, "h", rtol=1e-4, atol=1e-5)
    expect_close(c, c_ref, "c", rtol=1e-4, atol=1e-5)
    layer = "nn.LSTMCell" if framework == "torch" else "keras.layers.LSTMCell"
    return f"matches {layer} with the same weights on hidden random inputs and sizes"


_Q2_HINT = ("an LSTM layer is your one step applied again and again, each step starting from the state "
            "the previous one returned; keep every hidden state on the way",
            "start from (h0, c0), call lstm_step once per time step, collect every h and stack them along "
            "the time axis (axis 0 for PyTorch's (T, B, H), axis 1 for Keras' (B, T, H)); return hs, (h_T, c_T)")


@exercise("Q2 a whole sequence", hint=_Q2_HINT)
def q2(lstm_forward, framework: str = "torch"):
    framework = _framework(framework)
    g = rng()
    steps, batch, n_in, hidden = (int(g.integers(2, 9)), int(g.integers(1, 5)), int(g.integers(2, 6)),
                                  int(g.integers(2, 6)))
    while steps == batch:
        batch = int(g.integers(1, 5))
    params, torch_params = _params(g, n_in, hidden, framework)
    batch_first = framework == "keras"
    xs = g.normal(size=(batch, steps, n_in) if batch_first else (steps, batch, n_in)).astype(np.float32)
    h0, c0 = (g.normal(size=(batch, hidden)).astype(np.float32) for _ in range(2))
    hs_ref, h_ref, c_ref = reference_lstm(xs, h0, c0, torch_params, batch_first=batch_first)
    out = call(lstm_forward, *_tensors([xs, h0, c0, *params], framework), what="lstm_forward")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Wrong(f"lstm_forward should return (hs, (h_T, c_T)), got {type(out).__name__}")
    hs, last = out
    h_T, c_T = _pair(last, "the second item of lstm_forward's result")
    hs_arr = as_array(hs, "hs")
    swapped = (hs_ref.shape[1], hs_ref.shape[0], hs_ref.shape[2])
    if hs_arr.shape == swapped:
        want = "(B, T, H): stack the steps on axis 1" if batch_first else "(T, B, H): stack the steps on axis 0"
        raise Wrong(f"hs has shape {hs_arr.shape}, expected {want}")
    expect_close(hs, hs_ref, "hs", rtol=1e-4, atol=1e-5)
    expect_close(h_T, h_ref, "h_T", rtol=1e-4, atol=1e-5)
    expect_close(c_T, c_ref, "c_T", rtol=1e-4, atol=1e-5)
    layer = "nn.LSTM" if framework == "torch" else "keras.layers.LSTM"
    return f"matches {layer} with the same weights on a hidden random sequence"


# --- q3: the adding problem, solved by the student's own cell -------------------------------------

def make_task(n: int, seed: int | None = None, framework: str = "torch"):
    """The adding problem (lesson 07): ``n`` sequences of SEQ_LEN steps with 2 channels.

    Channel 0 is a number in [0, 1); channel 1 marks exactly two steps, one in each half. The
    target is the sum of the two marked numbers. Returns ``(xs, y)``: for ``"torch"`` float32
    tensors of shape (SEQ_LEN, n, 2) and (n,); for ``"keras"`` float32 NumPy arrays of shape
    (n, SEQ_LEN, 2) and (n,). Always predicting 1 gives a mean squared error of about 0.17; no
    linear function of the inputs does much better: the model must remember the first marked
    number until the end.
    """
    g = np.random.default_rng(seed)
    values = g.random((n, SEQ_LEN))
    markers = np.zeros((n, SEQ_LEN))
    markers[np.arange(n), g.integers(0, SEQ_LEN // 2, n)] = 1.0
    markers[np.arange(n), g.integers(SEQ_LEN // 2, SEQ_LEN, n)] = 1.0
    xs = np.stack([values, markers], axis=-1).astype(np.float32)      # (n, T, 2)
    y = (values * markers).sum(axis=1).astype(np.float32)
    if framework == "keras":
        return xs, y
    torch = _torch()
    return torch.tensor(xs.transpose(1, 0, 2).copy()), torch.tensor(y)


def _weights_of(cell, framework):
    """The student's trained weights as NumPy float32 arrays, in the framework's layout."""
    names = (("weight_ih", "weight_hh", "bias_ih", "bias_hh") if framework == "torch"
             else ("kernel", "recurrent_kernel", "bias"))
    inner = getattr(cell, "cell", None)  # keras.layers.LSTM holds its LSTMCell as .cell
    if inner is not None and all(hasattr(inner, n) for n in names):
        cell = inner
    if all(hasattr(cell, n) for n in names) and not isinstance(cell, (tuple, list)):
        cell = [getattr(cell, n) for n in names]
    if not isinstance(cell, (tuple, list)) or len(cell) != len(names):
        layer = "an nn.LSTMCell or (W_ih, W_hh, b_ih, b_hh)" if framework == "torch" else \
            "a keras.layers.LSTMCell or (kernel, recurrent_kernel, bias)"
        raise Wrong(f"the second argument should be your trained weights: {layer}, got {type(cell).__name__}")
    arrays = []
    for value, name in zip(cell, names):
        if value is None:
            raise Wrong(f"{name} is None: pass the trained weights")
        arrays.append(as_array(value, name).astype(np.float32))
    return arrays, names


def _check_shapes(arrays, names, framework):
    first = arrays[0]
    if framework == "torch":
        ok = first.ndim == 2 and first.shape[0] % 4 == 0 and first.shape[0] > 0
        hidden = first.shape[0] // 4 if ok else 0
        shapes = [(4 * hidden, 2), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,)]
    else:
        ok = first.ndim == 2 and first.shape[1] % 4 == 0 and first.shape[1] > 0
        hidden = first.shape[1] // 4 if ok else 0
        shapes = [(2, 4 * hidden), (hidden, 4 * hidden), (4 * hidden,)]
    for arr, name, shape in zip(arrays, names, shapes):
        if not ok or arr.shape != shape:
            raise Wrong(f"{name} has shape {arr.shape}, expected {shape} for 2 input channels and "
                        f"{hidden or 'H'} hidden units")
        if not np.all(np.isfinite(arr)):
            raise Wrong(f"{name} contains NaN or inf: lower the learning rate")
    return hidden


_Q3_HINT = ("the answer depends on a number seen early and one seen late: the cell has to write the first "
            "marked number into its cell state, keep it (forget gate open) through the distractors, and "
            "add the second; train the weights you hand in, and read the answer from the last hidden state",
            "train with the mean squared error and Adam (learning rate about 1e-2) for several hundred "
            "batches; starting the forget-gate bias at 1 helps; pass check.q3 your lstm_forward, the "
            "cell (or its weights) you trained, and the head that maps h_T to one number")


@exercise("Q3 the adding problem with your cell", hint=_Q3_HINT)
def q3(lstm_forward, cell=None, head=None, framework: str = "torch"):
    framework = _framework(framework)
    if cell is None or head is None:
        raise Wrong("pass three things: check.q3(lstm_forward, cell, head) — your function, the cell (or its "
                    "weights) you trained, and the head that reads h_T")
    arrays, names = _weights_of(cell, framework)
    hidden = _check_shapes(arrays, names, framework)
    g = rng()
    batch_first = framework == "keras"
    xs, y = make_task(N_CHECK, seed=int(g.integers(2**62)), framework="keras")  # (n, T, 2), NumPy
    xs_in = xs if batch_first else np.ascontiguousarray(xs.transpose(1, 0, 2))
    zeros = np.zeros((N_CHECK, hidden), dtype=np.float32)
    torch_params = _torch_layout(arrays, framework)
    hs_ref, h_ref, c_ref = reference_lstm(xs_in, zeros, zeros, torch_params, batch_first=batch_first)
    require_no_grad = _no_grad(framework)
    with require_no_grad():
        out = call(lstm_forward, *_tensors([xs_in, zeros, zeros, *arrays], framework), what="lstm_forward")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Wrong(f"lstm_forward should return (hs, (h_T, c_T)), got {type(out).__name__}")
    h_T, _ = _pair(out[1], "the second item of lstm_forward's result")
    layer = "nn.LSTM" if framework == "torch" else "keras.layers.LSTM"
    got = as_array(h_T, "h_T")
    if got.shape != h_ref.shape:
        raise Wrong(f"on the hidden sequences your lstm_forward's h_T has shape {got.shape}, expected {h_ref.shape}")
    if not np.all(np.isfinite(got.astype(np.float64))) or not np.allclose(got, h_ref, rtol=1e-3, atol=1e-4):
        raise Wrong(f"with your trained weights, your lstm_forward does not compute what {layer} computes on the "
                    "hidden sequences: the model must be your LSTM (pass the cell you trained)")
    with require_no_grad():
        pred = call(head, _tensors([h_ref], framework)[0], what="head(h_T)")
    pred = as_array(pred, "head(h_T)")
    if pred.shape not in ((N_CHECK,), (N_CHECK, 1)):
        raise Wrong(f"head(h_T) has shape {pred.shape} for {N_CHECK} sequences, expected ({N_CHECK}, 1) or "
                    f"({N_CHECK},): one number per sequence")
    pred = pred.reshape(-1).astype(np.float64)
    if not np.all(np.isfinite(pred)):
        raise Wrong("head(h_T) contains NaN or inf")
    mse = float(np.mean((pred - y) ** 2))
    if mse > MSE_TOL:
        level = "  (always predicting 1 scores about 0.17)" if mse > 0.12 else ""
        raise Wrong(f"mean squared error {mse:.3f} on {N_CHECK} hidden sequences, need <= {MSE_TOL}{level}")
    return (f"your cell with your trained weights equals {layer} and solves {N_CHECK} hidden adding problems "
            f"(mean squared error <= {MSE_TOL})")


def _no_grad(framework):
    if framework == "torch":
        return _torch().no_grad
    import contextlib
    return contextlib.nullcontext
