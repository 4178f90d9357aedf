"""Network factory: shapes, registry errors, slice-wise 2D, encoder freezing, MC dropout."""

from __future__ import annotations

import pytest
import torch

from subct.errors import SubctConfigError
from subct.model.checkpoint import size_divisor
from subct.model.networks import (
    SliceWise2DNetwork,
    available_networks,
    build_network,
    count_parameters,
    enable_mc_dropout,
    encoder_modules,
    freeze_encoder,
    is_growth_of,
)

SMALL = {
    "unet3d": {"channels": [4, 8, 16]},
    "resunet3d": {"channels": [4, 8, 16]},
    "dynunet": {"channels": [4, 8, 16]},
    "unet2d_layernorm": {"channels": [4, 8, 16]},
    "swinunetr": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_network_maps_patch_to_logits_of_same_size(name: str) -> None:
    network = build_network(name, in_channels=1, out_channels=5, **SMALL[name])
    side = 64 if name == "swinunetr" else 16
    assert side % size_divisor(name, **SMALL[name]) == 0
    network.eval()
    with torch.no_grad():
        out = network(torch.randn(1, 1, side, side, side))
    assert out.shape == (1, 5, side, side, side)
    # the encoder is a real, non-empty subset of the parameters
    encoder_params = sum(p.numel() for m in encoder_modules(network) for p in m.parameters())
    assert 0 < encoder_params < count_parameters(network)


def test_registry_lists_all_and_rejects_unknown_names_and_options() -> None:
    assert set(SMALL) == set(available_networks())  # every offered network is built above
    with pytest.raises(SubctConfigError, match="unknown network"):
        build_network("vnet-9000")
    with pytest.raises(SubctConfigError, match="bad options"):
        build_network("unet3d", colour="blue")
    with pytest.raises(SubctConfigError, match="bad options"):
        build_network("unet3d", channels=[4, 8], norm="bogus")


def test_slicewise_2d_network_treats_slices_independently() -> None:
    torch.manual_seed(0)
    network = build_network("unet2d_layernorm", 1, 3, channels=[4, 8])
    assert isinstance(network, SliceWise2DNetwork)
    network.eval()
    volume = torch.randn(2, 1, 8, 8, 6)
    with torch.no_grad():
        full = network(volume)
        changed = volume.clone()
        changed[..., 5] = 10.0  # change only the last axial slice
        partial = network(changed)
    assert torch.allclose(full[..., :5], partial[..., :5], atol=1e-6)
    assert not torch.allclose(full[..., 5], partial[..., 5])
    # layer norm (GroupNorm with one group) is used, no batch statistics
    norms = [m for m in network.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 1 for m in norms)


def test_freeze_encoder_leaves_only_decoder_trainable() -> None:
    network = build_network("unet3d", 1, 3, channels=[4, 8, 16])
    total = count_parameters(network)
    assert freeze_encoder(network) > 0
    trainable = count_parameters(network, trainable_only=True)
    assert 0 < trainable < total
    for module in encoder_modules(network):
        assert all(not p.requires_grad for p in module.parameters())


def test_mc_dropout_makes_outputs_stochastic_only_when_enabled() -> None:
    torch.manual_seed(0)
    network = build_network("unet3d", 1, 3, channels=[4, 8], dropout=0.3)
    x = torch.randn(1, 1, 8, 8, 8)
    network.eval()
    with torch.no_grad():
        assert torch.equal(network(x), network(x))
        assert enable_mc_dropout(network) > 0
        assert not torch.equal(network(x), network(x))


def test_growing_a_unet_keeps_its_function_and_its_parameter_names() -> None:
    torch.manual_seed(0)
    plain = build_network("unet3d", channels=[4, 8, 16, 32])
    grown = build_network("unet3d", channels=[4, 8, 16, 32], refine_levels=[1, 2, 3])
    state = plain.state_dict()
    assert is_growth_of(set(state), grown)
    assert not is_growth_of(set(state), plain)  # nothing new: an ordinary load
    grown.load_state_dict(state, strict=False)
    patch = torch.randn(1, 1, 32, 32, 32)
    plain.eval()
    grown.eval()
    with torch.no_grad():
        assert torch.equal(plain(patch), grown(patch))  # the new blocks start as identity
        gates = [m for name, m in grown.named_parameters() if name.endswith("refine.gate")]
        assert len(gates) == 3
        for gate in gates:
            gate.fill_(0.5)
        assert not torch.allclose(plain(patch), grown(patch))  # and do take part
    extra = count_parameters(grown) - count_parameters(plain)
    assert extra == sum(2 * (c * c * 27 + c) + 1 + 1 for c in (8, 16, 32))
    with pytest.raises(SubctConfigError, match="refine_levels"):
        build_network("unet3d", channels=[4, 8, 16], refine_levels=[3])
