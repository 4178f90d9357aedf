"""A torch ``IterableDataset`` of synthetic pairs, with per-worker seeding.

Label maps are loaded once in the constructor (the main process); DataLoader worker
processes inherit them (fork: shared copy-on-write memory) and each builds its own
:class:`~subct.synth.SynthGenerator` seeded from (seed, epoch, worker id), so workers
never repeat each other's samples and a run is reproducible for a given seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from subct.synth.config import SynthConfig
from subct.synth.generator import SynthGenerator
from subct.synth.label_maps import LabelBank, LabelMapSource


class SyntheticDataset(IterableDataset[dict[str, torch.Tensor]]):
    """Yields ``{"image": (1, X, Y, Z) float32, "label": (X, Y, Z) int64}`` dicts.

    Args:
        label_maps: label-map files/volumes, or a :class:`LabelBank`.
        config: generative model (defaults to CT mode, 160³).
        seed: base seed; ``None`` uses torch's per-worker seed (different every run).
        samples_per_epoch: samples per pass, split across workers.
        background: whole-head map for subcortical-only maps.

    One pass over the dataset is an epoch. Each pass of the same dataset object yields
    new samples (a pass counter enters the seed; persistent workers keep theirs).
    Non-persistent DataLoader workers receive a fresh copy every epoch, so call
    :meth:`set_epoch` before each epoch, as with ``DistributedSampler``; the samples of
    a given (seed, epoch) are then the same in every run.
    """

    def __init__(
        self,
        label_maps: Sequence[LabelMapSource] | LabelBank,
        config: SynthConfig | None = None,
        seed: int | None = 0,
        samples_per_epoch: int = 100,
        background: LabelMapSource | None = None,
    ) -> None:
        super().__init__()
        if samples_per_epoch < 1:
            raise ValueError("samples_per_epoch must be at least 1")
        self.config = config if config is not None else SynthConfig()
        self.bank = label_maps if isinstance(label_maps, LabelBank) else LabelBank(
            label_maps, background=background)
        self.seed = seed
        self.samples_per_epoch = samples_per_epoch
        self.epoch = 0
        self._passes = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker_id, workers = (0, 1) if info is None else (info.id, info.num_workers)
        count = self.samples_per_epoch // workers + int(
            worker_id < self.samples_per_epoch % workers)
        base = torch.initial_seed() if self.seed is None else self.seed
        state = np.random.SeedSequence(
            [base % 2**63, self.epoch, self._passes, worker_id]).generate_state(2)
        self._passes += 1
        generator = SynthGenerator(self.bank, self.config,
                                   seed=int(state[0]) << 32 | int(state[1]))
        for _ in range(count):
            sample = generator.sample()
            yield {"image": sample.image, "label": sample.target}
