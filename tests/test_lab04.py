"""Lab 04 checks: the reference passes, stubs are "not done yet", plausible wrong answers fail cleanly."""
from functools import partial

import numpy as np
import pytest
import torch

from course_utils.labs import lab04 as check
from tests.helpers import check_line, stub


def lstm_step(x, h, c, W_ih, W_hh, b_ih, b_hh):
    z = x @ W_ih.T + h @ W_hh.T + b_ih + b_hh
    i, f, g, o = z.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh, step=lstm_step):
    h, c, hs = h0, c0, []
    for x in xs:
        h, c = step(x, h, c, W_ih, W_hh, b_ih, b_hh)
        hs.append(h)
    return torch.stack(hs), (h, c)


def swapped_if(x, h, c, W_ih, W_hh, b_ih, b_hh):
    z = x @ W_ih.T + h @ W_hh.T + b_ih + b_hh
    f, i, g, o = z.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def no_tanh_on_c(x, h, c, W_ih, W_hh, b_ih, b_hh):
    z = x @ W_ih.T + h @ W_hh.T + b_ih + b_hh
    i, f, g, o = z.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * c, c


def order_ifog(x, h, c, W_ih, W_hh, b_ih, b_hh):
    z = x @ W_ih.T + h @ W_hh.T + b_ih + b_hh
    i, f, o, g = z.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def no_b_hh(x, h, c, W_ih, W_hh, b_ih, b_hh):
    return lstm_step(x, h, c, W_ih, W_hh, b_ih, torch.zeros_like(b_hh))


def no_transpose(x, h, c, W_ih, W_hh, b_ih, b_hh):
    return lstm_step(x, h, c, W_ih.T, W_hh.T, b_ih, b_hh)


def test_q1_reference_passes(capsys):
    for _ in range(5):  # different hidden sizes every time
        ok, line = check_line(capsys, check.q1, lstm_step)
        assert ok and line.startswith("✔ Q1")


@pytest.mark.parametrize("wrong, words", [
    (swapped_if, "swapped"), (no_tanh_on_c, "tanh"), (order_ifog, "i, f, o, g"), (no_b_hh, "b_hh"),
    (no_transpose, "raised RuntimeError"),
])
def test_q1_plausible_wrong_answers_fail(capsys, wrong, words):
    ok, line = check_line(capsys, check.q1, wrong)
    assert not ok and line.startswith("✘ Q1") and words in line and "hint:" in line


def test_q1_wrong_c_only_is_caught(capsys):
    def wrong_c(*args):
        h, c = lstm_step(*args)
        return h, c * 2
    ok, line = check_line(capsys, check.q1, wrong_c)
    assert not ok and "c is off" in line


@pytest.mark.parametrize("answer, words", [
    (lambda *a: None, "pair"), (lambda *a: (None, None), "None"), (lambda *a: "h, c", "pair"),
    (lambda *a: (torch.zeros(1, 1), torch.zeros(1, 1)), "shape"),
    (lambda *a: tuple(t * np.nan for t in lstm_step(*a)), "NaN"),
    (lambda *a: ("h", "c"), "expected numbers"), (42, "function"),
    (lambda *a: 1 / 0, "ZeroDivisionError"),
])
def test_q1_bad_types_shapes_nan_give_one_line(capsys, answer, words):
    ok, line = check_line(capsys, check.q1, answer)
    assert not ok and words in line


def test_q1_hard_coded_answer_fails(capsys):
    torch.manual_seed(0)
    args = [torch.randn(2, 3), torch.randn(2, 4), torch.randn(2, 4), torch.randn(16, 3), torch.randn(16, 4),
            torch.randn(16), torch.randn(16)]
    fixed = lstm_step(*args)
    ok, _ = check_line(capsys, check.q1, lambda *a: fixed)
    assert not ok


def test_stubs_are_not_done_yet(capsys):
    for q, more in ((check.q1, ()), (check.q2, ()), (check.q3, (torch.nn.LSTMCell(2, 4), torch.nn.Linear(4, 1)))):
        ok, line = check_line(capsys, q, stub, *more)
        assert not ok and "not done yet" in line and "hint:" not in line
    ok, line = check_line(capsys, check.q3, lstm_forward)
    assert not ok and "pass three things" in line


def test_q2_reference_passes(capsys):
    ok, line = check_line(capsys, check.q2, lstm_forward)
    assert ok and line.startswith("✔ Q2")


def test_q2_wrong_answers_fail(capsys):
    batch_first = lambda *a: (lstm_forward(*a)[0].transpose(0, 1), lstm_forward(*a)[1])  # noqa: E731
    only_hs = lambda *a: lstm_forward(*a)[0]  # noqa: E731
    no_state = lambda xs, h0, c0, *p: lstm_forward(xs, h0 * 0, c0 * 0, *p)  # noqa: E731  ignores (h0, c0)
    with_bad_step = lambda *a: lstm_forward(*a, step=swapped_if)  # noqa: E731
    for wrong in (batch_first, only_hs, no_state, with_bad_step):
        ok, line = check_line(capsys, check.q2, wrong)
        assert not ok and line.startswith("✘ Q2")


def test_make_task_is_the_adding_problem():
    xs, y = check.make_task(2000, seed=1)
    assert xs.shape == (check.SEQ_LEN, 2000, 2) and xs.dtype == torch.float32 and y.shape == (2000,)
    assert torch.equal(xs[..., 1].sum(0), torch.full((2000,), 2.0))          # exactly two markers
    assert torch.allclose(y, (xs[..., 0] * xs[..., 1]).sum(0))
    assert not torch.equal(check.make_task(10, seed=1)[0], check.make_task(10, seed=2)[0])
    kx, ky = check.make_task(10, seed=3, framework="keras")
    tx, ty = check.make_task(10, seed=3)
    assert kx.shape == (10, check.SEQ_LEN, 2) and np.array_equal(kx, tx.numpy().transpose(1, 0, 2))
    assert np.array_equal(ky, ty.numpy())


def test_reference_equals_keras_lstm():
    import course_utils  # noqa: F401  (before TensorFlow)
    import keras
    layer = keras.layers.LSTM(5, return_sequences=True, return_state=True)
    xs = np.random.default_rng(0).normal(size=(3, 7, 2)).astype(np.float32)
    hs, h, c = layer(xs)
    zeros = np.zeros((3, 5), np.float32)
    layout = check._torch_layout([w.numpy() for w in layer.weights], "keras")
    hs_ref, h_ref, c_ref = check.reference_lstm(xs, zeros, zeros, layout, batch_first=True)
    assert np.allclose(hs_ref, hs.numpy(), atol=1e-5) and np.allclose(c_ref, c.numpy(), atol=1e-5)


# --- q3: the student's own cell, trained -----------------------------------------------------------

def train_cell(steps=500, hidden=12):
    """A cell + head trained with the test's own lstm_forward (what the solution does)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny sequential model: extra threads only add hand-offs
    torch.manual_seed(0)
    cell, head = torch.nn.LSTMCell(2, hidden), torch.nn.Linear(hidden, 1)
    with torch.no_grad():
        cell.bias_ih[hidden:2 * hidden] = 1.0
    opt = torch.optim.Adam([*cell.parameters(), *head.parameters()], lr=1e-2)

    def output(xs):
        zeros = torch.zeros(xs.shape[1], hidden)
        _, (h, _) = lstm_forward(xs, zeros, zeros, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        return head(h)[:, 0]

    for step in range(steps):
        xs, y = check.make_task(64, seed=step)
        loss = torch.nn.functional.mse_loss(output(xs), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return cell, head


@pytest.fixture(scope="module")
def trained():
    return train_cell()


def test_q3_trained_cell_passes_as_a_cell_or_as_weights(capsys, trained):
    cell, head = trained
    ok, line = check_line(capsys, check.q3, lstm_forward, cell, head)
    assert ok and line.startswith("✔ Q3"), line
    weights = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    assert check_line(capsys, check.q3, lstm_forward, weights, head)[0]


def test_q3_one_line_rule_without_an_lstm_fails(capsys, trained):
    """The old shortcut: the answer computed straight from the inputs, no LSTM involved."""
    cell, head = trained

    def rule(xs, h0, c0, *weights):  # perfect sums, but not an LSTM
        s = (xs[..., 0] * xs[..., 1]).sum(0, keepdim=True).T.expand_as(h0)
        return s[None], (s, s)
    ok, line = check_line(capsys, check.q3, rule, cell, head)
    assert not ok and "does not compute what nn.LSTM computes" in line, line
    for not_a_cell in (lambda xs: (xs[..., 0] * xs[..., 1]).sum(0), None, "cell", 42):
        ok, line = check_line(capsys, check.q3, lstm_forward, not_a_cell, head)
        assert not ok and "trained" in line, line


def test_q3_untrained_cell_and_linear_rule_fail(capsys, trained):
    torch.manual_seed(1)
    ok, line = check_line(capsys, check.q3, lstm_forward, torch.nn.LSTMCell(2, 12), torch.nn.Linear(12, 1))
    assert not ok and "mean squared error" in line, line
    # the best linear rule on the inputs, fitted by least squares, is far from the threshold
    xs, y = check.make_task(4000, seed=5)
    features = torch.cat([xs.transpose(0, 1).flatten(1), torch.ones(4000, 1)], dim=1)
    w = torch.linalg.lstsq(features[:3000], y[:3000, None]).solution
    assert torch.mean((features[3000:] @ w - y[3000:, None]) ** 2) > 5 * check.MSE_TOL
    # a cell whose head ignores the memory (forget gate shut): only the last steps reach h_T
    cell, head = trained
    forgetful = [p.detach().clone() for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
    forgetful[2][12:24] = -30.0
    ok, line = check_line(capsys, check.q3, lstm_forward, forgetful, head)
    assert not ok and "mean squared error" in line, line


def test_q3_wrong_cell_function_or_weights_shape_fail(capsys, trained):
    cell, head = trained
    ok, line = check_line(capsys, check.q3, lambda *a: lstm_forward(*a, step=swapped_if), cell, head)
    assert not ok and "does not compute" in line
    ok, line = check_line(capsys, check.q3, lstm_forward, torch.nn.LSTMCell(3, 12), head)
    assert not ok and "shape" in line
    ok, line = check_line(capsys, check.q3, lstm_forward, cell, torch.nn.Linear(12, 3))
    assert not ok and "one number per sequence" in line


BAD_VALUES = [None, float("nan"), float("inf"), 1e308, "text", object(), np.zeros((2, 3)), np.array(["a", "b"]),
              np.zeros(3, dtype=complex), [1, [2, 3]], {"h": 1}, torch.zeros(2, dtype=torch.int64),
              (None, None), (torch.full((1, 1), float("nan")),) * 2, (torch.full((1, 1), 1e38),) * 2]


def raising(*args, **kwargs):
    raise ValueError("boom")


@pytest.mark.parametrize("value", BAD_VALUES + ["RAISE"], ids=repr)
def test_every_check_answers_any_return_value_in_one_line(capsys, trained, value):
    """None, NaN, inf, huge, strings, objects, wrong shapes/dtypes, exceptions: one ✘ line each."""
    fn = raising if isinstance(value, str) and value == "RAISE" else (lambda *a, **k: value)
    cell, head = trained
    for q, args in ((check.q1, (fn,)), (check.q2, (fn,)), (check.q3, (fn, cell, head)),
                    (check.q3, (lstm_forward, cell, fn)), (check.q3, (lstm_forward, value, head))):
        ok, line = check_line(capsys, q, *args)
        assert not ok and line.startswith("✘") and "could not be checked" not in line, line


# --- Keras / TensorFlow answers ---------------------------------------------------------------------

keras_q1, keras_q2, keras_q3 = (partial(q, framework="keras") for q in (check.q1, check.q2, check.q3))

@pytest.fixture(scope="module")
def tf():
    import course_utils  # noqa: F401  (before TensorFlow: loads triton first)
    import tensorflow
    return tensorflow


def test_keras_answers_pass_and_torch_layout_mistakes_fail(capsys, tf):
    def k_step(x, h, c, kernel, recurrent_kernel, bias):
        i, f, g, o = tf.split(x @ kernel + h @ recurrent_kernel + bias, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c

    def k_forward(xs, h0, c0, *weights, step=k_step):
        h, c, hs = h0, c0, []
        for t in range(xs.shape[1]):
            h, c = step(xs[:, t], h, c, *weights)
            hs.append(h)
        return tf.stack(hs, axis=1), (h, c)

    assert check_line(capsys, keras_q1, k_step)[0]
    assert check_line(capsys, keras_q2, k_forward)[0]

    def k_swapped(x, h, c, kernel, recurrent_kernel, bias):
        f, i, g, o = tf.split(x @ kernel + h @ recurrent_kernel + bias, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c
    ok, line = check_line(capsys, keras_q1, k_swapped)
    assert not ok and "swapped" in line
    time_major = lambda xs, *a: k_forward(tf.transpose(xs, (1, 0, 2)), *a)  # noqa: E731
    ok, line = check_line(capsys, keras_q2, time_major)
    assert not ok
    ok, line = check_line(capsys, keras_q1, lstm_step)   # a torch answer, keras inputs
    assert not ok and "raised" in line
    ok, line = check_line(capsys, partial(check.q1, framework="jax"), k_step)
    assert not ok and "framework" in line


def test_keras_trained_cell_passes_and_untrained_fails(capsys, tf, trained):
    import keras
    hidden = 12
    torch_cell, torch_head = trained

    def k_forward(xs, h0, c0, kernel, recurrent_kernel, bias):
        h, c, hs = h0, c0, []
        for t in range(xs.shape[1]):
            i, f, g, o = tf.split(xs[:, t] @ kernel + h @ recurrent_kernel + bias, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            hs.append(h)
        return tf.stack(hs, axis=1), (h, c)

    cell = keras.layers.LSTMCell(hidden)
    cell.build((None, 2))
    head = keras.layers.Dense(1)
    head.build((None, hidden))
    ok, line = check_line(capsys, keras_q3, k_forward, cell, head)
    assert not ok and "mean squared error" in line, line
    # the same trained weights, moved into Keras' layout: a Keras cell that has learnt the task
    cell.kernel.assign(torch_cell.weight_ih.detach().numpy().T)
    cell.recurrent_kernel.assign(torch_cell.weight_hh.detach().numpy().T)
    cell.bias.assign((torch_cell.bias_ih + torch_cell.bias_hh).detach().numpy())
    head.set_weights([torch_head.weight.detach().numpy().T, torch_head.bias.detach().numpy()])
    ok, line = check_line(capsys, keras_q3, k_forward, cell, head)
    assert ok and "keras.layers.LSTM" in line, line
    rule = lambda xs, h0, c0, *w: (None, (tf.zeros_like(h0), tf.zeros_like(h0)))  # noqa: E731
    ok, line = check_line(capsys, keras_q3, rule, cell, head)
    assert not ok and "does not compute" in line


def test_hints_start_conceptual_and_not_done_shows_no_hint(capsys):
    check.q1.wrong_attempts = 0
    _, first = check_line(capsys, check.q1, swapped_if)
    _, second = check_line(capsys, check.q1, swapped_if)
    assert "hint:" in first and "hint:" in second and first.split("hint:")[1] != second.split("hint:")[1]
    assert "W_ih" not in first.split("hint:")[1] and "@" not in second.split("hint:")[1]
    _, not_done = check_line(capsys, check.q1, stub)
    assert "not done yet" in not_done and "hint:" not in not_done
