"""Second held-out set (issue 23): the ensemble paper's 27 TEST subcortical maps.

The paper's repository publishes 180 real CT-space subcortical label maps (7 classes, left
and right merged, no amygdala or accumbens) with a train/validation/test split. Model v2
trains on the 126 training maps; the 27 test maps are never used in training or
checkpoint selection. This script measures how a model segments their shapes:

1. each test map is split at the midline and embedded in the held-out SynthSeg head 19
   (:func:`subct.synth.background.embed_in_head`, the same embedding the training uses, on
   a head the shipped model and model v2 never trained on);
2. one whole-head synthetic CT (CT mode, default priors and spatial augmentation, fixed
   seed per map, 1 mm, grid as the held-out benchmark's) is drawn from it;
3. each model segments it through :func:`subct.segment` (the user's pipeline, flip TTA);
4. prediction and reference are merged to the paper's 7 classes and scored by Dice.

Prints a Markdown table (mean Dice per class and overall, per model) and writes
``results.csv`` (model, case, class, Dice) to ``--out``.

Usage::

    python benchmarks/bench_paper_test_maps.py \\
        --models shipped checkpoints/model_v2/best_pipeline.safetensors [--limit 27]

The maps are read from ``{paper_masks}`` (``SUBCT_PAPER_MASKS``; scripts/get_paper_masks.sh).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from subct.evaluation.metrics import label_map_metrics
from subct.image.volume import Volume
from subct.io.readers import load_volume
from subct.labels.schemes import PAPER7_NAMES, to_scheme
from subct.paths import paper_split_maps, shared_data_dir
from subct.synth.evaluation import embedded_paper_head

HEAD_MAP = "training_seg_19.nii.gz"  # held out from every shipped and v2 training run
GRID_SHAPE = (192, 240, 240)


def test_map_paths() -> list[Path]:
    try:
        return paper_split_maps("test")
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None


def synthetic_case(path: Path, head: Volume, seed: int) -> tuple[Volume, np.ndarray]:
    """A 1 mm synthetic CT of ``path`` embedded in ``head`` and its 7-class reference."""
    return embedded_paper_head(load_volume(path), head, GRID_SHAPE, seed)


def paper7_dice(labels: np.ndarray, reference: np.ndarray, ct: Volume, case: str
                ) -> dict[str, float]:
    """Dice of each of the 7 merged classes: a segmentation's canonical ``labels`` merged
    to the paper's scheme against the case's ``reference`` (NaN where both are empty)."""
    predicted = to_scheme(labels, "paper7")
    scores = label_map_metrics(predicted, reference, ct.spacing, PAPER7_NAMES, case=case)
    return {structure.name: structure.dice for structure in scores.structures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["shipped"],
                        help="checkpoint paths, or 'shipped' for the shipped weights")
    parser.add_argument("--limit", type=int, default=27, help="first N test maps (all: 27)")
    parser.add_argument("--seed", type=int, default=2312)
    parser.add_argument("--out", type=Path, default=Path("/tmp/paper_test_maps"))
    args = parser.parse_args()

    from subct.inference.pipeline import segment

    head = load_volume(shared_data_dir() / "label_maps" / "synthseg" / HEAD_MAP)
    models = {name: (None if name == "shipped" else name) for name in args.models}
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, float]] = []
    for number, path in enumerate(test_map_paths()[:args.limit]):
        start = time.perf_counter()
        ct, reference = synthetic_case(path, head, args.seed + number)
        case = path.name.split(".")[0]
        for name, model in models.items():
            # force: every case is scored; the gate's verdict is not the question here
            result = segment(ct, model=model, force=True)
            scores = paper7_dice(np.asarray(result.labels.array), reference, ct, case)
            rows.extend((name, case, structure, dice) for structure, dice in scores.items())
        print(f"{case}: {time.perf_counter() - start:.0f} s", flush=True)
    with (args.out / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "case", "class", "dice"])
        writer.writerows(rows)
    structures = list(PAPER7_NAMES.values())
    print("| model | " + " | ".join(structures) + " | mean |")
    print("|---|" + "---|" * (len(structures) + 1))
    for name in models:
        means = [float(np.nanmean([d for m, _, s, d in rows if m == name and s == structure]))
                 for structure in structures]
        cells = " | ".join(f"{v:.3f}" for v in means)
        print(f"| {name} | {cells} | **{np.mean(means):.3f}** |")
    print(f"{len({c for _, c, _, _ in rows})} test maps embedded in held-out head 19, "
          f"1 mm synthetic CT, seed {args.seed}")


if __name__ == "__main__":
    main()
