"""A dense BFGS minimiser for the few free parameters of a mixed model's theta.

Why not scipy's L-BFGS-B: an LMM's theta has 1 to 10 elements and one deviance evaluation
on sufficient statistics costs 10-100 microseconds, while scipy's L-BFGS-B spends about
100 microseconds of Python and wrapper work per iteration (measured: 1.5 ms of a 4.5 ms
null-model fit). Theta is minimised without bounds (``engine.optimize``'s ``canonical``
map folds it back), so plain BFGS with a dense inverse Hessian is all that is needed.

The minimiser is a compiled state machine that asks for one evaluation at a time
(reverse communication): :func:`bfgs_start`, then ``while bfgs_wants(run)``, evaluate at
``bfgs_point(run)`` and :func:`bfgs_tell` the result, then :func:`bfgs_result`. A module
with a compiled objective writes that loop in a compiled driver that names its objective
(:class:`CompiledObjective`), so a whole run is one compiled call with no Python between
evaluations (a Python loop around the same arithmetic cost 0.3 ms of a 1.9 ms null-model
fit). Naming the objective is what lets numba cache the driver on disk: a compiled
function passed as an argument makes numba refuse to cache ("dynamic globals"), and as a
function pointer from Python it cost 60 microseconds per call. :func:`minimize_bfgs`
runs the same state machine from Python for any other objective.

The iteration (Nocedal and Wright, *Numerical Optimization*, 2nd ed., algorithm 6.1):

- direction ``d = -H g``; the first step is scaled to unit length, as L-BFGS-B's first
  step; after the first accepted step ``H`` starts from ``(s'y / y'y) I`` (eq. 6.20);
- backtracking line search from ``t = 1`` on the Armijo condition (``c1 = 1e-4``), with a
  cubic fitted to the two values and slopes for the next trial, kept in ``[0.25 t, 0.5 t]``;
  a non-finite value is seen as 1e300 with a zero gradient (the cubic then halves the
  step), a non-finite gradient quarters it;
- the BFGS update is skipped when ``s'y <= 1e-10 |s| |y|`` (curvature not positive), which
  keeps ``H`` positive definite without a Wolfe line search;
- stop when ``max |g| <= gtol`` (1e-6, L-BFGS-B's test) or when the decrease a full
  quasi-Newton step promises, ``g'Hg / 2``, is at most ``ftol`` (1e-14) times ``|f|``. A
  test on the gradient, not on the change in ``f`` (L-BFGS-B's ``ftol`` 1e-12): at a
  deviance of 1e5 a relative change of 1e-12 leaves 1e-7 on the table, which moves the
  p-value of a likelihood-ratio test with a chi-square near 0 by up to 1e-6, and the
  analytic gradient stays accurate where differences of ``f`` are rounding.

A line search that finds no decrease ends the run: converged when the promised decrease
was below rounding (1e-10 of ``|f|``), otherwise with an ``ABNORMAL`` status, which
``engine.optimize`` treats as L-BFGS-B's ABNORMAL_TERMINATION_IN_LNSRCH: a failure unless
lme4's checks pass at that point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

_C1 = 1e-4  # Armijo's sufficient-decrease constant
_ROUNDING = 1e-10  # relative decrease below which a failed line search is rounding
_MAX_TRIES = 40  # evaluations per line search
NONFINITE = 1e300  # what the minimiser sees instead of an infinite or NaN value

# why the run stopped (status 0-5; -1 while it runs)
_MESSAGES = (
    "CONVERGENCE: NORM OF GRADIENT <= GTOL",
    "CONVERGENCE: PREDICTED REDUCTION <= FTOL",
    "CONVERGENCE: NO DECREASE ABOVE ROUNDING",
    "ABNORMAL: the line search found no decrease",
    "STOP: TOTAL NO. OF ITERATIONS EXCEEDS LIMIT",
    "ABNORMAL: the start is not finite",
)
_SUCCESS = (True, True, True, False, False, False)

# the scalars of a run, by position in its ``scalars`` array
_F, _T, _SLOPE0, _PREDICTED, _SCALE, _TRIES, _IT, _HAVE_H, _STATUS, _NLOG = range(10)
_GTOL, _FTOL, _MAX_ITER, _BIG_X, _BIG_D, _LAST_OK = range(10, 16)


@dataclass(frozen=True)
class BfgsResult:
    x: np.ndarray
    fun: float
    jac: np.ndarray
    success: bool
    message: str
    nit: int
    log: np.ndarray  # one row (value, *x) per evaluation, in order
    last: tuple | None  # (x, value, gradient) of the last evaluation (not always ``x``)


@dataclass(frozen=True, eq=False)
class CompiledObjective:
    """A compiled objective ``kernel(x, data) -> (value, gradient)``, its ``data``, and
    ``driver``: a compiled function of the kernel's module, ``driver(data, x0, gtol, ftol,
    max_iter, f0, g0, have_start) -> bfgs_result(run)``, that runs the loop of the module
    docstring with the kernel named in it. Callable from Python as ``objective(x)``.

    Example
    -------
    >>> @njit
    ... def kernel(x, c):
    ...     return (x - c) @ (x - c), 2.0 * (x - c)
    >>> @njit
    ... def driver(c, x0, gtol, ftol, max_iter, f0, g0, have_start):
    ...     run = bfgs_start(x0, gtol, ftol, max_iter, f0, g0, have_start)
    ...     while bfgs_wants(run):
    ...         value, gradient = kernel(bfgs_point(run), c)
    ...         bfgs_tell(run, value, gradient)
    ...     return bfgs_result(run)
    >>> obj = CompiledObjective(kernel, np.array([1.0, 2.0]), driver)
    >>> np.round(minimize_bfgs(obj, np.zeros(2)).x, 6).tolist()
    [1.0, 2.0]
    """

    kernel: object
    data: object
    driver: object

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        return self.kernel(x, self.data)


@njit(cache=True)
def _next_step(t, f0, slope0, ft, slope_t):  # pragma: no cover - numba
    """The minimiser of the cubic through (0, f0, slope0) and (t, ft, slope_t) (Nocedal and
    Wright, eq. 3.59), kept in [0.25 t, 0.5 t]: a safeguarded backtracking step. The
    lower guard matters for theta: from lme4's start a first step that overshoots to
    theta = 0, where the deviance rises far faster than a cubic, would otherwise be cut to
    a tenth and crawl back (measured over 10 data sets at TIMSS scale: 10.9 evaluations
    per null model against 12.5 with a guard of 0.1 t; 24 with 3 random effects)."""
    d1 = slope0 + slope_t + 3.0 * (f0 - ft) / t
    disc = d1 * d1 - slope0 * slope_t
    new = 0.5 * t
    if disc >= 0.0:
        d2 = np.sqrt(disc)
        denom = slope_t - slope0 + 2.0 * d2
        if denom != 0.0:
            new = t - t * (slope_t + d2 - d1) / denom
    return min(max(new, 0.25 * t), 0.5 * t) if np.isfinite(new) else 0.5 * t


@njit(cache=True)
def _bfgs_update(H, s, y, sy):  # pragma: no cover - numba
    """The BFGS update of the inverse Hessian ``H`` with the pair ``s``, ``y`` (``s'y > 0``)."""
    rho = 1.0 / sy
    Hy = H @ y
    sHy = np.outer(s, Hy)
    return H - rho * (sHy + sHy.T) + (rho * rho * (y @ Hy) + rho) * np.outer(s, s)


@njit(cache=True)
def bfgs_start(x0, gtol, ftol, max_iter, f0, g0, have_start):  # pragma: no cover - numba
    """A run from ``x0``: the tuple ``(vectors, H, scalars, log)`` the other functions
    update in place. ``(f0, g0)``: the value at ``x0`` when ``have_start`` (a caller that
    evaluated it already; it is not logged again)."""
    k = len(x0)
    vectors = np.zeros((5, k))  # x, g, d, the trial point, the last evaluation's gradient
    vectors[0] = x0
    vectors[3] = x0
    scalars = np.zeros(16)
    scalars[_STATUS] = -1.0
    scalars[_GTOL], scalars[_FTOL], scalars[_MAX_ITER] = gtol, ftol, max_iter
    # one row per evaluation; never more than a line search per iteration (np.empty
    # reserves the rows, memory is touched only as they are written)
    log = np.empty((_MAX_TRIES * max_iter + 1, 1 + k))
    run = (vectors, np.eye(k), scalars, log)
    if have_start:
        _tell(run, f0, g0)
    return run


@njit(cache=True)
def bfgs_wants(run) -> bool:  # pragma: no cover - numba
    """Whether the run needs another evaluation (at :func:`bfgs_point`)."""
    return run[2][_STATUS] < 0.0


@njit(cache=True)
def bfgs_point(run):  # pragma: no cover - numba
    """Where the run wants the objective evaluated next."""
    return run[0][3].copy()


@njit(cache=True)
def bfgs_tell(run, f, g) -> None:  # pragma: no cover - numba
    """The objective's value and gradient at :func:`bfgs_point`: logged, then the run
    moves on (accepts the point, backtracks, or stops)."""
    vectors, _, scalars, log = run
    n = int(scalars[_NLOG])
    log[n, 0] = f
    log[n, 1:] = vectors[3]
    scalars[_NLOG] = n + 1
    vectors[4] = g
    _tell(run, f, g)


@njit(cache=True)
def _tell(run, f, g) -> None:  # pragma: no cover - numba
    vectors, H, scalars, _ = run
    if not np.isfinite(f):
        f, g = NONFINITE, np.zeros(len(g))
    if scalars[_TRIES] == 0.0:  # the start
        vectors[1] = g
        scalars[_F] = f
        if not (f < NONFINITE and np.all(np.isfinite(g))):
            scalars[_STATUS] = 5.0
            return
        _iterate(run)
        return
    x, gx, d, xt = vectors[0], vectors[1], vectors[2], vectors[3]
    t, f0, slope0 = scalars[_T], scalars[_F], scalars[_SLOPE0]
    if f <= f0 + _C1 * t * slope0:  # Armijo: accept, update H, next iteration
        s, y = xt - x, g - gx
        sy = s @ y
        vectors[0], vectors[1] = xt, g
        scalars[_F] = f
        scalars[_IT] += 1.0
        if sy > 1e-10 * np.sqrt((s @ s) * (y @ y)):
            if scalars[_HAVE_H] == 0.0:
                H[:, :] = np.eye(len(x)) * (sy / (y @ y))
                scalars[_HAVE_H] = 1.0
            H[:, :] = _bfgs_update(H, s, y, sy)
        _iterate(run)
        return
    t = _next_step(t, f0, slope0, f, g @ d) if np.all(np.isfinite(g)) else 0.25 * t
    scalars[_TRIES] += 1.0
    if t * scalars[_BIG_D] <= 1e-14 * scalars[_BIG_X] or scalars[_TRIES] > _MAX_TRIES:
        no_decrease = scalars[_PREDICTED] <= _ROUNDING * scalars[_SCALE]
        scalars[_STATUS] = 2.0 if no_decrease else 3.0
        return
    scalars[_T] = t
    vectors[3] = x + t * d


@njit(cache=True)
def _iterate(run) -> None:  # pragma: no cover - numba
    """At an accepted point: stop, or pick the direction and start its line search."""
    vectors, H, scalars, _ = run
    x, g = vectors[0], vectors[1]
    f = scalars[_F]
    if scalars[_IT] >= scalars[_MAX_ITER]:
        scalars[_STATUS] = 4.0
        return
    if len(g) == 0 or np.max(np.abs(g)) <= scalars[_GTOL]:
        scalars[_STATUS] = 0.0
        return
    scale = max(abs(f), 1.0)
    d = np.empty(len(g))
    predicted = np.inf
    if scalars[_HAVE_H] != 0.0:
        d = -(H @ g)
        predicted = -0.5 * (g @ d)  # the decrease a full quasi-Newton step promises
        if predicted <= 0.0:  # not a descent direction (rounding): restart from -g
            scalars[_HAVE_H] = 0.0
            predicted = np.inf
        elif predicted <= scalars[_FTOL] * scale:
            scalars[_STATUS] = 1.0
            return
    if scalars[_HAVE_H] == 0.0:
        d = -g / max(1.0, np.sqrt(g @ g))
    vectors[2] = d
    vectors[3] = x + d
    scalars[_SCALE], scalars[_PREDICTED] = scale, predicted
    scalars[_T], scalars[_SLOPE0], scalars[_TRIES] = 1.0, g @ d, 1.0
    scalars[_BIG_X] = max(1.0, np.max(np.abs(x)))
    scalars[_BIG_D] = np.max(np.abs(d))


@njit(cache=True)
def bfgs_result(run):  # pragma: no cover - numba
    """``(x, f, g, status, iterations, log, gradient of the last evaluation)``."""
    vectors, _, scalars, log = run
    n = int(scalars[_NLOG])
    return (vectors[0].copy(), scalars[_F], vectors[1].copy(), int(scalars[_STATUS]),
            int(scalars[_IT]), log[:n].copy(), vectors[4].copy())  # fmt: skip


def minimize_bfgs(
    objective: CompiledObjective | Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    *,
    gtol: float = 1e-6,
    ftol: float = 1e-14,
    max_iter: int = 2000,
    start: tuple[float, np.ndarray] | None = None,
) -> BfgsResult:
    """Minimise ``objective`` (returning ``(value, gradient)``) from ``x0`` without bounds:
    in one compiled call for a :class:`CompiledObjective`, else driven from Python.

    ``start``: ``(value, gradient)`` at ``x0`` if the caller has them (not evaluated or
    logged again).

    Example
    -------
    >>> res = minimize_bfgs(lambda x: (float((x - 1) @ (x - 1)), 2 * (x - 1)), np.zeros(2))
    >>> res.success, np.round(res.x, 6).tolist()
    (True, [1.0, 1.0])
    """
    x0 = np.array(x0, dtype=float)
    f0, g0 = (np.nan, np.zeros(len(x0))) if start is None else start
    args = (x0, float(gtol), float(ftol), int(max_iter), float(f0),
            np.ascontiguousarray(g0, dtype=float), start is not None)  # fmt: skip
    if isinstance(objective, CompiledObjective):
        out = objective.driver(objective.data, *args)
    else:
        run = bfgs_start(*args)
        while bfgs_wants(run):
            f, g = objective(bfgs_point(run))
            bfgs_tell(run, float(f), np.ascontiguousarray(g, dtype=float))
        out = bfgs_result(run)
    x, f, g, status, nit, log, g_last = out
    last = (log[-1, 1:].copy(), float(log[-1, 0]), g_last) if len(log) else None
    return BfgsResult(x, float(f), g, _SUCCESS[status], _MESSAGES[status], int(nit), log, last)
