"""The ``not_anatomical`` gate measure on every real head CT here and on noise (issue 25):
the in-plane neighbour correlation (:func:`subct.qc.checks.neighbour_correlation`) must
separate images of heads from random data with room to spare (threshold
:data:`subct.qc.checks.MIN_NEIGHBOUR_CORRELATION`).

Usage: ``python benchmarks/bench_noise_gate.py``
"""

from __future__ import annotations

import numpy as np

from real_cts import real_cts
from subct.image.volume import Volume
from subct.io.hounsfield import detect_hu_offset
from subct.io.readers import load_volume
from subct.paths import shared_data_dir
from subct.qc.checks import MIN_NEIGHBOUR_CORRELATION, neighbour_correlation


def main() -> None:
    volumes = dict(real_cts())
    volumes["headsq_quarter (VTK)"] = load_volume(
        shared_data_dir() / "ct" / "headsq_quarter" / "quarter.nhdr")
    rng = np.random.default_rng(0)
    volumes["uniform noise -1024..3000 HU"] = Volume(
        rng.uniform(-1024, 3000, (128, 128, 100)).astype(np.float32), np.diag([1.5, 1.5, 2, 1]))
    volumes["Gaussian noise 40 ± 500 HU"] = Volume(
        rng.normal(40, 500, (128, 128, 100)).astype(np.float32), np.diag([1.5, 1.5, 2, 1]))
    print(f"| image | neighbour correlation | gate (threshold {MIN_NEIGHBOUR_CORRELATION}) |")
    print("|---|---|---|")
    for name, volume in volumes.items():
        value = neighbour_correlation(volume, detect_hu_offset(volume))
        verdict = "passes" if value >= MIN_NEIGHBOUR_CORRELATION else "refused"
        print(f"| {name} | {value:.3f} | {verdict} |")


if __name__ == "__main__":
    main()
