"""DICOM SEG of real DICOM inputs, end to end (issue 14): ``subct segment --dicom-seg`` on
the tilted, unevenly spaced GE series in ``../shared/data/ct`` and on Debian's InVesalius
head CT written as a plain DICOM CT series (untilted, even 1.5 mm spacing, another
voxel order; ``real_cts.write_dicom_series``), each read back with highdicom (same
labelled pixels as the label map carried to the source slices) and validated with
``dciodvfy`` (Debian ``dicom3tools``), as is the volume SR written beside it.

Usage: ``python benchmarks/bench_dicom_seg.py [--out /tmp/dicom_seg] [--series DIR ...]``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import highdicom
import numpy as np
import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_cts import INVESALIUS_CRANIUM, load_invesalius, write_dicom_series  # noqa: E402
from subct.cli import main as subct_main
from subct.io.dicom_seg import labels_on_slices, source_series  # noqa: E402
from subct.io.readers import load_volume  # noqa: E402
from subct.model.runtime import cpu_line  # noqa: E402
from subct.paths import shared_data_dir  # noqa: E402


def check_series(folder: Path, out: Path) -> None:
    """Segment one DICOM series with ``--dicom-seg`` and check the SEG; print the results."""
    started = time.perf_counter()
    try:
        subct_main(["segment", str(folder), "-o", str(out), "--dicom-seg"])
    except SystemExit as exit_:
        print(f"{folder.name}: subct segment exit code {exit_.code} "
              f"({time.perf_counter() - started:.1f} s)")
    seg_path = out / f"{folder.name}_seg.dcm"
    seg = highdicom.seg.segread(seg_path)
    datasets = source_series(folder)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in datasets], combine_segments=True,
        relabel=False, skip_overlap_checks=True)
    expected = labels_on_slices(load_volume(out / f"{folder.name}_labels.nii.gz"), datasets)
    print(f"SEG: {seg.number_of_segments} segments, {len(datasets)} source slices, "
          f"{int((pixels > 0).sum())} labelled pixels; same pixels as the label map on "
          f"the source slices: {bool(np.array_equal(pixels > 0, expected > 0))}")
    sr_path = out / f"{folder.name}_sr.dcm"
    groups = len(pydicom.dcmread(sr_path).ContentSequence[-1].ContentSequence)
    print(f"SR: {sr_path.name}, {groups} measurement groups (a structure with a volume each)")
    for path in (seg_path, sr_path):
        validate(path)


def validate(path: Path) -> None:
    """Print dciodvfy's errors and warnings for one DICOM file."""
    if shutil.which("dciodvfy"):
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        lines = (report.stdout + report.stderr).splitlines()
        errors = [line for line in lines if line.startswith("Error")]
        warnings = [line for line in lines if line.startswith("Warning")]
        print(f"dciodvfy {path.name}: {len(errors)} errors, {len(warnings)} warnings")
        for line in errors + warnings:
            print("  " + line)
    else:
        print("dciodvfy not installed (apt-get install dicom3tools)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp()) / "dicom_seg")
    parser.add_argument("--series", type=Path, nargs="*", default=None,
                        help="DICOM series folders (default: the GE series and InVesalius)")
    args = parser.parse_args()
    print(cpu_line())
    series = args.series
    if series is None:
        series = [shared_data_dir() / "ct" / "dicom_ge_tilted"]
        if INVESALIUS_CRANIUM.is_file():
            series.append(write_dicom_series(load_invesalius(), args.out.parent
                                             / "invesalius_dicom", "InVesalius Cranium"))
    for folder in series:
        print(f"## {folder}")
        check_series(folder, args.out)


if __name__ == "__main__":
    main()
