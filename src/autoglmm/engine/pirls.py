"""PIRLS per group and the analytic gradient of the Laplace deviance (numba kernels).

With one grouping factor the spherical random effects ``u_j`` of different groups are
independent given ``(beta, theta)``, so the penalised least-squares problem of lme4's
PIRLS splits into ``m`` problems of size ``q``. Each kernel is a compiled loop over the
contiguous row blocks of :class:`~autoglmm.engine.design.GroupedDesign`.

Notation (per group, rows ``i``): ``a_i = Lambda' z_i`` (the rows of ``A = Z Lambda``),
``eta_i = eta0_i + a_i' u`` with ``eta0 = X beta + offset``. PIRLS minimises
``F(u) = sum_i dev_i(eta_i) + |u|^2`` by Newton steps with step-halving (Fisher scoring
for canonical links, where the two coincide; the observed curvature for probit, where
Fisher scoring would converge only linearly). At the mode ``H = A' W A + I`` with Fisher
weights ``W`` is lme4's ``L L'`` and the Laplace deviance of the group is
``F(u_hat) + const + log det H``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from autoglmm.engine.families import BINOMIAL_PROBIT, row_all
from autoglmm.engine.kernels import chol_inplace, chol_solve, forward

MAX_ITER = 60
MAX_HALVINGS = 30


@njit(cache=True)
def _group_state(code, eta0, A, y, wt, lo, hi, u, H, Ho, g, rows):
    """F(u), half-gradient g = A's/2 + u and H = A'WA + I of one group at u.

    ``rows[:, i]`` receives (s, s2, w, w1) of each row, for the gradient. For a
    non-canonical link (probit) ``Ho`` receives the observed curvature ``A' S2 A / 2 + I``
    (Newton steps: Fisher scoring converges only linearly there).
    """
    q = u.shape[0]
    observed = code == BINOMIAL_PROBIT
    F = 0.0
    for a in range(q):
        F += u[a] * u[a]
        g[a] = u[a]
        for b in range(q):
            H[a, b] = 1.0 if a == b else 0.0
            Ho[a, b] = H[a, b]
    for i in range(lo, hi):
        eta = eta0[i]
        for a in range(q):
            eta += A[i, a] * u[a]
        dev, s, s2, w, w1 = row_all(code, eta, y[i], wt[i])
        rows[0, i] = s
        rows[1, i] = s2
        rows[2, i] = w
        rows[3, i] = w1
        F += dev
        for a in range(q):
            g[a] += 0.5 * s * A[i, a]
            for b in range(a + 1):
                H[a, b] += w * A[i, a] * A[i, b]
                if observed:
                    Ho[a, b] += 0.5 * s2 * A[i, a] * A[i, b]
    for a in range(q):
        for b in range(a + 1, q):
            H[a, b] = H[b, a]
            Ho[a, b] = Ho[b, a]
    return F


@njit(cache=True)
def pirls_modes(code, eta0, A, y, wt, starts, u, tol):
    """Conditional modes of all groups (``u`` is the warm start, updated in place).

    Fisher scoring with step-halving on ``F``; a trial step's state (F, gradient, H) is
    the next iteration's state, so a converged warm start costs one pass over the rows.
    Returns per group: ``dev`` (the eta-dependent part of ``-2 log p(y|u)``), ``usq``
    (``|u|^2``), ``logdet`` (``log det H``), the Cholesky factors ``L`` of ``H`` (m, q, q)
    , a status (0 converged, 1 iteration limit, 2 step-halving failed, 3 H not SPD) and
    ``rows`` (4, n): (s, s2, w, w1) of every row at the modes, for :func:`laplace_gradient`.
    """
    m, q = u.shape
    rows = np.empty((4, eta0.shape[0]))
    dev = np.empty(m)
    usq = np.empty(m)
    logdet = np.empty(m)
    Ls = np.empty((m, q, q))
    status = np.zeros(m, dtype=np.int64)
    canonical = code != BINOMIAL_PROBIT
    H = np.empty((q, q))
    Hn = np.empty((q, q))
    Ho = np.empty((q, q))
    Hon = np.empty((q, q))
    Hs = np.empty((q, q))
    g = np.empty(q)
    gn = np.empty(q)
    step = np.empty(q)
    trial = np.empty(q)
    for j in range(m):
        lo, hi = starts[j], starts[j + 1]
        uj = u[j]
        F = _group_state(code, eta0, A, y, wt, lo, hi, uj, H, Ho, g, rows)
        it = 0
        last = False
        while True:
            if canonical:
                Hs = H  # Newton = Fisher scoring; H is factored in place
            else:
                Hs[:, :] = Ho
            if not chol_inplace(Hs):
                status[j] = 3
                break
            step[:] = g
            chol_solve(Hs, step.reshape((q, 1)))
            decrement = 0.0
            for a in range(q):
                decrement += g[a] * step[a]
            if decrement < tol or last:
                break
            if it >= MAX_ITER:
                status[j] = 1
                break
            fac = 1.0
            accepted = False
            for _ in range(MAX_HALVINGS):
                for a in range(q):
                    trial[a] = uj[a] - fac * step[a]
                Fn = _group_state(code, eta0, A, y, wt, lo, hi, trial, Hn, Hon, gn, rows)
                if Fn <= F or decrement < 1e-10:
                    accepted = True
                    break
                fac *= 0.5
            if not accepted:
                status[j] = 2
                break
            F = Fn
            # in the quadratic regime one more full step reaches rounding level: stop there
            last = decrement < 1e-12
            for a in range(q):
                uj[a] = trial[a]
                g[a] = gn[a]
                for b in range(q):
                    H[a, b] = Hn[a, b]
                    Ho[a, b] = Hon[a, b]
            it += 1
        if not canonical and status[j] != 3 and not chol_inplace(H):
            status[j] = 3
        s2 = 0.0
        for a in range(q):
            s2 += uj[a] * uj[a]
        usq[j] = s2
        dev[j] = F - s2
        ld = 0.0
        for a in range(q):
            ld += 2.0 * np.log(H[a, a])
        logdet[j] = ld if status[j] != 3 else np.inf
        Ls[j] = H
    return dev, usq, logdet, Ls, status, rows


@njit(cache=True)
def laplace_gradient(A, Z, lam, starts, u, Ls, rows):
    """Gradient pieces of the Laplace deviance at the conditional modes ``u``.

    ``Ls`` and ``rows`` come from :func:`pirls_modes` at the same parameters. Returns
    ``r`` (n,) with ``d D / d beta = X' r``, ``G`` (q, q) with
    ``d D / d Lambda[r, c] = G[r, c]`` (only the entries that are theta are used), and
    ``ok``: False when a group's observed curvature is not positive definite (probit far
    from the optimum), where the implicit derivative of the modes does not exist.
    Envelope theorem for ``F``; for ``log det H`` the direct derivative plus the implicit
    derivative of the modes (observed curvature of F in ``du/dphi``, Fisher weights in H).
    No transcendental function is evaluated here: the row terms are ``rows``.
    """
    n = A.shape[0]
    m, q = u.shape
    r = np.empty(n)
    G = np.zeros((q, q))
    Ho = np.empty((q, q))
    S = np.empty((q, q))
    LtS = np.empty((q, q))
    Zs = np.empty(q)
    Zc = np.empty(q)
    Zt = np.empty(q)
    v = np.empty(q)
    wv = np.empty(q)
    tmp = np.empty(q)
    col = np.empty(q)
    rhs = np.empty(q)
    for j in range(m):
        lo, hi = starts[j], starts[j + 1]
        uj = u[j]
        L = Ls[j]
        for a in range(q):
            Zs[a] = 0.0
            Zc[a] = 0.0
            Zt[a] = 0.0
            v[a] = 0.0
            for b in range(q):
                Ho[a, b] = 1.0 if a == b else 0.0
                S[a, b] = 0.0
        for i in range(lo, hi):
            s, s2, w, w1 = rows[0, i], rows[1, i], rows[2, i], rows[3, i]
            tmp[:] = A[i]
            forward(L, tmp.reshape((q, 1)))
            h = 0.0
            for a in range(q):
                h += tmp[a] * tmp[a]
            c = w1 * h
            r[i] = s + c
            for a in range(q):
                Zs[a] += s * Z[i, a]
                Zc[a] += c * Z[i, a]
                v[a] += c * A[i, a]
                for b in range(q):
                    Ho[a, b] += 0.5 * s2 * A[i, a] * A[i, b]
                    S[a, b] += w * Z[i, a] * Z[i, b]
        if not chol_inplace(Ho):  # observed curvature not PD (probit far from the mode)
            return r, G, False
        wv[:] = v
        chol_solve(Ho, wv.reshape((q, 1)))
        for i in range(lo, hi):
            wa = 0.0
            for a in range(q):
                wa += wv[a] * A[i, a]
            t = wa * rows[1, i]
            r[i] -= 0.5 * t
            for a in range(q):
                Zt[a] += t * Z[i, a]
        # M = H^{-1} Lambda' S, column by column; G[rr, cc] needs M[cc, rr]
        for a in range(q):
            for b in range(q):
                acc = 0.0
                for k in range(q):
                    acc += lam[k, a] * S[k, b]
                LtS[a, b] = acc
        for rr in range(q):
            for a in range(q):
                rhs[a] = LtS[a, rr]
            col[:] = rhs
            chol_solve(L, col.reshape((q, 1)))
            for cc in range(q):
                G[rr, cc] += (
                    (Zs[rr] + Zc[rr] - 0.5 * Zt[rr]) * uj[cc]
                    + 2.0 * col[cc]
                    - 0.5 * wv[cc] * Zs[rr]
                )
    return r, G, True
