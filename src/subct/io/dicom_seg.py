"""DICOM SEG of a segmentation, on the original slices of the source DICOM series.

subct segments DICOM series through dcm2niix's reconstruction (gantry tilt corrected,
even slice spacing), so the label map is not on the scanner's slices. PACS, XNAT, OHIF
and radiotherapy systems need the labels on the slices they hold: for every source
image, each pixel centre is mapped to world coordinates (ImagePositionPatient,
ImageOrientationPatient, PixelSpacing; LPS) and takes the label of the nearest voxel of
the label map (tilted and unevenly spaced series included). The SEG (highdicom,
``BINARY``, one segment per structure, named, with SNOMED CT property codes and
FreeSurfer colours) references the source series and frames.

highdicom is an optional dependency (``pip install "subct[dicom]"``).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from subct import __version__
from subct.errors import SubctConfigError, SubctInputError
from subct.image.volume import Volume
from subct.io.writers import atomic_output
from subct.labels.colours import label_colour
from subct.labels.schemes import LabelScheme, get_scheme

LOG = logging.getLogger(__name__)

#: SNOMED CT code (pydicom's ``codes.SCT`` keyword) of each structure's property type.
STRUCTURE_CODES: dict[str, str] = {
    "Lateral-Ventricle": "LateralVentricle", "Lateral-Ventricles": "LateralVentricle",
    "Thalamus": "Thalamus", "Caudate": "CaudateNucleus", "Putamen": "Putamen",
    "Pallidum": "GlobusPallidus", "Hippocampus": "Hippocampus", "Amygdala": "Amygdala",
    "Accumbens-area": "NucleusAccumbens", "Brain-Stem": "BrainStem",
}


#: Type 2 patient and study attributes (may be empty, must be present) that a SEG copies
#: from its source; anonymised series often lack them.
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                       "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                       "AccessionNumber")


def source_series(folder: str | Path, series: str | None = None) -> list[Any]:
    """The DICOM datasets of the series in ``folder`` that subct segments (the largest
    CT series, or the one whose SeriesNumber or description matches ``series``), sorted
    along the slice normal."""
    import pydicom  # an optional dependency, as highdicom

    groups: dict[str, list[Any]] = {}
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        try:
            dataset = pydicom.dcmread(path)
        except Exception:  # not a DICOM file: other files may sit in the folder
            continue
        if "ImagePositionPatient" in dataset and "PixelData" in dataset:
            for keyword in TYPE2_PATIENT_STUDY:  # anonymised series often drop these
                if keyword not in dataset:
                    setattr(dataset, keyword, "")
            groups.setdefault(str(dataset.SeriesInstanceUID), []).append(dataset)
    if series is not None:
        groups = {uid: items for uid, items in groups.items()
                  if str(items[0].get("SeriesNumber", "")) == series
                  or series.lower() in str(items[0].get("SeriesDescription", "")).lower()}
    if not groups:
        raise SubctInputError(folder, "no DICOM image series with positions found"
                              + (f" matching {series!r}" if series else ""))
    chosen = max(groups.values(), key=lambda items: (items[0].get("Modality") == "CT",
                                                     len(items)))
    normal = np.cross(*np.asarray(chosen[0].ImageOrientationPatient, float).reshape(2, 3))
    return sorted(chosen, key=lambda d: float(np.dot(normal, np.asarray(
        d.ImagePositionPatient, float))))


def labels_on_slices(labels: Volume, datasets: list[Any]) -> NDArray[np.int16]:
    """The label map sampled (nearest voxel) at the pixel centres of every source image:
    (frames, rows, columns) of label values."""
    to_voxel = np.linalg.inv(labels.affine)
    array = np.asarray(labels.array)
    frames = []
    for dataset in datasets:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        orientation = np.asarray(dataset.ImageOrientationPatient, float).reshape(2, 3)
        row_spacing, column_spacing = (float(v) for v in dataset.PixelSpacing)
        r, c = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
        lps = (np.asarray(dataset.ImagePositionPatient, float)[:, None, None]
               + orientation[0][:, None, None] * (c * column_spacing)[None]
               + orientation[1][:, None, None] * (r * row_spacing)[None])
        ras = np.stack([-lps[0], -lps[1], lps[2], np.ones_like(lps[0])]).reshape(4, -1)
        index = np.rint(to_voxel @ ras)[:3].astype(np.int64)
        inside = np.all((index >= 0) & (index < np.asarray(array.shape)[:, None]), axis=0)
        values = np.zeros(index.shape[1], dtype=np.int16)
        values[inside] = array[index[0, inside], index[1, inside], index[2, inside]]
        frames.append(values.reshape(rows, columns))
    return np.stack(frames)


def require_highdicom() -> None:
    """Raise the one-line install hint when highdicom (``--dicom-seg``) is missing:
    checked before a batch starts, not after its cases ran."""
    try:
        import highdicom  # noqa: F401
    except ImportError as error:
        raise SubctConfigError("DICOM SEG output (--dicom-seg) needs highdicom: pip install "
                               "'subct[dicom]'") from error


def write_dicom_seg(labels: Volume, dicom_folder: str | Path, output: str | Path,
                    scheme: str | LabelScheme = "canonical", series: str | None = None) -> Path:
    """Write the DICOM SEG of ``labels`` (label values of ``scheme``) for the series in
    ``dicom_folder`` to ``output`` (atomically); returns ``output``."""
    try:
        import highdicom as hd
        from pydicom.sr.codedict import codes
    except ImportError as error:
        raise SubctConfigError("DICOM SEG output needs highdicom: pip install "
                               "'subct[dicom]'") from error
    resolved = get_scheme(scheme)
    datasets = source_series(dicom_folder, series)
    frames = labels_on_slices(labels, datasets)
    segment_of = {value: number for number, value in enumerate(resolved.labels, start=1)}
    lookup = np.zeros(int(max(resolved.labels)) + 1, dtype=np.uint8)
    for value, number in segment_of.items():
        lookup[value] = number
    pixel_array = lookup[np.clip(frames, 0, len(lookup) - 1)]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="subct", version=__version__, family=codes.cid7162.ArtificialIntelligence)
    descriptions = []
    for value, number in segment_of.items():
        name = resolved.names[value]
        base = name.removeprefix("Left-").removeprefix("Right-")
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=name,
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=getattr(codes.SCT, STRUCTURE_CODES[base]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor(*_rgb_to_lab(label_colour(value, resolved))))
        side = "Left" if name.startswith("Left-") else "Right" if name.startswith("Right-") \
            else None
        if side is not None:  # laterality as a coded modifier (SNOMED Left / Right), so a
            # PACS tells the two sides apart without reading the label text
            description.SegmentedPropertyTypeCodeSequence[0]. \
                SegmentedPropertyTypeModifierCodeSequence = [
                    hd.sr.CodedConcept.from_code(getattr(codes.SCT, side))]
        descriptions.append(description)
    with warnings.catch_warnings(record=True) as caught:  # library notes go to the log,
        warnings.simplefilter("always")                     # not the user's console
        segmentation = _segmentation(hd, datasets, pixel_array, descriptions)
    for note in caught:
        LOG.info("highdicom: %s", note.message)
    if segmentation.get("PatientIdentityRemoved") == "YES" and not segmentation.get(
            "DeidentificationMethod"):
        # type 1C when the identity was removed; the source left it empty
        segmentation.DeidentificationMethod = "de-identified source; method not recorded"
    with atomic_output(output, suffix=".dcm") as temporary:
        segmentation.save_as(temporary)
    return Path(output)


def _segmentation(hd: Any, datasets: list[Any], pixel_array: NDArray[np.uint8],
                  descriptions: list[Any]) -> Any:
    """The highdicom Segmentation object of the series (binary, one frame per slice)."""
    from pydicom.uid import generate_uid

    return hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(),
        series_number=int(datasets[0].get("SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="subct",
        manufacturer_model_name="subct ct-subcortical", software_versions=__version__,
        device_serial_number="0", series_description="subct subcortical structures")


def _rgb_to_lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """sRGB (0–255) → CIE L*a*b* (D65), as DICOM display colours are stored."""
    linear = [((c / 255) / 12.92) if c / 255 <= 0.04045 else (((c / 255) + 0.055) / 1.055) ** 2.4
              for c in rgb]
    matrix = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                       [0.0193, 0.1192, 0.9505]])
    x, y, z = matrix @ np.asarray(linear) / np.array([0.95047, 1.0, 1.08883])

    def f(t: float) -> float:
        return float(t ** (1 / 3)) if t > 216 / 24389 else float((24389 / 27 * t + 16) / 116)

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)
