"""What ``subct build-dataset`` runs on each MRI/CT pair.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator

from subct.config import StrictConfig

DONE_MARKER = "done.json"


class BuildConfig(StrictConfig):
    """Settings of :func:`build_dataset` (the CLI options of ``subct build-dataset``).

    Attributes:
        tools: segmenter registry names (:func:`subct.transfer.registry.get_segmenter`).
        fusion: ``consensus``, ``majority``, ``weighted`` or ``staple``.
        fusion_weights: per-segmenter weights for ``weighted``.
        segmenter_options: extra options per tool name, passed to ``get_segmenter``.
        transform: MRI → CT registration model when registration is needed.
        assume_aligned: treat every pair as pre-registered (SynthRAD2023): no
            registration, labels resampled by world coordinates. Pairs on the same grid
            are skipped automatically anyway.
        target_spacing_mm: isotropic voxel size of the written CT/labels (paper: 1 mm).
        max_shape: largest output grid in voxels (paper: 256³), cropped around the head.
        split_fractions: train/val/test fractions.
        split_seed: seed of the split.
        site_split: ``stratify`` (each site split 70/15/15, every split sees every site)
            or ``hold_out`` (whole sites go to one split, for site-generalisation tests).
        outlier_z: robust z-score (median/MAD) of a structure volume beyond which a case
            is flagged.
        min_agreement: mean segmenter agreement inside structures below which a case
            is flagged.
        min_pairwise_dice: mean Dice between pairs of segmenters below which a case is
            flagged (the better check with two segmenters, where majority voting keeps
            only voxels both agree on and the agreement is always 1).
        threads_per_case: CPU threads each case may use (ITK, torch).
        dataset_name: nnU-Net dataset name written into ``dataset.json``.
    """


    tools: tuple[str, ...] = Field(min_length=1)
    fusion: Literal["consensus", "majority", "weighted", "staple"] = "majority"
    fusion_weights: tuple[float, ...] | None = None
    segmenter_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    transform: Literal["rigid", "affine", "deformable"] = "affine"
    assume_aligned: bool = False
    target_spacing_mm: float = Field(1.0, gt=0)
    max_shape: tuple[int, int, int] = (256, 256, 256)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    site_split: Literal["stratify", "hold_out"] = "stratify"
    outlier_z: float = 3.0
    min_agreement: float = 0.6
    min_pairwise_dice: float = 0.5
    threads_per_case: int = Field(1, ge=1)
    dataset_name: str = "Dataset501_SubCTEnsemble"

    @field_validator("split_fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, ...]:
        if any(f < 0 for f in value) or not math.isclose(sum(value), 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {value}")
        return value
