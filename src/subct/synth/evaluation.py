"""Synthetic head CTs for *evaluation*: the fixed protocol that scores a model.

Training randomises everything (acquisition resolution, contrast, pose); a score that
ranks models needs a protocol that does not move: the generator's default CT priors in
CT mode on a whole-head grid at 1 mm, the acquisition resolution left alone, drawn
clean or with the clinical pathology mix, and each head also read as the thick axial
slabs clinical head CT is reconstructed in (5 mm). The held-out benchmarks
(``benchmarks/bench_shipped_model.py``), issue 23's ship rule (``benchmarks/ship_rule.py``)
and the trainer's full-pipeline validation (``pipeline_validation.generator:
evaluation``) draw their heads with these helpers, so a checkpoint is selected on
the same kind of image the rule then judges it on. :func:`embedded_paper_head` draws the
heads of the ensemble paper's real subcortical shapes (7 merged classes) the same way.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from subct.image.volume import Volume
from subct.labels.convert import convert_to_canonical
from subct.labels.schemes import to_scheme
from subct.synth.background import embed_in_head
from subct.synth.config import PathologyConfig, SynthConfig
from subct.synth.generator import SynthGenerator

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


def embedded_paper_head(subcortical: Volume, head_labels: Volume, shape: tuple[int, int, int],
                        seed: int, condition: Condition = "clean"
                        ) -> tuple[Volume, NDArray[np.int16]]:
    """One whole synthetic head CT carrying a paper subcortical map's real shapes.

    ``subcortical`` (the ensemble paper's 7 merged classes, any grid) is split at the
    midline and embedded in the whole-head map ``head_labels``
    (:func:`subct.synth.background.embed_in_head`, as in training); one head is drawn
    from it with the evaluation generator (``shape`` voxels of 1 mm, ``seed``,
    ``condition``). Returns the CT (HU, int16) and its reference on the paper's 7 merged
    classes (``paper7``), which is all such a map can score: it has no amygdala or
    accumbens and no left/right of its own.
    """
    labels, affine = embed_in_head(np.asarray(subcortical.array), subcortical.affine,
                                   np.asarray(head_labels.array), head_labels.affine)
    generator = SynthGenerator([Volume(labels.astype(np.int32), affine)],
                               evaluation_synth_config(shape, condition), seed=seed)
    sample = generator.sample(0)
    if sample.hu is None:
        raise RuntimeError("the synthetic generator gave no HU image in CT mode")
    ct = Volume(np.round(sample.hu.numpy()).astype(np.int16), sample.affine.copy(),
                description="synthetic CT of an embedded paper map")
    canonical = convert_to_canonical(sample.labels_fs.numpy(), "freesurfer")
    return ct, to_scheme(canonical, "paper7").astype(np.int16)
