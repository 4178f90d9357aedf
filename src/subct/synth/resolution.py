"""Acquisition resolution: slice thickness blur, slice spacing down- and up-sampling.

SynthSeg section 3.1.4: an acquisition axis is chosen, the slice spacing
r_spac ~ U(r_HR, b_res) and thickness r_thick ~ U(r_HR, r_spac) are drawn, the image is
blurred along that axis with a Gaussian of σ = 2α·log(10)/(2π)·r_thick/r_HR voxels
(the slice profile, α ~ U(a_α, b_α)), resampled to the slice spacing and back to
1 mm with linear interpolation. Clinical head CT is mostly axial with 2–5 mm slices,
hence the default axial preference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from subct.synth.config import ResolutionConfig

#: High (output) resolution in mm.
HIGH_RESOLUTION_MM = 1.0


@dataclass(frozen=True)
class AcquisitionResolution:
    """One simulated acquisition: axis (0 x, 1 y, 2 z of the RAS grid), spacing, thickness."""

    axis: int
    spacing_mm: float
    thickness_mm: float
    alpha: float

    @property
    def blur_sigma_voxels(self) -> float:
        """Standard deviation of the Gaussian slice profile, in 1 mm voxels."""
        return 2.0 * self.alpha * math.log(10.0) / (2.0 * math.pi) * (
            self.thickness_mm / HIGH_RESOLUTION_MM)


def sample_resolution(
    config: ResolutionConfig, rng: np.random.Generator
) -> AcquisitionResolution | None:
    """Draw an acquisition, or ``None`` (keep 1 mm) with probability 1 - ``config.probability``."""
    if rng.uniform() >= config.probability:
        return None
    axis = int(rng.choice(3, p=np.asarray(config.axis_probabilities)))
    spacing = float(rng.uniform(*config.spacing_range_mm))
    thickness = float(rng.uniform(HIGH_RESOLUTION_MM, max(spacing, HIGH_RESOLUTION_MM)))
    alpha = float(rng.uniform(*config.thickness_alpha_range))
    return AcquisitionResolution(axis, spacing, thickness, alpha)


def gaussian_blur_matrix(length: int, sigma: float) -> torch.Tensor:
    """(length × length) matrix of a 1D Gaussian blur (σ in voxels, edges replicated)."""
    if sigma <= 0.1:
        return torch.eye(length)
    radius = max(1, int(math.ceil(3.0 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = torch.zeros(length, length, dtype=torch.float64)
    rows = torch.arange(length).view(-1, 1)
    columns = (rows + offsets.long().view(1, -1)).clamp(0, length - 1)
    matrix.index_put_((rows.expand_as(columns), columns), kernel.expand(length, -1),
                      accumulate=True)
    return matrix.float()


def linear_resampling_matrix(source_length: int, target_length: int) -> torch.Tensor:
    """(target × source) linear-interpolation matrix, end points aligned (align_corners)."""
    positions = torch.linspace(0.0, source_length - 1.0, target_length, dtype=torch.float64)
    lower = positions.floor().long().clamp(max=source_length - 1)
    upper = (lower + 1).clamp(max=source_length - 1)
    weight = positions - lower
    matrix = torch.zeros(target_length, source_length, dtype=torch.float64)
    rows = torch.arange(target_length)
    matrix.index_put_((rows, lower), 1.0 - weight, accumulate=True)
    matrix.index_put_((rows, upper), weight, accumulate=True)
    return matrix.float()


def _apply_along_axis(volume: torch.Tensor, matrix: torch.Tensor, axis: int) -> torch.Tensor:
    """Multiply every line of ``volume`` along ``axis`` by ``matrix`` (new length = rows)."""
    moved = volume.movedim(axis, -1)
    result = torch.matmul(moved, matrix.to(volume.device).t())
    return result.movedim(-1, axis).contiguous()


def gaussian_blur_along_axis(volume: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    """1D Gaussian blur of a 3D tensor along ``axis`` (σ in voxels, edges replicated)."""
    return _apply_along_axis(volume, gaussian_blur_matrix(volume.shape[axis], sigma), axis)


def simulate_resolution(
    volume: torch.Tensor,
    acquisition: AcquisitionResolution,
    low_resolution_hook: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Blur with the slice profile, sample at the slice spacing, return to 1 mm.

    Blur and resampling along one axis are linear, so each is a small matrix applied
    to every line along the acquisition axis (two BLAS products for the volume).

    Args:
        volume: 3D float tensor on the 1 mm grid.
        acquisition: axis, spacing and thickness (mm).
        low_resolution_hook: applied to the low-resolution volume before upsampling
            (CT noise is simulated there, slice by slice, as a scanner would).
    """
    axis = acquisition.axis
    length = volume.shape[axis]
    slices = max(2, int(round((length - 1) * HIGH_RESOLUTION_MM / acquisition.spacing_mm)) + 1)
    down = linear_resampling_matrix(length, slices) @ gaussian_blur_matrix(
        length, acquisition.blur_sigma_voxels)
    low = _apply_along_axis(volume, down, axis)
    if low_resolution_hook is not None:
        low = low_resolution_hook(low)
    return _apply_along_axis(low, linear_resampling_matrix(slices, length), axis)
