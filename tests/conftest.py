"""Plumbing for the tests in this folder."""
import re

import pytest

from course_utils import labs


@pytest.fixture(autouse=True)
def checker_tests_may_use_the_references(request, monkeypatch):
    """A lab's checker tests (test_labNN.py) build their wrong answers from the checker's references
    (best fit sorted first, a loop shifted by one step); the refusal of such wrappers is tested on its
    own in test_labs_core.py."""
    if re.fullmatch(r"(tests\.)?test_lab\d\d", request.module.__name__):
        monkeypatch.setattr(labs, "REFUSE_ANSWERS", False)
