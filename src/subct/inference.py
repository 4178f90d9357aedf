"""The segmentation pipeline behind ``subct segment`` and :func:`subct.segment`.

Steps, for one head CT (a :class:`~subct.io.Volume` in Hounsfield units):

1. **Intensities.** CT stored as HU+1024 (unsigned, e.g. old VTK/NRRD exports) is
   detected and shifted back to HU.
2. **Locate the brain** (:func:`subct.qc.locate_intracranial`): skull rings in axial
   slices of the RAS-reoriented image enclose the intracranial soft tissue; its
   centroid places a fixed deep-brain box (:data:`DEFAULT_CROP_SIZE_MM`) and its
   volume is the intracranial volume (ICV) reported for normalisation.
3. **Resample** only that box, from the input's native grid through the full affines
   (oblique and tilted grids included), onto an axis-aligned RAS grid at the model's
   spacing, with Gaussian anti-aliasing when downsampling. The network never sees
   the rest of the field of view.
4. **Network**: Gaussian-blended sliding windows of the training patch size
   (:func:`subct.engine.sliding_window_logits`, MONAI's placement and weights), or
   one pass when the box fits the patch or ``max_single_pass_voxels``. The engine
   and precision follow :mod:`subct.runtime`: OpenVINO fp32 on CPU by default,
   PyTorch (bf16 autocast + channels-last on CPUs with native bf16) when asked for,
   PyTorch AMP on CUDA. Voxels below the HU window (air, fat) are forced to background.
5. **Left/right flip TTA**: the box is mirrored along x, the output mirrored back and
   its left/right channels swapped, and the two softmax maps averaged. The plain and
   mirrored windows at each place run as one batch of two.
6. **Largest connected component** per structure.
7. **Back to the native grid**: each structure's mask is linearly interpolated onto the
   input's own voxel grid (≥ 0.5 wins, ties to the strongest), so the label map has
   the input's exact shape and affine and overlays it in any viewer.

The optional Monte-Carlo dropout QC (:class:`InferenceConfig.mc_dropout_samples`)
reruns the network with dropout active, as in the multimodal 3D UNet paper (N = 15).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.engine import Engine, TorchEngine, sliding_window_logits, softmax
from subct.errors import SubctConfigError, SubctInputError
from subct.io import UNSIGNED_CT_OFFSET, Geometry, Volume, load_volume, looks_like_offset_ct
from subct.labels import (
    LR_SWAP,
    SCHEMES,
    indices_to_labels,
    scheme_labels,
    scheme_names,
    to_scheme,
)
from subct.preprocessing import ct_window_normalise
from subct.runtime import (
    Backend,
    Precision,
    ResolvedBackend,
    ResolvedPrecision,
    default_threads,
    requested_backend,
    requested_precision,
    resolve_engine,
    resolve_precision,
    runtime_summary,
)

if TYPE_CHECKING:
    import torch

    from subct.checkpoint import CheckpointMetadata
    from subct.qc import QcReport

#: Size (x, y, z, mm) of the RAS box cropped around the deep brain. Measured on the 20
#: SynthSeg label maps: the 17 structures span x −40..41, y −74..56, z −80..35 mm
#: around the intracranial centroid; the box adds ≥ 12 mm margin on every side.
DEFAULT_CROP_SIZE_MM: tuple[float, float, float] = (112.0, 160.0, 144.0)
#: Box centre relative to the intracranial centroid (RAS, mm): the structures sit
#: slightly posterior and well inferior of it (brainstem down to the foramen magnum).
DEFAULT_CROP_OFFSET_MM: tuple[float, float, float] = (0.0, -9.0, -22.0)
#: QC note of runs without left/right TTA (``--fast``), from
#: ``benchmarks/bench_fast_mode.py`` on the real head CTs.
NO_TTA_NOTE = ("run without left/right test-time augmentation (--fast): on real head CTs "
               "such labels agreed with the default run at mean self-Dice 0.92-0.94 (small "
               "structures down to 0.88); use the default settings for study volumes")
#: HU given to box voxels outside the scanned field of view (air).
OUTSIDE_FOV_HU = -1024.0


@dataclass(frozen=True)
class InferenceConfig:
    """Options of one segmentation run (the ``subct segment`` flags).

    Attributes:
        tta: average the prediction with the left/right mirrored one (``--no-tta`` off).
        mc_dropout_samples: Monte-Carlo dropout passes for QC (``--qc N``; 0 = none).
        scheme: label scheme of the written labels: ``canonical`` (17 FreeSurfer IDs),
            ``merged`` or ``paper7``.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        threads: CPU threads of the network engine (``None``: the cores this process
            may use).
        precision: ``auto`` (bf16 autocast on CPUs with native bf16, fp32 on other
            CPUs, AMP on CUDA), ``fp32`` or ``bf16``; ``None`` reads
            ``SUBCT_PRECISION`` (default ``auto``). See :mod:`subct.runtime`.
        backend: network engine: ``auto`` (OpenVINO on CPU, PyTorch on GPU),
            ``openvino``, ``onnxruntime`` or ``torch``; ``None`` reads
            ``SUBCT_BACKEND``.
        sliding_window_overlap: overlap fraction of sliding windows (only used when
            the box is larger than both the training patch and
            ``max_single_pass_voxels``). 0.5 (48 windows of 64³ over the default box,
            Gaussian-weighted) scored +0.001–0.002 mean Dice over 0.25 (18 windows) on
            the validation maps and +0.005–0.012 on the held-out maps, for ≈ 2.7× the
            network time. ``--fast`` keeps it (see :meth:`fast`).
        max_single_pass_voxels: boxes up to this many voxels go through the network in
            one pass even when larger than the training patch. Default 0: the box is
            always covered by sliding windows of the *training* patch size, because
            instance normalisation makes a network trained on 64³ patches see different
            feature statistics on a whole 112×160×144 box; on held-out synthetic heads
            windows gave +0.15 mean Dice over one pass with the phase-2 weights and
            +0.05 with the shipped ones
            (``benchmarks/bench_shipped_model.py --single-pass``). A single pass is
            faster (1.05 s for the 1 mm box on 2 cores) and can be chosen for networks
            trained on whole boxes.
        mask_below_window: no structure in voxels at or below the lower end of the HU
            window (air and fat, ≤ −100 HU by default): none of the 17 structures can be
            there, and a network trained on brain-centred patches otherwise sometimes
            labels air outside the head as ventricle (CSF-like darkness).
        largest_component: keep only the largest connected component of each structure.
        component_min_fraction: with ``largest_component``, also keep components with at
            least this fraction of the largest component's voxels (1.0: only the largest).
            0.1 keeps a lateral ventricle that the network split into two parts (demo
            CT: right ventricle Dice 0.31 → 0.43) and changed nothing on the validation
            heads (0.827 / 0.817 either way), where stray islands are far smaller.
        keep_posteriors: also return the softmax map on the crop grid.
        crop_size_mm: deep-brain box size (x, y, z) in mm.
        crop_offset_mm: box centre relative to the intracranial centroid, RAS mm.
        hu_offset: value subtracted from the stored intensities to get HU; ``None``
            detects HU+1024 storage automatically.
    """

    tta: bool = True
    mc_dropout_samples: int = 0
    scheme: str = "canonical"
    device: str = "auto"
    threads: int | None = None
    precision: Precision | None = None
    backend: Backend | None = None
    sliding_window_overlap: float = 0.5
    max_single_pass_voxels: int = 0
    mask_below_window: bool = True
    largest_component: bool = True
    component_min_fraction: float = 0.1
    keep_posteriors: bool = False
    crop_size_mm: tuple[float, float, float] = DEFAULT_CROP_SIZE_MM
    crop_offset_mm: tuple[float, float, float] = DEFAULT_CROP_OFFSET_MM
    hu_offset: float | None = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise SubctConfigError(
                f"unknown label scheme {self.scheme!r}; choose one of {', '.join(SCHEMES)}"
            )
        if self.mc_dropout_samples < 0 or self.mc_dropout_samples == 1:
            raise SubctConfigError("--qc needs 0 (off) or at least 2 Monte-Carlo samples")
        parse_device(self.device)
        requested_precision(self.precision)
        requested_backend(self.backend)
        if not 0.0 <= self.sliding_window_overlap < 1.0:
            raise SubctConfigError("sliding-window overlap must be in [0, 1)")
        if not 0.0 < self.component_min_fraction <= 1.0:
            raise SubctConfigError("component_min_fraction must be in (0, 1]")
        if self.threads is not None and self.threads < 1:
            raise SubctConfigError("--threads must be at least 1")

    @classmethod
    def fast(cls, **overrides: Any) -> InferenceConfig:
        """Lighter settings (``--fast``): no left/right TTA, window overlap kept at 0.5.

        Half the network time. Chosen on the real head CTs
        (``benchmarks/bench_fast_mode.py``): of the settings that halve the cost, this
        one agrees best with the default run (mean self-Dice 0.92–0.94, worst structure
        0.88), where dropping the overlap instead (the old ``--fast``) split the
        brainstem (self-Dice 0.56). It does not reach 0.95; the run is flagged
        ``no_tta`` (info) in the QC so that its volumes are not mistaken for default
        ones.
        """
        settings: dict[str, Any] = {"tta": False, "sliding_window_overlap": 0.5}
        settings.update(overrides)
        return cls(**settings)


@dataclass
class SegmentationModel:
    """A network ready to run (its engine) plus the checkpoint facts inference needs.

    Attributes:
        engine: what runs the network (:mod:`subct.engine`).
        metadata: the checkpoint's metadata (scheme, spacing, HU window, patch size).
        device: ``cpu`` or a CUDA device string.
        path: the checkpoint file (None for an in-memory network).
        precision: the arithmetic the engine runs (resolved, never ``auto``).
        threads: CPU threads of the engine.
        network: the PyTorch module when one is loaded (always for the torch engine;
            loaded on demand from ``path`` for Monte-Carlo dropout otherwise).
    """

    engine: Engine
    metadata: CheckpointMetadata
    device: str = "cpu"
    path: Path | None = None
    precision: ResolvedPrecision = "fp32"
    threads: int = 1
    network: torch.nn.Module | None = None

    @property
    def backend(self) -> ResolvedBackend:
        """Which engine runs the network (``openvino``, ``onnxruntime`` or ``torch``)."""
        return self.engine.name  # type: ignore[return-value]

    @property
    def network_scheme(self) -> str:
        """Label scheme of the network's output channels."""
        return str(self.metadata.label_scheme)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (mm, RAS axes) of the grid the network was trained on."""
        spacing = self.metadata.spacing_mm
        return (float(spacing[0]), float(spacing[1]), float(spacing[2]))

    @property
    def patch_size(self) -> tuple[int, int, int]:
        """Training patch size in voxels (x, y, z)."""
        size = self.metadata.patch_size
        return (int(size[0]), int(size[1]), int(size[2]))

    @property
    def size_divisor(self) -> int:
        """Network input sides must be multiples of this."""
        from subct.checkpoint import size_divisor

        return size_divisor(self.metadata.network_name, **self.metadata.network_kwargs)

    def runtime(self) -> dict[str, Any]:
        """What runs the network: CPU, precision, engine, threads (for ``qc.json``)."""
        return runtime_summary(self.precision, self.backend, self.threads, self.device)

    def torch_network(self) -> torch.nn.Module:
        """The PyTorch module (loaded from the checkpoint on first use)."""
        if self.network is None:
            if self.path is None:
                raise SubctConfigError("this model has no PyTorch network to run")
            import torch

            from subct.checkpoint import load_checkpoint

            self.network = load_checkpoint(self.path, torch.device(self.device)).network
        return self.network


def parse_device(name: str) -> str:
    """Validate a device name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        SubctConfigError: any other name.
    """
    head, _, index = name.partition(":")
    if name in ("auto", "cpu", "cuda") or (head == "cuda" and index.isdigit()):
        return name
    raise SubctConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")


def resolve_device(name: str = "auto") -> str:
    """``auto`` → CUDA when a GPU and a CUDA build of torch are present, else CPU.

    On a machine without an NVIDIA driver torch is not even imported (start-up time).

    Raises:
        SubctConfigError: unknown name, or CUDA asked for without a GPU.
    """
    parse_device(name)
    if name == "cpu":
        return "cpu"
    driver = Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()
    if name == "auto" and not driver:
        return "cpu"
    import torch  # a GPU may be present: only torch can tell

    if torch.cuda.is_available():
        if name.startswith("cuda:") and int(name.split(":")[1]) >= torch.cuda.device_count():
            raise SubctConfigError(f"--device {name}: only {torch.cuda.device_count()} "
                                   "CUDA device(s) present")
        return "cuda" if name == "auto" else name
    if name == "auto":
        return "cpu"
    raise SubctConfigError(f"--device {name} was asked for but no CUDA GPU is available")


def load_model(model: str | Path | None = None, device: str = "auto",
               precision: str | None = None, backend: str | None = None,
               threads: int | None = None) -> SegmentationModel:
    """Load ``--model NAME|PATH`` (default: the shipped model) for inference.

    The engine follows :func:`subct.runtime.resolve_engine`: on CPU the checkpoint's
    ONNX graph (shipped, cached by checkpoint hash, or exported now) runs under
    OpenVINO (or ONNX Runtime), and torch is not imported; on GPUs, for bf16 autocast
    or with ``backend="torch"``, PyTorch runs the checkpoint.

    Raises:
        SubctInputError: no model installed, unknown name, missing or invalid file.
        SubctConfigError: an unknown or impossible device/precision/backend choice.
    """
    from subct.checkpoint import read_checkpoint_metadata
    from subct.models import resolve_model_path

    path = resolve_model_path(model)
    metadata = read_checkpoint_metadata(path)
    device_name = resolve_device(device)
    device_type = device_name.split(":")[0]
    engine_name, resolved_precision = resolve_engine(backend, precision, device_type)
    thread_count = threads or default_threads()
    if engine_name != "torch":
        from subct.engine import graph_engine_for_checkpoint

        _check_orientation(metadata, path)
        engine = graph_engine_for_checkpoint(path, engine_name, thread_count,
                                             resolved_precision)
        return SegmentationModel(engine, metadata, "cpu", path, resolved_precision,
                                 thread_count)
    import torch

    from subct.checkpoint import load_checkpoint

    if device_type == "cpu":
        torch.set_num_threads(thread_count)
    loaded = load_checkpoint(path, torch.device(device_name))
    return model_from_network(loaded.network, metadata, device_name, path,
                              precision=resolved_precision, threads=thread_count)


def _check_orientation(metadata: CheckpointMetadata, path: Path | None) -> None:
    if str(metadata.orientation) != "RAS":
        raise SubctInputError(path, f"model expects orientation {metadata.orientation}; "
                                    "only RAS models are supported")


def model_from_network(
    network: torch.nn.Module,
    metadata: CheckpointMetadata,
    device: torch.device | str = "cpu",
    path: Path | None = None,
    precision: str | None = None,
    threads: int | None = None,
) -> SegmentationModel:
    """Wrap an in-memory PyTorch network and its metadata for inference (eval mode).

    It runs on the PyTorch engine; on CPU the weights are stored channels-last (3D),
    which speeds up convolutions (with bf16 autocast: 0.63 s vs 1.96 s per 128³ pass of
    the default UNet, ``benchmarks/bench_segment.py --network-only``).
    """
    import torch

    torch_device = torch.device(device)
    _check_orientation(metadata, path)
    resolved = (precision if precision in ("fp32", "bf16", "fp16")
                else resolve_precision(precision, torch_device.type))
    engine = TorchEngine(network.eval(), torch_device, resolved)  # type: ignore[arg-type]
    return SegmentationModel(engine, metadata, str(torch_device), path,
                             resolved, threads or default_threads(),  # type: ignore[arg-type]
                             network=engine.network)


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CropGrid:
    """The axis-aligned RAS grid of the deep-brain box the network runs on."""

    shape: tuple[int, int, int]
    affine: NDArray[np.float64]

    @property
    def geometry(self) -> Geometry:
        """Shape + affine as a :class:`~subct.io.Geometry`."""
        return Geometry(self.shape, self.affine)


@dataclass
class Posteriors:
    """Softmax probabilities on the crop grid: ``probabilities[c]`` for class index c."""

    probabilities: NDArray[np.float32]
    grid: CropGrid
    scheme: str

    def class_labels(self) -> tuple[int, ...]:
        """Label value of each channel (0 = background first)."""
        return (0,) + scheme_labels(self.scheme)


@dataclass
class SegmentationResult:
    """What :func:`segment` returns; nothing is written to disk.

    Attributes:
        labels: label map on the input's own grid (same shape and affine), values in
            ``scheme`` (FreeSurfer IDs for ``canonical``).
        volumes_mm3: structure name → volume in mm³, measured on ``labels``.
        intracranial_volume_mm3: ICV estimated from the CT (None when not found).
        qc: quality report (MC-dropout CV, volume plausibility, input checks).
        scheme: label scheme of ``labels``.
        crop: the RAS grid the network ran on.
        posteriors: softmax maps on ``crop`` when asked for.
        timings_s: seconds spent per step.
        runtime: what ran the network (CPU model and flags, precision, engine, threads).
    """

    labels: Volume
    volumes_mm3: dict[str, float]
    intracranial_volume_mm3: float | None
    qc: QcReport
    scheme: str
    crop: CropGrid
    posteriors: Posteriors | None = None
    timings_s: dict[str, float] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- geometry steps


def detect_hu_offset(volume: Volume) -> float:
    """Offset to subtract from stored values to get HU: 1024 for HU+1024 storage, else 0.

    Uses :func:`subct.io.looks_like_offset_ct` (no negative values, air near 0, soft
    tissue peak near 1024, a bone tail), so MRI is not mistaken for offset CT.
    """
    if float(np.min(volume.array)) < 0.0:
        return 0.0
    return UNSIGNED_CT_OFFSET if looks_like_offset_ct(volume.array) else 0.0


def crop_grid(center_ras_mm: NDArray[np.float64], spacing_mm: tuple[float, float, float],
              size_mm: tuple[float, float, float], divisor: int) -> CropGrid:
    """Axis-aligned RAS grid of ``size_mm`` centred on ``center_ras_mm``.

    The number of voxels per axis is rounded up to a multiple of ``divisor`` so the
    network (pooling levels) accepts it.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    counts = np.ceil(np.asarray(size_mm) / spacing / divisor).astype(int) * divisor
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = np.asarray(center_ras_mm, dtype=np.float64) - spacing * (counts - 1) / 2.0
    return CropGrid((int(counts[0]), int(counts[1]), int(counts[2])), affine)


def _index_bbox(source_to_target: NDArray[Any], source_lo: NDArray[Any],
                source_hi: NDArray[Any], target_shape: tuple[int, int, int],
                margin: int) -> tuple[slice, slice, slice] | None:
    """Target-index bounding box of a source-index box mapped by a 4×4 matrix."""
    corners = np.array([[x, y, z, 1.0] for x in (source_lo[0], source_hi[0])
                        for y in (source_lo[1], source_hi[1])
                        for z in (source_lo[2], source_hi[2])])
    mapped = (source_to_target @ corners.T)[:3]
    low = np.floor(mapped.min(axis=1)).astype(int) - margin
    high = np.ceil(mapped.max(axis=1)).astype(int) + margin + 1
    low = np.maximum(low, 0)
    high = np.minimum(high, np.asarray(target_shape))
    if np.any(high <= low):
        return None
    return (slice(int(low[0]), int(high[0])), slice(int(low[1]), int(high[1])),
            slice(int(low[2]), int(high[2])))


def resample_to_crop(hu: Volume, grid: CropGrid, hu_offset: float = 0.0) -> NDArray[np.float32]:
    """HU on the crop grid, sampled from the native grid through the full affines.

    Only the native sub-block under the box is touched. When the box is coarser than
    the native voxels, the block is smoothed first (Gaussian, σ = (factor − 1)/2 voxels
    per native axis) so thin noisy slices do not alias. Outside the scanned field of
    view the box gets :data:`OUTSIDE_FOV_HU`.
    """
    crop_to_native = np.linalg.inv(hu.affine) @ grid.affine
    shape = np.asarray(grid.shape)
    block = _index_bbox(crop_to_native, np.zeros(3), shape - 1.0, hu.shape, margin=2)
    if block is None:
        return np.full(grid.shape, OUTSIDE_FOV_HU, dtype=np.float32)
    sub = np.asarray(hu.array[block], dtype=np.float32)
    if hu_offset:
        sub = sub - np.float32(hu_offset)
    native_spacing = np.asarray(hu.spacing)
    crop_spacing = float(np.min(np.sqrt((grid.affine[:3, :3] ** 2).sum(axis=0))))
    factors = crop_spacing / native_spacing
    sigma = np.where(factors > 1.2, (factors - 1.0) / 2.0, 0.0)
    if np.any(sigma > 0):
        sub = ndimage.gaussian_filter(sub, sigma=sigma, mode="nearest")
    start = np.array([block[0].start, block[1].start, block[2].start], dtype=np.float64)
    matrix = crop_to_native[:3, :3]
    offset = crop_to_native[:3, 3] - start
    out = ndimage.affine_transform(sub, matrix, offset=offset, output_shape=grid.shape,
                                   order=1, mode="constant", cval=OUTSIDE_FOV_HU,
                                   prefilter=False)
    return out.astype(np.float32, copy=False)


def labels_to_native(crop_indices: NDArray[np.integer], grid: CropGrid, native: Geometry,
                     num_classes: int, probabilities: NDArray[np.float32] | None = None
                     ) -> NDArray[np.int16]:
    """Class indices on the crop grid → class indices on the native grid.

    Linear interpolation of the one-hot label map followed by argmax: every native voxel
    inside the labelled part of the box is mapped (full affines) to continuous crop
    coordinates; where its 8 surrounding crop voxels agree it simply takes their label,
    and only near boundaries are the trilinear weights of each candidate label summed
    and the heaviest label (background included) chosen. This gives smooth boundaries on
    finer native grids, no half-voxel shift and no flipped grid, at the cost of one
    label lookup per native voxel. Exact ties (common when grids are offset by exactly
    half a voxel) are broken by the interpolated posterior when ``probabilities``
    (C, X, Y, Z on the crop grid) are given, so mirrored inputs give mirrored labels.
    """
    labels = np.asarray(crop_indices, dtype=np.int16)
    result = np.zeros(native.shape, dtype=np.int16)
    found = ndimage.find_objects((labels > 0).astype(np.int8))
    if not found or found[0] is None:
        return result
    low = np.array([s.start for s in found[0]], dtype=np.float64) - 1.0
    high = np.array([s.stop for s in found[0]], dtype=np.float64)
    native_to_crop = np.linalg.inv(grid.affine) @ native.affine
    block = _index_bbox(np.linalg.inv(native_to_crop), low, high, native.shape, margin=1)
    if block is None:
        return result
    # Crop padded by one background voxel on every side so corner look-ups never leave it.
    padded = np.pad(labels, 1)
    shape = np.asarray(padded.shape)
    uniform = np.ones(padded.shape, dtype=bool)
    for offset in ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)):
        shifted = np.pad(padded, [(0, o) for o in offset])[offset[0]:, offset[1]:, offset[2]:]
        uniform &= shifted == padded
    grids = np.meshgrid(*(np.arange(s.start, s.stop, dtype=np.float32) for s in block),
                        indexing="ij", copy=False)
    matrix = native_to_crop.astype(np.float32)
    coords = [matrix[axis, 0] * grids[0] + matrix[axis, 1] * grids[1]
              + matrix[axis, 2] * grids[2] + (matrix[axis, 3] + np.float32(1.0))
              for axis in range(3)]  # +1: padding
    inside = np.ones(coords[0].shape, dtype=bool)
    floors = []
    for axis in range(3):
        inside &= (coords[axis] >= 0.0) & (coords[axis] < shape[axis] - 1)
        floors.append(np.floor(coords[axis]).astype(np.int64))
    for axis in range(3):
        np.clip(floors[axis], 0, shape[axis] - 2, out=floors[axis])
    flat = np.ravel_multi_index((floors[0], floors[1], floors[2]), padded.shape)
    out = np.where(inside, padded.ravel()[flat], 0).astype(np.int16)
    edge = inside & ~uniform.ravel()[flat]
    if edge.any():
        fractions = [(coords[axis][edge] - floors[axis][edge]).astype(np.float32)
                     for axis in range(3)]
        base = [floors[axis][edge] for axis in range(3)]
        corner_labels = []
        corner_weights = []
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    weight = ((fractions[0] if dx else 1.0 - fractions[0])
                              * (fractions[1] if dy else 1.0 - fractions[1])
                              * (fractions[2] if dz else 1.0 - fractions[2]))
                    weight = np.round(weight, 5)  # float noise must not decide ties
                    corner = (base[0] + dx, base[1] + dy, base[2] + dz)
                    label = padded[corner]
                    if probabilities is not None:  # crop index = padded index − 1
                        unpadded = tuple(np.clip(c - 1, 0, n - 1)
                                         for c, n in zip(corner, labels.shape, strict=True))
                        weight = weight * (1.0 + 1e-3 * probabilities[
                            (label.astype(np.int64), *unpadded)])
                    corner_labels.append(label)
                    corner_weights.append(weight.astype(np.float32))
        # Score of corner k's label = summed weight of the corners sharing that label.
        best_score = np.full(corner_labels[0].shape, -1.0, dtype=np.float32)
        best_label = np.zeros(corner_labels[0].shape, dtype=np.int16)
        for label in corner_labels:
            score = np.zeros(label.shape, dtype=np.float32)
            for other, weight in zip(corner_labels, corner_weights, strict=True):
                score += np.where(other == label, weight, np.float32(0.0))
            better = score > best_score
            best_score[better] = score[better]
            best_label[better] = label[better]
        out[edge] = best_label
    result[block] = out
    return result


def keep_largest_components(indices: NDArray[np.integer], num_classes: int,
                            min_fraction: float = 1.0) -> NDArray[np.int64]:
    """Keep the largest 26-connected component of every class; the rest → background.

    With ``min_fraction`` < 1, components with at least that fraction of the largest
    one's voxels are kept too (e.g. 0.1: a lateral ventricle cut into frontal horn and
    body by a thin stretch keeps both parts, while small stray islands still go).
    """
    result = np.array(indices, dtype=np.int64, copy=True)
    structure = np.ones((3, 3, 3), dtype=bool)
    objects = ndimage.find_objects(result.astype(np.int32), max_label=num_classes - 1)
    for index, found in enumerate(objects, start=1):
        if found is None:
            continue
        block = result[found]
        mask = block == index
        components, count = ndimage.label(mask, structure=structure)
        if count <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        keep = sizes >= min_fraction * sizes.max()
        keep[0] = False
        block[mask & ~keep[components]] = 0
    return result


def lr_swap_permutation(scheme: str) -> list[int]:
    """Channel order that swaps left and right structures of ``scheme`` (0 stays 0)."""
    values = (0,) + scheme_labels(scheme)
    if scheme != "canonical":
        return list(range(len(values)))
    position = {value: index for index, value in enumerate(values)}
    return [position[LR_SWAP[value]] for value in values]


# ------------------------------------------------------------------------------ the network


def predict_probabilities(model: SegmentationModel, image: NDArray[np.float32],
                          config: InferenceConfig, flip_lr: bool | None = None,
                          engine: Engine | None = None) -> NDArray[np.float32]:
    """Softmax of the network on a normalised crop ``image`` (X, Y, Z) → (C, X, Y, Z).

    With ``flip_lr=None`` the test-time augmentation follows ``config.tta``: the image
    and its left/right mirror run together (one batch of two per window place), the
    mirrored output is mirrored back with left and right channels swapped, and the two
    softmax maps are averaged. ``True``/``False`` force the mirrored-only or plain pass.
    """
    engine = engine or model.engine
    plain = not flip_lr if flip_lr is not None else True
    mirrored = flip_lr if flip_lr is not None else config.tta
    images = [image] if plain else []
    if mirrored:
        images.append(image[::-1])
    stack = np.ascontiguousarray(np.stack(images), dtype=np.float32)
    patch = model.patch_size
    fits_patch = all(size <= limit for size, limit in zip(image.shape, patch, strict=True))
    if fits_patch or image.size <= config.max_single_pass_voxels:
        logits = engine.logits(stack[:, None])
    else:
        logits = sliding_window_logits(engine, stack, patch, config.sliding_window_overlap,
                                       batch_size=len(images), threads=model.threads)
    probabilities = softmax(logits, axis=1, threads=model.threads)
    if mirrored:
        flipped = probabilities[-1][lr_swap_permutation(model.network_scheme), ::-1]
        if plain:
            probabilities[0] += flipped
            probabilities[0] *= np.float32(0.5)
            return probabilities[0]
        return np.ascontiguousarray(flipped)
    return probabilities[0]


def has_dropout(network: torch.nn.Module) -> bool:
    """True when the network has a dropout layer with a non-zero rate (MONAI builds
    ``Dropout(p=0)`` layers even for ``dropout=0``, which sample nothing)."""
    import torch

    dropout_types = (torch.nn.Dropout, torch.nn.Dropout2d, torch.nn.Dropout3d)
    return any(isinstance(module, dropout_types) and float(module.p) > 0.0
               for module in network.modules())


def mc_dropout_volumes(model: SegmentationModel, image: NDArray[np.float32],
                       config: InferenceConfig, voxel_volume_mm3: float
                       ) -> NDArray[np.float64] | None:
    """Structure volumes (mm³) of each Monte-Carlo dropout pass: shape (N, structures).

    The passes run on PyTorch whatever the engine (an exported graph has no dropout).
    Returns None when the network has no dropout layers (all passes would agree).
    """
    if config.mc_dropout_samples < 2:
        return None
    from subct.networks import enable_mc_dropout  # torch: only for MC dropout

    network = model.torch_network()
    enable_mc_dropout(network)
    try:
        if not has_dropout(network):
            return None
        import torch

        engine = TorchEngine(network, torch.device(model.device), model.precision)
        num_classes = len(scheme_labels(model.network_scheme)) + 1
        volumes = np.zeros((config.mc_dropout_samples, num_classes - 1), dtype=np.float64)
        single = replace(config, tta=False)
        for sample in range(config.mc_dropout_samples):
            indices = predict_probabilities(model, image, single, engine=engine).argmax(axis=0)
            counts = np.bincount(indices.ravel(), minlength=num_classes)
            volumes[sample] = counts[1:] * voxel_volume_mm3
        return volumes
    finally:
        network.eval()


# ------------------------------------------------------------------------------- pipeline


def _as_volume(image: str | Path | Volume) -> Volume:
    if isinstance(image, Volume):
        return image
    return load_volume(image)


def segment_volume(image: str | Path | Volume, model: SegmentationModel,
                   config: InferenceConfig | None = None) -> SegmentationResult:
    """Segment one head CT with an already loaded ``model`` (nothing written to disk).

    Raises:
        SubctInputError: the file cannot be read, or no head could be found in it.
    """
    from subct.qc import QcFlag, assess_input, build_qc_report, locate_intracranial

    config = config or InferenceConfig()
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    volume = _as_volume(image)
    hu_offset = detect_hu_offset(volume) if config.hu_offset is None else config.hu_offset
    timings["read"] = time.perf_counter() - clock

    clock = time.perf_counter()
    location = locate_intracranial(volume, hu_offset=hu_offset)
    input_check = assess_input(volume, location, hu_offset=hu_offset)
    # Rounded to 0.01 mm so that float noise in the centroid cannot make runs on
    # mirrored or re-ordered copies of an image sample the crop at different points.
    center = np.round(location.centroid_ras_mm + np.asarray(config.crop_offset_mm), 2)
    grid = crop_grid(center, model.spacing_mm, config.crop_size_mm, model.size_divisor)
    crop_hu = resample_to_crop(volume, grid, hu_offset)
    if model.metadata.skull_strip:  # the model was trained on skull-stripped inputs
        from subct.preprocessing import skull_strip_mask

        brain = skull_strip_mask(crop_hu, model.spacing_mm)
        crop_hu = np.where(brain, crop_hu, np.float32(model.metadata.hu_window[0]))
    image_01 = ct_window_normalise(crop_hu, tuple(model.metadata.hu_window))  # type: ignore[arg-type]
    timings["locate_and_resample"] = time.perf_counter() - clock

    clock = time.perf_counter()
    probabilities = predict_probabilities(model, image_01, config)
    timings["network"] = time.perf_counter() - clock

    clock = time.perf_counter()
    crop_voxel_mm3 = float(np.prod(model.spacing_mm))
    mc_volumes = mc_dropout_volumes(model, image_01, config, crop_voxel_mm3)
    if config.mc_dropout_samples >= 2:
        timings["mc_dropout"] = time.perf_counter() - clock

    clock = time.perf_counter()
    num_classes = int(probabilities.shape[0])
    if config.mask_below_window:
        outside = image_01 <= 0.0
        probabilities[1:, outside] = 0.0
        probabilities[0, outside] = 1.0
    indices = probabilities.argmax(axis=0)
    if config.largest_component:
        indices = keep_largest_components(indices, num_classes, config.component_min_fraction)
    native_indices = labels_to_native(indices, grid, volume.geometry, num_classes,
                                      probabilities)
    # Class index → output label through a tiny look-up table (one pass over the
    # native grid, no int64 copies of it); volumes from the labelled voxels only.
    class_values = indices_to_labels(np.arange(num_classes), model.network_scheme)
    lookup = _convert_scheme(class_values, model.network_scheme, config.scheme, volume)
    output = lookup[native_indices]
    labels = volume.with_array(output, description="subct segment labels")
    names = scheme_names(config.scheme)
    class_counts = np.bincount(native_indices[native_indices > 0], minlength=num_classes)
    volumes_mm3 = {name: 0.0 for name in names.values()}
    for index in range(1, num_classes):
        value = int(lookup[index])
        if value in names:
            volumes_mm3[names[value]] += float(class_counts[index]) * volume.voxel_volume_mm3
    timings["postprocess"] = time.perf_counter() - clock

    mc_names = [scheme_names(model.network_scheme)[v] for v in scheme_labels(model.network_scheme)]
    qc = build_qc_report(volumes_mm3, config.scheme, input_check, location,
                         mc_volumes=mc_volumes, mc_structure_names=mc_names,
                         mc_requested=config.mc_dropout_samples)
    if not config.tta:
        qc.flags.append(QcFlag("no_tta", NO_TTA_NOTE, "info"))
    posteriors = None
    if config.keep_posteriors:
        posteriors = Posteriors(probabilities.astype(np.float32, copy=False), grid,
                                model.network_scheme)
    return SegmentationResult(
        labels=labels,
        volumes_mm3=volumes_mm3,
        intracranial_volume_mm3=location.intracranial_volume_mm3,
        qc=qc,
        scheme=config.scheme,
        crop=grid,
        posteriors=posteriors,
        timings_s=timings,
        runtime=model.runtime(),
    )


def _convert_scheme(labels: NDArray[np.integer], network_scheme: str, output_scheme: str,
                    volume: Volume) -> NDArray[np.int16]:
    if network_scheme == output_scheme:
        return np.asarray(labels, dtype=np.int16)
    if network_scheme == "canonical":
        return to_scheme(labels, output_scheme)
    raise SubctConfigError(
        f"the model predicts the {network_scheme!r} scheme; it cannot write {output_scheme!r} "
        f"labels (choose --scheme {network_scheme})"
    )


_MODEL_CACHE: dict[tuple[str, ...], SegmentationModel] = {}


def cached_model(model: str | Path | None, config: InferenceConfig) -> SegmentationModel:
    """:func:`load_model` with the run settings of ``config``, loaded once per process."""
    key = (str(model), config.device, str(config.precision), str(config.backend),
           str(config.threads))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_model(model, config.device, config.precision,
                                       config.backend, config.threads)
    return _MODEL_CACHE[key]


def segment(image: str | Path | Volume, model: str | Path | SegmentationModel | None = None,
            config: InferenceConfig | None = None, **options: Any) -> SegmentationResult:
    """Segment the 17 subcortical structures of a head CT, without touching the disk.

    Args:
        image: a path (NIfTI/MGZ/NRRD/DICOM folder) or a :class:`~subct.io.Volume` in HU.
        model: a loaded :class:`SegmentationModel`, a checkpoint path, a registry name,
            or None for the shipped model. Loaded models are cached per process.
        config: inference options; alternatively pass them as keywords
            (``tta=False``, ``mc_dropout_samples=15``, ``scheme="merged"``, ...).

    Returns:
        labels on the input's grid, volumes (mm³), intracranial volume and QC.
    """
    if config is None:
        config = InferenceConfig(**options)
    elif options:
        config = replace(config, **options)
    if not isinstance(model, SegmentationModel):
        model = cached_model(model, config)
    return segment_volume(image, model, config)
