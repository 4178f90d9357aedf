"""Checkpoint metadata, torch-free: what a ``.safetensors`` checkpoint says about itself.

The JSON in a checkpoint's safetensors header (key ``"subct"``) is validated by
:class:`CheckpointMetadata`; :func:`read_checkpoint_metadata` reads it without the weights
and without torch, so inference on OpenVINO/ONNX Runtime and ``subct info`` start fast.
The network defaults that inference needs (channel lists, :func:`size_divisor`) live here
too, beside the metadata that names the network; :mod:`subct.model.networks` builds
networks from them and :mod:`subct.model.checkpoint` saves and loads the weights.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from subct import __version__
from subct.errors import SubctInputError
from subct.labels.schemes import scheme_labels, scheme_names
from subct.model.plan import Plan

METADATA_KEY = "subct"


CHECKPOINT_SUFFIX = ".safetensors"


def now_utc() -> str:
    """The current UTC time, ISO 8601 to the second (a checkpoint's ``created``)."""
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
        inference_window: sliding-window size in voxels (X, Y, Z) for inference; None:
            the training patch size (a network trained on 128³ patches scored better
            with 12 overlapping 96³ windows over the deep-brain box than with 4 of 128³).
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
    # the plan: no defaults, so a checkpoint never silently claims settings it was not
    # trained with (every checkpoint subct writes records them)
    spacing_mm: tuple[float, float, float]
    orientation: Literal["RAS"] = "RAS"
    hu_window: tuple[float, float]
    patch_size: tuple[int, int, int]
    inference_window: tuple[int, int, int] | None = None
    skull_strip: bool = False
    subct_version: str = __version__
    training_config: dict[str, Any] = Field(default_factory=dict)
    epoch: int = 0
    best_metric: float | None = None
    validation_dice: dict[str, float] = Field(default_factory=dict)
    created: str = Field(default_factory=now_utc)
    reference_pitch_deg: float | None = None
    class_scales: dict[str, float] = Field(default_factory=dict)

    @property
    def plan(self) -> Plan:
        """The grid and intensity settings this network was trained with."""
        return Plan(spacing_mm=tuple(float(s) for s in self.spacing_mm),  # type: ignore[arg-type]
                    hu_window=(float(self.hu_window[0]), float(self.hu_window[1])),
                    patch_size=self.patch_size, label_scheme=self.label_scheme,
                    size_divisor=size_divisor(self.network_name, **self.network_kwargs),
                    reference_pitch_deg=self.reference_pitch_deg,
                    window_size=self.inference_window)

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
        for name, size in (("patch_size", self.patch_size),
                           ("inference_window", self.inference_window)):
            if size is not None and not all(8 <= n <= 512 for n in size):
                raise ValueError(f"{name} {list(size)} is outside 8-512 voxels")
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


#: Default channel list (per level) of each network that has one; the builders in
#: :mod:`subct.model.networks` take their defaults from here.
DEFAULT_NETWORK_CHANNELS: dict[str, tuple[int, ...]] = {
    "unet3d": (16, 32, 64, 128, 256),
    "resunet3d": (16, 32, 64, 128, 256),
    "dynunet": (32, 64, 128, 256, 320),
    "unet2d_layernorm": (32, 64, 128, 256, 512),
}
#: Channel list of the default CT UNet (``unet3d``).
DEFAULT_UNET_CHANNELS: tuple[int, ...] = DEFAULT_NETWORK_CHANNELS["unet3d"]
#: Networks whose patch sides must be multiples of a fixed number (voxels); the others
#: halve the grid once per level after the first, so 2^(levels − 1).
FIXED_SIZE_DIVISOR: dict[str, int] = {"swinunetr": 32}


def size_divisor(name: str, **kwargs: Any) -> int:
    """Patch sides (voxels) must be multiples of this for the network ``name``.

    Inference pads the crop up to a multiple of it; training patch sizes must be
    multiples of it. Torch-free (here, beside the network defaults), because inference
    on OpenVINO/ONNX needs it without importing torch.
    """
    if name in FIXED_SIZE_DIVISOR:
        return FIXED_SIZE_DIVISOR[name]
    channels = kwargs.get("channels", DEFAULT_NETWORK_CHANNELS.get(name, DEFAULT_UNET_CHANNELS))
    return int(2 ** (len(channels) - 1))


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
