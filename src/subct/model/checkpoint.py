"""Code-free network checkpoints: one ``.safetensors`` file with JSON metadata.

A checkpoint holds the network weights as safetensors tensors and everything needed to
use them — network name and options, label scheme, training spacing and orientation,
HU window, patch size, code version, the full training config, validation scores — as
JSON in the safetensors header (key ``"subct"``). Loading parses JSON and copies
tensors; it never unpickles or executes anything, so checkpoints shared by strangers
are safe to open (unlike ``torch.load`` of a pickled model).

Optimiser/scheduler state for ``subct train --resume`` is *not* in here; the trainer
keeps it in its own ``last_state.pt`` next to the checkpoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from subct import __version__
from subct.errors import SubctConfigError, SubctInputError
from subct.io.writers import atomic_output
from subct.labels.schemes import scheme_labels, scheme_names

if TYPE_CHECKING:  # torch is imported inside the functions that need it: inference on
    # ONNX Runtime reads checkpoint metadata without loading torch (start-up time).
    import torch
    from torch import nn


METADATA_KEY = "subct"


CHECKPOINT_SUFFIX = ".safetensors"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CheckpointMetadata(BaseModel):
    """What a checkpoint says about itself; enough to run inference with no config file.

    Attributes:
        network_name: registry name for :func:`subct.model.networks.build_network`.
        network_kwargs: keyword arguments of ``build_network`` (incl. in/out channels).
        label_scheme: ``canonical`` (17 structures), ``merged`` (9) or ``paper7`` (7);
            output channel i+1 ↔ ``subct.labels.schemes.scheme_labels(scheme)[i]``.
        spacing_mm: voxel size (mm) of the grid the network was trained on, RAS axes.
        orientation: axis codes of that grid (always ``"RAS"``).
        hu_window: HU range mapped onto [0, 1] by ``ct_window_normalise``.
        patch_size: training patch size in voxels (X, Y, Z).
        skull_strip: whether inputs were skull-stripped before the network.
        subct_version: version of subct that wrote the checkpoint.
        training_config: the full validated training configuration (JSON dict).
        epoch: epochs completed when saved.
        best_metric: best validation score so far (mean foreground Dice).
        validation_dice: per-structure validation Dice at save time, by label name.
        created: UTC time of writing (ISO 8601).
        reference_pitch_deg: head pitch of the training data's pose (degrees, see
            :meth:`subct.image.intracranial.IntracranialLocation.pitch_deg`); when set,
            inference turns its crop so that every head sits at this pitch. None: the
            crop stays axis-aligned.
        class_scales: volume calibration, structure name → factor (> 0) on that
            structure's softmax probability before the argmax (1 for a structure not
            listed): corrects a network that systematically labels a structure too
            large (factor < 1) or too small (> 1). Chosen on validation heads by
            ``benchmarks/tune_class_scales.py``; empty: no calibration.
    """

    model_config = ConfigDict(extra="allow", ser_json_inf_nan="constants")

    network_name: str
    network_kwargs: dict[str, Any] = Field(default_factory=dict)
    label_scheme: Literal["canonical", "merged", "paper7"] = "canonical"
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    orientation: Literal["RAS"] = "RAS"
    hu_window: tuple[float, float] = (-100.0, 200.0)
    patch_size: tuple[int, int, int] = (128, 128, 128)
    skull_strip: bool = False
    subct_version: str = __version__
    training_config: dict[str, Any] = Field(default_factory=dict)
    epoch: int = 0
    best_metric: float | None = None
    validation_dice: dict[str, float] = Field(default_factory=dict)
    created: str = Field(default_factory=_now)
    reference_pitch_deg: float | None = None
    class_scales: dict[str, float] = Field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Output channels including background."""
        return len(scheme_labels(self.label_scheme)) + 1

    @model_validator(mode="after")
    def _plausible(self) -> CheckpointMetadata:
        """Refuse metadata no subct network can have been trained with, before any
        network is built from it (the schema of issue 11)."""
        if not all(0.3 <= s <= 6.0 for s in self.spacing_mm):  # up to thick-slice grids
            raise ValueError(f"spacing_mm {list(self.spacing_mm)} is outside 0.3-6 mm")
        if not all(8 <= n <= 512 for n in self.patch_size):
            raise ValueError(f"patch_size {list(self.patch_size)} is outside 8-512 voxels")
        low, high = self.hu_window
        if not (-1100.0 <= low < high <= 4000.0):
            raise ValueError(f"hu_window {[low, high]} is not an increasing HU range")
        names = set(scheme_names(self.label_scheme).values())
        for name, factor in self.class_scales.items():
            if name not in names:
                raise ValueError(f"class_scales names {name!r}, not a structure of scheme "
                                 f"{self.label_scheme}")
            if not 0.01 <= factor <= 100.0:
                raise ValueError(f"class_scales[{name!r}] = {factor} is outside 0.01-100")
        kwargs = self.network_kwargs
        if kwargs.get("in_channels", 1) != 1:
            raise ValueError(f"network_kwargs.in_channels is {kwargs['in_channels']}; a CT "
                             "network has one input channel")
        if kwargs.get("out_channels", self.num_classes) != self.num_classes:
            raise ValueError(f"network_kwargs.out_channels is {kwargs['out_channels']}, but "
                             f"scheme {self.label_scheme} has {self.num_classes} classes")
        channels = kwargs.get("channels", DEFAULT_UNET_CHANNELS)
        if not isinstance(channels, (list, tuple)) or not all(
                isinstance(c, int) and 1 <= c <= 1024 for c in channels):
            raise ValueError(f"network_kwargs.channels {channels!r} must be 1-1024 each")
        return self


#: Channel list of the default CT UNet (``unet3d``), mirrored in :mod:`subct.model.networks`.
DEFAULT_UNET_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256)


def size_divisor(name: str, **kwargs: Any) -> int:
    """Patch sides (voxels) must be multiples of this for the network ``name``.

    Inference pads the crop up to a multiple of it; training patch sizes must be
    multiples of it. Lives here, not in :mod:`subct.model.networks`, because inference needs
    it without importing torch.
    """
    if name == "swinunetr":
        return 32
    if name == "dynunet":
        channels = kwargs.get("channels", (32, 64, 128, 256, 320))
        return int(2 ** (len(channels) - 1))
    channels = kwargs.get("channels", DEFAULT_UNET_CHANNELS if name != "unet2d_layernorm"
                          else (32, 64, 128, 256, 512))
    return int(2 ** (len(channels) - 1))


@dataclass
class LoadedCheckpoint:
    """A network rebuilt from a checkpoint (eval mode) and the checkpoint's metadata."""

    network: nn.Module
    metadata: CheckpointMetadata
    path: Path


def _state_for_saving(network: nn.Module) -> dict[str, torch.Tensor]:
    from torch import nn

    module = network
    inner = getattr(network, "module", None)  # unwrap DistributedDataParallel
    if isinstance(inner, nn.Module):
        module = inner
    return {name: tensor.detach().cpu().contiguous().clone()
            for name, tensor in module.state_dict().items()}


def save_checkpoint(path: str | Path, network: nn.Module, metadata: CheckpointMetadata) -> Path:
    """Write weights + metadata to one ``.safetensors`` file atomically.

    The file is written to a temporary name in the same folder and renamed, so a reader
    (or a crash) never sees a half-written checkpoint.
    """
    from safetensors.torch import save_file

    path = Path(path)
    with atomic_output(path, suffix=CHECKPOINT_SUFFIX) as temporary:
        save_file(_state_for_saving(network), str(temporary),
                  metadata={METADATA_KEY: metadata.model_dump_json()})
    return path


def read_safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor table + ``__metadata__``).

    The format is an 8-byte little-endian header length followed by that many bytes of
    JSON; reading it needs neither torch nor the weights.

    Raises:
        SubctInputError: missing file, or not a safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise SubctInputError(path, "checkpoint file not found")
    try:
        with open(path, "rb") as stream:
            prefix = stream.read(8)
            length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            if not 2 <= length <= min(100_000_000, path.stat().st_size - 8):
                raise ValueError("header length out of range")
            header = json.loads(stream.read(length))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise SubctInputError(path, f"not a safetensors checkpoint ({error})") from error
    return header


def read_checkpoint_metadata(path: str | Path) -> CheckpointMetadata:
    """Only the metadata of a checkpoint (reads the header, not the weights)."""
    path = Path(path)
    header = read_safetensors_header(path).get("__metadata__") or {}
    if METADATA_KEY not in header:
        raise SubctInputError(path, f"safetensors file has no {METADATA_KEY!r} metadata; "
                                    "not a subct checkpoint")
    try:
        return CheckpointMetadata.model_validate(json.loads(header[METADATA_KEY]))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'metadata'}: "
            f"{item['msg'].removeprefix('Value error, ')}" for item in error.errors())
        raise SubctInputError(path, f"invalid checkpoint metadata ({problems})") from error
    except (ValueError, TypeError) as error:
        raise SubctInputError(path, f"invalid checkpoint metadata ({error})") from error


def load_state_dict(path: str | Path, device: str | torch.device = "cpu"
                    ) -> dict[str, torch.Tensor]:
    """Weights of a checkpoint as a state dict (no code executed)."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except Exception as error:  # safetensors raises its own error types
        raise SubctInputError(path, f"cannot read checkpoint weights ({error})") from error


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the network of a checkpoint, load its weights and put it in eval mode.

    Raises:
        SubctInputError: missing file, not safetensors, no subct metadata, or weights
            that do not fit the network the metadata describes.
    """
    # lazy: torch and the networks (torch) are needed only to rebuild a network here
    import torch

    from subct.model.networks import build_network  # lazy: see above

    path = Path(path)
    metadata = read_checkpoint_metadata(path)
    try:
        network = build_network(metadata.network_name, **metadata.network_kwargs)
    except SubctConfigError as error:
        raise SubctInputError(path, f"checkpoint describes an unusable network ({error})"
                              ) from error
    state = load_state_dict(path, device)
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise SubctInputError(path, f"weights {name} hold NaN or infinite values")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise SubctInputError(path, "weights do not match the network in the metadata ("
                              + " ".join(str(error).split())[:300] + ")") from error
    network.to(device)
    network.eval()
    return LoadedCheckpoint(network=network, metadata=metadata, path=path)


def average_checkpoints(paths: list[str | Path], output: str | Path,
                        weights: list[float] | None = None) -> Path:
    """Average the weights of checkpoints of one network (stochastic weight averaging).

    Late checkpoints of one training run (same network, scheme, spacing and window)
    lie in one basin of the loss; the mean of their weights usually generalises a
    little better than any one of them (Izmailov et al. 2018, "Averaging weights leads
    to wider optima"). Floating-point tensors are averaged in float64; integer buffers
    are taken from the last checkpoint. Networks with batch-norm running statistics
    would need them recomputed; subct's networks use instance/layer norm (no running
    statistics), so the average is ready to use. The metadata is the last
    checkpoint's, with ``averaged_from`` listing the inputs and their weights.

    ``weights`` (one per input, positive, normalised to sum 1) makes a weighted mean.
    With two inputs, a model and its own fine-tuned descendant, this is weight-space
    ensembling (WiSE-FT, Wortsman et al. 2022): interpolating between the original and
    the fine-tuned weights often keeps the original's accuracy on its own distribution
    and most of the fine-tuned model's robustness to the shift it was tuned for, at no
    extra inference cost.

    Raises:
        SubctInputError: fewer than two inputs, unreadable files, checkpoints of
            different networks / settings, or weights of the wrong count or sign.
    """
    sources = [Path(p) for p in paths]
    output = Path(output)
    if len(sources) < 2:
        raise SubctInputError(sources[0] if sources else output,
                              "averaging needs at least two checkpoints")
    if output.resolve() in {p.resolve() for p in sources}:
        raise SubctInputError(output, "the output would overwrite one of the inputs")
    if weights is None:
        weights = [1.0] * len(sources)
    if len(weights) != len(sources) or not all(w > 0 for w in weights):
        raise SubctInputError(output, f"need one positive weight per checkpoint "
                                      f"({len(sources)}), got {list(weights)}")
    fractions = [w / sum(weights) for w in weights]
    metadata = [read_checkpoint_metadata(p) for p in sources]
    settings = ("network_name", "network_kwargs", "label_scheme", "spacing_mm", "hu_window",
                "skull_strip")
    reference = {key: getattr(metadata[-1], key) for key in settings}
    for path, meta in zip(sources, metadata, strict=True):
        differing = [key for key in settings if getattr(meta, key) != reference[key]]
        if differing:
            raise SubctInputError(path, "checkpoint differs from the last one in "
                                        + ", ".join(differing))
    import torch

    states = [load_state_dict(p) for p in sources]
    averaged: dict[str, torch.Tensor] = {}
    for name, last in states[-1].items():
        for path, state in zip(sources, states, strict=True):
            if name not in state or state[name].shape != last.shape:
                raise SubctInputError(path, f"tensor {name!r} missing or of another shape")
        if last.is_floating_point():
            total = sum(fraction * state[name].double()
                        for fraction, state in zip(fractions, states, strict=True))
            assert isinstance(total, torch.Tensor)
            averaged[name] = total.to(last.dtype).contiguous()
        else:
            averaged[name] = last.clone()
    if set().union(*(state.keys() for state in states)) != set(averaged):
        raise SubctInputError(sources[0], "checkpoints hold different tensors")
    result = metadata[-1].model_copy(update={"created": _now()})
    extra = {"averaged_from": [{"file": p.name, "epoch": m.epoch, "weight": round(f, 6)}
                               for p, m, f in zip(sources, metadata, fractions,
                                                  strict=True)]}
    from safetensors.torch import save_file

    payload = json.loads(result.model_dump_json()) | extra
    with atomic_output(output, suffix=CHECKPOINT_SUFFIX) as temporary:
        save_file(averaged, str(temporary), metadata={METADATA_KEY: json.dumps(payload)})
    return output
