"""The mid-sagittal plane of an MRI, used to split merged (unlateralised) labels into
left and right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from subct.config import StrictConfig
from subct.errors import SubctConfigError, SubctError
from subct.image.masks import head_mask
from subct.image.sitk_bridge import volume_to_sitk
from subct.image.volume import Volume
from subct.labels.schemes import LEFT_RIGHT_PAIRS, remap

if TYPE_CHECKING:  # torch (meshnet) is heavy: import it only when a MeshNet runs
    pass


MidlineMethod = Literal["mirror", "centroid", "x0"]


@dataclass(frozen=True)
class MidsagittalPlane:
    """A plane in world space (RAS+, mm): points p with (p − point)·normal = 0.

    ``normal`` is a unit vector pointing to the subject's Right (+x side).
    """

    point_mm: tuple[float, float, float]
    normal: tuple[float, float, float]
    method: str

    def signed_distance_mm(self, affine: NDArray[np.float64],
                           shape: tuple[int, ...]) -> NDArray[np.float32]:
        """Signed distance (mm, > 0 on the Right) of every voxel centre of a grid."""
        normal = np.asarray(self.normal)
        # distance = n·(A[:3,:3] v + A[:3,3] − p): separable over the voxel axes
        per_axis = normal @ affine[:3, :3]
        offset = float(normal @ (affine[:3, 3] - np.asarray(self.point_mm)))
        grids = [
            (per_axis[axis] * np.arange(shape[axis], dtype=np.float32)).reshape(
                [-1 if a == axis else 1 for a in range(3)])
            for axis in range(3)
        ]
        return (grids[0] + grids[1] + grids[2] + np.float32(offset)).astype(np.float32)


def midsagittal_plane(mri: Volume, method: MidlineMethod = "mirror",
                      labels: NDArray[np.integer[Any]] | None = None) -> MidsagittalPlane:
    """Estimate the brain's mid-sagittal plane (see the module docstring for why).

    ``mirror``: rigid registration (mean squares, SimpleITK) of the MRI to its mirror
    image (about the plane x = centre of the grid); composing the mirroring M with the
    registration T gives the reflection S = M∘T about the symmetry plane: its normal
    is the eigenvector of S's matrix with eigenvalue −1 and (p + S(p))/2 lies on the
    plane for any p.
    Falls back to ``centroid`` when the registration fails. ``centroid``: the plane
    x = x of the centroid of ``labels`` (or of the head). ``x0``: the plane x = 0.
    """
    if method == "x0":
        return MidsagittalPlane((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), "x0")
    if method == "mirror":
        try:
            return _mirror_plane(mri)
        except (RuntimeError, np.linalg.LinAlgError, SubctError):
            pass  # registration failure: use the centroid
    elif method != "centroid":
        raise SubctConfigError(f"unknown midline method {method!r}; use mirror, centroid or x0")
    mask = (np.asarray(labels) > 0) if labels is not None else None
    if mask is None or not mask.any():
        mask = np.asarray(mri.array) > np.percentile(mri.array, 50)
    indices = np.argwhere(mask).mean(axis=0)
    centre = mri.affine[:3, :3] @ indices + mri.affine[:3, 3]
    return MidsagittalPlane((float(centre[0]), float(centre[1]), float(centre[2])),
                            (1.0, 0.0, 0.0), "centroid")


class MirrorRegistrationConfig(StrictConfig):
    """Settings of the mirror registration behind :func:`midsagittal_plane`.

    The image and its mirror have the same contrast, so the metric is mean squares
    (sharper than mutual information for a same-modality pair).

    Attributes:
        working_spacing_mm: images are block-averaged to about this voxel size first.
        shrink_factors: pyramid levels on top of the working resolution, coarse to fine.
        smoothing_sigmas_mm: Gaussian smoothing per level (mm).
        iterations: optimiser iterations per level.
        sampling_fraction: fraction of voxels sampled per metric evaluation.
    """

    working_spacing_mm: float = 3.0
    shrink_factors: tuple[int, ...] = (2, 1)
    smoothing_sigmas_mm: tuple[float, ...] = (3.0, 0.0)
    iterations: int = 100
    sampling_fraction: float = 0.2


def _mirror_plane(
    mri: Volume, config: MirrorRegistrationConfig | None = None
) -> MidsagittalPlane:
    import SimpleITK as sitk


    config = config or MirrorRegistrationConfig()
    centre_voxel = (np.asarray(mri.shape, dtype=np.float64) - 1) / 2
    centre = mri.affine[:3, :3] @ centre_voxel + mri.affine[:3, 3]
    mirror = np.eye(4)
    mirror[0, 0] = -1.0
    mirror[0, 3] = 2 * centre[0]  # x → 2c − x
    # Same voxels, mirrored world positions: no array copy, no interpolation.
    fixed = volume_to_sitk(mri, np.float32)
    moving = volume_to_sitk(Volume(np.asarray(mri.array), mirror @ mri.affine), np.float32)
    factors = [max(1, round(config.working_spacing_mm / s)) for s in fixed.GetSpacing()]
    if any(f > 1 for f in factors):
        fixed, moving = sitk.BinShrink(fixed, factors), sitk.BinShrink(moving, factors)
    initial = sitk.CenteredTransformInitializer(
        head_mask(fixed), head_mask(moving), sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetMetricFixedMask(head_mask(fixed))
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(config.sampling_fraction, seed=7)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=config.iterations,
        relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(config.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(config.smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(sitk.Euler3DTransform(initial), inPlace=True)
    transform = method.Execute(fixed, moving)

    def map_ras(points: NDArray[np.float64]) -> NDArray[np.float64]:
        flip = np.array([-1.0, -1.0, 1.0])
        return np.array([transform.TransformPoint(tuple(p * flip)) for p in points]) * flip

    # The transform maps a point p of the image to the mirrored image's point T(p),
    # which is the original image's point M(T(p)).
    points = np.array([centre, centre + [0, 40.0, 0], centre + [0, 0, 40.0],
                       centre + [40.0, 0, 0]])
    moved = map_ras(points)
    reflected = (mirror[:3, :3] @ moved.T).T + mirror[:3, 3]
    matrix = np.linalg.lstsq(
        np.c_[points, np.ones(4)], reflected, rcond=None)[0][:3].T  # S linear part
    values, vectors = np.linalg.eig(matrix)
    normal = np.real(vectors[:, int(np.argmin(np.real(values)))])
    normal /= np.linalg.norm(normal)
    if normal[0] < 0:
        normal = -normal
    if abs(normal[0]) < np.cos(np.radians(30)):
        raise SubctError("mirror registration gave a mid-sagittal plane tilted > 30°")
    on_plane = (points[0] + reflected[0]) / 2
    return MidsagittalPlane((float(on_plane[0]), float(on_plane[1]), float(on_plane[2])),
                            (float(normal[0]), float(normal[1]), float(normal[2])), "mirror")


def split_left_right_at_plane(merged: NDArray[np.integer[Any]], affine: NDArray[np.float64],
                              plane: MidsagittalPlane) -> NDArray[np.int16]:
    """Merged (left-ID) map → left/right IDs on either side of ``plane``.

    Voxels on the Right side of the plane get the right ID (e.g. 4 → 43); the
    brainstem (16) stays as it is; other values become background.
    """
    is_right = plane.signed_distance_mm(affine, np.shape(merged)) >= 0
    pairs = LEFT_RIGHT_PAIRS
    left_version = remap(merged, {left: left for left, _ in pairs} | {16: 16})
    right_version = remap(merged, {left: right for left, right in pairs} | {16: 16})
    return np.where(is_right, right_version, left_version).astype(np.int16, copy=False)
