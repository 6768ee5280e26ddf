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


def test_not_done_yet_shows_no_hint(capsys):
    def stub(x):
        raise NotImplementedError

    assert not check_double(stub)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "hint" not in out and "add the bias" not in out


def test_a_pair_of_hints_starts_conceptual_then_turns_concrete(capsys):
    @exercise("q2", hint=("think about the slope", "return 2 * x"))
    def check(fn):
        expect_close(call(fn, np.arange(3.0)), 2 * np.arange(3.0), "f(x)")
        return "correct"

    def stub(x):
        raise NotImplementedError

    assert not check(stub)  # not done yet: no hint, and it does not count as a wrong attempt
    assert "hint" not in capsys.readouterr().out and check.wrong_attempts == 0
    hints = []
    for answer in (lambda x: x, lambda x: 3 * x, lambda x: None):
        assert not check(answer)
        hints.append(capsys.readouterr().out.split("hint: ")[1].strip())
    assert hints == ["think about the slope", "return 2 * x", "return 2 * x"]
    assert check(lambda x: 2 * x) and check.wrong_attempts == 3
    check.wrong_attempts = 0  # starting over shows the conceptual hint again
    assert not check(lambda x: x) and "think about the slope" in capsys.readouterr().out


def test_a_str_hint_shows_after_every_wrong_attempt(capsys):
    check_double.wrong_attempts = 0
    for _ in range(2):
        assert not check_double(lambda x: x)
        assert "hint: add the bias" in capsys.readouterr().out


def test_a_malformed_hint_is_rejected_at_definition():
    for bad in (("only one",), ("a", "b", "c"), ("a", 1)):
        try:
            exercise("q", hint=bad)
        except TypeError:
            continue
        raise AssertionError(f"exercise accepted hint={bad!r}")


class _Weird:
    """An object whose conversion to an array fails in unusual ways."""

    def __array__(self, *args, **kwargs):
        raise ValueError("cannot convert float NaN to integer")


class _FakeTensor:
    """Has torch's `detach` but it is broken."""

    def detach(self):
        raise RuntimeError("boom")


def test_no_return_value_or_exception_makes_a_check_raise(capsys):
    answers = [None, np.nan, np.inf, -np.inf, "2x", b"xx", object(), _Weird(), _FakeTensor(), [[1.0], [1.0, 2.0]],
               1j * np.arange(4.0), np.arange(4.0).astype(np.float16) * 3, torch.ones(4, dtype=torch.bfloat16),
               np.array([np.nan] * 4), np.full(4, np.inf), np.ones((4, 1)), {"a": 1}, (lambda: 0), ValueError("x"),
               2 ** 100, np.array(["a"] * 4), np.datetime64("2020-01-01"), np.ones(0), True]
    for value in answers:
        result = check_double(lambda x, v=value: v)
        line = capsys.readouterr().out
        assert not result and line.startswith("✘ q1:") and "Traceback" not in line, (value, line)
    for exc in (ValueError("cannot convert float NaN to integer"), OverflowError(), SystemExit(3), KeyError("k")):
        def raiser(x, exc=exc):
            raise exc
        assert not check_double(raiser)
        assert "raised " + type(exc).__name__ in capsys.readouterr().out


def test_a_checker_bug_is_still_one_line(capsys):
    @exercise("q9", hint="h")
    def buggy(fn):
        return int(float(call(fn)))  # int(nan) raises ValueError inside the checker itself

    assert not buggy(lambda: float("nan"))
    out = capsys.readouterr().out
    assert out.startswith("✘ q9: your answer could not be checked (ValueError") and "Traceback" not in out


def test_expect_close_accepts_bool_int_float16_and_tensors():
    assert expect_close(np.array([True, False]), [1.0, 0.0], "b").dtype == bool
    assert expect_close(np.float16(0.5), 0.5, "h").shape == ()
    assert expect_close(torch.tensor([1.0, 2.0], dtype=torch.bfloat16), [1.0, 2.0], "t").shape == (2,)


def test_the_courses_own_function_handed_in_is_refused(capsys):
    from course_utils.labs import lab01

    @exercise("q1", hint=("think", "do"))
    def q1(fn):
        call(fn, 1.0)
        return "ok"

    assert not q1(lab01.reference_forward)
    assert "course's own `reference_forward`" in capsys.readouterr().out
    assert q1(lambda x: x)  # a student's own function (even one that calls ours) is run as usual
