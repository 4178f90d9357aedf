"""Training data: real nnU-Net-raw pairs, synthetic pairs from label maps, and their mix.

Every sample is a dict ``{"image": float32 [1, X, Y, Z] in [0, 1], "label": int64
[X, Y, Z] class indices}`` on the network grid (RAS, training spacing), produced by
the same preprocessing as inference (:mod:`subct.model.preprocessing`).

Determinism: the stream of an epoch depends only on (seed, epoch, rank, worker), so a
resumed run sees exactly the patches the uninterrupted run would have seen, and DDP
ranks see different patches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import IterableDataset, get_worker_info

from subct.errors import SubctInputError
from subct.io.readers import load_volume
from subct.io.writers import atomic_output, atomic_write_text
from subct.model.plan import require_same
from subct.model.preprocessing import preprocess_ct, to_network_grid
from subct.paths import cache_dir
from subct.synth import LabelBank, SynthConfig, SynthGenerator
from subct.training.config import TrainingConfig

Sample = dict[str, torch.Tensor]


#: The label banks' folder under :func:`subct.paths.cache_dir`.
LABEL_BANK_CACHE = "label_banks"

#: At most this many voxel positions per class are kept for foreground oversampling
#: (as nnU-Net does); enough to centre patches anywhere in a structure.
MAX_LOCATIONS_PER_CLASS = 10_000

#: Bump when the cached preprocessing changes meaning (invalidates old caches).
CACHE_VERSION = 1


@dataclass
class CasePair:
    """One preprocessed real case on the network grid.

    ``image`` (float32, [0, 1]) and ``label`` (uint8 class indices) may be read-only
    memory maps of the on-disk cache, so a dataset of hundreds of CTs does not have to
    fit in memory; ``class_locations`` holds up to :data:`MAX_LOCATIONS_PER_CLASS` flat
    voxel indices per present structure for foreground oversampling.
    """

    name: str
    image: NDArray[np.float32]
    label: NDArray[np.integer]
    spacing_mm: tuple[float, float, float]
    class_locations: dict[int, NDArray[np.int64]] = field(default_factory=dict)


def class_locations(label: NDArray[np.integer], seed: int = 0) -> dict[int, NDArray[np.int64]]:
    """Flat voxel indices of every foreground class (subsampled, seeded, sorted)."""
    rng = np.random.default_rng(seed)
    flat = np.asarray(label).ravel()
    counts = np.bincount(flat.astype(np.int64))
    locations: dict[int, NDArray[np.int64]] = {}
    for value in np.flatnonzero(counts[1:]) + 1:
        indices = np.flatnonzero(flat == value).astype(np.int64)
        if indices.size > MAX_LOCATIONS_PER_CLASS:
            indices = np.sort(rng.choice(indices, MAX_LOCATIONS_PER_CLASS, replace=False))
        locations[int(value)] = indices
    return locations


def _cache_key(config: TrainingConfig, image_path: Path, label_path: Path) -> str:
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
             for p in (image_path, label_path)]
    payload = json.dumps([CACHE_VERSION, config.preprocessing.model_dump(mode="json"),
                          config.num_classes, stats])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _save_npy_atomic(path: Path, array: NDArray[Any]) -> None:
    with atomic_output(path, suffix=".npy") as temporary:
        np.save(temporary, array)


def case_files(dataset_dir: Path, case: str, images: str = "imagesTr",
               labels: str = "labelsTr") -> tuple[Path, Path]:
    """The image (``<case>_0000``) and label-map files of one nnU-Net raw case."""
    return (_find_file(dataset_dir / images, f"{case}_0000"),
            _find_file(dataset_dir / labels, case))


def load_case(dataset_dir: Path, case: str, config: TrainingConfig,
              images: str = "imagesTr", labels: str = "labelsTr",
              cache_dir: Path | None = None) -> CasePair:
    """Read and preprocess one nnU-Net raw case (``<case>_0000`` image + label map).

    With ``cache_dir``, the preprocessed arrays are stored there as ``.npy`` files (keyed
    by the source files and the preprocessing settings) and returned as read-only memory
    maps; later runs (and ``--resume``) skip the preprocessing.
    """
    image_path, label_path = case_files(dataset_dir, case, images, labels)
    if cache_dir is not None:
        key = _cache_key(config, image_path, label_path)
        stem = cache_dir / f"{case}_{key}"
        files = [Path(f"{stem}_{part}.npy") for part in ("image", "label")]
        meta_file = Path(f"{stem}.json")
        if all(f.is_file() for f in files) and meta_file.is_file():
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            label_map = np.load(files[1], mmap_mode="r")
            return CasePair(case, np.load(files[0], mmap_mode="r"), label_map,
                            tuple(meta["spacing_mm"]),  # type: ignore[arg-type]
                            class_locations(np.asarray(label_map)))
    ct, image = preprocess_ct(load_volume(image_path, expect_ct=True), config.preprocessing)
    label_grid = to_network_grid(load_volume(label_path), config.preprocessing.spacing_mm,
                                 is_label=True)
    label = np.asarray(label_grid.array)
    if label.shape != image.shape:
        raise SubctInputError(label_path, f"label grid {label.shape} differs from image grid "
                                          f"{image.shape} after preprocessing")
    if label.min() < 0 or label.max() >= config.num_classes:
        raise SubctInputError(label_path, f"class index {int(label.max())} outside "
                                          f"0..{config.num_classes - 1} ({config.label_scheme})")
    label = label.astype(np.uint8)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _save_npy_atomic(files[0], image.astype(np.float32))
        _save_npy_atomic(files[1], label)
        atomic_write_text(meta_file, json.dumps({"spacing_mm": list(ct.spacing),
                                                 "image": str(image_path),
                                                 "label": str(label_path)}))
        return load_case(dataset_dir, case, config, images, labels, cache_dir)
    return CasePair(case, image, label, ct.spacing, class_locations(label))


def read_splits(dataset_dir: Path, splits_file: str | None = None) -> list[dict[str, list[str]]]:
    """The folds of an nnU-Net-style ``splits.json`` / ``splits_final.json``."""
    candidates = [dataset_dir / splits_file] if splits_file else [
        dataset_dir / "splits.json", dataset_dir / "splits_final.json"]
    for path in candidates:
        if path.is_file():
            try:
                folds = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise SubctInputError(path, f"not valid JSON ({error})") from error
            if isinstance(folds, dict):
                folds = [folds]
            if not isinstance(folds, list) or not all(
                    isinstance(f, dict) and "train" in f for f in folds):
                raise SubctInputError(path, "expected a list of {\"train\": [...], \"val\": [...]}")
            return folds
    raise SubctInputError(candidates[0], "splits file not found")


def _find_file(folder: Path, stem: str) -> Path:
    for suffix in (".nii.gz", ".nii", ".mha", ".nrrd", ".mgz"):
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise SubctInputError(folder / f"{stem}.nii.gz", "case file not found")


def load_real_cases(config: TrainingConfig) -> tuple[list[CasePair], list[CasePair], list[str]]:
    """Training and validation cases of the configured fold, plus test case names."""
    real = config.data.real
    if real is None:
        return [], [], []
    dataset_dir = config.resolve_path(real.dataset_dir)
    folds = read_splits(dataset_dir, real.splits_file)
    if real.fold >= len(folds):
        raise SubctInputError(dataset_dir, f"fold {real.fold} not in splits ({len(folds)} folds)")
    fold = folds[real.fold]
    cache = config.output_path / "preprocessed" if real.cache_preprocessed else None
    train = [load_case(dataset_dir, name, config, cache_dir=cache) for name in fold["train"]]
    val = [load_case(dataset_dir, name, config, cache_dir=cache)
           for name in fold.get("val", [])]
    return train, val, list(fold.get("test", []))


# ---------------------------------------------------------------------- patch sampling


def sample_patch(image: NDArray[np.float32], label: NDArray[np.integer],
                 patch_size: tuple[int, int, int], rng: np.random.Generator,
                 foreground_probability: float,
                 locations: dict[int, NDArray[np.int64]] | None = None
                 ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Crop one patch; with ``foreground_probability`` centre it on a structure voxel.

    Foreground oversampling picks a *class* uniformly among the structures present,
    then one of its voxels, so small structures (accumbens, pallidum) are centred as
    often as large ones (nnU-Net's class-balanced sampling). Volumes smaller than the
    patch are padded with 0 (image minimum after windowing) and background.
    ``locations`` (from :func:`class_locations`) avoids scanning the label map.
    """
    if locations is None:
        locations = class_locations(label)
    original_shape = label.shape
    pad = [(max(0, (p - s + 1) // 2), max(0, p - s - (p - s + 1) // 2))
           for s, p in zip(image.shape, patch_size, strict=True)]
    if any(before or after for before, after in pad):
        image = np.pad(image, pad, constant_values=0.0)
        label = np.pad(label, pad, constant_values=0)
    shape = np.asarray(image.shape)
    size = np.asarray(patch_size)
    present = sorted(locations)
    if present and rng.random() < foreground_probability:
        target = present[int(rng.integers(len(present)))]
        voxels = locations[target]
        centre = np.asarray(np.unravel_index(int(voxels[int(rng.integers(voxels.size))]),
                                             original_shape))
        centre = centre + np.asarray([before for before, _ in pad])
        start = np.clip(centre - size // 2, 0, shape - size)
    else:
        start = np.asarray([int(rng.integers(0, s - p + 1)) for s, p in zip(shape, size,
                                                                           strict=True)])
    region = tuple(slice(int(b), int(b + p)) for b, p in zip(start, size, strict=True))
    return (np.ascontiguousarray(image[region], dtype=np.float32),
            np.ascontiguousarray(label[region], dtype=np.int64))


def _as_sample(image: NDArray[np.float32], label: NDArray[np.int64], num_classes: int,
               labelled: torch.Tensor | None = None) -> Sample:
    """A training sample; ``labelled`` (C bool) marks the classes its map annotates
    (all, unless it came from a partially labelled map: see the marginal loss)."""
    if labelled is None:
        labelled = torch.ones(num_classes, dtype=torch.bool)
    return {"image": torch.from_numpy(image)[None], "label": torch.from_numpy(label),
            "labelled": labelled.cpu()}


# ---------------------------------------------------------------------- the epoch stream


def _seed(*parts: int) -> int:
    state = np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


def synth_config_for(config: TrainingConfig, extra: dict[str, Any] | None = None) -> Any:
    """The :class:`subct.synth.SynthConfig` of this training run.

    Output shape defaults to the patch size and the target scheme to the training
    scheme. The HU window of the synthetic images is ``preprocessing.hu_window``, the
    one home of that number (checkpoints record it and inference applies it): a
    different ``synth.ct.window`` is an error, not a second truth.
    """

    synthetic = config.data.synthetic
    values: dict[str, Any] = dict(synthetic.synth) if synthetic is not None else {}
    values.setdefault("output_shape", list(config.data.patch_size))
    values.setdefault("target_scheme", config.label_scheme)
    values.update(extra or {})
    window = [float(v) for v in config.preprocessing.hu_window]
    ct = dict(values.get("ct") or {})
    if "window" in ct:
        require_same("data.synthetic.synth.ct.window", ct["window"],
                     "preprocessing.hu_window", window)
    ct["window"] = window
    values["ct"] = ct
    return SynthConfig.from_dict(values)


class PatchStream(IterableDataset[Sample]):
    """One epoch of training patches: synthetic and/or real, mixed at a fixed ratio.

    For each of ``samples`` positions a seeded draw decides the source (synthetic with
    probability ``synthetic_fraction``); synthetic pairs come from
    :class:`subct.synth.SynthGenerator` (the engine behind ``SyntheticDataset``),
    real patches from :func:`sample_patch`. DataLoader workers take every k-th
    position, so workers never duplicate samples.
    """

    def __init__(self, config: TrainingConfig, real_cases: list[CasePair],
                 synthetic_bank: Any, samples: int, rank: int = 0) -> None:
        super().__init__()
        self.config = config
        self.real_cases = real_cases
        self.bank = synthetic_bank
        self.samples = samples
        self.rank = rank
        self.epoch = 0
        self.synth_config = synth_config_for(config) if synthetic_bank is not None else None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (call before iterating; the stream is a function of it)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples

    def _plan(self) -> NDArray[np.bool_]:
        rng = np.random.default_rng(_seed(self.config.seed, self.epoch, self.rank, 1))
        fraction = self.config.data.synthetic_fraction
        if self.bank is None:
            fraction = 0.0
        if not self.real_cases:
            fraction = 1.0
        return np.asarray(rng.random(self.samples) < fraction)

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        plan = self._plan()
        positions = range(worker, self.samples, workers)
        rng = np.random.default_rng(_seed(self.config.seed, self.epoch, self.rank, 2, worker))
        generator = None
        if self.bank is not None and plan.any():

            generator = SynthGenerator(self.bank, self.synth_config,
                                       seed=_seed(self.config.seed, self.epoch, self.rank, 3,
                                                  worker))
        patch = self.config.data.patch_size
        fg = self.config.data.foreground_oversampling
        classes = self.config.num_classes
        for position in positions:
            if plan[position]:
                assert generator is not None
                synthetic = generator.sample()
                image = synthetic.image[0].numpy().astype(np.float32)
                label = synthetic.target.numpy().astype(np.int64)
            else:
                case = self.real_cases[int(rng.integers(len(self.real_cases)))]
                image, label = sample_patch(case.image, case.label, patch, rng, fg,
                                            case.class_locations)
                yield _as_sample(image, label, classes)
                continue
            if image.shape != tuple(patch):
                image, label = sample_patch(image, label, patch, rng, fg)
            yield _as_sample(image, label, classes, synthetic.labelled)


def build_label_bank(config: TrainingConfig, entries: list[str]) -> Any:
    """A :class:`subct.synth.LabelBank` of the label maps ``entries`` (None when empty);
    subcortical-only maps are embedded in ``data.synthetic.background_label_map``. Kept in
    the disk cache (:mod:`subct.synth.bank_cache`): a run's later starts read it back in
    seconds instead of ~3 minutes for model v2's 142 maps."""
    if not entries:
        return None
    synthetic = config.data.synthetic
    heads: list[str] = []
    share = None
    if synthetic is not None:
        heads = synthetic.background_label_maps or (
            [synthetic.background_label_map] if synthetic.background_label_map else [])
        share = synthetic.subcortical_share
    background = config.resolve_label_maps(heads) if heads else None
    return LabelBank(config.resolve_label_maps(entries), background=background,
                     subcortical_share=share, cache=cache_dir() / LABEL_BANK_CACHE)


def build_validation_set(config: TrainingConfig, val_cases: list[CasePair]) -> list[Sample]:
    """Fixed validation patches (same every epoch): synthetic and real."""
    samples: list[Sample] = []
    synthetic = config.data.synthetic
    if synthetic is not None and synthetic.validation_label_maps:

        bank = build_label_bank(config, synthetic.validation_label_maps)
        generator = SynthGenerator(bank, synth_config_for(config),
                                   seed=_seed(config.seed, 999_983))
        rng = np.random.default_rng(_seed(config.seed, 999_979))
        for _ in range(config.data.validation_samples):
            pair = generator.sample()
            image = pair.image[0].numpy().astype(np.float32)
            label = pair.target.numpy().astype(np.int64)
            if image.shape != tuple(config.data.patch_size):
                image, label = sample_patch(image, label, config.data.patch_size, rng,
                                            config.data.foreground_oversampling)
            samples.append(_as_sample(image, label, config.num_classes, pair.labelled))
    real = config.data.real
    if real is not None:
        rng = np.random.default_rng(_seed(config.seed, 999_961))
        for case in val_cases:
            for _ in range(real.patches_per_validation_case):
                image, label = sample_patch(case.image, case.label, config.data.patch_size,
                                            rng, config.data.foreground_oversampling,
                                            case.class_locations)
                samples.append(_as_sample(image, label, config.num_classes))
    return samples


def training_label_counts_source(config: TrainingConfig, real_cases: list[CasePair],
                                 bank: Any) -> list[NDArray[np.integer]]:
    """Label maps (class indices) to compute class weights from.

    Real cases contribute their preprocessed labels; synthetic-only runs use the
    target labels of a few deterministic synthetic samples (the labels the network is
    actually trained on, after the synthetic crop).
    """
    maps: list[NDArray[np.integer]] = [np.asarray(case.label) for case in real_cases]
    if bank is not None:

        generator = SynthGenerator(bank, synth_config_for(config).without_randomness(),
                                   seed=_seed(config.seed, 7))
        for _ in range(max(4, min(16, len(bank)))):
            maps.append(generator.sample().target.numpy().astype(np.int64))
    return maps
