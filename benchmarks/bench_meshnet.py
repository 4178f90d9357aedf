"""Benchmark: the built-in MeshNet segmenters on CPU, per precision, and their accuracy.

Speed: ``subct mri-seg T1 --tool MODEL --precision P`` on the real single-subject T1 in
``../shared/data/mri/t1_crop`` (256³, 1 mm), each run a fresh process under
``/usr/bin/time -v`` (wall, CPU = user + sys, peak RSS; start-up, reading, conforming,
the network on the head box + receptive-field halo, the mid-sagittal split and writing
included). bf16 rows are only run on CPUs with native bf16 unless ``--all`` is given
(on AVX2-only CPUs emulated bf16 is ~70× slower and asked for a 27 GB buffer).

Accuracy: the same models on FreeSurfer's fsaverage T1 against its aseg (mean Dice over
the 17 structures), with the voxels whose label differs between fp32 and bf16.

Usage::

    python benchmarks/bench_meshnet.py [--models meshnet-subcortical meshnet-18] [--all]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from subct.io.readers import load_volume
from subct.labels.convert import convert_to_canonical
from subct.labels.schemes import CANONICAL_LABELS
from subct.model.runtime import cpu_info
from subct.paths import shared_data_dir
from subct.transfer.meshnet import MeshNetRunConfig, MeshNetSegmenter


def timed_mri_seg(t1: Path, model: str, precision: str, output: Path,
                  backend: str = "torch") -> dict[str, float]:
    """Wall, CPU and peak RSS of one ``subct mri-seg`` process."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "subct", "mri-seg", str(t1),
               "-o", str(output), "--tool", model, "--precision", precision,
               "--backend", backend]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(completed.stdout + completed.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)",
                     completed.stderr)
    parts = [float(p) for p in wall.group(1).split(":")] if wall else [float("nan")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)",
                                            completed.stderr))
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", completed.stderr)
    return {"wall_s": seconds, "cpu_s": cpu,
            "peak_rss_gb": int(rss.group(1)) / 1024**2 if rss else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["meshnet-subcortical", "meshnet-18"])
    parser.add_argument("--all", action="store_true", help="also bf16 without native bf16")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--backend", default="torch",
                        help="MeshNet engine for the timing rows (torch, openvino, ...)")
    args = parser.parse_args()
    info = cpu_info()
    precisions = ["fp32"] + (["bf16"] if info.native_bf16 or args.all else [])
    print(f"# CPU: {info.model}; flags: {' '.join(info.relevant_flags) or 'none'}; "
          f"native bf16: {info.native_bf16}; {info.logical_cores} cores")
    t1 = shared_data_dir() / "mri" / "t1_crop" / "t1_crop.nii.gz"
    print("| model | engine | precision | wall s | CPU s (user+sys) | peak RSS GB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            for precision in precisions:
                figures = timed_mri_seg(t1, model, precision, Path(scratch) / "labels.nii.gz",
                                        args.backend)
                print(f"| {model} | {args.backend} | {precision} | {figures['wall_s']:.1f} | "
                      f"{figures['cpu_s']:.1f} | {figures['peak_rss_gb']:.2f} |", flush=True)
    if args.skip_accuracy:
        return
    folder = shared_data_dir() / "mri" / "fsaverage"
    fsaverage = load_volume(folder / "T1.mgz")
    reference = convert_to_canonical(load_volume(folder / "aseg.mgz").array.astype(np.int32),
                                     "aseg")
    print("\n| model | precision | mean Dice vs fsaverage aseg (17 structures) |")
    print("|---|---|---|")
    for model in args.models:
        outputs = {}
        for precision in precisions:
            labels = MeshNetSegmenter(name=model, run=MeshNetRunConfig(precision=precision)
                                      ).segment(fsaverage).array
            outputs[precision] = labels
            dice = [2 * ((labels == c) & (reference == c)).sum()
                    / ((labels == c).sum() + (reference == c).sum()) for c in CANONICAL_LABELS]
            print(f"| {model} | {precision} | {np.mean(dice):.4f} |", flush=True)
        if len(outputs) == 2:
            differ = float((outputs["fp32"] != outputs["bf16"]).mean())
            print(f"<!-- {model}: voxels differing fp32 vs bf16: {differ:.4%} -->")


if __name__ == "__main__":
    main()
