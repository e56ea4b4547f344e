"""Evaluate a formula variable (``x``, ``I(x^2)``, ``log(n)``, ``factor(g)``) on a DataFrame.

This is R's ``model.frame`` step, done with numpy and a fixed table of R functions, never
Python's ``eval``: a name is a column of the data (whatever it is called: ``Treatment``,
``log``, ``C``, ``school id``, ``学校``), a name in function position is one of the functions
below, ``^`` is a power and ``%%`` / ``%/%`` are R's modulo and integer division. Values are
computed on all rows, as R computes ``scale(x)`` or ``poly(x, 2)`` before dropping incomplete
rows. Each variable of one formula is evaluated once (:class:`Evaluator` memoises by node).

A variable is :class:`Numeric` (an ``(n, k)`` float array with column suffixes: ``k = 2`` for
``poly(x, 2)``) or :class:`Factor` (codes with -1 for missing, and its levels in order).
String, boolean and pandas Categorical columns are factors; ``factor()``, ``C()`` and
``relevel()`` make one; levels of strings and numbers are sorted, as R's ``factor()`` sorts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from autoglmm.column_labels import ColumnLabels
from autoglmm.errors import DataError, UsageError
from autoglmm.formula_syntax import BinOp, Call, Name, Num, Paren, Str, Unary, deparse

__all__ = ["CONSTANTS", "Evaluator", "Factor", "Numeric", "variable_label"]


@dataclass(frozen=True, eq=False)
class Numeric:
    values: np.ndarray  # (n, k) float, NaN = missing
    suffixes: tuple[str, ...]  # one per column; ("",) for a single column


@dataclass(frozen=True, eq=False)
class Factor:
    codes: np.ndarray  # (n,) int64, -1 = missing
    levels: tuple  # level values, in coding order (the first is the reference)


CONSTANTS = {"TRUE": True, "T": True, "FALSE": False, "F": False, "pi": np.pi}

_MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log2": np.log2, "log10": np.log10, "log1p": np.log1p, "exp": np.exp, "expm1": np.expm1,
    "sqrt": np.sqrt, "abs": np.abs, "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "floor": np.floor, "ceiling": np.ceil, "trunc": np.trunc, "sign": np.sign,
    "as.numeric": np.asarray, "as.double": np.asarray, "as.integer": np.trunc,
}  # fmt: skip
_SUMMARIES: dict[str, Callable[[np.ndarray], float]] = {
    "mean": np.mean, "median": np.median, "sd": lambda x: np.std(x, ddof=1),
    "min": np.min, "max": np.max,
}  # fmt: skip
_FACTOR_FUNCS = ("factor", "as.factor", "C", "relevel")
_FLOAT64 = np.dtype(np.float64)
_ARITH: dict[str, Callable] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power,
    "%%": np.mod, "%/%": np.floor_divide,
    "<": np.less, ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal,
    "==": np.equal, "!=": np.not_equal, "&": np.logical_and, "|": np.logical_or,
    "&&": np.logical_and, "||": np.logical_or,
}  # fmt: skip
_TREATMENT = {"Treatment", "treatment", "contr.treatment", "T"}


def supported_functions() -> str:
    names = ["I", "log", *_MATH, *_SUMMARIES, "scale", "poly", *_FACTOR_FUNCS, "offset"]
    return ", ".join(f"{n}()" for n in names)


def variable_label(node) -> str:
    """The name a variable's columns carry: a plain column is its own name (no backticks)."""
    return node.id if isinstance(node, Name) else deparse(node)


def _func_name(func: str) -> str:
    """numpy spellings (``np.log``) are accepted for the same R functions."""
    for prefix in ("np.", "numpy."):
        if func.startswith(prefix):
            func = func[len(prefix) :]
            return {"ceil": "ceiling", "power": "^"}.get(func, func)
    return func


class Evaluator:
    """Evaluates the variables of one formula on one DataFrame, each node once."""

    def __init__(self, data: pd.DataFrame):
        self.data = data
        self.columns = data.columns
        self.memo: dict = {}
        self._series: dict[str, pd.Series] = {}
        self._arrays: dict[str, np.ndarray | None] = {}  # by :meth:`array`
        self._labels: ColumnLabels | None = None

    def has(self, name) -> bool:
        """Whether ``name`` is a column label of the data."""
        return self.labels.has(name)

    @property
    def labels(self) -> ColumnLabels:
        """Where each column label sits (read on first use; see :mod:`~autoglmm.column_labels`)."""
        if self._labels is None:
            self._labels = ColumnLabels(self.columns)
        return self._labels

    # -- public -----------------------------------------------------------------------
    def variable(self, node) -> Numeric | Factor:
        """A formula variable: a :class:`Numeric` or a :class:`Factor`."""
        if node not in self.memo:
            self.memo[node] = self._variable(node)
        return self.memo[node]

    def numeric(self, node, what: str) -> np.ndarray:
        """A one-column numeric value (an offset, a response, a cbind() part)."""
        value = self.variable(node)
        if isinstance(value, Factor) or value.values.shape[1] != 1:
            raise DataError(f"{what} {deparse(node)} must be one numeric column")
        return value.values[:, 0]

    def array(self, name: str) -> np.ndarray | None:
        """Column ``name``'s numpy array, read-only and not copied, without building a
        Series; None for extension dtypes (strings, categoricals, nullable numbers) and
        duplicated names, which take the :meth:`column` path.

        ``DataFrame.__getitem__`` builds a Series (12-20 microseconds on a frame of 230
        columns; a fit reads 20), where the model frame needs only the block's array.
        pandas' own ``_get_column_array`` gives it (pandas 1.3 to 3.x); without it, the
        public path is taken.
        """
        if name in self._arrays:
            return self._arrays[name]
        getter = getattr(self.data, "_get_column_array", None)
        loc = self.labels.position(name) if getter is not None else None
        values = None if loc is None else getter(int(loc))
        if isinstance(values, np.ndarray):
            values = values.view()
            values.flags.writeable = False
        else:
            values = None
        self._arrays[name] = values
        return values

    def column(self, name: str) -> pd.Series:
        if name in self._series:
            return self._series[name]
        column = self._series[name] = self.data[name]
        if isinstance(column, pd.DataFrame):
            raise DataError(
                f"column name '{name}' appears {column.shape[1]} times in the data; "
                "rename the duplicates"
            )
        return column

    # -- variables ----------------------------------------------------------------------
    def _variable(self, node) -> Numeric | Factor:
        if isinstance(node, Name):
            return self._name(node.id)
        if isinstance(node, Call):
            func = _func_name(node.func)
            if func in _FACTOR_FUNCS:
                return self._factor_call(node, func)
            if func == "poly":
                return self._poly(node)
        value = self._value(node)
        if isinstance(value, Factor):
            return value
        value = np.asarray(value)
        if value.dtype == bool:
            return Factor(value.astype(np.int64), (False, True))
        if value.ndim == 0:
            raise UsageError(f"{deparse(node)} is a constant, not a column; drop it")
        return Numeric(np.asarray(value, dtype=float).reshape(len(self.data), 1), ("",))

    def _name(self, name: str) -> Numeric | Factor:
        if not self.has(name):
            raise DataError(
                f"unknown column(s) {name}; check the formula against the data's column names"
            )
        values = self.array(name)
        if values is not None and values.dtype == _FLOAT64:  # the common case: no copy
            return Numeric(values[:, None], ("",))
        column = self.column(name)
        dtype = column.dtype
        if dtype == _FLOAT64:  # the column's own array, read-only, no copy
            values = column.to_numpy().view()
            values.flags.writeable = False
            return Numeric(values[:, None], ("",))
        if pd.api.types.is_bool_dtype(dtype) and not column.isna().any():
            return Factor(column.to_numpy(dtype=np.int64), (False, True))
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            values = column.to_numpy(dtype=float, na_value=np.nan)
            return Numeric(values[:, None], ("",))
        return _as_factor(column)

    def _factor_call(self, node: Call, func: str) -> Factor:
        if not node.args:
            raise UsageError(f"{deparse(node)} needs a column, e.g. {func}(x)")
        base = self.variable(node.args[0])
        factor = base if isinstance(base, Factor) else _factor_of_numbers(base, node)
        extra = dict(node.kwargs)
        if func == "factor" and "levels" in extra:
            return _with_levels(factor, _literals(extra.pop("levels"), node), node)
        if func == "relevel":
            ref = extra.pop("ref", node.args[1] if len(node.args) > 1 else None)
            return _with_reference(factor, _literal(ref, node), node)
        if func == "C" and len(node.args) > 1:
            return _with_reference(factor, _contrast_reference(node.args[1], node), node)
        if len(node.args) > 1 or extra:
            raise UsageError(f"{deparse(node)}: only {func}(x) is supported here; drop the options")
        return factor

    def _poly(self, node: Call) -> Numeric:
        args = dict(zip(("x", "degree", "raw"), node.args, strict=False)) | dict(node.kwargs)
        x = self.numeric(args["x"], "poly() argument")
        degree = int(_literal(args.get("degree", Num(1.0, "1")), node))
        raw = bool(_literal(args.get("raw", Name("FALSE")), node))
        if np.isnan(x).any():
            raise DataError(f"{deparse(node)}: missing values are not allowed in poly(), as in R")
        cols = np.column_stack([x**k for k in range(degree + 1)])
        if not raw:
            q, r = np.linalg.qr(np.column_stack([(x - x.mean()) ** k for k in range(degree + 1)]))
            cols = q * np.sign(np.diag(r))  # Gram-Schmidt basis: R's orthonormal poly()
        return Numeric(cols[:, 1:], tuple(str(k) for k in range(1, degree + 1)))

    # -- values inside I(), log(), ... -----------------------------------------------------
    def _value(self, node):
        if isinstance(node, Num):
            return node.value
        if isinstance(node, Str):
            raise UsageError(f"a string ({deparse(node)}) cannot be a model value")
        if isinstance(node, Name):
            if not self.has(node.id) and node.id in CONSTANTS:
                return CONSTANTS[node.id]
            value = self.variable(node)
            return value if isinstance(value, Factor) else value.values[:, 0]
        if isinstance(node, Paren):
            return self._value(node.inner)
        if isinstance(node, Unary):
            operand = self._arith_operand(node.operand, node)
            if node.op == "!":
                return np.logical_not(operand)
            return -operand if node.op == "-" else operand
        if isinstance(node, BinOp):
            if node.op not in _ARITH:
                raise UsageError(f"{deparse(node)}: '{node.op}' is a formula operator; wrap in I()")
            lhs, rhs = self._arith_operand(node.lhs, node), self._arith_operand(node.rhs, node)
            with np.errstate(all="ignore"):
                return _ARITH[node.op](lhs, rhs)
        return self._call(node)

    def _arith_operand(self, node, parent):
        value = self._value(node)
        if isinstance(value, Factor):
            raise DataError(
                f"{deparse(parent)}: {deparse(node)} is categorical; arithmetic needs numbers"
            )
        return value

    def _call(self, node: Call):
        func = _func_name(node.func)
        if func == "I":
            if len(node.args) != 1:
                raise UsageError(f"{deparse(node)}: I() takes one expression")
            return self._arith_operand(node.args[0], node)
        if func == "scale":
            return self._scale(node)
        if func in _SUMMARIES:
            return self._summary(node, func)
        if func == "log" or func in _MATH:
            if not node.args:
                raise UsageError(f"{deparse(node)} needs an argument")
            x = np.asarray(self._arith_operand(node.args[0], node), dtype=float)
            with np.errstate(all="ignore"):
                if func != "log":
                    return _MATH[func](x)
                base = dict(node.kwargs).get("base", node.args[1] if len(node.args) > 1 else None)
                return np.log(x) / (np.log(float(_literal(base, node))) if base else 1.0)
        if func in _FACTOR_FUNCS or func == "poly":
            value = self.variable(node)
            if isinstance(value, Factor) or value.values.shape[1] != 1:
                raise UsageError(f"{deparse(node)} cannot be used inside arithmetic")
            return value.values[:, 0]
        if func in ("cbind", "offset"):
            raise UsageError(f"{func}() belongs at the top of a formula, e.g. cbind(s, f) ~ ...")
        raise UsageError(
            f"unknown function {node.func}() in {deparse(node)}; use one of "
            f"{supported_functions()}, or compute the column before fitting"
        )

    def _summary(self, node: Call, func: str) -> float:
        """``mean(x)``, ``sd(x)``, ... over all rows; NA unless ``na.rm = TRUE``, as in R."""
        if len(node.args) != 1:
            raise UsageError(f"{deparse(node)}: {func}() takes one column here")
        x = np.asarray(self._arith_operand(node.args[0], node), dtype=float)
        if _literal(dict(node.kwargs).get("na.rm"), node):
            x = x[~np.isnan(x)]
        return float(_SUMMARIES[func](x)) if x.size else np.nan

    def _scale(self, node: Call) -> np.ndarray:
        args = dict(zip(("x", "center", "scale"), node.args, strict=False)) | dict(node.kwargs)
        x = np.asarray(self._arith_operand(args["x"], node), dtype=float)
        center = bool(_literal(args.get("center", Name("TRUE")), node))
        scale = bool(_literal(args.get("scale", Name("TRUE")), node))
        ok = ~np.isnan(x)
        if center:
            x = x - x[ok].mean()
        if scale:  # R: sd with n - 1 when centred, root mean square / (n - 1) otherwise
            x = x / np.sqrt(np.sum(x[ok] ** 2) / max(ok.sum() - 1, 1))
        return x


def _as_factor(column: pd.Series) -> Factor:
    if isinstance(column.dtype, pd.CategoricalDtype):
        return Factor(column.cat.codes.to_numpy(dtype=np.int64), tuple(column.cat.categories))
    values = column.to_numpy()
    missing = pd.isna(values)
    try:
        codes, levels = pd.factorize(values, sort=True, use_na_sentinel=True)
    except TypeError as err:
        raise DataError(
            f"column '{column.name}' mixes types ({err}); make it all text or all numbers"
        ) from None
    codes = np.where(missing, -1, codes)
    return Factor(codes.astype(np.int64), tuple(np.asarray(levels).tolist()))


def _factor_of_numbers(value: Numeric, node) -> Factor:
    if value.values.shape[1] != 1:
        raise UsageError(f"{deparse(node)} needs one column")
    x = value.values[:, 0]
    ok = ~np.isnan(x)
    levels, codes = np.unique(x[ok], return_inverse=True)
    out = np.full(len(x), -1, np.int64)
    out[ok] = codes
    return Factor(out, tuple(int(v) if float(v).is_integer() else float(v) for v in levels))


def _with_levels(factor: Factor, levels: list, node) -> Factor:
    """``factor(x, levels = c(...))``: this order; values outside the list are missing."""
    position = {_level_key(v): i for i, v in enumerate(levels)}
    mapping = np.array([position.get(_level_key(v), -1) for v in factor.levels] + [-1])
    if len(set(position)) != len(levels):
        raise UsageError(f"{deparse(node)}: levels repeat")
    return Factor(mapping[factor.codes], tuple(levels))


def _with_reference(factor: Factor, ref, node) -> Factor:
    if ref is None:
        return factor
    keys = [_level_key(v) for v in factor.levels]
    if _level_key(ref) not in keys:
        shown = ", ".join(str(v) for v in factor.levels[:10])
        raise DataError(f"{deparse(node)}: reference level {ref!r} is not one of {shown}")
    i = keys.index(_level_key(ref))
    order = [i] + [j for j in range(len(keys)) if j != i]
    remap = np.empty(len(keys) + 1, np.int64)
    remap[order] = np.arange(len(keys))
    remap[-1] = -1
    return Factor(remap[factor.codes], tuple(factor.levels[j] for j in order))


def _contrast_reference(node, call: Call):
    """``C(x, Treatment)``, ``C(x, Treatment("b"))``, ``C(x, contr.treatment)`` -> reference."""
    if isinstance(node, Name) and node.id in _TREATMENT:
        return None
    if isinstance(node, Call) and node.func in _TREATMENT and len(node.args + node.kwargs) == 1:
        value = node.args[0] if node.args else node.kwargs[0][1]
        return _literal(value, call)
    raise UsageError(
        f"{deparse(call)}: only treatment contrasts are supported; write C(x) or "
        'C(x, Treatment("ref")) to choose the reference level'
    )


def _literal(node, call):
    if node is None:
        return None
    if isinstance(node, Num):
        return int(node.value) if node.value.is_integer() else node.value
    if isinstance(node, Str):
        return node.value
    if isinstance(node, Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Num):
        return -_literal(node.operand, call)
    raise UsageError(f"{deparse(call)}: {deparse(node)} must be a number or a quoted string")


def _literals(node, call) -> list:
    if isinstance(node, Call) and node.func == "c":
        return [_literal(a, call) for a in node.args]
    return [_literal(node, call)]


def _level_key(value) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    return str(value)
