"""A case's normative record: percentiles when age and sex are known, reasons otherwise."""

from __future__ import annotations

from subct.norms.assess import NOT_COVERED, normative_assessment
from subct.norms.chart import centile_chart_svg, percentile_text
from subct.norms.demographics import Demographics
from subct.norms.models import centilebrain_norms

VOLUMES = {"Left-Thalamus": 6000.0, "Right-Hippocampus": 2500.0, "Brain-Stem": 19000.0,
           "Left-Putamen": None}


def test_known_age_and_sex_give_percentiles_where_a_norm_exists() -> None:
    record = normative_assessment(VOLUMES, Demographics(72.0, "male", "--age", "--sex"))
    assert record["available"] and record["reason"] is None
    assert record["adjusted_for"] == ["age", "sex"]
    thalamus = record["structures"]["Left-Thalamus"]
    model = centilebrain_norms().model("male", "Left-Thalamus")
    assert model is not None
    assert thalamus["z"] == round(model.z_score(6000.0, 72.0), 2)
    assert thalamus["band_mm3"][0] < thalamus["expected_mm3"] < thalamus["band_mm3"][1]
    # 2.5 cm³ of right hippocampus at 72 is far below the male norm
    assert record["structures"]["Right-Hippocampus"]["percentile"] < 1.0
    stem = record["structures"]["Brain-Stem"]  # from the braincharts models
    assert stem["source"] == "braincharts" and stem["band_mm3"][0] < 19000.0 < stem["band_mm3"][1]
    assert thalamus["source"] == "CentileBrain"
    assert record["structures"]["Left-Putamen"] == {"reason": "volume not measured"}
    assert record["intracranial_volume"] == {"reason": "volume not measured"}  # none given
    assert {s["name"] for s in record["sources"]} == {"CentileBrain", "braincharts"}
    unknown = normative_assessment({"Left-Choroid-Plexus": 900.0}, Demographics(72.0, "male"),
                                   intracranial_volume_mm3=1.6e6)
    assert unknown["structures"]["Left-Choroid-Plexus"] == {"reason": NOT_COVERED}
    assert 20.0 < unknown["intracranial_volume"]["percentile"] < 80.0  # a typical man's


def test_unknown_or_out_of_range_demographics_give_a_reason_not_a_guess() -> None:
    for people, words in ((Demographics(None, "female"), "age unknown"),
                          (Demographics(50.0, None), "sex unknown"),
                          (Demographics(), "age and sex unknown"),
                          (Demographics(95.0, "female"), "outside the normative cohort")):
        record = normative_assessment(VOLUMES, people)
        assert not record["available"]
        assert words in record["reason"]
        assert record["structures"] == {}


def test_centile_chart_is_svg_with_the_case_where_it_belongs() -> None:
    import xml.etree.ElementTree as ElementTree

    young = centile_chart_svg("Left-Caudate", "female", 20.0, 3500.0, 50.0)
    old = centile_chart_svg("Left-Caudate", "female", 80.0, 2000.0, 1.0, flagged=True)
    ventricle = centile_chart_svg("Left-Lateral-Ventricle", "male", 75.0, 20000.0, 60.0)
    ElementTree.fromstring(ventricle)
    dots = []
    for svg in (young, old):
        root = ElementTree.fromstring(svg)
        circle = root.find("{http://www.w3.org/2000/svg}circle")
        assert circle is not None
        dots.append((float(circle.get("cx", 0)), float(circle.get("cy", 0)),
                     circle.get("fill")))
    assert dots[1][0] > dots[0][0]  # older: further right
    assert dots[1][2] == "none"  # flagged: hollow
    assert "(QC)" in old
    assert percentile_text(0.02) == "<0.1" and percentile_text(99.95) == ">99.9"
    assert percentile_text(42.04) == "42.0"


def test_structures_a_qc_flag_disqualifies_get_a_reason_not_a_percentile() -> None:
    from subct.norms.assess import withheld_structures

    flags = [{"code": "cut_by_field_of_view", "structures": ["Left-Thalamus"]},
             {"code": "asymmetry", "structures": ["Right-Hippocampus"]}]
    withheld = withheld_structures(flags)
    assert set(withheld) == {"Left-Thalamus"}  # an asymmetry keeps its percentile
    record = normative_assessment(VOLUMES, Demographics(60.0, "female"), withheld)
    assert record["structures"]["Left-Thalamus"] == {
        "reason": "cut by the edge of the scan: the volume is a lower bound"}
    assert "percentile" in record["structures"]["Right-Hippocampus"]


def test_segmentation_result_offers_its_normative_record() -> None:
    from subct.inference.config import InferenceConfig
    from subct.inference.model import load_model
    from subct.inference.pipeline import segment_volume
    from subct.norms.assess import MERGED
    from tests.support.phantom import analytic_head_phantom
    from tests.support.tiny_phantom_unet import FIXTURE

    model = load_model(FIXTURE, "cpu", precision="fp32")  # a merged-scheme model
    result = segment_volume(analytic_head_phantom(spacing_mm=4.0).ct, model,
                            InferenceConfig(scheme="merged"))
    record = result.normative(64, "M")
    assert record["available"]
    assert record["demographics"]["age_source"] == "the age_years argument"
    assert set(record["structures"]) == set(result.volumes_mm3)
    assert record["structures"]["Thalamus"] == {"reason": MERGED}
    assert not result.normative()["available"]  # a NIfTI phantom carries no age or sex


def test_chart_frames_are_defined_once_and_referenced_by_every_chart() -> None:
    import re

    from subct.norms.chart import chart_symbols_svg, symbol_id

    charts = [centile_chart_svg("Brain-Stem", "male", age, 20000.0, 40.0) for age in (30, 80)]
    page = chart_symbols_svg({("Brain-Stem", "male"), ("Left-Thalamus", "female")})
    defined = re.findall(r"<symbol id='([^']+)'", page)
    assert sorted(defined) == sorted([symbol_id("Brain-Stem", "male"),
                                      symbol_id("Left-Thalamus", "female")])
    for chart in charts:
        assert re.findall(r" href='#([^']+)'", chart) == [symbol_id("Brain-Stem", "male")]
        assert "<polygon" not in chart  # the band lives in the shared frame only
    assert chart_symbols_svg(set()) == ""
