"""The model equation in the paper's form, for a model whose numbers are known."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pandas as pd
import pytest

from autoglmm.report.equation import model_equation
from autoglmm.report.tables import format_number
from autoglmm.report.terms import v_numbers


def known_result(family: str = "gaussian", link: str = "identity") -> SimpleNamespace:
    """A result whose optimal model is written out by hand below.

    Ranking: ses (V1), conf (V2), sch (V3, level 2), girl (V4, categorical).
    Model: 500 + 8·ses − 3.25·conf + 12·sch + 2·girl[yes] + 1.5·ses·conf + (1 + ses | school).
    """
    names = ["(Intercept)", "ses"]
    fit = SimpleNamespace(
        fixef=pd.Series(
            [500.0, 8.0, -3.25, 12.0, 2.0, 1.5],
            index=["(Intercept)", "ses", "conf", "sch", "C(girl)[T.yes]", "ses:conf"],
        ),
        cov_re={"school": pd.DataFrame([[100.0, -10.0], [-10.0, 4.0]], index=names, columns=names)},
        sigma2=2500.0 if family == "gaussian" else None,
        family=family,
        link=link,
        formula="y ~ ses + conf + sch + C(girl) + ses:conf + (1 + ses | school)",
    )
    ranking = pd.DataFrame({"predictor": ["ses", "conf", "sch", "girl"], "importance": 1.0})
    return SimpleNamespace(
        ranking=ranking,
        steps=(),
        sample=SimpleNamespace(level2=("sch",), labels={}),
        family=family,
        params={},
        null=fit,
        base=fit,
        preliminary=fit,
        optimal=fit,
    )


def test_text_equation_of_a_known_model():
    assert model_equation(known_result(), "text").splitlines() == [
        "y_ij = 500.0 + 8.000·V1_ij − 3.250·V2_ij + 12.00·V3_j + 2.000·V4[yes]_ij"
        " + 1.500·V1_ij·V2_ij",
        "     + b0j + b1j·V1_ij + ε_ij",
        "(b0j, b1j)' ~ N(0, G),  G = [[100.0, -10.00], [-10.00, 4.000]]",
        "ε_ij ~ N(0, σ²),  σ² = 2500",
    ]


def test_symbolic_equation_numbers_the_coefficients():
    text = model_equation(known_result(), "text", estimates=False)
    assert text.splitlines()[:2] == [
        "y_ij = b0 + b1·V1_ij + b2·V2_ij + b3·V3_j + b4·V4[yes]_ij + b5·V1_ij·V2_ij + b0j"
        " + b1j·V1_ij",
        "     + ε_ij",
    ]


def test_latex_equation_of_a_known_model():
    assert model_equation(known_result(), "latex") == "\n".join(
        [
            r"\begin{align*}",
            r"y_{ij} &= 500.0 + 8.000\,\mathrm{V1}_{ij} - 3.250\,\mathrm{V2}_{ij}"
            r" + 12.00\,\mathrm{V3}_{j} \\",
            r"&\quad + 2.000\,\mathrm{V4}^{[\text{yes}]}_{ij}"
            r" + 1.500\,\mathrm{V1}_{ij}\,\mathrm{V2}_{ij} + b_{0j} + b_{1j}\,\mathrm{V1}_{ij}"
            r" + \varepsilon_{ij} \\",
            r"\mathbf{b}_j = (b_{0j}, b_{1j})^\top &\sim N(\mathbf{0}, \mathbf{G}),\quad "
            r"\mathbf{G} = \begin{pmatrix} 100.0 & -10.00 \\ -10.00 & 4.000 \end{pmatrix} \\",
            r"\varepsilon_{ij} &\sim N(0, \sigma^2),\quad \sigma^2 = 2500",
            r"\end{align*}",
        ]
    )


def test_binomial_equation_has_a_link_and_no_residual():
    text = model_equation(known_result("binomial", "logit"), "text")
    assert text.startswith("logit(π_ij) = 500.0 + 8.000·V1_ij")
    assert "ε" not in text and "σ²" not in text
    latex = model_equation(known_result("binomial", "probit"), "latex")
    assert r"\operatorname{probit}(\pi_{ij}) &= 500.0" in latex


def test_html_equation_uses_subscripts_and_the_same_v_numbers():
    html = model_equation(known_result(), "html")
    assert html.startswith('<div class="equation">')
    assert '<span class="v">V3</span><sub><i>j</i></sub>' in html
    assert "\u2212 3.250·" in html  # typographic minus
    assert '<table class="matrix"><tr><td>100.0</td><td>−10.00</td></tr>' in html


def test_random_intercept_only_writes_tau00(stopped):
    """A search stopped at the ICC gate: the null model's equation, with τ00 and σ²."""
    fit = stopped.null
    tau = fit.cov_re["school"].iloc[0, 0]
    lines = model_equation(stopped).splitlines()
    assert lines[0] == f"y_ij = {format_number(fit.fixef.iloc[0])} + b0j + ε_ij"
    assert lines[1] == f"b0j ~ N(0, τ00),  τ00 = {format_number(tau)}"
    assert lines[2] == f"ε_ij ~ N(0, σ²),  σ² = {format_number(fit.sigma2)}"
    with pytest.raises(ValueError, match="no optimal model"):
        model_equation(stopped, which="optimal")
    with pytest.raises(ValueError, match="unknown equation kind"):
        model_equation(stopped, "word")


def test_search_result_equation_delegates_here(searched):
    assert searched.equation("latex") == model_equation(searched, "latex")
    slopes = searched.optimal_terms["random_slopes"]
    v = v_numbers(searched)[slopes[0]]
    assert f"+ b0j + b1j·{v}_ij" in searched.equation()


@pytest.mark.parametrize("which", ["searched", "hand_result", "stopped"])
def test_latex_is_well_formed(which, request):
    """No TeX installation here: check what breaks compilation, braces and environments."""
    tex = model_equation(request.getfixturevalue(which), "latex")
    depth = 0
    for ch in tex.replace(r"\{", "").replace(r"\}", ""):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    begins = re.findall(r"\\begin\{(\w+\*?)\}", tex)
    ends = re.findall(r"\\end\{(\w+\*?)\}", tex)
    assert begins and begins[0] == "align*" and sorted(begins) == sorted(ends)
    for line in tex.splitlines()[1:-1]:
        assert line.count("&") - line.count(r"\&") - _matrix_amps(line) == 1  # one alignment point
    assert not re.search(r"(?<!\\)_[A-Za-z0-9]{2}", tex)  # a multi-letter subscript is braced


def _matrix_amps(line: str) -> int:
    matrix = re.search(r"\\begin\{pmatrix\}(.*)\\end\{pmatrix\}", line)
    return matrix.group(1).count("&") if matrix else 0
