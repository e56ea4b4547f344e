"""The shipped data sets: loadable by name, equal to the lme4 reference files they came from."""

from __future__ import annotations

import pandas as pd
import pytest

import autoglmm
from autoglmm.reference_data import DATASETS, load


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_shipped_data_equals_the_reference_file(name, reference_data):
    shipped = autoglmm.datasets.load(name)
    pd.testing.assert_frame_equal(shipped, reference_data(f"{name}.csv"))


def test_sleepstudy_fits_as_lme4_fits_it(lme4_reference):
    fit = autoglmm.fit("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    assert fit.loglik == pytest.approx(lme4_reference["sleepstudy_ml"]["logLik"], abs=1e-5)


def test_unknown_name_lists_the_names():
    with pytest.raises(autoglmm.UsageError, match="use one of cbpp, contraception, exam"):
        load("sleep")


def test_each_load_is_a_fresh_frame():
    a = load("cbpp")
    a.iloc[0, 0] = -1
    assert load("cbpp").iloc[0, 0] != -1
