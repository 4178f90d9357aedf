"""Reference predictions of the braincharts models by PCNtoolkit itself, for
tests/norms/test_braincharts.py (tests/data/braincharts_pcntoolkit_predictions.csv).

    pip download --no-deps pcntoolkit==0.26 && tar xzf pcntoolkit-0.26.tar.gz
    pip install bspline
    python scripts/reference_braincharts_predictions.py BRAINCHARTS_REPO pcntoolkit-0.26 \\
        > tests/data/braincharts_pcntoolkit_predictions.csv

PCNtoolkit's ``BLR`` class (``pcntoolkit/model/bayesreg.py``, numpy/scipy only) is loaded
from the unpacked source and unpickles the models as itself; the design rows are those
of its ``create_design_matrix`` (intercept, age, sex, 82 site dummies, the ``bspline``
package's cubic basis on knots −5…110); ``BLR.predict`` gives the warped mean and
variance at 3 ages, 2 sexes and 3 sites.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from extract_braincharts_norms import _zip_bytes  # noqa: E402

MEASURES = ("Left-Lateral-Ventricle", "Brain-Stem", "EstimatedTotalIntraCranialVol")


def main() -> None:
    repo, source = Path(sys.argv[1]), Path(sys.argv[2])
    spec = importlib.util.spec_from_file_location(
        "bayesreg", source / "pcntoolkit" / "model" / "bayesreg.py")
    assert spec is not None and spec.loader is not None
    bayesreg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bayesreg)
    import bspline  # the package PCNtoolkit's create_bspline_basis uses
    from bspline import splinelab

    class Holder:
        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state)

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module == "pcntoolkit.model.bayesreg" and name == "BLR":
                return bayesreg.BLR
            if module.split(".")[0] not in ("numpy", "builtins", "copyreg", "collections"):
                return type(name, (Holder,), {})
            return super().find_class(module, name)

    basis = bspline.Bspline(splinelab.augknt(np.linspace(-5, 110, 5), 3), 3)
    archive = zipfile.ZipFile(io.BytesIO(_zip_bytes(repo)))
    print("measure,sex,age_years,site,mean_warped,variance_warped")
    for measure in MEASURES:
        member = f"lifespan_57K_82sites/{measure}/Models/NM_0_0_estimate.pkl"
        blr = Unpickler(io.BytesIO(archive.read(member))).load().blr
        for sex in (0, 1):
            for age in (8.0, 45.0, 83.0):
                for site in (0, 40, 81):
                    sites = np.zeros(82)
                    sites[site] = 1
                    row = np.concatenate([[1, age, sex], sites, basis(age)])[None]
                    mean, variance = blr.predict(blr.hyp, None, None, row)
                    print(f"{measure},{'female' if sex == 0 else 'male'},{age},{site},"
                          f"{float(mean[0]):.10g},{float(variance[0]):.10g}")


if __name__ == "__main__":
    main()
