"""Mixed-effects random forest (MERF) and its OOB permutation importance.

- :mod:`autoglmm.forest.trees`: a binned numba regression forest with per-tree OOB
  permutation importance;
- :mod:`autoglmm.forest.em`: the closed-form EM updates of the random effects;
- :mod:`autoglmm.forest.merf`: :class:`MixedEffectsRandomForest`, a scikit-learn regressor;
- :mod:`autoglmm.forest.importance`: importance summaries of a grown forest.
"""
