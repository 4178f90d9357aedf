"""Age and sex: DICOM header values, the CSV of cases, and which source wins."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from subct.errors import SubctInputError
from subct.io.dicom_patient import parse_dicom_age, parse_dicom_date, patient_age_and_sex
from subct.norms.demographics import (
    Demographics,
    DemographicsOptions,
    from_volume_metadata,
    parse_sex,
    read_demographics_csv,
)


def test_dicom_age_strings_and_dates() -> None:
    assert parse_dicom_age("065Y") == pytest.approx(65.0)
    assert parse_dicom_age("018M") == pytest.approx(1.5)
    assert parse_dicom_age("052W") == pytest.approx(364 / 365.25)
    assert parse_dicom_age("") is None and parse_dicom_age("65") is None
    assert parse_dicom_date("20200229") is not None
    assert parse_dicom_date("20210229") is None and parse_dicom_date("2021-01-01") is None


def test_header_age_falls_back_to_birth_and_study_dates() -> None:
    dataset = Dataset()
    dataset.PatientAge = "071Y"
    dataset.PatientSex = "F"
    assert patient_age_and_sex(dataset) == {"dicom_patient_age_years": 71.0,
                                            "dicom_patient_sex": "F"}
    dataset = Dataset()
    dataset.PatientBirthDate = "19500101"
    dataset.StudyDate = "20200702"
    facts = patient_age_and_sex(dataset)
    assert facts["dicom_patient_age_years"] == pytest.approx(70.5, abs=0.01)
    assert facts["dicom_patient_sex"] is None
    assert patient_age_and_sex(Dataset()) == {"dicom_patient_age_years": None,
                                              "dicom_patient_sex": None}


def test_sex_words() -> None:
    assert parse_sex("F", "x") == "female" and parse_sex(" male ", "x") == "male"
    assert parse_sex("O", "x") is None and parse_sex("", "x") is None
    with pytest.raises(SubctInputError, match="sex 'X'"):
        parse_sex("X", "--sex")


def test_demographics_csv(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("\ufeffCase,Age,Sex\nscans/head.nii.gz,71,F\nother,,m\n\nthird,45.5,\n")
    table = read_demographics_csv(path)
    assert table["head"] == Demographics(71.0, "female", str(path), str(path))
    assert table["other"].age_years is None and table["other"].sex == "male"
    assert table["third"].sex is None
    for text, words in (("case,age,sex\nhead,seventy,F\n", ":2: age 'seventy'"),
                        ("case,age,sex\nhead,250,F\n", ":2: age 250"),
                        ("case,age,sex\nhead,70,F\nhead.nii.gz,71,F\n", "listed twice"),
                        ("name,weight\nhead,70\n", "needs a header"),
                        ("", "empty")):
        path.write_text(text)
        with pytest.raises(SubctInputError, match=words):
            read_demographics_csv(path)


def test_csv_row_then_flags_then_header_field_by_field() -> None:
    header = from_volume_metadata({"dicom_patient_age_years": 64.0, "dicom_patient_sex": "M"})
    assert header == Demographics(64.0, "male", "DICOM header", "DICOM header")
    options = DemographicsOptions(age_years=70.0, table={
        "a": Demographics(None, "female", None, "people.csv")})
    chosen = options.for_case("a", header)
    assert chosen == Demographics(70.0, "female", "--age", "people.csv")
    assert DemographicsOptions().for_case("b", header) == header
    assert DemographicsOptions().for_case("b", from_volume_metadata({})) == Demographics()


@pytest.mark.shared_data
def test_dicom_series_header_gives_age_and_sex(shared_data: Path, tmp_path: Path) -> None:
    from subct.io.dicom import load_dicom_series

    folder = tmp_path / "series"
    shutil.copytree(shared_data / "ct" / "dicom_ge_tilted", folder)
    for path in folder.glob("*.dcm"):
        dataset = pydicom.dcmread(path)
        dataset.PatientAge = "067Y"
        dataset.PatientSex = "F"
        dataset.save_as(path)
    volume = load_dicom_series(folder)
    assert volume.metadata["dicom_patient_age_years"] == 67.0
    assert volume.metadata["dicom_patient_sex"] == "F"
    assert from_volume_metadata(volume.metadata) == Demographics(67.0, "female",
                                                                 "DICOM header",
                                                                 "DICOM header")


def test_unreadable_demographics_files_are_named(tmp_path: Path) -> None:
    binary = tmp_path / "scan.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    for path, words in ((tmp_path / "missing.csv", "No such file"),
                        (tmp_path, "Is a directory"),
                        (binary, "codec can't decode")):
        with pytest.raises(SubctInputError, match=words) as error:
            read_demographics_csv(path)
        assert str(path) in str(error.value)


def test_info_says_what_the_dicom_header_holds_for_the_norms() -> None:
    import numpy as np

    from subct.cli.info_command import format_summary
    from subct.io.summary import VolumeSummary

    def lines(age: float | None, sex: str | None) -> str:
        summary = VolumeSummary("series", (2, 2, 2), (1.0, 1.0, 1.0), "RAS",
                                np.eye(4).tolist(), "int16", 0.0, 1.0, "DICOM series 1",
                                {"dicom_series_number": 1, "dicom_patient_age_years": age,
                                 "dicom_patient_sex": sex})
        return next(line for line in format_summary(summary) if "patient" in line)

    assert "age 67 y, sex F" in lines(67.0, "F")
    assert "no age or sex in the header" in lines(None, None)
