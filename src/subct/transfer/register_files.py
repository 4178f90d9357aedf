"""Registration of files: the ``subct register`` command's API.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from subct.errors import SubctInputError
from subct.image.sitk_bridge import (
    sitk_to_array,
    volume_to_sitk,
)
from subct.io.readers import load_volume
from subct.io.writers import atomic_write_text, save_volume
from subct.transfer.registration import (
    RegistrationConfig,
    RegistrationResult,
    TransformKind,
    register,
)


@dataclass(frozen=True)
class RegisterFilesOutputs:
    """Files written by :func:`register_files` (all inside the output folder)."""

    transform: Path
    moved_image: Path
    summary_json: Path
    qc_png: Path
    moved_labels: Path | None
    result: RegistrationResult


def register_files(
    fixed_path: str | Path,
    moving_path: str | Path,
    output_dir: str | Path,
    *,
    labels_path: str | Path | None = None,
    transform: TransformKind = "affine",
    assume_aligned: bool = False,
    config: RegistrationConfig | None = None,
) -> RegisterFilesOutputs:
    """Register an MRI (moving) to a CT (fixed) on disk; the API behind ``subct register``.

    Writes into ``output_dir``: ``transform.tfm`` (``.h5`` for deformable; ITK, LPS,
    CT point → MRI point), ``moved_image.nii.gz`` (the MRI on the CT grid, linear),
    ``labels.nii.gz`` (the MRI-space labels on the CT grid, nearest neighbour; only
    with ``labels_path``), ``qc.png`` (CT with label contours, or with the moved MRI's
    tissue boundaries when there are no labels) and ``registration.json`` (Mattes MI
    before/after, stages, time). Inputs are never overwritten.
    """
    import json

    # lazy: loads matplotlib, which the rest of this module does not need
    from subct.qc.figures import label_contour_figure

    output = Path(output_dir)
    fixed = load_volume(fixed_path)
    moving = load_volume(moving_path)
    labels = load_volume(labels_path) if labels_path is not None else None
    if labels is not None and labels.shape != moving.shape:
        raise SubctInputError(labels_path, f"label map shape {labels.shape} differs from the "
                              f"moving image {moving.shape}; labels must be on the MRI grid")
    result = register(fixed, moving, transform, config, assume_aligned=assume_aligned)
    output.mkdir(parents=True, exist_ok=True)
    transform_path = result.save(output / ("transform.h5" if result.kind == "deformable"
                                           else "transform.tfm"))
    moved = result.resample_image(moving, order=1)
    moved_path = save_volume(moved, output / "moved_image.nii.gz")
    moved_labels_path: Path | None = None
    if labels is not None:
        moved_labels = result.resample_labels(labels)
        moved_labels_path = save_volume(moved_labels, output / "labels.nii.gz")
        overlay = moved_labels
    else:
        tissue = sitk.OtsuMultipleThresholds(volume_to_sitk(moved), numberOfThresholds=2)
        overlay = moved.with_array(sitk_to_array(tissue).astype(np.int16))
    title = (f"{Path(moving_path).name} → {Path(fixed_path).name} ({result.kind}); "
             f"Mattes MI {result.metric_before:.3f} → {result.metric_after:.3f}")
    qc_path = label_contour_figure(fixed, overlay, output / "qc.png", title=title)
    summary = result.summary() | {
        "fixed": str(fixed_path), "moving": str(moving_path),
        "labels": None if labels_path is None else str(labels_path),
        "outputs": {"transform": transform_path.name, "moved_image": moved_path.name,
                    "labels": None if moved_labels_path is None else moved_labels_path.name,
                    "qc": qc_path.name},
    }
    summary_path = atomic_write_text(output / "registration.json",
                                     json.dumps(summary, indent=2) + "\n")
    return RegisterFilesOutputs(transform_path, moved_path, summary_path, qc_path,
                                moved_labels_path, result)
