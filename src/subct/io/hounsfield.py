"""Hounsfield-unit checks: plausible CT range and the unsigned (HU + 1024) storage offset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctInputError
from subct.image.volume import Volume


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


#: HU given to voxels outside the scanned field of view (air).
OUTSIDE_FOV_HU = -1024.0

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
    if detect_hu_offset(volume) == 0.0:
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


def detect_hu_offset(volume: Volume) -> float:
    """Offset to subtract from stored values to get HU: 1024 for HU+1024 storage, else 0.

    Uses :func:`subct.io.hounsfield.looks_like_offset_ct` (no negative values, air near 0, soft
    tissue peak near 1024, a bone tail), so MRI is not mistaken for offset CT.
    """
    if float(np.min(volume.array)) < 0.0:
        return 0.0
    return UNSIGNED_CT_OFFSET if looks_like_offset_ct(volume.array) else 0.0
