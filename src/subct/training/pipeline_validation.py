"""Full-pipeline validation during training (``pipeline_validation`` in the config).

The trainer's patch validation (loss and Dice on fixed 64³ patches) is cheap but does
not rank checkpoints the way users meet them: ``subct segment`` locates the brain in a
whole head, crops, runs sliding windows and post-processes. On issue 12's runs the
checkpoint with the best patch loss scored below checkpoints it had beaten once scored
that way. This module draws a few whole synthetic head CTs from the validation label
maps once (fixed seeds) and scores a network on them through
:func:`subct.inference.pipeline.segment` (no TTA, ``force``), so the loop can keep the
checkpoint with the best mean Dice. The heads come from the run's own generator
(``generator: training``) or from the fixed evaluation protocol of the benchmarks and
the ship rule (``generator: evaluation``, :mod:`subct.synth.evaluation`: clean and
clinical heads, each at 1 mm and as 5 mm slabs; with ``paper_maps``, also heads carrying
the ensemble paper's real validation shapes, scored on its 7 merged classes). Issue 23's
model v2 run showed why the second exists: its checkpoints gained +0.012 on heads of its
own generator and lost 0.010 on the rule's clean validation heads of the same maps
(docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from subct.errors import SubctConfigError
from subct.evaluation.metrics import label_map_metrics
from subct.image.volume import Volume
from subct.inference.config import InferenceConfig
from subct.inference.model import model_from_network
from subct.inference.pipeline import segment
from subct.io.readers import load_volume
from subct.labels.convert import convert_to_canonical
from subct.labels.schemes import indices_to_labels, scheme_names, to_scheme
from subct.model.checkpoint import CheckpointMetadata
from subct.paths import paper_split_maps
from subct.synth.evaluation import axial_slabs, embedded_paper_head, evaluation_synth_config
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
    scheme: str | None = None  # the reference's scheme when not the run's (paper7)
    #: what the head tests, for the per-group figures: the evaluation condition
    #: (``clean``, ``clinical``), ``paper`` (the ensemble paper's shapes) or ``training``
    group: str = "training"


def build_validation_heads(config: TrainingConfig) -> list[ValidationHead]:
    """``pipeline_validation.heads`` synthetic CTs from the validation label maps, drawn
    in turn from each map with fixed seeds (the same heads every epoch and on resume).
    Empty when pipeline validation is off or there are no synthetic validation maps."""
    settings = config.pipeline_validation
    synthetic = config.data.synthetic
    if settings.every_epochs == 0 or synthetic is None or not synthetic.validation_label_maps:
        return []
    paths = config.resolve_label_maps(synthetic.validation_label_maps)
    chosen = [paths[n % len(paths)] for n in range(settings.heads)]
    if settings.generator == "evaluation":
        return (evaluation_heads(config, chosen, seed=20_011)
                + paper_heads(config, paths, seed=30_011))
    return synthetic_heads(config, chosen, seed=20_011, shape=settings.shape)


def protocol_key(config: TrainingConfig) -> str:
    """What the full-pipeline figure measures (generator, heads, grid, conditions, slabs):
    a resumed run compares it with its saved one, since figures of two protocols do not
    compare. Runs saved before the key existed used the training generator."""
    settings = config.pipeline_validation
    pitch = config.preprocessing.reference_pitch_deg  # crops turned to it: other figures
    suffix = (" tta" if settings.tta else "") + ("" if pitch is None else f" pitch={pitch:g}")
    if settings.generator == "training":
        return LEGACY_PROTOCOL + suffix
    paper = f" paper_maps={settings.paper_maps}" if settings.paper_maps else ""
    return (f"evaluation heads={settings.heads} shape={list(settings.shape)} "
            f"conditions={settings.conditions} slab_mm={settings.slab_mm}{paper}{suffix}")


#: The protocol of every run saved before :func:`protocol_key` existed.
LEGACY_PROTOCOL = "training"


def evaluation_heads(config: TrainingConfig, paths: list[Path], seed: int
                     ) -> list[ValidationHead]:
    """Heads of the evaluation protocol (:mod:`subct.synth.evaluation`): one whole head
    per label map and condition (seeds ``seed``, ``seed + 1``, ...; the clinical heads
    ``seed + 500``, ...), each also as ``slab_mm`` axial slabs (LPS), references in the
    run's label scheme."""
    settings = config.pipeline_validation
    heads: list[ValidationHead] = []
    for offset, condition in enumerate(settings.conditions):
        synth_config = evaluation_synth_config(settings.shape, condition)
        for number, path in enumerate(paths):
            sample = SynthGenerator([path], synth_config, seed=seed + 500 * offset + number
                                    ).sample(0)
            if sample.hu is None:
                raise RuntimeError("the synthetic generator gave no HU image in CT mode")
            name = f"{path.name.split('.')[0]}_{condition}{number}"
            ct = Volume(np.round(sample.hu.numpy()).astype(np.int16), sample.affine.copy(),
                        description=name)
            canonical = convert_to_canonical(sample.labels_fs.numpy(), "freesurfer")
            reference = to_scheme(canonical, config.label_scheme).astype(np.int16)
            heads.append(ValidationHead(name, ct, reference, group=condition))
            if settings.slab_mm:
                thick_ct, thick_reference = axial_slabs(
                    ct, Volume(reference, ct.affine.copy()), settings.slab_mm)
                heads.append(ValidationHead(f"{name}_{settings.slab_mm}mm", thick_ct,
                                            np.asarray(thick_reference.array, np.int16),
                                            group=condition))
    return heads


def paper_heads(config: TrainingConfig, head_maps: list[Path], seed: int
                ) -> list[ValidationHead]:
    """``pipeline_validation.paper_maps`` heads of the ensemble paper's validation maps
    (evenly spaced through its 27), each embedded in a validation whole-head map in turn
    and drawn clean at 1 mm (:func:`subct.synth.evaluation.embedded_paper_head`, seeds
    ``seed``, ``seed + 1``, ...); references on the paper's 7 merged classes."""
    count = config.pipeline_validation.paper_maps
    if count == 0:
        return []
    if config.label_scheme != "canonical":
        raise SubctConfigError("pipeline_validation.paper_maps scores merged classes from "
                               f"canonical labels; this run's scheme is {config.label_scheme}")
    maps = paper_split_maps("val")
    chosen = [maps[n * len(maps) // count] for n in range(count)]
    whole_heads = [load_volume(path) for path in head_maps]  # read once, used in turn
    heads: list[ValidationHead] = []
    for number, path in enumerate(chosen):
        whole_head = whole_heads[number % len(whole_heads)]
        ct, reference = embedded_paper_head(load_volume(path), whole_head,
                                            config.pipeline_validation.shape, seed + number)
        name = f"paper_{path.name.split('.')[0]}"
        heads.append(ValidationHead(name, ct, reference, scheme="paper7", group="paper"))
    return heads


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


def head_dice(predicted: NDArray[np.integer], head: ValidationHead, scheme: str) -> float:
    """Mean Dice over the structures of one head's segmentation ``predicted`` (labels of
    ``scheme``, on the head's grid); merged to the reference's classes first when the
    head's reference has a scheme of its own (the paper heads: 7 merged classes)."""
    if head.scheme is not None:
        predicted = to_scheme(predicted, head.scheme)
    names = scheme_names(head.scheme or scheme)
    return float(label_map_metrics(predicted, head.reference, head.ct.spacing, names,
                                   case=head.name).mean_dice)


#: the key of the mean over every head in :func:`pipeline_scores`
ALL_HEADS = "all"


def pipeline_scores(network: torch.nn.Module, metadata: CheckpointMetadata,
                    heads: list[ValidationHead], device: torch.device, tta: bool = False
                    ) -> dict[str, float]:
    """Mean Dice over the structures and heads when ``network`` segments each head as
    ``subct segment --fast --force`` would (``tta``: as ``subct segment --force``, with
    flip test-time augmentation): ``all`` (:data:`ALL_HEADS`, every head) and the mean of
    each group of heads (``clean``, ``clinical``, ``paper``). The groups are what issue
    23's ship rule weighs separately (clean and clinical each at least as good), which
    the overall mean hides. The network is left in training mode."""
    was_training = network.training
    model = model_from_network(network, metadata, device, precision="fp32")
    options = pipeline_options(str(metadata.label_scheme), tta=tta)
    by_group: dict[str, list[float]] = {}
    try:
        for head in heads:
            result = segment(head.ct, model=model, config=options)
            by_group.setdefault(head.group, []).append(
                head_dice(np.asarray(result.labels.array), head, str(metadata.label_scheme)))
    finally:
        network.train(was_training)
    every = [score for scores in by_group.values() for score in scores]
    return {ALL_HEADS: float(np.mean(every)) if every else float("nan"),
            **{group: float(np.mean(scores)) for group, scores in by_group.items()}}


def pipeline_dice(network: torch.nn.Module, metadata: CheckpointMetadata,
                  heads: list[ValidationHead], device: torch.device, tta: bool = False
                  ) -> float:
    """The mean over every head of :func:`pipeline_scores` (what selects checkpoints)."""
    return pipeline_scores(network, metadata, heads, device, tta)[ALL_HEADS]
