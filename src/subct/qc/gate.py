"""The input gate of ``subct segment``: refuse what is not a head CT before any label.

A plausible volume from a wrong input is worse than an error, so the pipeline stops
with one line (``<file>: does not look like a head CT (…); use --force to segment
anyway``) when:

- the image is too small to be a head scan (:data:`MIN_AXIS_VOXELS`, :data:`MIN_EXTENT_MM`);
- the file records no orientation (NIfTI qform and sform codes 0, NRRD without space
  directions) and the user did not state one (``--assume-orientation``): left and right
  could be swapped without any visible sign;
- the data do not look like a head CT (:func:`subct.qc.checks.assess_input`: no air near
  −1000 HU, no skull above 250 HU, intracranial tissue not at brain HU, a field of view
  larger than a head, values outside any CT range).

``force`` segments anyway; every reason stays in the QC flags.
"""

from __future__ import annotations

import numpy as np

from subct.errors import SubctInputError
from subct.image.volume import Volume
from subct.qc.checks import InputCheck

#: Fewest voxels along each axis of a head scan (a 5 mm scan of a head has ≥ 20 slices).
MIN_AXIS_VOXELS = 16
#: Smallest field of view along each axis (mm): the deep-brain structures alone span
#: 80 mm left-right and 115 mm superior-inferior.
MIN_EXTENT_MM = 60.0

_AXIS_VECTORS = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0),
                 "S": (0, 0, 1), "I": (0, 0, -1)}


def with_assumed_orientation(volume: Volume, axcodes: str) -> Volume:
    """``volume`` with the voxel axes pointing to ``axcodes`` (e.g. ``LPS``): the voxel
    sizes are kept, the grid is centred on the world origin, and the metadata records
    the assumption (``orientation_assumed``)."""
    spacing = np.sqrt((np.asarray(volume.affine)[:3, :3] ** 2).sum(axis=0))
    affine = np.eye(4)
    for axis, code in enumerate(axcodes.upper()):
        affine[:3, axis] = np.asarray(_AXIS_VECTORS[code], dtype=np.float64) * spacing[axis]
    centre = (np.asarray(volume.shape, dtype=np.float64) - 1.0) / 2.0
    affine[:3, 3] = -affine[:3, :3] @ centre
    metadata = {k: v for k, v in volume.metadata.items() if k != "orientation_unknown"}
    metadata["orientation_assumed"] = axcodes.upper()
    return Volume(volume.array, affine, volume.path, volume.description, metadata)


def check_orientation(volume: Volume, assume_orientation: str | None, force: bool) -> Volume:
    """Apply ``assume_orientation`` to a file without orientation, or refuse it."""
    if not volume.metadata.get("orientation_unknown"):
        return volume
    if assume_orientation:
        return with_assumed_orientation(volume, assume_orientation)
    if force:
        return volume
    raise SubctInputError(volume.path, "the file records no orientation (NIfTI qform/sform "
                                       "code 0 or NRRD without space directions), so left "
                                       "and right cannot be told apart; pass "
                                       "--assume-orientation RAS (or LPS, LIA, ...) if you "
                                       "know it, or --force to segment with mirrored labels "
                                       "possible")


def check_size(volume: Volume, force: bool) -> None:
    """Refuse images too small (in voxels or millimetres) to hold a head."""
    spacing = np.sqrt((np.asarray(volume.affine)[:3, :3] ** 2).sum(axis=0))
    extent = np.asarray(volume.shape, dtype=np.float64) * spacing
    if min(volume.shape) < MIN_AXIS_VOXELS or float(extent.min()) < MIN_EXTENT_MM:
        reason = (f"{' x '.join(map(str, volume.shape))} voxels, "
                  f"{' x '.join(f'{e:.0f}' for e in extent)} mm")
        if not force:
            raise SubctInputError(volume.path, f"does not look like a head CT (image of "
                                               f"{reason} is too small for a head); use "
                                               "--force to segment anyway")


def check_slice_gaps(volume: Volume, force: bool) -> None:
    """Refuse a DICOM series with a stretch of missing slices longer than one slice
    thickness (``--force`` segments it, flagged ``missing_slices``): the structures there
    would be interpolated across the hole, a plausible wrong volume."""
    gaps = volume.metadata.get("dicom_slice_gaps") or {}
    missing_mm = float(gaps.get("largest_missing_mm", 0.0))
    thickness = float(gaps.get("slice_thickness_mm", 0.0))
    if force or missing_mm <= thickness:
        return
    raise SubctInputError(volume.path, f"about {gaps.get('missing_slices')} slice(s) are "
                                       f"missing from the series ({missing_mm:.1f} mm without a "
                                       f"slice, slices {thickness:g} mm thick); add the missing "
                                       "files, or use --force to segment anyway (flagged)")


def check_head_ct(volume: Volume, input_check: InputCheck, force: bool) -> None:
    """Refuse inputs whose data do not look like a head CT (reasons from the QC flags)."""
    if input_check.looks_like_head_ct or force:
        return
    reasons = [flag.message for flag in input_check.flags if flag.code in NOT_HEAD_CT_CODES]
    text = "; ".join(reasons[:3]) or "its intensities and shape are not those of a head CT"
    raise SubctInputError(volume.path, f"does not look like a head CT ({text}); use --force "
                                       "to segment anyway")


#: QC flag codes that mean "not a head CT" (see :func:`subct.qc.checks.assess_input`).
NOT_HEAD_CT_CODES = ("no_air", "no_bone", "brain_hu", "fov_large", "hu_range", "not_anatomical")
