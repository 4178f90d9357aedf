"""Reading and writing 3D medical volumes while keeping their geometry exactly.

Every reader returns a :class:`Volume`: the voxel array *in the file's own voxel
order* plus the 4×4 affine that maps voxel indices (i, j, k) to world coordinates
in millimetres, RAS+ convention (x to the Right, y Anterior, z Superior), as NIfTI
and nibabel use. Because the array is never reordered on reading, a label map that
is computed on the same grid and written with :func:`save_volume` overlays the
input exactly in any viewer, whatever its orientation (LIA, LPS, oblique...).

Supported inputs: NIfTI (``.nii``, ``.nii.gz``), FreeSurfer MGH/MGZ, NRRD/NHDR,
MetaImage (``.mha``/``.mhd``) and DICOM series folders (converted by dcm2niix,
with gantry-tilt correction and resampling of uneven slice spacing).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctInputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
FREESURFER_SUFFIXES = (".mgz", ".mgh")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + FREESURFER_SUFFIXES + ITK_SUFFIXES

#: Converts between RAS+ (NIfTI, nibabel) and LPS+ (ITK, DICOM) world coordinates.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """The voxel grid of a volume: array shape and voxel-to-world (RAS+, mm) affine."""

    shape: tuple[int, int, int]
    affine: NDArray[np.float64]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        sizes = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return (float(sizes[0]), float(sizes[1]), float(sizes[2]))

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"``, ``"LIA"`` or ``"LPS"`` (closest for oblique grids)."""
        return "".join(nib.aff2axcodes(self.affine))

    def same_grid(self, other: Geometry, atol_mm: float = 1e-3) -> bool:
        """True when both grids have the same shape and affines equal within ``atol_mm``."""
        return self.shape == other.shape and bool(
            np.allclose(self.affine, other.affine, atol=atol_mm)
        )


@dataclass(frozen=True)
class Volume:
    """A 3D image: voxel array, voxel→world affine (RAS+, mm) and where it came from.

    Attributes:
        array: voxel values, shape (I, J, K), in the source file's voxel order.
        affine: 4×4 matrix mapping voxel indices to RAS+ world coordinates in mm.
        path: the file or folder it was read from (``None`` for computed volumes).
        description: human-readable provenance, e.g. which DICOM series was picked.
        metadata: extra facts from the source (series description, tilt, ...).
    """

    array: NDArray[Any]
    affine: NDArray[np.float64]
    path: Path | None = None
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be 3D, got shape {self.array.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"Volume affine must be 4x4, got {self.affine.shape}")

    @property
    def geometry(self) -> Geometry:
        """Shape and affine of the voxel grid."""
        shape = self.array.shape
        return Geometry((int(shape[0]), int(shape[1]), int(shape[2])), self.affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape in voxels."""
        return self.geometry.shape

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        return self.geometry.spacing

    @property
    def orientation(self) -> str:
        """Axis codes of the voxel axes, e.g. ``"LIA"`` for FreeSurfer-conformed volumes."""
        return self.geometry.orientation

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³."""
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def with_array(self, array: NDArray[Any], description: str | None = None) -> Volume:
        """A new volume on the same grid with different voxel values (e.g. labels)."""
        return Volume(
            array=array,
            affine=self.affine.copy(),
            path=None,
            description=self.description if description is None else description,
            metadata=dict(self.metadata),
        )

    def reoriented(self, axcodes: str = "RAS") -> Volume:
        """The same image with its voxel axes permuted/flipped to ``axcodes``.

        This is exact (no interpolation): only the array axes are reordered and the
        affine is updated so that each voxel keeps its world position.
        """
        view = self.reoriented_view(axcodes)
        return Volume(np.ascontiguousarray(view.array), view.affine, self.path,
                      self.description, dict(self.metadata))

    def reoriented_view(self, axcodes: str = "RAS") -> Volume:
        """Like :meth:`reoriented`, but the array is a strided *view* of this one (no copy).

        For code that reads a few slices or a subsampled grid of a large image (a
        512 × 512 × 150 CT is 79 MB as int16): copying it to make it contiguous costs
        more than the reading. Do not write into the view's array.
        """
        current = nib.orientations.io_orientation(self.affine)
        target = nib.orientations.axcodes2ornt(tuple(axcodes))
        transform = nib.orientations.ornt_transform(current, target)
        array = nib.orientations.apply_orientation(self.array, transform)
        affine = self.affine @ nib.orientations.inv_ornt_aff(transform, self.array.shape)
        return Volume(array, affine, self.path, self.description, dict(self.metadata))


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in suffixes)


def case_name(path: str | Path) -> str:
    """File name without the volume suffix: ``/a/case01.nii.gz`` → ``case01``."""
    path = Path(path)
    name = path.name
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_volume_file(path: Path) -> bool:
    """True for files whose suffix is a volume format that subct reads."""
    return path.is_file() and _has_suffix(path, VOLUME_SUFFIXES)


def iter_volume_files(folder: Path) -> Iterator[Path]:
    """Volume files directly inside ``folder``, sorted by name."""
    for child in sorted(folder.iterdir()):
        if is_volume_file(child):
            yield child


def _from_nibabel(path: Path) -> tuple[NDArray[Any], NDArray[np.float64], dict[str, Any]]:
    try:
        image = nib.load(str(path))
        array = np.asanyarray(image.dataobj)  # type: ignore[attr-defined]
    except Exception as error:  # nibabel raises many types for corrupt files
        raise SubctInputError(path, f"cannot read image ({_short(error)})") from error
    affine = np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    metadata: dict[str, Any] = {"format": type(image).__name__}
    if isinstance(image, nib.Nifti1Image):
        metadata.update(_nifti_orientation_notes(image))
    return array, affine, metadata


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
    elif (
        qform_code and sform_code and qform is not None and sform is not None
        and not np.allclose(qform, sform, atol=1e-3)
    ):
        notes["orientation_note"] = "NIfTI qform and sform differ; the sform is used"
    return notes


def _from_simpleitk(path: Path) -> tuple[NDArray[Any], NDArray[np.float64], dict[str, Any]]:
    import SimpleITK as sitk

    metadata: dict[str, Any] = {"format": "ITK"}
    try:
        image = _read_itk_quietly(path)
    except RuntimeError as error:  # SimpleITK raises RuntimeError with a long message
        image = _read_nrrd_with_bare_spacings(path, error)
        metadata["nrrd_header_note"] = (
            "header gives 'spacings' but no 'space directions': "
            "identity direction assumed (orientation not recorded in the file)"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise SubctInputError(path, "image has vector/colour pixels; expected a scalar volume")
    array = sitk.GetArrayFromImage(image)
    array = np.transpose(array, tuple(range(array.ndim))[::-1])  # ITK (z,y,x) -> (i,j,k)
    affine = itk_geometry_to_affine(
        image.GetSpacing(), image.GetOrigin(), image.GetDirection(), image.GetDimension()
    )
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


def itk_geometry_to_affine(
    spacing: tuple[float, ...],
    origin: tuple[float, ...],
    direction: tuple[float, ...],
    dimension: int = 3,
) -> NDArray[np.float64]:
    """Build a RAS+ voxel→world affine from ITK's LPS+ spacing, origin and direction."""
    dim = min(dimension, 3)
    lps = np.eye(4)
    direction_matrix = np.asarray(direction, dtype=np.float64).reshape(dimension, dimension)
    lps[:dim, :dim] = direction_matrix[:dim, :dim] * np.asarray(spacing[:dim])[None, :]
    lps[:dim, 3] = np.asarray(origin[:dim])
    return LPS_TO_RAS @ lps


def affine_to_itk_geometry(
    affine: NDArray[np.float64],
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Split a RAS+ affine into ITK's LPS+ (spacing, origin, direction)."""
    lps = LPS_TO_RAS @ affine
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    direction = lps[:3, :3] / spacing[None, :]
    return (
        tuple(float(s) for s in spacing),
        tuple(float(o) for o in lps[:3, 3]),
        tuple(float(d) for d in direction.ravel()),
    )


def _short(error: BaseException | str) -> str:
    text = " ".join(str(error).split())
    return text[:200] if text else type(error).__name__


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
        from subct.dicom import load_dicom_series

        volume = load_dicom_series(path, series=series)
    else:
        if _has_suffix(path, NIFTI_SUFFIXES + FREESURFER_SUFFIXES):
            array, affine, meta = _from_nibabel(path)
        elif _has_suffix(path, ITK_SUFFIXES):
            array, affine, meta = _from_simpleitk(path)
        else:
            raise SubctInputError(
                path,
                "unknown image format; expected one of " + ", ".join(VOLUME_SUFFIXES)
                + " or a DICOM folder",
            )
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


def check_ct_range(array: NDArray[Any], path: str | Path) -> None:
    """Raise unless intensities look like CT in Hounsfield units.

    A head CT has air outside the head (≈ −1000 HU; scanners pad with −1024 to −3024)
    and brain/bone above 0 HU. MRI has no negative values; CT stored as HU+1024
    (unsigned) has no negative values either and must be rescaled first.
    """
    low, high = float(np.min(array)), float(np.max(array))
    if low > -500.0:
        raise SubctInputError(
            path,
            f"intensity range {low:g}..{high:g} does not look like CT in Hounsfield units "
            "(expected air near -1000 HU); is this an MRI, or CT stored without rescaling?",
        )
    if high < 0.0:
        raise SubctInputError(
            path, f"intensity range {low:g}..{high:g} has no tissue above 0 HU; not a head CT"
        )


#: Offset of CT stored as unsigned "HU + 1024" (air = 0 instead of -1024 HU).
UNSIGNED_CT_OFFSET = 1024.0


def looks_like_offset_ct(array: NDArray[Any]) -> bool:
    """True when ``array`` looks like CT stored as HU + 1024 (no negative values).

    Criteria (all must hold), chosen so that MRI (dark background, no bone tail,
    tissue peaks anywhere) is not mistaken for CT:

    * the minimum is between 0 and 100 (air −1024..−924 HU after the offset);
    * at least 2 % of voxels are air-like (below 300, i.e. < −724 HU);
    * the soft-tissue histogram peak (among values 600–1600) lies within
      924..1124, i.e. −100..+100 HU after subtracting 1024 (water, brain, muscle);
    * at least 0.2 % of voxels are bone-like (above 1324, i.e. > 300 HU).
    """
    low = float(array.min())
    if not 0.0 <= low <= 100.0:
        return False
    sample = array.ravel(order="K")[:: max(1, array.size // 2_000_000)]
    if np.mean(sample < 300) < 0.02 or np.mean(sample > 1324) < 0.002:
        return False
    counts, edges = np.histogram(sample, bins=50, range=(600.0, 1600.0))
    if counts.sum() == 0:
        return False
    peak = float((edges[np.argmax(counts)] + edges[np.argmax(counts) + 1]) / 2)
    return 924.0 <= peak <= 1124.0


def ensure_hounsfield(volume: Volume) -> Volume:
    """Return ``volume`` in Hounsfield units, undoing an unsigned "HU + 1024" storage.

    Some CT files (VTK's ``headsq``, older exports, PNG/TIFF stacks converted to
    volumes) store ``HU + 1024`` so that air is 0 and every value is unsigned. Such a
    volume fails the CT range check. When :func:`looks_like_offset_ct` says so, 1024
    is subtracted (as int16 where the values fit, else float32) and
    ``metadata["hu_offset_subtracted"] = 1024`` records it; otherwise the volume is
    returned unchanged. Values already in HU (air ≈ −1000) are never touched.
    """
    array = volume.array
    if float(array.min()) < 0.0 or not looks_like_offset_ct(array):
        return volume
    shifted: NDArray[Any]
    if np.issubdtype(array.dtype, np.integer) and float(array.max()) <= 32767 + 1024:
        shifted = (array.astype(np.int32) - int(UNSIGNED_CT_OFFSET)).astype(np.int16)
    else:
        shifted = array.astype(np.float32) - np.float32(UNSIGNED_CT_OFFSET)
    metadata = dict(volume.metadata)
    metadata["hu_offset_subtracted"] = int(UNSIGNED_CT_OFFSET)
    description = (volume.description + "; " if volume.description else "") + (
        "stored as HU+1024: 1024 subtracted"
    )
    return Volume(shifted, volume.affine, volume.path, description, metadata)


@dataclass(frozen=True)
class VolumeSummary:
    """What ``subct info`` reports about one loaded volume (all sizes in mm/voxels)."""

    path: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    orientation: str
    affine: list[list[float]]
    dtype: str
    minimum: float
    maximum: float
    description: str
    metadata: dict[str, Any]


def summarise_volume(volume: Volume) -> VolumeSummary:
    """Collect shape, spacing (mm), orientation, affine and intensity range of ``volume``."""
    return VolumeSummary(
        path="" if volume.path is None else str(volume.path),
        shape=volume.shape,
        spacing_mm=volume.spacing,
        orientation=volume.orientation,
        affine=[[float(value) for value in row] for row in volume.affine],
        dtype=str(volume.array.dtype),
        minimum=float(volume.array.min()),
        maximum=float(volume.array.max()),
        description=volume.description,
        metadata=dict(volume.metadata),
    )


def is_orthogonal_affine(affine: NDArray[np.float64], tolerance: float = 1e-4) -> bool:
    """True when the voxel axes of ``affine`` are mutually perpendicular (no shear)."""
    columns = affine[:3, :3] / np.sqrt((affine[:3, :3] ** 2).sum(axis=0))[None, :]
    return bool(np.allclose(columns.T @ columns, np.eye(3), atol=tolerance))


def save_volume(volume: Volume, path: str | Path, dtype: Any = None) -> Path:
    """Write ``volume`` atomically (temporary file in the same folder, then rename).

    The format follows the suffix (NIfTI, MGZ, NRRD/MHA). The voxel order and the
    affine are written unchanged, so the output overlays its source exactly.
    Refuses to overwrite ``volume.path`` (the input it was read from).
    """
    path = Path(path)
    if volume.path is not None and path.resolve() == volume.path.resolve():
        raise SubctInputError(path, "refusing to overwrite an input file")
    array = volume.array if dtype is None else volume.array.astype(dtype)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype == np.int64:
        array = array.astype(np.int32)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = next((s for s in sorted(VOLUME_SUFFIXES, key=len, reverse=True)
                   if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise SubctInputError(path, "unknown output format; use .nii.gz, .mgz, .nrrd or .mha")
    if suffix not in NIFTI_SUFFIXES and not is_orthogonal_affine(volume.affine):
        raise SubctInputError(
            path, "the affine is sheared (non-orthogonal axes); only NIfTI can store it exactly"
        )
    with atomic_output(path, suffix=suffix) as temporary:
        if suffix in NIFTI_SUFFIXES:
            image = nib.Nifti1Image(array, volume.affine)
            image.set_qform(volume.affine, code=1)
            image.set_sform(volume.affine, code=1)
            nib.save(image, str(temporary))
        elif suffix in FREESURFER_SUFFIXES:
            if array.dtype not in (np.uint8, np.int16, np.int32, np.float32):
                array = array.astype(np.float32 if np.issubdtype(array.dtype, np.floating)
                                     else np.int32)
            nib.save(nib.MGHImage(array, volume.affine), str(temporary))
        else:
            import SimpleITK as sitk

            itk_image = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0)).copy())
            spacing, origin, direction = affine_to_itk_geometry(volume.affine)
            itk_image.SetSpacing(spacing)
            itk_image.SetOrigin(origin)
            itk_image.SetDirection(direction)
            sitk.WriteImage(itk_image, str(temporary), useCompression=True)
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    A process killed mid-write leaves only a hidden ``.<name>.*`` temporary file, never
    a truncated output; on an exception the temporary file is removed. The final file
    gets the usual permissions (0666 minus the umask), not ``mkstemp``'s private 0600.
    Use it for every output file subct writes::

        with atomic_output(out_png, suffix=".png") as temporary:
            figure.savefig(temporary)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix, dir=str(path.parent)
    )
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a binary file atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)
    return path
