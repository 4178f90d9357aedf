"""Wall and CPU seconds of subct.segment on one input: model loaded, one warm-up call,
then the median of 3 (issue 24: the redesign must not be slower). To time another
checkout, put its ``src`` first on the path (``--model PATH`` times another checkpoint,
with its ONNX graph beside it if it has one, e.g. one trained on other patch sizes)::

    PYTHONPATH=/tmp/before_tree/src python benchmarks/time_segment.py \\
        ../shared/data/ct/dicom_ge_tilted

``--malloc retain`` keeps freed memory for reuse (``retain_freed_memory``, as a batch of
3 or more cases does); the default leaves glibc's allocator alone (and runs on older
checkouts, which lack it). Minor page faults per call are printed too.
"""

from __future__ import annotations

import os
import resource
import sys
import time

import subct
from subct.inference.pipeline import segment
from subct.io.readers import load_volume


def main() -> None:
    retained = "--malloc" in sys.argv and sys.argv[sys.argv.index("--malloc") + 1] == "retain"
    if retained:
        from subct.model.runtime import retain_freed_memory

        retained = retain_freed_memory()
    model = sys.argv[sys.argv.index("--model") + 1] if "--model" in sys.argv else None
    volume = load_volume(sys.argv[1])
    segment(volume, model=model)  # warm-up: model load, graph compile
    walls, cpus = [], []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        segment(volume, model=model)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    print(f"{os.path.dirname(subct.__file__)}: wall min {min(walls):.2f} s median "
          f"{sorted(walls)[1]:.2f} s, CPU median {sorted(cpus)[1]:.2f} s; "
          f"{(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 3:.0f} minor "
          f"page faults per call; freed memory retained: {retained}; model {model or 'shipped'}")


if __name__ == "__main__":
    main()
