"""Benchmark: ``subct segment`` end to end (wall and CPU time, peak RSS), per engine.

The every-CPU issue's targets, on a 2-core CPU without native bf16 (on an AMX machine
the fp32 path is forced with ``--precision fp32`` and said so): a 256³ 1 mm head with
TTA ≤ 20 s CPU, ≤ 12 s wall, ≤ 2 GB peak RSS; ``--fast`` ≤ 10 s CPU, ≤ 6 s wall; a
512 × 512 × 150 clinical CT ≤ 15 s wall; with two busy processes on the machine the
network step at most 2.5× slower than quiet.

Inputs: the ``subct demo`` synthetic head CT (MNI152 + Harvard-Oxford) resampled
(linear, world coordinates) onto a 256³ 1 mm grid and onto a 512 × 512 × 150 grid of
0.5 × 0.5 × 1 mm, int16 NIfTI. Each configuration runs ``subct segment`` in a fresh
process under ``/usr/bin/time -v``: wall time includes Python start-up, imports,
reading, the whole pipeline and writing every output; CPU time is user + sys of the
process; peak RSS its maximum resident set. The pipeline's own step timings come from
the case's ``_qc.json``, as does the engine/precision that actually ran. The busy rows
run two extra processes that each spin one core for the whole run.

Usage::

    python benchmarks/bench_segment.py [--repeats 2] [--threads 2] [--no-busy]
    python benchmarks/bench_segment.py --backends onnxruntime:fp32 --inputs 256
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def build_input(folder: Path) -> Path:
    """The demo CT on a 512×512×150, 0.5×0.5×1 mm grid centred on the head."""
    from subct.evaluation.demo import build_demo_ct
    from subct.image.resample import resample_to_geometry
    from subct.image.volume import Geometry
    from subct.io.writers import save_volume

    case = build_demo_ct()
    shape = (512, 512, 150)
    spacing = np.array([0.5, 0.5, 1.0])
    centre = case.ct.affine[:3, :3] @ ((np.asarray(case.ct.shape) - 1) / 2.0) \
        + case.ct.affine[:3, 3]
    affine = np.diag([*spacing, 1.0])
    # LPS-like axis directions as a scanner writes them (x to the left, y posterior).
    affine[0, 0], affine[1, 1] = -spacing[0], -spacing[1]
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    affine[2, 3] += 10.0  # a little more skull top than neck, like a head CT
    resampled = resample_to_geometry(case.ct, Geometry(shape, affine), "linear",
                                     fill_value=-1024.0)
    volume = resampled.with_array(np.round(resampled.array).astype(np.int16))
    return save_volume(volume, folder / "head512.nii.gz")


def default_checkpoint(folder: Path) -> Path:
    """Shipped model if installed, else a random-weight default UNet checkpoint."""
    import torch

    from subct.model.checkpoint import CheckpointMetadata, save_checkpoint
    from subct.model.networks import build_network
    from subct.model.registry import default_model_path

    if default_model_path().is_file():
        return default_model_path()
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "out_channels": 18, "dropout": 0.2}
    metadata = CheckpointMetadata(network_name="unet3d", network_kwargs=kwargs,
                                  spacing_mm=(1.0, 1.0, 1.0), patch_size=(128, 128, 128),
                                  hu_window=(-100.0, 200.0))
    return save_checkpoint(folder / "random_unet3d.safetensors",
                           build_network("unet3d", **kwargs), metadata)


def run_once(ct: Path, model: Path, output: Path, extra: list[str]) -> dict[str, Any]:
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "subct", "segment", str(ct),
               "-o", str(output), "--model", str(model), "--overwrite", *extra]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(completed.stdout + completed.stderr)
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", completed.stderr)
    peak_gb = int(match.group(1)) / 1024**2 if match else float("nan")
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)",
                                            completed.stderr))
    record = json.loads((output / f"{ct.name.split('.')[0]}_qc.json").read_text())
    figures: dict[str, Any] = {"wall_s": wall, "peak_rss_gb": peak_gb, "cpu_s": cpu,
                               "ran": f"{record['runtime']['backend']} "
                                      f"{record['runtime']['precision']}"}
    figures.update({f"step_{k}_s": float(v) for k, v in record["timings_s"].items()})
    return figures


def realistic_postprocess_seconds(ct_path: Path) -> float:
    """Seconds of the native-grid label step for anatomically realistic labels.

    A random-weight network labels the whole crop box in fragments, the worst case for
    the boundary interpolation; this times :func:`subct.inference.crop.labels_to_native` and
    the largest-component step on the Harvard-Oxford labels of the demo in the crop box.
    """
    from subct.evaluation.demo import build_demo_ct
    from subct.image.intracranial import locate_intracranial
    from subct.image.resample import resample_to_geometry
    from subct.inference.config import DEFAULT_CROP_OFFSET_MM, DEFAULT_CROP_SIZE_MM
    from subct.inference.crop import crop_grid, labels_to_native
    from subct.inference.postprocess import keep_largest_components
    from subct.io.readers import load_volume
    from subct.labels.schemes import labels_to_indices

    volume = load_volume(ct_path)
    location = locate_intracranial(volume)
    grid = crop_grid(location.centroid_ras_mm + np.asarray(DEFAULT_CROP_OFFSET_MM),
                     (1.0, 1.0, 1.0), DEFAULT_CROP_SIZE_MM, 16)
    atlas = resample_to_geometry(build_demo_ct().labels, grid.geometry, "nearest", 0)
    indices = labels_to_indices(np.asarray(atlas.array))
    start = time.perf_counter()
    kept = keep_largest_components(indices, 18)
    labels_to_native(kept, grid, volume.geometry, 18)
    return time.perf_counter() - start


def build_input_256(folder: Path) -> Path:
    """The demo CT on a 256³, 1 mm grid (LAS, like a conformed research CT)."""
    from subct.evaluation.demo import build_demo_ct
    from subct.image.resample import resample_to_geometry
    from subct.image.volume import Geometry
    from subct.io.writers import save_volume

    case = build_demo_ct()
    shape = (256, 256, 256)
    centre = case.ct.affine[:3, :3] @ ((np.asarray(case.ct.shape) - 1) / 2.0) \
        + case.ct.affine[:3, 3]
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    resampled = resample_to_geometry(case.ct, Geometry(shape, affine), "linear",
                                     fill_value=-1024.0)
    volume = resampled.with_array(np.round(resampled.array).astype(np.int16))
    return save_volume(volume, folder / "head256.nii.gz")


def busy_processes(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` processes that each keep one core busy (a plain Python loop)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(count)]


def main() -> None:
    from subct.model.runtime import cpu_info

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--backends", nargs="+", default=["onnxruntime:fp32", "torch:fp32",
                                                          "torch:auto"],
                        help="engine:precision pairs to time")
    parser.add_argument("--inputs", nargs="+", default=["256", "512"])
    parser.add_argument("--no-busy", action="store_true", help="skip the contention rows")
    parser.add_argument("--qc", action="store_true", help="add a --mc-samples 15 row")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="subct-bench-segment-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = {}
    if "256" in args.inputs:
        inputs["256³ 1 mm"] = (work / "head256.nii.gz" if (work / "head256.nii.gz").is_file()
                               else build_input_256(work))
    if "512" in args.inputs:
        inputs["512×512×150"] = (work / "head512.nii.gz"
                                 if (work / "head512.nii.gz").is_file() else build_input(work))
    model = args.model or default_checkpoint(work)
    info = cpu_info()
    print(f"# CPU: {info.model}; flags: {' '.join(info.relevant_flags) or 'none'}; "
          f"native bf16: {info.native_bf16}; {info.logical_cores} cores; model {model.name}")
    print(f"# load average at start: {os.getloadavg()[0]:.2f}")
    configurations: dict[str, list[str]] = {"default (TTA)": [], "--fast": ["--fast"]}
    if args.qc:
        configurations["--mc-samples 15 (MC dropout)"] = ["--mc-samples", "15"]
    print("| input | engine | configuration | machine | wall s (best) | CPU s (user+sys) | "
          "peak RSS GB (max) | network s | engine/precision that ran |")
    print("|---|---|---|---|---|---|---|---|---|")
    for input_name, ct in inputs.items():
        for pair in args.backends:
            backend, precision = pair.split(":")
            for name, extra in configurations.items():
                for busy in ((False,) if args.no_busy or name != "default (TTA)"
                             else (False, True)):
                    hogs = busy_processes(2) if busy else []
                    try:
                        runs = [run_once(ct, model, work / "out",
                                         [*extra, "--threads", str(args.threads),
                                          "--backend", backend, "--precision", precision])
                                for _ in range(args.repeats)]
                    finally:
                        for hog in hogs:
                            hog.kill()
                    best = min(runs, key=lambda r: r["wall_s"])
                    peak = max(r["peak_rss_gb"] for r in runs)
                    print(f"| {input_name} | {backend} {precision} | {name} | "
                          f"{'2 busy processes' if busy else 'quiet'} | {best['wall_s']:.1f} | "
                          f"{best['cpu_s']:.1f} | {peak:.2f} | "
                          f"{best.get('step_network_s', float('nan')):.1f} | "
                          f"{best['ran']} |", flush=True)
                    steps = {k[5:-2]: round(v, 2) for k, v in best.items()
                             if k.startswith("step_")}
                    print(f"<!-- steps: {steps} -->", flush=True)


if __name__ == "__main__":
    main()
