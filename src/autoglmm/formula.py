"""lme4-style model formulas: ``y ~ fixed + (re | g)``, read with R's grammar.

The whole formula is parsed as R parses it (:mod:`autoglmm.formula_syntax`), then split
here, as lme4's ``findbars``/``nobars`` split it: every parenthesised ``(expr | g)`` among
the top-level ``+`` terms is a random term, the rest is the fixed part. ``(1 + x || g)`` is
lme4's shorthand for uncorrelated terms and is expanded to ``(1 | g) + (0 + x | g)``.
The grouping factor is a column name (backticked when it has spaces or other characters);
the fixed part, each random term's left-hand side and the response stay node trees that
:mod:`autoglmm.model_frame` turns into columns.

Example
-------
>>> f = parse_formula("y ~ x1 + factor(sex) + (1 + x1 | `school id`)")
>>> f.response_text, f.fixed_text, f.group, f.random[0].text
('y', 'x1 + factor(sex)', 'school id', '(1 + x1 | `school id`)')
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from autoglmm.errors import UsageError
from autoglmm.formula_syntax import (
    BinOp,
    Call,
    Name,
    Num,
    Paren,
    Unary,
    deparse,
    parse_expr,
    quote_name,
)

__all__ = ["ParsedFormula", "RandomTerm", "parse_formula"]


@dataclass(frozen=True)
class RandomTerm:
    """One ``(expr | group)`` term; ``expr`` is a right-hand side node tree."""

    expr: object
    group: str

    @property
    def expr_text(self) -> str:
        return deparse(self.expr)

    @property
    def text(self) -> str:
        return f"({self.expr_text} | {quote_name(self.group)})"


@dataclass(frozen=True)
class ParsedFormula:
    """A two-level model formula split into response, fixed part and random terms."""

    response: object
    fixed: object
    random: tuple[RandomTerm, ...]

    @property
    def group(self) -> str:
        return self.random[0].group

    @property
    def response_text(self) -> str:
        return deparse(self.response)

    @property
    def response_name(self) -> str:
        """The response's column name when it is one column, else its R text."""
        return self.response.id if isinstance(self.response, Name) else self.response_text

    @property
    def fixed_text(self) -> str:
        return deparse(self.fixed)

    @property
    def text(self) -> str:
        parts = [self.fixed_text] + [t.text for t in self.random]
        return f"{self.response_text} ~ " + " + ".join(parts)


def plus_terms(node) -> list:
    """The operands of a chain of top-level ``+`` (``a + b + c`` -> ``[a, b, c]``)."""
    if isinstance(node, BinOp) and node.op == "+":
        return plus_terms(node.lhs) + plus_terms(node.rhs)
    return [node]


def _join(nodes: list):
    out = nodes[0]
    for node in nodes[1:]:
        out = BinOp("+", out, node)
    return out


def _is_bar(node) -> bool:
    return (
        isinstance(node, Paren) and isinstance(node.inner, BinOp) and node.inner.op in ("|", "||")
    )


def _group_name(node, inner_text: str) -> str:
    if isinstance(node, BinOp) and node.op in ("/", ":"):
        raise UsageError(
            f"nested grouping '{deparse(node)}' is not supported yet; "
            "use a single grouping factor, e.g. (1 | school)"
        )
    if isinstance(node, Call) and node.func in ("factor", "as.factor") and len(node.args) == 1:
        node = node.args[0]  # (1 | factor(id)): grouping by a column's values is a factor
    if not isinstance(node, Name):
        raise UsageError(
            f"grouping factor '{deparse(node)}' in ({inner_text}) must be a column name, "
            "e.g. (1 | school); make the column first"
        )
    return node.id


def _random_terms(bar: BinOp) -> list[RandomTerm]:
    text = deparse(bar)
    group = _group_name(bar.rhs, text)
    if bar.op == "|":
        return [RandomTerm(bar.lhs, group)]
    pieces = plus_terms(bar.lhs)
    intercept = True
    covariates = []
    for piece in pieces:
        if isinstance(piece, Num) and piece.value in (0, 1):
            intercept = piece.value == 1
        elif isinstance(piece, Unary) and piece.op == "-" and isinstance(piece.operand, Num):
            intercept = False
        elif isinstance(piece, BinOp) and piece.op == "-":
            raise UsageError(f"write ({text}) without '-', e.g. (0 + x || g)")
        else:
            covariates.append(piece)
    terms = [RandomTerm(Num(1.0, "1"), group)] if intercept else []
    return terms + [RandomTerm(BinOp("+", Num(0.0, "0"), c), group) for c in covariates]


@lru_cache(maxsize=4096)
def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4-style formula into response, fixed part and random terms.

    Raises :class:`UsageError` for a missing ``~``, no random term, more than one grouping
    factor, or nested grouping (``school/class``), naming the fix.
    """
    if not isinstance(formula, str):
        raise UsageError(f"formula {formula!r} must be text, e.g. 'y ~ x + (1 | school)'")
    node = parse_expr(formula)
    if not (isinstance(node, BinOp) and node.op == "~"):
        if isinstance(node, Unary) and node.op == "~":
            raise UsageError(f"formula {formula!r} has no response; write 'y ~ ...'")
        raise UsageError(f"formula {formula!r} must have one '~', e.g. 'y ~ x + (1 | school)'")
    response, rhs = node.lhs, node.rhs
    if _contains_tilde(response) or _contains_tilde(rhs):
        raise UsageError(f"formula {formula!r} must have one '~'; backtick a name with '~'")
    fixed, terms = [], []
    for piece in plus_terms(rhs):
        if _is_bar(piece):
            terms.extend(_random_terms(piece.inner))
        elif _find_bar(piece) is not None:
            raise UsageError(
                f"random term ({deparse(_find_bar(piece))}) must be added to the model with "
                "'+', e.g. y ~ x + (1 | g)"
            )
        else:
            fixed.append(piece)
    if not terms:
        raise UsageError(f"formula {formula!r} has no random term; add one, e.g. '+ (1 | school)'")
    groups = {t.group for t in terms}
    if len(groups) > 1:
        raise UsageError(
            f"random terms use {len(groups)} grouping factors ({', '.join(sorted(groups))}); "
            "only one grouping factor (two levels) is supported"
        )
    return ParsedFormula(
        response=response, fixed=_join(fixed) if fixed else Num(1.0, "1"), random=tuple(terms)
    )


def _find_bar(node):
    """A ``|`` or ``||`` anywhere below ``node`` (None when there is none)."""
    if isinstance(node, BinOp):
        if node.op in ("|", "||"):
            return node
        return _find_bar(node.lhs) or _find_bar(node.rhs)
    if isinstance(node, Unary):
        return _find_bar(node.operand)
    if isinstance(node, Paren):
        return _find_bar(node.inner)
    return None


def _contains_tilde(node) -> bool:
    if isinstance(node, BinOp):
        return node.op == "~" or _contains_tilde(node.lhs) or _contains_tilde(node.rhs)
    if isinstance(node, Unary):
        return node.op == "~" or _contains_tilde(node.operand)
    if isinstance(node, Paren):
        return _contains_tilde(node.inner)
    return False
