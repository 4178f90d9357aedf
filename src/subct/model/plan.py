"""The plan of a model: the grid and intensity settings every stage must share.

As nnU-Net's plans: the voxel spacing (mm, RAS), the HU window mapped onto [0, 1], the
training patch and the inference window (voxels), the label scheme, the size divisor of
the network and the reference head pitch. Their defaults are defined here once; a
checkpoint records the values it was trained with
(:attr:`subct.model.metadata.CheckpointMetadata.plan`), and synthesis, training, the
nnU-Net export and inference read them from there or from the training config that
wrote it. Where two settings must agree and do not, :func:`require_same` stops with
both values named, instead of one silently winning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from subct.errors import SubctConfigError

#: Voxel size (mm) of the network grid: 1 mm isotropic, the grid of the label maps.
DEFAULT_SPACING_MM: tuple[float, float, float] = (1.0, 1.0, 1.0)
#: HU window for subcortical CT: clips air/fat below and bone above, keeps the brain
#: (CSF ≈ 0–15 HU, white matter ≈ 25–30 HU, grey matter ≈ 35–45 HU) in range.
DEFAULT_HU_WINDOW: tuple[float, float] = (-100.0, 200.0)


@dataclass(frozen=True)
class Plan:
    """What a trained network expects of its input and produces (units in the names)."""

    spacing_mm: tuple[float, float, float]
    hu_window: tuple[float, float]
    patch_size: tuple[int, int, int]
    label_scheme: str
    size_divisor: int
    reference_pitch_deg: float | None = None
    #: Sliding-window size at inference (voxels): the checkpoint's ``inference_window``,
    #: else ``patch_size`` (None here means the same).
    window_size: tuple[int, int, int] | None = None

    @property
    def inference_window(self) -> tuple[int, int, int]:
        """Sliding-window size (voxels, x y z) that inference uses."""
        return self.window_size or self.patch_size


def require_same(setting: str, value: Sequence[float] | float | str,
                 other_setting: str, other_value: Sequence[float] | float | str) -> None:
    """Refuse two settings that must be equal but are not, naming both values."""
    def normal(item: Sequence[float] | float | str) -> object:
        if isinstance(item, str):
            return item
        if isinstance(item, int | float):
            return float(item)
        return [float(v) for v in item]

    if normal(value) != normal(other_value):
        raise SubctConfigError(f"{setting} {normal(value)} differs from {other_setting} "
                               f"{normal(other_value)}: set it once, in {other_setting}")
