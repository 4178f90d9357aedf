"""Intensity and geometry preprocessing shared by training, synthesis and inference.

Training and inference must see identical inputs, so every step that turns a CT in
Hounsfield units into a network input lives here and nowhere else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from subct.config import StrictConfig
from subct.image.resample import resample_to_spacing
from subct.image.volume import Volume
from subct.labels.schemes import labels_to_indices, merge_left_right

if TYPE_CHECKING:  # torch is not imported here: ONNX Runtime inference runs without it
    import torch
from subct.image.masks import skull_strip_mask
from subct.model.plan import DEFAULT_HU_WINDOW, DEFAULT_SPACING_MM

__all__ = ["DEFAULT_HU_WINDOW", "DEFAULT_SPACING_MM", "GeometryConfig", "ct_window_normalise",
           "preprocess_ct"]


ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, "torch.Tensor")


def ct_window_normalise(
    hu: ArrayOrTensor, window: tuple[float, float] = DEFAULT_HU_WINDOW
) -> ArrayOrTensor:
    """Clip Hounsfield units to ``window`` and map the window linearly onto [0, 1].

    Works on numpy arrays and torch tensors (returned as float32 of the same kind).
    """
    low, high = float(window[0]), float(window[1])
    if isinstance(hu, np.ndarray) or not hasattr(hu, "clamp"):  # numpy, lists, memmaps
        return ((np.clip(np.asarray(hu, dtype=np.float32), low, high) - low)  # type: ignore[return-value]
                / (high - low)).astype(np.float32)
    return ((hu.float().clamp(low, high) - low) / (high - low)).float()  # a torch tensor


#: Orientation of every network input grid (x → Right, y → Anterior, z → Superior).
NETWORK_ORIENTATION = "RAS"


def to_network_grid(
    volume: Volume, spacing_mm: tuple[float, float, float], *, is_label: bool
) -> Volume:
    """Reorient ``volume`` to RAS and resample it to ``spacing_mm`` (mm per voxel).

    Label maps use nearest-neighbour interpolation (no blended labels), CT linear
    interpolation in HU after the same anti-aliasing as inference's crop
    (:func:`subct.image.resample.smooth_for_downsampling`). Volumes already at the
    spacing (within 1e-3 mm) are only reoriented, so 1 mm conformed label maps are not
    interpolated at all.
    """
    ras = volume.reoriented(NETWORK_ORIENTATION)
    if np.allclose(ras.spacing, spacing_mm, atol=1e-3):
        return ras
    return resample_to_spacing(ras, tuple(float(s) for s in spacing_mm),  # type: ignore[arg-type]
                               interpolation="nearest" if is_label else "linear",
                               antialias=not is_label)


class GeometryConfig(StrictConfig):
    """Grid and intensity preprocessing shared by training and inference.

    Attributes:
        spacing_mm: voxel size of the network grid in mm (RAS axes).
        hu_window: HU range mapped onto [0, 1].
        skull_strip: set voxels outside :func:`skull_strip_mask` to the window minimum.
        merge_left_right: train on/predict the merged (9-structure) scheme; labels are
            merged with :func:`subct.labels.schemes.merge_left_right` (paper 4.2 option).
        reference_pitch_deg: head pitch (degrees) of the training data's pose, written
            into every checkpoint the run saves (``CheckpointMetadata.reference_pitch_deg``)
            so that inference turns its crop to that pose; None: axis-aligned crops. A run
            on the SynthSeg maps 01-16 in their own pose: 24.7 (``benchmarks/bench_pitch.py``).
    """


    spacing_mm: tuple[float, float, float] = DEFAULT_SPACING_MM
    hu_window: tuple[float, float] = DEFAULT_HU_WINDOW
    skull_strip: bool = False
    merge_left_right: bool = False
    reference_pitch_deg: float | None = Field(default=None, ge=-90.0, le=90.0)


def preprocess_ct(volume: Volume, config: GeometryConfig) -> tuple[Volume, NDArray[np.float32]]:
    """CT in HU on any grid → (HU volume on the network grid, network input in [0, 1]).

    The returned volume carries the RAS grid's affine so that predictions can be mapped
    back to the input grid with :func:`subct.image.resample.resample_to_geometry`.
    """
    grid = to_network_grid(volume, config.spacing_mm, is_label=False)
    hu = np.asarray(grid.array, dtype=np.float32)
    if config.skull_strip:
        mask = skull_strip_mask(hu, config.spacing_mm)
        hu = np.where(mask, hu, np.float32(config.hu_window[0]))
        grid = grid.with_array(hu)
    return grid, ct_window_normalise(hu, config.hu_window)


def preprocess_labels(volume: Volume, config: GeometryConfig, scheme: str = "canonical"
                      ) -> NDArray[np.int64]:
    """Label map with scheme values (FreeSurfer IDs) → class indices on the network grid.

    With ``merge_left_right`` the canonical map is first merged (right IDs → left IDs)
    and ``scheme`` must be ``"merged"``.
    """

    grid = to_network_grid(volume, config.spacing_mm, is_label=True)
    values = np.asarray(grid.array)
    if config.merge_left_right:
        values = merge_left_right(values)
    return labels_to_indices(values, scheme)
