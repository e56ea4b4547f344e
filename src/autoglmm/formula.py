"""lme4-style model formulas: ``y ~ fixed + (re | g)``.

The fixed part is left as a formulaic right-hand side (``C(x)``, ``I(x**2)``, ``a:b``,
``a*b`` all work). The random part ``( ... | g)`` is parsed here, because formulaic has no
notion of grouping: each random term becomes a :class:`RandomTerm` whose left-hand side is
itself a formulaic right-hand side (``1 + x``, ``x`` with the intercept implied as in lme4,
``0 + x``). ``(1 + x || g)`` is lme4's shorthand for uncorrelated terms and is expanded to
``(1 | g) + (0 + x | g)``.

Example
-------
>>> f = parse_formula("y ~ x1 + C(sex) + (1 + x1 | school)")
>>> f.response, f.fixed, f.group, f.random[0].expr
('y', 'x1 + C(sex)', 'school', '1 + x1')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from autoglmm.errors import UsageError

_NAME = re.compile(r"^[A-Za-z_.][\w.]*$|^`[^`]+`$")


@dataclass(frozen=True)
class RandomTerm:
    """One ``(expr | group)`` term; ``expr`` is a formulaic right-hand side."""

    expr: str
    group: str

    @property
    def text(self) -> str:
        return f"({self.expr} | {self.group})"


@dataclass(frozen=True)
class ParsedFormula:
    """A two-level model formula split into response, fixed part and random terms."""

    response: str
    fixed: str
    random: tuple[RandomTerm, ...]

    @property
    def group(self) -> str:
        return self.random[0].group

    @property
    def text(self) -> str:
        parts = [self.fixed] + [t.text for t in self.random]
        return f"{self.response} ~ " + " + ".join(parts)


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses/brackets."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _extract_random(rhs: str) -> tuple[str, list[str]]:
    """Remove every parenthesised term containing a top-level ``|``; return (rest, terms)."""
    rest, terms, i = [], [], 0
    while i < len(rhs):
        if rhs[i] == "(":
            depth, j = 0, i
            while j < len(rhs):
                depth += rhs[j] == "("
                depth -= rhs[j] == ")"
                if depth == 0:
                    break
                j += 1
            if depth != 0:
                raise UsageError(f"unbalanced parentheses in formula term {rhs[i:]!r}")
            inner = rhs[i + 1 : j]
            if len(_split_top_level(inner, "|")) > 1:
                terms.append(inner)
                i = j + 1
                continue
            rest.append(rhs[i : j + 1])
            i = j + 1
            continue
        rest.append(rhs[i])
        i += 1
    return "".join(rest), terms


def _clean_fixed(rest: str) -> str:
    """Tidy the fixed part left after removing random terms (dangling ``+``, empty)."""
    pieces = [p.strip() for p in _split_top_level(rest, "+")]
    pieces = [p for p in pieces if p]
    return " + ".join(pieces) if pieces else "1"


def _random_terms(inner: str) -> list[RandomTerm]:
    double = "||" in inner
    lhs, _, group = inner.partition("||" if double else "|")
    lhs, group = lhs.strip(), group.strip()
    if "/" in group or ":" in group:
        raise UsageError(
            f"nested grouping '{group}' is not supported yet; "
            "use a single grouping factor, e.g. (1 | school)"
        )
    if not _NAME.match(group):
        raise UsageError(f"grouping factor '{group}' must be a column name, e.g. (1 | school)")
    if not lhs:
        raise UsageError(f"empty random term '({inner})'; write e.g. (1 | {group})")
    if not double:
        return [RandomTerm(lhs, group)]
    pieces = [p.strip() for p in _split_top_level(lhs, "+") if p.strip()]
    no_intercept = any(p in ("0", "-1") or p.startswith("-1") for p in pieces)
    covariates = [p for p in pieces if p not in ("0", "1", "-1")]
    terms = [] if no_intercept else [RandomTerm("1", group)]
    return terms + [RandomTerm(f"0 + {p}", group) for p in covariates]


def parse_formula(formula: str) -> ParsedFormula:
    """Split an lme4-style formula into response, fixed part and random terms.

    Raises :class:`UsageError` for a missing ``~``, no random term, more than one grouping
    factor, or nested grouping (``school/class``), naming the fix.
    """
    if not isinstance(formula, str) or formula.count("~") != 1:
        raise UsageError(f"formula {formula!r} must have one '~', e.g. 'y ~ x + (1 | school)'")
    lhs, rhs = (s.strip() for s in formula.split("~"))
    if not lhs:
        raise UsageError(f"formula {formula!r} has no response; write 'y ~ ...'")
    rest, inners = _extract_random(rhs)
    if not inners:
        raise UsageError(f"formula {formula!r} has no random term; add one, e.g. '+ (1 | school)'")
    terms: list[RandomTerm] = []
    for inner in inners:
        terms.extend(_random_terms(inner))
    groups = {t.group for t in terms}
    if len(groups) > 1:
        raise UsageError(
            f"random terms use {len(groups)} grouping factors ({', '.join(sorted(groups))}); "
            "only one grouping factor (two levels) is supported"
        )
    return ParsedFormula(response=lhs, fixed=_clean_fixed(rest), random=tuple(terms))
