"""Calibration of the ``hyperdense_lesion`` QC check (issue 11/12): the largest blood-like
regions (``subct.image.hyperdense.hyperdense_regions``) on the pipeline's crop of the real head
CTs and of the validation heads (maps 17–18, 1 mm and 5 mm) without and with a drawn
haemorrhage. The reporting threshold (``HYPERDENSE_MIN_MM3``) must lie between the two.

Usage: ``python benchmarks/bench_hyperdense.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_shipped_model import generate_cases, held_out_map_paths  # noqa: E402
from real_cts import real_cts  # noqa: E402
from subct.image.hyperdense import HYPERDENSE_MIN_MM3, hyperdense_regions  # noqa: E402
from subct.image.intracranial import locate_intracranial  # noqa: E402
from subct.image.volume import Volume  # noqa: E402
from subct.inference.config import InferenceConfig  # noqa: E402
from subct.inference.crop import crop_grid, resample_to_crop  # noqa: E402
from subct.model.runtime import cpu_line  # noqa: E402


def largest_regions(volume: Volume) -> list[float]:
    """Volumes (mm³) of the three largest blood-like regions in the pipeline's crop."""
    location = locate_intracranial(volume)
    config = InferenceConfig()
    centre = np.round(location.centroid_ras_mm + np.asarray(config.crop_offset_mm), 2)
    grid = crop_grid(centre, (1.0, 1.0, 1.0), config.crop_size_mm, 16)
    hu = resample_to_crop(volume, grid, 0.0)
    _, sizes = hyperdense_regions(hu, location.mask_on(grid.geometry), (1.0, 1.0, 1.0))
    return sorted((float(v) for v in sizes[1:]), reverse=True)[:3]


def main() -> None:
    print(cpu_line())
    print(f"reporting threshold: {HYPERDENSE_MIN_MM3:g} mm³\n")
    print("| head | largest blood-like regions (mm³) |")
    print("|---|---|")
    heads = [(name, ct) for name, ct in real_cts().items()]
    for pathology in (None, "haemorrhage"):
        for case in generate_cases(held_out_map_paths([17, 18], tuning=True), 2, 2024,
                                   (192, 240, 240), pathology):
            heads.append((f"{case.name} {case.resolution} {pathology or 'no lesion'}",
                          case.ct))
    for name, ct in heads:
        sizes = largest_regions(ct)
        print(f"| {name} | {', '.join(f'{v:.0f}' for v in sizes) or 'none'} |", flush=True)


if __name__ == "__main__":
    main()
