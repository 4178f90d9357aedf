"""The braincharts models (lateral ventricles, brainstem, ICV): the carried parameters
reproduce PCNtoolkit's own predictions, and the site mixture behaves as a distribution."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from subct.norms.braincharts import SiteMixtureModel, braincharts_regressions
from subct.norms.models import ICV_KEY, find_model

#: PCNtoolkit 0.26's ``BLR.predict`` on the original pickles with the design rows of its
#: ``create_design_matrix`` (the ``bspline`` package's basis), at 3 ages, 2 sexes and 3
#: of the 82 sites (scripts/reference_braincharts_predictions.py).
REFERENCE = Path(__file__).parents[1] / "data" / "braincharts_pcntoolkit_predictions.csv"
NAMES = {"EstimatedTotalIntraCranialVol": ICV_KEY}


def test_site_predictions_match_pcntoolkit() -> None:
    models, _ = braincharts_regressions()
    rows = list(csv.DictReader(REFERENCE.open()))
    assert len(rows) == 54
    for row in rows:
        model = models[NAMES.get(row["measure"], row["measure"])]
        means, variances = model.site_moments(float(row["age_years"]), row["sex"])
        site = int(row["site"])
        assert means[site] == pytest.approx(float(row["mean_warped"]), abs=1e-7), row
        assert variances[site] == pytest.approx(float(row["variance_warped"]), rel=1e-7), row


def test_warp_round_trips_and_the_mixture_is_a_distribution() -> None:
    models, _ = braincharts_regressions()
    ventricle = models["Left-Lateral-Ventricle"]
    volumes = np.array([500.0, 8000.0, 60000.0])
    assert np.allclose(ventricle.unwarp(ventricle.warp(volumes)), volumes)
    model = SiteMixtureModel(ventricle, "female")
    percentiles = [model.percentile(v, 70.0) for v in (2000.0, 12000.0, 60000.0)]
    assert percentiles == sorted(percentiles) and 0 < percentiles[0] < percentiles[-1] < 100
    median = model.expected_mm3(70.0)
    assert model.percentile(median, 70.0) == pytest.approx(50.0, abs=0.01)
    low, high = model.band_mm3(70.0)
    assert model.percentile(low, 70.0) == pytest.approx(2.5, abs=0.01)
    assert model.percentile(high, 70.0) == pytest.approx(97.5, abs=0.01)
    assert model.z_score(median, 70.0) == pytest.approx(0.0, abs=1e-3)
    # ventricles grow with age; men's heads and brainstems are larger
    assert model.expected_mm3(80.0) > 1.5 * model.expected_mm3(30.0)
    for name in ("Brain-Stem", ICV_KEY):
        female, male = find_model("female", name), find_model("male", name)
        assert female is not None and male is not None
        assert male[0].expected_mm3(50.0) > female[0].expected_mm3(50.0)
        assert male[1].name == "braincharts"
    icv = find_model("female", ICV_KEY)
    assert icv is not None
    assert 1.3e6 < icv[0].expected_mm3(50.0) < 1.6e6  # FreeSurfer eTIV of women
