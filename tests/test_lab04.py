"""Lab 04 checks: the reference passes, stubs are "not done yet", plausible wrong answers fail cleanly."""
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
    for q in (check.q1, check.q2, check.q3):
        ok, line = check_line(capsys, q, stub)
        assert not ok and "not done yet" in line


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


def test_make_task_is_random_and_balanced():
    xs, y = check.make_task(2000, seed=1)
    assert xs.shape == (check.SEQ_LEN, 2000, 1) and xs.dtype == torch.float32 and y.shape == (2000,)
    assert 0.4 < y.float().mean() < 0.6
    assert torch.equal(y, (xs.sum(dim=(0, 2)) > 0).long())
    assert not torch.equal(check.make_task(10, seed=1)[0], check.make_task(10, seed=2)[0])


def test_q3_oracle_passes_and_guessers_fail(capsys):
    ok, line = check_line(capsys, check.q3, lambda xs: (xs.sum(dim=(0, 2)) > 0).long())
    assert ok and line.startswith("✔ Q3")
    last_step_only = lambda xs: (xs[-1, :, 0] > 0).long()  # noqa: E731
    constant = lambda xs: torch.ones(xs.shape[1], dtype=torch.long)  # noqa: E731
    for wrong in (last_step_only, constant):
        ok, line = check_line(capsys, check.q3, wrong)
        assert not ok and "accuracy" in line


@pytest.mark.parametrize("answer, words", [
    (lambda xs: torch.zeros(3), "shape"), (lambda xs: xs.sum(dim=(0, 2)), "0 or 1"),
    (lambda xs: torch.full((xs.shape[1],), float("nan")), "NaN"), (lambda xs: None, "None"),
])
def test_q3_bad_outputs_give_one_line(capsys, answer, words):
    ok, line = check_line(capsys, check.q3, answer)
    assert not ok and words in line


def test_q3_trained_lstm_with_reference_cell_passes(capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny sequential model: extra threads only add hand-offs
    torch.manual_seed(0)
    cell, head = torch.nn.LSTMCell(1, 16), torch.nn.Linear(16, 1)
    opt = torch.optim.Adam([*cell.parameters(), *head.parameters()], lr=1e-2)

    def logits(xs):
        zeros = torch.zeros(xs.shape[1], 16)
        _, (h, _) = lstm_forward(xs, zeros, zeros, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
        return head(h)[:, 0]

    for step in range(150):
        xs, y = check.make_task(64, seed=step)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(xs), y.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    ok, line = check_line(capsys, check.q3, lambda xs: (logits(xs) > 0).long())
    torch.set_num_threads(threads)
    assert ok, line
