"""Blood-like (hyperdense) regions inside the skull: likely haemorrhages.

Found once per case on the network's crop (1 mm RAS grid, HU), before the network: the
input clean-up fills the large ones for the network
(:func:`subct.inference.dense.inpaint_blood_like_regions`) and the QC names the structures
next to them (:func:`subct.qc.anatomy.check_hyperdense_regions`). An image measure, so it
lives here, used by both.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.image.masks import connected_components, depth_inside_mm

#: Blood-like density (HU) after 1 mm Gaussian smoothing: acute haemorrhage is 50–90 HU,
#: grey matter 35–45 HU; calcium (> 100 HU) and a 3-voxel rim around it are excluded.
HYPERDENSE_HU: tuple[float, float] = (55.0, 100.0)
#: Hyperdense regions at least this large (mm³) are reported. On the validation heads the
#: largest blood-like speck without a lesion was 0.3 cm³ (5 mm slabs) and on the real GE
#: scan 0.09 cm³; every head with a drawn haemorrhage had one of ≥ 2.9 cm³
#: (``benchmarks/bench_hyperdense.py``).
HYPERDENSE_MIN_MM3 = 500.0
#: Regions this close (mm) to the edge of the intracranial mask are the skull's partial
#: volume, not blood.
SKULL_EDGE_MM = 5.0


def hyperdense_regions(crop_hu: NDArray[np.float32], intracranial: NDArray[np.bool_],
                       spacing_mm: tuple[float, float, float],
                       depth_mm: NDArray[np.float64] | None = None
                       ) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """Connected blood-like regions (acute blood 50–90 HU, calcium excluded): their label
    array and each one's volume in mm³ (index 0, the background, has volume 0).
    ``depth_mm``: distance from the outside of ``intracranial`` if already computed."""
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if depth_mm is None:
        depth_mm = depth_inside_mm(intracranial, spacing_mm)
    inner = depth_mm > SKULL_EDGE_MM
    smooth = ndimage.gaussian_filter(np.asarray(crop_hu, dtype=np.float32), 1.0 / spacing)
    calcium = ndimage.binary_dilation(crop_hu > HYPERDENSE_HU[1], iterations=3)
    blood = (smooth >= HYPERDENSE_HU[0]) & (smooth <= HYPERDENSE_HU[1]) & inner & ~calcium
    components, count = connected_components(blood)
    sizes = np.bincount(components.ravel(), minlength=count + 1) * float(np.prod(spacing))
    sizes[0] = 0.0
    return components, sizes.astype(np.float64)


def large_hyperdense_regions(regions: tuple[NDArray[np.int32], NDArray[np.float64]]
                             ) -> NDArray[np.bool_]:
    """The voxels of the regions of :func:`hyperdense_regions` at least
    :data:`HYPERDENSE_MIN_MM3` large: the likely haemorrhages."""
    components, sizes = regions
    return np.isin(components, np.flatnonzero(sizes >= HYPERDENSE_MIN_MM3))
