"""Spatial augmentation: random affine ∘ diffeomorphic deformation, flip and crop.

Everything is built on the *output* grid (the crop), so only the voxels that will be
seen are ever computed: each output voxel x (mm, centred on the crop) is sent to
``centre + M (x + d(x))`` in world space, where ``d`` is a displacement obtained by
integrating a smooth stationary velocity field (scaling and squaring, Arsigny et al.
2006) and ``M`` a random rotation · shear · scaling (SynthSeg section 3.1.1). The
label map is then pulled once with nearest-neighbour lookup.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from subct.synth.config import SpatialConfig
from subct.synth.label_maps import StoredLabelMap
from subct.synth.resolution import linear_resampling_matrix


def rotation_matrix(angles_rad: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rotation about x, then y, then z (RAS axes), angles in radians."""
    cx, cy, cz = np.cos(angles_rad)
    sx, sy, sz = np.sin(angles_rad)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx, dtype=np.float64)


def random_affine_matrix(config: SpatialConfig, rng: np.random.Generator) -> NDArray[np.float64]:
    """Random 3×3 linear part ``rotation · shear · scaling`` with SynthSeg's uniform priors.

    The determinant is always positive (scalings > 0, small shears), so the map never
    mirrors; mirroring is done separately by the L/R flip, which also swaps labels.
    """
    angles = np.deg2rad(rng.uniform(-config.rotation_deg, config.rotation_deg, 3))
    if config.pitch_extra_deg > 0:  # drawn only when set: default samples are unchanged
        angles[0] += np.deg2rad(rng.uniform(-config.pitch_extra_deg, config.pitch_extra_deg))
    scales = rng.uniform(1.0 - config.scaling, 1.0 + config.scaling, 3)
    shears = rng.uniform(-config.shearing, config.shearing, 3)
    shear = np.array([[1.0, shears[0], shears[1]], [0.0, 1.0, shears[2]], [0.0, 0.0, 1.0]])
    return np.asarray(rotation_matrix(angles) @ shear @ np.diag(scales), dtype=np.float64)


def _identity_grid(shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    """grid_sample identity grid, shape (1, *shape, 3), last axis ordered (dim2, dim1, dim0)."""
    axes = [torch.linspace(-1.0, 1.0, n, device=device) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack((mesh[2], mesh[1], mesh[0]), dim=-1).unsqueeze(0)


def _as_grid(displacement: torch.Tensor) -> torch.Tensor:
    """(1, 3, a, b, c) displacement (channel k along dim k) → (1, a, b, c, 3) in (x, y, z)."""
    return displacement.flip(1).permute(0, 2, 3, 4, 1)


def integrate_velocity(velocity: torch.Tensor, steps: int) -> torch.Tensor:
    """Scaling and squaring: displacement of exp(v) for a stationary velocity field.

    Args:
        velocity: (1, 3, a, b, c) field in grid_sample's normalised units
            (channel k along spatial dim k, [-1, 1] spans the grid, corners aligned).
        steps: number of squarings; the field is first divided by 2**steps.

    Returns:
        The displacement field of the integrated, diffeomorphic transform, same layout.
    """
    displacement = velocity / (2.0**steps)
    identity = _identity_grid(tuple(velocity.shape[2:]), velocity.device)  # type: ignore[arg-type]
    for _ in range(steps):
        warped = F.grid_sample(
            displacement, identity + _as_grid(displacement),
            mode="bilinear", padding_mode="border", align_corners=True,
        )
        displacement = displacement + warped
    return displacement


def upsample_linear(field: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear (align_corners) upsampling of a (C, a, b, c) field to (C, *shape).

    Done as three separable matrix products, which on CPU is faster than
    ``F.interpolate`` and gives the same values.
    """

    result = field
    for axis, size in enumerate(shape):
        if result.shape[axis + 1] == size:
            continue
        matrix = linear_resampling_matrix(result.shape[axis + 1], size).to(field.device)
        result = torch.matmul(result.movedim(axis + 1, -1), matrix.t()).movedim(-1, axis + 1)
    return result.contiguous()


def svf_grid_shape(
    output_shape: tuple[int, int, int], config: SpatialConfig
) -> tuple[int, int, int]:
    """Control points of the velocity field per axis: one every ``nonlinear_spacing_mm``."""
    sizes = [max(2, round((n - 1) / config.nonlinear_spacing_mm) + 1) for n in output_shape]
    return (sizes[0], sizes[1], sizes[2])


def random_coarse_displacement_mm(
    output_shape: tuple[int, int, int],
    config: SpatialConfig,
    rng: np.random.Generator,
    generator: torch.Generator,
    device: torch.device,
    std_mm: float | None = None,
) -> torch.Tensor | None:
    """Random diffeomorphic displacement on the integration grid, (3, a, b, c) in mm.

    The grid spans the output crop with ``output / integration_downsample`` points per
    axis (corners aligned). A Gaussian SVF with control points every
    ``config.nonlinear_spacing_mm`` (SynthSeg: 10³ points over a 256 mm image) and std
    σ ~ U(0, b_nonlin) mm is upsampled to that grid and integrated by scaling and
    squaring. Returns ``None`` when the deformation is switched off (b_nonlin = 0);
    ``std_mm`` fixes σ instead of drawing it (e.g. to check the largest deformation).
    """
    if config.nonlinear_std_max_mm <= 0:
        return None
    if std_mm is None:
        std_mm = float(rng.uniform(0.0, config.nonlinear_std_max_mm))
    to_normalised = torch.tensor(
        [2.0 / max(n - 1, 1) for n in output_shape], device=device
    ).view(1, 3, 1, 1, 1)
    velocity = torch.randn(
        (1, 3, *svf_grid_shape(output_shape, config)), generator=generator, device=device
    ) * std_mm * to_normalised
    integration_shape = tuple(
        max(2, math.ceil(n / config.integration_downsample)) for n in output_shape
    )
    velocity = F.interpolate(velocity, size=integration_shape, mode="trilinear",
                             align_corners=True)
    displacement = integrate_velocity(velocity, config.integration_steps)
    return (displacement / to_normalised)[0]


def random_displacement_mm(
    output_shape: tuple[int, int, int],
    config: SpatialConfig,
    rng: np.random.Generator,
    generator: torch.Generator,
    device: torch.device,
    std_mm: float | None = None,
) -> torch.Tensor | None:
    """The random displacement of :func:`random_coarse_displacement_mm` on the output grid.

    Shape (3, X, Y, Z), mm; upsampled trilinearly from the integration grid.
    """
    coarse = random_coarse_displacement_mm(output_shape, config, rng, generator, device, std_mm)
    return None if coarse is None else upsample_linear(coarse, output_shape)


def jacobian_determinant(displacement_mm: torch.Tensor) -> torch.Tensor:
    """det(I + ∇d) of a displacement field (3, X, Y, Z) in mm on a 1 mm grid.

    Central differences (one-sided at the edges). The full transform's Jacobian
    determinant is this times det(M) of the affine part; a diffeomorphism keeps it > 0.
    """
    field = displacement_mm.float()
    rows = []
    for component in range(3):
        gradients = torch.gradient(field[component], dim=(0, 1, 2))
        rows.append([gradients[axis] + (1.0 if axis == component else 0.0)
                     for axis in range(3)])
    (a, b, c), (d, e, f), (g, h, i) = rows
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


def pull_labels(
    stored: StoredLabelMap,
    output_shape: tuple[int, int, int],
    matrix: NDArray[np.float64],
    centre_mm: NDArray[np.float64],
    coarse_displacement_mm: torch.Tensor | None,
) -> torch.Tensor:
    """Nearest-neighbour labels of the deformed map on the output grid.

    Output voxel x (centred, mm) is read at world ``centre_mm + matrix (x + d(x))``,
    ``d`` being the coarse displacement (3, a, b, c) upsampled trilinearly. Since
    trilinear interpolation reproduces affine functions exactly, the source voxel
    coordinates are computed on the coarse grid and upsampled once. Stored maps carry
    a background border, so clamping coordinates into the map makes every point
    outside it read background (index 0).

    Returns:
        Compact label indices, shape ``output_shape``, dtype of ``stored.indices``.
    """
    device = stored.indices.device
    world_to_voxel = np.linalg.inv(stored.affine)
    linear = torch.tensor(world_to_voxel[:3, :3] @ matrix, dtype=torch.float32, device=device)
    # +0.5: truncation of the (non-negative, clamped) coordinates then rounds to nearest
    offset = torch.tensor(world_to_voxel[:3, :3] @ centre_mm + world_to_voxel[:3, 3] + 0.5,
                          dtype=torch.float32, device=device).view(3, 1, 1, 1)
    grid_shape = output_shape if coarse_displacement_mm is None else tuple(
        coarse_displacement_mm.shape[1:])
    axes = [torch.linspace(-(n - 1) / 2.0, (n - 1) / 2.0, m, device=device)
            for n, m in zip(output_shape, grid_shape, strict=True)]
    views = [axes[0].view(-1, 1, 1), axes[1].view(1, -1, 1), axes[2].view(1, 1, -1)]
    # affine part, separable: coordinate_k = Σ_j linear[k, j] · x_j + offset_k
    coordinates = offset + sum(
        linear[:, j].view(3, 1, 1, 1) * views[j].unsqueeze(0) for j in range(3))
    if coarse_displacement_mm is not None:
        coordinates = coordinates + torch.einsum(
            "kj,jabc->kabc", linear, coarse_displacement_mm)
        coordinates = upsample_linear(coordinates, output_shape)
    else:
        coordinates = coordinates.expand(3, *output_shape).contiguous()
    source_shape = stored.indices.shape
    upper = torch.tensor([n - 0.51 for n in source_shape], dtype=torch.float32,
                         device=device).view(3, 1, 1, 1)
    coordinates.clamp_(min=torch.zeros_like(upper), max=upper)
    strides = (source_shape[1] * source_shape[2], source_shape[2], 1)
    if stored.indices.numel() < 2**24:
        # float32 holds every integer below 2**24 exactly: flat index without int passes
        coordinates.floor_()
        flat = coordinates[0] * float(strides[0])
        flat += coordinates[1] * float(strides[1])
        flat += coordinates[2]
        flat_index = flat.to(torch.int64)
    else:
        voxel = coordinates.to(torch.int64)
        flat_index = voxel[0] * strides[0] + voxel[1] * strides[1] + voxel[2]
    return torch.take(stored.indices, flat_index).view(output_shape)
