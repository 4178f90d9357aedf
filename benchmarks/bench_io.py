"""Benchmark image I/O and resampling on a clinical-size head CT grid.

Measures wall-clock seconds (best of ``--repeats``) for:

* ``load_volume`` / ``save_volume`` of a 512 x 512 x 150 int16 CT-like volume
  (0.45 x 0.45 x 1 mm) as .nii.gz, .nii, .mha and .nrrd;
* ``load_volume`` of the real gantry-tilted DICOM series (dcm2niix conversion,
  tilt correction, spacing equalisation) when ``../shared/data`` is present;
* ``resample_to_geometry`` of that volume onto a FreeSurfer-conformed 256³ 1 mm grid
  (linear), with the SimpleITK and the scipy engines.

Run: ``python benchmarks/bench_io.py [--repeats 3]``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from subct.image.resample import conformed_geometry, resample_to_geometry
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.io.writers import save_volume
from subct.paths import shared_data_dir


def _best_of(repeats: int, action: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def _ct_like_volume() -> Volume:
    """Smooth head-like phantom in HU: air, skull shell, brain, so compression is realistic."""
    shape = (512, 512, 150)
    i, j, k = np.ogrid[: shape[0], : shape[1], : shape[2]]
    radius = np.sqrt(((i - 256) / 200.0) ** 2 + ((j - 256) / 230.0) ** 2 + ((k - 75) / 90.0) ** 2)
    array = np.full(shape, -1000, dtype=np.int16)
    array[radius < 1.0] = 900
    array[radius < 0.93] = 35
    noise = np.random.default_rng(0).normal(0, 5, size=shape).astype(np.int16)
    array += noise
    affine = np.diag([-0.45, 0.45, 1.0, 1.0])
    affine[:3, 3] = [115.0, -115.0, -75.0]
    return Volume(array, affine)


def main() -> None:
    from subct.model.runtime import cpu_line

    print(cpu_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows: list[tuple[str, float]] = []
    volume = _ct_like_volume()
    with tempfile.TemporaryDirectory() as folder:
        for suffix in (".nii.gz", ".nii", ".mha", ".nrrd"):
            path = Path(folder) / f"ct{suffix}"
            rows.append((f"save_volume 512x512x150 int16 {suffix}",
                         _best_of(args.repeats, lambda p=path: save_volume(volume, p))))
            rows.append((f"load_volume 512x512x150 int16 {suffix} (+ CT check)",
                         _best_of(args.repeats,
                                  lambda p=path: load_volume(p, expect_ct=True).array.sum())))
    dicom = shared_data_dir() / "ct" / "dicom_ge_tilted"
    if dicom.is_dir():
        rows.append(("load_volume DICOM 28 tilted slices -> 512x611x56 (dcm2niix)",
                     _best_of(args.repeats, lambda: load_volume(dicom, expect_ct=True))))
    target = conformed_geometry(volume.geometry)
    for engine in ("simpleitk", "scipy"):
        rows.append((f"resample 512x512x150 -> 256^3 1 mm LIA, linear, {engine}",
                     _best_of(args.repeats,
                              lambda e=engine: resample_to_geometry(volume, target, "linear",
                                                                    engine=e))))
    print(f"load average before: {load_before:.2f}; cpu count {os.cpu_count()}")
    print(f"| operation | seconds (best of {args.repeats}) |")
    print("|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
