"""Weight-space interpolation between the shipped weights and a fine-tuned descendant.

Model v2 was fine-tuned from the shipped network; the two lie in one basin, so the
weights ``(1 − α)·shipped + α·candidate`` are a valid network for every α (WiSE-FT,
Wortsman et al. 2022; :func:`subct.model.checkpoint.average_checkpoints`). This script
writes the interpolated checkpoints for each α and scores each with the continuing run's
own selection figure — the full-pipeline validation Dice of
:mod:`subct.training.pipeline_validation` (the run's validation heads from SynthSeg maps
17–18, ``subct segment --fast`` steps) — so that a checkpoint is chosen on validation
data only. α = 0 is the shipped network, α = 1 the candidate.

Usage::

    python benchmarks/bench_weight_interpolation.py \\
        --candidate checkpoints/model_v2/best_pipeline.safetensors \\
        [--alphas 0 0.25 0.5 0.75 1] [--config configs/model_v2.yaml] [--out /tmp/wise]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", required=True, type=Path)
    parser.add_argument("--baseline", default="shipped",
                        help="checkpoint, or 'shipped' (the shipped weights)")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--config", type=Path, default=Path("configs/model_v2.yaml"))
    parser.add_argument("--heads", type=int, default=None,
                        help="validation heads (default: the config's)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/weight_interpolation"))
    args = parser.parse_args()

    from subct.model.checkpoint import average_checkpoints, load_checkpoint
    from subct.model.registry import resolve_model_path
    from subct.model.runtime import cpu_info
    from subct.training.config import load_training_config
    from subct.training.pipeline_validation import build_validation_heads, pipeline_dice

    baseline = resolve_model_path(None) if args.baseline == "shipped" else Path(args.baseline)
    overrides = [] if args.heads is None else [f"pipeline_validation.heads={args.heads}"]
    config = load_training_config(args.config, overrides)
    heads = build_validation_heads(config)
    info = cpu_info()
    print(f"# CPU: {info.model}; {len(heads)} validation heads; baseline {baseline}; "
          f"candidate {args.candidate}")
    args.out.mkdir(parents=True, exist_ok=True)
    print("| α | pipeline Dice | seconds |\n|---|---|---|")
    for alpha in args.alphas:
        if alpha <= 0.0:
            path = baseline
        elif alpha >= 1.0:
            path = args.candidate
        else:
            path = average_checkpoints([baseline, args.candidate],
                                       args.out / f"alpha_{alpha:.2f}.safetensors",
                                       weights=[1.0 - alpha, alpha])
        loaded = load_checkpoint(path)
        start = time.perf_counter()
        score = pipeline_dice(loaded.network, loaded.metadata, heads, torch.device("cpu"),
                              tta=config.pipeline_validation.tta)
        print(f"| {alpha:.2f} | {score:.4f} | {time.perf_counter() - start:.0f} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}; interpolated checkpoints in {args.out}")


if __name__ == "__main__":
    main()
