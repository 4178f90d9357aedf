"""Benchmark: MRI → CT registration accuracy and speed on a known rigid misalignment.

Data: the real fsaverage T1 (256³, 1 mm) and a CT-like image of the same head
synthesised from the T1 and its aseg (:func:`subct.synth.pseudo_ct.pseudo_ct_from_t1`). The
T1 is moved by known rigid transforms (rotations 5–10°, shifts 5–10 mm, random axes,
seeded) by rewriting its affine, so the truth is exact. For each setting this reports
the wall-clock time of :func:`subct.transfer.registration.register` and the mean displacement
error (mm) between the recovered and the true transform over all head voxels
(CT > −500 HU).

Usage::

    python benchmarks/bench_registration.py                      # default settings
    python benchmarks/bench_registration.py --trials 3 --kinds rigid affine \
        --working-spacings 1 2 3

Requires ``../shared/data`` (or ``SUBCT_SHARED_DATA``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from subct.image.sitk_bridge import rigid_ras_to_itk
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.paths import shared_data_dir
from subct.synth.pseudo_ct import pseudo_ct_from_t1
from subct.transfer.registration import (
    RegistrationConfig,
    mean_displacement_error_mm,
    register,
)


def random_rigid(rng: np.random.Generator, centre: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Rigid RAS transform: 5–10° about a random axis through ``centre``, 5–10 mm shift."""
    angle = rng.uniform(5.0, 10.0)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    shift_mm = rng.uniform(5.0, 10.0)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_rotvec(np.deg2rad(angle) * axis).as_matrix()
    to_centre, from_centre = np.eye(4), np.eye(4)
    to_centre[:3, 3], from_centre[:3, 3] = centre, -centre
    rigid = to_centre @ matrix @ from_centre
    rigid[:3, 3] += shift_mm * direction
    return rigid, float(angle), float(shift_mm)


def main() -> None:
    from subct.model.runtime import cpu_line

    print(cpu_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", default=["rigid", "affine"])
    parser.add_argument("--working-spacings", nargs="+", type=float, default=[2.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clinical-ct-grid", action="store_true",
                        help="resample the pseudo-CT to a clinical axial grid first (LPS, "
                             "0.8 x 0.8 x 4 mm, 300 x 300 x 60 voxels)")
    args = parser.parse_args()

    folder = shared_data_dir() / "mri" / "fsaverage"
    t1 = load_volume(folder / "T1.mgz")
    aseg = load_volume(folder / "aseg.mgz")
    ct = pseudo_ct_from_t1(t1, aseg, seed=1)
    centre = (ct.affine @ np.r_[np.array(ct.shape) / 2.0, 1.0])[:3]
    if args.clinical_ct_grid:
        from subct.image.resample import resample_to_geometry
        from subct.image.volume import Geometry

        affine = np.diag([-0.8, -0.8, 4.0, 1.0])
        affine[:3, 3] = centre - affine[:3, :3] @ np.array([150.0, 150.0, 30.0])
        ct = resample_to_geometry(ct, Geometry((300, 300, 60), affine), "linear",
                                  fill_value=-1000.0)
    head = Volume((ct.array > -500).astype(np.uint8), ct.affine)
    rng = np.random.default_rng(args.seed)
    truths = [random_rigid(rng, centre) for _ in range(args.trials)]
    print(f"# load: {os.getloadavg()[0]:.2f} (1-min), cpus: {os.cpu_count()}, "
          f"ITK threads: {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}")
    rows = []
    for spacing in args.working_spacings:
        for kind in args.kinds:
            for trial, (truth, angle, shift) in enumerate(truths):
                moving = Volume(t1.array, truth @ t1.affine)
                config = RegistrationConfig(working_spacing_mm=spacing)
                started = time.perf_counter()
                result = register(ct, moving, kind, config)  # type: ignore[arg-type]
                seconds = time.perf_counter() - started
                error = mean_displacement_error_mm(result.transform, rigid_ras_to_itk(truth),
                                                   head)
                before = mean_displacement_error_mm(sitk.Euler3DTransform(),
                                                    rigid_ras_to_itk(truth), head)
                row = {"working_spacing_mm": spacing, "kind": kind, "result_kind": result.kind,
                       "trial": trial,
                       "rotation_deg": round(angle, 2), "shift_mm": round(shift, 2),
                       "error_before_mm": round(before, 2), "error_mm": round(error, 3),
                       "seconds": round(seconds, 2), "mi_before": round(result.metric_before, 3),
                       "mi_after": round(result.metric_after, 3),
                       "load": round(os.getloadavg()[0], 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| working spacing (mm) | transform | mean error (mm), mean / max | time (s), "
          "mean / max |")
    print("|---|---|---|---|")
    for spacing in args.working_spacings:
        for kind in args.kinds:
            chosen = [r for r in rows if r["working_spacing_mm"] == spacing and r["kind"] == kind]
            errors = [r["error_mm"] for r in chosen]
            times = [r["seconds"] for r in chosen]
            print(f"| {spacing:g} | {kind} | {np.mean(errors):.2f} / {np.max(errors):.2f} | "
                  f"{np.mean(times):.1f} / {np.max(times):.1f} |")


if __name__ == "__main__":
    main()
