import numpy as np
import pytest
import torch

import course_utils
from course_utils.labs import Result, Wrong, as_array, call, exercise, expect_close, expect_tuple
from course_utils.labs import lab05 as check5, lab09 as check
from course_utils.labs.lab09 import reference_gpipe


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
    assert q1(lambda x: x)  # a student's own function is run as usual


# --- a student function that only calls the checker's answer is refused ------------------------------

def via_module(p, m):
    return check.reference_1f1b(p, m)


def via_name(p, m):
    return reference_gpipe(p, m)


def via_full_path(p, m):
    return course_utils.labs.lab09.reference_gpipe(p, m)


def via_helper_list(p, m):  # lab09's ANSWER_HELPERS: the 1F1B orders themselves
    return [list(o) for o in check.orders_1f1b(p, m)]


def my_helper(p, m):
    return check.reference_gpipe(p, m)


def via_own_function(p, m):
    return my_helper(p, m)


def make_closure():
    answer = check.reference_gpipe
    return lambda p, m: answer(p, m)


@pytest.mark.parametrize("fn", [via_module, via_name, via_full_path, via_helper_list, via_own_function,
                                make_closure(), lambda p, m: [o for o in check.reference_gpipe(p, m)]],
                         ids=["module", "name", "full-path", "helper-list", "own-function", "closure", "lambda"])
def test_a_wrapper_of_the_checkers_answer_is_refused(capsys, fn):
    @exercise("q1", hint=("think", "do"))
    def q1(f):
        call(f, 2, 2)
        return "ok"

    assert not q1(fn)
    out = capsys.readouterr().out
    assert "calls the checker's own `" in out and out.count("\n") == 2, out


def test_checker_tools_that_are_not_answers_stay_usable(capsys):  # the negative control
    def uses_the_lab_data(n):
        return check5.energy_distance(check5.sample_target(n, seed=1), check5.sample_target(n, seed=2))

    @exercise("q1", hint=("think", "do"))
    def q1(f):
        call(f, 50)
        return "ok"

    assert q1(uses_the_lab_data) and q1(lambda n: check.interleaved_limit(2, n, 2, 0))


def test_the_real_checks_refuse_the_wrapper(capsys):
    from course_utils.labs import lab07
    check.q4.wrong_attempts = 0
    assert not check.q4(lambda p, m: check.reference_1f1b(p, m))
    assert "calls the checker's own `reference_1f1b`" in capsys.readouterr().out
    assert not lab07.q4(lambda buffers, net: lab07.reference_ring_allreduce(buffers, net))
    assert "calls the checker's own `reference_ring_allreduce`" in capsys.readouterr().out
    check.q4.wrong_attempts = lab07.q4.wrong_attempts = 0


@pytest.mark.parametrize("lab, q, wrapper, name", [
    ("lab01", "q3", lambda m: lambda X, y, w, b: m.reference_gradient(X, y, w, b), "reference_gradient"),
    ("lab06", "q2", lambda m: lambda jobs, gpus: m.reference_place(jobs, gpus), "reference_place"),
    ("lab06", "q3", lambda m: lambda jobs, gpu, n: m.exact_min_gpus(jobs, gpu, n)[0], "exact_min_gpus"),
    ("lab10", "q1", lambda m: lambda x, level=0.95, resamples=10_000, seed=0: m.reference_interval(x, level, resamples, seed),
     "reference_interval"),
])
def test_every_labs_check_refuses_its_answer_wrapped(capsys, lab, q, wrapper, name):
    import importlib
    module = importlib.import_module(f"course_utils.labs.{lab}")
    check_fn = getattr(module, q)
    assert not check_fn(wrapper(module))
    out = capsys.readouterr().out
    assert f"calls the checker's own `{name}`" in out and "Traceback" not in out, out
    check_fn.wrong_attempts = 0
