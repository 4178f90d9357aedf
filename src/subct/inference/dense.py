"""In-painting of small dense foci inside the skull before the network sees the crop.

Calcification of the pallidum, choroid plexus and pineal (100–1,000 HU) is common in
the elderly scans subct is used on, and so are contrast-filled vessels in CT
angiograms. The network's HU window ends at 200 HU, so such a focus reads as bone:
on held-out heads with calcified pallidi the shipped model lost the pallidum entirely
(Dice 0.003). SynthSeg's rule says the focus belongs to the anatomy underneath, so the
network should see that anatomy: every small connected focus above
:data:`DENSE_FOCUS_HU` inside the intracranial mask (not touching its edge, where the
skull's partial volume lies) is replaced by the median HU of a thin shell of the
non-dense tissue around it (the focus's one-voxel partial-volume rim included) — grey
matter around a pallidal calcification, CSF around a
plexus calcification. Only the network's input changes: QC (``dense_in_structure``),
the bone rule and the reported mean HU all read the original image.

Acute blood is treated the same way at a larger scale. A haematoma (50–90 HU) in the
basal ganglia or thalamus, or blood layering in a ventricle, is labelled in the
reference as the anatomy it lies in, but the network, which never saw blood in
training, reads the bright region as something else and the structure around it
shrinks or vanishes. Each blood-like region found by
:func:`subct.image.hyperdense.hyperdense_regions` (the same regions the ``hyperdense_lesion``
warning names; ≥ 0.5 cm³) is filled from its rim inwards, layer by layer, each voxel
taking the mean of its already-known neighbours (:func:`fill_from_surroundings`), so
that grey matter on one side and white matter or CSF on the other continue into it
rather than one flat median. The structures next to it stay flagged: what is under a
haematoma is a continuation of its surroundings, not a measurement.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.image.masks import bounding_box, connected_components, depth_inside_mm

#: Above this HU a voxel inside the skull is dense (calcium, contrast, metal); acute
#: blood (50–90 HU) stays below it and is left as it is.
DENSE_FOCUS_HU = 100.0
#: Larger dense components (mm³) are left alone: not a focus (a mislocated skull base,
#: a large haematoma, a shunt's reservoir).
MAX_FOCUS_MM3 = 4000.0
#: Foci closer than this (mm) to the edge of the intracranial mask are the inner table's
#: partial volume, not calcification.
EDGE_MARGIN_MM = 3.0
#: Width (mm) of the shell whose median replaces a focus.
SHELL_MM = 2.0
#: A blood-like region (found on 1 mm-smoothed HU, so its edge lies a little inside the
#: blood's) is grown by this much (mm) before it is filled: the partial-volume rim.
BLOOD_RIM_MM = 2.0
#: Voxels outside this HU range never feed a fill (air, fat, bone, calcium).
FILL_SOURCE_HU: tuple[float, float] = (-20.0, 100.0)


def inpaint_dense_foci(hu: NDArray[np.float32], intracranial: NDArray[np.bool_],
                       spacing_mm: tuple[float, float, float],
                       depth_mm: NDArray[np.float64] | None = None
                       ) -> tuple[NDArray[np.float32], int]:
    """``hu`` with small dense foci inside ``intracranial`` replaced by their
    surroundings' median (see the module docstring), and the number of voxels changed.

    Args:
        hu: crop in HU (X, Y, Z), not modified.
        intracranial: intracranial mask on the same grid.
        spacing_mm: voxel size of the grid (mm).
        depth_mm: distance (mm) of each voxel from the outside of ``intracranial``, when
            the caller has it (the pipeline computes it once for several checks).
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if depth_mm is None:
        depth_mm = depth_inside_mm(intracranial, spacing_mm)
    inner = depth_mm > EDGE_MARGIN_MM
    dense = hu > DENSE_FOCUS_HU
    if not (dense & inner).any():
        return hu, 0
    # Components of ALL dense voxels, so that bone reaching into the mask (inner table,
    # clinoid processes, a mask edge that overlaps the skull) stays one component with
    # the skull and is never in-painted: a focus is an island of density lying wholly
    # inside the inner part of the skull-enclosed space.
    components, count = connected_components(dense, full_connectivity=True)
    voxel_mm3 = float(np.prod(spacing))
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    reaching_out = np.bincount(components[~inner], minlength=count + 1) > 0
    shell_steps = max(1, int(round(SHELL_MM / float(spacing.min()))))
    result = hu.copy()
    changed = 0
    for index, bounds in enumerate(ndimage.find_objects(components), start=1):
        if bounds is None or reaching_out[index] or sizes[index] * voxel_mm3 > MAX_FOCUS_MM3:
            continue
        grown = tuple(slice(max(s.start - shell_steps - 2, 0), s.stop + shell_steps + 2)
                      for s in bounds)
        # the focus and its one-voxel partial-volume rim (else a bright ring remains)
        focus = ndimage.binary_dilation(components[grown] == index) & intracranial[grown]
        shell = ndimage.binary_dilation(focus, iterations=shell_steps) & ~focus
        shell &= (hu[grown] <= DENSE_FOCUS_HU) & intracranial[grown]
        if not shell.any():
            continue
        block = result[grown]
        block[focus] = np.float32(np.median(hu[grown][shell]))
        changed += int(focus.sum())
    return result, changed


def fill_from_surroundings(hu: NDArray[np.float32], region: NDArray[np.bool_],
                           source: NDArray[np.bool_]) -> tuple[NDArray[np.float32], int]:
    """``hu`` with the voxels of ``region`` replaced from the outside in: in each pass
    every region voxel with a known neighbour (26-neighbourhood; known = ``source`` voxels
    outside the region, and voxels filled in earlier passes) takes the mean of its known
    neighbours. Returns the filled copy and the number of voxels filled; region voxels
    that no known voxel connects to keep their value.

    An onion-peel fill rather than one mean: a region straddling grey and white matter
    continues each of them inwards, meeting in the middle, which keeps the boundary the
    network reads. Works on the region's bounding box only.
    """
    result = hu.copy()
    box = bounding_box(region, margin_voxels=1)
    if box is None:
        return result, 0
    values = result[box].astype(np.float64)
    missing = region[box].copy()
    known = source[box] & ~missing
    values[~known] = 0.0
    filled = 0
    while missing.any():
        counts = ndimage.uniform_filter(known.astype(np.float64), 3, mode="constant")
        sums = ndimage.uniform_filter(values, 3, mode="constant")
        layer = missing & (counts > 1e-9)
        if not layer.any():
            break
        values[layer] = sums[layer] / counts[layer]
        known |= layer
        missing &= ~layer
        filled += int(layer.sum())
    block = result[box]
    done = region[box] & ~missing
    block[done] = values[done].astype(np.float32)
    return result, filled


def inpaint_blood_like_regions(hu: NDArray[np.float32], regions: NDArray[np.bool_],
                               intracranial: NDArray[np.bool_],
                               spacing_mm: tuple[float, float, float]
                               ) -> tuple[NDArray[np.float32], int]:
    """``hu`` with the blood-like ``regions`` (grown by a :data:`BLOOD_RIM_MM` rim) filled
    from their surroundings inside ``intracranial`` (:func:`fill_from_surroundings`; see
    the module docstring); returns the copy and the number of voxels changed.
    ``regions``: the large components of :func:`subct.image.hyperdense.hyperdense_regions` on
    the same grid.

    Every region is filled from the tissue around it, blood in a CSF space included: a
    variant that gave regions with a CSF-dense shell the CSF level never fired on the
    validation heads (the shells of intraventricular layers were 9–22 % CSF-dense) and
    was dropped (``docs/benchmarks.md``, "Blood-like regions in-painted").
    """
    if not regions.any():
        return hu, 0
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    steps = max(1, int(round(BLOOD_RIM_MM / float(spacing.min()))))
    grown = ndimage.binary_dilation(regions, iterations=steps) & intracranial
    source = intracranial & (hu >= FILL_SOURCE_HU[0]) & (hu <= FILL_SOURCE_HU[1])
    return fill_from_surroundings(hu, grown, source)
