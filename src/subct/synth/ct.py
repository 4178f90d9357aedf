"""CT physics: tissue Hounsfield-unit priors, CT texture, shading and projection noise.

Intensities: each tissue (see :mod:`subct.synth.tissues`) draws a mean HU within its
prior's spread for every sample, each label a further small jitter, and every voxel
a texture value around it: a mix of white and spatially smooth Gaussian noise whose
standard deviation is drawn per tissue. A weak low-frequency additive shading mimics
beam-hardening/cupping.

Noise: for each axial (acquisition) slice the attenuation image μ = μ_water·(1 +
HU/1000) is forward-projected onto a parallel-beam sinogram, photon counts are drawn
from a Poisson law with I0·exp(−p) expected photons, the log-transformed noisy
sinogram minus the clean one is reconstructed by filtered back projection
(Ram-Lak), and added to the image in HU. Reconstructing only the noise is exact
because FBP is linear, and avoids FBP's own discretisation artefacts on the image.
The projector is a sparse system matrix in torch (built once per slice shape), so
the same code runs batched on CPU and GPU.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import scipy.sparse
import torch

from subct.synth.config import CTIntensityConfig, CTNoiseConfig
from subct.synth.intensity import smooth_random_field
from subct.synth.tissues import lookup, tissue_of

#: Tissues whose means the per-sample brain scale and offset move.
BRAIN_TISSUES = frozenset({"csf", "white_matter", "white_matter_lesion", "grey_matter",
                           "deep_grey", "brainstem", "blood"})


def sample_ct_parameters(
    label_values: Sequence[int], config: CTIntensityConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per compact index: mean HU and texture std (HU) for one sample."""
    tissue_mean = {
        name: float(rng.uniform(prior.mean_hu - prior.spread_hu, prior.mean_hu + prior.spread_hu))
        for name, prior in config.tissues.items()
    }
    tissue_std = {
        name: float(rng.uniform(*prior.texture_std)) for name, prior in config.tissues.items()
    }
    jitter = rng.uniform(-config.label_jitter_hu, config.label_jitter_hu, len(label_values))
    means = np.array(
        [tissue_mean[tissue_of(int(v))] + (jitter[i] if int(v) != 0 else 0.0)
         for i, v in enumerate(label_values)], dtype=np.float32,
    )
    stds = np.array([tissue_std[tissue_of(int(v))] for v in label_values], dtype=np.float32)
    # Per-sample changes of the whole intensity model, drawn only when configured (the
    # default draws nothing, so default samples stay exactly as before).
    brain = np.array([tissue_of(int(v)) in BRAIN_TISSUES for v in label_values])
    if config.brain_scale_range != (1.0, 1.0):
        scale = float(rng.uniform(*config.brain_scale_range))
        means[brain] = 30.0 + (means[brain] - 30.0) * scale
    if config.brain_offset_hu != (0.0, 0.0):
        means[brain] += float(rng.uniform(*config.brain_offset_hu))
    if config.texture_scale_range != (1.0, 1.0):
        stds *= float(rng.uniform(*config.texture_scale_range))
    return means, stds


def ct_texture_image(
    labels: torch.Tensor,
    means_hu: torch.Tensor,
    texture_std_hu: torch.Tensor,
    smooth_fraction: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """HU image: label means plus texture of per-label std, partly spatially smooth.

    The texture is ``sqrt(1-f)·white + sqrt(f)·smooth`` (unit variance each; smooth is
    white noise on a half-resolution grid, trilinearly upsampled and re-normalised),
    scaled by the label's std, so the per-label HU distribution keeps its drawn std.
    """
    index = labels.long()
    shape = tuple(labels.shape)
    texture = torch.randn(shape, generator=generator, device=labels.device)
    if smooth_fraction > 0.02:
        coarse_grid = tuple(max(2, n // 2) for n in shape)
        smooth = smooth_random_field(shape, coarse_grid, 1.0, generator,  # type: ignore[arg-type]
                                     labels.device)
        smooth = smooth / smooth.std().clamp(min=1e-6)
        texture = math.sqrt(1.0 - smooth_fraction) * texture + math.sqrt(smooth_fraction) * smooth
    return lookup(means_hu, index) + lookup(texture_std_hu, index) * texture


def _torch_csr(matrix: scipy.sparse.csr_matrix, device: torch.device) -> torch.Tensor:
    """scipy CSR → torch sparse CSR (float32), without re-sorting."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape, device=device,
        )


class ParallelBeamProjector:
    """Parallel-beam forward projection and filtered back projection of 2D slices.

    The system matrix is pixel-driven with linear interpolation between detector bins
    (1 mm pixels, 1 mm bins, ``n_angles`` over 180°); back projection is its exact
    transpose. Both are sparse CSR tensors, so a batch of slices costs two sparse
    matrix products.
    """

    def __init__(self, height: int, width: int, n_angles: int, device: torch.device) -> None:
        self.height, self.width, self.n_angles = height, width, n_angles
        self.n_detectors = int(math.ceil(math.hypot(height, width))) + 3
        angles = torch.arange(n_angles, dtype=torch.float64) * math.pi / n_angles
        rows = torch.arange(height, dtype=torch.float64) - (height - 1) / 2.0
        cols = torch.arange(width, dtype=torch.float64) - (width - 1) / 2.0
        y, x = torch.meshgrid(rows, cols, indexing="ij")
        position = (x.reshape(1, -1) * torch.cos(angles).view(-1, 1)
                    + y.reshape(1, -1) * torch.sin(angles).view(-1, 1)
                    + (self.n_detectors - 1) / 2.0)
        lower = torch.floor(position)
        upper_weight = (position - lower).float()
        lower_bin = lower.long() + (torch.arange(n_angles) * self.n_detectors).view(-1, 1)
        pixel = torch.arange(height * width).expand(n_angles, -1)
        row_index = torch.cat((lower_bin.reshape(-1), (lower_bin + 1).reshape(-1))).numpy()
        col_index = torch.cat((pixel.reshape(-1), pixel.reshape(-1))).numpy()
        values = torch.cat(((1.0 - upper_weight).reshape(-1), upper_weight.reshape(-1))).numpy()
        size = (n_angles * self.n_detectors, height * width)
        forward = scipy.sparse.csr_matrix((values, (row_index, col_index)), shape=size)
        self.forward_matrix = _torch_csr(forward, device)
        self.back_matrix = _torch_csr(forward.T.tocsr(), device)
        self.ramp_filter = self._ram_lak_frequency_response(self.n_detectors, device)

    @staticmethod
    def _ram_lak_frequency_response(n_detectors: int, device: torch.device) -> torch.Tensor:
        """FFT of the spatial Ram-Lak kernel (Kak & Slaney eq. 3.61), zero-padded."""
        size = 1 << int(math.ceil(math.log2(2 * n_detectors)))
        offsets = torch.cat((torch.arange(0, size // 2), torch.arange(-size // 2, 0)))
        kernel = torch.zeros(size, dtype=torch.float64)
        kernel[0] = 0.25
        odd = offsets % 2 == 1
        kernel[odd] = -1.0 / (math.pi * offsets[odd].double()) ** 2
        return torch.fft.rfft(kernel).real.float().to(device)

    def project(self, slices: torch.Tensor) -> torch.Tensor:
        """Line integrals (value × mm) of (B, H, W) slices → sinograms (B, angles, detectors)."""
        batch = slices.shape[0]
        flat = slices.reshape(batch, -1).t().contiguous()
        sinogram = torch.sparse.mm(self.forward_matrix, flat).t()
        return sinogram.reshape(batch, self.n_angles, self.n_detectors)

    def filtered_back_projection(self, sinograms: torch.Tensor) -> torch.Tensor:
        """Ram-Lak filtered back projection of (B, angles, detectors) → (B, H, W)."""
        batch = sinograms.shape[0]
        size = (self.ramp_filter.shape[0] - 1) * 2
        spectrum = torch.fft.rfft(sinograms, n=size, dim=-1) * self.ramp_filter
        filtered = torch.fft.irfft(spectrum, n=size, dim=-1)[..., : self.n_detectors]
        flat = filtered.reshape(batch, -1).t().contiguous()
        image = torch.sparse.mm(self.back_matrix, flat).t() * (math.pi / self.n_angles)
        return image.reshape(batch, self.height, self.width)


@lru_cache(maxsize=8)
def projector_for(height: int, width: int, n_angles: int, device: str) -> ParallelBeamProjector:
    """Cached projector for a slice shape (building one takes ~0.5 s at 160²)."""
    return ParallelBeamProjector(height, width, n_angles, torch.device(device))


def ct_noise_hu(
    hu_slices: torch.Tensor,
    photons_per_ray: float,
    config: CTNoiseConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Quantum noise (HU) of a CT acquisition of (B, H, W) slices at ``photons_per_ray``.

    Forward projection of μ, Poisson counts with mean I0·exp(−p), FBP of the
    log-domain count error. Add the result to ``hu_slices`` to get the noisy image.
    """
    batch, height, width = hu_slices.shape
    projector = projector_for(height, width, config.n_angles, str(hu_slices.device))
    water = config.water_attenuation_per_mm
    attenuation = (water * (1.0 + hu_slices / 1000.0)).clamp(min=0.0)
    line_integrals = projector.project(attenuation)
    expected = photons_per_ray * torch.exp(-line_integrals)
    counts = torch.poisson(expected, generator=generator)
    noisy = -torch.log(counts.clamp(min=1.0) / photons_per_ray)
    noise_attenuation = projector.filtered_back_projection(noisy - line_integrals)
    return 1000.0 * noise_attenuation / water


def add_ct_noise(
    hu_volume: torch.Tensor,
    slice_axis: int,
    slice_thickness_mm: float,
    config: CTNoiseConfig,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> torch.Tensor:
    """Noisy copy of a HU volume, slices perpendicular to ``slice_axis`` reconstructed alone.

    The dose I0 per ray is drawn log-uniformly from ``config.photons_per_ray_range``
    and scaled by the slice thickness (thicker slices collect more photons).
    """
    low, high = config.photons_per_ray_range
    photons = float(np.exp(rng.uniform(np.log(low), np.log(high)))) * max(slice_thickness_mm, 1.0)
    slices = hu_volume.movedim(slice_axis, 0).contiguous()
    noisy = slices + ct_noise_hu(slices, photons, config, generator)
    return noisy.movedim(0, slice_axis).contiguous()
