"""The head-pitch estimate behind the pitch-aligned crop (issue 12).

* The training pose: :meth:`IntracranialLocation.pitch_deg` of synthetic CTs drawn from
  the training label maps 01–16 in their own pose (no augmentation); their mean is the
  shipped model's ``reference_pitch_deg`` (``subct.model.registry``).
* Tracking: the estimate on each real head CT pitched by −10°, 0° and +10° (affine only).

Usage: ``python benchmarks/bench_pitch.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real_ct_robustness import pitched  # noqa: E402
from real_cts import real_cts  # noqa: E402
from subct.image.intracranial import locate_intracranial  # noqa: E402
from subct.image.volume import Volume  # noqa: E402
from subct.model.runtime import cpu_line  # noqa: E402
from subct.paths import shared_data_dir  # noqa: E402
from subct.synth import SynthConfig, SynthGenerator  # noqa: E402


def main() -> None:
    print(cpu_line())
    angles = []
    for number in range(1, 17):
        path = shared_data_dir() / "label_maps" / "synthseg" / f"training_seg_{number:02d}.nii.gz"
        config = SynthConfig(mode="ct", output_shape=(192, 240, 240)).without_randomness()
        sample = SynthGenerator([path], config, seed=number).sample(0)
        assert sample.hu is not None
        ct = Volume(np.round(sample.hu.numpy()).astype(np.int16), sample.affine.copy())
        angle = locate_intracranial(ct).pitch_deg()
        assert angle is not None
        angles.append(angle)
        print(f"training map {number:02d}: pitch {angle:.1f}°", flush=True)
    print(f"training maps 01-16: mean {np.mean(angles):.1f}°, SD {np.std(angles):.1f}°")
    for name, ct in real_cts().items():
        estimates = [locate_intracranial(pitched(ct, d)).pitch_deg() for d in (-10, 0, 10)]
        print(f"{name} pitched -10/0/+10°: "
              + " / ".join(f"{e:.1f}°" for e in estimates if e is not None))


if __name__ == "__main__":
    main()
