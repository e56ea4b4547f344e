"""Adaptive Gauss-Hermite quadrature per group, for scalar and vector random effects.

Group ``j``'s contribution to the deviance is ``-2 log`` of

    int exp(-(F_j(u)) / 2) du / (2 pi)^(k/2),   F_j(u) = sum_i -2 log p(y_i | u) + |u|^2.

With the mode ``u_hat`` and ``H = L L'`` (PIRLS's ``A'WA + I`` at the mode) any change of
variables ``u = u_hat + S z`` with ``S S' = H^{-1}`` gives

    -2 log(...) = F_j(u_hat) + log det H - 2 log sum_k w_k exp(|z_k|^2 / 2 - Delta_k / 2),

with ``Delta_k = F_j(u_hat + S z_k) - F_j(u_hat)`` and ``(z_k, w_k)`` the product rule of
the standard-normal Gauss-Hermite rule (weights sum to 1). One node (z=0, w=1) gives the
Laplace approximation exactly. lme4 does the same for a scalar random effect
(``glmerAGQ``); the product rule extends it to 2 or 3 random effects per group.

Which ``S``: any ``S = L^{-T} Q`` with ``Q`` orthogonal has ``S S' = H^{-1}``, but a product
rule is not rotation invariant and its error depends on ``Q``. The leading departure of
the integrand from the Gaussian is the cubic ``T(z) = sum_i t_i (b_i . z)^3`` (``b_i`` the
row's direction in the rule's coordinates, ``t_i`` the third derivative of its deviance at
the mode). A product rule integrates ``exp`` of a cubic badly when the cubic has large
pure-axis terms ``T(e_a)``: then the whole skewness falls on the n nodes of one axis,
while mixed terms (``z_1^2 z_2``) spread over two axes at lower degree each. So ``Q`` is
chosen to minimise ``sum_a T(q_a)^2``, the squared skewness along the rule's axes (closed
form for two axes, Jacobi sweeps for three; :func:`_skew_rotation`). A scalar random effect
has no choice (lme4's ``glmerAGQ`` exactly).

Measured (issue 11): on the Ohio wheeze data (geepack, 537 children,
``resp ~ age + smoke + (age | id)``) most error comes from the 355 children who never
wheeze: their posterior is skewed, and for nearly parallel rows the 9-point error of such a
group moves from 8e-4 with an axis along the rows to below 1e-5 with the rows on the
diagonal, as this rule puts them. The earlier rule (one axis along the random intercept
in ``b = Lambda u``) happened to sit near the diagonal at lme4's estimates but near an axis
elsewhere, so the nagq=9 optimum drifted to theta [2.215, 0.018, 0.164] with a
log-likelihood 0.19 too high (-797.368, against -797.5535 at nagq=25). With this rule the
nagq=9 fit gives -797.555; on simulated 2-D and 3-D binomial and poisson data with small
groups the 9-point error at the truth fell 2 to 15 times (tests/engine/test_quadrature.py).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numba import njit

from autoglmm.engine.families import row_dev
from autoglmm.engine.kernels import backward, forward

MAX_AGQ_DIM = 3


def gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point rule for the standard normal (weights sum to 1)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2.0 * math.pi)
    z = (z - z[::-1]) / 2.0  # exact symmetry, as lme4's GHrule
    w = (w + w[::-1]) / 2.0
    return z, w


def product_rule(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Product rule in k dimensions: nodes (n^k, k) and ``log w + |z|^2 / 2`` (n^k,)."""
    z, w = gauss_hermite(n)
    idx = np.array(list(itertools.product(range(n), repeat=k)), dtype=np.int64)
    nodes = z[idx]
    logw = np.log(w[idx]).sum(axis=1) + 0.5 * (nodes**2).sum(axis=1)
    return np.ascontiguousarray(nodes), logw


MAX_SWEEPS = 10  # Jacobi sweeps over the planes of a 3-D rule (2-D needs one rotation)
SWEEP_TOL = 1e-10  # radians: a sweep whose rotations are all smaller ends them


@njit(cache=True)
def _skew_rotation(A, t, lo, hi, L, B, T, Q):
    """``Q`` orthogonal: the rule's axes ``z = Q' L' (u - u_hat)`` of one group, chosen to
    minimise ``sum_a T(q_a)^2``, the squared skewness of the log-integrand along each axis.

    ``T(v) = sum_i t_i (v . b_i)^3`` with ``b_i = L^{-1} a_i`` (row ``i`` in the frame
    ``S = L^{-T}``) and ``t_i`` the third derivative of the row's deviance at the mode (up
    to a factor 2). For two axes the minimiser is closed-form: with ``x_i = b_ik + i b_il``,
    ``T(q_k)^2 + T(q_l)^2 = const + 2 |Z| cos(4 phi - arg Z)``,
    ``Z = (sum t |x|^2 x)(sum t x^3) * 3/16``, so ``phi = (arg Z + pi) / 4`` (mod pi/2);
    three axes take Jacobi sweeps over the planes (the tensor ``T`` rotated with them), at
    most :data:`MAX_SWEEPS`: the criterion is flat about a dominant direction, so sweeps
    converge slowly; 3 sweeps are as accurate but leave the rule jumping by 1e-6 near a
    singular fit, 10 keep the deviance smooth to 2e-7 there at no measurable cost.
    ``B`` (q, rows of the largest group) and ``T`` (q, q, q) are scratch.
    """
    q = L.shape[0]
    Bj = B[:, : hi - lo]  # b_i = L^{-1} a_i, the group's rows as columns
    for i in range(lo, hi):
        for a in range(q):
            Bj[a, i - lo] = A[i, a]
    forward(L, Bj)
    for a in range(q):
        for b in range(q):
            Q[a, b] = 1.0 if a == b else 0.0
    for a in range(q):  # T is symmetric: each entry a <= b <= c once, then its copies
        for b in range(a, q):
            for c in range(b, q):
                acc = 0.0
                for i in range(lo, hi):
                    acc += t[i] * Bj[a, i - lo] * Bj[b, i - lo] * Bj[c, i - lo]
                T[a, b, c] = T[a, c, b] = T[b, a, c] = acc
                T[b, c, a] = T[c, a, b] = T[c, b, a] = acc
    for _ in range(MAX_SWEEPS if q > 2 else 1):
        largest = 0.0
        for k in range(q - 1):
            for m in range(k + 1, q):
                largest = max(largest, abs(_plane_step(T, Q, k, m)))
        if largest < SWEEP_TOL:
            break


@njit(cache=True)
def _plane_step(T, Q, k, m):
    """Rotate axes ``k`` and ``m`` (columns of ``Q``, modes of ``T``) by the angle that
    minimises ``T_kkk^2 + T_mmm^2`` (closed form, see :func:`_skew_rotation`); return it."""
    q = Q.shape[0]
    k0, k1, k2, k3 = T[k, k, k], T[k, k, m], T[k, m, m], T[m, m, m]
    p1 = complex(k0 + k2, k1 + k3)  # sum t |x|^2 x  (times 1)
    p3 = complex(k0 - 3.0 * k2, 3.0 * k1 - k3)  # sum t x^3
    z = p1 * p3
    if z == 0.0:
        return 0.0
    # the smallest such rotation, in (-pi/4, pi/4]: a quarter turn only relabels the axes
    # of a 2-D rule, but in 3-D it would change which axes the next planes pair up, and
    # so make the rule jump between nearby parameters
    phi = math.atan2(z.imag, z.real) / 4.0 + math.pi / 4.0
    if phi > math.pi / 4.0:
        phi -= math.pi / 2.0
    c, s = math.cos(phi), math.sin(phi)
    for a in range(q):  # new axes: c q_k + s q_m and -s q_k + c q_m
        qk, qm = Q[a, k], Q[a, m]
        Q[a, k], Q[a, m] = c * qk + s * qm, -s * qk + c * qm
    for a in range(q):  # the same rotation in each mode of T
        for b in range(q):
            tk, tm = T[k, a, b], T[m, a, b]
            T[k, a, b], T[m, a, b] = c * tk + s * tm, -s * tk + c * tm
    for a in range(q):
        for b in range(q):
            tk, tm = T[a, k, b], T[a, m, b]
            T[a, k, b], T[a, m, b] = c * tk + s * tm, -s * tk + c * tm
    for a in range(q):
        for b in range(q):
            tk, tm = T[a, b, k], T[a, b, m]
            T[a, b, k], T[a, b, m] = c * tk + s * tm, -s * tk + c * tm
    return phi


@njit(cache=True)
def agq_deviance(code, eta0, A, t, y, wt, starts, u, Ls, devc0, nodes, logw):
    """Per-group ``F_j(u_hat) - 2 log sum_k w_k exp(|z_k|^2/2 - Delta_k/2)``.

    ``t`` (n,) is each row's third derivative of the deviance at the modes (up to a
    factor; :func:`_skew_rotation`). Add ``log det H_j`` and the deviance constant to get
    the AGQ deviance.
    """
    m, q = u.shape
    K = nodes.shape[0]
    out = np.empty(m)
    x = np.empty(q)
    B = np.empty((q, int(np.max(np.diff(starts))) if m else 0))
    T = np.empty((q, q, q))
    Q = np.empty((q, q))
    S = np.empty((q, q))
    terms = np.empty(K)
    for j in range(m):
        lo, hi = starts[j], starts[j + 1]
        L = Ls[j]
        _skew_rotation(A, t, lo, hi, L, B, T, Q)
        S[:, :] = Q  # S = L^{-T} Q
        backward(L, S)
        for k in range(K):
            for a in range(q):  # x = S z_k
                v = 0.0
                for b in range(q):
                    v += S[a, b] * nodes[k, b]
                x[a] = v
            F = 0.0
            for a in range(q):
                x[a] += u[j, a]
                F += x[a] * x[a]
            for i in range(lo, hi):
                eta = eta0[i]
                for a in range(q):
                    eta += A[i, a] * x[a]
                F += row_dev(code, eta, y[i], wt[i])
            terms[k] = logw[k] - 0.5 * (F - devc0[j])
        mx = terms.max()
        acc = 0.0
        for k in range(K):
            acc += math.exp(terms[k] - mx)
        out[j] = devc0[j] - 2.0 * (mx + math.log(acc))
    return out
