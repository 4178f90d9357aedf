"""Benchmark: ``subct segment`` end to end on a clinical-size head CT (time, peak RSS).

Issue 6 asks, on a 2-core CPU, for a 512 × 512 × ~150 head CT (~0.5 × 0.5 × 1 mm):
read, segment with TTA, write all outputs (labels, QC JSON, overlay PNG, volumes.csv,
index.html) in under 20 s and under 4 GB peak RSS; ``--fast`` under 8 s.

Input: the ``subct demo`` synthetic head CT (MNI152 + Harvard-Oxford, 1 mm) resampled
(linear, world coordinates) onto a 512 × 512 × 150 grid of 0.5 × 0.5 × 1 mm, int16
NIfTI. Each configuration runs ``subct segment`` in a fresh process under
``/usr/bin/time -v``: the wall time includes Python/torch start-up, reading, the whole
pipeline and writing; peak RSS is the maximum resident set size of that process.
The pipeline's own step timings come from the case's ``_qc.json``.

Model: ``--model PATH`` (a checkpoint from ``subct train``), else the shipped model,
else a randomly initialised network with the default architecture (``unet3d``,
channels 16–256, 1 mm, patch 128³). Speed and memory do not depend on the weights'
values, only on the architecture, so random weights time the same as trained ones.

Usage::

    python benchmarks/bench_segment.py [--model PATH] [--repeats 2] [--threads 2]
    python benchmarks/bench_segment.py --network-only   # fp32/bf16, layout, windows
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

import numpy as np


def build_input(folder: Path) -> Path:
    """The demo CT on a 512×512×150, 0.5×0.5×1 mm grid centred on the head."""
    from subct.demo import build_demo_ct
    from subct.io import Geometry, save_volume
    from subct.resample import resample_to_geometry

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

    from subct.checkpoint import CheckpointMetadata, save_checkpoint
    from subct.models import default_model_path
    from subct.networks import build_network

    if default_model_path().is_file():
        return default_model_path()
    torch.manual_seed(0)
    kwargs = {"in_channels": 1, "out_channels": 18, "dropout": 0.2}
    metadata = CheckpointMetadata(network_name="unet3d", network_kwargs=kwargs,
                                  spacing_mm=(1.0, 1.0, 1.0), patch_size=(128, 128, 128))
    return save_checkpoint(folder / "random_unet3d.safetensors",
                           build_network("unet3d", **kwargs), metadata)


def run_once(ct: Path, model: Path, output: Path, extra: list[str]) -> dict[str, float]:
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
    record = json.loads((output / "head512_qc.json").read_text())
    figures = {"wall_s": wall, "peak_rss_gb": peak_gb, "cpu_s": cpu}
    figures.update({f"step_{k}_s": float(v) for k, v in record["timings_s"].items()})
    return figures


def realistic_postprocess_seconds(ct_path: Path) -> float:
    """Seconds of the native-grid label step for anatomically realistic labels.

    A random-weight network labels the whole crop box in fragments, the worst case for
    the boundary interpolation; this times :func:`subct.inference.labels_to_native` and
    the largest-component step on the Harvard-Oxford labels of the demo in the crop box.
    """
    from subct.demo import build_demo_ct
    from subct.inference import (
        DEFAULT_CROP_OFFSET_MM,
        DEFAULT_CROP_SIZE_MM,
        crop_grid,
        keep_largest_components,
        labels_to_native,
    )
    from subct.io import load_volume
    from subct.labels import labels_to_indices
    from subct.qc import locate_intracranial
    from subct.resample import resample_to_geometry

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


def network_timings(threads: int) -> None:
    """In-process timings of the default UNet: precision/layout and whole box vs windows."""
    import torch
    from monai.inferers import sliding_window_inference

    from subct.networks import build_network

    torch.set_num_threads(threads)
    network = build_network("unet3d", 1, 18).eval()

    def timed(label: str, net: torch.nn.Module, tensor: torch.Tensor, bf16: bool,
              windows: bool = False) -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=bf16):
            def run() -> object:
                if windows:
                    return sliding_window_inference(tensor, (128, 128, 128), 1, net,
                                                    overlap=0.25, mode="gaussian")
                return net(tensor)
            run()
            start = time.perf_counter()
            run()
            print(f"| {label} | {time.perf_counter() - start:.2f} |", flush=True)

    print(f"load average: {os.getloadavg()[0]:.2f}")
    print("| network pass (default unet3d, 18 classes) | seconds |")
    print("|---|---|")
    patch = torch.randn(1, 1, 128, 128, 128)
    timed("128³ fp32", network, patch, False)
    timed("128³ bf16", network, patch, True)
    last = network.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    patch_last = patch.contiguous(memory_format=torch.channels_last_3d)
    timed("128³ fp32 channels-last", last, patch_last, False)
    timed("128³ bf16 channels-last", last, patch_last, True)
    box = torch.randn(1, 1, 112, 160, 144).contiguous(memory_format=torch.channels_last_3d)
    timed("112×160×144 box, one pass, bf16 channels-last", last, box, True)
    timed("112×160×144 box, 128³ windows 25 % overlap, bf16 channels-last", last, box, True,
          windows=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--skip-qc", action="store_true", help="skip the --qc 15 row")
    parser.add_argument("--network-only", action="store_true",
                        help="only time network passes in-process (precision, layout)")
    args = parser.parse_args()
    if args.network_only:
        network_timings(args.threads)
        return
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="subct-bench-segment-"))
    work.mkdir(parents=True, exist_ok=True)
    ct = work / "head512.nii.gz"
    if not ct.is_file():
        ct = build_input(work)
    model = args.model or default_checkpoint(work)
    print(f"input {ct} (512x512x150, 0.5x0.5x1 mm); model {model}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2-core machine)")
    configurations = {"default (TTA)": [], "--fast": ["--fast"],
                      "--qc 15 (MC dropout)": ["--qc", "15"]}
    if args.skip_qc:
        del configurations["--qc 15 (MC dropout)"]
    print("| configuration | end-to-end wall s (best) | CPU s (user+sys) | peak RSS GB (max) "
          "| network s | load avg |")
    print("|---|---|---|---|---|---|")
    for name, extra in configurations.items():
        runs = [run_once(ct, model, work / "out", [*extra, "--threads", str(args.threads)])
                for _ in range(args.repeats)]
        best = min(runs, key=lambda r: r["wall_s"])
        peak = max(r["peak_rss_gb"] for r in runs)
        print(f"| {name} | {best['wall_s']:.1f} | {best['cpu_s']:.1f} | {peak:.2f} | "
              f"{best.get('step_network_s', float('nan')):.1f} | "
              f"{os.getloadavg()[0]:.1f} |", flush=True)
        steps = {k: round(v, 2) for k, v in best.items() if k.startswith("step_")}
        print(f"  steps of the best run: {steps}", flush=True)
    print(f"LCC + native-grid labels for realistic (atlas) labels: "
          f"{realistic_postprocess_seconds(ct):.2f} s")


if __name__ == "__main__":
    main()
