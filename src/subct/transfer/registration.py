"""Cross-modal MRI → CT registration (Mattes mutual information, SimpleITK).

The ensemble label-transfer method segments the MRI of an MRI/CT pair and carries
the labels onto the CT. This module finds the spatial transform between the two
images and resamples MRI-space images and label maps onto the CT grid.

Method (the classic multi-resolution intensity-based recipe, as elastix and ANTs
also use it): head masks of both images are aligned by their centres of mass, then a
**rigid** (6 parameters) and, for ``"affine"``/``"deformable"``, an **affine**
(12 parameters) transform is optimised with Mattes mutual information (MI works
across modalities: CT and T1 intensities are not related by any monotone map) on an
image pyramid; ``"deformable"`` adds a cubic B-spline free-form deformation. The
backend was chosen on measured evidence (``benchmarks/bench_registration.py``,
``docs/benchmarks.md``).

Conventions: :attr:`RegistrationResult.transform` is a SimpleITK transform in ITK's
**LPS+** physical coordinates (mm) that maps a point of the *fixed* image (the CT)
to the corresponding point of the *moving* image (the MRI), which is what resampling
the moving image onto the fixed grid needs. :meth:`RegistrationResult.map_points_ras`
applies it to RAS+ points (the convention of :class:`subct.image.volume.Volume`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from pydantic import Field

from subct.config import StrictConfig
from subct.errors import SubctConfigError, SubctInputError
from subct.image.masks import _dilated, head_mask
from subct.image.sitk_bridge import (
    empty_sitk_image,
    sitk_to_array,
    volume_to_sitk,
)
from subct.image.volume import Volume
from subct.io.writers import atomic_output

TRANSFORM_SUFFIXES: tuple[str, ...] = (".tfm", ".txt", ".h5", ".hdf5")

TransformKind = Literal["rigid", "affine", "deformable"]


TRANSFORM_KINDS: tuple[str, ...] = ("rigid", "affine", "deformable")


class RegistrationConfig(StrictConfig):
    """Settings of :func:`register`; the defaults suit 1 mm head MRI/CT pairs.

    Attributes:
        histogram_bins: Mattes MI joint-histogram bins per image.
        sampling_fraction: fraction of (masked) fixed voxels sampled per metric
            evaluation, at every pyramid level. Lower is faster and noisier.
        shrink_factors: image pyramid downsampling per level (voxels), coarse to fine.
        smoothing_sigmas_mm: Gaussian smoothing per level, in mm.
        rigid_iterations: optimiser iterations per level for the rigid stage.
        affine_iterations: optimiser iterations per level for the affine stage.
        learning_rate_mm: initial optimiser step (largest voxel shift, in mm).
        minimum_step_mm: stop a level when the step shrinks below this (mm).
        bspline_grid_spacing_mm: control-point spacing of the deformable stage (mm).
            Coarse (60 mm) because SimpleITK's B-spline stage has no smoothness penalty:
            finer grids (40 mm) over-fitted the blurred coarse pyramid levels in the
            benchmark and lowered the full-resolution MI.
        bspline_iterations: L-BFGS-B iterations per level of the deformable stage.
        bspline_shrink_factors: pyramid of the deformable stage.
        bspline_smoothing_sigmas_mm: smoothing of the deformable stage (mm).
        bspline_min_mi_gain: the B-spline stage is kept only when it raises the
            working-resolution Mattes MI by at least this much (nats) over the affine
            result; otherwise the affine transform is returned (recorded in ``stages``).
        working_spacing_mm: both images are first reduced (block averaging) to about
            this voxel size; the pyramid runs on top of it. 2 mm keeps sub-millimetre
            accuracy for rigid/affine head registration at a fraction of the cost of
            1 mm (measured in ``benchmarks/bench_registration.py``). ``None``: native.
        mask_dilation_mm: the metric is sampled inside the fixed head mask dilated
            by this margin (mm), so the head outline contributes but air does not.
        seed: random seed of the metric sampling (results are reproducible).
        threads: ITK worker threads (``None``: all cores; use 1 inside Dask workers).
    """

    histogram_bins: int = 32
    sampling_fraction: float = 0.05
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas_mm: tuple[float, ...] = (2.0, 1.0, 0.0)
    rigid_iterations: int = 100
    affine_iterations: int = 60
    learning_rate_mm: float = 2.0
    minimum_step_mm: float = 0.005
    bspline_grid_spacing_mm: float = 60.0
    bspline_iterations: int = 20
    bspline_shrink_factors: tuple[int, ...] = (2, 1)
    bspline_smoothing_sigmas_mm: tuple[float, ...] = (1.0, 0.0)
    bspline_min_mi_gain: float = 0.0
    working_spacing_mm: float | None = Field(default=2.0, gt=0)
    mask_dilation_mm: float = 6.0
    seed: int = 20231
    threads: int | None = Field(default=None, ge=1)

    def model_post_init(self, context: Any, /) -> None:
        if len(self.shrink_factors) != len(self.smoothing_sigmas_mm):
            raise SubctConfigError("shrink_factors and smoothing_sigmas_mm differ in length")
        if len(self.bspline_shrink_factors) != len(self.bspline_smoothing_sigmas_mm):
            raise SubctConfigError(
                "bspline_shrink_factors and bspline_smoothing_sigmas_mm differ in length"
            )
        if not 0.0 < self.sampling_fraction <= 1.0:
            raise SubctConfigError(
                f"sampling_fraction must be in (0, 1], got {self.sampling_fraction}"
            )


@dataclass
class RegistrationResult:
    """A fixed→moving transform and what it did.

    Attributes:
        transform: SimpleITK transform, LPS+ mm, fixed point → moving point.
        kind: ``"rigid"``, ``"affine"``, ``"deformable"`` or ``"identity"`` (skipped);
            ``"affine"`` also when a deformable stage was run but rejected because it
            did not raise the mutual information (see ``stages``).
        metric_before: Mattes mutual information (nats; higher = better aligned) of
            the images under the initial (identity) transform.
        metric_after: the same metric under the final transform.
        fixed_geometry_affine: voxel→RAS affine of the fixed grid (resampling target).
        fixed_shape: shape of the fixed grid in voxels.
        skipped: True when registration was skipped (same grid or ``assume_aligned``).
        elapsed_s: wall-clock seconds spent.
        stages: per-stage details (iterations, final metric, stop condition).
    """

    transform: sitk.Transform
    kind: str
    metric_before: float
    metric_after: float
    fixed_geometry_affine: NDArray[np.float64]
    fixed_shape: tuple[int, int, int]
    skipped: bool = False
    elapsed_s: float = 0.0
    stages: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------ resampling
    def resample_image(
        self, moving: Volume, order: int = 1, default_value: float | None = None
    ) -> Volume:
        """Resample a moving-space image onto the fixed grid.

        Args:
            moving: image in the moving (MRI) space; any grid, same world space.
            order: interpolation, 0 nearest, 1 linear, 3 cubic B-spline.
            default_value: value outside the moving image (default: its minimum).
        """
        interpolators = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}
        if order not in interpolators:
            raise SubctConfigError(f"interpolation order must be 0, 1 or 3, got {order}")
        if default_value is None:
            default_value = float(np.min(moving.array))
        image = volume_to_sitk(moving, np.float32)
        resampled = sitk.Resample(
            image, self._reference(), self.transform, interpolators[order], default_value,
            sitk.sitkFloat32,
        )
        array = sitk_to_array(resampled)
        return Volume(array.astype(np.float32), self.fixed_geometry_affine.copy(),
                      description=f"{moving.description} registered ({self.kind})".strip())

    def resample_labels(self, labels: Volume) -> Volume:
        """Resample a moving-space label map onto the fixed grid (nearest neighbour).

        Label IDs are copied, never interpolated, so the output has only values of
        the input. Voxels that map outside the label map become background (0).
        """
        array = np.asarray(labels.array)
        if not np.issubdtype(array.dtype, np.integer):
            rounded = np.rint(array)
            if not np.allclose(rounded, array):
                raise SubctInputError(labels.path, "label map has non-integer values")
            array = rounded
        image = volume_to_sitk(labels.with_array(array.astype(np.int32)), np.int32)
        resampled = sitk.Resample(
            image, self._reference(), self.transform, sitk.sitkNearestNeighbor, 0, sitk.sitkInt32
        )
        moved = sitk_to_array(resampled).astype(np.int16)
        return Volume(moved, self.fixed_geometry_affine.copy(),
                      description=f"labels registered ({self.kind})")

    def map_points_ras(self, points_ras: NDArray[np.floating]) -> NDArray[np.float64]:
        """Map fixed-space points (N×3, RAS+ mm) to moving-space points (RAS+ mm)."""
        points = np.asarray(points_ras, dtype=np.float64).reshape(-1, 3)
        lps = points * np.array([-1.0, -1.0, 1.0])
        moved = np.array([self.transform.TransformPoint(tuple(p)) for p in lps])
        if moved.size == 0:
            return np.zeros((0, 3))
        return moved * np.array([-1.0, -1.0, 1.0])

    def save(self, path: str | Path) -> Path:
        """Write the transform atomically as an ITK transform file (``.tfm`` or ``.h5``).

        The file opens in SimpleITK (``sitk.ReadTransform``), ITK-SNAP, 3D Slicer
        and ANTs (ITK convention: LPS, fixed → moving).
        """
        path = Path(path)
        suffix = next((s for s in TRANSFORM_SUFFIXES if path.name.lower().endswith(s)), None)
        if suffix is None:
            raise SubctInputError(path, "transform file must end in .tfm, .txt or .h5")
        with atomic_output(path, suffix=suffix) as temporary:
            sitk.WriteTransform(self.transform, str(temporary))
        return path

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: kind, skipped, metric before/after, time, stages."""
        return {
            "kind": self.kind,
            "skipped": self.skipped,
            "metric": "mattes_mutual_information_nats",
            "metric_before": self.metric_before,
            "metric_after": self.metric_after,
            "elapsed_s": round(self.elapsed_s, 3),
            "stages": self.stages,
        }

    def _reference(self) -> sitk.Image:
        return empty_sitk_image(tuple(self.fixed_shape), self.fixed_geometry_affine)


def _to_working_resolution(image: sitk.Image, spacing_mm: float | None) -> sitk.Image:
    """Block-average ``image`` by integer factors so its voxels are about ``spacing_mm``."""
    if spacing_mm is None:
        return image
    factors = [max(1, int(round(spacing_mm / s))) for s in image.GetSpacing()]
    if all(f == 1 for f in factors):
        return image
    return sitk.BinShrink(image, factors)


def register(
    fixed: Volume,
    moving: Volume,
    transform: TransformKind = "affine",
    config: RegistrationConfig | None = None,
    *,
    assume_aligned: bool = False,
) -> RegistrationResult:
    """Register ``moving`` (e.g. a T1 MRI) to ``fixed`` (e.g. the paired head CT).

    Args:
        fixed: target image; its grid is where moved images and labels are written.
        moving: image to align onto ``fixed``.
        transform: ``"rigid"`` (6 dof), ``"affine"`` (rigid then 12 dof) or
            ``"deformable"`` (rigid, affine, then a B-spline free-form deformation).
        config: optimiser/pyramid settings (defaults: :class:`RegistrationConfig`).
        assume_aligned: the pair is already in register (e.g. SynthRAD2023 pairs):
            skip optimisation and return the identity transform. Also done
            automatically when both images share the same grid.

    Returns:
        The transform (fixed → moving, LPS mm) with Mattes MI before and after.
    """
    import time

    if transform not in TRANSFORM_KINDS:
        raise SubctConfigError(
            f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORM_KINDS)}"
        )
    config = config or RegistrationConfig()
    started = time.perf_counter()
    if config.threads is not None:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(config.threads))
    fixed_image = _to_working_resolution(volume_to_sitk(fixed, np.float32),
                                         config.working_spacing_mm)
    moving_image = _to_working_resolution(volume_to_sitk(moving, np.float32),
                                          config.working_spacing_mm)
    fixed_mask = head_mask(fixed_image)
    sampling_mask = _dilated(fixed_mask, config.mask_dilation_mm)
    identity = sitk.Euler3DTransform()
    metric_before = _mutual_information(fixed_image, moving_image, sampling_mask, identity,
                                        config)
    fixed_affine = fixed.affine.copy()
    shape = fixed.shape
    if assume_aligned or fixed.geometry.same_grid(moving.geometry):
        return RegistrationResult(
            transform=sitk.Transform(3, sitk.sitkIdentity), kind="identity",
            metric_before=metric_before, metric_after=metric_before,
            fixed_geometry_affine=fixed_affine, fixed_shape=shape, skipped=True,
            elapsed_s=time.perf_counter() - started,
            stages=[{"stage": "skipped", "reason": "assume_aligned" if assume_aligned
                     else "same grid"}],
        )
    moving_mask = head_mask(moving_image)
    initial = sitk.CenteredTransformInitializer(
        fixed_mask, moving_mask, sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS,
    )
    stages: list[dict[str, Any]] = []
    kind_done: str = transform
    rigid = _optimise(fixed_image, moving_image, sampling_mask, sitk.Euler3DTransform(initial),
                      config, config.rigid_iterations, "rigid", stages)
    final: sitk.Transform = rigid
    if transform in ("affine", "deformable"):
        affine = sitk.AffineTransform(3)
        affine.SetCenter(rigid.GetCenter())
        affine.SetMatrix(rigid.GetMatrix())
        affine.SetTranslation(rigid.GetTranslation())
        final = _optimise(fixed_image, moving_image, sampling_mask, affine, config,
                          config.affine_iterations, "affine", stages)
    if transform == "deformable":
        final = _deformable(fixed_image, moving_image, sampling_mask, final, config, stages)
        if not stages[-1]["accepted"]:
            kind_done = "affine"
    metric_after = _mutual_information(fixed_image, moving_image, sampling_mask, final, config)
    return RegistrationResult(
        transform=final, kind=kind_done, metric_before=metric_before, metric_after=metric_after,
        fixed_geometry_affine=fixed_affine, fixed_shape=shape,
        elapsed_s=time.perf_counter() - started, stages=stages,
    )


def _method(
    config: RegistrationConfig, mask: sitk.Image, fraction: float
) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.histogram_bins)
    method.SetMetricFixedMask(mask)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(fraction, config.seed)
    method.SetInterpolator(sitk.sitkLinear)
    return method


def _mutual_information(
    fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, transform: sitk.Transform,
    config: RegistrationConfig,
) -> float:
    """Mattes MI (nats, higher = better) at full resolution, fixed sampling seed."""
    method = _method(config, mask, min(1.0, max(config.sampling_fraction, 0.1)))
    method.SetInitialTransform(transform, inPlace=False)
    return -float(method.MetricEvaluate(fixed, moving))


def _optimise(
    fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, initial: sitk.Transform,
    config: RegistrationConfig, iterations: int, name: str, stages: list[dict[str, Any]],
) -> Any:
    method = _method(config, mask, config.sampling_fraction)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=config.learning_rate_mm, minStep=config.minimum_step_mm,
        numberOfIterations=iterations, relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(config.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(config.smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=True)
    method.Execute(fixed, moving)
    stages.append({
        "stage": name,
        "iterations_last_level": int(method.GetOptimizerIteration()),
        "metric": -float(method.GetMetricValue()),
        "stop": method.GetOptimizerStopConditionDescription()[:160],
    })
    return initial


def _deformable(
    fixed: sitk.Image, moving: sitk.Image, mask: sitk.Image, linear: sitk.Transform,
    config: RegistrationConfig, stages: list[dict[str, Any]],
) -> sitk.Transform:
    physical = [size * spacing for size, spacing in zip(fixed.GetSize(), fixed.GetSpacing(),
                                                         strict=True)]
    mesh = [max(1, int(round(extent / config.bspline_grid_spacing_mm))) for extent in physical]
    bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
    method = _method(config, mask, config.sampling_fraction)
    method.SetMovingInitialTransform(linear)
    method.SetInitialTransform(bspline, inPlace=True)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5,
                                numberOfIterations=config.bspline_iterations,
                                maximumNumberOfCorrections=5,
                                maximumNumberOfFunctionEvaluations=4 * config.bspline_iterations)
    method.SetShrinkFactorsPerLevel(list(config.bspline_shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(config.bspline_smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.Execute(fixed, moving)
    stages.append({
        "stage": "bspline",
        "mesh": mesh,
        "iterations_last_level": int(method.GetOptimizerIteration()),
        "metric": -float(method.GetMetricValue()),
        "stop": method.GetOptimizerStopConditionDescription()[:160],
    })
    # Composite transforms apply the last-added transform first: B-spline, then linear.
    composite = sitk.CompositeTransform([linear, bspline])
    before = _mutual_information(fixed, moving, mask, linear, config)
    after = _mutual_information(fixed, moving, mask, composite, config)
    accepted = after - before >= config.bspline_min_mi_gain
    stages[-1].update({"mi_affine": round(before, 4), "mi_bspline": round(after, 4),
                       "accepted": bool(accepted)})
    return composite if accepted else linear


def mean_displacement_error_mm(
    estimated: sitk.Transform, truth: sitk.Transform, region: Volume
) -> float:
    """Mean distance (mm) between where two transforms send the voxels of ``region``.

    ``region`` is a mask (non-zero voxels are evaluated, e.g. the head); both
    transforms are sampled as displacement fields on its grid, so the cost is one
    pass over the grid whatever the transform type.
    """
    reference = volume_to_sitk(region, np.uint8)
    fields = []
    for transform in (estimated, truth):
        converter = sitk.TransformToDisplacementFieldFilter()
        converter.SetReferenceImage(reference)
        converter.SetOutputPixelType(sitk.sitkVectorFloat64)
        fields.append(sitk_to_array(converter.Execute(transform)))
    inside = np.asarray(region.array) != 0
    if not inside.any():
        raise SubctInputError(region.path, "evaluation region is empty")
    difference = np.linalg.norm(fields[0][inside] - fields[1][inside], axis=-1)
    return float(difference.mean())
