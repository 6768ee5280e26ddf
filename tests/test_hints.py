"""Every lab hint, conceptual and concrete, says what to do in words: no answer code.

A hint that reads ``p = sigmoid(X @ w + b)`` is the answer to paste, not a hint. Each exercise keeps its
pair of hints in ``.hints`` (``course_utils.labs.exercise``); none may contain an assignment or
comparison, a matrix product, integer division, indexing, a transpose or a call into a library module.
"""
import importlib
import re

import pytest

from course_utils.labs import exercise

CODE = re.compile(r"=|@|//|\b(np|torch|tf|keras|nn|dist|scipy)\.\w+\(|\b(np|torch|tf|keras|nn|dist)\.\w|\.T\b|\w\[\w")
LABS = [f"lab{n:02d}" for n in range(1, 11)]


def exercises(name):
    module = importlib.import_module(f"course_utils.labs.{name}")
    return [(f"{name}.{attr}", fn) for attr, fn in vars(module).items()
            if callable(fn) and hasattr(fn, "hints") and getattr(fn, "__module__", "") == module.__name__]


@pytest.mark.parametrize("lab", LABS)
def test_every_hint_is_words_not_code(lab):
    found = exercises(lab)
    assert found, f"{lab} has no exercises"
    for where, fn in found:
        conceptual, concrete = fn.hints
        assert conceptual != concrete, f"{where}: the second hint must say more than the first"
        for hint in fn.hints:
            code = CODE.search(hint)
            assert code is None, f"{where}: hint carries code ({code.group(0)!r}): {hint}"


@pytest.mark.parametrize("code", ["p = sigmoid(X @ w + b)", "dw = X.T @ e / N", "w -= lr * dw", "np.maximum(z, 0)",
                                  "size // n", "x[i, g]", "torch.tensor_split(t, n)", "job.mem <= free[0]"])
def test_the_rule_catches_answer_code(code):  # the negative control: each of these would fail the test above
    assert CODE.search(f"try {code} here")


def test_exercise_keeps_its_hints():
    @exercise("q", hint=("think", "do it in words"))
    def q(answer):
        return "ok"
    assert q.hints == ("think", "do it in words")
