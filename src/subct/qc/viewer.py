"""The slice viewer of the batch report: NiiVue (BSD-2-Clause, bundled from npm as
``qc/assets/niivue.umd.js``, version 0.69.0), so the report works offline from disk.

Browsers do not let a page opened from disk (``file://``) fetch other files, so each
case's CT and labels are written as a small script (``viewer/<case>.js``) holding them
as base64 NIfTI, resampled to :data:`VIEWER_SPACING_MM` (about 1–2 MB per case), which
the page loads with ``<script>`` tags.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np

from subct.image.resample import geometry_with_spacing, resample_to_geometry
from subct.image.volume import Volume
from subct.io.writers import atomic_write_bytes, atomic_write_text
from subct.labels.colours import label_colour
from subct.labels.schemes import get_scheme

#: Voxel size of the viewer's copy of each case (mm): the labels' own resolution on
#: typical head CTs (2 mm looked blocky).
VIEWER_SPACING_MM = 1.0
#: HU kept in the viewer's copy: the viewer shows -10..90 HU; clipping air and dense bone
#: halves the compressed size (the GE series at 1 mm: 11.1 → 4.9 MB).
VIEWER_HU_RANGE = (-200.0, 300.0)
VIEWER_FOLDER = "viewer"
NIIVUE_SCRIPT = "niivue.umd.js"


def _nifti_base64(array: np.ndarray, affine: np.ndarray) -> str:
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return base64.b64encode(gzip.compress(image.to_bytes(), compresslevel=1)).decode("ascii")


def write_case_view(folder: str | Path, case: str, ct: Volume, labels: Volume,
                    hu_offset: float = 0.0) -> Path:
    """Write ``viewer/<case>.js``: the case's CT (HU, int16) and labels (uint8) at
    :data:`VIEWER_SPACING_MM`, as base64 NIfTI registered in ``window.SUBCT_CASES``."""
    # the RAS grid at the viewer's spacing, resampled straight from the native grid (no
    # reoriented copy first); no anti-aliasing: the Gaussian costs 0.5 s on a 0.5 mm scan
    # and a viewing copy does not need it (labels and volumes come from the full pipeline)
    grid = geometry_with_spacing(ct.reoriented_view("RAS").geometry, VIEWER_SPACING_MM)
    small = resample_to_geometry(ct, grid, "linear")
    hu = np.clip(np.rint(np.asarray(small.array, np.float32) - hu_offset), *VIEWER_HU_RANGE)
    small_labels = resample_to_geometry(labels, small.geometry, "nearest", fill_value=0)
    payload = {"ct": _nifti_base64(hu.astype(np.int16), small.affine),
               "labels": _nifti_base64(np.asarray(small_labels.array).astype(np.uint8),
                                       small.affine)}
    text = ("window.SUBCT_CASES = window.SUBCT_CASES || {};\n"
            f"window.SUBCT_CASES[{json.dumps(case)}] = {json.dumps(payload)};\n")
    return atomic_write_text(Path(folder) / VIEWER_FOLDER / f"{case}.js", text)


def install_viewer(folder: str | Path) -> Path:
    """Copy the bundled NiiVue script and its licence into ``<folder>/viewer/``.

    A copy already there is kept only when it is a regular file with exactly the bundled
    bytes (a truncated copy from a full disk is replaced); every copy is written
    atomically (temporary name, then rename), and a symbolic link at the folder or a
    file is replaced by a real one, so nothing is written outside ``folder`` through it.
    """
    viewer = Path(folder) / VIEWER_FOLDER
    if viewer.is_symlink():
        viewer.unlink()
    viewer.mkdir(parents=True, exist_ok=True)
    for name in (NIIVUE_SCRIPT, "NIIVUE_LICENSE.txt"):
        copy = viewer / name
        bundled = files("subct.qc").joinpath("assets", name).read_bytes()
        if copy.is_symlink():
            copy.unlink()
        elif copy.is_file() and copy.stat().st_size == len(bundled) and \
                hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(bundled).digest():
            continue
        atomic_write_bytes(copy, bundled)
    return viewer / NIIVUE_SCRIPT


def label_lut_json(scheme: str) -> str:
    """NiiVue label colour map (index → RGBA and name) of ``scheme``, as JSON."""
    resolved = get_scheme(scheme)
    top = max(resolved.labels)
    lut: dict[str, list[object]] = {"R": [], "G": [], "B": [], "A": [], "I": [], "labels": []}
    names = dict(resolved.names)
    for index in range(top + 1):
        r, g, b = label_colour(index, resolved) if index in names else (0, 0, 0)
        lut["R"].append(r)
        lut["G"].append(g)
        lut["B"].append(b)
        lut["A"].append(255 if index in names else 0)
        lut["I"].append(index)
        lut["labels"].append(names.get(index, ""))
    return json.dumps(lut)
