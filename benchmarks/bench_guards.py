"""Guards of ``subct segment`` on real and synthetic head CTs (issue 11).

For every real head CT reachable here (``benchmarks/real_cts.py``: the GE tilted series
in ``../shared/data/ct``, Debian's InVesalius ``Cranium.inv3`` when installed), at its own
slice thickness and as 5 mm axial slabs, and for held-out synthetic heads (map 19) with
one pathology each and with partial coverage (the neck up to the skull base; the skull
top only), it reports:

- the QC warnings raised, or the one-line refusal;
- labelled voxels on bone (> 600 HU) or air (< −100 HU) on the input grid (target 0);
- for synthetic heads, labelled voxels outside the TRUE intracranial space (the brain
  and CSF labels of the map, FreeSurfer IDs 1–499; target 0) — an independent check of
  the locator's mask that the pipeline cuts the labels with;
- the intracranial volume at native slices and at 5 mm (target: within 3 %), and for
  synthetic heads against the true volume.

Usage: ``python benchmarks/bench_guards.py [--model PATH]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_real_ct_robustness import axial_axis, slabs  # noqa: E402
from bench_shipped_model import generate_cases, held_out_map_paths  # noqa: E402
from real_cts import real_cts  # noqa: E402
from subct.errors import SubctError  # noqa: E402
from subct.image.volume import Volume  # noqa: E402
from subct.inference.config import InferenceConfig  # noqa: E402
from subct.inference.model import load_model  # noqa: E402
from subct.inference.pipeline import segment_volume  # noqa: E402
from subct.model.runtime import cpu_line  # noqa: E402


def partial(volume: Volume, keep: str) -> Volume:
    """The scan cut to its inferior (``neck``: up to the skull base) or superior
    (``vertex``: the top 60 mm) part, as a scanner with a short range would give."""
    axis = axial_axis(volume)
    array = np.moveaxis(np.asarray(volume.array), axis, 0)
    step = float(np.linalg.norm(volume.affine[:3, axis]))
    superior_up = volume.affine[2, axis] > 0
    count = array.shape[0]
    if keep == "neck":   # from the bottom to 35 % of the height (below the basal ganglia)
        low, high = int(0.35 * count), int(0.65 * count)
        keep_slices = slice(0, low) if superior_up else slice(high, count)
    else:                # the top 60 mm
        n = max(1, int(round(60.0 / step)))
        keep_slices = slice(count - n, count) if superior_up else slice(0, n)
    affine = volume.affine.copy()
    affine[:3, 3] += volume.affine[:3, axis] * keep_slices.start
    return Volume(np.ascontiguousarray(np.moveaxis(array[keep_slices], 0, axis)), affine)


def run(name: str, ct: Volume, model: object,
        intracranial: np.ndarray | None = None) -> tuple[str, float | None]:
    """Segment ``ct``; print one row; return the outcome text and the ICV (cm³).

    ``intracranial``: the true intracranial space on ``ct``'s grid (synthetic heads)."""
    try:
        result = segment_volume(ct, model, InferenceConfig())  # type: ignore[arg-type]
    except SubctError as error:
        text = str(error).split(": ", 1)[-1]
        print(f"| {name} | refused: {text[:110]} | – | – | – |")
        return "refused", None
    labels = np.asarray(result.labels.array) > 0
    hu = np.asarray(ct.array, dtype=np.float32)
    off_tissue = int(np.count_nonzero(labels & ((hu > 600.0) | (hu < -100.0))))
    codes = sorted({flag.code for flag in result.qc.flags if flag.severity == "warning"})
    icv = result.intracranial_volume_mm3
    icv_text = "–" if icv is None else f"{icv / 1000:.0f}"
    outside_text = "–"
    if intracranial is not None:
        outside_text = str(int(np.count_nonzero(labels & ~intracranial)))
        voxel_cm3 = abs(float(np.linalg.det(ct.affine[:3, :3]))) / 1000.0
        icv_text += f" (true {np.count_nonzero(intracranial) * voxel_cm3:.0f})"
    print(f"| {name} | {' '.join(codes) or 'none'} | {off_tissue} | {outside_text} "
          f"| {icv_text} |")
    return " ".join(codes), None if icv is None else icv / 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    print(cpu_line())
    model = load_model(args.model, "cpu")
    print("| case | QC warnings (or refusal) | labelled voxels on bone/air "
          "| labelled voxels outside the true intracranial space | ICV cm³ |")
    print("|---|---|---|---|---|")
    icv_pairs: list[tuple[str, float | None, float | None]] = []
    for name, ct in real_cts().items():
        _, native = run(f"{name} (native)", ct, model)
        spacing = float(np.linalg.norm(ct.affine[:3, axial_axis(ct)]))
        factor = max(2, int(round(5.0 / spacing)))
        _, thick = run(f"{name} ({factor * spacing:.1f} mm slabs)", slabs(ct, factor), model)
        icv_pairs.append((name, native, thick))
        for keep in ("neck", "vertex"):
            run(f"{name} ({keep} only)", partial(ct, keep), model)
    map_paths = held_out_map_paths([19])
    synthetic_icv: dict[str, dict[str, float | None]] = {}
    for pathology in ("", "infarct", "haemorrhage", "calcification", "ventricle_enlargement",
                      "sulcal_widening", "clinical"):
        for case in generate_cases(map_paths, 1, 2024, (192, 240, 240), pathology or None):
            if case.resolution != "1mm" and pathology:
                continue
            _, icv = run(f"synthetic {case.name} {case.resolution} "
                         f"{pathology or 'no pathology'}", case.ct, model, case.intracranial)
            if not pathology:
                synthetic_icv.setdefault(f"synthetic {case.name}", {})[case.resolution] = icv
            if not pathology and case.resolution == "1mm":
                for keep in ("neck", "vertex"):
                    run(f"synthetic {case.name} ({keep} only)", partial(case.ct, keep), model)
    for name, by_resolution in synthetic_icv.items():
        icv_pairs.append((name, by_resolution.get("1mm"), by_resolution.get("5mm")))
    print("\n| CT | ICV native cm³ | ICV 5 mm cm³ | difference |")
    print("|---|---|---|---|")
    for name, native, thick in icv_pairs:
        if native and thick:
            change = 100 * (thick - native) / native
            print(f"| {name} | {native:.0f} | {thick:.0f} | {change:+.1f} % |")


if __name__ == "__main__":
    main()
