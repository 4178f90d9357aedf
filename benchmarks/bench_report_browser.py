"""Open a ``subct segment`` report from disk in headless Chromium (Debian ``chromium``)
and check that the NiiVue viewer draws the labels and the page raised no JavaScript
error (issue 14).

It segments the real GE series into a temporary folder (or uses ``--report``), takes a
screenshot of ``index.html`` (software WebGL: SwiftShader), counts viewer pixels in the
FreeSurfer colours of the structures, and scans the browser console for errors.

Usage: ``python benchmarks/bench_report_browser.py [--report OUT_FOLDER] [--png shot.png]``
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from subct.cli import main as subct_main
from subct.paths import shared_data_dir


def screenshot(index_html: Path, png: Path, window: tuple[int, int] = (1100, 900)) -> str:
    """Screenshot of the page (``window``: width, height in CSS pixels) after its
    scripts ran; returns the browser's log."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("chromium is not installed (apt-get install chromium)")
    completed = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--use-angle=swiftshader",
         "--enable-unsafe-swiftshader", f"--window-size={window[0]},{window[1]}",
         "--virtual-time-budget=20000", "--enable-logging=stderr", "--v=0",
         f"--screenshot={png}", index_html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    return completed.stdout + completed.stderr


def label_pixels(png: Path) -> int:
    """Coloured pixels of the viewer (the top 600 rows: above the table and its overlay
    thumbnails): the CT is grey and the crosshair pure red, so strongly chromatic pixels
    (max − min channel > 60) that are not crosshair red are labels."""
    import matplotlib.image

    image = (matplotlib.image.imread(png)[:600, :, :3] * 255).astype(np.int32)
    chroma = image.max(axis=-1) - image.min(axis=-1)
    red = (image[..., 0] > 180) & (image[..., 1] < 60) & (image[..., 2] < 60)
    return int(np.count_nonzero((chroma > 60) & ~red))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=Path(tempfile.mkdtemp()) / "report.png")
    args = parser.parse_args()
    report = args.report
    if report is None:
        report = Path(tempfile.mkdtemp()) / "report"
        with contextlib.suppress(SystemExit):  # the CLI always exits
            subct_main(["segment", str(shared_data_dir() / "ct" / "dicom_ge_tilted"),
                        "-o", str(report)])
    log = screenshot(report / "index.html", args.png)
    errors = [line for line in log.splitlines() if "CONSOLE" in line and
              ("Uncaught" in line or "Error" in line or ":ERROR:CONSOLE" in line)]
    pixels = label_pixels(args.png)
    print(f"screenshot {args.png}: {pixels} pixels in structure colours; "
          f"{len(errors)} JavaScript errors")
    for line in errors:
        print("  " + line)
    sys.exit(0 if pixels > 500 and not errors else 1)


if __name__ == "__main__":
    main()
