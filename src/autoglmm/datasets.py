"""Built-in TIMSS-like data with a known true model, for the demo, tests and benchmarks.

:func:`simulate_lsa` draws students nested in schools the way a large-scale assessment
file looks: hundreds of Likert-type questionnaire items in correlated blocks, a few
continuous student variables, school-level items (some correlated with the school effect
but without any true effect: a trap for a search that ignores the grouping), a few items
with heavy missingness, and some schools with fewer than 20 students. The outcome follows
a known two-level model with about 18 true predictors, one interaction and two correlated
random slopes, so a search can be scored against the truth (:func:`recovery`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from autoglmm.data import Labels
from autoglmm.errors import UsageError
from autoglmm.reference_data import load  # noqa: F401  (autoglmm.datasets.load)

__all__ = [
    "SimulatedLSA", "Truth", "load", "recovery", "simulate_lsa",
    "simulate_timss",  # noqa: F822 - lazy re-export of autoglmm.lsa.simulate (see the end)
    "truth_table",
]  # fmt: skip

# Questionnaire scales of a TIMSS-like student file: (prefix, label of the scale).
_BLOCKS = (
    ("like", "Students like learning mathematics"),
    ("conf", "Students confident in mathematics"),
    ("value", "Students value mathematics"),
    ("bully", "Student bullying"),
    ("belong", "Sense of school belonging"),
    ("homeres", "Home resources for learning"),
    ("tclar", "Instructional clarity"),
    ("tsupp", "Teacher support"),
    ("disc", "Classroom disorder"),
    ("engage", "Engaging teaching"),
    ("anx", "Mathematics anxiety"),
    ("effort", "Effort on homework"),
    ("parent", "Parental involvement"),
    ("digit", "Digital devices at home"),
    ("read", "Reading habits"),
    ("sleep", "Tiredness at school"),
    ("peer", "Peer relations"),
    ("ambit", "Educational ambition"),
    ("selfreg", "Self-regulation"),
    ("intmot", "Intrinsic motivation"),
    ("extmot", "Extrinsic motivation"),
    ("cls", "Classroom climate"),
    ("safety", "Feeling safe at school"),
    ("absent", "Absenteeism"),
    ("career", "Careers in science"),
)
_ITEMS_PER_BLOCK = 10
# School-level (principal questionnaire) items: the first two have a true effect, the next
# three are decoys correlated with the school effect, the rest are pure noise.
_SCHOOL_ITEMS = (
    ("sch_resources", "School resources for mathematics instruction"),
    ("sch_emphasis", "School emphasis on academic success"),
    ("sch_reputation", "Principal: school reputation in the community"),
    ("sch_waitlist", "Principal: length of the admission waiting list"),
    ("sch_parents", "Principal: parents' expectations"),
    ("sch_size", "Principal: school enrolment (standardized)"),
    ("sch_urban", "Principal: urbanicity of the school's area"),
    ("sch_building", "Principal: condition of the building"),
    ("sch_staff", "Principal: teacher turnover"),
    ("sch_library", "Principal: books in the school library"),
)
_N_TRUE_SCHOOL, _N_DECOYS = 2, 3
_CONTINUOUS = (
    ("ses", "Socio-economic status index"),
    ("study_hours", "Hours of mathematics study per week"),
    ("screen_time", "Hours of leisure screen time per day"),
    ("age", "Age of the student in years"),
)
# Gaussian model on the TIMSS scale (points). Logit-scale models divide by _LOGIT_SCALE.
_SIGMA = 50.0
_RE_SD = (30.0, 10.0, 8.0)  # intercept, slope of ses, slope of the confidence item
_RE_CORR = np.array([[1.0, 0.3, -0.2], [0.3, 1.0, 0.1], [-0.2, 0.1, 1.0]])
_LOGIT_SCALE = 25.0  # 1 logit = 25 points: residual sd pi/sqrt(3) ~ 2 logits ~ 45 points


@dataclass(frozen=True, eq=False)
class Truth:
    """The model that generated the outcome of a :class:`SimulatedLSA`.

    Coefficients are on the raw scale of the columns (Likert points, hours, SD units of
    ``ses``) and on the link scale for binomial. ``G`` is the covariance of
    (intercept, slope of ``slopes[0]``, slope of ``slopes[1]``) across schools.
    ``icc`` is G[0, 0] / (G[0, 0] + sigma2) for gaussian and G[0, 0] / (G[0, 0] + pi^2/3)
    for binomial (logit): the residual ICC at the predictors' zero point.
    """

    family: str
    outcome: str
    group: str
    intercept: float
    fixed: dict[str, float]
    interaction: tuple[str, str]
    interaction_coef: float
    slopes: tuple[str, str]
    G: pd.DataFrame
    sigma2: float | None
    icc: float
    level2: tuple[str, ...]
    decoys: tuple[str, ...]

    @property
    def terms(self) -> dict[str, list[str]]:
        """The true terms in the shape of ``SearchResult.optimal_terms``."""
        return {
            "fixed": list(self.fixed),
            "interactions": [":".join(self.interaction)],
            "random_slopes": list(self.slopes),
        }

    @property
    def formula(self) -> str:
        """The true model as an lme4-style formula."""
        fixed = " + ".join([*self.fixed, ":".join(self.interaction)])
        return f"{self.outcome} ~ {fixed} + (1 + {' + '.join(self.slopes)} | {self.group})"


@dataclass(frozen=True, eq=False)
class SimulatedLSA:
    """Simulated assessment data: ``data`` (one row per student), ``truth``, ``labels``."""

    data: pd.DataFrame
    truth: Truth
    labels: dict[str, str] = field(default_factory=dict)


def simulate_lsa(
    seed: int = 0,
    n_schools: int = 270,
    family: str = "gaussian",
    *,
    n_items: int = 230,
    n_school_items: int = 8,
    mean_school_size: float = 34.5,
    small_school_share: float = 0.1,
    n_true_items: int | None = None,
    n_missing_items: int = 3,
    loading: tuple[float, float] = (0.5, 0.7),
    school_effects: tuple[float, float] = (15.0, 12.0),
    decoy_corr: float = 0.6,
) -> SimulatedLSA:
    """Draw TIMSS-like student data from a known two-level model.

    Parameters
    ----------
    seed : seed of every random draw; the same seed gives identical data.
    n_schools : number of schools (about 8,700 students at the default 270).
    family : "gaussian" (a score, mean about 500) or "binomial" (0/1 "proficient", logit).
    n_items : number of student Likert items (1-4), in blocks of 10 correlated items.
    n_school_items : number of school-level items (at least 5: two true, three decoys).
    mean_school_size, small_school_share : sizes of regular schools and the share of
        schools with 8-19 students (dropped by the default ``min_group_size``).
    n_true_items : Likert items with a true effect besides the confidence item, one per
        block; default 12, or one per block when there are fewer than 13 blocks.
    n_missing_items : null items with 30% missing values (excluded by ``max_missing``).
    loading : range of the items' loadings on their block factor (uniform draws); higher
        loadings make the items of a block closer proxies of each other.
    school_effects : true effects (points per SD) of the two true school-level items.
    decoy_corr : correlation of the three decoy school items with the school effect; 0
        makes them pure school-level noise (they can still identify schools).

    Returns
    -------
    SimulatedLSA with the outcome ("math" or "proficient"), "school", "ses", ...

    Examples
    --------
    >>> sim = simulate_lsa(seed=1, n_schools=40, n_items=60)
    >>> sim.truth.formula.startswith("math ~ ")
    True
    """
    n_blocks = -(-n_items // _ITEMS_PER_BLOCK)
    if n_true_items is None:
        n_true_items = min(12, n_blocks - 1)
    _check_args(family, n_items, n_school_items, n_true_items, n_missing_items)
    rng = np.random.default_rng(seed)
    school = _school_index(rng, n_schools, mean_school_size, small_school_share)
    G = np.outer(_RE_SD, _RE_SD) * _RE_CORR
    u = rng.standard_normal((n_schools, 3)) @ np.linalg.cholesky(G).T
    cont = _continuous(rng, school, n_schools)
    items, item_names, item_labels = _likert_items(
        rng, school, n_schools, n_items, n_blocks, loading
    )
    sch, sch_names, sch_labels = _school_items(rng, u[:, 0] / _RE_SD[0], n_school_items, decoy_corr)
    columns = {**cont, **dict(zip(item_names, items.T, strict=True))}
    columns.update({name: sch[school, k] for k, name in enumerate(sch_names)})

    # true Likert items: one per block (never the confidence block, whose item is special)
    conf_item = f"conf_{rng.integers(1, _ITEMS_PER_BLOCK + 1):02d}"
    other_blocks = [b for b in range(n_blocks) if _BLOCKS[b][0] != "conf"]
    picked = rng.choice(other_blocks, size=n_true_items, replace=False)
    true_items = []
    for b in picked:
        size = min(_ITEMS_PER_BLOCK, n_items - b * _ITEMS_PER_BLOCK)
        true_items.append(f"{_BLOCKS[b][0]}_{rng.integers(1, size + 1):02d}")
    magnitudes = np.round(np.linspace(12.0, 6.0, n_true_items), 1)
    signs = rng.choice([-1.0, 1.0], size=n_true_items)
    fixed = {"ses": 8.0, conf_item: 15.0}
    fixed.update(
        {name: float(s * m) for name, s, m in zip(true_items, signs, magnitudes, strict=True)}
    )
    fixed.update({"study_hours": 6.0, "screen_time": -5.0})
    fixed.update({sch_names[0]: float(school_effects[0]), sch_names[1]: float(school_effects[1])})
    inter_coef = 5.0

    X = np.column_stack([columns[name] for name in fixed])
    lin = X @ np.array(list(fixed.values())) + inter_coef * columns["ses"] * columns[conf_item]
    lin = lin + u[school, 0] + u[school, 1] * columns["ses"] + u[school, 2] * columns[conf_item]
    slopes = ("ses", conf_item)
    outcome, y, intercept, sigma2, scale = _outcome(rng, family, lin)
    icc = G[0, 0] / (G[0, 0] + (sigma2 if sigma2 is not None else np.pi**2 / 3 * scale**2))

    _add_missing(rng, columns, item_names, set(fixed), n_missing_items)
    data = pd.DataFrame({outcome: y, "school": 1001 + school, **columns})
    re_names = ["(Intercept)", *slopes]
    truth = Truth(
        family=family,
        outcome=outcome,
        group="school",
        intercept=intercept,
        fixed={k: v / scale for k, v in fixed.items()},
        interaction=("ses", conf_item),
        interaction_coef=inter_coef / scale,
        slopes=slopes,
        G=pd.DataFrame(G / scale**2, index=re_names, columns=re_names),
        sigma2=sigma2,
        icc=float(icc),
        level2=tuple(sch_names[:_N_TRUE_SCHOOL]),
        decoys=tuple(sch_names[_N_TRUE_SCHOOL : _N_TRUE_SCHOOL + _N_DECOYS]) if decoy_corr else (),
    )
    labels = {outcome: _outcome_label(family), "school": "School ID"}
    labels.update(dict(_CONTINUOUS))
    labels.update(item_labels)
    labels.update(sch_labels)
    data.attrs["variable_labels"] = Labels(labels)  # as read_data keeps SPSS labels
    return SimulatedLSA(data=data, truth=truth, labels=labels)


def recovery(truth: Truth, terms: dict) -> dict[str, list[str]]:
    """Score a model's terms (``SearchResult.optimal_terms``) against the truth.

    Interactions compare as unordered pairs ("a:b" equals "b:a").

    Returns
    -------
    dict with ``found``, ``missed``, ``false`` (fixed effects and interactions), and
    ``slopes_found``, ``slopes_missed``, ``slopes_false``.
    """

    def key(term: str) -> str:
        return ":".join(sorted(term.split(":"))) if ":" in term else term

    true_terms = truth.terms
    want = [*true_terms["fixed"], *true_terms["interactions"]]
    got = [*terms.get("fixed", []), *terms.get("interactions", [])]
    got_keys = {key(t) for t in got}
    want_keys = {key(t) for t in want}
    slopes_got = list(terms.get("random_slopes", []))
    return {
        "found": [t for t in want if key(t) in got_keys],
        "missed": [t for t in want if key(t) not in got_keys],
        "false": [t for t in got if key(t) not in want_keys],
        "slopes_found": [s for s in truth.slopes if s in slopes_got],
        "slopes_missed": [s for s in truth.slopes if s not in slopes_got],
        "slopes_false": [s for s in slopes_got if s not in truth.slopes],
    }


def truth_table(truth: Truth, terms: dict, fit: object | None = None) -> pd.DataFrame:
    """The recovered model next to the true one, one row per true or found term.

    Columns: ``term``, ``kind`` (fixed, interaction, slope), ``true`` (coefficient, or the
    slope variance), ``estimate`` (from ``fit``, the model whose terms are ``terms``) and
    ``status`` ("found", "missed", "false addition", or "decoy added" for a decoy school
    item: it tracks the school effect, so it does predict school means although the
    generating model gives it no coefficient).
    """
    score = recovery(truth, terms)
    fixef = getattr(fit, "fixef", None)
    cov = getattr(fit, "cov_re", None)
    cov = cov.get(truth.group) if isinstance(cov, dict) else cov

    def coef(term: str) -> float:
        if fixef is None:
            return np.nan
        for name in (term, ":".join(reversed(term.split(":")))):
            if name in fixef.index:
                return float(fixef[name])
        return np.nan

    def slope_var(name: str) -> float:
        if cov is None or name not in cov.index:
            return np.nan
        return float(cov.loc[name, name])

    rows = []
    true_inter = ":".join(truth.interaction)
    for term, value in [*truth.fixed.items(), (true_inter, truth.interaction_coef)]:
        kind = "interaction" if ":" in term else "fixed"
        status = "found" if term in score["found"] else "missed"
        rows.append((term, kind, value, coef(term) if status == "found" else np.nan, status))
    for term in score["false"]:
        kind = "interaction" if ":" in term else "fixed"
        status = "decoy added" if term in truth.decoys else "false addition"
        rows.append((term, kind, 0.0, coef(term), status))
    for name in truth.slopes:
        status = "found" if name in score["slopes_found"] else "missed"
        rows.append((name, "slope", float(truth.G.loc[name, name]), slope_var(name), status))
    for name in score["slopes_false"]:
        rows.append((name, "slope", 0.0, slope_var(name), "false addition"))
    return pd.DataFrame(rows, columns=["term", "kind", "true", "estimate", "status"])


def _check_args(family, n_items, n_school_items, n_true_items, n_missing_items) -> None:
    if family not in ("gaussian", "binomial"):
        raise UsageError(f"simulate_lsa family must be 'gaussian' or 'binomial', not {family!r}")
    max_items = len(_BLOCKS) * _ITEMS_PER_BLOCK
    if not 20 <= n_items <= max_items:
        raise UsageError(f"n_items must be between 20 and {max_items}; got {n_items}")
    if not _N_TRUE_SCHOOL + _N_DECOYS <= n_school_items <= len(_SCHOOL_ITEMS):
        raise UsageError(f"n_school_items must be between 5 and {len(_SCHOOL_ITEMS)}")
    n_blocks = -(-n_items // _ITEMS_PER_BLOCK)
    if not 0 <= n_true_items <= n_blocks - 1:
        raise UsageError(f"n_true_items must be between 0 and {n_blocks - 1} for {n_items} items")
    if not 0 <= n_missing_items <= n_items - n_true_items - 1:
        raise UsageError("n_missing_items must leave the true items complete")


def _school_index(rng, n_schools: int, mean_size: float, small_share: float) -> np.ndarray:
    """Group code of every student: regular schools around ``mean_size``, some small ones."""
    if n_schools < 2:
        raise UsageError(f"n_schools must be at least 2; got {n_schools}")
    small = rng.random(n_schools) < small_share
    regular = np.maximum(np.rint(rng.normal(mean_size, 6.0, n_schools)), 20)
    sizes = np.where(small, rng.integers(8, 20, n_schools), regular).astype(int)
    return np.repeat(np.arange(n_schools), sizes)


def _continuous(rng, school: np.ndarray, n_schools: int) -> dict[str, np.ndarray]:
    """Continuous student variables; ``ses`` clusters strongly by school."""
    n = len(school)
    school_ses = rng.normal(0.0, 0.5, n_schools)
    ses = school_ses[school] + rng.normal(0.0, 0.85, n)
    return {
        "ses": np.round(ses, 3),
        "study_hours": np.round(rng.gamma(3.0, 0.6, n), 1),
        "screen_time": np.round(rng.gamma(2.5, 0.8, n), 1),
        "age": np.round(14.0 + rng.normal(0.0, 0.45, n), 2),
    }


def _likert_items(rng, school, n_schools, n_items, n_blocks, loading=(0.5, 0.7)):
    """Likert items 1-4: each loads on its block's factor; factors share a general factor."""
    n = len(school)
    general = rng.standard_normal(n)
    school_part = rng.normal(0.0, 0.3, (n_schools, n_blocks))
    factors = 0.35 * general[:, None] + 0.9 * rng.standard_normal((n, n_blocks))
    factors = factors + school_part[school]
    block_of = np.arange(n_items) // _ITEMS_PER_BLOCK
    loading = rng.uniform(loading[0], loading[1], n_items)
    noise = rng.standard_normal((n, n_items))
    latent = loading * factors[:, block_of] + np.sqrt(1.0 - loading**2) * noise
    latent = latent + rng.normal(0.0, 0.3, n_items)
    items = 1.0 + (latent[:, :, None] > np.array([-0.8, 0.0, 0.8])).sum(axis=2)
    names, labels = [], {}
    for k in range(n_items):
        prefix, label = _BLOCKS[block_of[k]]
        name = f"{prefix}_{k % _ITEMS_PER_BLOCK + 1:02d}"
        names.append(name)
        labels[name] = f"{label}: item {k % _ITEMS_PER_BLOCK + 1}"
    return items.astype(float), names, labels


def _school_items(rng, u0_std: np.ndarray, n_school_items: int, corr: float = 0.6):
    """School-level items (standardized); decoys correlate ``corr`` with the school effect."""
    n_schools = len(u0_std)
    values = rng.standard_normal((n_schools, n_school_items))
    decoys = slice(_N_TRUE_SCHOOL, _N_TRUE_SCHOOL + _N_DECOYS)
    values[:, decoys] = corr * u0_std[:, None] + np.sqrt(1.0 - corr**2) * values[:, decoys]
    items = _SCHOOL_ITEMS[:n_school_items]
    return np.round(values, 3), [n for n, _ in items], dict(items)


def _outcome(rng, family: str, lin: np.ndarray):
    """Outcome from the linear predictor: (name, y, intercept, sigma2, scale)."""
    if family == "gaussian":
        intercept = float(np.round(500.0 - lin.mean(), 3))
        y = np.round(intercept + lin + rng.normal(0.0, _SIGMA, len(lin)), 2)
        return "math", y, intercept, _SIGMA**2, 1.0
    intercept = float(np.round(-lin.mean() / _LOGIT_SCALE, 4))
    eta = intercept + lin / _LOGIT_SCALE
    y = (rng.random(len(lin)) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    return "proficient", y, intercept, None, _LOGIT_SCALE


def _add_missing(rng, columns: dict, item_names: list[str], keep: set, n_missing: int) -> None:
    """Blank 30% of a few null items in place (they exceed the default ``max_missing``)."""
    candidates = [name for name in item_names if name not in keep]
    for name in rng.choice(candidates, size=n_missing, replace=False):
        values = columns[name].copy()
        values[rng.random(len(values)) < 0.3] = np.nan
        columns[name] = values


def _outcome_label(family: str) -> str:
    if family == "gaussian":
        return "Mathematics achievement (plausible value)"
    return "Reached the intermediate benchmark (0/1)"


def __getattr__(name: str):  # re-exported lazily: autoglmm.lsa.simulate imports this module
    if name in ("simulate_timss", "SimulatedTIMSS"):
        from autoglmm.lsa import simulate

        return getattr(simulate, name)
    raise AttributeError(f"module 'autoglmm.datasets' has no attribute {name!r}")
