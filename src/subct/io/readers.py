"""Reading volumes (NIfTI, MGZ/MGH, NRRD/NHDR, MHA/MHD, DICOM folders) with their geometry.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctInputError
from subct.image.sitk_bridge import sitk_geometry, sitk_to_array
from subct.image.volume import Volume
from subct.io.dicom import load_dicom_series
from subct.io.files import (
    FREESURFER_SUFFIXES,
    ITK_SUFFIXES,
    NIFTI_SUFFIXES,
    VOLUME_SUFFIXES,
    _has_suffix,
)
from subct.io.hounsfield import check_ct_range, ensure_hounsfield

#: Largest volume read (voxels) and largest size along one axis: anything beyond is not
#: a head scan and would only exhaust memory (a 1024 × 1024 × 1500 CT has 1.6 G voxels).
MAX_VOXELS = 1_600_000_000
MAX_AXIS_VOXELS = 4096


def check_dimensions(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse absurd image sizes before the voxels are read (no huge allocation)."""
    spatial = tuple(int(n) for n in shape[:3])
    if any(n > MAX_AXIS_VOXELS for n in spatial) or int(np.prod(spatial, dtype=np.int64)) \
            > MAX_VOXELS:
        raise SubctInputError(path, f"image size {' x '.join(map(str, shape))} voxels is "
                                    "beyond any head scan; refusing to read it")


def check_voxel_type(path: Path, array: NDArray[Any]) -> None:
    """Refuse voxel types that cannot be Hounsfield units or labels: complex values
    (would lose the imaginary part), RGB/vector pixels, text or objects."""
    kind = array.dtype.kind
    if array.dtype.names is not None:
        raise SubctInputError(path, f"voxels are records ({', '.join(array.dtype.names)}), "
                                    "e.g. RGB colour; expected one scalar per voxel")
    if kind == "c":
        raise SubctInputError(path, "voxels are complex numbers; expected real scalars "
                                    "(a CT in HU or a label map)")
    if kind not in "biuf":
        raise SubctInputError(path, f"voxel type {array.dtype} is not numeric")


def _from_nibabel(path: Path) -> tuple[NDArray[Any], NDArray[np.float64], dict[str, Any]]:
    if path.name.lower().endswith((".nii", ".nii.gz")):
        _check_nifti_voxel_size(path)  # before nibabel replaces a zero size by 1 mm
    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises many types for corrupt files
        raise SubctInputError(path, f"cannot read image ({_short(error)})") from error
    check_dimensions(path, tuple(image.shape))  # type: ignore[attr-defined]
    try:
        array = np.asanyarray(image.dataobj)  # type: ignore[attr-defined]
    except Exception as error:  # nibabel raises many types for corrupt files
        raise SubctInputError(path, f"cannot read image ({_short(error)})") from error
    affine = np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    metadata: dict[str, Any] = {"format": type(image).__name__}
    if isinstance(image, nib.Nifti1Image):
        metadata.update(_nifti_orientation_notes(image))
    return array, affine, metadata


def _check_nifti_voxel_size(path: Path) -> None:
    """Refuse a NIfTI header whose voxel size (pixdim, mm) is zero, negative or not a
    number: nibabel would quietly take 1 mm and every volume would be wrong. The raw
    header is read unchecked (nibabel's check is what replaces the size)."""
    try:
        with nib.openers.ImageOpener(str(path)) as stream:
            prefix = stream.read(4)
            stream.seek(0)
            header_class = nib.Nifti2Header if int.from_bytes(prefix, "little") == 540 \
                or int.from_bytes(prefix, "big") == 540 else nib.Nifti1Header
            header = header_class.from_fileobj(stream, check=False)
    except Exception:  # unreadable: nib.load reports it in its own words
        return
    dims = header["dim"]
    spatial = int(min(3, max(int(dims[0]), 1)))
    raw = np.asarray(header["pixdim"][1:1 + spatial], dtype=np.float64)
    if not np.all(np.isfinite(raw)) or np.any(raw <= 0):
        sizes = " x ".join(f"{value:g}" for value in raw)
        raise SubctInputError(path, f"invalid voxel size in the header (pixdim {sizes} mm): "
                                    "zero, negative or not a number; fix the header "
                                    "(volumes need the true voxel size)")


def _nifti_orientation_notes(image: nib.Nifti1Image) -> dict[str, Any]:
    """Flag NIfTI headers whose orientation is missing or ambiguous (never silently)."""
    header = image.header
    qform, qform_code = header.get_qform(coded=True)
    sform, sform_code = header.get_sform(coded=True)
    notes: dict[str, Any] = {"nifti_qform_code": int(qform_code or 0),
                             "nifti_sform_code": int(sform_code or 0)}
    if not qform_code and not sform_code:
        notes["orientation_note"] = (
            "NIfTI header has neither qform nor sform: orientation unknown, "
            "nibabel's default (voxel sizes only, x flipped) assumed"
        )
        notes["orientation_unknown"] = True
    elif (
        qform_code and sform_code and qform is not None and sform is not None
        and not np.allclose(qform, sform, atol=1e-3)
    ):
        notes["orientation_note"] = "NIfTI qform and sform differ; the sform is used"
    return notes


def _from_simpleitk(path: Path) -> tuple[NDArray[Any], NDArray[np.float64], dict[str, Any]]:
    metadata: dict[str, Any] = {"format": "ITK"}
    try:
        image = _read_itk_quietly(path)
    except RuntimeError as error:  # SimpleITK raises RuntimeError with a long message
        image = _read_nrrd_with_bare_spacings(path, error)
        metadata["nrrd_header_note"] = (
            "header gives 'spacings' but no 'space directions': "
            "identity direction assumed (orientation not recorded in the file)"
        )
        metadata["orientation_unknown"] = True
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise SubctInputError(path, "image has vector/colour pixels; expected a scalar volume")
    array = sitk_to_array(image, contiguous=False)
    affine = sitk_geometry(image)
    return array, affine, metadata


def _read_itk_quietly(path: Path) -> Any:
    """``sitk.ReadImage`` with ITK's direct writes to stderr captured, not printed.

    ITK prints some problems (e.g. "data not read completely" for a truncated
    MetaImage) straight to file descriptor 2, which would break the CLI's one-line
    error. The captured text is added to the error; after a successful read it is
    passed on to ``sys.stderr`` unchanged.
    """
    import sys

    import SimpleITK as sitk

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            image = sitk.ReadImage(str(path))
            error: RuntimeError | None = None
        except RuntimeError as caught:
            error = caught
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        noise = captured.read().decode("utf-8", errors="replace").strip()
    if error is not None:
        raise RuntimeError(f"{error}\n{noise}".strip()) from error
    if noise:
        print(noise, file=sys.stderr)
    return image


def _itk_problem(error: BaseException) -> str:
    """The informative part of an ITK/SimpleITK error, on one line."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful: list[str] = []
    for line in lines:
        if line.startswith("Exception thrown in SimpleITK"):
            continue
        for marker in ("sitk::ERROR:", "itk::ERROR:", "ITK ERROR:"):
            if marker in line:
                line = line.split(marker, 1)[1].strip()
                # drop "MetaImageIO(0x55...): " style prefixes
                if "): " in line and "(0x" in line.split("): ", 1)[0]:
                    line = line.split("): ", 1)[1]
        if line.startswith("Reason:"):
            continue  # ITK reports errno of an unrelated call ("No such file...")
        useful.append(line)
    nrrd = [line for line in useful if line.startswith("[nrrd]")]
    plain = [line for line in useful if not line.startswith("[nrrd]")]
    if nrrd:  # teem's innermost complaint is the last line
        plain = plain[:1] + [nrrd[-1].removeprefix("[nrrd]").strip()]
    problem = "; ".join(plain) or type(error).__name__
    return _short(problem)


def _read_nrrd_with_bare_spacings(path: Path, read_error: BaseException) -> Any:
    """Read a detached NRRD header (``.nhdr``) that ITK rejects for giving ``spacings``.

    Some NRRD writers (VTK's ``headsq`` sample among them) combine a ``space:`` field
    with per-axis ``spacings:``, which the NRRD format forbids and ITK refuses. The
    ``space`` field carries no orientation without ``space directions``, so we drop
    it, make the data-file names absolute and let ITK read a corrected copy of the
    header from a temporary folder. Raises :class:`SubctInputError` (with ITK's
    original complaint) for anything else.
    """

    def fail() -> SubctInputError:
        return SubctInputError(path, f"cannot read image ({_itk_problem(read_error)})")

    if not _has_suffix(path, (".nhdr",)):
        raise fail() from read_error
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        raise fail() from read_error
    fields = [line.split(":", 1)[0].strip().lower() for line in lines]
    if "spacings" not in fields or "space" not in fields or "space directions" in fields:
        raise fail() from read_error
    corrected: list[str] = []
    in_data_file_list = False
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if in_data_file_list:
            corrected.append(str((path.parent / line.strip()).resolve()))
            continue
        if key == "space" and ":=" not in line:
            continue
        if key == "data file":
            value = value.strip()
            if value.upper().startswith("LIST"):
                in_data_file_list = True
                corrected.append(line)
                continue
            name, _, rest = value.partition(" ")
            corrected.append(f"data file: {(path.parent / name).resolve()} {rest}".rstrip())
            continue
        corrected.append(line)
    with tempfile.TemporaryDirectory(prefix="subct-nhdr-") as folder:
        header = Path(folder) / path.name
        header.write_text("\n".join(corrected) + "\n", encoding="ascii")
        try:
            return _read_itk_quietly(header)
        except RuntimeError as error:
            raise SubctInputError(path, f"cannot read image ({_itk_problem(error)})") from error


def _short(error: BaseException | str) -> str:
    text = " ".join(str(error).split())
    return text[:200] if text else type(error).__name__


@dataclass(frozen=True)
class InputFormat:
    """A file format subct reads: its name, file suffixes and reader (array in voxel
    order, RAS affine in mm, metadata). DICOM folders go through :mod:`subct.io.dicom`."""

    name: str
    suffixes: tuple[str, ...]
    read: Callable[[Path], tuple[NDArray[Any], NDArray[np.float64], dict[str, Any]]]


#: The file formats :func:`load_volume` reads, by suffix (a new format: one entry here and
#: its suffixes in :mod:`subct.io.files`).
INPUT_FORMATS: tuple[InputFormat, ...] = (
    InputFormat("NIfTI / FreeSurfer MGH", NIFTI_SUFFIXES + FREESURFER_SUFFIXES, _from_nibabel),
    InputFormat("NRRD / MetaImage (ITK)", ITK_SUFFIXES, _from_simpleitk),
)


def input_format_of(path: Path) -> InputFormat | None:
    """The :data:`INPUT_FORMATS` entry for ``path``'s suffix (None: not a known format)."""
    return next((f for f in INPUT_FORMATS if _has_suffix(path, f.suffixes)), None)


def load_volume(path: str | Path, *, expect_ct: bool = False, series: str | None = None) -> Volume:
    """Read a 3D volume from a file or DICOM folder, keeping its voxel order and geometry.

    Args:
        path: NIfTI/MGZ/NRRD/MHA file, or a folder holding one or more DICOM series.
        expect_ct: also check that intensities look like Hounsfield units
            (air near −1000 HU, some voxels above 0 HU); raise otherwise.
        series: for DICOM folders with several series, the series to read (number or
            part of its description); by default the largest axial CT series.

    Raises:
        SubctInputError: the path is missing, unreadable, not 3D, contains NaNs or is
            constant, or (``expect_ct``) does not look like CT. The message names the path.
    """
    path = Path(path)
    if not path.exists():
        raise SubctInputError(path, "no such file or folder")
    if path.is_dir():
        volume = load_dicom_series(path, series=series)
    else:
        reader = input_format_of(path)
        if reader is None:
            raise SubctInputError(
                path,
                "unknown image format; expected one of " + ", ".join(VOLUME_SUFFIXES)
                + " or a DICOM folder",
            )
        array, affine, meta = reader.read(path)
        check_voxel_type(path, array)
        array = _squeeze_to_3d(path, array)
        volume = Volume(array=array, affine=affine, path=path, metadata=meta)
    if expect_ct:
        validate_volume(volume, path)
        volume = ensure_hounsfield(volume)
    validate_volume(volume, path, expect_ct=expect_ct)
    return volume


def _squeeze_to_3d(path: Path, array: NDArray[Any]) -> NDArray[Any]:
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and 1 in array.shape):
        raise SubctInputError(path, f"image is 2D (shape {array.shape}); expected a 3D volume")
    if array.ndim > 3:
        raise SubctInputError(
            path, f"image is {array.ndim}D (shape {array.shape}); expected a single 3D volume"
        )
    if array.ndim != 3:
        raise SubctInputError(path, f"image has shape {array.shape}; expected a 3D volume")
    return array


def validate_volume(volume: Volume, path: str | Path, *, expect_ct: bool = False) -> None:
    """Reject volumes that would silently give nonsense downstream.

    Checks: finite values only, not constant, non-degenerate affine and, when
    ``expect_ct``, an intensity range that looks like Hounsfield units.
    """
    array = volume.array
    if not np.all(np.isfinite(volume.affine)):
        raise SubctInputError(path, "image affine contains NaN or infinite values")
    if abs(np.linalg.det(volume.affine[:3, :3])) < 1e-9:
        raise SubctInputError(path, "image affine is degenerate (zero voxel size)")
    # min/max propagate NaN and expose ±inf, so one pass each finds non-finite voxels.
    low, high = float(array.min()), float(array.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise SubctInputError(path, "image contains NaN or infinite values")
    if low == high:
        raise SubctInputError(path, f"all voxels have the same value ({low:g}); image is empty")
    if expect_ct:
        check_ct_range(array, path)
