"""Build an nnU-Net v2 CT training set from paired MRI/CT scans (ensemble label transfer).

For every MRI/CT pair (paper sections 3.1–3.4): run the chosen MRI segmenters, fuse
their label maps (:mod:`subct.fusion`), register the MRI to the CT
(:mod:`subct.registration`; skipped for pre-registered pairs such as SynthRAD2023),
carry the fused labels onto the CT with nearest neighbour, bring CT and labels to the
paper's grid (1 mm isotropic, RAS, at most 256³: cropped/padded around the head), and
write them in nnU-Net v2's raw layout::

    DATASET/
      imagesTr/<case>_0000.nii.gz     CT in HU
      labelsTr/<case>.nii.gz          class indices 0..17 (nnU-Net needs consecutive ints)
      dataset.json                    channel + label names, FreeSurfer ID of each class
      splits.json                     train/val/test (70/15/15, seeded, site-aware)
      qc.csv                          per case: agreement, registration MI, volumes, flags
      cases/<case>/                   registration.json, qc.png, done.json (marker)
      failures.json                   cases that failed in the last run, with the error

Cases run in parallel on **dask.distributed** (a ``LocalCluster`` of single-threaded
worker processes by default, or an existing scheduler). The run is resumable: a
case's ``done.json`` is written last and atomically, and cases that have it are
skipped. A failing case is recorded and reported at the end; the others go on.

Sources: a SynthRAD2023-style folder (``<site>/<case>/mr.nii.gz``, ``ct.nii.gz``,
optional ``mask.nii.gz``; ``<case>/...`` without a site level also works) or a CSV
manifest with columns ``case, mri, ct`` and optional ``site``, ``mask``. Label maps that
were computed elsewhere can be supplied per case as ``seg_<tool>.nii.gz`` (or ``.mgz``)
in the case folder, or as a manifest column ``seg_<tool>``: the tool is then not run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from subct.errors import SubctConfigError, SubctInputError
from subct.io import Geometry, Volume, atomic_write_text, load_volume, save_volume
from subct.labels import (
    CANONICAL_LABELS,
    CANONICAL_NAMES,
    indices_to_labels,
    labels_to_indices,
)

DONE_MARKER = "done.json"
#: SynthRAD2023 case IDs: task (1 MRI→CT, 2 CBCT→CT), region (B brain, P pelvis),
#: centre (A, B, C) and a number, e.g. ``1BA001``.
SYNTHRAD_CASE_ID = re.compile(r"(?P<task>[12])(?P<region>[BP])(?P<centre>[A-E])\d{3}")
VOLUME_GLOBS = ("*.nii.gz", "*.nii", "*.mgz", "*.nrrd", "*.mha")


# ----------------------------------------------------------------------------- config
class BuildConfig(BaseModel):
    """Settings of :func:`build_dataset` (the CLI options of ``subct build-dataset``).

    Attributes:
        tools: segmenter registry names (:func:`subct.segmenters.get_segmenter`).
        fusion: ``consensus``, ``majority``, ``weighted`` or ``staple``.
        fusion_weights: per-segmenter weights for ``weighted``.
        segmenter_options: extra options per tool name, passed to ``get_segmenter``.
        transform: MRI → CT registration model when registration is needed.
        assume_aligned: treat every pair as pre-registered (SynthRAD2023): no
            registration, labels resampled by world coordinates. Pairs on the same grid
            are skipped automatically anyway.
        target_spacing_mm: isotropic voxel size of the written CT/labels (paper: 1 mm).
        max_shape: largest output grid in voxels (paper: 256³), cropped around the head.
        split_fractions: train/val/test fractions.
        split_seed: seed of the split.
        site_split: ``stratify`` (each site split 70/15/15, every split sees every site)
            or ``hold_out`` (whole sites go to one split, for site-generalisation tests).
        outlier_z: robust z-score (median/MAD) of a structure volume beyond which a case
            is flagged.
        min_agreement: mean segmenter agreement inside structures below which a case
            is flagged.
        min_pairwise_dice: mean Dice between pairs of segmenters below which a case is
            flagged (the better check with two segmenters, where majority voting keeps
            only voxels both agree on and the agreement is always 1).
        threads_per_case: CPU threads each case may use (ITK, torch).
        dataset_name: nnU-Net dataset name written into ``dataset.json``.
    """

    model_config = ConfigDict(extra="forbid")

    tools: tuple[str, ...] = Field(min_length=1)
    fusion: Literal["consensus", "majority", "weighted", "staple"] = "majority"
    fusion_weights: tuple[float, ...] | None = None
    segmenter_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    transform: Literal["rigid", "affine", "deformable"] = "affine"
    assume_aligned: bool = False
    target_spacing_mm: float = Field(1.0, gt=0)
    max_shape: tuple[int, int, int] = (256, 256, 256)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    site_split: Literal["stratify", "hold_out"] = "stratify"
    outlier_z: float = 3.0
    min_agreement: float = 0.6
    min_pairwise_dice: float = 0.5
    threads_per_case: int = Field(1, ge=1)
    dataset_name: str = "Dataset501_SubCTEnsemble"

    @field_validator("split_fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, ...]:
        if any(f < 0 for f in value) or not math.isclose(sum(value), 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {value}")
        return value


@dataclass(frozen=True)
class CaseSpec:
    """One MRI/CT pair of the source."""

    case_id: str
    mri: Path
    ct: Path
    site: str | None = None
    mask: Path | None = None
    precomputed: dict[str, Path] = field(default_factory=dict)


@dataclass
class CaseOutcome:
    """What happened to one case (returned by :func:`process_case`, never raises)."""

    case_id: str
    status: Literal["done", "skipped", "failed"]
    qc: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


@dataclass
class BuildReport:
    """Result of :func:`build_dataset`."""

    output: Path
    done: list[str]
    skipped: list[str]
    failed: dict[str, str]
    qc_rows: list[dict[str, Any]]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when no case failed."""
        return not self.failed


# ---------------------------------------------------------------------------- sources
def _case_id(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in text.strip())
    if not cleaned:
        raise SubctInputError(None, f"case name {text!r} is empty after cleaning")
    return cleaned


def _find_volume(folder: Path, stem: str) -> Path | None:
    for suffix in (".nii.gz", ".nii", ".mgz", ".nrrd", ".mha"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _precomputed_in(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pattern in VOLUME_GLOBS:
        for path in sorted(folder.glob(f"seg_{pattern}")):
            name = path.name[len("seg_"):]
            for suffix in (".nii.gz", ".nii", ".mgz", ".nrrd", ".mha"):
                if name.endswith(suffix):
                    found[name[: -len(suffix)]] = path
                    break
    return found


def discover_cases(source: str | Path) -> list[CaseSpec]:
    """List the MRI/CT pairs of a SynthRAD2023-style folder or a CSV manifest.

    Folder: every directory holding ``mr.*`` and ``ct.*`` is a case; its parent
    directory (when not the source itself) is the site, and case IDs are prefixed with
    it so they stay unique. Folders named like SynthRAD2023 cases (``1BA001``) keep
    their name and take the centre letter in the ID (``A``) as the site, so the
    original ``Task1/brain/1BA001`` layout is split by centre. Manifest: columns
    ``case, mri, ct`` (+ ``site``,
    ``mask``, ``seg_<tool>``), relative paths resolved against the CSV's folder.

    Raises:
        SubctInputError: missing source, no cases, missing columns or duplicate IDs.
    """
    source = Path(source)
    if not source.exists():
        raise SubctInputError(source, "no such file or folder")
    cases: list[CaseSpec] = []
    if source.is_file():
        cases = _cases_from_manifest(source)
    else:
        for mri in sorted(source.rglob("mr.*")):
            folder = mri.parent
            if _find_volume(folder, "mr") != mri:
                continue
            ct = _find_volume(folder, "ct")
            if ct is None:
                # Listed so that the run reports it instead of silently dropping it.
                ct = folder / "ct.nii.gz"
            synthrad = SYNTHRAD_CASE_ID.fullmatch(folder.name)
            if synthrad:  # SynthRAD2023 IDs carry their centre: 1BA001 → centre A
                site: str | None = synthrad.group("centre")
                name = folder.name
            else:
                site = folder.parent.name if folder.parent != source else None
                name = f"{site}_{folder.name}" if site else folder.name
            cases.append(CaseSpec(_case_id(name), mri, ct, site, _find_volume(folder, "mask"),
                                  _precomputed_in(folder)))
    if not cases:
        raise SubctInputError(source, "no cases found (expected <site>/<case>/mr.nii.gz + "
                              "ct.nii.gz folders, or a CSV manifest with case,mri,ct)")
    seen: set[str] = set()
    for case in cases:
        if case.case_id in seen:
            raise SubctInputError(source, f"case ID {case.case_id!r} appears twice")
        seen.add(case.case_id)
    return cases


def _cases_from_manifest(manifest: Path) -> list[CaseSpec]:
    with manifest.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
        missing = {"case", "mri", "ct"} - set(columns)
        if missing:
            raise SubctInputError(manifest, f"manifest lacks column(s) {', '.join(sorted(missing))}"
                                  " (needed: case, mri, ct; optional: site, mask, seg_<tool>)")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in
                reader]

    def resolve(text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else (manifest.parent / path)

    cases = []
    for row in rows:
        precomputed = {key[len("seg_"):]: resolve(value) for key, value in row.items()
                       if key.startswith("seg_") and value}
        cases.append(CaseSpec(
            _case_id(row["case"]), resolve(row["mri"]), resolve(row["ct"]),
            row.get("site") or None, resolve(row["mask"]) if row.get("mask") else None,
            precomputed,
        ))
    return cases


# ----------------------------------------------------------------------- per-case work
def head_centred_grid(ct: Volume, spacing_mm: float, max_shape: tuple[int, int, int],
                      air_threshold_hu: float = -500.0) -> Geometry:
    """RAS grid of ``spacing_mm`` voxels covering the CT, cropped to ``max_shape``.

    The grid spans the CT's field of view (world bounding box) but no more than
    ``max_shape`` voxels per axis; where it must be cropped it is centred on the
    head's bounding box (voxels above ``air_threshold_hu``), so the head is kept.
    """
    shape = np.array(ct.shape)
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, shape[0] - 0.5)
                        for j in (-0.5, shape[1] - 0.5) for k in (-0.5, shape[2] - 0.5)])
    world = (ct.affine @ corners.T).T[:, :3]
    low, high = world.min(axis=0), world.max(axis=0)
    inside = np.asarray(ct.array) > air_threshold_hu
    if inside.any():
        bounds = []
        for axis in range(3):
            present = np.flatnonzero(inside.any(axis=tuple(a for a in range(3) if a != axis)))
            bounds.append((present[0] - 0.5, present[-1] + 0.5))
        box = np.array([[i, j, k, 1.0] for i in bounds[0] for j in bounds[1] for k in bounds[2]])
        head_world = (ct.affine @ box.T).T[:, :3]
        head_low, head_high = head_world.min(axis=0), head_world.max(axis=0)
    else:
        head_low, head_high = low, high
    counts = np.minimum(np.ceil((high - low) / spacing_mm - 1e-3).astype(int),
                        np.asarray(max_shape))
    extent = counts * spacing_mm
    centre = np.where((high - low) > extent, (head_low + head_high) / 2, (low + high) / 2)
    start = centre - extent / 2
    start = np.clip(start, low, high - extent)
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = start + spacing_mm / 2
    return Geometry((int(counts[0]), int(counts[1]), int(counts[2])), affine)


def _segment(case: CaseSpec, mri: Volume, config: BuildConfig) -> list[tuple[str, Volume]]:
    from subct import segmenters

    maps = []
    for tool in config.tools:
        precomputed = case.precomputed.get(tool)
        options = dict(config.segmenter_options.get(tool, {}))
        if precomputed is not None:
            if tool in segmenters.EXTERNAL_TOOLS or tool == "quicknat":
                labels = segmenters.get_segmenter(tool, from_file=precomputed,
                                                  **options).segment(mri)
            else:  # a built-in's output saved earlier: already canonical FreeSurfer IDs
                labels = segmenters.canonical_on_grid(load_volume(precomputed), mri.geometry,
                                                      "aseg")
        else:
            labels = segmenters.get_segmenter(tool, **options).segment(mri)
        maps.append((tool, labels))
    return maps


def process_case(case: CaseSpec, output: str | Path, config: BuildConfig) -> CaseOutcome:
    """Turn one MRI/CT pair into an nnU-Net training case; never raises.

    Skips the case when its done marker exists. Errors are caught and returned as a
    ``failed`` outcome (with a traceback in ``cases/<case>/error.txt``) so that a batch
    goes on and reports every failure at the end.
    """
    started = time.perf_counter()
    output = Path(output)
    case_dir = output / "cases" / case.case_id
    if (case_dir / DONE_MARKER).is_file():
        return CaseOutcome(case.case_id, "skipped", _read_marker(case_dir / DONE_MARKER))
    try:
        qc = _build_case(case, output, case_dir, config)
    except Exception as error:  # one bad case must not stop the batch
        message = str(error) or type(error).__name__
        atomic_write_text(case_dir / "error.txt", traceback.format_exc())
        return CaseOutcome(case.case_id, "failed", error=f"{type(error).__name__}: {message}",
                           seconds=time.perf_counter() - started)
    error_file = case_dir / "error.txt"
    if error_file.exists():
        error_file.unlink()
    seconds = time.perf_counter() - started
    qc["seconds"] = round(seconds, 2)
    atomic_write_text(case_dir / DONE_MARKER, json.dumps(qc, indent=2) + "\n")
    return CaseOutcome(case.case_id, "done", qc, seconds=seconds)


def _read_marker(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _limit_threads(threads: int) -> None:
    """Cap ITK and torch threads of this worker (torch is not imported just for this)."""
    import sys

    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # read by torch at import
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _build_case(case: CaseSpec, output: Path, case_dir: Path,
                config: BuildConfig) -> dict[str, Any]:
    from subct.fusion import fuse
    from subct.qc_figures import label_contour_figure
    from subct.registration import RegistrationConfig, register
    from subct.resample import resample_to_geometry

    _limit_threads(config.threads_per_case)
    ct = load_volume(case.ct, expect_ct=True)  # first: a bad CT fails before the slow steps
    mri = load_volume(case.mri)
    maps = _segment(case, mri, config)
    fused = fuse([np.asarray(labels.array) for _, labels in maps], config.fusion,
                 list(config.fusion_weights) if config.fusion_weights else None)
    fused_mri = mri.with_array(fused.labels.astype(np.int16), "fused MRI labels")
    registration = register(ct, mri, config.transform,
                            RegistrationConfig(threads=config.threads_per_case),
                            assume_aligned=config.assume_aligned)
    labels_ct = registration.resample_labels(fused_mri)
    grid = head_centred_grid(ct, config.target_spacing_mm, config.max_shape)
    ct_out = resample_to_geometry(ct, grid, "linear", fill_value=-1024.0)
    labels_out = resample_to_geometry(labels_ct, grid, "nearest", fill_value=0)
    label_values = np.asarray(labels_out.array).astype(np.int16)
    if case.mask is not None:
        mask = resample_to_geometry(load_volume(case.mask), grid, "nearest", fill_value=0)
        label_values = np.where(np.asarray(mask.array) > 0, label_values, 0).astype(np.int16)
    indices = labels_to_indices(label_values, "canonical").astype(np.uint8)

    case_dir.mkdir(parents=True, exist_ok=True)
    save_volume(Volume(np.asarray(ct_out.array, dtype=np.float32), grid.affine.copy()),
                output / "imagesTr" / f"{case.case_id}_0000.nii.gz")
    save_volume(Volume(indices, grid.affine.copy()), output / "labelsTr" / f"{case.case_id}.nii.gz")
    atomic_write_text(case_dir / "registration.json",
                      json.dumps(registration.summary(), indent=2) + "\n")
    if registration.kind != "identity":
        registration.save(case_dir / ("mri_to_ct.h5" if registration.kind == "deformable"
                                      else "mri_to_ct.tfm"))
    label_contour_figure(
        Volume(np.asarray(ct_out.array, dtype=np.float32), grid.affine.copy()),
        Volume(label_values, grid.affine.copy()), case_dir / "qc.png",
        title=f"{case.case_id}: fused {config.fusion} of {', '.join(config.tools)}; "
              f"MI {registration.metric_before:.3f} → {registration.metric_after:.3f}")
    voxel_mm3 = float(config.target_spacing_mm ** 3)
    counts = np.bincount(indices.ravel(), minlength=len(CANONICAL_LABELS) + 1)
    volumes = {CANONICAL_NAMES[label]: round(float(counts[i + 1]) * voxel_mm3, 1)
               for i, label in enumerate(CANONICAL_LABELS)}
    pairwise = _pairwise_dice([np.asarray(labels.array) for _, labels in maps])
    return {
        "case": case.case_id,
        "site": case.site or "",
        "segmenters": list(config.tools),
        "mean_agreement": round(fused.mean_agreement_in_structures, 4),
        "mean_pairwise_dice": None if pairwise is None else round(pairwise, 4),
        "registration": registration.kind,
        "registration_skipped": registration.skipped,
        "mi_before": round(registration.metric_before, 4),
        "mi_after": round(registration.metric_after, 4),
        "output_shape": list(grid.shape),
        "volumes_mm3": volumes,
    }


def _pairwise_dice(maps: Sequence[NDArray[Any]]) -> float | None:
    """Mean over segmenter pairs and present structures of the Dice between two maps.

    One joint histogram (confusion matrix) per pair over the voxels labelled by any
    map, so the cost is a few passes over the labelled voxels, not one per structure.
    """
    if len(maps) < 2:
        return None
    classes = len(CANONICAL_LABELS) + 1
    indices = [labels_to_indices(np.asarray(m), "canonical").ravel() for m in maps]
    labelled = np.zeros(indices[0].shape, dtype=bool)
    for values in indices:
        labelled |= values > 0
    indices = [values[labelled] for values in indices]
    scores: list[float] = []
    for first in range(len(indices)):
        for second in range(first + 1, len(indices)):
            joint = np.bincount(indices[first] * classes + indices[second],
                                minlength=classes * classes).reshape(classes, classes)
            overlap = np.diag(joint)[1:]
            totals = joint.sum(axis=1)[1:] + joint.sum(axis=0)[1:]
            present = totals > 0
            scores.extend((2.0 * overlap[present] / totals[present]).tolist())
    return float(np.mean(scores)) if scores else 0.0


# ---------------------------------------------------------------- dataset-level files
def nnunet_dataset_json(config: BuildConfig, num_training: int) -> dict[str, Any]:
    """nnU-Net v2 ``dataset.json``: CT channel, consecutive labels 0..17, FreeSurfer IDs."""
    labels = {"background": 0}
    freesurfer = {"0": 0}
    for index, label in enumerate(CANONICAL_LABELS, start=1):
        labels[CANONICAL_NAMES[label]] = index
        freesurfer[str(index)] = label
    assert list(indices_to_labels(np.arange(1, len(CANONICAL_LABELS) + 1))) == list(
        CANONICAL_LABELS)
    return {
        "name": config.dataset_name,
        "description": "CT subcortical labels transferred from fused MRI segmentations "
                       f"({config.fusion} of {', '.join(config.tools)})",
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": num_training,
        "file_ending": ".nii.gz",
        "freesurfer_ids_by_class": freesurfer,
        "spacing_mm": [config.target_spacing_mm] * 3,
        "tools": list(config.tools),
        "fusion": config.fusion,
    }


def make_splits(case_sites: dict[str, str], fractions: Sequence[float] = (0.7, 0.15, 0.15),
                seed: int = 0, site_mode: str = "stratify") -> dict[str, list[str]]:
    """Seeded train/val/test split of case IDs.

    With sites: ``stratify`` splits each site by ``fractions`` (so every split holds
    every site); ``hold_out`` keeps each site whole inside one split, assigning sites
    (largest first) to the split furthest below its target size. Without sites both
    are a plain seeded shuffle. Counts are rounded so the train split gets the
    remainder.
    """
    names = ("train", "val", "test")
    splits: dict[str, list[str]] = {name: [] for name in names}
    rng = random.Random(seed)
    groups: dict[str, list[str]] = {}
    for case_id in sorted(case_sites):
        groups.setdefault(case_sites[case_id] or "", []).append(case_id)
    if site_mode == "hold_out" and len(groups) > 1:
        order = sorted(groups, key=lambda s: (-len(groups[s]), s))
        rng.shuffle(order)
        order.sort(key=lambda s: -len(groups[s]))
        total = len(case_sites)
        for site in order:
            deficits = [fractions[i] * total - len(splits[n]) for i, n in enumerate(names)]
            splits[names[int(np.argmax(deficits))]].extend(groups[site])
    elif site_mode in ("stratify", "hold_out"):
        # Shuffle each site, then order all cases by their relative rank inside their
        # site: any prefix of this order holds every site in proportion (stratified).
        ranked: list[tuple[float, float, str]] = []
        for site in sorted(groups):
            members = list(groups[site])
            rng.shuffle(members)
            ranked.extend(((rank + 0.5) / len(members), rng.random(), case_id)
                          for rank, case_id in enumerate(members))
        order = [case_id for _, _, case_id in sorted(ranked)]
        n_val = int(round(fractions[1] * len(order)))
        n_test = min(int(round(fractions[2] * len(order))), len(order) - n_val)
        splits["val"] = order[:n_val]
        splits["test"] = order[n_val:n_val + n_test]
        splits["train"] = order[n_val + n_test:]
    else:
        raise SubctConfigError(f"unknown site split mode {site_mode!r}")
    return {name: sorted(cases) for name, cases in splits.items()}


def flag_outliers(rows: list[dict[str, Any]], z_threshold: float = 3.0,
                  min_agreement: float = 0.6, min_pairwise_dice: float = 0.5
                  ) -> list[dict[str, Any]]:
    """Add ``flags`` to each QC row: volume outliers (robust z), low agreement or
    pairwise Dice between segmenters, low registration MI, empty labels.

    Robust z-score per structure: 0.6745·(v − median)/MAD over all cases (needs ≥ 3
    cases; structures with MAD 0 use 1.4826·MAD ≈ 0 → only exact outliers are skipped).
    """
    structure_names = [CANONICAL_NAMES[label] for label in CANONICAL_LABELS]
    for row in rows:
        row["flags"] = []
    if len(rows) >= 3:
        for name in structure_names:
            values = np.array([float(r["volumes_mm3"].get(name, 0.0)) for r in rows])
            median = float(np.median(values))
            mad = float(np.median(np.abs(values - median)))
            if mad == 0:
                continue
            for row, value in zip(rows, values, strict=True):
                z = 0.6745 * (value - median) / mad
                if abs(z) > z_threshold:
                    row["flags"].append(f"volume:{name}:z={z:.1f}")
        mi_after = np.array([float(r.get("mi_after", 0.0)) for r in rows])
        median = float(np.median(mi_after))
        mad = float(np.median(np.abs(mi_after - median)))
        for row, value in zip(rows, mi_after, strict=True):
            if mad > 0 and 0.6745 * (value - median) / mad < -z_threshold:
                row["flags"].append("registration:low_mi")
    for row in rows:
        agreement = row.get("mean_agreement")
        if agreement is not None and float(agreement) < min_agreement:
            row["flags"].append(f"agreement:{float(agreement):.2f}")
        pairwise = row.get("mean_pairwise_dice")
        if pairwise is not None and float(pairwise) < min_pairwise_dice:
            row["flags"].append(f"pairwise_dice:{float(pairwise):.2f}")
        if not any(v > 0 for v in row["volumes_mm3"].values()):
            row["flags"].append("labels:empty")
    return rows


def write_qc_table(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write the per-case QC table as CSV (one column per structure volume, mm³)."""
    structure_names = [CANONICAL_NAMES[label] for label in CANONICAL_LABELS]
    header = ["case", "site", "mean_agreement", "mean_pairwise_dice", "registration",
              "registration_skipped", "mi_before", "mi_after", "seconds", "outlier",
              "flags", *[f"{name}_mm3" for name in structure_names]]
    lines = [",".join(header)]
    for row in sorted(rows, key=lambda r: r["case"]):
        values = [row["case"], row.get("site", ""), row.get("mean_agreement"),
                  row.get("mean_pairwise_dice"), row.get("registration"),
                  row.get("registration_skipped"), row.get("mi_before"), row.get("mi_after"),
                  row.get("seconds"), bool(row["flags"]), ";".join(row["flags"]),
                  *[row["volumes_mm3"].get(name, 0.0) for name in structure_names]]
        lines.append(",".join("" if v is None else str(v) for v in values))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def finalise_dataset(output: Path, config: BuildConfig, cases: Sequence[CaseSpec]
                     ) -> list[dict[str, Any]]:
    """Write dataset.json, splits.json and qc.csv from every finished case."""
    rows = []
    sites = {}
    for case in cases:
        marker = output / "cases" / case.case_id / DONE_MARKER
        if marker.is_file():
            row = _read_marker(marker)
            if row:
                rows.append(row)
                sites[case.case_id] = case.site or ""
    rows = flag_outliers(rows, config.outlier_z, config.min_agreement,
                         config.min_pairwise_dice)
    atomic_write_text(output / "dataset.json",
                      json.dumps(nnunet_dataset_json(config, len(rows)), indent=2) + "\n")
    splits = make_splits(sites, config.split_fractions, config.split_seed, config.site_split)
    atomic_write_text(output / "splits.json", json.dumps(
        splits | {"seed": config.split_seed, "fractions": list(config.split_fractions),
                  "site_split": config.site_split if any(sites.values()) else "none"},
        indent=2) + "\n")
    write_qc_table(rows, output / "qc.csv")
    return rows


# ------------------------------------------------------------------------- the driver
def build_dataset(
    source: str | Path,
    output: str | Path,
    config: BuildConfig,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    progress: bool = True,
    on_case: Callable[[CaseOutcome], None] | None = None,
) -> BuildReport:
    """Build the nnU-Net dataset from ``source`` into ``output`` on dask.distributed.

    Args:
        source: SynthRAD2023-style folder or CSV manifest (see module docstring).
        output: dataset folder (created; finished cases in it are skipped).
        config: what to run (:class:`BuildConfig`).
        workers: worker processes of the local cluster (1 thread each).
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``) to use
            instead of a local cluster; its workers need subct installed and access to
            ``source`` and ``output``.
        progress: show a rich progress bar.
        on_case: called in this process with each case's outcome as it finishes.

    Returns:
        Which cases were done, skipped (already finished) and failed (with errors).
    """
    from dask.distributed import Client, LocalCluster, as_completed

    started = time.perf_counter()
    output = Path(output)
    cases = discover_cases(source)
    output.mkdir(parents=True, exist_ok=True)
    for folder in ("imagesTr", "labelsTr", "cases"):
        (output / folder).mkdir(exist_ok=True)
    pending = [c for c in cases if not (output / "cases" / c.case_id / DONE_MARKER).is_file()]
    skipped = [c.case_id for c in cases if c not in pending]
    done: list[str] = []
    failed: dict[str, str] = {}
    if pending:
        cluster = None
        if scheduler:
            client = Client(scheduler)
        else:
            env = {f"{name}_NUM_THREADS": str(config.threads_per_case)
                   for name in ("OMP", "MKL", "OPENBLAS", "ITK_GLOBAL_DEFAULT")}
            os.environ.update({k: v for k, v in env.items() if k not in os.environ})
            cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1,
                                   processes=True, dashboard_address=None,
                                   silence_logs=40)
            client = Client(cluster)
        try:
            futures = [client.submit(process_case, case, str(output), config, pure=False,
                                     key=f"subct-case-{case.case_id}-{time.time_ns()}")
                       for case in pending]
            with _progress(progress, len(pending)) as advance:
                for future in as_completed(futures):
                    try:
                        outcome: CaseOutcome = future.result()
                    except Exception as error:  # worker died (memory, killed...)
                        case_id = pending[futures.index(future)].case_id
                        outcome = CaseOutcome(case_id, "failed",
                                              error=f"{type(error).__name__}: {error}")
                    if outcome.status == "failed":
                        failed[outcome.case_id] = outcome.error
                    elif outcome.status == "skipped":
                        skipped.append(outcome.case_id)
                    else:
                        done.append(outcome.case_id)
                    if on_case is not None:
                        on_case(outcome)
                    advance(outcome)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    rows = finalise_dataset(output, config, cases)
    atomic_write_text(output / "failures.json", json.dumps(failed, indent=2) + "\n")
    return BuildReport(output, sorted(done), sorted(skipped), dict(sorted(failed.items())), rows,
                       time.perf_counter() - started)


class _progress:
    """Context manager yielding ``advance(outcome)``; a rich bar when enabled."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[CaseOutcome], None]:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(TextColumn("build-dataset"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      TextColumn("{task.description}"))
            self._progress.start()
            self._task = self._progress.add_task("", total=self.total)
        return self._advance

    def _advance(self, outcome: CaseOutcome) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1,
                                  description=f"{outcome.case_id}: {outcome.status}")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def outcome_dict(outcome: CaseOutcome) -> dict[str, Any]:
    """A :class:`CaseOutcome` as a plain dict (for JSON logs)."""
    return asdict(outcome)
