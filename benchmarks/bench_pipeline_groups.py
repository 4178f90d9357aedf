"""The training log's full-pipeline figures, per group of heads, for any checkpoints.

The continuing run logs ``pipeline_dice`` and ``pipeline_clean`` / ``_clinical`` /
``_paper`` only for its own weights at its check epochs. This scores other weights (the
shipped model, weight averages) on the same heads with the same function
(:func:`subct.training.pipeline_validation.pipeline_scores`: the config's validation
heads, torch fp32, flip TTA as the run's ``pipeline_validation.tta``), so their figures sit
beside the log's. ``bench_pipeline_validation.py`` compares two models head by head
through the inference engine instead.

Usage::

    python benchmarks/bench_pipeline_groups.py shipped /tmp/avg3.safetensors \\
        [--config configs/model_v2.yaml] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from subct.model.checkpoint import load_checkpoint
from subct.model.registry import resolve_model_path
from subct.training.config import load_training_config
from subct.training.pipeline_validation import build_validation_heads, pipeline_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files, or 'shipped'")
    parser.add_argument("--config", type=Path, default=Path("configs/model_v2.yaml"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_training_config(args.config)
    heads = build_validation_heads(config)
    for path in args.checkpoints:
        loaded = load_checkpoint(resolve_model_path(None if path == "shipped" else path))
        scores = pipeline_scores(loaded.network, loaded.metadata, heads, torch.device("cpu"),
                                 tta=config.pipeline_validation.tta)
        print(path, json.dumps({group: round(value, 4) for group, value in scores.items()}),
              flush=True)


if __name__ == "__main__":
    main()
