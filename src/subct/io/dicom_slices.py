"""Slice completeness of a DICOM series: missing slices and corrupt files.

dcm2niix converts whatever slices a folder holds: a series with slices missing becomes a
volume with a hole that it silently equalises away (left hippocampus 2490 → 1143 mm³ in
issue 25's probe), and a truncated file gives a warning that names no file. Before the
conversion is used, every file of the chosen series is read here with pydicom: a file
that starts as DICOM but cannot be read whole is refused by name, and the gaps between
slice positions (along the slice normal, mm) are compared with each slice's thickness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subct.errors import SubctInputError

#: A gap longer than this many slice thicknesses means slices are missing.
MISSING_GAP_FACTOR = 1.5


@dataclass(frozen=True)
class SliceGaps:
    """Slice positions of one series, summarised.

    Attributes:
        slices: files (slices) of the series.
        missing_slices: estimated slices missing inside the covered range.
        largest_missing_mm: the longest stretch without a slice beyond the normal
            spacing (gap − thickness, mm); 0 when none is missing.
        slice_thickness_mm: the thickness of the slices beside that stretch.
    """

    slices: int
    missing_slices: int
    largest_missing_mm: float
    slice_thickness_mm: float

    def as_metadata(self) -> dict[str, float | int]:
        return {"slices": self.slices, "missing_slices": self.missing_slices,
                "largest_missing_mm": round(self.largest_missing_mm, 2),
                "slice_thickness_mm": round(self.slice_thickness_mm, 2)}


def _read_header(path: Path) -> object | None:
    """The header of a DICOM file (values over 1 KiB, the pixels, are not read), None for
    a file that is not DICOM; a DICOM file that is corrupt, or whose pixel data the file
    is too short to hold (truncated), is refused by name."""
    import pydicom  # lazy: only DICOM inputs need it
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path, defer_size=1024)  # dcm2niix reads the pixels
    except InvalidDicomError:
        return None
    except Exception as error:  # pydicom raises many types for a broken file
        raise SubctInputError(path, f"corrupt DICOM file ({type(error).__name__}: {error})"
                              ) from error
    if "PixelData" in dataset and "Rows" in dataset and "Columns" in dataset and \
            dataset.file_meta.TransferSyntaxUID.is_compressed is False:
        expected = int(dataset.Rows) * int(dataset.Columns) * \
            int(dataset.get("BitsAllocated", 16)) // 8 * int(dataset.get("SamplesPerPixel", 1))
        # the pixel value starts at the element's file position; the file must hold it all
        start = dataset.get_item("PixelData").file_tell
        available = path.stat().st_size - (start or 0)
        if start is not None and available < expected:
            raise SubctInputError(path, f"truncated DICOM file: {available} of {expected} "
                                        "bytes of pixel data")
    return dataset


def refuse_corrupt_files(folder: Path) -> None:
    """Raise naming the first DICOM file in ``folder`` that cannot be read whole."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        _read_header(path)


def series_uid_of_stem(stem: str) -> str | None:
    """The series instance UID in a dcm2niix output name ``<number>_<uid>``."""
    match = re.search(r"_(\d+(?:\.\d+)+)$", stem)
    return match.group(1) if match else None


def slice_gaps(folder: Path, series_uid: str | None) -> SliceGaps | None:
    """Gaps of the series ``series_uid`` (every DICOM image when None) in ``folder``;
    None when its slices carry no position or orientation."""
    positions: list[tuple[float, float]] = []  # (position along the normal, thickness)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        dataset = _read_header(path)
        if dataset is None or (series_uid and getattr(dataset, "SeriesInstanceUID", None)
                               != series_uid):
            continue
        orientation = getattr(dataset, "ImageOrientationPatient", None)
        position = getattr(dataset, "ImagePositionPatient", None)
        if orientation is None or position is None:
            return None
        cosines = np.asarray(orientation, dtype=np.float64)
        normal = np.cross(cosines[:3], cosines[3:])
        thickness = float(getattr(dataset, "SliceThickness", 0) or 0)
        positions.append((float(normal @ np.asarray(position, dtype=np.float64)), thickness))
    if len(positions) < 3:
        return None
    positions.sort()
    places = np.asarray([p for p, _ in positions])
    thicknesses = np.asarray([t for _, t in positions])
    gaps = np.diff(places)
    typical = float(np.median(gaps[gaps > 1e-3])) if (gaps > 1e-3).any() else 0.0
    # each gap against the thicker of its two slices (series mix thicknesses)
    expected = np.maximum(thicknesses[:-1], thicknesses[1:])
    expected = np.where(expected > 0, expected, typical)
    missing = gaps > MISSING_GAP_FACTOR * expected
    if not missing.any():
        return SliceGaps(len(positions), 0, 0.0, float(np.median(expected)))
    spans = gaps[missing] - expected[missing]
    count = int(np.sum(np.round(gaps[missing] / expected[missing]) - 1))
    worst = int(np.argmax(spans))
    return SliceGaps(len(positions), max(count, 1), float(spans[worst]),
                     float(expected[missing][worst]))
