"""The batch report's offline viewer: the bundled NiiVue script, per-case data scripts
holding the CT and labels as base64 NIfTI, and the label colour map (issue 14). The
browser itself is exercised by ``benchmarks/bench_report_browser.py``."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from subct.cli import main
from subct.io.readers import load_volume
from subct.io.writers import save_volume
from tests.support.phantom import analytic_head_phantom
from tests.support.tiny_phantom_unet import FIXTURE


def _decode(text: str) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(text)))


def test_report_embeds_a_working_viewer(tmp_path: Path) -> None:
    ct_path = save_volume(analytic_head_phantom(spacing_mm=4.0).ct, tmp_path / "head.nii.gz")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(ct_path), "-o", str(out), "--model", str(FIXTURE), "--fast",
              "--threads", "1", "--scheme", "merged"])
    assert exit_info.value.code in (0, None)
    html = (out / "index.html").read_text()
    assert "<script src='viewer/niivue.umd.js'></script>" in html
    assert "<option>head</option>" in html and "'viewer/' + encodeURIComponent(name)" in html
    assert "<script src='viewer/head.js'>" not in html  # loaded when the case is shown
    assert (out / "viewer" / "niivue.umd.js").stat().st_size > 1_000_000
    lut = json.loads(re.search(r"const SUBCT_LUT = (\{.*?\});", html).group(1))  # type: ignore[union-attr]
    assert lut["labels"][10] == "Thalamus" and lut["G"][10] == 118 and lut["A"][0] == 0
    script = (out / "viewer" / "head.js").read_text()
    payload = json.loads(script.split(" = ", 2)[-1].rstrip(";\n"))
    ct, labels = _decode(payload["ct"]), _decode(payload["labels"])
    from subct.qc.viewer import VIEWER_SPACING_MM

    assert ct.shape == labels.shape
    assert np.allclose(ct.header.get_zooms(), VIEWER_SPACING_MM)  # 1 mm, not blocky
    written = np.asarray(load_volume(out / "head_labels.nii.gz").array)
    shown = np.asarray(labels.dataobj)
    assert set(np.unique(shown)) <= set(np.unique(written)) and shown.max() > 0
    # the viewer's copy holds about as much of each label as the full-resolution map
    ratio = np.count_nonzero(shown) * VIEWER_SPACING_MM ** 3 / (np.count_nonzero(written) * 64.0)
    assert 0.7 < ratio < 1.3


def test_viewer_assets_are_repaired_and_never_written_through_links(tmp_path) -> None:
    from subct.qc.viewer import NIIVUE_SCRIPT, VIEWER_FOLDER, install_viewer

    out = tmp_path / "out"
    script = install_viewer(out)
    good = script.read_bytes()
    script.write_bytes(good[: len(good) // 3])  # a full disk truncated it
    assert install_viewer(out).read_bytes() == good  # repaired on the next run
    outside = tmp_path / "outside.js"
    outside.write_text("not yours")
    script.unlink()
    script.symlink_to(outside)  # a dangling or foreign link at the asset's path
    install_viewer(out)
    assert outside.read_text() == "not yours" and not script.is_symlink()
    assert script.read_bytes() == good
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / VIEWER_FOLDER / NIIVUE_SCRIPT).unlink()
    (out / VIEWER_FOLDER / "NIIVUE_LICENSE.txt").unlink()
    (out / VIEWER_FOLDER).rmdir()
    (out / VIEWER_FOLDER).symlink_to(elsewhere, target_is_directory=True)
    install_viewer(out)
    assert not any(elsewhere.iterdir())  # nothing written outside -o
