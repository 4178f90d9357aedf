"""Benchmark: registration backends (SimpleITK vs itk-elastix vs ANTsPy) on the same task.

The known-answer task of ``bench_registration.py`` (fsaverage T1 moved by a random
rigid transform of 5–10° / 5–10 mm, registered to a pseudo-CT of the same head), run
with each backend that is importable, rigid only, with each tool's standard
multi-resolution mutual-information recipe:

* ``simpleitk``: :func:`subct.transfer.registration.register` (the project's backend).
* ``elastix``: ``itk.elastix_registration_method`` with elastix's default ``rigid``
  parameter map (AdvancedMattesMutualInformation, 4 resolutions, ASGD), as used by
  the ensemble label-transfer paper.
* ``ants``: ``ants.registration(type_of_transform="Rigid")`` (MI, 4 levels).

itk-elastix and antspyx are not project dependencies; install them to compare::

    pip install --target /tmp/regbackends itk-elastix antspyx
    PYTHONPATH=/tmp/regbackends python benchmarks/bench_registration_backends.py --trials 3

Errors are the mean displacement (mm) between the recovered and true transforms over
the head voxels; times are wall-clock seconds including each tool's own I/O.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_registration import random_rigid  # noqa: E402
from subct.image.sitk_bridge import rigid_ras_to_itk
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.io.writers import save_volume  # noqa: E402
from subct.paths import shared_data_dir  # noqa: E402
from subct.synth.pseudo_ct import pseudo_ct_from_t1  # noqa: E402
from subct.transfer.registration import mean_displacement_error_mm, register


def run_simpleitk(fixed: Path, moving: Path, threads: int) -> sitk.Transform:
    result = register(load_volume(fixed), load_volume(moving), "rigid")
    return result.transform


def run_elastix(fixed: Path, moving: Path, threads: int) -> sitk.Transform:
    import itk

    fixed_image = itk.imread(str(fixed), itk.F)
    moving_image = itk.imread(str(moving), itk.F)
    parameters = itk.ParameterObject.New()
    parameters.AddParameterMap(parameters.GetDefaultParameterMap("rigid"))
    _, result_parameters = itk.elastix_registration_method(
        fixed_image, moving_image, parameter_object=parameters, log_to_console=False,
        number_of_threads=threads)
    values = [float(v) for v in result_parameters.GetParameter(0, "TransformParameters")]
    centre = [float(v) for v in result_parameters.GetParameter(0, "CenterOfRotationPoint")]
    transform = sitk.Euler3DTransform()
    transform.SetCenter(centre)
    transform.SetParameters(values)
    return transform


def run_ants(fixed: Path, moving: Path, threads: int) -> sitk.Transform:
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    import ants

    result = ants.registration(ants.image_read(str(fixed)), ants.image_read(str(moving)),
                               type_of_transform="Rigid")
    return sitk.ReadTransform(result["fwdtransforms"][0])


BACKENDS = {"simpleitk": (None, run_simpleitk), "elastix": ("itk", run_elastix),
            "ants": ("ants", run_ants)}


def main() -> None:
    from subct.model.runtime import cpu_line

    print(cpu_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    args = parser.parse_args()
    threads = os.cpu_count() or 1

    folder = shared_data_dir() / "mri" / "fsaverage"
    t1 = load_volume(folder / "T1.mgz")
    ct = pseudo_ct_from_t1(t1, load_volume(folder / "aseg.mgz"), seed=1)
    head = Volume((ct.array > -500).astype(np.uint8), ct.affine)
    centre = (ct.affine @ np.r_[np.array(ct.shape) / 2.0, 1.0])[:3]
    rng = np.random.default_rng(args.seed)
    truths = [random_rigid(rng, centre) for _ in range(args.trials)]
    print(f"# load: {os.getloadavg()[0]:.2f} (1-min), cpus: {os.cpu_count()}")
    summary: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as work:
        fixed_path = save_volume(ct, Path(work) / "ct.nii.gz")
        for trial, (truth, angle, shift) in enumerate(truths):
            moving_path = save_volume(Volume(t1.array.astype(np.float32), truth @ t1.affine),
                                      Path(work) / f"mr{trial}.nii.gz")
            for name in args.backends:
                module, runner = BACKENDS[name]
                if module is not None and importlib.util.find_spec(module) is None:
                    print(f"# {name}: not installed, skipped")
                    continue
                started = time.perf_counter()
                try:
                    transform = runner(fixed_path, moving_path, threads)
                except Exception as error:  # report and go on with the other backends
                    print(json.dumps({"backend": name, "trial": trial, "error": str(error)}))
                    continue
                seconds = time.perf_counter() - started
                error_mm = mean_displacement_error_mm(transform, rigid_ras_to_itk(truth), head)
                summary.setdefault(name, []).append((error_mm, seconds))
                print(json.dumps({"backend": name, "trial": trial, "rotation_deg": round(angle, 2),
                                  "shift_mm": round(shift, 2), "error_mm": round(error_mm, 3),
                                  "seconds": round(seconds, 2),
                                  "load": round(os.getloadavg()[0], 2)}), flush=True)
    print("\n| backend | mean error (mm), mean / max | time (s), mean / max |")
    print("|---|---|---|")
    for name, values in summary.items():
        errors, times = np.array(values).T
        print(f"| {name} | {errors.mean():.2f} / {errors.max():.2f} | "
              f"{times.mean():.1f} / {times.max():.1f} |")


if __name__ == "__main__":
    main()
