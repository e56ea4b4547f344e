"""PIRLS per group and the analytic gradient of the Laplace deviance (numba kernels).

With one grouping factor the spherical random effects ``u_j`` of different groups are
independent given ``(beta, theta)``, so the penalised least-squares problem of lme4's
PIRLS splits into ``m`` problems of size ``q``. Each kernel is a compiled loop over the
contiguous row blocks of :class:`~autoglmm.engine.design.GroupedDesign`.

Notation (per group, rows ``i``): ``z_i`` the random-effects covariates,
``a_i = Lambda' z_i``, ``eta_i = eta0_i + a_i' u = eta0_i + z_i' (Lambda u)`` with
``eta0 = X beta + offset``. PIRLS minimises ``F(u) = sum_i dev_i(eta_i) + |u|^2`` by
Newton steps with step-halving (Fisher scoring for canonical links, where the two
coincide; the observed curvature for probit, where Fisher scoring would converge only
linearly). At the mode ``H = A' W A + I`` with Fisher weights ``W`` is lme4's ``L L'``
and the Laplace deviance of the group is ``F(u_hat) + const + log det H``.

A pass over a group's rows accumulates sums in the z coordinates (``sum s z``,
``sum w z z'``); ``Lambda`` enters once per group (``H = Lambda' (sum w z z') Lambda + I``),
so no ``A = Z Lambda`` is formed. The gradient (:func:`pirls_modes` with
``gradient=True``) is computed group by group right after that group's PIRLS, from its
last pass's sums, plus one pass over its rows for the log-determinant's derivative
(which needs the factor of ``H`` at the mode) and a short one for the implicit
derivative of the modes. The per-group helpers are inlined into the loop
(``inline="always"``): calls with a dozen array arguments cost 12% of the time.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from autoglmm.engine.families import BINOMIAL_PROBIT, row_terms
from autoglmm.engine.kernels import chol_inplace, chol_solve, forward

MAX_ITER = 60
MAX_HALVINGS = 30


@njit(cache=True, inline="always")
def _linear_predictor(eta0, Z, i, b, q):
    """``eta0[i] + Z[i] . b``, written out for q <= 3 (the same order of additions as
    the loop): loops of one to three trips per row cost 15% of a pass."""
    if q == 1:
        return eta0[i] + Z[i, 0] * b[0]
    if q == 2:
        return eta0[i] + Z[i, 0] * b[0] + Z[i, 1] * b[1]
    if q == 3:
        return eta0[i] + Z[i, 0] * b[0] + Z[i, 1] * b[1] + Z[i, 2] * b[2]
    eta = eta0[i]
    for a in range(q):
        eta += Z[i, a] * b[a]
    return eta


@njit(cache=True, inline="always")
def _add_small(Z, i, s, w, q, zs, S):
    """Row ``i``'s terms of ``zs += s z`` and ``S += w z z'`` (lower triangle) for q <= 3,
    written out (see :func:`_linear_predictor`)."""
    z0 = Z[i, 0]
    wz = w * z0
    zs[0] += s * z0
    S[0, 0] += wz * z0
    if q >= 2:
        z1 = Z[i, 1]
        wz = w * z1
        zs[1] += s * z1
        S[1, 0] += wz * z0
        S[1, 1] += wz * z1
    if q == 3:
        z2 = Z[i, 2]
        wz = w * z2
        zs[2] += s * z2
        S[2, 0] += wz * z0
        S[2, 1] += wz * z1
        S[2, 2] += wz * z2


@njit(cache=True, inline="always")
def _quadratic_small(K, Z, i, q):
    """``z_i' K z_i`` for q <= 3, written out in the loop's order of additions."""
    z0 = Z[i, 0]
    if q == 1:
        return 0.0 + z0 * (0.0 + K[0, 0] * z0)
    z1 = Z[i, 1]
    if q == 2:
        a0 = K[0, 0] * z0 + K[0, 1] * z1
        a1 = K[1, 0] * z0 + K[1, 1] * z1
        return z0 * a0 + z1 * a1
    z2 = Z[i, 2]
    a0 = K[0, 0] * z0 + K[0, 1] * z1 + K[0, 2] * z2
    a1 = K[1, 0] * z0 + K[1, 1] * z1 + K[1, 2] * z2
    a2 = K[2, 0] * z0 + K[2, 1] * z1 + K[2, 2] * z2
    return z0 * a0 + z1 * a1 + z2 * a2


@njit(cache=True, inline="always")
def _row_sums(code, eta0, Z, y, wt, lo, hi, b, rows, zs, S, S2, observed):
    """One pass over a group's rows at ``eta = eta0 + Z b`` (``b = Lambda u``).

    Returns the sum of the rows' deviances and fills ``zs = sum s z``, the lower
    triangles of ``S = sum w z z'`` and, when ``observed``, ``S2 = sum s2 z z'``;
    ``rows[:, i]`` receives (s, s2, w, w1) of each row.
    """
    q = b.shape[0]
    for a in range(q):
        zs[a] = 0.0
        for c in range(a + 1):
            S[a, c] = 0.0
            S2[a, c] = 0.0
    F = 0.0
    P = 1.0  # product of the rows' factors (families.row_terms): one log per group
    for i in range(lo, hi):
        eta = _linear_predictor(eta0, Z, i, b, q)
        lin, fac, s, s2, w, w1 = row_terms(code, eta, y[i], wt[i])
        rows[0, i] = s
        rows[1, i] = s2
        rows[2, i] = w
        rows[3, i] = w1
        F += lin
        P *= fac
        if P > 1e250:  # factors are at most 2: no overflow before this
            F += 2.0 * math.log(P)
            P = 1.0
        if q <= 3:
            _add_small(Z, i, s, w, q, zs, S)
        else:
            for a in range(q):
                za = Z[i, a]
                zs[a] += s * za
                wz = w * za
                for c in range(a + 1):
                    S[a, c] += wz * Z[i, c]
        if observed:
            for a in range(q):
                sz = s2 * Z[i, a]
                for c in range(a + 1):
                    S2[a, c] += sz * Z[i, c]
    return F + 2.0 * math.log(P)


@njit(cache=True, inline="always")
def _congruence(lam, S, scale, H, T):
    """``H = scale * Lambda' S Lambda + I`` from the lower triangle of ``S`` (which is made
    symmetric in place); ``T`` (q, q) is scratch."""
    q = lam.shape[0]
    for a in range(q):
        for c in range(a):
            S[c, a] = S[a, c]
    for k in range(q):
        for b in range(q):
            acc = 0.0
            for c in range(q):
                acc += S[k, c] * lam[c, b]
            T[k, b] = acc
    for a in range(q):
        for b in range(a + 1):
            acc = 0.0
            for k in range(q):
                acc += lam[k, a] * T[k, b]
            H[a, b] = scale * acc + (1.0 if a == b else 0.0)
            H[b, a] = H[a, b]


@njit(cache=True, inline="always")
def _state(code, eta0, Z, lam, y, wt, lo, hi, u, b, rows, zs, S, S2, g, H, Ho, T, observed):
    """F(u), the half-gradient ``g = Lambda' zs / 2 + u`` and ``H = A'WA + I`` of one group
    at ``u`` (and the observed curvature ``Ho = A' S2 A / 2 + I`` when ``observed``)."""
    q = u.shape[0]
    F = 0.0
    for a in range(q):
        acc = 0.0
        for c in range(q):
            acc += lam[a, c] * u[c]
        b[a] = acc
        F += u[a] * u[a]
    F += _row_sums(code, eta0, Z, y, wt, lo, hi, b, rows, zs, S, S2, observed)
    for a in range(q):
        acc = 0.0
        for k in range(q):
            acc += lam[k, a] * zs[k]
        g[a] = 0.5 * acc + u[a]
    _congruence(lam, S, 1.0, H, T)
    if observed:
        _congruence(lam, S2, 0.5, Ho, T)
    return F


@njit(cache=True)
def _pirls_group(code, eta0, Z, lam, y, wt, lo, hi, uj, tol, rows, zs, S, S2, g, H, Ho, Hs, vec, T):
    """PIRLS for one group from the warm start ``uj`` (updated in place to the mode).

    Slot ``cur`` of the state arrays (``zs, S, S2, g, H, Ho``: a leading axis of 2) holds
    the state at ``uj``, the other slot a trial point; a trial step's state is the next
    iteration's, so a converged warm start costs one pass over the rows. Returns
    ``(status, F, cur)``: status 0 converged, 1 iteration limit, 2 step-halving failed,
    3 curvature not positive definite. At the end ``H[cur]`` holds the Cholesky factor of
    the Fisher ``H`` and ``Hs`` that of the curvature the steps used (``Ho`` for probit,
    ``H`` otherwise). ``vec`` (3, q) and ``T`` (q, q) are scratch.
    """
    q = uj.shape[0]
    observed = code == BINOMIAL_PROBIT
    b, step, trial = vec[0], vec[1], vec[2]
    cur = 0
    F = _state(code, eta0, Z, lam, y, wt, lo, hi, uj, b, rows,
               zs[0], S[0], S2[0], g[0], H[0], Ho[0], T, observed)  # fmt: skip
    it = 0
    last = False
    status = 0
    while True:
        Hs[:, :] = Ho[cur] if observed else H[cur]
        if not chol_inplace(Hs):
            status = 3
            break
        gc = g[cur]
        step[:] = gc
        chol_solve(Hs, step.reshape((q, 1)))
        decrement = 0.0
        for a in range(q):
            decrement += gc[a] * step[a]
        if decrement < tol or last:
            break
        if it >= MAX_ITER:
            status = 1
            break
        nxt = 1 - cur
        fac = 1.0
        accepted = False
        Fn = F
        for _ in range(MAX_HALVINGS):
            for a in range(q):
                trial[a] = uj[a] - fac * step[a]
            Fn = _state(code, eta0, Z, lam, y, wt, lo, hi, trial, b, rows,
                        zs[nxt], S[nxt], S2[nxt], g[nxt], H[nxt], Ho[nxt], T, observed)  # fmt: skip
            if Fn <= F or decrement < 1e-10:
                accepted = True
                break
            fac *= 0.5
        if not accepted:
            status = 2
            break
        F = Fn
        cur = nxt
        uj[:] = trial
        # in the quadratic regime one more full step reaches rounding level: stop there
        last = decrement < 1e-12
        it += 1
    if status == 3:
        return status, F, cur
    if observed:
        if not chol_inplace(H[cur]):
            status = 3
    else:
        H[cur][:, :] = Hs
    return status, F, cur


@njit(cache=True)
def _group_gradient(Z, lam, lo, hi, uj, L, Lo, zs, S, S2, rows, r, G, K, M, v):
    """Add one group's terms of the Laplace gradient to ``r`` (its rows) and ``G``.

    ``L`` and ``Lo`` are the Cholesky factors of the Fisher ``H`` and of the observed
    curvature at the mode (the same for canonical links), ``zs``, ``S`` and ``S2`` (full,
    symmetric) the sums of PIRLS's last pass there. Envelope theorem for ``F``; for
    ``log det H`` the direct derivative (``h_i = a_i' H^{-1} a_i = z_i' K z_i`` with
    ``K = Lambda H^{-1} Lambda'``) plus the implicit derivative of the modes.
    ``M`` (q, q) and ``v`` (4, q) are scratch.
    """
    q = uj.shape[0]
    zc, wv, bv, col = v[0], v[1], v[2], v[3]
    for a in range(q):  # M = L^{-1} Lambda', K = M'M
        for c in range(q):
            M[a, c] = lam[c, a]
    forward(L, M)
    for a in range(q):
        zc[a] = 0.0
        for c in range(a + 1):
            acc = 0.0
            for k in range(q):
                acc += M[k, a] * M[k, c]
            K[a, c] = acc
            K[c, a] = acc
    for i in range(lo, hi):  # the direct derivative of log det H
        if q <= 3:
            h = _quadratic_small(K, Z, i, q)
        else:
            h = 0.0
            for a in range(q):
                acc = 0.0
                for c in range(q):
                    acc += K[a, c] * Z[i, c]
                h += Z[i, a] * acc
        cw = rows[3, i] * h
        r[i] = rows[0, i] + cw
        for a in range(q):
            zc[a] += cw * Z[i, a]
    for a in range(q):  # wv = Ho^{-1} Lambda' zc: the implicit derivative of the modes
        acc = 0.0
        for k in range(q):
            acc += lam[k, a] * zc[k]
        wv[a] = acc
    chol_solve(Lo, wv.reshape((q, 1)))
    for a in range(q):
        acc = 0.0
        for c in range(q):
            acc += lam[a, c] * wv[c]
        bv[a] = acc
    for i in range(lo, hi):
        acc = 0.0
        for a in range(q):
            acc += Z[i, a] * bv[a]
        r[i] -= 0.5 * rows[1, i] * acc
    for rr in range(q):
        zt = 0.0  # (sum s2 z z' Lambda wv)[rr]
        for c in range(q):
            zt += S2[rr, c] * bv[c]
        for a in range(q):  # col = H^{-1} Lambda' S[:, rr]
            acc = 0.0
            for k in range(q):
                acc += lam[k, a] * S[k, rr]
            col[a] = acc
        chol_solve(L, col.reshape((q, 1)))
        base = zs[rr] + zc[rr] - 0.5 * zt
        for cc in range(q):
            G[rr, cc] += base * uj[cc] + 2.0 * col[cc] - 0.5 * wv[cc] * zs[rr]


@njit(cache=True)
def pirls_modes(code, eta0, Z, lam, y, wt, starts, u, tol, gradient=False):
    """Conditional modes of all groups (``u`` is the warm start, updated in place) and,
    with ``gradient``, the Laplace gradient's pieces in the same loop over groups.

    Returns per group ``dev`` (the eta-dependent part of ``-2 log p(y|u)``), ``usq``
    (``|u|^2``), ``logdet`` (``log det H``), the Cholesky factors ``L`` of ``H``
    (m, q, q), a status (0 converged, 1 iteration limit, 2 step-halving failed, 3 a
    curvature not positive definite), ``rows`` (4, n): (s, s2, w, w1) of every row at
    the modes; then ``r`` (n,) with ``d D / d beta = X' r`` and ``G`` (q, q) with
    ``d D / d Lambda[r, c] = G[r, c]`` (only the entries that are theta are used; both
    empty or zero without ``gradient``, and meaningless unless every status is 0).
    """
    m, q = u.shape
    n = eta0.shape[0]
    observed = code == BINOMIAL_PROBIT
    rows = np.empty((4, n))
    dev = np.empty(m)
    usq = np.empty(m)
    logdet = np.empty(m)
    Ls = np.empty((m, q, q))
    status = np.zeros(m, dtype=np.int64)
    r = np.empty(n if gradient else 0)
    G = np.zeros((q, q))
    zs = np.empty((2, q))
    S = np.empty((2, q, q))
    S2 = np.empty((2, q, q))
    g = np.empty((2, q))
    H = np.empty((2, q, q))
    Ho = np.empty((2, q, q))
    Hs = np.empty((q, q))
    vec = np.empty((4, q))
    T = np.empty((q, q))
    K = np.empty((q, q))
    for j in range(m):
        lo, hi = starts[j], starts[j + 1]
        uj = u[j]
        st, F, cur = _pirls_group(
            code, eta0, Z, lam, y, wt, lo, hi, uj, tol, rows,
            zs, S, S2, g, H, Ho, Hs, vec, T,
        )  # fmt: skip
        status[j] = st
        s2 = 0.0
        for a in range(q):
            s2 += uj[a] * uj[a]
        usq[j] = s2
        dev[j] = F - s2
        ld = 0.0
        for a in range(q):
            ld += 2.0 * np.log(H[cur][a, a])
        logdet[j] = ld if st != 3 else np.inf
        Ls[j] = H[cur]
        if gradient and st == 0:
            if not observed:  # s2 = 2 w exactly for canonical links
                for a in range(q):
                    for c in range(q):
                        S2[cur][a, c] = 2.0 * S[cur][a, c]
            _group_gradient(
                Z, lam, lo, hi, uj, H[cur], Hs, zs[cur], S[cur], S2[cur], rows, r, G, K, T, vec
            )
    return dev, usq, logdet, Ls, status, rows, r, G


@njit(cache=True)
def random_effects_share(X, Z, lam, w, starts, Ls):
    """``sum_j C_j' H_j^{-1} C_j`` with ``C_j = Lambda' Z_j' W_j X_j`` (q, p): what the
    random effects take from ``X'WX`` in lme4's ``RX'RX = X'WX - X'WA H^{-1} A'WX``.

    ``w`` (n,) are the Fisher weights and ``Ls`` the factors of ``H`` at the modes
    (:func:`pirls_modes`). One pass over the rows with ``p q`` products each, no
    (n, p, q) temporary.
    """
    p = X.shape[1]
    q = Z.shape[1]
    out = np.zeros((p, p))
    C = np.empty((q, p))
    D = np.empty((q, p))
    for j in range(starts.shape[0] - 1):
        C[:, :] = 0.0
        for i in range(starts[j], starts[j + 1]):
            for a in range(q):
                wz = w[i] * Z[i, a]
                for k in range(p):
                    C[a, k] += wz * X[i, k]
        for a in range(q):  # D = L^{-1} Lambda' C
            for k in range(p):
                acc = 0.0
                for b in range(q):
                    acc += lam[b, a] * C[b, k]
                D[a, k] = acc
        forward(Ls[j], D)
        for k in range(p):
            for l in range(k + 1):
                acc = 0.0
                for a in range(q):
                    acc += D[a, k] * D[a, l]
                out[k, l] += acc
    for k in range(p):
        for l in range(k):
            out[l, k] = out[k, l]
    return out
