"""A binned regression forest in numba, with per-tree OOB permutation importance.

Why our own trees: the MERF refits a forest on every EM iteration and the ranking needs
randomForest's OOB permutation importance over 2,000 trees. scikit-learn's
``RandomForestRegressor`` sorts raw values at every node and has no OOB permutation
importance, so at TIMSS scale it is far too slow (see ``benchmarks/ranking.py``).

How it is fast:

- every feature is pre-binned once into at most ``max_bins`` (<= 255) codes; features with
  few distinct values (Likert items) keep every value, so their splits are exact;
- a node's split is a histogram scan (variance reduction) over ``mtry`` random features;
- rows of a node stay in increasing order (stable partitions), so feature columns are read
  forwards, and OOB rows are partitioned alongside, so each node knows its OOB rows;
- permutation importance re-routes only the OOB rows below the top-most nodes that split on
  the permuted feature: the other rows cannot move;
- trees are grown in parallel (``numba.prange``), each from its own seed derived once from
  one seed, and results are reduced in tree order, so output is identical for any ``n_jobs``.

Semantics follow randomForest/ranger: bootstrap of ``n`` rows with replacement, a node is
split only if both children keep at least ``min_samples_leaf`` in-bag rows (duplicates count),
leaf value = in-bag (weighted) mean. Permutation importance is randomForest's unscaled
%IncMSE: per tree, the increase in (weighted) OOB mean squared error when one feature's OOB
values are permuted, then averaged over trees. Impurity importance is the total decrease of
the (weighted) residual sum of squares at the feature's splits, averaged over trees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from autoglmm.forest.binning import Binner

__all__ = ["Binner", "Forest", "grow_forest", "tree_seeds"]

_BATCH = 64  # trees per parallel batch: fixed, so reductions never depend on n_jobs


def tree_seeds(seed: int, stream: int, n_trees: int) -> np.ndarray:
    """Seeds of ``n_trees`` trees of forest number ``stream``, derived once from ``seed``."""
    return np.random.SeedSequence([int(seed), int(stream)]).generate_state(n_trees, np.uint64)


# --- random numbers: splitmix64, one state per tree ------------------------------------------


@njit(cache=True)
def _next(state):
    state[0] += np.uint64(0x9E3779B97F4A7C15)
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _randint(state, k):
    """Uniform integer in [0, k)."""
    u = np.float64(_next(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return min(np.int64(u * k), k - 1)


# --- growing one tree --------------------------------------------------------------------------


@njit(cache=True)
def _bootstrap(n, sw, y, state, gcode, n_boot_groups):
    """Bootstrap counts of the rows: ``n`` rows with replacement, or, with
    ``n_boot_groups > 0``, that many whole groups with replacement (every row of a group
    drawn k times counts k times, so out of bag means out of group)."""
    cnt = np.zeros(n, np.int64)
    if n_boot_groups > 0:
        gcnt = np.zeros(n_boot_groups, np.int64)
        for _ in range(n_boot_groups):
            gcnt[_randint(state, n_boot_groups)] += 1
        for i in range(n):
            cnt[i] = gcnt[gcode[i]]
    else:
        for _ in range(n):
            cnt[_randint(state, n)] += 1
    n_in = 0
    for i in range(n):
        if cnt[i] > 0:
            n_in += 1
    idx = np.empty(n_in, np.int64)
    oob = np.empty(n - n_in, np.int64)
    a = 0
    b = 0
    for i in range(n):
        if cnt[i] > 0:
            idx[a] = i
            a += 1
        else:
            oob[b] = i
            b += 1
    wc = cnt * sw
    return cnt, wc, wc * y, idx, oob


@njit(cache=True)
def _best_split(
    Xr, nbins, cnt, wc, wy, weighted, idx, start, end, feats, mtry, min_leaf, C, W, S, state,
    fsel, boff, hcs, hw, gcode, level2, min_groups, seen, stamp, hg, categorical, ordr
):  # fmt: skip
    """Best (feature, threshold, gain, left sums, level mask) over ``mtry`` random features.

    Rows are the outer loop: each row's codes (one cache line run of ``Xr``) feed the
    histograms of all chosen features, packed back to back in ``hcs`` (count, sum pairs) and ``hw``.
    A split on a level-2 feature (``level2[f]``) must leave at least ``min_groups``
    distinct groups on each side (``hg`` counts them per bin), so level-2 columns cannot
    single out a few in-bag groups and memorise their means.
    A categorical feature's levels are ordered by their mean target in the node (in-bag
    rows only, so no leakage into the OOB rows) and split as a subset: for squared error
    the best subset split is a prefix of that order (Breiman et al. 1984). Its left levels
    are returned as a bit mask (0 for a numeric split).
    """
    p = Xr.shape[1]
    m = 0
    tot = 0
    for k in range(mtry):  # partial Fisher-Yates: a uniform random subset of features
        j = k + _randint(state, p - k)
        f = feats[j]
        feats[j] = feats[k]
        feats[k] = f
        if nbins[f] >= 2:
            fsel[m] = f
            boff[m] = tot
            tot += nbins[f]
            m += 1
    best_f, best_t, best_gain = -1, 0, 1e-12 * (abs(S * S / W) + 1.0)
    bl_c, bl_w, bl_s = 0, 0.0, 0.0
    best_mask = np.uint64(0)
    if m == 0:
        return best_f, best_t, best_gain, bl_c, bl_w, bl_s, best_mask
    hcs[: 2 * tot] = 0.0
    if weighted:
        hw[:tot] = 0.0
    if weighted:
        for i in range(start, end):
            r = idx[i]
            row = Xr[r]
            c = cnt[r]
            sy = wy[r]
            sw_ = wc[r]
            for k in range(m):
                b = boff[k] + row[fsel[k]]
                hcs[2 * b] += c
                hcs[2 * b + 1] += sy
                hw[b] += sw_
    else:
        _accumulate_pairs(Xr, cnt, wy, idx, start, end, fsel, boff, m, hcs)
    if min_groups > 0:
        _count_groups(Xr, nbins, idx, start, end, fsel, boff, m, gcode, level2, seen, stamp, hg)
    parent = S * S / W
    for k in range(m):
        o = boff[k]
        nb = nbins[fsel[k]]
        by_group = min_groups > 0 and level2[fsel[k]]
        g_tot = 0
        if by_group:
            for t in range(nb):
                g_tot += hg[o + t]
        cat = categorical[fsel[k]]
        if cat:
            _order_levels(hcs, hw, weighted, o, nb, ordr)
        lc, lw, ls, lg = 0, 0.0, 0.0, 0
        for t in range(nb - 1):
            bt = o + (ordr[t] if cat else t)
            cb = hcs[2 * bt]
            lc += np.int64(cb)
            lw += hw[bt] if weighted else cb
            ls += hcs[2 * bt + 1]
            if by_group:
                lg += hg[bt]
                if lg < min_groups:
                    continue
                if g_tot - lg < min_groups:
                    break
            if lc < min_leaf:
                continue
            if C - lc < min_leaf:
                break
            rw = W - lw
            if lw <= 0.0 or rw <= 0.0:
                continue
            gain = ls * ls / lw + (S - ls) * (S - ls) / rw - parent
            if gain > best_gain:
                best_f, best_t, best_gain = fsel[k], t, gain
                bl_c, bl_w, bl_s = lc, lw, ls
                best_mask = np.uint64(0)
                if cat:
                    for a in range(t + 1):
                        best_mask |= np.uint64(1) << np.uint64(ordr[a])
    return best_f, best_t, best_gain, bl_c, bl_w, bl_s, best_mask


@njit(cache=True)
def _order_levels(hcs, hw, weighted, o, nb, ordr):
    """Levels of a categorical feature by increasing mean target; empty levels last."""
    key = np.empty(nb)
    for t in range(nb):
        c = hw[o + t] if weighted else hcs[2 * (o + t)]
        key[t] = hcs[2 * (o + t) + 1] / c if c > 0 else np.inf
    ordr[:nb] = np.argsort(key, kind="mergesort")


@njit(cache=True)
def _right(code, thr, mask):
    """Does a row with this bin code go to the right child? (mask: categorical split)"""
    if mask != 0:
        return ((mask >> np.uint64(code)) & np.uint64(1)) == 0
    return code > thr


@njit(cache=True)
def _count_groups(Xr, nbins, idx, start, end, fsel, boff, m, gcode, level2, seen, stamp, hg):
    """Distinct groups per bin of each chosen level-2 feature, among the node's rows."""
    for k in range(m):
        f = fsel[k]
        if not level2[f]:
            continue
        o = boff[k]
        for t in range(nbins[f]):
            hg[o + t] = 0
        stamp[0] += 1
        st = stamp[0]
        for i in range(start, end):
            r = idx[i]
            gg = gcode[r]
            if seen[gg] != st:
                seen[gg] = st
                hg[o + Xr[r, f]] += 1


@njit(cache=True)
def _accumulate_pairs(Xr, cnt, wy, idx, start, end, fsel, boff, m, hcs):
    """Unweighted histograms, two rows at a time (halves the loads of fsel/boff)."""
    i = start
    while i + 1 < end:
        r1 = idx[i]
        r2 = idx[i + 1]
        row1 = Xr[r1]
        row2 = Xr[r2]
        c1 = np.float64(cnt[r1])
        c2 = np.float64(cnt[r2])
        s1 = wy[r1]
        s2 = wy[r2]
        for k in range(m):
            f = fsel[k]
            o = boff[k]
            b1 = 2 * (o + row1[f])
            b2 = 2 * (o + row2[f])
            hcs[b1] += c1
            hcs[b1 + 1] += s1
            hcs[b2] += c2
            hcs[b2 + 1] += s2
        i += 2
    if i < end:
        r = idx[i]
        row = Xr[r]
        c = np.float64(cnt[r])
        sy = wy[r]
        for k in range(m):
            b = 2 * (boff[k] + row[fsel[k]])
            hcs[b] += c
            hcs[b + 1] += sy


@njit(cache=True)
def _partition(col, thr, mask, arr, start, end, buf):
    """Stable partition of arr[start:end], left rows first; returns the split point."""
    a = start
    nb = 0
    for i in range(start, end):
        r = arr[i]
        if not _right(col[r], thr, mask):
            arr[a] = r
            a += 1
        else:
            buf[nb] = r
            nb += 1
    for i in range(nb):
        arr[a + i] = buf[i]
    return a


@njit(cache=True)
def _grow_tree(
    Xb, Xr, nbins, y, sw, weighted, mtry, min_leaf, state, feat, thr, cmask, left, value, imp,
    gcode, n_groups, n_boot_groups, level2, min_groups, categorical
):  # fmt: skip
    """Grow one tree into the node arrays; return (n_nodes, oob rows, their leaf values,
    node parents, node OOB ranges)."""
    p, n = Xb.shape
    cnt, wc, wy, idx, oob = _bootstrap(n, sw, y, state, gcode, n_boot_groups)
    max_nodes = feat.shape[0]
    parent = np.full(max_nodes, -1, np.int64)
    olo = np.zeros(max_nodes, np.int64)
    ohi = np.zeros(max_nodes, np.int64)
    base = np.empty(oob.shape[0])
    feats = np.arange(p)
    fsel = np.empty(mtry, np.int64)
    boff = np.empty(mtry, np.int64)
    tot = 0
    for j in range(p):
        tot += nbins[j]
    hcs = np.empty(2 * tot)
    hw = np.empty(tot)
    hg = np.zeros(tot, np.int64)
    ordr = np.empty(256, np.int64)
    seen = np.zeros(n_groups, np.int64)
    stamp = np.zeros(1, np.int64)
    buf = np.empty(max(idx.shape[0], oob.shape[0]), np.int64)
    # stack rows: node, start, end, ostart, oend, count; sums kept in a float stack
    st_i = np.empty((max_nodes, 6), np.int64)
    st_f = np.empty((max_nodes, 2))
    C = 0
    W = 0.0
    S = 0.0
    for i in range(idx.shape[0]):
        C += cnt[idx[i]]
        W += wc[idx[i]]
        S += wy[idx[i]]
    st_i[0, 0], st_i[0, 1], st_i[0, 2] = 0, 0, idx.shape[0]
    st_i[0, 3], st_i[0, 4], st_i[0, 5] = 0, oob.shape[0], C
    st_f[0, 0], st_f[0, 1] = W, S
    top = 1
    n_nodes = 1
    while top > 0:
        top -= 1
        node, s, e = st_i[top, 0], st_i[top, 1], st_i[top, 2]
        os_, oe, C = st_i[top, 3], st_i[top, 4], st_i[top, 5]
        W, S = st_f[top, 0], st_f[top, 1]
        olo[node], ohi[node] = os_, oe
        f, t, gain, lc, lw, ls, msk = -1, 0, 0.0, 0, 0.0, 0.0, np.uint64(0)
        if C >= 2 * min_leaf:
            f, t, gain, lc, lw, ls, msk = _best_split(
                Xr, nbins, cnt, wc, wy, weighted, idx, s, e, feats, mtry, min_leaf, C, W, S,
                state, fsel, boff, hcs, hw, gcode, level2, min_groups, seen, stamp, hg,
                categorical, ordr
            )  # fmt: skip
        if f < 0:
            feat[node] = -1
            value[node] = S / W
            base[os_:oe] = S / W
            continue
        feat[node] = f
        thr[node] = t
        cmask[node] = msk
        imp[f] += gain
        col = Xb[f]
        m = _partition(col, t, msk, idx, s, e, buf)
        om = _partition(col, t, msk, oob, os_, oe, buf)
        lnode = n_nodes
        left[node] = lnode
        n_nodes += 2
        parent[lnode] = node
        parent[lnode + 1] = node
        st_i[top, 0], st_i[top, 1], st_i[top, 2] = lnode + 1, m, e
        st_i[top, 3], st_i[top, 4], st_i[top, 5] = om, oe, C - lc
        st_f[top, 0], st_f[top, 1] = W - lw, S - ls
        top += 1
        st_i[top, 0], st_i[top, 1], st_i[top, 2] = lnode, s, m
        st_i[top, 3], st_i[top, 4], st_i[top, 5] = os_, om, lc
        st_f[top, 0], st_f[top, 1] = lw, ls
        top += 1
    return n_nodes, oob, base, parent, olo, ohi


@njit(cache=True)
def _oob_groups(oob, gcode, n_groups):
    """Slot of each group among this tree's OOB groups, and one OOB row of each slot."""
    slot = np.full(n_groups, -1, np.int64)
    rep = np.empty(oob.shape[0], np.int64)
    k = 0
    if n_groups == 0:
        return slot, rep[:0]
    for pos in range(oob.shape[0]):
        g = gcode[oob[pos]]
        if slot[g] < 0:
            slot[g] = k
            rep[k] = oob[pos]
            k += 1
    return slot, rep[:k]


@njit(cache=True)
def _perm_importance(
    Xb, Xr, y, sw, feat, thr, cmask, left, value, n_nodes, oob, base, parent, olo, ohi, state, out,
    gcode, n_groups, level2
):  # fmt: skip
    """Per-feature increase of this tree's OOB (weighted) MSE under permutation.

    A level-2 feature (``level2[f]``, constant within every group) is permuted across the
    tree's OOB groups: each OOB group takes the value of another OOB group, so all its rows
    move together and the column cannot act as a group identifier. Other features are
    permuted across the OOB rows (randomForest).
    """
    n_oob = oob.shape[0]
    if n_oob == 0:
        return
    slot, rep = _oob_groups(oob, gcode, n_groups)
    n_slot = rep.shape[0]
    gperm = np.arange(n_slot)
    w_oob = 0.0
    for i in range(n_oob):
        w_oob += sw[oob[i]]
    # top-most nodes of each feature: no ancestor splits on the same feature
    tops = np.empty(n_nodes, np.int64)
    n_top = 0
    for k in range(n_nodes):
        f = feat[k]
        if f < 0:
            continue
        a = parent[k]
        while a >= 0 and feat[a] != f:
            a = parent[a]
        if a < 0:
            tops[n_top] = k
            n_top += 1
    tops = tops[:n_top]
    tops = tops[np.argsort(feat[tops], kind="mergesort")]
    perm = np.arange(n_oob)
    g = 0
    while g < n_top:
        f = feat[tops[g]]
        h = g
        while h < n_top and feat[tops[h]] == f:
            h += 1
        col = Xb[f]
        by_group = n_groups > 0 and level2[f]
        if by_group:
            for a in range(n_slot - 1):  # a full Fisher-Yates shuffle of the OOB groups
                kk = a + _randint(state, n_slot - a)
                t0 = gperm[kk]
                gperm[kk] = gperm[a]
                gperm[a] = t0
        j = 0
        delta = 0.0
        for u in range(g, h):
            k0 = tops[u]
            for pos in range(olo[k0], ohi[k0]):
                r = oob[pos]
                if by_group:
                    xs = col[rep[gperm[slot[gcode[r]]]]]
                else:
                    # a distinct OOB source row: partial Fisher-Yates over the OOB rows
                    kk = j + _randint(state, n_oob - j)
                    src = perm[kk]
                    perm[kk] = perm[j]
                    perm[j] = src
                    j += 1
                    xs = col[oob[src]]
                node = k0
                while feat[node] >= 0:
                    ff = feat[node]
                    v = xs if ff == f else Xr[r, ff]
                    node = left[node] + (1 if _right(v, thr[node], cmask[node]) else 0)
                d_new = value[node] - y[r]
                d_old = base[pos] - y[r]
                delta += sw[r] * (d_new * d_new - d_old * d_old)
        out[f] = delta / w_oob
        g = h


@njit(parallel=True, cache=True)
def _grow_batch(
    Xb, Xr, nbins, y, sw, weighted, seeds, mtry, min_leaf, importance, feat, thr, cmask, left,
    value, n_nodes, imp_perm, imp_node, oob_pred, gcode, n_groups, n_boot_groups, level2,
    l2_perm, min_groups, categorical
):  # fmt: skip
    """Grow ``len(seeds)`` trees in parallel; ``oob_pred[t, i]`` is NaN unless row i is OOB."""
    for t in prange(seeds.shape[0]):
        state = np.empty(1, np.uint64)
        state[0] = seeds[t]
        nn, oob, base, parent, olo, ohi = _grow_tree(
            Xb, Xr, nbins, y, sw, weighted, mtry, min_leaf, state, feat[t], thr[t], cmask[t],
            left[t], value[t], imp_node[t], gcode, n_groups, n_boot_groups, level2, min_groups,
            categorical
        )  # fmt: skip
        n_nodes[t] = nn
        for i in range(oob.shape[0]):
            oob_pred[t, oob[i]] = base[i]
        if importance:
            _perm_importance(
                Xb, Xr, y, sw, feat[t], thr[t], cmask[t], left[t], value[t], nn, oob, base,
                parent, olo,
                ohi, state, imp_perm[t], gcode, n_groups, l2_perm
            )  # fmt: skip


@njit(parallel=True, cache=True)
def _predict(Xr, feat, thr, cmask, left, value, offsets):
    """Mean over trees of the leaf values, for every row (trees summed in order)."""
    n = Xr.shape[0]
    n_trees = offsets.shape[0] - 1
    out = np.zeros(n)
    for i in prange(n):
        acc = 0.0
        for t in range(n_trees):
            o = offsets[t]
            node = 0
            while feat[o + node] >= 0:
                k = o + node
                node = left[k] + (1 if _right(Xr[i, feat[k]], thr[k], cmask[k]) else 0)
            acc += value[o + node]
        out[i] = acc / n_trees
    return out


# --- the forest --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Forest:
    """A grown forest: flat node arrays, OOB predictions and per-tree importances.

    Attributes
    ----------
    binner : the feature binning used to grow it (new data is binned the same way).
    feat, thr, mask, left, value : node arrays of all trees, tree ``t`` at
        ``offsets[t]:offsets[t + 1]``; ``feat < 0`` marks a leaf, the right child is
        ``left + 1``, a row goes left when its code is ``<= thr``, or, at a categorical
        split (``mask != 0``), when bit ``code`` of ``mask`` is set.
    oob_prediction : (n,) mean OOB prediction per row (NaN for rows never out of bag).
    oob_count : (n,) number of trees for which the row was out of bag.
    perm_importance : (n_trees, p) per-tree increase of OOB MSE (zeros if not computed).
    impurity_importance : (n_trees, p) per-tree decrease of the residual sum of squares.
    """

    binner: Binner
    feat: np.ndarray
    thr: np.ndarray
    mask: np.ndarray
    left: np.ndarray
    value: np.ndarray
    offsets: np.ndarray
    oob_prediction: np.ndarray
    oob_count: np.ndarray
    perm_importance: np.ndarray
    impurity_importance: np.ndarray

    @property
    def n_trees(self) -> int:
        return len(self.offsets) - 1

    def predict(self, X: np.ndarray, n_jobs: int | None = None) -> np.ndarray:
        """Mean prediction of all trees for the rows of ``X`` (n, p)."""
        return self.predict_binned(self.binner.transform(X), n_jobs)

    def predict_binned(self, Xb: np.ndarray, n_jobs: int | None = None) -> np.ndarray:
        """Mean prediction of all trees for already binned (feature-major) rows."""
        Xr = np.ascontiguousarray(Xb.T)
        with _threads(n_jobs):
            return _predict(Xr, self.feat, self.thr, self.mask, self.left, self.value, self.offsets)


class _threads:
    """Context manager: run numba kernels on ``n_jobs`` threads, then restore."""

    def __init__(self, n_jobs: int | None):
        top = numba.config.NUMBA_NUM_THREADS
        if n_jobs is None or n_jobs == -1:
            self.n = top
        elif n_jobs < 0:
            self.n = max(1, top + 1 + n_jobs)
        else:
            self.n = max(1, min(int(n_jobs), top))

    def __enter__(self):
        self.old = numba.get_num_threads()
        numba.set_num_threads(self.n)
        # hand out trees one at a time: a thread slowed by other work does not hold up
        # the batch (results never depend on the schedule: each tree has its own slots)
        self.old_chunk = numba.set_parallel_chunksize(1)

    def __exit__(self, *exc):
        numba.set_parallel_chunksize(self.old_chunk)
        numba.set_num_threads(self.old)


def grow_forest(
    Xb: np.ndarray,
    binner: Binner,
    y: np.ndarray,
    *,
    n_trees: int,
    mtry: int,
    min_samples_leaf: int,
    seeds: np.ndarray,
    sample_weight: np.ndarray | None = None,
    importance: bool = False,
    n_jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    groups: np.ndarray | None = None,
    group_bootstrap: bool = False,
    level2: np.ndarray | None = None,
    level2_permutation: bool = True,
    min_groups_leaf: int = 0,
    categorical: np.ndarray | None = None,
) -> Forest:
    """Grow a forest on binned data ``Xb`` (feature-major, from ``binner.transform``).

    ``groups`` (n,) are group codes 0..m-1. With ``group_bootstrap`` each tree draws m
    whole groups with replacement, so a row is out of bag only when its whole group is.
    ``level2`` (p,) bool marks the features constant within every group: with
    ``level2_permutation`` the importance permutes them across OOB groups, and a split on
    one must leave ``min_groups_leaf`` distinct groups on each side. Without ``groups``
    all of these are ignored. ``categorical`` (p,) bool marks nominal features (at most 64
    codes): they are split on subsets of levels, never on the order of their codes.

    Trees are grown in batches of a fixed size so ``progress(done, total)`` can report
    between batches; every reduction runs in tree order, so the result depends on ``seeds``
    only, never on ``n_jobs``.
    """
    p, n = Xb.shape
    if groups is None:
        gcode, n_groups = np.zeros(n, np.int64), 0
    else:
        gcode = np.ascontiguousarray(groups, dtype=np.int64)
        n_groups = int(gcode.max()) + 1 if n else 0
    n_boot_groups = n_groups if group_bootstrap else 0
    l2 = np.zeros(p, np.bool_) if level2 is None else np.ascontiguousarray(level2, np.bool_)
    l2_perm = l2 if level2_permutation else np.zeros(p, np.bool_)
    min_groups = int(min_groups_leaf) if n_groups > 0 and l2.any() else 0
    cat = np.zeros(p, np.bool_) if categorical is None else np.asarray(categorical, np.bool_)
    if np.any(cat & (binner.n_bins > 64)):
        raise ValueError("a categorical feature may have at most 64 levels")
    y = np.ascontiguousarray(y, dtype=np.float64)
    sw = np.ones(n) if sample_weight is None else np.ascontiguousarray(sample_weight, float)
    nbins = binner.n_bins
    Xr = np.ascontiguousarray(Xb.T)
    weighted = sample_weight is not None and not np.all(sw == 1.0)
    min_leaf = max(1, int(min_samples_leaf))
    max_nodes = 2 * (n // min_leaf) + 1
    mtry = int(min(max(mtry, 1), p))
    parts: list[tuple[np.ndarray, ...]] = []
    oob_sum = np.zeros(n)
    oob_cnt = np.zeros(n, dtype=np.int64)
    imp_perm = np.zeros((n_trees, p))
    imp_node = np.zeros((n_trees, p))
    with _threads(n_jobs):
        for b0 in range(0, n_trees, _BATCH):
            nb = min(_BATCH, n_trees - b0)
            feat = np.empty((nb, max_nodes), np.int32)
            thr = np.zeros((nb, max_nodes), np.uint8)
            cmask = np.zeros((nb, max_nodes), np.uint64)
            left = np.zeros((nb, max_nodes), np.int32)
            value = np.zeros((nb, max_nodes))
            n_nodes = np.zeros(nb, np.int64)
            oob_pred = np.full((nb, n), np.nan)
            _grow_batch(
                Xb, Xr, nbins, y, sw, weighted, seeds[b0 : b0 + nb], mtry, min_leaf,
                importance, feat, thr, cmask, left, value, n_nodes, imp_perm[b0 : b0 + nb],
                imp_node[b0 : b0 + nb], oob_pred, gcode, n_groups, n_boot_groups, l2, l2_perm,
                min_groups, cat
            )  # fmt: skip
            is_oob = ~np.isnan(oob_pred)
            oob_sum += np.where(is_oob, oob_pred, 0.0).sum(axis=0)
            oob_cnt += is_oob.sum(axis=0)
            keep = np.arange(max_nodes)[None, :] < n_nodes[:, None]
            parts.append((feat[keep], thr[keep], left[keep], value[keep], n_nodes, cmask[keep]))
            if progress is not None:
                progress(b0 + nb, n_trees)
    sizes = np.concatenate([q[4] for q in parts])
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        oob_prediction = np.where(oob_cnt > 0, oob_sum / np.maximum(oob_cnt, 1), np.nan)
    return Forest(
        binner=binner,
        feat=np.concatenate([q[0] for q in parts]),
        thr=np.concatenate([q[1] for q in parts]),
        mask=np.concatenate([q[5] for q in parts]),
        left=np.concatenate([q[2] for q in parts]),
        value=np.concatenate([q[3] for q in parts]),
        offsets=offsets,
        oob_prediction=oob_prediction,
        oob_count=oob_cnt,
        perm_importance=imp_perm,
        impurity_importance=imp_node,
    )
