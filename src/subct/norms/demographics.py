"""Age and sex of a case, from where they can be had: a CSV of cases, ``--age``/``--sex``,
or the DICOM header (:mod:`subct.io.dicom_patient`).

Each field is taken from the first of those that has it, and the record says which.
Nothing is guessed: a field no source gives stays unknown, and without both age and sex
the normative percentiles are not computed (:mod:`subct.norms.assess` says why).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from subct.errors import SubctInputError
from subct.io.files import case_name
from subct.norms.models import Sex

#: Accepted spellings of sex (case-insensitive), as DICOM (0010,0040) and people write it.
_SEX_WORDS: dict[str, Sex | None] = {
    "f": "female", "female": "female", "w": "female", "woman": "female",
    "m": "male", "male": "male", "man": "male",
    "o": None, "other": None, "u": None, "unknown": None, "": None,
}
#: Plausible ages (years); anything else in a header or CSV is an error, not an age.
AGE_LIMITS_YEARS = (0.0, 125.0)
#: Column names of a demographics CSV (first match wins, case-insensitive).
CASE_COLUMNS = ("case", "case_id", "subject", "id")
AGE_COLUMNS = ("age", "age_years")
SEX_COLUMNS = ("sex", "gender")


@dataclass(frozen=True)
class Demographics:
    """What is known of a case's person.

    Attributes:
        age_years: age at the scan (years), None when unknown.
        sex: ``"female"``/``"male"``, None when unknown (or given as other).
        age_source: where the age came from (``"DICOM header"``, ``"--age"``, a CSV path).
        sex_source: where the sex came from.
    """

    age_years: float | None = None
    sex: Sex | None = None
    age_source: str | None = None
    sex_source: str | None = None

    def merged(self, fallback: Demographics) -> Demographics:
        """This, with each unknown field taken from ``fallback``."""
        age, age_source = ((self.age_years, self.age_source) if self.age_years is not None
                           else (fallback.age_years, fallback.age_source))
        sex, sex_source = ((self.sex, self.sex_source) if self.sex is not None
                           else (fallback.sex, fallback.sex_source))
        return Demographics(age, sex, age_source, sex_source)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any] | None) -> Demographics:
        """Inverse of :meth:`to_json_dict` (unknown for None or a malformed record)."""
        data = data or {}
        age, sex = data.get("age_years"), data.get("sex")
        return cls(float(age) if isinstance(age, int | float) else None,
                   sex if sex in ("female", "male") else None,
                   data.get("age_source"), data.get("sex_source"))

    def to_json_dict(self) -> dict[str, Any]:
        return {"age_years": None if self.age_years is None else round(self.age_years, 2),
                "sex": self.sex, "age_source": self.age_source,
                "sex_source": self.sex_source}


def parse_sex(text: str, where: str | Path) -> Sex | None:
    """``F``/``female``/``M``/``male`` (any case); ``O``/``other``/empty give None.

    Raises:
        SubctInputError: anything else (naming ``where``).
    """
    key = text.strip().lower()
    if key not in _SEX_WORDS:
        raise SubctInputError(where, f"sex {text!r} is not F/female or M/male (or O/empty "
                                     "for unknown)")
    return _SEX_WORDS[key]


def check_age(age_years: float, where: str | Path) -> float:
    """The age if plausible (0–125 years).

    Raises:
        SubctInputError: naming ``where`` otherwise.
    """
    low, high = AGE_LIMITS_YEARS
    if not (low <= age_years <= high):  # also refuses NaN
        raise SubctInputError(where, f"age {age_years:g} years is not between {low:g} and "
                                     f"{high:g}")
    return float(age_years)


def from_volume_metadata(metadata: dict[str, Any]) -> Demographics:
    """Age and sex a reader put in a volume's metadata (DICOM header:
    ``dicom_patient_age_years``, ``dicom_patient_sex``); unknown for other formats."""
    age = metadata.get("dicom_patient_age_years")
    sex = metadata.get("dicom_patient_sex")
    low, high = AGE_LIMITS_YEARS
    known_age = float(age) if isinstance(age, int | float) and low <= age <= high else None
    known_sex = _SEX_WORDS.get(str(sex).strip().lower()) if sex is not None else None
    return Demographics(known_age, known_sex,
                        "DICOM header" if known_age is not None else None,
                        "DICOM header" if known_sex is not None else None)


def read_demographics_csv(path: str | Path) -> dict[str, Demographics]:
    """Age and sex per case from a CSV with columns ``case``, ``age`` and ``sex`` (also
    ``case_id``/``subject``/``id``, ``age_years``, ``gender``); an empty cell is unknown.
    The case is matched to subct's case name (the input file name without extension,
    or the DICOM folder's name); a file name or path in the column is reduced to it
    (``scans/head.nii.gz`` → ``head``). Read once per file content (path, size, mtime).

    Raises:
        SubctInputError: unreadable file, missing columns, a bad age or sex (naming the
            line), or a case listed twice.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise SubctInputError(path, f"cannot read the demographics CSV ({error.strerror})"
                              ) from error
    return dict(_cached_table(path, stat.st_size, stat.st_mtime_ns))


@lru_cache(maxsize=8)
def _cached_table(path: Path, size: int, mtime_ns: int) -> dict[str, Demographics]:
    return _read_demographics_csv(path)


def _read_demographics_csv(path: Path) -> dict[str, Demographics]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            rows = list(csv.reader(stream))
    except (OSError, UnicodeDecodeError) as error:
        raise SubctInputError(path, f"cannot read the demographics CSV ({error})") from error
    if not rows:
        raise SubctInputError(path, "the demographics CSV is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    columns = [next((header.index(n) for n in names if n in header), None)
               for names in (CASE_COLUMNS, AGE_COLUMNS, SEX_COLUMNS)]
    if columns[0] is None or (columns[1] is None and columns[2] is None):
        raise SubctInputError(path, "the demographics CSV needs a header with columns "
                                    "case, age and/or sex")
    table: dict[str, Demographics] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{line}"
        cell = [row[i].strip() if i is not None and i < len(row) else "" for i in columns]
        if not cell[0]:
            raise SubctInputError(where, "no case name")
        name = case_name(cell[0])  # a file name or path names its case too
        if name in table:
            raise SubctInputError(where, f"case {name!r} is listed twice")
        try:
            age = check_age(float(cell[1]), where) if cell[1] else None
        except ValueError as error:
            raise SubctInputError(where, f"age {cell[1]!r} is not a number") from error
        sex = parse_sex(cell[2], where)
        table[name] = Demographics(age, sex, str(path) if age is not None else None,
                                   str(path) if sex is not None else None)
    return table


@dataclass(frozen=True)
class DemographicsOptions:
    """What the user gave: ``--age``/``--sex`` and ``--demographics CSV`` (read)."""

    age_years: float | None = None
    sex: Sex | None = None
    table: dict[str, Demographics] | None = None
    #: how the record names where ``age_years`` and ``sex`` came from
    given_as: tuple[str, str] = ("--age", "--sex")

    def for_case(self, case: str, header: Demographics) -> Demographics:
        """The case's age and sex: its CSV row, then ``--age``/``--sex``, then what the
        DICOM header said (:func:`from_volume_metadata`), field by field."""
        given = Demographics(self.age_years, self.sex,
                             self.given_as[0] if self.age_years is not None else None,
                             self.given_as[1] if self.sex is not None else None)
        row = (self.table or {}).get(case, Demographics())
        return row.merged(given).merged(header)
