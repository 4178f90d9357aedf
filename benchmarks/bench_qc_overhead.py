"""What the per-case QC and report steps of issue 11/14 cost on top of the network
(``subct segment`` default run on the real GE series, in process, after a warm-up).

Prints the pipeline's own step timings, then the added steps timed alone on the same
case: the agreement of the plain and mirrored passes (two 18-channel argmaxes over the
crop, threaded), the anatomical intensity checks, and the report viewer's 2 mm copy.

Usage: ``python benchmarks/bench_qc_overhead.py`` (``ONEDNN_MAX_CPU_ISA=AVX2`` to emulate
a CPU without native bf16; inference runs fp32 on every CPU by default)
"""

from __future__ import annotations

import resource
import tempfile
import time

import numpy as np

from subct.inference.config import InferenceConfig
from subct.inference.model import load_model
from subct.inference.pipeline import segment_volume
from subct.inference.predict import _pass_agreement
from subct.io.readers import load_volume
from subct.model.runtime import cpu_line
from subct.paths import shared_data_dir
from subct.qc.anatomy import AnatomyReport, check_intensities
from subct.qc.viewer import write_case_view


def _timed(task: object, *args: object) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    task(*args)  # type: ignore[operator]
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (time.perf_counter() - wall,
            (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime))


def main() -> None:
    print(cpu_line())
    ct = load_volume(shared_data_dir() / "ct" / "dicom_ge_tilted")
    model = load_model(None, "cpu")
    segment_volume(ct, model, InferenceConfig())  # warm-up
    result = {}
    wall, cpu = _timed(lambda: result.update(r=segment_volume(ct, model, InferenceConfig())))
    steps = {k: round(v, 2) for k, v in result["r"].timings_s.items()}
    print(f"segment_volume: {wall:.2f} s wall, {cpu:.2f} s CPU; steps {steps}")
    rng = np.random.default_rng(0)
    probabilities = rng.random((18, 112, 160, 144), dtype=np.float32)
    mirrored = probabilities[:, ::-1]
    wall, cpu = _timed(_pass_agreement, probabilities, mirrored, model.threads)
    print(f"TTA agreement (threaded): {wall:.2f} s wall, {cpu:.2f} s CPU")
    indices = probabilities.argmax(axis=0)
    hu = (probabilities[0] * 100).astype(np.float32)
    names = ["Left-Lateral-Ventricle", *(f"Structure-{i}" for i in range(16))]
    wall, cpu = _timed(check_intensities, indices, hu, names, AnatomyReport())
    print(f"intensity checks: {wall:.2f} s wall, {cpu:.2f} s CPU")
    with tempfile.TemporaryDirectory() as folder:
        wall, cpu = _timed(write_case_view, folder, "ge", ct, result["r"].labels)
        print(f"viewer copy: {wall:.2f} s wall, {cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
