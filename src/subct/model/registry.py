"""Where subct's shipped segmentation models live, and how ``--model NAME|PATH`` resolves.

The shipped CT model is a single ``.safetensors`` checkpoint (see :mod:`subct.model.checkpoint`)
inside this package folder, so it installs with ``pip install subct`` and needs no
download. Other checkpoints (any file written by ``subct train``) are used by passing
their path.

Resolution of ``--model``:

- nothing: the default shipped model (:data:`DEFAULT_MODEL_NAME`);
- a registered name (:data:`MODEL_REGISTRY`, e.g. ``ct-subcortical``): that file in
  this folder;
- anything else: a path to a checkpoint file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from subct.errors import SubctInputError

MODELS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ShippedModel:
    """A model that ships with subct: registry name, file name in this folder, summary."""

    name: str
    filename: str
    summary: str
    #: Pose of its training data (see CheckpointMetadata.reference_pitch_deg) when the
    #: weights file predates that field.
    reference_pitch_deg: float | None = None
    #: Volume calibration of its weights when the weights file predates that field
    #: (see CheckpointMetadata.class_scales): structure name → probability factor.
    class_scales: tuple[tuple[str, float], ...] = ()

    @property
    def path(self) -> Path:
        """Absolute path of the weights file (may not exist until the weights are added)."""
        return MODELS_DIR / self.filename

    @property
    def installed(self) -> bool:
        """True when the weights file is present."""
        return self.path.is_file()


#: Models known by name. The weights are trained with ``subct train`` on synthetic CTs
#: (see the model card next to the weights).
MODEL_REGISTRY: dict[str, ShippedModel] = {
    "ct-subcortical": ShippedModel(
        name="ct-subcortical",
        filename="ct_subcortical.safetensors",
        summary="3D UNet, 17 subcortical structures (FreeSurfer IDs), trained on synthetic CT",
        # mean head pitch of its training label maps 01-16 in their own pose (SD 9.5°)
        reference_pitch_deg=24.7,
        # volume calibration: none. Re-tuned for model v2 (session 14, epoch 596; session
        # 16, epoch 688) on validation maps 17-18 (benchmarks/tune_class_scales.py, 20
        # clean heads at 1 and 5 mm), no structure is labelled too large or too small on
        # every map and resolution; for epoch 736 (session 17) the amygdala just passed
        # (+15 %, factor 0.223) but doubled to quadrupled its volume error on the held-out
        # maps 19-20 (map 18's labelling drives it): not shipped; for epoch 784 (session
        # 18) none passed again. The phase-4 weights had the accumbens (+28 / +34 %,
        # factor 0.37)
        class_scales=(),
    ),
}


DEFAULT_MODEL_NAME = "ct-subcortical"


def reference_pitch_deg(path: Path | None, metadata_value: float | None) -> float | None:
    """The training pose (pitch, degrees) of the model at ``path``: the checkpoint's own
    ``reference_pitch_deg``, else the registry's for a shipped weights file, else None."""
    if metadata_value is not None:
        return float(metadata_value)
    if path is None:
        return None
    for shipped in MODEL_REGISTRY.values():
        if shipped.installed and shipped.path.resolve() == Path(path).resolve():
            return shipped.reference_pitch_deg
    return None


def class_scales(path: Path | None, metadata_value: dict[str, float] | None
                 ) -> dict[str, float]:
    """The volume calibration of the model at ``path`` (structure name → factor on its
    softmax probability before the argmax): the checkpoint's own ``class_scales``, else
    the registry's for a shipped weights file, else none (an empty dict)."""
    if metadata_value:
        return {str(name): float(value) for name, value in metadata_value.items()}
    if path is None:
        return {}
    for shipped in MODEL_REGISTRY.values():
        if shipped.installed and shipped.path.resolve() == Path(path).resolve():
            return dict(shipped.class_scales)
    return {}


def default_model_path() -> Path:
    """Path where the default shipped model's weights live (whether present or not)."""
    return MODEL_REGISTRY[DEFAULT_MODEL_NAME].path


def available_models() -> list[str]:
    """Registry names whose weights are installed."""
    return [name for name, model in MODEL_REGISTRY.items() if model.installed]


def resolve_model_path(model: str | Path | None = None) -> Path:
    """Turn ``--model NAME|PATH`` (or nothing, for the default) into a checkpoint path.

    Raises:
        SubctInputError: no model installed (and none given), unknown name, or a path
            that does not exist. The message says how to pass ``--model``.
    """
    if model is None or str(model) == "":
        shipped = MODEL_REGISTRY[DEFAULT_MODEL_NAME]
        if not shipped.installed:
            raise SubctInputError(
                shipped.path,
                "no segmentation model is installed (the shipped weights file is "
                "missing: reinstall subct), or pass a checkpoint trained with "
                "`subct train` as --model PATH (Python: model=PATH)",
            )
        return shipped.path
    text = str(model)
    if text in MODEL_REGISTRY:
        shipped = MODEL_REGISTRY[text]
        if not shipped.installed:
            raise SubctInputError(
                shipped.path,
                f"model {text!r} is registered but its weights are not installed; "
                "pass a checkpoint file as --model PATH",
            )
        return shipped.path
    path = Path(text).expanduser()
    if not path.is_file():
        names = ", ".join(MODEL_REGISTRY)
        raise SubctInputError(
            path, f"no such model file; --model takes a checkpoint path or one of: {names}"
        )
    return path
