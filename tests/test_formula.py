"""lme4-style formula parsing: fixed part left to formulaic, random terms parsed here."""

from __future__ import annotations

import pytest

from autoglmm.errors import UsageError
from autoglmm.formula import RandomTerm, parse_formula


@pytest.mark.parametrize(
    ("formula", "fixed", "random"),
    [
        ("y ~ x + (1 | g)", "x", [("1", "g")]),
        ("y ~ (1|g)", "1", [("1", "g")]),
        ("y ~ x1 + C(sex) + (1 + x1 | school)", "x1 + C(sex)", [("1 + x1", "school")]),
        ("y ~ (x | g) + z", "z", [("x", "g")]),  # intercept implied inside, as lme4
        ("y ~ x + (0 + x | g)", "x", [("0 + x", "g")]),
        ("y ~ x + (1 | g) + (0 + x | g)", "x", [("1", "g"), ("0 + x", "g")]),
        ("y ~ x + (1 + x || g)", "x", [("1", "g"), ("0 + x", "g")]),
        ("y ~ a*b + I(x**2) + (1 | g)", "a*b + I(x**2)", [("1", "g")]),
        ("y ~ 0 + x + (1 | g)", "0 + x", [("1", "g")]),
    ],
)
def test_parse(formula, fixed, random):
    f = parse_formula(formula)
    assert f.response == "y"
    assert f.fixed == fixed
    assert list(f.random) == [RandomTerm(e, g) for e, g in random]
    assert f.group == random[0][1]


@pytest.mark.parametrize(
    ("formula", "needle"),
    [
        ("y x + (1 | g)", "one '~'"),
        ("y ~ x", "no random term"),
        ("~ x + (1 | g)", "no response"),
        ("y ~ x + (1 | school/class)", "nested"),
        ("y ~ x + (1 | school) + (1 | country)", "2 grouping factors"),
        ("y ~ x + (1 | g", "unbalanced"),
        ("y ~ x + ( | g)", "empty random term"),
    ],
)
def test_errors_name_the_problem(formula, needle):
    with pytest.raises(UsageError, match=needle):
        parse_formula(formula)
