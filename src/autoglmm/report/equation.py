"""The fitted model's equation in the paper's form, as text, LaTeX or HTML.

    y_ij = b0 + b1·V1_ij + ... + bk·Va_ij·Vb_ij + b0j + b1j·Vs_ij + ε_ij,
    (b0j, b1j)' ~ N(0, G),  ε_ij ~ N(0, σ²)

Predictors are written with the V-numbers of the variable map (ranking order), so the equation,
Table 1 and the importance plot agree. Level-2 predictors carry the subscript j only. By default
the estimates are written in place of b0, b1, ...; ``estimates=False`` gives the symbolic form.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from autoglmm.report.tables import format_number, latex_escape
from autoglmm.report.terms import is_intercept, term_parts, v_numbers

__all__ = ["model_equation", "equation_model"]

KINDS = ("text", "latex", "html")


@dataclass(frozen=True)
class _Factor:
    v: str  # "V3", or a raw name when the predictor is unknown
    level: str | None
    level2: bool


@dataclass(frozen=True)
class _Term:
    coef: float | None  # None: the symbolic form
    symbol: str  # "b1", "b0j", ...
    factors: tuple[_Factor, ...]


def equation_model(result: Any, which: str | None = None) -> tuple[str, Any]:
    """The model an equation describes: ``which`` or, by default, the optimal model.

    When the ICC gate stopped the search there is no optimal model; the default then falls
    back to the most complete model that exists (normally the null model).
    """
    if which is not None:
        fit = getattr(result, which, None)
        if fit is None:
            raise ValueError(f"the search result has no {which} model")
        return which, fit
    for name in ("optimal", "preliminary", "base", "null"):
        fit = getattr(result, name, None)
        if fit is not None:
            return name, fit
    raise ValueError("the search result has no fitted model")


def model_equation(
    result: Any, kind: str = "text", which: str | None = None, estimates: bool = True
) -> str:
    """The equation of a model of the search, with G and σ².

    Parameters
    ----------
    result : a :class:`autoglmm.selection.SearchResult`.
    kind : ``"text"`` (Unicode, one line per part), ``"latex"`` (an amsmath ``align*``
        environment) or ``"html"`` (spans with sub/superscripts, no MathJax needed).
    which : ``"null"``, ``"base"``, ``"preliminary"`` or ``"optimal"``; default the optimal
        model (the null model when the ICC gate stopped the search).
    estimates : write the estimated coefficients; ``False`` writes b0, b1, ... instead.

    Examples
    --------
    >>> print(model_equation(result))                              # doctest: +SKIP
    y_ij = 512.3 + 8.123·V1_ij − 3.050·V2_ij + b0j + b1j·V1_ij + ε_ij
    (b0j, b1j)' ~ N(0, G),  G = [[84.30, 1.200], [1.200, 3.400]]
    ε_ij ~ N(0, σ²),  σ² = 1234
    """
    if kind not in KINDS:
        raise ValueError(f"unknown equation kind {kind!r}; use one of {', '.join(KINDS)}")
    _, fit = equation_model(result, which)
    fixed, random_terms, g = _terms(result, fit, estimates)
    family, link = _family_link(result, fit)
    sigma2 = getattr(fit, "sigma2", None) if family == "gaussian" else None
    render = {"text": _render_text, "latex": _render_latex, "html": _render_html}[kind]
    return render(fixed, random_terms, g, sigma2, family, link, estimates)


def _terms(
    result: Any, fit: Any, estimates: bool
) -> tuple[list[_Term], list[_Term], np.ndarray | None]:
    vmap = v_numbers(result)
    level2 = set(getattr(getattr(result, "sample", None), "level2", ()) or ())

    def factors(name: str) -> tuple[_Factor, ...]:
        if is_intercept(name):
            return ()
        return tuple(
            _Factor(vmap.get(p, p), level, p in level2) for p, level in term_parts(name, vmap)
        )

    fixef = pd.Series(fit.fixef, dtype=float)
    fixed = [
        _Term(float(v) if estimates else None, f"b{i}", factors(str(name)))
        for i, (name, v) in enumerate(fixef.items())
    ]
    cov_re = fit.cov_re if isinstance(fit.cov_re, dict) else {"g": fit.cov_re}
    if not cov_re:
        return fixed, [], None
    g = pd.DataFrame(next(iter(cov_re.values())))
    offset = 0 if any(is_intercept(str(n)) for n in g.index) else 1
    random_terms = [
        _Term(None, f"b{i + offset}j", factors(str(name))) for i, name in enumerate(g.index)
    ]
    return fixed, random_terms, g.to_numpy(dtype=float)


def _family_link(result: Any, fit: Any) -> tuple[str, str]:
    family = str(getattr(fit, "family", None) or getattr(result, "family", "gaussian"))
    link = getattr(fit, "link", None)
    if link is None:
        link = (getattr(result, "params", None) or {}).get("link")
    default = {"gaussian": "identity", "binomial": "logit", "poisson": "log"}
    return family, str(link or default.get(family, "identity"))


# --- text ----------------------------------------------------------------------------------


def _text_factor(f: _Factor) -> str:
    level = f"[{f.level}]" if f.level is not None else ""
    return f"{f.v}{level}_{'j' if f.level2 else 'ij'}"


def _text_product(t: _Term) -> str:
    return "·".join(_text_factor(f) for f in t.factors)


def _render_text(fixed, random_terms, g, sigma2, family, link, estimates) -> str:
    lhs = _lhs(family, link, "text")
    pieces: list[str] = []
    for i, t in enumerate(fixed):
        product = _text_product(t)
        if t.coef is None:
            body = t.symbol + ("·" + product if product else "")
            pieces.append(body if i == 0 else "+ " + body)
            continue
        value = format_number(abs(t.coef))
        body = value + ("·" + product if product else "")
        if i == 0:
            pieces.append(("−" if t.coef < 0 else "") + body)
        else:
            pieces.append(("− " if t.coef < 0 else "+ ") + body)
    for t in random_terms:
        product = _text_product(t)
        pieces.append("+ " + t.symbol + ("·" + product if product else ""))
    if family == "gaussian":
        pieces.append("+ ε_ij")
    lines = [_wrap(f"{lhs} = ", pieces, 96)]
    if g is not None and random_terms:
        symbols = ", ".join(t.symbol for t in random_terms)
        vec = f"({symbols})'" if len(random_terms) > 1 else symbols
        matrix = "[" + ", ".join("[" + ", ".join(_num(x) for x in row) + "]" for row in g) + "]"
        name = "G" if len(random_terms) > 1 else "τ00"
        lines.append(f"{vec} ~ N(0, {name}),  {name} = {matrix if len(g) > 1 else _num(g[0, 0])}")
    if family == "gaussian" and sigma2 is not None:
        lines.append(f"ε_ij ~ N(0, σ²),  σ² = {_num(sigma2)}")
    return "\n".join(lines)


def _wrap(head: str, pieces: list[str], width: int) -> str:
    lines, current = [], head
    indent = " " * (len(head) - 2)
    for piece in pieces:
        candidate = current + ("" if current.endswith("= ") else " ") + piece
        if len(candidate) > width and not current.endswith("= "):
            lines.append(current)
            current = indent + piece
        else:
            current = candidate
    lines.append(current)
    return "\n".join(lines)


def _num(x: float) -> str:
    return format_number(float(x)) if math.isfinite(float(x)) else str(x)


def _lhs(family: str, link: str, kind: str) -> str:
    if family == "gaussian":
        return {"text": "y_ij", "latex": "y_{ij}", "html": "<i>y</i><sub><i>ij</i></sub>"}[kind]
    mean = {
        "binomial": ("π_ij", r"\pi_{ij}", "<i>π</i><sub><i>ij</i></sub>"),
        "poisson": ("λ_ij", r"\lambda_{ij}", "<i>λ</i><sub><i>ij</i></sub>"),
    }.get(family, ("μ_ij", r"\mu_{ij}", "<i>μ</i><sub><i>ij</i></sub>"))
    text, latex, markup = mean
    if kind == "text":
        return f"{link}({text})"
    if kind == "latex":
        return rf"\operatorname{{{link}}}({latex})"
    return f"{html.escape(link)}({markup})"


# --- LaTeX ---------------------------------------------------------------------------------


def _latex_factor(f: _Factor) -> str:
    sub = "j" if f.level2 else "ij"
    base = r"\mathrm{" + latex_escape(f.v) + "}"
    if f.level is not None:
        base += r"^{[\text{" + latex_escape(f.level) + "}]}"
    return base + "_{" + sub + "}"


def _latex_symbol(symbol: str) -> str:
    return "b_{" + symbol[1:] + "}"


def _render_latex(fixed, random_terms, g, sigma2, family, link, estimates) -> str:
    pieces: list[str] = []
    for i, t in enumerate(fixed):
        product = r"\,".join(_latex_factor(f) for f in t.factors)
        if t.coef is None:
            body = _latex_symbol(t.symbol) + (r"\," + product if product else "")
            pieces.append(body if i == 0 else "+ " + body)
            continue
        body = format_number(abs(t.coef)) + (r"\," + product if product else "")
        sign = ("-" if t.coef < 0 else "") if i == 0 else ("- " if t.coef < 0 else "+ ")
        pieces.append(sign + body)
    for t in random_terms:
        product = r"\,".join(_latex_factor(f) for f in t.factors)
        pieces.append("+ " + _latex_symbol(t.symbol) + (r"\," + product if product else ""))
    if family == "gaussian":
        pieces.append(r"+ \varepsilon_{ij}")
    groups = [pieces[k : k + 4] for k in range(0, len(pieces), 4)]
    if len(groups) > 1 and len(groups[-1]) == 1:
        last = groups.pop()
        groups[-1] = groups[-1] + last
    chunks = [" ".join(g) for g in groups]
    lines = [_lhs(family, link, "latex") + " &= " + chunks[0]]
    lines += [r"&\quad " + c for c in chunks[1:]]
    if g is not None and random_terms:
        symbols = ", ".join(_latex_symbol(t.symbol) for t in random_terms)
        if len(random_terms) > 1:
            rows = r" \\ ".join(" & ".join(_num(x) for x in row) for row in g)
            lines.append(
                rf"\mathbf{{b}}_j = ({symbols})^\top &\sim N(\mathbf{{0}}, \mathbf{{G}}),\quad "
                rf"\mathbf{{G}} = \begin{{pmatrix}} {rows} \end{{pmatrix}}"
            )
        else:
            lines.append(rf"{symbols} &\sim N(0, \tau_{{00}}),\quad \tau_{{00}} = {_num(g[0, 0])}")
    if family == "gaussian" and sigma2 is not None:
        lines.append(rf"\varepsilon_{{ij}} &\sim N(0, \sigma^2),\quad \sigma^2 = {_num(sigma2)}")
    return "\\begin{align*}\n" + " \\\\\n".join(lines) + "\n\\end{align*}"


# --- HTML ----------------------------------------------------------------------------------


def _html_factor(f: _Factor) -> str:
    level = f"[{html.escape(f.level)}]" if f.level is not None else ""
    sub = "<i>j</i>" if f.level2 else "<i>ij</i>"
    return f'<span class="v">{html.escape(f.v)}</span>{level}<sub>{sub}</sub>'


def _html_symbol(symbol: str) -> str:
    return f"<i>b</i><sub>{html.escape(symbol[1:])}</sub>"


def _render_html(fixed, random_terms, g, sigma2, family, link, estimates) -> str:
    pieces: list[str] = []
    for i, t in enumerate(fixed):
        product = "·".join(_html_factor(f) for f in t.factors)
        if t.coef is None:
            body = _html_symbol(t.symbol) + ("·" + product if product else "")
            pieces.append(body if i == 0 else "+ " + body)
            continue
        body = format_number(abs(t.coef)) + ("·" + product if product else "")
        sign = ("\u2212" if t.coef < 0 else "") if i == 0 else ("\u2212 " if t.coef < 0 else "+ ")
        pieces.append(sign + body)
    for t in random_terms:
        product = "·".join(_html_factor(f) for f in t.factors)
        pieces.append("+ " + _html_symbol(t.symbol) + ("·" + product if product else ""))
    if family == "gaussian":
        pieces.append("+ <i>ε</i><sub><i>ij</i></sub>")
    terms = " ".join(f'<span class="term">{p}</span>' for p in pieces)
    lines = [f'<div class="eq-line">{_lhs(family, link, "html")} = {terms}</div>']
    if g is not None and random_terms:
        symbols = ", ".join(_html_symbol(t.symbol) for t in random_terms)
        if len(random_terms) > 1:
            body = "".join(
                "<tr>" + "".join(f"<td>{_num(x).replace('-', '−')}</td>" for x in row) + "</tr>"
                for row in g
            )
            lines.append(
                f'<div class="eq-line">(<span>{symbols}</span>)′ ~ <i>N</i>(0, <b>G</b>), '
                f'&nbsp; <b>G</b> = <table class="matrix">{body}</table></div>'
            )
        else:
            lines.append(
                f'<div class="eq-line">{symbols} ~ <i>N</i>(0, <i>τ</i><sub>00</sub>), &nbsp; '
                f"<i>τ</i><sub>00</sub> = {_num(g[0, 0])}</div>"
            )
    if family == "gaussian" and sigma2 is not None:
        lines.append(
            '<div class="eq-line"><i>ε</i><sub><i>ij</i></sub> ~ <i>N</i>(0, <i>σ</i>²), &nbsp; '
            f"<i>σ</i>² = {_num(sigma2)}</div>"
        )
    return '<div class="equation">' + "".join(lines) + "</div>"
