"""Synthetic training images from label maps: SynthSeg-style domain randomisation with CT physics.

Public API::

    from subct.synth import SynthConfig, SynthGenerator, SyntheticDataset

    generator = SynthGenerator(label_map_paths, SynthConfig(mode="ct"), seed=0)
    sample = generator.sample()   # sample.image [1,X,Y,Z], sample.target [X,Y,Z]

See :mod:`subct.synth.generator` for the steps of the generative model and
:mod:`subct.synth.config` for every parameter and its default.
"""

from subct.synth.config import SynthConfig
from subct.synth.dataset import SyntheticDataset
from subct.synth.generator import SyntheticSample, SynthGenerator
from subct.synth.label_maps import LabelBank

__all__ = ["LabelBank", "SynthConfig", "SynthGenerator", "SyntheticDataset", "SyntheticSample"]
