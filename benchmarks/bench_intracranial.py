"""The intracranial locator (``subct.image.intracranial``) against the truth and across
slice thickness (issue 11).

* Real head CTs (``real_cts.py``): intracranial volume (ICV) at native slices and as
  ~5 mm axial slabs (target: within 3 %), and the locator's time.
* Synthetic heads (``subct.synth``, whole-head label maps; validation maps 17–18 by
  default, the skull always drawn), at 1 mm and as 5 mm slabs: the mask's Dice with the
  true intracranial space (brain + CSF labels, FreeSurfer IDs 1–499), ICV against the
  true volume, true structure voxels outside the mask (the pipeline cuts labels there;
  target 0), and the centroid's distance from the true one.

Usage: ``python benchmarks/bench_intracranial.py [--maps 17 18] [--samples 2]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real_ct_robustness import axial_axis, slabs  # noqa: E402
from bench_shipped_model import axial_slab_average, held_out_map_paths  # noqa: E402
from real_cts import real_cts  # noqa: E402
from subct.image.intracranial import locate_intracranial  # noqa: E402
from subct.image.volume import Volume  # noqa: E402
from subct.model.runtime import cpu_line  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, nargs="+", default=[17, 18])
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(cpu_line())
    print("\n| real CT | ICV native cm³ | ICV ~5 mm cm³ | difference "
          "| locator time native / 5 mm |")
    print("|---|---|---|---|---|")
    for name, ct in real_cts().items():
        spacing = float(np.linalg.norm(ct.affine[:3, axial_axis(ct)]))
        factor = max(2, int(round(5.0 / spacing)))
        results = []
        for volume in (ct, slabs(ct, factor)):
            started = time.perf_counter()
            location = locate_intracranial(volume)
            results.append((location.intracranial_volume_mm3, time.perf_counter() - started))
        (native, t_native), (thick, t_thick) = results
        if native is None or thick is None:
            print(f"| {name} | no skull found | | | |")
            continue
        print(f"| {name} | {native / 1000:.0f} | {thick / 1000:.0f} "
              f"| {100 * (thick - native) / native:+.1f} % | {t_native:.2f} / {t_thick:.2f} s |")

    from subct.labels.convert import convert_to_canonical
    from subct.synth import SynthConfig, SynthGenerator

    tuning = all(m in (17, 18) for m in args.maps)
    print("\n| synthetic head | slices | mask Dice vs truth | ICV cm³ (true) "
          "| structure voxels outside the mask | centroid error mm |")
    print("|---|---|---|---|---|---|")
    for map_number in args.maps:
        config = SynthConfig(mode="ct", output_shape=(192, 240, 240),
                             drop_extracerebral_probability=0.0)
        config.resolution.probability = 0.0
        generator = SynthGenerator(held_out_map_paths([map_number], tuning=tuning), config,
                                   seed=args.seed + 1000 * map_number)
        for sample_number in range(args.samples):
            sample = generator.sample(0)
            assert sample.hu is not None
            ct = Volume(np.round(sample.hu.numpy()).astype(np.int16), sample.affine.copy())
            labels_fs = sample.labels_fs.numpy()
            inside = Volume(((labels_fs > 0) & (labels_fs < 500)).astype(np.int16),
                            sample.affine.copy())
            structures = Volume(np.asarray(convert_to_canonical(labels_fs, "freesurfer"),
                                           dtype=np.int16), sample.affine.copy())
            thick_ct, thick_inside = axial_slab_average(ct, inside, 5)
            _, thick_structures = axial_slab_average(ct, structures, 5)
            for label, image, truth, reference in (
                    ("1 mm", ct, inside, structures),
                    ("5 mm", thick_ct, thick_inside, thick_structures)):
                location = locate_intracranial(image)
                mask = location.mask_on(image)
                true_mask = np.asarray(truth.array) > 0
                dice = 2 * np.count_nonzero(mask & true_mask) / (mask.sum() + true_mask.sum())
                voxel_cm3 = image.voxel_volume_mm3 / 1000.0
                outside = np.count_nonzero((np.asarray(reference.array) > 0) & ~mask)
                total = np.count_nonzero(np.asarray(reference.array) > 0)
                true_centroid = truth.affine[:3, :3] @ np.argwhere(true_mask).mean(axis=0) \
                    + truth.affine[:3, 3]
                error = float(np.linalg.norm(location.centroid_ras_mm - true_centroid))
                icv = location.intracranial_volume_mm3
                icv_text = "–" if icv is None else f"{icv / 1000:.0f}"
                print(f"| map{map_number}_s{sample_number} | {label} | {dice:.3f} "
                      f"| {icv_text} ({true_mask.sum() * voxel_cm3:.0f}) | {outside} of {total} "
                      f"| {error:.1f} |", flush=True)


if __name__ == "__main__":
    main()
