"""The per-case output formats of ``subct segment``, as a registry.

Each :class:`CaseWriter` declares its role (the key in ``<case>_qc.json``'s ``outputs``),
its file name (case name + suffix, in the output folder or a sub-folder), when a batch
writes it, whether a case is complete only with it, and the function that writes it
atomically. :data:`CASE_WRITERS` runs in order; the QC JSON is written after all of them
and marks the case complete. **A new output format** is one writer function here and one
entry in :data:`CASE_WRITERS` (plus its :class:`~subct.inference.outputs.BatchConfig`
switch and CLI flag); its temporary files are cleaned up and, when ``required``, its
size and SHA-256 are recorded and verified when a rerun reuses the case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.image.volume import Volume
from subct.io.writers import atomic_output, save_volume
from subct.labels.schemes import get_scheme
from subct.qc.overlay import OverlayConfig, save_overlay
from subct.qc.viewer import VIEWER_FOLDER, write_case_view

if TYPE_CHECKING:
    from subct.inference.outputs import BatchConfig, CaseInput
    from subct.inference.pipeline import SegmentationResult


@dataclass(frozen=True)
class CaseContext:
    """What a writer needs: the case, its input as segmented (HU + offset), the result,
    the batch options and the label map to write (``--roi-subset`` applied)."""

    case: CaseInput
    ct: Volume
    result: SegmentationResult
    config: BatchConfig
    labels: Volume


@dataclass(frozen=True)
class CaseWriter:
    """One per-case output (see the module docstring)."""

    role: str
    suffix: str
    wanted: Callable[[BatchConfig, CaseInput | None], bool]
    write: Callable[[CaseContext, Path], Path]
    required: bool = True
    subfolder: str = ""

    def path(self, folder: Path, case_name: str) -> Path:
        """Where this output of ``case_name`` goes."""
        return folder / self.subfolder / f"{case_name}{self.suffix}"

    def temporary_pattern(self) -> str:
        """Glob of the hidden temporary files a killed run leaves (``.<name>.<random>``)."""
        return str(Path(self.subfolder) / f".*{self.suffix}.*") if self.subfolder \
            else f".*{self.suffix}.*"


def _write_labels(context: CaseContext, path: Path) -> Path:
    return save_volume(context.labels, path)


def _write_masks(context: CaseContext, folder: Path) -> Path:
    """One uint8 mask per structure (``<structure>.nii.gz``) in ``folder``."""
    array = np.asarray(context.labels.array)
    roi_subset = context.config.roi_subset
    for value, name in get_scheme(context.result.scheme).names.items():
        path = folder / f"{name}.nii.gz"
        if roi_subset is None or name in roi_subset:
            save_volume(context.labels.with_array((array == value).astype(np.uint8)), path)
        else:
            path.unlink(missing_ok=True)  # left by an earlier run with another subset
    return folder


def _write_overlay(context: CaseContext, path: Path) -> Path:
    return save_overlay(context.ct, context.result.labels, path,
                        OverlayConfig(scheme=context.result.scheme, title=context.case.name),
                        hu_offset=context.result.qc.input.hu_offset)


def _write_view(context: CaseContext, path: Path) -> Path:
    return write_case_view(context.config.output_dir, context.case.name, context.ct,
                           context.result.labels, context.result.qc.input.hu_offset)


def posteriors_on_input_grid(result: SegmentationResult) -> NDArray[np.uint8]:
    """The crop-grid softmax carried onto the label map's (the input's) grid, channel by
    channel (trilinear; outside the crop: background 1, structures 0), as uint8 p × 255
    with the channel last (SynthSeg's ``--post`` convention)."""
    assert result.posteriors is not None
    probabilities = result.posteriors.probabilities
    native_to_crop = np.linalg.inv(result.posteriors.grid.affine) @ result.labels.affine
    shape = result.labels.shape
    out = np.empty((*shape, probabilities.shape[0]), dtype=np.uint8)
    for channel, values in enumerate(probabilities):
        sampled = ndimage.affine_transform(
            np.asarray(values, dtype=np.float32), native_to_crop[:3, :3],
            offset=native_to_crop[:3, 3], output_shape=shape, order=1, mode="constant",
            cval=1.0 if channel == 0 else 0.0, prefilter=False)
        out[..., channel] = np.clip(np.rint(sampled * 255.0), 0, 255).astype(np.uint8)
    return out


def _write_posteriors(context: CaseContext, path: Path) -> Path:
    import nibabel as nib  # lazy: only --posteriors writes a 4D NIfTI itself

    result = context.result
    assert result.posteriors is not None
    if context.config.posteriors_on_input_grid:
        image = nib.Nifti1Image(posteriors_on_input_grid(result), result.labels.affine)
    else:
        scaled = np.round(np.moveaxis(result.posteriors.probabilities, 0, -1) * 255.0)
        image = nib.Nifti1Image(scaled.astype(np.uint8), result.posteriors.grid.affine)
    image.header["descrip"] = b"subct posteriors x/255; channel 0 background"
    with atomic_output(path, suffix=".nii.gz") as temporary:
        nib.save(image, str(temporary))
    return path


def _write_dicom_seg(context: CaseContext, path: Path) -> Path:
    # lazy: pydicom/highdicom are optional and only DICOM inputs need them
    from subct.io.dicom_seg import write_dicom_seg

    return write_dicom_seg(context.result.labels, context.case.path, path,
                           context.result.scheme, context.config.series)


#: File-name suffix of the DICOM SEG (the SR references it).
DICOM_SEG_SUFFIX = "_seg.dcm"


def _write_dicom_sr(context: CaseContext, path: Path) -> Path:
    # lazy: highdicom is optional; the SEG was written just before (writer order)
    from subct.io.dicom_sr import write_volume_sr

    return write_volume_sr(path.parent / f"{context.case.name}{DICOM_SEG_SUFFIX}",
                           context.result.volumes_mm3, path)


def _is_dicom_case(config: BatchConfig, case: CaseInput | None) -> bool:
    return config.write_dicom_seg and case is not None and Path(case.path).is_dir()


#: Every per-case output, in writing order (the QC JSON follows them all).
CASE_WRITERS: tuple[CaseWriter, ...] = (
    CaseWriter("labels", "_labels.nii.gz", lambda config, case: True, _write_labels),
    CaseWriter("masks", "_masks", lambda config, case: config.write_masks, _write_masks,
               required=False),
    CaseWriter("overlay", "_overlay.png", lambda config, case: config.write_overlay,
               _write_overlay),
    CaseWriter("view", ".js", lambda config, case: config.write_overlay, _write_view,
               required=False, subfolder=VIEWER_FOLDER),
    CaseWriter("posteriors", "_posteriors.nii.gz", lambda config, case: config.write_posteriors,
               _write_posteriors),
    CaseWriter("dicom_seg", DICOM_SEG_SUFFIX, _is_dicom_case, _write_dicom_seg,
               required=False),
    CaseWriter("dicom_sr", "_sr.dcm", _is_dicom_case, _write_dicom_sr, required=False),
)


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Size (bytes) and SHA-256 of a written output, recorded to verify it on reuse."""
    return {"bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
