"""Bounded minimisation of a deviance with lme4's post-fit checks, returned as data.

Both engines call one function::

    optimize(fun, x0, lower, upper=None, *, jac=False, cov_mask=None, canonical=None,
             rng_seed=0, grad_tol=2e-3, boundary_tol=1e-5, singular_tol=1e-4,
             method=None, max_iter=2000, restart=True) -> (x_opt, f_opt, ConvergenceReport)

- ``fun(x)`` returns the deviance (-2 log-likelihood), or ``(deviance, gradient)`` when
  ``jac=True``. It may return ``inf`` at points where it cannot be evaluated.
- ``lower``/``upper``: bounds (``-inf``/``inf`` for free parameters; theta diagonals have
  lower bound 0, see ``engine.design.theta_lower``).
- ``cov_mask``: which parameters are covariance parameters (theta). The Hessian
  positive-semi-definiteness check and the singular flag use only these; for a joint
  (theta, beta) optimisation pass ``True`` for theta and ``False`` for beta. Default: all.
- ``canonical``: a map onto the bounded region under which ``fun`` is invariant. For
  theta, ``lambda x: theta_canonical(x, re_blocks)`` (engine.design): G = Lambda Lambda'
  does not change when a column of Lambda flips sign. When given, the minimisation runs
  without the lower bounds and its result is mapped back. This removes the spurious
  optima that a bound at 0 creates (measured: bounded L-BFGS-B stopped at a worse,
  singular point on 3 of 8 test problems; unbounded + canonical found lme4's optimum or
  better on all 8). Bounds are still used for snapping, the checks and ``singular``.
- ``method``: ``"BFGS"`` (:mod:`autoglmm.engine.bfgs`, dense, without bounds: needs
  ``jac=True`` and a ``canonical`` map or no bounds; with ``fun`` a
  :class:`~autoglmm.engine.bfgs.CompiledObjective` the whole run is one compiled call;
  the LMM's choice, as scipy's wrapper cost more than a small model's evaluations),
  ``"L-BFGS-B"`` (default with ``jac=True``), ``"Nelder-Mead"`` (default without a
  gradient: lme4's derivative-free choice for GLMMs) or ``"Powell"``.

What happens, in the order of lme4's ``optimizeLmer`` + ``checkConv``:

1. minimise from ``x0``;
2. boundary snapping (lme4 ``check.boundary``): bounded parameters within
   ``boundary_tol`` of their bound are set to it if the deviance does not get worse;
   then each parameter on a bound is probed one step inside, and the minimisation
   continues from there if that is better (a gradient method can stop at a saddle on
   the boundary, where lme4's derivative-free BOBYQA would not);
3. derivatives at the optimum, over the parameters not on a bound (:func:`derivatives`):
   with ``jac=True`` the analytic gradient and a Hessian from central differences of it;
   otherwise lme4's ``deriv12``: central differences of the deviance (one-sided at a
   bound);
4. checks (lme4 1.1-31's ``checkConv``): a non-finite deviance fails outright; the
   scaled gradient ``max(pmin(|solve(chol(H), g)|, |g|))`` must be below ``grad_tol``
   (default 2e-3, lme4's ``check.conv.grad`` tolerance for lmer and glmer alike; a failed
   Cholesky factorisation fails the check), computed in the model's parameters when a
   ``transform`` is given; a singular fit is exempt from it, as in lme4; and the Hessian
   over the free covariance parameters must be positive semi-definite;
5. if a check fails, one restart from a perturbed optimum (seeded by ``rng_seed``); the
   better of the two runs is kept and checked again.

``converged`` is False if the optimizer failed or a check still fails after the restart
(SPEC section 2, Convergence). L-BFGS-B's ABNORMAL_TERMINATION_IN_LNSRCH counts as a
failure unless the checks pass at that point, and then it is said in the messages.
``singular`` is True when a bounded covariance parameter
ends within ``singular_tol`` of its bound (lme4's ``isSingular``): a variance 0 or a
correlation of +-1. A singular fit can be converged.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from numba import njit
from scipy import linalg
from scipy import optimize as sopt

from autoglmm.engine.bfgs import NONFINITE, minimize_bfgs
from autoglmm.engine.estimates import ConvergenceReport
from autoglmm.engine.kernels import backward, chol_inplace


@functools.cache
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None
    return ThreadpoolController()


@functools.cache
def _blas_libraries() -> tuple:
    controller = _blas_controller()
    if controller is None:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return ()
    return tuple(lib for lib in controller.lib_controllers if lib.user_api == "blas")


_limited = threading.local()  # depth of single_threaded_blas() in this thread


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread while fitting: every product here is small, and a threaded
    OpenBLAS spends more on waking threads than on arithmetic (measured 2-10x slower on
    the 2-core target machine under load). Entering costs about 15 microseconds, so a
    nested use (fit -> engine -> optimizer) only counts its depth, and BLAS already on
    one thread (``OPENBLAS_NUM_THREADS=1``, or an outer limit) is asked, not limited
    (1 microsecond)."""
    controller = _blas_controller()
    depth = getattr(_limited, "depth", 0)
    if controller is None or depth or all(lib.num_threads == 1 for lib in _blas_libraries()):
        _limited.depth = depth + 1
        try:
            yield
        finally:
            _limited.depth = depth
        return
    with controller.limit(limits=1, user_api="blas"):
        _limited.depth = 1
        try:
            yield
        finally:
            _limited.depth = 0


Objective = Callable[[np.ndarray], float | tuple[float, np.ndarray]]

# what the optimizer sees instead of an infinite or NaN deviance (it needs a number to
# back off from); such a value is never accepted as an optimum (see ``_check``). The BFGS
# state machine applies the same value itself.
_NONFINITE = NONFINITE


@dataclass
class CountedObjective:
    """Wraps the objective: counts evaluations and keeps the log (f, *x).

    The last point is remembered: the checks start where the minimiser stopped (and the
    ``canonical`` map usually leaves that point as it is), so its deviance and gradient
    are not computed twice.
    """

    fun: Objective
    jac: bool
    log: list = field(default_factory=list)
    _last: tuple = (None, None)  # (x's bytes, fun(x)) of the latest evaluation

    def _call(self, x: np.ndarray):
        x = np.asarray(x, dtype=float)
        key = x.tobytes()
        if key == self._last[0]:
            return self._last[1]
        out = self.fun(x)
        self._last = (key, out)
        f = out[0] if self.jac else out
        self.log.append((float(f), *x.tolist()))
        return out

    def value(self, x: np.ndarray) -> float:
        out = self._call(x)
        f = float(out[0] if self.jac else out)
        return f if np.isfinite(f) else _NONFINITE

    def both(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = self._call(x)
        if not np.isfinite(f):
            return _NONFINITE, np.zeros(len(x))
        return float(f), np.asarray(g, dtype=float)

    def grad(self, x: np.ndarray) -> np.ndarray | None:
        return self.both(x)[1] if self.jac else None

    def minimize_bfgs(self, x0: np.ndarray, max_iter: int):
        """:func:`~autoglmm.engine.bfgs.minimize_bfgs` on the objective (in one compiled
        call for a compiled one), counted and logged as if each evaluation had gone
        through this wrapper."""
        x0 = np.ascontiguousarray(x0, dtype=float)
        start = self._last[1] if self._last[0] == x0.tobytes() else None
        res = minimize_bfgs(self.fun, x0, max_iter=max_iter, start=start)
        self.log.extend(map(tuple, res.log.tolist()))
        if res.last is not None:
            x, f, g = res.last
            self._last = (x.tobytes(), (f, g))
        return res


def _minimize(obj: CountedObjective, x0, lower, upper, method: str, max_iter: int):
    if method == "BFGS":  # our dense BFGS (engine.bfgs): unbounded, analytic gradient
        if not (obj.jac and np.all(np.isinf(lower)) and np.all(np.isinf(upper))):
            raise ValueError("BFGS needs an analytic gradient and no bounds (use canonical)")
        res = obj.minimize_bfgs(x0, max_iter)  # (no bounds: nothing to clip x0 to)
        return res.x, float(res.fun), bool(res.success), res
    x0 = np.clip(x0, lower, upper)
    bounds = sopt.Bounds(lower, upper)
    if method == "L-BFGS-B" and obj.jac:
        res = sopt.minimize(
            obj.both, x0, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"maxiter": max_iter, "ftol": 1e-12, "gtol": 1e-6, "maxcor": 10},
        )  # fmt: skip
    elif method == "L-BFGS-B":
        res = sopt.minimize(
            obj.value, x0, method="L-BFGS-B", bounds=bounds,
            options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-7},
        )  # fmt: skip
    elif method == "Nelder-Mead":
        res = sopt.minimize(
            obj.value, x0, method="Nelder-Mead", bounds=bounds,
            options={"maxfev": max_iter * 10, "xatol": 1e-8, "fatol": 1e-10, "adaptive": True},
        )  # fmt: skip
    elif method == "Powell":
        res = sopt.minimize(
            obj.value, x0, method="Powell", bounds=bounds,
            options={"maxfev": max_iter * 10, "xtol": 1e-8, "ftol": 1e-12},
        )  # fmt: skip
    else:
        raise ValueError(f"unknown optimizer method {method!r}")
    # L-BFGS-B's ABNORMAL_TERMINATION_IN_LNSRCH (the line search found no decrease) is
    # not a success: it is accepted only if the checks pass at that point (``_verdict``)
    ok = bool(res.success)
    return np.clip(np.asarray(res.x, dtype=float), lower, upper), float(res.fun), ok, res


def _snap(obj: CountedObjective, x, f, lower, upper, tol):
    """lme4's check.boundary: move near-bound parameters onto the bound if no worse."""
    gap_lo, gap_hi = x - lower, upper - x  # an infinite bound's gap is never below tol
    near_lo = (gap_lo < tol) & (gap_lo != 0)
    near_hi = (gap_hi < tol) & (gap_hi != 0)
    near = near_lo | near_hi
    if not near.any():
        return x, f
    trial = np.where(near_hi, upper, np.where(near_lo, lower, x))
    f_trial = obj.value(trial)
    if f_trial <= f:
        return trial, f_trial
    for i in np.flatnonzero(near):  # all at once was worse: try one at a time
        one = x.copy()
        one[i] = trial[i]
        f_one = obj.value(one)
        if f_one <= f:
            x, f = one, f_one
    return x, f


def _steps(x, lower, upper, delta):
    h = delta * np.maximum(np.abs(x), 1.0)
    fwd = x + h <= upper
    bwd = x - h >= lower
    return h, fwd, bwd


def derivatives(obj: CountedObjective, x, f, lower, upper, free, delta=1e-4, central=True):
    """Gradient and Hessian over the ``free`` parameters at ``x`` (``f`` = value there).

    Without an analytic gradient this is lme4's ``deriv12`` (central differences for the
    gradient and the diagonal) except off the diagonal, where forward mixed differences
    ``(f(++) - f(+0) - f(0+) + f) / (h_i h_j)`` cost one deviance per pair instead of
    lme4's four (first order: about 2e-3 relative on sleepstudy, immaterial for a test
    against 2e-3, and a third of the cost of an AGQ fit); with ``obj.jac`` the analytic
    gradient and central differences of it for the Hessian (second order; forward
    differences with ``central=False``, half the gradients, for the convergence check of
    an LMM, whose statistic does not need the second order). The
    step is ``delta * max(|x|, 1)`` (lme4: ``delta``), one-sided in a parameter whose step
    would cross its bound. ``obj`` may memoise: the points are the same on every call.
    """
    idx = np.flatnonzero(free)
    k = len(idx)
    h, fwd, bwd = _steps(x, lower, upper, delta)

    def shifted(*moves):
        z = x.copy()
        for i, sign in moves:
            z[i] += sign * h[i]
        return z

    if obj.jac:
        g_full = obj.grad(x)
        H = np.empty((k, k))
        for a, i in enumerate(idx):
            if central and fwd[i] and bwd[i]:
                col = (obj.grad(shifted((i, 1))) - obj.grad(shifted((i, -1)))) / (2 * h[i])
            elif fwd[i]:
                col = (obj.grad(shifted((i, 1))) - g_full) / h[i]
            else:
                col = (g_full - obj.grad(shifted((i, -1)))) / h[i]
            H[:, a] = col[idx]
        return g_full[idx], 0.5 * (H + H.T)
    central = fwd & bwd
    g, H = np.empty(k), np.empty((k, k))
    fp = {i: obj.value(shifted((i, 1))) if fwd[i] else np.nan for i in idx}
    fm = {i: obj.value(shifted((i, -1))) if bwd[i] else np.nan for i in idx}
    for a, i in enumerate(idx):
        if central[i]:
            g[a] = (fp[i] - fm[i]) / (2 * h[i])
            H[a, a] = (fp[i] - 2 * f + fm[i]) / h[i] ** 2
        else:  # one-sided: three points on the open side
            s = 1 if fwd[i] else -1
            f1, f2 = (fp[i] if s > 0 else fm[i]), obj.value(shifted((i, 2 * s)))
            g[a] = s * (-3 * f + 4 * f1 - f2) / (2 * h[i])
            H[a, a] = (f2 - 2 * f1 + f) / h[i] ** 2
    for a in range(k):
        for c in range(a):
            i, j = idx[a], idx[c]
            si, sj = (1 if fwd[i] else -1), (1 if fwd[j] else -1)
            fi = fp[i] if si > 0 else fm[i]
            fj = fp[j] if sj > 0 else fm[j]
            fij = obj.value(shifted((i, si), (j, sj)))
            H[a, c] = H[c, a] = si * sj * (fij - fi - fj + f) / (h[i] * h[j])
    return g, H


@dataclass(frozen=True)
class _Check:
    scaled_gradient: float
    hessian_min_eigenvalue: float
    grad_ok: bool
    hess_ok: bool
    messages: tuple[str, ...]
    descent: np.ndarray | None = None  # direction of negative curvature, if any
    g: np.ndarray | None = None  # derivatives over the free parameters (optimizer's
    H: np.ndarray | None = None  # coordinates), kept for the Newton polish
    free: np.ndarray | None = None
    singular: bool | None = None  # lme4's isSingular at the checked point, if computed


def lme4_scaled_gradient(g: np.ndarray, H: np.ndarray) -> float:
    """lme4's checkConv statistic: ``max(pmin(|solve(chol(H), g)|, |g|))``.

    ``chol(H)`` is R's upper factor ``R`` with ``H = R'R``, so the statistic uses
    ``R^{-1} g`` (whose squared norm is the Newton decrement ``g'H^{-1}g``), not the Newton
    step ``H^{-1} g``: the latter is 50-70 times more lenient on hsb82. ``nan`` when the
    Cholesky factorisation fails (lme4: "unable to evaluate scaled gradient").
    """
    g = np.ascontiguousarray(g, dtype=float)
    return float(_scaled_gradient(g, np.ascontiguousarray(H, dtype=float)))


@njit(cache=True)
def _scaled_gradient(g, H):  # pragma: no cover - numba
    """:func:`lme4_scaled_gradient` in one compiled call (scipy's wrappers around two
    LAPACK calls of a microsecond cost 10 microseconds, and every fit checks)."""
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
        return np.nan
    L = H.copy()  # lower: chol(H) in R is its transpose, and solve(chol(H), g) is L'^-1 g
    if not chol_inplace(L):
        return np.nan
    z = g.copy().reshape(len(g), 1)
    backward(L, z)
    worst = 0.0
    for i in range(len(g)):
        worst = max(worst, min(abs(z[i, 0]), abs(g[i])))
    return worst


def assess(
    g: np.ndarray,
    H: np.ndarray,
    free: np.ndarray,
    cov_mask: np.ndarray,
    grad_tol: float,
    *,
    singular: bool,
    exempt_singular: bool = True,
    transform: np.ndarray | None = None,
) -> _Check:
    """lme4's checkConv on derivatives ``g`` (k,) and ``H`` (k, k) over the ``free``
    parameters, as data.

    ``transform`` (the matrix ``T`` of ``x = T p + c``) maps the optimizer's coordinates
    ``x`` back to the model's parameters ``p`` (theta, beta) first: lme4's statistic is not
    invariant under a change of coordinates, so it is computed where lme4 computes it.
    A singular fit is exempt from the gradient check (lme4 >= 1.1-27 returns before it),
    unless ``exempt_singular`` is False. The Hessian over the free covariance parameters
    must be positive semi-definite (relative tolerance 1e-6, lme4's check.conv.hess).
    """
    return _Check(*_assessment(g, H, free, cov_mask, grad_tol, singular, exempt_singular,
                               transform))  # fmt: skip


def _assessment(g, H, free, cov_mask, grad_tol, singular, exempt_singular, transform):
    """:func:`assess`'s fields, from scaled gradient to descent direction."""
    idx = np.flatnonzero(free)
    if transform is not None:
        Tf = transform[np.ix_(idx, idx)]
        g, H = Tf.T @ g, Tf.T @ H @ Tf
    msgs = []
    cov_free = cov_mask[free]
    scaled, min_eig, biggest, direction = _curvature(
        np.ascontiguousarray(g, dtype=float), np.ascontiguousarray(H, dtype=float), cov_free
    )
    hess_ok, descent = True, None
    if direction.size:  # free covariance parameters and a finite Hessian
        hess_ok = bool(min_eig >= -1e-6 * max(1.0, biggest))
        if not hess_ok:
            descent = np.zeros(len(free))
            if transform is not None:  # back to the optimizer's coordinates
                direction = Tf[np.ix_(cov_free, cov_free)] @ direction
            descent[idx[cov_free]] = direction
            msgs.append(
                f"Hessian over the covariance parameters is not positive semi-definite "
                f"(min eigenvalue {min_eig:.3g})"
            )
    elif cov_free.any():
        hess_ok = False
        msgs.append("Hessian is not finite")
    if singular and exempt_singular:
        grad_ok = True  # lme4 skips the gradient check on a boundary fit
    elif not np.isfinite(scaled):
        grad_ok = False
        msgs.append("unable to evaluate the scaled gradient: the Hessian is not positive definite")
    else:
        grad_ok = bool(scaled < grad_tol)
        if not grad_ok:
            msgs.append(f"scaled gradient {scaled:.3g} above tolerance {grad_tol:g}")
    return scaled, min_eig, grad_ok, hess_ok, tuple(msgs), descent


@njit(cache=True)
def _curvature(g, H, cov_free):  # pragma: no cover - numba
    """The arithmetic of :func:`assess` in one compiled call: lme4's scaled gradient, and
    the smallest eigenvalue of ``H`` over the covariance parameters ``cov_free``, the
    largest in magnitude and the smallest's eigenvector (an empty vector when there are
    none or ``H`` is not finite; NaN eigenvalues then)."""
    scaled = _scaled_gradient(g, H)
    idx = np.flatnonzero(cov_free)
    k = len(idx)
    if k == 0 or not np.all(np.isfinite(H)):
        return scaled, np.nan, np.nan, np.empty(0)
    H_cov = np.empty((k, k))
    for a in range(k):
        for b in range(k):
            H_cov[a, b] = H[idx[a], idx[b]]
    eig, vecs = np.linalg.eigh(H_cov)
    return scaled, eig[0], np.max(np.abs(eig)), vecs[:, 0].copy()


def is_singular(x, lower, cov_mask, singular_tol: float) -> bool:
    """lme4's isSingular: a bounded covariance parameter within ``singular_tol`` of 0."""
    # an infinite bound's gap is infinite (never below the tolerance), NaN's is NaN
    return bool(np.any(((x - lower) < singular_tol) & cov_mask))


def _check(obj, x, f, lower, upper, cov_mask, grad_tol, symmetric, singular_tol, transform):
    """lme4's derivative checks at ``x`` (see :func:`assess`).

    A non-finite deviance fails at once (lme4: "Gradient contains NAs"). Parameters on a
    bound are left out of the derivatives (their one-sided derivatives are not zero at a
    boundary optimum), unless ``symmetric``: with a ``canonical`` map the bound is only a
    choice among equivalent points, the deviance is smooth across it, and a point with a
    zero diagonal must have a positive semi-definite Hessian in every direction, or it is
    a saddle that merely looks singular.
    """
    if not (math.isfinite(f) and f < _NONFINITE):
        msg = "the deviance is not finite at the estimate (log-likelihood -inf or NaN)"
        return _Check(np.nan, np.nan, False, False, (msg,))
    singular = is_singular(x, lower, cov_mask, singular_tol)
    if symmetric:
        free = np.ones(len(x), bool)
    else:
        free = ~((np.isfinite(lower) & (x <= lower)) | (np.isfinite(upper) & (x >= upper)))
        if not free.any():
            return _Check(0.0, np.nan, True, True, (), singular=singular)
    # forward differences of an analytic gradient suffice for the check; the GLMM (with a
    # transform) needs the central Hessian at the same points next, for its vcov
    g, H = derivatives(obj, x, f, lower, upper, free, central=transform is not None)
    fields = _assessment(g, H, free, cov_mask, grad_tol, singular, True, transform)
    return _Check(*fields, g=g, H=H, free=free, singular=singular)


def _newton_polish(obj, x, f, chk: _Check, lower, upper, grad_tol, transform, iters=8):
    """Newton steps with the Hessian of the failed check, until lme4's statistic passes.

    L-BFGS-B stops on its relative-reduction test, which at a deviance of 1e5 allows a
    scaled gradient of several times lme4's 2e-3 (a 3-RE binomial GLMM at 128k rows).
    The check has just computed the Hessian ``H`` there, so Newton steps ``-H^{-1} g``
    (analytic gradient, one evaluation each, step-halving on the deviance, kept inside
    the bounds) finish the job that a random restart (another full L-BFGS-B run) would
    do less reliably. Stops when the statistic, computed with this fixed ``H``, is below
    a quarter of ``grad_tol``; the caller re-checks with a fresh Hessian. Returns the
    point, its deviance and the number of steps taken.
    """
    free, steps = chk.free, 0
    if chk.H is None or free is None or not free.any():
        return x, f, steps
    try:
        cho = linalg.cho_factor(chk.H, check_finite=False)
    except (linalg.LinAlgError, ValueError):
        return x, f, steps
    Tf = None if transform is None else transform[np.ix_(free, free)]
    g = chk.g
    for _ in range(iters):
        gp, Hp = (g, chk.H) if Tf is None else (Tf.T @ g, Tf.T @ chk.H @ Tf)
        if lme4_scaled_gradient(gp, Hp) < 0.25 * grad_tol:
            break
        step = np.zeros(len(x))
        step[free] = -linalg.cho_solve(cho, g, check_finite=False)
        t = 1.0
        lo_hit = np.isfinite(lower) & (x + step < lower)
        hi_hit = np.isfinite(upper) & (x + step > upper)
        if lo_hit.any():
            t = min(t, 0.9 * float(np.min((lower - x)[lo_hit] / step[lo_hit])))
        if hi_hit.any():
            t = min(t, 0.9 * float(np.min((upper - x)[hi_hit] / step[hi_hit])))
        while t > 1e-3:
            trial = x + t * step
            f_trial, g_trial = obj.both(trial)
            if f_trial <= f:
                break
            t *= 0.5
        else:
            break
        x, f, g, steps = trial, f_trial, g_trial[free], steps + 1
    return x, f, steps


def _restart_point(obj, x, chk: _Check, lower, upper, rng):
    """Where to restart: along the direction of negative curvature when the Hessian has
    one (the best of a few steps either way), otherwise a random perturbation."""
    if chk.descent is None:
        return _perturb(x, lower, upper, rng)
    step = np.max(np.maximum(np.abs(x), 1.0))
    trials = [np.clip(x + t * step * chk.descent, lower, upper) for t in (0.05, 0.2, 0.5)]
    trials += [np.clip(x - t * step * chk.descent, lower, upper) for t in (0.05, 0.2, 0.5)]
    values = [obj.value(t) for t in trials]
    return trials[int(np.argmin(values))]


def _perturb(x, lower, upper, rng):
    scale = 0.1 * np.maximum(np.abs(x), 0.1)
    trial = x + rng.normal(size=len(x)) * scale
    bounded = np.isfinite(lower)
    trial[bounded] = np.maximum(trial[bounded], lower[bounded] + 0.05)
    return np.clip(trial, lower, upper)


def _escape(obj: CountedObjective, x, f, lower):
    """A point inside the bounds that beats ``x``, if one exists next to a bound.

    A gradient method stops at a bounded parameter whose derivative is 0 there, although
    the point may be a saddle: the deviance is even in a diagonal theta element when its
    column below the diagonal is 0 (a correlation of +-1 looks stationary). Probing one
    step inside, as a derivative-free method would, finds the way out.
    """
    at_bound = np.flatnonzero(np.isfinite(lower) & (x <= lower))
    best, f_best = None, f - 1e-9 * (1.0 + abs(f))
    for i in at_bound:
        for h in (1e-2, 1e-1):
            trial = x.copy()
            trial[i] = lower[i] + h
            f_trial = obj.value(trial)
            if f_trial < f_best:
                best, f_best = trial, f_trial
    return best


@functools.cache
def _unbounded(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of -inf and inf for k parameters (read-only, shared)."""
    lower, upper = np.full(k, -np.inf), np.full(k, np.inf)
    lower.flags.writeable = upper.flags.writeable = False
    return lower, upper


def _run(obj, x0, lower, upper, method, max_iter, boundary_tol, canonical, max_escapes=3):
    if canonical is not None:  # the minimisation runs without bounds
        run_lower, run_upper = _unbounded(len(x0))
    else:
        run_lower, run_upper = lower, upper
    for _ in range(max_escapes + 1):
        x, f, ok, res = _minimize(obj, x0, run_lower, run_upper, method, max_iter)
        if canonical is not None:
            x = np.clip(canonical(x), lower, upper)
            f = obj.value(x)
        if x.size and np.min(x - lower) > boundary_tol and np.min(upper - x) > boundary_tol:
            break  # nothing near a bound (nor on one): nothing to snap or probe
        x, f = _snap(obj, x, f, lower, upper, boundary_tol)
        x0 = _escape(obj, x, f, lower)
        if x0 is None:
            break
    return x, f, ok, str(res.message)


def optimize(
    fun: Objective,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray | None = None,
    *,
    jac: bool = False,
    cov_mask: np.ndarray | None = None,
    canonical: Callable[[np.ndarray], np.ndarray] | None = None,
    rng_seed: int = 0,
    grad_tol: float = 2e-3,
    boundary_tol: float = 1e-5,
    singular_tol: float = 1e-4,
    method: str | None = None,
    max_iter: int = 2000,
    restart: bool = True,
    transform: np.ndarray | None = None,
    polish: bool = False,
) -> tuple[np.ndarray, float, ConvergenceReport]:
    """Minimise ``fun`` within bounds and check the optimum as lme4 does (module docstring).

    ``transform``: the matrix ``T`` of ``x = T p + c`` when ``x`` are rescaled coordinates
    of the model's parameters ``p``; lme4's check is computed in ``p`` (see :func:`assess`).
    ``polish`` (with ``jac=True``): when only the gradient check fails and the Hessian is
    positive definite, Newton steps with that Hessian (:func:`_newton_polish`) before any
    restart.

    Example
    -------
    >>> x, f, rep = optimize(lambda x: float((x[0] - 1) ** 2), np.array([3.0]), np.array([0.0]))
    >>> bool(rep.converged), round(float(x[0]), 4)
    (True, 1.0)
    """
    with single_threaded_blas():
        return _optimize(
            fun, x0, lower, upper, jac, cov_mask, canonical, rng_seed, grad_tol,
            boundary_tol, singular_tol, method, max_iter, restart, transform, polish,
        )  # fmt: skip


@dataclass(frozen=True)
class RunRecord:
    """What the minimisation itself reports, before the checks at the final point."""

    method: str
    success: bool  # the optimizer's own success flag
    status: str  # its message
    restarted: bool
    n_evaluations: int
    evaluation_log: tuple = ()

    @classmethod
    def from_report(cls, report: ConvergenceReport, n_evaluations: int | None = None):
        """The run part of an earlier report (to rebuild it at a later final state)."""
        n = report.n_evaluations if n_evaluations is None else n_evaluations
        return cls(
            report.optimizer, report.optimizer_success, report.optimizer_status,
            report.restarted, n, report.evaluation_log,
        )  # fmt: skip

    @property
    def abnormal(self) -> bool:
        """L-BFGS-B stopped because its line search found no decrease."""
        return "ABNORMAL" in self.status.upper()


def build_report(
    run: RunRecord,
    chk: _Check,
    *,
    singular: bool,
    grad_tol: float,
    extra: tuple[str, ...] = (),
    notes: tuple[str, ...] = (),
) -> ConvergenceReport:
    """The convergence record, built once from the final state (SPEC section 2).

    converged: the optimizer succeeded (or, for L-BFGS-B, stopped ABNORMAL at a point that
    passes the checks: a line search that finds no decrease at an optimum is rounding,
    and it is said in the messages), lme4's scaled-gradient check passed (a singular fit
    is exempt, as in lme4), the Hessian over the covariance parameters is positive
    semi-definite, and ``extra`` (failures found by the engine, e.g. PIRLS) is empty.
    ``notes`` are messages that do not fail the fit (e.g. a fallback for the vcov).
    """
    checks_ok = chk.grad_ok and chk.hess_ok
    accepted = run.success or (run.abnormal and checks_ok)
    messages = [*extra, *chk.messages]
    if not accepted:
        messages.insert(0, f"optimizer {run.method} failed: {run.status}")
    elif not run.success:
        messages.append(
            f"optimizer {run.method} stopped with {run.status!r}; accepted because lme4's "
            "gradient and Hessian checks pass at that point"
        )
    if singular:
        messages.append("boundary (singular) fit: a variance is 0 or a correlation is +-1")
    messages.extend(notes)
    return ConvergenceReport(
        converged=bool(accepted and checks_ok and not extra),
        singular=singular,
        optimizer=run.method,
        optimizer_status=run.status,
        n_evaluations=run.n_evaluations,
        restarted=run.restarted,
        scaled_gradient=chk.scaled_gradient,
        hessian_min_eigenvalue=chk.hessian_min_eigenvalue,
        grad_tol=grad_tol,
        messages=tuple(messages),
        evaluation_log=run.evaluation_log,
        optimizer_success=run.success,
    )


def _optimize(
    fun, x0, lower, upper, jac, cov_mask, canonical, rng_seed, grad_tol,
    boundary_tol, singular_tol, method, max_iter, restart, transform, polish=False,
):  # fmt: skip
    x0 = np.asarray(x0, dtype=float)
    lower = np.asarray(lower, dtype=float)
    upper = np.full(len(x0), np.inf) if upper is None else np.asarray(upper, dtype=float)
    cov_mask = np.ones(len(x0), bool) if cov_mask is None else np.asarray(cov_mask, bool)
    method = method or ("L-BFGS-B" if jac else "Nelder-Mead")
    obj = CountedObjective(fun, jac)
    args = (lower, upper, cov_mask, grad_tol, canonical is not None, singular_tol, transform)
    run_args = (method, max_iter, boundary_tol, canonical)
    x, f, ok, status = _run(obj, x0, lower, upper, *run_args)
    chk = _check(obj, x, f, *args)
    if polish and jac and chk.hess_ok and not chk.grad_ok and np.isfinite(chk.scaled_gradient):
        x_new, f_new, steps = _newton_polish(obj, x, f, chk, lower, upper, grad_tol, transform)
        if steps and f_new <= f:
            x, f = x_new, f_new
            status += f"; then {steps} Newton step(s) with the check's Hessian"
            chk = _check(obj, x, f, *args)
    restarted = False
    abnormal = "ABNORMAL" in status.upper()
    if restart and not ((ok or abnormal) and chk.grad_ok and chk.hess_ok):
        restarted = True
        rng = np.random.default_rng(rng_seed)
        symmetric = canonical is not None
        run_lower, run_upper = _unbounded(len(x)) if symmetric else (lower, upper)
        x_restart = _restart_point(obj, x, chk, run_lower, run_upper, rng)
        x2, f2, ok2, status2 = _run(obj, x_restart, lower, upper, *run_args)
        if f2 < f or not (ok and np.isfinite(f) and f < _NONFINITE):
            x, f, ok, status = x2, f2, ok2, status2
            chk = _check(obj, x, f, *args)
    run = RunRecord(method, ok, status, restarted, len(obj.log), tuple(obj.log))
    singular = chk.singular
    if singular is None:  # the deviance was not finite there
        singular = is_singular(x, lower, cov_mask, singular_tol)
    return x, f, build_report(run, chk, singular=singular, grad_tol=grad_tol)
