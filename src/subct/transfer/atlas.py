"""Atlas segmentation: the Harvard-Oxford atlas carried to the MRI by registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from subct.image.volume import Volume
from subct.transfer.registration import register

if TYPE_CHECKING:  # torch (meshnet) is heavy: import it only when a MeshNet runs
    from subct.transfer.registration import RegistrationConfig
from subct.labels.atlas import harvard_oxford_subcortical
from subct.transfer.segmenter import Segmenter


@dataclass
class AtlasSegmenter(Segmenter):
    """Harvard-Oxford subcortical atlas registered to the MRI (labels: nearest neighbour).

    Attributes:
        transform: ``rigid``, ``affine`` or ``deformable`` (see :mod:`subct.transfer.registration`).
        min_probability_percent: atlas probability needed for a structure label.
        registration: optional :class:`subct.transfer.registration.RegistrationConfig`.
    """

    name: str = "atlas-ho"
    transform: str = "affine"
    min_probability_percent: float = 50.0
    registration: RegistrationConfig | None = None

    def segment(self, mri: Volume) -> Volume:
        """Register the MNI152 template to ``mri`` and warp the atlas labels onto it."""

        template, atlas = harvard_oxford_subcortical(self.min_probability_percent)
        result = register(mri, template, self.transform, self.registration)  # type: ignore[arg-type]
        moved = result.resample_labels(atlas)
        return Volume(moved.array.astype(np.int16), mri.affine.copy(), None,
                      f"{self.name} labels ({self.transform})")
