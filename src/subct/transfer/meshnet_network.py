"""MeshNet (brainchop) networks: the model files and the PyTorch network.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from subct.errors import SubctInputError
from subct.paths import shared_data_dir

#: Size (voxels) and spacing (mm) of the FreeSurfer-conformed grid the models expect.
CONFORMED_SIZE = 256


CONFORMED_SPACING_MM = 1.0


#: Orientation of the conformed grid (FreeSurfer ``mri_convert --conform``).
CONFORMED_ORIENTATION = "LIA"


#: Folder names of the brainchop models in ``shared/data/mri_models/meshnet``.
MESHNET_MODEL_FOLDERS: dict[str, str] = {
    "meshnet-subcortical": "subcortical",
    "meshnet-18": "model18cls",
    "meshnet-104": "model21_104class",
}


@dataclass(frozen=True)
class ConvLayerSpec:
    """One convolution of ``model.json`` (sizes in voxels)."""

    in_channels: int
    out_channels: int
    kernel_size: int
    padding: int
    stride: int = 1
    dilation: int = 1


@dataclass(frozen=True)
class MeshNetSpec:
    """The architecture read from ``model.json``."""

    layers: tuple[ConvLayerSpec, ...]
    batch_norm: bool = False
    activation: str = "elu"
    dropout_p: float = 0.0
    bias: bool = True
    header: str = ""

    @property
    def n_classes(self) -> int:
        """Number of output channels (classes, background included)."""
        return self.layers[-1].out_channels

    @property
    def receptive_halo_voxels(self) -> int:
        """How far (voxels) each output voxel sees in each direction: Σ dilation·(k−1)/2."""
        return sum(layer.dilation * (layer.kernel_size - 1) // 2 for layer in self.layers)


def read_model_spec(model_json: str | Path) -> MeshNetSpec:
    """Parse a brainchop ``model.json``.

    Raises:
        SubctInputError: the file is missing, not JSON, or has no valid layer list.
    """
    path = Path(model_json)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise SubctInputError(path, "MeshNet model.json not found") from error
    except (OSError, json.JSONDecodeError) as error:
        raise SubctInputError(path, f"cannot read MeshNet model.json ({error})") from error
    try:
        layers = tuple(
            ConvLayerSpec(
                in_channels=int(layer["in_channels"]),
                out_channels=int(layer["out_channels"]),
                kernel_size=int(layer["kernel_size"]),
                padding=int(layer["padding"]),
                stride=int(layer.get("stride", 1)),
                dilation=int(layer.get("dilation", 1)),
            )
            for layer in raw["layers"]
        )
    except (KeyError, TypeError, ValueError) as error:
        raise SubctInputError(path, f"invalid MeshNet layer list ({error!r})") from error
    if not layers:
        raise SubctInputError(path, "MeshNet model.json has an empty layer list")
    for previous, layer in zip(layers, layers[1:], strict=False):
        if previous.out_channels != layer.in_channels:
            raise SubctInputError(
                path, f"layer channels do not chain ({previous.out_channels} → "
                f"{layer.in_channels})"
            )
    return MeshNetSpec(
        layers=layers,
        batch_norm=bool(raw.get("bnorm", False)),
        # brainchop's MeshNet uses ELU unless "gelu" is set (the 104-class model.json only
        # says "gelu": false).
        activation="gelu" if raw.get("gelu", False) else "elu",
        dropout_p=float(raw.get("dropout_p", 0.0)),
        bias=bool(raw.get("bias", True)),
        header=str(raw.get("header", "")),
    )


class MeshNet(nn.Module):
    """MeshNet as a ``torch.nn.Sequential`` named ``model`` (matches the weight keys)."""

    def __init__(self, spec: MeshNetSpec) -> None:
        super().__init__()
        self.spec = spec
        modules: list[nn.Module] = []
        for index, layer in enumerate(spec.layers):
            modules.append(
                nn.Conv3d(
                    layer.in_channels,
                    layer.out_channels,
                    kernel_size=layer.kernel_size,
                    padding=layer.padding,
                    stride=layer.stride,
                    dilation=layer.dilation,
                    bias=spec.bias,
                )
            )
            if index < len(spec.layers) - 1:
                if spec.batch_norm:
                    modules.append(nn.BatchNorm3d(layer.out_channels))
                modules.append(nn.GELU() if spec.activation == "gelu" else nn.ELU())
                if spec.dropout_p > 0:
                    modules.append(nn.Dropout3d(spec.dropout_p))
        self.model = nn.Sequential(*modules)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 1, X, Y, Z) scaled T1 → (N, classes, X, Y, Z) logits."""
        return self.model(image)  # type: ignore[no-any-return]


def load_meshnet(model_dir: str | Path) -> MeshNet:
    """Build the network of ``model_dir/model.json`` and load ``model_dir/model.pth``.

    Raises:
        SubctInputError: files missing, or weights that do not fit the layer list.
    """
    from safetensors.torch import load_file

    folder = Path(model_dir)
    spec = read_model_spec(folder / "model.json")
    weights_path = meshnet_weights_path(folder)
    try:
        state = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types
        raise SubctInputError(weights_path, f"cannot read safetensors weights ({error})") from error
    network = MeshNet(spec)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        problem = " ".join(str(error).split())[:300]
        raise SubctInputError(
            weights_path, f"weights do not match model.json: {problem}"
        ) from error
    return network.eval()


def meshnet_weights_path(model_dir: str | Path) -> Path:
    """The weights file of a MeshNet folder: ``model.pth`` (safetensors despite its name),
    else the first ``*.safetensors``.

    Raises:
        SubctInputError: the folder holds neither.
    """
    folder = Path(model_dir)
    weights_path = folder / "model.pth"
    if weights_path.is_file():
        return weights_path
    candidates = sorted(folder.glob("*.safetensors"))
    if not candidates:
        raise SubctInputError(folder, "no MeshNet weights (model.pth or *.safetensors)")
    return candidates[0]


def default_model_dir(name: str) -> Path:
    """Folder of a named brainchop model (``SUBCT_MESHNET_DIR`` or the shared data)."""
    root_env = os.environ.get("SUBCT_MESHNET_DIR")
    root = Path(root_env) if root_env else shared_data_dir() / "mri_models" / "meshnet"
    return root / MESHNET_MODEL_FOLDERS.get(name, name)


def read_class_names(model_dir: str | Path) -> tuple[str, ...] | None:
    """Class names from ``colormap.json`` (``labels`` list), or None if absent."""
    path = Path(model_dir) / "colormap.json"
    if not path.is_file():
        return None
    return tuple(str(name) for name in json.loads(path.read_text())["labels"])
