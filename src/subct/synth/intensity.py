"""Generic-mode contrast: Gaussian mixture, bias field, min–max rescale and gamma.

Follows SynthSeg section 3.1.2–3.1.3: per-class means μ ~ U(a_μ, b_μ) and standard
deviations σ ~ U(a_σ, b_σ) are drawn for every sample (fully random contrast), the
image is multiplied by a smooth, exponentiated Gaussian bias field, rescaled to
[0, 1] and raised to exp(γ) with γ ~ N(0, σ_γ²). Left and right structures share one
class (see :func:`subct.synth.tissues.generic_class_of`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from subct.synth.config import GenericIntensityConfig
from subct.synth.spatial import upsample_linear
from subct.synth.tissues import generic_class_of, lookup


def sample_generic_parameters(
    label_values: Sequence[int], config: GenericIntensityConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per compact index (mean, std) of the GMM; labels of one class share their values."""
    classes = sorted({generic_class_of(int(label)) for label in label_values})
    class_means = dict(zip(classes, rng.uniform(*config.mean_range, len(classes)), strict=True))
    class_stds = dict(zip(classes, rng.uniform(*config.std_range, len(classes)), strict=True))
    means = np.array([class_means[generic_class_of(int(v))] for v in label_values], np.float32)
    stds = np.array([class_stds[generic_class_of(int(v))] for v in label_values], np.float32)
    return means, stds


def gaussian_mixture_image(
    labels: torch.Tensor, means: torch.Tensor, stds: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """G(x) ~ N(μ[L(x)], σ[L(x)]²), independently at each voxel (float32)."""
    index = labels.long()
    noise = torch.randn(labels.shape, generator=generator, device=labels.device)
    return lookup(means, index) + lookup(stds, index) * noise


def smooth_random_field(
    shape: tuple[int, int, int],
    grid: tuple[int, int, int],
    std: float,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """Gaussian noise N(0, std²) on a small ``grid``, upsampled trilinearly to ``shape``."""

    coarse = torch.randn((1, *grid), generator=generator, device=device) * std
    return upsample_linear(coarse, shape)[0]


def bias_field(
    shape: tuple[int, int, int],
    config: GenericIntensityConfig,
    rng: np.random.Generator,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor | None:
    """Multiplicative bias B = exp(upsampled N(0, σ_B²)), σ_B ~ U(0, b_B); None if off."""
    if config.bias_std_max <= 0:
        return None
    std = float(rng.uniform(0.0, config.bias_std_max))
    return torch.exp(smooth_random_field(shape, config.bias_grid, std, generator, device))


def rescale_and_gamma(image: torch.Tensor, log_gamma: float) -> torch.Tensor:
    """Min–max rescale to [0, 1], then voxel-wise power exp(log_gamma) (SynthSeg eq. 19)."""
    low, high = image.min(), image.max()
    scaled = (image - low) / torch.clamp(high - low, min=1e-6)
    return scaled.clamp(0.0, 1.0) ** float(np.exp(log_gamma))
