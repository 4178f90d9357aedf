"""Carry the braincharts lifespan models of the lateral ventricles, brainstem and
intracranial volume into subct's package data (``subct/data/norms/braincharts_*``).

    python scripts/extract_braincharts_norms.py BRAINCHARTS_REPO [--commit SHA]

BRAINCHARTS_REPO: a checkout (or the ``fetch`` tool's git mirror, read with ``git show``)
of github.com/predictive-clinical-neuroscience/braincharts, whose
``models/lifespan_57K_82sites.zip`` holds one PCNtoolkit warped Bayesian linear regression
per FreeSurfer measure (Rutherford et al., eLife 2022;11:e72904; 58 836 people, 82
sites). Each pickle is read without PCNtoolkit (its classes become plain attribute
holders) and only numbers leave it: the posterior mean weights ``m`` (92: intercept, age,
sex, 82 site dummies, 7 cubic B-spline functions of age on knots −5…110 years), the
posterior covariance ``A⁻¹`` (for the predictive variance), the noise precision and the
two SinhArcsinh warp parameters (``hyp``; warp_reparam: noise variance = exp(2 hyp[2]) /
exp(hyp[0])). The repository's NOTICE calls the pretrained models public domain.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

#: FreeSurfer measure in the models → subct's name.
MEASURES = {"Left-Lateral-Ventricle": "Left-Lateral-Ventricle",
            "Right-Lateral-Ventricle": "Right-Lateral-Ventricle",
            "Brain-Stem": "Brain-Stem",
            "EstimatedTotalIntraCranialVol": "intracranial_volume"}
MODEL_ZIP = "models/lifespan_57K_82sites.zip"
OUTPUT = Path(__file__).resolve().parents[1] / "src" / "subct" / "data" / "norms"


class _Holder:
    """Stands in for every PCNtoolkit class of the pickle: keeps its attributes."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _NumbersOnly(pickle.Unpickler):
    """Unpickles numpy arrays and builtins; any other class becomes a :class:`_Holder`."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in ("numpy", "builtins", "copyreg", "collections"):
            return super().find_class(module, name)
        return type(name, (_Holder,), {})


def _zip_bytes(repo: Path) -> bytes:
    """The model zip from a checkout, or from a bare git mirror with ``git show``."""
    path = repo / MODEL_ZIP
    if path.is_file():
        return path.read_bytes()
    return subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{MODEL_ZIP}"],
                          check=True, capture_output=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--commit", default=None, help="the repository commit (recorded)")
    args = parser.parse_args()
    commit = args.commit or subprocess.run(
        ["git", "-C", str(args.repo), "rev-parse", "HEAD"], capture_output=True,
        text=True).stdout.strip()
    archive = zipfile.ZipFile(io.BytesIO(_zip_bytes(args.repo)))
    arrays: dict[str, np.ndarray] = {}
    measures: dict[str, Any] = {}
    for measure, name in MEASURES.items():
        member = f"lifespan_57K_82sites/{measure}/Models/NM_0_0_estimate.pkl"
        blr = _NumbersOnly(io.BytesIO(archive.read(member))).load().blr
        assert blr.D == 92 and blr.m.shape == (92,), measure
        arrays[f"{name}/weights"] = np.asarray(blr.m, dtype=np.float64)
        arrays[f"{name}/covariance"] = np.linalg.inv(np.asarray(blr.A, dtype=np.float64))
        arrays[f"{name}/hyp"] = np.asarray(blr.hyp, dtype=np.float64)
        measures[name] = {"freesurfer_measure": measure, "cohort_size": int(blr.N)}
    np.savez_compressed(OUTPUT / "braincharts_lifespan_57k.npz", **arrays)
    metadata = {
        "source": {
            "name": "braincharts",
            "citation": "Rutherford S, Fraza C, Dinga R, et al. Charting brain growth and "
                        "aging at high spatial precision. eLife 2022;11:e72904. "
                        "doi:10.7554/eLife.72904",
            "repository": "https://github.com/predictive-clinical-neuroscience/braincharts",
            "commit": commit, "files": f"{MODEL_ZIP} (lifespan_57K_82sites)",
            "method": "warped (SinhArcsinh) Bayesian linear regression on age, sex (0 female, "
                      "1 male), 82 site dummies and a cubic B-spline of age; subct marginalises "
                      "the unknown site as an equal-weight mixture of the 82 training sites",
            "extracted_by": "scripts/extract_braincharts_norms.py"},
        "bspline": {"knots_years": [-5.0, 110.0], "knot_count": 5, "degree": 3},
        "sites": 82, "measures": measures}
    (OUTPUT / "braincharts_lifespan_57k.json").write_text(json.dumps(metadata, indent=1) + "\n")
    print(f"wrote {OUTPUT}/braincharts_lifespan_57k.npz/.json ({len(MEASURES)} measures)")


if __name__ == "__main__":
    main()
