"""Fusing hard label maps from several segmenters into one (ensemble label generation).

This is section 3.1 of the ensemble label-transfer paper
(``shared/papers/ensemble-label-transfer-mri-to-ct.txt``): every segmenter gives a hard
label map on the same grid; per voxel the votes for each class (background included)
are counted and

* ``consensus``: the class everybody voted for, else background (paper eq. 4);
* ``majority``: the class with the most votes; a tie for the most votes gives background
  (the paper's rule, which includes background among the voting classes);
* ``weighted``: as majority, but a vote from segmenter *j* for label *c* counts
  ``w[j, c]`` (per-segmenter weights, or per-segmenter-per-structure weights such as
  their Dice on a labelled set); ties for the highest score give background;
* ``staple``: multi-label STAPLE (Warfield et al.; the model of SimpleITK's
  ``MultiLabelSTAPLEImageFilter``), which estimates each segmenter's confusion matrix by
  EM and takes the maximum a-posteriori label; undecided voxels give background. Our
  EM runs on distinct vote patterns instead of voxels (same result, far faster).

Besides the labels, every method returns an *agreement map*: per voxel the fraction of
segmenters whose label equals the fused label (1.0 = unanimous), useful for QC.

Memory and speed: votes are only counted where the segmenters disagree. Voxels on
which all maps agree (the vast majority: background, structure interiors) are decided
by one comparison pass, and the disagreeing voxels are gathered into a short 1-D array
where counts are ``uint8`` per label. No (M, labels, voxels) one-hot tensor is ever
built; fusing five 256³ ``int16`` maps needs a few hundred MB (see
``benchmarks/bench_fusion.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from subct.errors import SubctConfigError, SubctInputError
from subct.io.readers import load_volume
from subct.io.writers import save_volume
from subct.transfer.staple import BACKGROUND, _disagreement, _present_labels, _staple

FusionMethod = Literal["consensus", "majority", "weighted", "staple"]


FUSION_METHODS: tuple[str, ...] = get_args(FusionMethod)


#: Weights for ``weighted`` fusion: one float per segmenter, or one mapping per segmenter
#: from label value to weight (labels missing from a mapping, and background unless it
#: is given as key 0, get that segmenter's mean structure weight).
FusionWeights = Sequence[float] | Sequence[Mapping[int, float]]


@dataclass(frozen=True)
class FusionResult:
    """Fused label map and how strongly the segmenters agreed with it.

    Attributes:
        labels: fused label map, ``int16``, same shape as the inputs.
        agreement: per-voxel fraction (0..1, ``float32``) of input maps whose label
            equals the fused label.
        method: the fusion rule used.
    """

    labels: NDArray[np.int16]
    agreement: NDArray[np.float32]
    method: str

    @property
    def mean_agreement_in_structures(self) -> float:
        """Mean agreement over voxels with a non-background fused label (1.0 if none)."""
        inside = self.labels != BACKGROUND
        return float(self.agreement[inside].mean()) if inside.any() else 1.0


def fuse(
    maps: Sequence[NDArray[np.integer[Any]]],
    method: str = "majority",
    weights: FusionWeights | None = None,
    staple_max_iterations: int = 50,
) -> FusionResult:
    """Fuse ``M`` hard label maps of the same shape into one.

    Args:
        maps: integer label maps (any label values ≥ 0; 0 is background), same shape.
        method: ``consensus``, ``majority``, ``weighted`` or ``staple`` (module docstring).
        weights: only for ``weighted``: ``M`` floats, or ``M`` mappings label → weight.
            Weights must be ≥ 0.
        staple_max_iterations: EM iterations cap for ``staple``.

    Raises:
        SubctInputError: no maps, shapes differ, non-integer or negative labels.
        SubctConfigError: unknown method, or weights missing/invalid for ``weighted``.
    """
    if method not in FUSION_METHODS:
        raise SubctConfigError(
            f"unknown fusion method {method!r}; choose one of {', '.join(FUSION_METHODS)}"
        )
    stack = _validated_maps(maps)
    if method != "weighted" and weights is not None:
        raise SubctConfigError(f"weights are only used by method 'weighted', not {method!r}")
    if method == "weighted" and weights is None:
        raise SubctConfigError("method 'weighted' needs weights (one per segmenter)")
    differs = _disagreement(stack)  # computed once: every step below only looks there
    if method == "consensus":
        labels = stack[0].copy()
        labels[differs] = BACKGROUND
    elif method == "majority":
        labels = _weighted_vote(stack, None, differs)
    elif method == "weighted":
        assert weights is not None
        labels = _weighted_vote(stack, _weight_table(weights, stack), differs)
    else:
        labels = _staple(stack, staple_max_iterations)
    agreement = agreement_map(stack, labels, differs)
    return FusionResult(labels=labels, agreement=agreement, method=method)


def agreement_map(
    maps: Sequence[NDArray[np.integer[Any]]],
    fused: NDArray[np.integer[Any]],
    disagreement: NDArray[np.bool_] | None = None,
) -> NDArray[np.float32]:
    """Per voxel, the fraction of ``maps`` whose label equals ``fused`` (float32, 0..1).

    Only voxels where the maps disagree (``disagreement``, computed if not given), or
    where the fused label overrules a unanimous vote, are counted one by one;
    everywhere else the answer is 1.0.
    """
    first = np.asarray(maps[0])
    if disagreement is None:
        disagreement = np.zeros(first.shape, dtype=bool)
        for labels in maps[1:]:
            disagreement |= labels != first
    differs = disagreement | (fused != first)  # unanimous but overruled (zero weights)
    agreement = np.ones(first.shape, dtype=np.float32)
    if differs.any():
        target = np.asarray(fused)[differs]
        count = np.zeros(target.shape, dtype=np.uint8)
        for labels in maps:
            count += np.asarray(labels)[differs] == target
        fractions = np.arange(len(maps) + 1, dtype=np.float32) / np.float32(len(maps))
        agreement[differs] = fractions[count]
    return agreement


def leave_one_out_weights(
    maps: Sequence[NDArray[np.integer[Any]]], labels: Sequence[int]
) -> list[dict[int, float]]:
    """Per-segmenter-per-structure weights without ground truth, for ``weighted`` fusion.

    Weight of segmenter *j* for structure *c* = Dice of *j*'s structure *c* against the
    majority vote of the *other* segmenters (background weight 1.0). A segmenter that
    disagrees with the rest on a structure gets less say on it. Needs ≥ 3 maps (with 2,
    the "others" are one map and every segmenter gets the same Dice).
    """
    stack = _validated_maps(maps)
    if len(stack) < 3:
        raise SubctInputError(None, "leave-one-out weights need at least 3 label maps")
    weights: list[dict[int, float]] = []
    for held_out in range(len(stack)):
        others = _weighted_vote([m for j, m in enumerate(stack) if j != held_out], None)
        mine = stack[held_out]
        # Dice of every label from one joint histogram over the labelled voxels only.
        labelled = (mine != BACKGROUND) | (others != BACKGROUND)
        a, b = mine[labelled].astype(np.int64), others[labelled].astype(np.int64)
        size = int(max(a.max(initial=0), b.max(initial=0), max(labels, default=0))) + 1
        joint = np.bincount(a * size + b, minlength=size * size).reshape(size, size)
        per_label: dict[int, float] = {BACKGROUND: 1.0}
        for label in labels:
            total = int(joint[label, :].sum()) + int(joint[:, label].sum())
            per_label[int(label)] = 2.0 * float(joint[label, label]) / total if total else 0.0
        weights.append(per_label)
    return weights


def _validated_maps(maps: Sequence[NDArray[np.integer[Any]]]) -> list[NDArray[np.int16]]:
    if len(maps) == 0:
        raise SubctInputError(None, "no label maps to fuse")
    if len(maps) > 255:
        raise SubctInputError(None, f"at most 255 label maps can be fused, got {len(maps)}")
    shape = np.shape(maps[0])
    result: list[NDArray[np.int16]] = []
    for index, labels in enumerate(maps):
        array = np.asarray(labels)
        if array.shape != shape:
            raise SubctInputError(
                None, f"label map {index} has shape {array.shape}, map 0 has {shape}"
            )
        if not np.issubdtype(array.dtype, np.integer):
            if np.issubdtype(array.dtype, np.floating) and np.array_equal(
                array, np.round(array)
            ):
                array = array.astype(np.int64)
            else:
                raise SubctInputError(
                    None, f"label map {index} has non-integer values ({array.dtype})"
                )
        if array.size and (array.min() < 0 or array.max() > np.iinfo(np.int16).max):
            raise SubctInputError(
                None, f"label map {index} has labels outside 0..32767 "
                f"({array.min()}..{array.max()})"
            )
        result.append(array if array.dtype == np.int16 else array.astype(np.int16))
    return result


def _weight_table(
    weights: FusionWeights, stack: list[NDArray[np.int16]]
) -> dict[int, NDArray[np.float64]]:
    """label → weights of the M segmenters' votes for it (every label present)."""
    if len(weights) != len(stack):
        raise SubctConfigError(
            f"got {len(weights)} weights for {len(stack)} label maps; give one per map"
        )
    present = sorted({BACKGROUND} | {int(v) for labels in stack for v in _present_labels(labels)})
    table = {label: np.zeros(len(stack)) for label in present}
    for segmenter, weight in enumerate(weights):
        if isinstance(weight, Mapping):
            values = [float(w) for w in weight.values()]
            default = float(np.mean([w for k, w in weight.items() if k != BACKGROUND]
                                    or [1.0]))
            for label in present:
                table[label][segmenter] = float(weight.get(label, default))
        else:
            values = [float(weight)]  # type: ignore[arg-type]
            for label in present:
                table[label][segmenter] = values[0]
        if any(not np.isfinite(v) or v < 0 for v in values):
            raise SubctConfigError(f"weights of map {segmenter} must be finite and >= 0")
    return table


def _weighted_vote(
    stack: list[NDArray[np.int16]],
    table: dict[int, NDArray[np.float64]] | None,
    differs: NDArray[np.bool_] | None = None,
) -> NDArray[np.int16]:
    """Plurality vote (background counts as a class); ties → background.

    ``table`` None means one vote per segmenter (integer counts, exact ties).
    """
    fused = stack[0].copy()
    if differs is None:
        differs = _disagreement(stack)
    if table is not None:
        # Unanimous voxels whose label nobody may vote for (all weights 0) tie at 0 → bg.
        for label, label_weights in table.items():
            if label != BACKGROUND and label_weights.sum() <= 0:
                fused[(fused == label) & ~differs] = BACKGROUND
    if not differs.any():
        return fused
    votes = np.stack([labels[differs] for labels in stack])  # (M, n_disagreeing) int16
    n_voxels = votes.shape[1]
    # Scores are exact integers for plain votes; for weights, sums of a few floats are
    # compared with a tolerance so that e.g. 0.1 + 0.2 ties with 0.3.
    tolerance = 0.0 if table is None else 1e-9
    best_score = np.full(n_voxels, -1.0)
    best_label = np.zeros(n_voxels, dtype=np.int16)
    tied = np.zeros(n_voxels, dtype=bool)
    for label in np.unique(votes):
        is_vote = votes == label
        if table is None:
            score = is_vote.sum(axis=0, dtype=np.uint8).astype(np.float64)
        else:  # accumulate in place: no (M, voxels) float temporary
            score = np.zeros(n_voxels)
            for j, weight in enumerate(table[int(label)]):
                np.add(score, weight, out=score, where=is_vote[j])
        better = score > best_score + tolerance
        equal = np.abs(score - best_score) <= tolerance
        best_label[better] = label
        best_score[better] = score[better]
        tied = (tied & ~better) | equal
    best_label[tied] = BACKGROUND
    fused[differs] = best_label
    return fused


def read_weights(text_or_path: str) -> FusionWeights:
    """Weights from the command line: ``"1,1,2"`` or a JSON file.

    The JSON file holds a list with one entry per map: a number (per-segmenter weight)
    or an object ``{"label": weight}`` (per-structure weights; key ``"0"`` = background).
    """
    import json

    candidate = Path(text_or_path)
    if candidate.suffix.lower() == ".json" or candidate.is_file():
        try:
            raw = json.loads(candidate.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise SubctInputError(candidate, f"cannot read weights JSON ({error})") from error
        if not isinstance(raw, list):
            raise SubctInputError(candidate, "weights JSON must be a list, one entry per map")
        try:
            if all(isinstance(item, dict) for item in raw):
                return [{int(k): float(v) for k, v in item.items()} for item in raw]
            return [float(item) for item in raw]
        except (TypeError, ValueError) as error:
            raise SubctInputError(candidate, f"invalid weights ({error})") from error
    try:
        return [float(part) for part in text_or_path.split(",") if part.strip()]
    except ValueError as error:
        raise SubctConfigError(
            f"--weights must be comma-separated numbers or a JSON file, got {text_or_path!r}"
        ) from error


def fuse_files(
    map_paths: Sequence[str | Path],
    output_path: str | Path,
    method: str = "majority",
    weights: FusionWeights | None = None,
    agreement_path: str | Path | None = None,
) -> FusionResult:
    """Fuse label-map files on one grid; write the fused map (and agreement) atomically.

    Raises:
        SubctInputError: a map is unreadable or on a different grid (message names it),
            or an output path equals an input.
    """

    paths = [Path(p) for p in map_paths]
    outputs = [Path(output_path)] + ([Path(agreement_path)] if agreement_path else [])
    for output in outputs:
        if any(output.resolve() == path.resolve() for path in paths):
            raise SubctInputError(output, "refusing to overwrite an input file")
    volumes = [load_volume(path) for path in paths]
    if not volumes:
        raise SubctInputError(None, "no label maps to fuse")
    reference = volumes[0]
    for path, volume in zip(paths, volumes, strict=True):
        if not volume.geometry.same_grid(reference.geometry):
            raise SubctInputError(
                path, f"label map grid {volume.shape} differs from {paths[0].name}'s "
                f"{reference.shape} (resample onto one grid first)"
            )
    arrays = []
    for path, volume in zip(paths, volumes, strict=True):
        try:
            arrays.append(_validated_maps([volume.array])[0])
        except SubctInputError as error:
            raise SubctInputError(path, error.problem) from error
    result = fuse(arrays, method, weights)
    save_volume(reference.with_array(result.labels, f"fused ({method})"), output_path,
                dtype=np.int16)
    if agreement_path is not None:
        save_volume(reference.with_array(result.agreement, "segmenter agreement"),
                    agreement_path, dtype=np.float32)
    return result
