"""Training CT segmentation networks (``subct train``).

- :mod:`subct.training.config`: the typed, validated YAML configuration.
- :mod:`subct.training.data`: real nnU-Net-raw datasets, synthetic images from label
  maps, their mixture, and foreground-oversampled patch sampling.
- :mod:`subct.training.loop`: the train/validate loop, checkpoints, logs, resume.
- :mod:`subct.training.distributed`: DistributedDataParallel under ``torchrun``.
"""

from __future__ import annotations

from subct.training.config import TrainingConfig, load_training_config

__all__ = ["TrainingConfig", "load_training_config"]
