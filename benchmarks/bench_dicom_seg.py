"""DICOM SEG of a real DICOM input, end to end (issue 14): ``subct segment --dicom-seg`` on
the tilted GE series in ``../shared/data/ct``, read back with highdicom (same labelled
pixels as the label map carried to the source slices) and validated with ``dciodvfy``
(Debian ``dicom3tools``).

Usage: ``python benchmarks/bench_dicom_seg.py [--out /tmp/dicom_seg]``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import highdicom
import numpy as np

from subct.cli import main as subct_main
from subct.io.dicom_seg import labels_on_slices, source_series
from subct.io.readers import load_volume
from subct.model.runtime import cpu_line
from subct.paths import shared_data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp()) / "dicom_seg")
    args = parser.parse_args()
    print(cpu_line())
    folder = shared_data_dir() / "ct" / "dicom_ge_tilted"
    started = time.perf_counter()
    try:
        subct_main(["segment", str(folder), "-o", str(args.out), "--dicom-seg"])
    except SystemExit as exit_:
        print(f"subct segment exit code {exit_.code} ({time.perf_counter() - started:.1f} s)")
    seg_path = args.out / "dicom_ge_tilted_seg.dcm"
    seg = highdicom.seg.segread(seg_path)
    datasets = source_series(folder)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in datasets], combine_segments=True,
        relabel=False, skip_overlap_checks=True)
    expected = labels_on_slices(load_volume(args.out / "dicom_ge_tilted_labels.nii.gz"),
                                datasets)
    print(f"SEG: {seg.number_of_segments} segments, {len(datasets)} source slices, "
          f"{int((pixels > 0).sum())} labelled pixels; same pixels as the label map on "
          f"the source slices: {bool(np.array_equal(pixels > 0, expected > 0))}")
    if shutil.which("dciodvfy"):
        report = subprocess.run(["dciodvfy", str(seg_path)], capture_output=True, text=True)
        lines = (report.stdout + report.stderr).splitlines()
        errors = [line for line in lines if line.startswith("Error")]
        warnings = [line for line in lines if line.startswith("Warning")]
        print(f"dciodvfy: {len(errors)} errors, {len(warnings)} warnings")
        for line in errors + warnings:
            print("  " + line)
    else:
        print("dciodvfy not installed (apt-get install dicom3tools)")


if __name__ == "__main__":
    main()
