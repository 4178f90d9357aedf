"""Synthetic head CTs for *evaluation*: the fixed protocol that scores a model.

Training randomises everything (acquisition resolution, contrast, pose); a score that
ranks models needs a protocol that does not move: the generator's default CT priors in
CT mode on a whole-head grid at 1 mm, the acquisition resolution left alone, drawn
clean or with the clinical pathology mix, and each head also read as the thick axial
slabs clinical head CT is reconstructed in (5 mm). The held-out benchmarks
(``benchmarks/bench_shipped_model.py``), issue 23's ship rule (``benchmarks/ship_rule.py``)
and the trainer's full-pipeline validation (``pipeline_validation.generator:
evaluation``) draw their heads with these two helpers, so a checkpoint is selected on
the same kind of image the rule then judges it on.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from subct.image.volume import Volume
from subct.synth.config import PathologyConfig, SynthConfig

#: Clean heads, or heads drawn with :meth:`PathologyConfig.clinical`'s probabilities.
Condition = Literal["clean", "clinical"]

#: The thick-slice protocol of the benchmarks: axial slabs of this many 1 mm slices.
CLINICAL_SLAB_MM = 5


def evaluation_synth_config(shape: tuple[int, int, int],
                            condition: Condition = "clean") -> SynthConfig:
    """The evaluation generator: default CT priors, ``shape`` voxels of 1 mm, no
    simulated acquisition resolution (thick slices come from :func:`axial_slabs`);
    ``clinical`` adds the clinical pathology mix (infarcts, haemorrhage, atrophy, ...)."""
    config = SynthConfig(mode="ct", output_shape=shape)
    config.resolution.probability = 0.0
    if condition == "clinical":
        config.pathology = PathologyConfig.clinical()
    return config


def axial_slabs(ct_1mm: Volume, reference_1mm: Volume, thickness: int
                ) -> tuple[Volume, Volume]:
    """A 1 mm RAS head → axial slabs of ``thickness`` mm (boxcar profile, no gap), LPS.

    The CT of each slab is the mean of its ``thickness`` 1 mm slices (a rectangular slice
    profile, HU rounded to int16); its reference label is the label of the slab's central
    1 mm slice. Slices past the last whole slab are dropped.
    """
    hu = np.asarray(ct_1mm.array, dtype=np.float32)
    labels = np.asarray(reference_1mm.array)
    slabs = hu.shape[2] // thickness
    used = slabs * thickness
    averaged = hu[:, :, :used].reshape(hu.shape[0], hu.shape[1], slabs, thickness).mean(axis=3)
    central = labels[:, :, thickness // 2:used:thickness]
    affine = np.array(ct_1mm.affine, dtype=np.float64)
    thick_affine = affine.copy()
    thick_affine[:3, 2] = affine[:3, 2] * thickness
    # slab k covers 1 mm slices k*t .. k*t+t-1; its centre is at index k*t + (t-1)/2
    thick_affine[:3, 3] = affine[:3, 3] + affine[:3, 2] * (thickness - 1) / 2.0
    ct_thick = Volume(np.round(averaged).astype(np.int16), thick_affine,
                      description=f"synthetic CT, {thickness} mm axial slabs")
    reference_thick = Volume(np.ascontiguousarray(central.astype(np.int16)),
                             thick_affine.copy(), description="reference labels at slab centres")
    return ct_thick.reoriented("LPS"), reference_thick.reoriented("LPS")
