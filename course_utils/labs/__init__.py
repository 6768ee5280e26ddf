"""Self-checking lab exercises: one module per lab (``lab01`` ...), built on the pieces here.

In a lab notebook::

    from course_utils.labs import lab01 as check
    check.q1(neuron_forward)      # prints one line: ✔ ... or ✘ ... with a hint

A check runs the student's code on fresh random hidden inputs (a hard-coded answer fails),
compares with a reference, and turns every failure — a wrong value, shape, dtype, NaN, a wrong
type, an exception inside the student's code, an unfinished ``raise NotImplementedError`` —
into one clear line, never a traceback. It returns a ``Result`` (truthy when passed) that
displays nothing in a notebook, so the printed line is the only output.
"""
from __future__ import annotations

import functools
import secrets
import sys
from types import CodeType, ModuleType
from typing import Any, Callable

import numpy as np


class Wrong(Exception):
    """Raised inside a check to report a wrong answer; its text is shown after ✘."""


class NotDone(Exception):
    """The exercise is not attempted yet (the starter's ``raise NotImplementedError``)."""


class Result:
    """Outcome of one check: truthy when passed; shows nothing in a notebook (the line is printed)."""

    def __init__(self, ok: bool, line: str):
        self.ok, self.line = ok, line

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return self.line

    def _ipython_display_(self) -> None:  # the check already printed its line
        pass


def exercise(name: str, hint: str | tuple[str, str]) -> Callable:
    """Decorator for a check ``fn(*student_answers) -> success message``.

    The check raises ``Wrong`` for a wrong answer; any other exception raised by student code
    (reached through ``call``) is reported as such. ``hint`` is a str shown after every ✘, or a
    pair ``(conceptual, concrete)``: the first ✘ shows the conceptual hint, later ones the
    concrete one. "Not done yet" shows only the instruction, no hint. The decorated check
    counts its wrong attempts in ``.wrong_attempts`` (set it to 0 to start over).
    """
    hints = (hint, hint) if isinstance(hint, str) else tuple(hint)
    if len(hints) != 2 or not all(isinstance(h, str) for h in hints):
        raise TypeError("hint must be a str or a pair (conceptual, concrete) of str")

    def wrap(check: Callable[..., str]) -> Callable[..., Result]:
        @functools.wraps(check)
        def run(*answers: Any, **kwargs: Any) -> Result:
            try:
                ok, text = True, check(*answers, **kwargs)
            except NotDone:
                line = f"✘ {name}: not done yet — replace the `raise NotImplementedError` with your code"
                _say(line)
                return Result(False, line)
            except Wrong as wrong:
                ok, text = False, f"{wrong}"
            except Exception as err:  # a checker bug must still never show a traceback to a student
                ok, text = False, f"your answer could not be checked ({_one_line(err)}); check what it returns"
            if ok:
                line = f"✔ {name}: {text}"
            else:
                line = f"✘ {name}: {text}\n   hint: {hints[min(run.wrong_attempts, 1)]}"
                run.wrong_attempts += 1
            _say(line)
            return Result(ok, line)
        run.wrong_attempts, run.hints = 0, hints
        return run
    return wrap


def _say(line: str) -> None:
    """Print the line in one write, so a notebook stores it as one output (print writes the newline apart)."""
    print(line + "\n", end="", flush=True)


def rng() -> np.random.Generator:
    """A generator with a fresh seed for every check: hidden inputs differ on every run."""
    return np.random.default_rng(secrets.randbits(64))


def require_callable(fn: Any, what: str) -> None:
    if not callable(fn):
        raise Wrong(f"expected {what} to be a function, got {type(fn).__name__}")


REFUSE_ANSWERS = True  # the checkers' own tests build wrong answers from the references and turn this off


def call(fn: Callable, *args: Any, what: str = "your function") -> Any:
    """Call student code; turn NotImplementedError into NotDone and other errors into Wrong.

    The course's own functions (a checker's reference, a ``course_utils`` helper) handed in as the
    answer are refused, and so is a function of the student's that calls a checker's answer
    (``reference_*`` or the module's ``ANSWER_HELPERS``): the exercise is to write the function, not to
    pass ours back. (Like every in-process check, a determined student can switch this off.)
    """
    require_callable(fn, what)
    if _course_function(fn):
        raise Wrong(f"{what} is the course's own `{fn.__name__}` — write your own function")
    used = REFUSE_ANSWERS and _reaches_answer(fn)
    if used:
        raise Wrong(f"{what} calls the checker's own `{used}` — write your own function")
    try:
        return fn(*args)
    except NotImplementedError as err:
        raise NotDone from err
    except (Exception, SystemExit) as err:  # the student's bug, reported in one line
        raise Wrong(f"{what} raised {_one_line(err)}") from err


def _course_function(fn: Any) -> bool:
    """True for a function that a ``course_utils`` module exports under its own name (a reference)."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__name__", None)
    if not (isinstance(module, str) and module.startswith("course_utils.") and isinstance(name, str)):
        return False  # a lambda or closure made inside a checker has a course module but no such name
    return getattr(sys.modules.get(module), name, None) is fn


def _answers(module: ModuleType) -> set[str]:
    """A checker module's functions that do an exercise: ``reference_*`` and its ``ANSWER_HELPERS``."""
    return {n for n, v in vars(module).items()
            if callable(v) and (n.startswith("reference") or n in getattr(module, "ANSWER_HELPERS", ()))}


def _reaches_answer(fn: Any, seen: set | None = None) -> str | None:
    """The name of a checker's answer that ``fn`` calls — directly, through a lab module (``check.x``),
    through a closure, or through other functions of the student's — else None."""
    code, seen = getattr(fn, "__code__", None), seen if seen is not None else set()
    if not isinstance(code, CodeType) or id(fn) in seen or len(seen) > 50:
        return None
    seen.add(id(fn))
    names, stack = set(code.co_freevars), [code]
    while stack:  # the function's own code and every function or lambda nested in it
        c = stack.pop()
        names |= set(c.co_names)
        stack += [k for k in c.co_consts if isinstance(k, CodeType)]
    scope = dict(getattr(fn, "__globals__", None) or {})
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
        try:
            scope[name] = cell.cell_contents
        except ValueError:  # an empty cell
            pass
    labs = [m for n, m in list(sys.modules.items()) if n.startswith(f"{__name__}.") and m is not None]
    for name in names & set(scope):
        obj = scope[name]
        if isinstance(obj, ModuleType) and obj.__name__.split(".")[0] == "course_utils":
            hit = names & set().union(*(_answers(m) for m in labs))
            if hit:
                return sorted(hit)[0]
        elif _course_function(obj):
            if obj.__module__.startswith(f"{__name__}.") and obj.__name__ in _answers(sys.modules[obj.__module__]):
                return obj.__name__
        elif callable(obj) and getattr(obj, "__module__", None) == getattr(fn, "__module__", "") and not isinstance(obj, type):
            found = _reaches_answer(obj, seen)  # another function of the student's
            if found:
                return found
    return None


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def expect_tuple(value: Any, what: str, n: int) -> tuple | list:
    """Check that student code returned a tuple (or list) of ``n`` values; return it."""
    if not isinstance(value, (tuple, list)) or len(value) != n:
        kind = f"a {type(value).__name__}" + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else "")
        raise Wrong(f"{what} should return a tuple of {n} values, got {kind}")
    return value


def as_array(value: Any, what: str) -> np.ndarray:
    """Accept NumPy arrays, Python numbers/lists, torch tensors and TF tensors of real numbers.

    Anything else (None, strings, objects, ragged lists, complex numbers...) raises ``Wrong``.
    """
    if value is None:
        raise Wrong(f"{what} returned None — did you forget `return`?")
    try:
        if hasattr(value, "detach"):  # torch (bfloat16 has no NumPy dtype: widen it)
            value = value.detach().cpu()
            value = (value.float() if str(value.dtype) == "torch.bfloat16" else value).numpy()
        elif hasattr(value, "numpy") and callable(value.numpy):  # tensorflow
            value = value.numpy()
        array = np.asarray(value)
    except Exception:
        raise Wrong(f"{what} returned a {type(value).__name__}, expected an array of numbers") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise Wrong(f"{what} returned a {type(value).__name__} of {array.dtype}, expected numbers")
    if np.iscomplexobj(array):
        raise Wrong(f"{what} returned complex numbers, expected real numbers")
    return array


def expect_close(value: Any, reference: Any, what: str, rtol: float = 1e-5, atol: float = 1e-6) -> np.ndarray:
    """Check type, shape, finiteness and value against the reference; return the value as an array."""
    got = as_array(value, what)
    ref = np.asarray(reference, dtype=np.float64)
    if got.shape != ref.shape:
        raise Wrong(f"{what} has shape {got.shape}, expected {ref.shape}")
    as_float = got.astype(np.float64)
    if not np.all(np.isfinite(as_float)):
        raise Wrong(f"{what} contains NaN or inf")
    if not np.allclose(as_float, ref, rtol=rtol, atol=atol):
        err = float(np.max(np.abs(as_float - ref)))
        raise Wrong(f"{what} is off by up to {err:.3g} from the correct values")
    return got
