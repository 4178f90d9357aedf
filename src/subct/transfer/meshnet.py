"""MeshNet brain segmentation networks (brainchop models) ported to PyTorch.

MeshNet (Fedorov et al.) is a stack of 3×3×3 dilated convolutions with ELU activations
and a final 1×1×1 convolution: no pooling, no skip connections. A model is described by
a ``model.json`` (the layer list: channels, kernel, padding, dilation; flags ``bnorm``,
``elu``/``gelu``, ``dropout_p``, ``bias``) and its weights, a safetensors file
(``model.pth`` in the brainchop model folders despite its name) with keys
``model.<i>.weight``/``model.<i>.bias`` where ``i`` is the position of the convolution
in a ``torch.nn.Sequential`` (conv, activation, conv, activation, …, conv).

Input convention (the models' training set-up): a T1 MRI *conformed* the FreeSurfer way
to 256³ voxels of 1 mm in LIA orientation, intensities scaled to [0, 1] by the 2nd and
98th percentiles and clipped. :func:`conform` does this for any input grid, and
:class:`MeshNetSegmenter` brings the label map back to the input's own grid (nearest
neighbour), so the output overlays the MRI.

Weights are never part of the package: the model folder is given by the caller
(default: ``<shared data>/mri_models/meshnet/<name>``, or ``SUBCT_MESHNET_DIR``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from subct.config import StrictConfig
from subct.errors import SubctInputError
from subct.image.volume import Volume
from subct.labels.convert import (
    MESHNET18_CLASS_NAMES,
    convert_by_class_names,
    convert_to_canonical,
    load_class_names,
)
from subct.model.engines import (
    OnnxRuntimeEngine,
    OpenVinoEngine,
    TorchEngine,
    onnx_session,
    read_openvino_model,
)
from subct.model.graphs import cached_graph_path, export_network, export_to_cache
from subct.model.runtime import default_threads, resolve_engine
from subct.transfer.meshnet_network import (
    CONFORMED_ORIENTATION,
    CONFORMED_SIZE,
    CONFORMED_SPACING_MM,
    MeshNet,
    MeshNetSpec,
    default_model_dir,
    load_meshnet,
)
from subct.transfer.midline import (
    MidlineMethod,
    MidsagittalPlane,
    midsagittal_plane,
    split_left_right_at_plane,
)
from subct.transfer.segmenter import Segmenter


def conformed_affine(volume: Volume) -> NDArray[np.float64]:
    """Affine of the 256³, 1 mm, LIA grid centred on ``volume``'s centre (FreeSurfer's)."""
    centre_voxel = (np.asarray(volume.shape, dtype=np.float64) - 1) / 2
    centre_world = volume.affine[:3, :3] @ centre_voxel + volume.affine[:3, 3]
    # LIA: i → Left (−x), j → Inferior (−z), k → Anterior (+y)
    rotation = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]) * CONFORMED_SPACING_MM
    affine = np.eye(4)
    affine[:3, :3] = rotation
    # FreeSurfer puts the centre at voxel 128 (not 127.5), as fsaverage's affine shows.
    affine[:3, 3] = centre_world - rotation @ np.full(3, CONFORMED_SIZE / 2)
    return affine


def conform(volume: Volume, order: int = 1) -> Volume:
    """Resample an MRI onto the conformed 256³ 1 mm LIA grid (trilinear by default).

    A volume already on such a grid (any 256³ 1 mm axis-aligned grid) is only
    reoriented, which is exact; otherwise scipy resamples it through the affines.
    """
    from scipy import ndimage

    spacing = np.asarray(volume.spacing)
    axis_aligned = np.allclose(
        np.abs(volume.affine[:3, :3]) / spacing, np.round(np.abs(volume.affine[:3, :3]) / spacing),
        atol=1e-4,
    )
    if (
        volume.shape == (CONFORMED_SIZE,) * 3
        and np.allclose(spacing, CONFORMED_SPACING_MM, atol=1e-4)
        and axis_aligned
    ):
        return volume.reoriented(CONFORMED_ORIENTATION)
    target = conformed_affine(volume)
    voxel_map = np.linalg.inv(volume.affine) @ target  # conformed voxel → input voxel
    array = ndimage.affine_transform(
        np.asarray(volume.array, dtype=np.float32),
        voxel_map[:3, :3],
        offset=voxel_map[:3, 3],
        output_shape=(CONFORMED_SIZE,) * 3,
        order=order,
        mode="constant",
        cval=0.0,
    )
    return Volume(array, target, None, f"conformed {volume.description}".strip())


def percentile_scale(
    array: NDArray[Any], low_percentile: float = 2.0, high_percentile: float = 98.0
) -> NDArray[np.float32]:
    """Scale intensities to [0, 1] between two percentiles (of all voxels) and clip."""
    values = np.asarray(array, dtype=np.float32)
    low, high = np.percentile(values, [low_percentile, high_percentile])
    if high <= low:
        high = float(values.max())
        low = float(values.min())
    if high <= low:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


class MeshNetRunConfig(StrictConfig):
    """How to run a MeshNet on CPU/GPU.

    Attributes:
        device: torch device string (``cpu``, ``cuda``).
        precision: ``auto`` (fp32 on CPU, AMP on CUDA), ``fp32`` or ``bf16``; None reads
            ``SUBCT_PRECISION`` (:mod:`subct.model.runtime`). bf16 never pays for MeshNet on a
            CPU: on an AMX CPU meshnet-subcortical took 110 s in bf16 against 49 s in
            fp32 (``benchmarks/bench_meshnet.py``), and on a CPU without native bf16 it
            is ~70× slower and asked for a 27 GB buffer on a 256³ T1.
        backend: ``torch``, ``openvino``, ``onnxruntime``, ``auto``, or None (default):
            on a CPU, OpenVINO fp32 when at least :data:`OPENVINO_MIN_AVAILABLE_GB` of
            memory is available, else PyTorch. On a whole 256³ head OpenVINO took 82.6 s CPU
            (45.9 s wall) against PyTorch's 94.5 s (51.3 s), identical labels, but peaked at
            7.1 GB against 4.4 GB (AMD EPYC, 2 cores; ``docs/benchmarks.md``). The graph
            engines export the loaded weights once, cached by hash.
        crop_to_head: run only on the bounding box of the head (voxels above
            ``head_threshold`` of the scaled image) plus the receptive-field halo; the
            output inside the head is then identical, and outside it is background.
        head_threshold: scaled-intensity threshold (0..1) defining the head.
        region: only label this box of the conformed grid (voxel slices, e.g. around the
            subcortical structures); the network runs on it plus the receptive-field
            halo, so the labels inside are exactly those of a full run, and the rest
            is background. None: the whole head.
        threads: intra-op threads (None: the cores this process may use).
    """

    device: str = "cpu"
    precision: str | None = None
    backend: str | None = None
    crop_to_head: bool = True
    head_threshold: float = 0.05
    region: tuple[slice, slice, slice] | None = None
    threads: int | None = None


#: Available memory (GB) from which MeshNet runs on OpenVINO by default (its whole-head
#: peak is 7.1 GB, PyTorch's 4.4 GB).
OPENVINO_MIN_AVAILABLE_GB = 10.0


def available_memory_gb() -> float:
    """Memory the system can give this process now (GB; ``MemAvailable``), 0 if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    return 0.0


def default_backend(device_type: str) -> str:
    """MeshNet's engine when none is asked for (see :class:`MeshNetRunConfig`)."""
    if device_type != "cpu":
        return "torch"
    return "openvino" if available_memory_gb() >= OPENVINO_MIN_AVAILABLE_GB else "torch"


@dataclass
class MeshNetOutput:
    """Class indices on the conformed grid, and that grid."""

    classes: NDArray[np.int16]
    conformed: Volume
    timings_s: dict[str, float] = field(default_factory=dict)


def run_meshnet(
    network: MeshNet, mri: Volume, config: MeshNetRunConfig | None = None
) -> MeshNetOutput:
    """Conform ``mri``, scale intensities, run ``network`` and take the arg-max class."""
    import time

    config = config or MeshNetRunConfig()
    started = time.perf_counter()
    conformed = conform(mri)
    scaled = percentile_scale(conformed.array)
    halo = network.spec.receptive_halo_voxels
    keep = _head_box(scaled, config)  # voxels whose labels we want (exact)
    if config.region is not None:
        keep = tuple(
            slice(max(r.start or 0, k.start), max(min(size if r.stop is None else r.stop,
                                                       k.stop), max(r.start or 0, k.start)))
            for r, k, size in zip(config.region, keep, scaled.shape, strict=True)
        )
    box = tuple(slice(max(k.start - halo, 0), min(k.stop + halo, size))
                for k, size in zip(keep, scaled.shape, strict=True))
    conformed_s = time.perf_counter() - started
    started = time.perf_counter()
    cropped_classes = _predict_classes(network, np.ascontiguousarray(scaled[box])[None, None],
                                       config)
    network_s = time.perf_counter() - started
    classes = np.zeros(scaled.shape, dtype=np.int16)
    inner = tuple(slice(k.start - b.start, k.stop - b.start)
                  for k, b in zip(keep, box, strict=True))
    classes[keep] = cropped_classes[inner]
    return MeshNetOutput(
        classes, conformed, {"conform_s": conformed_s, "network_s": network_s}
    )


def _predict_classes(network: MeshNet, image: NDArray[np.float32],
                     config: MeshNetRunConfig) -> NDArray[np.int16]:
    """Arg-max class of ``network`` on ``image`` (1, 1, X, Y, Z) with the policy's engine.

    The arg-max is taken while the engine's output buffer is alive, so the logits (18
    float32 channels of the whole head box, about 1 GB) are never copied.
    """

    device = torch.device(config.device)
    threads = config.threads or default_threads()
    requested = config.backend if config.backend is not None else default_backend(device.type)
    backend, precision = resolve_engine(requested, config.precision, device.type,
                                        cpu_bf16_pays=False)
    if backend == "openvino":

        graph = meshnet_graph(network, export_network)
        engine = OpenVinoEngine(read_openvino_model(graph), threads, precision)
        return engine.logits(image)[0].argmax(axis=0).astype(np.int16)
    if backend == "onnxruntime":
        graph = meshnet_graph(network, export_network)
        logits = OnnxRuntimeEngine(onnx_session(graph, threads)).logits(image)
        return logits[0].argmax(axis=0).astype(np.int16)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    return TorchEngine(network, device, precision).logits(image)[0].argmax(axis=0).astype(
        np.int16)


def meshnet_graph(network: MeshNet, export: Any) -> Path:
    """The ONNX graph of ``network``, cached by a hash of its layer list and weights."""
    import hashlib


    digest = hashlib.sha256(repr(network.spec).encode())
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    sha256 = digest.hexdigest()
    cached = cached_graph_path(sha256, "meshnet-")
    if cached.is_file():
        return cached
    in_channels = network.spec.layers[0].in_channels
    return export_to_cache(sha256, lambda target: export(network, in_channels, target),
                           "meshnet-")


def _head_box(scaled: NDArray[np.float32], config: MeshNetRunConfig) -> tuple[slice, ...]:
    """Bounding box of the head (scaled intensity above the threshold), or everything."""
    everything = tuple(slice(0, size) for size in scaled.shape)
    if not config.crop_to_head:
        return everything
    head = scaled > config.head_threshold
    if not head.any():
        return everything
    return tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(head))


def classes_to_mri_grid(classes: NDArray[np.integer[Any]], conformed: Volume,
                        mri: Volume) -> NDArray[np.int16]:
    """Bring a label map from the conformed grid back onto ``mri``'s grid (nearest)."""
    from scipy import ndimage

    if conformed.geometry.same_grid(mri.geometry):
        return np.asarray(classes, dtype=np.int16)
    reoriented_back = Volume(np.asarray(classes), conformed.affine).reoriented(
        "".join(mri.orientation)
    )
    if reoriented_back.geometry.same_grid(mri.geometry):
        return reoriented_back.array.astype(np.int16)
    voxel_map = np.linalg.inv(conformed.affine) @ mri.affine  # mri voxel → conformed voxel
    return ndimage.affine_transform(
        np.asarray(classes, dtype=np.int16),
        voxel_map[:3, :3],
        offset=voxel_map[:3, 3],
        output_shape=mri.shape,
        order=0,
        mode="constant",
        cval=0,
    ).astype(np.int16)


def class_names_for(spec: MeshNetSpec, names: Sequence[str] | None) -> tuple[str, ...]:
    """Class names, or ``class0..classN`` when the model folder has no colormap."""
    if names is not None and len(names) == spec.n_classes:
        return tuple(names)
    return tuple(f"class{i}" for i in range(spec.n_classes))


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
        folder = Path(self.model_dir) if self.model_dir else default_model_dir(self.name)
        network = _cached_network(str(folder))
        output = run_meshnet(network, mri, self.run)
        names = load_class_names(folder / "colormap.json") if (
            folder / "colormap.json").is_file() else None
        if names is not None and len(names) == network.spec.n_classes and any(
            name.lower().startswith(("left-", "ctx-lh")) for name in names
        ):
            canonical = convert_by_class_names(output.classes, names)
            split = canonical
        elif network.spec.n_classes == len(MESHNET18_CLASS_NAMES):
            merged = convert_to_canonical(output.classes, "meshnet18")
            self.last_plane = midsagittal_plane(output.conformed, self.midline, merged)
            split = split_left_right_at_plane(merged, output.conformed.affine, self.last_plane)
        else:
            raise SubctInputError(folder, f"cannot map the {network.spec.n_classes} classes "
                                  "of this model to FreeSurfer IDs (no colormap.json names)")
        array = classes_to_mri_grid(split, output.conformed, mri)
        return Volume(array, mri.affine.copy(), None, f"{self.name} labels")


@lru_cache(maxsize=4)
def _cached_network(folder: str) -> Any:
    return load_meshnet(folder)
