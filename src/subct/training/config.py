"""The training configuration: one typed, validated YAML file plus command-line overrides.

Every block forbids unknown keys, so a typo (``optimiser.lrr``) is an error instead of
a silently ignored setting. Overrides use dotted paths: ``--set optimiser.lr=3e-4``,
``--set data.patch_size=[64,64,64]`` (values are parsed as YAML).

Paths: ``{shared}`` in a path expands to :func:`subct.paths.shared_data_dir`; other
relative paths are resolved against the folder of the YAML file. Label-map entries may
be glob patterns (``{shared}/label_maps/synthseg/training_seg_0[1-9].nii.gz``).
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from subct.config import StrictConfig
from subct.errors import SubctConfigError, SubctInputError
from subct.labels.schemes import scheme_labels
from subct.model.preprocessing import GeometryConfig
from subct.paths import paper_masks_dir, shared_data_dir
from subct.synth.evaluation import CLINICAL_SLAB_MM, Condition

_Strict = StrictConfig


class RealDataConfig(_Strict):
    """Paired CT + labels in nnU-Net v2 raw layout (``imagesTr/<case>_0000.nii.gz``,
    ``labelsTr/<case>.nii.gz`` with class indices of the label scheme, ``dataset.json``)
    and a ``splits.json``/``splits_final.json`` list of ``{"train": [...], "val": [...]}``
    folds (an optional ``"test"`` list is used for the final evaluation)."""

    dataset_dir: str
    fold: int = Field(default=0, ge=0)
    splits_file: str | None = None
    patches_per_validation_case: int = Field(default=4, ge=1)
    cache_preprocessed: bool = Field(
        default=True, description="keep preprocessed cases as memory-mapped .npy files in "
                                  "<output_dir>/preprocessed (low memory, fast restarts)")


class SyntheticDataConfig(_Strict):
    """Synthetic CT generated on the fly from whole-head label maps (``subct.synth``)."""

    label_maps: list[str]
    #: Whole-head label map into which training maps that hold only subcortical
    #: structures (e.g. the paper's 7-class CT-space maps) are embedded
    #: (:func:`subct.synth.background.embed_in_head`); whole-head maps ignore it.
    background_label_map: str | None = None
    #: Several whole-head maps to embed subcortical-only maps into, in turn (the k-th
    #: subcortical map goes into head k mod n); overrides ``background_label_map``.
    background_label_maps: list[str] = Field(default_factory=list)
    #: Share of synthetic samples drawn from the embedded subcortical-only maps (which
    #: label some structures only: trained with the marginal loss); None draws every
    #: map with equal probability.
    subcortical_share: float | None = Field(default=None, ge=0, le=1)
    validation_label_maps: list[str] = Field(default_factory=list)
    test_label_maps: list[str] = Field(default_factory=list)
    test_image_shape: tuple[int, int, int] = Field(
        default=(192, 240, 240),
        description="grid of the synthetic test heads, voxels of 1 mm: a whole head, as users "
                    "give subct segment")
    synth: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Strict):
    """What the network sees: sources, mixing ratio, patch size and sampling."""

    real: RealDataConfig | None = None
    synthetic: SyntheticDataConfig | None = None
    synthetic_fraction: float = Field(
        default=1.0, ge=0, le=1, description="share of training patches that are synthetic")
    patch_size: tuple[int, int, int] = (96, 96, 96)
    inference_window: tuple[int, int, int] | None = Field(
        default=None,
        description="sliding-window size (voxels) that subct segment uses with the trained "
                    "network, recorded in its checkpoints; None: the training patch size. "
                    "Overlapping windows smaller than the box average each voxel's "
                    "prediction several times, which can beat fewer, larger windows")
    batch_size: int = Field(default=2, ge=1)
    samples_per_epoch: int = Field(default=200, ge=1)
    validation_samples: int = Field(default=16, ge=1, description="synthetic validation patches")
    foreground_oversampling: float = Field(default=0.5, ge=0, le=1,
        description="share of real patches centred on a voxel of a random present structure")
    num_workers: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _has_source(self) -> DataConfig:
        if self.real is None and self.synthetic is None:
            raise ValueError("data needs a 'real' or a 'synthetic' source (or both)")
        if self.synthetic is None and self.synthetic_fraction > 0 and self.real is not None:
            self.synthetic_fraction = 0.0
        if self.real is None and self.synthetic_fraction < 1:
            self.synthetic_fraction = 1.0
        return self

    @field_validator("patch_size", "inference_window")
    @classmethod
    def _positive(cls, value: tuple[int, int, int] | None, info: ValidationInfo
                  ) -> tuple[int, int, int] | None:
        if value is not None and min(value) < 8:
            raise ValueError(f"{info.field_name} {value} too small (each side ≥ 8 voxels)")
        return value


class NetworkConfig(_Strict):
    """Network registry name (:mod:`subct.model.networks`) and its architecture options."""

    name: str = "unet3d"
    kwargs: dict[str, Any] = Field(default_factory=dict)


class LossConfig(_Strict):
    """Loss by name; CE class weights computed from the training labels."""

    name: Literal["dice", "ce", "dice_ce", "weighted_ce"] = "dice_ce"
    class_weights: Literal["none", "balanced", "cube_root"] = "none"

    @model_validator(mode="after")
    def _weights_for_weighted_ce(self) -> LossConfig:
        if self.name == "weighted_ce" and self.class_weights == "none":
            raise ValueError("loss 'weighted_ce' needs class_weights: balanced or cube_root")
        return self


class OptimiserConfig(_Strict):
    """Adam (as in the paper) or AdamW, with gradient-norm clipping."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip_norm: float | None = Field(default=12.0, gt=0)


_BOTH_CONDITIONS: tuple[Condition, ...] = ("clean", "clinical")


class PipelineValidationConfig(_Strict):
    """Score the network as users run it: every ``every_epochs`` epochs, segment
    ``heads`` whole synthetic head CTs drawn from the validation label maps (with the
    training generator's settings, pathology included) through :func:`subct.segment`
    (brain location, crop, sliding windows, post-processing; no TTA) and keep the
    checkpoint with the best mean Dice as ``best_pipeline.safetensors``. The patch
    validation loss that picks ``best.safetensors`` ranked checkpoints differently from
    these figures (issue 12, sessions 3-6). 0 turns it off. The figure is the mean Dice
    over every head (and, with the evaluation generator, every condition and slice
    thickness); a resumed run whose protocol changed starts its best figure afresh."""

    every_epochs: int = Field(default=0, ge=0, description="0: off")
    heads: int = Field(default=2, ge=1, le=32,
                       description="synthetic validation heads (per condition with the "
                                   "evaluation generator)")
    shape: tuple[int, int, int] = Field(default=(192, 240, 240),
                                        description="head grid, voxels of 1 mm (RAS)")
    generator: Literal["training", "evaluation"] = Field(
        default="training",
        description="'training': heads drawn with the run's own generator settings "
                    "(randomised resolution, its pathology probabilities); 'evaluation': "
                    "the fixed protocol of the held-out benchmarks and issue 23's ship rule "
                    "(subct.synth.evaluation): default CT priors, each head drawn per "
                    "condition and scored at 1 mm and as slab_mm axial slabs")
    conditions: list[Condition] = Field(
        default_factory=lambda: list(_BOTH_CONDITIONS), min_length=1,
        description="evaluation generator: clean heads and/or the clinical pathology mix")
    tta: bool = Field(default=False,
                      description="segment with flip test-time augmentation, as `subct "
                                  "segment` does by default (twice the time)")
    slab_mm: int = Field(default=CLINICAL_SLAB_MM, ge=0, le=10,
                         description="evaluation generator: also score each head as axial "
                                     "slabs of this many mm (0: 1 mm only)")
    paper_maps: int = Field(
        default=0, ge=0, le=27,
        description="evaluation generator: also score this many of the ensemble paper's 27 "
                    "validation maps (real subcortical shapes, evenly spaced through the "
                    "split), each embedded in a validation head and drawn clean at 1 mm, on "
                    "the paper's 7 merged classes; each counts as one head in the mean")
    keep_checkpoints: bool = Field(
        default=False,
        description="also keep every scored network as pipeline_<epoch>.safetensors in the "
                    "output folder (to compare or average checkpoints other than the best)")

    @model_validator(mode="after")
    def _paper_maps_need_evaluation(self) -> PipelineValidationConfig:
        if self.paper_maps and self.generator != "evaluation":
            raise ValueError("pipeline_validation.paper_maps needs generator: evaluation")
        return self


class ScheduleConfig(_Strict):
    """Epochs, ReduceLROnPlateau and early stopping on the validation loss."""

    epochs: int = Field(default=100, ge=1)
    plateau_patience: int = Field(default=3, ge=0)
    plateau_factor: float = Field(default=0.5, gt=0, lt=1)
    min_lr: float = Field(default=1e-6, ge=0)
    early_stopping_patience: int | None = Field(default=5, ge=1)
    max_minutes: float | None = Field(
        default=None, gt=0,
        description="stop after the epoch that passes this wall-clock budget (minutes); "
                    "checkpoints and state are saved every epoch, so --resume continues")
    restart_lr: float | None = Field(
        default=None, gt=0,
        description="warm restart on --resume: set the learning rate to this value and clear "
                    "the plateau counter (for a run whose rate has decayed to min_lr); "
                    "ignored when not resuming")


class AveragingConfig(_Strict):
    """An exponential moving average (EMA) of the weights, kept beside the trained ones.

    After every optimiser step ``averaged = decay · averaged + (1 − decay) · weights``.
    The average of the weights a low learning rate visits sits nearer the centre of the
    basin than any single step's weights (Polyak averaging; SWA), which usually scores a
    little better and is less noisy between checkpoints. With ``ema_decay`` set the
    full-pipeline validation scores the averaged weights, ``best_pipeline.safetensors``
    holds the best average, and ``ema.safetensors`` (saved every epoch, restored on
    ``--resume``) carries the average across sessions. The patch validation loss and the
    learning-rate schedule still follow the trained weights. The horizon is about
    ``1 / (1 − decay)`` optimiser steps (0.998: ~500 steps).
    """

    ema_decay: float | None = Field(default=None, gt=0, lt=1,
                                    description="EMA decay per optimiser step; null: off")


class PrecisionConfig(_Strict):
    """Mixed precision and memory layout.

    ``autocast="auto"``: fp16 AMP with gradient scaling on CUDA (bf16 where supported),
    bf16 on CPU only when the CPU has native bf16 instructions (otherwise it is slower).
    ``channels_last="auto"``: channels_last_3d memory format on CPU (faster oneDNN
    convolutions, see ``docs/benchmarks.md``), default layout on GPU.
    """

    autocast: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"


class TransferConfig(_Strict):
    """Transfer learning (paper 4.3): start from a checkpoint, optionally freeze encoder."""

    init_checkpoint: str | None = None
    freeze_encoder: bool = False
    #: Train only the parameters that ``init_checkpoint`` does not hold: the new blocks of
    #: a grown network (``network.kwargs.refine_levels``), with the trained network fixed.
    freeze_pretrained: bool = False

    @model_validator(mode="after")
    def _needs_checkpoint(self) -> TransferConfig:
        for option in ("freeze_encoder", "freeze_pretrained"):
            if getattr(self, option) and self.init_checkpoint is None:
                raise ValueError(f"{option} needs init_checkpoint (a pre-trained network)")
        return self


class TrainingConfig(_Strict):
    """Everything ``subct train`` needs; stored verbatim in every checkpoint."""

    output_dir: str
    seed: int = 0
    label_scheme: Literal["canonical", "merged", "paper7"] = "canonical"
    preprocessing: GeometryConfig = Field(default_factory=GeometryConfig)
    data: DataConfig
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optimiser: OptimiserConfig = Field(default_factory=OptimiserConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    precision: PrecisionConfig = Field(default_factory=PrecisionConfig)
    averaging: AveragingConfig = Field(default_factory=AveragingConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    pipeline_validation: PipelineValidationConfig = Field(
        default_factory=PipelineValidationConfig)
    keep_epoch_checkpoints: bool = False
    evaluate_after_training: bool = True
    progress_bar: bool = True
    base_dir: str = Field(default=".", description="folder relative paths are resolved against")

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.preprocessing.merge_left_right and self.label_scheme == "canonical":
            raise ValueError("preprocessing.merge_left_right needs label_scheme 'merged'")
        if self.data.synthetic is not None and any(
                abs(float(s) - 1.0) > 1e-6 for s in self.preprocessing.spacing_mm):
            raise ValueError("synthetic images are drawn on the label maps' 1 mm grid: "
                             "preprocessing.spacing_mm must be [1, 1, 1] with data.synthetic")
        return self

    @property
    def num_classes(self) -> int:
        """Network output channels including background."""
        return len(scheme_labels(self.label_scheme)) + 1

    def resolve_path(self, value: str) -> Path:
        """Expand ``{shared}`` (:func:`subct.paths.shared_data_dir`) and ``{paper_masks}``
        (:func:`subct.paths.paper_masks_dir`); relative paths are relative to :attr:`base_dir`."""

        expanded = Path(value.replace("{shared}", str(shared_data_dir()))
                        .replace("{paper_masks}", str(paper_masks_dir()))).expanduser()
        return expanded if expanded.is_absolute() else (Path(self.base_dir) / expanded).resolve()

    def resolve_label_maps(self, entries: list[str]) -> list[Path]:
        """Paths (glob patterns expanded, sorted) of label-map entries; missing → error."""
        paths: list[Path] = []
        for entry in entries:
            resolved = self.resolve_path(entry)
            if any(char in str(resolved) for char in "*?["):
                matches = sorted(Path(p) for p in glob.glob(str(resolved)))
                if not matches:
                    raise SubctInputError(resolved, "pattern matches no label map")
                paths.extend(matches)
            else:
                if not resolved.exists():
                    raise SubctInputError(resolved, "label map not found")
                paths.append(resolved)
        return paths

    @property
    def output_path(self) -> Path:
        """The output folder (resolved)."""
        return self.resolve_path(self.output_dir)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optimiser.lr=3e-4"`` → (``["optimiser", "lr"]``, ``"3e-4"``); value parsed as YAML.

    PyYAML reads ``3e-4`` (no dot) as a string; the typed config converts it to a number.
    """
    if "=" not in text:
        raise SubctConfigError(f"override {text!r} must look like key.subkey=value")
    key, raw = text.split("=", 1)
    keys = [part for part in key.strip().split(".") if part]
    if not keys:
        raise SubctConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise SubctConfigError(f"override {text!r}: value is not valid YAML ({error})") from error
    return keys, value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted-path overrides in a nested dict (creating blocks as needed)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = values
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = {}
                node[key] = child
            if not isinstance(child, dict):
                raise SubctConfigError(f"override {text!r}: {key!r} is not a block")
            node = child
        node[keys[-1]] = value
    return values


def _format_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def training_config_from_dict(values: dict[str, Any], source: str | Path | None = None
                              ) -> TrainingConfig:
    """Validate a plain dict; errors name the offending keys (and the file)."""
    try:
        return TrainingConfig.model_validate(values)
    except ValidationError as error:
        message = f"invalid training config: {_format_validation_error(error)}"
        if source is not None:
            raise SubctInputError(source, message) from error
        raise SubctConfigError(message) from error


def load_training_config(path: str | Path, overrides: list[str] | None = None) -> TrainingConfig:
    """Read a YAML training config, apply ``key.sub=value`` overrides and validate.

    Relative paths inside the file are resolved against the file's folder unless the
    file sets ``base_dir`` itself.
    """
    path = Path(path)
    if not path.is_file():
        raise SubctInputError(path, "training config not found")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as error:
        raise SubctInputError(path, "not a text file: a training config is YAML text "
                                    "(e.g. configs/shipped_ct_unet.yaml)") from error
    except yaml.YAMLError as error:
        raise SubctInputError(path, f"not valid YAML ({error})") from error
    if not isinstance(values, dict):
        raise SubctInputError(path, "training config must be a YAML mapping")
    values.setdefault("base_dir", str(path.resolve().parent))
    values = apply_overrides(values, list(overrides or []))
    return training_config_from_dict(values, path)
