"""Segmentation networks selected by name, built from MONAI where MONAI has them.

Every network here takes a 3D patch ``[B, C_in, X, Y, Z]`` (RAS voxel order, so Z is
the axial/superior axis) and returns logits ``[B, C_out, X, Y, Z]``; the 2D UNet runs
slice-wise over the axial slices inside the module, so training and inference code
never need to know whether a network is 2D or 3D.

Networks are rebuilt from a checkpoint's metadata with
``build_network(meta.network_name, **meta.network_kwargs)``, so every keyword argument
must be JSON-serialisable (ints, floats, strings, lists).

Registered names:

``unet3d``
    MONAI ``UNet`` (plain double-conv blocks, instance norm), the default CT network.
``resunet3d``
    MONAI ``UNet`` with residual units (``num_res_units=2``).
``dynunet``
    MONAI ``DynUNet`` (nnU-Net-style, strided convolutions, leaky ReLU).
``unet2d_layernorm``
    2D UNet with layer normalisation between every convolution and activation, run
    slice-wise (head-CT neuroanatomy paper: layer norm made small classes learnable and
    training stable with small batches).
``swinunetr``
    MONAI ``SwinUNETR`` (transformer encoder); patch sides must be multiples of 32
    and at least 64 (its instance-normalised bottleneck needs more than one voxel).

All accept ``dropout`` (probability, default 0): dropout layers after the convolution
blocks, which :func:`enable_mc_dropout` switches on at inference for Monte-Carlo
dropout quality control (multimodal 3D UNet paper: N = 15 samples, r = 0.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from subct.errors import SubctConfigError
from subct.model.metadata import DEFAULT_NETWORK_CHANNELS
from subct.model.metadata import size_divisor as size_divisor  # torch-free; re-exported here

NetworkBuilder = Callable[..., nn.Module]


#: Network name → builder ``(in_channels, out_channels, **kwargs) -> nn.Module``.
NETWORK_REGISTRY: dict[str, NetworkBuilder] = {}


DEFAULT_CHANNELS: tuple[int, ...] = DEFAULT_NETWORK_CHANNELS["unet3d"]


def register_network(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Decorator adding a builder to :data:`NETWORK_REGISTRY` under ``name``."""

    def decorate(builder: NetworkBuilder) -> NetworkBuilder:
        NETWORK_REGISTRY[name] = builder
        return builder

    return decorate


def available_networks() -> tuple[str, ...]:
    """Names accepted by :func:`build_network`, sorted."""
    return tuple(sorted(NETWORK_REGISTRY))


def build_network(name: str, in_channels: int = 1, out_channels: int = 18,
                  **kwargs: Any) -> nn.Module:
    """Build the network registered as ``name``.

    Args:
        name: one of :func:`available_networks`.
        in_channels: input channels (1 for a single CT).
        out_channels: classes including background (18 for the canonical scheme).
        **kwargs: architecture options of that network (e.g. ``channels``, ``dropout``).

    Raises:
        SubctConfigError: unknown name or an option the network does not take.
    """
    if name not in NETWORK_REGISTRY:
        raise SubctConfigError(
            f"unknown network {name!r}; available: {', '.join(available_networks())}"
        )
    try:
        return NETWORK_REGISTRY[name](in_channels, out_channels, **kwargs)
    except (TypeError, ValueError, LookupError, AssertionError) as error:
        # a wrong option name (TypeError) or value MONAI refuses (norm="bogus": KeyError...)
        raise SubctConfigError(f"bad options for network {name!r}: {error}") from error


def _strides(channels: Sequence[int]) -> tuple[int, ...]:
    return tuple(2 for _ in range(len(channels) - 1))


class ResidualRefinement(nn.Module):
    """``x + gate * conv(PReLU(norm(conv(x))))`` at one resolution, with the scalar
    ``gate`` initialised to zero (ReZero; Bachlechner et al. 2021), so that a block added
    to a trained network starts as the identity: the grown network first computes
    exactly what the trained one did (function-preserving growth, as in Net2Net). A gate
    rather than a zeroed convolution because Adam moves every zero weight of a wide
    convolution by about the learning rate per step, which perturbed the trained network
    far more (validation Dice 0.76 -> 0.65 in the first epoch) than one scalar does."""

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        self.first = nn.Conv3d(channels, channels, kernel_size=3, padding=1)
        self.norm = (nn.InstanceNorm3d(channels) if norm == "instance"
                     else nn.BatchNorm3d(channels))
        self.activation = nn.PReLU()
        self.second = nn.Conv3d(channels, channels, kernel_size=3, padding=1)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.gate * self.second(self.activation(self.norm(self.first(features))))


class RefinedConvolution(nn.Module):
    """A MONAI ``Convolution`` (its ``conv`` and ``adn`` keep their parameter names, so a
    checkpoint of the plain network loads into it) followed by a
    :class:`ResidualRefinement`."""

    def __init__(self, convolution: nn.Module, channels: int, norm: str) -> None:
        super().__init__()
        self.conv: nn.Module = convolution.get_submodule("conv")
        self.adn: nn.Module = convolution.get_submodule("adn")
        self.refine = ResidualRefinement(channels, norm)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.refine(self.adn(self.conv(features)))


def _encoder_slot(unet: nn.Module, level: int) -> tuple[nn.Module, str]:
    """(parent module, attribute name) of the encoder convolution at ``level`` of a MONAI
    ``UNet`` (0: the first, full-input convolution; the last level is the bottom)."""
    parent: nn.Module = unet.get_submodule("model")
    for _ in range(level):
        skip = parent.get_submodule("1")
        parent = skip.get_submodule("submodule")
        if hasattr(parent, "conv"):  # the bottom: SkipConnection(Convolution)
            return skip, "submodule"
    return parent, "0"


@register_network("unet3d")
def _build_unet3d(in_channels: int, out_channels: int, channels: Sequence[int] = DEFAULT_CHANNELS,
                  dropout: float = 0.0, norm: str = "instance",
                  refine_levels: Sequence[int] = ()) -> nn.Module:
    """MONAI ``UNet`` with one convolution per level; ``refine_levels`` adds a
    :class:`ResidualRefinement` after the encoder convolution of each listed level
    (0 = the first; growing a trained network: its checkpoint still loads, the new
    blocks start as the identity)."""
    from monai.networks.nets import UNet

    unet = UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                channels=tuple(channels), strides=_strides(channels), num_res_units=0,
                norm=norm, dropout=dropout)
    for level in sorted(set(int(level) for level in refine_levels)):
        if not 0 <= level < len(channels):
            raise ValueError(f"refine_levels: level {level} outside 0..{len(channels) - 1}")
        parent, name = _encoder_slot(unet, level)
        refined = RefinedConvolution(parent.get_submodule(name), int(channels[level]), norm)
        setattr(parent, name, refined)  # Sequential children are attributes "0", "1", ...
    return unet


def is_growth_of(state_keys: set[str], network: nn.Module) -> bool:
    """True when ``network`` is a network of ``state_keys`` grown by refinement blocks:
    every parameter the checkpoint lacks belongs to a :class:`ResidualRefinement`, and
    the checkpoint holds nothing the network lacks."""
    own = set(network.state_dict())
    missing = own - state_keys
    return bool(missing) and state_keys <= own and all(".refine." in key for key in missing)


@register_network("resunet3d")
def _build_resunet3d(in_channels: int, out_channels: int,
                     channels: Sequence[int] = DEFAULT_CHANNELS, dropout: float = 0.0,
                     num_res_units: int = 2, norm: str = "instance") -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                channels=tuple(channels), strides=_strides(channels),
                num_res_units=num_res_units, norm=norm, dropout=dropout)


@register_network("dynunet")
def _build_dynunet(in_channels: int, out_channels: int,
                   channels: Sequence[int] = DEFAULT_NETWORK_CHANNELS["dynunet"],
                   dropout: float = 0.0, res_block: bool = False) -> nn.Module:
    from monai.networks.nets import DynUNet

    depth = len(channels)
    return DynUNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                   kernel_size=[3] * depth, strides=[1] + [2] * (depth - 1),
                   upsample_kernel_size=[2] * (depth - 1), filters=list(channels),
                   dropout=dropout if dropout > 0 else None, res_block=res_block)


@register_network("swinunetr")
def _build_swinunetr(in_channels: int, out_channels: int, feature_size: int = 24,
                     depths: Sequence[int] = (2, 2, 2, 2),
                     num_heads: Sequence[int] = (3, 6, 12, 24),
                     dropout: float = 0.0, use_checkpoint: bool = False) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=in_channels, out_channels=out_channels,
                     feature_size=feature_size, depths=tuple(depths), num_heads=tuple(num_heads),
                     drop_rate=dropout, spatial_dims=3, use_checkpoint=use_checkpoint)


class SliceWise2DNetwork(nn.Module):
    """Runs a 2D network on every slice of a 3D patch along one axis.

    ``[B, C, X, Y, Z]`` → slices ``[B·Z, C, X, Y]`` (for ``axis=4``) → 2D network →
    back to ``[B, C_out, X, Y, Z]``. The default axis 4 is the axial (superior) axis
    of an RAS-oriented volume, the slice direction of clinical head CT.
    """

    def __init__(self, network_2d: nn.Module, axis: int = 4) -> None:
        super().__init__()
        if axis not in (2, 3, 4):
            raise SubctConfigError(f"slice axis must be 2, 3 or 4 (spatial), got {axis}")
        self.net = network_2d
        self.axis = axis

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        moved = patch.movedim(self.axis, 1)  # [B, S, C, ...2D]
        batch, slices = moved.shape[0], moved.shape[1]
        flat = moved.reshape(batch * slices, *moved.shape[2:])
        out = self.net(flat)
        out = out.reshape(batch, slices, *out.shape[1:])
        return out.movedim(1, self.axis).contiguous()


@register_network("unet2d_layernorm")
def _build_unet2d_layernorm(in_channels: int, out_channels: int,
                            channels: Sequence[int] = DEFAULT_NETWORK_CHANNELS["unet2d_layernorm"],
                            dropout: float = 0.0, slice_axis: int = 4) -> nn.Module:
    from monai.networks.nets import UNet

    # GroupNorm with one group normalises over (channels, height, width) of each sample:
    # layer normalisation for convolutional maps (Ba et al.), independent of batch size.
    network_2d = UNet(spatial_dims=2, in_channels=in_channels, out_channels=out_channels,
                      channels=tuple(channels), strides=_strides(channels), num_res_units=0,
                      norm=("group", {"num_groups": 1}), act="relu", dropout=dropout)
    return SliceWise2DNetwork(network_2d, axis=slice_axis)


def _monai_unet_encoder(model: nn.Module) -> list[nn.Module]:
    """Down-path blocks and bottom block of a MONAI ``UNet``'s nested ``model``.

    MONAI builds ``Sequential(down, SkipConnection(Sequential(down, ..., up)), up)``
    recursively; the innermost SkipConnection holds the bottom block directly.
    """
    from monai.networks.layers import SkipConnection

    encoder: list[nn.Module] = []
    level: nn.Module = model
    while isinstance(level, nn.Sequential) and len(level) == 3:
        encoder.append(level[0])
        skip = level[1]
        if not isinstance(skip, SkipConnection):
            break
        level = skip.submodule
    else:
        encoder.append(level)  # bottom block (not a 3-part Sequential)
    return encoder


def encoder_modules(network: nn.Module) -> list[nn.Module]:
    """The encoder (contracting path incl. bottleneck) of a network built here.

    Used by transfer learning (ensemble label-transfer paper 4.3): the encoder of a
    network pre-trained on many (synthetic or label-transferred) scans is frozen and
    only the decoder is fine-tuned on a few labelled CTs.
    """
    from monai.networks.nets import DynUNet, SwinUNETR, UNet

    if isinstance(network, SliceWise2DNetwork):
        return encoder_modules(network.net)
    if isinstance(network, UNet):
        return _monai_unet_encoder(network.model)
    if isinstance(network, DynUNet):
        return [network.input_block, *network.downsamples, network.bottleneck]
    if isinstance(network, SwinUNETR):
        return [network.swinViT, network.encoder1, network.encoder2, network.encoder3,
                network.encoder4, network.encoder10]
    raise SubctConfigError(f"no encoder/decoder split known for {type(network).__name__}")


def freeze_encoder(network: nn.Module) -> int:
    """Set ``requires_grad=False`` on every encoder parameter; return how many tensors.

    Frozen normalisation layers also stop updating running statistics only if the
    caller keeps them in eval mode; MONAI's instance norm keeps none, so nothing else
    is needed for the default networks.
    """
    frozen = 0
    for module in encoder_modules(network):
        for parameter in module.parameters():
            parameter.requires_grad_(False)
            frozen += 1
    return frozen


def enable_mc_dropout(network: nn.Module) -> int:
    """Put the network in eval mode but its dropout layers in train mode (MC dropout).

    Returns the number of dropout layers switched on; 0 means the network was trained
    without dropout and sampling it would give identical outputs.
    """
    network.eval()
    count = 0
    for module in network.modules():
        if isinstance(module, nn.Dropout | nn.Dropout2d | nn.Dropout3d):
            module.train()
            count += 1
    return count


def count_parameters(network: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad or not trainable_only)
