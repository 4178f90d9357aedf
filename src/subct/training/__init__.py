"""Training CT segmentation networks (``subct train``).

- :mod:`subct.training.config`: the typed, validated YAML configuration.
- :mod:`subct.training.data`: real nnU-Net-raw datasets, synthetic images from label
  maps, their mixture, and foreground-oversampled patch sampling.
- :mod:`subct.training.loop`: the train/validate loop, checkpoints, logs, resume.
- :mod:`subct.training.distributed`: DistributedDataParallel under ``torchrun``.

The names below are imported on first use (PEP 562), so importing the package stays
cheap and free of import cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from subct.lazy import lazy_exports

if TYPE_CHECKING:
    from subct.training.config import TrainingConfig, load_training_config

_EXPORTS: dict[str, str] = {
    "TrainingConfig": "subct.training.config",
    "load_training_config": "subct.training.config",
}

__all__ = [
    "TrainingConfig",
    "load_training_config",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
