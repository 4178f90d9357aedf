"""Intensity and geometry preprocessing shared by training, synthesis and inference.

Training and inference must see identical inputs, so every step that turns a CT in
Hounsfield units into a network input lives here and nowhere else.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

#: Default HU window for subcortical CT: clips air/fat below and bone above, keeps the
#: brain (CSF ≈ 0–15 HU, white matter ≈ 25–30 HU, grey matter ≈ 35–45 HU) in range.
DEFAULT_HU_WINDOW: tuple[float, float] = (-100.0, 200.0)

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


def ct_window_normalise(
    hu: ArrayOrTensor, window: tuple[float, float] = DEFAULT_HU_WINDOW
) -> ArrayOrTensor:
    """Clip Hounsfield units to ``window`` and map the window linearly onto [0, 1].

    Works on numpy arrays and torch tensors (returned as float32 of the same kind).
    """
    low, high = float(window[0]), float(window[1])
    if isinstance(hu, torch.Tensor):
        return ((hu.float().clamp(low, high) - low) / (high - low)).float()
    return ((np.clip(np.asarray(hu, dtype=np.float32), low, high) - low) / (high - low)).astype(
        np.float32
    )
