"""CT-like images synthesised from a T1 MRI and its label map (for known-answer tests).

Registration accuracy can only be measured when the true transform is known. No
public paired MRI/CT of one head is available here, so the CT side of a test pair is
synthesised from a real T1 and its FreeSurfer aseg by giving each tissue class a
typical Hounsfield value from :data:`subct.synth.tissues.CT_TISSUE_HU` (contrast
*inverted* relative to T1 where CT inverts it):

=====================  ===========================  =========
tissue                 how it is found              HU
=====================  ===========================  =========
air                    outside the filled head mask −1000
CSF, ventricles        aseg 4/43/5/44/14/15/24/...  8
white matter           aseg 2/41/7/46/16/28/60/...  27
grey matter            other aseg labels            38
bone (skull)           dark T1 outside the brain    1300
fat (scalp, orbit)     bright T1 outside the brain  −90
other soft tissue      remaining head voxels        45
=====================  ===========================  =========

then a light Gaussian blur (CT's partial-volume point spread) and Gaussian noise
(σ ≈ 4 HU, like a soft-tissue kernel). The joint histogram with the T1 is therefore
many-to-one and non-monotone, like a real CT/T1 pair, which is what mutual
information has to cope with.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.errors import SubctInputError
from subct.image.masks import largest_component
from subct.image.volume import Volume
from subct.synth.tissues import CT_TISSUE_HU

#: FreeSurfer aseg IDs treated as CSF (ventricles, CSF, choroid plexus, vessel).
CSF_LABELS: tuple[int, ...] = (4, 5, 14, 15, 24, 31, 43, 44, 63, 72)


#: FreeSurfer aseg IDs treated as white matter (incl. brainstem, ventral DC, CC).
WHITE_MATTER_LABELS: tuple[int, ...] = (2, 7, 16, 28, 41, 46, 60, 77, 85, 251, 252, 253,
                                        254, 255)






def head_mask_from_t1(
    t1: NDArray[np.floating], threshold_fraction: float = 0.12
) -> NDArray[np.bool_]:
    """Filled mask of the head: T1 above ``threshold_fraction`` × 99th percentile."""
    values = np.asarray(t1, dtype=np.float32)
    threshold = threshold_fraction * float(np.percentile(values[values > 0], 99))
    mask = ndimage.binary_closing(values > threshold, iterations=3)
    filled: NDArray[np.bool_] = ndimage.binary_fill_holes(largest_component(mask))
    return filled


def pseudo_ct_from_t1(t1: Volume, aseg: Volume, seed: int = 0, noise_hu: float = 4.0) -> Volume:
    """A CT-like image (HU, float32) of the head in ``t1``, on the T1's grid.

    Args:
        t1: T1-weighted MRI with the scalp and skull in the field of view.
        aseg: FreeSurfer-style label map on the same grid (brain tissue classes).
        seed: seed of the added noise.
        noise_hu: standard deviation of the added Gaussian noise, in HU.
    """
    if t1.shape != aseg.shape:
        raise SubctInputError(aseg.path, f"aseg shape {aseg.shape} differs from T1 {t1.shape}")
    intensity = np.asarray(t1.array, dtype=np.float32)
    labels = np.asarray(aseg.array).astype(np.int32)
    head = head_mask_from_t1(intensity)
    brain = labels > 0
    white_level = float(np.median(intensity[np.isin(labels, (2, 41))])) if np.isin(
        labels, (2, 41)).any() else float(np.percentile(intensity[head], 90))
    hu = np.full(intensity.shape, CT_TISSUE_HU["air"], dtype=np.float32)
    outside_brain = head & ~brain
    hu[outside_brain] = CT_TISSUE_HU["soft_tissue"]
    hu[outside_brain & (intensity < 0.45 * white_level)] = CT_TISSUE_HU["cortical_bone"]
    hu[outside_brain & (intensity > 1.05 * white_level)] = CT_TISSUE_HU["fat"]
    hu[brain] = CT_TISSUE_HU["grey_matter"]
    hu[np.isin(labels, WHITE_MATTER_LABELS)] = CT_TISSUE_HU["white_matter"]
    hu[np.isin(labels, CSF_LABELS)] = CT_TISSUE_HU["csf"]
    spacing = np.asarray(t1.spacing)
    hu = ndimage.gaussian_filter(hu, sigma=0.6 / spacing).astype(np.float32)
    rng = np.random.default_rng(seed)
    hu += rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32)
    return Volume(hu, t1.affine.copy(), description="pseudo-CT from T1 + aseg")
