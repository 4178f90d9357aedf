"""Synthetic training images from label maps: SynthSeg-style domain randomisation with CT physics.

Public API::

    from subct.synth import SynthConfig, SynthGenerator, SyntheticDataset

    generator = SynthGenerator(label_map_paths, SynthConfig(mode="ct"), seed=0)
    sample = generator.sample()   # sample.image [1,X,Y,Z], sample.target [X,Y,Z]

See :mod:`subct.synth.generator` for the steps of the generative model and
:mod:`subct.synth.config` for every parameter and its default.

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

if TYPE_CHECKING:
    from subct.synth.config import SynthConfig
    from subct.synth.dataset import SyntheticDataset
    from subct.synth.generator import SyntheticSample, SynthGenerator
    from subct.synth.label_maps import LabelBank

_EXPORTS: dict[str, str] = {
    "LabelBank": "subct.synth.label_maps",
    "SynthConfig": "subct.synth.config",
    "SynthGenerator": "subct.synth.generator",
    "SyntheticDataset": "subct.synth.dataset",
    "SyntheticSample": "subct.synth.generator",
}

__all__ = [
    "LabelBank",
    "SynthConfig",
    "SynthGenerator",
    "SyntheticDataset",
    "SyntheticSample",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
