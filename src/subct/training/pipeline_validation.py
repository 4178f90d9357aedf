"""Full-pipeline validation during training (``pipeline_validation`` in the config).

The trainer's patch validation (loss and Dice on fixed 64³ patches) is cheap but does
not rank checkpoints the way users meet them: ``subct segment`` locates the brain in a
whole head, crops, runs sliding windows and post-processes. On issue 12's runs the
checkpoint with the best patch loss scored below checkpoints it had beaten once scored
that way. This module draws a few whole synthetic head CTs from the validation label
maps once (fixed seed, the run's generator settings, pathology included) and scores a
network on them through :func:`subct.inference.pipeline.segment` (no TTA, ``force``),
so the loop can keep the checkpoint with the best mean Dice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from subct.evaluation.metrics import label_map_metrics
from subct.image.volume import Volume
from subct.inference.config import InferenceConfig
from subct.inference.model import model_from_network
from subct.inference.pipeline import segment
from subct.labels.schemes import indices_to_labels, scheme_names
from subct.model.checkpoint import CheckpointMetadata
from subct.synth.generator import SynthGenerator
from subct.training import data as training_data
from subct.training.config import TrainingConfig


@dataclass
class ValidationHead:
    """One whole synthetic head: the CT (HU, 1 mm RAS grid) and its reference labels
    (label values of the run's scheme on the same grid)."""

    name: str
    ct: Volume
    reference: NDArray[np.int16]


def build_validation_heads(config: TrainingConfig) -> list[ValidationHead]:
    """``pipeline_validation.heads`` synthetic CTs from the validation label maps, drawn
    in turn from each map with fixed seeds (the same heads every epoch and on resume).
    Empty when pipeline validation is off or there are no synthetic validation maps."""
    settings = config.pipeline_validation
    synthetic = config.data.synthetic
    if settings.every_epochs == 0 or synthetic is None or not synthetic.validation_label_maps:
        return []
    paths = config.resolve_label_maps(synthetic.validation_label_maps)
    return synthetic_heads(config, [paths[n % len(paths)] for n in range(settings.heads)],
                           seed=20_011, shape=settings.shape)


def synthetic_heads(config: TrainingConfig, paths: list[Path], seed: int,
                    shape: tuple[int, int, int]) -> list[ValidationHead]:
    """One whole synthetic head CT per label map (the run's generator settings, CT mode,
    a grid of ``shape`` 1 mm voxels), seeds ``seed``, ``seed + 1``, ..."""
    synth_config = training_data.synth_config_for(
        config, {"output_shape": list(shape), "mode": "ct"})
    heads: list[ValidationHead] = []
    for number, path in enumerate(paths):
        bank = training_data.build_label_bank(config, [str(path)])
        sample = SynthGenerator(bank, synth_config, seed=seed + number).sample()
        if sample.hu is None:
            raise RuntimeError("the synthetic generator gave no HU image in CT mode")
        hu = np.round(sample.hu.numpy()).astype(np.int16)
        reference = indices_to_labels(sample.target.numpy().astype(np.int64),
                                      config.label_scheme).astype(np.int16)
        name = f"{path.name.split('.')[0]}_head{number}"
        heads.append(ValidationHead(name, Volume(hu, sample.affine.copy(), description=name),
                                    reference))
    return heads


def pipeline_options(scheme: str, tta: bool = False, calibrate: bool = False
                     ) -> InferenceConfig:
    """The inference options model selection and test scoring use: ``subct segment``'s
    own steps (input clean-up, post-processing, back to the input grid), ``force`` (every
    head is scored), no MC dropout; flip TTA and the volume calibration switchable (a
    model in training has no calibration of its own)."""
    return InferenceConfig(tta=tta, force=True, scheme=scheme, mc_dropout_samples=0,
                           calibrate_volumes=calibrate)


def pipeline_dice(network: torch.nn.Module, metadata: CheckpointMetadata,
                  heads: list[ValidationHead], device: torch.device) -> float:
    """Mean Dice over the structures and heads when ``network`` segments each head as
    ``subct segment --fast --force`` would. The network is left in training mode."""
    was_training = network.training
    model = model_from_network(network, metadata, device, precision="fp32")
    options = pipeline_options(str(metadata.label_scheme))
    names = scheme_names(str(metadata.label_scheme))
    scores: list[float] = []
    try:
        for head in heads:
            result = segment(head.ct, model=model, config=options)
            metrics = label_map_metrics(np.asarray(result.labels.array), head.reference,
                                        head.ct.spacing, names, case=head.name)
            scores.append(float(metrics.mean_dice))
    finally:
        network.train(was_training)
    return float(np.mean(scores)) if scores else float("nan")
