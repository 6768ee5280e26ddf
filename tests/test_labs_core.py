import numpy as np
import torch

from course_utils.labs import Result, Wrong, as_array, call, exercise, expect_close, expect_tuple


@exercise("q1", hint="add the bias")
def check_double(fn):
    x = np.arange(4.0)
    expect_close(call(fn, x, what="double(x)"), 2 * x, "double(x)")
    return "correct"


def test_pass_prints_a_tick_and_is_truthy(capsys):
    result = check_double(lambda x: 2 * x)
    assert bool(result) and capsys.readouterr().out == "✔ q1: correct\n"
    assert hasattr(result, "_ipython_display_")  # shows nothing in a notebook beyond the line


def test_not_done_yet(capsys):
    def stub(x):
        raise NotImplementedError

    assert not check_double(stub)
    assert capsys.readouterr().out.startswith("✘ q1: not done yet")


def test_wrong_values_shapes_nan_none_types_and_errors_are_one_line_each(capsys):
    cases = {
        "is off by up to": lambda x: 3 * x,
        "has shape (1, 4), expected (4,)": lambda x: (2 * x)[None],
        "contains NaN": lambda x: np.full(4, np.nan),
        "returned None": lambda x: None,
        "expected numbers": lambda x: ["a", "b", "c", "d"],
        "raised ZeroDivisionError: division by zero": lambda x: 1 / 0,
        "expected double(x) to be a function": 42,
    }
    for expected, answer in cases.items():
        assert not check_double(answer)
        out = capsys.readouterr().out
        assert expected in out, out
        assert out.count("\n") == 2 and "hint: add the bias" in out and "Traceback" not in out


def test_accepts_tensors():
    assert check_double(lambda x: torch.tensor(2 * x))
    assert as_array(torch.ones(2, requires_grad=True), "t").shape == (2,)


def test_result_repr_is_the_line():
    assert repr(Result(False, "✘ x")) == "✘ x" and not Result(False, "✘ x")


def test_wrong_is_an_exception():
    assert issubclass(Wrong, Exception)


def test_expect_tuple_names_what_came_back():
    assert expect_tuple((1, 2), "f(x)", 2) == (1, 2)
    for value, kind in (((1, 2, 3), "a tuple of length 3"), (np.ones(2), "a ndarray")):
        try:
            expect_tuple(value, "f(x)", 2)
        except Wrong as wrong:
            assert str(wrong) == f"f(x) should return a tuple of 2 values, got {kind}"
        else:
            raise AssertionError("expect_tuple accepted a wrong value")
