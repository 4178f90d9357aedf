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
from pathlib import Path
from typing import TYPE_CHECKING

from subct.errors import SubctConfigError, SubctInputError
from subct.io.writers import atomic_output
from subct.model.metadata import (
    CHECKPOINT_SUFFIX,
    DEFAULT_UNET_CHANNELS,
    METADATA_KEY,
    CheckpointMetadata,
    now_utc,
    read_checkpoint_metadata,
    read_safetensors_header,
    size_divisor,
)

if TYPE_CHECKING:  # torch is imported inside the functions that need it: inference on
    # ONNX Runtime reads checkpoint metadata without loading torch (start-up time).
    import torch
    from torch import nn


__all__ = [  # the metadata names stay importable from here (torch-free in metadata.py)
    "CHECKPOINT_SUFFIX", "DEFAULT_UNET_CHANNELS", "METADATA_KEY", "CheckpointMetadata",
    "LoadedCheckpoint", "average_checkpoints", "load_checkpoint", "load_state_dict",
    "read_checkpoint_metadata", "read_safetensors_header", "save_checkpoint", "size_divisor",
]


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
    result = metadata[-1].model_copy(update={"created": now_utc()})
    extra = {"averaged_from": [{"file": p.name, "epoch": m.epoch, "weight": round(f, 6)}
                               for p, m, f in zip(sources, metadata, fractions,
                                                  strict=True)]}
    from safetensors.torch import save_file

    payload = json.loads(result.model_dump_json()) | extra
    with atomic_output(output, suffix=CHECKPOINT_SUFFIX) as temporary:
        save_file(averaged, str(temporary), metadata={METADATA_KEY: json.dumps(payload)})
    return output
