"""The report in a real browser: headless Chromium opens ``index.html`` from disk; the
viewer must show label colours and the page must raise no JavaScript error (issue 14).

Chromium comes from Debian (``apt-get install chromium``; ``.ci/run`` installs it)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from subct.cli import main
from subct.io.writers import save_volume
from tests.support.phantom import analytic_head_phantom
from tests.support.tiny_phantom_unet import FIXTURE

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_report_browser.py"


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_report_browser", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_report_browser"] = module
    spec.loader.exec_module(module)
    return module


def test_viewer_shows_labels_in_chromium(tmp_path: Path) -> None:
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing under CI (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    bench = _bench()
    ct_path = save_volume(analytic_head_phantom(spacing_mm=4.0).ct, tmp_path / "head.nii.gz")
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["segment", str(ct_path), "-o", str(out), "--model", str(FIXTURE), "--fast",
              "--threads", "1", "--scheme", "merged"])
    log = bench.screenshot(out / "index.html", tmp_path / "shot.png")  # type: ignore[attr-defined]
    errors = [line for line in log.splitlines() if "CONSOLE" in line
              and ("Uncaught" in line or "Error" in line)]
    assert not errors
    shown = bench.label_pixels(tmp_path / "shot.png")  # type: ignore[attr-defined]
    # the same page with the labels hidden: no coloured pixels (the check can fail)
    html = (out / "index.html").read_text()
    (out / "hidden.html").write_text(html.replace("opacity: 0.6", "opacity: 0.0"))
    bench.screenshot(out / "hidden.html", tmp_path / "hidden.png")  # type: ignore[attr-defined]
    hidden = bench.label_pixels(tmp_path / "hidden.png")  # type: ignore[attr-defined]
    assert shown > 300 and hidden < shown / 10, (shown, hidden)
