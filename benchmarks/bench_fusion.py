"""Benchmark: time and peak memory of fusing five 256³ label maps, per fusion rule.

Issue 3 asks that fusing 5 maps of 256³ stays under 2 GB and takes under 2 s. Each
(scenario, method) runs in a fresh Python process, which loads the five ``int16`` maps
(5 × 32 MiB) from ``.npy`` files, records its RSS, fuses (labels + agreement map) and
records the peak RSS (``ru_maxrss``) and the wall-clock time of :func:`subct.transfer.fusion.fuse`
(best of ``--repeats``), and its CPU time (``time.process_time``; fusion is
single-threaded numpy, so on an idle machine CPU ≈ wall time, while on this shared
2-core machine the wall time mostly measures waiting for a core). "Peak RSS" is the
whole process (Python, numpy, the inputs); "added" is peak minus the RSS after loading.

Scenarios:

* ``real``: the fsaverage aseg and four real segmentations of the same T1 (the label
  maps cached by ``benchmarks/bench_fsaverage_ensemble.py``; if absent, the aseg
  shifted by 0–2 voxels along each axis, five ways).
* ``subjects``: five different SynthSeg training subjects, unregistered: far more
  disagreement than any real ensemble (every structure boundary differs by mm to cm).
* ``random``: every voxel a random label among the 17 structures and background: every
  voxel disagrees; the absolute worst case for the vote counting.

Usage::

    python benchmarks/bench_fusion.py [--repeats 3] [--scenarios real subjects random]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIDE = 256


def _scenario_maps(scenario: str, cache_dir: Path) -> list[np.ndarray]:
    from subct.io.readers import load_volume
    from subct.labels.convert import convert_to_canonical
    from subct.labels.schemes import CANONICAL_LABELS
    from subct.paths import shared_data_dir

    data = shared_data_dir()
    if scenario == "real":
        aseg = convert_to_canonical(
            load_volume(data / "mri" / "fsaverage" / "aseg.mgz").array.astype(np.int32), "aseg")
        cached = sorted(cache_dir.glob("*.nii.gz"))
        if len(cached) >= 4:
            return [aseg] + [np.asarray(load_volume(p).array, dtype=np.int16)
                             for p in cached[:4]]
        shifts = [(0, 0, 0), (1, 0, 0), (0, 1, 1), (2, 0, 1), (1, 2, 0)]
        return [np.roll(aseg, shift, axis=(0, 1, 2)) for shift in shifts]
    if scenario == "subjects":
        folder = data / "label_maps" / "synthseg"
        return [convert_to_canonical(np.asarray(load_volume(
            folder / f"training_seg_{i:02d}.nii.gz").array).astype(np.int32), "synthseg")
            for i in range(1, 6)]
    if scenario == "random":
        rng = np.random.default_rng(0)
        values = np.array((0, *CANONICAL_LABELS), dtype=np.int16)
        return [values[rng.integers(0, len(values), (SIDE,) * 3)] for _ in range(5)]
    raise SystemExit(f"unknown scenario {scenario}")


def _worker(folder: Path, method: str, repeats: int) -> None:
    maps = [np.load(path) for path in sorted(folder.glob("map*.npy"))]
    loaded_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from subct.transfer.fusion import fuse

    times, cpu_times = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        weights = [1.0, 0.9, 0.8, 0.7, 0.6] if method == "weighted" else None
        result = fuse(maps, method, weights)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - started_cpu)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "method": method, "seconds_best": round(min(times), 3),
        "cpu_seconds_best": round(min(cpu_times), 3),
        "peak_rss_mib": round(peak_kib / 1024), "added_mib": round((peak_kib - loaded_kib) / 1024),
        "disagreeing_fraction": round(float(1 - (result.agreement == 1).mean()), 4),
    }))


def main() -> None:
    from subct.model.runtime import cpu_line

    print(cpu_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scenarios", nargs="+", default=["real", "subjects", "random"])
    parser.add_argument("--methods", nargs="+",
                        default=["consensus", "majority", "weighted", "staple"])
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/subct-ensemble"))
    parser.add_argument("--worker", nargs=2, metavar=("FOLDER", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(Path(args.worker[0]), args.worker[1], args.repeats)
        return
    print(f"| scenario | method | wall s (best of {args.repeats}) | CPU s | peak RSS (MiB) "
          "| added by fuse (MiB) | voxels disagreeing | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario in args.scenarios:
        with tempfile.TemporaryDirectory() as temporary:
            maps = _scenario_maps(scenario, args.cache_dir)
            assert len(maps) == 5 and all(m.shape == (SIDE,) * 3 for m in maps)
            for index, labels in enumerate(maps):
                np.save(Path(temporary) / f"map{index}.npy", labels.astype(np.int16))
            del maps
            for method in args.methods:
                output = subprocess.run(
                    [sys.executable, __file__, "--repeats", str(args.repeats),
                     "--worker", temporary, method],
                    capture_output=True, text=True, check=True).stdout
                row = json.loads(output.strip().splitlines()[-1])
                print(f"| {scenario} | {method} | {row['seconds_best']} "
                      f"| {row['cpu_seconds_best']} | {row['peak_rss_mib']} | {row['added_mib']} "
                      f"| {row['disagreeing_fraction']:.2%} | {os.getloadavg()[0]:.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
