"""Validation Dice of a checkpoint on patches centred on the structures vs anywhere.

``subct segment`` covers a 112 × 160 × 144 mm deep-brain box with sliding windows of
the training patch size, so windows sit up to ~50 mm from the structures' centroid.
A network trained only on patches centred near the structures (synthetic crop-centre
translation ±10 mm) has never seen such windows. This benchmark measures that gap with
the trainer's own validation (:func:`subct.training.loop.validate`: per-structure Dice
pooled over fixed synthetic patches from the validation maps 17–18 of
``configs/shipped_ct_unet.yaml``), once per crop-centre translation range.

Usage::

    python benchmarks/bench_patch_placement.py CHECKPOINT [CHECKPOINT ...] \
        [--translations 10 35,60,55] [--samples 24] [--patch 64]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "shipped_ct_unet.yaml"


def main() -> None:
    from subct.model.runtime import cpu_line

    print(cpu_line(), flush=True)
    from subct.model.checkpoint import load_state_dict
    from subct.model.losses import build_loss
    from subct.model.networks import build_network
    from subct.training import data as training_data
    from subct.training.config import load_training_config
    from subct.training.loop import network_kwargs, validate

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--translations", nargs="+", default=["10", "35,60,55"],
                        help="crop-centre translation ranges (mm): 'b' or 'bx,by,bz'")
    parser.add_argument("--samples", type=int, default=24, help="validation patches")
    parser.add_argument("--patch", type=int, default=64, help="patch edge (voxels)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| checkpoint | translation (mm) | validation loss | mean Dice | seconds |")
    print("|---|---|---|---|---|")
    for translation in args.translations:
        value = f"[{translation}]" if "," in translation else translation
        overrides = [f"data.patch_size=[{args.patch},{args.patch},{args.patch}]",
                     "data.batch_size=2", f"data.validation_samples={args.samples}",
                     f"data.synthetic.synth.spatial.translation_mm={value}"]
        config = load_training_config(CONFIG, overrides)
        samples = training_data.build_validation_set(config, [])
        for checkpoint in args.checkpoints:
            start = time.perf_counter()
            network = build_network(config.network.name, **network_kwargs(config))
            network.load_state_dict(load_state_dict(checkpoint))
            loss, dice = validate(network, build_loss(config.loss.name, None), samples,
                                  config, torch.device("cpu"))
            finite = [v for v in dice.values() if v == v]
            print(f"| {checkpoint} | ±{translation} | {loss:.3f} | "
                  f"{sum(finite) / len(finite):.3f} | {time.perf_counter() - start:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
