"""Loading DICOM series folders through dcm2niix, with gantry-tilt correction.

Head CTs are often acquired with a tilted gantry and with uneven slice spacing
(thin slices through the skull base, thick ones above). Stacking such slices
naively gives a sheared, stretched brain. dcm2niix (Chris Rorden's converter,
shipped on PyPI as ``dcm2niix``) detects both: for tilted series it writes an extra
``*_Tilt*`` image resampled onto an orthogonal (non-sheared) grid, and for uneven
spacing an ``*_Eq*`` image resampled onto equal slice spacing; when both apply the
file is ``*_Tilt_Eq*``. :func:`load_dicom_series` runs dcm2niix in a temporary
folder, reads its JSON sidecars to choose a series, and loads the most corrected
image of that series (``_Tilt_Eq`` > ``_Tilt`` / ``_Eq`` > plain).

Rescale slope/intercept (HU) are applied by dcm2niix through the NIfTI
``scl_slope``/``scl_inter`` fields, which nibabel applies on reading.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctInputError
from subct.image.volume import Volume, is_orthogonal_affine
from subct.io.dicom_patient import series_patient
from subct.io.dicom_slices import refuse_corrupt_files, series_uid_of_stem, slice_gaps
from subct.io.files import is_volume_file

#: dcm2niix file-name markers of corrected outputs, best first.
_CORRECTION_PREFERENCE = ("_Tilt_Eq", "_Tilt", "_Eq")


@dataclass(frozen=True)
class DicomSeries:
    """One series that dcm2niix converted from a folder.

    Attributes:
        number: DICOM SeriesNumber (0020,0011), or ``None`` when absent.
        description: SeriesDescription (0008,103E), or ``""``.
        modality: Modality (0008,0060), e.g. ``"CT"`` or ``"MR"``.
        shape: voxel grid of the image that would be loaded (after corrections).
        axial: slice normal closest to the head-foot axis (tilted axial counts).
        slice_tilt_deg: angle between the slice normal and the head-foot axis, degrees.
        image: the chosen dcm2niix output (``_Tilt_Eq`` preferred).
        plain_image: dcm2niix's uncorrected output (same as ``image`` when no fix applied).
        tilt_corrected: dcm2niix resampled the tilted slices onto an orthogonal grid.
        spacing_equalised: dcm2niix resampled uneven slice gaps onto equal spacing.
        sidecar: the dcm2niix JSON sidecar contents.
    """

    number: int | None
    description: str
    modality: str
    shape: tuple[int, ...]
    axial: bool
    slice_tilt_deg: float
    image: Path
    plain_image: Path
    tilt_corrected: bool
    spacing_equalised: bool
    sidecar: dict[str, Any] = field(repr=False)

    @property
    def voxel_count(self) -> int:
        """Number of voxels of the image, used to pick the largest series."""
        return int(np.prod(self.shape))

    @property
    def label(self) -> str:
        """Short human-readable name: ``series 2 "HEAD 5mm" (CT, 512x512x56)``."""
        number = "?" if self.number is None else str(self.number)
        description = f' "{self.description}"' if self.description else ""
        shape = "x".join(str(size) for size in self.shape)
        return f"series {number}{description} ({self.modality or 'unknown modality'}, {shape})"


def dcm2niix_executable() -> str:
    """Path of the dcm2niix binary: the one in the PyPI package, else one on PATH."""
    try:
        import dcm2niix

        binary = Path(dcm2niix.bin)
        if binary.is_file():
            return str(binary)
    except ImportError:  # pragma: no cover - dcm2niix is a declared dependency
        pass
    found = shutil.which("dcm2niix")
    if found is None:
        raise SubctInputError(None, "dcm2niix is not installed (pip install dcm2niix)")
    return found


def _run_dcm2niix(folder: Path, output: Path) -> subprocess.CompletedProcess[str]:
    command = [
        dcm2niix_executable(),
        "-z", "n",  # uncompressed: the files live only in a temporary folder
        "-b", "y",  # JSON sidecar with Modality, SeriesNumber, orientation...
        "-ba", "y",  # anonymised sidecar: no patient names in memory
        "-f", "%s_%j",  # series number + series instance UID: unique per series
        "-w", "1",
        "-o", str(output),
        str(folder),
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _slice_normal(sidecar: dict[str, Any]) -> NDArray[np.float64] | None:
    orientation = sidecar.get("ImageOrientationPatientDICOM")
    if not isinstance(orientation, list) or len(orientation) != 6:
        return None
    row = np.asarray(orientation[:3], dtype=np.float64)
    column = np.asarray(orientation[3:], dtype=np.float64)
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    return None if length == 0 else normal / length


def _corrected_image(stem: str, output: Path) -> tuple[Path, bool, bool] | None:
    """The most corrected dcm2niix image of one sidecar stem, and which fixes it has."""
    candidates = sorted(output.glob(f"{stem}*.nii"))
    for marker in _CORRECTION_PREFERENCE:
        for candidate in candidates:
            rest = candidate.name[len(stem) : -len(".nii")]
            if rest.startswith(marker):
                return candidate, "_Tilt" in marker, "_Eq" in marker
    plain = output / f"{stem}.nii"
    return (plain, False, False) if plain.is_file() else None


def _series_from_sidecar(sidecar_path: Path) -> DicomSeries | None:
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    found = _corrected_image(sidecar_path.stem, sidecar_path.parent)
    if found is None:
        return None
    image, tilt_corrected, equalised = found
    shape = tuple(int(size) for size in nib.load(str(image)).shape)  # type: ignore[attr-defined]
    normal = _slice_normal(sidecar)
    if normal is None:
        axial, tilt = False, float("nan")
    else:
        axial = int(np.argmax(np.abs(normal))) == 2
        tilt = math.degrees(math.acos(min(1.0, abs(float(normal[2])))))
    number = sidecar.get("SeriesNumber")
    return DicomSeries(
        number=int(number) if isinstance(number, int | float) else None,
        description=str(sidecar.get("SeriesDescription", "") or ""),
        modality=str(sidecar.get("Modality", "") or ""),
        shape=shape,
        axial=axial,
        slice_tilt_deg=tilt,
        image=image,
        plain_image=sidecar_path.with_suffix(".nii"),
        tilt_corrected=tilt_corrected,
        spacing_equalised=equalised,
        sidecar=sidecar,
    )


def _convert(folder: Path, output: Path) -> list[DicomSeries]:
    if not folder.is_dir():
        raise SubctInputError(folder, "not a folder")
    if not any(child.is_file() for child in folder.rglob("*")):
        raise SubctInputError(folder, "folder is empty; expected DICOM files")
    result = _run_dcm2niix(folder, output)
    series = [
        found
        for sidecar in sorted(output.glob("*.json"))
        if (found := _series_from_sidecar(sidecar)) is not None
    ]
    if not series:
        refuse_corrupt_files(folder)  # a broken file is the likely cause: name it
        messages = [
            line.strip()
            for line in (result.stdout + "\n" + result.stderr).splitlines()
            if line.strip().lower().startswith(("error", "no valid dicom", "warning"))
        ]
        detail = f" (dcm2niix: {messages[0]})" if messages else ""
        if any(is_volume_file(child) for child in folder.iterdir()):
            detail += "; the folder holds image files: give a file path instead"
        raise SubctInputError(folder, f"no readable DICOM image series found{detail}")
    return series


def list_dicom_series(folder: str | Path) -> list[DicomSeries]:
    """Describe every image series dcm2niix finds in ``folder`` (and its sub-folders).

    The images themselves are converted into a temporary folder and discarded;
    use :func:`load_dicom_series` to read one.
    """
    with tempfile.TemporaryDirectory(prefix="subct-dcm2niix-") as output:
        return _convert(Path(folder), Path(output))


def choose_series(
    folder: Path, available: list[DicomSeries], series: str | None = None
) -> tuple[DicomSeries, str]:
    """Pick a series and say why.

    Args:
        folder: the DICOM folder (for error messages).
        available: the series found in it.
        series: ``None`` for automatic choice (the largest axial CT series, else the
            largest CT series, else the largest series), a SeriesNumber (``"3"``) or a
            case-insensitive part of the SeriesDescription.

    Raises:
        SubctInputError: ``series`` matches no series, or a description matches several.
    """
    listing = "; ".join(item.label for item in available)
    if series is None:
        for pool, reason in (
            ([s for s in available if s.modality == "CT" and s.axial], "largest axial CT series"),
            ([s for s in available if s.modality == "CT"], "largest CT series (none is axial)"),
            (available, "largest series (none is CT)"),
        ):
            if pool:
                chosen = max(pool, key=lambda item: item.voxel_count)
                if len(available) > 1:
                    reason += f" of {len(available)}"
                return chosen, reason
    wanted = str(series).strip()
    if wanted.lstrip("+-").isdigit():
        matches = [item for item in available if item.number == int(wanted)]
    else:
        matches = [item for item in available if wanted.lower() in item.description.lower()]
    if not matches:
        raise SubctInputError(folder, f"no series matches {wanted!r}; available: {listing}")
    if len(matches) > 1:
        raise SubctInputError(
            folder,
            f"{len(matches)} series match {wanted!r}: "
            + "; ".join(item.label for item in matches)
            + "; give a series number",
        )
    return matches[0], f"requested series {wanted!r}"


def _read_image(series: DicomSeries, folder: Path) -> tuple[NDArray[Any], NDArray[np.float64]]:
    try:
        image = nib.load(str(series.image), mmap=False)
        array = np.asanyarray(image.dataobj)  # type: ignore[attr-defined]
    except Exception as error:  # nibabel raises many types for corrupt files
        raise SubctInputError(folder, f"cannot read converted {series.label}: {error}") from error
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3 or min(array.shape) < 2:
        raise SubctInputError(
            folder, f"{series.label} is not a single 3D volume (shape {array.shape})"
        )
    if np.issubdtype(array.dtype, np.floating):
        # Integer rescale (slope 1, intercept -1024 and the like) gives whole HU: keep int16.
        low, high = float(array.min()), float(array.max())
        if np.isfinite(low) and np.isfinite(high) and low >= -32768 and high <= 32767:
            as_int = array.astype(np.int16)
            if np.array_equal(as_int, array):
                array = as_int
    if series.image != series.plain_image and series.plain_image.is_file():
        array = _clip_resampling_fill(array, series.plain_image)
    return np.ascontiguousarray(array), np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]


def _clip_resampling_fill(array: NDArray[Any], plain_image: Path) -> NDArray[Any]:
    """Raise the padding of dcm2niix's tilt/spacing resampling to the scan's own minimum.

    dcm2niix fills voxels outside the original slab with the stored (unscaled) padding
    value, so with a rescale intercept (e.g. stored HU+1024, intercept −1024) the
    padding lands 1024 below anything in the scan (−2524 instead of −1500 HU). Linear
    resampling cannot create values below the uncorrected image's minimum, so values
    below it are that artefact and are set to it.
    """
    plain = np.asanyarray(nib.load(str(plain_image)).dataobj)  # type: ignore[attr-defined]
    floor = plain.min()
    if array.min() < floor:
        array = np.maximum(array, np.asarray(floor).astype(array.dtype))
    return array


def load_dicom_series(folder: str | Path, series: str | None = None) -> Volume:
    """Read one series of a DICOM folder as a geometrically correct volume.

    Gantry tilt is corrected and uneven slice gaps are resampled to equal spacing
    (by dcm2niix); values are in the units after rescale slope/intercept (HU for CT).
    ``Volume.description`` says which series was read and why, and
    ``Volume.metadata`` holds ``dicom_series_number``, ``dicom_series_description``,
    ``dicom_modality``, ``dicom_available_series``, ``tilt_corrected``,
    ``spacing_equalised``, ``slice_tilt_deg`` and the patient's age and sex
    (:func:`subct.io.dicom_patient.series_patient`).

    Args:
        folder: a folder holding DICOM files (sub-folders are searched too).
        series: which series to read when there are several; see :func:`choose_series`.

    Raises:
        SubctInputError: empty folder, no DICOM series, unknown ``series``, or a
            converted image that is not a single 3D volume.
    """
    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="subct-dcm2niix-") as output:
        available = _convert(folder, Path(output))
        chosen, reason = choose_series(folder, available, series)
        array, affine = _read_image(chosen, folder)
    fixes = [
        text
        for flag, text in (
            (chosen.tilt_corrected, f"gantry tilt {chosen.slice_tilt_deg:.1f}° corrected"),
            (chosen.spacing_equalised, "uneven slice spacing equalised"),
        )
        if flag
    ]
    series_uid = series_uid_of_stem(chosen.plain_image.stem)
    gaps = slice_gaps(folder, series_uid)
    description = f"DICOM {chosen.label}, {reason}" + (f"; {', '.join(fixes)}" if fixes else "")
    metadata: dict[str, Any] = {
        "format": "DICOM (dcm2niix)",
        "dicom_series_number": chosen.number,
        "dicom_series_description": chosen.description,
        "dicom_modality": chosen.modality,
        "dicom_series_choice": reason,
        "dicom_available_series": [item.label for item in available],
        "tilt_corrected": chosen.tilt_corrected,
        "spacing_equalised": chosen.spacing_equalised,
        "slice_tilt_deg": chosen.slice_tilt_deg,
        "orthogonal_grid": is_orthogonal_affine(affine),
        "dicom_slice_gaps": None if gaps is None else gaps.as_metadata(),
        **series_patient(folder, series_uid),
    }
    return Volume(array=array, affine=affine, path=folder, description=description,
                  metadata=metadata)
