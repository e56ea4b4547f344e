"""lme4-style formulas read with R's grammar: parsing, deparsing, term algebra, errors."""

from __future__ import annotations

import pytest

from autoglmm.errors import UsageError
from autoglmm.formula import parse_formula
from autoglmm.formula_syntax import BinOp, Name, Paren, Unary, deparse, parse_expr, quote_name
from autoglmm.formula_terms import expand_terms


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
        ("y ~ a*b + I(x**2) + (1 | g)", "a * b + I(x^2)", [("1", "g")]),  # ** is R's ^
        ("y ~ 0 + x + (1 | g)", "0 + x", [("1", "g")]),
        ("y ~ x + (1 | `school id`)", "x", [("1", "school id")]),
        ("y ~ `x|y` + `a~b` + (1 | `g|h`)", "`x|y` + `a~b`", [("1", "g|h")]),
        ("y ~ offset(log(n)) + (1 | g)", "offset(log(n))", [("1", "g")]),
        ("y ~ x + (1 | factor(id))", "x", [("1", "id")]),  # lme4 accepts factor() here
    ],
)
def test_parse(formula, fixed, random):
    f = parse_formula(formula)
    assert f.response_text == "y"
    assert f.fixed_text == fixed
    assert [(t.expr_text, t.group) for t in f.random] == random
    assert f.group == random[0][1]


def test_response_can_be_a_call_or_backticked():
    assert parse_formula("cbind(s, n - s) ~ x + (1 | g)").response_text == "cbind(s, n - s)"
    f = parse_formula("`total.fruits` ~ x + (1 | g)")
    assert f.response == Name("total.fruits") and f.response_name == "total.fruits"


@pytest.mark.parametrize(
    ("text", "deparsed"),
    [
        ("I(x^2)", "I(x^2)"),
        ("I(x ** 2)", "I(x^2)"),
        ("-x^2", "-x^2"),
        ("log(x + 1, base = 2)", "log(x + 1, base = 2)"),
        ("factor(`x-y`)", "factor(`x-y`)"),
        ("a %in% b", "a %in% b"),
        ("x %% 2 == 0", "x%%2 == 0"),  # R writes %% and / without spaces
        ('relevel(f, ref = "b")', 'relevel(f, ref = "b")'),
        ("学校 + école", "学校 + école"),
        ("`1st`:x", "`1st`:x"),
    ],
)
def test_deparse_writes_r_text(text, deparsed):
    assert deparse(parse_expr(text)) == deparsed


def _unparen(node):
    """The tree without Paren nodes, to compare implicit and explicit grouping."""
    if isinstance(node, Paren):
        return _unparen(node.inner)
    if isinstance(node, BinOp):
        return BinOp(node.op, _unparen(node.lhs), _unparen(node.rhs))
    if isinstance(node, Unary):
        return Unary(node.op, _unparen(node.operand))
    return node


@pytest.mark.parametrize(
    ("implicit", "explicit"),
    [
        ("-x^2", "-(x^2)"),  # ^ binds tighter than unary minus ...
        ("-a:b", "(-a):b"),  # ... which binds tighter than ':'
        ("a:b^2", "a:(b^2)"),
        ("a + b:c", "a + (b:c)"),
        ("a*b:c", "a*(b:c)"),
        ("x^2^3", "x^(2^3)"),  # right associative
        ("a - b - c", "(a - b) - c"),
        ("a %in% b:c", "a %in% (b:c)"),
    ],
)
def test_precedence_is_rs(implicit, explicit):
    assert _unparen(parse_expr(implicit)) == _unparen(parse_expr(explicit))
    assert parse_expr(implicit) != parse_expr(explicit.replace("(", "").replace(")", "") + " + z")


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("x", "x"), ("x.1", "x.1"), ("école", "école"), ("1st", "`1st`"), ("x y", "`x y`"),
     ("x|y", "`x|y`"), ("if", "`if`"), ("TRUE", "`TRUE`"), ("a`b", "`a\\`b`"), (".5", "`.5`")],
)  # fmt: skip
def test_quote_name_round_trips(name, quoted):
    assert quote_name(name) == quoted
    assert parse_expr(quoted) == Name(name)


def _terms(rhs):
    t = expand_terms(parse_expr(rhs))
    return t.intercept, [":".join(v.id for v in term) for term in t.terms]


@pytest.mark.parametrize(
    ("rhs", "intercept", "terms"),
    [
        ("a + b", True, ["a", "b"]),
        ("a*b", True, ["a", "b", "a:b"]),
        ("a*b - a", True, ["b", "a:b"]),
        ("a*b - 1", False, ["a", "b", "a:b"]),
        ("0 + a", False, ["a"]),
        ("-1 + a", False, ["a"]),
        ("a + 0", False, ["a"]),
        ("a:b + a", True, ["a", "a:b"]),  # by degree, as R orders terms
        ("b:a + a", True, ["a", "b:a"]),  # variables in order of first appearance
        ("(a + b + c)^2", True, ["a", "b", "c", "a:b", "a:c", "b:c"]),
        ("a/b", True, ["a", "a:b"]),
        ("(a + b)/c", True, ["a", "b", "a:b:c"]),
        ("b %in% a", True, ["b:a"]),
        ("a + a", True, ["a"]),
        ("(a)", True, ["a"]),
    ],
)
def test_term_algebra_is_rs(rhs, intercept, terms):
    assert _terms(rhs) == (intercept, terms)


def test_power_outside_I_is_crossing_and_says_so():
    t = expand_terms(parse_expr("x + x^2"))
    assert [v.id for term in t.terms for v in term] == ["x"]
    assert t.notes and "I(x^2)" in t.notes[0]


def test_offsets_are_not_terms():
    t = expand_terms(parse_expr("x + offset(log(n)) + offset(z)"))
    assert [deparse(o) for o in t.offsets] == ["log(n)", "z"]
    assert len(t.terms) == 1


@pytest.mark.parametrize(
    ("formula", "needle"),
    [
        ("y x + (1 | g)", "missing operator"),
        ("y ~ x", "no random term"),
        ("~ x + (1 | g)", "no response"),
        ("y ~ x + (1 | school/class)", "nested"),
        ("y ~ x + (1 | school) + (1 | country)", "2 grouping factors"),
        ("y ~ x + (1 | g", "expected '\\)'"),
        ("y ~ x + ( | g)", "unexpected '\\|'"),
        ("y ~ x + (1 | log(g))", "must be a column name"),
        ("y ~ 1st + (1 | g)", "missing operator"),
        ("y ~ x ~ z + (1 | g)", "one '~'"),
        ("y ~ x + (1 + x || g) - (1 | g)", "must be added"),
    ],
)
def test_errors_name_the_problem(formula, needle):
    with pytest.raises(UsageError, match=needle) as info:
        fixed_terms = parse_formula(formula)
        expand_terms(fixed_terms.fixed)
    assert "\n" not in str(info.value)


def test_unquoted_odd_name_error_suggests_backticks():
    with pytest.raises(UsageError, match="backticks"):
        parse_formula("y ~ x$z + (1 | g)")
