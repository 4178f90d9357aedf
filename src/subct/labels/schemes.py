"""Label schemes of subct and conversions from other segmentation tools.

The **canonical** scheme has 17 structures identified by their FreeSurfer label IDs
(so label maps open with FreeSurfer's colour table in any viewer)::

    4/43 lateral ventricle   10/49 thalamus     11/50 caudate     12/51 putamen
    13/52 pallidum           17/53 hippocampus  18/54 amygdala    26/58 accumbens area
    16 brainstem

Two reduced schemes exist: ``merged`` (left and right joined, 9 structures, keyed by
the left ID, brainstem 16) and ``paper7`` (the 7 classes 1..7 of the published CT
subcortical dataset: ventricles, thalamus, caudate, putamen, pallidum, hippocampus,
brainstem; amygdala and accumbens are background there).

Every converter maps *into* the canonical scheme; everything that is not one of the
17 targets becomes background (0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctConfigError


@dataclass(frozen=True)
class Structure:
    """One target structure: FreeSurfer ID, FreeSurfer name, short name and side."""

    label: int
    name: str
    short: str
    side: Literal["left", "right", "midline"]


STRUCTURES: tuple[Structure, ...] = (
    Structure(4, "Left-Lateral-Ventricle", "L-LatVent", "left"),
    Structure(43, "Right-Lateral-Ventricle", "R-LatVent", "right"),
    Structure(10, "Left-Thalamus", "L-Thal", "left"),
    Structure(49, "Right-Thalamus", "R-Thal", "right"),
    Structure(11, "Left-Caudate", "L-Caud", "left"),
    Structure(50, "Right-Caudate", "R-Caud", "right"),
    Structure(12, "Left-Putamen", "L-Put", "left"),
    Structure(51, "Right-Putamen", "R-Put", "right"),
    Structure(13, "Left-Pallidum", "L-Pall", "left"),
    Structure(52, "Right-Pallidum", "R-Pall", "right"),
    Structure(17, "Left-Hippocampus", "L-Hipp", "left"),
    Structure(53, "Right-Hippocampus", "R-Hipp", "right"),
    Structure(18, "Left-Amygdala", "L-Amyg", "left"),
    Structure(54, "Right-Amygdala", "R-Amyg", "right"),
    Structure(26, "Left-Accumbens-area", "L-Acc", "left"),
    Structure(58, "Right-Accumbens-area", "R-Acc", "right"),
    Structure(16, "Brain-Stem", "Brainstem", "midline"),
)


#: The 17 canonical FreeSurfer IDs in a fixed order (network channel i+1 ↔ CANONICAL_LABELS[i]).
CANONICAL_LABELS: tuple[int, ...] = tuple(s.label for s in STRUCTURES)


CANONICAL_NAMES: dict[int, str] = {s.label: s.name for s in STRUCTURES}


#: Left ID ↔ right ID for every lateralised structure (both directions); 16 maps to itself.
LEFT_RIGHT_PAIRS: tuple[tuple[int, int], ...] = (
    (4, 43), (10, 49), (11, 50), (12, 51), (13, 52), (17, 53), (18, 54), (26, 58),
)


LR_SWAP: dict[int, int] = {0: 0, 16: 16}
for _left, _right in LEFT_RIGHT_PAIRS:
    LR_SWAP[_left] = _right
    LR_SWAP[_right] = _left


#: Merged scheme: each right ID becomes its left ID (9 structures).
MERGED_LABELS: tuple[int, ...] = (4, 10, 11, 12, 13, 17, 18, 26, 16)


MERGED_NAMES: dict[int, str] = {
    4: "Lateral-Ventricle", 10: "Thalamus", 11: "Caudate", 12: "Putamen", 13: "Pallidum",
    17: "Hippocampus", 18: "Amygdala", 26: "Accumbens-area", 16: "Brain-Stem",
}


#: The 7-class scheme of the published CT subcortical dataset (values 1..7).
PAPER7_NAMES: dict[int, str] = {
    1: "Lateral-Ventricles", 2: "Thalamus", 3: "Caudate", 4: "Putamen", 5: "Pallidum",
    6: "Hippocampus", 7: "Brain-Stem",
}


_CANONICAL_TO_PAPER7: dict[int, int] = {
    4: 1, 43: 1, 10: 2, 49: 2, 11: 3, 50: 3, 12: 4, 51: 4, 13: 5, 52: 5, 17: 6, 53: 6, 16: 7,
}


Scheme = Literal["canonical", "merged", "paper7"]


@dataclass(frozen=True)
class LabelScheme:
    """A set of output labels: values, names, how canonical maps convert, and laterality.

    Every place that needs a scheme takes one of these (:func:`get_scheme` resolves a
    name once, with the one error message for an unknown name), so no code re-checks
    scheme names or branches on them.

    Attributes:
        name: ``canonical``, ``merged`` or ``paper7``.
        names: label value → structure name, in network channel order (channel i+1 ↔
            the i-th value; 0 is background).
        from_canonical: canonical FreeSurfer ID → this scheme's value (missing IDs → 0).
        lateralised: True when left and right structures have their own values.
    """

    name: str
    names: Mapping[int, str]
    from_canonical: Mapping[int, int]
    lateralised: bool

    @property
    def labels(self) -> tuple[int, ...]:
        """Label values in channel order (background excluded)."""
        return tuple(self.names)

    @property
    def num_classes(self) -> int:
        """Network output channels: the structures plus background."""
        return len(self.names) + 1

    def structure_names(self) -> list[str]:
        """Structure names in label order (for tables and CSV columns)."""
        return list(self.names.values())

    def convert_canonical(self, canonical: NDArray[np.integer]) -> NDArray[np.int16]:
        """A canonical (FreeSurfer-ID) label map in this scheme."""
        return remap(canonical, self.from_canonical)

    def to_indices(self, labels: NDArray[np.integer]) -> NDArray[np.int64]:
        """Label values → class indices 0..C (0 background); other values → 0."""
        mapping = {value: index + 1 for index, value in enumerate(self.labels)}
        return remap(labels, mapping).astype(np.int64)

    def from_indices(self, indices: NDArray[np.integer]) -> NDArray[np.int16]:
        """Class indices 0..C (network output) → label values."""
        values = np.asarray((0,) + self.labels, dtype=np.int16)
        return values[np.asarray(indices, dtype=np.int64)]

    def left_right_permutation(self) -> list[int]:
        """Channel order that exchanges left and right structures (0 stays 0); the
        identity for schemes without laterality."""
        values = (0,) + self.labels
        if not self.lateralised:
            return list(range(len(values)))
        position = {value: index for index, value in enumerate(values)}
        return [position[LR_SWAP[value]] for value in values]


def _merged_from_canonical() -> dict[int, int]:
    mapping = {label: label for label in CANONICAL_LABELS}
    for left, right in LEFT_RIGHT_PAIRS:
        mapping[right] = left
    return mapping


CANONICAL = LabelScheme("canonical", CANONICAL_NAMES,
                        {label: label for label in CANONICAL_LABELS}, lateralised=True)
MERGED = LabelScheme("merged", MERGED_NAMES, _merged_from_canonical(), lateralised=False)
PAPER7 = LabelScheme("paper7", PAPER7_NAMES, _CANONICAL_TO_PAPER7, lateralised=False)

#: The label schemes by name.
LABEL_SCHEMES: dict[str, LabelScheme] = {s.name: s for s in (CANONICAL, MERGED, PAPER7)}
SCHEMES: tuple[str, ...] = tuple(LABEL_SCHEMES)


def get_scheme(scheme: str | LabelScheme) -> LabelScheme:
    """The :class:`LabelScheme` called ``scheme`` (a scheme passes through unchanged).

    Raises:
        SubctConfigError: unknown name (the message lists the valid ones).
    """
    if isinstance(scheme, LabelScheme):
        return scheme
    found = LABEL_SCHEMES.get(scheme)
    if found is None:
        raise SubctConfigError(f"unknown label scheme {scheme!r}; choose one of "
                               f"{', '.join(SCHEMES)}")
    return found


def scheme_names(scheme: str | LabelScheme) -> dict[int, str]:
    """Label value → structure name for ``scheme`` (background excluded)."""
    return dict(get_scheme(scheme).names)


def remap(labels: NDArray[np.integer], mapping: Mapping[int, int]) -> NDArray[np.int16]:
    """Replace each value by ``mapping[value]``; values not in ``mapping`` become 0.

    Uses a lookup table, so it costs one pass over the array whatever the number of
    labels (about 0.1 s for 256³).
    """
    values = np.asarray(labels)
    if values.size == 0:
        return values.astype(np.int16)
    low = int(min(values.min(), 0))
    high = int(values.max())
    if mapping:
        high = max(high, max(mapping))
        low = min(low, min(mapping))
    table = np.zeros(high - low + 1, dtype=np.int16)
    for source, target in mapping.items():
        table[source - low] = target
    return table[values.astype(np.int64) - low]


def to_scheme(canonical: NDArray[np.integer], scheme: str | LabelScheme) -> NDArray[np.int16]:
    """Convert a canonical (FreeSurfer-ID) map into ``scheme``."""
    return get_scheme(scheme).convert_canonical(canonical)


def from_paper7(labels: NDArray[np.integer]) -> NDArray[np.int16]:
    """Convert a 7-class paper map (1..7) into the *merged* FreeSurfer-ID scheme."""
    inverse = {1: 4, 2: 10, 3: 11, 4: 12, 5: 13, 6: 17, 7: 16}
    return remap(labels, inverse)


def swap_left_right(labels: NDArray[np.integer]) -> NDArray[np.int16]:
    """Exchange left and right IDs (used after flipping an image for test-time augmentation).

    Note that this only relabels: mirroring the array is the caller's job. Values
    that are not canonical IDs become background (0).
    """
    return remap(labels, LR_SWAP)


def merge_left_right(labels: NDArray[np.integer]) -> NDArray[np.int16]:
    """Canonical map → merged map: each right ID becomes the matching left ID."""
    return MERGED.convert_canonical(labels)


def lateral_axis_sign(affine: NDArray[np.float64]) -> tuple[int, int]:
    """Which voxel axis runs left–right, and whether increasing index goes to the Right (+1)."""
    axis = int(np.argmax(np.abs(affine[0, :3])))
    return axis, 1 if affine[0, axis] > 0 else -1


def split_left_right(
    merged: NDArray[np.integer],
    affine: NDArray[np.float64],
    midline_x_mm: float | None = None,
) -> NDArray[np.int16]:
    """Split a merged (left-ID) map into left and right IDs at a sagittal midline.

    Voxels whose world x (RAS, mm) is below the midline are *left*, others *right*.
    The midline defaults to the x of the centroid of the labelled voxels, which for a
    whole brain lies on the interhemispheric plane; pass ``midline_x_mm`` when it is
    known better (e.g. from a mirrored registration). Brainstem (16) stays midline.
    """
    merged = np.asarray(merged)
    # world x of every voxel = affine[0,:3] @ (i,j,k) + affine[0,3]; computed separably
    shape = merged.shape
    x_world = affine[0, 3] + sum(
        affine[0, axis] * np.arange(shape[axis]).reshape(
            [-1 if a == axis else 1 for a in range(3)])
        for axis in range(3)
    )
    if midline_x_mm is None:
        labelled = merged > 0
        if not labelled.any():
            return merged.astype(np.int16)
        midline_x_mm = float(np.broadcast_to(x_world, shape)[labelled].mean())
    is_right = np.broadcast_to(x_world >= midline_x_mm, shape)
    left_version = remap(merged, {left: left for left, _ in LEFT_RIGHT_PAIRS} | {16: 16})
    right_version = remap(merged, {left: right for left, right in LEFT_RIGHT_PAIRS} | {16: 16})
    # One vectorised pass (boolean-mask assignment per pair took ~5 s on 256³).
    return np.where(is_right, right_version, left_version).astype(np.int16, copy=False)


def label_volumes_mm3(
    labels: NDArray[np.integer], voxel_volume_mm3: float, label_ids: Sequence[int] | None = None
) -> dict[int, float]:
    """Volume of each label in mm³ (voxel count × voxel volume)."""
    ids = CANONICAL_LABELS if label_ids is None else tuple(label_ids)
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64).clip(min=0),
                         minlength=max(ids) + 1)
    return {label: float(counts[label]) * voxel_volume_mm3 for label in ids}


def scheme_labels(scheme: str | LabelScheme) -> tuple[int, ...]:
    """Label values of ``scheme`` in channel order (channel i+1 ↔ value i; 0 is background)."""
    return get_scheme(scheme).labels


def labels_to_indices(labels: NDArray[np.integer],
                      scheme: str | LabelScheme = "canonical") -> NDArray[np.int64]:
    """Label values of ``scheme`` → class indices 0..C (0 background), as networks use.

    Values that are not part of the scheme become 0.
    """
    return get_scheme(scheme).to_indices(labels)


def indices_to_labels(indices: NDArray[np.integer],
                      scheme: str | LabelScheme = "canonical") -> NDArray[np.int16]:
    """Class indices 0..C (network output) → label values of ``scheme`` (FreeSurfer IDs)."""
    return get_scheme(scheme).from_indices(indices)


def scheme_structure_names(scheme: str | LabelScheme) -> list[str]:
    """Structure names of ``scheme`` in label order (for tables)."""
    return get_scheme(scheme).structure_names()


def lr_swap_permutation(scheme: str | LabelScheme) -> list[int]:
    """Channel order that swaps left and right structures of ``scheme`` (0 stays 0)."""
    return get_scheme(scheme).left_right_permutation()
