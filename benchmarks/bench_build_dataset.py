"""Benchmark: ``build_dataset`` throughput on full-size (256³, 1 mm) paired cases.

Generates ``--cases`` MRI/CT pairs from the real fsaverage T1 and a pseudo-CT of the
same head (:mod:`subct.synth.pseudo_ct`): even cases pre-registered (same grid, as
SynthRAD2023), odd cases shifted/rotated so that registration runs. The aseg is
supplied as precomputed FreeSurfer/SynthSeg output; ``atlas-ho`` (and any other
``--tools``) run for real. Reports seconds per case and for the whole run.

Usage::

    python benchmarks/bench_build_dataset.py --cases 4 --workers 2 \
        --tools freesurfer,synthseg,atlas-ho
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from subct.dataset.build import build_dataset
from subct.dataset.config import BuildConfig
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.io.writers import save_volume
from subct.paths import shared_data_dir
from subct.synth.pseudo_ct import pseudo_ct_from_t1


def main() -> None:
    from subct.model.runtime import cpu_line

    print(cpu_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tools", default="freesurfer,synthseg,atlas-ho")
    args = parser.parse_args()

    folder = shared_data_dir() / "mri" / "fsaverage"
    t1 = load_volume(folder / "T1.mgz")
    aseg = load_volume(folder / "aseg.mgz")
    ct = pseudo_ct_from_t1(t1, aseg, seed=2)
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "source"
        for index in range(args.cases):
            affine = t1.affine.copy()
            if index % 2:
                rigid = np.eye(4)
                rigid[:3, :3] = Rotation.from_euler("xyz", [4, -3, 5], degrees=True).as_matrix()
                rigid[:3, 3] = [5.0, -4.0, 6.0]
                affine = rigid @ affine
            case_dir = source / "siteA" / f"case{index:03d}"
            save_volume(Volume(t1.array, affine), case_dir / "mr.nii.gz")
            for tool in ("freesurfer", "synthseg"):
                save_volume(Volume(aseg.array.astype(np.int16), affine),
                            case_dir / f"seg_{tool}.nii.gz")
            save_volume(ct, case_dir / "ct.nii.gz")
        config = BuildConfig(tools=tuple(args.tools.split(",")), fusion="majority")
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        report = build_dataset(source, Path(work) / "dataset", config, workers=args.workers,
                               progress=False)
        total = time.perf_counter() - started
    print(f"# load before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f}, "
          f"cpus: {os.cpu_count()}, workers: {args.workers}, tools: {args.tools}")
    print("| case | registration | seconds |")
    print("|---|---|---|")
    for row in report.qc_rows:
        print(f"| {row['case']} | {row['registration']} | {row['seconds']} |")
    print(f"\n{len(report.done)} cases done, {len(report.failed)} failed, total "
          f"{total:.1f} s ({total / max(1, len(report.done)):.1f} s per case wall-clock)")
    for case_id, error in report.failed.items():
        print(f"failed {case_id}: {error}")


if __name__ == "__main__":
    main()
