"""Loading training label maps once into small integer tensors.

Each map is reoriented to RAS (exact axis permutation, no resampling) so that the
first voxel axis runs left → right and an L/R flip is a flip of axis 0; cropped to
the bounding box of its non-zero labels; and re-coded into *compact indices*
0..K-1 shared by all maps (uint8 when K ≤ 256), which keeps 20 whole-head maps in
about 150 MB and lets every per-label lookup be one tensor gather.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from scipy import ndimage

from subct.errors import SubctInputError
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.labels.schemes import CANONICAL_LABELS
from subct.synth.background import embed_in_head, unlabelled_structures
from subct.synth.bank_cache import CachedMap, bank_key, load_bank, save_bank
from subct.synth.tissues import CANCELLOUS_LABEL, SKULL_LABEL

LabelMapSource = Path | str | Volume


@dataclass(frozen=True)
class StoredLabelMap:
    """One training map: compact indices on a RAS grid plus where to centre crops.

    Attributes:
        indices: compact label indices, shape (I, J, K), RAS voxel order.
        affine: voxel → world (RAS, mm) affine of ``indices``.
        target_centroid_mm: world centroid of the 17 target structures (mm).
        head_centroid_mm: world centroid of all labelled voxels (mm).
        name: file name or description, for messages.
        unlabelled: FreeSurfer IDs of target structures this map does not annotate
            (a subcortical-only map embedded in a head: the head's own copies of them
            are unknown, not truth); empty for whole-head maps.
    """

    indices: torch.Tensor
    affine: NDArray[np.float64]
    target_centroid_mm: NDArray[np.float64]
    head_centroid_mm: NDArray[np.float64]
    name: str
    unlabelled: tuple[int, ...] = ()


def _integer_labels(volume: Volume, name: str) -> NDArray[np.int32]:
    array = np.asarray(volume.array)
    if np.issubdtype(array.dtype, np.floating):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise SubctInputError(name, "label map has non-integer values; expected label IDs")
        array = rounded
    labels = array.astype(np.int32)
    if labels.min() < 0:
        raise SubctInputError(name, f"label map has negative label {int(labels.min())}")
    return labels


def split_skull(labels: NDArray[np.int32]) -> NDArray[np.int32]:
    """Relabel skull voxels more than 1 mm inside the bone as cancellous bone.

    Head label maps have one skull label; CT shows dense cortical tables around a
    less dense diploë. Skull voxels whose six face neighbours are all skull become
    :data:`~subct.synth.tissues.CANCELLOUS_LABEL`.
    """
    skull = labels == SKULL_LABEL
    if not skull.any():
        return labels
    inner = ndimage.binary_erosion(skull, iterations=1)
    result = labels.copy()
    result[inner] = CANCELLOUS_LABEL
    return result


def is_subcortical_only(labels: NDArray[np.integer]) -> bool:
    """True when a map holds only target structures (no surrounding brain/head labels)."""
    present = set(np.unique(labels).tolist()) - {0}
    return present <= set(CANONICAL_LABELS) or present <= set(range(1, 8))


def read_label_map(source: LabelMapSource) -> tuple[NDArray[np.int32], NDArray[np.float64], str]:
    """Load one map as (integer labels in RAS voxel order, RAS affine, name)."""
    volume = source if isinstance(source, Volume) else load_volume(source)
    name = str(volume.path) if volume.path is not None else (volume.description or "label map")
    volume = volume.reoriented("RAS")
    labels = _integer_labels(volume, name)
    return labels, np.asarray(volume.affine, dtype=np.float64), name


def _crop_with_border(
    labels: NDArray[np.int32], affine: NDArray[np.float64]
) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """Crop to the labelled bounding box plus a one-voxel background border.

    The border lets lookups clamp out-of-map coordinates and still read background.
    """
    ranges = [np.nonzero(labels.any(axis=tuple(a for a in range(3) if a != axis)))[0]
              for axis in range(3)]
    box = tuple(slice(int(r[0]), int(r[-1]) + 1) for r in ranges)
    cropped = np.pad(labels[box], 1)
    offset = np.array([r[0] - 1 for r in ranges], dtype=np.float64)
    cropped_affine = affine.copy()
    cropped_affine[:3, 3] = affine[:3, :3] @ offset + affine[:3, 3]
    return cropped, cropped_affine


def _world_centroid(mask: NDArray[np.bool_], affine: NDArray[np.float64]) -> NDArray[np.float64]:
    voxel = np.asarray(ndimage.center_of_mass(mask), dtype=np.float64)
    return np.asarray(affine[:3, :3] @ voxel + affine[:3, 3], dtype=np.float64)


class LabelBank:
    """All training maps, loaded once, sharing one compact label coding.

    Args:
        sources: label-map files or :class:`~subct.image.volume.Volume` objects (FreeSurfer IDs
            plus extra-cerebral 502–530, any orientation and voxel size).
        background: whole-head map(s) into which maps that hold only subcortical
            structures are embedded (see :func:`subct.synth.background.embed_in_head`);
            with several, the k-th subcortical map goes into background k mod n, so
            the embedded anatomy does not all share one head.
        subcortical_share: probability that :meth:`draw` picks one of the embedded
            subcortical maps (the rest: whole-head maps); ``None`` draws every map
            with equal probability.

    Raises:
        SubctInputError: a map is unreadable, non-integer, empty, or holds only
            subcortical structures while no background map is given.
    """

    def __init__(
        self, sources: Sequence[LabelMapSource],
        background: LabelMapSource | Sequence[LabelMapSource] | None = None,
        subcortical_share: float | None = None, cache: Path | None = None,
    ) -> None:
        if not sources:
            raise SubctInputError(None, "no label maps given")
        backgrounds = [] if background is None else (
            [background] if isinstance(background, (str, Path, Volume)) else list(background))
        key = bank_key(sources, backgrounds) if cache is not None else None
        stored = load_bank(cache / key) if cache is not None and key is not None else None
        if stored is None:
            label_values, maps = _build_maps(sources, backgrounds)
            if cache is not None and key is not None:
                save_bank(cache / key, label_values, maps)
        else:
            label_values, maps = stored
        #: FreeSurfer ID of each compact index (index 0 is background).
        self.label_values: NDArray[np.int32] = label_values
        dtype = torch.uint8 if len(label_values) <= 256 else torch.int16
        self.maps: list[StoredLabelMap] = [
            StoredLabelMap(indices=torch.from_numpy(np.ascontiguousarray(m.indices)).to(dtype),
                           affine=m.affine, target_centroid_mm=m.target_centroid_mm,
                           head_centroid_mm=m.head_centroid_mm, name=m.name,
                           unlabelled=m.unlabelled)
            for m in maps]
        self.map_probabilities = _map_probabilities(
            [bool(m.unlabelled) for m in self.maps], subcortical_share)

    def draw(self, rng: np.random.Generator) -> int:
        """Index of a map drawn with :attr:`map_probabilities` (uniform when None)."""
        if self.map_probabilities is None:
            return int(rng.integers(len(self.maps)))
        return int(rng.choice(len(self.maps), p=self.map_probabilities))

    def __len__(self) -> int:
        return len(self.maps)

    def index_of(self, label: int) -> int | None:
        """Compact index of a FreeSurfer ID, or ``None`` when no map contains it."""
        position = int(np.searchsorted(self.label_values, label))
        if position < len(self.label_values) and self.label_values[position] == label:
            return position
        return None


def _map_probabilities(partial: list[bool], share: float | None) -> NDArray[np.float64] | None:
    """Per-map draw probabilities giving the partially labelled maps ``share`` in all."""
    count = sum(partial)
    if share is None or count in (0, len(partial)):
        return None
    if not 0.0 <= share <= 1.0:
        raise SubctInputError(None, f"subcortical map share {share} outside 0..1")
    flags = np.asarray(partial)
    return np.where(flags, share / count, (1.0 - share) / (len(partial) - count))


def _build_maps(sources: Sequence[LabelMapSource], backgrounds: Sequence[LabelMapSource]
                ) -> tuple[NDArray[np.int32], list[CachedMap]]:
    """Read every map (embedding subcortical-only ones in the k-th head, k mod n), crop it
    to its labels and re-code it into compact indices shared by all maps; returns the
    label values and the maps as plain arrays (what :mod:`subct.synth.bank_cache` stores)."""
    background_maps = [read_label_map(b) for b in backgrounds]
    raw: list[tuple[NDArray[np.int16], NDArray[np.float64], str, tuple[int, ...]]] = []
    embedded = 0
    for source in sources:
        labels, affine, name = read_label_map(source)
        if not labels.any():
            raise SubctInputError(name, "label map is empty (all background)")
        unlabelled: tuple[int, ...] = ()
        if is_subcortical_only(labels):
            if not background_maps:
                raise SubctInputError(
                    name,
                    "label map holds only subcortical structures and no surrounding "
                    "tissue; give a whole-head background map (--background)",
                )
            unlabelled = unlabelled_structures(labels, affine)
            head = background_maps[embedded % len(background_maps)]
            labels, affine = embed_in_head(labels, affine, *head[:2])
            embedded += 1
        # cropped at once and kept as int16 (IDs < 32768): 142 whole 256³ int32 heads
        # held until every map is read would take 9.5 GB
        cropped, cropped_affine = _crop_with_border(labels, affine)
        cropped = split_skull(cropped)  # the same on the crop: its border is background
        raw.append((cropped.astype(np.int16), cropped_affine, name, unlabelled))
    label_values = np.union1d(
        np.unique(np.concatenate([np.unique(labels) for labels, *_ in raw])), [0])
    dtype = np.uint8 if len(label_values) <= 256 else np.int16
    maps = []
    for coded, cropped_affine, name, unlabelled in raw:
        targets = np.isin(coded, CANONICAL_LABELS)
        head_mask = coded > 0
        maps.append(CachedMap(
            indices=np.searchsorted(label_values, coded).astype(dtype),
            affine=cropped_affine,
            target_centroid_mm=_world_centroid(targets if targets.any() else head_mask,
                                               cropped_affine),
            head_centroid_mm=_world_centroid(head_mask, cropped_affine),
            name=name, unlabelled=unlabelled))
    return label_values.astype(np.int32), maps
