"""One prepared design per search: every candidate model is an update, not a rebuild.

The search fits hundreds of models on the same rows. :func:`autoglmm.fit` would take each
one from its formula through the whole model frame (evaluate the columns, find the
complete rows, factorize and sort the groups, check the rank by a QR of X, reduce the
rows to per-group cross-products), so the cost per candidate grew with the rows. Here
(as lme-python's ``prepare_lmer``/``fit_prepared`` and MixedModels.jl's ``refit!``):

- the analysis rows are prepared once: sorted by group, the response and the groups
  taken from the null model's frame (so row identity and errors are :func:`fit`'s);
- each term's model-matrix columns are evaluated once, with R's coding (the same
  ``_Builder`` as :mod:`autoglmm.model_frame`), sorted, and kept in one column store;
- cross-products are computed once per pair of columns and kept: the global ``X'X``
  entries and the per-group sums of each random-effect column with each column. Adding
  one predictor to a model adds one row and column: O(n (p + q)) work, not O(n p^2);
- the centred response is a column of the store too, so a gaussian candidate's workspace
  (:class:`~autoglmm.engine.lmm.LMMWorkspace`, centred on the least-squares fit as
  :func:`~autoglmm.engine.lmm.make_workspace` centres it) is assembled from cached
  products without touching the rows; a binomial or poisson candidate gets its
  :class:`GroupedDesign` from the store without re-evaluating its columns.

The rank check is :func:`fit`'s: the quick accept from ``X'X`` (now read off the store),
else the exact column scan on X. A formula the store cannot serve (rows that the full
frame would drop, offsets, no intercept) returns None, and the caller uses :func:`fit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from autoglmm.engine.design import GroupedDesign, _check_columns, check_sizes, theta_positions
from autoglmm.formula import parse_formula
from autoglmm.model_frame import (
    _Builder,
    _codings,
    _complete,
    _expand,
    build_model_frame,
    independent_columns,
)
from autoglmm.result import Fit
from autoglmm.variables import Evaluator, Factor, variable_label

__all__ = ["PreparedDesign", "PreparedSample"]


@dataclass(frozen=True, eq=False)
class PreparedDesign:
    """The columns of one model: store indices and names, after the rank check."""

    formula: str
    x_names: tuple[str, ...]
    x_idx: np.ndarray
    z_names: tuple[str, ...]
    z_idx: np.ndarray
    re_blocks: tuple[int, ...]
    dropped: tuple[str, ...]
    messages: tuple[str, ...]

    @property
    def p(self) -> int:
        return len(self.x_idx)

    @property
    def n_theta(self) -> int:
        return sum(k * (k + 1) // 2 for k in self.re_blocks)


class Unprepared(Exception):
    """The store cannot serve this formula exactly as :func:`fit` would: use :func:`fit`."""


class PreparedSample:
    """The analysis rows of one search, sorted once, with a column and cross-product store.

    Parameters
    ----------
    data : the analysis sample (every model of the search uses all of its rows).
    null_formula : ``y ~ 1 + (1 | g)``; its frame fixes the response, groups and row hash.
    family, link : as :func:`autoglmm.fit` checks them.

    Raises :class:`Unprepared` when the null model's frame drops rows.
    """

    def __init__(self, data: pd.DataFrame, null_formula: str, family: str, link: str) -> None:
        frame = build_model_frame(parse_formula(null_formula), data, family=family)
        if frame.n_dropped_rows:
            raise Unprepared("the null model drops rows")
        d = frame.design
        self.frame, self.family, self.link = frame, family, link
        self.y, self.starts, self.group = d.y, d.starts, d.group
        self.n, self.m = d.n, d.m
        self.ev = Evaluator(data)
        self.builder = _Builder(self.ev, np.ones(len(data), bool))
        self.store = _ColumnStore(self.n, self.starts)
        self.intercept = self.store.add(np.ones(self.n))
        # the response, centred, is one more column: its cross-products are cached too
        self.y_mean = float(np.mean(self.y))
        self.ycol = self.store.add(self.y - self.y_mean)
        self.blocks: dict[tuple, tuple[list[str], list[int]]] = {}
        self.levels = pd.Index(d.group_levels, name=frame.group_name)  # built once, shared

    # --- designs ---------------------------------------------------------------------
    def design(self, formula: str) -> PreparedDesign | None:
        """The prepared columns of ``formula``, or None when :func:`fit` must build it."""
        parsed = parse_formula(formula)
        same = parsed.group == self.frame.group_name
        if not same or parsed.response_name != self.frame.response_name:
            return None
        fixed, random = _expand(parsed)
        if fixed.offsets or not fixed.intercept or len(random) != 1:
            return None
        try:
            x_names, x_idx = self._columns(fixed)
            z_names, z_idx = self._columns(random[0])
        except Unprepared:
            return None
        if len(set(z_names)) != len(z_names) or not z_names:
            return None  # fit() names the problem
        messages = list(fixed.notes) + list(random[0].notes)
        keep = self._independent(x_idx)
        dropped = tuple(n for n, k in zip(x_names, keep, strict=True) if not k)
        if dropped:
            messages.append(
                "fixed-effect model matrix is rank deficient so dropping "
                f"{len(dropped)} column(s): {', '.join(dropped)}"
            )
        return PreparedDesign(
            formula=formula,
            x_names=tuple(n for n, k in zip(x_names, keep, strict=True) if k),
            x_idx=np.asarray(x_idx, dtype=np.int64)[keep],
            z_names=tuple(z_names),
            z_idx=np.asarray(z_idx, dtype=np.int64),
            re_blocks=(len(z_idx),),
            dropped=dropped,
            messages=tuple(messages),
        )

    def _columns(self, terms) -> tuple[list[str], list[int]]:
        """Names and store indices of R's model matrix of ``terms`` (intercept first)."""
        codings = _codings(terms, lambda v: isinstance(self.ev.variable(v), Factor))
        names = ["(Intercept)"] if terms.intercept else []
        idx = [self.intercept] if terms.intercept else []
        for term, coding in zip(terms.terms, codings, strict=True):
            key = (term, tuple(coding))
            if key not in self.blocks:
                self.blocks[key] = self._evaluate(term, coding)
            block_names, block_idx = self.blocks[key]
            names.extend(block_names)
            idx.extend(block_idx)
        return names, idx

    def _evaluate(self, term: tuple, coding: list[bool]) -> tuple[list[str], list[int]]:
        for var in term:  # every row must be complete, as in the null model's frame
            if _complete(self.ev, self.ev.variable(var), variable_label(var)) is not None:
                raise Unprepared(f"{variable_label(var)} has missing values")
        block, names = self.builder.term_block(term, coding)
        block = np.asarray(block, dtype=float)[self.frame.order]
        _check_columns(block, [f"fixed-effect column '{n}'" for n in names])
        return list(names), [self.store.add(block[:, k]) for k in range(block.shape[1])]

    def _independent(self, x_idx: list[int]) -> np.ndarray:
        """:func:`~autoglmm.model_frame.independent_columns` with X'X from the store."""
        gram = self.store.gram(np.asarray(x_idx, dtype=np.int64))
        norms = np.sqrt(np.diag(gram))
        if np.all(norms > 0):
            try:
                chol = np.linalg.cholesky(gram / np.outer(norms, norms))
                if np.min(np.diag(chol)) ** 2 > 1e-10:
                    return np.ones(len(x_idx), bool)
            except np.linalg.LinAlgError:
                pass
        return independent_columns(self.store.matrix(x_idx))

    # --- fits ------------------------------------------------------------------------
    def fit(self, d: PreparedDesign, start: dict | None = None) -> Fit:
        """ML fit of a prepared design, as :func:`autoglmm.fit` would fit its formula."""
        from autoglmm.engine.optimize import single_threaded_blas
        from autoglmm.fitting import _map_beta, _map_theta, assemble_fit, input_order

        gaussian = self.family == "gaussian"
        theta0 = _map_theta(start, d) if start else None
        x_matrix = fitted = None
        with single_threaded_blas():
            if gaussian:
                from autoglmm.engine.lmm import fit_lmm_workspace

                check_sizes(self.n, self.m, d.re_blocks, d.z_names, gaussian=True)
                engine = fit_lmm_workspace(self.workspace(d), reml=False, start=theta0)
            else:
                from autoglmm.engine.glmm import fit_glmm

                design = self.grouped_design(d)
                warm = {"theta": theta0, "beta": _map_beta(start, d)} if start else None
                engine = fit_glmm(design, family=self.family, link=self.link, nagq=1, start=warm)
                x_matrix = design.X
                fitted = input_order(engine.fitted, self.frame.order)
        f = self.frame
        return assemble_fit(
            engine, formula=d.formula, x_names=d.x_names, z_names=d.z_names,
            re_blocks=d.re_blocks, nobs=self.n, group_levels=self.levels,
            group=f.group_name, response=f.response_name, messages=d.messages,
            dropped_columns=d.dropped, row_hash=f.row_hash, fitted=fitted,
            row_index=f.row_index, x_matrix=x_matrix,
        )  # fmt: skip

    def workspace(self, d: PreparedDesign):
        """The LMM workspace of ``d``, from the store's cross-products alone (no rows).

        The statistics are those of ``e0 = y - X beta0`` with beta0 the least-squares fit,
        as :func:`~autoglmm.engine.lmm.make_workspace` centres them: here from the cached
        products of the centred response (``e0'e0 = y'y - 2 beta0'X'y + beta0'X'X beta0``
        loses only the digits of the fixed effects' share of y's variance).
        """
        from autoglmm.engine.lmm import LMMWorkspace

        s, xi, zi, p = self.store, d.x_idx, d.z_idx, len(d.x_idx)
        xy = np.append(xi, self.ycol)
        G = s.gram(xy)
        XtX, Xty, yty = G[:p, :p], G[:p, p], G[p, p]
        beta0 = _solve_pos(XtX, Xty)
        Xte = Xty - XtX @ beta0
        ete = yty - beta0 @ Xty - beta0 @ Xte
        ZtXY = s.group_cross(zi, xy)
        ZtX = np.ascontiguousarray(ZtXY[:, :, :p])
        Zte = ZtXY[:, :, p] - ZtX @ beta0
        beta0[0] += self.y_mean  # the intercept (always first, never dropped) takes the mean
        rows, cols = theta_positions(d.re_blocks)
        return LMMWorkspace(
            ZtZ=s.group_cross(zi, zi), ZtX=ZtX, Zty=np.ascontiguousarray(Zte),
            XtX=np.ascontiguousarray(XtX), Xty=Xte, yty=float(max(ete, 0.0)), n=self.n,
            sum_log_w=0.0, re_blocks=d.re_blocks, rows=rows, cols=cols, beta0=beta0,
        )  # fmt: skip

    def grouped_design(self, d: PreparedDesign) -> GroupedDesign:
        """The sorted design of ``d`` (binomial/poisson engines work on the rows)."""
        f = self.frame.design
        return GroupedDesign(
            X=self.store.matrix(d.x_idx), y=f.y, Z=self.store.matrix(d.z_idx),
            weights=f.weights, offset=f.offset, group=f.group, starts=f.starts,
            re_blocks=d.re_blocks, x_names=d.x_names, z_names=d.z_names,
            group_levels=f.group_levels,
        )  # fmt: skip

    def fixed_prediction(self, d: PreparedDesign, beta: np.ndarray) -> np.ndarray:
        """X beta of ``d`` on the sorted rows."""
        return self.store.matrix(d.x_idx) @ beta


def _solve_pos(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least-squares start beta0 from the normal equations (any beta0 is exact; a good
    one only keeps the residual sums free of cancellation)."""
    try:
        return np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(A, b, rcond=None)[0]


class _ColumnStore:
    """Columns (sorted rows) in one Fortran array, with their cached cross-products."""

    def __init__(self, n: int, starts: np.ndarray) -> None:
        self.n, self.starts = n, starts
        self.C = np.empty((n, 16), order="F")
        self.k = 0
        self.G = np.full((16, 16), np.nan)  # global sums C_a'C_b, NaN = not yet computed
        self.per_group: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # z -> (sums, known)

    def add(self, column: np.ndarray) -> int:
        if self.k == self.C.shape[1]:
            self._grow()
        self.C[:, self.k] = column
        self.k += 1
        return self.k - 1

    def _grow(self) -> None:
        cap = 2 * self.C.shape[1]
        C = np.empty((self.n, cap), order="F")
        C[:, : self.k] = self.C[:, : self.k]
        G = np.full((cap, cap), np.nan)
        G[: self.k, : self.k] = self.G[: self.k, : self.k]
        self.C, self.G = C, G
        for z, (sums, known) in list(self.per_group.items()):
            wider = np.zeros((sums.shape[0], cap))
            wider[:, : self.k] = sums[:, : self.k]
            more = np.zeros(cap, bool)
            more[: self.k] = known[: self.k]
            self.per_group[z] = (wider, more)

    def matrix(self, idx) -> np.ndarray:
        return np.ascontiguousarray(self.C[:, np.asarray(idx, dtype=np.int64)])

    def gram(self, idx: np.ndarray) -> np.ndarray:
        block = self.G[np.ix_(idx, idx)]
        if np.isnan(block).any():
            for a in idx:
                todo = idx[np.isnan(self.G[a, idx])]
                if len(todo):
                    sums = _dots(self.C, a, todo)
                    self.G[a, todo] = sums
                    self.G[todo, a] = sums
            block = self.G[np.ix_(idx, idx)]
        return block

    def group_cross(self, zi: np.ndarray, xi: np.ndarray) -> np.ndarray:
        """(m, len(zi), len(xi)) per-group sums of C_z * C_x."""
        out = np.empty((len(self.starts) - 1, len(zi), len(xi)))
        for a, z in enumerate(zi):
            if z not in self.per_group:
                cap = self.C.shape[1]
                self.per_group[z] = (np.zeros((len(self.starts) - 1, cap)), np.zeros(cap, bool))
            sums, known = self.per_group[z]
            todo = xi[~known[xi]]
            if len(todo):
                sums[:, todo] = _group_products(self.C, z, todo, self.starts)
                known[todo] = True
            out[:, a, :] = sums[:, xi]
        return out


@njit(cache=True)
def _dots(C, a, cols):  # pragma: no cover - numba
    out = np.zeros(len(cols))
    for c in range(len(cols)):
        col = cols[c]
        acc = 0.0
        for i in range(C.shape[0]):
            acc += C[i, a] * C[i, col]
        out[c] = acc
    return out


@njit(cache=True)
def _group_products(C, z, cols, starts):  # pragma: no cover - numba
    m = len(starts) - 1
    out = np.zeros((m, len(cols)))
    for c in range(len(cols)):
        col = cols[c]
        for j in range(m):
            acc = 0.0
            for i in range(starts[j], starts[j + 1]):
                acc += C[i, z] * C[i, col]
            out[j, c] = acc
    return out
