"""What the network-input clean-up does and costs on real, low-dose and bleeding heads
(issue 12).

For each real head CT (``real_cts.py``), one low-dose synthetic head of validation map 17
(σ 15 HU correlated noise) and two heads of map 17 with every kind of haemorrhage drawn,
on the pipeline's crop: the dense foci in-painted (voxels, mm³), the blood-like regions
filled, the measured brain noise and the smoothing chosen, and the time of each step
(wall and CPU seconds, one thread).

Usage: ``python benchmarks/bench_input_cleanup.py``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_shipped_model import generate_cases, held_out_map_paths  # noqa: E402
from real_cts import real_cts  # noqa: E402
from subct.image.hyperdense import hyperdense_regions, large_hyperdense_regions  # noqa: E402
from subct.image.intracranial import locate_intracranial  # noqa: E402
from subct.inference.config import InferenceConfig  # noqa: E402
from subct.inference.crop import crop_grid, resample_to_crop  # noqa: E402
from subct.inference.denoise import denoise_for_network  # noqa: E402
from subct.inference.dense import inpaint_blood_like_regions, inpaint_dense_foci  # noqa: E402
from subct.model.runtime import cpu_line  # noqa: E402


def main() -> None:
    print(cpu_line())
    volumes = dict(real_cts())
    case = generate_cases(held_out_map_paths([17], tuning=True), 1, 2024, (192, 240, 240),
                          None, "low_dose")[0]
    volumes["synthetic map 17, low dose"] = case.ct
    bleeding = generate_cases(held_out_map_paths([17], tuning=True), 2, 2024, (192, 240, 240),
                              "haemorrhage", "clean")
    for case in bleeding:
        volumes[f"synthetic {case.name} {case.resolution}, all haemorrhage kinds"] = case.ct
    config = InferenceConfig()
    print("| head | in-painted | in-painting s | blood filled | blood s | brain noise HU "
          "| smoothing mm | smoothing s | CPU s (all) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, volume in volumes.items():
        location = locate_intracranial(volume)
        centre = np.round(location.centroid_ras_mm + np.asarray(config.crop_offset_mm), 2)
        grid = crop_grid(centre, (1.0, 1.0, 1.0), config.crop_size_mm, 16)
        hu = resample_to_crop(volume, grid, 0.0)
        inside = location.mask_on(grid.geometry)
        cpu, wall = time.process_time(), time.perf_counter()
        cleaned, voxels = inpaint_dense_foci(hu, inside, (1.0, 1.0, 1.0))
        inpaint_s = time.perf_counter() - wall
        wall = time.perf_counter()
        regions = large_hyperdense_regions(hyperdense_regions(hu, inside, (1.0, 1.0, 1.0)))
        cleaned, blood = inpaint_blood_like_regions(cleaned, regions, inside, (1.0, 1.0, 1.0))
        blood_s = time.perf_counter() - wall
        wall = time.perf_counter()
        _, noise, sigma = denoise_for_network(cleaned, inside, (1.0, 1.0, 1.0))
        smooth_s = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        noise_text = "–" if noise is None else f"{noise:.1f}"
        print(f"| {name} | {voxels} voxels ({voxels / 1000:.2f} cm³) | {inpaint_s:.2f} "
              f"| {blood / 1000:.1f} cm³ | {blood_s:.2f} "
              f"| {noise_text} | {sigma:g} | {smooth_s:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
