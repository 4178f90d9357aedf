"""One MRI/CT pair to one training case: segment the MRI, fuse, register, resample.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from subct.dataset.config import DONE_MARKER, BuildConfig
from subct.dataset.quality import _pairwise_dice
from subct.dataset.sources import CaseSpec
from subct.image.resample import resample_to_geometry
from subct.image.volume import Geometry, Volume
from subct.io.readers import load_volume
from subct.io.writers import atomic_write_text, save_volume
from subct.labels.schemes import (
    CANONICAL_LABELS,
    CANONICAL_NAMES,
    labels_to_indices,
)
from subct.runner import CaseOutcome
from subct.transfer import external, segmenter
from subct.transfer.fusion import fuse
from subct.transfer.registration import RegistrationConfig, register


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
    """Canonical label maps of the MRI by every configured tool (precomputed files win)."""
    # lazy: the registry knows MeshNet, which loads torch; only cases that segment need it
    from subct.transfer import registry

    maps = []
    for tool in config.tools:
        precomputed = case.precomputed.get(tool)
        options = dict(config.segmenter_options.get(tool, {}))
        if precomputed is not None:
            if tool in external.EXTERNAL_TOOLS or tool == "quicknat":
                labels = registry.get_segmenter(tool, from_file=precomputed,
                                                  **options).segment(mri)
            else:  # a built-in's output saved earlier: already canonical FreeSurfer IDs
                labels = segmenter.canonical_on_grid(load_volume(precomputed), mri.geometry,
                                                      "aseg")
        else:
            labels = registry.get_segmenter(tool, **options).segment(mri)
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
        return CaseOutcome(case.case_id, "skipped", details=_read_marker(case_dir / DONE_MARKER))
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
    return CaseOutcome(case.case_id, "done", seconds=seconds, details=qc)


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
    # lazy: loads matplotlib, which the rest of this module does not need
    from subct.qc.figures import label_contour_figure

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
