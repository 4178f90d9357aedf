"""Wall and CPU seconds of subct.segment on one input: model loaded, one warm-up call,
then the median of 3 (issue 24: the redesign must not be slower). To time another
checkout, put its ``src`` first on the path::

    PYTHONPATH=/tmp/before_tree/src python benchmarks/time_segment.py \\
        ../shared/data/ct/dicom_ge_tilted
"""

from __future__ import annotations

import os
import sys
import time

import subct
from subct.inference.pipeline import segment
from subct.io.readers import load_volume


def main() -> None:
    volume = load_volume(sys.argv[1])
    segment(volume)  # warm-up: model load, graph compile
    walls, cpus = [], []
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        segment(volume)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(f"{os.path.dirname(subct.__file__)}: wall min {min(walls):.2f} s median "
          f"{sorted(walls)[1]:.2f} s, CPU median {sorted(cpus)[1]:.2f} s")


if __name__ == "__main__":
    main()
