"""The normative models: the carried parameters reproduce CentileBrain's R objects, and the
z-score, percentile and band follow their definitions."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from subct.norms.models import centilebrain_norms, percentile_of

#: Predictions of R's own model objects (readRDS + model.matrix on the fitted formula) at
#: five ages (scripts/reference_centilebrain_predictions.R).
R_PREDICTIONS = Path(__file__).parents[1] / "data" / "centilebrain_r_predictions.csv"


def test_predictions_match_the_published_r_models() -> None:
    source = centilebrain_norms()
    rows = list(csv.DictReader(R_PREDICTIONS.open()))
    assert len(rows) == 2 * 14 * 5
    for row in rows:
        model = source.model(row["sex"], row["structure"])  # type: ignore[arg-type]
        assert model is not None, row
        assert model.expected_mm3(float(row["age_years"])) == pytest.approx(
            float(row["predicted_mm3"]), abs=1e-3), row


def test_every_structure_has_a_plausible_model_for_both_sexes() -> None:
    source = centilebrain_norms()
    assert len(source.structures) == 14
    assert "Brain-Stem" not in source.structures
    for sex in ("female", "male"):
        for name in source.structures:
            model = source.model(sex, name)  # type: ignore[arg-type]
            assert model is not None
            assert model.cohort_size > 16_000  # CentileBrain: 19 k women, 17 k men
            # the residual spread is a fraction of the volume, the volume adult-sized
            assert 0.05 < model.rmse_mm3 / model.expected_mm3(50.0) < 0.3, (sex, name)
    female = source.model("female", "Left-Thalamus")
    male = source.model("male", "Left-Thalamus")
    assert female is not None and male is not None
    assert male.expected_mm3(50.0) > female.expected_mm3(50.0)  # men's larger heads
    assert female.expected_mm3(85.0) < female.expected_mm3(30.0)  # ageing atrophy


def test_z_percentile_and_band_follow_their_definitions() -> None:
    model = centilebrain_norms().model("female", "Left-Hippocampus")
    assert model is not None
    expected = model.expected_mm3(70.0)
    assert model.z_score(expected, 70.0) == pytest.approx(0.0)
    assert model.z_score(expected - model.rmse_mm3, 70.0) == pytest.approx(-1.0)
    low, high = model.band_mm3(70.0)
    assert (high - low) / 2 == pytest.approx(1.96 * model.rmse_mm3, rel=1e-3)
    assert percentile_of(0.0) == pytest.approx(50.0)
    assert percentile_of(model.z_score(low, 70.0)) == pytest.approx(2.5, abs=1e-3)
    assert percentile_of(model.z_score(high, 70.0)) == pytest.approx(97.5, abs=1e-3)
    assert percentile_of(-1.0) == pytest.approx(100 * 0.5 * math.erfc(1 / math.sqrt(2)))
