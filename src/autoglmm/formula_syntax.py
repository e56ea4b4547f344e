"""R's expression grammar, as far as model formulas use it: tokens, a parser, a deparser.

lme4 users write formulas in R, so a formula is read as R reads it: ``^`` is a power (``**``
is R's alias for it), a backticked name is one name whatever it contains (spaces, ``|``,
``~``, non-ASCII letters, a leading digit), ``%in%`` and ``%%`` are operators, and a name
in function position is a function while the same name elsewhere is a variable. Reading
the formula ourselves, instead of handing Python text to a Python evaluator, is what keeps
a column called ``Treatment``, ``log`` or ``C`` a column, and ``I(x^2)`` a power.

A parsed expression is a tree of small frozen nodes: :class:`Name`, :class:`Num`,
:class:`Str`, :class:`Call` (function name, positional and keyword arguments),
:class:`BinOp`, :class:`Unary` and :class:`Paren`. :func:`deparse` writes a node back the
way R's ``deparse`` does (``I(x^2)``, ``log(x + 1)``, backticks for non-syntactic names),
which is how terms are labelled.

Example
-------
>>> deparse(parse_expr("I(`school size` ** 2) + log(x)"))
'I(`school size`^2) + log(x)'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from autoglmm.errors import UsageError

__all__ = [
    "BinOp",
    "Call",
    "Name",
    "Num",
    "Paren",
    "Str",
    "Unary",
    "deparse",
    "is_syntactic",
    "parse_expr",
    "quote_name",
]


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Num:
    value: float
    text: str


@dataclass(frozen=True)
class Str:
    value: str


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple
    kwargs: tuple  # ((name, node), ...)


@dataclass(frozen=True)
class BinOp:
    op: str
    lhs: object
    rhs: object


@dataclass(frozen=True)
class Unary:
    op: str  # "-", "+", "!"
    operand: object


@dataclass(frozen=True)
class Paren:
    inner: object


_RESERVED = frozenset(
    "if else repeat while function for next break TRUE FALSE NULL Inf NaN NA NA_integer_ "
    "NA_real_ NA_character_ in".split()
)

# binary operators: (left binding power, right binding power); R's precedence table,
# highest first: ^ (right), unary - +, :, %any%, * /, + -, comparisons, !, & &&, | ||, ~
_BINARY = {
    "^": (16, 15),
    ":": (12, 13),
    "%": (10, 11),  # any %op%
    "*": (8, 9),
    "/": (8, 9),
    "+": (6, 7),
    "-": (6, 7),
    "<": (5, 5),
    ">": (5, 5),
    "<=": (5, 5),
    ">=": (5, 5),
    "==": (5, 5),
    "!=": (5, 5),
    "&": (3, 4),
    "&&": (3, 4),
    "|": (2, 3),
    "||": (2, 3),
    "~": (1, 2),
}
_CONSTANT_WORDS = {"TRUE": 1.0, "FALSE": 0.0, "Inf": float("inf"), "NaN": float("nan")}
_UNARY_POWER = {"-": 14, "+": 14, "!": 4, "~": 1}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
  | (?P<bq>`(?:[^`\\]|\\.)*`)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>(?:[^\W\d]|\.)[\w.]*)
  | (?P<pct>%[^%]*%)
  | (?P<op>\*\*|<=|>=|==|!=|&&|\|\||[-+*/^:~|&!<>(),=\[\]])
    """,
    re.VERBOSE,
)


class _Tok(NamedTuple):  # a tuple: a frozen dataclass cost 1 microsecond per token
    kind: str  # num, name, str, op, end
    text: str
    pos: int


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", r"\1", body)


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    for match in _TOKEN.finditer(text):  # one scan; a gap between matches is an error
        if match.start() != pos:
            break
        kind, value = match.lastgroup, match.group()
        if kind == "name" or kind == "num":
            out.append(_Tok(kind, value, pos))
        elif kind == "op":
            out.append(_Tok("op", "^" if value == "**" else value, pos))
        elif kind == "bq":
            out.append(_Tok("name", _unescape(value[1:-1]), pos))
        elif kind == "str":
            out.append(_Tok("str", _unescape(value[1:-1]), pos))
        elif kind == "pct":
            out.append(_Tok("op", value, pos))
        pos = match.end()
    if pos < len(text):
        raise UsageError(
            f"cannot read {text[pos : pos + 10]!r} in formula {text!r}; "
            "put column names with unusual characters in backticks, e.g. `my col`"
        )
    out.append(_Tok("end", "", pos))
    return out


class _Parser:
    """A Pratt parser over R's operator precedence."""

    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, tok: _Tok, what: str) -> UsageError:
        near = self.text[tok.pos : tok.pos + 15] or "the end"
        return UsageError(f"{what} near {near!r} in formula {self.text!r}")

    def expect(self, text: str) -> None:
        tok = self.next()
        if tok.kind != "op" or tok.text != text:
            raise self.fail(tok, f"expected '{text}'")

    def expr(self, min_power: int = 0):
        left = self.prefix()
        while True:
            tok = self.peek()
            if tok.kind != "op":
                if tok.kind != "end":
                    raise self.fail(tok, "missing operator (+, :, *) between terms")
                return left
            key = "%" if tok.text.startswith("%") else tok.text
            if key not in _BINARY or _BINARY[key][0] < min_power:
                return left
            self.next()
            left = BinOp(tok.text, left, self.expr(_BINARY[key][1]))

    def prefix(self):
        tok = self.next()
        if tok.kind == "num":
            return Num(float(tok.text.rstrip("L")), tok.text)
        if tok.kind == "str":
            return Str(tok.text)
        if tok.kind == "name" and tok.text in _CONSTANT_WORDS and self.text[tok.pos] != "`":
            return Num(_CONSTANT_WORDS[tok.text], tok.text)
        if tok.kind == "name":
            if self.peek().kind == "op" and self.peek().text == "(":
                self.next()
                return self.call(tok.text)
            return Name(tok.text)
        if tok.kind == "op" and tok.text == "(":
            inner = self.expr()
            self.expect(")")
            return Paren(inner)
        if tok.kind == "op" and tok.text in _UNARY_POWER:
            return Unary(tok.text, self.expr(_UNARY_POWER[tok.text]))
        raise self.fail(tok, "unexpected " + (repr(tok.text) if tok.text else "end"))

    def call(self, func: str) -> Call:
        args, kwargs = [], []
        if self.peek().text == ")" and self.peek().kind == "op":
            self.next()
            return Call(func, (), ())
        while True:
            tok, after = self.peek(), self.toks[self.i + 1]
            if tok.kind == "name" and after.kind == "op" and after.text == "=":
                self.i += 2
                kwargs.append((tok.text, self.expr()))
            else:
                args.append(self.expr())
            tok = self.next()
            if tok.kind == "op" and tok.text == ")":
                return Call(func, tuple(args), tuple(kwargs))
            if not (tok.kind == "op" and tok.text == ","):
                raise self.fail(tok, f"expected ',' or ')' in {func}(...)")


@lru_cache(maxsize=4096)
def parse_expr(text: str):
    """Parse R expression text (a whole formula or a part) into a node tree."""
    parser = _Parser(text)
    if parser.peek().kind == "end":
        raise UsageError(f"empty formula part {text!r}")
    node = parser.expr()
    tok = parser.peek()
    if tok.kind != "end":
        raise parser.fail(tok, "unbalanced parentheses or unexpected " + repr(tok.text))
    return node


_SYNTACTIC = re.compile(r"^(?:[^\W\d_]|\.(?![\d]))[\w.]*$|^\.$")


def is_syntactic(name: str) -> bool:
    """True when R can read ``name`` without backticks (``make.names`` would keep it)."""
    return bool(_SYNTACTIC.match(name)) and name not in _RESERVED


def quote_name(name: str) -> str:
    """``name`` as R writes it in a formula: in backticks unless it is syntactic."""
    if is_syntactic(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


_TIGHT = {"^", ":", "/", "%%", "%/%"}  # R deparses these without spaces


def deparse(node) -> str:
    """Write ``node`` back as R text, spaced as R's ``deparse`` spaces it."""
    if isinstance(node, Name):
        return quote_name(node.id)
    if isinstance(node, Num):
        return node.text
    if isinstance(node, Str):
        return '"' + node.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(node, Paren):
        return f"({deparse(node.inner)})"
    if isinstance(node, Unary):
        return f"{node.op}{deparse(node.operand)}"
    if isinstance(node, BinOp):
        sep = node.op if node.op in _TIGHT else f" {node.op} "
        return f"{deparse(node.lhs)}{sep}{deparse(node.rhs)}"
    if isinstance(node, Call):
        parts = [deparse(a) for a in node.args]
        parts += [f"{k} = {deparse(v)}" for k, v in node.kwargs]
        return f"{node.func}({', '.join(parts)})"
    raise TypeError(f"not a formula node: {node!r}")
