"""The report in a real browser: headless Chromium opens ``index.html`` from disk; the
viewer must show label colours and the page must raise no JavaScript error (issue 14).

Chromium comes from Debian (``apt-get install chromium``; ``.ci/run`` installs it)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
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


def _require_chromium() -> None:
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing under CI (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")


def _segmented_phantom(tmp_path: Path) -> tuple[Path, Path]:
    """The 4 mm phantom and the output folder of ``subct segment`` on it (tiny model)."""
    ct_path = save_volume(analytic_head_phantom(spacing_mm=4.0).ct, tmp_path / "head.nii.gz")
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        main(["segment", str(ct_path), "-o", str(out), "--model", str(FIXTURE), "--fast",
              "--threads", "1", "--scheme", "merged"])
    return ct_path, out


def test_viewer_shows_labels_in_chromium(tmp_path: Path) -> None:
    _require_chromium()
    bench = _bench()
    ct_path, out = _segmented_phantom(tmp_path)
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


def _chromatic_columns(image: np.ndarray) -> np.ndarray:
    """x of the label-coloured pixels (strongly chromatic, not crosshair red)."""
    rgb = image[..., :3].astype(np.int32)
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)
    return np.nonzero((chroma > 60) & ~red)[1]


def test_viewer_and_overlay_agree_on_left_and_right(tmp_path: Path) -> None:
    """A label on the patient's left only: the overlay PNG's axial panel and the viewer's
    axial plane both show it right of centre (radiological), and the neurological switch
    puts it left of centre in the viewer (so the check can fail)."""
    import matplotlib.image

    from subct.io.readers import load_volume
    from subct.labels.colours import label_colour
    from subct.qc.overlay import CANVAS_PX, OverlayConfig, save_overlay
    from subct.qc.viewer import write_case_view

    _require_chromium()
    bench = _bench()
    ct_path, out = _segmented_phantom(tmp_path)
    ct = load_volume(ct_path)
    labels = load_volume(out / "head_labels.nii.gz")
    ras = labels.reoriented("RAS")
    array = np.asarray(ras.array).copy()
    middle = array.shape[0] // 2
    array[middle:] = 0  # RAS: larger x is the patient's right; keep the left half only
    array[:middle][array[:middle] > 0] = 10  # one label, clearly coloured
    left_only = ras.with_array(array)
    assert array.any()
    write_case_view(out, "head", ct, left_only)
    overlay = save_overlay(ct.reoriented("RAS"), left_only, tmp_path / "overlay.png",
                           OverlayConfig(scheme="merged", alpha=1.0))
    axial = (matplotlib.image.imread(overlay)[:, : CANVAS_PX[0] // 3, :3] * 255).round()
    colour = np.asarray(label_colour(10, "merged"), dtype=np.float64)
    label_columns = np.nonzero(np.abs(axial - colour).sum(axis=-1) < 3)[1]
    assert label_columns.size > 20 and label_columns.mean() > CANVAS_PX[0] / 6  # screen right

    def viewer_side(page: Path) -> float:
        bench.screenshot(page, tmp_path / "shot.png", (1366, 768))  # type: ignore[attr-defined]
        shot = (matplotlib.image.imread(tmp_path / "shot.png") * 255).astype(np.uint8)
        canvas = shot[185:665, 16:1335]
        tile = canvas[:, : canvas.shape[1] // 3]  # the axial plane (planes in a row)
        red = (tile[..., 0] > 180) & (tile[..., 1] < 60) & (tile[..., 2] < 60)
        cross_x = float(np.median(np.nonzero(red.sum(axis=0) > tile.shape[0] // 2)[0]))
        columns = _chromatic_columns(tile)
        assert columns.size > 20, "no label shown"
        return float(columns.mean()) - cross_x

    assert viewer_side(out / "index.html") > 0  # radiological: the left on screen right
    html = (out / "index.html").read_text()
    (out / "neuro.html").write_text(html.replace("isRadiologicalConvention: true",
                                                 "isRadiologicalConvention: false"))
    assert viewer_side(out / "neuro.html") < 0  # the switch flips it
