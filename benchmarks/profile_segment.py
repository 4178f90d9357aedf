"""Profile one whole ``subct segment`` run and print where its time goes, by step.

Runs ``python -m subct segment INPUT -o OUT --overwrite [extra flags]`` under cProfile in
a fresh process (imports included) and prints a table of the pipeline's steps with
their cumulative seconds, read from the profile: imports, reading, brain location,
crop resampling, the network engine, the sliding-window blend, the softmax,
post-processing (components, labels back onto the native grid), and each output file.
Input: the 256³ or 512 × 512 × 150 demo CT of ``bench_segment.py`` (built if missing).

Usage::

    python benchmarks/profile_segment.py [--input 256|512] [--work-dir /tmp/bseg] [-- --fast]
"""

from __future__ import annotations

import argparse
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

#: Step name → (module file suffix, function name) whose cumulative time is the step's.
STEPS: list[tuple[str, str, str]] = [
    ("whole run (in Python, after interpreter start)", "subct/__main__.py", "<module>"),
    ("imports (all modules, cumulative)", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("read the CT (load_volume)", "subct/io/readers.py", "load_volume"),
    ("locate the brain (skull, ICV)", "subct/image/intracranial.py", "locate_intracranial"),
    ("resample the crop box", "subct/inference/crop.py", "resample_to_crop"),
    ("skull-depth map of the crop", "subct/image/masks.py", "depth_inside_mm"),
    ("clean-up: dense foci", "subct/inference/dense.py", "inpaint_dense_foci"),
    ("clean-up: blood-like regions found", "subct/image/hyperdense.py", "hyperdense_regions"),
    ("clean-up: noise smoothing", "subct/inference/denoise.py", "denoise_for_network"),
    ("network step (predict_probabilities)", "subct/inference/predict.py", "predict_probabilities"),
    ("  engine calls (the network itself)", "subct/model/engines.py", "logits"),
    ("  sliding-window blend (minus engine)", "subct/inference/window.py", "sliding_window_logits"),
    ("  softmax", "subct/inference/window.py", "softmax"),
    ("class indices (mask, argmax, largest components)", "subct/inference/pipeline.py",
     "crop_class_indices"),
    ("  largest components", "subct/inference/postprocess.py", "keep_largest_components"),
    ("labels onto the native grid", "subct/inference/crop.py", "labels_to_native"),
    ("write labels (NIfTI)", "subct/io/writers.py", "save_volume"),
    ("write overlay PNG", "subct/qc/overlay.py", "save_overlay"),
    ("write the report viewer's copy", "subct/qc/viewer.py", "write_case_view"),
    ("write volumes.csv + index.html", "subct/inference/outputs.py", "write_batch_files"),
]


def main() -> None:
    from subct.model.runtime import cpu_line

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", choices=["256", "512"], default="256")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("extra", nargs="*", help="extra `subct segment` flags (after --)")
    args = parser.parse_args()
    print(cpu_line())
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_segment import build_input, build_input_256

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="subct-profile-"))
    work.mkdir(parents=True, exist_ok=True)
    name = "head256.nii.gz" if args.input == "256" else "head512.nii.gz"
    ct = work / name
    if not ct.is_file():
        ct = build_input_256(work) if args.input == "256" else build_input(work)
    profile = work / "segment.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "subct",
                    "segment", str(ct), "-o", str(work / "profile_out"), "--overwrite",
                    *args.extra], check=True, capture_output=True)
    stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
    totals: dict[tuple[str, str], float] = {}
    for (filename, _, function), (_, _, _, cumulative, _) in stats.items():
        for _, suffix, wanted in STEPS:
            if function == wanted and filename.endswith(suffix):
                key = (suffix, wanted)
                totals[key] = max(totals.get(key, 0.0), cumulative)
    engine = totals.get(("subct/model/engines.py", "logits"), 0.0)
    print(f"\n`subct segment {name} {' '.join(args.extra)}` under cProfile "
          "(cProfile adds some overhead to Python-heavy steps)\n")
    print("| step | seconds (cumulative) |")
    print("|---|---|")
    for label, suffix, wanted in STEPS:
        seconds = totals.get((suffix, wanted))
        if seconds is None:
            continue
        if wanted == "sliding_window_logits":
            seconds -= engine
        print(f"| {label} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
