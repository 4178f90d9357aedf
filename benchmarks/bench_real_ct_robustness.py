"""Benchmark: how stable the labels of real head CTs are (no reference labels needed).

For every real head CT this machine has (:mod:`real_cts`: the tilted GE series in
``../shared/data/ct`` and Debian's InVesalius ``Cranium.inv3``), the default
``subct.segment`` run is compared, structure by structure (Dice), with runs on
perturbed copies of the same scan:

* **noise**: Gaussian noise of σ = 10 HU added to every voxel (seeded);
* **pitch**: the head pitched by 10° (the affine rotated about the left-right axis
  through the volume centre: the same voxels, so the labels compare voxel for voxel);
* **5 mm axial**: consecutive axial slices averaged into 5 mm slabs (boxcar), the labels
  of that run expanded back onto the native slices. Its **grid limit** is the Dice of
  the clean labels with themselves after the same round trip (each slab takes its
  central slice's labels): the best a perfect segmenter could reach on 5 mm slices.

It also lists the clean run's volumes against the adult normative ranges of
:func:`subct.qc.checks.normal_range_mm3`, and with ``--norms AGE SEX`` how far each
perturbation moves the normative z-scores (:mod:`subct.norms`; the same person assumed:
median and largest |Δz| over the 17 structures and the ICV). The robust-model issue's
targets: self-Dice ≥ 0.93 under noise and pitch with no structure below 0.85, and at 5 mm
within 0.03 of the grid limit.

Usage::

    python benchmarks/bench_real_ct_robustness.py [--model PATH] [--norms 70 female]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from real_cts import dice_summary, real_cts, structure_dice  # noqa: E402
from subct.image.volume import Volume  # noqa: E402
from subct.inference.config import InferenceConfig
from subct.inference.model import cached_model
from subct.inference.pipeline import segment  # noqa: E402
from subct.labels.schemes import CANONICAL_NAMES  # noqa: E402
from subct.model.runtime import cpu_line  # noqa: E402
from subct.norms.assess import normative_assessment  # noqa: E402
from subct.norms.demographics import Demographics  # noqa: E402
from subct.qc.checks import normal_range_mm3  # noqa: E402

NOISE_HU = 10.0
PITCH_DEG = 10.0
SLAB_MM = 5.0


def axial_axis(volume: Volume) -> int:
    """The voxel axis closest to the world's superior-inferior direction."""
    directions = np.abs(volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0))
    return int(np.argmax(directions[2]))


def with_noise(volume: Volume, sigma_hu: float, seed: int = 0) -> Volume:
    """The scan with Gaussian noise of ``sigma_hu`` added (float32 HU)."""
    noise = np.random.default_rng(seed).normal(0.0, sigma_hu, volume.shape)
    return volume.with_array((np.asarray(volume.array, np.float32) + noise).astype(np.float32))


def pitched(volume: Volume, degrees: float) -> Volume:
    """The same voxels with the head rotated about the left-right axis (world x)."""
    angle = np.deg2rad(degrees)
    rotation = np.eye(4)
    rotation[1:3, 1:3] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    centre = volume.affine @ np.append((np.asarray(volume.shape) - 1) / 2.0, 1.0)
    to_origin, back = np.eye(4), np.eye(4)
    to_origin[:3, 3], back[:3, 3] = -centre[:3], centre[:3]
    return Volume(volume.array, back @ rotation @ to_origin @ volume.affine)


def slabs(volume: Volume, factor: int) -> Volume:
    """Average ``factor`` consecutive axial slices into one (boxcar slab)."""
    axis = axial_axis(volume)
    count = volume.shape[axis] // factor
    array = np.moveaxis(np.asarray(volume.array, np.float32), axis, 0)[:count * factor]
    thick = array.reshape(count, factor, *array.shape[1:]).mean(axis=1)
    affine = volume.affine.copy()
    affine[:3, axis] *= factor
    affine[:3, 3] += volume.affine[:3, axis] * (factor - 1) / 2.0  # slab centre
    return Volume(np.moveaxis(thick, 0, axis), affine)


def expand(labels: np.ndarray, axis: int, factor: int, length: int) -> np.ndarray:
    """Slab labels repeated over their ``factor`` native slices (missing tail → 0)."""
    repeated = np.repeat(labels, factor, axis=axis)
    pad = length - repeated.shape[axis]
    if pad > 0:
        widths = [(0, 0)] * labels.ndim
        widths[axis] = (0, pad)
        repeated = np.pad(repeated, widths)
    return repeated


def central_slices(labels: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Each slab's central native slice (the labels a perfect 5 mm segmenter would give)."""
    count = labels.shape[axis] // factor
    index = np.arange(count) * factor + factor // 2
    return np.take(labels, index, axis=axis)


def z_scores(result: object, people: Demographics | None) -> dict[str, float]:
    """The normative z-score of every structure and the ICV of a segmentation result."""
    if people is None:
        return {}
    record = normative_assessment(result.volumes_mm3, people,  # type: ignore[attr-defined]
                                  intracranial_volume_mm3=result.intracranial_volume_mm3)  # type: ignore[attr-defined]
    entries = {**record["structures"], "ICV": record["intracranial_volume"] or {}}
    return {name: float(entry["z"]) for name, entry in entries.items() if "z" in entry}


def z_shift(clean: dict[str, float], other: dict[str, float]) -> str:
    """Median and largest |Δz| (and where) between two runs' z-scores."""
    if not clean:
        return ""
    shifts = {name: abs(other[name] - value) for name, value in clean.items() if name in other}
    worst = max(shifts, key=shifts.__getitem__)
    return (f" | {float(np.median(list(shifts.values()))):.2f} | {shifts[worst]:.2f} "
            f"({worst})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint (default: shipped)")
    parser.add_argument("--no-calibration", action="store_true",
                        help="raw argmax: no per-structure volume calibration")
    parser.add_argument("--norms", nargs=2, metavar=("AGE", "SEX"), default=None,
                        help="also the shift of the normative z-scores, for this age and sex")
    args = parser.parse_args()
    people = (None if args.norms is None
              else Demographics(float(args.norms[0]), args.norms[1]))  # type: ignore[arg-type]
    print(cpu_line())
    config = InferenceConfig(calibrate_volumes=not args.no_calibration)
    model = cached_model(args.model, config)
    print(f"# model {args.model or 'shipped'}; engine {model.backend} {model.precision}; "
          f"volume calibration {'off' if args.no_calibration else 'as the model has it'}")
    norms = " | median abs Δz | largest abs Δz |" if people else " |"
    print("| CT | perturbation | mean self-Dice | worst structure (Dice) | grid limit" + norms)
    print("|---|---|---|---|---|" + ("---|---|" if people else ""))
    volumes: dict[str, dict[str, float]] = {}
    for name, volume in real_cts().items():
        clean = segment(volume, model, config)
        clean_z = z_scores(clean, people)
        reference = np.asarray(clean.labels.array)
        volumes[name] = clean.volumes_mm3
        for label, perturbed in (("noise σ 10 HU", with_noise(volume, NOISE_HU)),
                                 ("pitch 10°", pitched(volume, PITCH_DEG))):
            result = segment(perturbed, model, config)
            mean, worst, value = dice_summary(structure_dice(reference,
                                                        np.asarray(result.labels.array)))
            print(f"| {name} | {label} | {mean:.3f} | {worst} ({value:.3f}) | –"
                  f"{z_shift(clean_z, z_scores(result, people))} |", flush=True)
        axis = axial_axis(volume)
        spacing = float(np.linalg.norm(volume.affine[:3, axis]))
        factor = int(round(SLAB_MM / spacing))
        if factor < 2:
            print(f"| {name} | 5 mm axial | – | native slices are {spacing:.1f} mm | – |")
            continue
        thick = segment(slabs(volume, factor), model, config)
        back = expand(np.asarray(thick.labels.array), axis, factor, volume.shape[axis])
        mean, worst, value = dice_summary(structure_dice(reference, back))
        limit = expand(central_slices(reference, axis, factor), axis, factor,
                       volume.shape[axis])
        grid_mean, _, _ = dice_summary(structure_dice(reference, limit))
        print(f"| {name} | {factor * spacing:.1f} mm axial slabs | {mean:.3f} | {worst} "
              f"({value:.3f}) | {grid_mean:.3f}{z_shift(clean_z, z_scores(thick, people))} |",
              flush=True)
    print("\n| structure | " + " | ".join(f"{n} cm³" for n in volumes) + " | adult range cm³ |")
    print("|---|" + "---|" * len(volumes) + "---|")
    for structure in CANONICAL_NAMES.values():
        bounds = normal_range_mm3(structure, "canonical")
        cells = []
        for values in volumes.values():
            value = values.get(structure, 0.0)
            outside = bounds is not None and not bounds[0] <= value <= bounds[1]
            cells.append(f"{value / 1000:.2f}{' **out**' if outside else ''}")
        text = f"{bounds[0] / 1000:.1f}–{bounds[1] / 1000:.1f}" if bounds else "–"
        print(f"| {structure} | " + " | ".join(cells) + f" | {text} |")


if __name__ == "__main__":
    main()
